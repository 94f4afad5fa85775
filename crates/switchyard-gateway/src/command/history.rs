//! `history`: a channel's publications after a position, or its newest.

use super::session::ClientSession;
use super::{Refusal, Reply, resolve};
use crate::node::{Node, publish_options};
use switchyard_broker::StreamPosition;
use switchyard_core::codes::ErrorCode;
use switchyard_core::hub;
use switchyard_proto::v1::{HistoryRequest, HistoryResult, server_frame};

/// The publications of `channel` after `since` (exclusive), or the newest
/// ones without it; at most `limit` (0: the namespace's `history_size`,
/// which also caps it). 107 for a namespace without history, 112 when
/// history no longer holds what follows `since`.
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
    Ok(HistoryResult {
        publications: history.publications.iter().map(hub::publication).collect(),
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
