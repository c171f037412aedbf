//! Transport-wide congestion control feedback
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01, RTPFB FMT 15):
//! parsing into per-packet arrival deltas for the bandwidth estimator, and
//! building from the arrival times the receive side recorded.

use thiserror::Error;

use super::header::{
    expect_type, need, put_u16, put_u24, put_u32, read_i24, read_u16, read_u32, split_item,
    write_header, RtcpError, FMT_TWCC, PT_RTPFB,
};
use crate::rtp::seq_is_newer;

/// Reference time unit.
const REFERENCE_TIME_US: i64 = 64_000;
/// Receive delta unit.
const DELTA_UNIT_US: i64 = 250;
/// Sender SSRC, media SSRC, base seq, status count, reference time, count.
const FIXED_LEN: usize = 16;
const MAX_RUN: usize = 0x1FFF;

const NOT_RECEIVED: u8 = 0;
const SMALL_DELTA: u8 = 1;
const LARGE_DELTA: u8 = 2;

fn chunk_capacity(chunk: u16) -> usize {
    if chunk & 0x8000 == 0 {
        usize::from(chunk & 0x1FFF)
    } else if chunk & 0x4000 == 0 {
        14
    } else {
        7
    }
}

fn chunk_symbol(chunk: u16, i: usize) -> u8 {
    if chunk & 0x8000 == 0 {
        ((chunk >> 13) & 0x03) as u8
    } else if chunk & 0x4000 == 0 {
        ((chunk >> (13 - i)) & 0x01) as u8
    } else {
        ((chunk >> (12 - 2 * i)) & 0x03) as u8
    }
}

/// One packet's entry in a feedback: its transport-wide sequence number and,
/// if it arrived, its arrival time relative to the previous received packet
/// (or to the reference time for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccPacket {
    pub seq: u16,
    pub delta_us: Option<i32>,
}

/// A parsed transport-wide CC feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportCc<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    pub base_sequence: u16,
    pub status_count: u16,
    /// In 64 ms units (24-bit signed on the wire).
    pub reference_time: i32,
    /// Feedback packet count, to detect lost feedback.
    pub feedback_count: u8,
    /// Chunks, then deltas.
    data: &'a [u8],
}

impl<'a> TransportCc<'a> {
    /// Parses and validates the whole feedback (every status symbol and the
    /// deltas they call for), so iteration cannot fail later.
    pub fn parse(item: &'a [u8]) -> Result<Self, RtcpError> {
        let (h, body) = split_item(item)?;
        expect_type(&h, PT_RTPFB, Some(FMT_TWCC), "transport-wide CC feedback")?;
        need(body, FIXED_LEN)?;
        let fb = TransportCc {
            sender_ssrc: read_u32(body, 0),
            media_ssrc: read_u32(body, 4),
            base_sequence: read_u16(body, 8),
            status_count: read_u16(body, 10),
            reference_time: read_i24(body, 12),
            feedback_count: body[15],
            data: &body[FIXED_LEN..],
        };
        let mut remaining = usize::from(fb.status_count);
        let mut pos = 0;
        let mut delta_bytes = 0;
        while remaining > 0 {
            need(fb.data, pos + 2)?;
            let chunk = read_u16(fb.data, pos);
            pos += 2;
            let n = chunk_capacity(chunk).min(remaining);
            for i in 0..n {
                delta_bytes += match chunk_symbol(chunk, i) {
                    NOT_RECEIVED => 0,
                    SMALL_DELTA => 1,
                    LARGE_DELTA => 2,
                    _ => return Err(RtcpError::Malformed("TWCC reserved status symbol")),
                };
            }
            remaining -= n;
        }
        need(fb.data, pos + delta_bytes)?;
        Ok(fb)
    }

    /// The reference time in microseconds.
    pub fn reference_time_us(&self) -> i64 {
        i64::from(self.reference_time) * REFERENCE_TIME_US
    }

