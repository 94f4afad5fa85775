//! One client's protocol session, whatever carries it: its identity, its
//! channels and positions, its command rate, and the dispatch of its
//! commands. A transport hands it whole client frames (after
//! [`ClientSession::admit`]) and server operations, and writes what lands in
//! its outbound queue.

use super::in_flight::{Answered, InFlight, MAX_IN_FLIGHT};
pub(super) use super::joined::{Joined, JoinedChannels};
use super::liveness::Liveness;
use super::saved::{SavedChannel, SavedSession, new_token};
use crate::auth::Identity;
use crate::codec::{self, DecodeError};
use crate::handshake::Handshake;
use crate::node::connections::UserRegistration;
use crate::node::{Node, OpSender, ServerOp};
use crate::refusal::Refusal;
use crate::traffic_tally;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_broker::PublishOptions;
use switchyard_broker::StreamPosition;
use switchyard_core::codes::{CloseCode, ErrorCode};
use switchyard_core::hub::ConnId;
use switchyard_core::metric;
use switchyard_core::outbound::{Close, OutFrame, Outbound, PushError};
use switchyard_core::protocol::Protocol;
use switchyard_proto::v1::client_frame::Command;
use switchyard_proto::v1::{
    ClientFrame, ClientInfo, Envelope, PublishRequest, PublishResult, ServerFrame, server_frame,
};
use tokio::time::Instant;
use tracing::debug;

/// A client that goes this long without a refused message is forgiven its
/// earlier refusals: a second is one refill of the limiter's rate, so a
/// client that paused to let it refill is not closed for an earlier burst.
const REFUSALS_FORGIVEN_AFTER: Duration = Duration::from_secs(1);

/// Acks are saved at most this often (subscription changes at once): a
/// client acking every publication would otherwise cost a store write
/// each; a resume replays at most a second of what was acked meanwhile.
const ACK_SAVE_EVERY: Duration = Duration::from_secs(1);

/// The state of one client's protocol session.
pub struct ClientSession {
    pub(super) node: Arc<Node>,
    pub(super) id: ConnId,
    /// The id clients see: unique across nodes.
    pub(super) client: String,
    pub(super) protocol: Protocol,
    pub(super) outbound: Outbound,
    /// Set by `connect`, or implicitly by the first other command when
    /// anonymous access is allowed.
    pub(super) identity: Option<Identity>,
    /// This session's entry in the node's index of connections by user
    /// (for user operations); dropped with the session.
    pub(super) user_registration: Option<UserRegistration>,
    /// Where user operations for this session are sent.
    pub(super) ops: OpSender,
    /// This connection's resume token: its session is saved under it.
    pub(super) token: String,
    /// Whether the client was told `token` (in a connect reply): sessions
    /// of clients that cannot resume are not saved.
    pub(super) token_issued: bool,
    pub(super) channels: JoinedChannels,
    /// Acks not saved yet, and when the session was last saved.
    unsaved_acks: bool,
    last_saved: Option<Instant>,
    /// Messages per second (`client.commands_per_second`, burst
    /// `client.commands_burst`), counted before decoding.
    limiter: DefaultDirectRateLimiter,
    /// Messages refused by the limiter since the client last went a second
    /// without a refusal; past the burst, it is closed with 4029.
    refused: u32,
    last_refused: Option<Instant>,
    pub(super) liveness: Arc<Liveness>,
    /// What the request that opened the connection said: a connect token (query parameter or
    /// cookie), used when `connect` carries none, and the headers the
    /// proxies forward.
    pub(super) handshake: Handshake,
    /// Wakes the session for the refresh proxy when the expiry the connect
    /// proxy set comes; cancelled when dropped (a new expiry, the end).
    pub(super) refresh_timer: Option<tokio_util::sync::DropGuard>,
    /// While commands of a `ServerOp::Commands` run: their replies, as JSON.
    collected: Option<Vec<Bytes>>,
    /// Plain publishes handed to the broker, not yet answered.
    in_flight: InFlight,
    /// Bytes of recovered publications the command under way may still
    /// replay: one reply's worth (`client.max_reply_bytes`) for a
    /// `subscribe`, shared by every channel of a resume or a stream's URL.
    pub(super) replay_budget: usize,
    /// The connection negotiated permessage-deflate: its channels get the
    /// publications' compressed frames.
    pub(super) deflate: bool,
}

/// What a message that cannot be read at all gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The close its decoding names (a socket: nothing after it can be
    /// trusted either).
    Close,
    /// An error reply (107): commands posted over HTTP, each a message of
    /// its own, while the stream stays.
    Reply,
}

