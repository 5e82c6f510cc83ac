//! UTF-8: whole buffers, pieces across fragments, and early failure.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sockeye_proto::utf8::{Utf8Validator, validate};
use std::hint::black_box;

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    let ascii = "The quick brown fox jumps over the lazy dog. ".repeat(1500);
    let mixed = "Grüße, κόσμε, 日本語, 🦀 rust! ".repeat(2000);
    for (name, text) in [("ascii", &ascii), ("mixed", &mixed)] {
        let bytes = text.as_bytes();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("whole", name), bytes, |b, bytes| {
            b.iter(|| validate(black_box(bytes)));
        });
        group.bench_with_input(BenchmarkId::new("std", name), bytes, |b, bytes| {
            b.iter(|| std::str::from_utf8(black_box(bytes)).is_ok());
        });
        // Fragments of 1000 bytes: code points get cut at fragment edges.
        group.bench_with_input(
            BenchmarkId::new("fragments_1000", name),
            bytes,
            |b, bytes| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    for piece in bytes.chunks(1000) {
                        v.feed(black_box(piece))?;
                    }
                    v.finish()
                });
            },
        );
    }
    // Invalid at the very end: the whole buffer is scanned, then rejected.
    let mut invalid = mixed.clone().into_bytes();
    invalid.push(0xFF);
    group.throughput(Throughput::Bytes(invalid.len() as u64));
    group.bench_function("invalid_at_end", |b| {
        b.iter(|| {
            let mut v = Utf8Validator::new();
            v.feed(black_box(&invalid))
        });
    });
    group.finish();
}

criterion_group!(benches, utf8);
criterion_main!(benches);
