//! Reading a channel's history through `FCALL switchyard_history`.

use crate::broker::{History, StreamPosition};
use bytes::Bytes;
use prost::Message as _;
use redis::Value;
use redis::aio::ConnectionLike;
use switchyard_proto::v1::Envelope;

pub async fn read<C: ConnectionLike + Send>(
    conn: &mut C,
    channel: &str,
    since: Option<&StreamPosition>,
    limit: usize,
) -> redis::RedisResult<History> {
    let since_arg = since.map_or(String::new(), |s| s.offset.to_string());
    let reply: Vec<Value> = redis::cmd("FCALL")
        .arg("switchyard_history")
        .arg(1)
        .arg(channel)
        .arg(since_arg)
        .arg(limit.max(1))
        .query_async(conn)
        .await?;
    let mut values = reply.into_iter();
    let epoch: String = values.next().map(redis::from_redis_value).transpose()?.unwrap_or_default();
    let offset: u64 = values.next().map(redis::from_redis_value).transpose()?.unwrap_or_default();
    let position = StreamPosition { epoch, offset };
    let mut publications = Vec::new();
    for value in values {
        let bytes: Vec<u8> = redis::from_redis_value(value)?;
        // The library wrote these; one that does not decode is skipped.
        if let Ok(envelope) = Envelope::decode(Bytes::from(bytes)) {
            publications.push(envelope);
        }
    }
    Ok(History::read(publications, position, since))
}
