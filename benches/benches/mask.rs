//! Masking: the kernel picked at run time (AVX-512F or AVX2 where the CPU has
//! one) against the portable word loop and the byte-at-a-time reference.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sockeye_proto::mask::{apply_mask, apply_mask_bytewise, apply_mask_portable};
use std::hint::black_box;

fn mask(c: &mut Criterion) {
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut group = c.benchmark_group("mask");
    for size in [20usize, 1024, 65536, 1 << 20] {
        let mut buf = vec![0xABu8; size + 1];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("word", size), &size, |b, _| {
            // Offset by one byte: masking must not depend on alignment.
            b.iter(|| apply_mask(black_box(&mut buf[1..]), key, 0));
        });
        group.bench_with_input(BenchmarkId::new("portable", size), &size, |b, _| {
            b.iter(|| apply_mask_portable(black_box(&mut buf[1..]), key, 0));
        });
        group.bench_with_input(BenchmarkId::new("bytewise", size), &size, |b, _| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf[1..]), key, 0));
        });
    }
    group.finish();
}

criterion_group!(benches, mask);
criterion_main!(benches);
