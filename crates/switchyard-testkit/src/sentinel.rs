//! A Redis primary with one replica, watched by three sentinels, on
//! 127.0.0.1 with free ports: for failover tests. Everything is killed
//! when dropped.

use crate::redis::{RedisServer, free_port};
use crate::scratch::ScratchDir;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The name the sentinels monitor the group under.
pub const MASTER: &str = "switchyard-test";

pub struct SentinelGroup {
    pub primary: RedisServer,
    pub replica: RedisServer,
    /// The sentinels' ports.
    pub sentinel_ports: Vec<u16>,
    sentinels: Vec<Child>,
    _dir: ScratchDir,
}

impl SentinelGroup {
    /// Starts the primary, a replica in sync with it, and three sentinels
    /// that consider a primary down after one second without an answer.
    pub async fn start() -> SentinelGroup {
        // A replica's first sync starts at once (not after the default 5 s).
        let primary = RedisServer::start_with_args(&["--repl-diskless-sync-delay", "0"]).await;
        let port = primary.port.to_string();
        let replica =
            RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &port, "--repl-diskless-sync-delay", "0"]).await;
        crate::within("the replica to sync", async {
            while !replica.cli(&["INFO", "replication"]).await.contains("master_link_status:up") {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let dir = ScratchDir::new("sentinels");
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        while sentinels.len() < 3 {
            let sentinel_port = free_port(None);
            let file = dir.path().join(format!("sentinel-{sentinel_port}.conf"));
            // Sentinel rewrites its file: each gets its own.
            let config = format!(
                "port {sentinel_port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir.path().display(),
                primary.port
            );
            std::fs::write(&file, config).expect("write a sentinel config");
            let mut child = Command::new("redis-server")
                .arg(&file)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("run redis-server --sentinel");
            let up = crate::within("a sentinel to answer", async {
                loop {
                    if let Ok(Some(_)) = child.try_wait() {
                        return false; // the port was taken: try another
                    }
                    if sentinel_answer(sentinel_port, &["PING"]).await.contains("PONG") {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            if up {
                sentinels.push(child);
                sentinel_ports.push(sentinel_port);
            }
        }
        let group = SentinelGroup { primary, replica, sentinel_ports, sentinels, _dir: dir };
        // Every sentinel knows the replica (and the others) before a test kills anything.
        crate::within("the sentinels to see the replica and each other", async {
            for port in &group.sentinel_ports {
                loop {
                    let master = sentinel_answer(*port, &["SENTINEL", "MASTER", MASTER]).await;
                    let known = |field: &str| {
                        master
                            .lines()
                            .skip_while(|l| l.trim() != field)
                            .nth(1)
                            .and_then(|v| v.trim().parse::<u32>().ok())
                    };
                    if known("num-slaves") >= Some(1) && known("num-other-sentinels") >= Some(2) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
        .await;
        group
    }

    /// `redis://127.0.0.1:PORT` of each sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinel_ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect()
    }

    /// The port of the server the sentinels call the primary.
    pub async fn primary_port(&self) -> Option<u16> {
        let answer = sentinel_answer(self.sentinel_ports[0], &["SENTINEL", "get-master-addr-by-name", MASTER]).await;
        answer.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// Waits until the sentinels have promoted the replica.
    pub async fn wait_for_promotion(&self) {
        crate::within("the sentinels to promote the replica", async {
            while self.primary_port().await != Some(self.replica.port) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for sentinel in &mut self.sentinels {
            let _ = sentinel.start_kill();
        }
    }
}

async fn sentinel_answer(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
