//! `switchyard-loadtest`: broadcast fan-out under an open-loop publish rate.
//!
//! N subscribers on one channel, one publisher sending `--rate`
//! publications per second in 1 ms ticks, each stamped with its intended
//! send time; every subscriber records publish-to-deliver latency in an
//! HdrHistogram. Prints one Markdown row (and, with `--json`, a JSON file):
//! deliveries per second, per server CPU-second (`--server-pid`), losses,
//! p50/p99/p99.9/max.
//!
//! Targets: `switchyard-json` and `switchyard-proto` speak the switchyard
//! protocol (subscribers in that encoding; the publisher sends JSON
//! `publish` commands); `plain` is for peers that broadcast every message a
//! client sends to every client (the Node `ws` baseline, `bare-broadcast`);
//! `socket-io` speaks Engine.IO v4 to a Socket.IO server that re-emits
//! `publish` events to everyone else.

mod chart;
mod connection;
mod cpu;
mod idle;
mod progress;
mod report;
mod schedule;
mod stamp;

use clap::{Parser, ValueEnum};
use connection::{Publisher, Role};
use hdrhistogram::Histogram;
use report::Report;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    SwitchyardJson,
    SwitchyardProto,
    /// Peers that send every message a client sends to every other client.
    Plain,
    /// Socket.IO (Engine.IO v4 over WebSocket): publications are `publish`
    /// events, deliveries `m` events.
    SocketIo,
}

impl Target {
    pub fn is_switchyard(self) -> bool {
        matches!(self, Target::SwitchyardJson | Target::SwitchyardProto)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Subscribers on one channel, publications at `--rate`.
    Broadcast,
    /// `--connections` clients connect and subscribe as fast as they can,
    /// then idle for `--hold`: connect rate and memory per connection.
    Idle,
    /// Draws the broadcast reports given as arguments into an SVG chart
    /// (`--chart`) of p99 latency against offered rate.
    Chart,
}

#[derive(Parser, Debug)]
#[command(about = "Load for switchyard and its peers: broadcast fan-out, idle footprint and connection storms")]
struct Args {
    #[arg(long, value_enum, default_value = "broadcast")]
    scenario: Scenario,
    /// Idle: clients to open (one process can hold fewer than its file limit).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Idle: source addresses 127.0.0.1 .. 127.0.0.N to spread clients over.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Idle: generator processes to spread the clients over (one process
    /// may hold at most its file limit: 20,000 here).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Idle, internal: this process is a worker of another; its share
    /// starts at this client index.
    #[arg(long, hide = true)]
    worker_first: Option<usize>,
    /// Idle, internal: a worker's first source address offset.
    #[arg(long, hide = true, default_value_t = 0)]
    worker_first_source: u8,
    /// Idle: connections opening at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Idle: how long the clients stay before memory is read, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// WebSocket URL of the server under test.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Where the publisher connects, when not to `--url` (cross-node runs:
    /// subscribers on one node, the publisher on another).
    #[arg(long)]
    publish_url: Option<String>,
    #[arg(long, value_enum, default_value = "switchyard-json")]
    target: Target,
    /// Subscribers on the channel.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Publications per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Payload bytes per publication (at least 32).
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// How long to wait after the last publication for deliveries still on
    /// their way; later ones count as lost.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    late_limit: Duration,
    /// How long to publish, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The server's PIDs (comma-separated: every process of a cluster,
    /// Redis included), for their CPU time and memory.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    #[arg(long, default_value = "bench")]
    channel: String,
    /// A name for this run in the report.
    #[arg(long, default_value = "run")]
    label: String,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Chart: the SVG file to write.
    #[arg(long, default_value = "chart.svg")]
    chart: PathBuf,
    /// Chart: its title.
    #[arg(long, default_value = "Broadcast fan-out: p99 latency against offered rate")]
    title: String,
    /// Chart: broadcast reports (JSON files written with `--json`).
    reports: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.scenario == Scenario::Chart {
        return chart::run(&args.reports, &args.title, &args.chart);
    }
    if args.scenario == Scenario::Idle {
        let idle_args = idle::IdleArgs {
            url: args.url,
            target: args.target,
            connections: args.connections,
            sources: args.sources,
            concurrency: args.concurrency,
            hold: args.hold,
            server_pid: args.server_pid,
            label: args.label,
            processes: args.processes,
        };
        if let Some(first) = args.worker_first {
            let share = idle::Share { first, count: args.connections, first_source: args.worker_first_source };
            return idle::worker(idle_args, share).await;
        }
        let report = idle::run(idle_args).await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        }
        return Ok(());
    }
    anyhow::ensure!(args.payload >= 32, "--payload must be at least 32 bytes");

