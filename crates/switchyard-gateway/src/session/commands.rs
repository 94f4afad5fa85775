//! The commands of one connection: connect, subscribe, unsubscribe, publish,
//! ack, pong. Each command with an id gets exactly one reply.

use crate::auth::Identity;
use crate::codec::{self, DecodeError};
use crate::node::Node;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_broker::{BrokerError, PublishOptions};
use switchyard_core::channel::Channel;
use switchyard_core::codes::{CloseCode, ErrorCode};
use switchyard_core::config::NamespaceConfig;
use switchyard_core::hub::{ConnId, Subscribed, Subscriber, Unsubscribed};
use switchyard_core::metric;
use switchyard_core::outbound::{Close, OutFrame, Outbound};
use switchyard_core::protocol::Protocol;
use switchyard_proto::v1::client_frame::Command;
use switchyard_proto::v1::{
    AckRequest, ClientInfo, ConnectRequest, ConnectResult, Envelope, PublishRequest, PublishResult, ServerFrame,
    SubscribeRequest, SubscribeResult, UnsubscribeRequest, UnsubscribeResult, server_frame,
};
use tracing::debug;

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

type Reply = Result<server_frame::Message, Refusal>;

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
    channels: HashSet<String>,
    /// The highest offset acked per channel (for session resume).
    acked: HashMap<String, u64>,
}

impl Session {
    pub fn new(node: Arc<Node>, id: ConnId, protocol: Protocol, outbound: Outbound) -> Self {
        let client = format!("{}-{id}", node.name);
        Session {
            node,
            id,
            client,
            protocol,
            outbound,
            identity: None,
            channels: HashSet::new(),
            acked: HashMap::new(),
        }
    }

    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    pub fn is_closing(&self) -> bool {
        self.outbound.closing().is_some()
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
            Command::Connect(c) => self.connect(c),
            other => match self.ensure_connected() {
                Err(refusal) => Err(refusal),
                Ok(()) => match other {
                    Command::Subscribe(s) => self.subscribe(s).await,
                    Command::Unsubscribe(u) => self.unsubscribe(u).await,
                    Command::Publish(p) => self.publish(p).await,
                    Command::Ack(a) => {
                        self.ack(a);
                        return;
                    }
                    Command::Pong(_) => return,
                    Command::Connect(_) => unreachable!("handled above"),
                },
            },
        };
        match result {
            Ok(message) => self.send(ServerFrame { id, message: Some(message) }),
            Err(refusal) => {
                self.send_error(id, &refusal);
                if let Some(code) = refusal.close {
                    self.outbound.close(Close::Server(code));
                }
            }
        }
    }

    fn connect(&mut self, request: ConnectRequest) -> Reply {
        if self.identity.is_some() {
            return Err(Refusal::new(ErrorCode::BadRequest, "already connected"));
        }
        let identity = self
            .node
            .auth
            .authenticate(&request.token)
            .map_err(|e| Refusal::new(ErrorCode::Unauthorized, e.to_string()).closing(CloseCode::Unauthorized))?;
        self.identity = Some(identity);
        Ok(server_frame::Message::Connect(ConnectResult {
            client: self.client.clone(),
            session: format!("{:032x}", rand::random::<u128>()),
            ping_interval: self.node.config.client.ping_interval.as_secs().max(1) as u32,
        }))
    }

    /// Commands before `connect` run as an anonymous client, where allowed.
    fn ensure_connected(&mut self) -> Result<(), Refusal> {
        if self.identity.is_some() {
            return Ok(());
        }
        let identity = self
            .node
            .auth
            .authenticate("")
            .map_err(|e| Refusal::new(ErrorCode::Unauthorized, e.to_string()).closing(CloseCode::Unauthorized))?;
        self.identity = Some(identity);
        Ok(())
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

    /// A user channel (`name#user`) is for its user alone.
    fn check_user_channel(&self, channel: &Channel<'_>) -> Result<(), Refusal> {
        match channel.user() {
            Some(owner) if owner.is_empty() || owner != self.user() => Err(Refusal::plain(ErrorCode::PermissionDenied)),
            _ => Ok(()),
        }
    }

    async fn subscribe(&mut self, request: SubscribeRequest) -> Reply {
        let (channel, namespace) = self.resolve(&request.channel)?;
        self.check_user_channel(&channel)?;
        if self.channels.contains(channel.as_str()) {
            return Err(Refusal::plain(ErrorCode::AlreadySubscribed));
        }
        if self.channels.len() >= self.node.config.client.max_channels {
            return Err(Refusal::new(ErrorCode::LimitExceeded, "too many channels on this connection"));
        }
        let subscriber = Subscriber { protocol: self.protocol, outbound: self.outbound.clone() };
        let name = channel.as_str();
        match self.node.hub.subscribe(name, self.id, subscriber, namespace.slow_consumer) {
            Subscribed::First => {
                if let Err(e) = self.node.broker.subscribe(&[name.to_owned()]).await {
                    self.node.hub.unsubscribe(name, self.id);
                    return Err(broker_refusal(e));
                }
            }
            Subscribed::Joined => {}
            Subscribed::Already => return Err(Refusal::plain(ErrorCode::AlreadySubscribed)),
        }
        self.channels.insert(name.to_owned());
        Ok(server_frame::Message::Subscribe(SubscribeResult::default()))
    }

    async fn unsubscribe(&mut self, request: UnsubscribeRequest) -> Reply {
        let (channel, _) = self.resolve(&request.channel)?;
        if self.channels.remove(channel.as_str()) {
            self.leave(channel.as_str()).await;
        }
        Ok(server_frame::Message::Unsubscribe(UnsubscribeResult {}))
    }

    async fn leave(&mut self, channel: &str) {
        self.acked.remove(channel);
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
        let options = PublishOptions { history_size: namespace.history_size, history_ttl: namespace.history_ttl };
        let position = self.node.broker.publish(envelope, options).await.map_err(broker_refusal)?;
        metric::broker_published().increment(1);
        let history = namespace.keeps_history();
        Ok(server_frame::Message::Publish(PublishResult {
            epoch: history.then_some(position.epoch),
            offset: history.then_some(position.offset),
        }))
    }

    fn ack(&mut self, request: AckRequest) {
        if let Some(acked) = self.acked.get_mut(&request.channel) {
            *acked = (*acked).max(request.offset);
        } else if self.channels.contains(&request.channel) {
            self.acked.insert(request.channel, request.offset);
        }
    }

    fn send(&self, frame: ServerFrame) {
        // A full queue closes the connection (slow consumer); nothing else to do.
        if self.outbound.push(OutFrame::control(codec::encode(self.protocol, &frame))).is_err() {
            self.outbound.close(Close::Server(CloseCode::SlowConsumer));
        }
    }

    fn send_error(&self, id: u32, refusal: &Refusal) {
        metric::command_errors(refusal.code).increment(1);
        let frame = codec::error_reply(self.protocol, id, refusal.code, &refusal.message);
        if self.outbound.push(OutFrame::control(frame)).is_err() {
            self.outbound.close(Close::Server(CloseCode::SlowConsumer));
        }
    }

    /// Leaves every channel; called once the connection is closed.
    pub async fn end(&mut self) {
        let channels: Vec<String> = self.channels.drain().collect();
        for channel in channels {
            self.leave(&channel).await;
        }
    }
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
        Command::Ack(_) => "ack",
        Command::Pong(_) => "pong",
    }
}

pub fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
