//! Fan-out: one message to 1,000 server connections, framed for each
//! (`Connection::send`) or framed once (`PreparedMessage` and
//! `Connection::send_prepared`), plain and with permessage-deflate
//! (compressed per connection, or once for all). Each connection's output is
//! drained after every send, as a socket write would.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sockeye_benches::json_payload;
use sockeye_deflate::{Agreement, DeflateConfig};
use sockeye_proto::{Config, Connection, Message, PreparedMessage, Role};
use std::hint::black_box;

const SUBSCRIBERS: usize = 1000;

/// Writes out what a connection queued (into a reused buffer).
fn drain(conns: &mut [Connection], sink: &mut Vec<u8>) {
    for conn in conns {
        sink.clear();
        conn.poll_transmit(sink);
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_1000");
    let mut sink = Vec::with_capacity(4096);
    for (name, text) in [("64B", json_payload(64)), ("1KiB", json_payload(1024))] {
        group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
        for deflate in [false, true] {
            let config = DeflateConfig::new().threshold(0);
            let agreement = Agreement {
                server_no_context_takeover: true,
                ..Agreement::default()
            };
            let mut conns: Vec<Connection> = (0..SUBSCRIBERS)
                .map(|_| {
                    let mut conn = Connection::new(Role::Server, Config::default());
                    if deflate {
                        conn.set_extension(Box::new(config.extension(Role::Server, agreement)));
                    }
                    conn
                })
                .collect();
            let label = if deflate { "deflate" } else { "plain" };
            group.bench_with_input(
                BenchmarkId::new(format!("framed_each_{label}"), name),
                &text,
                |b, text| {
                    b.iter(|| {
                        for conn in &mut conns {
                            let _ = conn.send(Message::text(black_box(text.as_str())));
                        }
                        drain(&mut conns, &mut sink);
                    });
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("prepared_once_{label}"), name),
                &text,
                |b, text| {
                    b.iter(|| {
                        let message = Message::text(black_box(text.as_str()));
                        let prepared = if deflate {
                            config.prepare(message)
                        } else {
                            PreparedMessage::new(message)
                        }
                        .unwrap_or_else(|e| panic!("{e}"));
                        for conn in &mut conns {
                            let _ = conn.send_prepared(&prepared);
                        }
                        drain(&mut conns, &mut sink);
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
