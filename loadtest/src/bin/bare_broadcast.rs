//! `bare-broadcast`: the ceiling of switchyard's stack. A WebSocket server
//! (hyper + fastwebsockets, like the gateway) with no gateway logic: every
//! message a client sends is framed once and queued to every other client;
//! each client's writer drains its queue in vectored writes. No protocol,
//! channels, limits or metrics.
//!
//!     bare-broadcast 127.0.0.1:9100

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Role};
use http_body_util::Empty;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Clients = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Bytes>>>>;

#[path = "../peer_frame.rs"]
mod peer_frame;
use peer_frame::frame;

async fn client(io: TokioIo<hyper::upgrade::Upgraded>, id: u64, clients: Clients) {
    let (read, mut write) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    clients.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx.clone());
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(64);
        while rx.recv_many(&mut batch, 256).await > 0 {
            let mut chunks: Vec<Bytes> = std::mem::take(&mut batch);
            let mut start = 0;
            while start < chunks.len() {
                let slices: Vec<IoSlice<'_>> = chunks[start..].iter().take(512).map(|c| IoSlice::new(c)).collect();
                let Ok(mut written) = write.write_vectored(&slices).await else { return };
                if written == 0 {
                    return;
                }
                while written > 0 {
                    if written >= chunks[start].len() {
                        written -= chunks[start].len();
                        start += 1;
                    } else {
                        let _ = chunks[start].split_to(written);
                        written = 0;
                    }
                }
            }
        }
    });
    let (mut reader, _) = fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
    reader.set_auto_close(false);
    reader.set_auto_pong(false);
    let mut ignore = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
    while let Ok(message) = reader.read_frame(&mut ignore).await {
        match message.opcode {
            OpCode::Text | OpCode::Binary => {
                let bytes = frame(if message.opcode == OpCode::Text { 0x1 } else { 0x2 }, &message.payload);
                for (other, queue) in clients.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    if *other != id {
                        let _ = queue.send(bytes.clone());
                    }
                }
            }
            OpCode::Ping => {
                let _ = tx.send(frame(0xA, &message.payload));
            }
            OpCode::Close => {
                let _ = tx.send(frame(0x8, &message.payload[..message.payload.len().min(2)]));
                break;
            }
            _ => {}
        }
    }
    clients.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    drop(tx);
    let _ = writer.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9100".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("bare-broadcast listening on ws://{}/", listener.local_addr()?);
    let clients: Clients = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (clients, next) = (clients.clone(), next.clone());
        tokio::spawn(async move {
            let service = service_fn(move |mut req: Request<hyper::body::Incoming>| {
                let clients = clients.clone();
                let id = next.fetch_add(1, Ordering::Relaxed);
                async move {
                    let Ok((response, upgrade)) = fastwebsockets::upgrade::upgrade(&mut req) else {
                        return Ok::<_, std::convert::Infallible>(Response::new(Empty::new()));
                    };
                    tokio::spawn(async move {
                        if let Ok(ws) = upgrade.await {
                            client(ws.into_inner(), id, clients).await;
                        }
                    });
                    Ok(response)
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades().await;
        });
    }
}
