//! A real `nats-server` with JetStream for tests, on 127.0.0.1 with a free
//! port and its store in a scratch directory (kept across a restart),
//! killed when dropped.

use crate::redis::free_port;
use crate::scratch::ScratchDir;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    dir: ScratchDir,
}

/// Starts `nats-server` on `port` with its store in `store`; None if it is
/// not listening within a few seconds (the port was taken meanwhile).
async fn spawn(port: u16, store: &Path) -> Option<Child> {
    let mut child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start nats-server (apt-get install nats-server)");
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Some(child);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill().await;
    None
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        let dir = ScratchDir::new("nats");
        for _ in 0..20 {
            let port = free_port(None);
            if let Some(child) = spawn(port, dir.path()).await {
                return NatsServer { child: Some(child), port, dir };
            }
        }
        panic!("nats-server did not start");
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server and starts it again on the same port and store.
    pub async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        for _ in 0..50 {
            if let Some(child) = spawn(self.port, self.dir.path()).await {
                self.child = Some(child);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nats-server did not come back");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}
