//! The commands of one connection: connect (and resume), subscribe (and
//! recover), unsubscribe, publish, history, ack, pong. Each command with an
//! id gets exactly one reply.

use super::liveness::Liveness;
use super::saved::{SavedChannel, SavedSession, new_token};
use crate::auth::Identity;
use crate::codec::{self, DecodeError};
use crate::node::{Node, publish_options};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_broker::{BrokerError, StreamPosition};
use switchyard_core::channel::Channel;
use switchyard_core::codes::{CloseCode, ErrorCode};
use switchyard_core::config::{NamespaceConfig, SubscribePermission};
use switchyard_core::hub::{self, ConnId, Position, Subscribed, Subscriber, Unsubscribed};
use switchyard_core::metric;
use switchyard_core::outbound::{Close, OutFrame, Outbound};
use switchyard_core::protocol::Protocol;
use switchyard_proto::v1::client_frame::Command;
use switchyard_proto::v1::{
    AckRequest, ClientInfo, ConnectRequest, ConnectResult, Envelope, HistoryRequest, HistoryResult, Publication,
    PublishRequest, PublishResult, RefreshRequest, RefreshResult, ResumedChannel, ServerFrame, SubscribeRequest,
    SubscribeResult, UnsubscribeRequest, UnsubscribeResult, server_frame,
};
use tokio::time::Instant;
use tracing::debug;

/// A client that goes this long without a refused message is forgiven its
/// earlier refusals.
const REFUSALS_FORGIVEN_AFTER: Duration = Duration::from_secs(1);

/// Acks are saved at most this often (subscription changes at once).
const ACK_SAVE_EVERY: Duration = Duration::from_secs(1);

/// A command's failure: the error reply, and whether the connection ends.
struct Refusal {
    code: ErrorCode,
    message: String,
    close: Option<CloseCode>,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into(), close: None }
    }

    fn plain(code: ErrorCode) -> Self {
        Refusal::new(code, code.message())
    }

    fn closing(mut self, close: CloseCode) -> Self {
        self.close = Some(close);
        self
    }
}

/// A reply to send, or `None` when the command queued its reply itself
/// (behind recovered publications, see [`Session::join`]).
type Reply = Result<Option<server_frame::Message>, Refusal>;

/// A channel joined: where it stands, and what was recovered.
struct Joined {
    channel: String,
    /// For channels with history.
    position: Option<StreamPosition>,
    recovered: Option<bool>,
    publications: Vec<Publication>,
}

/// The state of one connection's protocol session.
pub struct Session {
    node: Arc<Node>,
    id: ConnId,
    /// The id clients see: unique across nodes.
    client: String,
    protocol: Protocol,
    outbound: Outbound,
    /// Set by `connect`, or implicitly by the first other command when
    /// anonymous access is allowed.
    identity: Option<Identity>,
    /// This connection's resume token: its session is saved under it.
    token: String,
    /// Whether the client was told `token` (in a connect reply): sessions
    /// of clients that cannot resume are not saved.
    token_issued: bool,
    channels: HashSet<String>,
    /// For channels with history: the position acked by the client (at
    /// first, the one it subscribed at).
    positions: HashMap<String, StreamPosition>,
    /// Acks not saved yet, and when the session was last saved.
    unsaved_acks: bool,
    last_saved: Option<Instant>,
    /// Commands per second (`client.commands_per_second`, burst
    /// `client.commands_burst`).
    limiter: DefaultDirectRateLimiter,
    /// Messages refused by the limiter since the client last went a second
    /// without a refusal; past the burst, it is closed with 4029.
    refused: u32,
    last_refused: Option<Instant>,
    liveness: Arc<Liveness>,
    /// A connect token that came with the upgrade request (query parameter
    /// or cookie), used when `connect` carries none.
    upgrade_token: Option<String>,
}

