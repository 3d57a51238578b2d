//! Small hand-made histories for the checker's tests.

use arka::durability::Level;

use crate::history::{Function, Op, OpType, NEMESIS};

/// A history under construction: each call appends operations, one millisecond apart.
#[derive(Default)]
pub struct History {
    pub ops: Vec<Op>,
}

impl History {
    pub fn push(&mut self, mut op: Op) -> &mut Op {
        op.index = self.ops.len() as u64;
        op.time_ns = op.index * 1_000_000;
        self.ops.push(op);
        self.ops.last_mut().expect("just pushed")
    }

    fn invoke_send(&mut self, process: u64, table: &str, value: i64) {
        let invoke = self.push(Op::new(process, OpType::Invoke, Function::Send));
        invoke.table = Some(table.into());
        invoke.value = Some(value);
    }

    /// A send acked REPLICATED at `lsn` by node 1.
    pub fn send_ok(&mut self, process: u64, table: &str, value: i64, lsn: u64) {
        self.send_acked(process, table, value, lsn, Level::Replicated);
    }

    pub fn send_acked(&mut self, process: u64, table: &str, value: i64, lsn: u64, level: Level) {
        self.invoke_send(process, table, value);
        let ok = self.push(Op::new(process, OpType::Ok, Function::Send));
        ok.table = Some(table.into());
        ok.value = Some(value);
        ok.lsn = Some(lsn);
        ok.level = Some(level);
        ok.node = Some(1);
    }

    pub fn send_failed(&mut self, process: u64, table: &str, value: i64) {
        self.invoke_send(process, table, value);
        let fail = self.push(Op::new(process, OpType::Fail, Function::Send));
        fail.value = Some(value);
        fail.error = Some("refused".into());
    }

    /// A read of `table` from `node` (process 100 + node) returning `entries`, covering
    /// LSNs up to `upto`.
    pub fn read(&mut self, node: u64, table: &str, entries: &[(u64, i64)], upto: u64) {
        self.read_as(Function::Read, node, table, entries, upto);
    }

    /// A read during the run of the LSNs `from..=upto` only.
    pub fn read_range(
        &mut self,
        node: u64,
        table: &str,
        entries: &[(u64, i64)],
        from: u64,
        upto: u64,
    ) {
        self.read(node, table, entries, upto);
        self.ops.last_mut().expect("just pushed").from = Some(from);
    }

    pub fn final_read(&mut self, node: u64, table: &str, entries: &[(u64, i64)], upto: u64) {
        self.read_as(Function::FinalRead, node, table, entries, upto);
    }

    pub fn iceberg_read(&mut self, table: &str, entries: &[(u64, i64)], upto: u64) {
        self.read_as(Function::IcebergRead, 0, table, entries, upto);
    }

    /// A `flush` that answered `flushed_lsn`.
    pub fn flush_ok(&mut self, flushed_lsn: u64) {
        self.push(Op::new(900, OpType::Invoke, Function::Flush));
        self.push(Op::new(900, OpType::Ok, Function::Flush)).lsn = Some(flushed_lsn);
    }

    fn read_as(&mut self, f: Function, node: u64, table: &str, entries: &[(u64, i64)], upto: u64) {
        let process = 100 + node;
        let invoke = self.push(Op::new(process, OpType::Invoke, f));
        invoke.table = Some(table.into());
        invoke.node = Some(node);
        let ok = self.push(Op::new(process, OpType::Ok, f));
        ok.table = Some(table.into());
        ok.node = Some(node);
        ok.entries = Some(entries.to_vec());
        ok.upto = Some(upto);
    }

    /// `get_durability_status` of `lsn` on `node` answered `level`.
    pub fn level(&mut self, node: u64, lsn: u64, level: Option<Level>) {
        let process = 200 + node;
        let invoke = self.push(Op::new(process, OpType::Invoke, Function::Level));
        invoke.lsn = Some(lsn);
        let ok = self.push(Op::new(process, OpType::Ok, Function::Level));
        ok.node = Some(node);
        ok.lsn = Some(lsn);
        ok.level = level;
    }

    pub fn fault(&mut self, f: Function, fault: &str) {
        let op = self.push(Op::new(NEMESIS, OpType::Info, f));
        op.fault = Some(fault.into());
    }
}
