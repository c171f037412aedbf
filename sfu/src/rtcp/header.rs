//! The RTCP common header (RFC 3550 §6.4), the error type shared by all
//! RTCP parsers and writers, and the byte helpers they use.

use thiserror::Error;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;
/// Transport-layer feedback (RFC 4585): NACK, transport-wide CC.
pub const PT_RTPFB: u8 = 205;
/// Payload-specific feedback (RFC 4585): PLI, FIR, REMB.
pub const PT_PSFB: u8 = 206;
pub const PT_XR: u8 = 207;

pub const FMT_NACK: u8 = 1;
pub const FMT_TWCC: u8 = 15;
pub const FMT_PLI: u8 = 1;
pub const FMT_FIR: u8 = 4;
/// Application layer feedback; REMB is one.
pub const FMT_AFB: u8 = 15;

/// Why RTCP bytes could not be parsed or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    #[error("RTCP data of {len} bytes is shorter than the {needed} bytes required")]
    Truncated { needed: usize, len: usize },
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    #[error("RTCP length field says {declared} bytes, only {available} remain")]
    LengthOverrun { declared: usize, available: usize },
    #[error("RTCP padding of {padding} bytes is invalid in a {len}-byte item")]
    BadPadding { padding: u8, len: usize },
    #[error("malformed RTCP {0}")]
    Malformed(&'static str),
    #[error("RTCP packet type {packet_type} format {format} is not a {expected}")]
    WrongType {
        packet_type: u8,
        format: u8,
        expected: &'static str,
    },
    #[error("output buffer of {available} bytes, {needed} needed")]
    BufferTooSmall { needed: usize, available: usize },
    #[error("{count} items exceed the {max} one RTCP packet can carry")]
    TooManyItems { count: usize, max: usize },
}

/// The 4-byte header every RTCP item starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpHeader {
    pub padding: bool,
    /// Report count, source count or feedback message type (FMT).
    pub count: u8,
    pub packet_type: u8,
    /// The length field: item length in 32-bit words minus one.
    pub length_words: u16,
}

impl RtcpHeader {
    pub const LEN: usize = 4;

    pub fn parse(buf: &[u8]) -> Result<Self, RtcpError> {
        need(buf, Self::LEN)?;
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        Ok(RtcpHeader {
            padding: buf[0] & 0x20 != 0,
            count: buf[0] & 0x1F,
            packet_type: buf[1],
            length_words: read_u16(buf, 2),
        })
    }

    /// Length of the whole item in bytes, header included.
    pub fn item_len(&self) -> usize {
        (usize::from(self.length_words) + 1) * 4
    }
}

pub(crate) fn need(buf: &[u8], needed: usize) -> Result<(), RtcpError> {
    if buf.len() < needed {
        Err(RtcpError::Truncated {
            needed,
            len: buf.len(),
        })
    } else {
        Ok(())
    }
}

pub(crate) fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn read_u24(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]])
}

pub(crate) fn read_i24(buf: &[u8], at: usize) -> i32 {
    // Shift the 24-bit value to the top and back to sign-extend it.
    (read_u24(buf, at) << 8) as i32 >> 8
}

pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

pub(crate) fn read_u64(buf: &[u8], at: usize) -> u64 {
    (u64::from(read_u32(buf, at)) << 32) | u64::from(read_u32(buf, at + 4))
}

pub(crate) fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u24(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 3].copy_from_slice(&v.to_be_bytes()[1..]);
}

pub(crate) fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// Splits one item into its header and body: the body stops where the
/// length field says (trailing bytes belong to the next item) and excludes
/// padding.
pub(crate) fn split_item(item: &[u8]) -> Result<(RtcpHeader, &[u8]), RtcpError> {
    let header = RtcpHeader::parse(item)?;
    let len = header.item_len();
    if len > item.len() {
        return Err(RtcpError::LengthOverrun {
            declared: len,
            available: item.len(),
        });
    }
    let mut end = len;
    if header.padding {
        let padding = item[len - 1];
        if padding == 0 || usize::from(padding) > len - RtcpHeader::LEN {
            return Err(RtcpError::BadPadding { padding, len });
        }
        end -= usize::from(padding);
    }
    Ok((header, &item[RtcpHeader::LEN..end]))
}

pub(crate) fn expect_type(
    header: &RtcpHeader,
    packet_type: u8,
    format: Option<u8>,
    expected: &'static str,
) -> Result<(), RtcpError> {
    if header.packet_type != packet_type || format.is_some_and(|f| f != header.count) {
        return Err(RtcpError::WrongType {
            packet_type: header.packet_type,
            format: header.count,
            expected,
        });
    }
    Ok(())
}

/// Checks room for a `total`-byte item (a multiple of 4) and writes its
/// header. Returns `total` for the writer to return.
pub(crate) fn write_header(
    buf: &mut [u8],
    count: u8,
    packet_type: u8,
    total: usize,
) -> Result<usize, RtcpError> {
    debug_assert!(total % 4 == 0 && total >= 4, "RTCP items are whole words");
    if total > 0x1_0000 * 4 {
        return Err(RtcpError::TooManyItems {
            count: total,
            max: 0x1_0000 * 4,
        });
    }
    if buf.len() < total {
        return Err(RtcpError::BufferTooSmall {
            needed: total,
            available: buf.len(),
        });
    }
    buf[0] = 0x80 | (count & 0x1F);
    buf[1] = packet_type;
    put_u16(buf, 2, (total / 4 - 1) as u16);
    Ok(total)
}

pub(crate) fn check_count(count: usize, max: usize) -> Result<(), RtcpError> {
    if count > max {
        Err(RtcpError::TooManyItems { count, max })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_reports_type_count_and_length() {
        let h = RtcpHeader::parse(&[0xA1, 201, 0, 7]).unwrap();
        assert!(h.padding);
        assert_eq!((h.count, h.packet_type, h.item_len()), (1, 201, 32));
        assert_eq!(
            RtcpHeader::parse(&[0x41, 201, 0, 7]),
            Err(RtcpError::BadVersion(1))
        );
        assert!(matches!(
            RtcpHeader::parse(&[0x80]),
            Err(RtcpError::Truncated { .. })
        ));
    }

    #[test]
    fn item_body_excludes_padding_and_trailing_bytes() {
        let item = [0xA0, 204, 0, 2, 1, 2, 3, 4, 0, 0, 0, 4, 0xEE];
        let (_, body) = split_item(&item).unwrap();
        assert_eq!(body, &[1, 2, 3, 4]);
        let bad = [0xA0, 204, 0, 1, 1, 2, 3, 9];
        assert!(matches!(
            split_item(&bad),
            Err(RtcpError::BadPadding { padding: 9, .. })
        ));
        let zero = [0xA0, 204, 0, 1, 1, 2, 3, 0];
        assert!(matches!(
            split_item(&zero),
            Err(RtcpError::BadPadding { padding: 0, .. })
        ));
        assert!(matches!(
            split_item(&[0x80, 204, 0, 5, 0, 0, 0, 0]),
            Err(RtcpError::LengthOverrun {
                declared: 24,
                available: 8
            })
        ));
    }

    #[test]
    fn signed_24_bit_values_sign_extend() {
        assert_eq!(read_i24(&[0xFF, 0xFF, 0xFF], 0), -1);
        assert_eq!(read_i24(&[0x80, 0, 0], 0), -0x80_0000);
        assert_eq!(read_i24(&[0x7F, 0xFF, 0xFF], 0), 0x7F_FFFF);
    }
}