    // Subscribers, connected a hundred at a time.
    let delivered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(args.subscribers);
    let mut writers = Vec::with_capacity(args.subscribers);
    let all: Vec<usize> = (0..args.subscribers).collect();
    for chunk in all.chunks(100) {
        let connecting =
            chunk.iter().map(|_| connection::connect(&args.url, args.target, Role::Subscriber, &args.channel));
        for socket in connecting.collect::<Vec<_>>() {
            let (reader, writer) = socket.await?;
            readers.push(connection::receive(reader, delivered.clone()));
            writers.push(writer);
        }
    }
    let publish_url = args.publish_url.as_deref().unwrap_or(&args.url);
    let (reader, writer) = connection::connect(publish_url, args.target, Role::Publisher, &args.channel).await?;
    let (mut publisher, drain) = Publisher::new(reader, writer, args.target);

    // Publish open-loop for `duration`, each publication stamped with the
    // time its tick was due, however late the loop runs.
    let cpu_before = cpu::total_cpu_seconds(&args.server_pid);
    let started = Instant::now();
    let ticks = args.duration.as_millis() as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let origin_us = stamp::now_us();
    let mut sent = 0u64;
    let progress = progress::bar(ticks, "publishing");
    for n in 0..ticks {
        tick.tick().await;
        if n % 100 == 0 {
            progress.set_position(n);
        }
        let due = origin_us + n * 1000;
        for _ in 0..schedule::due_in_tick(args.rate, n) {
            publisher.publish(&args.channel, &stamp::payload(due, args.payload)).await?;
            sent += 1;
        }
    }
    let publishing = started.elapsed();
    progress.finish_and_clear();

    // Stragglers: until everything arrived, 2 s with nothing new, or
    // `--late-limit` (a saturated peer can be minutes behind; what has not
    // arrived by then counts as lost).
    let expected = sent * args.subscribers as u64;
    let mut last = delivered.load(Ordering::Relaxed);
    let mut quiet = 0;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let give_up = Instant::now() + args.late_limit;
    while delivered.load(Ordering::Relaxed) < expected && quiet < 20 && Instant::now() < give_up {
        poll.tick().await;
        let now = delivered.load(Ordering::Relaxed);
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
    let cpu_after = cpu::total_cpu_seconds(&args.server_pid);
    let rss = cpu::total_rss_bytes(&args.server_pid);
    drain.abort();

    // Close every subscriber; each reader ends on the server's close frame
    // and hands back its histogram.
    for writer in &mut writers {
        connection::close(writer).await;
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for reader in readers {
        if let Ok(Ok(histogram)) = tokio::time::timeout(Duration::from_secs(5), reader).await {
            latency.add(histogram)?;
        }
    }
    let report = Report::new(
        &args.label,
        args.subscribers,
        args.rate,
        args.payload,
        sent,
        delivered.load(Ordering::Relaxed),
        publishing,
        cpu_before.zip(cpu_after).map(|(b, a)| a - b),
        rss,
        &latency,
    );
    println!("{}", Report::header());
    println!("{}", report.row());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report.json())?)?;
    }
    Ok(())
}