    /// Every packet the feedback covers, in sequence order.
    pub fn packets(&self) -> TwccPackets<'a> {
        TwccPackets {
            data: self.data,
            chunk_pos: 0,
            chunk: 0,
            chunk_len: 0,
            index: 0,
            remaining: usize::from(self.status_count),
            delta_pos: None,
            seq: self.base_sequence,
        }
    }

    /// Every packet with its absolute arrival time in microseconds (in the
    /// feedback sender's time base), or `None` when it was not received.
    pub fn arrivals(&self) -> impl Iterator<Item = (u16, Option<i64>)> + 'a {
        let mut at = self.reference_time_us();
        self.packets().map(move |p| {
            let arrival = p.delta_us.map(|d| {
                at += i64::from(d);
                at
            });
            (p.seq, arrival)
        })
    }
}

/// Iterator over the packets of a [`TransportCc`].
#[derive(Debug, Clone)]
pub struct TwccPackets<'a> {
    data: &'a [u8],
    chunk_pos: usize,
    chunk: u16,
    chunk_len: usize,
    index: usize,
    remaining: usize,
    /// Offset of the next delta; found once all chunks are read.
    delta_pos: Option<usize>,
    seq: u16,
}

impl TwccPackets<'_> {
    /// Deltas start right after the chunk that covers the last status.
    fn find_delta_start(&self) -> Option<usize> {
        let mut remaining = self.remaining;
        let mut pos = self.chunk_pos;
        // Statuses left in the current chunk.
        remaining = remaining.saturating_sub(self.chunk_len - self.index);
        while remaining > 0 {
            let chunk = read_u16(self.data.get(pos..pos + 2)?, 0);
            pos += 2;
            remaining -= chunk_capacity(chunk).min(remaining);
        }
        Some(pos)
    }
}

impl Iterator for TwccPackets<'_> {
    type Item = TwccPacket;

    fn next(&mut self) -> Option<TwccPacket> {
        if self.remaining == 0 {
            return None;
        }
        while self.index >= self.chunk_len {
            let bytes = self.data.get(self.chunk_pos..self.chunk_pos + 2)?;
            self.chunk = read_u16(bytes, 0);
            self.chunk_pos += 2;
            self.chunk_len = chunk_capacity(self.chunk).min(self.remaining);
            self.index = 0;
        }
        if self.delta_pos.is_none() {
            self.delta_pos = Some(self.find_delta_start()?);
        }
        let symbol = chunk_symbol(self.chunk, self.index);
        self.index += 1;
        self.remaining -= 1;
        let pos = self.delta_pos?;
        let delta_us = match symbol {
            SMALL_DELTA => {
                let d = *self.data.get(pos)?;
                self.delta_pos = Some(pos + 1);
                Some(i32::from(d) * DELTA_UNIT_US as i32)
            }
            LARGE_DELTA => {
                let b = self.data.get(pos..pos + 2)?;
                self.delta_pos = Some(pos + 2);
                Some(i32::from(i16::from_be_bytes([b[0], b[1]])) * DELTA_UNIT_US as i32)
            }
            _ => None,
        };
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        Some(TwccPacket { seq, delta_us })
    }
}

/// Why a packet could not be added to a feedback being built; the caller
/// sends what it has and starts a new feedback with this packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TwccPushError {
    #[error("transport sequence {seq} is not newer than {last}")]
    NotNewer { seq: u16, last: u16 },
    #[error("arrival delta of packet {seq} does not fit 16 bits of 250 us")]
    DeltaOutOfRange { seq: u16 },
    #[error("feedback already covers 65535 packets")]
    Full,
}

