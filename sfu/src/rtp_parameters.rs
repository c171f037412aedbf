//! mediasoup's RTP vocabulary: capabilities (what an endpoint or router can
//! receive) and parameters (what one stream actually uses), as the JSON that
//! `mediasoup-client` sends and expects, field for field.
//!
//! This module owns only the shapes and their (de)serialisation; semantic
//! checks and the negotiation between shapes live in [`crate::ortc`].
//!
//! Serialisation rules, chosen to match what mediasoup emits after its own
//! validation: optional scalars (`ssrc`, `rid`, `preferredPayloadType`, ...)
//! are skipped when absent, never written as `null`; collections and fields
//! that mediasoup fills with a default (`parameters: {}`, `rtcpFeedback: []`,
//! `encrypt: false`, `reducedSize: true`, `parameter: ""`) are always written.
//! Unknown fields (a browser's `active`, `maxFramerate`, `rtcp.mux`, ...) are
//! accepted and dropped, because mediasoup-client forwards whatever the
//! application put into its encodings.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The header extension URIs the engine knows, spelled as mediasoup spells
/// them.
pub mod header_extension_uri {
    /// BUNDLE media identification (RFC 8843).
    pub const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
    /// RID of a simulcast stream (RFC 8852).
    pub const RTP_STREAM_ID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
    /// RID of the stream an RTX stream repairs (RFC 8852).
    pub const REPAIRED_RTP_STREAM_ID: &str =
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
    /// Send time for receive-side (REMB) bandwidth estimation.
    pub const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
    /// Transport-wide sequence number for send-side (transport-cc) estimation.
    pub const TRANSPORT_WIDE_CC_01: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    /// Audio level of the packet (RFC 6464), used by the level observers.
    pub const SSRC_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
    /// Coordination of video orientation (3GPP TS 26.114).
    pub const VIDEO_ORIENTATION: &str = "urn:3gpp:video-orientation";
    /// Transmission time offset (RFC 5450).
    pub const TOFFSET: &str = "urn:ietf:params:rtp-hdrext:toffset";
    /// Capture time in the sender's NTP clock.
    pub const ABS_CAPTURE_TIME: &str =
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time";
    /// Sender's hint for the receiver's jitter buffer delay.
    pub const PLAYOUT_DELAY: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
}

/// Media kind: `"audio"` or `"video"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    /// The JSON and MIME spelling (`"audio"`, `"video"`).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }

    /// The kind named by the type part of a MIME type (`"video/VP8"` ->
    /// video), case-insensitively, if the subtype is non-empty.
    pub fn from_mime_type(mime_type: &str) -> Option<MediaKind> {
        let (kind, subtype) = mime_type.split_once('/')?;
        if subtype.is_empty() {
            return None;
        }
        if kind.eq_ignore_ascii_case("audio") {
            Some(MediaKind::Audio)
        } else if kind.eq_ignore_ascii_case("video") {
            Some(MediaKind::Video)
        } else {
            None
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One value of a codec's or header extension's `parameters` object. SDP
/// fmtp values reach JSON (through sdp-transform in the browser) as numbers
/// when they look numeric and as strings otherwise, so both are kept as they
/// came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParameterValue {
    Integer(i64),
    Float(f64),
    String(String),
}

impl ParameterValue {
    /// The value as an integer: an integer, or a string of decimal digits
    /// (SDP does not distinguish `"1"` from `1`).
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            ParameterValue::Integer(value) => Some(*value),
            ParameterValue::String(value) => value.trim().parse().ok(),
            ParameterValue::Float(_) => None,
        }
    }

    /// The value if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParameterValue::String(value) => Some(value),
            _ => None,
        }
    }
}

impl fmt::Display for ParameterValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParameterValue::Integer(value) => write!(f, "{value}"),
            ParameterValue::Float(value) => write!(f, "{value}"),
            ParameterValue::String(value) => f.write_str(value),
        }
    }
}

impl From<i64> for ParameterValue {
    fn from(value: i64) -> Self {
        ParameterValue::Integer(value)
    }
}

impl From<String> for ParameterValue {
    fn from(value: String) -> Self {
        ParameterValue::String(value)
    }
}

