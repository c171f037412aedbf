//! Sharing one transport's available outgoing bitrate (its
//! [`BandwidthEstimator`](super::bandwidth_estimator::BandwidthEstimator)
//! estimate) among its consumers: which spatial and temporal layers each
//! consumer forwards, or whether it pauses for lack of bandwidth.
//!
//! # Algorithm
//!
//! mediasoup's `Transport::DistributeAvailableOutgoingBitrate`, in rounds:
//!
//! 1. Audio, and video that cannot be thinned (one layer), are always
//!    served, first: their bitrate comes off the budget even when it does
//!    not fit, so video degrades before audio does.
//! 2. Every other consumer has a ladder of rungs, lowest first: for each
//!    spatial layer up to the preferred one, each temporal layer (up to
//!    the preferred one on the preferred spatial layer), skipping layers
//!    the producer does not send (bitrate 0). A rung costs its bitrate
//!    minus that of the rung below.
//! 3. Consumers are visited by priority, highest first. The first round
//!    gives each one rung (its lowest layer, if it fits); later rounds give
//!    each up to `priority` more rungs while the budget lasts. Rounds stop
//!    when nobody moved.
//!
//! [`allocate`] is that, from scratch. [`Allocator`] adds hysteresis, so
//! that an estimate wobbling by a few percent does not flip layers:
//!
//! - When the current choices no longer fit the estimate, they are
//!   recomputed at once (a downgrade; nobody goes up at that moment).
//! - Otherwise an upgrade is considered with the estimate divided by 1.15
//!   (it must exceed the need by 15 %), and applied only once some upgrade
//!   has been possible continuously for 1 s.
//! - A consumer seen for the first time takes what fits of what is left,
//!   at once.
//! - An upgrade undone by a downgrade within 10 s shows that the estimate
//!   which allowed it overstated the path (typically an estimate that grew
//!   while the link was not used, or the burst of a key frame at the
//!   switch): for the next 10 s (doubling with each such failure in a row,
//!   up to 60 s) upgrades to layers needing as much as the undone ones
//!   need an estimate 25 % above that one (upgrades to less are not held
//!   back: after a real drop in capacity the consumer must be able to climb
//!   back part of the way). A probe finding real headroom passes that bar
//!   (the probe target rises to it); the same estimate creeping back does
//!   not, so an unsustainable layer is retried rarely instead of flapping.
//!
//! Because a downgrade happens below the need and an upgrade needs 15 %
//! more, an estimate oscillating by ±5 % around any point crosses at most
//! one of the two thresholds.
//!
//! Compared with mediasoup: no per-consumer "virtual bitrate" bookkeeping
//! or `BweDowngradeConservativeMs` (replaced by the margin, the hold and
//! the failed-upgrade bar above), and one hysteresis state per transport
//! rather than per consumer.
//!
//! [`Allocator::probe_target`] tells what the consumers would use at their
//! preferred layers (with the margin), for the estimator to probe towards.
//!
//! # Temporal layer bitrates
//!
//! Producers measure bitrate per encoding. When per-temporal-layer rates
//! are unknown, [`estimated_layer_bitrates`] assumes the usual shares of a
//! three-layer temporal structure: T0 40 %, T0+T1 60 %, all 100 % (two
//! layers: 60 % and 100 %).

// Until the engine drives it (recording sends, feeding feedback, applying
// allocations), only the tests call it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::consumer::ConsumerLayers;
use crate::ids::ConsumerId;
use crate::rtp_parameters::MediaKind;

#[cfg(test)]
mod scenario;