/// What [`ClientSession::admit`] decided about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the rate: decode and run it.
    Run,
    /// Over the rate: do not run it; answer it with
    /// [`ClientSession::refuse_rate`].
    Refused,
    /// Over the rate once too often: the connection is closing (4029).
    Closing,
}

impl ClientSession {
    pub fn new(
        node: Arc<Node>,
        id: ConnId,
        protocol: Protocol,
        outbound: Outbound,
        liveness: Arc<Liveness>,
        handshake: Handshake,
        ops: OpSender,
    ) -> Self {
        let client = format!("{}-{id}", node.name);
        let limits = &node.config.client;
        let rate = NonZeroU32::new(limits.commands_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.commands_burst).unwrap_or(NonZeroU32::MIN);
        let limiter =
            RateLimiter::direct_with_clock(Quota::per_second(rate).allow_burst(burst), node.rate_clock.clone());
        let token = format!("{}.{}", node.name, new_token());
        ClientSession {
            node,
            id,
            client,
            protocol,
            outbound,
            identity: None,
            user_registration: None,
            ops,
            token,
            token_issued: false,
            channels: JoinedChannels::default(),
            unsaved_acks: false,
            last_saved: None,
            limiter,
            refused: 0,
            last_refused: None,
            liveness,
            handshake,
            refresh_timer: None,
            collected: None,
            in_flight: InFlight::default(),
            replay_budget: 0,
            deflate: false,
        }
    }

    /// The session's connection negotiated permessage-deflate.
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Counts one message from the client against its rate, before it is
    /// decoded: every message counts, commands or not, well-formed or not.
    fn admit(&mut self) -> Admission {
        // Per thread, like the writers' counts: one shared atomic per
        // message was a contended line under a busy publisher.
        traffic_tally::record_read(1, 0);
        if self.limiter.check().is_ok() {
            return Admission::Run;
        }
        if self.last_refused.is_some_and(|t| t.elapsed() >= REFUSALS_FORGIVEN_AFTER) {
            self.refused = 0;
        }
        self.refused += 1;
        self.last_refused = Some(Instant::now());
        if self.refused > self.node.config.client.commands_burst {
            self.outbound.close(Close::Server(CloseCode::RateLimited));
            return Admission::Closing;
        }
        Admission::Refused
    }

    /// Answers a message refused by [`ClientSession::admit`] with 109 (a
    /// push without an id, as for `ack`, gets nothing).
    fn refuse_rate(&mut self, id: u32) {
        if id != 0 {
            self.send_error(id, &Refusal::plain(ErrorCode::TooManyRequests));
        }
    }

    /// One whole message from the client: counted against the rate,
    /// decoded, and run; returns what the rate decided.
    pub async fn receive(&mut self, payload: &[u8], is_text: bool, malformed: Malformed) -> Admission {
        let admission = self.admit();
        if admission == Admission::Closing {
            return admission;
        }
        let decoded = codec::decode(self.protocol, payload, is_text);
        if admission == Admission::Refused {
            let id = match &decoded {
                Ok(frame) => frame.id,
                Err(DecodeError::Reply { id, .. }) => *id,
                Err(DecodeError::Close(..)) => 0,
            };
            self.refuse_rate(id);
            return admission;
        }
        match (decoded, malformed) {
            (Ok(frame), _) => self.handle(frame).await,
            (Err(DecodeError::Close(code, why)), Malformed::Close) => {
                debug!(%why, "closing on a malformed message");
                self.outbound.close(Close::Server(code));
            }
            (Err(DecodeError::Close(_, why)), Malformed::Reply) => {
                self.refuse(0, &Refusal::new(ErrorCode::BadRequest, why));
            }
            (Err(DecodeError::Reply { id, code, message }), _) => self.refuse(id, &Refusal::new(code, message)),
        }
        admission
    }

