//! Frame headers and whole frames through the connection: parse and encode.

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sockeye_proto::frame::{FrameHeader, OpCode};
use sockeye_proto::{Config, Connection, Message, Role};
use std::hint::black_box;

fn header(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_header");
    for len in [20u64, 1024, 65536, 1 << 20] {
        let h = FrameHeader::new(OpCode::Binary, len, Some([1, 2, 3, 4]));
        let mut wire = Vec::new();
        h.encode(&mut wire);
        group.bench_with_input(BenchmarkId::new("parse", len), &wire, |b, wire| {
            b.iter(|| FrameHeader::parse(black_box(wire)));
        });
        group.bench_with_input(BenchmarkId::new("encode", len), &h, |b, h| {
            b.iter(|| black_box(h).to_bytes());
        });
    }
    group.finish();
}

/// A batch of masked client frames through a server connection (unmask,
/// validate, deliver) and server frames out (frame, buffer).
fn connection(c: &mut Criterion) {
    let mut group = c.benchmark_group("connection");
    for (len, text) in [(20usize, true), (1024, false), (65536, false)] {
        let batch = 64;
        let mut client = Connection::new(Role::Client, Config::default());
        let payload = vec![b'x'; len];
        for _ in 0..batch {
            let m = if text {
                Message::text(String::from_utf8(payload.clone()).unwrap_or_default())
            } else {
                Message::binary(payload.clone())
            };
            let _ = client.send(m);
        }
        let mut wire = Vec::new();
        client.poll_transmit(&mut wire);
        group.throughput(Throughput::Bytes((len * batch) as u64));
        group.bench_with_input(BenchmarkId::new("read", len), &wire, |b, wire| {
            let mut server = Connection::new(Role::Server, Config::default());
            let mut buf = BytesMut::with_capacity(wire.len());
            b.iter(|| {
                buf.extend_from_slice(wire);
                let mut n = 0;
                while !buf.is_empty() {
                    let _ = server.handle_read(&mut buf);
                    while let Some(m) = server.poll_event() {
                        n += m.len();
                        drop(black_box(m));
                    }
                }
                n
            });
        });
        let message = Message::binary(payload.clone());
        group.bench_with_input(BenchmarkId::new("write", len), &message, |b, message| {
            let mut server = Connection::new(Role::Server, Config::default());
            let mut out = Vec::with_capacity((len + 14) * batch);
            b.iter(|| {
                for _ in 0..batch {
                    let _ = server.send(message.clone());
                }
                out.clear();
                server.poll_transmit(&mut out)
            });
        });
    }
    group.finish();
}

/// One large masked frame arriving in socket-sized pieces, each copied in
/// (as a read would) and handed to the connection before the next.
fn large_frame_in_pieces(c: &mut Criterion) {
    let mut group = c.benchmark_group("large_frame");
    let len = 1usize << 20;
    let mut client = Connection::new(Role::Client, Config::default());
    let _ = client.send(Message::binary(vec![0xA5; len]));
    let mut wire = Vec::new();
    client.poll_transmit(&mut wire);
    group.throughput(Throughput::Bytes(len as u64));
    for piece in [16usize << 10, 64 << 10] {
        group.bench_with_input(BenchmarkId::new("read", piece), &wire, |b, wire| {
            let mut server = Connection::new(Role::Server, Config::default());
            b.iter(|| {
                let mut buf = BytesMut::with_capacity(wire.len());
                let mut n = 0;
                for chunk in wire.chunks(piece) {
                    buf.extend_from_slice(chunk);
                    let _ = server.handle_read(&mut buf);
                }
                while let Some(m) = server.poll_event() {
                    n += m.len();
                    drop(black_box(m));
                }
                n
            });
        });
    }
    group.finish();
}

criterion_group!(benches, header, connection, large_frame_in_pieces);
criterion_main!(benches);
