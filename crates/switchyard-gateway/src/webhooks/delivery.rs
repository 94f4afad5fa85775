//! One webhook target's sender: takes events from its queue in batches (up
//! to `batch_size`, waiting at most `batch_delay` for more), POSTs each
//! batch signed, and tries again with backoff on a non-2xx answer, an
//! error or a timeout, up to `max_attempts`; then drops it, counted. The
//! events of a batch keep their ids across attempts, for the receiver to
//! de-duplicate (delivery is at least once).

use super::{Queued, Signer};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use switchyard_core::clock::unix_micros;
use switchyard_core::config::WebhookConfig;
use switchyard_core::metric;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub(super) struct Sender {
    config: WebhookConfig,
    signer: Signer,
    uri: Option<Uri>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    Failed(&'static str),
}

impl Sender {
    pub(super) fn new(config: WebhookConfig, signer: Signer) -> Sender {
        let uri = config.url.parse().map_err(|e| warn!(url = %config.url, error = %e, "bad webhook URL")).ok();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(crate::outgoing::connector(crate::outgoing::system_roots()));
        Sender { config, signer, uri, client }
    }

    /// Sends batches until `stop`; then sends what is queued once more.
    pub(super) async fn run(self, mut queue: mpsc::Receiver<Queued>, stop: CancellationToken) {
        loop {
            let first = tokio::select! {
                () = stop.cancelled() => break,
                first = queue.recv() => match first {
                    Some(first) => first,
                    None => return,
                },
            };
            let batch = self.gather(first, &mut queue).await;
            self.deliver(batch, &stop).await;
        }
        // Stopping: what is queued gets one attempt each.
        let mut rest = Vec::new();
        while let Ok(event) = queue.try_recv() {
            rest.push(event);
        }
        for batch in rest.chunks(self.config.batch_size) {
            self.deliver(batch.to_vec(), &stop).await;
        }
    }

    /// `first` and what follows it within `batch_delay`, up to `batch_size`.
    async fn gather(&self, first: Queued, queue: &mut mpsc::Receiver<Queued>) -> Vec<Queued> {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + self.config.batch_delay;
        while batch.len() < self.config.batch_size {
            match tokio::time::timeout_at(until, queue.recv()).await {
                Ok(Some(event)) => batch.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        batch
    }

    /// Sends one batch, with retries (a single attempt once stopping).
    async fn deliver(&self, batch: Vec<Queued>, stop: &CancellationToken) {
        metric::webhook_queued().decrement(batch.len() as f64);
        let events: Vec<&serde_json::Value> = batch.iter().map(|q| &q.json).collect();
        let body = serde_json::json!({ "time_ms": unix_micros() / 1000, "events": events }).to_string();
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = self.attempt(&body).await;
            let failed = match outcome {
                Attempt::Delivered => {
                    metric::webhook_requests("ok").increment(1);
                    for event in &batch {
                        metric::webhook_events(event.name, "delivered").increment(1);
                    }
                    return;
                }
                Attempt::Failed(why) => why,
            };
            metric::webhook_requests(failed).increment(1);
            if attempts >= self.config.max_attempts || stop.is_cancelled() {
                warn!(url = %self.config.url, attempts, events = batch.len(), "webhook events dropped");
                for event in &batch {
                    metric::webhook_events(event.name, "dropped_failed").increment(1);
                }
                return;
            }
            debug!(url = %self.config.url, attempts, why = failed, "webhook failed; trying again");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(&self, body: &str) -> Attempt {
        let Some(uri) = self.uri.clone() else { return Attempt::Failed("error") };
        let mut request = Request::builder().method(Method::POST).uri(uri).header("content-type", "application/json");
        for (name, value) in self.signer.headers(body) {
            request = request.header(name, value);
        }
        let Ok(request) = request.body(Full::new(Bytes::from(body.to_owned()))) else {
            return Attempt::Failed("error");
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|_| "error")?;
            let status = response.status();
            // Read (and drop) the answer, so the connection can be used again.
            let _ = response.into_body().collect().await;
            if status.is_success() { Ok(()) } else { Err("status") }
        };
        match tokio::time::timeout(self.config.timeout, exchange).await {
            Ok(Ok(())) => Attempt::Delivered,
            Ok(Err(why)) => Attempt::Failed(why),
            Err(_) => Attempt::Failed("timeout"),
        }
    }
}
