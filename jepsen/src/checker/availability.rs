//! Availability, kept apart from safety: how many client operations failed or were left
//! indeterminate while each fault was on, and while none was.

use serde::Serialize;

use crate::history::{Function, Op, OpType};

/// The client operations that completed during one fault window (or outside all of them:
/// `fault == "none"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub fault: String,
    pub start_ns: u64,
    /// `None`: the fault was still on when the history ends (or, for `"none"`, the whole run).
    pub end_ns: Option<u64>,
    pub ops: usize,
    pub ok: usize,
    pub failed: usize,
    pub indeterminate: usize,
}

impl Window {
    /// The share of operations that did not succeed.
    pub fn unavailable_share(&self) -> f64 {
        if self.ops == 0 {
            return 0.0;
        }
        (self.failed + self.indeterminate) as f64 / self.ops as f64
    }

    fn count(&mut self, kind: OpType) {
        self.ops += 1;
        match kind {
            OpType::Ok => self.ok += 1,
            OpType::Fail => self.failed += 1,
            _ => self.indeterminate += 1,
        }
    }

    fn contains(&self, time_ns: u64) -> bool {
        self.start_ns <= time_ns && self.end_ns.is_none_or(|end| time_ns < end)
    }
}

/// The fault windows in the order they started, then the time outside them.
pub fn windows(ops: &[Op]) -> Vec<Window> {
    let mut windows: Vec<Window> = Vec::new();
    for op in ops.iter().filter(|op| !op.is_client()) {
        let fault = op.fault.clone().unwrap_or_default();
        match op.f {
            Function::StartFault => windows.push(Window {
                fault,
                start_ns: op.time_ns,
                end_ns: None,
                ops: 0,
                ok: 0,
                failed: 0,
                indeterminate: 0,
            }),
            Function::StopFault => {
                let open =
                    (windows.iter_mut().rev()).find(|w| w.fault == fault && w.end_ns.is_none());
                if let Some(open) = open {
                    open.end_ns = Some(op.time_ns);
                }
            }
            _ => {}
        }
    }
    let mut calm = Window {
        fault: "none".into(),
        start_ns: 0,
        end_ns: None,
        ops: 0,
        ok: 0,
        failed: 0,
        indeterminate: 0,
    };
    let completions = ops.iter().filter(|op| {
        op.is_client()
            && op.kind != OpType::Invoke
            && matches!(op.f, Function::Send | Function::Read)
    });
    for op in completions {
        let mut during = windows
            .iter_mut()
            .filter(|w| w.contains(op.time_ns))
            .peekable();
        if during.peek().is_none() {
            calm.count(op.kind);
        }
        for window in during {
            window.count(op.kind);
        }
    }
    windows.push(calm);
    windows
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::History;
    use super::*;

    #[test]
    fn operations_are_counted_in_the_fault_window_they_completed_in() {
        let mut h = History::default();
        h.send_ok(1, "t", 1, 1);
        h.fault(Function::StartFault, "kill");
        h.send_failed(1, "t", 2);
        h.send_ok(1, "t", 3, 2);
        h.fault(Function::StopFault, "kill");
        h.send_ok(1, "t", 4, 3);
        let windows = windows(&h.ops);
        assert_eq!(windows.len(), 2);
        let kill = &windows[0];
        assert_eq!((kill.fault.as_str(), kill.ops, kill.failed), ("kill", 2, 1));
        assert_eq!(kill.unavailable_share(), 0.5);
        let calm = &windows[1];
        assert_eq!((calm.ops, calm.ok), (2, 2));
    }
}
