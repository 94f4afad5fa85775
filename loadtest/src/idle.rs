//! The idle footprint and the connection storm: N clients connect (spread
//! over several 127.0.0.x source addresses, so that no source runs out of
//! ports) and subscribe, as fast as the server takes them; then they stay,
//! answering heartbeats, while the server's memory is read.

use crate::Target;
use crate::cpu;
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use hdrhistogram::Histogram;
use http_body_util::Empty;
use hyper::Request;
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub struct IdleArgs {
    pub url: String,
    pub target: Target,
    pub connections: usize,
    pub sources: u8,
    pub concurrency: usize,
    pub hold: Duration,
    pub server_pid: Option<u32>,
    pub label: String,
}

/// Kernel memory of all TCP sockets on the host, in bytes
/// (`/proc/net/sockstat`, `TCP: ... mem <pages>`).
fn tcp_kernel_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "mem" {
            return words.next()?.parse::<u64>().ok().map(|pages| pages * 4096);
        }
    }
    None
}

/// One client: connect from `source`, handshake, subscribe (switchyard),
/// then answer pings until the end of the run.
async fn client(
    server: SocketAddr,
    path: String,
    source: Ipv4Addr,
    target: Target,
    channel: String,
) -> anyhow::Result<(Duration, fastwebsockets::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>)> {
    let started = Instant::now();
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let mut request = Request::get(path.as_str())
        .header("host", server.to_string())
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", fastwebsockets::handshake::generate_key())
        .header("sec-websocket-version", "13");
    if target == Target::SwitchyardJson {
        request = request.header("sec-websocket-protocol", "switchyard.v1.json");
    }
    let (mut ws, _) = fastwebsockets::handshake::client(
        &hyper_util::rt::TokioExecutor::new(),
        request.body(Empty::<Bytes>::new())?,
        stream,
    )
    .await?;
    if target != Target::Plain {
        let subscribe = format!(r#"{{"id":1,"subscribe":{{"channel":"{channel}"}}}}"#);
        ws.write_frame(Frame::text(Payload::Owned(subscribe.into_bytes()))).await?;
        loop {
            let frame = ws.read_frame().await?;
            if matches!(frame.opcode, OpCode::Text | OpCode::Binary) {
                break;
            }
        }
    }
    Ok((started.elapsed(), ws))
}

pub async fn run(args: IdleArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(args.target != Target::SwitchyardProto, "the idle scenario speaks JSON or plain");
    let rest = args.url.strip_prefix("ws://").ok_or_else(|| anyhow::anyhow!("only ws:// URLs"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let server: SocketAddr = authority.parse()?;
    let path = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
    let rss_before = args.server_pid.and_then(cpu::rss_bytes);
    let kernel_before = tcp_kernel_bytes();

    let mut connecting = JoinSet::new();
    let mut open = Vec::with_capacity(args.connections);
    let mut handshakes = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failed = 0usize;
    let started = Instant::now();
    let mut next = 0usize;
    while next < args.connections || !connecting.is_empty() {
        while next < args.connections && connecting.len() < args.concurrency {
            let source = Ipv4Addr::new(127, 0, 0, 1 + (next % usize::from(args.sources.max(1))) as u8);
            let channel = format!("idle-{next}");
            connecting.spawn(client(server, path.clone(), source, args.target, channel));
            next += 1;
        }
        match connecting.join_next().await {
            Some(Ok(Ok((took, ws)))) => {
                let _ = handshakes.record(took.as_micros().max(1) as u64);
                open.push(ws);
            }
            Some(_) => failed += 1,
            None => {}
        }
    }
    let storm = started.elapsed();

    // Hold: every client answers pings (auto-pong) while the server idles.
    let mut holders = JoinSet::new();
    for mut ws in open {
        holders.spawn(async move { while ws.read_frame().await.is_ok() {} });
    }
    tokio::time::sleep(args.hold).await;
    let rss_after = args.server_pid.and_then(cpu::rss_bytes);
    let kernel_after = tcp_kernel_bytes();
    let alive = holders.len() - holders.try_join_next().into_iter().count();
    holders.abort_all();

    let connected = args.connections - failed;
    let per = |before: Option<u64>, after: Option<u64>, ends: u64| {
        before.zip(after).map(|(b, a)| a.saturating_sub(b) as f64 / (connected as f64 * ends as f64))
    };
    // Loopback: both ends of every connection are on this host; half the
    // kernel's TCP memory is the server's.
    let server_rss = per(rss_before, rss_after, 1);
    let kernel = per(kernel_before, kernel_after, 2);
    let total = server_rss.zip(kernel).map(|(r, k)| r + k);
    let report = json!({
        "label": args.label,
        "connections": connected,
        "failed": failed,
        "alive_after_hold": alive,
        "connects_per_second": connected as f64 / storm.as_secs_f64(),
        "handshake_subscribe_ms": {
            "p50": handshakes.value_at_quantile(0.5) as f64 / 1000.0,
            "p99": handshakes.value_at_quantile(0.99) as f64 / 1000.0,
            "max": handshakes.max() as f64 / 1000.0,
        },
        "server_rss_bytes_per_connection": server_rss,
        "kernel_bytes_per_connection": kernel,
        "bytes_per_connection": total,
        "projected_100k_gib": total.map(|b| b * 100_000.0 / (1u64 << 30) as f64),
    });
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_kernel_tcp_memory() {
        assert!(super::tcp_kernel_bytes().is_some());
    }
}
