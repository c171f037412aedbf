//! Shared support for the SFU's integration tests.
//!
//! Every test binary that declares `mod support;` compiles all of it but uses
//! only a part, so unused items are expected here and not warned about.
#![allow(dead_code)]

pub mod peer;

/// An SRTP RTP datagram (RFC 7983 first byte; RFC 5761 keeps RTCP packet
/// types 192..=223 apart from RTP's marker and payload type byte).
pub fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12
        && (128..=191).contains(&datagram[0])
        && !(192..=223).contains(&datagram[1])
}

/// The SSRC and sequence number of an SRTP RTP datagram (both in the
/// clear).
pub fn rtp_ids(datagram: &[u8]) -> Option<(u32, u16)> {
    is_rtp(datagram).then(|| {
        (
            u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]),
            u16::from_be_bytes([datagram[2], datagram[3]]),
        )
    })
}
