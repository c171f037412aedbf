//! Deterministic end-to-end scenarios for the bandwidth estimator and the
//! allocator, in simulated time: a sender forwarding one simulcast video
//! (150 kbps, 500 kbps, 1.5 Mbps at 30 fps, three temporal layers) and an
//! audio track to one receiver through a bottleneck link; the receiver
//! answers with transport-wide feedback every 100 ms, in the wire format.
//!
//! The sender stands for the engine: it records each send with the
//! estimator, re-runs the allocation on every feedback and when the
//! allocator's timer is due, forwards the allocated layers (a spatial
//! switch takes effect after a key frame delay and starts with a key frame
//! twice the usual size) and sends probe padding when the estimator asks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;
use crate::router::bandwidth_estimator::{BandwidthEstimator, BandwidthEstimatorOptions};
use crate::rtcp::{TransportCc, TransportCcBuilder};

const ENCODINGS: [u64; 3] = [150_000, 500_000, 1_500_000];
const FRAME_INTERVAL: Duration = Duration::from_micros(33_333);
/// L1T3 frame pattern: which temporal layer each frame belongs to.
const TEMPORAL_PATTERN: [u8; 4] = [0, 2, 1, 2];
const MAX_PACKET: u64 = 1200;
const AUDIO_PACKET: usize = 80;
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
const AUDIO_BITRATE: u64 = 32_000;
const PADDING_PACKET: usize = 1200;
const FEEDBACK_INTERVAL: Duration = Duration::from_millis(100);
const PROPAGATION: Duration = Duration::from_millis(25);
const MAX_QUEUE_DELAY: Duration = Duration::from_millis(300);
/// PLI to the producer, its key frame back.
const KEY_FRAME_DELAY: Duration = Duration::from_millis(100);
const STEP: Duration = Duration::from_millis(1);

/// Knuth's MMIX linear congruential generator: seeded, reproducible loss.
struct Lcg(u64);

impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A FIFO bottleneck: serialisation at the capacity of the moment, tail
/// drop beyond a queueing delay, propagation delay, random loss.
struct Link {
    capacity: Box<dyn Fn(Duration) -> u64>,
    loss: f64,
    rng: Lcg,
    free_at: Instant,
    in_flight: VecDeque<(Instant, u16)>,
}

impl Link {
    fn send(&mut self, t0: Instant, now: Instant, seq: u16, size: usize) {
        if self.loss > 0.0 && self.rng.next_f64() < self.loss {
            return;
        }
        let start = self.free_at.max(now);
        if start - now > MAX_QUEUE_DELAY {
            return;
        }
        let capacity = (self.capacity)(start - t0).max(1);
        let serialisation = Duration::from_nanos(size as u64 * 8 * 1_000_000_000 / capacity);
        self.free_at = start + serialisation;
        self.in_flight.push_back((self.free_at + PROPAGATION, seq));
    }
}

/// Layer the sender forwards; a spatial switch waits for a key frame.
struct Sender {
    seq: u16,
    forwarding: Option<(u8, u8)>,
    switching_to: Option<(Option<(u8, u8)>, Instant)>,
    key_frame: bool,
    frame: usize,
    next_frame: Instant,
    next_audio: Instant,
    probe_until: Option<Instant>,
    padding_interval: Duration,
    next_padding: Instant,
}

impl Sender {
    fn set_target(&mut self, now: Instant, target: Option<(u8, u8)>) {
        match (self.forwarding, target) {
            (Some(cur), Some(t)) if cur.0 == t.0 => {
                self.forwarding = target;
                self.switching_to = None;
            }
            (_, None) => {
                self.forwarding = None;
                self.switching_to = None;
            }
            _ => {
                if self.switching_to.is_none_or(|(to, _)| to != target) {
                    self.switching_to = Some((target, now + KEY_FRAME_DELAY));
                }
            }
        }
    }