impl From<&str> for ParameterValue {
    fn from(value: &str) -> Self {
        ParameterValue::String(value.to_owned())
    }
}

/// A `parameters` object (codec fmtp values or header extension settings).
pub type ParameterMap = BTreeMap<String, ParameterValue>;

/// What an endpoint or a router can receive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCapabilities {
    /// Media and RTX codecs. Default empty.
    #[serde(default)]
    pub codecs: Vec<RtpCodecCapability>,
    /// RTP header extensions. Default empty.
    #[serde(default)]
    pub header_extensions: Vec<RtpHeaderExtension>,
}

/// One codec within [`RtpCapabilities`]; also the form of a router's
/// configured media codecs (where `preferredPayloadType` may be left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCodecCapability {
    pub kind: MediaKind,
    /// e.g. `"audio/opus"`, `"video/VP8"`, `"video/rtx"`.
    pub mime_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_payload_type: Option<u8>,
    /// In Hz.
    pub clock_rate: u32,
    /// Audio only; mediasoup treats an absent value as 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
    /// Default `{}`.
    #[serde(default)]
    pub parameters: ParameterMap,
    /// Default `[]`.
    #[serde(default)]
    pub rtcp_feedback: Vec<RtcpFeedback>,
}

/// Direction in which the engine supports a header extension. Only
/// meaningful in the engine's own capabilities; ignored in an endpoint's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtpHeaderExtensionDirection {
    #[default]
    Sendrecv,
    Sendonly,
    Recvonly,
    Inactive,
}

/// One header extension within [`RtpCapabilities`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpHeaderExtension {
    pub kind: MediaKind,
    pub uri: String,
    /// The id that goes in RTP packets.
    pub preferred_id: u8,
    /// Default false; encrypted header extensions are not supported.
    #[serde(default)]
    pub preferred_encrypt: bool,
    /// Default sendrecv.
    #[serde(default)]
    pub direction: RtpHeaderExtensionDirection,
}

/// What one stream uses: a producer's send parameters or a consumer's
/// receive parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpParameters {
    /// The BUNDLE MID the stream is sent with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    /// Media and RTX codecs.
    pub codecs: Vec<RtpCodecParameters>,
    /// Default `[]`.
    #[serde(default)]
    pub header_extensions: Vec<RtpHeaderExtensionParameters>,
    /// One per RTP stream (several for simulcast). Default `[]`.
    #[serde(default)]
    pub encodings: Vec<RtpEncodingParameters>,
    /// Default `{ reducedSize: true }`.
    #[serde(default)]
    pub rtcp: RtcpParameters,
}

/// One codec within [`RtpParameters`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCodecParameters {
    pub mime_type: String,
    pub payload_type: u8,
    /// In Hz.
    pub clock_rate: u32,
    /// Audio only; mediasoup treats an absent value as 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
    /// Default `{}`.
    #[serde(default)]
    pub parameters: ParameterMap,
    /// Default `[]`.
    #[serde(default)]
    pub rtcp_feedback: Vec<RtcpFeedback>,
}

/// An RTCP feedback mechanism of a codec, e.g. `nack` / `pli`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RtcpFeedback {
    /// `nack`, `ccm`, `goog-remb`, `transport-cc`, ...
    #[serde(rename = "type")]
    pub r#type: String,
    /// `""` (default), `pli`, `fir`, ...
    #[serde(default)]
    pub parameter: String,
}

impl RtcpFeedback {
    /// Feedback of `type` with the given parameter (`""` for none).
    pub fn new(r#type: &str, parameter: &str) -> Self {
        RtcpFeedback {
            r#type: r#type.to_owned(),
            parameter: parameter.to_owned(),
        }
    }
}

/// The RTX stream of an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RtxStream {
    pub ssrc: u32,
}

/// One RTP stream (and its RTX stream) within [`RtpParameters`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpEncodingParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssrc: Option<u32>,
    /// The RID header extension value of a simulcast stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// The codec this encoding uses; the first media codec if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec_payload_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtx: Option<RtxStream>,
    /// Discontinuous transmission (audio DTX, or static screen share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtx: Option<bool>,
    /// e.g. `"L1T3"`; see [`ScalabilityMode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalability_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_resolution_down_by: Option<f64>,
    /// In bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bitrate: Option<u32>,
}

