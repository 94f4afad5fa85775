//! Fetches the identity provider's key set (`auth.jwks_url`) again every
//! `auth.jwks_refresh_interval`, so that keys it rotates in are known
//! before the first token signed with them comes.

use crate::node::Node;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub async fn run(node: Arc<Node>, stop: CancellationToken) {
    let Some(remote) = &node.auth.remote else { return };
    let mut tick = tokio::time::interval(node.config.auth.jwks_refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the node fetched at start
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let _ = remote.fetch().await;
    }
}
