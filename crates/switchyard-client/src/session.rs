//! A session that outlives connections: it reconnects by the close-code
//! table with backoff and jitter, resumes on the next node (or recovers
//! each channel from its last offset), hands the application each
//! publication of a history channel once and in order, says when a gap
//! could not be filled, acknowledges what it delivered, and refreshes its
//! token. Every command settles within [`SessionOptions::timeout`].
//!
//! Deltas are applied before the application sees a publication; one that
//! does not apply makes the session subscribe again with recovery instead.
//! A filtered subscription skips offsets by design: those are not gaps.

use crate::client::{Client, Event, Options};
use crate::error::ClientError;
use crate::reconnect::{Reconnect, backoff, reconnect_after};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use switchyard_proto::fossil;
use switchyard_proto::v1::server_frame::Message;
use switchyard_proto::v1::{
    ConnectRequest, Filter, HistoryResult, MemberEvent, Publication, PublishRequest, PublishResult, StreamPosition,
    SubscribeRequest,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::debug;

/// Produces a fresh connect token: at every connect and before the current
/// one expires.
pub type TokenSource = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// How a session connects and behaves.
#[derive(Clone)]
pub struct SessionOptions {
    /// Encoding, TLS and buffers of each connection.
    pub connection: Options,
    /// A connect token; `get_token` wins when both are set.
    pub token: Option<String>,
    pub get_token: Option<TokenSource>,
    /// Every command settles within this. Default: 10 s.
    pub timeout: Duration,
    /// Backoff bounds between reconnect attempts. Default: 500 ms and 20 s.
    pub min_reconnect_delay: Duration,
    pub max_reconnect_delay: Duration,
    /// Acknowledgements are sent at most this often. Default: 1 s.
    pub ack_interval: Duration,
}

impl SessionOptions {
    pub fn new(connection: Options) -> Self {
        SessionOptions {
            connection,
            token: None,
            get_token: None,
            timeout: Duration::from_secs(10),
            min_reconnect_delay: Duration::from_millis(500),
            max_reconnect_delay: Duration::from_secs(20),
            ack_interval: Duration::from_secs(1),
        }
    }
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Connecting,
    Connected,
    /// Closed by the application, or by a close the table says not to retry.
    Disconnected,
}

/// Publications that could not be delivered: after `from` up to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub channel: String,
    pub from: Option<StreamPosition>,
    pub to: StreamPosition,
}

/// What a subscription asks of its channel's publications.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscribeOptions {
    /// Only publications whose tags pass this (evaluated by the server).
    pub filter: Option<Filter>,
    /// Ask for Fossil deltas (granted where the namespace has `delta`);
    /// the application still sees full data.
    pub delta: bool,
}

/// The largest publication a delta may rebuild; past it the delta is
/// refused as not applying.
const MAX_DELTA_TARGET: usize = 64 << 20;

/// What a session hands the application.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// Once and in offset order on channels with history.
    Publication(Publication),
    Gap(Gap),
    Join(MemberEvent),
    Leave(MemberEvent),
    /// A connection is up (`resumed`: the earlier session was restored).
    Connected {
        client: String,
        resumed: bool,
    },
    /// A connection ended with this close code.
    Disconnected {
        code: u16,
        reconnect: bool,
    },
}

enum Op {
    Subscribe(String, SubscribeOptions, oneshot::Sender<Result<(), ClientError>>),
    Unsubscribe(String),
    Publish(PublishRequest, oneshot::Sender<Result<PublishResult, ClientError>>),
    History(String, Option<StreamPosition>, u32, oneshot::Sender<Result<HistoryResult, ClientError>>),
    Close,
}

/// A session; dropping it closes it.
pub struct Session {
    ops: mpsc::Sender<Op>,
    events: mpsc::Receiver<SessionEvent>,
    state: watch::Receiver<SessionState>,
    timeout: Duration,
}

impl Session {
    /// Starts connecting to `urls`, one after the other on reconnects.
    pub fn start(urls: Vec<String>, options: SessionOptions) -> Session {
        let (ops, ops_rx) = mpsc::channel(256);
        let (events_tx, events) = mpsc::channel(options.connection.event_buffer);
        let (state_tx, state) = watch::channel(SessionState::Connecting);
        let timeout = options.timeout;
        let task = Task {
            urls,
            options,
            ops: ops_rx,
            events: events_tx,
            state: state_tx,
            channels: HashMap::new(),
            resume: None,
            next_url: 0,
            attempt: 0,
            token_expires: None,
            deferred: Vec::new(),
        };
        tokio::spawn(task.run());
        Session { ops, events, state, timeout }
    }

