//! Summaries of benchmark runs.

use std::time::Duration;

use hdrhistogram::Histogram;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub writes: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// CPU time of all node processes over the run, when they run on this machine.
    pub server_cpu: Option<Duration>,
    /// How much the leader's Raft term moved during the run.
    pub term_changes: Option<u64>,
}

impl RunResult {
    pub fn from_histogram(h: &Histogram<u64>, bytes: u64, elapsed: Duration) -> Self {
        Self {
            writes: h.len(),
            bytes,
            elapsed,
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            server_cpu: None,
            term_changes: None,
        }
    }

    /// Server CPU time per acknowledged write, in microseconds.
    pub fn cpu_us_per_write(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.writes > 0).then(|| cpu.as_secs_f64() * 1e6 / self.writes as f64)
    }

    pub fn writes_per_sec(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

/// Prints one row per level: medians over its runs, and throughput relative to the first row.
pub fn print_table(title: &str, rows: &[(String, Vec<RunResult>)]) {
    println!("\n{title}");
    println!(
        "{:<14} {:>5} {:>12} {:>9} {:>9} {:>9} {:>9} {:>10} {:>12} {:>8}",
        "level",
        "runs",
        "writes/s",
        "MB/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "vs first",
        "cpu us/write",
        "terms+"
    );
    let mut baseline = None;
    for (name, runs) in rows {
        let pick = |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(f).collect());
        let wps = pick(&|r| r.writes_per_sec());
        let base = *baseline.get_or_insert(wps);
        let cpu: Vec<f64> = runs
            .iter()
            .filter_map(RunResult::cpu_us_per_write)
            .collect();
        let cpu = if cpu.len() == runs.len() {
            format!("{:.0}", median(cpu))
        } else {
            "-".to_string()
        };
        let terms: Option<u64> = runs.iter().map(|r| r.term_changes).sum();
        let terms = terms.map_or("-".to_string(), |t| t.to_string());
        println!(
            "{:<14} {:>5} {:>12.0} {:>9.1} {:>9} {:>9} {:>9} {:>9.2}x {:>12} {:>8}",
            name,
            runs.len(),
            wps,
            pick(&|r| r.mb_per_sec()),
            ms(pick(&|r| r.p50_us as f64)),
            ms(pick(&|r| r.p99_us as f64)),
            ms(pick(&|r| r.p999_us as f64)),
            wps / base.max(1e-9),
            cpu,
            terms,
        );
    }
}
