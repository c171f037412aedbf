//! Send-side bandwidth estimation for one WebRTC transport: how many bits
//! per second the path to the remote peer carries, learnt from
//! transport-wide congestion control feedback about what we sent, with
//! REMB as the fallback for peers that do not send that feedback. Sans IO:
//! time is passed in; the engine records sends, feeds feedback and drives
//! probes.
//!
//! # Algorithm
//!
//! In the spirit of Google congestion control (draft-ietf-rmcat-gcc-02 and
//! libwebrtc's `GoogCcNetworkController`):
//!
//! - **Feedback matching.** Every packet sent with a transport-wide
//!   sequence number is remembered (size, send time, probe cluster). A
//!   feedback names each packet as received (with its arrival time in the
//!   receiver's clock) or not; both feed the controllers below.
//! - **Delay-based controller.** Received packets, in arrival order, are
//!   grouped by send time (packets sent within 5 ms form one group, as a
//!   video frame does). For consecutive groups the delay variation is
//!   `(arrival delta) - (send delta)`; its running sum is smoothed and a
//!   trendline (least squares over the last 20 groups) gives its slope.
//!   The slope, scaled by the number of samples, is compared with an
//!   adaptive threshold (12.5 ms to start, moving towards the signal at
//!   0.0087/ms when above it and 0.039/ms when below): above for more than
//!   10 ms and two samples is *overuse*, below minus the threshold is
//!   *underuse*, otherwise *normal*.
//! - **AIMD rate control.** Overuse decreases the estimate to 0.85 × the
//!   acknowledged bitrate (at most once per RTT, clamped to 10..200 ms,
//!   unless the estimate is over twice the acknowledged rate); normal
//!   increases it, multiplicatively (8 %/s) far from the link capacity
//!   last seen at overuse, additively (about one packet per response time)
//!   near it; underuse holds. An increase never takes the estimate above
//!   1.5 × the acknowledged bitrate + 10 kbps, so that the estimate only
//!   runs ahead of what is sent through probing.
//! - **Acknowledged bitrate.** Bytes received over the last 500 ms of
//!   arrival times.
//! - **Loss-based controller.** Over windows of at least 50 reported
//!   media packets (or 1 s and 10 packets; probe padding does not count):
//!   more than 10 % lost caps the estimate at `(1 - loss / 2)` × itself (at
//!   most once per 300 ms + RTT); under 2 % lets the cap grow 8 %/s until
//!   it no longer binds; in between it holds. The estimate is the
//!   delay-based one, limited by that cap.
//! - **Probing.** When the allocator would need more than the estimate,
//!   [`BandwidthEstimator::wants_probe`] answers with a cluster: send at
//!   `bitrate` (media plus `padding_bitrate` of RTX padding) for 250 ms.
//!   The rate is 1.1 × the target, at most 3 × the estimate (2 × after a
//!   failed probe, the link being near its capacity). Every packet sent in
//!   that window belongs to the cluster. Its result is
//!   `min(send rate, receive rate)`, or 0.95 × the receive rate when the
//!   receiver got less than 90 % of the send rate (the link is saturated).
//!   A result above the estimate becomes the estimate (even when the probe
//!   itself built a queue) and lifts the loss cap; overuse seen while a
//!   probe is out waits for its result. A probe reaching 90 % of its rate
//!   lets the next one go as soon as the allocator asks; a failed one backs
//!   off 2 s, doubling up to 5 s.
//! - **REMB.** While no transport-wide feedback came in the last 5 s, a
//!   REMB sets the estimate.
//! - **Lost feedback.** When packets go out but no feedback has come for
//!   2 s (after some had come), the estimate drops by 20 % per second.
//!
//! # What it simplifies compared with GCC
//!
//! - No pacer: the estimate is not a sending rate, only a budget for the
//!   allocator, and media goes out in frame bursts (the trendline copes,
//!   being a slope over 20 groups).
//! - The acknowledged bitrate is a plain 500 ms window, not libwebrtc's
//!   Bayesian estimator; the link capacity estimate is a simple mean and
//!   variance of the acknowledged rate at overuse.
//! - No arrival-time burst merging beyond one rule (groups arriving within
//!   5 ms with negative delay variation are merged); no separate
//!   handling of clock drift or of reordering beyond ignoring packets sent
//!   before the current group.
//! - Loss-based control is the classic one (draft section 6), not
//!   libwebrtc's loss-based v2; ALR detection and periodic ALR probing are
//!   absent: probes are only sent when the allocator asks, and the probe
//!   rate is chosen here rather than as libwebrtc's fixed 3x/6x initial
//!   and 2x further probes.
//! - RTT is measured from feedback (send time of the newest reported
//!   packet to the feedback's arrival), so it includes the receiver's
//!   feedback delay of up to 100 ms.

// Until the engine drives it (recording sends, feeding feedback, applying
// allocations), only the tests call it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rtcp::TransportCc;

/// Bounds and start of the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BandwidthEstimatorOptions {
    /// Estimate before any feedback, in bits/s. Default 600 kbps
    /// (mediasoup's `initialAvailableOutgoingBitrate`).
    pub initial_bitrate: u64,
    /// Floor of the estimate, in bits/s. Default 30 kbps (mediasoup's
    /// `minimumAvailableOutgoingBitrate`).
    pub min_bitrate: u64,
    /// Ceiling of the estimate, in bits/s. Default 100 Mbps.
    pub max_bitrate: u64,
}

impl Default for BandwidthEstimatorOptions {
    fn default() -> Self {
        Self {
            initial_bitrate: 600_000,
            min_bitrate: 30_000,
            max_bitrate: 100_000_000,
        }
    }
}

/// A burst to send to discover headroom: media plus `padding_bitrate` of
/// padding (RTX padding-only packets marked `is_probe`), `bitrate` in all,
/// for `duration` from the moment it was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeCluster {
    pub id: u32,
    pub bitrate: u64,
    pub padding_bitrate: u64,
    pub duration: Duration,
}

/// What the delay-based detector sees of the queue on the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BandwidthUsage {
    Normal,
    Overuse,
    Underuse,
}

/// Ring of sent packets, indexed by transport sequence (65536 is a
/// multiple of its size, so a slot holds one sequence number at a time).
const SENT_HISTORY: usize = 8192;
/// A feedback about a packet older than this is about a wrapped sequence.
const SENT_MAX_AGE: Duration = Duration::from_secs(10);
const SEND_RATE_WINDOW: Duration = Duration::from_millis(500);
const ACKED_WINDOW_US: i64 = 500_000;

