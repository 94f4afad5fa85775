//! `switchyard`: run a gateway node, or check a configuration file.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
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

fn config_error(error: &settings::SettingsError) -> ExitCode {
    eprintln!("switchyard: {error}");
    ExitCode::from(EXIT_CONFIG)
}

async fn run(config: switchyard_core::config::Config) -> anyhow::Result<()> {
    if config.broker.redis_url.is_some() {
        anyhow::bail!("broker.redis_url is set, but this build has only the in-memory broker");
    }
    let public =
        TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let internal = match config.internal_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?),
        None => None,
    };
    let node = Node::with_memory_broker(config);
    info!(
        node = %node.name,
        listen = %public.local_addr()?,
        internal = %internal.as_ref().and_then(|l| l.local_addr().ok()).map_or("none".to_owned(), |a| a.to_string()),
        broker = node.broker.kind(),
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
