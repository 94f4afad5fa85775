//! `subscribe` (with `recover`), `unsubscribe`, and the subscriptions the
//! server makes on its own (`subs` claim, user operations), which the
//! client learns of by `sub` and `unsub` pushes.

use super::joined::Delivery;
use super::presence;
use super::session::{ClientSession, Joined};
use super::{Refusal, Reply, resolve};
use crate::node::{membership, publish_options};
use switchyard_broker::StreamPosition;
use switchyard_core::channel::Channel;
use switchyard_core::codes::ErrorCode;
use switchyard_core::config::{NamespaceConfig, SubscribePermission};
use switchyard_core::filter::Filter;
use switchyard_core::hub::{self, Subscribed, Subscriber, Unsubscribed};
use switchyard_core::metric;
use switchyard_proto::v1::{
    Publication, ServerFrame, ServerSubscribe, ServerUnsubscribe, SubscribeRequest, SubscribeResult,
    UnsubscribeRequest, UnsubscribeResult, server_frame,
};
use tracing::debug;

/// A channel just joined: where it stands, and what was recovered.
pub(super) struct Joining {
    /// For channels with history.
    pub position: Option<StreamPosition>,
    pub recovered: Option<bool>,
    pub publications: Vec<Publication>,
    /// Whether the hub holds live publications for this subscriber until
    /// [`switchyard_core::hub::Hub::finish_recovery`].
    pub held: bool,
    /// Whether it gets deltas.
    pub delta: bool,
}

/// A publication as a push frame.
pub(super) fn push(publication: Publication) -> ServerFrame {
    ServerFrame { id: 0, message: Some(server_frame::Message::Pub(publication)) }
}

impl ClientSession {
    pub(super) async fn subscribe(&mut self, id: u32, request: SubscribeRequest) -> Reply {
        self.replay_budget = super::history::reply_budget(&self.node);
        let (channel, namespace) = resolve(&self.node, &request.channel)?;
        if self.channels.contains_key(channel.as_str()) {
            return Err(Refusal::plain(ErrorCode::AlreadySubscribed));
        }
        self.check_room()?;
        let delivery = Self::delivery(&request)?;
        self.check_subscribe(&channel, namespace, &request.token, &request.data).await?;
        let since = request.recover.then_some(StreamPosition::new(request.epoch, request.offset));
        let name = channel.as_str().to_owned();
        let joining = self.join(&name, since, false, request.latest, delivery).await?;
        self.save().await;
        let delta = joining.delta.then_some(true);
        let result = match &joining.position {
            None => SubscribeResult { delta, ..SubscribeResult::default() },
            Some(position) => SubscribeResult {
                epoch: Some(position.epoch.clone()),
                offset: Some(position.offset),
                recovered: joining.recovered,
                publications: joining.publications,
                delta,
            },
        };
        let reply = ServerFrame { id, message: Some(server_frame::Message::Subscribe(result)) };
        if !joining.held {
            return Ok(reply.message);
        }
        let reply = self.reply_frame(reply);
        self.node.hub.finish_recovery(&name, self.id, vec![reply], joining.position);
        Ok(None)
    }

