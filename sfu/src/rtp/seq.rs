//! Wrap-around arithmetic for 16-bit sequence numbers and 32-bit timestamps,
//! and the RFC 3550 appendix A.1 extended-sequence tracker that receive
//! statistics (RR loss, expected packets) are computed from.

/// True when `a` comes after `b` in sequence-number space (RFC 1982 serial
/// arithmetic). At exactly half the space apart the larger value wins, so
/// that exactly one of `seq_is_newer(a, b)` / `seq_is_newer(b, a)` holds.
pub fn seq_is_newer(a: u16, b: u16) -> bool {
    let d = a.wrapping_sub(b);
    if d == 0x8000 {
        a > b
    } else {
        d != 0 && d < 0x8000
    }
}

/// Signed distance `a - b` taking wrap-around into account.
pub fn seq_diff(a: u16, b: u16) -> i32 {
    i32::from(a.wrapping_sub(b) as i16)
}

/// True when timestamp `a` comes after `b` (same rule as [`seq_is_newer`]).
pub fn ts_is_newer(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    if d == 0x8000_0000 {
        a > b
    } else {
        d != 0 && d < 0x8000_0000
    }
}

/// Signed distance `a - b` between timestamps taking wrap-around into account.
pub fn ts_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// How the tracker classified one incoming sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqUpdate {
    /// Newer than everything before (possibly after a gap).
    InOrder { extended: u64 },
    /// Older than the highest seen: a late (reordered) or duplicate packet.
    Late { extended: u64 },
    /// The source is still on probation; the packet should not be counted.
    Probation,
    /// A jump too big to be loss or reordering. The packet is not counted;
    /// if the next one follows it, the tracker restarts there.
    Jump,
    /// The source restarted at this packet (a confirmed jump); statistics
    /// were reset.
    Restarted { extended: u64 },
}

/// Extended highest sequence number, cycles and loss accounting for one
/// incoming stream, per RFC 3550 appendix A.1.
#[derive(Debug, Clone)]
pub struct ExtendedSeqTracker {
    max_seq: u16,
    /// Count of wraps, shifted left by 16 (as in RFC 3550).
    cycles: u64,
    base_seq: u64,
    /// The sequence number that would confirm a jump (RTP_SEQ_MOD + 1 when
    /// none is pending).
    bad_seq: u32,
    probation: u8,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
}

impl ExtendedSeqTracker {
    /// Jumps ahead by less than this are loss, not a restart.
    pub const MAX_DROPOUT: u16 = 3000;
    /// Packets this far behind are late, further behind is a restart.
    pub const MAX_MISORDER: u16 = 100;
    /// Sequential packets needed before a new source is valid.
    pub const MIN_SEQUENTIAL: u8 = 2;

    const NO_BAD_SEQ: u32 = 0x1_0001;

    /// Starts tracking at the first packet's sequence number; that packet
    /// counts as the first of the probation run.
    pub fn new(first_seq: u16) -> Self {
        let mut t = ExtendedSeqTracker {
            max_seq: first_seq,
            cycles: 0,
            base_seq: 0,
            bad_seq: Self::NO_BAD_SEQ,
            probation: Self::MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
        };
        t.init(first_seq);
        // RFC 3550 A.1: max_seq = seq - 1 so the first packet is "in order".
        t.max_seq = first_seq.wrapping_sub(1);
        t.probation = Self::MIN_SEQUENTIAL;
        let _ = t.update(first_seq);
        t
    }

    /// Starts tracking with no probation (e.g. the stream was signalled).
    pub fn new_trusted(first_seq: u16) -> Self {
        let mut t = Self::new(first_seq);
        if t.probation > 0 {
            t.probation = 0;
            t.init(first_seq);
            t.received = 1;
        }
        t
    }