const BURST: Duration = Duration::from_millis(5);
const BURST_ARRIVAL_US: i64 = 5_000;
const MAX_BURST: Duration = Duration::from_millis(100);
const TRENDLINE_WINDOW: usize = 20;
const TRENDLINE_SMOOTHING: f64 = 0.9;
const TRENDLINE_GAIN: f64 = 4.0;
const MAX_DELTAS_SCALE: f64 = 60.0;
const OVERUSE_TIME_MS: f64 = 10.0;
const THRESHOLD_INITIAL: f64 = 12.5;
const THRESHOLD_K_UP: f64 = 0.0087;
const THRESHOLD_K_DOWN: f64 = 0.039;
const THRESHOLD_MIN: f64 = 6.0;
const THRESHOLD_MAX: f64 = 600.0;
/// A signal this far above the threshold is a spike, not a trend: the
/// threshold does not follow it.
const THRESHOLD_MAX_JUMP: f64 = 15.0;

const BETA: f64 = 0.85;
const MULTIPLICATIVE_INCREASE_PER_S: f64 = 1.08;
const MIN_INCREASE_BPS: f64 = 1_000.0;
const ACKED_HEADROOM: f64 = 1.5;
const ACKED_HEADROOM_BPS: f64 = 10_000.0;

const LOSS_HIGH: f64 = 0.10;
const LOSS_LOW: f64 = 0.02;
const LOSS_WINDOW_PACKETS: u32 = 50;
const LOSS_WINDOW_MIN_PACKETS: u32 = 10;
const LOSS_WINDOW_MAX_TIME: Duration = Duration::from_secs(1);
const LOSS_DECREASE_INTERVAL: Duration = Duration::from_millis(300);

const PROBE_DURATION: Duration = Duration::from_millis(250);
/// Packets sent this long after the cluster's end still belong to it
/// (the engine's timers are not exact).
const PROBE_SLACK: Duration = Duration::from_millis(10);
const PROBE_RESULT_TIMEOUT: Duration = Duration::from_secs(1);
const PROBE_MIN_PACKETS: u32 = 5;
/// Probe above what was asked for: the result measures a little under
/// the rate sent.
const PROBE_OVERSHOOT: f64 = 1.1;
const PROBE_MAX_GROWTH: f64 = 3.0;
/// After a failed probe the link is near its capacity: overshooting it by
/// 3x would overflow its queue.
const PROBE_MAX_GROWTH_AFTER_FAILURE: f64 = 2.0;
const PROBE_SUCCESS_RATIO: f64 = 0.9;
const PROBE_SATURATED_RATIO: f64 = 0.9;
const PROBE_SATURATED_FRACTION: f64 = 0.95;
/// Success: probe further as soon as the result is in.
const PROBE_INTERVAL_AFTER_SUCCESS: Duration = Duration::ZERO;
const PROBE_BACKOFF_INITIAL: Duration = Duration::from_secs(2);
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Without transport-wide feedback for this long, REMB takes over.
const TWCC_ACTIVE: Duration = Duration::from_secs(5);
const FEEDBACK_TIMEOUT: Duration = Duration::from_secs(2);
const FEEDBACK_TIMEOUT_INTERVAL: Duration = Duration::from_secs(1);
const FEEDBACK_TIMEOUT_FACTOR: f64 = 0.8;

const RTT_INITIAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    Pending,
    Lost,
    Received,
}

#[derive(Debug, Clone, Copy)]
struct SentPacket {
    seq: u16,
    size: u32,
    at: Instant,
    probe: Option<u32>,
    /// Padding: its loss says nothing about the media's.
    is_probe: bool,
    report: Report,
}

/// A reported arrival matched to its send.
#[derive(Debug, Clone, Copy)]
struct Arrived {
    sent: Instant,
    arrival_us: i64,
    size: u32,
}

/// Bits over a sliding window of send times.
#[derive(Debug, Default)]
struct SendRate {
    packets: VecDeque<(Instant, u32)>,
    bytes: u64,
}

impl SendRate {
    fn add(&mut self, now: Instant, size: u32) {
        self.packets.push_back((now, size));
        self.bytes += u64::from(size);
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, size)) = self.packets.front() {
            if now.saturating_duration_since(at) <= SEND_RATE_WINDOW {
                break;
            }
            self.packets.pop_front();
            self.bytes -= u64::from(size);
        }
    }

    fn bitrate(&mut self, now: Instant) -> u64 {
        self.expire(now);
        self.bytes * 8 * 1000 / SEND_RATE_WINDOW.as_millis() as u64
    }
}

/// Bits received over a sliding window of arrival times.
#[derive(Debug, Default)]
struct AckedRate {
    packets: VecDeque<(i64, u32)>,
    bytes: u64,
    first_arrival_us: Option<i64>,
}

impl AckedRate {
    fn add(&mut self, arrival_us: i64, size: u32) {
        self.first_arrival_us.get_or_insert(arrival_us);
        self.packets.push_back((arrival_us, size));
        self.bytes += u64::from(size);
        let newest = self.packets.back().map_or(arrival_us, |p| p.0);
        while let Some(&(at, size)) = self.packets.front() {
            if at >= newest - ACKED_WINDOW_US {
                break;
            }
            self.packets.pop_front();
            self.bytes -= u64::from(size);
        }
    }

    /// `None` until a whole window has been seen.
    fn bitrate(&self) -> Option<u64> {
        let newest = self.packets.back()?.0;
        if newest - self.first_arrival_us? < ACKED_WINDOW_US {
            return None;
        }
        Some(self.bytes * 8 * 1_000_000 / ACKED_WINDOW_US as u64)
    }
}

/// Packets sent in one burst (by send time), as the delay detector sees
/// them.
#[derive(Debug, Clone, Copy)]
struct PacketGroup {
    first_sent: Instant,
    last_sent: Instant,
    last_arrival_us: i64,
}

impl PacketGroup {
    fn new(p: &Arrived) -> Self {
        Self {
            first_sent: p.sent,
            last_sent: p.sent,
            last_arrival_us: p.arrival_us,
        }
    }

    fn add(&mut self, p: &Arrived) {
        self.last_sent = self.last_sent.max(p.sent);
        self.last_arrival_us = self.last_arrival_us.max(p.arrival_us);
    }
}

/// Trendline filter and overuse detector with adaptive threshold.
#[derive(Debug)]
struct DelayDetector {
    current: Option<PacketGroup>,
    previous: Option<PacketGroup>,
    first_arrival_ms: Option<f64>,
    accumulated_delay: f64,
    smoothed_delay: f64,
    history: VecDeque<(f64, f64)>,
    num_deltas: u32,
    trend: f64,
    threshold: f64,
    last_threshold_update_ms: Option<f64>,
    overuse_ms: f64,
    overuse_count: u32,
    state: BandwidthUsage,
}

