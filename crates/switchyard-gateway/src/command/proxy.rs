//! Where the command layer asks the application's backend ([`crate::proxy`]):
//! who a client without a token is, whether its connection goes on past the
//! expiry the backend set, whether it may subscribe, and what it may
//! publish. The answers become the same identities and refusals as tokens
//! and namespace rules give.

use super::Refusal;
use super::session::ClientSession;
use crate::auth::{Identity, MAX_USER_ID};
use crate::proxy::bodies::{
    Body, ConnectRequest, ConnectResult, Data, PublishRequest, RefreshRequest, RefreshResult, SubscribeRequest,
    SubscribeResult,
};
use crate::proxy::{Caller, Endpoint, Outcome, ProxyError};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use switchyard_core::clock::unix_seconds;
use switchyard_core::codes::{CloseCode, ErrorCode};
use switchyard_core::metric;
use tokio::time::Instant;
use tracing::debug;

/// A refresh the backend could not answer is tried again this often, until
/// the connection's grace (`auth.refresh_grace`) runs out.
const REFRESH_RETRY: Duration = Duration::from_secs(1);

impl ClientSession {
    /// POSTs `request` to `endpoint` on this client's behalf.
    pub(super) async fn ask<Q: Serialize, R: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        request: Q,
    ) -> Result<Outcome<R>, ProxyError> {
        let caller = Caller {
            client: &self.client,
            user: self.user(),
            transport: self.handshake.transport,
            encoding: self.protocol.label(),
        };
        let request_id = self.node.proxies.request_id(&self.node.name);
        let body = Body { request_id: &request_id, node: &self.node.name, caller: &caller, request };
        endpoint.call(body, &self.handshake).await
    }

    /// The backend's answer to a command as its result, or the refusal to
    /// answer: the backend's own error, its disconnect (an error reply,
    /// then the close it asked for), or 108 when no answer came.
    pub(super) fn settle<R>(outcome: Result<Outcome<R>, ProxyError>) -> Result<R, Refusal> {
        match outcome {
            Ok(Outcome::Result(result)) => Ok(result),
            Ok(Outcome::Error(code, message)) => {
                let message = if message.is_empty() { code.message().to_owned() } else { message };
                Err(Refusal::new(code, message))
            }
            Ok(Outcome::Disconnect(code, reason)) => {
                let reason = if reason.is_empty() { code.reason().to_owned() } else { reason };
                Err(Refusal::new(ErrorCode::PermissionDenied, reason).closing(code))
            }
            Err(error) => Err(Refusal::new(ErrorCode::NotAvailable, error.to_string())),
        }
    }

    /// `connect` without a token: the backend names the user from the
    /// upgrade's cookies and headers and the client's `data`. A refusal
    /// closes with 4003; no answer, with 1011 (reconnect with backoff).
    pub(super) async fn connect_by_proxy(&mut self, data: &[u8]) -> Result<Identity, Refusal> {
        let node = self.node.clone();
        let endpoint = node.proxies.connect.as_ref().expect("the caller checked");
        let outcome = self.ask::<_, ConnectResult>(endpoint, ConnectRequest { data: Data(data) }).await;
        let unavailable = outcome.is_err();
        let result = Self::settle(outcome).map_err(|refusal| match refusal.close {
            Some(_) => refusal,
            None if unavailable => refusal.closing(CloseCode::InternalError),
            None => refusal.closing(CloseCode::Unauthorized),
        })?;
        if result.user.len() > MAX_USER_ID {
            let message = format!("the backend named a user over {MAX_USER_ID} bytes");
            return Err(Refusal::new(ErrorCode::Internal, message).closing(CloseCode::InternalError));
        }
        self.liveness.mark_connected();
        if let Some(at) = result.expire_at {
            self.expire_by_proxy(at);
        }
        Ok(Identity {
            user: result.user,
            expires_at: result.expire_at,
            channels: result.channels,
            info: result.info,
            subs: result.subs,
        })
    }

    /// The connection ends at `at` (Unix seconds): with a refresh proxy,
    /// which is asked then, after the refresh grace; without one, then.
    fn expire_by_proxy(&mut self, at: u64) {
        let left = Duration::from_secs(at.saturating_sub(unix_seconds()));
        let now = Instant::now();
        if self.node.proxies.refresh.is_none() {
            self.refresh_timer = None;
            self.liveness.expire_at(now + left);
            return;
        }
        self.liveness.expire_at(now + left + self.node.config.auth.refresh_grace);
        self.refresh_at(now + left);
    }

    /// Asks the refresh proxy at `at`, through the session's own queue of
    /// server operations (the session runs it between frames).
    fn refresh_at(&mut self, at: Instant) {
        let cancel = tokio_util::sync::CancellationToken::new();
        let cancelled = cancel.clone();
        let ops = self.ops.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = cancelled.cancelled() => {}
                () = tokio::time::sleep_until(at) => {
                    let _ = ops.send(crate::node::ServerOp::ProxyRefresh).await;
                }
            }
        });
        self.refresh_timer = Some(cancel.drop_guard());
    }

    /// The expiry has come: the backend extends the connection, or ends it
    /// (4003). No answer: try again shortly; the grace bounds the tries.
    pub(super) async fn refresh_by_proxy(&mut self) {
        let node = self.node.clone();
        let Some(endpoint) = node.proxies.refresh.as_ref() else { return };
        match Self::settle(self.ask::<_, RefreshResult>(endpoint, RefreshRequest {}).await) {
            Ok(result) if !result.expired && result.expire_at.is_some_and(|at| at > unix_seconds()) => {
                if let Some(identity) = &mut self.identity {
                    identity.expires_at = result.expire_at;
                    if result.info.is_some() {
                        identity.info = result.info;
                    }
                }
                self.expire_by_proxy(result.expire_at.expect("checked"));
            }
            Ok(_) => {
                metric::token_expirations().increment(1);
                self.disconnect(CloseCode::Unauthorized, "the connection expired".into());
            }
            Err(refusal) if refusal.code == ErrorCode::NotAvailable => {
                debug!(client = %self.client, message = %refusal.message, "refresh proxy: no answer, trying again");
                self.refresh_at(Instant::now() + REFRESH_RETRY);
            }
            Err(refusal) => {
                let code = refusal.close.unwrap_or(CloseCode::Unauthorized);
                self.disconnect(code, refusal.message);
            }
        }
    }

    /// `subscribe` in a namespace with `proxy_subscribe`: the backend
    /// allows it (`{}`) or refuses it with its own error.
    pub(super) async fn check_subscribe_by_proxy(&self, channel: &str, data: &[u8]) -> Result<(), Refusal> {
        let node = self.node.clone();
        let Some(endpoint) = node.proxies.subscribe.as_ref() else {
            return Err(Refusal::new(ErrorCode::Internal, "proxy_subscribe without proxy.subscribe.url"));
        };
        let request = SubscribeRequest { channel, data: Data(data) };
        Self::settle(self.ask::<_, SubscribeResult>(endpoint, request).await).map(|_| ())
    }

    /// A client `publish` in a namespace with `proxy_publish`: the data to
    /// publish (the backend's rewrite, or the client's own), or the refusal.
    pub(super) async fn publish_by_proxy(&self, channel: &str, data: Bytes) -> Result<Bytes, Refusal> {
        let node = self.node.clone();
        let Some(endpoint) = node.proxies.publish.as_ref() else {
            return Err(Refusal::new(ErrorCode::Internal, "proxy_publish without proxy.publish.url"));
        };
        let request = PublishRequest { channel, data: Data(&data) };
        let result = Self::settle(self.ask::<_, crate::proxy::bodies::DataResult>(endpoint, request).await)?;
        let rewritten = result.payload().map_err(|e| Refusal::new(ErrorCode::NotAvailable, e))?;
        Ok(rewritten.unwrap_or(data))
    }
}
