//! `connect` (with `resume`), the implicit connect of a client that sends
//! another command first, `refresh`, and what every connect sets up: the
//! user's entry in the node's index and the token's `subs`.

use super::joined::Delivery;
use super::saved::SavedSession;
use super::session::ClientSession;
use super::{Refusal, Reply, resolve};
use crate::auth::Identity;
use std::time::Duration;
use switchyard_core::clock::unix_seconds;
use switchyard_core::codes::{CloseCode, ErrorCode};
use switchyard_core::metric;
use switchyard_proto::v1::{
    ConnectRequest, ConnectResult, RefreshRequest, RefreshResult, ResumedChannel, ServerFrame, ServerUnsubscribe,
    server_frame,
};
use tokio::time::Instant;
use tracing::debug;

impl ClientSession {
    pub(super) async fn connect(&mut self, id: u32, request: ConnectRequest) -> Reply {
        if self.identity.is_some() {
            return Err(Refusal::new(ErrorCode::BadRequest, "already connected"));
        }
        // A resume replays within one reply's worth, for all its channels
        // (a stream's URL channels share what is left).
        self.replay_budget = super::history::reply_budget(&self.node);
        let token =
            if request.token.is_empty() { self.handshake.token.clone().unwrap_or_default() } else { request.token };
        let identity = self.identify(&token, &request.data).await?;
        let expires_in = identity.expires_at.map(|exp| exp.saturating_sub(unix_seconds()) as u32);
        self.establish(identity)?;
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
            let reply = self.reply_frame(ServerFrame { id, message: Some(server_frame::Message::Connect(result)) });
            self.queue(reply);
            self.save().await;
            self.subscribe_claimed().await;
            return Ok(None);
        };
        // Rejoin every channel, holding live publications until the reply
        // and the recovered ones are queued.
        let mut rejoined = Vec::new();
        // Channels that could not be joined again are told to the client
        // (an `unsub` push after the reply), never dropped in silence.
        let mut dropped = Vec::new();
        for saved in saved.channels {
            let rejoin = match resolve(&self.node, &saved.channel) {
                Ok((channel, _)) => match self.check_user_channel(&channel) {
                    Ok(()) => {
                        let delivery = Delivery { filter: saved.filter, delta: saved.delta };
                        self.join(channel.as_str(), saved.position, true, false, delivery).await
                    }
                    Err(refusal) => Err(refusal),
                },
                Err(refusal) => Err(refusal),
            };
            match rejoin {
                Ok(j) => rejoined.push((saved.channel, j)),
                Err(e) => {
                    debug!(channel = %saved.channel, code = e.code.code(), "not resumed");
                    dropped.push(saved.channel);
                }
            }
        }
        result.resumed = Some(true);
        result.channels = rejoined
            .iter()
            .map(|(channel, j)| {
                let position = j.position.clone().unwrap_or_default();
                ResumedChannel {
                    channel: channel.clone(),
                    epoch: position.epoch,
                    offset: position.offset,
                    recovered: j.recovered.unwrap_or(true),
                }
            })
            .collect();
        metric::resumes("resumed").increment(1);
        let mut head =
            vec![self.reply_frame(ServerFrame { id, message: Some(server_frame::Message::Connect(result)) })];
        for (channel, j) in rejoined {
            head.extend(j.publications.into_iter().map(|p| self.frame(super::subscribe::push(p))));
            self.node.hub.finish_recovery(&channel, self.id, std::mem::take(&mut head), j.position);
        }
        // No channel took the reply along: send it now.
        for frame in head {
            self.queue(frame);
        }
        for channel in dropped {
            let unsub = ServerUnsubscribe { channel };
            self.send(ServerFrame { id: 0, message: Some(server_frame::Message::Unsub(unsub)) });
        }
        self.save().await;
        self.subscribe_claimed().await;
        Ok(None)
    }

    /// The saved session of `token`, if it is there and this user's; taken
    /// only then (another user's attempt leaves it to its owner).
    async fn take_saved(&self, token: &str) -> Result<Option<SavedSession>, Refusal> {
        let sessions = &self.node.stores.sessions;
        let peeked = sessions.get(token).await?;
        if peeked.as_deref().and_then(SavedSession::decode).is_some_and(|saved| saved.user != self.user()) {
            metric::resumes("refused").increment(1);
            return Ok(None);
        }
        let bytes = sessions.take(token).await?;
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

    /// Commands before `connect` run as the opening request's token says, or as an
    /// anonymous client where that is allowed.
    pub(super) async fn ensure_connected(&mut self) -> Result<(), Refusal> {
        if self.identity.is_some() {
            return Ok(());
        }
        let token = self.handshake.token.clone().unwrap_or_default();
        let identity = self.identify(&token, &[]).await?;
        self.establish(identity)?;
        self.subscribe_claimed().await;
        Ok(())
    }

    /// Who the client is: as its token says, or, without a token where the
    /// connect proxy is set, as the backend says.
    async fn identify(&mut self, token: &str, data: &[u8]) -> Result<Identity, Refusal> {
        if token.is_empty() && self.node.proxies.connect.is_some() {
            return self.connect_by_proxy(data).await;
        }
        self.node.auth.ensure_key(token).await;
        self.authenticate(token)
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

    /// Takes `identity` as this session's, and enters the session in the
    /// node's index of connections by user, within the per-user limit.
    fn establish(&mut self, identity: Identity) -> Result<(), Refusal> {
        if !identity.user.is_empty() {
            let registration = self
                .node
                .connections
                .register_user(
                    &identity.user,
                    self.id,
                    self.ops.clone(),
                    self.node.config.limits.max_connections_per_user,
                )
                .ok_or_else(|| {
                    metric::connections_refused("user_limit").increment(1);
                    Refusal::new(ErrorCode::LimitExceeded, "too many connections for this user")
                        .closing(CloseCode::ConnectionLimit)
                })?;
            self.user_registration = Some(registration);
        }
        self.identity = Some(identity);
        Ok(())
    }

    /// Subscribes to the channels of the token's `subs` claim: each gets a
    /// `sub` push, after the connect reply. A channel that cannot be
    /// joined is skipped (and logged): the connection stands.
    async fn subscribe_claimed(&mut self) {
        let subs = self.identity.as_ref().map(|i| i.subs.clone()).unwrap_or_default();
        for channel in subs {
            if self.channels.contains_key(&channel) {
                continue; // resumed already
            }
            if let Err(refusal) = self.server_subscribe(&channel).await {
                debug!(client = %self.client, %channel, code = refusal.code.code(), "a `subs` channel was not joined");
            }
        }
    }

    /// `refresh`: a new token for the same user extends the connection.
    pub(super) async fn refresh(&mut self, request: RefreshRequest) -> Reply {
        self.node.auth.ensure_key(&request.token).await;
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
}