/// One header extension within [`RtpParameters`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpHeaderExtensionParameters {
    pub uri: String,
    /// The id that goes in RTP packets.
    pub id: u8,
    /// Default false; encrypted header extensions are not supported.
    #[serde(default)]
    pub encrypt: bool,
    /// Default `{}`.
    #[serde(default)]
    pub parameters: ParameterMap,
}

/// RTCP settings within [`RtpParameters`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtcpParameters {
    /// CNAME for RTCP SDES.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    /// Reduced-size RTCP (RFC 5506). Default true.
    #[serde(default = "default_reduced_size")]
    pub reduced_size: bool,
}

fn default_reduced_size() -> bool {
    true
}

impl Default for RtcpParameters {
    fn default() -> Self {
        RtcpParameters {
            cname: None,
            reduced_size: true,
        }
    }
}

/// A parsed `scalabilityMode` such as `"L1T3"`, `"S3T3"` or `"L3T3_KEY"`.
///
/// Like mediasoup, only the leading `[LS]<spatial>T<temporal>[_KEY]` is read
/// and anything after it is ignored (`"L3T3_KEY_SHIFT"` is 3/3 K-SVC); the
/// `L`/`S` distinction is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScalabilityMode {
    /// 1 to 99.
    pub spatial_layers: u8,
    /// 1 to 99.
    pub temporal_layers: u8,
    /// Key-frame-only dependency between spatial layers (`_KEY`).
    pub ksvc: bool,
}

impl Default for ScalabilityMode {
    /// A single stream with no layers, what mediasoup assumes for an absent
    /// or unreadable mode.
    fn default() -> Self {
        ScalabilityMode {
            spatial_layers: 1,
            temporal_layers: 1,
            ksvc: false,
        }
    }
}

impl ScalabilityMode {
    /// The mode of an encoding's optional `scalabilityMode`, falling back to
    /// one spatial and one temporal layer when absent or unreadable, as
    /// mediasoup does.
    pub fn parse_or_default(mode: Option<&str>) -> ScalabilityMode {
        mode.and_then(|mode| mode.parse().ok()).unwrap_or_default()
    }
}

/// A `scalabilityMode` string that does not start with
/// `[LS]<1-99>T<1-99>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scalabilityMode \"{0}\"")]
pub struct InvalidScalabilityMode(pub String);

impl FromStr for ScalabilityMode {
    type Err = InvalidScalabilityMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidScalabilityMode(s.to_owned());
        let rest = s
            .strip_prefix('L')
            .or_else(|| s.strip_prefix('S'))
            .ok_or_else(invalid)?;
        let (spatial_layers, rest) = leading_layer_count(rest).ok_or_else(invalid)?;
        let rest = rest.strip_prefix('T').ok_or_else(invalid)?;
        let (temporal_layers, rest) = leading_layer_count(rest).ok_or_else(invalid)?;
        Ok(ScalabilityMode {
            spatial_layers,
            temporal_layers,
            ksvc: rest.starts_with("_KEY"),
        })
    }
}

/// Reads one or two decimal digits, the first not zero, as mediasoup's
/// `[1-9]\d?` does.
fn leading_layer_count(s: &str) -> Option<(u8, &str)> {
    let digits = s
        .bytes()
        .take(2)
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if digits == 0 || s.starts_with('0') {
        return None;
    }
    let (number, rest) = s.split_at(digits);
    Some((number.parse().ok()?, rest))
}