impl DelayDetector {
    fn new() -> Self {
        Self {
            current: None,
            previous: None,
            first_arrival_ms: None,
            accumulated_delay: 0.0,
            smoothed_delay: 0.0,
            history: VecDeque::with_capacity(TRENDLINE_WINDOW + 1),
            num_deltas: 0,
            trend: 0.0,
            threshold: THRESHOLD_INITIAL,
            last_threshold_update_ms: None,
            overuse_ms: -1.0,
            overuse_count: 0,
            state: BandwidthUsage::Normal,
        }
    }

    /// One received packet, in arrival order.
    fn on_packet(&mut self, p: &Arrived) {
        let Some(group) = &mut self.current else {
            self.current = Some(PacketGroup::new(p));
            return;
        };
        if p.sent < group.first_sent {
            // Reordered from an earlier group: its deltas are meaningless.
            return;
        }
        let same_burst = p.sent.duration_since(group.first_sent) <= BURST;
        let arrival_burst = {
            let arrival_delta = p.arrival_us - group.last_arrival_us;
            let send_delta = p
                .sent
                .saturating_duration_since(group.last_sent)
                .as_micros() as i64;
            arrival_delta <= BURST_ARRIVAL_US
                && arrival_delta - send_delta < 0
                && p.sent.duration_since(group.first_sent) < MAX_BURST
        };
        if same_burst || arrival_burst {
            group.add(p);
            return;
        }
        let done = *group;
        self.current = Some(PacketGroup::new(p));
        if let Some(prev) = self.previous.replace(done) {
            let send_delta_ms = done
                .last_sent
                .saturating_duration_since(prev.last_sent)
                .as_secs_f64()
                * 1000.0;
            let arrival_delta_ms = (done.last_arrival_us - prev.last_arrival_us) as f64 / 1000.0;
            self.update(
                arrival_delta_ms,
                send_delta_ms,
                done.last_arrival_us as f64 / 1000.0,
            );
        }
    }

    fn update(&mut self, arrival_delta_ms: f64, send_delta_ms: f64, arrival_ms: f64) {
        let delay = arrival_delta_ms - send_delta_ms;
        self.num_deltas = (self.num_deltas + 1).min(1000);
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        self.accumulated_delay += delay;
        self.smoothed_delay = TRENDLINE_SMOOTHING * self.smoothed_delay
            + (1.0 - TRENDLINE_SMOOTHING) * self.accumulated_delay;
        self.history
            .push_back((arrival_ms - first, self.smoothed_delay));
        if self.history.len() > TRENDLINE_WINDOW {
            self.history.pop_front();
        }
        let mut trend = self.trend;
        if self.history.len() == TRENDLINE_WINDOW {
            if let Some(slope) = linear_fit_slope(&self.history) {
                trend = slope;
            }
        }
        self.detect(trend, send_delta_ms, arrival_ms);
    }

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now_ms: f64) {
        if self.num_deltas < 2 {
            self.trend = trend;
            return;
        }
        let modified = f64::from(self.num_deltas).min(MAX_DELTAS_SCALE) * trend * TRENDLINE_GAIN;
        if modified > self.threshold {
            if self.overuse_ms < 0.0 {
                self.overuse_ms = send_delta_ms / 2.0;
            } else {
                self.overuse_ms += send_delta_ms;
            }
            self.overuse_count += 1;
            if self.overuse_ms > OVERUSE_TIME_MS && self.overuse_count > 1 && trend >= self.trend {
                self.overuse_ms = 0.0;
                self.overuse_count = 0;
                self.state = BandwidthUsage::Overuse;
            }
        } else if modified < -self.threshold {
            self.overuse_ms = -1.0;
            self.overuse_count = 0;
            self.state = BandwidthUsage::Underuse;
        } else {
            self.overuse_ms = -1.0;
            self.overuse_count = 0;
            self.state = BandwidthUsage::Normal;
        }
        self.trend = trend;
        self.update_threshold(modified, now_ms);
    }

    fn update_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.last_threshold_update_ms.get_or_insert(now_ms);
        self.last_threshold_update_ms = Some(now_ms);
        if modified.abs() > self.threshold + THRESHOLD_MAX_JUMP {
            return;
        }
        let k = if modified.abs() < self.threshold {
            THRESHOLD_K_DOWN
        } else {
            THRESHOLD_K_UP
        };
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold += k * (modified.abs() - self.threshold) * dt;
        self.threshold = self.threshold.clamp(THRESHOLD_MIN, THRESHOLD_MAX);
    }
}

fn linear_fit_slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    (den != 0.0).then(|| num / den)
}

/// The acknowledged bitrate at overuse: where the link saturates.
#[derive(Debug, Default)]
struct LinkCapacity {
    /// kbps.
    estimate: Option<f64>,
    deviation: f64,
}

impl LinkCapacity {
    fn update(&mut self, sample_bps: f64, alpha: f64) {
        let sample = sample_bps / 1000.0;
        let estimate = match self.estimate {
            None => sample,
            Some(e) => (1.0 - alpha) * e + alpha * sample,
        };
        let norm = estimate.max(1.0);
        let error = estimate - sample;
        self.deviation =
            ((1.0 - alpha) * self.deviation + alpha * error * error / norm).clamp(0.4, 2.5);
        self.estimate = Some(estimate);
    }

    fn spread(&self, estimate: f64) -> f64 {
        3.0 * (self.deviation * estimate).sqrt()
    }

    fn upper_bound_bps(&self) -> Option<f64> {
        self.estimate.map(|e| (e + self.spread(e)) * 1000.0)
    }