    pub fn state(&self) -> SessionState {
        *self.state.borrow()
    }

    /// Waits until connected (or fails after the timeout, or if the session stopped).
    pub async fn connected(&mut self) -> Result<(), ClientError> {
        let wait = self.state.wait_for(|s| *s != SessionState::Connecting);
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(Ok(state)) if *state == SessionState::Connected => Ok(()),
            Ok(_) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// The next event; `None` once the session is closed.
    pub async fn next_event(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
    }

    /// Subscribes (and keeps the subscription across reconnects); resolves
    /// once the server confirmed it.
    pub async fn subscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.subscribe_with(channel, SubscribeOptions::default()).await
    }

    /// [`Session::subscribe`] with a filter, or deltas.
    pub async fn subscribe_with(&self, channel: &str, options: SubscribeOptions) -> Result<(), ClientError> {
        self.call(|reply| Op::Subscribe(channel.to_owned(), options, reply)).await
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.ops.send(Op::Unsubscribe(channel.to_owned())).await.map_err(|_| ClientError::Closed)
    }

    pub async fn publish(&self, channel: &str, data: impl Into<Bytes>) -> Result<PublishResult, ClientError> {
        let request = PublishRequest { channel: channel.to_owned(), data: data.into(), ..Default::default() };
        self.publish_with(request).await
    }

    /// Publishes with every option of the command (tags, a receipt, an
    /// idempotency key).
    pub async fn publish_with(&self, request: PublishRequest) -> Result<PublishResult, ClientError> {
        self.call(|reply| Op::Publish(request, reply)).await
    }

    pub async fn history(
        &self,
        channel: &str,
        since: Option<StreamPosition>,
        limit: u32,
    ) -> Result<HistoryResult, ClientError> {
        self.call(|reply| Op::History(channel.to_owned(), since, limit, reply)).await
    }

    /// Closes the connection for good.
    pub async fn close(self) {
        let _ = self.ops.send(Op::Close).await;
    }

    async fn call<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Op) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.ops.send(op(reply)).await.map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

/// A channel the session is subscribed to.
#[derive(Default)]
struct Channel {
    options: SubscribeOptions,
    /// The last publication delivered (history channels).
    position: Option<StreamPosition>,
    acked: u64,
    /// With deltas: the data of the last publication received, the base
    /// of the next delta.
    base: Option<Bytes>,
}

/// A publication after its delta, if it had one.
enum Undelta {
    Full(Box<Publication>),
    /// A delta from before the subscription was made again: dropped.
    Stale,
    /// A delta that does not apply to the data it should.
    Broken,
}

/// How one connection ended.
enum Ended {
    Closed(u16),
    ByApplication,
}

struct Task {
    urls: Vec<String>,
    options: SessionOptions,
    ops: mpsc::Receiver<Op>,
    events: mpsc::Sender<SessionEvent>,
    state: watch::Sender<SessionState>,
    channels: HashMap<String, Channel>,
    /// The resume token of the last connection.
    resume: Option<String>,
    next_url: usize,
    attempt: u32,
    token_expires: Option<Instant>,
    /// Commands that came while there was no connection.
    deferred: Vec<Op>,
}

/// Commands kept for the next connection, at most.
const MAX_DEFERRED: usize = 1024;

