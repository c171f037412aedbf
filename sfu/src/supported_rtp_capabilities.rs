//! What the engine can route: the codecs and header extensions a router may
//! be configured with, in the role of mediasoup's `supportedRtpCapabilities`.
//!
//! These are not what a browser loads (`device.load()` takes a router's
//! capabilities, built from these by
//! [`generate_router_rtp_capabilities`](crate::ortc::generate_router_rtp_capabilities)).
//! Codecs here carry no payload types; the router assigns them. Each header
//! extension's `direction` says what the engine does with it: `recvonly`
//! ones are read from producers but never written towards consumers.

use crate::rtp_parameters::{
    header_extension_uri as uri, MediaKind, ParameterMap, ParameterValue, RtcpFeedback,
    RtpCapabilities, RtpCodecCapability, RtpHeaderExtension, RtpHeaderExtensionDirection,
};

/// The H.264 `profile-level-id`s the engine offers, all at level 3.1 with
/// level asymmetry allowed (so a higher level from a browser still matches):
/// Constrained Baseline (what every browser encodes), Baseline, Main and
/// High.
pub const H264_PROFILE_LEVEL_IDS: [&str; 4] = ["42e01f", "42001f", "4d001f", "64001f"];

/// The engine's capabilities: audio/opus, video/VP8, video/VP9 (profiles 0
/// and 2), video/H264 (packetization-mode 1, the profiles in
/// [`H264_PROFILE_LEVEL_IDS`]) and the header extensions it understands.
pub fn supported_rtp_capabilities() -> RtpCapabilities {
    let mut codecs = vec![RtpCodecCapability {
        kind: MediaKind::Audio,
        mime_type: "audio/opus".to_owned(),
        preferred_payload_type: None,
        clock_rate: 48_000,
        channels: Some(2),
        // Carried into the router's capabilities and from there into the
        // answer mediasoup-client gives the browser for its sender, which is
        // what makes a browser send in-band FEC.
        parameters: parameters(&[("minptime", 10.into()), ("useinbandfec", 1.into())]),
        // Audio is never retransmitted: a late audio packet is useless to the
        // jitter buffer, so no NACK.
        rtcp_feedback: vec![RtcpFeedback::new("transport-cc", "")],
    }];
    codecs.push(video_codec("video/VP8", ParameterMap::new()));
    for profile_id in [0, 2] {
        codecs.push(video_codec(
            "video/VP9",
            parameters(&[("profile-id", profile_id.into())]),
        ));
    }
    for profile_level_id in H264_PROFILE_LEVEL_IDS {
        codecs.push(video_codec(
            "video/H264",
            parameters(&[
                ("level-asymmetry-allowed", 1.into()),
                ("packetization-mode", 1.into()),
                ("profile-level-id", profile_level_id.into()),
            ]),
        ));
    }

    use MediaKind::{Audio, Video};
    use RtpHeaderExtensionDirection::{Recvonly, Sendrecv};
    // Ids follow mediasoup's, so that logs and captures read the same.
    let header_extensions = [
        (Audio, uri::MID, 1, Sendrecv),
        (Video, uri::MID, 1, Sendrecv),
        // RIDs identify a producer's simulcast streams; a consumer gets one
        // stream with its own SSRC and needs none.
        (Video, uri::RTP_STREAM_ID, 2, Recvonly),
        (Video, uri::REPAIRED_RTP_STREAM_ID, 3, Recvonly),
        (Audio, uri::ABS_SEND_TIME, 4, Sendrecv),
        (Video, uri::ABS_SEND_TIME, 4, Sendrecv),
        // Bandwidth towards audio-only consumers is not estimated, so
        // transport-cc for audio is only received (to estimate a producer's
        // uplink).
        (Audio, uri::TRANSPORT_WIDE_CC_01, 5, Recvonly),
        (Video, uri::TRANSPORT_WIDE_CC_01, 5, Sendrecv),
        (Audio, uri::SSRC_AUDIO_LEVEL, 10, Sendrecv),
        (Video, uri::VIDEO_ORIENTATION, 11, Sendrecv),
        (Video, uri::TOFFSET, 12, Sendrecv),
        (Audio, uri::ABS_CAPTURE_TIME, 13, Sendrecv),
        (Video, uri::ABS_CAPTURE_TIME, 13, Sendrecv),
        (Audio, uri::PLAYOUT_DELAY, 14, Sendrecv),
        (Video, uri::PLAYOUT_DELAY, 14, Sendrecv),
    ]
    .into_iter()
    .map(|(kind, uri, preferred_id, direction)| RtpHeaderExtension {
        kind,
        uri: uri.to_owned(),
        preferred_id,
        preferred_encrypt: false,
        direction,
    })
    .collect();

    RtpCapabilities {
        codecs,
        header_extensions,
    }
}

fn video_codec(mime_type: &str, parameters: ParameterMap) -> RtpCodecCapability {
    RtpCodecCapability {
        kind: MediaKind::Video,
        mime_type: mime_type.to_owned(),
        preferred_payload_type: None,
        clock_rate: 90_000,
        channels: None,
        parameters,
        rtcp_feedback: vec![
            RtcpFeedback::new("nack", ""),
            RtcpFeedback::new("nack", "pli"),
            RtcpFeedback::new("ccm", "fir"),
            RtcpFeedback::new("goog-remb", ""),
            RtcpFeedback::new("transport-cc", ""),
        ],
    }
}