/// Builds one transport-wide CC feedback from (transport sequence, arrival
/// time) pairs in sequence order. Its buffers are reused across
/// [`TransportCcBuilder::reset`]s. The caller bounds the feedback's size by
/// checking [`TransportCcBuilder::encoded_len`] against its MTU.
#[derive(Debug, Clone)]
pub struct TransportCcBuilder {
    sender_ssrc: u32,
    media_ssrc: u32,
    feedback_count: u8,
    base_sequence: u16,
    last_seq: u16,
    /// In 64 ms units, unwrapped.
    reference_time: i64,
    /// Arrival time of the last received packet as the receiver will
    /// reconstruct it (quantised), so rounding errors do not accumulate.
    last_arrival_us: i64,
    symbols: Vec<u8>,
    deltas: Vec<i16>,
}

impl TransportCcBuilder {
    pub fn new(sender_ssrc: u32, media_ssrc: u32, feedback_count: u8) -> Self {
        TransportCcBuilder {
            sender_ssrc,
            media_ssrc,
            feedback_count,
            base_sequence: 0,
            last_seq: 0,
            reference_time: 0,
            last_arrival_us: 0,
            symbols: Vec::with_capacity(256),
            deltas: Vec::with_capacity(256),
        }
    }

    /// Empties the builder for the next feedback, keeping its buffers.
    pub fn reset(&mut self, feedback_count: u8) {
        self.feedback_count = feedback_count;
        self.symbols.clear();
        self.deltas.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// Packets covered so far, received or not.
    pub fn status_count(&self) -> usize {
        self.symbols.len()
    }

    /// Adds a received packet; packets skipped since the previous one are
    /// reported as not received. Nothing changes on error.
    pub fn push(&mut self, seq: u16, arrival_us: i64) -> Result<(), TwccPushError> {
        let (reference_time, base, gap) = if self.symbols.is_empty() {
            (arrival_us.div_euclid(REFERENCE_TIME_US), seq, 0)
        } else {
            if !seq_is_newer(seq, self.last_seq) {
                return Err(TwccPushError::NotNewer {
                    seq,
                    last: self.last_seq,
                });
            }
            let gap = usize::from(seq.wrapping_sub(self.last_seq)) - 1;
            (self.reference_time, self.base_sequence, gap)
        };
        if self.symbols.len() + gap + 1 > usize::from(u16::MAX) {
            return Err(TwccPushError::Full);
        }
        let last_arrival = if self.symbols.is_empty() {
            reference_time * REFERENCE_TIME_US
        } else {
            self.last_arrival_us
        };
        let units = (arrival_us - last_arrival + DELTA_UNIT_US / 2).div_euclid(DELTA_UNIT_US);
        let delta = i16::try_from(units).map_err(|_| TwccPushError::DeltaOutOfRange { seq })?;
        self.reference_time = reference_time;
        self.base_sequence = base;
        self.symbols.extend(std::iter::repeat_n(NOT_RECEIVED, gap));
        self.symbols.push(if (0..=255).contains(&delta) {
            SMALL_DELTA
        } else {
            LARGE_DELTA
        });
        self.deltas.push(delta);
        self.last_seq = seq;
        self.last_arrival_us = last_arrival + i64::from(delta) * DELTA_UNIT_US;
        Ok(())
    }

    /// Emits the status chunks: run length where a symbol repeats, else
    /// the densest vector chunk that fits.
    fn encode_chunks(&self, mut emit: impl FnMut(u16)) {
        let s = &self.symbols;
        let mut i = 0;
        while i < s.len() {
            let sym = s[i];
            let mut run = 1;
            while i + run < s.len() && s[i + run] == sym && run < MAX_RUN {
                run += 1;
            }
            let rle = (u16::from(sym) << 13) | run as u16;
            if run >= 14 {
                emit(rle);
                i += run;
                continue;
            }
            let window = (s.len() - i).min(14);
            if s[i..i + window].iter().all(|&x| x <= SMALL_DELTA) {
                let mut chunk = 0x8000u16;
                for (k, &x) in s[i..i + window].iter().enumerate() {
                    chunk |= u16::from(x) << (13 - k);
                }
                emit(chunk);
                i += window;
                continue;
            }
            if run >= 7 {
                emit(rle);
                i += run;
                continue;
            }
            let window = (s.len() - i).min(7);
            let mut chunk = 0xC000u16;
            for (k, &x) in s[i..i + window].iter().enumerate() {
                chunk |= u16::from(x) << (12 - 2 * k);
            }
            emit(chunk);
            i += window;
        }
    }

    fn delta_bytes(&self) -> usize {
        self.deltas
            .iter()
            .map(|d| if (0..=255).contains(d) { 1 } else { 2 })
            .sum()
    }

    /// Length of the feedback [`TransportCcBuilder::write`] produces.
    pub fn encoded_len(&self) -> usize {
        let mut chunks = 0;
        self.encode_chunks(|_| chunks += 1);
        (4 + FIXED_LEN + 2 * chunks + self.delta_bytes()).next_multiple_of(4)
    }

    /// Writes the feedback into `buf`; returns its length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        if self.symbols.is_empty() {
            return Err(RtcpError::Malformed("TWCC feedback without packets"));
        }
        let total = self.encoded_len();
        write_header(buf, FMT_TWCC, PT_RTPFB, total)?;
        put_u32(buf, 4, self.sender_ssrc);
        put_u32(buf, 8, self.media_ssrc);
        put_u16(buf, 12, self.base_sequence);
        put_u16(buf, 14, self.symbols.len() as u16);
        put_u24(buf, 16, (self.reference_time as u32) & 0xFF_FFFF);
        buf[19] = self.feedback_count;
        let mut pos = 20;
        self.encode_chunks(|chunk| {
            put_u16(buf, pos, chunk);
            pos += 2;
        });
        for &d in &self.deltas {
            if (0..=255).contains(&d) {
                buf[pos] = d as u8;
                pos += 1;
            } else {
                put_u16(buf, pos, d as u16);
                pos += 2;
            }
        }
        buf[pos..total].fill(0);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(b: &TransportCcBuilder) -> Vec<(u16, Option<i64>)> {
        let mut buf = vec![0u8; b.encoded_len()];
        let n = b.write(&mut buf).unwrap();
        assert_eq!(n, buf.len());
        let fb = TransportCc::parse(&buf).unwrap();
        assert_eq!(fb.packets().count(), usize::from(fb.status_count));
        fb.arrivals().collect()
    }

