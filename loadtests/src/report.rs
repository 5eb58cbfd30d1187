//! Reports: a readable summary, the side-by-side table of `compare`, the JSON record, `.hgrm`
//! percentile files, and SVG charts (latency by percentile, throughput over time) written
//! by hand: plain text, no plotting dependency, viewable in any browser or on GitHub.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::stats::{PercentilePoint, RunStats};

/// Colours of the series, in order.
const PALETTE: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// `1234567.8` -> `1,234,568`.
pub fn thousands(x: f64) -> String {
    let n = x.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "-".to_owned();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// One run's summary as text: per operation its rate, percentiles (ms) and answers by code,
/// then the generator's own lateness.
pub fn render_run(title: &str, s: &RunStats) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{title}: {} {}/s over {:.1} s",
        thousands(s.throughput),
        s.primary,
        s.seconds
    );
    let _ = writeln!(
        o,
        "  {:<8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}  answers",
        "op", "per s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for op in &s.ops {
        let l = &op.latency;
        let _ = writeln!(
            o,
            "  {:<8} {:>10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}  {}",
            op.op,
            thousands(op.per_second),
            l.p50_us / 1e3,
            l.p90_us / 1e3,
            l.p99_us / 1e3,
            l.p999_us / 1e3,
            l.max_us / 1e3,
            counts(&op.outcomes)
        );
    }
    if let Some(l) = &s.lateness {
        let _ = writeln!(
            o,
            "  generator lateness (actual - intended send): p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms{}",
            l.p50_us / 1e3,
            l.p99_us / 1e3,
            l.p999_us / 1e3,
            l.max_us / 1e3,
            if l.p99_us > 1_000.0 {
                "  <- the generator fell behind: treat the latencies as an upper bound"
            } else {
                ""
            }
        );
    }
    if s.dropped > 0 {
        let _ = writeln!(
            o,
            "  dropped by the generator (too many in flight): {}",
            s.dropped
        );
    }
    o
}

/// One cell of a side-by-side table.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The value (`None`: not measured).
    pub value: Option<f64>,
    /// Whether larger is better (throughput) or smaller (latency), for the ratio's sense.
    pub higher_is_better: bool,
}

/// A row of the side-by-side table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What the row measures.
    pub label: String,
    /// Unit shown after the label.
    pub unit: String,
    /// One cell per target, in the table's target order.
    pub cells: Vec<Cell>,
}

/// The side-by-side comparison: targets as columns (the first is the reference, stockd).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Table {
    /// Column names.
    pub targets: Vec<String>,
    /// Rows.
    pub rows: Vec<Row>,
}

impl Table {
    /// A table with these columns.
    pub fn new(targets: Vec<String>) -> Table {
        Table {
            targets,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(
        &mut self,
        label: &str,
        unit: &str,
        higher_is_better: bool,
        values: Vec<Option<f64>>,
    ) {
        self.rows.push(Row {
            label: label.to_owned(),
            unit: unit.to_owned(),
            cells: values
                .into_iter()
                .map(|value| Cell {
                    value,
                    higher_is_better,
                })
                .collect(),
        });
    }

    /// The table as text; every cell after the first column shows its ratio to the first
    /// (`stockd / other`: > 1 means stockd is better, for throughput and latency alike).
    pub fn render(&self) -> String {
        let mut o = String::new();
        let label_w = self
            .rows
            .iter()
            .map(|r| r.label.len() + r.unit.len() + 3)
            .max()
            .unwrap_or(10)
            .max(10);
        let col_w = 22;
        let _ = write!(o, "{:<label_w$}", "");
        for t in &self.targets {
            let _ = write!(o, " {t:>col_w$}");
        }
        let _ = writeln!(o);
        for row in &self.rows {
            let label = format!("{} ({})", row.label, row.unit);
            let _ = write!(o, "{label:<label_w$}");
            let reference = row.cells.first().and_then(|c| c.value);
            for (k, cell) in row.cells.iter().enumerate() {
                let text = match cell.value {
                    None => "-".to_owned(),
                    Some(v) => {
                        let shown = if v >= 100.0 {
                            thousands(v)
                        } else {
                            format!("{v:.3}")
                        };
                        match (k, reference) {
                            (0, _) | (_, None) => shown,
                            (_, Some(r)) => {
                                format!("{shown} ({})", ratio(r, v, cell.higher_is_better))
                            }
                        }
                    }
                };
                let _ = write!(o, " {text:>col_w$}");
            }
            let _ = writeln!(o);
        }
        o
    }
}

/// stockd's advantage over another target: `stockd / other` for throughput, `other / stockd`
/// for latency, so > 1 always means stockd is better.
pub fn ratio(stockd: f64, other: f64, higher_is_better: bool) -> String {
    let (num, den) = if higher_is_better {
        (stockd, other)
    } else {
        (other, stockd)
    };
    if den <= 0.0 {
        return "-".to_owned();
    }
    format!("x{:.2}", num / den)
}

/// One series of a chart.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Legend.
    pub label: String,
    /// Latency curve (for [`latency_svg`]).
    pub curve: &'a [PercentilePoint],
    /// Throughput per bucket (for [`throughput_svg`]).
    pub timeline: &'a [f64],
    /// Bucket width, ms.
    pub bucket_ms: u64,
}

/// X position of a percentile on the usual HdrHistogram axis: log10(1 / (1 - p)), clamped to
/// 99.999%.
pub fn percentile_x(percentile: f64) -> f64 {
    let p = (percentile / 100.0).clamp(0.0, 0.999_99);
    (1.0 / (1.0 - p)).log10()
}

/// A "nice" axis maximum at or above `x` (1, 2, 2.5 or 5 times a power of ten).
pub fn nice_max(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= x * 0.999_999 {
            return m * p;
        }
    }
    10.0 * p
}

