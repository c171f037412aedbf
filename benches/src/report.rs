//! What people read of a run: a progress bar while it runs, then the
//! [`Report`] as a terminal table, pretty JSON and a self-contained HTML
//! page with charts, and the targets checked against the points.

use std::fmt::Write as _;
use std::fs;
use std::io::{IsTerminal, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::results::{Percentiles, Point, Report, Sfu, TargetCheck};

// ---------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------

/// Characters of the bar between `[` and `]`.
const BAR_WIDTH: usize = 30;
/// Shortest time between two redraws on a terminal.
const REDRAW_INTERVAL: Duration = Duration::from_millis(100);

/// A progress line on stderr for a long phase (viewers joining, a
/// measurement window).
///
/// On a terminal the line is redrawn in place (`\r`) at most ten times a
/// second; elsewhere (CI logs) a plain line is printed at every tenth of the
/// total and at the end. Dropping an unfinished `Progress` finishes it, so
/// the next message starts on a fresh line.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: u64,
    terminal: bool,
    done: u64,
    detail: String,
    /// When the terminal line was last drawn.
    last_redraw: Option<Instant>,
    /// Characters of the terminal line last drawn, to blank what a shorter
    /// line would leave behind.
    drawn_width: usize,
    /// Tenths of the total, and the count, last printed as a plain line.
    printed_tenths: Option<u64>,
    printed_done: Option<u64>,
    finished: bool,
}

impl Progress {
    /// Starts a progress line for `total` steps of `label`.
    pub fn new(label: &str, total: u64) -> Progress {
        Progress::with_terminal(label, total, std::io::stderr().is_terminal())
    }

    fn with_terminal(label: &str, total: u64, terminal: bool) -> Progress {
        Progress {
            label: label.to_string(),
            total,
            terminal,
            done: 0,
            detail: String::new(),
            last_redraw: None,
            drawn_width: 0,
            printed_tenths: None,
            printed_done: None,
            finished: false,
        }
    }

    /// Records that `done` of the total are done, with a short `detail`
    /// (such as "12 failed"), and redraws if it is time to.
    pub fn set(&mut self, done: u64, detail: &str) {
        if let Some(text) = self.update(Instant::now(), done, detail) {
            write_stderr(&text);
        }
    }

    /// Draws the final state and ends the line. Later calls do nothing.
    pub fn finish(&mut self) {
        if let Some(text) = self.finish_text() {
            write_stderr(&text);
        }
    }

    /// Records the state; returns what to print, if anything.
    fn update(&mut self, now: Instant, done: u64, detail: &str) -> Option<String> {
        if self.finished {
            return None;
        }
        self.done = done;
        if self.detail != detail {
            self.detail = detail.to_string();
        }
        if self.terminal {
            let due = self
                .last_redraw
                .is_none_or(|last| now.saturating_duration_since(last) >= REDRAW_INTERVAL);
            due.then(|| {
                self.last_redraw = Some(now);
                self.redraw()
            })
        } else {
            let tenths = tenths(done, self.total);
            let due = self.printed_tenths.is_none_or(|printed| tenths > printed);
            due.then(|| {
                self.printed_tenths = Some(tenths);
                self.plain_line()
            })
        }
    }

    /// What `finish` prints, once.
    fn finish_text(&mut self) -> Option<String> {
        if std::mem::replace(&mut self.finished, true) {
            return None;
        }
        if self.terminal {
            Some(self.redraw() + "\n")
        } else if self.printed_done != Some(self.done) {
            Some(self.plain_line())
        } else {
            None
        }
    }

    /// `\r`, the bar line, and spaces over the rest of the previous line.
    fn redraw(&mut self) -> String {
        let line = bar_line(&self.label, self.done, self.total, &self.detail);
        let width = line.chars().count();
        let blank = self.drawn_width.saturating_sub(width);
        self.drawn_width = width;
        format!("\r{line}{}", " ".repeat(blank))
    }

    /// A line for logs: `label: done/total (pct%) detail`.
    fn plain_line(&mut self) -> String {
        self.printed_done = Some(self.done);
        let percent = fraction(self.done, self.total) * 100.0;
        let line = format!(
            "{}: {}/{} ({percent:.0}%) {}",
            self.label, self.done, self.total, self.detail
        );
        format!("{}\n", line.trim_end())
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `done / total` clamped to 0..=1; a zero total counts as complete.
fn fraction(done: u64, total: u64) -> f64 {
    if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    }
}

/// Whole tenths of the total done, 0..=10.
fn tenths(done: u64, total: u64) -> u64 {
    (fraction(done, total) * 10.0).floor() as u64
}

/// `label [#########.....] done/total detail`.
fn bar_line(label: &str, done: u64, total: u64, detail: &str) -> String {
    let filled = (fraction(done, total) * BAR_WIDTH as f64).round() as usize;
    let bar = format!("{}{}", "#".repeat(filled), ".".repeat(BAR_WIDTH - filled));
    let line = format!("{label} [{bar}] {done}/{total} {detail}");
    line.trim_end().to_string()
}

/// Writes to stderr, ignoring failures (progress is best effort).
fn write_stderr(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

// ---------------------------------------------------------------------------
// Formatting helpers shared by the table and the HTML page
// ---------------------------------------------------------------------------

/// `value` with `decimals` decimals, or `n/a` when it is not finite.
fn fixed(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "n/a".to_string()
    }
}

/// Chosen percentiles joined by `/`, or `-` when there were no samples.
fn percentiles(p: &Percentiles, which: &[fn(&Percentiles) -> f64], decimals: usize) -> String {
    if p.samples == 0 {
        return "-".to_string();
    }
    which
        .iter()
        .map(|get| fixed(get(p), decimals))
        .collect::<Vec<_>>()
        .join("/")
}

fn p50(p: &Percentiles) -> f64 {
    p.p50
}
fn p95(p: &Percentiles) -> f64 {
    p.p95
}
fn p99(p: &Percentiles) -> f64 {
    p.p99
}

/// The name of the point's SFU, `?` if unset.
fn sfu_name(point: &Point) -> &'static str {
    point.sfu.map_or("?", Sfu::name)
}

