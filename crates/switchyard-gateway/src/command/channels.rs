//! `channels`: the channels of the cluster with their subscribers, by a
//! survey of every node through the broker.

use super::Refusal;
use crate::node::Node;
use std::collections::BTreeMap;
use switchyard_proto::v1::control::Op;
use switchyard_proto::v1::{ChannelsReply, ChannelsRequest, Control};

/// What a survey found.
#[derive(Debug, Default)]
pub struct Survey {
    /// The channels with their subscribers on every node that answered, by
    /// name.
    pub channels: BTreeMap<String, u32>,
    /// The live nodes (in the registry) that did not answer in time.
    pub unanswered: Vec<String>,
}

/// The channels of the cluster with their subscribers on every node that
/// answered within `broker.survey_timeout`; with `prefix`, only those that
/// start with it. A node that does not answer in time (stopped, its path
/// silent) is named, not waited for.
pub async fn channels(node: &Node, prefix: &str) -> Result<Survey, Refusal> {
    let live: Vec<String> = node.stores.registry.nodes().await?.into_iter().map(|n| n.name).collect();
    let expected = live.len().max(1);
    let pending = node.requests.start(expected);
    let request = ChannelsRequest { request_id: pending.id, reply_to: node.name.clone(), prefix: prefix.to_owned() };
    node.stores.broker.send_control(None, Control { op: Some(Op::ChannelsRequest(request)) }).await?;
    let mut survey = Survey::default();
    let mut answered = Vec::new();
    for answer in pending.collect(expected as u64, node.config.broker.survey_timeout).await {
        let Op::ChannelsReply(reply) = answer else { continue };
        answered.push(reply.node);
        for (channel, count) in reply.channels {
            *survey.channels.entry(channel).or_insert(0) += count;
        }
    }
    survey.unanswered = live.into_iter().filter(|name| !answered.contains(name)).collect();
    Ok(survey)
}

/// This node's answer to a survey: its channels with their local
/// subscribers.
pub fn local(node: &Node, request: &ChannelsRequest) -> ChannelsReply {
    let channels = node.hub.channels_with_prefix(&request.prefix);
    ChannelsReply {
        request_id: request.request_id,
        node: node.name.clone(),
        channels: channels.into_iter().map(|(c, n)| (c, n as u32)).collect(),
    }
}
