//! A short pass of every nemesis against a real cluster in network namespaces (needs root,
//! as CI has): the queue workload under each (kill -9, SIGSTOP, partitions, power loss, a
//! lossy and slow network, membership changes, WAL damage, the object store and catalog
//! going away) must end with a valid verdict, and the report must hold the history with the
//! nemesis's faults; and with disks that skip their fsyncs, power losses must show up as
//! lost writes. The passes share the test network, so they run one after the other in one
//! test.

use std::path::PathBuf;
use std::process::Command;

/// The `arka` binary of this build, beside this test's own folder.
fn arka_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir");
    let arka = profile.join("arka");
    assert!(
        arka.exists(),
        "{} is missing: build the workspace first",
        arka.display()
    );
    arka
}

#[test]
fn the_queue_workload_under_every_nemesis_gives_a_valid_verdict() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(root, "this test makes network namespaces: run it as root");
    for nemesis in arka_jepsen::NEMESES {
        let pass = short_pass(nemesis, &[]);
        assert_eq!(
            pass.verdict["counts"]["final_reads"], 6,
            "every table read from every node: {}",
            pass.printed
        );
        assert_eq!(pass.status, Some(0), "{}", pass.printed);
        assert_eq!(pass.verdict["valid"], true, "{}", pass.printed);
        let counts = &pass.verdict["counts"];
        assert!(counts["reads_ok"].as_u64() > Some(0), "{}", pass.printed);
        assert!(
            counts["level_checks"].as_u64() > Some(0),
            "{}",
            pass.printed
        );
        assert!(
            counts["flushed_lsn"].as_u64() > Some(0),
            "the flush after healing answered: {}",
            pass.printed
        );
        assert_eq!(
            counts["iceberg_reads"], 2,
            "every table read from Iceberg: {}",
            pass.printed
        );
    }
    // Disks that skip their fsyncs, and a power loss of every node: the writes acknowledged
    // since the start are gone from every node, and the checker must say so. A disk that lies
    // voids Raft's premise: a quorum may come back without entries it committed, and a node
    // that kept them then holds a log the new leader contradicts (openraft refuses it, and
    // that node stops applying), so here the final reads need only reach one node per table.
    let pass = short_pass("power-loss", &["--skip-fsync"]);
    assert!(
        pass.verdict["counts"]["final_reads"].as_u64() >= Some(2),
        "every table read from a node: {}",
        pass.printed
    );
    assert_eq!(pass.status, Some(1), "an invalid verdict: {}", pass.printed);
    assert!(
        pass.verdict["anomalies"]["lost"]["count"].as_u64() > Some(0),
        "lost writes reported: {}",
        pass.printed
    );
}

struct Pass {
    status: Option<i32>,
    verdict: serde_json::Value,
    printed: String,
}

/// 20 s of the queue workload under `nemesis`, checked; asserts that the run was made and
/// recorded in full.
fn short_pass(nemesis: &str, extra_args: &[&str]) -> Pass {
    let out = tempfile::TempDir::new().expect("tempdir");
    let args = [
        "run",
        "--time-limit",
        "20",
        "--seed",
        "3",
        "--nemesis",
        nemesis,
    ];
    let run = Command::new(env!("CARGO_BIN_EXE_arka-jepsen"))
        .args(args)
        .args(extra_args)
        .arg("--arka")
        .arg(arka_binary())
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run arka-jepsen");
    let printed = format!(
        "nemesis {nemesis} {extra_args:?}:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let verdict = std::fs::read(out.path().join("verdict.json"))
        .unwrap_or_else(|e| panic!("verdict.json: {e} ({:?})\n{printed}", run.status));
    let verdict: serde_json::Value =
        serde_json::from_slice(&verdict).unwrap_or_else(|e| panic!("verdict: {e}\n{printed}"));
    assert!(
        verdict["counts"]["sends_ok"].as_u64() > Some(100),
        "{printed}"
    );
    let history = std::fs::read_to_string(out.path().join("history.jsonl")).expect("history");
    assert!(
        history.contains(r#""f":"start_fault""#),
        "the nemesis acted: {printed}"
    );
    for plot in ["throughput.png", "latency.png"] {
        let png = std::fs::read(out.path().join(plot)).unwrap_or_else(|e| panic!("{plot}: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "{plot} is a PNG: {printed}");
    }
    Pass {
        status: run.status.code(),
        verdict,
        printed,
    }
}