impl Session {
    pub fn new(
        node: Arc<Node>,
        id: ConnId,
        protocol: Protocol,
        outbound: Outbound,
        liveness: Arc<Liveness>,
        upgrade_token: Option<String>,
    ) -> Self {
        let client = format!("{}-{id}", node.name);
        let limits = &node.config.client;
        let rate = NonZeroU32::new(limits.commands_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.commands_burst).unwrap_or(NonZeroU32::MIN);
        let limiter =
            RateLimiter::direct_with_clock(Quota::per_second(rate).allow_burst(burst), node.rate_clock.clone());
        Session {
            node,
            id,
            client,
            protocol,
            outbound,
            identity: None,
            token: new_token(),
            token_issued: false,
            channels: HashSet::new(),
            positions: HashMap::new(),
            unsaved_acks: false,
            last_saved: None,
            limiter,
            refused: 0,
            last_refused: None,
            liveness,
            upgrade_token,
        }
    }

    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Handles one whole message from the client.
    pub async fn handle_message(&mut self, payload: &[u8], is_text: bool) {
        metric::messages_received().increment(1);
        let frame = match codec::decode(self.protocol, payload, is_text) {
            Ok(frame) => frame,
            Err(DecodeError::Close(code, why)) => {
                debug!(client = %self.client, %why, "closing on a malformed message");
                self.outbound.close(Close::Server(code));
                return;
            }
            Err(DecodeError::Reply { id, code, message }) => {
                self.send_error(id, &Refusal::new(code, message));
                return;
            }
        };
        let id = frame.id;
        if self.limiter.check().is_err() {
            if self.last_refused.is_some_and(|t| t.elapsed() >= REFUSALS_FORGIVEN_AFTER) {
                self.refused = 0;
            }
            self.refused += 1;
            self.last_refused = Some(Instant::now());
            if self.refused > self.node.config.client.commands_burst {
                self.outbound.close(Close::Server(CloseCode::RateLimited));
            } else if id != 0 {
                self.send_error(id, &Refusal::plain(ErrorCode::TooManyRequests));
            }
            return;
        }
        let Some(command) = frame.command else {
            self.send_error(id, &Refusal::new(ErrorCode::UnknownCommand, "unknown or missing command"));
            return;
        };
        metric::commands(command_name(&command)).increment(1);
        let needs_reply = !matches!(command, Command::Ack(_) | Command::Pong(_));
        if needs_reply && id == 0 {
            self.send_error(0, &Refusal::new(ErrorCode::BadRequest, "a command needs a positive id"));
            return;
        }
        let result = match command {
            Command::Connect(c) => self.connect(id, c).await,
            other => match self.ensure_connected() {
                Err(refusal) => Err(refusal),
                Ok(()) => match other {
                    Command::Subscribe(s) => self.subscribe(id, s).await,
                    Command::Unsubscribe(u) => self.unsubscribe(u).await,
                    Command::Publish(p) => self.publish(p).await,
                    Command::History(h) => self.history(h).await,
                    Command::Refresh(r) => self.refresh(r),
                    Command::Ack(a) => {
                        self.ack(a).await;
                        return;
                    }
                    Command::Pong(_) => return,
                    Command::Connect(_) => unreachable!("handled above"),
                },
            },
        };
        match result {
            Ok(Some(message)) => self.send(ServerFrame { id, message: Some(message) }),
            Ok(None) => {}
            Err(refusal) => {
                self.send_error(id, &refusal);
                if let Some(code) = refusal.close {
                    self.outbound.close(Close::Server(code));
                }
            }
        }
    }

