//! The run's report: the verdict as a table for people and as JSON for tools.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::checker::{Class, Verdict};
use crate::history::{write_jsonl, Op};

/// The verdict as Markdown tables: anomalies by class, then availability by fault window.
pub fn verdict_table(verdict: &Verdict) -> String {
    let mut out = String::new();
    let valid = if verdict.valid { "valid" } else { "INVALID" };
    let _ = writeln!(out, "verdict: {valid}\n");
    let _ = writeln!(out, "| anomaly | count | first example |\n|---|---|---|");
    for class in Class::ALL {
        let found = verdict.anomalies.get(&class);
        let count = verdict.count(class);
        let example = found
            .and_then(|f| f.examples.first())
            .map_or("", String::as_str);
        let name = serde_json::to_value(class).unwrap_or_default();
        let name = name.as_str().unwrap_or_default();
        let _ = writeln!(out, "| {name} | {count} | {example} |");
    }
    let c = &verdict.counts;
    let _ = writeln!(
        out,
        "\nsends: {} ({} ok, {} failed, {} indeterminate); reads: {}; final reads: {}; flushed up to: {}; Iceberg reads: {}; level checks: {}\n",
        c.sends, c.sends_ok, c.sends_failed, c.sends_indeterminate, c.reads_ok, c.final_reads,
        c.flushed_lsn.map_or("no answer".to_string(), |lsn| format!("LSN {lsn}")),
        c.iceberg_reads, c.level_checks
    );
    let _ = writeln!(
        out,
        "| fault | from s | to s | ops | ok | failed | indeterminate | unavailable |\n|---|---|---|---|---|---|---|---|"
    );
    for w in &verdict.availability {
        let secs = |ns: u64| format!("{:.1}", ns as f64 / 1e9);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1}% |",
            w.fault,
            secs(w.start_ns),
            w.end_ns.map_or_else(|| "end".into(), secs),
            w.ops,
            w.ok,
            w.failed,
            w.indeterminate,
            100.0 * w.unavailable_share()
        );
    }
    out
}

/// Writes the verdict into `dir`: `verdict.json` for tools, `verdict.md` for people.
pub fn write_verdict(dir: &Path, verdict: &Verdict) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let json = serde_json::to_vec_pretty(verdict).context("encode the verdict")?;
    write(&dir.join("verdict.json"), &json)?;
    write(&dir.join("verdict.md"), verdict_table(verdict).as_bytes())
}

/// Writes a run's report into `dir`: its history (`history.jsonl`) and its verdict.
pub fn write_run(dir: &Path, ops: &[Op], verdict: &Verdict) -> anyhow::Result<()> {
    let mut history = Vec::new();
    write_jsonl(ops, &mut history).context("encode the history")?;
    write(&dir.join("history.jsonl"), &history)?;
    write_verdict(dir, verdict)?;
    crate::plots::write(dir, ops)
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}
