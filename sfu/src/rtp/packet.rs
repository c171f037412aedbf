//! Zero-copy RTP packet views (RFC 3550 §5.1) with RFC 8285 header
//! extensions, and in-place rewriting of the fields a consumer changes.
//!
//! The packet bytes are never copied or re-marshalled: padding, CSRCs and
//! unknown extensions survive a rewrite byte for byte, which is what a
//! padding-only bandwidth probe needs (a re-marshalling parser would drop its
//! padding).

use thiserror::Error;

/// Fixed RTP header length, before CSRCs and extensions.
pub const RTP_HEADER_LEN: usize = 12;

/// Profile of the RFC 8285 one-byte header extension form.
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// Profile of the RFC 8285 two-byte header extension form (low 4 bits are
/// "appbits", which we ignore).
pub const TWO_BYTE_PROFILE: u16 = 0x1000;

/// Why a buffer is not a well-formed RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpParseError {
    #[error("packet of {len} bytes is shorter than the 12-byte RTP header")]
    TooShort { len: usize },
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("{csrc_count} CSRCs do not fit in a packet of {len} bytes")]
    CsrcOverrun { csrc_count: u8, len: usize },
    #[error("header extension of {needed} bytes does not fit in a packet of {len} bytes")]
    ExtensionOverrun { needed: usize, len: usize },
    #[error("padding length {padding} is invalid with {available} bytes after the header")]
    BadPadding { padding: u8, available: usize },
}

/// Why an extension value could not be overwritten in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ExtensionWriteError {
    #[error("no header extension with id {0}")]
    NotFound(u8),
    #[error("extension id {id} holds {existing} bytes, cannot write {new} in place")]
    LengthMismatch { id: u8, existing: usize, new: usize },
}

/// Why header extension ids could not be remapped in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ExtensionRemapError {
    #[error("extension id {from} maps to {to}, which the packet's {form:?} form cannot carry")]
    IdOutOfRange {
        from: u8,
        to: u8,
        form: ExtensionForm,
    },
}

/// Which RFC 8285 form a packet's extension block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionForm {
    /// Profile 0xBEDE: ids 1..=14, values of 1..=16 bytes.
    OneByte,
    /// Profile 0x100X: ids 1..=255, values of 0..=255 bytes.
    TwoByte,
    /// An extension block with some other profile: opaque to us.
    Other(u16),
}

impl ExtensionForm {
    fn from_profile(profile: u16) -> Self {
        if profile == ONE_BYTE_PROFILE {
            ExtensionForm::OneByte
        } else if profile & 0xFFF0 == TWO_BYTE_PROFILE {
            ExtensionForm::TwoByte
        } else {
            ExtensionForm::Other(profile)
        }
    }

    fn id_fits(self, id: u8) -> bool {
        match self {
            ExtensionForm::OneByte => (1..=14).contains(&id),
            ExtensionForm::TwoByte => id >= 1,
            ExtensionForm::Other(_) => false,
        }
    }
}

/// One header extension element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    pub id: u8,
    pub value: &'a [u8],
}

/// Where things are inside a validated packet; shared by both views so that
/// the mutable view never re-validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Offset of the payload: fixed header + CSRCs + extension block.
    header_len: usize,
    /// (profile, offset of the extension data, length of the data).
    extension: Option<(u16, usize, usize)>,
    padding_len: usize,
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn parse_layout(buf: &[u8]) -> Result<Layout, RtpParseError> {
    let len = buf.len();
    if len < RTP_HEADER_LEN {
        return Err(RtpParseError::TooShort { len });
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpParseError::BadVersion(version));
    }
    let csrc_count = buf[0] & 0x0F;
    let mut header_len = RTP_HEADER_LEN + 4 * usize::from(csrc_count);
    if header_len > len {
        return Err(RtpParseError::CsrcOverrun { csrc_count, len });
    }
    let mut extension = None;
    if buf[0] & 0x10 != 0 {
        if header_len + 4 > len {
            return Err(RtpParseError::ExtensionOverrun { needed: 4, len });
        }
        let profile = read_u16(buf, header_len);
        let data_len = 4 * usize::from(read_u16(buf, header_len + 2));
        let data_start = header_len + 4;
        if data_start + data_len > len {
            return Err(RtpParseError::ExtensionOverrun {
                needed: 4 + data_len,
                len,
            });
        }
        extension = Some((profile, data_start, data_len));
        // The payload offset always comes from the block's length field, not
        // from how far element parsing got (an id-15 element stops parsing).
        header_len = data_start + data_len;
    }
    let mut padding_len = 0;
    if buf[0] & 0x20 != 0 {
        let padding = buf[len - 1];
        let available = len - header_len;
        if padding == 0 || usize::from(padding) > available {
            return Err(RtpParseError::BadPadding { padding, available });
        }
        padding_len = usize::from(padding);
    }
    Ok(Layout {
        header_len,
        extension,
        padding_len,
    })
}