/// An upgrade needs the estimate to exceed the need by this fraction.
const UPGRADE_MARGIN: f64 = 0.15;
/// ... continuously for this long.
const UPGRADE_HOLD: Duration = Duration::from_secs(1);
/// A downgrade this soon after an upgrade undoes it: the estimate that
/// allowed the upgrade overstated the path.
const REVERT_WINDOW: Duration = Duration::from_secs(10);
/// After an undone upgrade, the estimate must beat the one that allowed
/// it by this factor ...
const FAILED_UPGRADE_FACTOR: f64 = 1.25;
/// ... for this long, doubling with each undone upgrade in a row.
const FAILED_UPGRADE_BACKOFF: Duration = Duration::from_secs(10);
const FAILED_UPGRADE_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What one consumer could use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerDemand {
    pub id: ConsumerId,
    /// Audio is served before any video.
    pub kind: MediaKind,
    /// Weight among video consumers, 1..=255 (0 counts as 1): how many
    /// rungs a consumer may climb per round.
    pub priority: u8,
    /// The highest layers to forward (temporal `None`: the highest).
    pub preferred: ConsumerLayers,
    /// `bitrates[s][t]`: bits/s of spatial layer `s` with temporal layers
    /// up to `t` (see [`estimated_layer_bitrates`]). 0 or absent: the
    /// producer does not send that layer now.
    pub bitrates: Vec<Vec<u64>>,
}

/// What a consumer forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllocatedLayers {
    /// Up to these layers (audio: spatial 0, temporal `None`).
    Forward(ConsumerLayers),
    /// Not even the lowest layer fits: forward nothing until it does.
    PausedForBandwidth,
    /// The producer sends no layer this consumer may forward (or none was
    /// measured yet): nothing to decide, leave the consumer as it is.
    NoActiveLayer,
}

/// One consumer's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Allocation {
    pub id: ConsumerId,
    pub layers: AllocatedLayers,
    /// The bitrate of the chosen layers, in bits/s.
    pub bitrate: u64,
}

/// Per-layer bitrates from per-encoding ones, `temporal_layers` each
/// (1 when the codec does not say).
pub(crate) fn estimated_layer_bitrates(encodings: &[u64], temporal_layers: u8) -> Vec<Vec<u64>> {
    let n = usize::from(temporal_layers.max(1));
    let shares: Vec<f64> = match n {
        1 => vec![1.0],
        2 => vec![0.6, 1.0],
        3 => vec![0.4, 0.6, 1.0],
        // Beyond three (rare), each layer below the top one again shrinks
        // the rate as the step from three to two layers does.
        _ => (0..n)
            .map(|t| 0.4f64.powf((n - 1 - t) as f64 / 2.0))
            .collect(),
    };
    encodings
        .iter()
        .map(|&b| shares.iter().map(|s| (b as f64 * s) as u64).collect())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rung {
    spatial: u8,
    temporal: u8,
    bitrate: u64,
}

impl Rung {
    fn layers(&self) -> (u8, u8) {
        (self.spatial, self.temporal)
    }
}

/// The consumers as the greedy rounds see them.
struct Plan<'a> {
    demands: &'a [ConsumerDemand],
    /// Empty for consumers that are always served.
    ladders: Vec<Vec<Rung>>,
    /// Bitrate of those always served.
    fixed: u64,
    /// Adaptive consumers, highest priority first.
    order: Vec<usize>,
}

