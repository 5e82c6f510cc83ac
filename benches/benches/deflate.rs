//! permessage-deflate: compress and decompress 1 KiB JSON and 64 KiB text
//! through the extension, with and without context takeover; and the
//! encoders side by side on one message without context takeover at level
//! 1 (`encoders`): sockeye's extension (its one-shot encoder up to 64 KiB,
//! zlib-rs through flate2 above), libdeflate (the `libdeflater` crate) and
//! a fresh zlib-rs stream per message.

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

/// One message compressed from scratch at level 1 by each encoder. The
/// compressed sizes are printed once, so speed is read beside the ratio.
fn encoders(c: &mut Criterion) {
    let mut group = c.benchmark_group("encoders");
    for (name, payload) in [
        ("json_1k", json_payload(1024)),
        ("json_16k", json_payload(16 << 10)),
        ("json_256k", json_payload(256 << 10)),
    ] {
        let payload = Bytes::from(payload);
        group.throughput(Throughput::Bytes(payload.len() as u64));
        let agreement = Agreement {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..Agreement::default()
        };
        let config = DeflateConfig::new()
            .server_no_context_takeover(true)
            .threshold(0);
        let mut server = config.extension(Role::Server, agreement);
        let mut libdeflate =
            libdeflater::Compressor::new(libdeflater::CompressionLvl::new(1).unwrap_or_default());
        let mut out = vec![0; libdeflate.deflate_compress_bound(payload.len())];
        let zlib = |p: &[u8]| {
            let mut enc = flate2::write::DeflateEncoder::new(
                Vec::with_capacity(p.len()),
                flate2::Compression::new(1),
            );
            std::io::Write::write_all(&mut enc, p).map(|()| enc.finish())
        };
        let sizes = (
            server
                .encode(OpCode::Text, &payload)
                .ok()
                .flatten()
                .map_or(0, |(_, c)| c.len()),
            libdeflate
                .deflate_compress(&payload, &mut out)
                .unwrap_or_default(),
            zlib(&payload)
                .ok()
                .and_then(Result::ok)
                .map_or(0, |c| c.len()),
        );
        eprintln!(
            "{name}: {} bytes -> sockeye {}, libdeflate {}, zlib-rs {}",
            payload.len(),
            sizes.0,
            sizes.1,
            sizes.2
        );
        group.bench_with_input(BenchmarkId::new("sockeye", name), &payload, |b, p| {
            b.iter(|| server.encode(OpCode::Text, black_box(p)));
        });
        group.bench_with_input(BenchmarkId::new("libdeflate", name), &payload, |b, p| {
            b.iter(|| libdeflate.deflate_compress(black_box(p), &mut out));
        });
        group.bench_with_input(BenchmarkId::new("zlib_rs", name), &payload, |b, p| {
            b.iter(|| zlib(black_box(p)));
        });
    }
    group.finish();
}

criterion_group!(benches, deflate, encoders);
criterion_main!(benches);
