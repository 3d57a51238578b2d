//! The report's plots: client operations per second and each send's latency over the run,
//! with every fault window shaded, as PNG files.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::history::{Function, Op, OpType, NEMESIS};

/// The font the plots' text is drawn in (Debian's `fonts-dejavu-core`).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SIZE: (u32, u32) = (1400, 520);
const FAULT_SHADE: RGBColor = RGBColor(255, 205, 205);
const OK: RGBColor = RGBColor(40, 110, 200);
const FAILED: RGBColor = RGBColor(215, 50, 40);
const READS: RGBColor = RGBColor(60, 160, 80);

/// A fault's window, in seconds since the run started.
struct Window {
    from: f64,
    to: f64,
}

/// One send's completion: when, how long it took (ms), and whether it was acked.
struct Completion {
    at: f64,
    latency_ms: f64,
    ok: bool,
}

/// Writes `throughput.png` and `latency.png` into `dir`.
pub fn write(dir: &Path, ops: &[Op]) -> anyhow::Result<()> {
    load_font()?;
    let end = ops.last().map_or(1.0, |op| seconds(op.time_ns)).max(1.0);
    let windows = fault_windows(ops, end);
    let sends = send_completions(ops);
    let throughput = dir.join("throughput.png");
    draw_throughput(&throughput, ops, &sends, &windows, end)
        .with_context(|| format!("draw {}", throughput.display()))?;
    let latency = dir.join("latency.png");
    draw_latency(&latency, &sends, &windows, end)
        .with_context(|| format!("draw {}", latency.display()))
}

/// Why the plots' font is not there (remembered: the font is loaded once).
#[derive(Debug, Clone, thiserror::Error)]
enum FontError {
    #[error("read the plots' font {FONT} (Debian's fonts-dejavu-core): {0}")]
    Read(String),
    #[error("{FONT} is not a font plotters can use")]
    Unusable,
}

fn load_font() -> anyhow::Result<()> {
    static LOADED: OnceLock<Result<(), FontError>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let bytes = std::fs::read(FONT).map_err(|e| FontError::Read(e.to_string()))?;
        // The font lives as long as the process; it is loaded once.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| FontError::Unusable)
    });
    Ok(loaded.clone()?)
}

fn seconds(time_ns: u64) -> f64 {
    time_ns as f64 / 1e9
}

/// The nemesis's faults; one still open at the end lasts to `end`.
fn fault_windows(ops: &[Op], end: f64) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut open: Option<f64> = None;
    for op in ops.iter().filter(|op| op.process == NEMESIS) {
        match op.f {
            Function::StartFault => open = Some(seconds(op.time_ns)),
            Function::StopFault => {
                if let Some(from) = open.take() {
                    windows.push(Window {
                        from,
                        to: seconds(op.time_ns),
                    });
                }
            }
            _ => {}
        }
    }
    windows.extend(open.map(|from| Window { from, to: end }));
    windows
}

/// Each send's completion, paired with its invocation by process and value.
fn send_completions(ops: &[Op]) -> Vec<Completion> {
    let mut invoked: HashMap<(u64, i64), u64> = HashMap::new();
    let mut done = Vec::new();
    for op in ops.iter().filter(|op| op.f == Function::Send) {
        let Some(value) = op.value else { continue };
        if op.kind == OpType::Invoke {
            invoked.insert((op.process, value), op.time_ns);
        } else if let Some(start) = invoked.remove(&(op.process, value)) {
            done.push(Completion {
                at: seconds(op.time_ns),
                latency_ms: op.time_ns.saturating_sub(start) as f64 / 1e6,
                ok: op.kind == OpType::Ok,
            });
        }
    }
    done
}

/// Counts per whole second of the run.
fn per_second(times: impl Iterator<Item = f64>, end: f64) -> Vec<(f64, f64)> {
    let mut counts = vec![0u64; end.ceil() as usize + 1];
    for t in times {
        if let Some(slot) = counts.get_mut(t as usize) {
            *slot += 1;
        }
    }
    (counts.iter().enumerate())
        .map(|(s, n)| (s as f64, *n as f64))
        .collect()
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Chart<'a, Y> = ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>;

fn shade<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, Y>,
    windows: &[Window],
    (low, high): (f64, f64),
) -> anyhow::Result<()> {
    let shaded = windows
        .iter()
        .map(|w| Rectangle::new([(w.from, low), (w.to, high)], FAULT_SHADE.filled()));
    chart
        .draw_series(shaded)?
        .label("fault")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], FAULT_SHADE.filled()));
    Ok(())
}

fn draw_throughput(
    path: &Path,
    ops: &[Op],
    sends: &[Completion],
    windows: &[Window],
    end: f64,
) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let ok = per_second(sends.iter().filter(|s| s.ok).map(|s| s.at), end);
    let failed = per_second(sends.iter().filter(|s| !s.ok).map(|s| s.at), end);
    let reads = per_second(
        (ops.iter())
            .filter(|op| op.f == Function::Read && op.kind == OpType::Ok)
            .map(|op| seconds(op.time_ns)),
        end,
    );
    let top = (ok.iter().chain(&failed).chain(&reads))
        .map(|(_, n)| *n)
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = chart_on(&root, "Operations completed per second", 0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the run started")
        .y_desc("operations per second")
        .draw()?;
    shade(&mut chart, windows, (0.0, top))?;
    let series = [
        ("acked sends", ok, OK),
        ("failed or indeterminate sends", failed, FAILED),
        ("reads", reads, READS),
    ];
    for (label, points, color) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    finish(&root, &mut chart)
}

fn draw_latency(
    path: &Path,
    sends: &[Completion],
    windows: &[Window],
    end: f64,
) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let top = sends.iter().map(|s| s.latency_ms).fold(10.0, f64::max) * 1.5;
    let bottom = 0.1;
    let mut chart = chart_on(
        &root,
        "Send latency, invocation to completion",
        0.0..end,
        (bottom..top).log_scale(),
    )?;
    chart
        .configure_mesh()
        .x_desc("seconds since the run started")
        .y_desc("milliseconds (log scale)")
        .draw()?;
    shade(&mut chart, windows, (bottom, top))?;
    for (label, ok, color) in [
        ("acked", true, OK),
        ("failed or indeterminate", false, FAILED),
    ] {
        let points = (sends.iter())
            .filter(|s| s.ok == ok)
            .map(|s| Circle::new((s.at, s.latency_ms.max(bottom)), 1, color.filled()));
        chart
            .draw_series(points)?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 8, y), 3, color.filled()));
    }
    finish(&root, &mut chart)
}

fn chart_on<'a, Y: AsRangedCoord<Value = f64>>(
    root: &Area<'a>,
    caption: &str,
    x: std::ops::Range<f64>,
    y: Y,
) -> anyhow::Result<Chart<'a, Y::CoordDescType>> {
    Ok(ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)?)
}

fn finish<'a, Y: Ranged<ValueType = f64>>(
    root: &Area<'a>,
    chart: &mut Chart<'a, Y>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    Ok(root.present()?)
}
