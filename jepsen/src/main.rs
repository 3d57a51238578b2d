//! `arka-jepsen`: chaos tests for arka in the manner of Jepsen. `check` reads a history
//! (JSON lines, see `history`) and prints the verdict: every safety anomaly by class, and
//! availability per fault window. It exits with status 1 when the history shows any
//! safety anomaly.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arka_jepsen::{checker, history, report};
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
        /// Also write `verdict.json` into this folder.
        #[arg(long)]
        report: Option<PathBuf>,
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
    }
}