/// Walks the elements of an extension block. Yields `(id, value_offset,
/// value_len, element_offset)` with offsets relative to the block's data.
#[derive(Debug, Clone)]
struct ElementWalker {
    form: ExtensionForm,
    pos: usize,
    end: usize,
}

impl ElementWalker {
    fn next(&mut self, data: &[u8]) -> Option<(u8, usize, usize, usize)> {
        let end = self.end.min(data.len());
        loop {
            if self.pos >= end {
                return None;
            }
            let start = self.pos;
            let b = data[start];
            match self.form {
                ExtensionForm::OneByte => {
                    let id = b >> 4;
                    // Id 0 is padding whatever its length nibble says
                    // (as libwebrtc reads it).
                    if id == 0 {
                        self.pos += 1;
                        continue;
                    }
                    // RFC 8285 §4.2: id 15 is reserved; parsing stops there.
                    if id == 15 {
                        self.pos = end;
                        return None;
                    }
                    let value_len = usize::from(b & 0x0F) + 1;
                    let value_start = start + 1;
                    if value_start + value_len > end {
                        self.pos = end;
                        return None;
                    }
                    self.pos = value_start + value_len;
                    return Some((id, value_start, value_len, start));
                }
                ExtensionForm::TwoByte => {
                    if b == 0 {
                        self.pos += 1;
                        continue;
                    }
                    if start + 2 > end {
                        self.pos = end;
                        return None;
                    }
                    let value_len = usize::from(data[start + 1]);
                    let value_start = start + 2;
                    if value_start + value_len > end {
                        self.pos = end;
                        return None;
                    }
                    self.pos = value_start + value_len;
                    return Some((b, value_start, value_len, start));
                }
                ExtensionForm::Other(_) => return None,
            }
        }
    }
}

/// Iterator over a packet's RFC 8285 header extensions.
#[derive(Debug, Clone)]
pub struct HeaderExtensions<'a> {
    data: &'a [u8],
    walker: ElementWalker,
}

impl<'a> Iterator for HeaderExtensions<'a> {
    type Item = HeaderExtension<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (id, start, len, _) = self.walker.next(self.data)?;
        Some(HeaderExtension {
            id,
            value: &self.data[start..start + len],
        })
    }
}

/// A validated, read-only RTP packet over borrowed bytes.
#[derive(Debug, Clone, Copy)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    layout: Layout,
}

impl<'a> RtpPacket<'a> {
    /// Validates `buf` as an RTP packet. Never panics.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpParseError> {
        let layout = parse_layout(buf)?;
        Ok(RtpPacket { buf, layout })
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Always false for a valid packet; here for the `len` convention.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn has_padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }

    pub fn has_extension(&self) -> bool {
        self.layout.extension.is_some()
    }

    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7F
    }

    pub fn sequence_number(&self) -> u16 {
        read_u16(self.buf, 2)
    }

    pub fn timestamp(&self) -> u32 {
        read_u32(self.buf, 4)
    }

    pub fn ssrc(&self) -> u32 {
        read_u32(self.buf, 8)
    }

    pub fn csrc_count(&self) -> usize {
        usize::from(self.buf[0] & 0x0F)
    }

    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let buf = self.buf;
        (0..self.csrc_count()).map(move |i| read_u32(buf, RTP_HEADER_LEN + 4 * i))
    }

    /// The extension block's profile, if the packet has one.
    pub fn extension_profile(&self) -> Option<u16> {
        self.layout.extension.map(|(profile, _, _)| profile)
    }

    pub fn extension_form(&self) -> Option<ExtensionForm> {
        self.extension_profile().map(ExtensionForm::from_profile)
    }

    /// RFC 8285 elements; empty for packets without a block or with a
    /// non-RFC 8285 profile.
    pub fn extensions(&self) -> HeaderExtensions<'a> {
        match self.layout.extension {
            Some((profile, start, len)) => HeaderExtensions {
                data: &self.buf[start..start + len],
                walker: ElementWalker {
                    form: ExtensionForm::from_profile(profile),
                    pos: 0,
                    end: len,
                },
            },
            None => HeaderExtensions {
                data: &[],
                walker: ElementWalker {
                    form: ExtensionForm::Other(0),
                    pos: 0,
                    end: 0,
                },
            },
        }
    }

    /// The value of the first extension element with `id`.
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        self.extensions().find(|e| e.id == id).map(|e| e.value)
    }

    /// Offset of the payload (fixed header + CSRCs + extension block).
    pub fn header_len(&self) -> usize {
        self.layout.header_len
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.layout.header_len..self.buf.len() - self.layout.padding_len]
    }

    /// Number of padding bytes at the end, including the count byte itself.
    pub fn padding_len(&self) -> usize {
        self.layout.padding_len
    }
}

