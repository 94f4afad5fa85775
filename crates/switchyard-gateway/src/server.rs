//! The node's entry point: the accept loops and the shutdown.
//!
//! Every task a node runs has an owner that stops it: the accept loops and
//! the HTTP connections they accept are tracked here, client connections
//! (WebSocket sessions, SSE streams) on the connections' tracker the routes
//! spawn them on, and background work by [`Duties`]. On shutdown, in order:
//!
//! 1. the node starts draining (`/readyz` 503, upgrades refused) and the
//!    duties about the cluster stop (heartbeat, presence refresh,
//!    rebalancing, TLS reload);
//! 2. client connections are closed with 1001 in paced, jittered batches
//!    over `shutdown.drain_period` ([`crate::transport::drain`]), and
//!    awaited until `shutdown.grace_period` is over;
//! 3. the listeners stop accepting, and the HTTP connections finish what
//!    they are answering (within the grace period, then dropped);
//! 4. the remaining duties stop (control messages, receipts, the write
//!    clock, the recorder's upkeep), and `serve` returns.

use crate::duties::Duties;
use crate::node::Node;
use crate::recorder;
use crate::routes::{Listener, Routes};
use crate::transport::drain;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::metric;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// How long an accept loop waits after a failed accept (EMFILE and the
/// like) before it tries again: long enough not to spin on a full file
/// table, short enough that a freed descriptor is used soon.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `node` on `public` (and `internal`, if given) until `shutdown`
/// resolves, then shuts down in the order of this module's documentation
/// and returns once everything stopped or the grace period is over.
pub async fn serve(
    node: Arc<Node>,
    public: TcpListener,
    internal: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let metrics = recorder::install();
    metric::ready().set(1.0);
    metric::connections_limit().set(node.config.limits.max_connections as f64);
    let address = public.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let duties = Duties::start(&node, address, metrics.clone());

    let connections = TaskTracker::new();
    let routes = Arc::new(Routes::new(node.clone(), metrics, connections.clone()));
    let http = TaskTracker::new();
    let stop_accepting = CancellationToken::new();
    let public_listener = Listener::Public { metrics: internal.is_none() };
    http.spawn(accept_loop(public, public_listener, routes.clone(), http.clone(), stop_accepting.clone()));
    if let Some(internal) = internal {
        http.spawn(accept_loop(internal, Listener::Internal, routes.clone(), http.clone(), stop_accepting.clone()));
    }

    shutdown.await;
    let config = &node.config.shutdown;
    info!(connections = node.connections.len(), drain_period = ?config.drain_period, "draining");
    let deadline = tokio::time::Instant::now() + config.grace_period;
    node.start_draining();
    duties.stop_cluster();
    // The listeners keep answering plain HTTP while the node drains:
    // `/readyz` says 503 and upgrades are refused, so balancers that probe
    // the public port see the drain, and `/metrics` stays readable.
    drain::close_all(&node, config.drain_period).await;
    connections.close();
    if tokio::time::timeout_at(deadline, connections.wait()).await.is_err() {
        warn!(left = node.connections.len(), "grace period over with connections still open");
    }
    stop_accepting.cancel();
    http.close();
    if tokio::time::timeout_at(deadline, http.wait()).await.is_err() {
        debug!("grace period over with HTTP requests still open");
    }
    duties.stop().await;
    info!("stopped");
}

async fn accept_loop(
    listener: TcpListener,
    role: Listener,
    routes: Arc<Routes>,
    http: TaskTracker,
    stop: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let stop = stop.clone();
        http.spawn(async move {
            let tls = match role {
                Listener::Public { .. } => routes.node.tls.clone(),
                Listener::Internal => None,
            };
            match tls {
                None => serve_http(stream, peer, role, routes, stop).await,
                Some(tls) => {
                    // The TLS handshake counts against the same timeout as the HTTP one.
                    let timeout = routes.node.config.limits.handshake_timeout;
                    match tokio::time::timeout(timeout, tls.acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_http(stream, peer, role, routes, stop).await,
                        Ok(Err(e)) => {
                            metric::tls_handshake_failures().increment(1);
                            debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            metric::tls_handshake_failures().increment(1);
                            debug!(%peer, "TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 (and WebSocket upgrades) on one accepted connection,
/// until the peer closes it or, after `stop`, it finishes the request it
/// is answering.
async fn serve_http<I>(io: I, peer: SocketAddr, role: Listener, routes: Arc<Routes>, stop: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let timeout = routes.node.config.limits.handshake_timeout;
    let service = service_fn(move |req| {
        let routes = routes.clone();
        async move { Ok::<_, std::convert::Infallible>(routes.route(req, peer, role).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        debug!(%peer, error = %e, "http connection ended with an error");
    }
}
