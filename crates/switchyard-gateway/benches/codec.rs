//! The codec: decoding a client's `publish` command and encoding the
//! publication frame every subscriber gets, in both encodings.
//!
//!   cargo bench -p switchyard-gateway --bench codec

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use std::hint::black_box;
use switchyard_core::protocol::Protocol;
use switchyard_gateway::codec;
use switchyard_proto::v1::{ClientFrame, Publication, PublishRequest, ServerFrame, client_frame, server_frame};

/// A 128-byte JSON payload, as the load generator sends.
fn payload() -> String {
    format!(r#"{{"t":1700000000000000,"p":"{}"}}"#, "x".repeat(128 - 31))
}

fn decode(c: &mut Criterion) {
    let data = payload();
    let json = format!(r#"{{"id":7,"publish":{{"channel":"bench","data":{data}}}}}"#);
    let protobuf = ClientFrame {
        id: 7,
        command: Some(client_frame::Command::Publish(PublishRequest {
            channel: "bench".into(),
            data: Bytes::from(data.clone()),
            ..Default::default()
        })),
    }
    .encode_to_vec();
    let mut group = c.benchmark_group("decode_publish");
    group.throughput(Throughput::Elements(1));
    group.bench_function("json", |b| {
        b.iter(|| codec::decode(Protocol::Json, black_box(json.as_bytes()), true).expect("valid"))
    });
    group.bench_function("protobuf", |b| {
        b.iter(|| codec::decode(Protocol::Protobuf, black_box(&protobuf), false).expect("valid"))
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let frame = ServerFrame {
        id: 0,
        message: Some(server_frame::Message::Pub(Publication {
            channel: "bench".into(),
            data: Bytes::from(payload()),
            offset: Some(42),
            epoch: Some("a1b2c3".into()),
            ..Default::default()
        })),
    };
    let mut group = c.benchmark_group("encode_publication");
    group.throughput(Throughput::Elements(1));
    group.bench_function("json", |b| b.iter(|| codec::encode(Protocol::Json, black_box(&frame))));
    group.bench_function("protobuf", |b| b.iter(|| codec::encode(Protocol::Protobuf, black_box(&frame))));
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