fn parameters(entries: &[(&str, ParameterValue)]) -> ParameterMap {
    entries
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn codecs_named(mime_type: &str) -> Vec<RtpCodecCapability> {
        supported_rtp_capabilities()
            .codecs
            .into_iter()
            .filter(|codec| codec.mime_type == mime_type)
            .collect()
    }

    #[test]
    fn opus_is_stereo_48khz_with_inband_fec() {
        let opus = codecs_named("audio/opus");
        assert_eq!(opus.len(), 1);
        assert_eq!(opus[0].clock_rate, 48_000);
        assert_eq!(opus[0].channels, Some(2));
        assert_eq!(
            opus[0].parameters["useinbandfec"],
            ParameterValue::Integer(1)
        );
        assert!(!opus[0].rtcp_feedback.iter().any(|fb| fb.r#type == "nack"));
    }

    #[test]
    fn every_video_codec_offers_nack_pli_fir_remb_and_transport_cc() {
        let caps = supported_rtp_capabilities();
        let video: Vec<_> = caps
            .codecs
            .iter()
            .filter(|codec| codec.kind == MediaKind::Video)
            .collect();
        assert_eq!(video.len(), 1 + 2 + H264_PROFILE_LEVEL_IDS.len());
        for codec in video {
            assert_eq!(codec.clock_rate, 90_000);
            assert_eq!(codec.channels, None);
            for (r#type, parameter) in [
                ("nack", ""),
                ("nack", "pli"),
                ("ccm", "fir"),
                ("goog-remb", ""),
                ("transport-cc", ""),
            ] {
                assert!(
                    codec
                        .rtcp_feedback
                        .contains(&RtcpFeedback::new(r#type, parameter)),
                    "{} lacks {type} {parameter}",
                    codec.mime_type
                );
            }
        }
    }

    #[test]
    fn h264_variants_use_packetization_mode_1_and_distinct_profiles() {
        let h264 = codecs_named("video/H264");
        let profiles: HashSet<_> = h264
            .iter()
            .map(|codec| codec.parameters["profile-level-id"].to_string())
            .collect();
        assert_eq!(profiles.len(), H264_PROFILE_LEVEL_IDS.len());
        for codec in &h264 {
            assert_eq!(codec.parameters["packetization-mode"].as_integer(), Some(1));
        }
        let vp9_profiles: Vec<_> = codecs_named("video/VP9")
            .iter()
            .map(|codec| codec.parameters["profile-id"].as_integer())
            .collect();
        assert_eq!(vp9_profiles, [Some(0), Some(2)]);
    }

    #[test]
    fn no_codec_has_a_payload_type_before_a_router_assigns_one() {
        assert!(supported_rtp_capabilities()
            .codecs
            .iter()
            .all(|codec| codec.preferred_payload_type.is_none()));
    }

    #[test]
    fn each_header_extension_uri_has_one_id_across_kinds_and_ids_are_unique() {
        let caps = supported_rtp_capabilities();
        let mut id_of_uri: HashMap<&str, u8> = HashMap::new();
        let mut uri_of_id: HashMap<u8, &str> = HashMap::new();
        for ext in &caps.header_extensions {
            assert_eq!(
                *id_of_uri.entry(&ext.uri).or_insert(ext.preferred_id),
                ext.preferred_id
            );
            assert_eq!(
                *uri_of_id.entry(ext.preferred_id).or_insert(&ext.uri),
                ext.uri
            );
            assert!((1..=14).contains(&ext.preferred_id), "one-byte header id");
        }
        assert_eq!(id_of_uri[uri::MID], 1);
        assert_eq!(id_of_uri[uri::TRANSPORT_WIDE_CC_01], 5);
        assert_eq!(id_of_uri[uri::SSRC_AUDIO_LEVEL], 10);
    }

    #[test]
    fn rid_extensions_are_only_received() {
        let caps = supported_rtp_capabilities();
        for ext in &caps.header_extensions {
            let expected = if ext.uri == uri::RTP_STREAM_ID
                || ext.uri == uri::REPAIRED_RTP_STREAM_ID
                || (ext.uri == uri::TRANSPORT_WIDE_CC_01 && ext.kind == MediaKind::Audio)
            {
                RtpHeaderExtensionDirection::Recvonly
            } else {
                RtpHeaderExtensionDirection::Sendrecv
            };
            assert_eq!(ext.direction, expected, "{} {}", ext.kind, ext.uri);
        }
    }

    #[test]
    fn all_named_header_extensions_are_supported() {
        let caps = supported_rtp_capabilities();
        for name in [
            uri::MID,
            uri::RTP_STREAM_ID,
            uri::REPAIRED_RTP_STREAM_ID,
            uri::ABS_SEND_TIME,
            uri::TRANSPORT_WIDE_CC_01,
            uri::SSRC_AUDIO_LEVEL,
            uri::VIDEO_ORIENTATION,
            uri::TOFFSET,
            uri::ABS_CAPTURE_TIME,
            uri::PLAYOUT_DELAY,
        ] {
            assert!(
                caps.header_extensions.iter().any(|ext| ext.uri == name),
                "{name}"
            );
        }
    }
}
