//! `switchyard`: run a gateway node, or check a configuration file.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard_broker::{RedisSettings, RedisTarget, RedisTls};
use switchyard_gateway::settings::{self, Overrides};
use switchyard_gateway::{Node, serve};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

/// sysexits' EX_USAGE: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "switchyard", version, about = "A horizontally scalable real-time WebSocket gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway node.
    Serve(Overrides),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Publish PAYLOAD on CHANNEL through Redis, as a backend does
    /// (`FCALL switchyard_publish`), and print `[epoch, offset]`.
    Publish {
        #[command(flatten)]
        redis: RedisArgs,
        channel: String,
        payload: String,
    },
    /// List the live gateway nodes of the cluster registry.
    Nodes {
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// GET an http:// URL and exit 0 if it answers 200 (for container
    /// health checks: `switchyard probe http://127.0.0.1:8080/readyz`).
    Probe { url: String },
}

#[derive(clap::Args)]
struct RedisArgs {
    /// Redis URL.
    #[arg(long = "redis", env = "SWITCHYARD_REDIS_URL", value_name = "URL", required_unless_present = "cluster")]
    url: Option<String>,
    /// A seed node of a Redis Cluster (repeat for more).
    #[arg(long = "redis-cluster", value_name = "URL", conflicts_with = "url")]
    cluster: Vec<String>,
    /// Key prefix [default: switchyard].
    #[arg(long, default_value = "switchyard")]
    prefix: String,
    /// For rediss://: a PEM file of the CA to trust.
    #[arg(long, value_name = "FILE")]
    tls_ca_file: Option<PathBuf>,
}

impl RedisArgs {
    fn settings(self) -> anyhow::Result<RedisSettings> {
        let target = match self.url {
            Some(url) => RedisTarget::Standalone(url),
            None => RedisTarget::Cluster(self.cluster),
        };
        let ca = match &self.tls_ca_file {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?),
            None => None,
        };
        // Namespaces matter only to loading the function library, which
        // these commands leave to the gateways.
        Ok(RedisSettings {
            target,
            prefix: self.prefix,
            tls: RedisTls { ca, client: None },
            namespaces: Vec::new(),
            node: String::new(),
            idempotency_window: std::time::Duration::from_secs(300),
            health_timeout: std::time::Duration::from_secs(2),
        })
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate FILE (with the SWITCHYARD_* environment applied) and print
    /// the effective configuration.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve(overrides) => {
            let config = match settings::load(&overrides) {
                Ok(config) => config,
                Err(e) => return config_error(&e),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("switchyard: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchyard: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Publish { redis, channel, payload } => tool(async move {
            let (epoch, offset) =
                switchyard_broker::redis::publish_raw(&redis.settings()?, &channel, payload.as_bytes()).await?;
            println!("{}", serde_json::json!([epoch, offset]));
            Ok(())
        }),
        Command::Nodes { redis } => tool(async move {
            let nodes = switchyard_broker::redis::list_nodes(&redis.settings()?).await?;
            println!(
                "{:<20} {:<10} {:<24} {:>11} {:>13} {:>9} {:>10}",
                "NAME", "VERSION", "ADDRESS", "CONNECTIONS", "SUBSCRIPTIONS", "CHANNELS", "UPTIME"
            );
            for n in &nodes {
                println!(
                    "{:<20} {:<10} {:<24} {:>11} {:>13} {:>9} {:>9}s",
                    n.name,
                    n.version,
                    n.address,
                    n.connections,
                    n.subscriptions,
                    n.channels,
                    n.uptime_seconds()
                );
            }
            Ok(())
        }),
        Command::Probe { url } => tool(async move {
            let status = switchyard_gateway::probe::get(&url).await?;
            anyhow::ensure!(status == 200, "{url} answered {status}");
            Ok(())
        }),
        Command::Config { command: ConfigCommand::Check { file } } => {
            let overrides = Overrides { config: Some(file), ..Default::default() };
            match settings::load(&overrides) {
                Ok(config) => {
                    print!("{}", toml::to_string_pretty(&config).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => config_error(&e),
            }
        }
    }
}

/// Runs an operator's command to completion; errors print and exit 1.
fn tool(command: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(error: &settings::SettingsError) -> ExitCode {
    eprintln!("switchyard: {error}");
    ExitCode::from(EXIT_CONFIG)
}

async fn run(config: switchyard_core::config::Config) -> anyhow::Result<()> {
    let public =
        TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let internal = match config.internal_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?),
        None => None,
    };
    let node = Node::connect(config).await.context("cannot start the node")?;
    info!(
        node = %node.name,
        listen = %public.local_addr()?,
        internal = %internal.as_ref().and_then(|l| l.local_addr().ok()).map_or("none".to_owned(), |a| a.to_string()),
        broker = node.stores.broker.kind(),
        "switchyard is up: WebSocket at /ws"
    );
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => info!("SIGTERM"),
            _ = interrupt.recv() => info!("SIGINT"),
        }
    };
    serve(node, public, internal, shutdown).await;
    Ok(())
}
