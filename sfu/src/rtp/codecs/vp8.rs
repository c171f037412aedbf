//! VP8 payload descriptor (RFC 7741 §4.2): parsing, keyframe detection and
//! in-place picture-id / TL0PICIDX rewriting for temporal layer dropping and
//! simulcast switching.

use super::{need, CodecError};

/// A VP8 picture id and the width it is carried in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureId {
    pub value: u16,
    /// 15-bit (M=1) rather than 7-bit.
    pub long: bool,
}

/// One packet's VP8 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// X: extension byte present.
    pub extended: bool,
    /// N: the frame can be discarded without affecting others.
    pub non_reference: bool,
    /// S: first packet of a partition.
    pub start_of_partition: bool,
    /// PID: partition index.
    pub partition_index: u8,
    pub picture_id: Option<PictureId>,
    pub tl0_pic_idx: Option<u8>,
    /// TID, present when T=1.
    pub temporal_id: Option<u8>,
    /// Y: layer sync (only meaningful when T=1).
    pub layer_sync: bool,
    /// KEYIDX, present when K=1.
    pub key_index: Option<u8>,
    /// Descriptor length: the VP8 payload starts here.
    pub len: usize,
    /// First packet of a key frame (S=1, PID=0, P bit of the VP8 payload
    /// header clear).
    pub is_keyframe: bool,
    picture_id_offset: usize,
    tl0_offset: usize,
}

impl Vp8Descriptor {
    /// Parses the descriptor at the start of an RTP payload.
    pub fn parse(payload: &[u8]) -> Result<Self, CodecError> {
        need(payload, 1)?;
        let b0 = payload[0];
        let mut d = Vp8Descriptor {
            extended: b0 & 0x80 != 0,
            non_reference: b0 & 0x20 != 0,
            start_of_partition: b0 & 0x10 != 0,
            partition_index: b0 & 0x07,
            picture_id: None,
            tl0_pic_idx: None,
            temporal_id: None,
            layer_sync: false,
            key_index: None,
            len: 1,
            is_keyframe: false,
            picture_id_offset: 0,
            tl0_offset: 0,
        };
        let mut off = 1;
        if d.extended {
            need(payload, off + 1)?;
            let x = payload[off];
            off += 1;
            let (has_i, has_l, has_t, has_k) =
                (x & 0x80 != 0, x & 0x40 != 0, x & 0x20 != 0, x & 0x10 != 0);
            if has_i {
                need(payload, off + 1)?;
                d.picture_id_offset = off;
                if payload[off] & 0x80 != 0 {
                    need(payload, off + 2)?;
                    let value = u16::from_be_bytes([payload[off] & 0x7F, payload[off + 1]]);
                    d.picture_id = Some(PictureId { value, long: true });
                    off += 2;
                } else {
                    d.picture_id = Some(PictureId {
                        value: u16::from(payload[off]),
                        long: false,
                    });
                    off += 1;
                }
            }
            if has_l {
                need(payload, off + 1)?;
                d.tl0_offset = off;
                d.tl0_pic_idx = Some(payload[off]);
                off += 1;
            }
            if has_t || has_k {
                need(payload, off + 1)?;
                let b = payload[off];
                off += 1;
                if has_t {
                    d.temporal_id = Some(b >> 6);
                    d.layer_sync = b & 0x20 != 0;
                }
                if has_k {
                    d.key_index = Some(b & 0x1F);
                }
            }
        }
        d.len = off;
        d.is_keyframe = d.start_of_partition
            && d.partition_index == 0
            && payload.get(off).is_some_and(|h| h & 0x01 == 0);
        Ok(d)
    }

    /// Overwrites the picture id in `payload` (the payload this descriptor
    /// was parsed from), keeping its width: a 7-bit id gets the low 7 bits.
    pub fn set_picture_id(&self, payload: &mut [u8], value: u16) -> Result<(), CodecError> {
        let pid = self
            .picture_id
            .ok_or(CodecError::FieldAbsent("picture id"))?;
        let off = self.picture_id_offset;
        if pid.long {
            need(payload, off + 2)?;
            let v = (value & 0x7FFF) | 0x8000;
            payload[off..off + 2].copy_from_slice(&v.to_be_bytes());
        } else {
            need(payload, off + 1)?;
            payload[off] = (value & 0x7F) as u8;
        }
        Ok(())
    }