impl<'a> Plan<'a> {
    fn new(demands: &'a [ConsumerDemand]) -> Self {
        let mut fixed = 0u64;
        let ladders: Vec<Vec<Rung>> = demands
            .iter()
            .map(|d| {
                if is_fixed(d) {
                    fixed = fixed.saturating_add(fixed_bitrate(d));
                    Vec::new()
                } else {
                    ladder(d)
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..demands.len())
            .filter(|&i| !ladders[i].is_empty())
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(demands[i].priority.max(1)));
        Self {
            demands,
            ladders,
            fixed,
            order,
        }
    }

    fn need(&self, state: &[Option<usize>]) -> u64 {
        self.order
            .iter()
            .filter_map(|&i| state[i].map(|r| self.ladders[i][r].bitrate))
            .fold(self.fixed, u64::saturating_add)
    }

    fn top(&self, i: usize) -> Option<usize> {
        self.ladders[i].len().checked_sub(1)
    }

    /// mediasoup's rounds, from `state`, spending `budget`; nobody climbs
    /// above `limit` (`None`: stays where it is, paused or not).
    fn climb(&self, mut budget: i64, state: &mut [Option<usize>], limit: &[Option<usize>]) {
        let mut first_round = true;
        loop {
            let mut moved = false;
            for &i in &self.order {
                let steps = if first_round {
                    1
                } else {
                    self.demands[i].priority.max(1)
                };
                for _ in 0..steps {
                    let next = state[i].map_or(0, |r| r + 1);
                    if limit[i].is_none_or(|l| next > l) {
                        break;
                    }
                    let ladder = &self.ladders[i];
                    let have = state[i].map_or(0, |r| ladder[r].bitrate);
                    let cost = ladder[next].bitrate as i64 - have as i64;
                    if cost > budget {
                        break;
                    }
                    budget -= cost;
                    state[i] = Some(next);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
            first_round = false;
        }
    }

    fn allocations(&self, state: &[Option<usize>]) -> Vec<Allocation> {
        self.demands
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let (layers, bitrate) = if d.kind == MediaKind::Audio {
                    let all = ConsumerLayers {
                        spatial_layer: 0,
                        temporal_layer: None,
                    };
                    (AllocatedLayers::Forward(all), fixed_bitrate(d))
                } else if is_fixed(d) {
                    match only_layer(d) {
                        Some(r) => (AllocatedLayers::Forward(layers_of(&r)), r.bitrate),
                        None => (AllocatedLayers::NoActiveLayer, 0),
                    }
                } else {
                    match state[i].map(|r| self.ladders[i][r]) {
                        Some(r) => (AllocatedLayers::Forward(layers_of(&r)), r.bitrate),
                        None => (AllocatedLayers::PausedForBandwidth, 0),
                    }
                };
                Allocation {
                    id: d.id,
                    layers,
                    bitrate,
                }
            })
            .collect()
    }
}

fn layers_of(r: &Rung) -> ConsumerLayers {
    ConsumerLayers {
        spatial_layer: r.spatial,
        temporal_layer: Some(r.temporal),
    }
}

fn sent_layers(d: &ConsumerDemand) -> impl Iterator<Item = Rung> + '_ {
    d.bitrates.iter().enumerate().flat_map(|(s, temporals)| {
        temporals
            .iter()
            .enumerate()
            .filter(|(_, b)| **b > 0)
            .map(move |(t, b)| Rung {
                spatial: s as u8,
                temporal: t as u8,
                bitrate: *b,
            })
    })
}

/// Audio, and video the producer sends as one layer or none: nothing to
/// thin.
fn is_fixed(d: &ConsumerDemand) -> bool {
    d.kind == MediaKind::Audio || sent_layers(d).nth(1).is_none()
}

fn only_layer(d: &ConsumerDemand) -> Option<Rung> {
    sent_layers(d).next()
}

fn fixed_bitrate(d: &ConsumerDemand) -> u64 {
    sent_layers(d).map(|r| r.bitrate).max().unwrap_or(0)
}

fn ladder(d: &ConsumerDemand) -> Vec<Rung> {
    let spatial_count = d.bitrates.len();
    let Some(max_s) = spatial_count.checked_sub(1) else {
        return Vec::new();
    };
    let top_s = usize::from(d.preferred.spatial_layer).min(max_s);
    let top_t = d.preferred.temporal_layer.map_or(u8::MAX, |t| t);
    sent_layers(d)
        .filter(|r| {
            let s = usize::from(r.spatial);
            s < top_s || (s == top_s && r.temporal <= top_t)
        })
        .collect()
}

/// The allocation of `estimate` bits/s from scratch, in the order of
/// `consumers`.
#[cfg_attr(not(test), allow(dead_code))] // used by the scenario tests
pub(crate) fn allocate(estimate: u64, consumers: &[ConsumerDemand]) -> Vec<Allocation> {
    let plan = Plan::new(consumers);
    let mut state = vec![None; consumers.len()];
    let limit: Vec<Option<usize>> = (0..consumers.len()).map(|i| plan.top(i)).collect();
    plan.climb(estimate as i64 - plan.fixed as i64, &mut state, &limit);
    plan.allocations(&state)
}

