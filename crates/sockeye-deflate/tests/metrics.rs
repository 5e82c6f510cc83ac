//! With feature `metrics`, the codec counts the bytes on both sides of
//! compression and decompression: a pair of sans-IO connections with the
//! extension agreed, run on one thread under a local debugging recorder.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use bytes::BytesMut;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use sockeye_deflate::DeflateConfig;
use sockeye_proto::{Config, Connection, Message, Role};

/// The counter `sockeye_deflate_bytes_total{direction, stage}`, summed
/// over snapshots (each drains the counters).
struct Totals {
    snapshotter: Snapshotter,
    seen: Vec<(metrics::Key, u64)>,
}

impl Totals {
    fn bytes(&mut self, direction: &str, stage: &str) -> u64 {
        for (key, .., v) in self.snapshotter.snapshot().into_vec() {
            let DebugValue::Counter(v) = v else { continue };
            let key = key.key().clone();
            match self.seen.iter_mut().find(|(k, _)| *k == key) {
                Some((_, total)) => *total += v,
                None => self.seen.push((key, v)),
            }
        }
        let has = |key: &metrics::Key, k: &str, v: &str| {
            key.labels().any(|l| l.key() == k && l.value() == v)
        };
        self.seen
            .iter()
            .filter(|(key, _)| {
                key.name() == "sockeye_deflate_bytes_total"
                    && has(key, "direction", direction)
                    && has(key, "stage", stage)
            })
            .map(|(_, v)| v)
            .sum()
    }
}

/// Moves `from`'s output into `to` and returns the messages `to` got.
fn deliver(from: &mut Connection, to: &mut Connection) -> Vec<Message> {
    let mut wire = BytesMut::new();
    from.poll_transmit(&mut wire);
    let mut got = Vec::new();
    while !wire.is_empty() {
        to.handle_read(&mut wire).unwrap();
        while let Some(m) = to.poll_event() {
            got.push(m);
        }
    }
    got
}

#[test]
fn compress_and_decompress_bytes_are_counted_per_message() {
    let recorder = DebuggingRecorder::new();
    let mut totals = Totals {
        snapshotter: recorder.snapshotter(),
        seen: Vec::new(),
    };
    let config = DeflateConfig::new();
    let text = "tick tock, ".repeat(100); // 1,100 bytes, very compressible
    let len = text.len() as u64;

    metrics::with_local_recorder(&recorder, || {
        let (_, agreement) = config.negotiate(&[config.offer()]).unwrap();
        let mut server = Connection::new(Role::Server, Config::default());
        server.set_extension(Box::new(config.extension(Role::Server, agreement)));
        let mut client = Connection::new(Role::Client, Config::default());
        client.set_extension(Box::new(config.extension(Role::Client, agreement)));

        // Client to server and back.
        client.send(Message::text(text.clone())).unwrap();
        assert_eq!(
            deliver(&mut client, &mut server),
            [Message::text(text.clone())]
        );
        server.send(Message::text(text.clone())).unwrap();
        assert_eq!(
            deliver(&mut server, &mut client),
            [Message::text(text.clone())]
        );
        // Under the threshold: sent as it is, not counted.
        client.send(Message::text("hi")).unwrap();
        assert_eq!(deliver(&mut client, &mut server), [Message::text("hi")]);

        // Compressed once, sent twice.
        let prepared = config.prepare(Message::text(text.clone())).unwrap();
        server.send_prepared(&prepared).unwrap();
        server.send_prepared(&prepared).unwrap();
        assert_eq!(deliver(&mut server, &mut client).len(), 2);
    });

    assert_eq!(totals.bytes("compress", "uncompressed"), 3 * len);
    let compressed = totals.bytes("compress", "compressed");
    assert!(
        compressed > 0 && compressed < len,
        "{compressed} bytes for 3 x {len}"
    );
    // What was received is what was sent: the two direct messages and the
    // prepared one twice (its compressed bytes counted once on the way
    // out, twice on the way in).
    assert_eq!(totals.bytes("decompress", "uncompressed"), 4 * len);
    let prepared_bytes = totals.bytes("decompress", "compressed") - compressed;
    assert!(
        prepared_bytes > 0 && prepared_bytes < compressed,
        "{prepared_bytes}"
    );
}
