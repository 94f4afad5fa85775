//! A TCP proxy on 127.0.0.1 that injects the faults that are not crashes,
//! between a node and what it talks to (Redis): a silent path (bytes are
//! held, nothing is reset: a blackhole route as a node would see it), and
//! a slow one (replies held back by a delay), and a tampering one (bytes of
//! a reply changed, as a broken middlebox would). Switched at run time;
//! every connection it relays ends when it is dropped.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the path does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Bytes go through.
    Open,
    /// Nothing goes through either way, and nothing is reset: what is sent
    /// waits (as in the kernel's buffers) until the path opens again.
    Silent,
    /// Bytes from the target (replies, pushes) are held back this long.
    Slow(Duration),
    /// The first occurrence of `from` in what the target sends (within one
    /// read) becomes `to`, of the same length, once per connection.
    Tamper { from: &'static [u8], to: &'static [u8] },
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    path: watch::Sender<Path>,
    tasks: JoinSet<()>,
}

impl FaultProxy {
    /// A proxy to `target`, open.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fault proxy");
        let addr = listener.local_addr().expect("local addr");
        let (path, watching) = watch::channel(Path::Open);
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut relays = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let watching = watching.clone();
                relays.spawn(async move {
                    // A silent path does not even let a new connection reach
                    // the target (its handshake waits like the rest).
                    let mut path = watching.clone();
                    let _ = path.wait_for(|p| *p != Path::Silent).await;
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let up = pump(client_read, server_write, watching.clone(), false);
                    let down = pump(server_read, client_write, watching, true);
                    tokio::select! {
                        () = up => {}
                        () = down => {}
                    }
                });
            }
        });
        FaultProxy { addr, path, tasks }
    }

    /// Sets what the path does from now on.
    pub fn set(&self, path: Path) {
        self.path.send_replace(path);
    }

    /// A `redis://` URL through this proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

/// Copies `from` to `to` as the path allows; `replies`: this is the
/// target's direction, which a slow path delays.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut path: watch::Receiver<Path>,
    replies: bool,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut tampered = false;
    loop {
        // While the path is silent, nothing is read: the bytes wait.
        if path.wait_for(|p| *p != Path::Silent).await.is_err() {
            return;
        }
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = *path.borrow();
        match now {
            Path::Slow(delay) if replies => tokio::time::sleep(delay).await,
            // Read just as the path went silent: held until it opens.
            Path::Silent if path.wait_for(|p| *p != Path::Silent).await.is_err() => return,
            Path::Tamper { from, to } if replies && !tampered => {
                assert_eq!(from.len(), to.len(), "tampering keeps the length");
                if let Some(at) = buffer[..n].windows(from.len()).position(|w| w == from) {
                    buffer[at..at + to.len()].copy_from_slice(to);
                    tampered = true;
                }
            }
            _ => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}
