//! A real haproxy on 127.0.0.1 in front of nodes: round robin, no
//! affinity, health-checked on `/readyz`; killed when dropped.

use crate::redis::free_port;
use std::net::SocketAddr;
use std::process::Stdio;
use tokio::process::{Child, Command};

pub struct Haproxy {
    pub addr: SocketAddr,
    _child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Haproxy {
    /// Round robin.
    pub async fn start(nodes: &[SocketAddr]) -> Haproxy {
        Self::start_with(nodes, "roundrobin").await
    }

    /// With `balance` (`roundrobin`, `leastconn`); a node that is not up
    /// yet is marked down until it answers `/readyz`.
    pub async fn start_with(nodes: &[SocketAddr], balance: &str) -> Haproxy {
        let port = free_port(None);
        let dir = std::env::temp_dir().join(format!("switchyard-haproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch dir");
        let servers: Vec<String> = nodes
            .iter()
            .enumerate()
            .map(|(i, a)| format!("  server n{i} {a} check inter 200ms fall 1 rise 1"))
            .collect();
        let config = format!(
            "global\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  \
             timeout server 60s\n  timeout tunnel 1h\n  retries 3\n  option redispatch\n  \
             retry-on conn-failure empty-response response-timeout 503\nfrontend fe\n  \
             bind 127.0.0.1:{port}\n  default_backend nodes\nbackend nodes\n  balance {balance}\n  \
             option httpchk GET /readyz\n{}\n",
            servers.join("\n"),
        );
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).expect("write the haproxy config");
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&file)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start haproxy (scripts/test.sh installs it)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        crate::within("haproxy to serve", async {
            loop {
                if matches!(crate::http::get(addr, "/readyz").await, Ok((200, _))) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        Haproxy { addr, _child: child, dir }
    }
}
