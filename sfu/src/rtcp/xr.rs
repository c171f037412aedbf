//! RTCP extended reports (RFC 3611) as used for receiver-side RTT: the
//! receiver reference time block (RRTR, BT 4) and its DLRR answer (BT 5).

use super::header::{
    check_count, expect_type, need, put_u16, put_u32, put_u64, read_u16, read_u32, read_u64,
    split_item, write_header, RtcpError, PT_XR,
};
use super::ntp::NtpTime;

const BT_RRTR: u8 = 4;
const BT_DLRR: u8 = 5;
const DLRR_ITEM_LEN: usize = 12;

/// One DLRR sub-block: the echo of a receiver's RRTR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlrrItem {
    pub ssrc: u32,
    /// Compact NTP time of the RRTR received (LRR).
    pub last_rr: u32,
    /// Compact NTP delay since receiving it (DLRR).
    pub delay_since_last_rr: u32,
}

/// One report block of an XR packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XrBlock<'a> {
    ReceiverReferenceTime(NtpTime),
    Dlrr(DlrrItems<'a>),
    /// A block type we do not interpret.
    Other {
        block_type: u8,
        body: &'a [u8],
    },
}

/// The sub-blocks of a DLRR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlrrItems<'a>(&'a [u8]);

impl<'a> DlrrItems<'a> {
    pub fn iter(&self) -> impl Iterator<Item = DlrrItem> + 'a {
        self.0.chunks_exact(DLRR_ITEM_LEN).map(|c| DlrrItem {
            ssrc: read_u32(c, 0),
            last_rr: read_u32(c, 4),
            delay_since_last_rr: read_u32(c, 8),
        })
    }
}

/// A parsed XR packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedReport<'a> {
    pub ssrc: u32,
    blocks: &'a [u8],
}

/// Reads the block at `pos`: (block type, body, next offset).
fn block_at(blocks: &[u8], pos: usize) -> Result<(u8, &[u8], usize), RtcpError> {
    need(blocks, pos + 4)?;
    let block_type = blocks[pos];
    let len = 4 * usize::from(read_u16(blocks, pos + 2));
    need(blocks, pos + 4 + len)?;
    Ok((block_type, &blocks[pos + 4..pos + 4 + len], pos + 4 + len))
}

impl<'a> ExtendedReport<'a> {
    /// Parses an XR packet; every block's length is checked, and known block
    /// types must have their defined sizes.
    pub fn parse(item: &'a [u8]) -> Result<Self, RtcpError> {
        let (h, body) = split_item(item)?;
        expect_type(&h, PT_XR, None, "extended report")?;
        need(body, 4)?;
        let blocks = &body[4..];
        let mut pos = 0;
        while pos < blocks.len() {
            let (block_type, block, next) = block_at(blocks, pos)?;
            match block_type {
                BT_RRTR if block.len() != 8 => return Err(RtcpError::Malformed("XR RRTR block")),
                BT_DLRR if block.len() % DLRR_ITEM_LEN != 0 => {
                    return Err(RtcpError::Malformed("XR DLRR block"))
                }
                _ => {}
            }
            pos = next;
        }
        Ok(ExtendedReport {
            ssrc: read_u32(body, 0),
            blocks,
        })
    }

    pub fn blocks(&self) -> impl Iterator<Item = XrBlock<'a>> + 'a {
        let blocks = self.blocks;
        let mut pos = 0;
        std::iter::from_fn(move || {
            let (block_type, body, next) = block_at(blocks, pos).ok()?;
            pos = next;
            Some(match block_type {
                BT_RRTR => XrBlock::ReceiverReferenceTime(NtpTime(read_u64(body, 0))),
                BT_DLRR => XrBlock::Dlrr(DlrrItems(body)),
                _ => XrBlock::Other { block_type, body },
            })
        })
    }

    /// Writes an XR with one RRTR block; returns its length.
    pub fn write_rrtr(buf: &mut [u8], ssrc: u32, ntp: NtpTime) -> Result<usize, RtcpError> {
        let total = 8 + 4 + 8;
        write_header(buf, 0, PT_XR, total)?;
        put_u32(buf, 4, ssrc);
        buf[8] = BT_RRTR;
        buf[9] = 0;
        put_u16(buf, 10, 2);
        put_u64(buf, 12, ntp.0);
        Ok(total)
    }

    /// Writes an XR with one DLRR block; returns its length.
    pub fn write_dlrr(buf: &mut [u8], ssrc: u32, items: &[DlrrItem]) -> Result<usize, RtcpError> {
        check_count(items.len(), 0x1000)?;
        let total = 8 + 4 + DLRR_ITEM_LEN * items.len();
        write_header(buf, 0, PT_XR, total)?;
        put_u32(buf, 4, ssrc);
        buf[8] = BT_DLRR;
        buf[9] = 0;
        put_u16(buf, 10, (3 * items.len()) as u16);
        for (i, item) in items.iter().enumerate() {
            let at = 12 + DLRR_ITEM_LEN * i;
            put_u32(buf, at, item.ssrc);
            put_u32(buf, at + 4, item.last_rr);
            put_u32(buf, at + 8, item.delay_since_last_rr);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrtr_and_dlrr_round_trip() {
        let mut buf = [0u8; 64];
        let n = ExtendedReport::write_rrtr(&mut buf, 9, NtpTime(0xABCD_0000_1234)).unwrap();
        let xr = ExtendedReport::parse(&buf[..n]).unwrap();
        assert_eq!(xr.ssrc, 9);
        assert_eq!(
            xr.blocks().collect::<Vec<_>>(),
            vec![XrBlock::ReceiverReferenceTime(NtpTime(0xABCD_0000_1234))]
        );

        let items = [
            DlrrItem {
                ssrc: 1,
                last_rr: 2,
                delay_since_last_rr: 3,
            },
            DlrrItem {
                ssrc: 4,
                last_rr: 5,
                delay_since_last_rr: 6,
            },
        ];
        let n = ExtendedReport::write_dlrr(&mut buf, 9, &items).unwrap();
        let xr = ExtendedReport::parse(&buf[..n]).unwrap();
        let Some(XrBlock::Dlrr(dlrr)) = xr.blocks().next() else {
            panic!("expected a DLRR block");
        };
        assert_eq!(dlrr.iter().collect::<Vec<_>>(), items);
    }

    #[test]
    fn unknown_blocks_are_kept_and_bad_sizes_rejected() {
        let p = [0x80, 207, 0, 3, 0, 0, 0, 1, 42, 0, 0, 1, 1, 2, 3, 4];
        let xr = ExtendedReport::parse(&p).unwrap();
        assert_eq!(
            xr.blocks().collect::<Vec<_>>(),
            vec![XrBlock::Other {
                block_type: 42,
                body: &[1, 2, 3, 4]
            }]
        );
        let bad_rrtr = [0x80, 207, 0, 3, 0, 0, 0, 1, 4, 0, 0, 1, 1, 2, 3, 4];
        assert_eq!(
            ExtendedReport::parse(&bad_rrtr),
            Err(RtcpError::Malformed("XR RRTR block"))
        );
        let overrun = [0x80, 207, 0, 3, 0, 0, 0, 1, 42, 0, 0, 9, 1, 2, 3, 4];
        assert!(matches!(
            ExtendedReport::parse(&overrun),
            Err(RtcpError::Truncated { .. })
        ));
    }
}
