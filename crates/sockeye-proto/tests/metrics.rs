//! With feature `metrics`, sockets count their closes (by code and by who
//! closed, once each) and their messages and payload bytes each way. Each
//! test runs on one thread with a debugging recorder of its own (a local
//! recorder), over an in-memory duplex.
#![cfg(all(feature = "metrics", feature = "tokio"))]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::cell::RefCell;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use sockeye_proto::{
    CloseCode, Config, Error, Message, PreparedMessage, ProtocolViolation, Role, WebSocket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

/// What the recorder saw so far. Its snapshots drain counters, so they add
/// up here.
struct Totals {
    snapshotter: Snapshotter,
    seen: RefCell<Vec<(metrics::Key, u64)>>,
}

impl Totals {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
            seen: RefCell::default(),
        }
    }

    /// The counter `name` summed over the label sets that include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut seen = self.seen.borrow_mut();
        for (key, .., v) in self.snapshotter.snapshot().into_vec() {
            let DebugValue::Counter(v) = v else { continue };
            let key = key.key().clone();
            match seen.iter_mut().find(|(k, _)| *k == key) {
                Some((_, total)) => *total += v,
                None => seen.push((key, v)),
            }
        }
        seen.iter()
            .filter(|(key, _)| {
                key.name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    fn closes(&self, labels: &[(&str, &str)]) -> u64 {
        self.value("sockeye_socket_closes_total", labels)
    }
}

fn pair(server: Config, client: Config) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = duplex(1 << 20);
    (
        WebSocket::from_raw_socket(a, Role::Server, server),
        WebSocket::from_raw_socket(b, Role::Client, client),
    )
}

/// Reads until the stream ends; returns the errors seen.
async fn drain(ws: &mut WebSocket<DuplexStream>) -> Vec<Error> {
    let mut errors = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the stream ends")
    {
        if let Err(e) = item {
            errors.push(e);
        }
    }
    errors
}

#[tokio::test]
async fn a_normal_close_counts_local_on_one_end_and_remote_on_the_other() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals::new(&recorder);

    let (mut server, mut client) = pair(Config::default(), Config::default());
    let reader = async {
        let errors = drain(&mut server).await;
        assert!(errors.is_empty(), "{errors:?}");
    };
    let (_, closed) = tokio::join!(reader, client.close(CloseCode::NORMAL, "bye"));
    closed.unwrap();
    assert_eq!(
        totals.closes(&[("role", "client"), ("code", "1000"), ("initiator", "local")]),
        1
    );
    assert_eq!(
        totals.closes(&[
            ("role", "server"),
            ("code", "1000"),
            ("initiator", "remote")
        ]),
        1
    );
    // Once per socket: dropping them after their end counts nothing more.
    drop((server, client));
    assert_eq!(totals.closes(&[]), 2);

    // The other way, with an application's code.
    let (mut server, mut client) = pair(Config::default(), Config::default());
    let reader = async {
        let errors = drain(&mut client).await;
        assert!(errors.is_empty(), "{errors:?}");
    };
    let (_, closed) = tokio::join!(
        reader,
        server.close(CloseCode::from_u16_unchecked(4000), "")
    );
    closed.unwrap();
    drop((server, client));
    assert_eq!(
        totals.closes(&[
            ("role", "server"),
            ("code", "application"),
            ("initiator", "local")
        ]),
        1
    );
    assert_eq!(
        totals.closes(&[
            ("role", "client"),
            ("code", "application"),
            ("initiator", "remote")
        ]),
        1
    );
    assert_eq!(totals.closes(&[]), 4);
}

#[tokio::test]
async fn a_protocol_error_counts_1002() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals::new(&recorder);

    let (a, mut peer) = duplex(1 << 16);
    let mut server = WebSocket::from_raw_socket(a, Role::Server, Config::default());
    // An unmasked frame from a client.
    peer.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let errors = drain(&mut server).await;
    assert!(
        matches!(
            errors.as_slice(),
            [Error::Protocol(ProtocolViolation::UnmaskedFrame)]
        ),
        "{errors:?}"
    );
    // The close frame went out with 1002.
    let mut wire = [0u8; 4];
    peer.read_exact(&mut wire).await.unwrap();
    assert_eq!(&wire[..], &[0x88, wire[1], 0x03, 0xea]);
    assert_eq!(
        totals.closes(&[("role", "server"), ("code", "1002"), ("initiator", "local")]),
        1
    );
    drop(server);
    assert_eq!(totals.closes(&[]), 1);
}