    fn lower_bound_bps(&self) -> Option<f64> {
        self.estimate
            .map(|e| (e - self.spread(e)).max(0.0) * 1000.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateState {
    Hold,
    Increase,
    Decrease,
}

/// AIMD on the delay-based signal.
#[derive(Debug)]
struct RateControl {
    bitrate: f64,
    state: RateState,
    link: LinkCapacity,
    last_change: Option<Instant>,
}

impl RateControl {
    fn set(&mut self, bitrate: f64, now: Instant) {
        self.bitrate = bitrate;
        self.last_change = Some(now);
    }

    fn time_to_reduce_further(&self, now: Instant, acked: Option<u64>, rtt: Duration) -> bool {
        let interval = rtt.clamp(Duration::from_millis(10), Duration::from_millis(200));
        if self
            .last_change
            .is_none_or(|t| now.saturating_duration_since(t) >= interval)
        {
            return true;
        }
        acked.is_some_and(|a| (a as f64) < self.bitrate / 2.0)
    }

    fn update(&mut self, usage: BandwidthUsage, acked: Option<u64>, now: Instant, rtt: Duration) {
        match usage {
            BandwidthUsage::Normal => {
                if self.state == RateState::Hold {
                    self.last_change = Some(now);
                    self.state = RateState::Increase;
                }
            }
            BandwidthUsage::Overuse => self.state = RateState::Decrease,
            BandwidthUsage::Underuse => self.state = RateState::Hold,
        }
        let acked = acked.map(|a| a as f64);
        match self.state {
            RateState::Hold => {}
            RateState::Increase => {
                if let (Some(a), Some(upper)) = (acked, self.link.upper_bound_bps()) {
                    if a > upper {
                        self.link = LinkCapacity::default();
                    }
                }
                let dt = self
                    .last_change
                    .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
                let increase = if self.link.estimate.is_some() {
                    self.near_max_increase_per_s(rtt) * dt
                } else {
                    let alpha = MULTIPLICATIVE_INCREASE_PER_S.powf(dt.min(1.0));
                    (self.bitrate * (alpha - 1.0)).max(MIN_INCREASE_BPS)
                };
                let mut new = self.bitrate + increase;
                if let Some(a) = acked {
                    let limit = ACKED_HEADROOM * a + ACKED_HEADROOM_BPS;
                    if new > limit {
                        new = self.bitrate.max(limit);
                    }
                }
                self.bitrate = new;
                self.last_change = Some(now);
            }
            RateState::Decrease => {
                let throughput = acked.unwrap_or(self.bitrate);
                let mut decreased = BETA * throughput;
                if decreased > self.bitrate {
                    if let Some(cap) = self.link.estimate {
                        decreased = BETA * cap * 1000.0;
                    }
                }
                if decreased < self.bitrate {
                    self.bitrate = decreased;
                }
                if self.link.lower_bound_bps().is_some_and(|l| throughput < l) {
                    self.link = LinkCapacity::default();
                }
                self.link.update(throughput, 0.05);
                self.state = RateState::Hold;
                self.last_change = Some(now);
            }
        }
    }

    /// About one packet more per response time.
    fn near_max_increase_per_s(&self, rtt: Duration) -> f64 {
        let bits_per_frame = self.bitrate / 30.0;
        let packets_per_frame = (bits_per_frame / (1200.0 * 8.0)).ceil().max(1.0);
        let packet_bits = bits_per_frame / packets_per_frame;
        let response = (rtt + Duration::from_millis(100)).as_secs_f64();
        (packet_bits / response).max(4_000.0)
    }
}

/// The loss-based cap.
#[derive(Debug, Default)]
struct LossControl {
    expected: u32,
    lost: u32,
    window_start: Option<Instant>,
    last_fraction: f64,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    limit: Option<f64>,
}

impl LossControl {
    fn on_feedback(
        &mut self,
        counts: (u32, u32, u32),
        now: Instant,
        estimate: f64,
        delay_based: f64,
        rtt: Duration,
    ) {
        let (expected, lost, recovered) = counts;
        self.expected += expected;
        self.lost = (self.lost + lost).saturating_sub(recovered);
        let start = *self.window_start.get_or_insert(now);
        let enough = self.expected >= LOSS_WINDOW_PACKETS
            || (self.expected >= LOSS_WINDOW_MIN_PACKETS
                && now.saturating_duration_since(start) >= LOSS_WINDOW_MAX_TIME);
        if !enough {
            return;
        }
        let fraction = f64::from(self.lost.min(self.expected)) / f64::from(self.expected);
        self.expected = 0;
        self.lost = 0;
        self.window_start = Some(now);
        self.last_fraction = fraction;
        let dt = self
            .last_update
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.last_update = Some(now);
        if fraction > LOSS_HIGH {
            let due = self
                .last_decrease
                .is_none_or(|t| now.saturating_duration_since(t) >= LOSS_DECREASE_INTERVAL + rtt);
            if due {
                let base = self.limit.map_or(estimate, |l| l.min(estimate));
                self.limit = Some(base * (1.0 - fraction / 2.0));
                self.last_decrease = Some(now);
            }
        } else if fraction < LOSS_LOW {
            if let Some(l) = self.limit {
                let grown = l * MULTIPLICATIVE_INCREASE_PER_S.powf(dt.min(1.0)) + MIN_INCREASE_BPS;
                self.limit = (grown < delay_based).then_some(grown);
            }
        }
    }
}

/// A probe cluster handed out and not yet judged.
#[derive(Debug)]
struct ProbeInFlight {
    id: u32,
    bitrate: u64,
    started: Instant,
    ends: Instant,
    tagged: u32,
    reported: u32,
    received: u32,
    bytes: u64,
    first_sent: Option<Instant>,
    /// Latest send and its size (excluded from the send rate: it was sent
    /// at the end of the interval).
    last_sent: Option<(Instant, u32)>,
    /// Earliest arrival and its size (excluded from the receive rate).
    first_arrival: Option<(i64, u32)>,
    last_arrival_us: Option<i64>,
}

impl ProbeInFlight {
    fn on_received(&mut self, p: &Arrived) {
        self.received += 1;
        self.bytes += u64::from(p.size);
        self.first_sent = Some(self.first_sent.map_or(p.sent, |t| t.min(p.sent)));
        if self.last_sent.is_none_or(|(t, _)| p.sent >= t) {
            self.last_sent = Some((p.sent, p.size));
        }
        if self.first_arrival.is_none_or(|(t, _)| p.arrival_us < t) {
            self.first_arrival = Some((p.arrival_us, p.size));
        }
        self.last_arrival_us = Some(
            self.last_arrival_us
                .map_or(p.arrival_us, |t| t.max(p.arrival_us)),
        );
    }

    /// The bitrate the path carried, if the cluster tells.
    fn result(&self) -> Option<u64> {
        if self.received < PROBE_MIN_PACKETS {
            return None;
        }
        let (last_sent, last_size) = self.last_sent?;
        let send_s = last_sent
            .saturating_duration_since(self.first_sent?)
            .as_secs_f64();
        let (first_arrival, first_size) = self.first_arrival?;
        let receive_s = (self.last_arrival_us? - first_arrival) as f64 / 1e6;
        if send_s <= 0.0 || receive_s <= 0.0 {
            return None;
        }
        let send_rate = (self.bytes - u64::from(last_size)) as f64 * 8.0 / send_s;
        let receive_rate = (self.bytes - u64::from(first_size)) as f64 * 8.0 / receive_s;
        let result = if receive_rate < PROBE_SATURATED_RATIO * send_rate {
            PROBE_SATURATED_FRACTION * receive_rate
        } else {
            send_rate.min(receive_rate)
        };
        Some(result as u64)
    }
}

/// Send-side bandwidth estimator of one transport.
#[derive(Debug)]
pub(crate) struct BandwidthEstimator {
    options: BandwidthEstimatorOptions,
    history: Vec<Option<SentPacket>>,
    send_rate: SendRate,
    acked: AckedRate,
    detector: DelayDetector,
    rate: RateControl,
    loss: LossControl,
    rtt: Option<Duration>,
    /// Last reference time seen (raw 24-bit) and its unwrapped value.
    reference: Option<(i32, i64)>,
    arrived: Vec<Arrived>,
    last_feedback: Option<Instant>,
    last_sent: Option<Instant>,
    last_timeout_decrease: Option<Instant>,
    probe: Option<ProbeInFlight>,
    next_probe_id: u32,
    next_probe_at: Option<Instant>,
    probe_backoff: Duration,
    last_probe_failed: bool,
}

impl BandwidthEstimator {
    pub(crate) fn new(options: BandwidthEstimatorOptions) -> Self {
        let initial = options.initial_bitrate.clamp(
            options.min_bitrate,
            options.max_bitrate.max(options.min_bitrate),
        );
        Self {
            options,
            history: vec![None; SENT_HISTORY],
            send_rate: SendRate::default(),
            acked: AckedRate::default(),
            detector: DelayDetector::new(),
            rate: RateControl {
                bitrate: initial as f64,
                state: RateState::Hold,
                link: LinkCapacity::default(),
                last_change: None,
            },
            loss: LossControl::default(),
            rtt: None,
            reference: None,
            arrived: Vec::with_capacity(256),
            last_feedback: None,
            last_sent: None,
            last_timeout_decrease: None,
            probe: None,
            next_probe_id: 1,
            next_probe_at: None,
            probe_backoff: PROBE_BACKOFF_INITIAL,
            last_probe_failed: false,
        }
    }

    /// The available outgoing bitrate, in bits/s.
    pub(crate) fn estimate(&self) -> u64 {
        let mut e = self.rate.bitrate;
        if let Some(l) = self.loss.limit {
            e = e.min(l);
        }
        self.clamp(e) as u64
    }

    /// What was sent with transport-wide sequence numbers over the last
    /// 500 ms, probe padding excepted, in bits/s.
    pub(crate) fn send_bitrate(&mut self, now: Instant) -> u64 {
        self.send_rate.bitrate(now)
    }

    /// Whether the last loss window lost more than the share that cuts
    /// the estimate (10 %).
    pub(crate) fn losing_much(&self) -> bool {
        self.loss.last_fraction > LOSS_HIGH
    }

    /// The bitrate the receiver acknowledged over the last 500 ms.
    pub(crate) fn acked_bitrate(&self) -> Option<u64> {
        self.acked.bitrate()
    }

    /// What the delay-based detector last concluded.
    #[cfg_attr(not(test), allow(dead_code))] // used by the scenario tests
    pub(crate) fn usage(&self) -> BandwidthUsage {
        self.detector.state
    }

    fn clamp(&self, bitrate: f64) -> f64 {
        let min = self.options.min_bitrate as f64;
        bitrate.clamp(min, (self.options.max_bitrate as f64).max(min))
    }

    /// A packet carrying transport-wide sequence `transport_seq` went out.
    /// `is_probe` marks padding sent for a [`ProbeCluster`].
    pub(crate) fn on_packet_sent(
        &mut self,
        transport_seq: u16,
        size: usize,
        now: Instant,
        is_probe: bool,
    ) {
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        let probe = match &mut self.probe {
            Some(p) if now >= p.started && now <= p.ends + PROBE_SLACK => {
                p.tagged += 1;
                Some(p.id)
            }
            _ => None,
        };
        self.history[usize::from(transport_seq) % SENT_HISTORY] = Some(SentPacket {
            seq: transport_seq,
            size,
            at: now,
            probe,
            is_probe,
            report: Report::Pending,
        });
        if !is_probe {
            self.send_rate.add(now, size);
        }
        self.last_sent = Some(now);
    }

    /// Unwraps the 24-bit reference time; returns the offset to add to the
    /// feedback's arrival times.
    fn reference_offset_us(&mut self, raw: i32) -> i64 {
        let unwrapped = match self.reference {
            None => i64::from(raw),
            Some((last_raw, last)) => {
                let delta = raw.wrapping_sub(last_raw).wrapping_shl(8) >> 8;
                last + i64::from(delta)
            }
        };
        self.reference = Some((raw, unwrapped));
        (unwrapped - i64::from(raw)) * 64_000
    }

    /// A transport-wide congestion control feedback from the receiver.
    pub(crate) fn on_transport_cc(&mut self, feedback: &TransportCc<'_>, now: Instant) {
        self.last_feedback = Some(now);
        self.last_timeout_decrease = None;
        let offset = self.reference_offset_us(feedback.reference_time);
        self.arrived.clear();
        let (mut expected, mut lost, mut recovered) = (0u32, 0u32, 0u32);
        let mut newest_sent: Option<Instant> = None;
        for (seq, arrival) in feedback.arrivals() {
            let slot = &mut self.history[usize::from(seq) % SENT_HISTORY];
            let Some(p) = slot
                .as_mut()
                .filter(|p| p.seq == seq && now.saturating_duration_since(p.at) < SENT_MAX_AGE)
            else {
                continue;
            };
            let first_report = p.report == Report::Pending;
            let media = u32::from(!p.is_probe);
            let arrived = match (arrival, p.report) {
                (None, Report::Pending) => {
                    p.report = Report::Lost;
                    expected += media;
                    lost += media;
                    None
                }
                (Some(at), Report::Pending | Report::Lost) => {
                    if p.report == Report::Lost {
                        recovered += media;
                    } else {
                        expected += media;
                    }
                    p.report = Report::Received;
                    Some(Arrived {
                        sent: p.at,
                        arrival_us: at + offset,
                        size: p.size,
                    })
                }
                _ => None,
            };
            if let Some(a) = arrived {
                newest_sent = Some(newest_sent.map_or(a.sent, |t| t.max(a.sent)));
                self.arrived.push(a);
            }
            if let (Some(id), Some(probe)) = (p.probe, self.probe.as_mut()) {
                if probe.id == id {
                    if first_report {
                        probe.reported += 1;
                    }
                    if let Some(a) = &arrived {
                        probe.on_received(a);
                    }
                }
            }
        }
        if let Some(sent) = newest_sent {
            let sample = now.saturating_duration_since(sent);
            self.rtt = Some(match self.rtt {
                None => sample,
                Some(rtt) => (rtt * 7 + sample) / 8,
            });
        }
        self.arrived.sort_by_key(|a| a.arrival_us);
        for a in &self.arrived {
            self.acked.add(a.arrival_us, a.size);
            self.detector.on_packet(a);
        }
        let probe_result = match &self.probe {
            Some(p) if now >= p.ends && p.reported >= p.tagged => self.finish_probe(now),
            _ => None,
        };
        let usage = self.detector.state;
        let acked = self.acked.bitrate();
        let rtt = self.rtt();
        match (usage, probe_result) {
            // A probe measures the path even when it overshot it (and so
            // queued): better than a cut to the acknowledged bitrate.
            (_, Some(result)) if result as f64 > self.rate.bitrate => {
                self.apply_probe_result(result, now);
            }
            // Queueing while a probe is out may be the probe's own; it is
            // judged when its feedback is in.
            (BandwidthUsage::Overuse, _) if self.probe.is_some() => {}
            (BandwidthUsage::Overuse, _) => {
                if self.rate.time_to_reduce_further(now, acked, rtt) {
                    self.rate.update(usage, acked, now, rtt);
                }
            }
            _ => self.rate.update(usage, acked, now, rtt),
        }
        self.rate.bitrate = self.clamp(self.rate.bitrate);
        let estimate = self.estimate() as f64;
        self.loss.on_feedback(
            (expected, lost, recovered),
            now,
            estimate,
            self.rate.bitrate,
            rtt,
        );
    }

    fn rtt(&self) -> Duration {
        self.rtt.unwrap_or(RTT_INITIAL)
    }

    fn apply_probe_result(&mut self, result: u64, now: Instant) {
        let result = self.clamp(result as f64);
        if result <= self.rate.bitrate {
            return;
        }
        self.rate.set(result, now);
        self.rate.link.update(result, 0.5);
        if self.loss.last_fraction < LOSS_HIGH {
            self.loss.limit = None;
        }
    }

    /// Judges the probe in flight; schedules the next one.
    fn finish_probe(&mut self, now: Instant) -> Option<u64> {
        let probe = self.probe.take()?;
        let result = probe.result();
        let success =
            result.is_some_and(|r| r as f64 >= PROBE_SUCCESS_RATIO * probe.bitrate as f64);
        self.last_probe_failed = !success;
        if success {
            self.probe_backoff = PROBE_BACKOFF_INITIAL;
            self.next_probe_at = Some(now + PROBE_INTERVAL_AFTER_SUCCESS);
        } else {
            self.next_probe_at = Some(now + self.probe_backoff);
            self.probe_backoff = (self.probe_backoff * 2).min(PROBE_BACKOFF_MAX);
        }
        tracing::trace!(
            probe = probe.id,
            bitrate = probe.bitrate,
            ?result,
            success,
            "probe cluster done"
        );
        result
    }

    /// A REMB from the receiver: the estimate, unless transport-wide
    /// feedback is coming in.
    pub(crate) fn on_remb(&mut self, bitrate: u64, now: Instant) {
        if self.twcc_active(now) {
            return;
        }
        self.rate.set(self.clamp(bitrate as f64), now);
        self.rate.state = RateState::Hold;
        self.loss.limit = None;
    }

    fn twcc_active(&self, now: Instant) -> bool {
        self.last_feedback
            .is_some_and(|t| now.saturating_duration_since(t) < TWCC_ACTIVE)
    }

    /// Whether to probe for `target` bits/s (what the allocator would use
    /// if it had it). The engine sends the cluster at once: padding at
    /// `padding_bitrate` for `duration`, each packet recorded with
    /// `is_probe` set.
    pub(crate) fn wants_probe(&mut self, now: Instant, target: u64) -> Option<ProbeCluster> {
        if self.probe.is_some() || self.next_probe_at.is_some_and(|t| now < t) {
            return None;
        }
        // REMB peers tell us nothing about what a probe did.
        if self.last_feedback.is_some() && !self.twcc_active(now) {
            return None;
        }
        if self.detector.state == BandwidthUsage::Overuse || self.loss.last_fraction > LOSS_HIGH {
            return None;
        }
        let estimate = self.estimate() as f64;
        if target as f64 <= estimate {
            return None;
        }
        let growth = if self.last_probe_failed {
            PROBE_MAX_GROWTH_AFTER_FAILURE
        } else {
            PROBE_MAX_GROWTH
        };
        let bitrate = (target as f64 * PROBE_OVERSHOOT)
            .min(estimate * growth)
            .min(self.options.max_bitrate as f64) as u64;
        let padding_bitrate = bitrate.saturating_sub(self.send_rate.bitrate(now));
        if bitrate as f64 <= estimate || padding_bitrate == 0 {
            return None;
        }
        let id = self.next_probe_id;
        self.next_probe_id = self.next_probe_id.wrapping_add(1);
        self.probe = Some(ProbeInFlight {
            id,
            bitrate,
            started: now,
            ends: now + PROBE_DURATION,
            tagged: 0,
            reported: 0,
            received: 0,
            bytes: 0,
            first_sent: None,
            last_sent: None,
            first_arrival: None,
            last_arrival_us: None,
        });
        Some(ProbeCluster {
            id,
            bitrate,
            padding_bitrate,
            duration: PROBE_DURATION,
        })
    }

    /// When [`BandwidthEstimator::handle_timeout`] has work.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let probe = self
            .probe
            .as_ref()
            .map(|p| p.ends + PROBE_SLACK + PROBE_RESULT_TIMEOUT);
        let feedback = match (self.last_feedback, self.last_sent) {
            (Some(fb), Some(sent)) if sent > fb => Some(
                self.last_timeout_decrease
                    .map_or(fb + FEEDBACK_TIMEOUT, |t| t + FEEDBACK_TIMEOUT_INTERVAL),
            ),
            _ => None,
        };
        [probe, feedback].into_iter().flatten().min()
    }

    /// Judges a probe whose feedback never came; lowers the estimate while
    /// feedback has stopped.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let probe_due = self
            .probe
            .as_ref()
            .is_some_and(|p| now >= p.ends + PROBE_SLACK + PROBE_RESULT_TIMEOUT);
        if probe_due {
            if let Some(result) = self.finish_probe(now) {
                self.apply_probe_result(result, now);
            }
        }
        let feedback_due = self.poll_timeout().is_some_and(|t| now >= t)
            && self.last_feedback.is_some_and(|fb| {
                self.last_sent.is_some_and(|s| s > fb)
                    && now.saturating_duration_since(fb) >= FEEDBACK_TIMEOUT
            });
        if feedback_due {
            self.rate.bitrate = self.clamp(self.rate.bitrate * FEEDBACK_TIMEOUT_FACTOR);
            self.rate.state = RateState::Hold;
            self.last_timeout_decrease = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::TransportCcBuilder;

    /// A feedback from (sequence, arrival µs) pairs in sequence order, in
    /// the wire format.
    fn feedback(count: u8, arrivals: &[(u16, i64)]) -> Vec<u8> {
        let mut b = TransportCcBuilder::new(1, 2, count);
        for (seq, at) in arrivals {
            b.push(*seq, *at).unwrap();
        }
        let mut buf = vec![0u8; b.encoded_len()];
        let n = b.write(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// Sends `per_100ms` packets of 1200 B every 100 ms for `seconds`,
    /// each arriving after `transit(i)` µs, with feedback every 100 ms.
    /// Returns the estimator and the final time.
    fn run(
        bwe: &mut BandwidthEstimator,
        t0: Instant,
        seq: &mut u16,
        start_ms: u64,
        seconds: u64,
        per_100ms: u64,
        transit_us: impl Fn(u64) -> Option<i64>,
    ) -> Instant {
        let mut count = 0u8;
        let mut now = t0;
        for tick in (start_ms / 100)..(start_ms / 100 + seconds * 10) {
            let mut arrivals = Vec::new();
            for k in 0..per_100ms {
                let sent_ms = tick * 100 + k * 100 / per_100ms;
                let sent = t0 + Duration::from_millis(sent_ms);
                bwe.on_packet_sent(*seq, 1200, sent, false);
                if let Some(transit) = transit_us(tick * per_100ms + k) {
                    arrivals.push((*seq, 5_000_000 + sent_ms as i64 * 1000 + transit));
                }
                *seq = seq.wrapping_add(1);
            }
            now = t0 + Duration::from_millis((tick + 1) * 100 + 40);
            if !arrivals.is_empty() {
                let fb = feedback(count, &arrivals);
                count = count.wrapping_add(1);
                bwe.on_transport_cc(&TransportCc::parse(&fb).unwrap(), now);
            }
        }
        now
    }

    #[test]
    fn estimate_starts_at_the_initial_bitrate_within_bounds() {
        let bwe = BandwidthEstimator::new(BandwidthEstimatorOptions::default());
        assert_eq!(bwe.estimate(), 600_000);
        let bwe = BandwidthEstimator::new(BandwidthEstimatorOptions {
            initial_bitrate: 10_000,
            min_bitrate: 50_000,
            max_bitrate: 1_000_000,
        });
        assert_eq!(bwe.estimate(), 50_000);
    }

    #[test]
    fn remb_sets_the_estimate_only_without_transport_cc() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(BandwidthEstimatorOptions::default());
        bwe.on_remb(1_200_000, t0);
        assert_eq!(bwe.estimate(), 1_200_000);
        bwe.on_remb(10, t0);
        assert_eq!(bwe.estimate(), 30_000, "clamped to the minimum");

        let mut seq = 0;
        let now = run(&mut bwe, t0, &mut seq, 0, 1, 5, |_| Some(20_000));
        bwe.on_remb(5_000_000, now);
        assert!(bwe.estimate() < 5_000_000, "transport-cc is authoritative");
        // Feedback stops: REMB takes over again.
        bwe.on_remb(5_000_000, now + TWCC_ACTIVE);
        assert_eq!(bwe.estimate(), 5_000_000);
    }

    #[test]
    fn growing_queue_delay_is_overuse_and_cuts_to_the_acked_bitrate() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(BandwidthEstimatorOptions {
            initial_bitrate: 2_000_000,
            ..Default::default()
        });
        let mut seq = 0;
        // 960 kbps with a steady transit: no trend, estimate holds at 2M
        // (1.5 x acked + 10k is above it).
        let now = run(&mut bwe, t0, &mut seq, 0, 3, 10, |_| Some(30_000));
        assert_eq!(bwe.usage(), BandwidthUsage::Normal);
        assert!(bwe.estimate() >= 1_450_000, "{}", bwe.estimate());
        assert!(bwe.acked_bitrate().unwrap().abs_diff(960_000) < 50_000);
        // Now each packet waits 2 ms longer than the one before: a queue
        // draining at 5/6 of the sending rate.
        let _ = now;
        let now = run(&mut bwe, t0, &mut seq, 3_000, 2, 10, |i| {
            Some(30_000 + (i as i64 - 300) * 2_000)
        });
        assert_eq!(bwe.usage(), BandwidthUsage::Overuse);
        let e = bwe.estimate();
        assert!(e < 900_000, "cut below the acked rate: {e}");
        assert!(e > 500_000, "not collapsed: {e}");
        assert!(bwe.acked_bitrate().is_some_and(|a| a < 960_000));
        assert!(bwe.poll_timeout().is_none() || bwe.poll_timeout() > Some(now));
    }

    #[test]
    fn heavy_loss_caps_the_estimate_and_low_loss_lifts_the_cap() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(BandwidthEstimatorOptions::default());
        let mut seq = 0;
        run(&mut bwe, t0, &mut seq, 0, 2, 10, |_| Some(30_000));
        let before = bwe.estimate();
        // Every fifth packet lost: 20 %.
        run(&mut bwe, t0, &mut seq, 2_000, 2, 10, |i| {
            (i % 5 != 0).then_some(30_000)
        });
        let capped = bwe.estimate();
        assert!(
            capped < before * 95 / 100,
            "loss lowers the estimate: {before} -> {capped}"
        );
        assert!(bwe.loss.limit.is_some());
        // 0.5 % loss: the cap grows until it no longer binds.
        run(&mut bwe, t0, &mut seq, 4_000, 30, 10, |i| {
            (i % 200 != 0).then_some(30_000)
        });
        assert!(bwe.loss.limit.is_none(), "{:?}", bwe.loss.limit);
        assert!(bwe.estimate() > capped);
    }

    #[test]
    fn moderate_loss_alone_does_not_lower_the_estimate() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(BandwidthEstimatorOptions::default());
        let mut seq = 0;
        run(&mut bwe, t0, &mut seq, 0, 10, 10, |i| {
            (i % 20 != 7).then_some(30_000)
        });
        assert!(bwe.loss.limit.is_none());
        assert!(bwe.estimate() >= 600_000);
    }

    #[test]
    fn a_probe_with_headroom_raises_the_estimate_and_a_failed_one_backs_off() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(BandwidthEstimatorOptions::default());
        let mut seq = 0u16;
        assert!(bwe.wants_probe(t0, 500_000).is_none(), "fits already");
        let cluster = bwe.wants_probe(t0, 1_500_000).unwrap();
        assert_eq!(cluster.bitrate, 1_650_000);
        assert_eq!(cluster.padding_bitrate, 1_650_000, "nothing else sent");
        assert!(bwe.wants_probe(t0, 1_500_000).is_none(), "one at a time");
        // Send the cluster: 1200 B every ~5.8 ms, all arriving in time.
        let gap_us = 1200 * 8 * 1_000_000 / cluster.bitrate;
        let mut arrivals = Vec::new();
        let mut sent_us = 0;
        while sent_us <= cluster.duration.as_micros() as u64 {
            bwe.on_packet_sent(seq, 1200, t0 + Duration::from_micros(sent_us), true);
            arrivals.push((seq, sent_us as i64 + 20_000));
            seq += 1;
            sent_us += gap_us;
        }
        let fb = feedback(0, &arrivals);
        let now = t0 + Duration::from_millis(350);
        bwe.on_transport_cc(&TransportCc::parse(&fb).unwrap(), now);
        let e = bwe.estimate();
        assert!(e >= 1_500_000 && e <= 1_700_000, "{e}");

        // The next probe overshoots a 2 Mbps link: the estimate does not
        // go above what the link carried, and probing backs off.
        let now = now + PROBE_INTERVAL_AFTER_SUCCESS;
        let cluster = bwe.wants_probe(now, 10_000_000).unwrap();
        assert_eq!(cluster.bitrate, 3 * e, "at most 3x the estimate");
        let gap_us = 1200 * 8 * 1_000_000 / cluster.bitrate;
        let mut arrivals = Vec::new();
        let mut sent_us = 0;
        let mut link_free = 0;
        while sent_us <= cluster.duration.as_micros() as u64 {
            let at = now + Duration::from_micros(sent_us);
            bwe.on_packet_sent(seq, 1200, at, true);
            link_free = link_free.max(sent_us) + 1200 * 8 * 1_000_000 / 2_000_000;
            arrivals.push((seq, 870_000 + link_free as i64));
            seq += 1;
            sent_us += gap_us;
        }
        let fb = feedback(1, &arrivals);
        let later = now + Duration::from_millis(600);
        bwe.on_transport_cc(&TransportCc::parse(&fb).unwrap(), later);
        assert!(bwe.estimate() <= 2_000_000, "{}", bwe.estimate());
        assert!(bwe.probe.is_none());
        assert_eq!(bwe.next_probe_at, Some(later + PROBE_BACKOFF_INITIAL));
        assert_eq!(bwe.probe_backoff, PROBE_BACKOFF_INITIAL * 2);
    }

