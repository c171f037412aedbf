//! The negotiation mediasoup's `ortc` does: checking capabilities and
//! parameters that arrive from the network, building a router's
//! capabilities from its configured codecs, and deriving, for each producer,
//! the parameters its consumers receive.
//!
//! The flow, as in mediasoup:
//! 1. [`generate_router_rtp_capabilities`]: the router's codecs with payload
//!    types (and an RTX codec per video codec); `mediasoup-client` loads
//!    these with `device.load()`.
//! 2. [`get_producer_rtp_parameters_mapping`]: how a producer's payload types
//!    map to the router's, and the SSRC each of its encodings gets inside
//!    the router.
//! 3. [`get_consumable_rtp_parameters`]: the producer as the router sees it
//!    (router payload types, router header extension ids, mapped SSRCs).
//! 4. [`can_consume`] and [`get_consumer_rtp_parameters`]: what one consumer
//!    receives, reduced to what its device supports.
//!
//! Everything here is pure: no IO, no state. Input comes from browsers, so
//! every function returns an error instead of panicking; each operation has
//! its own error enum naming the offending codec, payload type or id.
//! Transport-level choices mediasoup makes around these functions (a CNAME
//! for producers that give none, the MID of each consumer) belong to the
//! transport, not here.

use crate::rtp_parameters::{
    header_extension_uri, MediaKind, ParameterMap, ParameterValue, RtcpFeedback, RtcpParameters,
    RtpCapabilities, RtpCodecCapability, RtpCodecParameters, RtpEncodingParameters,
    RtpHeaderExtension, RtpHeaderExtensionDirection, RtpHeaderExtensionParameters, RtpParameters,
    RtxStream, ScalabilityMode,
};
use crate::supported_rtp_capabilities::supported_rtp_capabilities;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};

/// Payload types a router hands out, in mediasoup's order: 100 to 127 first,
/// 96 to 99 last (some endpoints treat 96-99 specially).
const DYNAMIC_PAYLOAD_TYPES: [u8; 32] = [
    100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118,
    119, 120, 121, 122, 123, 124, 125, 126, 127, 96, 97, 98, 99,
];

/// Why capabilities or parameters received from an endpoint (or configured
/// for a router) are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("codec mimeType \"{mime_type}\" is not audio/<subtype> or video/<subtype>")]
    InvalidMimeType { mime_type: String },
    #[error("codec {mime_type}: kind is {kind}, which its mimeType contradicts")]
    KindMismatch { mime_type: String, kind: MediaKind },
    #[error("codec {mime_type}: payload type {payload_type} is outside 0..=127")]
    PayloadTypeOutOfRange { mime_type: String, payload_type: u8 },
    #[error("codec {mime_type}: clockRate must not be 0")]
    ZeroClockRate { mime_type: String },
    #[error("codec {mime_type}: channels must not be 0")]
    ZeroChannels { mime_type: String },
    #[error("RTX codec {mime_type}: parameter apt must be a payload type (0..=127), got {apt}")]
    InvalidApt { mime_type: String, apt: String },
    #[error("codec {mime_type}: an rtcpFeedback entry has an empty type")]
    EmptyFeedbackType { mime_type: String },
    #[error("a header extension has an empty uri")]
    EmptyHeaderExtensionUri,
    #[error("header extension {uri}: id 0 is not a valid id")]
    ZeroHeaderExtensionId { uri: String },
    #[error("payload type {payload_type} is used by more than one codec")]
    DuplicatePayloadType { payload_type: u8 },
    #[error("header extension id {id} is used by more than one extension (second: {uri})")]
    DuplicateHeaderExtensionId { id: u8, uri: String },
    #[error("encodings[{index}]: rid \"{rid}\" must be 1 to 16 letters, digits, '-' or '_'")]
    InvalidRid { index: usize, rid: String },
    #[error("rid \"{rid}\" is used by more than one encoding")]
    DuplicateRid { rid: String },
    #[error("ssrc {ssrc} is used by more than one stream")]
    DuplicateSsrc { ssrc: u32 },
    #[error("encodings[{index}]: codecPayloadType {payload_type} is not a media codec of these parameters")]
    UnknownEncodingCodec { index: usize, payload_type: u8 },
}

/// Why a router's capabilities cannot be built from its configured codecs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterCapabilitiesError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("media codec not supported [mimeType:{mime_type}, clockRate:{clock_rate}]")]
    UnsupportedCodec { mime_type: String, clock_rate: u32 },
    #[error("preferredPayloadType {payload_type} is used by more than one codec")]
    DuplicatePayloadType { payload_type: u8 },
    #[error("no dynamic payload type left for {mime_type}")]
    PayloadTypesExhausted { mime_type: String },
}

/// Why a producer's parameters cannot be mapped onto a router.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerMappingError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the producer's parameters have no media codec")]
    NoMediaCodec,
    #[error("the producer's parameters have no encodings")]
    NoEncodings,
    #[error("unsupported codec [mimeType:{mime_type}, payloadType:{payload_type}]")]
    UnsupportedCodec { mime_type: String, payload_type: u8 },
    #[error("RTX codec with payload type {payload_type} has apt {apt}, which is no media codec of the producer")]
    RtxWithoutMediaCodec { payload_type: u8, apt: i64 },
    #[error(
        "the router has no RTX codec for {mime_type} (router payload type {router_payload_type})"
    )]
    RouterLacksRtx {
        mime_type: String,
        router_payload_type: u8,
    },
    #[error("encodings[{index}] has neither ssrc nor rid, which simulcast needs")]
    EncodingWithoutSsrcOrRid { index: usize },
}

/// Why consumable parameters cannot be derived; these mean the mapping does
/// not belong to these parameters or router.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumableParametersError {
    #[error("payload type {payload_type} of the producer has no entry in its RTP mapping")]
    UnmappedPayloadType { payload_type: u8 },
    #[error("mapped payload type {payload_type} is none of the router's codecs")]
    UnknownRouterPayloadType { payload_type: u8 },
    #[error("the producer has {encodings} encodings but its RTP mapping has {mapped}")]
    EncodingCountMismatch { encodings: usize, mapped: usize },
}

/// Why a consumer's parameters cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerParametersError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("no compatible media codecs: the consumer supports none of [{}]", .producer_codecs.join(", "))]
    NoCompatibleMediaCodecs { producer_codecs: Vec<String> },
}

/// How a producer's streams are known inside its router.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpMapping {
    /// Producer payload type -> router payload type, media codecs first.
    pub codecs: Vec<RtpMappingCodec>,
    /// One per producer encoding, in order.
    pub encodings: Vec<RtpMappingEncoding>,
}

/// One payload type of a producer and the router's for the same codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpMappingCodec {
    pub payload_type: u8,
    pub mapped_payload_type: u8,
}

/// One producer encoding, how packets identify it (SSRC or RID), and the
/// SSRC it carries inside the router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpMappingEncoding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssrc: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalability_mode: Option<String>,
    pub mapped_ssrc: u32,
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Checks an endpoint's (or the engine's) capabilities.
pub fn validate_rtp_capabilities(caps: &RtpCapabilities) -> Result<(), ValidationError> {
    for codec in &caps.codecs {
        validate_rtp_codec_capability(codec)?;
    }
    for ext in &caps.header_extensions {
        validate_rtp_header_extension(ext)?;
    }
    Ok(())
}

/// Checks one codec of capabilities, or one codec configured for a router.
pub fn validate_rtp_codec_capability(codec: &RtpCodecCapability) -> Result<(), ValidationError> {
    let kind = check_codec_common(
        &codec.mime_type,
        codec.clock_rate,
        codec.channels,
        &codec.parameters,
    )?;
    // mediasoup overwrites a wrong kind silently; a contradiction here means
    // the sender is confused, and the kind decides header extension choice.
    if kind != codec.kind {
        return Err(ValidationError::KindMismatch {
            mime_type: codec.mime_type.clone(),
            kind: codec.kind,
        });
    }
    if let Some(payload_type) = codec.preferred_payload_type {
        check_payload_type(&codec.mime_type, payload_type)?;
    }
    check_feedback(&codec.mime_type, &codec.rtcp_feedback)
}

fn validate_rtp_header_extension(ext: &RtpHeaderExtension) -> Result<(), ValidationError> {
    check_header_extension(&ext.uri, ext.preferred_id)
}

/// Checks a producer's or consumer's parameters: each codec, unique payload
/// types, header extension ids, SSRCs and RIDs, and that encodings name
/// media codecs of these parameters.
pub fn validate_rtp_parameters(params: &RtpParameters) -> Result<(), ValidationError> {
    let mut payload_types = HashSet::new();
    for codec in &params.codecs {
        check_codec_common(
            &codec.mime_type,
            codec.clock_rate,
            codec.channels,
            &codec.parameters,
        )?;
        check_payload_type(&codec.mime_type, codec.payload_type)?;
        check_feedback(&codec.mime_type, &codec.rtcp_feedback)?;
        if !payload_types.insert(codec.payload_type) {
            return Err(ValidationError::DuplicatePayloadType {
                payload_type: codec.payload_type,
            });
        }
    }

    let mut ids = HashSet::new();
    for ext in &params.header_extensions {
        check_header_extension(&ext.uri, ext.id)?;
        if !ids.insert(ext.id) {
            return Err(ValidationError::DuplicateHeaderExtensionId {
                id: ext.id,
                uri: ext.uri.clone(),
            });
        }
    }

    let mut ssrcs = HashSet::new();
    let mut rids = HashSet::new();
    for (index, encoding) in params.encodings.iter().enumerate() {
        for ssrc in encoding
            .ssrc
            .into_iter()
            .chain(encoding.rtx.map(|rtx| rtx.ssrc))
        {
            if !ssrcs.insert(ssrc) {
                return Err(ValidationError::DuplicateSsrc { ssrc });
            }
        }
        if let Some(rid) = &encoding.rid {
            if !is_valid_rid(rid) {
                return Err(ValidationError::InvalidRid {
                    index,
                    rid: rid.clone(),
                });
            }
            if !rids.insert(rid.as_str()) {
                return Err(ValidationError::DuplicateRid { rid: rid.clone() });
            }
        }
        if let Some(payload_type) = encoding.codec_payload_type {
            let names_media_codec = params
                .codecs
                .iter()
                .any(|codec| codec.payload_type == payload_type && !is_rtx(&codec.mime_type));
            if !names_media_codec {
                return Err(ValidationError::UnknownEncodingCodec {
                    index,
                    payload_type,
                });
            }
        }
    }
    Ok(())
}