    /// Packets due at `now`: (size, is_probe).
    fn due(&mut self, now: Instant, out: &mut Vec<(usize, bool)>) {
        if let Some((to, at)) = self.switching_to {
            if now >= at {
                self.forwarding = to;
                self.switching_to = None;
                self.key_frame = true;
            }
        }
        while now >= self.next_audio {
            out.push((AUDIO_PACKET, false));
            self.next_audio += AUDIO_INTERVAL;
        }
        while now >= self.next_frame {
            let tid = TEMPORAL_PATTERN[self.frame % TEMPORAL_PATTERN.len()];
            self.frame += 1;
            self.next_frame += FRAME_INTERVAL;
            let Some((s, t)) = self.forwarding else {
                continue;
            };
            if tid > t {
                continue;
            }
            // Shares per frame such that T0, T0+T1 and all carry 40, 60
            // and 100 % of the encoding's bitrate.
            let rate = ENCODINGS[usize::from(s)] as f64;
            let bits = match tid {
                0 => rate * 0.4 / 7.5,
                1 => rate * 0.2 / 7.5,
                _ => rate * 0.4 / 15.0,
            };
            let mut bytes = (bits / 8.0) as u64;
            if std::mem::take(&mut self.key_frame) {
                bytes *= 2;
            }
            let packets = bytes.div_ceil(MAX_PACKET).max(1);
            for _ in 0..packets {
                out.push(((bytes / packets) as usize + 40, false));
            }
        }
        if let Some(until) = self.probe_until {
            while now >= self.next_padding && self.next_padding <= until {
                out.push((PADDING_PACKET, true));
                self.next_padding += self.padding_interval;
            }
            if now > until {
                self.probe_until = None;
            }
        }
    }
}

/// Arrival times, reported every 100 ms.
struct Receiver {
    arrivals: Vec<(u16, i64)>,
    next_feedback: Instant,
    count: u8,
}

impl Receiver {
    fn feedback(&mut self, now: Instant) -> Option<Vec<u8>> {
        if now < self.next_feedback {
            return None;
        }
        self.next_feedback += FEEDBACK_INTERVAL;
        if self.arrivals.is_empty() {
            return None;
        }
        let mut b = TransportCcBuilder::new(1, 2, self.count);
        self.count = self.count.wrapping_add(1);
        for (seq, at) in self.arrivals.drain(..) {
            b.push(seq, at)
                .expect("a FIFO link delivers in sequence order");
        }
        let mut buf = vec![0u8; b.encoded_len()];
        let n = b.write(&mut buf).expect("the buffer is encoded_len long");
        buf.truncate(n);
        Some(buf)
    }
}

pub(super) struct Scenario {
    t0: Instant,
    now: Instant,
    bwe: BandwidthEstimator,
    allocator: Allocator,
    consumers: [ConsumerDemand; 2],
    link: Link,
    sender: Sender,
    receiver: Receiver,
    feedback_in_flight: VecDeque<(Instant, Vec<u8>)>,
    /// The video's allocated layers: the first, then each change.
    switches: Vec<(Duration, Option<(u8, u8)>)>,
    probes: usize,
    scratch: Vec<(usize, bool)>,
}

impl Scenario {
    fn new(capacity: impl Fn(Duration) -> u64 + 'static, loss: f64, seed: u64) -> Self {
        let t0 = Instant::now();
        let audio = ConsumerDemand {
            id: ConsumerId::new(),
            kind: MediaKind::Audio,
            priority: 1,
            preferred: ConsumerLayers {
                spatial_layer: 0,
                temporal_layer: None,
            },
            bitrates: vec![vec![AUDIO_BITRATE]],
        };
        let video = ConsumerDemand {
            id: ConsumerId::new(),
            kind: MediaKind::Video,
            priority: 1,
            preferred: ConsumerLayers {
                spatial_layer: 2,
                temporal_layer: None,
            },
            bitrates: estimated_layer_bitrates(&ENCODINGS, 3),
        };
        Self {
            t0,
            now: t0,
            bwe: BandwidthEstimator::new(BandwidthEstimatorOptions::default()),
            allocator: Allocator::new(),
            consumers: [audio, video],
            link: Link {
                capacity: Box::new(capacity),
                loss,
                rng: Lcg(seed),
                free_at: t0,
                in_flight: VecDeque::new(),
            },
            sender: Sender {
                seq: 0,
                forwarding: None,
                switching_to: None,
                key_frame: false,
                frame: 0,
                next_frame: t0,
                next_audio: t0,
                probe_until: None,
                padding_interval: Duration::ZERO,
                next_padding: t0,
            },
            receiver: Receiver {
                arrivals: Vec::new(),
                next_feedback: t0 + FEEDBACK_INTERVAL,
                count: 0,
            },
            feedback_in_flight: VecDeque::new(),
            switches: Vec::new(),
            probes: 0,
            scratch: Vec::new(),
        }
    }

