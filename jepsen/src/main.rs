//! `arka-jepsen`: chaos tests for arka in the manner of Jepsen. `check` reads a history
//! (JSON lines, see `history`) and prints the verdict: every safety anomaly by class, and
//! availability per fault window. It exits with status 1 when the history shows any
//! safety anomaly.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use arka_jepsen::{checker, history, report, run};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "arka-jepsen", about = "Chaos tests for arka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a recorded history and prints the verdict.
    Check {
        /// The history, as JSON lines.
        history: PathBuf,
        /// Also write `verdict.json` and `verdict.md` into this folder.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Runs the queue workload against a new cluster while a nemesis injects faults, then
    /// checks the history. Needs root (it makes network namespaces).
    Run {
        /// The `arka` binary the nodes run.
        #[arg(long)]
        arka: PathBuf,
        /// The run's folder: node data and logs, `history.jsonl`, the verdict.
        #[arg(long)]
        out: PathBuf,
        /// Seconds of load under faults.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        /// The nemesis: kill, pause, partition, power-loss, degrade, membership, wal-damage or
        /// lake-outage.
        #[arg(long, default_value = "kill")]
        nemesis: String,
        /// Seed of the fault schedule.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Make the nodes' WAL skip its fsyncs (a disk that lies), to see the checker
        /// report the writes a power loss then loses.
        #[arg(long)]
        skip_fsync: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("arka-jepsen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// True when the verdict is valid.
fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Check { history, report } => {
            let file = File::open(&history)
                .with_context(|| format!("open the history {}", history.display()))?;
            let ops = history::read_jsonl(BufReader::new(file))
                .with_context(|| format!("read the history {}", history.display()))?;
            let verdict = checker::check(&ops);
            print!("{}", report::verdict_table(&verdict));
            if let Some(dir) = report {
                report::write_verdict(&dir, &verdict)?;
            }
            Ok(verdict.valid)
        }
        Command::Run {
            arka,
            out,
            time_limit,
            nemesis,
            seed,
            skip_fsync,
        } => {
            let config = run::RunConfig {
                arka,
                out,
                time_limit: Duration::from_secs(time_limit),
                nemesis,
                seed,
                skip_fsync,
                nodes: 3,
                producers: 4,
                tables: 2,
            };
            let runtime = tokio::runtime::Runtime::new().context("start the runtime")?;
            let verdict = runtime.block_on(run::run(&config))?;
            print!("{}", report::verdict_table(&verdict));
            println!("report: {}", config.out.display());
            Ok(verdict.valid)
        }
    }
}
