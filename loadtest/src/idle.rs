//! The idle footprint and the connection storm: N clients connect (spread
//! over several 127.0.0.x source addresses, so that no source runs out of
//! ports) and subscribe, as fast as the server takes them; then they stay,
//! answering heartbeats, while the server's memory is read.

use crate::Target;
use crate::cpu;
use crate::stamp;
use bytes::Bytes;
use clap::ValueEnum;
use fastwebsockets::{Frame, OpCode, Payload};
use hdrhistogram::Histogram;
use http_body_util::Empty;
use hyper::Request;
use indicatif::ProgressBar;
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
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
    pub server_pid: Vec<u32>,
    pub label: String,
    /// Generator processes to spread the clients over (each may hold at
    /// most its file limit).
    pub processes: usize,
}

/// One generator process's share of the clients (`--worker`).
pub struct Share {
    /// Index of this share's first client (names its channels).
    pub first: usize,
    pub count: usize,
    /// Source addresses 127.0.0.(first_source+1) ..
    pub first_source: u8,
}

type Socket = fastwebsockets::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// What a storm produced: the open clients, and how opening them went.
struct Storm {
    open: Vec<Socket>,
    failed: usize,
    started_us: u64,
    ended_us: u64,
    handshakes_us: Vec<u64>,
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

/// Whether clients offer permessage-deflate (`SWITCHYARD_LOADTEST_OFFER_DEFLATE=1`,
/// which idle.sh sets for `switchyard-deflate`).
fn offers_deflate() -> bool {
    std::env::var_os("SWITCHYARD_LOADTEST_OFFER_DEFLATE").is_some_and(|v| v == "1")
}

/// One client: connect from `source`, handshake, subscribe (switchyard),
/// then answer pings until the end of the run.
async fn client(
    server: SocketAddr,
    path: String,
    source: Ipv4Addr,
    target: Target,
    channel: String,
) -> anyhow::Result<(Duration, Socket)> {
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
    if offers_deflate() {
        // What browsers offer: the idle footprint with compression
        // negotiated (idle connections get only pings and short replies,
        // which go uncompressed).
        request = request.header("sec-websocket-extensions", "permessage-deflate; client_max_window_bits");
    }
    let (mut ws, _) = fastwebsockets::handshake::client(
        &hyper_util::rt::TokioExecutor::new(),
        request.body(Empty::<Bytes>::new())?,
        stream,
    )
    .await?;
    if target == Target::SocketIo {
        ws.write_frame(Frame::text(Payload::Borrowed(b"40"))).await?;
        loop {
            let frame = ws.read_frame().await?;
            if frame.opcode == OpCode::Text && frame.payload.starts_with(b"40") {
                break;
            }
        }
    } else if target == Target::Pusher {
        loop {
            let frame = ws.read_frame().await?;
            anyhow::ensure!(frame.opcode != OpCode::Close, "closed before pusher:connection_established");
            if frame.opcode == OpCode::Text && frame.payload.starts_with(br#"{"event":"pusher:connection_established""#)
            {
                break;
            }
        }
        let subscribe = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#);
        ws.write_frame(Frame::text(Payload::Owned(subscribe.into_bytes()))).await?;
        loop {
            let frame = ws.read_frame().await?;
            anyhow::ensure!(frame.opcode != OpCode::Close, "closed while subscribing");
            if frame.opcode == OpCode::Text && frame.payload.windows(22).any(|w| w == b"subscription_succeeded") {
                break;
            }
        }
    } else if target.is_switchyard() {
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

/// Opens `share` of the clients, `concurrency` at a time.
async fn storm(
    server: SocketAddr,
    path: &str,
    target: Target,
    sources: u8,
    concurrency: usize,
    share: &Share,
    progress: &ProgressBar,
) -> Storm {
    let mut connecting = JoinSet::new();
    let mut open = Vec::with_capacity(share.count);
    let mut handshakes_us = Vec::with_capacity(share.count);
    let mut failed = 0usize;
    let started_us = stamp::now_us();
    let mut next = 0usize;
    while next < share.count || !connecting.is_empty() {
        while next < share.count && connecting.len() < concurrency {
            let n = share.first + next;
            let source = Ipv4Addr::new(127, 0, 0, 1 + share.first_source + (n % usize::from(sources.max(1))) as u8);
            connecting.spawn(client(server, path.to_owned(), source, target, format!("idle-{n}")));
            next += 1;
        }
        match connecting.join_next().await {
            Some(Ok(Ok((took, ws)))) => {
                handshakes_us.push(took.as_micros().max(1) as u64);
                open.push(ws);
            }
            Some(_) => failed += 1,
            None => {}
        }
        progress.inc(1);
    }
    Storm { open, failed, started_us, ended_us: stamp::now_us(), handshakes_us }
}

/// Keeps every client open, answering pings (WebSocket pings by
/// auto-pong; Engine.IO's `2` with `3`; Pusher's `pusher:ping` with
/// `pusher:pong`), until the set is dropped.
fn hold(open: Vec<Socket>) -> JoinSet<()> {
    let mut holders = JoinSet::new();
    for mut ws in open {
        holders.spawn(async move {
            while let Ok(frame) = ws.read_frame().await {
                if frame.opcode != OpCode::Text {
                    continue;
                }
                if &frame.payload[..] == b"2" {
                    let _ = ws.write_frame(Frame::text(Payload::Borrowed(b"3"))).await;
                } else if frame.payload.starts_with(br#"{"event":"pusher:ping""#) {
                    let pong = br#"{"event":"pusher:pong","data":{}}"#;
                    let _ = ws.write_frame(Frame::text(Payload::Borrowed(pong))).await;
                }
            }
        });
    }
    holders
}

fn split_url(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| anyhow::anyhow!("only ws:// URLs"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
    Ok((authority.parse()?, path))
}

/// A worker process: opens its share, reports the storm as one JSON line,
/// holds until its stdin closes, then reports how many are still open.
pub async fn worker(args: IdleArgs, share: Share) -> anyhow::Result<()> {
    let (server, path) = split_url(&args.url)?;
    let storm = storm(server, &path, args.target, args.sources, args.concurrency, &share, &ProgressBar::hidden()).await;
    let line = json!({
        "failed": storm.failed,
        "started_us": storm.started_us,
        "ended_us": storm.ended_us,
        "handshakes_us": storm.handshakes_us,
    });
    println!("{line}");
    let mut holders = hold(storm.open);
    let mut stdin = tokio::io::stdin();
    let mut sink = Vec::new();
    let _ = stdin.read_to_end(&mut sink).await;
    println!("{}", json!({ "alive": holders.len() - finished(&mut holders) }));
    holders.abort_all();
    Ok(())
}

fn finished(holders: &mut JoinSet<()>) -> usize {
    let mut n = 0;
    while holders.try_join_next().is_some() {
        n += 1;
    }
    n
}

pub async fn run(args: IdleArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        args.target != Target::SwitchyardProto,
        "the idle scenario speaks JSON, plain, Socket.IO or Pusher"
    );
    let (server, path) = split_url(&args.url)?;
    let processes = args.processes.max(1);
    let rss_before = cpu::total_rss_bytes(&args.server_pid);
    let kernel_before = tcp_kernel_bytes();
    let cpu_before = cpu::total_cpu_seconds(&args.server_pid);
    let progress = crate::progress::bar(args.connections as u64, "connecting");

    // The storm: in this process, or in `processes` workers at once.
    let mut handshakes = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (failed, storm_seconds, mut local, mut workers) = if processes == 1 {
        let share = Share { first: 0, count: args.connections, first_source: 0 };
        let storm = storm(server, &path, args.target, args.sources, args.concurrency, &share, &progress).await;
        for &us in &storm.handshakes_us {
            handshakes.record(us)?;
        }
        let seconds = (storm.ended_us - storm.started_us) as f64 / 1e6;
        (storm.failed, seconds, Some(hold(storm.open)), Vec::new())
    } else {
        let mut workers = Vec::new();
        for i in 0..processes {
            let count = args.connections / processes + usize::from(i < args.connections % processes);
            let first =
                (0..i).map(|j| args.connections / processes + usize::from(j < args.connections % processes)).sum();
            workers.push(Worker::spawn(
                &args,
                Share { first, count, first_source: (i as u8) * args.sources },
                processes,
            )?);
        }
        let (mut failed, mut start, mut end) = (0, u64::MAX, 0);
        for worker in &mut workers {
            let line = worker.line().await?;
            failed += line["failed"].as_u64().unwrap_or(0) as usize;
            start = start.min(line["started_us"].as_u64().unwrap_or(u64::MAX));
            end = end.max(line["ended_us"].as_u64().unwrap_or(0));
            for us in line["handshakes_us"].as_array().into_iter().flatten().filter_map(|v| v.as_u64()) {
                handshakes.record(us)?;
                progress.inc(1);
            }
        }
        (failed, end.saturating_sub(start) as f64 / 1e6, None, workers)
    };
    progress.finish_and_clear();
    let cpu_storm = cpu::total_cpu_seconds(&args.server_pid);

    tokio::time::sleep(args.hold).await;
    let rss_after = cpu::total_rss_bytes(&args.server_pid);
    let kernel_after = tcp_kernel_bytes();
    let cpu_held = cpu::total_cpu_seconds(&args.server_pid);
    let mut alive = 0;
    if let Some(holders) = local.as_mut() {
        alive = holders.len() - finished(holders);
        holders.abort_all();
    }
    for worker in &mut workers {
        alive += worker.finish().await?;
    }

    let connected = args.connections - failed;
    let per = |before: Option<u64>, after: Option<u64>, ends: u64| {
        before.zip(after).map(|(b, a)| a.saturating_sub(b) as f64 / (connected as f64 * ends as f64))
    };
    // Loopback: both ends of every connection are on this host; half the
    // kernel's TCP memory is the server's.
    let server_rss = per(rss_before, rss_after, 1);
    let kernel = per(kernel_before, kernel_after, 2);
    let total = server_rss.zip(kernel).map(|(r, k)| r + k);
    let storm_cpu = cpu_before.zip(cpu_storm).map(|(b, a)| a - b);
    let hold_cpu = cpu_storm.zip(cpu_held).map(|(b, a)| a - b);
    let report = json!({
        "label": args.label,
        "connections": connected,
        "failed": failed,
        "alive_after_hold": alive,
        "generator_processes": processes,
        "connects_per_second": connected as f64 / storm_seconds,
        "server_cpu_seconds_storm": storm_cpu,
        "connects_per_server_cpu_second": storm_cpu.map(|c| connected as f64 / c),
        "handshake_subscribe_ms": {
            "p50": handshakes.value_at_quantile(0.5) as f64 / 1000.0,
            "p99": handshakes.value_at_quantile(0.99) as f64 / 1000.0,
            "max": handshakes.max() as f64 / 1000.0,
        },
        "server_cores_per_10k_idle": hold_cpu.map(|c| c / args.hold.as_secs_f64() * 10_000.0 / connected as f64),
        "server_rss_bytes_per_connection": server_rss,
        "kernel_bytes_per_connection": kernel,
        "bytes_per_connection": total,
        "projected_100k_gib": total.map(|b| b * 100_000.0 / (1u64 << 30) as f64),
    });
    Ok(report)
}

/// A generator child process running [`worker`].
struct Worker {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Worker {
    fn spawn(args: &IdleArgs, share: Share, processes: usize) -> anyhow::Result<Worker> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["--scenario", "idle", "--url", &args.url])
            .args(["--target", args.target.to_possible_value().expect("no skipped variants").get_name()])
            .args(["--worker-first", &share.first.to_string(), "--connections", &share.count.to_string()])
            .args(["--worker-first-source", &share.first_source.to_string()])
            .args(["--sources", &args.sources.to_string()])
            .args(["--concurrency", &(args.concurrency / processes).max(1).to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        Ok(Worker { child, lines: tokio::io::BufReader::new(stdout).lines() })
    }

    async fn line(&mut self) -> anyhow::Result<serde_json::Value> {
        let line = self.lines.next_line().await?.ok_or_else(|| anyhow::anyhow!("a generator worker ended early"))?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Ends the hold; returns how many of its clients were still open.
    async fn finish(&mut self) -> anyhow::Result<usize> {
        drop(self.child.stdin.take());
        let alive = self.line().await?["alive"].as_u64().unwrap_or(0) as usize;
        self.child.wait().await?;
        Ok(alive)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_kernel_tcp_memory() {
        assert!(super::tcp_kernel_bytes().is_some());
    }
}