#[tokio::test]
async fn an_oversized_message_counts_1009_on_both_ends() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals::new(&recorder);

    let small = Config::builder().max_message_size(16).build();
    let (mut server, mut client) = pair(small, Config::default());
    client.send(Message::binary(vec![1u8; 100])).await.unwrap();
    let (server_errors, client_errors) = tokio::join!(drain(&mut server), drain(&mut client));
    assert!(
        matches!(server_errors.as_slice(), [Error::Capacity(_)]),
        "{server_errors:?}"
    );
    assert!(client_errors.is_empty(), "{client_errors:?}");
    assert_eq!(
        totals.closes(&[("role", "server"), ("code", "1009"), ("initiator", "local")]),
        1
    );
    assert_eq!(
        totals.closes(&[
            ("role", "client"),
            ("code", "1009"),
            ("initiator", "remote")
        ]),
        1
    );
    // The message that was too big was never delivered.
    assert_eq!(
        totals.value("sockeye_messages_total", &[("direction", "in")]),
        0
    );
}

#[tokio::test]
async fn a_transport_that_ends_without_a_close_frame_counts_none() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals::new(&recorder);

    // The peer's EOF.
    let (a, peer) = duplex(1 << 16);
    let mut server = WebSocket::from_raw_socket(a, Role::Server, Config::default());
    drop(peer);
    let errors = drain(&mut server).await;
    assert!(
        matches!(errors.as_slice(), [Error::AbnormalClosure]),
        "{errors:?}"
    );
    assert_eq!(
        totals.closes(&[("role", "server"), ("code", "1006"), ("initiator", "none")]),
        1
    );
    drop(server);

    // A socket dropped while open (an aborted task).
    let (server, client) = pair(Config::default(), Config::default());
    drop(server);
    assert_eq!(
        totals.closes(&[("role", "server"), ("code", "1006"), ("initiator", "none")]),
        2
    );
    drop(client);
    assert_eq!(
        totals.closes(&[("role", "client"), ("code", "1006"), ("initiator", "none")]),
        1
    );
    assert_eq!(totals.closes(&[]), 3);
}

/// A close the peer never answers: the driver gives up at the close
/// timeout, and the socket counts once, as the local close it was.
#[tokio::test(start_paused = true)]
async fn a_close_given_up_at_the_timeout_counts_once() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals::new(&recorder);

    let (a, _silent_peer) = duplex(1 << 16);
    let config = Config::builder()
        .close_timeout(Duration::from_millis(200))
        .build();
    let mut server = WebSocket::from_raw_socket(a, Role::Server, config);
    let result = server.close(CloseCode::GOING_AWAY, "shutdown").await;
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    assert!(server.next().await.is_none());
    assert_eq!(
        totals.closes(&[("role", "server"), ("code", "1001"), ("initiator", "local")]),
        1
    );
    drop(server);
    assert_eq!(totals.closes(&[]), 1);
}

#[tokio::test]
async fn a_split_socket_counts_one_close() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals::new(&recorder);

    let (server, mut client) = pair(Config::default(), Config::default());
    let (mut read, write) = server.split();
    let reader = async {
        while let Some(item) = read.next().await {
            item.unwrap();
        }
    };
    let (_, closed) = tokio::join!(reader, client.close(CloseCode::NORMAL, ""));
    closed.unwrap();
    drop((read, write, client));
    assert_eq!(
        totals.closes(&[
            ("role", "server"),
            ("code", "1000"),
            ("initiator", "remote")
        ]),
        1
    );
    assert_eq!(totals.closes(&[]), 2);
}

#[tokio::test]
async fn messages_and_payload_bytes_are_counted_each_way() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals::new(&recorder);

    let (mut server, mut client) = pair(Config::default(), Config::default());
    // Client to server: two texts (5 + 3 bytes), one binary (300).
    client.send(Message::text("hello")).await.unwrap();
    client.send(Message::binary(vec![7u8; 300])).await.unwrap();
    let prepared = PreparedMessage::new(Message::text("hey")).unwrap();
    client.feed_prepared(&prepared).await.unwrap();
    client.flush().await.unwrap();
    // Pings and pongs are not messages.
    client.send(Message::ping("p")).await.unwrap();
    for _ in 0..4 {
        let m = server.next().await.unwrap().unwrap();
        if m.is_text() || m.is_binary() {
            server.feed(m).await.unwrap();
        }
    }
    // Server to client: the three echoes, and a prepared binary (10).
    let tick = PreparedMessage::new(Message::binary(vec![1u8; 10])).unwrap();
    server.send_prepared(&tick).await.unwrap();
    for _ in 0..5 {
        client.next().await.unwrap().unwrap(); // the pong among them
    }
    // Counts are published in batches, at the latest once a socket waits
    // for input: the client waits for a sixth message.
    let waited = tokio::time::timeout(Duration::from_millis(50), client.next()).await;
    assert!(waited.is_err(), "{waited:?}");

    let count = |role, direction, kind| {
        totals.value(
            "sockeye_messages_total",
            &[("role", role), ("direction", direction), ("kind", kind)],
        )
    };
    let bytes = |role, direction| {
        totals.value(
            "sockeye_payload_bytes_total",
            &[("role", role), ("direction", direction)],
        )
    };
    assert_eq!(count("client", "out", "text"), 2);
    assert_eq!(count("client", "out", "binary"), 1);
    assert_eq!(bytes("client", "out"), 308);
    assert_eq!(count("server", "in", "text"), 2);
    assert_eq!(count("server", "in", "binary"), 1);
    assert_eq!(bytes("server", "in"), 308);
    assert_eq!(count("server", "out", "text"), 2);
    assert_eq!(count("server", "out", "binary"), 2);
    assert_eq!(bytes("server", "out"), 318);
    assert_eq!(count("client", "in", "text"), 2);
    assert_eq!(count("client", "in", "binary"), 2);
    assert_eq!(bytes("client", "in"), 318);
    assert_eq!(totals.value("sockeye_messages_total", &[]), 14);
}