    /// Overwrites TL0PICIDX in `payload` (the payload this descriptor was
    /// parsed from).
    pub fn set_tl0_pic_idx(&self, payload: &mut [u8], value: u8) -> Result<(), CodecError> {
        if self.tl0_pic_idx.is_none() {
            return Err(CodecError::FieldAbsent("TL0PICIDX"));
        }
        need(payload, self.tl0_offset + 1)?;
        payload[self.tl0_offset] = value;
        Ok(())
    }
}

const PID_MASK: u16 = 0x7FFF;

fn pid_is_newer(a: u16, b: u16) -> bool {
    let d = a.wrapping_sub(b) & PID_MASK;
    d != 0 && d < 0x4000
}

/// Per-consumer VP8 picture-id and TL0PICIDX continuity (mediasoup's VP8
/// encoding context): after [`Vp8Rewriter::sync`] (simulcast switch) both
/// continue from the last output + 1, and pictures dropped with
/// [`Vp8Rewriter::drop_picture`] (temporal layer dropping) leave no gap in
/// picture ids, which the decoder would otherwise take for loss.
#[derive(Debug, Clone, Default)]
pub struct Vp8Rewriter {
    sync_pending: bool,
    started: bool,
    /// output = input - offset, in 15-bit space.
    pic_offset: u16,
    max_pic_in: u16,
    last_pic_out: u16,
    tl0_offset: u8,
    last_tl0_out: u8,
}