impl fmt::Display for ScalabilityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}T{}", self.spatial_layers, self.temporal_layers)?;
        if self.ksvc {
            f.write_str("_KEY")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// What mediasoup-client (Chrome, unified plan) sends in `produce` for a
    /// camera with three simulcast encodings given by the application.
    /// Payload types and extension ids are the browser's own.
    fn vp8_simulcast_produce_json() -> Value {
        json!({
            "mid": "1",
            "codecs": [
                {
                    "mimeType": "video/VP8",
                    "payloadType": 96,
                    "clockRate": 90000,
                    "parameters": {},
                    "rtcpFeedback": [
                        { "type": "goog-remb", "parameter": "" },
                        { "type": "transport-cc", "parameter": "" },
                        { "type": "ccm", "parameter": "fir" },
                        { "type": "nack", "parameter": "" },
                        { "type": "nack", "parameter": "pli" }
                    ]
                },
                {
                    "mimeType": "video/rtx",
                    "payloadType": 97,
                    "clockRate": 90000,
                    "parameters": { "apt": 96 },
                    "rtcpFeedback": []
                }
            ],
            "headerExtensions": [
                { "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {} },
                { "uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": 10, "encrypt": false, "parameters": {} },
                { "uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": 11, "encrypt": false, "parameters": {} },
                { "uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false, "parameters": {} },
                { "uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {} },
                { "uri": "urn:3gpp:video-orientation", "id": 13, "encrypt": false, "parameters": {} },
                { "uri": "urn:ietf:params:rtp-hdrext:toffset", "id": 14, "encrypt": false, "parameters": {} }
            ],
            "encodings": [
                { "rid": "r0", "dtx": false, "scalabilityMode": "L1T3", "scaleResolutionDownBy": 4.0, "maxBitrate": 100000 },
                { "rid": "r1", "dtx": false, "scalabilityMode": "L1T3", "scaleResolutionDownBy": 2.0, "maxBitrate": 300000 },
                { "rid": "r2", "dtx": false, "scalabilityMode": "L1T3", "scaleResolutionDownBy": 1.0, "maxBitrate": 900000 }
            ],
            "rtcp": { "cname": "Zq2bWRC1mdk7n0dY", "reducedSize": true }
        })
    }

    /// What mediasoup-client (Chrome) sends in `produce` for a microphone.
    fn opus_produce_json() -> Value {
        json!({
            "mid": "0",
            "codecs": [
                {
                    "mimeType": "audio/opus",
                    "payloadType": 111,
                    "clockRate": 48000,
                    "channels": 2,
                    "parameters": { "minptime": 10, "useinbandfec": 1, "usedtx": 1 },
                    "rtcpFeedback": [ { "type": "transport-cc", "parameter": "" } ]
                }
            ],
            "headerExtensions": [
                { "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {} },
                { "uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false, "parameters": {} },
                { "uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {} },
                { "uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1, "encrypt": false, "parameters": {} }
            ],
            "encodings": [ { "ssrc": 1939408431u32, "dtx": true } ],
            "rtcp": { "cname": "Zq2bWRC1mdk7n0dY", "reducedSize": true }
        })
    }

    #[test]
    fn media_kind_is_lowercase_in_json() {
        assert_eq!(
            serde_json::to_value(MediaKind::Audio).unwrap(),
            json!("audio")
        );
        assert_eq!(
            serde_json::to_value(MediaKind::Video).unwrap(),
            json!("video")
        );
        let kind: MediaKind = serde_json::from_value(json!("video")).unwrap();
        assert_eq!(kind, MediaKind::Video);
        assert!(serde_json::from_value::<MediaKind>(json!("Video")).is_err());
    }

    #[test]
    fn media_kind_comes_from_the_mime_type_case_insensitively() {
        assert_eq!(
            MediaKind::from_mime_type("video/VP8"),
            Some(MediaKind::Video)
        );
        assert_eq!(
            MediaKind::from_mime_type("Audio/opus"),
            Some(MediaKind::Audio)
        );
        assert_eq!(MediaKind::from_mime_type("opus"), None);
        assert_eq!(MediaKind::from_mime_type("audio/"), None);
        assert_eq!(MediaKind::from_mime_type("text/plain"), None);
    }

    #[test]
    fn vp8_simulcast_produce_parameters_survive_a_round_trip() {
        let fixture = vp8_simulcast_produce_json();
        let params: RtpParameters = serde_json::from_value(fixture.clone()).unwrap();
        assert_eq!(params.mid.as_deref(), Some("1"));
        assert_eq!(
            params.codecs[1].parameters["apt"],
            ParameterValue::Integer(96)
        );
        let rids: Vec<_> = params
            .encodings
            .iter()
            .map(|e| e.rid.as_deref().unwrap())
            .collect();
        assert_eq!(rids, ["r0", "r1", "r2"]);
        assert_eq!(params.encodings[2].max_bitrate, Some(900_000));
        assert_eq!(serde_json::to_value(&params).unwrap(), fixture);
    }

    #[test]
    fn opus_produce_parameters_survive_a_round_trip() {
        let fixture = opus_produce_json();
        let params: RtpParameters = serde_json::from_value(fixture.clone()).unwrap();
        assert_eq!(params.codecs[0].channels, Some(2));
        assert_eq!(params.encodings[0].ssrc, Some(1_939_408_431));
        assert_eq!(params.encodings[0].dtx, Some(true));
        assert_eq!(serde_json::to_value(&params).unwrap(), fixture);
    }

    #[test]
    fn absent_optional_fields_are_omitted_not_null() {
        let encoding = RtpEncodingParameters {
            ssrc: Some(1234),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&encoding).unwrap(),
            json!({ "ssrc": 1234 })
        );
        let rtcp = RtcpParameters::default();
        assert_eq!(
            serde_json::to_value(&rtcp).unwrap(),
            json!({ "reducedSize": true })
        );
        let params = RtpParameters::default();
        assert_eq!(
            serde_json::to_value(&params).unwrap(),
            json!({ "codecs": [], "headerExtensions": [], "encodings": [], "rtcp": { "reducedSize": true } })
        );
    }

    #[test]
    fn missing_fields_take_mediasoup_defaults() {
        let params: RtpParameters = serde_json::from_value(json!({
            "codecs": [
                { "mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000,
                  "rtcpFeedback": [ { "type": "nack" } ] }
            ],
            "headerExtensions": [ { "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 1 } ],
            "rtcp": { "cname": "abc" }
        }))
        .unwrap();
        let codec = &params.codecs[0];
        assert!(codec.parameters.is_empty());
        assert_eq!(codec.rtcp_feedback, [RtcpFeedback::new("nack", "")]);
        assert!(!params.header_extensions[0].encrypt);
        assert!(params.header_extensions[0].parameters.is_empty());
        assert!(params.encodings.is_empty());
        assert!(params.rtcp.reduced_size);
        assert_eq!(params.mid, None);

        let ext: RtpHeaderExtension = serde_json::from_value(json!({
            "kind": "audio", "uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "preferredId": 10
        }))
        .unwrap();
        assert!(!ext.preferred_encrypt);
        assert_eq!(ext.direction, RtpHeaderExtensionDirection::Sendrecv);
    }

    #[test]
    fn fields_unknown_to_mediasoup_are_tolerated_and_dropped() {
        let mut fixture = vp8_simulcast_produce_json();
        fixture["encodings"][0]["active"] = json!(true);
        fixture["encodings"][0]["maxFramerate"] = json!(15);
        fixture["encodings"][0]["networkPriority"] = json!("high");
        fixture["rtcp"]["mux"] = json!(true);
        let params: RtpParameters = serde_json::from_value(fixture).unwrap();
        assert_eq!(
            serde_json::to_value(&params).unwrap(),
            vp8_simulcast_produce_json()
        );
    }

    #[test]
    fn capabilities_use_mediasoup_direction_strings() {
        let fixture = json!({
            "codecs": [
                { "kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 102,
                  "clockRate": 90000, "parameters": { "apt": 101 }, "rtcpFeedback": [] }
            ],
            "headerExtensions": [
                { "kind": "video", "uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                  "preferredId": 2, "preferredEncrypt": false, "direction": "recvonly" },
                { "kind": "video", "uri": "urn:3gpp:video-orientation",
                  "preferredId": 11, "preferredEncrypt": false, "direction": "sendonly" },
                { "kind": "audio", "uri": "urn:ietf:params:rtp-hdrext:sdes:mid",
                  "preferredId": 1, "preferredEncrypt": false, "direction": "inactive" },
                { "kind": "audio", "uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                  "preferredId": 10, "preferredEncrypt": false, "direction": "sendrecv" }
            ]
        });
        let caps: RtpCapabilities = serde_json::from_value(fixture.clone()).unwrap();
        assert_eq!(
            caps.header_extensions[0].direction,
            RtpHeaderExtensionDirection::Recvonly
        );
        assert_eq!(serde_json::to_value(&caps).unwrap(), fixture);
    }

    #[test]
    fn parameter_values_keep_their_json_type() {
        let parameters: ParameterMap = serde_json::from_value(json!({
            "packetization-mode": 1,
            "profile-level-id": "42e01f",
            "x-google-start-bitrate": 1000,
            "ratio": 1.5
        }))
        .unwrap();
        assert_eq!(parameters["packetization-mode"], ParameterValue::Integer(1));
        assert_eq!(parameters["profile-level-id"].as_str(), Some("42e01f"));
        assert_eq!(parameters["ratio"], ParameterValue::Float(1.5));
        assert_eq!(ParameterValue::from("1").as_integer(), Some(1));
        assert_eq!(ParameterValue::Float(1.0).as_integer(), None);
        assert_eq!(
            serde_json::to_value(&parameters).unwrap(),
            json!({ "packetization-mode": 1, "profile-level-id": "42e01f",
                    "x-google-start-bitrate": 1000, "ratio": 1.5 })
        );
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        let bad = [
            json!({ "codecs": [ { "mimeType": "video/VP8", "payloadType": 300, "clockRate": 90000 } ] }),
            json!({ "codecs": [ { "mimeType": "video/VP8", "payloadType": -1, "clockRate": 90000 } ] }),
            json!({ "codecs": [ { "mimeType": "video/VP8", "clockRate": 90000 } ] }),
            json!({ "codecs": [ { "mimeType": 5, "payloadType": 96, "clockRate": 90000 } ] }),
            json!({ "codecs": [ { "mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                                  "parameters": { "flag": true } } ] }),
            json!({ "codecs": [], "encodings": [ { "ssrc": 4294967296u64 } ] }),
            json!({ "codecs": [], "encodings": [ { "rtx": {} } ] }),
            json!({ "codecs": "VP8" }),
            json!({}),
            json!(null),
        ];
        for value in bad {
            assert!(
                serde_json::from_value::<RtpParameters>(value.clone()).is_err(),
                "{value} was accepted"
            );
        }
        assert!(serde_json::from_value::<RtpCapabilities>(json!({
            "codecs": [ { "kind": "data", "mimeType": "video/VP8", "clockRate": 90000 } ]
        }))
        .is_err());
    }

    #[test]
    fn scalability_modes_parse_into_layers() {
        let parse = |s: &str| s.parse::<ScalabilityMode>().unwrap();
        assert_eq!(
            parse("L1T3"),
            ScalabilityMode {
                spatial_layers: 1,
                temporal_layers: 3,
                ksvc: false
            }
        );
        assert_eq!(
            parse("S3T3"),
            ScalabilityMode {
                spatial_layers: 3,
                temporal_layers: 3,
                ksvc: false
            }
        );
        assert_eq!(
            parse("L3T3_KEY"),
            ScalabilityMode {
                spatial_layers: 3,
                temporal_layers: 3,
                ksvc: true
            }
        );
        assert_eq!(
            parse("L2T2_KEY_SHIFT"),
            ScalabilityMode {
                spatial_layers: 2,
                temporal_layers: 2,
                ksvc: true
            }
        );
        assert_eq!(parse("L12T10").spatial_layers, 12);
        assert_eq!(parse("L12T10").temporal_layers, 10);
        assert_eq!(parse("L1T3h").temporal_layers, 3);
    }

    #[test]
    fn unreadable_scalability_modes_are_errors_or_the_single_layer_default() {
        for bad in [
            "", "L", "L0T1", "L1T0", "X1T1", "l1t3", "L1", "L1T", "LT3", "L1X3", "Ł1T1",
        ] {
            assert!(bad.parse::<ScalabilityMode>().is_err(), "{bad} parsed");
        }
        assert_eq!(
            ScalabilityMode::parse_or_default(Some("nonsense")),
            ScalabilityMode::default()
        );
        assert_eq!(ScalabilityMode::parse_or_default(None).temporal_layers, 1);
        assert_eq!(
            ScalabilityMode::parse_or_default(Some("S2T3")).spatial_layers,
            2
        );
    }

    #[test]
    fn scalability_mode_displays_in_l_form() {
        assert_eq!(ScalabilityMode::default().to_string(), "L1T1");
        assert_eq!(
            "S3T3_KEY".parse::<ScalabilityMode>().unwrap().to_string(),
            "L3T3_KEY"
        );
    }
}
