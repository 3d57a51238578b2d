//! A short pass of every nemesis against a real cluster in network namespaces (needs root,
//! as CI has): the queue workload under each (kill -9, SIGSTOP, partitions) must end with a
//! valid verdict, and the report must hold the history with the nemesis's faults. The
//! passes share the test network, so they run one after the other in one test.

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
        short_pass(nemesis);
    }
}

/// 20 s of the queue workload under `nemesis`, checked.
fn short_pass(nemesis: &str) {
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
        .arg("--arka")
        .arg(arka_binary())
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run arka-jepsen");
    let printed = format!(
        "nemesis {nemesis}:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(run.status.code(), Some(0), "{printed}");
    let verdict: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("verdict.json")).expect("verdict.json"),
    )
    .expect("verdict");
    assert_eq!(verdict["valid"], true, "{printed}");
    assert!(
        verdict["counts"]["sends_ok"].as_u64() > Some(100),
        "{printed}"
    );
    assert_eq!(
        verdict["counts"]["final_reads"], 6,
        "every table read from every node: {printed}"
    );
    let history = std::fs::read_to_string(out.path().join("history.jsonl")).expect("history");
    assert!(
        history.contains(r#""f":"start_fault""#),
        "the nemesis acted: {printed}"
    );
}
