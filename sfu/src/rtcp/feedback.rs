//! RFC 4585 / RFC 5104 feedback messages the SFU exchanges: generic NACK,
//! PLI, FIR and REMB (draft-alvestrand-rmcat-remb).

use super::header::{
    check_count, expect_type, need, put_u16, put_u32, read_u16, read_u24, read_u32, split_item,
    write_header, RtcpError, FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, PT_PSFB, PT_RTPFB,
};

/// Sender SSRC + media SSRC that start every feedback message.
const FB_COMMON_LEN: usize = 8;
/// Largest FCI (in 32-bit words) an item can hold besides the common part.
const MAX_FCI_WORDS: usize = 0xFFFF - 2;

fn parse_feedback<'a>(
    item: &'a [u8],
    packet_type: u8,
    format: u8,
    expected: &'static str,
) -> Result<(u32, u32, &'a [u8]), RtcpError> {
    let (h, body) = split_item(item)?;
    expect_type(&h, packet_type, Some(format), expected)?;
    need(body, FB_COMMON_LEN)?;
    Ok((read_u32(body, 0), read_u32(body, 4), &body[FB_COMMON_LEN..]))
}

fn write_feedback(
    buf: &mut [u8],
    format: u8,
    packet_type: u8,
    sender_ssrc: u32,
    media_ssrc: u32,
    fci_len: usize,
) -> Result<usize, RtcpError> {
    check_count(fci_len / 4, MAX_FCI_WORDS)?;
    let total = 4 + FB_COMMON_LEN + fci_len;
    write_header(buf, format, packet_type, total)?;
    put_u32(buf, 4, sender_ssrc);
    put_u32(buf, 8, media_ssrc);
    Ok(total)
}

/// One generic NACK FCI entry: a lost packet id and a bitmask of the 16
/// following sequence numbers also lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackItem {
    pub pid: u16,
    pub blp: u16,
}

impl NackItem {
    /// The sequence numbers this entry reports lost, in order.
    pub fn lost_seqs(self) -> impl Iterator<Item = u16> {
        std::iter::once(self.pid).chain(
            (0..16u16)
                .filter(move |i| self.blp & (1 << i) != 0)
                .map(move |i| self.pid.wrapping_add(i + 1)),
        )
    }

    /// Packs sequence numbers (ascending in wrap-around order, as a NACK
    /// generator yields them) into entries appended to `out`. A number that
    /// does not fit the current entry's 16-packet window starts a new one.
    pub fn from_seqs(seqs: &[u16], out: &mut Vec<NackItem>) {
        let mut current: Option<NackItem> = None;
        for &seq in seqs {
            if let Some(item) = current.as_mut() {
                let d = seq.wrapping_sub(item.pid);
                if (1..=16).contains(&d) {
                    item.blp |= 1 << (d - 1);
                    continue;
                }
                if d == 0 {
                    continue;
                }
                out.push(*item);
            }
            current = Some(NackItem { pid: seq, blp: 0 });
        }
        out.extend(current);
    }
}

/// A parsed generic NACK (RTPFB FMT 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nack<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Nack<'a> {
    pub fn parse(item: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, fci) = parse_feedback(item, PT_RTPFB, FMT_NACK, "NACK")?;
        Ok(Nack {
            sender_ssrc,
            media_ssrc,
            fci,
        })
    }

    pub fn items(&self) -> impl Iterator<Item = NackItem> + 'a {
        self.fci.chunks_exact(4).map(|c| NackItem {
            pid: read_u16(c, 0),
            blp: read_u16(c, 2),
        })
    }

    /// Every sequence number reported lost.
    pub fn lost_seqs(&self) -> impl Iterator<Item = u16> + 'a {
        self.items().flat_map(NackItem::lost_seqs)
    }

    pub fn write(
        buf: &mut [u8],
        sender_ssrc: u32,
        media_ssrc: u32,
        items: &[NackItem],
    ) -> Result<usize, RtcpError> {
        let total = write_feedback(
            buf,
            FMT_NACK,
            PT_RTPFB,
            sender_ssrc,
            media_ssrc,
            4 * items.len(),
        )?;
        for (i, item) in items.iter().enumerate() {
            put_u16(buf, 12 + 4 * i, item.pid);
            put_u16(buf, 14 + 4 * i, item.blp);
        }
        Ok(total)
    }
}

/// Picture loss indication (PSFB FMT 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pli {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
}

