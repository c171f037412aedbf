//! Source description (RFC 3550 §6.5, of which we use CNAME) and BYE
//! (§6.6).

use super::header::{
    check_count, expect_type, need, put_u32, read_u32, split_item, write_header, RtcpError, PT_BYE,
    PT_SDES,
};

const SDES_END: u8 = 0;
const SDES_CNAME: u8 = 1;

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    /// `(item type, value)` pairs, validated at parse time.
    pub fn items(&self) -> impl Iterator<Item = (u8, &'a [u8])> + 'a {
        let items = self.items;
        let mut pos = 0;
        std::iter::from_fn(move || {
            let t = *items.get(pos)?;
            let len = usize::from(*items.get(pos + 1)?);
            let value = items.get(pos + 2..pos + 2 + len)?;
            pos += 2 + len;
            Some((t, value))
        })
    }

    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items()
            .find(|(t, _)| *t == SDES_CNAME)
            .map(|(_, value)| value)
    }
}

/// A parsed SDES packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceDescription<'a> {
    count: u8,
    body: &'a [u8],
}

/// Walks one chunk starting at `pos`; returns (ssrc, items range end,
/// next chunk offset).
fn walk_chunk(body: &[u8], pos: usize) -> Result<(u32, usize, usize), RtcpError> {
    need(body, pos + 4)?;
    let ssrc = read_u32(body, pos);
    let mut at = pos + 4;
    loop {
        need(body, at + 1)?;
        if body[at] == SDES_END {
            let items_end = at;
            // The chunk ends at the next 32-bit boundary after the null.
            let next = (at + 1).next_multiple_of(4);
            need(body, next)?;
            return Ok((ssrc, items_end, next));
        }
        need(body, at + 2)?;
        at += 2 + usize::from(body[at + 1]);
        need(body, at)?;
    }
}

impl<'a> SourceDescription<'a> {
    pub fn parse(item: &'a [u8]) -> Result<Self, RtcpError> {
        let (h, body) = split_item(item)?;
        expect_type(&h, PT_SDES, None, "source description")?;
        let mut pos = 0;
        for _ in 0..h.count {
            pos = walk_chunk(body, pos)?.2;
        }
        Ok(SourceDescription {
            count: h.count,
            body,
        })
    }

    pub fn chunks(&self) -> impl Iterator<Item = SdesChunk<'a>> + 'a {
        let body = self.body;
        let mut pos = 0;
        (0..self.count).map_while(move |_| {
            let (ssrc, items_end, next) = walk_chunk(body, pos).ok()?;
            let items = &body[pos + 4..items_end];
            pos = next;
            Some(SdesChunk { ssrc, items })
        })
    }

    /// Writes an SDES packet with one chunk holding a CNAME (at most 255
    /// bytes); returns its length.
    pub fn write_cname(buf: &mut [u8], ssrc: u32, cname: &[u8]) -> Result<usize, RtcpError> {
        check_count(cname.len(), 255)?;
        // header, ssrc, type, len, value, at least one null, to a word.
        let total = (4 + 4 + 2 + cname.len() + 1).next_multiple_of(4);
        write_header(buf, 1, PT_SDES, total)?;
        put_u32(buf, 4, ssrc);
        buf[8] = SDES_CNAME;
        buf[9] = cname.len() as u8;
        buf[10..10 + cname.len()].copy_from_slice(cname);
        buf[10 + cname.len()..total].fill(0);
        Ok(total)
    }
}

/// A parsed BYE packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    pub fn parse(item: &'a [u8]) -> Result<Self, RtcpError> {
        let (h, body) = split_item(item)?;
        expect_type(&h, PT_BYE, None, "BYE")?;
        let ssrcs_len = 4 * usize::from(h.count);
        need(body, ssrcs_len)?;
        let reason = match body.get(ssrcs_len) {
            Some(&len) => {
                let start = ssrcs_len + 1;
                need(body, start + usize::from(len))?;
                Some(&body[start..start + usize::from(len)])
            }
            None => None,
        };
        Ok(Bye {
            ssrcs: &body[..ssrcs_len],
            reason,
        })
    }

    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| read_u32(c, 0))
    }

    /// Writes a BYE for up to 31 sources with an optional reason (at most
    /// 255 bytes); returns its length.
    pub fn write(buf: &mut [u8], ssrcs: &[u32], reason: Option<&[u8]>) -> Result<usize, RtcpError> {
        check_count(ssrcs.len(), 31)?;
        let reason_len = match reason {
            Some(r) => {
                check_count(r.len(), 255)?;
                1 + r.len()
            }
            None => 0,
        };
        let total = (4 + 4 * ssrcs.len() + reason_len).next_multiple_of(4);
        write_header(buf, ssrcs.len() as u8, PT_BYE, total)?;
        for (i, s) in ssrcs.iter().enumerate() {
            put_u32(buf, 4 + 4 * i, *s);
        }
        let mut at = 4 + 4 * ssrcs.len();
        if let Some(r) = reason {
            buf[at] = r.len() as u8;
            buf[at + 1..at + 1 + r.len()].copy_from_slice(r);
            at += 1 + r.len();
        }
        buf[at..total].fill(0);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cname_round_trips_for_every_padding_length() {
        for len in 0..8 {
            let cname = vec![b'a' + len as u8; len];
            let mut buf = [0xFFu8; 64];
            let n = SourceDescription::write_cname(&mut buf, 42, &cname).unwrap();
            assert_eq!(n % 4, 0);
            let sdes = SourceDescription::parse(&buf[..n]).unwrap();
            let chunks: Vec<_> = sdes.chunks().collect();
            assert_eq!(chunks.len(), 1);
            assert_eq!(chunks[0].ssrc, 42);
            assert_eq!(chunks[0].cname(), Some(&cname[..]));
        }
    }

    #[test]
    fn sdes_with_two_chunks_and_other_items() {
        // chunk 1: NAME "x" + CNAME "ab", null, pad; chunk 2: CNAME "c", null.
        let mut p = vec![0x82, 202, 0, 0, 0, 0, 0, 1, 2, 1, b'x', 1, 2, b'a', b'b', 0];
        p.extend_from_slice(&[0, 0, 0, 2, 1, 1, b'c', 0]);
        p[3] = (p.len() / 4 - 1) as u8;
        let sdes = SourceDescription::parse(&p).unwrap();
        let cnames: Vec<_> = sdes.chunks().map(|c| (c.ssrc, c.cname())).collect();
        assert_eq!(cnames, vec![(1, Some(&b"ab"[..])), (2, Some(&b"c"[..]))]);
    }

    #[test]
    fn sdes_item_overrunning_the_packet_is_rejected() {
        let p = [0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', 0];
        assert!(matches!(
            SourceDescription::parse(&p),
            Err(RtcpError::Truncated { .. })
        ));
    }

    #[test]
    fn bye_round_trips_with_and_without_reason() {
        let mut buf = [0u8; 64];
        let n = Bye::write(&mut buf, &[1, 2], Some(b"gone")).unwrap();
        assert_eq!(n, 20);
        let bye = Bye::parse(&buf[..n]).unwrap();
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(bye.reason, Some(&b"gone"[..]));
        let n = Bye::write(&mut buf, &[3], None).unwrap();
        let bye = Bye::parse(&buf[..n]).unwrap();
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![3]);
        assert_eq!(bye.reason, None);
    }

    #[test]
    fn bye_reason_longer_than_packet_is_rejected() {
        let p = [0x81, 203, 0, 2, 0, 0, 0, 1, 10, b'a', b'b', b'c'];
        assert!(Bye::parse(&p).is_err());
    }
}
