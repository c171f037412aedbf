//! What a run sends: the synthetic presenter's streams (SSRCs, payload
//! types, encodings and their target bitrates), fixed before any signalling
//! so that both SFUs under test receive exactly the same media.

/// VP8 payload type the presenter uses (and offers to Janus).
pub const VP8_PAYLOAD_TYPE: u8 = 96;
/// Opus payload type.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
pub const VIDEO_CLOCK_RATE: u32 = 90_000;
pub const AUDIO_CLOCK_RATE: u32 = 48_000;

/// One simulcast encoding of the presenter's camera.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodingPlan {
    pub ssrc: u32,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
}

/// Everything the presenter sends.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlan {
    /// Lowest resolution first, as simulcast encodings are ordered.
    pub encodings: Vec<EncodingPlan>,
    pub audio_ssrc: u32,
    pub audio_bitrate_kbps: u32,
    pub frame_rate: u32,
    /// Key frame interval of every encoding.
    pub key_frame_interval_frames: u32,
}

impl MediaPlan {
    /// Three encodings at the given bitrates (kbps, lowest first), scaled
    /// down by 2 from 1280x720 per layer, as browsers do.
    pub fn simulcast(bitrates_kbps: &[u32], audio_bitrate_kbps: u32) -> MediaPlan {
        let count = bitrates_kbps.len() as u32;
        let encodings = bitrates_kbps
            .iter()
            .enumerate()
            .map(|(i, &bitrate_kbps)| {
                let scale = 1 << (count - 1 - i as u32);
                EncodingPlan {
                    ssrc: 0x1000_0000 + i as u32,
                    width: 1280 / scale,
                    height: 720 / scale,
                    bitrate_kbps,
                }
            })
            .collect();
        MediaPlan {
            encodings,
            audio_ssrc: 0x2000_0000,
            audio_bitrate_kbps,
            frame_rate: 30,
            key_frame_interval_frames: 60,
        }
    }
}
