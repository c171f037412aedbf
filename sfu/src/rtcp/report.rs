//! Sender and receiver reports (RFC 3550 §6.4): the NTP/RTP mapping a
//! receiver uses for lip sync and RTT, and the report blocks that carry loss
//! and jitter.

use super::header::{
    check_count, expect_type, need, put_u24, put_u32, put_u64, read_i24, read_u32, read_u64,
    split_item, write_header, RtcpError, PT_RR, PT_SR,
};
use super::ntp::NtpTime;

const SENDER_INFO_LEN: usize = 20;
const BLOCK_LEN: usize = 24;
const MAX_BLOCKS: usize = 31;

/// One report block: reception statistics about one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Loss since the previous report, in 1/256 units.
    pub fraction_lost: u8,
    /// 24-bit signed on the wire; values outside are clamped when written.
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    pub jitter: u32,
    /// Compact NTP time of the last SR received from this source (LSR).
    pub last_sr: u32,
    /// Compact NTP delay since that SR was received (DLSR).
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> Self {
        ReportBlock {
            ssrc: read_u32(b, 0),
            fraction_lost: b[4],
            cumulative_lost: read_i24(b, 5),
            extended_highest_seq: read_u32(b, 8),
            jitter: read_u32(b, 12),
            last_sr: read_u32(b, 16),
            delay_since_last_sr: read_u32(b, 20),
        }
    }

    fn write(&self, b: &mut [u8]) {
        put_u32(b, 0, self.ssrc);
        b[4] = self.fraction_lost;
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF);
        put_u24(b, 5, lost as u32 & 0xFF_FFFF);
        put_u32(b, 8, self.extended_highest_seq);
        put_u32(b, 12, self.jitter);
        put_u32(b, 16, self.last_sr);
        put_u32(b, 20, self.delay_since_last_sr);
    }
}

/// Iterator over the report blocks of an SR or RR.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        self.chunks.next().map(ReportBlock::parse)
    }
}

/// The sender-info section of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ntp: NtpTime,
    /// The RTP timestamp corresponding to `ntp`.
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

impl SenderInfo {
    /// The RTP timestamp at wall time `ntp`, extrapolated from this
    /// report's mapping at `clock_rate`.
    pub fn rtp_timestamp_at(&self, ntp: NtpTime, clock_rate: u32) -> u32 {
        let delta = ntp.0.wrapping_sub(self.ntp.0) as i64;
        let ticks = (i128::from(delta) * i128::from(clock_rate)) >> 32;
        self.rtp_timestamp.wrapping_add(ticks as i64 as u32)
    }
}

/// A parsed sender report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport<'a> {
    pub ssrc: u32,
    pub sender_info: SenderInfo,
    blocks: &'a [u8],
}

impl<'a> SenderReport<'a> {
    /// Parses one SR item. Profile-specific extensions after the report
    /// blocks are ignored.
    pub fn parse(item: &'a [u8]) -> Result<Self, RtcpError> {
        let (h, body) = split_item(item)?;
        expect_type(&h, PT_SR, None, "sender report")?;
        let blocks_len = BLOCK_LEN * usize::from(h.count);
        need(body, 4 + SENDER_INFO_LEN + blocks_len)?;
        Ok(SenderReport {
            ssrc: read_u32(body, 0),
            sender_info: SenderInfo {
                ntp: NtpTime(read_u64(body, 4)),
                rtp_timestamp: read_u32(body, 12),
                packet_count: read_u32(body, 16),
                octet_count: read_u32(body, 20),
            },
            blocks: &body[24..24 + blocks_len],
        })
    }

    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks {
            chunks: self.blocks.chunks_exact(BLOCK_LEN),
        }
    }

    /// Writes an SR into `buf`; returns its length.
    pub fn write(
        buf: &mut [u8],
        ssrc: u32,
        info: &SenderInfo,
        blocks: &[ReportBlock],
    ) -> Result<usize, RtcpError> {
        check_count(blocks.len(), MAX_BLOCKS)?;
        let total = 4 + 4 + SENDER_INFO_LEN + BLOCK_LEN * blocks.len();
        write_header(buf, blocks.len() as u8, PT_SR, total)?;
        put_u32(buf, 4, ssrc);
        put_u64(buf, 8, info.ntp.0);
        put_u32(buf, 16, info.rtp_timestamp);
        put_u32(buf, 20, info.packet_count);
        put_u32(buf, 24, info.octet_count);
        for (i, b) in blocks.iter().enumerate() {
            let at = 28 + BLOCK_LEN * i;
            b.write(&mut buf[at..at + BLOCK_LEN]);
        }
        Ok(total)
    }
}

/// A parsed receiver report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    pub ssrc: u32,
    blocks: &'a [u8],
}