    async fn connect(&mut self, id: u32, request: ConnectRequest) -> Reply {
        if self.identity.is_some() {
            return Err(Refusal::new(ErrorCode::BadRequest, "already connected"));
        }
        let token =
            if request.token.is_empty() { self.upgrade_token.clone().unwrap_or_default() } else { request.token };
        let identity = self.authenticate(&token)?;
        let expires_in = identity.expires_at.map(|exp| exp.saturating_sub(unix_seconds()) as u32);
        self.identity = Some(identity);
        let mut result = ConnectResult {
            client: self.client.clone(),
            session: self.token.clone(),
            ping_interval: self.node.config.client.ping_interval.as_secs().max(1) as u32,
            resumed: (!request.resume.is_empty()).then_some(false),
            channels: Vec::new(),
            expires_in,
        };
        let saved = match request.resume.as_str() {
            "" => None,
            resume => self.take_saved(resume).await?,
        };
        self.token_issued = true;
        let Some(saved) = saved else {
            self.save().await;
            return Ok(Some(server_frame::Message::Connect(result)));
        };
        // Rejoin every channel, holding live publications until the reply
        // and the recovered ones are queued.
        let mut joined = Vec::new();
        for saved in saved.channels {
            let since = match (saved.epoch, saved.offset) {
                (Some(epoch), Some(offset)) => Some(StreamPosition { epoch, offset }),
                _ => None,
            };
            let Ok((channel, namespace)) = self.resolve(&saved.channel) else { continue };
            if self.check_user_channel(&channel).is_err() || self.channels.len() >= self.node.config.client.max_channels
            {
                continue;
            }
            let name = channel.as_str().to_owned();
            match self.join(&name, &namespace, since, true).await {
                Ok(j) => joined.push(j),
                Err(e) => debug!(channel = %name, code = e.code.code(), "not resumed"),
            }
        }
        result.resumed = Some(true);
        result.channels = joined
            .iter()
            .map(|j| {
                let position = j.position.clone().unwrap_or_default();
                ResumedChannel {
                    channel: j.channel.clone(),
                    epoch: position.epoch,
                    offset: position.offset,
                    recovered: j.recovered.unwrap_or(true),
                }
            })
            .collect();
        metric::resumes("resumed").increment(1);
        let mut head = vec![self.frame(ServerFrame { id, message: Some(server_frame::Message::Connect(result)) })];
        for j in joined {
            head.extend(j.publications.into_iter().map(|p| self.frame(push(p))));
            let through = j.position.as_ref().map(|p| Position { epoch: p.epoch.clone(), offset: p.offset });
            self.node.hub.finish_recovery(&j.channel, self.id, std::mem::take(&mut head), through);
        }
        // No channel took the reply along: send it now.
        for frame in head {
            self.queue(frame);
        }
        self.save().await;
        Ok(None)
    }

    /// The saved session of `token`, if it is there and this user's.
    async fn take_saved(&self, token: &str) -> Result<Option<SavedSession>, Refusal> {
        let bytes = self.node.broker.take_session(token).await.map_err(broker_refusal)?;
        match bytes.as_deref().and_then(SavedSession::decode) {
            None => {
                metric::resumes("expired").increment(1);
                Ok(None)
            }
            Some(saved) if saved.user != self.user() => {
                metric::resumes("refused").increment(1);
                Ok(None)
            }
            Some(saved) => Ok(Some(saved)),
        }
    }

    /// Commands before `connect` run as the upgrade's token says, or as an
    /// anonymous client where that is allowed.
    fn ensure_connected(&mut self) -> Result<(), Refusal> {
        if self.identity.is_some() {
            return Ok(());
        }
        let token = self.upgrade_token.clone().unwrap_or_default();
        self.identity = Some(self.authenticate(&token)?);
        Ok(())
    }

    /// Checks a connect token; a refused one closes the connection. A token
    /// with `exp` keeps the connection until then, plus the refresh grace.
    fn authenticate(&mut self, token: &str) -> Result<Identity, Refusal> {
        let identity = self
            .node
            .auth
            .authenticate(token)
            .map_err(|e| Refusal::new(ErrorCode::Unauthorized, e.to_string()).closing(CloseCode::Unauthorized))?;
        self.liveness.mark_connected();
        if let Some(exp) = identity.expires_at {
            let left = Duration::from_secs(exp.saturating_sub(unix_seconds()));
            self.liveness.expire_at(Instant::now() + left + self.node.config.auth.refresh_grace);
        }
        Ok(identity)
    }

