//! The node's shared state: the floor every other part stands on. It holds
//! what one node shares between its connections and imports nothing
//! defined above it: commands, transports and HTTP routes know the node,
//! never the other way round.
//!
//! # Layout
//! - [`Node`] (here): config, hub, shared stores, and the parts below.
//! - [`connections`]: the live connections and their permits, and the
//!   index by user.
//! - [`server_ops`]: what the server does to a session ([`ServerOp`]), and
//!   a session's queue of them.
//! - [`streams`]: the SSE streams, by session token.
//! - [`requests`]: requests to other nodes waiting on their answers.
//! - [`presence`]: this node's own presence entries.
//! - [`write_clock`]: the writers' shared clock (`client.write_delay`).
//! - [`sink`]: where the broker hands publications and control messages.
//! - [`broker_settings`]: the config as the broker takes it.

mod broker_settings;
pub mod connections;
pub mod consumer_shares;
pub mod membership;
pub mod presence;
pub mod requests;
pub mod server_ops;
mod sink;
pub mod streams;
pub mod write_clock;

pub use broker_settings::{publish_options, redis_settings};
pub use server_ops::{OpReceiver, OpSender, ServerOp};

use crate::auth::Authenticator;
use crate::tls::Tls;
use crate::webhooks::Webhooks;
use connections::Connections;
use governor::clock::QuantaClock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use presence::LocalPresence;
use requests::Requests;
use sink::NodeSink;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use streams::Streams;
use switchyard_broker::{BrokerError, Stores};
use switchyard_core::config::Config;
use switchyard_core::hub::{ConnId, Hub};
use switchyard_core::metric;
use switchyard_proto::v1::{Control, ReceiptReply};
use tokio::sync::mpsc;
use write_clock::WriteClock;

/// Control messages waiting for the node's control task, at most; more
/// are dropped and counted (the broker must never wait on a node).
const CONTROL_QUEUE: usize = 1024;

/// One gateway node: its config, subscriptions, broker and connections.
pub struct Node {
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    /// What the node shares with the cluster: broker, sessions, registry,
    /// presence.
    pub stores: Stores,
    pub connections: Connections,
    /// This node's own presence entries, kept fresh while its clients stay.
    pub presence: LocalPresence,
    /// Requests to other nodes this node is waiting on.
    pub requests: Requests,
    /// The SSE streams of this node, by session token.
    pub streams: Streams,
    /// Control messages from the broker, taken by the control task once
    /// the node serves.
    control: Mutex<Option<mpsc::Receiver<Control>>>,
    /// Parts of publish receipts to send, taken by the receipts task.
    receipts: Mutex<Option<mpsc::Receiver<(String, ReceiptReply)>>>,
    pub auth: Authenticator,
    /// The application's backend, where `proxy.*.url` is set.
    pub proxies: crate::proxy::Proxies,
    /// TLS for the public listener, when `tls.cert` and `tls.key` are set.
    pub tls: Option<Arc<Tls>>,
    /// This node's name: in client ids, Envelopes and logs.
    pub name: String,
    /// The clock of every connection's command rate limiter. One for the
    /// node: creating a clock probes the CPU (`cpuid`), which in a virtual
    /// machine cost more than the rest of accepting a connection.
    pub rate_clock: QuantaClock,
    /// New connections per client address (`limits.connects_per_second_per_ip`),
    /// when set.
    pub connect_limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// The writers' clock, when `client.write_delay` is set.
    pub write_clock: Option<Arc<WriteClock>>,
    /// What this node holds of each consumer of the application's queues.
    pub consumer_shares: consumer_shares::ConsumerShares,
    /// Where the cluster's channel events go (`[[webhooks]]`, Pusher apps').
    pub webhooks: Webhooks,
    /// The first half of this node's Pusher socket ids (`<this>.<conn id>`),
    /// random per start: a socket id names one connection in the cluster.
    pub socket_prefix: u32,
    /// Open Pusher connections on this node, by the app's place in
    /// `pusher.apps` (its `max_connections` holds per node).
    pusher_counts: Box<[AtomicUsize]>,
    next_conn: AtomicU64,
    draining: AtomicBool,
    /// The broker has been out of reach past `broker.cutoff_after`: the
    /// node handed its clients back and takes no new ones until it is back.
    cut_off: AtomicBool,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Proxy(String),
}

