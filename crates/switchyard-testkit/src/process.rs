//! The `switchyard` binary as a child process, killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub struct GatewayProcess {
    child: Child,
    /// The public listener, read back from the node's start-up log.
    pub addr: SocketAddr,
    /// The internal listener, when one was asked for.
    pub internal_addr: Option<SocketAddr>,
    /// Log lines after start-up.
    pub logs: mpsc::UnboundedReceiver<String>,
}

impl GatewayProcess {
    /// Runs `binary serve ARGS` with `--listen 127.0.0.1:0` and waits for it
    /// to say where it listens.
    pub async fn start(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> GatewayProcess {
        Self::start_on(binary, SocketAddr::from(([127, 0, 0, 1], 0)), args, env).await
    }

    /// [`GatewayProcess::start`] listening on `listen` (a balancer in front
    /// may know the address before the node starts).
    pub async fn start_on(binary: &Path, listen: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> GatewayProcess {
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .args(["--listen", &listen.to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start switchyard");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, mut logs) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (addr, internal_addr) = crate::within("the node's start-up line", async {
            loop {
                let line = logs.recv().await.expect("switchyard exited before it was up");
                if line.contains("switchyard is up") {
                    return (field(&line, "listen=").expect("listen= in the start-up line"), field(&line, "internal="));
                }
            }
        })
        .await;
        GatewayProcess { child, addr, internal_addr, logs }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        assert!(status.map(|s| s.success()).unwrap_or(false), "kill -TERM failed");
    }

    /// Stops the process (SIGSTOP) and returns once every one of its
    /// threads has stopped: a signal is sent at once but takes effect as
    /// each thread next enters the kernel, and a thread still running could
    /// answer one more message.
    pub async fn pause(&self) {
        let pid = self.pid().to_string();
        let status = std::process::Command::new("kill").args(["-STOP", &pid]).status();
        assert!(status.map(|s| s.success()).unwrap_or(false), "kill -STOP failed");
        crate::within("every thread of the node to stop", async {
            while !all_threads_stopped(&pid) {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
        .await;
    }

    /// Lets a stopped process run again (SIGCONT).
    pub fn resume(&self) {
        let status = std::process::Command::new("kill").args(["-CONT", &self.pid().to_string()]).status();
        assert!(status.map(|s| s.success()).unwrap_or(false), "kill -CONT failed");
    }

    /// Kills the process at once (SIGKILL): no drain, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }

    /// Waits for the process to exit; its exit code.
    pub async fn wait(&mut self) -> Option<i32> {
        self.child.wait().await.ok().and_then(|s| s.code())
    }

    /// The node's `/metrics` text (from its public listener, or its
    /// internal one where it has one).
    pub async fn metrics(&self) -> String {
        let addr = self.internal_addr.unwrap_or(self.addr);
        crate::http::get(addr, "/metrics").await.expect("GET /metrics").1
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in its
/// `/proc` stat line, after the command's closing parenthesis).
fn all_threads_stopped(pid: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('T')))
            .unwrap_or(false)
    })
}

/// The address after `key` in a log line (`listen=127.0.0.1:4242`).
fn field(line: &str, key: &str) -> Option<SocketAddr> {
    let start = line.find(key)? + key.len();
    let value: String = line[start..].chars().take_while(|c| !c.is_whitespace()).collect();
    value.parse().ok()
}