    fn run_until(&mut self, until: Duration) {
        while self.now - self.t0 < until {
            self.step();
            self.now += STEP;
        }
    }

    fn step(&mut self) {
        let now = self.now;
        let mut reallocate = self.switches.is_empty();
        while self.feedback_in_flight.front().is_some_and(|f| f.0 <= now) {
            let (_, bytes) = self.feedback_in_flight.pop_front().expect("checked");
            let fb = TransportCc::parse(&bytes).expect("the builder writes valid feedback");
            self.bwe.on_transport_cc(&fb, now);
            reallocate = true;
        }
        if self.bwe.poll_timeout().is_some_and(|t| now >= t) {
            self.bwe.handle_timeout(now);
            reallocate = true;
        }
        if reallocate || self.allocator.poll_timeout().is_some_and(|t| now >= t) {
            let allocations = self
                .allocator
                .allocate(now, self.bwe.estimate(), &self.consumers);
            let video = match allocations[1].layers {
                AllocatedLayers::Forward(l) => {
                    Some((l.spatial_layer, l.temporal_layer.expect("video layers")))
                }
                _ => None,
            };
            if self.switches.last().is_none_or(|(_, l)| *l != video) {
                self.switches.push((now - self.t0, video));
                self.sender.set_target(now, video);
            }
        }
        if let Some(target) = self.allocator.probe_target() {
            if let Some(cluster) = self.bwe.wants_probe(now, target) {
                self.probes += 1;
                self.sender.probe_until = Some(now + cluster.duration);
                self.sender.padding_interval = Duration::from_nanos(
                    PADDING_PACKET as u64 * 8 * 1_000_000_000 / cluster.padding_bitrate,
                );
                self.sender.next_padding = now;
            }
        }
        let mut packets = std::mem::take(&mut self.scratch);
        packets.clear();
        self.sender.due(now, &mut packets);
        for &(size, is_probe) in &packets {
            let seq = self.sender.seq;
            self.sender.seq = seq.wrapping_add(1);
            self.bwe.on_packet_sent(seq, size, now, is_probe);
            self.link.send(self.t0, now, seq, size);
        }
        self.scratch = packets;
        while self.link.in_flight.front().is_some_and(|p| p.0 <= now) {
            let (at, seq) = self.link.in_flight.pop_front().expect("checked");
            // The receiver's clock has its own origin.
            let arrival_us = 7_000_000_000 + (at - self.t0).as_micros() as i64;
            self.receiver.arrivals.push((seq, arrival_us));
        }
        if let Some(fb) = self.receiver.feedback(now) {
            self.feedback_in_flight.push_back((now + PROPAGATION, fb));
        }
    }

    fn video_at(&self, t: Duration) -> Option<(u8, u8)> {
        self.switches
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .and_then(|(_, l)| *l)
    }

    fn switches_between(&self, from: Duration, to: Duration) -> Vec<(Duration, Option<(u8, u8)>)> {
        self.switches
            .iter()
            .filter(|(at, _)| *at > from && *at <= to)
            .copied()
            .collect()
    }