/// RFC 8851 restricts a rid to alphanumerics, '-' and '_'; browsers
/// negotiate one-byte header extensions, whose elements hold 16 bytes.
fn is_valid_rid(rid: &str) -> bool {
    (1..=16).contains(&rid.len())
        && rid
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// Checks shared by codec capabilities and codec parameters; returns the
/// kind the MIME type names.
fn check_codec_common(
    mime_type: &str,
    clock_rate: u32,
    channels: Option<u8>,
    parameters: &ParameterMap,
) -> Result<MediaKind, ValidationError> {
    let kind =
        MediaKind::from_mime_type(mime_type).ok_or_else(|| ValidationError::InvalidMimeType {
            mime_type: mime_type.to_owned(),
        })?;
    if clock_rate == 0 {
        return Err(ValidationError::ZeroClockRate {
            mime_type: mime_type.to_owned(),
        });
    }
    if kind == MediaKind::Audio && channels == Some(0) {
        return Err(ValidationError::ZeroChannels {
            mime_type: mime_type.to_owned(),
        });
    }
    // An RTX codec without a usable apt cannot be paired with anything.
    if is_rtx(mime_type) || parameters.contains_key("apt") {
        let apt = parameters.get("apt");
        if apt.and_then(as_payload_type).is_none() {
            return Err(ValidationError::InvalidApt {
                mime_type: mime_type.to_owned(),
                apt: apt.map_or_else(|| "nothing".to_owned(), ToString::to_string),
            });
        }
    }
    Ok(kind)
}

fn check_payload_type(mime_type: &str, payload_type: u8) -> Result<(), ValidationError> {
    if payload_type > 127 {
        return Err(ValidationError::PayloadTypeOutOfRange {
            mime_type: mime_type.to_owned(),
            payload_type,
        });
    }
    Ok(())
}

fn check_feedback(mime_type: &str, feedback: &[RtcpFeedback]) -> Result<(), ValidationError> {
    if feedback.iter().any(|fb| fb.r#type.is_empty()) {
        return Err(ValidationError::EmptyFeedbackType {
            mime_type: mime_type.to_owned(),
        });
    }
    Ok(())
}

fn check_header_extension(uri: &str, id: u8) -> Result<(), ValidationError> {
    if uri.is_empty() {
        return Err(ValidationError::EmptyHeaderExtensionUri);
    }
    if id == 0 {
        return Err(ValidationError::ZeroHeaderExtensionId {
            uri: uri.to_owned(),
        });
    }
    Ok(())
}

/// A parameter value that is a valid RTP payload type.
fn as_payload_type(value: &ParameterValue) -> Option<u8> {
    match value {
        ParameterValue::Integer(value) => u8::try_from(*value).ok().filter(|pt| *pt <= 127),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Router capabilities
// ---------------------------------------------------------------------------

/// Builds a router's capabilities from its configured media codecs: each is
/// matched against the engine's supported codecs (taking their feedback and
/// default parameters, overridden by the configured parameters), given its
/// configured `preferredPayloadType` or the next free dynamic one, and
/// followed, for video, by an RTX codec whose `apt` names it. The header
/// extensions are all the engine supports.
pub fn generate_router_rtp_capabilities(
    media_codecs: &[RtpCodecCapability],
) -> Result<RtpCapabilities, RouterCapabilitiesError> {
    let supported = supported_rtp_capabilities();

    // mediasoup reserves a configured payload type only when it reaches that
    // codec, so an earlier codec (or its RTX) may already have been given
    // it; reserving them all first avoids that false clash.
    let mut dynamic_payload_types: VecDeque<u8> = DYNAMIC_PAYLOAD_TYPES.into_iter().collect();
    for media_codec in media_codecs {
        if let Some(reserved) = media_codec.preferred_payload_type {
            dynamic_payload_types.retain(|payload_type| *payload_type != reserved);
        }
    }

    let mut codecs: Vec<RtpCodecCapability> = Vec::new();
    for media_codec in media_codecs {
        validate_rtp_codec_capability(media_codec)?;

        // Strict matching first, so that the configured H.264 profile or VP9
        // profile-id picks its own variant; mediasoup's loose matching (MIME
        // type, clock rate, channels) as the fallback.
        let matched = supported
            .codecs
            .iter()
            .find(|supported| match_codecs(media_codec, *supported, true))
            .or_else(|| {
                supported
                    .codecs
                    .iter()
                    .find(|supported| match_codecs(media_codec, *supported, false))
            })
            .ok_or_else(|| RouterCapabilitiesError::UnsupportedCodec {
                mime_type: media_codec.mime_type.clone(),
                clock_rate: media_codec.clock_rate,
            })?;

        let payload_type = match media_codec
            .preferred_payload_type
            .or(matched.preferred_payload_type)
        {
            Some(payload_type) => payload_type,
            None => dynamic_payload_types.pop_front().ok_or_else(|| {
                RouterCapabilitiesError::PayloadTypesExhausted {
                    mime_type: media_codec.mime_type.clone(),
                }
            })?,
        };
        if codecs
            .iter()
            .any(|codec| codec.preferred_payload_type == Some(payload_type))
        {
            return Err(RouterCapabilitiesError::DuplicatePayloadType { payload_type });
        }

        let mut codec = matched.clone();
        codec.preferred_payload_type = Some(payload_type);
        codec.parameters.extend(
            media_codec
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let kind = codec.kind;
        let clock_rate = codec.clock_rate;
        codecs.push(codec);

        if kind == MediaKind::Video {
            let rtx_payload_type = dynamic_payload_types.pop_front().ok_or_else(|| {
                RouterCapabilitiesError::PayloadTypesExhausted {
                    mime_type: "video/rtx".to_owned(),
                }
            })?;
            codecs.push(RtpCodecCapability {
                kind,
                mime_type: "video/rtx".to_owned(),
                preferred_payload_type: Some(rtx_payload_type),
                clock_rate,
                channels: None,
                parameters: [("apt".to_owned(), i64::from(payload_type).into())].into(),
                rtcp_feedback: Vec::new(),
            });
        }
    }

    Ok(RtpCapabilities {
        codecs,
        header_extensions: supported.header_extensions,
    })
}

// ---------------------------------------------------------------------------
// Producer -> router
// ---------------------------------------------------------------------------

/// Maps a producer's codecs onto the router's (each media codec to the
/// router codec it matches strictly, each RTX codec to the router's RTX for
/// that media codec) and gives each encoding a consecutive SSRC inside the
/// router, starting at a random one.
pub fn get_producer_rtp_parameters_mapping(
    params: &RtpParameters,
    router_caps: &RtpCapabilities,
) -> Result<RtpMapping, ProducerMappingError> {
    get_producer_rtp_parameters_mapping_with(params, router_caps, random_ssrc())
}

fn get_producer_rtp_parameters_mapping_with(
    params: &RtpParameters,
    router_caps: &RtpCapabilities,
    first_mapped_ssrc: u32,
) -> Result<RtpMapping, ProducerMappingError> {
    validate_rtp_parameters(params)?;
    if params.codecs.iter().all(|codec| is_rtx(&codec.mime_type)) {
        return Err(ProducerMappingError::NoMediaCodec);
    }
    if params.encodings.is_empty() {
        return Err(ProducerMappingError::NoEncodings);
    }
    if params.encodings.len() > 1 {
        if let Some(index) = params
            .encodings
            .iter()
            .position(|encoding| encoding.ssrc.is_none() && encoding.rid.is_none())
        {
            return Err(ProducerMappingError::EncodingWithoutSsrcOrRid { index });
        }
    }

    // (producer media codec, router payload type)
    let mut matched: Vec<(&RtpCodecParameters, u8)> = Vec::new();
    for codec in params.codecs.iter().filter(|c| !is_rtx(&c.mime_type)) {
        let payload_type = router_caps
            .codecs
            .iter()
            .filter(|cap| match_codecs(codec, *cap, true))
            .find_map(|cap| cap.preferred_payload_type)
            .ok_or_else(|| ProducerMappingError::UnsupportedCodec {
                mime_type: codec.mime_type.clone(),
                payload_type: codec.payload_type,
            })?;
        matched.push((codec, payload_type));
    }

    let mut codecs: Vec<RtpMappingCodec> = matched
        .iter()
        .map(|(codec, mapped)| RtpMappingCodec {
            payload_type: codec.payload_type,
            mapped_payload_type: *mapped,
        })
        .collect();
    for rtx in params.codecs.iter().filter(|c| is_rtx(&c.mime_type)) {
        // Validation guarantees an integer apt on every RTX codec.
        let apt = rtx
            .parameters
            .get("apt")
            .and_then(ParameterValue::as_integer)
            .unwrap_or(-1);
        let (media, router_media_pt) = matched
            .iter()
            .find(|(media, _)| i64::from(media.payload_type) == apt)
            .ok_or(ProducerMappingError::RtxWithoutMediaCodec {
                payload_type: rtx.payload_type,
                apt,
            })?;
        let router_rtx_pt = router_caps
            .codecs
            .iter()
            .filter(|cap| is_rtx(&cap.mime_type))
            .find(|cap| apt_of(&cap.parameters) == Some(*router_media_pt))
            .and_then(|cap| cap.preferred_payload_type)
            .ok_or_else(|| ProducerMappingError::RouterLacksRtx {
                mime_type: media.mime_type.clone(),
                router_payload_type: *router_media_pt,
            })?;
        codecs.push(RtpMappingCodec {
            payload_type: rtx.payload_type,
            mapped_payload_type: router_rtx_pt,
        });
    }

    let encodings = params
        .encodings
        .iter()
        .zip(0u32..)
        .map(|(encoding, index)| RtpMappingEncoding {
            ssrc: encoding.ssrc,
            rid: encoding.rid.clone(),
            scalability_mode: encoding.scalability_mode.clone(),
            mapped_ssrc: first_mapped_ssrc.wrapping_add(index),
        })
        .collect();

    Ok(RtpMapping { codecs, encodings })
}

/// The producer as its router's consumers see it: router payload types and
/// codec feedback, the producer's own codec parameters, the router's header
/// extensions of this kind that the engine can send, and one encoding per
/// producer encoding carrying its mapped SSRC (no RID, RTX or payload type,
/// which are the producer's business).
pub fn get_consumable_rtp_parameters(
    kind: MediaKind,
    params: &RtpParameters,
    router_caps: &RtpCapabilities,
    mapping: &RtpMapping,
) -> Result<RtpParameters, ConsumableParametersError> {
    let mut codecs = Vec::new();
    for codec in params.codecs.iter().filter(|c| !is_rtx(&c.mime_type)) {
        let payload_type = mapping
            .codecs
            .iter()
            .find(|entry| entry.payload_type == codec.payload_type)
            .map(|entry| entry.mapped_payload_type)
            .ok_or(ConsumableParametersError::UnmappedPayloadType {
                payload_type: codec.payload_type,
            })?;
        let cap = router_caps
            .codecs
            .iter()
            .find(|cap| cap.preferred_payload_type == Some(payload_type))
            .ok_or(ConsumableParametersError::UnknownRouterPayloadType { payload_type })?;

        let mut parameters = codec.parameters.clone();
        if is_h264(&cap.mime_type) {
            // mediasoup rewrites the producer's profile-level-id to the one a
            // router answering its offer would choose; consumers get that.
            match h264::answer_profile_level_id(&codec.parameters, &cap.parameters) {
                Ok(Some(answer)) => {
                    parameters.insert(PROFILE_LEVEL_ID.to_owned(), answer.into());
                }
                Ok(None) => {
                    parameters.remove(PROFILE_LEVEL_ID);
                }
                // Cannot happen for a mapping made by this module (it matched
                // strictly); keep the producer's value untouched otherwise.
                Err(h264::IncompatibleProfiles) => {}
            }
        }
        codecs.push(RtpCodecParameters {
            mime_type: cap.mime_type.clone(),
            payload_type,
            clock_rate: cap.clock_rate,
            channels: cap.channels,
            parameters,
            rtcp_feedback: cap.rtcp_feedback.clone(),
        });

        if let Some(rtx) = router_caps
            .codecs
            .iter()
            .find(|cap| is_rtx(&cap.mime_type) && apt_of(&cap.parameters) == Some(payload_type))
        {
            if let Some(rtx_payload_type) = rtx.preferred_payload_type {
                codecs.push(RtpCodecParameters {
                    mime_type: rtx.mime_type.clone(),
                    payload_type: rtx_payload_type,
                    clock_rate: rtx.clock_rate,
                    channels: None,
                    parameters: rtx.parameters.clone(),
                    rtcp_feedback: rtx.rtcp_feedback.clone(),
                });
            }
        }
    }

    let header_extensions = router_caps
        .header_extensions
        .iter()
        .filter(|ext| {
            ext.kind == kind
                && matches!(
                    ext.direction,
                    RtpHeaderExtensionDirection::Sendrecv | RtpHeaderExtensionDirection::Sendonly
                )
        })
        .map(|ext| RtpHeaderExtensionParameters {
            uri: ext.uri.clone(),
            id: ext.preferred_id,
            encrypt: ext.preferred_encrypt,
            parameters: ParameterMap::new(),
        })
        .collect();

    if params.encodings.len() != mapping.encodings.len() {
        return Err(ConsumableParametersError::EncodingCountMismatch {
            encodings: params.encodings.len(),
            mapped: mapping.encodings.len(),
        });
    }
    let encodings = params
        .encodings
        .iter()
        .zip(&mapping.encodings)
        .map(|(encoding, mapped)| RtpEncodingParameters {
            ssrc: Some(mapped.mapped_ssrc),
            rid: None,
            codec_payload_type: None,
            rtx: None,
            ..encoding.clone()
        })
        .collect();

    Ok(RtpParameters {
        mid: None,
        codecs,
        header_extensions,
        encodings,
        rtcp: RtcpParameters {
            cname: params.rtcp.cname.clone(),
            reduced_size: true,
        },
    })
}

// ---------------------------------------------------------------------------
// Router -> consumer
// ---------------------------------------------------------------------------

/// Whether an endpoint with `caps` can receive a producer: true if the first
/// of the producer's consumable codecs the endpoint supports is a media codec.
pub fn can_consume(
    consumable_params: &RtpParameters,
    caps: &RtpCapabilities,
) -> Result<bool, ValidationError> {
    validate_rtp_capabilities(caps)?;
    let first_supported = consumable_params.codecs.iter().find(|codec| {
        caps.codecs
            .iter()
            .any(|cap| match_codecs(cap, *codec, true))
    });
    Ok(first_supported.is_some_and(|codec| !is_rtx(&codec.mime_type)))
}

/// What one consumer receives, given the producer's consumable parameters
/// and the consumer device's capabilities:
/// - codecs the device supports, each with the feedback both sides support;
///   RTX only where its media codec stayed;
/// - header extensions the device supports with the same id;
/// - one bandwidth estimation: transport-cc if its header extension was
///   negotiated (dropping goog-remb feedback and the abs-send-time
///   extension), else REMB if abs-send-time was (dropping transport-cc
///   feedback), else neither;
/// - unless `pipe`, one encoding with a new random SSRC (RTX SSRC = SSRC + 1
///   when RTX is kept), the producer's scalability mode (for simulcast
///   `L<encodings>T<temporal layers>`) and the largest `maxBitrate`;
/// - with `pipe` (the consumer receives every stream, as a pipe or recorder
///   does), one encoding per producer encoding with consecutive new SSRCs.
pub fn get_consumer_rtp_parameters(
    consumable_params: &RtpParameters,
    remote_caps: &RtpCapabilities,
    pipe: bool,
) -> Result<RtpParameters, ConsumerParametersError> {
    validate_rtp_capabilities(remote_caps)?;

    let mut codecs: Vec<RtpCodecParameters> = Vec::new();
    for codec in &consumable_params.codecs {
        let Some(cap) = remote_caps
            .codecs
            .iter()
            .find(|cap| match_codecs(*cap, codec, true))
        else {
            continue;
        };
        let mut codec = codec.clone();
        // mediasoup takes the device's list as is; the device's list was
        // already reduced against the router's by mediasoup-client, so the
        // intersection is the same there and keeps the engine from
        // promising feedback it does not handle if it was not.
        codec
            .rtcp_feedback
            .retain(|fb| cap.rtcp_feedback.contains(fb));
        codecs.push(codec);
    }

    let media_payload_types: HashSet<u8> = codecs
        .iter()
        .filter(|codec| !is_rtx(&codec.mime_type))
        .map(|codec| codec.payload_type)
        .collect();
    codecs.retain(|codec| {
        !is_rtx(&codec.mime_type)
            || apt_of(&codec.parameters).is_some_and(|apt| media_payload_types.contains(&apt))
    });
    let rtx_supported = codecs.iter().any(|codec| is_rtx(&codec.mime_type));

    if codecs.first().is_none_or(|codec| is_rtx(&codec.mime_type)) {
        return Err(ConsumerParametersError::NoCompatibleMediaCodecs {
            producer_codecs: consumable_params
                .codecs
                .iter()
                .filter(|codec| !is_rtx(&codec.mime_type))
                .map(|codec| codec.mime_type.clone())
                .collect(),
        });
    }

    let mut header_extensions: Vec<RtpHeaderExtensionParameters> = consumable_params
        .header_extensions
        .iter()
        .filter(|ext| {
            remote_caps
                .header_extensions
                .iter()
                .any(|cap| cap.preferred_id == ext.id && cap.uri == ext.uri)
        })
        .cloned()
        .collect();

    let has_extension =
        |exts: &[RtpHeaderExtensionParameters], uri: &str| exts.iter().any(|ext| ext.uri == uri);
    if has_extension(
        &header_extensions,
        header_extension_uri::TRANSPORT_WIDE_CC_01,
    ) {
        for codec in &mut codecs {
            codec.rtcp_feedback.retain(|fb| fb.r#type != "goog-remb");
        }
        // Only one estimator runs per consumer; abs-send-time would be four
        // bytes per packet that nothing reads.
        header_extensions.retain(|ext| ext.uri != header_extension_uri::ABS_SEND_TIME);
    } else if has_extension(&header_extensions, header_extension_uri::ABS_SEND_TIME) {
        for codec in &mut codecs {
            codec.rtcp_feedback.retain(|fb| fb.r#type != "transport-cc");
        }
    } else {
        for codec in &mut codecs {
            codec
                .rtcp_feedback
                .retain(|fb| fb.r#type != "transport-cc" && fb.r#type != "goog-remb");
        }
    }

    let encodings = if pipe {
        pipe_encodings(&consumable_params.encodings, rtx_supported)
    } else {
        vec![single_consumer_encoding(
            &consumable_params.encodings,
            rtx_supported,
            random_ssrc(),
        )]
    };

    Ok(RtpParameters {
        mid: None,
        codecs,
        header_extensions,
        encodings,
        rtcp: consumable_params.rtcp.clone(),
    })
}

fn single_consumer_encoding(
    consumable_encodings: &[RtpEncodingParameters],
    rtx_supported: bool,
    ssrc: u32,
) -> RtpEncodingParameters {
    // All producer encodings are assumed to share one scalability mode.
    let mut scalability_mode = consumable_encodings
        .iter()
        .find_map(|encoding| encoding.scalability_mode.clone());
    if consumable_encodings.len() > 1 {
        // Simulcast reaches the consumer as spatial layers of one stream.
        let temporal_layers =
            ScalabilityMode::parse_or_default(scalability_mode.as_deref()).temporal_layers;
        scalability_mode = Some(format!(
            "L{}T{}",
            consumable_encodings.len(),
            temporal_layers
        ));
    }
    RtpEncodingParameters {
        ssrc: Some(ssrc),
        rtx: rtx_supported.then(|| RtxStream {
            ssrc: ssrc.wrapping_add(1),
        }),
        scalability_mode,
        max_bitrate: consumable_encodings
            .iter()
            .filter_map(|encoding| encoding.max_bitrate)
            .filter(|bitrate| *bitrate > 0)
            .max(),
        ..Default::default()
    }
}

fn pipe_encodings(
    consumable_encodings: &[RtpEncodingParameters],
    rtx_supported: bool,
) -> Vec<RtpEncodingParameters> {
    let count = u32::try_from(consumable_encodings.len()).unwrap_or(u32::MAX);
    let base_ssrc = random_ssrc();
    // Two independent random bases could overlap; draw again until the RTX
    // range is clear of the media range.
    let mut base_rtx_ssrc = random_ssrc();
    while base_rtx_ssrc.abs_diff(base_ssrc) < count {
        base_rtx_ssrc = random_ssrc();
    }
    consumable_encodings
        .iter()
        .zip(0u32..)
        .map(|(encoding, index)| RtpEncodingParameters {
            ssrc: Some(base_ssrc.wrapping_add(index)),
            rtx: rtx_supported.then(|| RtxStream {
                ssrc: base_rtx_ssrc.wrapping_add(index),
            }),
            ..encoding.clone()
        })
        .collect()
}

/// A random SSRC in mediasoup's range (nine decimal digits).
fn random_ssrc() -> u32 {
    rand::thread_rng().gen_range(100_000_000..=999_999_999)
}

// ---------------------------------------------------------------------------
// Codec matching
// ---------------------------------------------------------------------------

const PROFILE_LEVEL_ID: &str = "profile-level-id";

/// The fields codec matching reads, common to capabilities and parameters.
trait CodecDescription {
    fn mime_type(&self) -> &str;
    fn clock_rate(&self) -> u32;
    fn channels(&self) -> Option<u8>;
    fn parameters(&self) -> &ParameterMap;
}

impl CodecDescription for RtpCodecCapability {
    fn mime_type(&self) -> &str {
        &self.mime_type
    }
    fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
    fn channels(&self) -> Option<u8> {
        self.channels
    }
    fn parameters(&self) -> &ParameterMap {
        &self.parameters
    }
}

impl CodecDescription for RtpCodecParameters {
    fn mime_type(&self) -> &str {
        &self.mime_type
    }
    fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
    fn channels(&self) -> Option<u8> {
        self.channels
    }
    fn parameters(&self) -> &ParameterMap {
        &self.parameters
    }
}

/// Whether two codecs are the same codec: MIME type (case-insensitive),
/// clock rate and channels always; multiopus stream layout always; with
/// `strict`, also H.264 packetization-mode and profile (and a level both
/// can answer with) and VP9 profile-id.
fn match_codecs(a: &impl CodecDescription, b: &impl CodecDescription, strict: bool) -> bool {
    if !a.mime_type().eq_ignore_ascii_case(b.mime_type()) || a.clock_rate() != b.clock_rate() {
        return false;
    }
    if effective_channels(a) != effective_channels(b) {
        return false;
    }
    let (a_params, b_params) = (a.parameters(), b.parameters());
    match a.mime_type().to_ascii_lowercase().as_str() {
        "audio/multiopus" => {
            integer_parameter(a_params, "num_streams") == integer_parameter(b_params, "num_streams")
                && integer_parameter(a_params, "coupled_streams")
                    == integer_parameter(b_params, "coupled_streams")
        }
        "video/h264" | "video/h264-svc" if strict => {
            integer_parameter(a_params, "packetization-mode").unwrap_or(0)
                == integer_parameter(b_params, "packetization-mode").unwrap_or(0)
                && h264::is_same_profile(a_params, b_params)
                && h264::answer_profile_level_id(a_params, b_params).is_ok()
        }
        "video/vp9" if strict => {
            integer_parameter(a_params, "profile-id").unwrap_or(0)
                == integer_parameter(b_params, "profile-id").unwrap_or(0)
        }
        _ => true,
    }
}

/// Channels as mediasoup compares them after its validation: absent means 1
/// for audio, and video has none.
fn effective_channels(codec: &impl CodecDescription) -> Option<u8> {
    match MediaKind::from_mime_type(codec.mime_type()) {
        Some(MediaKind::Audio) => Some(codec.channels().unwrap_or(1)),
        _ => None,
    }
}

fn integer_parameter(parameters: &ParameterMap, key: &str) -> Option<i64> {
    parameters.get(key).and_then(ParameterValue::as_integer)
}

fn apt_of(parameters: &ParameterMap) -> Option<u8> {
    parameters.get("apt").and_then(as_payload_type)
}

fn is_rtx(mime_type: &str) -> bool {
    let bytes = mime_type.as_bytes();
    bytes.len() > 4 && bytes[bytes.len() - 4..].eq_ignore_ascii_case(b"/rtx")
}

fn is_h264(mime_type: &str) -> bool {
    mime_type.eq_ignore_ascii_case("video/h264") || mime_type.eq_ignore_ascii_case("video/h264-svc")
}

/// H.264 `profile-level-id` negotiation (RFC 6184 section 8.1), the part of
/// WebRTC's logic that mediasoup uses through `h264-profile-level-id`.
mod h264 {
    use super::PROFILE_LEVEL_ID;
    use crate::rtp_parameters::{ParameterMap, ParameterValue};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Profile {
        ConstrainedBaseline,
        Baseline,
        Main,
        ConstrainedHigh,
        High,
        PredictiveHigh444,
    }

    /// `level_idc` (10 = 1, 31 = 3.1, ...), with 0 standing for level 1b.
    const LEVEL_1B: u8 = 0;
    const LEVEL_1: u8 = 10;
    const LEVEL_1_1: u8 = 11;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct ProfileLevelId {
        pub profile: Profile,
        pub level: u8,
    }

    /// What an absent `profile-level-id` means. The RFC says Baseline 1;
    /// WebRTC (and so every browser) assumes Constrained Baseline 3.1.
    const DEFAULT: ProfileLevelId = ProfileLevelId {
        profile: Profile::ConstrainedBaseline,
        level: 31,
    };

    /// profile_idc, profile_iop pattern (x = either bit), profile.
    const PROFILE_PATTERNS: [(u8, &str, Profile); 9] = [
        (0x42, "x1xx0000", Profile::ConstrainedBaseline),
        (0x4d, "1xxx0000", Profile::ConstrainedBaseline),
        (0x58, "11xx0000", Profile::ConstrainedBaseline),
        (0x42, "x0xx0000", Profile::Baseline),
        (0x58, "10xx0000", Profile::Baseline),
        (0x4d, "0x0x0000", Profile::Main),
        (0x64, "00000000", Profile::High),
        (0x64, "00001100", Profile::ConstrainedHigh),
        (0xf4, "00000000", Profile::PredictiveHigh444),
    ];

    fn bits_match(pattern: &str, value: u8) -> bool {
        pattern.bytes().enumerate().all(|(index, expected)| {
            let bit = (value >> (7 - index)) & 1;
            match expected {
                b'1' => bit == 1,
                b'0' => bit == 0,
                _ => true,
            }
        })
    }

    /// Parses three hex bytes, e.g. `"42e01f"`.
    pub(super) fn parse(text: &str) -> Option<ProfileLevelId> {
        if text.len() != 6 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        let numeric = u32::from_str_radix(text, 16).ok()?;
        if numeric == 0 {
            return None;
        }
        let [_, profile_idc, profile_iop, level_idc] = numeric.to_be_bytes();
        // For level_idc 11, constraint_set3 marks level 1b.
        let level = match level_idc {
            LEVEL_1_1 if profile_iop & 0x10 != 0 => LEVEL_1B,
            10 | 11 | 12 | 13 | 20 | 21 | 22 | 30 | 31 | 32 | 40 | 41 | 42 | 50 | 51 | 52 => {
                level_idc
            }
            _ => return None,
        };
        PROFILE_PATTERNS
            .iter()
            .find(|(idc, pattern, _)| *idc == profile_idc && bits_match(pattern, profile_iop))
            .map(|(_, _, profile)| ProfileLevelId {
                profile: *profile,
                level,
            })
    }

    fn to_text(id: ProfileLevelId) -> Option<String> {
        if id.level == LEVEL_1B {
            return match id.profile {
                Profile::ConstrainedBaseline => Some("42f00b".to_owned()),
                Profile::Baseline => Some("42100b".to_owned()),
                Profile::Main => Some("4d100b".to_owned()),
                _ => None,
            };
        }
        let profile = match id.profile {
            Profile::ConstrainedBaseline => "42e0",
            Profile::Baseline => "4200",
            Profile::Main => "4d00",
            Profile::ConstrainedHigh => "640c",
            Profile::High => "6400",
            Profile::PredictiveHigh444 => "f400",
        };
        Some(format!("{profile}{:02x}", id.level))
    }

    /// The `profile-level-id` value as text. sdp-transform turns an
    /// all-digit value such as `640032` into a JSON number, so a number is
    /// read back as its six decimal digits.
    fn text_of(value: &ParameterValue) -> Option<String> {
        match value {
            ParameterValue::String(text) => Some(text.clone()),
            ParameterValue::Integer(number) if (0..=999_999).contains(number) => {
                Some(format!("{number:06}"))
            }
            _ => None,
        }
    }

    /// Whether the parameters carry a `profile-level-id` at all (an empty
    /// string or 0 counts as absent, as in JavaScript).
    fn has_profile_level_id(params: &ParameterMap) -> bool {
        match params.get(PROFILE_LEVEL_ID) {
            None => false,
            Some(ParameterValue::String(text)) => !text.is_empty(),
            Some(ParameterValue::Integer(number)) => *number != 0,
            Some(ParameterValue::Float(number)) => *number != 0.0,
        }
    }

    pub(super) fn from_parameters(params: &ParameterMap) -> Option<ProfileLevelId> {
        if !has_profile_level_id(params) {
            return Some(DEFAULT);
        }
        params
            .get(PROFILE_LEVEL_ID)
            .and_then(text_of)
            .and_then(|text| parse(&text))
    }

    pub(super) fn is_same_profile(a: &ParameterMap, b: &ParameterMap) -> bool {
        match (from_parameters(a), from_parameters(b)) {
            (Some(a), Some(b)) => a.profile == b.profile,
            _ => false,
        }
    }

    fn level_asymmetry_allowed(params: &ParameterMap) -> bool {
        params
            .get("level-asymmetry-allowed")
            .and_then(ParameterValue::as_integer)
            == Some(1)
    }

    /// Level 1b sits between 1 and 1.1.
    fn is_less_level(a: u8, b: u8) -> bool {
        if a == LEVEL_1B {
            return b != LEVEL_1 && b != LEVEL_1B;
        }
        if b == LEVEL_1B {
            // The JavaScript port mediasoup uses says `a !== L1` here, which
            // would put 1.1 below 1b; only level 1 is below 1b.
            return a == LEVEL_1;
        }
        a < b
    }

    /// The two sides' profiles differ or one cannot be read.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct IncompatibleProfiles;

    /// The `profile-level-id` to answer `remote` with when supporting
    /// `local`: `None` if neither gives one; the local level if both allow
    /// level asymmetry, else the lower of the two.
    pub(super) fn answer_profile_level_id(
        local: &ParameterMap,
        remote: &ParameterMap,
    ) -> Result<Option<String>, IncompatibleProfiles> {
        if !has_profile_level_id(local) && !has_profile_level_id(remote) {
            return Ok(None);
        }
        let local_id = from_parameters(local).ok_or(IncompatibleProfiles)?;
        let remote_id = from_parameters(remote).ok_or(IncompatibleProfiles)?;
        if local_id.profile != remote_id.profile {
            return Err(IncompatibleProfiles);
        }
        let level = if level_asymmetry_allowed(local) && level_asymmetry_allowed(remote) {
            local_id.level
        } else if is_less_level(local_id.level, remote_id.level) {
            local_id.level
        } else {
            remote_id.level
        };
        Ok(to_text(ProfileLevelId {
            profile: local_id.profile,
            level,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp_parameters::header_extension_uri as uri;
    use serde_json::{json, Value};

    // ---- fixtures ---------------------------------------------------------

    /// Media codecs as a router configuration would list them.
    fn configured_media_codecs() -> Vec<RtpCodecCapability> {
        serde_json::from_value(json!([
            { "kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2 },
            { "kind": "video", "mimeType": "video/VP8", "clockRate": 90000,
              "parameters": { "x-google-start-bitrate": 1000 } },
            { "kind": "video", "mimeType": "video/VP9", "clockRate": 90000,
              "parameters": { "profile-id": 2 } },
            { "kind": "video", "mimeType": "video/H264", "clockRate": 90000,
              "parameters": { "packetization-mode": 1, "profile-level-id": "42e01f",
                              "level-asymmetry-allowed": 1 } }
        ]))
        .unwrap()
    }

    fn router_caps() -> RtpCapabilities {
        generate_router_rtp_capabilities(&configured_media_codecs()).unwrap()
    }

    fn video_feedback() -> Value {
        json!([
            { "type": "goog-remb", "parameter": "" },
            { "type": "transport-cc", "parameter": "" },
            { "type": "ccm", "parameter": "fir" },
            { "type": "nack", "parameter": "" },
            { "type": "nack", "parameter": "pli" }
        ])
    }

    /// `device.rtpCapabilities` of Chrome loaded with [`router_caps`]: the
    /// router's payload types and extension ids, reduced to what Chrome has.
    fn chrome_device_caps_json() -> Value {
        json!({
            "codecs": [
                { "kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 100,
                  "clockRate": 48000, "channels": 2,
                  "parameters": { "minptime": 10, "useinbandfec": 1 },
                  "rtcpFeedback": [ { "type": "transport-cc", "parameter": "" } ] },
                { "kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 101,
                  "clockRate": 90000, "parameters": {}, "rtcpFeedback": video_feedback() },
                { "kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 102,
                  "clockRate": 90000, "parameters": { "apt": 101 }, "rtcpFeedback": [] },
                { "kind": "video", "mimeType": "video/VP9", "preferredPayloadType": 103,
                  "clockRate": 90000, "parameters": { "profile-id": 2 }, "rtcpFeedback": video_feedback() },
                { "kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 104,
                  "clockRate": 90000, "parameters": { "apt": 103 }, "rtcpFeedback": [] },
                { "kind": "video", "mimeType": "video/H264", "preferredPayloadType": 105,
                  "clockRate": 90000,
                  "parameters": { "level-asymmetry-allowed": 1, "packetization-mode": 1,
                                  "profile-level-id": "42e01f" },
                  "rtcpFeedback": video_feedback() },
                { "kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 106,
                  "clockRate": 90000, "parameters": { "apt": 105 }, "rtcpFeedback": [] }
            ],
            "headerExtensions": [
                { "kind": "audio", "uri": uri::MID, "preferredId": 1, "preferredEncrypt": false, "direction": "sendrecv" },
                { "kind": "video", "uri": uri::MID, "preferredId": 1, "preferredEncrypt": false, "direction": "sendrecv" },
                { "kind": "audio", "uri": uri::ABS_SEND_TIME, "preferredId": 4, "preferredEncrypt": false, "direction": "sendrecv" },
                { "kind": "video", "uri": uri::ABS_SEND_TIME, "preferredId": 4, "preferredEncrypt": false, "direction": "sendrecv" },
                { "kind": "video", "uri": uri::TRANSPORT_WIDE_CC_01, "preferredId": 5, "preferredEncrypt": false, "direction": "sendrecv" },
                { "kind": "audio", "uri": uri::SSRC_AUDIO_LEVEL, "preferredId": 10, "preferredEncrypt": false, "direction": "sendrecv" },
                { "kind": "video", "uri": uri::VIDEO_ORIENTATION, "preferredId": 11, "preferredEncrypt": false, "direction": "sendrecv" },
                { "kind": "video", "uri": uri::TOFFSET, "preferredId": 12, "preferredEncrypt": false, "direction": "sendrecv" }
            ]
        })
    }

    fn chrome_device_caps() -> RtpCapabilities {
        serde_json::from_value(chrome_device_caps_json()).unwrap()
    }

    /// Device caps with some codecs and header extensions removed.
    fn device_caps_without(mime_types: &[&str], uris: &[&str]) -> RtpCapabilities {
        let mut caps = chrome_device_caps();
        caps.codecs
            .retain(|codec| !mime_types.contains(&codec.mime_type.as_str()));
        caps.header_extensions
            .retain(|ext| !uris.contains(&ext.uri.as_str()));
        caps
    }

    /// mediasoup-client's `produce` parameters for a VP8 camera with three
    /// simulcast encodings (Chrome's own payload types and extension ids).
    fn vp8_simulcast_producer() -> RtpParameters {
        serde_json::from_value(json!({
            "mid": "1",
            "codecs": [
                { "mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                  "parameters": {}, "rtcpFeedback": video_feedback() },
                { "mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
                  "parameters": { "apt": 96 }, "rtcpFeedback": [] }
            ],
            "headerExtensions": [
                { "uri": uri::MID, "id": 4, "encrypt": false, "parameters": {} },
                { "uri": uri::RTP_STREAM_ID, "id": 10, "encrypt": false, "parameters": {} },
                { "uri": uri::REPAIRED_RTP_STREAM_ID, "id": 11, "encrypt": false, "parameters": {} },
                { "uri": uri::ABS_SEND_TIME, "id": 2, "encrypt": false, "parameters": {} },
                { "uri": uri::TRANSPORT_WIDE_CC_01, "id": 3, "encrypt": false, "parameters": {} },
                { "uri": uri::VIDEO_ORIENTATION, "id": 13, "encrypt": false, "parameters": {} },
                { "uri": uri::TOFFSET, "id": 14, "encrypt": false, "parameters": {} }
            ],
            "encodings": [
                { "rid": "r0", "active": true, "scalabilityMode": "L1T3", "scaleResolutionDownBy": 4, "maxBitrate": 100000 },
                { "rid": "r1", "active": true, "scalabilityMode": "L1T3", "scaleResolutionDownBy": 2, "maxBitrate": 300000 },
                { "rid": "r2", "active": true, "scalabilityMode": "L1T3", "scaleResolutionDownBy": 1, "maxBitrate": 900000 }
            ],
            "rtcp": { "cname": "Zq2bWRC1mdk7n0dY", "reducedSize": true }
        }))
        .unwrap()
    }

    /// mediasoup-client's `produce` parameters for a microphone.
    fn opus_producer() -> RtpParameters {
        serde_json::from_value(json!({
            "mid": "0",
            "codecs": [
                { "mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2,
                  "parameters": { "minptime": 10, "useinbandfec": 1 },
                  "rtcpFeedback": [ { "type": "transport-cc", "parameter": "" } ] }
            ],
            "headerExtensions": [
                { "uri": uri::MID, "id": 4, "encrypt": false, "parameters": {} },
                { "uri": uri::ABS_SEND_TIME, "id": 2, "encrypt": false, "parameters": {} },
                { "uri": uri::TRANSPORT_WIDE_CC_01, "id": 3, "encrypt": false, "parameters": {} },
                { "uri": uri::SSRC_AUDIO_LEVEL, "id": 1, "encrypt": false, "parameters": {} }
            ],
            "encodings": [ { "ssrc": 1939408431u32, "dtx": false } ],
            "rtcp": { "cname": "Zq2bWRC1mdk7n0dY", "reducedSize": true }
        }))
        .unwrap()
    }

    fn h264_producer(profile_level_id: Value) -> RtpParameters {
        serde_json::from_value(json!({
            "mid": "2",
            "codecs": [
                { "mimeType": "video/H264", "payloadType": 125, "clockRate": 90000,
                  "parameters": { "level-asymmetry-allowed": 1, "packetization-mode": 1,
                                  "profile-level-id": profile_level_id },
                  "rtcpFeedback": video_feedback() },
                { "mimeType": "video/rtx", "payloadType": 107, "clockRate": 90000,
                  "parameters": { "apt": 125 }, "rtcpFeedback": [] }
            ],
            "encodings": [ { "ssrc": 11111111u32, "rtx": { "ssrc": 22222222u32 } } ],
            "rtcp": { "cname": "h264cname" }
        }))
        .unwrap()
    }

    fn consumable(kind: MediaKind, producer: &RtpParameters) -> RtpParameters {
        let caps = router_caps();
        let mapping = get_producer_rtp_parameters_mapping(producer, &caps).unwrap();
        get_consumable_rtp_parameters(kind, producer, &caps, &mapping).unwrap()
    }

    fn feedback_types(codec: &RtpCodecParameters) -> Vec<String> {
        codec
            .rtcp_feedback
            .iter()
            .map(|fb| format!("{} {}", fb.r#type, fb.parameter).trim().to_owned())
            .collect()
    }

    fn codec_json(value: Value) -> RtpCodecCapability {
        serde_json::from_value(value).unwrap()
    }

    // ---- validation -------------------------------------------------------

    #[test]
    fn the_engines_own_capabilities_are_valid() {
        validate_rtp_capabilities(&supported_rtp_capabilities()).unwrap();
        validate_rtp_capabilities(&router_caps()).unwrap();
        validate_rtp_capabilities(&chrome_device_caps()).unwrap();
        validate_rtp_parameters(&vp8_simulcast_producer()).unwrap();
        validate_rtp_parameters(&opus_producer()).unwrap();
    }

    #[test]
    fn a_mime_type_without_audio_or_video_is_rejected_by_name() {
        let mut params = opus_producer();
        params.codecs[0].mime_type = "opus".to_owned();
        let error = validate_rtp_parameters(&params).unwrap_err();
        assert_eq!(
            error,
            ValidationError::InvalidMimeType {
                mime_type: "opus".to_owned()
            }
        );
        assert!(error.to_string().contains("\"opus\""));
    }

    #[test]
    fn a_capability_whose_kind_contradicts_its_mime_type_is_rejected() {
        let codec =
            codec_json(json!({ "kind": "audio", "mimeType": "video/VP8", "clockRate": 90000 }));
        assert!(matches!(
            validate_rtp_codec_capability(&codec),
            Err(ValidationError::KindMismatch { .. })
        ));
    }

    #[test]
    fn rtx_needs_an_integer_apt_that_is_a_payload_type() {
        for apt in [json!("96"), json!(300), json!(-1), json!(1.5)] {
            let mut producer = vp8_simulcast_producer();
            producer.codecs[1].parameters = serde_json::from_value(json!({ "apt": apt })).unwrap();
            assert!(
                matches!(
                    validate_rtp_parameters(&producer),
                    Err(ValidationError::InvalidApt { .. })
                ),
                "apt {apt} accepted"
            );
        }
        let mut producer = vp8_simulcast_producer();
        producer.codecs[1].parameters.clear();
        let error = validate_rtp_parameters(&producer).unwrap_err();
        assert!(error.to_string().contains("video/rtx"), "{error}");
    }

    #[test]
    fn out_of_range_or_duplicate_numbers_are_rejected() {
        let mut params = opus_producer();
        params.codecs[0].payload_type = 200;
        assert!(matches!(
            validate_rtp_parameters(&params),
            Err(ValidationError::PayloadTypeOutOfRange {
                payload_type: 200,
                ..
            })
        ));

        let mut params = vp8_simulcast_producer();
        params.codecs[1].payload_type = 96;
        params.codecs[1].parameters.insert("apt".into(), 96.into());
        assert_eq!(
            validate_rtp_parameters(&params),
            Err(ValidationError::DuplicatePayloadType { payload_type: 96 })
        );

        let mut params = vp8_simulcast_producer();
        params.header_extensions[1].id = 4;
        assert!(matches!(
            validate_rtp_parameters(&params),
            Err(ValidationError::DuplicateHeaderExtensionId { id: 4, .. })
        ));

        let mut params = vp8_simulcast_producer();
        params.header_extensions[0].id = 0;
        assert!(matches!(
            validate_rtp_parameters(&params),
            Err(ValidationError::ZeroHeaderExtensionId { .. })
        ));

        let mut params = opus_producer();
        params.codecs[0].clock_rate = 0;
        assert!(matches!(
            validate_rtp_parameters(&params),
            Err(ValidationError::ZeroClockRate { .. })
        ));
    }

    #[test]
    fn bad_rids_and_repeated_streams_are_rejected() {
        let mut params = vp8_simulcast_producer();
        params.encodings[1].rid = Some("r0".to_owned());
        assert_eq!(
            validate_rtp_parameters(&params),
            Err(ValidationError::DuplicateRid {
                rid: "r0".to_owned()
            })
        );
        for rid in ["", "r 1", "ünïcode", "a-very-long-rid-value"] {
            let mut params = vp8_simulcast_producer();
            params.encodings[2].rid = Some(rid.to_owned());
            assert!(
                matches!(
                    validate_rtp_parameters(&params),
                    Err(ValidationError::InvalidRid { index: 2, .. })
                ),
                "rid {rid:?} accepted"
            );
        }
        let mut params = opus_producer();
        params.encodings[0].rtx = Some(RtxStream {
            ssrc: 1_939_408_431,
        });
        assert_eq!(
            validate_rtp_parameters(&params),
            Err(ValidationError::DuplicateSsrc {
                ssrc: 1_939_408_431
            })
        );
        let mut params = vp8_simulcast_producer();
        params.encodings[0].codec_payload_type = Some(97);
        assert_eq!(
            validate_rtp_parameters(&params),
            Err(ValidationError::UnknownEncodingCodec {
                index: 0,
                payload_type: 97
            })
        );
    }

    // ---- router capabilities ----------------------------------------------

    #[test]
    fn router_assigns_dynamic_payload_types_from_100_and_pairs_video_with_rtx() {
        let caps = router_caps();
        let summary: Vec<(String, u8, Option<u8>)> = caps
            .codecs
            .iter()
            .map(|codec| {
                (
                    codec.mime_type.clone(),
                    codec.preferred_payload_type.unwrap(),
                    apt_of(&codec.parameters),
                )
            })
            .collect();
        let expected = [
            ("audio/opus", 100, None),
            ("video/VP8", 101, None),
            ("video/rtx", 102, Some(101)),
            ("video/VP9", 103, None),
            ("video/rtx", 104, Some(103)),
            ("video/H264", 105, None),
            ("video/rtx", 106, Some(105)),
        ];
        assert_eq!(summary.len(), expected.len());
        for (got, want) in summary.iter().zip(expected) {
            assert_eq!((got.0.as_str(), got.1, got.2), want);
        }
        let rtx = &caps.codecs[2];
        assert_eq!(rtx.kind, MediaKind::Video);
        assert_eq!(rtx.clock_rate, 90_000);
        assert!(rtx.rtcp_feedback.is_empty());
        assert_eq!(
            caps.header_extensions,
            supported_rtp_capabilities().header_extensions
        );
    }

    #[test]
    fn router_codecs_take_supported_feedback_and_merge_configured_parameters() {
        let caps = router_caps();
        let opus = &caps.codecs[0];
        assert_eq!(opus.channels, Some(2));
        assert_eq!(opus.parameters["useinbandfec"], ParameterValue::Integer(1));
        assert_eq!(opus.rtcp_feedback, [RtcpFeedback::new("transport-cc", "")]);
        let vp8 = &caps.codecs[1];
        assert_eq!(
            vp8.parameters["x-google-start-bitrate"],
            ParameterValue::Integer(1000)
        );
        assert!(vp8
            .rtcp_feedback
            .contains(&RtcpFeedback::new("nack", "pli")));
        let vp9 = &caps.codecs[3];
        assert_eq!(vp9.parameters["profile-id"], ParameterValue::Integer(2));
        let h264 = &caps.codecs[5];
        assert_eq!(h264.parameters["profile-level-id"].as_str(), Some("42e01f"));
        assert_eq!(
            h264.parameters["packetization-mode"],
            ParameterValue::Integer(1)
        );
    }

    #[test]
    fn router_picks_the_h264_variant_of_the_configured_profile() {
        let caps = generate_router_rtp_capabilities(&[codec_json(json!({
            "kind": "video", "mimeType": "video/H264", "clockRate": 90000,
            "parameters": { "packetization-mode": 1, "profile-level-id": "4d0032" }
        }))])
        .unwrap();
        // Main at level 5; the supported Main variant (level 3.1) is chosen
        // and the configured level wins.
        assert_eq!(
            caps.codecs[0].parameters["profile-level-id"].as_str(),
            Some("4d0032")
        );
        assert_eq!(
            caps.codecs[0].parameters["level-asymmetry-allowed"],
            ParameterValue::Integer(1)
        );
    }

    #[test]
    fn router_keeps_configured_payload_types_and_skips_them_when_allocating() {
        let caps = generate_router_rtp_capabilities(&[
            codec_json(json!({ "kind": "video", "mimeType": "video/VP8", "clockRate": 90000 })),
            codec_json(
                json!({ "kind": "audio", "mimeType": "audio/opus", "clockRate": 48000,
                               "channels": 2, "preferredPayloadType": 101 }),
            ),
        ])
        .unwrap();
        let pts: Vec<_> = caps
            .codecs
            .iter()
            .map(|codec| {
                (
                    codec.mime_type.as_str(),
                    codec.preferred_payload_type.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            pts,
            [("video/VP8", 100), ("video/rtx", 102), ("audio/opus", 101)]
        );
    }

    #[test]
    fn router_rejects_unsupported_codecs_by_mime_type() {
        for codec in [
            json!({ "kind": "video", "mimeType": "video/AV1", "clockRate": 90000 }),
            json!({ "kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 1 }),
            json!({ "kind": "audio", "mimeType": "audio/opus", "clockRate": 16000, "channels": 2 }),
            json!({ "kind": "video", "mimeType": "video/rtx", "clockRate": 90000,
                    "parameters": { "apt": 100 } }),
        ] {
            let error = generate_router_rtp_capabilities(&[codec_json(codec.clone())]).unwrap_err();
            assert!(
                matches!(error, RouterCapabilitiesError::UnsupportedCodec { .. }),
                "{codec}: {error}"
            );
            assert!(error
                .to_string()
                .contains(codec["mimeType"].as_str().unwrap()));
        }
    }

    #[test]
    fn router_rejects_a_payload_type_configured_twice() {
        let error = generate_router_rtp_capabilities(&[
            codec_json(
                json!({ "kind": "video", "mimeType": "video/VP8", "clockRate": 90000,
                               "preferredPayloadType": 96 }),
            ),
            codec_json(
                json!({ "kind": "video", "mimeType": "video/VP9", "clockRate": 90000,
                               "preferredPayloadType": 96 }),
            ),
        ])
        .unwrap_err();
        assert_eq!(
            error,
            RouterCapabilitiesError::DuplicatePayloadType { payload_type: 96 }
        );
    }

    #[test]
    fn router_runs_out_of_dynamic_payload_types_with_an_error() {
        let vp8 =
            codec_json(json!({ "kind": "video", "mimeType": "video/VP8", "clockRate": 90000 }));
        let many = vec![vp8; 17];
        assert!(matches!(
            generate_router_rtp_capabilities(&many),
            Err(RouterCapabilitiesError::PayloadTypesExhausted { .. })
        ));
    }

    // ---- producer mapping ---------------------------------------------------

    #[test]
    fn producer_payload_types_map_to_the_routers_media_then_rtx() {
        let mapping =
            get_producer_rtp_parameters_mapping(&vp8_simulcast_producer(), &router_caps()).unwrap();
        assert_eq!(
            mapping.codecs,
            [
                RtpMappingCodec {
                    payload_type: 96,
                    mapped_payload_type: 101
                },
                RtpMappingCodec {
                    payload_type: 97,
                    mapped_payload_type: 102
                },
            ]
        );
    }

    #[test]
    fn simulcast_encodings_get_consecutive_mapped_ssrcs_and_keep_their_rids() {
        let mapping = get_producer_rtp_parameters_mapping_with(
            &vp8_simulcast_producer(),
            &router_caps(),
            500_000_000,
        )
        .unwrap();
        let json = serde_json::to_value(&mapping.encodings).unwrap();
        assert_eq!(
            json,
            json!([
                { "rid": "r0", "scalabilityMode": "L1T3", "mappedSsrc": 500000000u32 },
                { "rid": "r1", "scalabilityMode": "L1T3", "mappedSsrc": 500000001u32 },
                { "rid": "r2", "scalabilityMode": "L1T3", "mappedSsrc": 500000002u32 }
            ])
        );

        let random = get_producer_rtp_parameters_mapping(&opus_producer(), &router_caps()).unwrap();
        assert_eq!(random.encodings[0].ssrc, Some(1_939_408_431));
        assert!((100_000_000..=999_999_999).contains(&random.encodings[0].mapped_ssrc));
        assert_eq!(
            random.codecs,
            [RtpMappingCodec {
                payload_type: 111,
                mapped_payload_type: 100
            }]
        );
    }

    #[test]
    fn a_producer_codec_the_router_lacks_is_rejected_by_mime_type() {
        let caps = generate_router_rtp_capabilities(&configured_media_codecs()[..2]).unwrap();
        let error = get_producer_rtp_parameters_mapping(&h264_producer(json!("42e01f")), &caps)
            .unwrap_err();
        assert_eq!(
            error,
            ProducerMappingError::UnsupportedCodec {
                mime_type: "video/H264".to_owned(),
                payload_type: 125
            }
        );
        assert!(error.to_string().contains("video/H264"));
    }

    #[test]
    fn an_h264_producer_of_another_profile_does_not_match() {
        // The router has Constrained Baseline only; High is refused.
        let error =
            get_producer_rtp_parameters_mapping(&h264_producer(json!("64001f")), &router_caps())
                .unwrap_err();
        assert!(matches!(
            error,
            ProducerMappingError::UnsupportedCodec { .. }
        ));
        // Packetization mode 0 is another codec too.
        let mut producer = h264_producer(json!("42e01f"));
        producer.codecs[0]
            .parameters
            .insert("packetization-mode".into(), 0.into());
        assert!(get_producer_rtp_parameters_mapping(&producer, &router_caps()).is_err());
        // Baseline 42001f is not Constrained Baseline.
        assert!(get_producer_rtp_parameters_mapping(
            &h264_producer(json!("42001f")),
            &router_caps()
        )
        .is_err());
        // A higher level of the same profile matches.
        let mapping =
            get_producer_rtp_parameters_mapping(&h264_producer(json!("42e034")), &router_caps())
                .unwrap();
        assert_eq!(mapping.codecs[0].mapped_payload_type, 105);
        assert_eq!(mapping.codecs[1].mapped_payload_type, 106);
    }

    #[test]
    fn vp9_profile_id_must_match() {
        let producer = |profile_id: i64| -> RtpParameters {
            serde_json::from_value(json!({
                "codecs": [ { "mimeType": "video/VP9", "payloadType": 98, "clockRate": 90000,
                              "parameters": { "profile-id": profile_id } } ],
                "encodings": [ { "ssrc": 1234 } ]
            }))
            .unwrap()
        };
        // The router is configured with profile 2 only.
        assert!(get_producer_rtp_parameters_mapping(&producer(2), &router_caps()).is_ok());
        assert!(matches!(
            get_producer_rtp_parameters_mapping(&producer(0), &router_caps()),
            Err(ProducerMappingError::UnsupportedCodec {
                payload_type: 98,
                ..
            })
        ));
    }

    #[test]
    fn rtx_pointing_at_no_media_codec_is_rejected() {
        let mut producer = vp8_simulcast_producer();
        producer.codecs[1]
            .parameters
            .insert("apt".into(), 120.into());
        assert_eq!(
            get_producer_rtp_parameters_mapping(&producer, &router_caps()),
            Err(ProducerMappingError::RtxWithoutMediaCodec {
                payload_type: 97,
                apt: 120
            })
        );
    }

    #[test]
    fn rtx_is_rejected_when_the_router_has_none_for_that_codec() {
        let mut caps = router_caps();
        caps.codecs
            .retain(|codec| apt_of(&codec.parameters) != Some(101));
        assert!(matches!(
            get_producer_rtp_parameters_mapping(&vp8_simulcast_producer(), &caps),
            Err(ProducerMappingError::RouterLacksRtx {
                router_payload_type: 101,
                ..
            })
        ));
    }

    #[test]
    fn producers_without_media_codecs_or_encodings_or_stream_ids_are_rejected() {
        let mut producer = vp8_simulcast_producer();
        producer.codecs.remove(0);
        assert!(get_producer_rtp_parameters_mapping(&producer, &router_caps()).is_err());

        let mut producer = vp8_simulcast_producer();
        producer.codecs.clear();
        assert_eq!(
            get_producer_rtp_parameters_mapping(&producer, &router_caps()),
            Err(ProducerMappingError::NoMediaCodec)
        );

        let mut producer = opus_producer();
        producer.encodings.clear();
        assert_eq!(
            get_producer_rtp_parameters_mapping(&producer, &router_caps()),
            Err(ProducerMappingError::NoEncodings)
        );

        let mut producer = vp8_simulcast_producer();
        producer.encodings[1].rid = None;
        assert_eq!(
            get_producer_rtp_parameters_mapping(&producer, &router_caps()),
            Err(ProducerMappingError::EncodingWithoutSsrcOrRid { index: 1 })
        );
    }

    // ---- consumable parameters --------------------------------------------

    #[test]
    fn consumable_parameters_speak_the_routers_payload_types_and_extension_ids() {
        let producer = vp8_simulcast_producer();
        let caps = router_caps();
        let mapping = get_producer_rtp_parameters_mapping(&producer, &caps).unwrap();
        let params =
            get_consumable_rtp_parameters(MediaKind::Video, &producer, &caps, &mapping).unwrap();

        let pts: Vec<_> = params
            .codecs
            .iter()
            .map(|c| (c.mime_type.as_str(), c.payload_type))
            .collect();
        assert_eq!(pts, [("video/VP8", 101), ("video/rtx", 102)]);
        // The producer's codec parameters, the router's feedback.
        assert!(params.codecs[0].parameters.is_empty());
        assert_eq!(params.codecs[0].rtcp_feedback, caps.codecs[1].rtcp_feedback);
        assert_eq!(
            params.codecs[1].parameters["apt"],
            ParameterValue::Integer(101)
        );

        let exts: Vec<_> = params
            .header_extensions
            .iter()
            .map(|e| (e.uri.as_str(), e.id))
            .collect();
        assert_eq!(
            exts,
            [
                (uri::MID, 1),
                (uri::ABS_SEND_TIME, 4),
                (uri::TRANSPORT_WIDE_CC_01, 5),
                (uri::VIDEO_ORIENTATION, 11),
                (uri::TOFFSET, 12),
                (uri::ABS_CAPTURE_TIME, 13),
                (uri::PLAYOUT_DELAY, 14),
            ]
        );

        for (encoding, mapped) in params.encodings.iter().zip(&mapping.encodings) {
            assert_eq!(encoding.ssrc, Some(mapped.mapped_ssrc));
            assert_eq!(encoding.rid, None);
            assert_eq!(encoding.rtx, None);
            assert_eq!(encoding.scalability_mode.as_deref(), Some("L1T3"));
        }
        assert_eq!(params.encodings[2].max_bitrate, Some(900_000));
        assert_eq!(params.rtcp.cname.as_deref(), Some("Zq2bWRC1mdk7n0dY"));
        assert!(params.rtcp.reduced_size);
        assert_eq!(params.mid, None);
    }

    #[test]
    fn audio_consumable_parameters_carry_only_sendable_audio_extensions() {
        let params = consumable(MediaKind::Audio, &opus_producer());
        assert_eq!(params.codecs.len(), 1);
        assert_eq!(params.codecs[0].payload_type, 100);
        assert_eq!(params.codecs[0].channels, Some(2));
        let uris: Vec<_> = params
            .header_extensions
            .iter()
            .map(|e| e.uri.as_str())
            .collect();
        assert_eq!(
            uris,
            [
                uri::MID,
                uri::ABS_SEND_TIME,
                uri::SSRC_AUDIO_LEVEL,
                uri::ABS_CAPTURE_TIME,
                uri::PLAYOUT_DELAY
            ]
        );
        assert_eq!(params.encodings[0].dtx, Some(false));
    }

    #[test]
    fn consumable_h264_gets_the_profile_level_id_the_router_answers_with() {
        let params = consumable(MediaKind::Video, &h264_producer(json!("42e034")));
        assert_eq!(params.codecs[0].payload_type, 105);
        // Both allow level asymmetry: the producer's level stays.
        assert_eq!(
            params.codecs[0].parameters["profile-level-id"].as_str(),
            Some("42e034")
        );
    }

    #[test]
    fn a_mapping_from_elsewhere_is_an_error_not_a_panic() {
        let producer = vp8_simulcast_producer();
        let caps = router_caps();
        let mapping = get_producer_rtp_parameters_mapping(&opus_producer(), &caps).unwrap();
        assert_eq!(
            get_consumable_rtp_parameters(MediaKind::Video, &producer, &caps, &mapping),
            Err(ConsumableParametersError::UnmappedPayloadType { payload_type: 96 })
        );
        let mut mapping = get_producer_rtp_parameters_mapping(&producer, &caps).unwrap();
        mapping.encodings.pop();
        assert_eq!(
            get_consumable_rtp_parameters(MediaKind::Video, &producer, &caps, &mapping),
            Err(ConsumableParametersError::EncodingCountMismatch {
                encodings: 3,
                mapped: 2
            })
        );
        let mapping = get_producer_rtp_parameters_mapping(&producer, &caps).unwrap();
        assert_eq!(
            get_consumable_rtp_parameters(
                MediaKind::Video,
                &producer,
                &RtpCapabilities::default(),
                &mapping
            ),
            Err(ConsumableParametersError::UnknownRouterPayloadType { payload_type: 101 })
        );
    }

    // ---- can_consume ------------------------------------------------------------

    #[test]
    fn a_device_with_the_codec_can_consume() {
        let vp8 = consumable(MediaKind::Video, &vp8_simulcast_producer());
        assert_eq!(can_consume(&vp8, &chrome_device_caps()), Ok(true));
        let opus = consumable(MediaKind::Audio, &opus_producer());
        assert_eq!(can_consume(&opus, &chrome_device_caps()), Ok(true));
    }

    #[test]
    fn a_device_lacking_the_codec_cannot_consume() {
        let vp9_producer: RtpParameters = serde_json::from_value(json!({
            "codecs": [
                { "mimeType": "video/VP9", "payloadType": 98, "clockRate": 90000,
                  "parameters": { "profile-id": 2 }, "rtcpFeedback": video_feedback() },
                { "mimeType": "video/rtx", "payloadType": 99, "clockRate": 90000,
                  "parameters": { "apt": 98 } }
            ],
            "encodings": [ { "ssrc": 4242, "rtx": { "ssrc": 4243 }, "scalabilityMode": "L3T3_KEY" } ]
        }))
        .unwrap();
        let params = consumable(MediaKind::Video, &vp9_producer);
        // Safari-like: no VP9 at all, though it has RTX.
        let caps = device_caps_without(&["video/VP9"], &[]);
        assert_eq!(can_consume(&params, &caps), Ok(false));
        // Another VP9 profile is another codec.
        let mut caps = chrome_device_caps();
        caps.codecs[3]
            .parameters
            .insert("profile-id".into(), 0.into());
        assert_eq!(can_consume(&params, &caps), Ok(false));
        // Audio capabilities cannot take video.
        let caps = device_caps_without(&["video/VP8", "video/VP9", "video/H264", "video/rtx"], &[]);
        let vp8 = consumable(MediaKind::Video, &vp8_simulcast_producer());
        assert_eq!(can_consume(&vp8, &caps), Ok(false));
    }

    #[test]
    fn a_device_with_only_rtx_cannot_consume() {
        let params = consumable(MediaKind::Video, &vp8_simulcast_producer());
        let caps = device_caps_without(&["video/VP8"], &[]);
        assert_eq!(can_consume(&params, &caps), Ok(false));
    }

    #[test]
    fn invalid_device_capabilities_are_an_error() {
        let params = consumable(MediaKind::Audio, &opus_producer());
        let mut caps = chrome_device_caps();
        caps.codecs[0].mime_type = "opus".to_owned();
        assert!(matches!(
            can_consume(&params, &caps),
            Err(ValidationError::InvalidMimeType { .. })
        ));
        assert!(matches!(
            get_consumer_rtp_parameters(&params, &caps, false),
            Err(ConsumerParametersError::Invalid(
                ValidationError::InvalidMimeType { .. }
            ))
        ));
    }

    // ---- consumer parameters -------------------------------------------------

    #[test]
    fn a_simulcast_consumer_gets_one_l3t3_stream_with_rtx_right_after_its_ssrc() {
        let consumable = consumable(MediaKind::Video, &vp8_simulcast_producer());
        let params =
            get_consumer_rtp_parameters(&consumable, &chrome_device_caps(), false).unwrap();
        assert_eq!(params.encodings.len(), 1);
        let encoding = &params.encodings[0];
        let ssrc = encoding.ssrc.unwrap();
        assert!((100_000_000..=999_999_999).contains(&ssrc));
        assert!(consumable.encodings.iter().all(|e| e.ssrc != Some(ssrc)));
        assert_eq!(encoding.rtx, Some(RtxStream { ssrc: ssrc + 1 }));
        assert_eq!(encoding.scalability_mode.as_deref(), Some("L3T3"));
        assert_eq!(encoding.max_bitrate, Some(900_000));
        assert_eq!(encoding.rid, None);
        assert_eq!(encoding.scale_resolution_down_by, None);

        let pts: Vec<_> = params.codecs.iter().map(|c| c.payload_type).collect();
        assert_eq!(pts, [101, 102]);
        assert_eq!(params.rtcp, consumable.rtcp);
        assert_eq!(params.mid, None);

        // mediasoup-client reads this JSON in transport.consume().
        let json = serde_json::to_value(&params.encodings).unwrap();
        assert_eq!(
            json,
            json!([ { "ssrc": ssrc, "rtx": { "ssrc": ssrc + 1 },
                      "scalabilityMode": "L3T3", "maxBitrate": 900000 } ])
        );
    }

    #[test]
    fn consumers_get_fresh_ssrcs_each_time() {
        let consumable = consumable(MediaKind::Audio, &opus_producer());
        let ssrcs: HashSet<_> = (0..8)
            .map(|_| {
                get_consumer_rtp_parameters(&consumable, &chrome_device_caps(), false)
                    .unwrap()
                    .encodings[0]
                    .ssrc
                    .unwrap()
            })
            .collect();
        assert!(ssrcs.len() > 1);
    }

    #[test]
    fn simulcast_without_a_scalability_mode_becomes_one_temporal_layer() {
        let mut producer = vp8_simulcast_producer();
        for encoding in &mut producer.encodings {
            encoding.scalability_mode = None;
            encoding.max_bitrate = None;
        }
        producer.encodings.pop();
        let consumable = consumable(MediaKind::Video, &producer);
        let params =
            get_consumer_rtp_parameters(&consumable, &chrome_device_caps(), false).unwrap();
        assert_eq!(
            params.encodings[0].scalability_mode.as_deref(),
            Some("L2T1")
        );
        assert_eq!(params.encodings[0].max_bitrate, None);
    }

    #[test]
    fn an_svc_producer_keeps_its_scalability_mode() {
        let producer: RtpParameters = serde_json::from_value(json!({
            "codecs": [ { "mimeType": "video/VP9", "payloadType": 98, "clockRate": 90000,
                          "parameters": { "profile-id": 2 }, "rtcpFeedback": video_feedback() } ],
            "encodings": [ { "ssrc": 4242, "scalabilityMode": "L3T3_KEY" } ]
        }))
        .unwrap();
        let consumable = consumable(MediaKind::Video, &producer);
        let params =
            get_consumer_rtp_parameters(&consumable, &chrome_device_caps(), false).unwrap();
        assert_eq!(
            params.encodings[0].scalability_mode.as_deref(),
            Some("L3T3_KEY")
        );
        // The producer sent no RTX, but the router's consumable has it and so
        // does the device: the consumer gets retransmissions from the engine.
        assert!(params.encodings[0].rtx.is_some());
    }

    #[test]
    fn transport_cc_wins_over_remb_when_negotiated() {
        let consumable = consumable(MediaKind::Video, &vp8_simulcast_producer());
        let params =
            get_consumer_rtp_parameters(&consumable, &chrome_device_caps(), false).unwrap();
        assert_eq!(
            feedback_types(&params.codecs[0]),
            ["nack", "nack pli", "ccm fir", "transport-cc"]
        );
        let uris: Vec<_> = params
            .header_extensions
            .iter()
            .map(|e| e.uri.as_str())
            .collect();
        assert!(uris.contains(&uri::TRANSPORT_WIDE_CC_01));
        assert!(!uris.contains(&uri::ABS_SEND_TIME));
    }

    #[test]
    fn remb_is_used_when_the_device_lacks_transport_cc() {
        let consumable = consumable(MediaKind::Video, &vp8_simulcast_producer());
        let caps = device_caps_without(&[], &[uri::TRANSPORT_WIDE_CC_01]);
        let params = get_consumer_rtp_parameters(&consumable, &caps, false).unwrap();
        assert_eq!(
            feedback_types(&params.codecs[0]),
            ["nack", "nack pli", "ccm fir", "goog-remb"]
        );
        let uris: Vec<_> = params
            .header_extensions
            .iter()
            .map(|e| e.uri.as_str())
            .collect();
        assert!(uris.contains(&uri::ABS_SEND_TIME));
        assert!(!uris.contains(&uri::TRANSPORT_WIDE_CC_01));
    }

    #[test]
    fn no_bandwidth_feedback_without_either_extension() {
        let consumable = consumable(MediaKind::Video, &vp8_simulcast_producer());
        let caps = device_caps_without(&[], &[uri::TRANSPORT_WIDE_CC_01, uri::ABS_SEND_TIME]);
        let params = get_consumer_rtp_parameters(&consumable, &caps, false).unwrap();
        assert_eq!(
            feedback_types(&params.codecs[0]),
            ["nack", "nack pli", "ccm fir"]
        );
    }

    #[test]
    fn audio_consumers_use_remb_because_audio_transport_cc_is_receive_only() {
        let consumable = consumable(MediaKind::Audio, &opus_producer());
        let params =
            get_consumer_rtp_parameters(&consumable, &chrome_device_caps(), false).unwrap();
        assert!(params.codecs[0].rtcp_feedback.is_empty());
        let uris: Vec<_> = params
            .header_extensions
            .iter()
            .map(|e| e.uri.as_str())
            .collect();
        assert_eq!(uris, [uri::MID, uri::ABS_SEND_TIME, uri::SSRC_AUDIO_LEVEL]);
        assert_eq!(params.encodings[0].rtx, None);
        assert_eq!(params.encodings[0].scalability_mode, None);
        assert_eq!(
            params.codecs[0].parameters["useinbandfec"],
            ParameterValue::Integer(1)
        );
    }

    #[test]
    fn rtx_is_dropped_when_the_device_has_none() {
        let consumable = consumable(MediaKind::Video, &vp8_simulcast_producer());
        let caps = device_caps_without(&["video/rtx"], &[]);
        let params = get_consumer_rtp_parameters(&consumable, &caps, false).unwrap();
        assert_eq!(params.codecs.len(), 1);
        assert_eq!(params.codecs[0].mime_type, "video/VP8");
        assert_eq!(params.encodings[0].rtx, None);
    }

    #[test]
    fn feedback_is_limited_to_what_the_device_supports() {
        let consumable = consumable(MediaKind::Video, &vp8_simulcast_producer());
        let mut caps = chrome_device_caps();
        caps.codecs[1]
            .rtcp_feedback
            .retain(|fb| fb.r#type != "ccm" && fb.r#type != "goog-remb");
        let params = get_consumer_rtp_parameters(&consumable, &caps, false).unwrap();
        assert_eq!(
            feedback_types(&params.codecs[0]),
            ["nack", "nack pli", "transport-cc"]
        );
    }

    #[test]
    fn header_extensions_with_another_id_on_the_device_are_dropped() {
        let consumable = consumable(MediaKind::Video, &vp8_simulcast_producer());
        let mut caps = chrome_device_caps();
        for ext in &mut caps.header_extensions {
            if ext.uri == uri::VIDEO_ORIENTATION {
                ext.preferred_id = 9;
            }
        }
        let params = get_consumer_rtp_parameters(&consumable, &caps, false).unwrap();
        let exts: Vec<_> = params
            .header_extensions
            .iter()
            .map(|e| (e.uri.as_str(), e.id))
            .collect();
        assert_eq!(
            exts,
            [
                (uri::MID, 1),
                (uri::TRANSPORT_WIDE_CC_01, 5),
                (uri::TOFFSET, 12)
            ]
        );
    }

    #[test]
    fn no_common_codec_is_an_error_naming_the_producer_codecs() {
        let consumable = consumable(MediaKind::Video, &vp8_simulcast_producer());
        let caps = device_caps_without(&["video/VP8"], &[]);
        let error = get_consumer_rtp_parameters(&consumable, &caps, false).unwrap_err();
        assert_eq!(
            error,
            ConsumerParametersError::NoCompatibleMediaCodecs {
                producer_codecs: vec!["video/VP8".to_owned()]
            }
        );
        assert!(error.to_string().contains("video/VP8"));
        let empty = get_consumer_rtp_parameters(&consumable, &RtpCapabilities::default(), false);
        assert!(empty.is_err());
    }

    #[test]
    fn a_pipe_consumer_receives_every_stream_with_consecutive_ssrcs() {
        let consumable = consumable(MediaKind::Video, &vp8_simulcast_producer());
        let params = get_consumer_rtp_parameters(&consumable, &chrome_device_caps(), true).unwrap();
        assert_eq!(params.encodings.len(), 3);
        let base = params.encodings[0].ssrc.unwrap();
        let rtx_base = params.encodings[0].rtx.unwrap().ssrc;
        for (index, encoding) in (0u32..).zip(&params.encodings) {
            assert_eq!(encoding.ssrc, Some(base + index));
            assert_eq!(
                encoding.rtx,
                Some(RtxStream {
                    ssrc: rtx_base + index
                })
            );
            assert_eq!(encoding.scalability_mode.as_deref(), Some("L1T3"));
        }
        assert!(rtx_base.abs_diff(base) >= 3);
        assert_eq!(params.encodings[1].max_bitrate, Some(300_000));

        let caps = device_caps_without(&["video/rtx"], &[]);
        let params = get_consumer_rtp_parameters(&consumable, &caps, true).unwrap();
        assert!(params
            .encodings
            .iter()
            .all(|encoding| encoding.rtx.is_none()));
    }

    #[test]
    fn consumer_parameters_are_mediasoup_json() {
        let consumable = consumable(MediaKind::Audio, &opus_producer());
        let params =
            get_consumer_rtp_parameters(&consumable, &chrome_device_caps(), false).unwrap();
        let ssrc = params.encodings[0].ssrc.unwrap();
        assert_eq!(
            serde_json::to_value(&params).unwrap(),
            json!({
                "codecs": [
                    { "mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2,
                      "parameters": { "minptime": 10, "useinbandfec": 1 }, "rtcpFeedback": [] }
                ],
                "headerExtensions": [
                    { "uri": uri::MID, "id": 1, "encrypt": false, "parameters": {} },
                    { "uri": uri::ABS_SEND_TIME, "id": 4, "encrypt": false, "parameters": {} },
                    { "uri": uri::SSRC_AUDIO_LEVEL, "id": 10, "encrypt": false, "parameters": {} }
                ],
                "encodings": [ { "ssrc": ssrc } ],
                "rtcp": { "cname": "Zq2bWRC1mdk7n0dY", "reducedSize": true }
            })
        );
    }

    // ---- codec matching and H.264 ---------------------------------------------

    #[test]
    fn codec_matching_ignores_mime_case_and_treats_absent_audio_channels_as_one() {
        let a = codec_json(json!({ "kind": "audio", "mimeType": "audio/PCMU", "clockRate": 8000 }));
        let b = codec_json(
            json!({ "kind": "audio", "mimeType": "audio/pcmu", "clockRate": 8000, "channels": 1 }),
        );
        assert!(match_codecs(&a, &b, true));
        let stereo = codec_json(
            json!({ "kind": "audio", "mimeType": "audio/PCMU", "clockRate": 8000, "channels": 2 }),
        );
        assert!(!match_codecs(&a, &stereo, false));
        let v1 = codec_json(
            json!({ "kind": "video", "mimeType": "video/VP8", "clockRate": 90000, "channels": 1 }),
        );
        let v2 =
            codec_json(json!({ "kind": "video", "mimeType": "video/VP8", "clockRate": 90000 }));
        assert!(match_codecs(&v1, &v2, true));
        assert!(is_rtx("video/RTX"));
        assert!(!is_rtx("/rtx"));
        assert!(!is_rtx("video/rtxx"));
    }

    #[test]
    fn multiopus_matches_only_the_same_stream_layout() {
        let codec = |streams: i64| {
            codec_json(
                json!({ "kind": "audio", "mimeType": "audio/multiopus", "clockRate": 48000,
                               "channels": 6, "parameters": { "num_streams": streams, "coupled_streams": 2 } }),
            )
        };
        assert!(match_codecs(&codec(4), &codec(4), false));
        assert!(!match_codecs(&codec(4), &codec(3), false));
    }

    #[test]
    fn h264_profile_level_ids_parse_per_rfc_6184() {
        use h264::Profile::*;
        let parse = |text: &str| h264::parse(text).map(|id| (id.profile, id.level));
        assert_eq!(parse("42e01f"), Some((ConstrainedBaseline, 31)));
        assert_eq!(parse("42001f"), Some((Baseline, 31)));
        assert_eq!(parse("4d001f"), Some((Main, 31)));
        assert_eq!(parse("4d0032"), Some((Main, 50)));
        assert_eq!(parse("640c1f"), Some((ConstrainedHigh, 31)));
        assert_eq!(parse("64001f"), Some((High, 31)));
        assert_eq!(parse("f4001f"), Some((PredictiveHigh444, 31)));
        assert_eq!(parse("42f00b"), Some((ConstrainedBaseline, 0)));
        assert_eq!(parse("42E01F"), Some((ConstrainedBaseline, 31)));
        for bad in [
            "", "42e01", "42e01f0", "000000", "42e0ff", "zzzzzz", "+42e01", "ffe01f", "éé01f",
        ] {
            assert_eq!(h264::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn h264_answer_levels_follow_level_asymmetry() {
        let params = |value: Value| -> ParameterMap { serde_json::from_value(value).unwrap() };
        let local = params(json!({ "profile-level-id": "42e034", "level-asymmetry-allowed": 1 }));
        let remote = params(json!({ "profile-level-id": "42e01f", "level-asymmetry-allowed": 1 }));
        assert_eq!(
            h264::answer_profile_level_id(&local, &remote),
            Ok(Some("42e034".to_owned()))
        );
        let remote = params(json!({ "profile-level-id": "42e01f" }));
        assert_eq!(
            h264::answer_profile_level_id(&local, &remote),
            Ok(Some("42e01f".to_owned()))
        );
        assert_eq!(
            h264::answer_profile_level_id(&params(json!({})), &params(json!({}))),
            Ok(None)
        );
        // Absent means Constrained Baseline 3.1.
        assert_eq!(
            h264::answer_profile_level_id(&params(json!({})), &remote),
            Ok(Some("42e01f".to_owned()))
        );
        assert!(h264::answer_profile_level_id(
            &params(json!({ "profile-level-id": "640c1f" })),
            &remote
        )
        .is_err());
        assert!(h264::answer_profile_level_id(
            &params(json!({ "profile-level-id": "garbage" })),
            &remote
        )
        .is_err());
        // Level 1b is below 1.1 and above 1.
        let l1b = params(json!({ "profile-level-id": "42f00b" }));
        let l11 = params(json!({ "profile-level-id": "42e00b" }));
        assert_eq!(
            h264::answer_profile_level_id(&l11, &l1b),
            Ok(Some("42f00b".to_owned()))
        );
        let l1 = params(json!({ "profile-level-id": "42e00a" }));
        assert_eq!(
            h264::answer_profile_level_id(&l1b, &l1),
            Ok(Some("42e00a".to_owned()))
        );
    }

    #[test]
    fn an_all_digit_profile_level_id_read_as_a_number_still_matches() {
        // sdp-transform turns profile-level-id=640032 into the number 640032.
        let as_number = codec_json(
            json!({ "kind": "video", "mimeType": "video/H264", "clockRate": 90000,
            "parameters": { "packetization-mode": 1, "profile-level-id": 640032 } }),
        );
        let as_text = codec_json(
            json!({ "kind": "video", "mimeType": "video/H264", "clockRate": 90000,
            "parameters": { "packetization-mode": 1, "profile-level-id": "64001f" } }),
        );
        assert!(match_codecs(&as_number, &as_text, true));
        let packetization_as_text = codec_json(
            json!({ "kind": "video", "mimeType": "video/H264", "clockRate": 90000,
            "parameters": { "packetization-mode": "1", "profile-level-id": "64001f" } }),
        );
        assert!(match_codecs(&packetization_as_text, &as_text, true));
    }

    #[test]
    fn garbage_from_the_network_never_panics() {
        let caps = router_caps();
        let inputs = [
            json!({ "codecs": [ { "mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
                                  "parameters": { "apt": 97 } } ], "encodings": [ { "ssrc": 1 } ] }),
            json!({ "codecs": [ { "mimeType": "video/H264", "payloadType": 97, "clockRate": 90000,
                                  "parameters": { "profile-level-id": 1.5, "packetization-mode": "x" } } ],
                    "encodings": [ { "ssrc": 1 } ] }),
            json!({ "codecs": [ { "mimeType": "video/VP8", "payloadType": 127, "clockRate": 4294967295u32 } ],
                    "encodings": [ { "ssrc": 4294967295u32, "rtx": { "ssrc": 0 } }, { "rid": "x" } ] }),
            json!({ "codecs": [ { "mimeType": "audio/opus", "payloadType": 0, "clockRate": 48000, "channels": 255 } ],
                    "encodings": [ {} , {} ] }),
            json!({ "codecs": [ { "mimeType": "video/VP9", "payloadType": 0, "clockRate": 90000,
                                  "parameters": { "profile-id": "two" } } ],
                    "encodings": [ { "scalabilityMode": "L99T99_KEY" } ] }),
            json!({ "codecs": [ { "mimeType": "video/vp8", "payloadType": 0, "clockRate": 90000,
                                  "rtcpFeedback": [ { "type": "nack", "parameter": "sli" } ] } ],
                    "encodings": [ { "ssrc": 4294967295u32, "scalabilityMode": "L99T99_KEY",
                                     "maxBitrate": 4294967295u32 },
                                   { "ssrc": 0, "scalabilityMode": "S1T" } ] }),
        ];
        let mut reached_consumer = 0;
        for input in inputs {
            let producer: RtpParameters = serde_json::from_value(input).unwrap();
            if let Ok(mapping) = get_producer_rtp_parameters_mapping(&producer, &caps) {
                if let Ok(consumable) =
                    get_consumable_rtp_parameters(MediaKind::Video, &producer, &caps, &mapping)
                {
                    let _ = can_consume(&consumable, &chrome_device_caps());
                    let _ = get_consumer_rtp_parameters(&consumable, &chrome_device_caps(), false);
                    let _ = get_consumer_rtp_parameters(&consumable, &chrome_device_caps(), true);
                    reached_consumer += 1;
                }
            }
        }
        assert_eq!(reached_consumer, 1);
    }
}
