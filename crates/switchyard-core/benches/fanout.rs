//! The fan-out path: one publication into N subscribers' outbound queues
//! (encoded once, framed once, the same bytes shared), and the writers'
//! side taking them out again.
//!
//!   cargo bench -p switchyard-core --bench fanout

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use switchyard_core::config::SlowConsumerPolicy;
use switchyard_core::hub::{Hub, Subscriber};
use switchyard_core::outbound::{OutboundQueue, outbound};
use switchyard_core::protocol::Protocol;
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

criterion_group!(benches, broadcast);
criterion_main!(benches);