impl Node {
    /// A node on the broker its config names: Redis (one, or a Cluster), or
    /// the in-memory broker when there is none.
    pub async fn connect(config: Config) -> Result<Arc<Node>, StartError> {
        let auth = Authenticator::new(&config.auth).map_err(StartError::Auth)?;
        if let Some(remote) = &auth.remote {
            // A provider that is down at start costs tokens until it is
            // back (fetched again on schedule), not the node's start.
            let _ = remote.fetch().await;
        }
        let proxies = crate::proxy::Proxies::new(&config.proxy).map_err(StartError::Proxy)?;
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::new(cert, key).map_err(StartError::Tls)?)),
            _ => None,
        };
        let name = config.node_name.clone().unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        let hub = Arc::new(Hub::with_deflate_min_size(config.client.compression_min_size));
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let (receipts, receipts_rx) = mpsc::channel(CONTROL_QUEUE);
        let socket_prefix = rand::random_range(1..1_000_000_000);
        let sink = Arc::new(NodeSink { hub: hub.clone(), control, receipts, socket_prefix });
        let stores = match redis_settings(&config, &name)? {
            Some(settings) => Stores::redis(settings, sink).await?,
            None => Stores::memory(sink, config.broker.idempotency_window),
        };
        let (max_connections, max_per_ip) = (config.limits.max_connections, config.limits.max_connections_per_ip);
        let rate_clock = QuantaClock::default();
        let connect_limiter = NonZeroU32::new(config.limits.connects_per_second_per_ip).map(|rate| {
            let burst = NonZeroU32::new(config.limits.connects_burst_per_ip).unwrap_or(NonZeroU32::MIN);
            RateLimiter::new(Quota::per_second(rate).allow_burst(burst), Default::default(), rate_clock.clone())
        });
        let write_clock = (!config.client.write_delay.is_zero()).then(|| WriteClock::new(config.client.write_delay));
        let webhooks = Webhooks::new(&config, &name);
        let pusher_counts = config.pusher.apps.iter().map(|_| AtomicUsize::new(0)).collect();
        Ok(Arc::new(Node {
            pusher_counts,
            webhooks,
            socket_prefix,
            write_clock,
            consumer_shares: Default::default(),
            auth,
            proxies,
            tls,
            config: Arc::new(config),
            hub,
            stores,
            connections: Connections::new(max_connections, max_per_ip),
            presence: LocalPresence::default(),
            requests: Requests::default(),
            streams: Streams::default(),
            control: Mutex::new(Some(control_rx)),
            receipts: Mutex::new(Some(receipts_rx)),
            name,
            rate_clock,
            connect_limiter,
            next_conn: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            cut_off: AtomicBool::new(false),
        }))
    }

    /// This node's parts of publish receipts; the first caller (the
    /// receipts task) gets them.
    pub fn take_receipts(&self) -> Option<mpsc::Receiver<(String, ReceiptReply)>> {
        self.receipts.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The control messages from the broker; the first caller (the node's
    /// control task) gets them.
    pub fn take_control(&self) -> Option<mpsc::Receiver<Control>> {
        self.control.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Open Pusher connections of the app at `app` on this node.
    pub fn pusher_connections(&self, app: usize) -> usize {
        self.pusher_counts.get(app).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts a Pusher connection of the app at `app` opening (`+1`) or
    /// closing.
    pub fn count_pusher_connection(&self, app: usize, opened: bool) {
        if let Some(count) = self.pusher_counts.get(app) {
            match opened {
                true => count.fetch_add(1, Ordering::Relaxed),
                false => count.fetch_sub(1, Ordering::Relaxed),
            };
        }
    }

    /// The Pusher socket id of this node's connection `conn`.
    pub fn socket_id(&self, conn: ConnId) -> String {
        format!("{}.{conn}", self.socket_prefix)
    }

    /// Whether the node accepts connections: not draining, broker reachable.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.stores.broker.is_ready()
    }

    /// Whether the node handed its clients back for want of its broker.
    pub fn is_cut_off(&self) -> bool {
        self.cut_off.load(Ordering::Acquire)
    }

    pub fn set_cut_off(&self, cut_off: bool) {
        self.cut_off.store(cut_off, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// From now on `/readyz` says 503 and upgrades are refused.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        metric::ready().set(0.0);
    }
}