    #[test]
    fn built_feedback_parses_back_to_the_same_arrivals() {
        let mut b = TransportCcBuilder::new(1, 2, 7);
        let base = 1_000_000_000i64;
        let arrivals = [
            (65534u16, base),
            (65535, base + 1_000),
            (1, base + 70_000),
            (2, base + 69_000),
            (5, base + 75_000),
        ];
        for (seq, at) in arrivals {
            b.push(seq, at).unwrap();
        }
        let got = round_trip(&b);
        let want = vec![
            (65534, Some(base)),
            (65535, Some(base + 1_000)),
            (0, None),
            (1, Some(base + 70_000)),
            (2, Some(base + 69_000)),
            (3, None),
            (4, None),
            (5, Some(base + 75_000)),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn long_runs_use_run_length_chunks() {
        let mut b = TransportCcBuilder::new(1, 2, 0);
        for i in 0..1000u16 {
            b.push(i, 5_000_000 + i64::from(i) * 500).unwrap();
        }
        // One run-length chunk for 1000 small deltas (2 bytes) + deltas.
        assert_eq!(b.encoded_len(), (20 + 2 + 1000usize).next_multiple_of(4));
        let got = round_trip(&b);
        assert_eq!(got.len(), 1000);
        assert_eq!(got[999], (999, Some(5_000_000 + 999 * 500)));
    }

    #[test]
    fn big_gap_of_lost_packets_round_trips() {
        let mut b = TransportCcBuilder::new(1, 2, 0);
        b.push(100, 0).unwrap();
        b.push(9000, 1_000).unwrap();
        let got = round_trip(&b);
        assert_eq!(got.len(), 8901);
        assert!(got[1..8900].iter().all(|(_, a)| a.is_none()));
        assert_eq!(got[8900], (9000, Some(1_000)));
    }

    #[test]
    fn push_rejects_old_sequences_and_unrepresentable_deltas() {
        let mut b = TransportCcBuilder::new(1, 2, 0);
        b.push(10, 0).unwrap();
        assert_eq!(
            b.push(10, 1),
            Err(TwccPushError::NotNewer { seq: 10, last: 10 })
        );
        assert_eq!(
            b.push(11, 10_000_000),
            Err(TwccPushError::DeltaOutOfRange { seq: 11 })
        );
        assert_eq!(b.status_count(), 1);
        b.push(11, 250).unwrap();
        b.reset(1);
        assert!(b.is_empty());
        assert!(b.write(&mut [0u8; 64]).is_err());
    }

    #[test]
    fn parses_a_hand_made_feedback_with_mixed_chunks() {
        // base 0x0100, 4 statuses, ref time -1 (0xFFFFFF), fb count 3.
        // Chunk: 2-bit vector [small, large, not received, small].
        let p = [
            0x8F,
            205,
            0,
            6,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            2,
            0x01,
            0x00,
            0,
            4,
            0xFF,
            0xFF,
            0xFF,
            3,
            0b1101_1000,
            0b0100_0000,
            4,
            0xFF,
            0xFC,
            8,
            0,
            0,
        ];
        let fb = TransportCc::parse(&p).unwrap();
        assert_eq!(fb.reference_time_us(), -64_000);
        assert_eq!(fb.feedback_count, 3);
        let pkts: Vec<_> = fb.packets().map(|p| (p.seq, p.delta_us)).collect();
        assert_eq!(
            pkts,
            vec![
                (0x100, Some(1000)),
                (0x101, Some(-1000)),
                (0x102, None),
                (0x103, Some(2000))
            ]
        );
    }

    #[test]
    fn parses_a_browser_feedback_with_rtcp_padding() {
        // A capture from a browser session (as decoded by Wireshark): P bit
        // set, one padding byte, one run-length chunk of 9 small deltas.
        let p = [
            0xaf, 0xcd, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01, 0xdd, 0x58, 0x6e, 0xb6, 0x00, 0x01,
            0x00, 0x09, 0x5e, 0x91, 0x10, 0x00, 0x20, 0x09, 0x1c, 0x0c, 0x2c, 0x38, 0x00, 0x04,
            0x00, 0x08, 0x18, 0x01,
        ];
        let fb = TransportCc::parse(&p).unwrap();
        assert_eq!(fb.media_ssrc, 0xdd58_6eb6);
        assert_eq!(fb.reference_time, 6_197_520);
        let deltas_ms: Vec<_> = fb
            .packets()
            .map(|p| (p.seq, p.delta_us.unwrap() / 1000))
            .collect();
        assert_eq!(
            deltas_ms,
            vec![
                (1, 7),
                (2, 3),
                (3, 11),
                (4, 14),
                (5, 0),
                (6, 1),
                (7, 0),
                (8, 2),
                (9, 6)
            ]
        );
    }

    #[test]
    fn reserved_symbol_and_missing_deltas_are_rejected() {
        let mut p = [
            0x8F,
            205,
            0,
            5,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            2,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0b1111_0000,
            0,
            0,
            0,
        ];
        assert_eq!(
            TransportCc::parse(&p),
            Err(RtcpError::Malformed("TWCC reserved status symbol"))
        );
        // Run of 3 large deltas needs 6 bytes, only 2 present.
        p[15] = 3;
        p[20] = 0b0100_0000;
        p[21] = 3;
        assert!(matches!(
            TransportCc::parse(&p),
            Err(RtcpError::Truncated { .. })
        ));
    }
}