impl Pli {
    pub fn parse(item: &[u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, _) = parse_feedback(item, PT_PSFB, FMT_PLI, "PLI")?;
        Ok(Pli {
            sender_ssrc,
            media_ssrc,
        })
    }

    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        write_feedback(buf, FMT_PLI, PT_PSFB, self.sender_ssrc, self.media_ssrc, 0)
    }
}

/// One FIR entry: the source asked for a keyframe and the request's
/// sequence number (repeats of one request carry the same number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirEntry {
    pub ssrc: u32,
    pub seq_nr: u8,
}

/// Full intra request (PSFB FMT 4, RFC 5104 §4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fir<'a> {
    pub sender_ssrc: u32,
    /// Unused by FIR (zero); the targets are in the entries.
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Fir<'a> {
    pub fn parse(item: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, fci) = parse_feedback(item, PT_PSFB, FMT_FIR, "FIR")?;
        if fci.len() < 8 {
            return Err(RtcpError::Malformed("FIR without entries"));
        }
        Ok(Fir {
            sender_ssrc,
            media_ssrc,
            fci,
        })
    }

    pub fn entries(&self) -> impl Iterator<Item = FirEntry> + 'a {
        self.fci.chunks_exact(8).map(|c| FirEntry {
            ssrc: read_u32(c, 0),
            seq_nr: c[4],
        })
    }

    pub fn write(
        buf: &mut [u8],
        sender_ssrc: u32,
        entries: &[FirEntry],
    ) -> Result<usize, RtcpError> {
        let total = write_feedback(buf, FMT_FIR, PT_PSFB, sender_ssrc, 0, 8 * entries.len())?;
        for (i, e) in entries.iter().enumerate() {
            let at = 12 + 8 * i;
            put_u32(buf, at, e.ssrc);
            buf[at + 4] = e.seq_nr;
            buf[at + 5..at + 8].fill(0);
        }
        Ok(total)
    }
}

const REMB_ID: &[u8; 4] = b"REMB";
const REMB_MANTISSA_MAX: u64 = (1 << 18) - 1;

/// Receiver estimated maximum bitrate (PSFB FMT 15, "goog-remb").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remb<'a> {
    pub sender_ssrc: u32,
    /// Bits per second (saturates at `u64::MAX` for absurd exponents).
    pub bitrate: u64,
    ssrcs: &'a [u8],
}

impl<'a> Remb<'a> {
    /// Whether an application-layer feedback item carries REMB (other AFB
    /// messages exist and must not be treated as malformed REMB).
    pub fn is_remb(item: &[u8]) -> bool {
        item.len() >= 16
            && item[1] == PT_PSFB
            && item[0] & 0x1F == FMT_AFB
            && &item[12..16] == REMB_ID
    }

