//! RTX (RFC 4588) encapsulation and decapsulation into caller-provided
//! buffers: the original sequence number (OSN) rides in the first two
//! payload bytes, the header is the original's with the RTX SSRC, payload
//! type and sequence number. Padding is not carried over (RFC 4588 §4).

use thiserror::Error;

use super::packet::{RtpPacket, RtpPacketMut, RtpParseError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtxError {
    #[error("invalid RTP packet: {0}")]
    Parse(#[from] RtpParseError),
    #[error("output buffer of {available} bytes, {needed} needed")]
    BufferTooSmall { needed: usize, available: usize },
    #[error("RTX payload has no original sequence number (padding-only probe?)")]
    MissingOsn,
}

/// Header-related fields to stamp on the copy.
fn write_header(out: &mut [u8], header: &[u8], pt: u8, seq: u16, ssrc: u32) {
    out[..header.len()].copy_from_slice(header);
    // Padding is dropped, so the P bit must go too.
    out[0] &= !0x20;
    let mut m = RtpPacketMut::parse(&mut out[..header.len()])
        .expect("a header copied from a parsed packet without its P bit parses");
    m.set_payload_type(pt);
    m.set_sequence_number(seq);
    m.set_ssrc(ssrc);
}

/// Wraps `original` into an RTX packet in `out`; returns its length.
pub fn rtx_encapsulate(
    original: &[u8],
    rtx_ssrc: u32,
    rtx_payload_type: u8,
    rtx_seq: u16,
    out: &mut [u8],
) -> Result<usize, RtxError> {
    let p = RtpPacket::parse(original)?;
    let header = &original[..p.header_len()];
    let payload = p.payload();
    let needed = header.len() + 2 + payload.len();
    if out.len() < needed {
        return Err(RtxError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    }
    write_header(out, header, rtx_payload_type, rtx_seq, rtx_ssrc);
    out[header.len()..header.len() + 2].copy_from_slice(&p.sequence_number().to_be_bytes());
    out[header.len() + 2..needed].copy_from_slice(payload);
    Ok(needed)
}

/// Restores the original packet from an RTX packet into `out`; returns its
/// length.
pub fn rtx_decapsulate(
    rtx: &[u8],
    original_ssrc: u32,
    original_payload_type: u8,
    out: &mut [u8],
) -> Result<usize, RtxError> {
    let p = RtpPacket::parse(rtx)?;
    let payload = p.payload();
    if payload.len() < 2 {
        return Err(RtxError::MissingOsn);
    }
    let osn = u16::from_be_bytes([payload[0], payload[1]]);
    let header = &rtx[..p.header_len()];
    let needed = header.len() + payload.len() - 2;
    if out.len() < needed {
        return Err(RtxError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    }
    write_header(out, header, original_payload_type, osn, original_ssrc);
    out[header.len()..needed].copy_from_slice(&payload[2..]);
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet::tests::build;
    use crate::rtp::packet::ONE_BYTE_PROFILE;

    #[test]
    fn rtx_round_trip_restores_original_and_drops_padding() {
        let ext = [0x10, 0x42, 0, 0];
        let original = build(
            96,
            0xFFFF,
            1234,
            0xAAAA,
            &[7],
            Some((ONE_BYTE_PROFILE, &ext)),
            b"frame",
            4,
        );
        let mut rtx = [0u8; 1500];
        let n = rtx_encapsulate(&original, 0xBBBB, 97, 42, &mut rtx).unwrap();
        let r = RtpPacket::parse(&rtx[..n]).unwrap();
        assert_eq!(
            (r.ssrc(), r.payload_type(), r.sequence_number()),
            (0xBBBB, 97, 42)
        );
        assert_eq!(r.payload(), b"\xFF\xFFframe");
        assert_eq!(r.padding_len(), 0);
        assert_eq!(r.extension(1), Some(&[0x42][..]));
        assert_eq!(r.csrcs().collect::<Vec<_>>(), vec![7]);

        let mut back = [0u8; 1500];
        let m = rtx_decapsulate(&rtx[..n], 0xAAAA, 96, &mut back).unwrap();
        let without_padding = build(
            96,
            0xFFFF,
            1234,
            0xAAAA,
            &[7],
            Some((ONE_BYTE_PROFILE, &ext)),
            b"frame",
            0,
        );
        assert_eq!(&back[..m], &without_padding[..]);
    }

    #[test]
    fn marker_and_timestamp_survive_encapsulation() {
        let mut original = build(96, 1, 0xFEED_F00D, 1, &[], None, b"x", 0);
        original[1] |= 0x80;
        let mut rtx = [0u8; 64];
        let n = rtx_encapsulate(&original, 2, 97, 3, &mut rtx).unwrap();
        let r = RtpPacket::parse(&rtx[..n]).unwrap();
        assert!(r.marker());
        assert_eq!(r.timestamp(), 0xFEED_F00D);
    }

    #[test]
    fn padding_only_rtx_probe_has_no_osn() {
        let probe = build(97, 5, 6, 7, &[], None, &[], 255);
        let mut out = [0u8; 300];
        assert_eq!(
            rtx_decapsulate(&probe, 1, 96, &mut out),
            Err(RtxError::MissingOsn)
        );
    }

    #[test]
    fn small_output_buffer_is_an_error_not_a_panic() {
        let original = build(96, 1, 2, 3, &[], None, &[0; 100], 0);
        let mut out = [0u8; 113];
        assert_eq!(
            rtx_encapsulate(&original, 1, 2, 3, &mut out),
            Err(RtxError::BufferTooSmall {
                needed: 114,
                available: 113
            })
        );
        let mut out = [0u8; 11];
        let rtx = build(97, 1, 2, 3, &[], None, &[0, 1], 0);
        assert!(matches!(
            rtx_decapsulate(&rtx, 1, 2, &mut out),
            Err(RtxError::BufferTooSmall { needed: 12, .. })
        ));
        assert!(matches!(
            rtx_decapsulate(&[0x80, 0, 0], 1, 2, &mut out),
            Err(RtxError::Parse(RtpParseError::TooShort { len: 3 }))
        ));
    }
}
