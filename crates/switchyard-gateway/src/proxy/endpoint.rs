//! One proxy: a backend URL, the HTTP/1.1 client with its pool of
//! keep-alive connections, the bound on requests in flight, the timeout,
//! the circuit breaker and the metrics.

use super::bodies::{Answer, Body};
use super::breaker::{Admit, Breaker, Change};
use super::{Handshake, Outcome, ProxyError};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::codes::{CloseCode, ErrorCode};
use switchyard_core::config::ProxyEndpointConfig;
use switchyard_core::metric;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{info, warn};

/// Idle keep-alive connections to a backend are closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Endpoint {
    /// The `proxy` label of its metrics: connect, refresh, ...
    name: &'static str,
    uri: Uri,
    timeout: Duration,
    /// Forwarded request headers, lower case.
    headers: Vec<HeaderName>,
    max_response_size: usize,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Requests in flight: a permit each, none left = 108 at once.
    in_flight: Arc<Semaphore>,
    breaker: Breaker,
}

impl Endpoint {
    pub fn new(
        name: &'static str,
        config: &ProxyEndpointConfig,
        url: &str,
        tls: rustls::ClientConfig,
    ) -> Result<Endpoint, String> {
        let uri: Uri = url.parse().map_err(|e| format!("proxy.{name}.url: {url:?}: {e}"))?;
        let headers = config
            .headers
            .iter()
            .map(|h| {
                HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                    .map_err(|e| format!("proxy.{name}.headers: {h:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let connector = crate::outgoing::connector(tls);
        // In-flight requests bound the connections too: each holds at most one.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(config.max_in_flight)
            .build(connector);
        Ok(Endpoint {
            name,
            uri,
            timeout: config.timeout,
            headers,
            max_response_size: config.max_response_size,
            client,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            breaker: Breaker::new(config.circuit_failures, config.circuit_open_for),
        })
    }

    /// The header names this proxy forwards.
    pub fn forwarded(&self) -> &[HeaderName] {
        &self.headers
    }

    /// POSTs `body` (with the forwarded headers of the opening request) and reads the
    /// backend's answer.
    pub async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        body: Body<'_, Q>,
        handshake: &Handshake,
    ) -> Result<Outcome<R>, ProxyError> {
        metric::proxy_requests(self.name).increment(1);
        let result = self.attempt(body, handshake).await;
        if let Err(error) = &result {
            metric::proxy_errors(self.name, error.kind()).increment(1);
        }
        result
    }

    async fn attempt<Q: Serialize, R: DeserializeOwned>(
        &self,
        body: Body<'_, Q>,
        handshake: &Handshake,
    ) -> Result<Outcome<R>, ProxyError> {
        // Over the bound: refuse now rather than queue behind a slow backend.
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else { return Err(ProxyError::Overloaded) };
        let admitted = self.breaker.admit();
        if admitted == Admit::No {
            return Err(ProxyError::CircuitOpen);
        }
        let request_id = body.request_id;
        let body =
            serde_json::to_vec(&body).map_err(|e| ProxyError::Malformed(format!("cannot encode the request: {e}")))?;
        let mut http = Request::builder().method(Method::POST).uri(self.uri.clone());
        let headers = http.headers_mut().expect("a fresh builder has headers");
        for (name, value) in handshake.headers.iter().filter(|(name, _)| self.headers.contains(name)) {
            headers.append(name.clone(), value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert(HeaderName::from_static("x-request-id"), id);
        }
        let http = http.body(Full::new(Bytes::from(body))).map_err(|e| ProxyError::Malformed(e.to_string()))?;

        let started = Instant::now();
        // Dropped half-way (the client went away), the probe must not
        // leave the circuit waiting for an answer that never comes.
        let guard = ProbeGuard { breaker: &self.breaker, admitted, settled: false };
        let outcome = match tokio::time::timeout(self.timeout, self.exchange(http)).await {
            Ok(result) => result,
            Err(_) => Err(ProxyError::Timeout),
        };
        metric::proxy_duration(self.name).record(started.elapsed().as_secs_f64());
        let outcome = outcome.and_then(|bytes| parse::<R>(&bytes));
        guard.settle(outcome.is_ok(), self.name);
        outcome
    }

    /// Sends the request and reads the whole answer, within the size limit.
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Bytes, ProxyError> {
        let response = self.client.request(request).await.map_err(|e| ProxyError::Unavailable(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ProxyError::Status(status.as_u16()));
        }
        let body = Limited::new(response.into_body(), self.max_response_size).collect().await.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                ProxyError::Malformed(format!("an answer over {} bytes", self.max_response_size))
            } else {
                ProxyError::Unavailable(e.to_string())
            }
        })?;
        Ok(body.to_bytes())
    }
}

/// Settles an admitted request with the breaker, also when dropped.
struct ProbeGuard<'a> {
    breaker: &'a Breaker,
    admitted: Admit,
    settled: bool,
}

impl ProbeGuard<'_> {
    fn settle(mut self, ok: bool, name: &'static str) {
        self.settled = true;
        match self.breaker.record(self.admitted, ok) {
            Some(Change::Opened) => {
                warn!(proxy = name, "backend failing: circuit open, requests fail at once for a while");
                metric::proxy_circuit_opened(name).increment(1);
                metric::proxy_circuit_open(name).set(1.0);
            }
            Some(Change::Closed) => {
                info!(proxy = name, "backend answering again: circuit closed");
                metric::proxy_circuit_open(name).set(0.0);
            }
            None => {}
        }
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.abandon(self.admitted);
        }
    }
}

/// The answer as one of the three shapes.
fn parse<R: DeserializeOwned>(bytes: &[u8]) -> Result<Outcome<R>, ProxyError> {
    let answer: Answer<R> =
        serde_json::from_slice(bytes).map_err(|e| ProxyError::Malformed(format!("not a JSON answer: {e}")))?;
    match (answer.result, answer.error, answer.disconnect) {
        (Some(result), None, None) => Ok(Outcome::Result(result)),
        (None, Some(error), None) => match ErrorCode::from_backend(error.code) {
            Some(code) => Ok(Outcome::Error(code, error.message)),
            None => Err(ProxyError::Malformed(format!("error code {} is not 100-112 or 1000-1999", error.code))),
        },
        (None, None, Some(disconnect)) => {
            // Only the protocol's codes: clients know what each means.
            let code = CloseCode::from_code(disconnect.code).unwrap_or(CloseCode::Unauthorized);
            Ok(Outcome::Disconnect(code, disconnect.reason))
        }
        _ => Err(ProxyError::Malformed("the answer needs exactly one of result, error, disconnect".into())),
    }
}
