//! Loss detection on an incoming stream and the NACK requests for it
//! (mediasoup's NackGenerator), sans-IO: time is passed in, the caller asks
//! for due requests and for when to ask next.

use std::time::{Duration, Instant};

use super::seq::{seq_diff, seq_is_newer};

/// Tunables of a [`NackGenerator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NackGeneratorOptions {
    /// Most missing packets tracked at once; beyond it the oldest are
    /// abandoned and a keyframe is needed. Default 1000.
    pub max_missing: usize,
    /// A gap of more sequence numbers than this is a stream restart, not
    /// loss: nothing is requested and a keyframe is needed. Default 10000.
    pub max_gap: u16,
    /// NACKs sent for one packet before giving up. Default 10.
    pub max_retries: u8,
    /// A packet missing for longer than this is abandoned. Default 1 s.
    pub max_age: Duration,
    /// Wait before the first request, to let reordered packets arrive.
    /// Default 0 (request at the next poll).
    pub first_delay: Duration,
    /// Minimum wait between requests for one packet; the RTT is used when
    /// larger. Default 20 ms.
    pub min_retry_interval: Duration,
}

impl Default for NackGeneratorOptions {
    fn default() -> Self {
        NackGeneratorOptions {
            max_missing: 1000,
            max_gap: 10_000,
            max_retries: 10,
            max_age: Duration::from_secs(1),
            first_delay: Duration::ZERO,
            min_retry_interval: Duration::from_millis(20),
        }
    }
}

/// What one received packet meant for loss tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackOutcome {
    /// Newer than all before; `newly_missing` packets were skipped.
    InOrder { newly_missing: u16 },
    /// A packet we were missing arrived, after `retries` requests (0: it was
    /// merely reordered).
    Recovered { retries: u8 },
    /// An old packet we were not missing (duplicate or abandoned).
    Late,
    /// Loss could not be repaired by NACK (gap too large or too many
    /// missing): the caller should request a keyframe.
    KeyframeRequired,
}

/// Counters since creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackStats {
    pub requested: u64,
    pub recovered: u64,
    pub abandoned: u64,
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    seq: u16,
    since: Instant,
    sent_at: Option<Instant>,
    retries: u8,
}

/// Tracks missing sequence numbers of one incoming stream.
#[derive(Debug, Clone)]
pub struct NackGenerator {
    options: NackGeneratorOptions,
    last_seq: Option<u16>,
    /// Oldest first; preallocated to `max_missing`.
    missing: Vec<Missing>,
    rtt: Duration,
    stats: NackStats,
}

impl NackGenerator {
    pub fn new(options: NackGeneratorOptions) -> Self {
        NackGenerator {
            missing: Vec::with_capacity(options.max_missing),
            options,
            last_seq: None,
            rtt: Duration::ZERO,
            stats: NackStats::default(),
        }
    }

