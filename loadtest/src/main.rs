//! `switchyard-loadtest`: load for switchyard and its peers.
//!
//! Scenarios (docs/benchmarks.md): `broadcast` (subscribers on one channel;
//! with `--publish-url` across nodes, with `--stalled-percent` slow
//! consumers), `channels` (a personal and a group channel per client, with
//! churn), `idle` (connection storm, then memory per idle connection), and
//! `presence` and `join-leave` (presence at scale across two nodes), and
//! `chart` (an SVG of p99 against rate from broadcast reports).
//!
//! One publisher sends `--rate` publications per second in 1 ms ticks, each
//! stamped with its intended send time; every subscriber records
//! publish-to-deliver latency in an HdrHistogram. Prints one Markdown row
//! (and, with `--json`, a JSON file): deliveries per second, per server
//! CPU-second (`--server-pid`), losses, p50/p99/p99.9/max.
//!
//! Targets: `switchyard-json` and `switchyard-proto` speak the switchyard
//! protocol (subscribers in that encoding; the publisher sends JSON
//! `publish` commands); `plain` is for peers that broadcast every message a
//! client sends to every client (the Node `ws` baseline, `bare-broadcast`);
//! `socket-io` speaks Engine.IO v4 to a Socket.IO server that re-emits
//! `publish` events to everyone else.

mod audience;
mod backend;
mod broadcast;
mod catch_up;
mod channels;
mod chart;
mod compare;
mod connection;
mod cpu;
mod idle;
mod measurement;
mod presence;
mod progress;
mod publishing;
mod report;
mod schedule;
mod scrape;
mod stamp;
mod wire;

use clap::{Parser, ValueEnum};
use report::Report;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    SwitchyardJson,
    SwitchyardProto,
    /// Subscribers over Server-Sent Events (`GET /sse?channel=...`); the
    /// publisher speaks JSON over a WebSocket.
    SwitchyardSse,
    /// Peers that send every message a client sends to every other client.
    Plain,
    /// Socket.IO (Engine.IO v4 over WebSocket): publications are `publish`
    /// events, deliveries `m` events.
    SocketIo,
    /// The Pusher Channels protocol (`/app/<key>?protocol=7`): subscribers
    /// `pusher:subscribe` to public channels; publications come through
    /// the Pusher HTTP API (`--publish-via pusher-api`).
    Pusher,
}

