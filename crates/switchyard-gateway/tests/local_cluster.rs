//! deploy/local/cluster.sh for real: Redis, three nodes and haproxy on
//! loopback; 1,000 clients through haproxy; a rolling restart while
//! publishing. Every client ends up connected and subscribed, nobody sees
//! an abnormal close, and nothing is lost on the history channel.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use switchyard_testkit::follower::{Seen, follow};
use switchyard_testkit::http::{get, sample};
use switchyard_testkit::redis::free_port;
use switchyard_testkit::within;

const CLIENTS: usize = 1000;
const PUBLICATIONS: u64 = 300;
const CHANNEL: &str = "chat:everyone";

/// The cluster's settings, and `down` when the test ends, pass or fail.
struct LocalCluster {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    lb_port: u16,
    redis_port: u16,
    metrics_ports: Vec<u16>,
}

impl LocalCluster {
    fn new() -> LocalCluster {
        let dir = std::env::temp_dir().join(format!("switchyard-local-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("switchyard.toml");
        std::fs::write(
            &config,
            "[shutdown]\ndrain_period = \"1s\"\n[namespaces.chat]\nhistory_size = 10000\nhistory_ttl = \"10m\"\n",
        )
        .unwrap();
        // Nodes take NODE_PORT.. and METRICS_PORT..: three free in a row each.
        let run_of_three = || loop {
            let port = free_port(None);
            if port < 65000 && (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)).is_ok()) {
                return port;
            }
        };
        let (lb_port, redis_port, node_port, metrics_port) =
            (free_port(None), free_port(None), run_of_three(), run_of_three());
        let env = vec![
            ("SWITCHYARD_LOCAL_DIR", dir.display().to_string()),
            ("SWITCHYARD_BIN", env!("CARGO_BIN_EXE_switchyard").to_owned()),
            ("SWITCHYARD_CONFIG", config.display().to_string()),
            ("LB_PORT", lb_port.to_string()),
            ("REDIS_PORT", redis_port.to_string()),
            ("NODE_PORT", node_port.to_string()),
            ("METRICS_PORT", metrics_port.to_string()),
        ];
        LocalCluster { dir, env, lb_port, redis_port, metrics_ports: (0..3).map(|i| metrics_port + i).collect() }
    }

    fn script(&self, args: &[&str]) -> Command {
        let mut command = Command::new("bash");
        command.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/cluster.sh")).args(args);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.script(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "cluster.sh {args:?} failed:\n{text}");
        text
    }

    async fn connections(&self) -> f64 {
        let mut total = 0.0;
        for port in &self.metrics_ports {
            let addr = format!("127.0.0.1:{port}").parse().unwrap();
            let (_, metrics) = get(addr, "/metrics").await.unwrap();
            total += sample(&metrics, "switchyard_connections", "");
        }
        total
    }

    fn publish(&self, from: u64, count: u64) {
        let commands: String =
            (from..from + count).map(|n| format!("FCALL switchyard_publish 1 {CHANNEL} {n}\n")).collect();
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.redis_port.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(commands.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = self.script(&["down"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_thousand_clients_ride_out_a_rolling_restart_behind_haproxy() {
    let cluster = LocalCluster::new();
    let up = cluster.run(&["up", "3"]);
    let lb = format!("ws://127.0.0.1:{}/ws", cluster.lb_port);
    assert!(up.contains(&lb), "{up}");

    let url = Arc::new(Mutex::new(lb.clone()));
    let seen: Vec<Arc<Mutex<Seen>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let followers: Vec<_> = seen
        .iter()
        .map(|s| tokio::spawn(follow(CHANNEL.into(), lb.clone(), url.clone(), PUBLICATIONS, s.clone())))
        .collect();
    within("every client to be subscribed", async {
        while !seen.iter().all(|s| s.lock().unwrap().is_in()) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(cluster.connections().await, CLIENTS as f64, "all through haproxy, spread over the nodes");

    cluster.publish(1, 100);
    let restart = cluster.script(&["restart"]).spawn().unwrap();
    cluster.publish(101, 100);
    let status = tokio::task::spawn_blocking(move || restart.wait_with_output().unwrap()).await.unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    cluster.publish(201, 100);

    for follower in followers {
        within("every client to reach the last publication", follower).await.unwrap();
    }
    for s in &seen {
        let s = s.lock().unwrap();
        s.assert_complete(PUBLICATIONS);
        assert!(s.closes.iter().all(|c| *c == Some(1001)), "only 1001 closes, no 1006: {:?}", s.closes);
    }
    // Everyone is connected and subscribed at the end, on the restarted nodes.
    within("all 1000 connected again", async {
        while cluster.connections().await != CLIENTS as f64 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let status = cluster.run(&["status"]);
    assert_eq!(status.matches("running").count(), 5, "{status}");
}
