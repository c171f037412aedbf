//! H.264 keyframe detection over the RFC 6184 packetisation modes a browser
//! sends: single NAL unit, STAP-A aggregation and FU-A fragmentation.

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

fn starts_keyframe(nal_type: u8) -> bool {
    // An SPS only precedes an IDR in practice; counting it lets a STAP-A of
    // SPS+PPS (sent separately by some encoders) mark the frame start.
    nal_type == NAL_IDR || nal_type == NAL_SPS
}

/// Whether an H.264 RTP payload starts (or is part of the start of) a
/// keyframe: an IDR or SPS NAL unit, alone, inside a STAP-A, or as the first
/// FU-A fragment.
pub fn h264_is_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1F {
        NAL_STAP_A => {
            let mut off = 1;
            while off + 2 < payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[off], payload[off + 1]]));
                off += 2;
                if size == 0 || off + size > payload.len() {
                    return false;
                }
                if starts_keyframe(payload[off] & 0x1F) {
                    return true;
                }
                off += size;
            }
            false
        }
        NAL_FU_A => payload
            .get(1)
            .is_some_and(|h| h & 0x80 != 0 && starts_keyframe(h & 0x1F)),
        t => starts_keyframe(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_nal_idr_and_sps_are_keyframes() {
        assert!(h264_is_keyframe(&[0x65, 0x88]));
        assert!(h264_is_keyframe(&[0x67, 0x42]));
        assert!(!h264_is_keyframe(&[0x41, 0x9A]));
        assert!(!h264_is_keyframe(&[]));
    }

    #[test]
    fn stap_a_with_idr_inside_is_keyframe() {
        // STAP-A: PPS (size 2), IDR (size 2).
        assert!(h264_is_keyframe(&[
            0x78, 0, 2, 0x68, 0xCE, 0, 2, 0x65, 0x88
        ]));
        assert!(!h264_is_keyframe(&[
            0x78, 0, 2, 0x68, 0xCE, 0, 2, 0x41, 0x88
        ]));
        // Second unit's size overruns: not a keyframe, no panic.
        assert!(!h264_is_keyframe(&[0x78, 0, 2, 0x68, 0xCE, 0, 9, 0x65]));
        assert!(!h264_is_keyframe(&[0x78, 0]));
    }

    #[test]
    fn only_the_first_fu_a_fragment_of_an_idr_is_keyframe() {
        assert!(h264_is_keyframe(&[0x7C, 0x85, 0xAA]));
        assert!(!h264_is_keyframe(&[0x7C, 0x05, 0xAA]));
        assert!(!h264_is_keyframe(&[0x7C, 0x81, 0xAA]));
        assert!(!h264_is_keyframe(&[0x7C]));
    }
}
