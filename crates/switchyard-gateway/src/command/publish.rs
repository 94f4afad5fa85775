//! `publish`: from a client (its command), or from a backend (the HTTP
//! API). Backends that call the Redis function directly bypass the node.

use super::session::ClientSession;
use super::{Refusal, Reply, resolve};
use crate::node::{Node, publish_options};
use bytes::Bytes;
use std::collections::HashMap;
use switchyard_broker::{PublishOptions, StreamPosition};
use switchyard_core::clock::unix_micros;
use switchyard_core::codes::ErrorCode;
use switchyard_core::metric;
use switchyard_proto::json::raw::nesting;
use switchyard_proto::v1::control::Op;
use switchyard_proto::v1::{ClientInfo, Envelope, PublishRequest, PublishResult, Receipt, server_frame};

/// How deep a publication's JSON may nest, on every entry point (a client's
/// `publish`, the HTTP API, the admin page): JSON readers stop at 128
/// (serde_json among them), and a publication must stay readable by every
/// subscriber and by `history`, whatever wraps it.
pub const MAX_DATA_NESTING: usize = 64;

/// Tags one publication may carry at most, and their sizes: they travel
/// with every delivery and are matched against every distinct filter.
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_KEY: usize = 64;
pub const MAX_TAG_VALUE: usize = 256;

/// Receipt answers buffered before the publisher's node reads them: the
/// answers of this many nodes arrive without waiting on the reader.
const RECEIPT_ANSWERS: usize = 64;

/// Publishes `data` with `tags` on `channel`; `publisher` is the client,
/// if one published. Answers the publication's position (`""`, 0 for
/// channels without history), and with `receipt` where it went.
pub async fn publish(
    node: &Node,
    channel: &str,
    data: Bytes,
    tags: HashMap<String, String>,
    publisher: Option<ClientInfo>,
    receipt: bool,
    idempotency_key: Option<&str>,
) -> Result<(StreamPosition, Option<Receipt>), Refusal> {
    if idempotency_key.is_some_and(|k| k.is_empty() || k.len() > 64) {
        return Err(Refusal::new(ErrorCode::BadRequest, "idempotency_key: 1 to 64 bytes"));
    }
    let (mut envelope, options) = envelope(node, channel, data, tags, publisher)?;
    if !receipt {
        let position = match idempotency_key {
            None => node.stores.broker.publish(envelope, options).await?,
            Some(key) => node.stores.broker.publish_counted(envelope, options, Some(key)).await?.0,
        };
        metric::broker_published().increment(1);
        return Ok((position, None));
    }
    // One broker message out (the publication carries the request), one
    // answer back from each node that got it.
    let pending = node.requests.start(RECEIPT_ANSWERS);
    envelope.receipt_to = node.name.clone();
    envelope.receipt_id = pending.id;
    let (position, receivers) = node.stores.broker.publish_counted(envelope, options, idempotency_key).await?;
    metric::broker_published().increment(1);
    let expected = receivers.unwrap_or(0);
    let answers = pending.collect(expected, node.config.broker.receipt_timeout).await;
    let mut receipt =
        Receipt { unanswered: expected.saturating_sub(answers.len() as u64) as u32, ..Default::default() };
    for answer in answers {
        if let Op::ReceiptReply(reply) = answer
            && reply.had_subscribers
        {
            receipt.nodes += 1;
            receipt.clients += reply.queued;
        }
    }
    Ok((position, Some(receipt)))
}

/// The Envelope of a publication of `data` with `tags` on `channel`, and
/// how its namespace keeps it; refused as every entry point refuses it
/// (empty or too deeply nested data, too many or too long tags).
pub fn envelope(
    node: &Node,
    channel: &str,
    data: Bytes,
    tags: HashMap<String, String>,
    publisher: Option<ClientInfo>,
) -> Result<(Envelope, PublishOptions), Refusal> {
    let (_, namespace) = resolve(node, channel)?;
    if data.is_empty() {
        return Err(Refusal::new(ErrorCode::BadRequest, "publish: data is required"));
    }
    if data.first().is_some_and(|b| matches!(b, b'[' | b'{')) && nesting(&data) > MAX_DATA_NESTING {
        let message = format!("publish: data nests deeper than {MAX_DATA_NESTING} levels");
        return Err(Refusal::new(ErrorCode::BadRequest, message));
    }
    check_tags(&tags)?;
    let envelope = Envelope {
        channel: channel.to_owned(),
        data,
        published_at_us: unix_micros(),
        origin_node: node.name.clone(),
        publisher,
        tags,
        ..Default::default()
    };
    Ok((envelope, publish_options(namespace)))
}

/// Tags within [`MAX_TAGS`], keys of 1 to [`MAX_TAG_KEY`] bytes, values of
/// at most [`MAX_TAG_VALUE`].
fn check_tags(tags: &HashMap<String, String>) -> Result<(), Refusal> {
    if tags.len() > MAX_TAGS {
        return Err(Refusal::new(ErrorCode::BadRequest, format!("tags: at most {MAX_TAGS}")));
    }
    for (key, value) in tags {
        if key.is_empty() || key.len() > MAX_TAG_KEY || value.len() > MAX_TAG_VALUE {
            let message = format!("tags: keys of 1 to {MAX_TAG_KEY} bytes, values of at most {MAX_TAG_VALUE}");
            return Err(Refusal::new(ErrorCode::BadRequest, message));
        }
    }
    Ok(())
}

impl ClientSession {
    pub(super) async fn publish(&mut self, id: u32, request: PublishRequest) -> Reply {
        let (channel, namespace) = resolve(&self.node, &request.channel)?;
        if !namespace.allow_publish {
            return Err(Refusal::new(ErrorCode::PermissionDenied, "clients may not publish in this namespace"));
        }
        self.check_user_channel(&channel)?;
        let history = namespace.keeps_history();
        let in_flight = !namespace.proxy_publish && self.may_keep_in_flight(&request);
        let data = match namespace.proxy_publish && !request.data.is_empty() {
            true => self.publish_by_proxy(&request.channel, request.data).await?,
            false => request.data,
        };
        let key = (!request.idempotency_key.is_empty()).then_some(request.idempotency_key.as_str());
        if in_flight {
            // Answered when the broker has it, while the session reads on.
            let (envelope, options) = envelope(&self.node, &request.channel, data, request.tags, Some(self.info()))?;
            self.publish_in_flight(id, history, envelope, options).await;
            return Ok(None);
        }
        let (position, receipt) =
            publish(&self.node, &request.channel, data, request.tags, Some(self.info()), request.receipt, key).await?;
        Ok(Some(server_frame::Message::Publish(PublishResult {
            epoch: history.then_some(position.epoch),
            offset: history.then_some(position.offset),
            receipt,
        })))
    }
}