    /// Retries for one packet are spaced by at least the RTT.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    pub fn stats(&self) -> NackStats {
        self.stats
    }

    /// Sequence numbers currently missing, oldest first.
    pub fn missing(&self) -> impl Iterator<Item = u16> + '_ {
        self.missing.iter().map(|m| m.seq)
    }

    /// Forgets everything, e.g. after a keyframe made old losses moot.
    pub fn reset(&mut self) {
        self.last_seq = None;
        self.missing.clear();
    }

    fn retry_interval(&self) -> Duration {
        self.rtt.max(self.options.min_retry_interval)
    }

    /// Feeds a received packet's sequence number (RTX-recovered ones too).
    pub fn on_packet(&mut self, seq: u16, now: Instant) -> NackOutcome {
        let Some(last) = self.last_seq else {
            self.last_seq = Some(seq);
            return NackOutcome::InOrder { newly_missing: 0 };
        };
        if !seq_is_newer(seq, last) {
            if let Some(pos) = self.missing.iter().position(|m| m.seq == seq) {
                let retries = self.missing.remove(pos).retries;
                self.stats.recovered += 1;
                return NackOutcome::Recovered { retries };
            }
            return NackOutcome::Late;
        }
        self.last_seq = Some(seq);
        // Positive: `seq` is newer than `last`.
        let gap = (seq_diff(seq, last) - 1) as u16;
        if gap > self.options.max_gap {
            self.stats.abandoned += self.missing.len() as u64;
            self.missing.clear();
            return NackOutcome::KeyframeRequired;
        }
        let mut overflowed = false;
        for i in 1..=gap {
            if self.missing.len() == self.options.max_missing {
                if self.missing.is_empty() {
                    overflowed = true;
                    break;
                }
                self.missing.remove(0);
                self.stats.abandoned += 1;
                overflowed = true;
            }
            self.missing.push(Missing {
                seq: last.wrapping_add(i),
                since: now,
                sent_at: None,
                retries: 0,
            });
        }
        if overflowed {
            NackOutcome::KeyframeRequired
        } else {
            NackOutcome::InOrder { newly_missing: gap }
        }
    }

    /// Appends the sequence numbers due for a (re)request to `out`, oldest
    /// first, and abandons packets out of retries or too old. Returns how
    /// many were abandoned by this call.
    pub fn poll_nacks(&mut self, now: Instant, out: &mut Vec<u16>) -> usize {
        let interval = self.retry_interval();
        let o = self.options;
        let last = self.last_seq;
        let before = self.missing.len();
        self.missing.retain(|m| {
            let too_old = now.saturating_duration_since(m.since) > o.max_age
                || last.is_some_and(|l| seq_diff(l, m.seq) > i32::from(o.max_gap));
            let exhausted =
                m.retries >= o.max_retries && m.sent_at.is_none_or(|t| now >= t + interval);
            !(too_old || exhausted)
        });
        let abandoned = before - self.missing.len();
        self.stats.abandoned += abandoned as u64;
        for m in &mut self.missing {
            if m.retries >= o.max_retries {
                continue;
            }
            let due = match m.sent_at {
                None => m.since + o.first_delay,
                Some(t) => t + interval,
            };
            if now >= due {
                out.push(m.seq);
                m.sent_at = Some(now);
                m.retries += 1;
                self.stats.requested += 1;
            }
        }
        abandoned
    }

    /// When [`NackGenerator::poll_nacks`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let interval = self.retry_interval();
        self.missing
            .iter()
            .map(|m| {
                let next = match m.sent_at {
                    None => m.since + self.options.first_delay,
                    Some(t) => t + interval,
                };
                next.min(m.since + self.options.max_age + Duration::from_nanos(1))
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn gap_across_wrap_is_requested_then_recovered() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackGeneratorOptions::default());
        g.on_packet(65533, t0);
        assert_eq!(
            g.on_packet(1, t0),
            NackOutcome::InOrder { newly_missing: 3 }
        );
        let mut out = Vec::new();
        g.poll_nacks(t0, &mut out);
        assert_eq!(out, vec![65534, 65535, 0]);
        assert_eq!(
            g.on_packet(65535, t0 + ms(5)),
            NackOutcome::Recovered { retries: 1 }
        );
        assert_eq!(g.missing().collect::<Vec<_>>(), vec![65534, 0]);
        assert_eq!(g.on_packet(65535, t0 + ms(6)), NackOutcome::Late);
        assert_eq!(g.stats().recovered, 1);
    }

    #[test]
    fn retries_wait_for_rtt_and_stop_at_the_limit() {
        let t0 = Instant::now();
        let mut opts = NackGeneratorOptions::default();
        opts.max_retries = 2;
        let mut g = NackGenerator::new(opts);
        g.set_rtt(ms(100));
        g.on_packet(10, t0);
        g.on_packet(12, t0);
        let mut out = Vec::new();
        g.poll_nacks(t0, &mut out);
        assert_eq!(out, vec![11]);
        out.clear();
        g.poll_nacks(t0 + ms(50), &mut out);
        assert!(out.is_empty());
        assert_eq!(g.poll_timeout(), Some(t0 + ms(100)));
        g.poll_nacks(t0 + ms(100), &mut out);
        assert_eq!(out, vec![11]);
        out.clear();
        // Out of retries: kept one more interval for recovery detection,
        // then abandoned.
        assert_eq!(g.poll_nacks(t0 + ms(150), &mut out), 0);
        assert_eq!(g.poll_nacks(t0 + ms(200), &mut out), 1);
        assert!(out.is_empty());
        assert_eq!(g.poll_timeout(), None);
        assert_eq!(
            g.stats(),
            NackStats {
                requested: 2,
                recovered: 0,
                abandoned: 1
            }
        );
    }

    #[test]
    fn reordered_packet_within_first_delay_is_never_requested() {
        let t0 = Instant::now();
        let mut opts = NackGeneratorOptions::default();
        opts.first_delay = ms(10);
        let mut g = NackGenerator::new(opts);
        g.on_packet(1, t0);
        g.on_packet(3, t0);
        let mut out = Vec::new();
        g.poll_nacks(t0 + ms(5), &mut out);
        assert!(out.is_empty());
        assert_eq!(
            g.on_packet(2, t0 + ms(6)),
            NackOutcome::Recovered { retries: 0 }
        );
        g.poll_nacks(t0 + ms(20), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn missing_packets_are_abandoned_after_max_age() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackGeneratorOptions::default());
        g.set_rtt(ms(600));
        g.on_packet(1, t0);
        g.on_packet(3, t0);
        let mut out = Vec::new();
        g.poll_nacks(t0, &mut out);
        assert!(g.poll_timeout().unwrap() <= t0 + ms(600));
        assert_eq!(g.poll_nacks(t0 + ms(1001), &mut out), 1);
        assert_eq!(g.on_packet(2, t0 + ms(1002)), NackOutcome::Late);
    }

    #[test]
    fn huge_gap_asks_for_keyframe_instead_of_nacks() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackGeneratorOptions::default());
        g.on_packet(0, t0);
        g.on_packet(2, t0);
        assert_eq!(g.on_packet(20_000, t0), NackOutcome::KeyframeRequired);
        assert_eq!(g.missing().count(), 0);
        assert_eq!(
            g.on_packet(20_001, t0),
            NackOutcome::InOrder { newly_missing: 0 }
        );
    }

    #[test]
    fn too_many_missing_drops_oldest_and_asks_for_keyframe() {
        let t0 = Instant::now();
        let mut opts = NackGeneratorOptions::default();
        opts.max_missing = 4;
        let mut g = NackGenerator::new(opts);
        g.on_packet(0, t0);
        assert_eq!(g.on_packet(7, t0), NackOutcome::KeyframeRequired);
        assert_eq!(g.missing().collect::<Vec<_>>(), vec![3, 4, 5, 6]);
        assert_eq!(g.stats().abandoned, 2);
    }

    #[test]
    fn zero_capacity_never_tracks_and_never_panics() {
        let t0 = Instant::now();
        let mut opts = NackGeneratorOptions::default();
        opts.max_missing = 0;
        let mut g = NackGenerator::new(opts);
        g.on_packet(0, t0);
        assert_eq!(g.on_packet(3, t0), NackOutcome::KeyframeRequired);
        assert_eq!(g.missing().count(), 0);
    }
}
