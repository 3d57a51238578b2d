//! `arka-jepsen check` on recorded histories: status 0 and a valid verdict for a clean one,
//! status 1 naming the anomaly for one that lost a write, status 2 for a damaged file.

use std::process::Command;

use arka::durability::Level;
use arka_jepsen::history::{write_jsonl, Function, Op, OpType};

fn send(index: u64, kind: OpType, value: i64, lsn: u64) -> Op {
    let mut op = Op::new(1, kind, Function::Send);
    op.index = index;
    op.table = Some("events".into());
    op.value = Some(value);
    if kind == OpType::Ok {
        op.lsn = Some(lsn);
        op.level = Some(Level::Replicated);
        op.node = Some(1);
    }
    op
}

fn final_read(index: u64, entries: &[(u64, i64)]) -> Op {
    let mut op = Op::new(2, OpType::Ok, Function::FinalRead);
    op.index = index;
    op.table = Some("events".into());
    op.node = Some(2);
    op.entries = Some(entries.to_vec());
    op.upto = Some(9);
    op
}

/// Runs `check` on the history; returns its exit status and what it printed.
fn check(ops: &[Op]) -> (Option<i32>, String, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = dir.path().join("history.jsonl");
    let mut bytes = Vec::new();
    write_jsonl(ops, &mut bytes).expect("encode");
    std::fs::write(&path, bytes).expect("write the history");
    let out = Command::new(env!("CARGO_BIN_EXE_arka-jepsen"))
        .arg("check")
        .arg(&path)
        .arg("--report")
        .arg(dir.path().join("report"))
        .output()
        .expect("run arka-jepsen");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text, dir)
}

#[test]
fn a_clean_history_passes_and_a_lost_write_fails_by_name() {
    let clean = [
        send(0, OpType::Invoke, 7, 0),
        send(1, OpType::Ok, 7, 5),
        final_read(2, &[(5, 7)]),
    ];
    let (status, text, dir) = check(&clean);
    assert_eq!(status, Some(0), "{text}");
    assert!(text.contains("verdict: valid"), "{text}");
    let verdict =
        std::fs::read_to_string(dir.path().join("report/verdict.json")).expect("verdict.json");
    assert!(verdict.contains(r#""valid": true"#), "{verdict}");

    let lost = [
        send(0, OpType::Invoke, 7, 0),
        send(1, OpType::Ok, 7, 5),
        final_read(2, &[]),
    ];
    let (status, text, _dir) = check(&lost);
    assert_eq!(status, Some(1), "{text}");
    assert!(
        text.contains("| lost | 1 | value 7 of events (acked at LSN 5)"),
        "{text}"
    );
}

#[test]
fn a_damaged_history_is_an_error_naming_the_line() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = dir.path().join("history.jsonl");
    std::fs::write(&path, "{\"index\": 0}\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_arka-jepsen"))
        .arg("check")
        .arg(&path)
        .output()
        .expect("run arka-jepsen");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("history line 1"));
}
