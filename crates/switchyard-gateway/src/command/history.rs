//! `history`: a channel's publications after a position, or its newest.

use super::session::ClientSession;
use super::{Refusal, Reply, resolve};
use crate::node::{Node, publish_options};
use switchyard_broker::StreamPosition;
use switchyard_core::codes::ErrorCode;
use switchyard_core::hub;
use switchyard_proto::v1::{Envelope, HistoryRequest, HistoryResult, server_frame};

/// Room kept in the reply budget for what is not a publication: the reply
/// or `sub` push around the publications, and error replies beside it.
const REPLY_HEADROOM: usize = 8 * 1024;

/// The bytes of publications one reply may carry (`client.max_reply_bytes`
/// less the headroom).
pub(super) fn reply_budget(node: &Node) -> usize {
    node.config.client.max_reply_bytes.saturating_sub(REPLY_HEADROOM)
}

/// What a publication may take in a reply, in either encoding, at most:
/// its data as base64 (a JSON client gets bytes that are not JSON so), the
/// channel, the publisher, and the fields around them.
pub(super) fn reply_size(envelope: &Envelope) -> usize {
    let publisher = envelope.publisher.as_ref().map_or(0, |p| p.client.len() + p.user.len() + p.info.len());
    envelope.data.len().div_ceil(3) * 4 + envelope.channel.len() + envelope.epoch.len() + publisher + 96
}

/// How many of `publications`, taken from the front, fit in `budget`.
pub(super) fn fitting(publications: &[Envelope], budget: usize) -> usize {
    let mut used = 0;
    publications
        .iter()
        .take_while(|p| {
            used += reply_size(p);
            used <= budget
        })
        .count()
}

/// The publications of `channel` after `since` (exclusive), or the newest
/// ones without it; at most `limit` (0: the namespace's `history_size`,
/// which also caps it), and at most what fits one reply
/// (`client.max_reply_bytes`): after `since`, the oldest that fit (the
/// caller pages on from the last one, up to the channel's position in the
/// answer); without it, the newest that fit. 107 for a namespace without
/// history, 112 when history no longer holds what follows `since`.
pub async fn history(
    node: &Node,
    channel: &str,
    since: Option<StreamPosition>,
    limit: usize,
) -> Result<HistoryResult, Refusal> {
    let (_, namespace) = resolve(node, channel)?;
    if !namespace.keeps_history() {
        return Err(Refusal::new(ErrorCode::BadRequest, "this channel's namespace keeps no history"));
    }
    let size = namespace.history_size;
    let limit = if limit == 0 { size } else { limit.min(size) };
    let history = node.stores.broker.history(channel, since.as_ref(), limit, publish_options(namespace)).await?;
    if since.as_ref().is_some_and(|s| history.lost_after(s)) {
        return Err(Refusal::plain(ErrorCode::Unrecoverable));
    }
    let mut publications = history.publications;
    let budget = reply_budget(node);
    if since.is_some() {
        let fit = fitting(&publications, budget);
        if fit == 0 && !publications.is_empty() {
            // One publication larger than a reply: an empty page would have
            // a client page on from the same place forever.
            let offset = publications[0].offset;
            let message = format!("publication {offset} is larger than one reply (client.max_reply_bytes)");
            return Err(Refusal::new(ErrorCode::LimitExceeded, message));
        }
        publications.truncate(fit);
    } else {
        publications.reverse();
        publications.truncate(fitting(&publications, budget));
        publications.reverse();
    }
    Ok(HistoryResult {
        publications: publications.iter().map(hub::publication).collect(),
        epoch: history.position.epoch,
        offset: history.position.offset,
    })
}

impl ClientSession {
    pub(super) async fn history(&mut self, request: HistoryRequest) -> Reply {
        let (channel, _) = resolve(&self.node, &request.channel)?;
        self.check_user_channel(&channel)?;
        let since = request.since.map(|s| StreamPosition::new(s.epoch, s.offset));
        let result = history(&self.node, &request.channel, since, request.limit as usize).await?;
        Ok(Some(server_frame::Message::History(result)))
    }
}