    /// Parses REMB; the media SSRC (which should be 0) is not checked.
    pub fn parse(item: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, _, fci) = parse_feedback(item, PT_PSFB, FMT_AFB, "REMB")?;
        need(fci, 8)?;
        if &fci[..4] != REMB_ID {
            return Err(RtcpError::Malformed("REMB identifier"));
        }
        let num = usize::from(fci[4]);
        let word = read_u24(fci, 5);
        let exp = word >> 18;
        let mantissa = u64::from(word) & REMB_MANTISSA_MAX;
        let bitrate = if mantissa == 0 {
            0
        } else if mantissa.leading_zeros() < exp {
            u64::MAX
        } else {
            mantissa << exp
        };
        need(fci, 8 + 4 * num)?;
        Ok(Remb {
            sender_ssrc,
            bitrate,
            ssrcs: &fci[8..8 + 4 * num],
        })
    }

    /// The media sources the estimate applies to.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| read_u32(c, 0))
    }

    /// Writes REMB for up to 255 sources. The bitrate is rounded down to
    /// what an 18-bit mantissa can express.
    pub fn write(
        buf: &mut [u8],
        sender_ssrc: u32,
        bitrate: u64,
        ssrcs: &[u32],
    ) -> Result<usize, RtcpError> {
        check_count(ssrcs.len(), 255)?;
        let total = write_feedback(buf, FMT_AFB, PT_PSFB, sender_ssrc, 0, 8 + 4 * ssrcs.len())?;
        let mut exp = 0u32;
        while (bitrate >> exp) > REMB_MANTISSA_MAX {
            exp += 1;
        }
        let mantissa = (bitrate >> exp) as u32;
        buf[12..16].copy_from_slice(REMB_ID);
        buf[16] = ssrcs.len() as u8;
        buf[17..20].copy_from_slice(&((exp << 18) | mantissa).to_be_bytes()[1..]);
        for (i, s) in ssrcs.iter().enumerate() {
            put_u32(buf, 20 + 4 * i, *s);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_items_pack_seqs_across_wrap_and_expand_back() {
        let seqs = [65534, 65535, 3, 14, 15, 40, 40, 41];
        let mut items = Vec::new();
        NackItem::from_seqs(&seqs, &mut items);
        assert_eq!(
            items,
            vec![
                // 65535 (+1), 3 (+5) and 14 (+16) fit the first window.
                NackItem {
                    pid: 65534,
                    blp: 1 | 1 << 4 | 1 << 15
                },
                NackItem { pid: 15, blp: 0 },
                NackItem { pid: 40, blp: 1 },
            ]
        );
        let mut buf = [0u8; 64];
        let n = Nack::write(&mut buf, 1, 2, &items).unwrap();
        assert_eq!(n, 24);
        let nack = Nack::parse(&buf[..n]).unwrap();
        assert_eq!((nack.sender_ssrc, nack.media_ssrc), (1, 2));
        assert_eq!(
            nack.lost_seqs().collect::<Vec<_>>(),
            vec![65534, 65535, 3, 14, 15, 40, 41]
        );
    }

    #[test]
    fn nack_item_covers_exactly_seventeen_packets() {
        let seqs: Vec<u16> = (100..=117).collect();
        let mut items = Vec::new();
        NackItem::from_seqs(&seqs, &mut items);
        assert_eq!(
            items,
            vec![
                NackItem {
                    pid: 100,
                    blp: 0xFFFF
                },
                NackItem { pid: 117, blp: 0 }
            ]
        );
        NackItem::from_seqs(&[], &mut items);
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn pli_and_fir_round_trip() {
        let mut buf = [0u8; 64];
        let pli = Pli {
            sender_ssrc: 5,
            media_ssrc: 6,
        };
        let n = pli.write(&mut buf).unwrap();
        assert_eq!(n, 12);
        assert_eq!(Pli::parse(&buf[..n]).unwrap(), pli);

        let entries = [
            FirEntry {
                ssrc: 9,
                seq_nr: 255,
            },
            FirEntry {
                ssrc: 10,
                seq_nr: 0,
            },
        ];
        let n = Fir::write(&mut buf, 5, &entries).unwrap();
        let fir = Fir::parse(&buf[..n]).unwrap();
        assert_eq!(fir.entries().collect::<Vec<_>>(), entries);
        assert!(matches!(
            Pli::parse(&buf[..n]),
            Err(RtcpError::WrongType { format: 4, .. })
        ));
    }

    #[test]
    fn remb_round_trips_bitrate_through_mantissa_and_exponent() {
        let mut buf = [0u8; 64];
        for bitrate in [0u64, 1, 262_143, 262_144, 1_500_000, 30_000_000_000] {
            let n = Remb::write(&mut buf, 1, bitrate, &[0xA, 0xB]).unwrap();
            assert!(Remb::is_remb(&buf[..n]));
            let remb = Remb::parse(&buf[..n]).unwrap();
            assert!(remb.bitrate <= bitrate);
            assert!(
                bitrate - remb.bitrate <= bitrate >> 17,
                "{bitrate} -> {}",
                remb.bitrate
            );
            assert_eq!(remb.ssrcs().collect::<Vec<_>>(), vec![0xA, 0xB]);
        }
    }

    #[test]
    fn remb_with_nonzero_media_ssrc_is_accepted() {
        let mut buf = [0u8; 64];
        let n = Remb::write(&mut buf, 1, 1000, &[2]).unwrap();
        buf[8..12].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(Remb::parse(&buf[..n]).unwrap().bitrate, 1000);
    }

    #[test]
    fn remb_with_huge_exponent_saturates() {
        let mut buf = [0u8; 64];
        let n = Remb::write(&mut buf, 1, 1000, &[]).unwrap();
        buf[17] = 0xFF; // exponent 63
        assert_eq!(Remb::parse(&buf[..n]).unwrap().bitrate, u64::MAX);
    }

    #[test]
    fn remb_ssrc_count_beyond_packet_is_truncated() {
        let mut buf = [0u8; 64];
        let n = Remb::write(&mut buf, 1, 1000, &[1]).unwrap();
        buf[16] = 3;
        assert!(matches!(
            Remb::parse(&buf[..n]),
            Err(RtcpError::Truncated { .. })
        ));
    }
}