/// A validated RTP packet over mutable bytes, for in-place rewriting.
#[derive(Debug)]
pub struct RtpPacketMut<'a> {
    buf: &'a mut [u8],
    layout: Layout,
}

impl<'a> RtpPacketMut<'a> {
    /// Validates `buf` as an RTP packet. Never panics.
    pub fn parse(buf: &'a mut [u8]) -> Result<Self, RtpParseError> {
        let layout = parse_layout(buf)?;
        Ok(RtpPacketMut { buf, layout })
    }

    /// A read-only view of the same bytes, for the accessors.
    pub fn view(&self) -> RtpPacket<'_> {
        RtpPacket {
            buf: self.buf,
            layout: self.layout,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf
    }

    pub fn set_marker(&mut self, marker: bool) {
        self.buf[1] = (self.buf[1] & 0x7F) | if marker { 0x80 } else { 0 };
    }

    /// Sets the 7-bit payload type; the high bit of `pt` is ignored since
    /// it would clobber the marker.
    pub fn set_payload_type(&mut self, pt: u8) {
        self.buf[1] = (self.buf[1] & 0x80) | (pt & 0x7F);
    }

    pub fn set_sequence_number(&mut self, seq: u16) {
        self.buf[2..4].copy_from_slice(&seq.to_be_bytes());
    }

