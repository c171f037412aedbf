//! Per-consumer sequence-number and timestamp rewriting (mediasoup's
//! SeqManager and the consumer's timestamp offset): the receiver sees one
//! continuous stream although the consumer switches sources (simulcast
//! layers), pauses and resumes, or drops packets (temporal layers).

use std::time::Instant;

use super::seq::{seq_is_newer, ts_is_newer};

/// How many recent drops are remembered to number late packets correctly.
const DROP_HISTORY: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Drop {
    seq: u16,
    /// The offset in effect for packets before this drop.
    offset_before: u16,
}

/// Maps a source's sequence numbers onto a consumer's output sequence.
///
/// After [`SeqRewriter::sync`] (a switch or resume), the next packet is
/// numbered last output + 1. Packets dropped with
/// [`SeqRewriter::drop_packet`] leave no gap. Late packets get the number
/// they would have had, or `None` when they belong to a previous source or
/// are older than the remembered drops.
#[derive(Debug, Clone)]
pub struct SeqRewriter {
    /// output = input - offset (wrapping).
    offset: u16,
    sync_pending: bool,
    max_input: u16,
    max_output: u16,
    /// First input after the last sync; older inputs are from a previous
    /// source.
    floor: u16,
    drops: [Drop; DROP_HISTORY],
    drops_len: usize,
    drops_next: usize,
    drops_overflowed: bool,
}

impl SeqRewriter {
    /// The first packet fed in will be numbered `first_output`.
    pub fn new(first_output: u16) -> Self {
        SeqRewriter {
            offset: 0,
            sync_pending: true,
            max_input: 0,
            max_output: first_output.wrapping_sub(1),
            floor: 0,
            drops: [Drop {
                seq: 0,
                offset_before: 0,
            }; DROP_HISTORY],
            drops_len: 0,
            drops_next: 0,
            drops_overflowed: false,
        }
    }

    /// The next packet starts a new input sequence (source switch, resume):
    /// it will be numbered last output + 1.
    pub fn sync(&mut self) {
        self.sync_pending = true;
    }

    /// Highest output sequence number so far.
    pub fn max_output(&self) -> u16 {
        self.max_output
    }

    /// The output sequence number for input `seq`, or `None` when the
    /// packet must not be forwarded (stale source, or too late to number).
    pub fn input(&mut self, seq: u16) -> Option<u16> {
        if self.sync_pending {
            let out = self.max_output.wrapping_add(1);
            self.offset = seq.wrapping_sub(out);
            self.max_input = seq;
            self.max_output = out;
            self.floor = seq;
            self.drops_len = 0;
            self.drops_overflowed = false;
            self.sync_pending = false;
            return Some(out);
        }
        if seq_is_newer(seq, self.max_input) {
            let out = seq.wrapping_sub(self.offset);
            self.max_input = seq;
            self.max_output = out;
            return Some(out);
        }
        if seq_is_newer(self.floor, seq) {
            return None;
        }
        let mut offset = self.offset;
        let mut older_than_all = true;
        for i in 0..self.drops_len {
            let idx = (self.drops_next + DROP_HISTORY - 1 - i) % DROP_HISTORY;
            let d = self.drops[idx];
            if d.seq == seq {
                return None;
            }
            if seq_is_newer(d.seq, seq) {
                offset = d.offset_before;
            } else {
                older_than_all = false;
                break;
            }
        }
        if older_than_all && self.drops_overflowed {
            return None;
        }
        Some(seq.wrapping_sub(offset))
    }

    /// The packet with input `seq` is not forwarded; later packets close the
    /// gap. Dropping a packet older than the newest forwarded one cannot
    /// renumber what was already sent and leaves a gap.
    pub fn drop_packet(&mut self, seq: u16) {
        if self.sync_pending || !seq_is_newer(seq, self.max_input) {
            return;
        }
        if self.drops_len == DROP_HISTORY {
            self.drops_overflowed = true;
        } else {
            self.drops_len += 1;
        }
        self.drops[self.drops_next] = Drop {
            seq,
            offset_before: self.offset,
        };
        self.drops_next = (self.drops_next + 1) % DROP_HISTORY;
        self.offset = self.offset.wrapping_add(1);
        self.max_input = seq;
    }
}

/// Maps a source's RTP timestamps onto a consumer's output timeline.
///
/// After [`TsRewriter::sync`], the next packet's output timestamp is the last
/// output timestamp advanced by the wall time elapsed since it was sent (in
/// clock-rate units, at least one tick), so that the receiver's jitter buffer
/// sees real time passing across a switch or a pause.
#[derive(Debug, Clone)]
pub struct TsRewriter {
    clock_rate: u32,
    /// output = input - offset (wrapping).
    offset: u32,
    sync_pending: bool,
    /// Newest output timestamp and when it was first sent.
    last: Option<(u32, Instant)>,
}

impl TsRewriter {
    /// The first packet keeps its timestamp.
    pub fn new(clock_rate: u32) -> Self {
        TsRewriter {
            clock_rate,
            offset: 0,
            sync_pending: true,
            last: None,
        }
    }