/// The counts of a socket in a burst are held back and published in a
/// batch: none while it takes buffered messages, all of them once it waits
/// for more input.
#[tokio::test]
async fn counts_are_published_when_the_socket_waits() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals::new(&recorder);
    let server_in = || {
        (
            totals.value(
                "sockeye_messages_total",
                &[("role", "server"), ("direction", "in")],
            ),
            totals.value(
                "sockeye_payload_bytes_total",
                &[("role", "server"), ("direction", "in")],
            ),
        )
    };

    let (mut server, mut client) = pair(Config::default(), Config::default());
    for _ in 0..10 {
        client.feed(Message::text("hello")).await.unwrap();
    }
    client.flush().await.unwrap();
    // The ten frames arrive in one read; three of them are taken.
    for _ in 0..3 {
        assert_eq!(
            server.next().await.unwrap().unwrap(),
            Message::text("hello")
        );
    }
    assert_eq!(server_in(), (0, 0), "held back while the burst lasts");
    for _ in 0..7 {
        server.next().await.unwrap().unwrap();
    }
    // Nothing more comes: the server waits, and its counts show.
    let waited = tokio::time::timeout(Duration::from_millis(50), server.next()).await;
    assert!(waited.is_err(), "{waited:?}");
    assert_eq!(server_in(), (10, 50));

    // The client published its sends when its flush completed.
    assert_eq!(
        totals.value(
            "sockeye_messages_total",
            &[("role", "client"), ("direction", "out")]
        ),
        10
    );
}

/// A socket that never waits still publishes every 64 messages, and what
/// it took before it was dropped is counted then.
#[tokio::test]
async fn a_busy_socket_publishes_every_64_messages_and_on_drop() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals::new(&recorder);
    let server_in = || {
        totals.value(
            "sockeye_messages_total",
            &[("role", "server"), ("direction", "in"), ("kind", "binary")],
        )
    };

    let (mut server, mut client) = pair(Config::default(), Config::default());
    for _ in 0..200 {
        client.feed(Message::binary(vec![0u8; 8])).await.unwrap();
    }
    client.flush().await.unwrap();
    for _ in 0..100 {
        server.next().await.unwrap().unwrap();
    }
    // Buffered input never made it wait: one batch of 64 is out.
    assert_eq!(server_in(), 64);
    drop(server);
    assert_eq!(server_in(), 100, "the taken messages, no more");
    assert_eq!(
        totals.value(
            "sockeye_payload_bytes_total",
            &[("role", "server"), ("direction", "in")]
        ),
        800
    );
    drop(client);
}

/// The sans-IO connection publishes its counts in `release_idle_memory`
/// (and on drop), which a transport loop calls when it has nothing to read.
#[test]
fn a_sans_io_connection_publishes_when_it_releases_idle_memory() {
    use sockeye_proto::Connection;

    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals::new(&recorder);
    let messages = |direction| {
        totals.value(
            "sockeye_messages_total",
            &[("role", "server"), ("direction", direction)],
        )
    };

    let mut server = Connection::new(Role::Server, Config::default());
    // Two masked "Hello" text frames from a client (RFC 6455 §5.7).
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let mut input = bytes::BytesMut::from(&[frame, frame].concat()[..]);
    // `handle_read` stops at each message: it is called until the input
    // is used up.
    while !input.is_empty() {
        server.handle_read(&mut input).unwrap();
        while let Some(m) = server.poll_event() {
            server.send(m).unwrap();
        }
    }
    let mut wire = Vec::new();
    server.poll_transmit(&mut wire);
    assert_eq!((messages("in"), messages("out")), (0, 0));
    server.release_idle_memory();
    assert_eq!((messages("in"), messages("out")), (2, 2));

    // A third, published when the connection goes.
    server.send(Message::text("bye")).unwrap();
    drop(server);
    assert_eq!(messages("out"), 3);
}