    pub fn set_timestamp(&mut self, ts: u32) {
        self.buf[4..8].copy_from_slice(&ts.to_be_bytes());
    }

    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.buf.len() - self.layout.padding_len;
        &mut self.buf[self.layout.header_len..end]
    }

    fn extension_data_mut(&mut self) -> Option<(ExtensionForm, &mut [u8])> {
        let (profile, start, len) = self.layout.extension?;
        Some((
            ExtensionForm::from_profile(profile),
            &mut self.buf[start..start + len],
        ))
    }

    /// The value bytes of the first extension element with `id`.
    pub fn extension_mut(&mut self, id: u8) -> Option<&mut [u8]> {
        let (form, data) = self.extension_data_mut()?;
        let mut walker = ElementWalker {
            form,
            pos: 0,
            end: data.len(),
        };
        while let Some((found, start, len, _)) = walker.next(data) {
            if found == id {
                return Some(&mut data[start..start + len]);
            }
        }
        None
    }

    /// Overwrites the value of an existing extension of the same length
    /// (e.g. a transport-wide sequence number or abs-send-time).
    pub fn set_extension(&mut self, id: u8, value: &[u8]) -> Result<(), ExtensionWriteError> {
        let slot = self
            .extension_mut(id)
            .ok_or(ExtensionWriteError::NotFound(id))?;
        if slot.len() != value.len() {
            return Err(ExtensionWriteError::LengthMismatch {
                id,
                existing: slot.len(),
                new: value.len(),
            });
        }
        slot.copy_from_slice(value);
        Ok(())
    }

    /// Rewrites extension ids in place: each element's id becomes
    /// `map(id)`; an element mapped to `None` is blanked into padding bytes
    /// (zeros are padding in both RFC 8285 forms), so the receiver never sees
    /// an extension it did not negotiate. Nothing is changed when a new id
    /// does not fit the packet's form. `map` is called twice per element.
    pub fn remap_extension_ids(
        &mut self,
        map: impl Fn(u8) -> Option<u8>,
    ) -> Result<(), ExtensionRemapError> {
        let Some((form, data)) = self.extension_data_mut() else {
            return Ok(());
        };
        if matches!(form, ExtensionForm::Other(_)) {
            return Ok(());
        }
        let mut walker = ElementWalker {
            form,
            pos: 0,
            end: data.len(),
        };
        while let Some((id, _, _, _)) = walker.next(data) {
            if let Some(to) = map(id) {
                if !form.id_fits(to) {
                    return Err(ExtensionRemapError::IdOutOfRange { from: id, to, form });
                }
            }
        }
        let mut walker = ElementWalker {
            form,
            pos: 0,
            end: data.len(),
        };
        while let Some((id, value_start, value_len, element_start)) = walker.next(data) {
            match map(id) {
                Some(to) => match form {
                    ExtensionForm::OneByte => {
                        data[element_start] = (to << 4) | (data[element_start] & 0x0F);
                    }
                    _ => data[element_start] = to,
                },
                None => data[element_start..value_start + value_len].fill(0),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    /// Builds a packet for tests: fixed header, CSRCs, raw extension block
    /// (profile + data padded by the caller to 4 bytes), payload, padding.
    pub(crate) fn build(
        pt: u8,
        seq: u16,
        ts: u32,
        ssrc: u32,
        csrcs: &[u32],
        ext: Option<(u16, &[u8])>,
        payload: &[u8],
        padding: u8,
    ) -> Vec<u8> {
        let mut b = vec![0x80 | csrcs.len() as u8, pt, 0, 0];
        b[2..4].copy_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&ssrc.to_be_bytes());
        for c in csrcs {
            b.extend_from_slice(&c.to_be_bytes());
        }
        if let Some((profile, data)) = ext {
            assert_eq!(
                data.len() % 4,
                0,
                "test extension data must be word aligned"
            );
            b[0] |= 0x10;
            b.extend_from_slice(&profile.to_be_bytes());
            b.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
            b.extend_from_slice(data);
        }
        b.extend_from_slice(payload);
        if padding > 0 {
            b[0] |= 0x20;
            b.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
            b.push(padding);
        }
        b
    }

    #[test]
    fn reads_fixed_header_fields() {
        let b = build(111, 0xABCD, 0x0102_0304, 0xDEAD_BEEF, &[], None, &[9, 9], 0);
        let mut b2 = b.clone();
        b2[1] |= 0x80;
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.payload_type(), 111);
        assert!(!p.marker());
        assert_eq!(p.sequence_number(), 0xABCD);
        assert_eq!(p.timestamp(), 0x0102_0304);
        assert_eq!(p.ssrc(), 0xDEAD_BEEF);
        assert_eq!(p.payload(), &[9, 9]);
        assert_eq!(p.header_len(), 12);
        assert!(RtpPacket::parse(&b2).unwrap().marker());
    }

    #[test]
    fn reads_csrcs_and_places_payload_after_them() {
        let b = build(96, 1, 2, 3, &[10, 20, 30], None, b"hello", 0);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![10, 20, 30]);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload(), b"hello");
    }

    #[test]
    fn rejects_short_wrong_version_and_overruns() {
        assert_eq!(
            RtpPacket::parse(&[0x80; 11]).unwrap_err(),
            RtpParseError::TooShort { len: 11 }
        );
        let mut b = build(96, 1, 2, 3, &[], None, &[], 0);
        b[0] = 0x40;
        assert_eq!(
            RtpPacket::parse(&b).unwrap_err(),
            RtpParseError::BadVersion(1)
        );
        let mut b = build(96, 1, 2, 3, &[], None, &[1, 2, 3, 4], 0);
        b[0] |= 2; // claims two CSRCs, only 4 bytes follow
        assert!(matches!(
            RtpPacket::parse(&b),
            Err(RtpParseError::CsrcOverrun { csrc_count: 2, .. })
        ));
        let b = build(
            96,
            1,
            2,
            3,
            &[],
            Some((ONE_BYTE_PROFILE, &[0x10, 1, 2, 0])),
            &[],
            0,
        );
        assert!(matches!(
            RtpPacket::parse(&b[..b.len() - 1]),
            Err(RtpParseError::ExtensionOverrun { .. })
        ));
        let mut b = build(96, 1, 2, 3, &[], None, &[], 0);
        b[0] |= 0x10; // extension bit with no room for the block header
        assert!(matches!(
            RtpPacket::parse(&b),
            Err(RtpParseError::ExtensionOverrun { needed: 4, .. })
        ));
    }

    #[test]
    fn rejects_zero_or_oversized_padding() {
        let mut b = build(96, 1, 2, 3, &[], None, &[1, 2, 3], 0);
        b[0] |= 0x20;
        *b.last_mut().unwrap() = 0;
        assert!(matches!(
            RtpPacket::parse(&b),
            Err(RtpParseError::BadPadding { padding: 0, .. })
        ));
        *b.last_mut().unwrap() = 4;
        assert_eq!(
            RtpPacket::parse(&b).unwrap_err(),
            RtpParseError::BadPadding {
                padding: 4,
                available: 3
            }
        );
    }

    #[test]
    fn padding_only_probe_keeps_its_255_padding_bytes_through_rewrite() {
        let mut b = build(96, 7, 8, 9, &[], None, &[], 255);
        assert_eq!(b.len(), 267);
        {
            let p = RtpPacket::parse(&b).unwrap();
            assert_eq!(p.padding_len(), 255);
            assert!(p.payload().is_empty());
        }
        let mut m = RtpPacketMut::parse(&mut b).unwrap();
        m.set_ssrc(0x1111_2222);
        m.set_sequence_number(65535);
        assert_eq!(m.view().padding_len(), 255);
        assert_eq!(b.len(), 267);
        assert_eq!(b[266], 255);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!((p.ssrc(), p.sequence_number()), (0x1111_2222, 65535));
    }

    #[test]
    fn one_byte_extensions_are_found_with_padding_between() {
        // id 1 len 1, padding byte, id 3 len 3, then padding to a word.
        let ext = [0x10, 0xAA, 0x00, 0x32, 1, 2, 3, 0];
        let b = build(96, 1, 2, 3, &[], Some((ONE_BYTE_PROFILE, &ext)), b"pl", 0);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.extension_form(), Some(ExtensionForm::OneByte));
        let all: Vec<_> = p.extensions().map(|e| (e.id, e.value.to_vec())).collect();
        assert_eq!(all, vec![(1, vec![0xAA]), (3, vec![1, 2, 3])]);
        assert_eq!(p.extension(3), Some(&[1u8, 2, 3][..]));
        assert_eq!(p.extension(2), None);
        assert_eq!(p.payload(), b"pl");
    }

    #[test]
    fn id_15_stops_extension_parsing_but_payload_offset_follows_length_field() {
        // id 1 (1 byte), then id 15 in the middle, then bytes that would look
        // like id 2 if parsing continued.
        let ext = [0x10, 0xAA, 0xF0, 0x20, 0xBB, 0, 0, 0];
        let b = build(
            96,
            1,
            2,
            3,
            &[],
            Some((ONE_BYTE_PROFILE, &ext)),
            b"media",
            0,
        );
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.extensions().count(), 1);
        assert_eq!(p.extension(2), None);
        assert_eq!(p.header_len(), 12 + 4 + 8);
        assert_eq!(p.payload(), b"media");
    }

    #[test]
    fn one_byte_id_0_is_a_single_padding_byte_whatever_its_length_nibble() {
        // 0x05 would be "id 0, 6 bytes"; it must skip one byte only.
        let ext = [0x05, 0x10, 0xAA, 0];
        let b = build(96, 1, 2, 3, &[], Some((ONE_BYTE_PROFILE, &ext)), &[], 0);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.extension(1), Some(&[0xAA][..]));
    }

    #[test]
    fn two_byte_extensions_allow_zero_length_and_large_ids() {
        let ext = [200, 0, 0, 7, 2, 0xDE, 0xAD, 0];
        let b = build(96, 1, 2, 3, &[], Some((0x1003, &ext)), b"x", 0);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.extension_form(), Some(ExtensionForm::TwoByte));
        let all: Vec<_> = p.extensions().map(|e| (e.id, e.value.to_vec())).collect();
        assert_eq!(all, vec![(200, vec![]), (7, vec![0xDE, 0xAD])]);
    }

    #[test]
    fn unknown_extension_profile_is_opaque_but_skipped() {
        let b = build(96, 1, 2, 3, &[], Some((0x1234, &[1, 2, 3, 4])), b"p", 0);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.extension_form(), Some(ExtensionForm::Other(0x1234)));
        assert_eq!(p.extensions().count(), 0);
        assert_eq!(p.payload(), b"p");
    }

    #[test]
    fn element_overrunning_the_block_ends_iteration_without_panic() {
        // id 1 claims 16 bytes in a 4-byte block.
        let b = build(
            96,
            1,
            2,
            3,
            &[],
            Some((ONE_BYTE_PROFILE, &[0x1F, 1, 2, 3])),
            &[],
            0,
        );
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.extensions().count(), 0);
        let b = build(
            96,
            1,
            2,
            3,
            &[],
            Some((TWO_BYTE_PROFILE, &[0, 0, 0, 5])),
            &[],
            0,
        );
        assert_eq!(RtpPacket::parse(&b).unwrap().extensions().count(), 0);
    }

    #[test]
    fn rewrites_header_fields_in_place_leaving_the_rest_untouched() {
        let ext = [0x10, 0xAA, 0, 0];
        let orig = build(
            96,
            10,
            20,
            30,
            &[5],
            Some((ONE_BYTE_PROFILE, &ext)),
            b"abc",
            3,
        );
        let mut b = orig.clone();
        let mut m = RtpPacketMut::parse(&mut b).unwrap();
        m.set_ssrc(0xCAFE_BABE);
        m.set_sequence_number(0xFFFF);
        m.set_timestamp(0xFFFF_FFFF);
        m.set_payload_type(0xFF);
        m.set_marker(true);
        m.payload_mut().copy_from_slice(b"xyz");
        let v = m.view();
        assert_eq!(v.payload_type(), 0x7F);
        assert!(v.marker());
        m.set_marker(false);
        m.set_payload_type(100);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.ssrc(), 0xCAFE_BABE);
        assert_eq!(p.sequence_number(), 0xFFFF);
        assert_eq!(p.timestamp(), 0xFFFF_FFFF);
        assert_eq!(p.payload_type(), 100);
        assert!(!p.marker());
        assert_eq!(p.payload(), b"xyz");
        assert_eq!(p.padding_len(), 3);
        assert_eq!(&b[12..orig.len() - 6], &orig[12..orig.len() - 6]);
    }

    #[test]
    fn overwrites_extension_value_of_same_length_only() {
        let ext = [0x21, 0x00, 0x01, 0];
        let mut b = build(96, 1, 2, 3, &[], Some((ONE_BYTE_PROFILE, &ext)), b"p", 0);
        let mut m = RtpPacketMut::parse(&mut b).unwrap();
        m.set_extension(2, &[0xBE, 0xEF]).unwrap();
        assert_eq!(
            m.set_extension(2, &[1, 2, 3]),
            Err(ExtensionWriteError::LengthMismatch {
                id: 2,
                existing: 2,
                new: 3
            })
        );
        assert_eq!(
            m.set_extension(4, &[1]),
            Err(ExtensionWriteError::NotFound(4))
        );
        assert_eq!(m.view().extension(2), Some(&[0xBE, 0xEF][..]));
    }

    #[test]
    fn remaps_extension_ids_and_blanks_unmapped_ones() {
        let ext = [0x10, 0xAA, 0x31, 1, 2, 0x50, 0xCC, 0];
        let mut b = build(96, 1, 2, 3, &[], Some((ONE_BYTE_PROFILE, &ext)), b"pl", 0);
        let mut m = RtpPacketMut::parse(&mut b).unwrap();
        m.remap_extension_ids(|id| match id {
            1 => Some(4),
            3 => None,
            5 => Some(1),
            _ => Some(id),
        })
        .unwrap();
        let p = RtpPacket::parse(&b).unwrap();
        let all: Vec<_> = p.extensions().map(|e| (e.id, e.value.to_vec())).collect();
        assert_eq!(all, vec![(4, vec![0xAA]), (1, vec![0xCC])]);
        assert_eq!(p.payload(), b"pl");
    }

    #[test]
    fn remap_to_id_outside_the_form_changes_nothing() {
        let ext = [0x10, 0xAA, 0x20, 0xBB];
        let mut b = build(96, 1, 2, 3, &[], Some((ONE_BYTE_PROFILE, &ext)), &[], 0);
        let before = b.clone();
        let mut m = RtpPacketMut::parse(&mut b).unwrap();
        let err = m
            .remap_extension_ids(|id| if id == 2 { Some(15) } else { Some(id) })
            .unwrap_err();
        assert_eq!(
            err,
            ExtensionRemapError::IdOutOfRange {
                from: 2,
                to: 15,
                form: ExtensionForm::OneByte
            }
        );
        assert_eq!(b, before);
    }

    #[test]
    fn remaps_two_byte_ids_above_14() {
        let ext = [3, 1, 0x77, 0];
        let mut b = build(96, 1, 2, 3, &[], Some((TWO_BYTE_PROFILE, &ext)), &[], 0);
        RtpPacketMut::parse(&mut b)
            .unwrap()
            .remap_extension_ids(|_| Some(100))
            .unwrap();
        assert_eq!(
            RtpPacket::parse(&b).unwrap().extension(100),
            Some(&[0x77][..])
        );
    }
}
