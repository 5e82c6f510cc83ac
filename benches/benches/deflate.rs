//! permessage-deflate: compress and decompress 1 KiB JSON and 64 KiB text
//! through the extension, with and without context takeover.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sockeye_benches::{json_payload, text_payload};
use sockeye_deflate::{Agreement, DeflateConfig};
use sockeye_proto::frame::OpCode;
use sockeye_proto::{Extension, Role};
use std::hint::black_box;

fn deflate(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate");
    for (name, payload) in [
        ("json_1k", json_payload(1024)),
        ("text_64k", text_payload(64 << 10)),
    ] {
        let payload = Bytes::from(payload);
        group.throughput(Throughput::Bytes(payload.len() as u64));
        for takeover in [true, false] {
            let label = if takeover { "takeover" } else { "no_takeover" };
            let config = DeflateConfig::new()
                .server_no_context_takeover(!takeover)
                .threshold(0);
            let agreement = Agreement {
                server_no_context_takeover: !takeover,
                client_no_context_takeover: !takeover,
                ..Agreement::default()
            };
            let mut server = config.extension(Role::Server, agreement);
            group.bench_with_input(
                BenchmarkId::new(format!("compress_{label}"), name),
                &payload,
                |b, p| {
                    b.iter(|| server.encode(OpCode::Text, black_box(p)));
                },
            );
            // What the client decodes: a stream of compressed messages.
            let mut sender = config.extension(Role::Server, agreement);
            let mut receiver = config.extension(Role::Client, agreement);
            let mut out = Vec::with_capacity(payload.len());
            group.bench_with_input(
                BenchmarkId::new(format!("roundtrip_{label}"), name),
                &payload,
                |b, p| {
                    b.iter(|| {
                        let (_, compressed) = sender
                            .encode(OpCode::Text, p)
                            .ok()
                            .flatten()
                            .unwrap_or_default();
                        out.clear();
                        receiver
                            .decode(&compressed, true, &mut out, usize::MAX)
                            .map(|()| out.len())
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, deflate);
criterion_main!(benches);