impl Target {
    pub fn is_switchyard(self) -> bool {
        matches!(self, Target::SwitchyardJson | Target::SwitchyardProto | Target::SwitchyardSse)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Subscribers on one channel, publications at `--rate`.
    Broadcast,
    /// `--connections` clients, each on a personal and a group channel;
    /// publications at `--rate` spread over them; `--churn`.
    Channels,
    /// `--connections` clients connect and subscribe as fast as they can,
    /// then idle for `--hold`: connect rate and memory per connection.
    Idle,
    /// `--connections` members on a presence channel over `--url` and
    /// `--publish-url`; `presence` answers timed for `--duration`.
    Presence,
    /// `--connections` members on a join/leave channel over two nodes;
    /// `--rate` subscribe/unsubscribe cycles; deliveries and broker
    /// messages per event (`--scrape`).
    JoinLeave,
    /// `--connections` clients on `--channels-per-client` history channels
    /// each, published once; a probe channel at `--rate` by FCALL
    /// (`--publish-to` Redis) while the script restarts Redis: the node's
    /// catch-up time (`--scrape`) and the probe's latency during it.
    CatchUp,
    /// Draws the broadcast reports given as arguments into an SVG chart
    /// (`--chart`) of p99 latency against offered rate.
    Chart,
    /// Prints the ratios of the reports given as arguments: every server
    /// against `--reference` at the same size, rate and round.
    Compare,
    /// Makes the JetStream stream `EVENTS` on `events.>` (file storage) on
    /// the NATS server `--publish-to`, for consumers.sh.
    JetstreamSetup,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Load for switchyard and its peers: broadcast fan-out, idle footprint and connection storms")]
pub(crate) struct Args {
    #[arg(long, value_enum, default_value = "broadcast")]
    pub(crate) scenario: Scenario,
    /// Idle: clients to open (one process can hold fewer than its file limit).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) connections: usize,
    /// Idle: source addresses 127.0.0.1 .. 127.0.0.N to spread clients over.
    #[arg(long, default_value_t = 8)]
    pub(crate) sources: u8,
    /// Idle: generator processes to spread the clients over (one process
    /// may hold at most its file limit: 20,000 here).
    #[arg(long, default_value_t = 1)]
    pub(crate) processes: usize,
    /// Idle, internal: this process is a worker of another; its share
    /// starts at this client index.
    #[arg(long, hide = true)]
    pub(crate) worker_first: Option<usize>,
    /// Idle, internal: a worker's first source address offset.
    #[arg(long, hide = true, default_value_t = 0)]
    pub(crate) worker_first_source: u8,
    /// Idle: connections opening at once.
    #[arg(long, default_value_t = 200)]
    pub(crate) concurrency: usize,
    /// Idle: how long the clients stay before memory is read, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) hold: Duration,
    /// WebSocket URL of the server under test.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub(crate) url: String,
    /// Where the publisher connects, when not to `--url` (cross-node runs:
    /// subscribers on one node, the publisher on another).
    #[arg(long)]
    pub(crate) publish_url: Option<String>,
    #[arg(long, value_enum, default_value = "switchyard-json")]
    pub(crate) target: Target,
    /// Subscribers on the channel.
    #[arg(long, default_value_t = 100)]
    pub(crate) subscribers: usize,
    /// Publications per second.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rate: u64,
    /// Payload bytes per publication (at least 32).
    #[arg(long, default_value_t = 128)]
    pub(crate) payload: usize,
    /// What payloads are: `padding` (a stamp and filler), `document` (a
    /// JSON document with a real one's redundancy, different every time),
    /// `state` (a JSON document of which about 5 % changes each time).
    #[arg(long, value_enum, default_value = "padding")]
    pub(crate) payload_kind: stamp::PayloadKind,
    /// Broadcast: subscribers offer permessage-deflate (and inflate what
    /// comes compressed); wire bytes per delivery are reported either way.
    #[arg(long)]
    pub(crate) deflate: bool,
    /// Broadcast, switchyard: subscribers ask for Fossil deltas.
    #[arg(long)]
    pub(crate) delta: bool,
    /// Broadcast, switchyard: subscriber i filters on tag `k` = `v<i % N>`
    /// and publication j is tagged `k` = `v<j % N>` (0: no tags, no filters).
    #[arg(long, default_value_t = 0)]
    pub(crate) filters: usize,
    /// How long to wait after the last publication for deliveries still on
    /// their way; later ones count as lost.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) late_limit: Duration,
    /// How long to publish, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// The server's PIDs (comma-separated: every process of a cluster,
    /// Redis included), for their CPU time and memory.
    #[arg(long, value_delimiter = ',')]
    pub(crate) server_pid: Vec<u32>,
    #[arg(long, default_value = "bench")]
    pub(crate) channel: String,
    /// A name for this run in the report.
    #[arg(long, default_value = "run")]
    pub(crate) label: String,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Also append the Markdown row to this table (its header first when
    /// the file is new), as the side-by-side scripts collect their runs.
    #[arg(long)]
    pub(crate) results: Option<PathBuf>,
    /// How publications are sent: a `publish` command from a client, or as
    /// a backend would, `FCALL` on Redis or `POST /api/publish` (switchyard).
    #[arg(long, value_enum, default_value = "client")]
    pub(crate) publish_via: backend::Via,
    /// With `--publish-via fcall|http`: Redis' or the node's host:port.
    #[arg(long)]
    pub(crate) publish_to: Option<String>,
    /// With `--publish-via http`: the node's `api.key`.
    #[arg(long, default_value = "loadtest")]
    pub(crate) api_key: String,
    /// Broadcast: the share of subscribers (percent) that never read.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) stalled_percent: f64,
    /// Metrics listeners (host:port) of every switchyard node, to count
    /// broker messages per publication.
    #[arg(long, value_delimiter = ',')]
    pub(crate) scrape: Vec<String>,
    /// Catch-up: history channels each client subscribes to.
    #[arg(long, default_value_t = 125)]
    pub(crate) channels_per_client: usize,
    /// Channels: clients per group channel.
    #[arg(long, default_value_t = 10)]
    pub(crate) group_size: usize,
    /// Channels: percent of clients per minute that leave and come back.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) churn: f64,
    /// Chart: the SVG file to write.
    #[arg(long, default_value = "chart.svg")]
    pub(crate) chart: PathBuf,
    /// Chart: its title.
    #[arg(long, default_value = "Broadcast fan-out: p99 latency against offered rate")]
    pub(crate) title: String,
    /// Compare: the server the others are measured against.
    #[arg(long, default_value = "switchyard")]
    pub(crate) reference: String,
    /// Chart, compare: reports (JSON files written with `--json`).
    pub(crate) reports: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.scenario {
        Scenario::Chart => return chart::run(&args.reports, &args.title, &args.chart),
        Scenario::Compare => return compare::run(&args.reports, &args.reference),
        Scenario::JetstreamSetup => {
            let to = args.publish_to.as_deref().ok_or_else(|| anyhow::anyhow!("--publish-to is needed"))?;
            let js = async_nats::jetstream::new(async_nats::connect(to).await?);
            js.get_or_create_stream(async_nats::jetstream::stream::Config {
                name: "EVENTS".into(),
                subjects: vec!["events.>".into()],
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await?;
            return Ok(());
        }
        _ => {}
    }
    if matches!(args.scenario, Scenario::Presence | Scenario::JoinLeave | Scenario::CatchUp) {
        let report = match args.scenario {
            Scenario::Presence => presence::presence(&args).await?,
            Scenario::CatchUp => catch_up::run(&args).await?,
            _ => presence::join_leave(&args).await?,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        }
        return Ok(());
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
    let report = match args.scenario {
        Scenario::Channels => channels::run(&args).await?,
        _ => broadcast::run(&args).await?,
    };
    println!("{}", Report::header());
    println!("{}", report.row());
    if let Some(path) = &args.results {
        report::append_row(path, &report)?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report.json())?)?;
    }
    Ok(())
}
