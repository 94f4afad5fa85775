//! The fan-out path: one publication into N subscribers' outbound queues
//! (encoded once, framed once, the one frame shared), and the writers' side
//! taking them out again, as at a writer's wake-up; a storm of subscribes
//! to one channel; and the read path, client frames out of a stream.
//!
//!   cargo bench -p switchyard-core --bench fanout

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Waker};
use switchyard_core::config::SlowConsumerPolicy;
use switchyard_core::hub::{Hub, Subscriber};
use switchyard_core::outbound::{OutboundQueue, outbound};
use switchyard_core::protocol::Protocol;
use switchyard_core::wsread::FrameReader;
use switchyard_proto::v1::Envelope;

fn envelope() -> Envelope {
    let data = format!(r#"{{"t":1700000000000000,"p":"{}"}}"#, "x".repeat(96));
    Envelope {
        channel: "bench".into(),
        data: Bytes::from(data),
        published_at_us: 1_700_000_000_000_000,
        ..Default::default()
    }
}

/// A hub with `n` subscribers on "bench", and their queues.
fn hub_with(n: usize, protocol: Protocol) -> (Hub, Vec<OutboundQueue>) {
    let hub = Hub::new();
    let mut queues = Vec::with_capacity(n);
    for conn in 0..n {
        let (tx, rx) = outbound(64 << 20);
        hub.subscribe("bench", conn as u64, Subscriber::new(protocol, tx), SlowConsumerPolicy::Disconnect, false);
        queues.push(rx);
    }
    (hub, queues)
}

fn broadcast(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast");
    let envelope = envelope();
    for n in [100usize, 1_000, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        for protocol in [Protocol::Json, Protocol::Protobuf] {
            let (hub, mut queues) = hub_with(n, protocol);
            let mut batch = Vec::new();
            group.bench_with_input(BenchmarkId::new(format!("{protocol:?}"), n), &n, |b, _| {
                b.iter_batched(
                    || (),
                    |()| {
                        black_box(hub.broadcast(black_box(&envelope)));
                        // What the writers do: take the frames (keeps the
                        // queues from growing across iterations).
                        for queue in &mut queues {
                            queue.take_queued(&mut batch, usize::MAX);
                            batch.clear();
                        }
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

/// A writer's wake-up at 1 M deliveries/s (the generator's 1 ms ticks put
/// about 13 publications in each): 13 publications fanned out to 100
/// subscribers, then each queue taken in one batch and waited on again,
/// found empty, as the writer does after its write.
fn writer_wakeup(c: &mut Criterion) {
    let mut group = c.benchmark_group("writer_wakeup");
    let envelope = envelope();
    let (hub, mut queues) = hub_with(100, Protocol::Json);
    let mut batch = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    group.throughput(Throughput::Elements(1300));
    group.bench_function("13_frames/100", |b| {
        b.iter(|| {
            for _ in 0..13 {
                black_box(hub.broadcast(black_box(&envelope)));
            }
            for queue in &mut queues {
                queue.take_queued(&mut batch, 256);
                batch.clear();
                let ready = pin!(queue.ready());
                assert!(ready.poll(&mut cx).is_pending());
            }
        })
    });
    group.finish();
}

/// 10,000 connections subscribing to one channel, then leaving it.
fn subscribe(c: &mut Criterion) {
    let mut group = c.benchmark_group("subscribe");
    let n = 10_000usize;
    group.throughput(Throughput::Elements(n as u64));
    let outbounds: Vec<_> = (0..n).map(|_| outbound(1 << 20)).collect();
    group.bench_function("one_channel/10000", |b| {
        b.iter(|| {
            let hub = Hub::new();
            for (conn, (tx, _)) in outbounds.iter().enumerate() {
                let subscriber = Subscriber::new(Protocol::Json, tx.clone());
                black_box(hub.subscribe("bench", conn as u64, subscriber, SlowConsumerPolicy::Disconnect, false));
            }
            for conn in 0..n {
                black_box(hub.unsubscribe("bench", conn as u64));
            }
        })
    });
    group.finish();
}

/// 1,000 masked 128-byte client frames read from a stream that has them all.
fn read_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_frames");
    let n = 1_000usize;
    let mask = [1u8, 2, 3, 4];
    let payload = [b'x'; 128];
    let mut wire = Vec::new();
    for _ in 0..n {
        wire.extend_from_slice(&[0x81, 0x80 | 126, 0, 128]);
        wire.extend_from_slice(&mask);
        wire.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("masked_128/1000", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut reader = FrameReader::new(&wire[..], 1 << 16);
                for _ in 0..n {
                    black_box(reader.read_frame().await.expect("a frame"));
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, broadcast, writer_wakeup, subscribe, read_frames);
criterion_main!(benches);