/// Column headings of the points table.
const COLUMNS: [&str; 12] = [
    "SFU",
    "viewers recv/asked",
    "SFU CPU %",
    "us CPU/pkt",
    "pkt/s",
    "Mbit/s",
    "loss mean/max %",
    "delay p50/p95/p99 ms",
    "join p50/p95 ms",
    "KiB/consumer",
    "switch p50 ms",
    "gen CPU %",
];

/// One table row per point, in [`COLUMNS`] order.
fn row(point: &Point) -> Vec<String> {
    vec![
        sfu_name(point).to_string(),
        format!("{}/{}", point.viewers_receiving, point.viewers),
        fixed(point.sfu_cpu_percent, 1),
        fixed(point.cpu_us_per_packet, 2),
        fixed(point.packets_per_second, 0),
        fixed(point.megabits_per_second, 1),
        format!(
            "{}/{}",
            fixed(point.loss_percent_mean, 2),
            fixed(point.loss_percent_max, 2)
        ),
        percentiles(&point.delay_ms, &[p50, p95, p99], 2),
        percentiles(&point.join_to_first_frame_ms, &[p50, p95], 0),
        fixed(point.sfu_kib_per_consumer, 1),
        percentiles(&point.layer_switch_ms, &[p50], 0),
        fixed(point.generator_cpu_percent, 1),
    ]
}

/// Columns padded to their widest cell (the first left-aligned, the rest
/// right-aligned), a dashed rule under the headings.
fn aligned(headings: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headings.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([headings[column].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        cells
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, &width))| {
                if column == 0 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(&mut headings.iter().copied());
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|&width| "-".repeat(width)).collect();
    out.push_str(&rule.join("  "));
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------
// Comparisons between the SFUs
// ---------------------------------------------------------------------------

/// The first point of `sfu` at `viewers` viewers.
fn point_at(points: &[Point], sfu: Sfu, viewers: usize) -> Option<&Point> {
    points
        .iter()
        .find(|p| p.sfu == Some(sfu) && p.viewers == viewers)
}

/// Viewer counts with a point for both SFUs, ascending.
fn common_viewer_counts(points: &[Point]) -> Vec<usize> {
    let mut counts: Vec<usize> = points
        .iter()
        .filter(|p| p.sfu == Some(Sfu::Webinar))
        .map(|p| p.viewers)
        .filter(|&viewers| point_at(points, Sfu::Janus, viewers).is_some())
        .collect();
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// `ours / theirs`, when both were measured and `theirs` is positive.
fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    let (ours, theirs) = (ours?, theirs?);
    (theirs > 0.0 && ours.is_finite() && theirs.is_finite()).then(|| ours / theirs)
}

/// `1.23x`, or `n/a`.
fn fmt_ratio(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}x"))
}

/// CPU per packet, if the point forwarded any.
fn cpu_per_packet(point: &Point) -> Option<f64> {
    (point.packets_forwarded > 0).then_some(point.cpu_us_per_packet)
}

/// Forwarding delay p99, if the point has delay samples.
fn delay_p99(point: &Point) -> Option<f64> {
    (point.delay_ms.samples > 0).then_some(point.delay_ms.p99)
}

/// Mean loss, if any viewer received media.
fn loss_mean(point: &Point) -> Option<f64> {
    (point.viewers_receiving > 0).then_some(point.loss_percent_mean)
}

/// "webinar / janus at N viewers: ..." for every viewer count both SFUs
/// carried.
fn ratio_lines(points: &[Point]) -> Vec<String> {
    common_viewer_counts(points)
        .into_iter()
        .filter_map(|viewers| {
            let ours = point_at(points, Sfu::Webinar, viewers)?;
            let janus = point_at(points, Sfu::Janus, viewers)?;
            Some(format!(
                "webinar / janus at {viewers} viewers: CPU per packet {}, delay p99 {}, loss {}",
                fmt_ratio(ratio(cpu_per_packet(ours), cpu_per_packet(janus))),
                fmt_ratio(ratio(delay_p99(ours), delay_p99(janus))),
                fmt_ratio(ratio(loss_mean(ours), loss_mean(janus))),
            ))
        })
        .collect()
}