    fn init(&mut self, seq: u16) {
        self.base_seq = u64::from(seq);
        self.max_seq = seq;
        self.bad_seq = Self::NO_BAD_SEQ;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// Feeds one sequence number.
    pub fn update(&mut self, seq: u16) -> SeqUpdate {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init(seq);
                    self.received += 1;
                    return SeqUpdate::InOrder {
                        extended: self.extended_max(),
                    };
                }
            } else {
                self.probation = Self::MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqUpdate::Probation;
        }
        if udelta < Self::MAX_DROPOUT {
            if udelta == 0 {
                self.received += 1;
                return SeqUpdate::Late {
                    extended: self.extended_max(),
                };
            }
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= 0x1_0000 - u32::from(Self::MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets after a jump: the source restarted.
                self.init(seq);
                self.received += 1;
                return SeqUpdate::Restarted {
                    extended: self.extended_max(),
                };
            }
            self.bad_seq = u32::from(seq.wrapping_add(1));
            return SeqUpdate::Jump;
        } else {
            // Late packet within the misorder window.
            self.received += 1;
            let extended = self.extended_max() as i64 + i64::from(seq_diff(seq, self.max_seq));
            return SeqUpdate::Late {
                extended: extended.max(0) as u64,
            };
        }
        self.received += 1;
        SeqUpdate::InOrder {
            extended: self.extended_max(),
        }
    }

    /// Whether the source has passed probation.
    pub fn is_valid(&self) -> bool {
        self.probation == 0
    }

    /// Highest sequence number seen, extended with the wrap count.
    pub fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    /// The 32-bit "extended highest sequence number received" of an RR.
    pub fn extended_max_u32(&self) -> u32 {
        self.extended_max() as u32
    }

    pub fn cycles(&self) -> u32 {
        (self.cycles >> 16) as u32
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn expected(&self) -> u64 {
        (self.extended_max() + 1).saturating_sub(self.base_seq)
    }

    /// Cumulative packets lost (negative with duplicates), clamped to the
    /// 24-bit signed range an RR carries.
    pub fn cumulative_lost(&self) -> i32 {
        let lost = self.expected() as i64 - self.received as i64;
        lost.clamp(-0x80_0000, 0x7F_FFFF) as i32
    }

    /// Loss fraction since the last call in 1/256 units (the RR "fraction
    /// lost"), and starts a new interval.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_handles_wrap_around_at_65535() {
        assert!(seq_is_newer(0, 65535));
        assert!(!seq_is_newer(65535, 0));
        assert!(seq_is_newer(5, 65530));
        assert!(!seq_is_newer(7, 7));
        assert_eq!(seq_diff(2, 65534), 4);
        assert_eq!(seq_diff(65534, 2), -4);
        assert_eq!(seq_diff(100, 100), 0);
    }

    #[test]
    fn half_space_apart_is_antisymmetric() {
        assert!(seq_is_newer(0x8000, 0));
        assert!(!seq_is_newer(0, 0x8000));
        assert!(ts_is_newer(0x8000_0000, 0));
        assert!(!ts_is_newer(0, 0x8000_0000));
    }

    #[test]
    fn timestamp_arithmetic_wraps() {
        assert!(ts_is_newer(10, u32::MAX - 10));
        assert_eq!(ts_diff(10, u32::MAX - 10), 21);
        assert_eq!(ts_diff(u32::MAX - 10, 10), -21);
    }

    #[test]
    fn new_source_is_on_probation_until_sequential() {
        let mut t = ExtendedSeqTracker::new(100);
        assert!(!t.is_valid());
        assert_eq!(t.update(101), SeqUpdate::InOrder { extended: 101 });
        assert!(t.is_valid());
        assert_eq!(t.received(), 1);
    }

    #[test]
    fn probation_restarts_on_non_sequential_packet() {
        let mut t = ExtendedSeqTracker::new(100);
        assert_eq!(t.update(500), SeqUpdate::Probation);
        assert_eq!(t.update(501), SeqUpdate::InOrder { extended: 501 });
    }

    #[test]
    fn extended_sequence_counts_cycles_across_wrap() {
        let mut t = ExtendedSeqTracker::new_trusted(65534);
        assert_eq!(t.update(65535), SeqUpdate::InOrder { extended: 65535 });
        assert_eq!(t.update(0), SeqUpdate::InOrder { extended: 65536 });
        assert_eq!(t.update(1), SeqUpdate::InOrder { extended: 65537 });
        assert_eq!(t.cycles(), 1);
        // A late packet from before the wrap maps into the previous cycle.
        assert_eq!(t.update(65533), SeqUpdate::Late { extended: 65533 });
        assert_eq!(t.extended_max(), 65537);
    }

    #[test]
    fn loss_and_fraction_lost_follow_rfc3550() {
        let mut t = ExtendedSeqTracker::new_trusted(0);
        for s in [1u16, 2, 5, 6, 7] {
            t.update(s);
        }
        // Expected 0..=7 = 8, received 6.
        assert_eq!(t.expected(), 8);
        assert_eq!(t.cumulative_lost(), 2);
        assert_eq!(t.take_fraction_lost(), 64);
        for s in 8u16..12 {
            t.update(s);
        }
        assert_eq!(t.take_fraction_lost(), 0);
    }

    #[test]
    fn duplicates_make_cumulative_loss_negative() {
        let mut t = ExtendedSeqTracker::new_trusted(10);
        t.update(11);
        t.update(11);
        t.update(10);
        assert_eq!(t.cumulative_lost(), -2);
        assert_eq!(t.take_fraction_lost(), 0);
    }

    #[test]
    fn large_jump_is_confirmed_by_a_sequential_packet() {
        let mut t = ExtendedSeqTracker::new_trusted(1000);
        assert_eq!(t.update(20000), SeqUpdate::Jump);
        assert_eq!(t.update(1001), SeqUpdate::InOrder { extended: 1001 });
        assert_eq!(t.update(30000), SeqUpdate::Jump);
        assert_eq!(t.update(30001), SeqUpdate::Restarted { extended: 30001 });
        assert_eq!(t.update(30002), SeqUpdate::InOrder { extended: 30002 });
        assert_eq!(t.expected(), 2);
        assert_eq!(t.received(), 2);
    }
}
