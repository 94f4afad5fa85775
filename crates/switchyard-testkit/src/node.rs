use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::config::{Config, NamespaceConfig};
use switchyard_gateway::{Node, serve};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A configuration for tests: loopback, port 0, a short drain.
pub fn test_config() -> Config {
    let mut config = Config { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..Config::default() };
    config.shutdown.drain_period = Duration::from_millis(200);
    config.shutdown.grace_period = Duration::from_secs(10);
    // Tests publish thousands of messages from one connection; the rate
    // limit has a test of its own.
    config.client.commands_per_second = 1_000_000;
    config.client.commands_burst = 1_000_000;
    config.validate().expect("the test config is valid")
}

/// `config` with a namespace `name` that keeps `size` publications for ten
/// minutes.
pub fn with_history(mut config: Config, name: &str, size: usize) -> Config {
    let namespace = NamespaceConfig { history_size: size, history_ttl: Duration::from_secs(600), ..Default::default() };
    config.namespaces.insert(name.to_owned(), namespace);
    config
}

/// A gateway node served in this process on 127.0.0.1 with a port of its own.
pub struct TestNode {
    pub addr: SocketAddr,
    /// The internal listener's address, when the config asks for one.
    pub internal_addr: Option<SocketAddr>,
    pub node: Arc<Node>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestNode {
    /// Starts a node on the broker its config names (the in-memory one
    /// unless `broker.redis_url` or `broker.redis_cluster` is set).
    pub async fn start(config: Config) -> TestNode {
        let config = config.validate().expect("valid config");
        let public = TcpListener::bind(config.listen).await.expect("bind the public listener");
        let internal = match config.internal_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.expect("bind the internal listener")),
            None => None,
        };
        let addr = public.local_addr().expect("local addr");
        let internal_addr = internal.as_ref().map(|l| l.local_addr().expect("local addr"));
        let node = Node::connect(config).await.expect("start the node");
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone().cancelled_owned();
        let task = tokio::spawn(serve(node.clone(), public, internal, signal));
        TestNode { addr, internal_addr, node, shutdown, task: Some(task) }
    }

    /// `ws://127.0.0.1:PORT/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Starts the drain, as SIGTERM does, without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Drains and waits until the node has stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// The body of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let addr = self.internal_addr.unwrap_or(self.addr);
        crate::http::get(addr, "/metrics").await.expect("GET /metrics").1
    }

    /// Waits until the sample `name{labels}` reaches `at_least`: polls
    /// `/metrics`, the observable event, every 10 ms up to the deadline.
    pub async fn wait_for_sample(&self, name: &str, labels: &str, at_least: f64) {
        let what = format!("{name}{{{labels}}} >= {at_least}");
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(10));
        crate::within(&what, async {
            loop {
                poll.tick().await;
                if crate::http::sample(&self.metrics().await, name, labels) >= at_least {
                    return;
                }
            }
        })
        .await
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