/// `[met]`, `[MISSED]` or `[not measured]`.
fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "[met]",
        Some(false) => "[MISSED]",
        None => "[not measured]",
    }
}

/// "name: target -- measured", without the verdict.
fn target_text(check: &TargetCheck) -> String {
    format!("{}: {} -- {}", check.name, check.target, check.measured)
}

/// "sfu at N viewers: problem" for every problem of every point.
fn problem_lines(points: &[Point]) -> Vec<String> {
    points
        .iter()
        .flat_map(|point| {
            point.problems.iter().map(move |problem| {
                format!(
                    "{} at {} viewers: {problem}",
                    sfu_name(point),
                    point.viewers
                )
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Terminal table
// ---------------------------------------------------------------------------

/// The report for a terminal: the points table, the webinar/Janus ratios,
/// the targets and the problems, in plain ASCII.
pub fn table(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report.points.iter().map(row).collect();
    let mut out = aligned(&COLUMNS, &rows);
    let sections = [
        ("", ratio_lines(&report.points)),
        (
            "targets:",
            report
                .targets
                .iter()
                .map(|check| format!("{} {}", verdict(check.met), target_text(check)))
                .collect(),
        ),
        ("bandwidth steps:", step_lines(&report.points)),
        ("problems:", problem_lines(&report.points)),
    ];
    for (heading, lines) in sections {
        if lines.is_empty() {
            continue;
        }
        out.push('\n');
        if !heading.is_empty() {
            out.push_str(heading);
            out.push('\n');
        }
        let indent = if heading.is_empty() { "" } else { "  " };
        for line in lines {
            let _ = writeln!(out, "{indent}{line}");
        }
    }
    out
}

/// One line per point that measured a bandwidth step.
fn step_lines(points: &[Point]) -> Vec<String> {
    let ms = |v: Option<f64>| v.map_or_else(|| "never".to_owned(), |v| format!("{v:.0} ms"));
    points
        .iter()
        .filter_map(|point| {
            let step = point.bandwidth_step.as_ref()?;
            let sfu = point.sfu.map_or("?", |s| s.name());
            Some(format!(
                "{sfu} at {} viewers, one more viewer behind {} -> {} -> {} kbit/s (layer {} before): \
                 down to layer 0 in {}, back to the top in {}; {:.1}% lost while low",
                point.viewers,
                step.high_kbps,
                step.low_kbps,
                step.high_kbps,
                step.layer_before.map_or_else(|| "?".to_owned(), |l| l.to_string()),
                ms(step.down_ms),
                ms(step.up_ms),
                step.low_phase_loss_percent,
            ))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

/// Writes the report to `path` as pretty-printed JSON.
pub fn write_json(report: &Report, path: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report).context("serializing the report")?;
    fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------

/// Colour of each SFU's line in the charts.
fn sfu_colour(sfu: Sfu) -> &'static str {
    match sfu {
        Sfu::Webinar => "#1f6fb4",
        Sfu::Janus => "#d0452b",
    }
}

/// `text` safe inside HTML/SVG text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;font-variant-numeric:tabular-nums}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}\
code{background:#f4f4f4;padding:.1em .3em}.met{color:#17702c}.missed{color:#b3261e}\
.unknown{color:#777}svg{margin:1em 1em 0 0;border:1px solid #ddd}";

/// Writes the report to `path` as one self-contained HTML page: machine and
/// command, the points table, ratios, targets, problems, and SVG charts of
/// SFU CPU and forwarding delay p99 against viewers.
pub fn write_html(report: &Report, path: &Path) -> anyhow::Result<()> {
    fs::write(path, html(report)).with_context(|| format!("writing {}", path.display()))
}

/// The HTML page of [`write_html`].
fn html(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>webinar-bench report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>webinar-bench report</h1>\n"
    );
    out.push_str(&html_run(report));
    out.push_str("<h2>Points</h2>\n");
    out.push_str(&html_table(&report.points));
    let ratios = ratio_lines(&report.points);
    if !ratios.is_empty() {
        out.push_str("<h2>Webinar against Janus</h2>\n");
        out.push_str(&html_list(ratios.iter().map(|line| ("", escape(line)))));
    }
    if !report.targets.is_empty() {
        out.push_str("<h2>Targets</h2>\n");
        out.push_str(&html_list(report.targets.iter().map(|check| {
            let class = match check.met {
                Some(true) => "met",
                Some(false) => "missed",
                None => "unknown",
            };
            (
                class,
                format!(
                    "<strong>{}</strong> {}",
                    verdict(check.met),
                    escape(&target_text(check))
                ),
            )
        })));
    }
    out.push_str("<h2>Charts</h2>\n");
    let cpu = chart_series(&report.points, |p| Some(p.sfu_cpu_percent));
    out.push_str(&line_chart(
        "SFU CPU (% of one core) against viewers",
        "CPU %",
        &cpu,
    ));
    let delay = chart_series(&report.points, delay_p99);
    out.push_str(&line_chart(
        "forwarding delay p99 (ms) against viewers",
        "p99 ms",
        &delay,
    ));
    let problems = problem_lines(&report.points);
    if !problems.is_empty() {
        out.push_str("\n<h2>Problems</h2>\n");
        out.push_str(&html_list(problems.iter().map(|line| ("", escape(line)))));
    }
    out.push_str("\n</body>\n</html>\n");
    out
}

/// The run's description: when, machine, command.
fn html_run(report: &Report) -> String {
    let machine = &report.machine;
    let mut rows = vec![
        ("started", escape(&report.started_at)),
        (
            "machine",
            escape(&format!(
                "{}, {} CPUs, {:.1} GiB, Linux {}",
                machine.cpu_model, machine.cpus, machine.memory_gib, machine.kernel
            )),
        ),
        (
            "command",
            format!("<code>{}</code>", escape(&report.command)),
        ),
    ];
    if report.quick {
        rows.push(("mode", "quick (shortened run)".to_string()));
    }
    let mut out = String::from("<p>\n");
    for (name, value) in rows {
        let _ = writeln!(out, "<b>{name}:</b> {value}<br>");
    }
    out.push_str("</p>\n");
    out
}

/// The points table as an HTML table.
fn html_table(points: &[Point]) -> String {
    let mut out = String::from("<table>\n<tr>");
    for heading in COLUMNS {
        let _ = write!(out, "<th>{}</th>", escape(heading));
    }
    out.push_str("</tr>\n");
    for point in points {
        out.push_str("<tr>");
        for cell in row(point) {
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// A `<ul>` of already-escaped items, each with an optional class.
fn html_list<'a>(items: impl Iterator<Item = (&'a str, String)>) -> String {
    let mut out = String::from("<ul>\n");
    for (class, item) in items {
        if class.is_empty() {
            let _ = writeln!(out, "<li>{item}</li>");
        } else {
            let _ = writeln!(out, "<li class=\"{class}\">{item}</li>");
        }
    }
    out.push_str("</ul>\n");
    out
}

// ---------------------------------------------------------------------------
// SVG charts
// ---------------------------------------------------------------------------

/// One line of a chart: (viewers, value) points in ascending viewers.
struct Series {
    name: &'static str,
    colour: &'static str,
    points: Vec<(f64, f64)>,
}

/// A series per SFU that has points with a `value`; SFUs without any are
/// left out.
fn chart_series(points: &[Point], value: impl Fn(&Point) -> Option<f64>) -> Vec<Series> {
    [Sfu::Webinar, Sfu::Janus]
        .into_iter()
        .map(|sfu| {
            let mut xy: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.sfu == Some(sfu))
                .filter_map(|p| Some((p.viewers as f64, value(p)?)))
                .filter(|(_, y)| y.is_finite())
                .collect();
            xy.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                name: sfu.name(),
                colour: sfu_colour(sfu),
                points: xy,
            }
        })
        .filter(|series| !series.points.is_empty())
        .collect()
}

/// Chart size and the plot area's margins, in SVG user units.
const CHART_WIDTH: f64 = 640.0;
const CHART_HEIGHT: f64 = 360.0;
const MARGIN_LEFT: f64 = 64.0;
const MARGIN_RIGHT: f64 = 110.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 50.0;

/// An axis from 0 to `top` with a tick every `step`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    step: f64,
    top: f64,
}

impl Axis {
    /// About five round steps (1, 2 or 5 times a power of ten) covering
    /// 0..=`max`; 0..1 when there is nothing positive to show.
    fn covering(max: f64) -> Axis {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let rough = max / 5.0;
        let magnitude = 10f64.powf(rough.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|&step| step >= rough * (1.0 - 1e-9))
            .unwrap_or(10.0 * magnitude);
        let top = ((max / step) - 1e-9).ceil().max(1.0) * step;
        Axis { step, top }
    }

    /// The tick values 0, step, ..., top.
    fn ticks(self) -> impl Iterator<Item = f64> {
        let count = (self.top / self.step).round() as usize;
        (0..=count).map(move |i| i as f64 * self.step)
    }

    /// A tick label with as many decimals as the step needs.
    fn label(self, value: f64) -> String {
        let decimals = if self.step >= 1.0 {
            0
        } else {
            (-self.step.log10()).ceil() as usize
        };
        fixed(value, decimals)
    }
}

/// An SVG line chart of `series` against viewers, with axes, ticks, axis
/// labels, a legend and a marker at every point (a lone point is just a
/// marker); "no data" when there are no series.
fn line_chart(title: &str, y_label: &str, series: &[Series]) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let x_axis = Axis::covering(all().map(|p| p.0).fold(0.0, f64::max));
    let y_axis = Axis::covering(all().map(|p| p.1).fold(0.0, f64::max));
    let plot_width = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_height = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let bottom = MARGIN_TOP + plot_height;
    let right = MARGIN_LEFT + plot_width;
    let sx = |x: f64| MARGIN_LEFT + x / x_axis.top * plot_width;
    let sy = |y: f64| bottom - y / y_axis.top * plot_height;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" \
         viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let title = escape(title);
    let _ = writeln!(svg, "<title>{title}</title>");
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{title}</text>",
        CHART_WIDTH / 2.0
    );

    // Grid and ticks.
    for y in y_axis.ticks() {
        let py = sy(y);
        let _ = writeln!(
            svg,
            "<line x1=\"{MARGIN_LEFT}\" y1=\"{py:.1}\" x2=\"{right}\" y2=\"{py:.1}\" stroke=\"#e4e4e4\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            MARGIN_LEFT - 6.0,
            py + 4.0,
            y_axis.label(y)
        );
    }
    for x in x_axis.ticks() {
        let px = sx(x);
        let _ = writeln!(
            svg,
            "<line x1=\"{px:.1}\" y1=\"{bottom}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#222\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bottom + 5.0,
            bottom + 18.0,
            x_axis.label(x)
        );
    }

    // Axes and their labels.
    let _ = writeln!(
        svg,
        "<polyline points=\"{MARGIN_LEFT},{MARGIN_TOP} {MARGIN_LEFT},{bottom} {right},{bottom}\" \
         fill=\"none\" stroke=\"#222\"/>"
    );
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">viewers</text>",
        MARGIN_LEFT + plot_width / 2.0,
        CHART_HEIGHT - 10.0
    );
    let (label_x, label_y) = (16.0, MARGIN_TOP + plot_height / 2.0);
    let _ = writeln!(
        svg,
        "<text x=\"{label_x}\" y=\"{label_y:.1}\" text-anchor=\"middle\" \
         transform=\"rotate(-90 {label_x} {label_y:.1})\">{}</text>",
        escape(y_label)
    );

    if series.is_empty() {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#777\">no data</text>",
            MARGIN_LEFT + plot_width / 2.0,
            MARGIN_TOP + plot_height / 2.0
        );
    }

    // Lines, markers and legend.
    for (index, line) in series.iter().enumerate() {
        let colour = line.colour;
        if line.points.len() >= 2 {
            let coordinates: Vec<String> = line
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = writeln!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                coordinates.join(" ")
            );
        }
        for &(x, y) in &line.points {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"><title>{}: {x} viewers, {}</title></circle>",
                sx(x),
                sy(y),
                escape(line.name),
                fixed(y, 2)
            );
        }
        let legend_y = MARGIN_TOP + 10.0 + index as f64 * 20.0;
        let legend_x = right + 14.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{legend_x}\" y1=\"{legend_y}\" x2=\"{:.1}\" y2=\"{legend_y}\" stroke=\"{colour}\" stroke-width=\"2\"/>\
             <circle cx=\"{:.1}\" cy=\"{legend_y}\" r=\"4\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            legend_x + 24.0,
            legend_x + 12.0,
            legend_x + 30.0,
            legend_y + 4.0,
            escape(line.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

/// Share of the asked viewers that must have a join time for a p95 over
/// all of them to exist (the others never got a first frame).
const JOIN_COVERAGE: f64 = 0.95;

/// The targets, checked against the points of one run. A target
/// whose data the run did not produce has `met: None`.
pub fn check_targets(points: &[Point]) -> Vec<TargetCheck> {
    vec![
        cpu_per_packet_target(points),
        one_worker_target(points),
        join_target(points),
        delay_target(points),
    ]
}

/// The webinar points.
fn ours(points: &[Point]) -> impl Iterator<Item = &Point> {
    points.iter().filter(|p| p.sfu == Some(Sfu::Webinar))
}

/// Target 1: at the largest viewer count both SFUs forwarded packets at,
/// our CPU per packet is at most a third of Janus's.
fn cpu_per_packet_target(points: &[Point]) -> TargetCheck {
    let largest = common_viewer_counts(points)
        .into_iter()
        .rev()
        .find_map(|viewers| {
            let ours = cpu_per_packet(point_at(points, Sfu::Webinar, viewers)?)?;
            let janus = cpu_per_packet(point_at(points, Sfu::Janus, viewers)?)?;
            Some((viewers, ours, janus))
        });
    let (measured, met) = match largest {
        None => (
            "no viewer count where both SFUs forwarded packets".to_string(),
            None,
        ),
        Some((viewers, ours, janus)) => (
            format!(
                "at {viewers} viewers: webinar {} us/packet, janus {} us/packet ({})",
                fixed(ours, 2),
                fixed(janus, 2),
                fmt_ratio(ratio(Some(ours), Some(janus)))
            ),
            Some(ours <= janus / 3.0),
        ),
    };
    TargetCheck {
        name: "CPU per forwarded packet at most one third of Janus's in the same run".to_string(),
        target: "webinar us CPU/packet <= janus / 3 at the largest viewer count both carried"
            .to_string(),
        measured,
        met,
    }
}

/// Target 2: a webinar point with at least 1,000 viewers receiving and mean
/// loss under 0.5%. Reports the largest passing point, or else the largest
/// one. (The layer's bitrate and the single worker come from how the run
/// was set up; the per-viewer rate is shown to make the former visible.)
fn one_worker_target(points: &[Point]) -> TargetCheck {
    let passes = |p: &Point| p.loss_percent_mean < 0.5;
    let qualifying: Vec<&Point> = ours(points)
        .filter(|p| p.viewers_receiving >= 1000)
        .collect();
    let best = qualifying
        .iter()
        .filter(|p| passes(p))
        .max_by_key(|p| p.viewers_receiving)
        .or_else(|| qualifying.iter().max_by_key(|p| p.viewers_receiving))
        .copied();
    let (measured, met) = match best {
        Some(point) => (
            format!(
                "{}/{} viewers receiving {} Mbit/s each: loss mean {}%, worst viewer {}%",
                point.viewers_receiving,
                point.viewers,
                fixed(
                    point.megabits_per_second / point.viewers_receiving as f64,
                    2
                ),
                fixed(point.loss_percent_mean, 2),
                fixed(point.loss_percent_max, 2)
            ),
            Some(passes(point)),
        ),
        None => {
            let most = ours(points).max_by_key(|p| p.viewers_receiving);
            let text = most.map_or_else(
                || "no webinar point".to_string(),
                |p| {
                    format!(
                        "no webinar point with 1000 viewers receiving (most: {} of {})",
                        p.viewers_receiving, p.viewers
                    )
                },
            );
            (text, None)
        }
    };
    TargetCheck {
        name: "one worker carrying at least 1,000 viewers of a 500 kbps layer plus audio with \
               under 0.5% loss"
            .to_string(),
        target: ">= 1000 viewers receiving, mean loss < 0.5%".to_string(),
        measured,
        met,
    }
}

/// Target 3: join-to-first-frame p95 under 500 ms at a webinar point with
/// at least 200 viewers. The p95 only counts if at least 95% of the asked
/// viewers got a first frame; otherwise the true p95 is unbounded.
fn join_target(points: &[Point]) -> TargetCheck {
    let covered =
        |p: &Point| p.join_to_first_frame_ms.samples as f64 >= JOIN_COVERAGE * p.viewers as f64;
    let passes = |p: &Point| covered(p) && p.join_to_first_frame_ms.p95 < 500.0;
    let qualifying: Vec<&Point> = ours(points)
        .filter(|p| p.viewers >= 200 && p.join_to_first_frame_ms.samples > 0)
        .collect();
    let best = qualifying
        .iter()
        .filter(|p| passes(p))
        .max_by_key(|p| p.viewers)
        .or_else(|| qualifying.iter().max_by_key(|p| p.viewers))
        .copied();
    let (measured, met) = match best {
        None => (
            "no webinar point with 200 viewers and join times".to_string(),
            None,
        ),
        Some(point) => {
            let join = &point.join_to_first_frame_ms;
            let mut text = format!(
                "p95 {} ms (p50 {} ms, {} samples) at {} viewers",
                fixed(join.p95, 0),
                fixed(join.p50, 0),
                join.samples,
                point.viewers
            );
            if !covered(point) {
                let _ = write!(
                    text,
                    "; only {} of {} viewers got a first frame",
                    join.samples, point.viewers
                );
            }
            (text, Some(passes(point)))
        }
    };
    TargetCheck {
        name: "join-to-first-frame p95 under 500 ms while 200 viewers join within 10 s".to_string(),
        target: "p95 < 500 ms with >= 200 viewers joining".to_string(),
        measured,
        met,
    }
}

/// Target 4: every webinar point under 70% CPU (of one core) has a
/// forwarding delay p99 under 2 ms. Reports the worst of them.
fn delay_target(points: &[Point]) -> TargetCheck {
    let below: Vec<&Point> = ours(points)
        .filter(|p| p.sfu_cpu_percent < 70.0 && p.delay_ms.samples > 0)
        .collect();
    let worst = below
        .iter()
        .max_by(|a, b| a.delay_ms.p99.total_cmp(&b.delay_ms.p99));
    let (measured, met) = match worst {
        None => (
            "no webinar point under 70% CPU with delay samples".to_string(),
            None,
        ),
        Some(point) => (
            format!(
                "worst p99 {} ms at {} viewers ({}% CPU), over {} point{} under 70% CPU",
                fixed(point.delay_ms.p99, 2),
                point.viewers,
                fixed(point.sfu_cpu_percent, 1),
                below.len(),
                if below.len() == 1 { "" } else { "s" }
            ),
            Some(point.delay_ms.p99 < 2.0),
        ),
    };
    TargetCheck {
        name: "forwarding delay p99 under 2 ms below 70% CPU".to_string(),
        target: "delay p99 < 2 ms at every webinar point under 70% of one core".to_string(),
        measured,
        met,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Machine;

    fn pct(samples: usize, p50: f64, p95: f64, p99: f64) -> Percentiles {
        Percentiles {
            samples,
            p50,
            p95,
            p99,
            max: p99,
        }
    }

    fn point(
        sfu: Sfu,
        viewers: usize,
        cpu_percent: f64,
        us_per_packet: f64,
        p99: f64,
        loss: f64,
    ) -> Point {
        Point {
            sfu: Some(sfu),
            viewers,
            viewers_receiving: viewers,
            window_seconds: 10.0,
            sfu_cpu_percent: cpu_percent,
            packets_forwarded: 1000 * viewers as u64,
            cpu_us_per_packet: us_per_packet,
            packets_per_second: 100.0 * viewers as f64,
            megabits_per_second: 0.55 * viewers as f64,
            loss_percent_mean: loss,
            loss_percent_max: loss * 4.0,
            delay_ms: pct(1000, p99 / 4.0, p99 / 2.0, p99),
            join_to_first_frame_ms: pct(viewers, 120.0, 300.0, 400.0),
            sfu_kib_per_consumer: 12.5,
            generator_cpu_percent: 80.0,
            ..Point::default()
        }
    }

    fn sample_report() -> Report {
        let mut points = vec![
            point(Sfu::Webinar, 100, 12.34, 1.5, 0.4, 0.0),
            point(Sfu::Webinar, 500, 45.67, 2.0, 0.5, 0.1),
            point(Sfu::Janus, 100, 50.0, 6.0, 1.0, 0.0),
            point(Sfu::Janus, 500, 150.0, 8.0, 2.0, 0.0),
        ];
        points[3]
            .problems
            .push("3 viewers never got media".to_string());
        let targets = check_targets(&points);
        Report {
            command: "webinar-bench --viewers 100,500 <script>".to_string(),
            started_at: "2024-01-01T00:00:00Z".to_string(),
            machine: Machine {
                cpu_model: "Test CPU".to_string(),
                cpus: 2,
                memory_gib: 4.0,
                kernel: "6.1.0".to_string(),
            },
            quick: false,
            points,
            targets,
        }
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(fixed(12.345, 1), "12.3");
        assert_eq!(fixed(0.1, 2), "0.10");
        assert_eq!(fixed(f64::NAN, 2), "n/a");
        assert_eq!(fmt_ratio(ratio(Some(2.0), Some(8.0))), "0.25x");
        assert_eq!(fmt_ratio(ratio(Some(0.1), Some(0.0))), "n/a");
        assert_eq!(fmt_ratio(ratio(None, Some(1.0))), "n/a");
        assert_eq!(percentiles(&Percentiles::default(), &[p50], 0), "-");
        assert_eq!(
            percentiles(&pct(3, 1.0, 2.0, 3.0), &[p50, p99], 1),
            "1.0/3.0"
        );
    }

    #[test]
    fn table_has_aligned_rows_ratios_targets_and_problems() {
        let text = table(&sample_report());
        let lines: Vec<&str> = text.lines().collect();
        // Heading, rule and four rows, all the same width.
        let width = lines[0].len();
        assert!(lines[..6].iter().all(|line| line.len() == width), "{text}");
        assert!(lines[0].starts_with("SFU "));
        assert!(lines[2].starts_with("webinar") && lines[2].contains("100/100"));
        assert!(lines[3].contains("45.7") && lines[3].contains("0.10/0.40"));
        assert!(text.contains(
            "webinar / janus at 100 viewers: CPU per packet 0.25x, delay p99 0.40x, loss n/a"
        ));
        assert!(text.contains(
            "webinar / janus at 500 viewers: CPU per packet 0.25x, delay p99 0.25x, loss n/a"
        ));
        assert!(text.contains("[met] CPU per forwarded packet"));
        assert!(text.contains("[not measured] one worker"));
        assert!(text.contains("janus at 500 viewers: 3 viewers never got media"));
        assert!(text.is_ascii());
    }

    #[test]
    fn writes_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        write_json(&sample_report(), &path).unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(value["points"].as_array().unwrap().len(), 4);
        assert_eq!(value["points"][0]["sfu"], "webinar");
        assert_eq!(value["targets"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn writes_html_with_two_charts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.html");
        write_html(&sample_report(), &path).unwrap();
        let page = fs::read_to_string(&path).unwrap();
        assert_eq!(page.matches("<svg").count(), 2);
        assert_eq!(page.matches("</svg>").count(), 2);
        assert!(page.contains("SFU CPU (% of one core) against viewers"));
        assert!(page.contains("forwarding delay p99 (ms) against viewers"));
        // Per chart: the axes and a line per SFU. Then the table's rows.
        assert_eq!(page.matches("<polyline").count(), 6);
        assert_eq!(page.matches("<tr>").count(), 5);
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script"));
        assert!(page.contains("CPU per packet 0.25x"));
        // Self-contained: nothing loaded from elsewhere.
        assert!(!page.contains("src=") && !page.contains("href="));
    }

    #[test]
    fn html_handles_one_point_per_sfu_and_none() {
        let mut report = sample_report();
        report.points.retain(|p| p.viewers == 100);
        let page = html(&report);
        assert_eq!(page.matches("<svg").count(), 2);
        // Lone points: markers only, no data polylines (just the axes).
        assert_eq!(page.matches("<polyline").count(), 2);
        assert_eq!(page.matches("r=\"4\" fill=\"#1f6fb4\"><title>").count(), 2);

        report.points.clear();
        let page = html(&report);
        assert_eq!(page.matches("<svg").count(), 2);
        assert_eq!(page.matches("no data").count(), 2);
        assert!(!page.contains("<circle"));
    }

    #[test]
    fn axes_have_round_steps() {
        assert_eq!(
            Axis::covering(1000.0),
            Axis {
                step: 200.0,
                top: 1000.0
            }
        );
        assert_eq!(
            Axis::covering(1.7),
            Axis {
                step: 0.5,
                top: 2.0
            }
        );
        assert_eq!(
            Axis::covering(0.0),
            Axis {
                step: 0.2,
                top: 1.0
            }
        );
        assert_eq!(
            Axis::covering(130.0),
            Axis {
                step: 50.0,
                top: 150.0
            }
        );
        let axis = Axis::covering(1.7);
        assert_eq!(
            axis.ticks().map(|t| axis.label(t)).collect::<Vec<_>>(),
            ["0.0", "0.5", "1.0", "1.5", "2.0"]
        );
    }

    #[test]
    fn targets_met() {
        let mut points = vec![
            point(Sfu::Webinar, 1000, 60.0, 2.0, 1.5, 0.2),
            point(Sfu::Janus, 1000, 300.0, 9.0, 5.0, 0.1),
        ];
        points.push(point(Sfu::Webinar, 200, 20.0, 2.0, 0.8, 0.0));
        let checks = check_targets(&points);
        assert!(checks.iter().all(|c| c.met == Some(true)), "{checks:#?}");
        assert_eq!(
            checks[0].measured,
            "at 1000 viewers: webinar 2.00 us/packet, janus 9.00 us/packet (0.22x)"
        );
        assert_eq!(
            checks[1].measured,
            "1000/1000 viewers receiving 0.55 Mbit/s each: loss mean 0.20%, worst viewer 0.80%"
        );
        assert_eq!(
            checks[2].measured,
            "p95 300 ms (p50 120 ms, 1000 samples) at 1000 viewers"
        );
        assert_eq!(
            checks[3].measured,
            "worst p99 1.50 ms at 1000 viewers (60.0% CPU), over 2 points under 70% CPU"
        );
    }

    #[test]
    fn targets_missed() {
        let mut ours = point(Sfu::Webinar, 1000, 65.0, 4.0, 2.5, 0.7);
        ours.join_to_first_frame_ms = pct(1000, 200.0, 650.0, 900.0);
        let points = vec![ours, point(Sfu::Janus, 1000, 300.0, 9.0, 5.0, 0.1)];
        let checks = check_targets(&points);
        assert!(checks.iter().all(|c| c.met == Some(false)), "{checks:#?}");

        // A fast p95 over too few viewers does not count.
        let mut ours = point(Sfu::Webinar, 200, 10.0, 1.0, 0.5, 0.0);
        ours.join_to_first_frame_ms = pct(150, 100.0, 200.0, 300.0);
        let check = join_target(&[ours]);
        assert_eq!(check.met, Some(false));
        assert!(check
            .measured
            .ends_with("only 150 of 200 viewers got a first frame"));
    }

    #[test]
    fn targets_not_measured() {
        assert!(check_targets(&[]).iter().all(|c| c.met.is_none()));
        // Small webinar-only run above 70% CPU: nothing to judge.
        let points = vec![point(Sfu::Webinar, 100, 80.0, 2.0, 0.5, 0.0)];
        let checks = check_targets(&points);
        assert!(checks.iter().all(|c| c.met.is_none()), "{checks:#?}");
        assert_eq!(
            checks[1].measured,
            "no webinar point with 1000 viewers receiving (most: 100 of 100)"
        );
    }

    #[test]
    fn progress_on_terminal_redraws_at_most_ten_times_a_second() {
        let start = Instant::now();
        let mut progress = Progress::with_terminal("joining", 100, true);
        let first = progress.update(start, 10, "ok").unwrap();
        assert_eq!(
            first,
            format!("\rjoining [###{}] 10/100 ok", ".".repeat(27))
        );
        assert!(progress
            .update(start + Duration::from_millis(50), 20, "")
            .is_none());
        let third = progress
            .update(start + Duration::from_millis(120), 50, "")
            .unwrap();
        // Blanks the three characters " ok" left over.
        assert!(third.starts_with("\rjoining [###############...............] 50/100"));
        assert_eq!(third.len(), first.len());
        let last = progress.finish_text().unwrap();
        assert!(last.ends_with("50/100\n"));
        assert!(progress.finish_text().is_none());
        assert!(progress
            .update(start + Duration::from_secs(1), 60, "")
            .is_none());
    }

    #[test]
    fn progress_off_terminal_prints_every_tenth() {
        let start = Instant::now();
        let mut progress = Progress::with_terminal("window", 200, false);
        let printed: Vec<String> = (0..=195)
            .step_by(5)
            .filter_map(|done| progress.update(start, done, "x"))
            .collect();
        assert_eq!(printed.len(), 10, "{printed:?}");
        assert_eq!(printed[0], "window: 0/200 (0%) x\n");
        assert_eq!(printed[1], "window: 20/200 (10%) x\n");
        assert_eq!(progress.finish_text().unwrap(), "window: 195/200 (98%) x\n");

        let mut complete = Progress::with_terminal("done", 0, false);
        assert_eq!(complete.update(start, 0, "").unwrap(), "done: 0/0 (100%)\n");
        assert!(complete.finish_text().is_none());
    }
}