    /// `refresh`: a new token for the same user extends the connection.
    fn refresh(&mut self, request: RefreshRequest) -> Reply {
        let identity = self
            .node
            .auth
            .authenticate(&request.token)
            .map_err(|e| Refusal::new(ErrorCode::Unauthorized, e.to_string()))?;
        if identity.user.is_empty() || identity.user != self.user() {
            return Err(Refusal::new(ErrorCode::Unauthorized, "the token is for another user"));
        }
        let expires_in = identity.expires_at.map_or(0, |exp| exp.saturating_sub(unix_seconds()));
        self.authenticate(&request.token)?;
        self.identity = Some(identity);
        Ok(Some(server_frame::Message::Refresh(RefreshResult { expires_in: expires_in as u32 })))
    }

    fn user(&self) -> &str {
        self.identity.as_ref().map_or("", |i| i.user.as_str())
    }

    /// The channel and its namespace, if the name is valid and the
    /// namespace configured.
    fn resolve<'c>(&self, name: &'c str) -> Result<(Channel<'c>, NamespaceConfig), Refusal> {
        let channel = Channel::parse(name).map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))?;
        let namespace = self.node.config.namespace(channel.namespace()).ok_or_else(|| {
            Refusal::new(ErrorCode::UnknownChannel, format!("unknown namespace `{}`", channel.namespace()))
        })?;
        Ok((channel, namespace.clone()))
    }

    /// A user channel (`name#user`) is for its user alone, and a token
    /// with a `channels` claim opens only the channels it names.
    fn check_user_channel(&self, channel: &Channel<'_>) -> Result<(), Refusal> {
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

    async fn subscribe(&mut self, id: u32, request: SubscribeRequest) -> Reply {
        let (channel, namespace) = self.resolve(&request.channel)?;
        self.check_user_channel(&channel)?;
        self.check_subscribe_permission(&channel, &namespace, &request.token)?;
        if self.channels.contains(channel.as_str()) {
            return Err(Refusal::plain(ErrorCode::AlreadySubscribed));
        }
        if self.channels.len() >= self.node.config.client.max_channels {
            return Err(Refusal::new(ErrorCode::LimitExceeded, "too many channels on this connection"));
        }
        let since = request.recover.then_some(StreamPosition { epoch: request.epoch, offset: request.offset });
        let name = channel.as_str().to_owned();
        let joined = self.join(&name, &namespace, since, false).await?;
        self.save().await;
        let Some(position) = joined.position else {
            return Ok(Some(server_frame::Message::Subscribe(SubscribeResult::default())));
        };
        let through = Position { epoch: position.epoch.clone(), offset: position.offset };
        let result = SubscribeResult {
            epoch: Some(position.epoch),
            offset: Some(position.offset),
            recovered: joined.recovered,
            publications: joined.publications,
        };
        let reply = self.frame(ServerFrame { id, message: Some(server_frame::Message::Subscribe(result)) });
        self.node.hub.finish_recovery(&name, self.id, vec![reply], Some(through));
        Ok(None)
    }

    /// Subscribes to `name` on this node and, if it is the node's first
    /// subscriber, in the broker. In a namespace with history (or with
    /// `hold`), live publications are held by the hub until the caller's
    /// [`switchyard_core::hub::Hub::finish_recovery`]; the channel's
    /// position is read after the broker subscription is in place, so
    /// nothing falls between what is recovered and what comes live.
    async fn join(
        &mut self,
        name: &str,
        namespace: &NamespaceConfig,
        since: Option<StreamPosition>,
        hold: bool,
    ) -> Result<Joined, Refusal> {
        let history = namespace.keeps_history();
        let subscriber = Subscriber::new(self.protocol, self.outbound.clone());
        match self.node.hub.subscribe(name, self.id, subscriber, namespace.slow_consumer, history || hold) {
            Subscribed::First => {
                if let Err(e) = self.node.broker.subscribe(&[name.to_owned()]).await {
                    self.node.hub.unsubscribe(name, self.id);
                    return Err(broker_refusal(e));
                }
            }
            Subscribed::Joined => {}
            Subscribed::Already => return Err(Refusal::plain(ErrorCode::AlreadySubscribed)),
        }
        let mut joined = Joined { channel: name.to_owned(), position: None, recovered: None, publications: Vec::new() };
        if history {
            let options = publish_options(namespace);
            let limit = if since.is_some() { namespace.history_size } else { 1 };
            let read = self.node.broker.history(name, since.as_ref(), limit, options).await;
            let history = match read {
                Ok(history) => history,
                Err(e) => {
                    self.leave_hub(name).await;
                    return Err(broker_refusal(e));
                }
            };
            if since.is_some() {
                joined.recovered = Some(history.complete);
                metric::recoveries(if history.complete { "recovered" } else { "unrecoverable" }).increment(1);
                if history.complete {
                    joined.publications = history.publications.iter().map(hub::publication).collect();
                }
            }
            self.positions.insert(name.to_owned(), history.position.clone());
            joined.position = Some(history.position);
        }
        self.channels.insert(name.to_owned());
        Ok(joined)
    }

    async fn unsubscribe(&mut self, request: UnsubscribeRequest) -> Reply {
        let (channel, _) = self.resolve(&request.channel)?;
        if self.channels.remove(channel.as_str()) {
            self.positions.remove(channel.as_str());
            self.leave_hub(channel.as_str()).await;
            self.save().await;
        }
        Ok(Some(server_frame::Message::Unsubscribe(UnsubscribeResult {})))
    }

    async fn leave_hub(&self, channel: &str) {
        if self.node.hub.unsubscribe(channel, self.id) == Unsubscribed::Last
            && let Err(e) = self.node.broker.unsubscribe(&[channel.to_owned()]).await
        {
            debug!(%channel, error = %e, "broker unsubscribe failed");
        }
    }

    async fn publish(&mut self, request: PublishRequest) -> Reply {
        let (channel, namespace) = self.resolve(&request.channel)?;
        if !namespace.allow_publish {
            return Err(Refusal::new(ErrorCode::PermissionDenied, "clients may not publish in this namespace"));
        }
        self.check_user_channel(&channel)?;
        if request.data.is_empty() {
            return Err(Refusal::new(ErrorCode::BadRequest, "publish: data is required"));
        }
        let envelope = Envelope {
            channel: request.channel,
            data: request.data,
            published_at_us: unix_micros(),
            origin_node: self.node.name.clone(),
            publisher: Some(ClientInfo { client: self.client.clone(), user: self.user().to_owned() }),
            ..Default::default()
        };
        let position = self.node.broker.publish(envelope, publish_options(&namespace)).await.map_err(broker_refusal)?;
        metric::broker_published().increment(1);
        let history = namespace.keeps_history();
        Ok(Some(server_frame::Message::Publish(PublishResult {
            epoch: history.then_some(position.epoch),
            offset: history.then_some(position.offset),
        })))
    }

    async fn history(&mut self, request: HistoryRequest) -> Reply {
        let (channel, namespace) = self.resolve(&request.channel)?;
        self.check_user_channel(&channel)?;
        if !namespace.keeps_history() {
            return Err(Refusal::new(ErrorCode::BadRequest, "this channel's namespace keeps no history"));
        }
        let size = namespace.history_size;
        let limit = match request.limit as usize {
            0 => size,
            n => n.min(size),
        };
        let since = request.since.map(|s| StreamPosition { epoch: s.epoch, offset: s.offset });
        let history = self
            .node
            .broker
            .history(channel.as_str(), since.as_ref(), limit, publish_options(&namespace))
            .await
            .map_err(broker_refusal)?;
        if since.as_ref().is_some_and(|s| history.lost_after(s)) {
            return Err(Refusal::plain(ErrorCode::Unrecoverable));
        }
        Ok(Some(server_frame::Message::History(HistoryResult {
            publications: history.publications.iter().map(hub::publication).collect(),
            epoch: history.position.epoch,
            offset: history.position.offset,
        })))
    }

    async fn ack(&mut self, request: AckRequest) {
        let Some(position) = self.positions.get_mut(&request.channel) else { return };
        if request.offset > position.offset {
            position.offset = request.offset;
            self.unsaved_acks = true;
        }
        if self.last_saved.is_none_or(|t| t.elapsed() >= ACK_SAVE_EVERY) {
            self.save().await;
        }
    }

    /// Saves the session for `connect.resume` (best effort: a failure costs
    /// the client a resume, not this connection).
    async fn save(&mut self) {
        if !self.token_issued {
            return;
        }
        let saved = SavedSession {
            user: self.user().to_owned(),
            channels: self
                .channels
                .iter()
                .map(|c| {
                    let position = self.positions.get(c);
                    SavedChannel {
                        channel: c.clone(),
                        epoch: position.map(|p| p.epoch.clone()),
                        offset: position.map(|p| p.offset),
                    }
                })
                .collect(),
        };
        let ttl = self.node.config.client.session_ttl;
        let update_only = self.last_saved.is_some();
        match self.node.broker.save_session(&self.token, &saved.encode(), ttl, update_only).await {
            Ok(()) => {
                self.unsaved_acks = false;
                self.last_saved = Some(Instant::now());
            }
            Err(e) => debug!(error = %e, "cannot save the session"),
        }
    }

    fn frame(&self, frame: ServerFrame) -> OutFrame {
        OutFrame::control(codec::encode(self.protocol, &frame))
    }

    fn queue(&self, frame: OutFrame) {
        // A full queue closes the connection (slow consumer); nothing else to do.
        if self.outbound.push(frame).is_err() {
            self.outbound.close(Close::Server(CloseCode::SlowConsumer));
        }
    }

    fn send(&self, frame: ServerFrame) {
        self.queue(self.frame(frame));
    }

    fn send_error(&self, id: u32, refusal: &Refusal) {
        metric::command_errors(refusal.code).increment(1);
        self.queue(OutFrame::control(codec::error_reply(self.protocol, id, refusal.code, &refusal.message)));
    }

    /// Saves the session and leaves every channel; called once the
    /// connection is closed.
    pub async fn end(&mut self) {
        if self.unsaved_acks || self.last_saved.is_none() {
            self.save().await;
        }
        let channels: Vec<String> = self.channels.drain().collect();
        for channel in channels {
            self.leave_hub(&channel).await;
        }
    }
}

fn push(publication: Publication) -> ServerFrame {
    ServerFrame { id: 0, message: Some(server_frame::Message::Pub(publication)) }
}

fn broker_refusal(error: BrokerError) -> Refusal {
    match error {
        BrokerError::Unavailable(m) => Refusal::new(ErrorCode::NotAvailable, m),
        BrokerError::Internal(m) => Refusal::new(ErrorCode::Internal, m),
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Connect(_) => "connect",
        Command::Subscribe(_) => "subscribe",
        Command::Unsubscribe(_) => "unsubscribe",
        Command::Publish(_) => "publish",
        Command::History(_) => "history",
        Command::Refresh(_) => "refresh",
        Command::Ack(_) => "ack",
        Command::Pong(_) => "pong",
    }
}

fn unix_seconds() -> u64 {
    unix_micros() / 1_000_000
}

pub fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