impl<'a> ReceiverReport<'a> {
    pub fn parse(item: &'a [u8]) -> Result<Self, RtcpError> {
        let (h, body) = split_item(item)?;
        expect_type(&h, PT_RR, None, "receiver report")?;
        let blocks_len = BLOCK_LEN * usize::from(h.count);
        need(body, 4 + blocks_len)?;
        Ok(ReceiverReport {
            ssrc: read_u32(body, 0),
            blocks: &body[4..4 + blocks_len],
        })
    }

    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks {
            chunks: self.blocks.chunks_exact(BLOCK_LEN),
        }
    }

    /// Writes an RR into `buf`; returns its length.
    pub fn write(buf: &mut [u8], ssrc: u32, blocks: &[ReportBlock]) -> Result<usize, RtcpError> {
        check_count(blocks.len(), MAX_BLOCKS)?;
        let total = 8 + BLOCK_LEN * blocks.len();
        write_header(buf, blocks.len() as u8, PT_RR, total)?;
        put_u32(buf, 4, ssrc);
        for (i, b) in blocks.iter().enumerate() {
            let at = 8 + BLOCK_LEN * i;
            b.write(&mut buf[at..at + BLOCK_LEN]);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ssrc: u32, lost: i32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 25,
            cumulative_lost: lost,
            extended_highest_seq: 0x0001_0005,
            jitter: 120,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 0x0000_8000,
        }
    }

    #[test]
    fn sender_report_round_trips_with_blocks() {
        let info = SenderInfo {
            ntp: NtpTime(0xE000_0000_8000_0000),
            rtp_timestamp: 90_000,
            packet_count: 10,
            octet_count: 12_000,
        };
        let blocks = [block(1, 3), block(2, -5)];
        let mut buf = [0u8; 128];
        let n = SenderReport::write(&mut buf, 0xAABB, &info, &blocks).unwrap();
        assert_eq!(n, 76);
        let sr = SenderReport::parse(&buf[..n]).unwrap();
        assert_eq!(sr.ssrc, 0xAABB);
        assert_eq!(sr.sender_info, info);
        assert_eq!(sr.report_blocks().collect::<Vec<_>>(), blocks);
    }

    #[test]
    fn receiver_report_clamps_cumulative_loss_to_24_bits() {
        let mut buf = [0u8; 64];
        let n = ReceiverReport::write(&mut buf, 7, &[block(9, -10_000_000)]).unwrap();
        let rr = ReceiverReport::parse(&buf[..n]).unwrap();
        assert_eq!(
            rr.report_blocks().next().unwrap().cumulative_lost,
            -0x80_0000
        );
        let n = ReceiverReport::write(&mut buf, 7, &[block(9, i32::MAX)]).unwrap();
        let rr = ReceiverReport::parse(&buf[..n]).unwrap();
        assert_eq!(
            rr.report_blocks().next().unwrap().cumulative_lost,
            0x7F_FFFF
        );
    }

    #[test]
    fn empty_receiver_report_is_eight_bytes() {
        let mut buf = [0u8; 8];
        assert_eq!(ReceiverReport::write(&mut buf, 1, &[]).unwrap(), 8);
        assert_eq!(buf, [0x80, 201, 0, 1, 0, 0, 0, 1]);
        assert_eq!(
            ReceiverReport::parse(&buf).unwrap().report_blocks().count(),
            0
        );
    }

    #[test]
    fn report_count_beyond_body_is_truncated_error() {
        let mut buf = [0u8; 32];
        let n = ReceiverReport::write(&mut buf, 1, &[block(1, 0)]).unwrap();
        buf[0] = (buf[0] & !0x1F) | 2;
        assert!(matches!(
            ReceiverReport::parse(&buf[..n]),
            Err(RtcpError::Truncated { .. })
        ));
    }

    #[test]
    fn writers_refuse_small_buffers_and_too_many_blocks() {
        let mut small = [0u8; 20];
        assert_eq!(
            ReceiverReport::write(&mut small, 1, &[block(1, 0)]),
            Err(RtcpError::BufferTooSmall {
                needed: 32,
                available: 20
            })
        );
        let many = [block(1, 0); 32];
        let mut buf = [0u8; 2048];
        assert_eq!(
            ReceiverReport::write(&mut buf, 1, &many),
            Err(RtcpError::TooManyItems { count: 32, max: 31 })
        );
    }

    #[test]
    fn sender_info_extrapolates_rtp_time_both_ways() {
        let info = SenderInfo {
            ntp: NtpTime(10 << 32),
            rtp_timestamp: 100,
            ..Default::default()
        };
        assert_eq!(
            info.rtp_timestamp_at(NtpTime((10 << 32) + (1 << 31)), 90_000),
            45_100
        );
        assert_eq!(
            info.rtp_timestamp_at(NtpTime(9 << 32), 90_000),
            100u32.wrapping_sub(90_000)
        );
    }

    #[test]
    fn wrong_packet_type_is_rejected() {
        let mut buf = [0u8; 8];
        ReceiverReport::write(&mut buf, 1, &[]).unwrap();
        assert!(matches!(
            SenderReport::parse(&buf),
            Err(RtcpError::WrongType {
                packet_type: 201,
                ..
            })
        ));
    }
}