    fn log(&self) -> String {
        self.switches
            .iter()
            .map(|(t, l)| format!("{:.2}s {:?}", t.as_secs_f64(), l))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Audio plus the video's layers, in bits/s.
fn need(layers: Option<(u8, u8)>) -> u64 {
    let table = estimated_layer_bitrates(&ENCODINGS, 3);
    AUDIO_BITRATE + layers.map_or(0, |(s, t)| table[usize::from(s)][usize::from(t)])
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

const TOP: Option<(u8, u8)> = Some((2, 2));

#[test]
fn capacity_dropping_to_300k_switches_down_within_2s_and_recovery_climbs_back_within_10s() {
    let mut s = Scenario::new(
        |t| {
            if t >= secs(20.0) && t < secs(40.0) {
                300_000
            } else {
                3_000_000
            }
        },
        0.0,
        1,
    );
    s.run_until(secs(20.0));
    assert_eq!(s.video_at(secs(20.0)), TOP, "{}", s.log());

    s.run_until(secs(40.0));
    let fits = s
        .switches_between(secs(20.0), secs(40.0))
        .into_iter()
        .find(|(_, l)| need(*l) <= 300_000)
        .unwrap_or_else(|| panic!("never fit 300 kbps: {}", s.log()));
    assert!(fits.0 <= secs(22.0), "{}", s.log());
    assert!(fits.1.is_some(), "still forwarding video: {}", s.log());
    for (at, l) in s.switches_between(fits.0, secs(40.0)) {
        assert!(
            need(l) <= 300_000,
            "{l:?} at {at:?} does not fit: {}",
            s.log()
        );
    }
    // No oscillation: an upgrade the link cannot sustain is retried at
    // most once per 10 s.
    let upgrades: Vec<Duration> = s
        .switches
        .windows(2)
        .filter(|w| w[0].0 > secs(20.0) && w[1].0 < secs(40.0) && need(w[1].1) > need(w[0].1))
        .map(|w| w[1].0)
        .collect();
    assert!(
        upgrades.windows(2).all(|w| w[1] - w[0] >= secs(10.0)),
        "{}",
        s.log()
    );

    s.run_until(secs(55.0));
    let top = s
        .switches_between(secs(40.0), secs(55.0))
        .into_iter()
        .find(|(_, l)| *l == TOP)
        .unwrap_or_else(|| panic!("never climbed back: {}", s.log()));
    assert!(top.0 <= secs(50.0), "{}", s.log());
    assert_eq!(s.video_at(secs(55.0)), TOP, "{}", s.log());
}

#[test]
fn random_loss_of_2_percent_alone_does_not_cause_a_downswitch_storm() {
    for seed in [1, 2, 3] {
        let mut s = Scenario::new(|_| 3_000_000, 0.02, seed);
        s.run_until(secs(10.0));
        assert_eq!(s.video_at(secs(10.0)), TOP, "seed {seed}: {}", s.log());
        s.run_until(secs(40.0));
        let switches = s.switches_between(secs(10.0), secs(40.0));
        assert!(switches.len() <= 1, "seed {seed}: {}", s.log());
    }
}

#[test]
fn capacity_wobbling_5_percent_flips_layers_at_most_once_per_10s() {
    for around in [1_700_000.0, 1_900_000.0, 2_100_000.0] {
        for half_period in [0.5, 3.0] {
            let mut s = Scenario::new(
                move |t| {
                    let high = (t.as_secs_f64() / half_period) as u64 % 2 == 0;
                    (around * if high { 1.05 } else { 0.95 }) as u64
                },
                0.0,
                5,
            );
            s.run_until(secs(70.0));
            let late = s.switches_between(secs(10.0), secs(70.0));
            for (from, _) in &late {
                let in_window = late
                    .iter()
                    .filter(|(t, _)| *t >= *from && *t < *from + secs(10.0))
                    .count();
                assert!(
                    in_window <= 1,
                    "{around} bps ± 5 % every {half_period} s: {}",
                    s.log()
                );
            }
        }
    }
}

#[test]
fn scenario_probes_only_while_below_the_preferred_layers() {
    let mut s = Scenario::new(|_| 5_000_000, 0.0, 1);
    s.run_until(secs(30.0));
    assert_eq!(s.video_at(secs(5.0)), TOP, "{}", s.log());
    assert!(s.probes >= 1 && s.probes <= 3, "{} probes", s.probes);
    assert_eq!(s.allocator.probe_target(), None);
}
