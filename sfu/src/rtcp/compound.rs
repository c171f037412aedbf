//! Splitting a compound RTCP packet into its items and dispatching each to
//! its parser. Items are framed by their own length fields and parsed
//! independently, so one malformed item (say an unknown AFB message) is
//! reported on its own and the rest of the compound is still used. Only a
//! broken frame (bad version, length past the end) ends the walk, since the
//! next item's start is then unknown.

use super::feedback::{Fir, Nack, Pli, Remb};
use super::header::{
    RtcpError, RtcpHeader, FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, FMT_TWCC, PT_BYE, PT_PSFB, PT_RR,
    PT_RTPFB, PT_SDES, PT_SR, PT_XR,
};
use super::report::{ReceiverReport, SenderReport};
use super::sdes_bye::{Bye, SourceDescription};
use super::twcc::TransportCc;
use super::xr::ExtendedReport;

/// One parsed RTCP item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport(ReceiverReport<'a>),
    SourceDescription(SourceDescription<'a>),
    Bye(Bye<'a>),
    Nack(Nack<'a>),
    TransportCc(TransportCc<'a>),
    Pli(Pli),
    Fir(Fir<'a>),
    Remb(Remb<'a>),
    ExtendedReport(ExtendedReport<'a>),
    /// Well framed but of a type or format we do not interpret (APP, SLI,
    /// non-REMB AFB, ...).
    Other {
        header: RtcpHeader,
        item: &'a [u8],
    },
}

impl<'a> RtcpPacket<'a> {
    /// Parses one item (as yielded by [`split_compound`]).
    pub fn parse(item: &'a [u8]) -> Result<Self, RtcpError> {
        let header = RtcpHeader::parse(item)?;
        Ok(match (header.packet_type, header.count) {
            (PT_SR, _) => RtcpPacket::SenderReport(SenderReport::parse(item)?),
            (PT_RR, _) => RtcpPacket::ReceiverReport(ReceiverReport::parse(item)?),
            (PT_SDES, _) => RtcpPacket::SourceDescription(SourceDescription::parse(item)?),
            (PT_BYE, _) => RtcpPacket::Bye(Bye::parse(item)?),
            (PT_RTPFB, FMT_NACK) => RtcpPacket::Nack(Nack::parse(item)?),
            (PT_RTPFB, FMT_TWCC) => RtcpPacket::TransportCc(TransportCc::parse(item)?),
            (PT_PSFB, FMT_PLI) => RtcpPacket::Pli(Pli::parse(item)?),
            (PT_PSFB, FMT_FIR) => RtcpPacket::Fir(Fir::parse(item)?),
            (PT_PSFB, FMT_AFB) if Remb::is_remb(item) => RtcpPacket::Remb(Remb::parse(item)?),
            (PT_XR, _) => RtcpPacket::ExtendedReport(ExtendedReport::parse(item)?),
            _ => RtcpPacket::Other { header, item },
        })
    }
}

/// Iterator over the raw items of a compound packet; see [`split_compound`].
#[derive(Debug, Clone)]
pub struct RtcpItems<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RtcpItems<'a> {
    type Item = Result<&'a [u8], RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let header = match RtcpHeader::parse(self.rest) {
            Ok(h) => h,
            Err(e) => {
                self.rest = &[];
                return Some(Err(e));
            }
        };
        let len = header.item_len();
        if len > self.rest.len() {
            let available = self.rest.len();
            self.rest = &[];
            return Some(Err(RtcpError::LengthOverrun {
                declared: len,
                available,
            }));
        }
        let (item, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(Ok(item))
    }
}

/// Splits a compound packet into items by their length fields. A framing
/// error is yielded once and ends the iteration.
pub fn split_compound(buf: &[u8]) -> RtcpItems<'_> {
    RtcpItems { rest: buf }
}

/// Splits and parses a compound packet: each item is `Ok` or its own
/// error, and iteration carries on past malformed items.
pub fn parse_compound(buf: &[u8]) -> impl Iterator<Item = Result<RtcpPacket<'_>, RtcpError>> {
    split_compound(buf).map(|item| item.and_then(RtcpPacket::parse))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::feedback::NackItem;
    use crate::rtcp::report::{ReportBlock, SenderInfo};
    use crate::rtcp::NtpTime;

    fn compound_with_bad_middle() -> Vec<u8> {
        let mut out = vec![0u8; 256];
        let mut n = SenderReport::write(
            &mut out,
            1,
            &SenderInfo {
                ntp: NtpTime(5 << 32),
                rtp_timestamp: 1,
                packet_count: 2,
                octet_count: 3,
            },
            &[ReportBlock::default()],
        )
        .unwrap();
        // An AFB that claims to be REMB but is cut short inside its own
        // correctly framed item: 3 SSRCs announced, none present.
        let bad = [
            0x8F, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 3, 0, 0, 1,
        ];
        out[n..n + bad.len()].copy_from_slice(&bad);
        n += bad.len();
        n += Nack::write(&mut out[n..], 1, 2, &[NackItem { pid: 7, blp: 1 }]).unwrap();
        n += Pli {
            sender_ssrc: 1,
            media_ssrc: 2,
        }
        .write(&mut out[n..])
        .unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn one_bad_item_in_the_middle_does_not_reject_the_compound() {
        let buf = compound_with_bad_middle();
        let items: Vec<_> = parse_compound(&buf).collect();
        assert_eq!(items.len(), 4);
        assert!(matches!(items[0], Ok(RtcpPacket::SenderReport(_))));
        assert!(matches!(items[1], Err(RtcpError::Truncated { .. })));
        let Ok(RtcpPacket::Nack(nack)) = items[2] else {
            panic!("expected NACK, got {:?}", items[2]);
        };
        assert_eq!(nack.lost_seqs().collect::<Vec<_>>(), vec![7, 8]);
        assert_eq!(
            items[3],
            Ok(RtcpPacket::Pli(Pli {
                sender_ssrc: 1,
                media_ssrc: 2
            }))
        );
    }

    #[test]
    fn non_remb_afb_is_other_not_an_error() {
        let afb = [
            0x8F, 206, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, b'X', b'Y', b'Z', b'W',
        ];
        assert!(matches!(
            RtcpPacket::parse(&afb),
            Ok(RtcpPacket::Other {
                header: RtcpHeader {
                    packet_type: 206,
                    count: 15,
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn truncated_tail_yields_items_then_one_framing_error() {
        let buf = compound_with_bad_middle();
        let cut = &buf[..buf.len() - 3];
        let items: Vec<_> = split_compound(cut).collect();
        assert_eq!(items.len(), 4);
        assert!(items[..3].iter().all(|i| i.is_ok()));
        assert!(matches!(items[3], Err(RtcpError::LengthOverrun { .. })));
        let garbage = [0x00, 0x01, 0x02];
        let items: Vec<_> = split_compound(&garbage).collect();
        assert_eq!(items, vec![Err(RtcpError::Truncated { needed: 4, len: 3 })]);
    }

    #[test]
    fn bad_version_ends_the_walk() {
        let mut buf = compound_with_bad_middle();
        let second = 52;
        buf[second] = 0x4F;
        let items: Vec<_> = split_compound(&buf).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1], Err(RtcpError::BadVersion(1)));
    }

    #[test]
    fn padding_on_the_last_item_is_honoured() {
        let mut buf = vec![0u8; 16];
        let n = Pli {
            sender_ssrc: 3,
            media_ssrc: 4,
        }
        .write(&mut buf)
        .unwrap();
        buf[0] |= 0x20;
        buf[3] = 3; // 16 bytes
        buf[15] = 4;
        let items: Vec<_> = parse_compound(&buf).collect();
        assert_eq!(n, 12);
        assert_eq!(
            items,
            vec![Ok(RtcpPacket::Pli(Pli {
                sender_ssrc: 3,
                media_ssrc: 4
            }))]
        );
    }
}