    pub fn sync(&mut self) {
        self.sync_pending = true;
    }

    /// Newest output timestamp so far.
    pub fn last_output(&self) -> Option<u32> {
        self.last.map(|(ts, _)| ts)
    }

    pub fn input(&mut self, ts: u32, now: Instant) -> u32 {
        if self.sync_pending {
            self.sync_pending = false;
            self.offset = match self.last {
                Some((last_ts, at)) => {
                    let elapsed = now.saturating_duration_since(at);
                    let ticks =
                        (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
                    ts.wrapping_sub(last_ts.wrapping_add(ticks.max(1)))
                }
                None => 0,
            };
        }
        let out = ts.wrapping_sub(self.offset);
        match self.last {
            Some((last_ts, _)) if !ts_is_newer(out, last_ts) => {}
            _ => self.last = Some((out, now)),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_packet_gets_the_chosen_first_output_and_order_is_kept() {
        let mut r = SeqRewriter::new(1000);
        assert_eq!(r.input(50), Some(1000));
        assert_eq!(r.input(51), Some(1001));
        assert_eq!(r.input(53), Some(1003));
        assert_eq!(r.input(52), Some(1002));
    }

    #[test]
    fn source_switch_continues_at_last_output_plus_one() {
        let mut r = SeqRewriter::new(65534);
        assert_eq!(r.input(10), Some(65534));
        assert_eq!(r.input(11), Some(65535));
        r.sync();
        assert_eq!(r.input(40000), Some(0));
        assert_eq!(r.input(40001), Some(1));
        // Packets from before the switch point are not forwarded (the
        // caller filters other sources by SSRC; this guards the new one).
        assert_eq!(r.input(39_990), None);
    }

    #[test]
    fn input_wrap_around_keeps_output_contiguous() {
        let mut r = SeqRewriter::new(7);
        assert_eq!(r.input(65534), Some(7));
        assert_eq!(r.input(65535), Some(8));
        assert_eq!(r.input(0), Some(9));
        assert_eq!(r.input(1), Some(10));
    }

    #[test]
    fn dropped_packets_leave_no_gap_and_late_packets_keep_their_numbers() {
        let mut r = SeqRewriter::new(100);
        assert_eq!(r.input(1), Some(100));
        // 2 is lost in the network and arrives late; 3 is dropped on purpose.
        r.drop_packet(3);
        assert_eq!(r.input(4), Some(102));
        assert_eq!(r.input(2), Some(101));
        r.drop_packet(5);
        r.drop_packet(6);
        assert_eq!(r.input(7), Some(103));
        // A retransmission of a dropped packet is not forwarded.
        assert_eq!(r.input(6), None);
        assert_eq!(r.input(4), Some(102));
    }

    #[test]
    fn drops_across_wrap_are_numbered_contiguously() {
        let mut r = SeqRewriter::new(0);
        assert_eq!(r.input(65534), Some(0));
        r.drop_packet(65535);
        assert_eq!(r.input(0), Some(1));
        r.drop_packet(1);
        assert_eq!(r.input(2), Some(2));
    }

    #[test]
    fn late_packet_older_than_forgotten_drops_is_not_forwarded() {
        let mut r = SeqRewriter::new(0);
        assert_eq!(r.input(0), Some(0));
        let mut seq = 2u16;
        for _ in 0..(DROP_HISTORY + 1) {
            r.drop_packet(seq);
            seq += 1;
        }
        // Seq 1 was never seen (not dropped), so the stream resumes at 2.
        assert_eq!(r.input(seq), Some(2));
        assert_eq!(r.input(1), None);
    }

    #[test]
    fn pause_resume_advances_timestamp_by_elapsed_wall_time() {
        let t0 = Instant::now();
        let mut r = TsRewriter::new(90_000);
        assert_eq!(r.input(1_000, t0), 1_000);
        assert_eq!(r.input(4_000, t0 + Duration::from_millis(33)), 4_000);
        r.sync();
        // Resumed 2 s after the last frame, with an unrelated source clock.
        let out = r.input(777_777, t0 + Duration::from_millis(2033));
        assert_eq!(out, 4_000 + 180_000);
        assert_eq!(r.input(780_777, t0 + Duration::from_millis(2066)), 187_000);
    }

    #[test]
    fn switch_without_elapsed_time_still_moves_timestamp_forward() {
        let t0 = Instant::now();
        let mut r = TsRewriter::new(48_000);
        assert_eq!(r.input(u32::MAX, t0), u32::MAX);
        r.sync();
        assert_eq!(r.input(5, t0), 0);
        assert_eq!(r.last_output(), Some(0));
    }

    #[test]
    fn late_timestamps_do_not_move_the_reference_frame() {
        let t0 = Instant::now();
        let mut r = TsRewriter::new(90_000);
        r.input(9_000, t0);
        r.input(3_000, t0 + Duration::from_millis(500));
        assert_eq!(r.last_output(), Some(9_000));
        r.sync();
        // Elapsed is measured from when 9000 was sent, not from the late one.
        assert_eq!(r.input(0, t0 + Duration::from_secs(1)), 99_000);
    }
}