    /// Runs one decoded client frame; every command with an id gets exactly
    /// one reply.
    pub async fn handle(&mut self, frame: ClientFrame) {
        let id = frame.id;
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
            other => match self.ensure_connected().await {
                Err(refusal) => Err(refusal),
                Ok(()) => match other {
                    Command::Subscribe(s) => self.subscribe(id, s).await,
                    Command::Unsubscribe(u) => self.unsubscribe(u).await,
                    Command::Publish(p) => self.publish(id, p).await,
                    Command::History(h) => self.history(h).await,
                    Command::Refresh(r) => self.refresh(r).await,
                    Command::Presence(p) => self.presence(p).await,
                    Command::PresenceStats(p) => self.presence_stats(p).await,
                    Command::Rpc(r) => self.rpc(r).await,
                    Command::Ack(a) => {
                        self.ack(&a.channel, a.offset).await;
                        return;
                    }
                    Command::Pong(_) => return,
                    Command::Connect(_) => unreachable!("handled above"),
                },
            },
        };
        match result {
            Ok(Some(message)) => {
                let reply = self.reply_frame(ServerFrame { id, message: Some(message) });
                self.queue(reply);
            }
            Ok(None) => {}
            Err(refusal) => self.refuse(id, &refusal),
        }
    }

    /// Answers `refusal` and closes where it says so.
    pub fn refuse(&mut self, id: u32, refusal: &Refusal) {
        self.send_error(id, refusal);
        if let Some(code) = refusal.close {
            self.outbound.close(Close::Server(code));
        }
    }

    /// Runs an operation the server decided on (a user operation).
    pub async fn apply(&mut self, op: ServerOp) {
        match op {
            ServerOp::Subscribe(channel) => {
                metric::user_operations("subscribe").increment(1);
                if let Err(refusal) = self.server_subscribe(&channel).await {
                    debug!(client = %self.client, %channel, code = refusal.code.code(), "server-side subscribe failed");
                }
            }
            ServerOp::Unsubscribe(channel) => {
                metric::user_operations("unsubscribe").increment(1);
                self.server_unsubscribe(&channel).await;
            }
            ServerOp::Commands(_, reply) if self.outbound.closing().is_some() => {
                // The stream is ending: its client is told it is gone (410)
                // and reconnects, rather than getting no replies.
                drop(reply);
            }
            ServerOp::Commands(commands, reply) => {
                self.collected = Some(Vec::with_capacity(commands.len()));
                for command in commands {
                    // A command that is not a command is answered in its
                    // place (107, 104) and counts against the rate too.
                    if self.receive(&command, true, Malformed::Reply).await == Admission::Closing {
                        break;
                    }
                }
                let _ = reply.send(self.collected.take().unwrap_or_default());
            }
            ServerOp::Disconnect { code, reason } => {
                metric::user_operations("disconnect").increment(1);
                self.disconnect(code, reason);
            }
            ServerOp::ProxyRefresh => self.refresh_by_proxy().await,
        }
    }

    /// Sends `disconnect` (with `reason`, or the code's own) and closes.
    pub(super) fn disconnect(&mut self, code: CloseCode, reason: String) {
        self.queue(OutFrame::reply(codec::disconnect(self.protocol, code, &reason)));
        self.outbound.close(Close::Announced(code));
    }

    pub(super) fn user(&self) -> &str {
        self.identity.as_ref().map_or("", |i| i.user.as_str())
    }

    /// Who this client is, as presence and publications show it.
    pub(super) fn info(&self) -> ClientInfo {
        let info = self.identity.as_ref().and_then(|i| i.info.as_ref()).map(|v| v.to_string()).unwrap_or_default();
        ClientInfo { client: self.client.clone(), user: self.user().to_owned(), info: info.into() }
    }

    pub(super) async fn ack(&mut self, channel: &str, offset: u64) {
        let Some(position) = self.channels.get_mut(channel).and_then(|j| j.position.as_mut()) else { return };
        if offset > position.offset {
            position.offset = offset;
            self.unsaved_acks = true;
        }
        if self.last_saved.is_none_or(|t| t.elapsed() >= ACK_SAVE_EVERY) {
            self.save().await;
        }
    }

    /// Saves the session for `connect.resume` (best effort: a failure costs
    /// the client a resume, not this connection).
    pub(super) async fn save(&mut self) {
        if !self.token_issued {
            return;
        }
        let saved = SavedSession {
            user: self.user().to_owned(),
            channels: self
                .channels
                .iter()
                .map(|(channel, joined)| SavedChannel {
                    channel: channel.to_owned(),
                    position: joined.position.clone(),
                    filter: joined.delivery.filter.clone(),
                    delta: joined.delivery.delta,
                })
                .collect(),
        };
        let ttl = self.node.config.client.session_ttl;
        let update_only = self.last_saved.is_some();
        match self.node.stores.sessions.save(&self.token, &saved.encode(), ttl, update_only).await {
            Ok(()) => {
                self.unsaved_acks = false;
                self.last_saved = Some(Instant::now());
            }
            Err(e) => debug!(error = %e, "cannot save the session"),
        }
    }

    /// A frame this session makes for its client: queued within the reply
    /// budget (`client.max_reply_bytes`), apart from publications.
    pub(super) fn frame(&self, frame: ServerFrame) -> OutFrame {
        OutFrame::reply(codec::encode(self.protocol, &frame))
    }

    /// A reply to a command: encoded for the outbound queue, and kept for
    /// whoever collects replies (an SSE client's command request).
    pub(super) fn reply_frame(&mut self, frame: ServerFrame) -> OutFrame {
        let out = self.frame(frame);
        if let Some(collected) = &mut self.collected {
            collected.push(switchyard_core::wsframe::payload(out.bytes()));
        }
        out
    }

    pub(super) fn queue(&self, frame: OutFrame) {
        // Replies are made to fit their budget; one that does not find room
        // is a client that stopped reading its answers: a slow consumer.
        if self.outbound.push(frame) == Err(PushError::Full)
            && self.outbound.close(Close::Server(CloseCode::SlowConsumer))
        {
            metric::slow_consumer_disconnects().increment(1);
        }
    }

    pub(super) fn send(&self, frame: ServerFrame) {
        self.queue(self.frame(frame));
    }

    pub(super) fn send_error(&mut self, id: u32, refusal: &Refusal) {
        metric::command_errors(refusal.code).increment(1);
        let reply = OutFrame::reply(codec::error_reply(self.protocol, id, refusal.code, &refusal.message));
        if let Some(collected) = &mut self.collected {
            collected.push(switchyard_core::wsframe::payload(reply.bytes()));
        }
        self.queue(reply);
    }

    /// Opens a stream's session (Server-Sent Events): connect (resuming
    /// where asked) with its reply as the stream's first frame, without an
    /// id; then the channels of the URL, each checked like a `subscribe`,
    /// announced by `sub` pushes (`recover`: from that position).
    pub async fn open_stream(
        &mut self,
        token: String,
        resume: String,
        channels: Vec<(String, Option<StreamPosition>)>,
    ) {
        let request = switchyard_proto::v1::ConnectRequest { token, resume, data: Bytes::new() };
        match self.connect(0, request).await {
            Ok(_) => {}
            Err(refusal) => {
                self.refuse(0, &refusal);
                return;
            }
        }
        for (channel, since) in channels {
            if let Err(refusal) = self.subscribe_from_url(&channel, since).await {
                let message = format!("{channel}: {}", refusal.message);
                self.send_error(0, &Refusal::new(refusal.code, message));
            }
        }
    }

    /// This session's token: its resume token, and for streams the key of
    /// their commands (`<node>.<random>`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Saves the session and leaves every channel; called once the
    /// connection is closed.
    /// Whether a publish may be answered later, the session reading on
    /// meanwhile ([`super::in_flight`]): a plain one (no receipt, no
    /// idempotency key, no backend to ask first) on a connection whose
    /// replies are not being collected for a command post.
    pub(super) fn may_keep_in_flight(&self, request: &PublishRequest) -> bool {
        self.collected.is_none() && !request.receipt && request.idempotency_key.is_empty()
    }

    /// Hands a checked publication to the broker and reads on; its answer
    /// is queued when the broker has it ([`ClientSession::poll_answered`]).
    /// With [`MAX_IN_FLIGHT`] waiting, the oldest answer comes first.
    pub(super) async fn publish_in_flight(
        &mut self,
        id: u32,
        history: bool,
        envelope: Envelope,
        options: PublishOptions,
    ) {
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            std::future::poll_fn(|cx| self.poll_answered(cx)).await;
        }
        let broker = self.node.stores.broker.clone();
        self.in_flight.push(async move { Answered { id, history, result: broker.publish(envelope, options).await } });
        // Polled now, in the order publishes came: its command is in the
        // broker's queue before the next message is read.
        std::future::poll_fn(|cx| {
            let _ = self.poll_answered(cx);
            Poll::Ready(())
        })
        .await;
    }

    /// Queues the answers of publishes in flight that came, oldest first;
    /// ready once at least one was queued, pending while none came (or
    /// none is in flight).
    pub fn poll_answered(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut answered = false;
        while let Poll::Ready(Some(answer)) = self.in_flight.poll_answered(cx) {
            answered = true;
            match answer.result {
                Ok(position) => {
                    metric::broker_published().increment(1);
                    let result = PublishResult {
                        epoch: answer.history.then_some(position.epoch),
                        offset: answer.history.then_some(position.offset),
                        receipt: None,
                    };
                    let message = Some(server_frame::Message::Publish(result));
                    let reply = self.reply_frame(ServerFrame { id: answer.id, message });
                    self.queue(reply);
                }
                Err(error) => self.refuse(answer.id, &Refusal::from(error)),
            }
        }
        if answered { Poll::Ready(()) } else { Poll::Pending }
    }

    pub async fn end(&mut self) {
        if self.unsaved_acks || self.last_saved.is_none() {
            self.save().await;
        }
        self.user_registration = None;
        let channels: Vec<(String, Joined)> = self.channels.drain().collect();
        for (channel, joined) in channels {
            self.leave(&channel, joined.in_presence).await;
        }
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
        Command::Presence(_) => "presence",
        Command::PresenceStats(_) => "presence_stats",
        Command::Rpc(_) => "rpc",
    }
}