/// The allocation of one transport, remembering its choices for
/// hysteresis.
#[derive(Debug, Default)]
pub(crate) struct Allocator {
    /// Layers each adaptive consumer forwards (`None`: paused for
    /// bandwidth).
    current: HashMap<ConsumerId, Option<(u8, u8)>>,
    /// Since when some upgrade has been possible.
    upgrade_since: Option<Instant>,
    /// The last upgrade: when, the estimate that allowed it and what the
    /// layers it chose need.
    last_upgrade: Option<(Instant, u64, u64)>,
    /// Upgrades undone in a row.
    failed_upgrades: u32,
    /// After an undone upgrade: until when upgrades to layers needing at
    /// least the third field need at least the second as estimate.
    upgrade_floor: Option<(Instant, u64, u64)>,
    probe_target: Option<u64>,
}

impl Allocator {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Shares `estimate` among `consumers` (all of the transport's
    /// consumers that may send now); returns their layers in that order.
    pub(crate) fn allocate(
        &mut self,
        now: Instant,
        estimate: u64,
        consumers: &[ConsumerDemand],
    ) -> Vec<Allocation> {
        let plan = Plan::new(consumers);
        let n = consumers.len();
        let mut state: Vec<Option<usize>> = vec![None; n];
        let mut known = vec![false; n];
        for &i in &plan.order {
            let Some(prev) = self.current.get(&consumers[i].id) else {
                continue;
            };
            let ladder = &plan.ladders[i];
            match prev {
                None => known[i] = true,
                Some(p) => {
                    // The same layers, or the best below them still there.
                    if let Some(r) = ladder.iter().rposition(|r| r.layers() <= *p) {
                        state[i] = Some(r);
                        known[i] = true;
                    }
                }
            }
        }
        let full: Vec<Option<usize>> = (0..n).map(|i| plan.top(i)).collect();
        let frozen: Vec<Option<usize>> = (0..n)
            .map(|i| if known[i] { state[i] } else { full[i] })
            .collect();
        let spare = estimate as i64 - plan.need(&state) as i64;
        if spare < 0 {
            // Downgrade at once, to what fits; nobody climbs now.
            let mut fresh = vec![None; n];
            plan.climb(estimate as i64 - plan.fixed as i64, &mut fresh, &frozen);
            state = fresh;
            self.upgrade_since = None;
            self.on_downgrade(now);
        } else {
            // Newcomers take what fits.
            plan.climb(spare, &mut state, &frozen);
            let mut candidate = state.clone();
            let with_margin = (estimate as f64 / (1.0 + UPGRADE_MARGIN)) as i64;
            plan.climb(
                with_margin - plan.need(&state) as i64,
                &mut candidate,
                &full,
            );
            // The floor keeps the estimate that overstated the path from
            // retrying what it failed to carry, not from anything less:
            // after a real drop in capacity, climbing back to layers well
            // below the failed ones (or out of a pause) must not wait for
            // it to expire.
            let floor_holds = self.upgrade_floor.is_some_and(|(until, min, failed)| {
                now < until && estimate < min && plan.need(&candidate) >= failed
            });
            if candidate == state || floor_holds {
                self.upgrade_since = None;
            } else {
                let since = *self.upgrade_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= UPGRADE_HOLD {
                    state = candidate;
                    self.upgrade_since = None;
                    self.on_upgrade(now, estimate, plan.need(&state));
                }
            }
        }
        self.current = plan
            .order
            .iter()
            .map(|&i| {
                let layers = state[i].map(|r| plan.ladders[i][r].layers());
                (consumers[i].id, layers)
            })
            .collect();
        let below_top = plan.order.iter().any(|&i| state[i] != plan.top(i));
        self.probe_target = below_top.then(|| {
            let desired = plan.need(&full);
            let target = (desired as f64 * (1.0 + UPGRADE_MARGIN)) as u64;
            // A floor on that upgrade is only passed by an estimate above
            // it, which a probe for less can never find.
            match self.upgrade_floor {
                Some((until, min, failed)) if now < until && desired >= failed => target.max(min),
                _ => target,
            }
        });
        plan.allocations(&state)
    }

    fn on_upgrade(&mut self, now: Instant, estimate: u64, need: u64) {
        if self
            .last_upgrade
            .is_some_and(|(at, _, _)| now.saturating_duration_since(at) >= REVERT_WINDOW)
        {
            // The previous upgrade stuck.
            self.failed_upgrades = 0;
        }
        self.last_upgrade = Some((now, estimate, need));
    }

    fn on_downgrade(&mut self, now: Instant) {
        let Some((at, estimate, need)) = self.last_upgrade.take() else {
            return;
        };
        if now.saturating_duration_since(at) >= REVERT_WINDOW {
            self.failed_upgrades = 0;
            return;
        }
        let backoff = FAILED_UPGRADE_BACKOFF
            .saturating_mul(1 << self.failed_upgrades.min(8))
            .min(FAILED_UPGRADE_BACKOFF_MAX);
        self.failed_upgrades += 1;
        let min = (estimate as f64 * FAILED_UPGRADE_FACTOR) as u64;
        self.upgrade_floor = Some((now + backoff, min, need));
    }

    /// The bitrate that would let every consumer forward its preferred
    /// layers (with the upgrade margin), while some does not: what to
    /// probe for.
    pub(crate) fn probe_target(&self) -> Option<u64> {
        self.probe_target
    }

    /// When a pending upgrade is due: call [`Allocator::allocate`] then.
    #[cfg_attr(not(test), allow(dead_code))] // used by the scenario tests
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.upgrade_since.map(|t| t + UPGRADE_HOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMULCAST: [u64; 3] = [150_000, 500_000, 1_500_000];
    const STEP: Duration = Duration::from_millis(100);

    fn video(priority: u8) -> ConsumerDemand {
        ConsumerDemand {
            id: ConsumerId::new(),
            kind: MediaKind::Video,
            priority,
            preferred: ConsumerLayers {
                spatial_layer: 2,
                temporal_layer: None,
            },
            bitrates: estimated_layer_bitrates(&SIMULCAST, 3),
        }
    }

    fn audio() -> ConsumerDemand {
        ConsumerDemand {
            id: ConsumerId::new(),
            kind: MediaKind::Audio,
            priority: 1,
            preferred: ConsumerLayers {
                spatial_layer: 0,
                temporal_layer: None,
            },
            bitrates: vec![vec![40_000]],
        }
    }

    fn forwarded(a: &Allocation) -> Option<(u8, u8)> {
        match a.layers {
            AllocatedLayers::Forward(l) => Some((l.spatial_layer, l.temporal_layer.unwrap_or(9))),
            _ => None,
        }
    }

    #[test]
    fn temporal_shares_are_estimated_from_encoding_bitrates() {
        assert_eq!(
            estimated_layer_bitrates(&[100_000, 1_000_000], 3),
            vec![
                vec![40_000, 60_000, 100_000],
                vec![400_000, 600_000, 1_000_000]
            ]
        );
        assert_eq!(
            estimated_layer_bitrates(&[100_000], 2),
            vec![vec![60_000, 100_000]]
        );
        assert_eq!(estimated_layer_bitrates(&[100_000], 0), vec![vec![100_000]]);
        let four = &estimated_layer_bitrates(&[100_000], 4)[0];
        assert_eq!(four.len(), 4);
        assert!(four.windows(2).all(|w| w[0] < w[1]) && four[3] == 100_000);
    }

    #[test]
    fn audio_is_served_before_video() {
        let consumers = [video(255), audio()];
        let a = allocate(90_000, &consumers);
        assert_eq!(a[0].layers, AllocatedLayers::PausedForBandwidth);
        assert_eq!(forwarded(&a[1]), Some((0, 9)));
        assert_eq!(a[1].bitrate, 40_000);
        // Audio is served even when it does not fit.
        let a = allocate(10_000, &consumers);
        assert!(matches!(a[1].layers, AllocatedLayers::Forward(_)));
        // The video's lowest layer once it fits next to the audio.
        let a = allocate(100_000 + 40_000, &consumers);
        assert_eq!(forwarded(&a[0]), Some((0, 1)));
    }

    #[test]
    fn everyone_gets_a_lowest_layer_before_anyone_upgrades() {
        let consumers = [video(10), video(1), video(1)];
        let a = allocate(3 * 60_000, &consumers);
        assert!(a.iter().all(|a| forwarded(a) == Some((0, 0))), "{a:?}");
        let a = allocate(2 * 60_000, &consumers);
        assert_eq!(forwarded(&a[0]), Some((0, 0)));
        assert_eq!(forwarded(&a[1]), Some((0, 0)));
        assert_eq!(a[2].layers, AllocatedLayers::PausedForBandwidth);
    }

    #[test]
    fn higher_priority_climbs_more_rungs_per_round() {
        let consumers = [video(1), video(3)];
        let a = allocate(1_000_000, &consumers);
        let low = forwarded(&a[0]).unwrap();
        let high = forwarded(&a[1]).unwrap();
        assert!(high > low, "{high:?} vs {low:?}");
        assert!(a.iter().map(|a| a.bitrate).sum::<u64>() <= 1_000_000);
        // Enough for both at the top.
        let a = allocate(3_000_000, &consumers);
        assert!(a.iter().all(|a| forwarded(a) == Some((2, 2))));
    }

    #[test]
    fn preferred_layers_and_inactive_encodings_bound_the_ladder() {
        let mut c = video(1);
        c.preferred = ConsumerLayers {
            spatial_layer: 1,
            temporal_layer: Some(1),
        };
        let a = allocate(10_000_000, std::slice::from_ref(&c));
        assert_eq!(forwarded(&a[0]), Some((1, 1)));
        assert_eq!(a[0].bitrate, 300_000);
        // The top encoding stopped: the best below it.
        let mut c = video(1);
        c.bitrates[2] = vec![0, 0, 0];
        let a = allocate(10_000_000, std::slice::from_ref(&c));
        assert_eq!(forwarded(&a[0]), Some((1, 2)));
        // Nothing sent at all.
        c.bitrates = vec![vec![0], vec![0]];
        let a = allocate(10_000_000, std::slice::from_ref(&c));
        assert_eq!(a[0].layers, AllocatedLayers::NoActiveLayer);
        // A single-layer stream is served as it is.
        c.bitrates = vec![vec![800_000]];
        let a = allocate(100_000, std::slice::from_ref(&c));
        assert_eq!(forwarded(&a[0]), Some((0, 0)));
    }

    #[test]
    fn downgrades_are_immediate_and_upgrades_wait_for_margin_and_time() {
        let t0 = Instant::now();
        let mut alloc = Allocator::new();
        let consumers = [video(1)];
        let a = alloc.allocate(t0, 2_000_000, &consumers);
        assert_eq!(forwarded(&a[0]), Some((2, 2)), "a newcomer takes what fits");
        assert_eq!(alloc.probe_target(), None);
        let a = alloc.allocate(t0, 1_400_000, &consumers);
        assert_eq!(forwarded(&a[0]), Some((2, 1)), "down at once");
        assert!(alloc.probe_target().unwrap().abs_diff(1_725_000) <= 1);
        // Enough for the top layer, but not by 15 %.
        let a = alloc.allocate(t0 + Duration::from_secs(5), 1_700_000, &consumers);
        assert_eq!(forwarded(&a[0]), Some((2, 1)));
        assert_eq!(alloc.poll_timeout(), None);
        let t1 = t0 + Duration::from_secs(6);
        let a = alloc.allocate(t1, 1_800_000, &consumers);
        assert_eq!(forwarded(&a[0]), Some((2, 1)), "not yet");
        assert_eq!(alloc.poll_timeout(), Some(t1 + UPGRADE_HOLD));
        let a = alloc.allocate(t1 + UPGRADE_HOLD, 1_800_000, &consumers);
        assert_eq!(forwarded(&a[0]), Some((2, 2)));
        assert_eq!(alloc.poll_timeout(), None);
    }

    #[test]
    fn an_undone_upgrade_holds_back_only_upgrades_as_demanding() {
        let t0 = Instant::now();
        let mut alloc = Allocator::new();
        let consumers = [video(1)];
        alloc.allocate(t0, 1_000_000, &consumers);
        // Up to the top layer on 2 Mbps, then the capacity collapses.
        let t1 = t0 + Duration::from_secs(1);
        alloc.allocate(t1, 2_000_000, &consumers);
        let a = alloc.allocate(t1 + UPGRADE_HOLD, 2_000_000, &consumers);
        assert_eq!(forwarded(&a[0]), Some((2, 2)));
        let t2 = t1 + Duration::from_secs(3);
        let a = alloc.allocate(t2, 50_000, &consumers);
        assert_eq!(a[0].layers, AllocatedLayers::PausedForBandwidth);
        // Out of the pause to what fits after the usual hold, though the
        // upgrade that was undone is held back ...
        alloc.allocate(t2 + STEP, 400_000, &consumers);
        let a = alloc.allocate(t2 + STEP + UPGRADE_HOLD, 400_000, &consumers);
        assert_eq!(forwarded(&a[0]), Some((1, 1)));
        // ... and the probe target rises to the bar it has to pass.
        assert_eq!(alloc.probe_target(), Some(2_500_000));
        let t3 = t2 + Duration::from_secs(4);
        alloc.allocate(t3, 2_000_000, &consumers);
        let a = alloc.allocate(t3 + UPGRADE_HOLD, 2_000_000, &consumers);
        assert!(forwarded(&a[0]).unwrap() < (2, 2), "{a:?}");
        // A probe finding more than the bar lets it through.
        alloc.allocate(t3 + UPGRADE_HOLD + STEP, 2_600_000, &consumers);
        let a = alloc.allocate(t3 + UPGRADE_HOLD * 2 + STEP, 2_600_000, &consumers);
        assert_eq!(forwarded(&a[0]), Some((2, 2)));
    }

    #[test]
    fn departed_consumers_free_their_share() {
        let t0 = Instant::now();
        let mut alloc = Allocator::new();
        let both = [video(1), video(1)];
        let a = alloc.allocate(t0, 2_000_000, &both);
        assert!(a.iter().all(|a| forwarded(a).unwrap() < (2, 2)));
        let one = [both[0].clone()];
        let t1 = t0 + Duration::from_millis(100);
        alloc.allocate(t1, 2_000_000, &one);
        let a = alloc.allocate(t1 + UPGRADE_HOLD, 2_000_000, &one);
        assert_eq!(forwarded(&a[0]), Some((2, 2)));
        assert_eq!(alloc.current.len(), 1);
    }

    /// Counts layer changes per 10 s window while the estimate goes
    /// `around` ± 5 %, switching every `half_period`.
    fn max_flips_per_10s(around: f64, half_period: Duration) -> usize {
        let t0 = Instant::now();
        let mut alloc = Allocator::new();
        let consumers = [audio(), video(1)];
        let mut changes: Vec<Duration> = Vec::new();
        let mut last = None;
        let step = Duration::from_millis(100);
        for k in 0..600u32 {
            let at = step * k;
            let high = (at.as_millis() / half_period.as_millis()) % 2 == 0;
            let estimate = (around * if high { 1.05 } else { 0.95 }) as u64;
            let a = alloc.allocate(t0 + at, estimate, &consumers);
            let layers = forwarded(&a[1]);
            if last.is_some() && layers != last {
                changes.push(at);
            }
            last = layers;
        }
        changes
            .iter()
            .map(|&from| {
                changes
                    .iter()
                    .filter(|&&c| c >= from && c < from + Duration::from_secs(10))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn an_estimate_wobbling_5_percent_flips_layers_at_most_once_per_10s() {
        // Around every rung's need, and around need x 1.05 and x 1.15
        // (the upgrade threshold): fast and slow wobbles.
        let needs = [60_000u64, 150_000, 300_000, 500_000, 600_000, 1_500_000];
        for need in needs {
            for factor in [1.0, 1.05, 1.1, 1.15, 1.2] {
                for half in [100, 700, 3_000] {
                    let around = (need + 40_000) as f64 * factor;
                    let flips = max_flips_per_10s(around, Duration::from_millis(half));
                    assert!(
                        flips <= 1,
                        "{flips} flips around {around} switching every {half} ms"
                    );
                }
            }
        }
    }
}