    /// The filter and delta a `subscribe` asks for, checked: a malformed
    /// filter or an unknown delta format is refused with 107.
    fn delivery(request: &SubscribeRequest) -> Result<Delivery, Refusal> {
        let delta = match request.delta.as_str() {
            "" => false,
            "fossil" => true,
            other => return Err(Refusal::new(ErrorCode::BadRequest, format!("delta: {other:?} (only \"fossil\")"))),
        };
        if let Some(filter) = &request.filter {
            Filter::compile(filter).map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))?;
        }
        Ok(Delivery { filter: request.filter.clone().map(Box::new), delta })
    }

    /// A channel named in a stream's URL: checked like a `subscribe`, and
    /// joined like a server-side subscription (a `sub` push, then `pub`s).
    pub(super) async fn subscribe_from_url(
        &mut self,
        name: &str,
        since: Option<StreamPosition>,
    ) -> Result<(), Refusal> {
        let (channel, namespace) = resolve(&self.node, name)?;
        self.check_subscribe(&channel, namespace, "", &[]).await?;
        self.server_subscribe_since(name, since).await
    }

    pub(super) async fn unsubscribe(&mut self, request: UnsubscribeRequest) -> Reply {
        let (channel, _) = resolve(&self.node, &request.channel)?;
        if let Some(joined) = self.channels.remove(channel.as_str()) {
            self.leave(channel.as_str(), joined.in_presence).await;
            self.save().await;
        }
        Ok(Some(server_frame::Message::Unsubscribe(UnsubscribeResult {})))
    }

    /// Subscribes this connection to `name` on the server's decision: no
    /// permission checks (the token or the backend decided), the channel
    /// limit still holds. The client gets a `sub` push before the first
    /// `pub`. Already subscribed: nothing happens.
    pub(super) async fn server_subscribe(&mut self, name: &str) -> Result<(), Refusal> {
        self.server_subscribe_since(name, None).await
    }

    /// [`ClientSession::server_subscribe`], recovering after `since`: the
    /// recovered publications follow the `sub` push.
    async fn server_subscribe_since(&mut self, name: &str, since: Option<StreamPosition>) -> Result<(), Refusal> {
        let (channel, _) = resolve(&self.node, name)?;
        if self.channels.contains_key(channel.as_str()) {
            return Ok(());
        }
        let joining = self.join(name, since, true, false, Delivery::default()).await?;
        let sub = ServerSubscribe {
            channel: name.to_owned(),
            epoch: joining.position.as_ref().map(|p| p.epoch.clone()),
            offset: joining.position.as_ref().map(|p| p.offset),
            recovered: joining.recovered,
        };
        let mut head = vec![self.frame(ServerFrame { id: 0, message: Some(server_frame::Message::Sub(sub)) })];
        head.extend(joining.publications.into_iter().map(|p| self.frame(push(p))));
        self.node.hub.finish_recovery(name, self.id, head, joining.position);
        self.save().await;
        Ok(())
    }

    /// Unsubscribes this connection from `name` on the server's decision;
    /// the client gets an `unsub` push after the last `pub`.
    pub(super) async fn server_unsubscribe(&mut self, name: &str) {
        let Some(joined) = self.channels.remove(name) else { return };
        self.leave(name, joined.in_presence).await;
        let unsub = ServerUnsubscribe { channel: name.to_owned() };
        self.send(ServerFrame { id: 0, message: Some(server_frame::Message::Unsub(unsub)) });
        self.save().await;
    }

    /// Subscribes to `name` on this node and, if it is the node's first
    /// subscriber, in the broker; enters presence where the namespace
    /// tracks it. In a namespace with history or join/leave (or with
    /// `hold`), live publications are held by the hub until the caller's
    /// [`switchyard_core::hub::Hub::finish_recovery`]; the channel's
    /// position is read after the broker subscription is in place, so
    /// nothing falls between what is recovered and what comes live.
    /// With a filter, only what passes it is recovered and delivered; deltas
    /// are granted where the namespace allows them (with a filter, against
    /// the previous publication the filter passed).
    pub(super) async fn join(
        &mut self,
        name: &str,
        since: Option<StreamPosition>,
        hold: bool,
        latest: bool,
        mut delivery: Delivery,
    ) -> Result<Joining, Refusal> {
        self.check_room()?;
        let node = self.node.clone();
        let (_, namespace) = resolve(&node, name)?;
        let history = namespace.keeps_history();
        let held = history || hold || namespace.join_leave;
        let filter = match &delivery.filter {
            Some(filter) => {
                Some(Filter::compile(filter).map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))?)
            }
            None => None,
        };
        delivery.delta &= namespace.delta;
        let passes =
            |envelope: &&switchyard_proto::v1::Envelope| filter.as_ref().is_none_or(|f| f.matches(&envelope.tags));
        let subscriber = Subscriber::new(self.protocol, self.outbound.clone())
            .deflated(self.deflate)
            .filtered(filter.clone())
            .with_delta(delivery.delta);
        match node.hub.subscribe(name, self.id, subscriber, namespace.slow_consumer, held) {
            Subscribed::First => {
                if let Err(e) = node.stores.broker.subscribe(&[name.to_owned()]).await {
                    node.hub.unsubscribe(name, self.id);
                    return Err(e.into());
                }
                membership::occupy(&node, name).await;
            }
            Subscribed::Joined => {}
            Subscribed::Already => return Err(Refusal::plain(ErrorCode::AlreadySubscribed)),
        }
        let mut joining =
            Joining { position: None, recovered: None, publications: Vec::new(), held, delta: delivery.delta };
        if history {
            let limit = if since.is_some() { namespace.history_size } else { 1 };
            let read = node.stores.broker.history(name, since.as_ref(), limit, publish_options(namespace)).await;
            let history = match read {
                Ok(history) => history,
                Err(e) => {
                    self.leave(name, false).await;
                    return Err(e.into());
                }
            };
            if since.is_some() {
                // What does not fit the session's replay budget is not
                // replayed: `recovered: false`, and the client reads
                // `history` in pages (or reports the gap).
                let size: usize = history.publications.iter().filter(passes).map(super::history::reply_size).sum();
                let fits = size <= self.replay_budget;
                let recovered = history.complete && fits;
                joining.recovered = Some(recovered);
                let outcome = match (history.complete, fits) {
                    (true, true) => "recovered",
                    (true, false) => "too_large",
                    (false, _) => "unrecoverable",
                };
                metric::recoveries(outcome).increment(1);
                if recovered {
                    self.replay_budget -= size;
                    joining.publications = history.publications.iter().filter(passes).map(hub::publication).collect();
                }
            } else if latest {
                // The newest publication (read for the position anyway):
                // the channel's current value for a late subscriber.
                joining.publications = history.publications.iter().filter(passes).map(hub::publication).collect();
            }
            joining.position = Some(history.position);
        }
        let in_presence = namespace.tracks_presence();
        if in_presence && let Err(refusal) = presence::enter(&node, name, namespace, self.info()).await {
            self.leave(name, false).await;
            return Err(refusal);
        }
        self.channels.insert(name, Joined { position: joining.position.clone(), in_presence, delivery });
        Ok(joining)
    }

    /// Leaves `channel` on this node (and in the broker, if it was the
    /// last local subscriber), and its presence.
    pub(super) async fn leave(&self, channel: &str, in_presence: bool) {
        let last = self.node.hub.unsubscribe(channel, self.id) == Unsubscribed::Last;
        if last && let Err(e) = self.node.stores.broker.unsubscribe(&[channel.to_owned()]).await {
            debug!(%channel, error = %e, "broker unsubscribe failed");
        }
        if in_presence && let Ok((_, namespace)) = resolve(&self.node, channel) {
            presence::exit(&self.node, channel, namespace, &self.client).await;
        }
        // After the presence: a member leaves before the channel is vacated.
        if last {
            membership::vacate(&self.node, channel).await;
        }
    }

    /// Room for one more channel on this connection (`client.max_channels`).
    pub(super) fn check_room(&self) -> Result<(), Refusal> {
        if self.channels.len() >= self.node.config.client.max_channels {
            return Err(Refusal::new(ErrorCode::LimitExceeded, "too many channels on this connection"));
        }
        Ok(())
    }

    /// Whether this client may subscribe to `channel` as it asks: a user
    /// channel is its user's, the token's `channels` claim holds, and then
    /// the namespace's permission (with the subscription `token`) or, where
    /// `proxy_subscribe` is set, the backend (given `data`) decides.
    async fn check_subscribe(
        &self,
        channel: &Channel<'_>,
        namespace: &NamespaceConfig,
        token: &str,
        data: &[u8],
    ) -> Result<(), Refusal> {
        self.check_user_channel(channel)?;
        if namespace.proxy_subscribe {
            self.check_subscribe_by_proxy(channel.as_str(), data).await
        } else {
            self.check_subscribe_permission(channel, namespace, token)
        }
    }

    /// A user channel (`name#user`) is for its user alone, and a token
    /// with a `channels` claim opens only the channels it names.
    pub(super) fn check_user_channel(&self, channel: &Channel<'_>) -> Result<(), Refusal> {
        match channel.user() {
            Some(owner) if owner.is_empty() || owner != self.user() => {
                return Err(Refusal::plain(ErrorCode::PermissionDenied));
            }
            _ => {}
        }
        if self.identity.as_ref().is_some_and(|i| !i.may_use(channel.as_str())) {
            return Err(Refusal::new(ErrorCode::PermissionDenied, "the token does not allow this channel"));
        }
        Ok(())
    }

    /// The namespace's `subscribe` permission.
    fn check_subscribe_permission(
        &self,
        channel: &Channel<'_>,
        namespace: &NamespaceConfig,
        token: &str,
    ) -> Result<(), Refusal> {
        match namespace.subscribe {
            SubscribePermission::All => Ok(()),
            SubscribePermission::Authenticated if self.user().is_empty() => {
                Err(Refusal::new(ErrorCode::PermissionDenied, "this namespace is for authenticated clients"))
            }
            SubscribePermission::Authenticated => Ok(()),
            SubscribePermission::Token => self
                .node
                .auth
                .check_subscription(token, self.user(), channel.as_str())
                .map_err(|e| Refusal::new(ErrorCode::PermissionDenied, format!("subscription token: {e}"))),
        }
    }

    /// Whether this client may see who is in `name`: it is subscribed, or
    /// it could subscribe without a subscription token.
    pub(super) fn check_may_subscribe(&self, name: &str) -> Result<(), Refusal> {
        let (channel, namespace) = resolve(&self.node, name)?;
        if self.channels.contains_key(name) {
            return Ok(());
        }
        self.check_user_channel(&channel)?;
        if namespace.proxy_subscribe {
            // The backend decides subscriptions one by one: only subscribers.
            return Err(Refusal::new(
                ErrorCode::PermissionDenied,
                "subscribe first: the backend decides this namespace",
            ));
        }
        self.check_subscribe_permission(&channel, namespace, "")
    }
}