    #[test]
    fn a_probe_through_a_saturated_link_measures_what_arrived() {
        let t0 = Instant::now();
        let mut probe = ProbeInFlight {
            id: 1,
            bitrate: 4_000_000,
            started: t0,
            ends: t0 + PROBE_DURATION,
            tagged: 0,
            reported: 0,
            received: 0,
            bytes: 0,
            first_sent: None,
            last_sent: None,
            first_arrival: None,
            last_arrival_us: None,
        };
        // 1200 B every 2.4 ms (4 Mbps) through a 2 Mbps link (4.8 ms each).
        for i in 0..50u64 {
            probe.on_received(&Arrived {
                sent: t0 + Duration::from_micros(i * 2_400),
                arrival_us: 30_000 + (i as i64 + 1) * 4_800,
                size: 1200,
            });
        }
        let result = probe.result().unwrap();
        assert!(result.abs_diff(1_900_000) < 10, "0.95 x 2 Mbps: {result}");
        probe.received = PROBE_MIN_PACKETS - 1;
        assert_eq!(probe.result(), None, "too few packets to tell");
    }

    #[test]
    fn a_probe_without_feedback_times_out() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(BandwidthEstimatorOptions::default());
        let cluster = bwe.wants_probe(t0, 1_000_000).unwrap();
        bwe.on_packet_sent(0, 1200, t0, true);
        let due = bwe.poll_timeout().unwrap();
        assert_eq!(
            due,
            t0 + cluster.duration + PROBE_SLACK + PROBE_RESULT_TIMEOUT
        );
        bwe.handle_timeout(due);
        assert!(bwe.probe.is_none());
        assert_eq!(bwe.estimate(), 600_000);
        assert!(bwe.wants_probe(due, 1_000_000).is_none(), "backing off");
    }

    const STEP: Duration = Duration::from_millis(1);

    #[test]
    fn silence_from_the_receiver_lowers_the_estimate() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(BandwidthEstimatorOptions::default());
        let mut seq = 0;
        let now = run(&mut bwe, t0, &mut seq, 0, 1, 10, |_| Some(30_000));
        let before = bwe.estimate();
        assert_eq!(bwe.poll_timeout(), None, "nothing sent since");
        bwe.on_packet_sent(seq, 1200, now + STEP, false);
        let due = bwe.poll_timeout().unwrap();
        assert_eq!(due, now + FEEDBACK_TIMEOUT);
        bwe.handle_timeout(due);
        assert!(bwe.estimate() < before);
        assert_eq!(bwe.poll_timeout(), Some(due + FEEDBACK_TIMEOUT_INTERVAL));
    }

    #[test]
    fn reference_time_wrap_keeps_arrival_times_continuous() {
        let mut bwe = BandwidthEstimator::new(BandwidthEstimatorOptions::default());
        let max = (1 << 23) - 1;
        assert_eq!(bwe.reference_offset_us(max), 0);
        // The next 64 ms tick wraps to -2^23.
        assert_eq!(bwe.reference_offset_us(-(1 << 23)), (1i64 << 24) * 64_000);
        assert_eq!(
            bwe.reference_offset_us(-(1 << 23) + 1),
            (1i64 << 24) * 64_000
        );
    }

    #[test]
    fn feedback_for_unknown_or_duplicate_packets_is_ignored() {
        let t0 = Instant::now();
        let mut bwe = BandwidthEstimator::new(BandwidthEstimatorOptions::default());
        bwe.on_packet_sent(7, 1200, t0, false);
        let fb = feedback(0, &[(5, 1_000), (7, 21_000), (9, 22_000)]);
        let fb = TransportCc::parse(&fb).unwrap();
        let now = t0 + Duration::from_millis(50);
        bwe.on_transport_cc(&fb, now);
        bwe.on_transport_cc(&fb, now);
        assert_eq!(bwe.acked.packets.len(), 1);
        assert!((600_000..610_000).contains(&bwe.estimate()));
    }
}
