//! The `arka` command line: `server`, `dev`, `admin` and `bench`.

mod admin;
mod bench;
mod connect_args;
mod dev;
pub mod dev_certs;
mod secrets;
mod server;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "arka",
    version,
    about = "A distributed, replicated log of Apache Arrow record batches"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one node.
    Server(server::ServerArgs),
    /// Run a local cluster: every node is a child `arka server` process.
    Dev(dev::DevArgs),
    /// Send an admin action (DoAction) to a node and print the result.
    Admin(admin::AdminArgs),
    /// Drive a running cluster and report throughput and ack latency.
    Bench(bench::BenchArgs),
    /// Read a password on stdin (its first line) and print its argon2id hash for the auth
    /// file's `password-hash`.
    HashPassword,
}

/// openraft warns on every failed heartbeat and replication attempt to a down peer (many
/// lines a second); the Raft network logs a peer going down and coming back once instead.
const DEFAULT_LOG_FILTER: &str = "info,sled=warn,openraft=warn,openraft::core::heartbeat=error,\
openraft::replication=error,openraft::engine::handler::replication_handler=error";

/// Logs to stderr, filtered by `RUST_LOG` (default `DEFAULT_LOG_FILTER`). A line that cannot
/// be written (stderr is a file on a full disk) is dropped: tracing's default reports it with
/// `eprintln!`, which panics on the same full disk, in whatever task logged, Raft's included.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    // Colour codes only on a terminal: a log file or a log collector gets plain text.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Server(args) => server::run(args).await.map(|()| 0),
        Command::Dev(args) => dev::run(args).await,
        Command::Admin(args) => admin::run(args).await,
        Command::Bench(args) => bench::run(args).await.map(|()| 0),
        Command::HashPassword => hash_password().map(|()| 0),
    }
}

fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']);
    let hash = crate::auth::hash_password(password)?;
    println!("{hash}");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