impl Task {
    async fn run(mut self) {
        loop {
            let _ = self.state.send(SessionState::Connecting);
            let ended = match self.connect().await {
                Ok(client) => {
                    self.attempt = 0;
                    let _ = self.state.send(SessionState::Connected);
                    self.serve(client).await
                }
                Err(e) => {
                    debug!(error = %e, "connect failed");
                    Ended::Closed(1006)
                }
            };
            let code = match ended {
                Ended::ByApplication => break,
                Ended::Closed(code) => code,
            };
            let when = reconnect_after(code);
            let _ = self.events.send(SessionEvent::Disconnected { code, reconnect: when != Reconnect::Never }).await;
            let wait = match when {
                Reconnect::Never => break,
                Reconnect::AtOnce => Duration::ZERO,
                Reconnect::Backoff => {
                    self.attempt += 1;
                    backoff(self.attempt - 1, self.options.min_reconnect_delay, self.options.max_reconnect_delay)
                }
            };
            // Commands wait for the next connection (within their timeout);
            // a close is taken at once.
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    op = self.ops.recv() => match op {
                        Some(Op::Close) | None => {
                            let _ = self.state.send(SessionState::Disconnected);
                            return;
                        }
                        Some(op) => self.defer(op),
                    },
                }
            }
        }
        let _ = self.state.send(SessionState::Disconnected);
    }

    /// Keeps a command for the next connection; its caller's timeout still
    /// runs, and a command whose caller gave up is dropped then.
    fn defer(&mut self, op: Op) {
        if self.deferred.len() >= MAX_DEFERRED {
            return; // dropping the reply fails the command at once
        }
        self.deferred.push(op);
    }

    /// Runs the commands that waited for this connection.
    async fn run_deferred(&mut self, client: &Client) {
        for op in std::mem::take(&mut self.deferred) {
            let given_up = match &op {
                Op::Subscribe(_, _, reply) => reply.is_closed(),
                Op::Publish(_, reply) => reply.is_closed(),
                Op::History(_, _, _, reply) => reply.is_closed(),
                Op::Unsubscribe(_) | Op::Close => false,
            };
            if !given_up {
                self.run_op(client, op).await;
            }
        }
    }

    async fn token(&self) -> Result<String, ClientError> {
        match &self.options.get_token {
            Some(get) => get().await.map_err(ClientError::Handshake),
            None => Ok(self.options.token.clone().unwrap_or_default()),
        }
    }

    /// Opens a connection, connects (resuming), and restores every channel.
    async fn connect(&mut self) -> Result<Client, ClientError> {
        let url = self.urls[self.next_url % self.urls.len()].clone();
        self.next_url += 1;
        let limit = self.options.timeout;
        let client = tokio::time::timeout(limit, Client::connect(&url, self.options.connection.clone()))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let request = ConnectRequest {
            token: self.token().await?,
            resume: self.resume.clone().unwrap_or_default(),
            ..Default::default()
        };
        let result =
            tokio::time::timeout(limit, client.connect_with(request)).await.map_err(|_| ClientError::Timeout)??;
        self.resume = Some(result.session.clone());
        self.token_expires = result.expires_in.map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        let resumed = result.resumed == Some(true);
        let restored: HashMap<String, bool> = if resumed {
            result.channels.iter().map(|c| (c.channel.clone(), c.recovered)).collect()
        } else {
            HashMap::new()
        };
        let _ = self.events.send(SessionEvent::Connected { client: result.client.clone(), resumed }).await;
        let channels: Vec<String> = self.channels.keys().cloned().collect();
        for channel in channels {
            match restored.get(&channel) {
                Some(true) => {} // replayed as pushes; de-duplicated on delivery
                Some(false) => {
                    // Resumed, but history no longer holds what was missed.
                    let now = result.channels.iter().find(|c| c.channel == channel);
                    if let Some(now) = now {
                        let to = StreamPosition { epoch: now.epoch.clone(), offset: now.offset };
                        self.lost(&channel, to).await;
                    }
                }
                None => self.join(&client, &channel).await?,
            }
        }
        Ok(client)
    }

    /// Subscribes on this connection, recovering from the last position.
    async fn join(&mut self, client: &Client, channel: &str) -> Result<(), ClientError> {
        let state = self.channels.entry(channel.to_owned()).or_default();
        state.base = None;
        let position = state.position.clone();
        let mut request = SubscribeRequest {
            channel: channel.to_owned(),
            filter: state.options.filter.clone(),
            delta: if state.options.delta { "fossil".to_owned() } else { String::new() },
            ..Default::default()
        };
        if let Some(p) = &position {
            request.recover = true;
            request.epoch = p.epoch.clone();
            request.offset = p.offset;
        }
        let result = tokio::time::timeout(self.options.timeout, client.subscribe_with(request))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let now = result.epoch.clone().zip(result.offset).map(|(epoch, offset)| StreamPosition { epoch, offset });
        match (&position, &now) {
            (Some(_), Some(now)) if result.recovered == Some(false) => self.lost(channel, now.clone()).await,
            (None, Some(now)) => self.channels.entry(channel.to_owned()).or_default().position = Some(now.clone()),
            _ => {}
        }
        // Recovered publications are full: none fails to deliver.
        for publication in result.publications {
            self.deliver(client, publication).await;
        }
        Ok(())
    }

    /// Subscribes again, recovering from the last position: after a delta
    /// that did not apply, whatever was wrong is replaced by history.
    async fn resubscribe(&mut self, client: &Client, channel: &str) {
        debug!(%channel, "a delta did not apply; subscribing again");
        let _ = tokio::time::timeout(self.options.timeout, client.unsubscribe(channel)).await;
        if let Err(e) = self.join(client, channel).await {
            debug!(%channel, error = %e, "subscribing again failed; the next connection retries");
        }
    }

    /// A delta turned into the full data it stands for (and the data kept
    /// as the next base).
    fn undelta(&mut self, mut publication: Publication) -> Undelta {
        let Some(state) = self.channels.get_mut(&publication.channel) else {
            return Undelta::Full(Box::new(publication));
        };
        if publication.delta {
            // No base: it was sent before this subscription was made again
            // (the server starts each subscription with a full one).
            let Some(base) = state.base.as_ref() else { return Undelta::Stale };
            match fossil::apply(base, &publication.data, MAX_DELTA_TARGET) {
                Ok(data) => publication.data = Bytes::from(data),
                Err(_) => return Undelta::Broken,
            }
            publication.delta = false;
        }
        if state.options.delta {
            state.base = Some(publication.data.clone());
        }
        Undelta::Full(Box::new(publication))
    }

    /// Tells the application that what followed the channel's position is
    /// gone, and moves on to `to`.
    async fn lost(&mut self, channel: &str, to: StreamPosition) {
        let state = self.channels.entry(channel.to_owned()).or_default();
        let from = state.position.replace(to.clone());
        let _ = self.events.send(SessionEvent::Gap(Gap { channel: channel.to_owned(), from, to })).await;
    }

    /// Delivers a publication once and in order: older ones are dropped, a
    /// hole is filled from history first (not on a filtered subscription,
    /// whose holes are the filter's). A delta that does not apply is not
    /// delivered: false, and the caller subscribes again, with recovery.
    async fn deliver(&mut self, client: &Client, publication: Publication) -> bool {
        let (Some(offset), Some(epoch)) = (publication.offset, publication.epoch.clone()) else {
            return self.hand_over(publication).await;
        };
        let Some(state) = self.channels.get(&publication.channel) else {
            // Not ours (a server-side subscription): hand it over as it is.
            return self.hand_over(publication).await;
        };
        let at = state.position.clone();
        let filtered = state.options.filter.is_some();
        if let Some(at) = &at {
            if at.epoch == epoch && offset <= at.offset {
                return true; // had it already
            }
            if at.epoch == epoch && offset > at.offset + 1 && !filtered {
                self.fill(client, &publication.channel, at.clone(), offset - 1).await;
            } else if at.epoch != epoch && at.offset > 0 {
                let to = StreamPosition { epoch: epoch.clone(), offset: offset - 1 };
                self.lost(&publication.channel, to).await;
            }
        }
        let channel = publication.channel.clone();
        let publication = match self.undelta(publication) {
            Undelta::Full(publication) => *publication,
            Undelta::Stale => return true,
            Undelta::Broken => return false,
        };
        if let Some(state) = self.channels.get_mut(&channel) {
            state.position = Some(StreamPosition { epoch, offset });
        }
        let _ = self.events.send(SessionEvent::Publication(publication)).await;
        true
    }

    /// Hands a publication without a position to the application, its
    /// delta applied; false if the delta did not apply.
    async fn hand_over(&mut self, publication: Publication) -> bool {
        match self.undelta(publication) {
            Undelta::Full(publication) => {
                let _ = self.events.send(SessionEvent::Publication(*publication)).await;
                true
            }
            Undelta::Stale => true,
            Undelta::Broken => false,
        }
    }

    /// Reads what is missing after `from` up to `until` from history.
    async fn fill(&mut self, client: &Client, channel: &str, from: StreamPosition, until: u64) {
        let missing = (until - from.offset) as u32;
        let read =
            tokio::time::timeout(self.options.timeout, client.history(channel, Some(from.clone()), missing)).await;
        if let Ok(Ok(history)) = read {
            for publication in history.publications {
                let next = self.channels.get(channel).and_then(|c| c.position.as_ref()).map_or(0, |p| p.offset) + 1;
                if publication.epoch.as_deref() != Some(from.epoch.as_str())
                    || publication.offset != Some(next)
                    || next > until
                {
                    break;
                }
                if let Some(state) = self.channels.get_mut(channel) {
                    state.position = Some(StreamPosition { epoch: from.epoch.clone(), offset: next });
                }
                let _ = self.events.send(SessionEvent::Publication(publication)).await;
            }
        }
        let at = self.channels.get(channel).and_then(|c| c.position.as_ref()).map_or(0, |p| p.offset);
        if at < until {
            self.lost(channel, StreamPosition { epoch: from.epoch, offset: until }).await;
        }
    }

    /// Runs one connection until it ends.
    async fn serve(&mut self, mut client: Client) -> Ended {
        self.run_deferred(&client).await;
        let mut acks = tokio::time::interval(self.options.ack_interval);
        acks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing: Option<u16> = None;
        loop {
            let refresh_at = self.token_expires.map(|at| at - Duration::from_secs(30).min((at - Instant::now()) / 3));
            let refresh = async {
                match refresh_at {
                    Some(at) if self.options.get_token.is_some() => tokio::time::sleep_until(at).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                event = client.next_event() => match event {
                    Some(Event::Publication(p)) => {
                        let channel = p.channel.clone();
                        if !self.deliver(&client, p).await {
                            self.resubscribe(&client, &channel).await;
                        }
                    }
                    Some(Event::Join(j)) => { let _ = self.events.send(SessionEvent::Join(j)).await; }
                    Some(Event::Leave(l)) => { let _ = self.events.send(SessionEvent::Leave(l)).await; }
                    Some(Event::Disconnect(d)) => closing = u16::try_from(d.code).ok(),
                    Some(Event::Closed(close)) => return Ended::Closed(closing.or(close.map(|(c, _)| c)).unwrap_or(1006)),
                    None => return Ended::Closed(closing.unwrap_or(1006)),
                    Some(_) => {}
                },
                op = self.ops.recv() => match op {
                    Some(Op::Close) | None => {
                        client.close().await;
                        return Ended::ByApplication;
                    }
                    Some(op) => self.run_op(&client, op).await,
                },
                _ = acks.tick() => self.acknowledge(&client).await,
                () = refresh => self.refresh(&client).await,
            }
        }
    }

    async fn run_op(&mut self, client: &Client, op: Op) {
        match op {
            Op::Subscribe(channel, options, reply) => {
                if self.channels.contains_key(&channel) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                self.channels.insert(channel.clone(), Channel { options, ..Channel::default() });
                let result = self.join(client, &channel).await;
                match result {
                    // The connection went while asking: ask again on the
                    // next one (the caller's timeout still runs).
                    Err(ClientError::Closed) => {
                        let options = self.channels.remove(&channel).map(|c| c.options).unwrap_or_default();
                        self.defer(Op::Subscribe(channel, options, reply));
                    }
                    Err(e) => {
                        self.channels.remove(&channel);
                        let _ = reply.send(Err(e));
                    }
                    Ok(()) => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            Op::Unsubscribe(channel) => {
                if self.channels.remove(&channel).is_some() {
                    let _ = tokio::time::timeout(self.options.timeout, client.unsubscribe(&channel)).await;
                }
            }
            Op::Publish(request, reply) => {
                let result = tokio::time::timeout(self.options.timeout, client.publish_with(request)).await;
                let _ = reply.send(result.unwrap_or(Err(ClientError::Timeout)));
            }
            Op::History(channel, since, limit, reply) => {
                let result = tokio::time::timeout(self.options.timeout, client.history(&channel, since, limit)).await;
                let _ = reply.send(result.unwrap_or(Err(ClientError::Timeout)));
            }
            Op::Close => {}
        }
    }

    /// Acknowledges, per channel, the last publication delivered.
    async fn acknowledge(&mut self, client: &Client) {
        for (channel, state) in &mut self.channels {
            let Some(offset) = state.position.as_ref().map(|p| p.offset) else { continue };
            if offset > state.acked && client.ack(channel, offset).await.is_ok() {
                state.acked = offset;
            }
        }
    }

    async fn refresh(&mut self, client: &Client) {
        self.token_expires = None;
        let Ok(token) = self.token().await else { return };
        let command =
            switchyard_proto::v1::client_frame::Command::Refresh(switchyard_proto::v1::RefreshRequest { token });
        match tokio::time::timeout(self.options.timeout, client.command(command)).await {
            Ok(Ok(Message::Refresh(r))) => {
                self.token_expires = Some(Instant::now() + Duration::from_secs(u64::from(r.expires_in)));
            }
            other => debug!(?other, "token refresh failed; the next connect takes a fresh one"),
        }
    }
}