fn svg_header(o: &mut String, w: u32, h: u32, title: &str) {
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        w / 2,
        escape(title)
    );
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn legend(o: &mut String, series: &[Series<'_>], x: f64, y: f64) {
    for (k, s) in series.iter().enumerate() {
        let yy = y + 16.0 * k as f64;
        let c = PALETTE[k % PALETTE.len()];
        let _ = writeln!(
            o,
            r#"<line x1="{x}" y1="{yy}" x2="{}" y2="{yy}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            x + 18.0,
            x + 24.0,
            yy + 4.0,
            escape(&s.label)
        );
    }
}

/// A horizontal grid line at `y` across the plot, with its value on the left axis.
fn y_grid_line(o: &mut String, left: f64, pw: f64, y: f64, label: &str) {
    let _ = writeln!(
        o,
        r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
        left + pw,
        left - 6.0,
        y + 4.0
    );
}

/// Latency by percentile (HdrHistogram style: x = log10(1/(1-p)), 0% .. 99.999%), ms.
pub fn latency_svg(title: &str, series: &[Series<'_>]) -> String {
    let (w, h) = (820u32, 440u32);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 60.0);
    let pw = f64::from(w) - left - right;
    let ph = f64::from(h) - top - bottom;
    let x_max = 5.0;
    let y_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.curve.iter())
            .filter(|p| p.percentile <= 99.999)
            .map(|p| p.latency_us / 1_000.0)
            .fold(0.0, f64::max),
    );
    let mut o = String::new();
    svg_header(&mut o, w, h, title);
    // Axes and grid.
    for (k, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = left + pw * k as f64 / x_max;
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            top + ph,
            top + ph + 16.0
        );
    }
    for k in 0..=5 {
        let v = y_max * f64::from(k) / 5.0;
        let y = top + ph - ph * f64::from(k) / 5.0;
        y_grid_line(&mut o, left, pw, y, &trim_float(v));
    }
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text><text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency (ms)</text>"#,
        left + pw / 2.0,
        f64::from(h) - 18.0,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for (k, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .curve
            .iter()
            .filter(|p| p.percentile <= 99.999)
            .map(|p| {
                let x = left + pw * percentile_x(p.percentile) / x_max;
                let y = top + ph - ph * (p.latency_us / 1_000.0 / y_max).min(1.0);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            PALETTE[k % PALETTE.len()],
            points.join(" ")
        );
    }
    legend(&mut o, series, left + 12.0, top + 14.0);
    o.push_str("</svg>\n");
    o
}

