//! The figures one run produces: a point per (SFU, viewer count), and the
//! targets checked against them. Serialized as the JSON report.

use serde::Serialize;

/// Percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (any order); all zero when empty.
    pub fn of(values: &mut [f64]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p / 100.0) * values.len() as f64).ceil() as usize;
            values[index.clamp(1, values.len()) - 1]
        };
        Percentiles {
            samples: values.len(),
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: values[values.len() - 1],
        }
    }
}

/// Which SFU a point measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sfu {
    /// This project (`webinar`).
    Webinar,
    Janus,
}

impl Sfu {
    pub fn name(self) -> &'static str {
        match self {
            Sfu::Webinar => "webinar",
            Sfu::Janus => "janus",
        }
    }
}

/// The measurements of one SFU carrying one audience size.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Point {
    pub sfu: Option<Sfu>,
    /// Viewers asked for, and how many got media.
    pub viewers: usize,
    pub viewers_receiving: usize,
    /// Length of the measurement window (after the ramp-up), seconds.
    pub window_seconds: f64,
    /// CPU seconds (user + system) the SFU process used in the window.
    pub sfu_cpu_seconds: f64,
    /// The same as a share of one core, percent.
    pub sfu_cpu_percent: f64,
    /// RTP packets the viewers received in the window.
    pub packets_forwarded: u64,
    /// SFU CPU per forwarded packet, microseconds.
    pub cpu_us_per_packet: f64,
    /// SFU CPU per viewer, percent of one core.
    pub cpu_percent_per_viewer: f64,
    pub packets_per_second: f64,
    pub megabits_per_second: f64,
    /// Per-viewer loss of media packets before retransmission, percent:
    /// mean over viewers and the worst viewer.
    pub loss_percent_mean: f64,
    pub loss_percent_max: f64,
    /// Presenter send to viewer receive, from stamps in the payload.
    pub delay_ms: Percentiles,
    /// From starting to join to the first video packet.
    pub join_to_first_frame_ms: Percentiles,
    /// SFU resident memory before the viewers joined and with them.
    pub sfu_rss_mib_before: f64,
    pub sfu_rss_mib_with_viewers: f64,
    /// (with - before) / consumers (two per viewer: video and audio).
    pub sfu_kib_per_consumer: f64,
    /// Time from asking for another simulcast layer to its first packet.
    pub layer_switch_ms: Percentiles,
    /// Switches under a bandwidth step (SFUs that adapt layers to a
    /// viewer's estimated bandwidth; not Janus's VideoRoom).
    pub bandwidth_step: Option<BandwidthStep>,
    /// CPU the generator itself used, percent of one core (to show it was
    /// not the bottleneck).
    pub generator_cpu_percent: f64,
    /// Anything that went wrong for this point (viewers that never got
    /// media, a failed signalling step).
    pub problems: Vec<String>,
}

/// One viewer's layer switches when its downlink capacity steps down and
/// back up (a simulated bottleneck; the viewer sends transport-wide
/// congestion control feedback, as a browser does).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BandwidthStep {
    pub high_kbps: u64,
    pub low_kbps: u64,
    /// The layer received before the step, from the top (expected: the
    /// top layer, whose bitrate fits the high capacity).
    pub layer_before: Option<u8>,
    /// From the step down to the first packet of the lowest layer.
    pub down_ms: Option<f64>,
    /// From the step back up to the first packet of the top layer again.
    pub up_ms: Option<f64>,
    /// Media packets lost behind the bottleneck during the low phase (the
    /// queue overflowing before the SFU switches down), percent.
    pub low_phase_loss_percent: f64,
}

/// A target of the issue, checked against a run.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub name: String,
    pub target: String,
    pub measured: String,
    /// `None` when the run did not measure what the target needs.
    pub met: Option<bool>,
}

/// The machine the run was made on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

/// Everything a run reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub command: String,
    pub started_at: String,
    pub machine: Machine,
    pub quick: bool,
    pub points: Vec<Point>,
    pub targets: Vec<TargetCheck>,
}