impl Vp8Rewriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next packet comes from a different stream.
    pub fn sync(&mut self) {
        self.sync_pending = true;
    }

    /// Pictures newer than all seen so far are dropped: later ones shift
    /// down to close the gap.
    pub fn drop_picture(&mut self, picture_id: u16) {
        let pid = picture_id & PID_MASK;
        if self.started && !self.sync_pending && pid_is_newer(pid, self.max_pic_in) {
            self.pic_offset = self.pic_offset.wrapping_add(1) & PID_MASK;
            self.max_pic_in = pid;
        }
    }

    /// Rewrites the packet's picture id and TL0PICIDX in place.
    pub fn rewrite(&mut self, payload: &mut [u8], desc: &Vp8Descriptor) -> Result<(), CodecError> {
        if let Some(pid) = desc.picture_id {
            let pid_in = pid.value & PID_MASK;
            if !self.started {
                self.started = true;
                self.sync_pending = false;
                self.pic_offset = 0;
                self.max_pic_in = pid_in;
                self.last_pic_out = pid_in;
                if let Some(tl0) = desc.tl0_pic_idx {
                    self.tl0_offset = 0;
                    self.last_tl0_out = tl0;
                }
            } else if self.sync_pending {
                self.sync_pending = false;
                let out = self.last_pic_out.wrapping_add(1) & PID_MASK;
                self.pic_offset = pid_in.wrapping_sub(out) & PID_MASK;
                self.max_pic_in = pid_in;
                if let Some(tl0) = desc.tl0_pic_idx {
                    self.tl0_offset = tl0.wrapping_sub(self.last_tl0_out.wrapping_add(1));
                }
            }
            let out = pid_in.wrapping_sub(self.pic_offset) & PID_MASK;
            if pid_is_newer(pid_in, self.max_pic_in) {
                self.max_pic_in = pid_in;
            }
            if pid_is_newer(out, self.last_pic_out) {
                self.last_pic_out = out;
            }
            desc.set_picture_id(payload, out)?;
        }
        if let Some(tl0) = desc.tl0_pic_idx {
            let out = tl0.wrapping_sub(self.tl0_offset);
            if out.wrapping_sub(self.last_tl0_out) < 0x80 {
                self.last_tl0_out = out;
            }
            desc.set_tl0_pic_idx(payload, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// X=1, I with 15-bit id, L, T/K, then a keyframe VP8 header byte.
    fn full(pid: u16, tl0: u8, key: bool) -> Vec<u8> {
        let p = (pid | 0x8000).to_be_bytes();
        vec![
            0x90,
            0xF0,
            p[0],
            p[1],
            tl0,
            0b1010_0011,
            if key { 0x10 } else { 0x11 },
            0xAA,
        ]
    }

    #[test]
    fn parses_all_optional_fields() {
        let d = Vp8Descriptor::parse(&full(0x1234, 5, true)).unwrap();
        assert!(d.extended && d.start_of_partition && !d.non_reference);
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x1234,
                long: true
            })
        );
        assert_eq!(d.tl0_pic_idx, Some(5));
        assert_eq!(d.temporal_id, Some(2));
        assert!(d.layer_sync);
        assert_eq!(d.key_index, Some(3));
        assert_eq!(d.len, 6);
        assert!(d.is_keyframe);
        assert!(
            !Vp8Descriptor::parse(&full(0x1234, 5, false))
                .unwrap()
                .is_keyframe
        );
    }

    #[test]
    fn fields_absent_when_x_is_clear_even_after_a_full_packet() {
        let _ = Vp8Descriptor::parse(&full(0x1234, 5, true)).unwrap();
        let d = Vp8Descriptor::parse(&[0x10, 0x00, 0x01]).unwrap();
        assert_eq!(d.picture_id, None);
        assert_eq!(d.tl0_pic_idx, None);
        assert_eq!(d.temporal_id, None);
        assert_eq!(d.key_index, None);
        assert_eq!(d.len, 1);
        assert!(d.is_keyframe);
    }

    #[test]
    fn seven_bit_picture_id_and_k_without_t() {
        let d = Vp8Descriptor::parse(&[0x80, 0x90, 0x7F, 0x1F]).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x7F,
                long: false
            })
        );
        assert_eq!(d.temporal_id, None);
        assert_eq!(d.key_index, Some(0x1F));
        assert_eq!(d.len, 4);
        // No VP8 payload byte after the descriptor: not a keyframe.
        assert!(!d.is_keyframe);
    }

    #[test]
    fn non_start_or_non_zero_partition_is_not_keyframe() {
        assert!(!Vp8Descriptor::parse(&[0x00, 0x00]).unwrap().is_keyframe);
        assert!(!Vp8Descriptor::parse(&[0x11, 0x00]).unwrap().is_keyframe);
    }

    #[test]
    fn truncated_descriptors_are_errors() {
        assert!(Vp8Descriptor::parse(&[]).is_err());
        assert!(Vp8Descriptor::parse(&[0x80]).is_err());
        assert!(Vp8Descriptor::parse(&[0x80, 0x80, 0x80]).is_err());
        assert!(Vp8Descriptor::parse(&[0x80, 0x40]).is_err());
        assert_eq!(
            Vp8Descriptor::parse(&[0x80, 0x20]),
            Err(CodecError::Truncated { needed: 3, len: 2 })
        );
    }

    #[test]
    fn rewrites_picture_id_and_tl0_in_place() {
        let mut p = full(0x1234, 5, true);
        let d = Vp8Descriptor::parse(&p).unwrap();
        d.set_picture_id(&mut p, 0x7FFF).unwrap();
        d.set_tl0_pic_idx(&mut p, 200).unwrap();
        let d2 = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(d2.picture_id.unwrap().value, 0x7FFF);
        assert_eq!(d2.tl0_pic_idx, Some(200));
        assert_eq!(d2.temporal_id, Some(2));
        assert_eq!(&p[6..], &[0x10, 0xAA]);

        let mut short = vec![0x80, 0x80, 0x05];
        let d = Vp8Descriptor::parse(&short).unwrap();
        d.set_picture_id(&mut short, 0x1FF).unwrap();
        assert_eq!(short[2], 0x7F);
        assert_eq!(
            d.set_tl0_pic_idx(&mut short, 1),
            Err(CodecError::FieldAbsent("TL0PICIDX"))
        );
    }

    #[test]
    fn rewriter_continues_ids_across_switch_and_closes_dropped_pictures() {
        let mut r = Vp8Rewriter::new();
        let out = |r: &mut Vp8Rewriter, pid: u16, tl0: u8| {
            let mut p = full(pid, tl0, false);
            let d = Vp8Descriptor::parse(&p).unwrap();
            r.rewrite(&mut p, &d).unwrap();
            let d = Vp8Descriptor::parse(&p).unwrap();
            (d.picture_id.unwrap().value, d.tl0_pic_idx.unwrap())
        };
        assert_eq!(out(&mut r, 0x7FFE, 255), (0x7FFE, 255));
        assert_eq!(out(&mut r, 0x7FFF, 255), (0x7FFF, 255));
        // Picture 0 is a TL1 frame that the consumer drops.
        r.drop_picture(0);
        assert_eq!(out(&mut r, 1, 0), (0, 0));
        r.sync();
        assert_eq!(out(&mut r, 500, 77), (1, 1));
        assert_eq!(out(&mut r, 500, 77), (1, 1));
        assert_eq!(out(&mut r, 501, 78), (2, 2));
    }
}
