//! `publish`: from a client (its command), or from a backend (the HTTP
//! API). Backends that call the Redis function directly bypass the node.

use super::session::ClientSession;
use super::{Refusal, Reply, resolve};
use crate::node::{Node, publish_options};
use bytes::Bytes;
use switchyard_broker::StreamPosition;
use switchyard_core::clock::unix_micros;
use switchyard_core::codes::ErrorCode;
use switchyard_core::metric;
use switchyard_proto::v1::{ClientInfo, Envelope, PublishRequest, PublishResult, server_frame};

/// Publishes `data` on `channel`; `publisher` is the client, if one
/// published. Answers the publication's position (`""`, 0 for channels
/// without history).
pub async fn publish(
    node: &Node,
    channel: &str,
    data: Bytes,
    publisher: Option<ClientInfo>,
) -> Result<StreamPosition, Refusal> {
    let (_, namespace) = resolve(node, channel)?;
    if data.is_empty() {
        return Err(Refusal::new(ErrorCode::BadRequest, "publish: data is required"));
    }
    let envelope = Envelope {
        channel: channel.to_owned(),
        data,
        published_at_us: unix_micros(),
        origin_node: node.name.clone(),
        publisher,
        ..Default::default()
    };
    let position = node.stores.broker.publish(envelope, publish_options(namespace)).await?;
    metric::broker_published().increment(1);
    Ok(position)
}

impl ClientSession {
    pub(super) async fn publish(&mut self, request: PublishRequest) -> Reply {
        let (channel, namespace) = resolve(&self.node, &request.channel)?;
        if !namespace.allow_publish {
            return Err(Refusal::new(ErrorCode::PermissionDenied, "clients may not publish in this namespace"));
        }
        self.check_user_channel(&channel)?;
        let history = namespace.keeps_history();
        let position = publish(&self.node, &request.channel, request.data, Some(self.info())).await?;
        Ok(Some(server_frame::Message::Publish(PublishResult {
            epoch: history.then_some(position.epoch),
            offset: history.then_some(position.offset),
        })))
    }
}