fn trim_float(v: f64) -> String {
    if v >= 100.0 {
        thousands(v)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Throughput over time, operations per second.
pub fn throughput_svg(title: &str, series: &[Series<'_>]) -> String {
    let (w, h) = (820u32, 360u32);
    let (left, right, top, bottom) = (80.0, 20.0, 40.0, 50.0);
    let pw = f64::from(w) - left - right;
    let ph = f64::from(h) - top - bottom;
    let seconds = |s: &Series<'_>| s.timeline.len() as f64 * s.bucket_ms as f64 / 1_000.0;
    let x_max = nice_max(series.iter().map(seconds).fold(0.0, f64::max));
    let y_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.timeline.iter().copied())
            .fold(0.0, f64::max),
    );
    let mut o = String::new();
    svg_header(&mut o, w, h, title);
    for k in 0..=5 {
        let x = left + pw * f64::from(k) / 5.0;
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + ph,
            top + ph + 16.0,
            trim_float(x_max * f64::from(k) / 5.0)
        );
        let y = top + ph - ph * f64::from(k) / 5.0;
        y_grid_line(&mut o, left, pw, y, &thousands(y_max * f64::from(k) / 5.0));
    }
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds</text><text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">per second</text>"#,
        left + pw / 2.0,
        f64::from(h) - 12.0,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for (k, s) in series.iter().enumerate() {
        let width = s.bucket_ms as f64 / 1_000.0;
        let points: Vec<String> = s
            .timeline
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let x = left + pw * ((i as f64 + 0.5) * width / x_max);
                let y = top + ph - ph * (v / y_max).min(1.0);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            PALETTE[k % PALETTE.len()],
            points.join(" ")
        );
    }
    legend(&mut o, series, left + 12.0, top + 14.0);
    o.push_str("</svg>\n");
    o
}

/// Writes `text` to `dir/name`, creating the directory; reports failures on stderr.
pub fn write_file(dir: &Path, name: &str, text: &str) -> bool {
    let path = dir.join(name);
    let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, text));
    match written {
        Ok(()) => true,
        Err(e) => {
            eprintln!("stockd-load: {}: {e}", path.display());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(100_000.0), "100,000");
        assert_eq!(ratio(200.0, 100.0, true), "x2.00");
        assert_eq!(ratio(0.5, 1.5, false), "x3.00");
        assert_eq!(ratio(1.0, 0.0, true), "-");
    }

    #[test]
    fn axes_are_nice() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(0.7), 1.0);
        assert_eq!(nice_max(1.0), 1.0);
        assert_eq!(nice_max(1.2), 2.0);
        assert_eq!(nice_max(2.2), 2.5);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(43_000.0), 50_000.0);
        assert_eq!(percentile_x(0.0), 0.0);
        assert!((percentile_x(90.0) - 1.0).abs() < 1e-9);
        assert!((percentile_x(99.9) - 3.0).abs() < 1e-9);
        assert!((percentile_x(100.0) - 5.0).abs() < 1e-6);
    }

    #[test]
    fn the_table_shows_ratios_to_stockd() {
        let mut t = Table::new(vec!["stockd".into(), "redis".into(), "postgres".into()]);
        t.row(
            "checkout max",
            "res/s",
            true,
            vec![Some(50_000.0), Some(25_000.0), None],
        );
        t.row(
            "checkout p99",
            "ms",
            false,
            vec![Some(0.5), Some(1.0), Some(2.0)],
        );
        let text = t.render();
        assert!(text.contains("50,000"), "{text}");
        assert!(text.contains("25,000 (x2.00)"), "{text}");
        assert!(text.contains("1.000 (x2.00)"), "{text}");
        assert!(text.contains("2.000 (x4.00)"), "{text}");
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|l| l.trim_end().ends_with('-')),
            "{text}"
        );
    }

    #[test]
    fn charts_have_a_line_per_series() {
        let curve = [
            PercentilePoint {
                percentile: 0.0,
                latency_us: 100.0,
            },
            PercentilePoint {
                percentile: 99.0,
                latency_us: 900.0,
            },
        ];
        let timeline = [1_000.0, 2_000.0];
        let series = vec![
            Series {
                label: "stockd".into(),
                curve: &curve,
                timeline: &timeline,
                bucket_ms: 250,
            },
            Series {
                label: "redis <lua>".into(),
                curve: &curve,
                timeline: &timeline,
                bucket_ms: 250,
            },
        ];
        let svg = latency_svg("checkout", &series);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("redis &lt;lua&gt;"));
        // 0% at the left edge (x = 70), 99% at 2/5 of the plot width; 0.1 and 0.9 of a 1 ms axis.
        assert!(svg.contains("points=\"70.0,346.0 362.0,74.0\""), "{svg}");
        let svg = throughput_svg("checkout", &series);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
