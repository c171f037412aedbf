//! VP9 payload descriptor (RFC 9628 §4.2): layer indices for SVC layer
//! selection and keyframe detection. The scalability structure is walked
//! only to find where the VP9 payload starts.

use super::{need, CodecError};
use crate::rtp::codecs::PictureId;

/// One packet's VP9 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9Descriptor {
    /// P: inter-picture predicted.
    pub inter_picture_predicted: bool,
    /// F: flexible mode.
    pub flexible: bool,
    /// B: first packet of a layer frame.
    pub start_of_frame: bool,
    /// E: last packet of a layer frame.
    pub end_of_frame: bool,
    /// Z: not used for inter-layer prediction by the next spatial layer.
    pub not_reference_for_upper_layer: bool,
    pub picture_id: Option<PictureId>,
    /// TID, present when L=1.
    pub temporal_id: Option<u8>,
    /// SID, present when L=1.
    pub spatial_id: Option<u8>,
    /// U: switching up point (L=1).
    pub switching_up: bool,
    /// D: inter-layer dependency (L=1).
    pub inter_layer_dependency: bool,
    /// Present in non-flexible mode with L=1.
    pub tl0_pic_idx: Option<u8>,
    /// Number of spatial layers announced by a scalability structure (V=1).
    pub ss_spatial_layers: Option<u8>,
    /// Descriptor length: the VP9 payload starts here.
    pub len: usize,
    /// Start of a key frame of the base spatial layer.
    pub is_keyframe: bool,
}

impl Vp9Descriptor {
    /// Parses the descriptor at the start of an RTP payload.
    pub fn parse(payload: &[u8]) -> Result<Self, CodecError> {
        need(payload, 1)?;
        let b0 = payload[0];
        let has_i = b0 & 0x80 != 0;
        let has_l = b0 & 0x20 != 0;
        let has_v = b0 & 0x02 != 0;
        let mut d = Vp9Descriptor {
            inter_picture_predicted: b0 & 0x40 != 0,
            flexible: b0 & 0x10 != 0,
            start_of_frame: b0 & 0x08 != 0,
            end_of_frame: b0 & 0x04 != 0,
            not_reference_for_upper_layer: b0 & 0x01 != 0,
            picture_id: None,
            temporal_id: None,
            spatial_id: None,
            switching_up: false,
            inter_layer_dependency: false,
            tl0_pic_idx: None,
            ss_spatial_layers: None,
            len: 1,
            is_keyframe: false,
        };
        let mut off = 1;
        if has_i {
            need(payload, off + 1)?;
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
            let b = payload[off];
            off += 1;
            d.temporal_id = Some(b >> 5);
            d.switching_up = b & 0x10 != 0;
            d.spatial_id = Some((b >> 1) & 0x07);
            d.inter_layer_dependency = b & 0x01 != 0;
            if !d.flexible {
                need(payload, off + 1)?;
                d.tl0_pic_idx = Some(payload[off]);
                off += 1;
            }
        }
        if d.flexible && d.inter_picture_predicted {
            // Up to three reference indices, each with a "more follow" bit.
            for _ in 0..3 {
                need(payload, off + 1)?;
                let more = payload[off] & 0x01 != 0;
                off += 1;
                if !more {
                    break;
                }
            }
        }
        if has_v {
            need(payload, off + 1)?;
            let b = payload[off];
            off += 1;
            let n_s = (b >> 5) + 1;
            d.ss_spatial_layers = Some(n_s);
            if b & 0x10 != 0 {
                off += 4 * usize::from(n_s);
            }
            if b & 0x08 != 0 {
                need(payload, off + 1)?;
                let n_g = payload[off];
                off += 1;
                for _ in 0..n_g {
                    need(payload, off + 1)?;
                    let refs = usize::from((payload[off] >> 2) & 0x03);
                    off += 1 + refs;
                }
            }
            need(payload, off)?;
        }
        d.len = off;
        d.is_keyframe =
            !d.inter_picture_predicted && d.start_of_frame && d.spatial_id.unwrap_or(0) == 0;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_non_flexible_layer_indices_and_tl0() {
        // I (15-bit), L, B; TID=2 U=1 SID=1 D=1; TL0=9.
        let p = [0xA8, 0x81, 0x02, 0b0101_0011, 9, 0xFF];
        let d = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x102,
                long: true
            })
        );
        assert_eq!(d.temporal_id, Some(2));
        assert!(d.switching_up);
        assert_eq!(d.spatial_id, Some(1));
        assert!(d.inter_layer_dependency);
        assert_eq!(d.tl0_pic_idx, Some(9));
        assert_eq!(d.len, 5);
        // SID 1: not the base layer's keyframe.
        assert!(!d.is_keyframe);
    }

    #[test]
    fn base_layer_start_without_inter_prediction_is_keyframe() {
        let d = Vp9Descriptor::parse(&[0x88, 0x05, 0xAB]).unwrap();
        assert!(d.is_keyframe);
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 5,
                long: false
            })
        );
        let d = Vp9Descriptor::parse(&[0xC8, 0x05, 0xAB]).unwrap();
        assert!(!d.is_keyframe);
    }

    #[test]
    fn flexible_mode_skips_reference_indices() {
        // I (7-bit), P, L, F, B; layer byte; two P_DIFFs (first with N=1).
        let p = [0xF8, 0x10, 0x00, 0x03, 0x04, 0xEE];
        let d = Vp9Descriptor::parse(&p).unwrap();
        assert!(d.flexible);
        assert_eq!(d.tl0_pic_idx, None);
        assert_eq!(d.len, 5);
    }

    #[test]
    fn scalability_structure_is_skipped_to_the_payload() {
        // B, V; SS: N_S=2 (value 1), Y, G; 2x(w,h); N_G=1; one entry, R=1, one P_DIFF.
        let p = [
            0x0A,
            0b0011_1000,
            1,
            0x40,
            0,
            0xB4,
            2,
            0x80,
            1,
            0x68,
            1,
            0b0000_0100,
            1,
            0x9D,
        ];
        let d = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(d.ss_spatial_layers, Some(2));
        assert_eq!(d.len, 13);
        assert!(d.is_keyframe);
    }

    #[test]
    fn truncated_descriptors_are_errors() {
        assert!(Vp9Descriptor::parse(&[]).is_err());
        assert!(Vp9Descriptor::parse(&[0x80]).is_err());
        assert!(Vp9Descriptor::parse(&[0x80, 0x80]).is_err());
        assert!(Vp9Descriptor::parse(&[0x20, 0x00]).is_err());
        assert!(Vp9Descriptor::parse(&[0x50, 0x01]).is_err());
        assert!(Vp9Descriptor::parse(&[0x02, 0x10, 0, 0]).is_err());
        assert!(Vp9Descriptor::parse(&[0x02, 0x08, 2, 0x04]).is_err());
    }
}
