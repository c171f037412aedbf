//! Producer: an incoming track on a transport. Identifies its streams (by
//! SSRC, then RID or MID for simulcast/RID-only senders), undoes RTX,
//! rewrites each packet in place into the router's namespace (mapped SSRC,
//! payload type and header extension ids), tracks loss for NACK and
//! receiver reports, and rate-limits key frame requests so that a thousand
//! viewers asking at once cost the presenter one key frame.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ids::ProducerId;
use crate::ortc::{self, RtpMapping};
use crate::rtcp::{Fir, FirEntry, Nack, NackItem, NtpTime, Pli, ReceiverReport, ReportBlock};
use crate::rtp::{
    h264_is_keyframe, rtx_decapsulate, ExtendedSeqTracker, NackGenerator, NackGeneratorOptions,
    NackOutcome, RetransmissionBuffer, RtpPacket, RtpPacketMut, Vp8Descriptor, Vp9Descriptor,
};
use crate::rtp_parameters::{
    header_extension_uri as uri, MediaKind, RtpCapabilities, RtpParameters, ScalabilityMode,
};

/// How a producer was asked for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProducerOptions {
    pub kind: MediaKind,
    /// What the sender sends, as mediasoup-client's `produce()` gives it.
    pub rtp_parameters: RtpParameters,
    /// Start paused (nothing forwarded). Default false.
    pub paused: bool,
    /// Least time between two key frame requests sent to this producer for
    /// one encoding; requests in between are merged. Default
    /// [`DEFAULT_KEY_FRAME_REQUEST_INTERVAL`].
    pub key_frame_request_interval: Duration,
}

/// 400 ms: a viewer joining (or switching layers) waits at most this long
/// for the key frame it needs, beyond the round trip, while an audience
/// joining at any rate costs the presenter at most 2.5 key frames a second
/// per encoding. (The bench suite's join-to-first-frame p95 is this plus
/// the signalling, about 50 ms.)
pub const DEFAULT_KEY_FRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(400);

impl ProducerOptions {
    pub fn new(kind: MediaKind, rtp_parameters: RtpParameters) -> Self {
        Self {
            kind,
            rtp_parameters,
            paused: false,
            key_frame_request_interval: DEFAULT_KEY_FRAME_REQUEST_INTERVAL,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProducerType {
    Simple,
    Simulcast,
    Svc,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("invalid rtpParameters: {0}")]
    InvalidParameters(#[from] ortc::ValidationError),
    #[error("producer cannot be mapped to the router: {0}")]
    Mapping(#[from] ortc::ProducerMappingError),
    #[error("consumable parameters: {0}")]
    Consumable(#[from] ortc::ConsumableParametersError),
    #[error("kind {kind:?} does not match the codecs of rtpParameters")]
    KindMismatch { kind: MediaKind },
    #[error("ssrc {0} is already used by another producer on this transport")]
    SsrcTaken(u32),
    #[error("mid {0} is already used by another producer on this transport")]
    MidTaken(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("the transport is not allowed to produce")]
    NotAllowed,
}

/// Per-stream receive statistics (mediasoup's "inbound-rtp" stats).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProducerStreamStats {
    pub ssrc: Option<u32>,
    pub rid: Option<String>,
    pub mapped_ssrc: u32,
    pub packet_count: u64,
    pub byte_count: u64,
    pub packets_lost: i64,
    pub fraction_lost: u8,
    pub packets_retransmitted: u64,
    pub nack_count: u64,
    pub pli_count: u64,
    pub fir_count: u64,
    pub bitrate: u64,
    pub score: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Vp8,
    Vp9,
    H264,
    Other,
}

impl Codec {
    fn of(mime: &str) -> Self {
        match mime.to_ascii_lowercase().as_str() {
            "video/vp8" => Codec::Vp8,
            "video/vp9" => Codec::Vp9,
            "video/h264" => Codec::H264,
            _ => Codec::Other,
        }
    }
}

/// Bits per second over a sliding one-second window of 100 ms buckets.
#[derive(Debug, Clone)]
pub(crate) struct RateMeter {
    buckets: [u64; 10],
    current: usize,
    bucket_start: Option<Instant>,
}

impl RateMeter {
    const BUCKET: Duration = Duration::from_millis(100);

    pub(crate) fn new() -> Self {
        Self {
            buckets: [0; 10],
            current: 0,
            bucket_start: None,
        }
    }

    fn advance(&mut self, now: Instant) {
        let start = *self.bucket_start.get_or_insert(now);
        // The common case on the packet path: still inside the bucket, with
        // no division.
        if now < start + Self::BUCKET {
            return;
        }
        let elapsed = now.saturating_duration_since(start);
        let steps = (elapsed.as_millis() / Self::BUCKET.as_millis()) as usize;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(self.buckets.len()) {
            self.current = (self.current + 1) % self.buckets.len();
            self.buckets[self.current] = 0;
        }
        self.bucket_start = Some(start + Self::BUCKET * steps as u32);
    }

    pub(crate) fn add(&mut self, now: Instant, bytes: usize) {
        self.advance(now);
        self.buckets[self.current] += bytes as u64;
    }

    pub(crate) fn bitrate(&mut self, now: Instant) -> u64 {
        self.advance(now);
        self.buckets.iter().sum::<u64>() * 8
    }
}

/// One encoding of the producer (one spatial layer for simulcast).
#[derive(Debug)]
struct Stream {
    rid: Option<String>,
    ssrc: Option<u32>,
    rtx_ssrc: Option<u32>,
    mapped_ssrc: u32,
    tracker: Option<ExtendedSeqTracker>,
    nack: NackGenerator,
    packets: u64,
    bytes: u64,
    retransmitted: u64,
    last_packet_at: Option<Instant>,
    meter: RateMeter,
    /// What was received (in the router's namespace), for consumers to
    /// answer NACKs from: one copy per producer packet, not per consumer.
    store: Option<RetransmissionBuffer>,
    last_key_frame_request: Option<Instant>,
    /// A request came in while throttled: send it when the interval ends.
    key_frame_request_pending: bool,
    /// Last SR from the sender: its compact NTP time and when it arrived.
    last_sr: Option<(u32, Instant)>,
    nack_count: u64,
    pli_count: u64,
    fir_count: u64,
    fir_seq: u8,
    fraction_lost: u8,
}

/// What became of a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// Index of the encoding (spatial layer for simulcast).
    pub encoding: usize,
    /// Length of the rewritten packet at the start of the buffer.
    pub len: usize,
    pub key_frame: bool,
    /// Temporal layer of the packet, when the codec says.
    pub temporal_layer: Option<u8>,
    /// Spatial layer of an SVC (VP9) packet.
    pub spatial_layer: Option<u8>,
    /// Last packet of its layer frame (VP9 E bit).
    pub end_of_layer_frame: bool,
    /// The producer is paused: account for the packet but forward nothing.
    pub paused: bool,
    /// RFC 6464 level (-dBov, 0..=127) of an audio packet that carries one.
    pub audio_level: Option<u8>,
    /// Transport-wide sequence number, for congestion control feedback.
    pub transport_seq: Option<u16>,
}

#[derive(Debug, Clone, Copy)]
struct PtMapping {
    payload_type: u8,
    mapped_payload_type: u8,
    /// For RTX payload types: the media payload type they repair.
    repairs: Option<u8>,
}

/// The sender's header extension ids the producer reads itself.
#[derive(Debug, Clone, Copy, Default)]
struct ExtIds {
    mid: Option<u8>,
    rid: Option<u8>,
    rrid: Option<u8>,
    audio_level: Option<u8>,
    transport_cc: Option<u8>,
}

pub(crate) struct Producer {
    pub id: ProducerId,
    pub kind: MediaKind,
    pub r#type: ProducerType,
    pub rtp_parameters: RtpParameters,
    pub consumable_rtp_parameters: RtpParameters,
    pub paused: bool,
    pub score: u8,
    #[cfg_attr(not(test), allow(dead_code))] // read by tests and dumps
    mapping: RtpMapping,
    codec: Codec,
    ext: ExtIds,
    /// Sender header extension id -> router id (0: drop).
    ext_map: [u8; 256],
    pts: Vec<PtMapping>,
    streams: Vec<Stream>,
    /// (ssrc, stream index, is rtx), filled as streams are identified.
    ssrc_table: Vec<(u32, usize, bool)>,
    nack_enabled: bool,
    pli_enabled: bool,
    fir_enabled: bool,
    key_frame_request_interval: Duration,
    rtx_scratch: Vec<u8>,
    nack_scratch: Vec<u16>,
    nack_items: Vec<NackItem>,
    /// SSRC we use as the sender of RTCP feedback towards the producer.
    pub(crate) rtcp_ssrc: u32,
}

const MAX_PACKET: usize = 1500;
/// About 2 s of a 4 Mbps stream of 1200-byte packets.
const STORE_PACKETS: usize = 1024;
const STORE_AGE: Duration = Duration::from_secs(2);

impl Producer {
    pub(crate) fn new(
        id: ProducerId,
        options: ProducerOptions,
        router_capabilities: &RtpCapabilities,
    ) -> Result<Self, ProduceError> {
        let params = options.rtp_parameters;
        ortc::validate_rtp_parameters(&params)?;
        let first_media = params
            .codecs
            .iter()
            .find(|c| !c.mime_type.to_ascii_lowercase().ends_with("/rtx"))
            .ok_or(ProduceError::KindMismatch { kind: options.kind })?;
        if MediaKind::from_mime_type(&first_media.mime_type) != Some(options.kind) {
            return Err(ProduceError::KindMismatch { kind: options.kind });
        }
        let mapping = ortc::get_producer_rtp_parameters_mapping(&params, router_capabilities)?;
        let consumable = ortc::get_consumable_rtp_parameters(
            options.kind,
            &params,
            router_capabilities,
            &mapping,
        )?;
        let codec = Codec::of(&first_media.mime_type);

        let ext_of = |u: &str| {
            params
                .header_extensions
                .iter()
                .find(|e| e.uri == u)
                .map(|e| e.id)
        };
        let ext = ExtIds {
            mid: ext_of(uri::MID),
            rid: ext_of(uri::RTP_STREAM_ID),
            rrid: ext_of(uri::REPAIRED_RTP_STREAM_ID),
            audio_level: ext_of(uri::SSRC_AUDIO_LEVEL),
            transport_cc: ext_of(uri::TRANSPORT_WIDE_CC_01),
        };
        let mut ext_map = [0u8; 256];
        for e in &params.header_extensions {
            if let Some(router) = consumable.header_extensions.iter().find(|r| r.uri == e.uri) {
                ext_map[usize::from(e.id)] = router.id;
            }
        }
        // mid/rid/rrid identify the sender's streams; consumers get their
        // own mid and a single stream, so these never travel onwards.
        for id in [ext.mid, ext.rid, ext.rrid].into_iter().flatten() {
            ext_map[usize::from(id)] = 0;
        }

        let pts = params
            .codecs
            .iter()
            .filter_map(|c| {
                let mapped = mapping
                    .codecs
                    .iter()
                    .find(|m| m.payload_type == c.payload_type)?;
                let repairs = if c.mime_type.to_ascii_lowercase().ends_with("/rtx") {
                    c.parameters
                        .get("apt")
                        .and_then(|v| v.as_integer())
                        .and_then(|v| u8::try_from(v).ok())
                } else {
                    None
                };
                Some(PtMapping {
                    payload_type: c.payload_type,
                    mapped_payload_type: mapped.mapped_payload_type,
                    repairs,
                })
            })
            .collect();

        let fb = |t: &str, p: &str| {
            first_media
                .rtcp_feedback
                .iter()
                .any(|f| f.r#type == t && f.parameter == p)
        };
        let nack_enabled = options.kind == MediaKind::Video && fb("nack", "");
        let pli_enabled = fb("nack", "pli");
        let fir_enabled = fb("ccm", "fir");

        let nack_store = options.kind == MediaKind::Video;
        let streams: Vec<Stream> = params
            .encodings
            .iter()
            .zip(&mapping.encodings)
            .map(|(enc, mapped)| Stream {
                rid: enc.rid.clone(),
                ssrc: enc.ssrc,
                rtx_ssrc: enc.rtx.as_ref().map(|r| r.ssrc),
                mapped_ssrc: mapped.mapped_ssrc,
                tracker: None,
                nack: NackGenerator::new(NackGeneratorOptions::default()),
                packets: 0,
                bytes: 0,
                retransmitted: 0,
                last_packet_at: None,
                meter: RateMeter::new(),
                store: nack_store
                    .then(|| RetransmissionBuffer::new(STORE_PACKETS, MAX_PACKET + 64, STORE_AGE)),
                last_key_frame_request: None,
                key_frame_request_pending: false,
                last_sr: None,
                nack_count: 0,
                pli_count: 0,
                fir_count: 0,
                fir_seq: 0,
                fraction_lost: 0,
            })
            .collect();
        let mut ssrc_table = Vec::new();
        for (i, s) in streams.iter().enumerate() {
            if let Some(ssrc) = s.ssrc {
                ssrc_table.push((ssrc, i, false));
            }
            if let Some(rtx) = s.rtx_ssrc {
                ssrc_table.push((rtx, i, true));
            }
        }
        let first_mode = params
            .encodings
            .first()
            .map(|e| ScalabilityMode::parse_or_default(e.scalability_mode.as_deref()));
        let r#type = if params.encodings.len() > 1 {
            ProducerType::Simulcast
        } else if first_mode.is_some_and(|m| m.spatial_layers > 1) {
            ProducerType::Svc
        } else {
            ProducerType::Simple
        };
        Ok(Self {
            id,
            kind: options.kind,
            r#type,
            rtp_parameters: params,
            consumable_rtp_parameters: consumable,
            paused: options.paused,
            score: 10,
            mapping,
            codec,
            ext,
            ext_map,
            pts,
            streams,
            ssrc_table,
            nack_enabled,
            pli_enabled,
            fir_enabled,
            key_frame_request_interval: options.key_frame_request_interval,
            rtx_scratch: vec![0; MAX_PACKET],
            nack_scratch: Vec::with_capacity(64),
            nack_items: Vec::with_capacity(16),
            rtcp_ssrc: rand::random::<u32>() | 1,
        })
    }

    #[cfg(test)]
    pub(crate) fn mapping(&self) -> &RtpMapping {
        &self.mapping
    }

    /// The transport-wide sequence number of a raw packet, when it carries
    /// one (padding-only probes do too, and must be reported).
    pub(crate) fn transport_seq(&self, packet: &RtpPacket<'_>) -> Option<u16> {
        let v = packet.extension(self.ext.transport_cc?)?;
        (v.len() == 2).then(|| u16::from_be_bytes([v[0], v[1]]))
    }

    /// SSRC of the first stream heard, for feedback addressed to the sender.
    pub(crate) fn first_ssrc(&self) -> Option<u32> {
        self.streams.iter().find_map(|s| s.ssrc)
    }

    pub(crate) fn mid(&self) -> Option<&str> {
        self.rtp_parameters.mid.as_deref()
    }

    pub(crate) fn ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.ssrc_table.iter().map(|(s, _, _)| *s)
    }

    /// The number of encodings (spatial layers for simulcast).
    pub(crate) fn encoding_count(&self) -> usize {
        self.streams.len()
    }

    /// Whether encoding `i` had media recently (a simulcast layer the
    /// sender dropped, e.g. for lack of bandwidth, is inactive).
    pub(crate) fn encoding_active(&self, i: usize, now: Instant) -> bool {
        self.streams.get(i).is_some_and(|s| {
            s.last_packet_at
                .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1))
        })
    }

    /// Bits per second received of each encoding over the last second
    /// (0 for an encoding that stopped).
    pub(crate) fn encoding_bitrates(&mut self, now: Instant) -> Vec<u64> {
        (0..self.streams.len())
            .map(|i| {
                if self.encoding_active(i, now) {
                    self.streams[i].meter.bitrate(now)
                } else {
                    0
                }
            })
            .collect()
    }

    /// Whether a packet of this SSRC (or, lacking a known SSRC, with these
    /// MID/RID values) belongs to this producer.
    pub(crate) fn claims(&self, packet: &RtpPacket<'_>) -> bool {
        let ssrc = packet.ssrc();
        if self.ssrc_table.iter().any(|(s, _, _)| *s == ssrc) {
            return true;
        }
        self.identify(packet).is_some()
    }

    /// Finds the stream of a packet whose SSRC is not known yet, by RID or
    /// repaired RID, or by MID/payload type for a single RID-less encoding.
    fn identify(&self, packet: &RtpPacket<'_>) -> Option<(usize, bool)> {
        if let Some(rid) = self.ext.rid.and_then(|id| packet.extension(id)) {
            let i = self
                .streams
                .iter()
                .position(|s| s.rid.as_deref().map(str::as_bytes) == Some(rid))?;
            return (self.streams[i].ssrc.is_none()).then_some((i, false));
        }
        if let Some(rrid) = self.ext.rrid.and_then(|id| packet.extension(id)) {
            let i = self
                .streams
                .iter()
                .position(|s| s.rid.as_deref().map(str::as_bytes) == Some(rrid))?;
            return (self.streams[i].rtx_ssrc.is_none()).then_some((i, true));
        }
        if self.streams.len() == 1 && self.streams[0].rid.is_none() {
            if let (Some(want), Some(id)) = (self.mid(), self.ext.mid) {
                if packet.extension(id) != Some(want.as_bytes()) {
                    return None;
                }
            } else if self.streams[0].ssrc.is_some() {
                return None;
            }
            let pt = packet.payload_type();
            let m = self.pts.iter().find(|m| m.payload_type == pt)?;
            let rtx = m.repairs.is_some();
            let s = &self.streams[0];
            let free = if rtx {
                s.rtx_ssrc.is_none()
            } else {
                s.ssrc.is_none()
            };
            return free.then_some((0, rtx));
        }
        None
    }

    /// Takes a decrypted packet (`buf[..len]`), rewrites it in place into
    /// the router's namespace and says which encoding it belongs to.
    /// `None`: not ours, malformed, unknown payload type, or an RTX packet
    /// that cannot be restored.
    pub(crate) fn receive_rtp(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Option<Received> {
        let mut len = len;
        let transport_seq = RtpPacket::parse(&buf[..len])
            .ok()
            .and_then(|p| self.ext.transport_cc.and_then(|id| p.extension(id)))
            .filter(|v| v.len() == 2)
            .map(|v| u16::from_be_bytes([v[0], v[1]]));
        let (stream_index, is_rtx) = {
            let packet = RtpPacket::parse(&buf[..len]).ok()?;
            let ssrc = packet.ssrc();
            match self.ssrc_table.iter().find(|(s, _, _)| *s == ssrc) {
                Some(&(_, i, rtx)) => (i, rtx),
                None => {
                    let (i, rtx) = self.identify(&packet)?;
                    let s = &mut self.streams[i];
                    if rtx {
                        s.rtx_ssrc = Some(ssrc);
                    } else {
                        s.ssrc = Some(ssrc);
                    }
                    self.ssrc_table.push((ssrc, i, rtx));
                    (i, rtx)
                }
            }
        };

        if is_rtx {
            let (media_ssrc, media_pt) = {
                let packet = RtpPacket::parse(&buf[..len]).ok()?;
                let pt = packet.payload_type();
                let repairs = self.pts.iter().find(|m| m.payload_type == pt)?.repairs?;
                (self.streams[stream_index].ssrc?, repairs)
            };
            // An RTX packet with no payload is padding (bandwidth probing).
            if RtpPacket::parse(&buf[..len]).ok()?.payload().len() < 2 {
                return None;
            }
            let n =
                rtx_decapsulate(&buf[..len], media_ssrc, media_pt, &mut self.rtx_scratch).ok()?;
            buf[..n].copy_from_slice(&self.rtx_scratch[..n]);
            len = n;
            self.streams[stream_index].retransmitted += 1;
        }

        let (
            pt,
            seq,
            key_frame,
            temporal_layer,
            spatial_layer,
            end_of_layer_frame,
            payload_len,
            audio_level,
        ) = {
            let packet = RtpPacket::parse(&buf[..len]).ok()?;
            let audio_level = self
                .ext
                .audio_level
                .and_then(|id| packet.extension(id))
                .and_then(|v| v.first())
                .map(|b| b & 0x7f);
            let payload = packet.payload();
            let (key_frame, tl, sl, eof) = match self.codec {
                Codec::Vp8 => Vp8Descriptor::parse(payload)
                    .map(|d| (d.is_keyframe, d.temporal_id, None, false))
                    .unwrap_or((false, None, None, false)),
                Codec::Vp9 => Vp9Descriptor::parse(payload)
                    .map(|d| (d.is_keyframe, d.temporal_id, d.spatial_id, d.end_of_frame))
                    .unwrap_or((false, None, None, false)),
                Codec::H264 => (h264_is_keyframe(payload), None, None, false),
                Codec::Other => (false, None, None, false),
            };
            (
                packet.payload_type(),
                packet.sequence_number(),
                key_frame,
                tl,
                sl,
                eof,
                payload.len(),
                audio_level,
            )
        };
        let mapped_pt = self
            .pts
            .iter()
            .find(|m| m.payload_type == pt && m.repairs.is_none())?
            .mapped_payload_type;

        let nack_enabled = self.nack_enabled;
        let s = &mut self.streams[stream_index];
        match &mut s.tracker {
            Some(t) => {
                t.update(seq);
            }
            None => s.tracker = Some(ExtendedSeqTracker::new_trusted(seq)),
        }
        if nack_enabled && payload_len > 0 {
            if let NackOutcome::KeyframeRequired = s.nack.on_packet(seq, now) {
                s.key_frame_request_pending = true;
            }
        }
        s.packets += 1;
        s.bytes += len as u64;
        s.last_packet_at = Some(now);
        s.meter.add(now, len);
        let mapped_ssrc = s.mapped_ssrc;

        let ext_map = &self.ext_map;
        let mut packet = RtpPacketMut::parse(&mut buf[..len]).ok()?;
        packet.set_payload_type(mapped_pt);
        packet.set_ssrc(mapped_ssrc);
        // Router ids are at most 14, so they always fit the packet's form.
        packet
            .remap_extension_ids(|id| Some(ext_map[usize::from(id)]).filter(|&m| m != 0))
            .ok()?;
        if let Some(store) = &mut self.streams[stream_index].store {
            let _ = store.insert(seq, &buf[..len], now);
        }
        Some(Received {
            encoding: stream_index,
            len,
            key_frame,
            temporal_layer,
            spatial_layer,
            end_of_layer_frame,
            paused: self.paused,
            audio_level,
            transport_seq,
        })
    }

    /// A received packet of `encoding` (as rewritten into the router's
    /// namespace), while it is still kept.
    pub(crate) fn stored_packet(&self, encoding: usize, seq: u16, now: Instant) -> Option<&[u8]> {
        self.streams.get(encoding)?.store.as_ref()?.get(seq, now)
    }

    /// Notes an SR from the sender (for the LSR/DLSR of our reports).
    pub(crate) fn receive_sender_report(&mut self, ssrc: u32, ntp: NtpTime, now: Instant) {
        if let Some(&(_, i, false)) = self.ssrc_table.iter().find(|(s, _, _)| *s == ssrc) {
            self.streams[i].last_sr = Some((ntp.compact(), now));
        }
    }

    /// Asks for a key frame of encoding `i` (all encodings when `None`),
    /// writing PLI/FIR items into `out` unless one was sent less than the
    /// request interval ago (then it is sent when the interval ends).
    pub(crate) fn request_key_frame(
        &mut self,
        now: Instant,
        encoding: Option<usize>,
        out: &mut Vec<u8>,
    ) {
        let range = match encoding {
            Some(i) if i < self.streams.len() => i..i + 1,
            Some(_) => return,
            None => 0..self.streams.len(),
        };
        for i in range {
            self.streams[i].key_frame_request_pending = true;
            self.flush_key_frame_request(now, i, out);
        }
    }

    fn flush_key_frame_request(&mut self, now: Instant, i: usize, out: &mut Vec<u8>) {
        if self.kind != MediaKind::Video {
            return;
        }
        let interval = self.key_frame_request_interval;
        let sender = self.rtcp_ssrc;
        let (pli, fir) = (self.pli_enabled, self.fir_enabled);
        let s = &mut self.streams[i];
        let Some(ssrc) = s.ssrc else { return };
        if !s.key_frame_request_pending {
            return;
        }
        if s.last_key_frame_request
            .is_some_and(|at| now.saturating_duration_since(at) < interval)
        {
            return;
        }
        let mut item = [0u8; 20];
        let n = if pli || !fir {
            s.pli_count += 1;
            Pli {
                sender_ssrc: sender,
                media_ssrc: ssrc,
            }
            .write(&mut item)
        } else {
            s.fir_count += 1;
            s.fir_seq = s.fir_seq.wrapping_add(1);
            Fir::write(
                &mut item,
                sender,
                &[FirEntry {
                    ssrc,
                    seq_nr: s.fir_seq,
                }],
            )
        };
        if let Ok(n) = n {
            out.extend_from_slice(&item[..n]);
            s.last_key_frame_request = Some(now);
            s.key_frame_request_pending = false;
        }
    }

    /// Periodic work: NACKs for missing packets and key frame requests
    /// whose throttle interval has passed, into `out`.
    pub(crate) fn poll_feedback(&mut self, now: Instant, out: &mut Vec<u8>) {
        for i in 0..self.streams.len() {
            self.flush_key_frame_request(now, i, out);
            if !self.nack_enabled {
                continue;
            }
            let sender = self.rtcp_ssrc;
            let s = &mut self.streams[i];
            let Some(ssrc) = s.ssrc else { continue };
            self.nack_scratch.clear();
            s.nack.poll_nacks(now, &mut self.nack_scratch);
            if self.nack_scratch.is_empty() {
                continue;
            }
            self.nack_items.clear();
            NackItem::from_seqs(&self.nack_scratch, &mut self.nack_items);
            for chunk in self.nack_items.chunks(64) {
                let mut item = [0u8; 12 + 4 * 64];
                if let Ok(n) = Nack::write(&mut item, sender, ssrc, chunk) {
                    out.extend_from_slice(&item[..n]);
                    s.nack_count += 1;
                }
            }
        }
    }

    /// When `poll_feedback` next has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.streams
            .iter()
            .flat_map(|s| {
                let kf = s
                    .key_frame_request_pending
                    .then(|| {
                        s.last_key_frame_request
                            .map(|at| at + self.key_frame_request_interval)
                    })
                    .flatten();
                [kf, s.nack.poll_timeout()]
            })
            .flatten()
            .min()
    }

    /// A receiver report about every stream heard from, into `out`.
    pub(crate) fn write_receiver_report(&mut self, now: Instant, out: &mut Vec<u8>) {
        let mut blocks = Vec::with_capacity(self.streams.len());
        for s in &mut self.streams {
            let (Some(ssrc), Some(tracker)) = (s.ssrc, s.tracker.as_mut()) else {
                continue;
            };
            s.fraction_lost = tracker.take_fraction_lost();
            let (last_sr, dlsr) = match s.last_sr {
                Some((compact, at)) => (
                    compact,
                    crate::rtcp::duration_to_compact_ntp(now.saturating_duration_since(at)),
                ),
                None => (0, 0),
            };
            blocks.push(ReportBlock {
                ssrc,
                fraction_lost: s.fraction_lost,
                cumulative_lost: tracker.cumulative_lost(),
                extended_highest_seq: tracker.extended_max_u32(),
                jitter: 0,
                last_sr,
                delay_since_last_sr: dlsr,
            });
        }
        if blocks.is_empty() {
            return;
        }
        let mut item = [0u8; 8 + 24 * 31];
        if let Ok(n) =
            ReceiverReport::write(&mut item, self.rtcp_ssrc, &blocks[..blocks.len().min(31)])
        {
            out.extend_from_slice(&item[..n]);
        }
    }

    pub(crate) fn stats(&mut self, now: Instant) -> Vec<ProducerStreamStats> {
        let score = self.score;
        self.streams
            .iter_mut()
            .map(|s| ProducerStreamStats {
                ssrc: s.ssrc,
                rid: s.rid.clone(),
                mapped_ssrc: s.mapped_ssrc,
                packet_count: s.packets,
                byte_count: s.bytes,
                packets_lost: s
                    .tracker
                    .as_ref()
                    .map_or(0, |t| i64::from(t.cumulative_lost())),
                fraction_lost: s.fraction_lost,
                packets_retransmitted: s.retransmitted,
                nack_count: s.nack_count,
                pli_count: s.pli_count,
                fir_count: s.fir_count,
                bitrate: s.meter.bitrate(now),
                score,
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::rtp_parameters::RtpCodecCapability;

    pub(crate) fn router_caps() -> RtpCapabilities {
        let codecs: Vec<RtpCodecCapability> = serde_json::from_value(serde_json::json!([
            {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
            {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}
        ]))
        .unwrap();
        ortc::generate_router_rtp_capabilities(&codecs).unwrap()
    }

    /// An RTP packet with one-byte extensions (id, value) and a VP8 payload.
    pub(crate) fn packet(
        pt: u8,
        seq: u16,
        ssrc: u32,
        exts: &[(u8, &[u8])],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut ext = Vec::new();
        for (id, v) in exts {
            ext.push((id << 4) | (v.len() as u8 - 1));
            ext.extend_from_slice(v);
        }
        while ext.len() % 4 != 0 {
            ext.push(0);
        }
        let mut p = vec![if ext.is_empty() { 0x80 } else { 0x90 }, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        if !ext.is_empty() {
            p.extend_from_slice(&[0xBE, 0xDE]);
            p.extend_from_slice(&((ext.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(&ext);
        }
        p.extend_from_slice(payload);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{packet, router_caps};
    use super::*;
    use crate::rtp_parameters::RtpParameters;

    fn vp8_simulcast() -> RtpParameters {
        serde_json::from_value(serde_json::json!({
            "mid": "0",
            "codecs": [
                {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                 "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}, {"type": "ccm", "parameter": "fir"}]},
                {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}}
            ],
            "headerExtensions": [
                {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4},
                {"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": 10},
                {"uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": 11},
                {"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2}
            ],
            "encodings": [{"rid": "r0"}, {"rid": "r1"}, {"rid": "r2"}],
            "rtcp": {"cname": "c"}
        }))
        .unwrap()
    }

    const VP8_KEY: &[u8] = &[0x10, 0x00, 0x9d, 0x01, 0x2a, 1, 2, 3];
    const VP8_DELTA: &[u8] = &[0x10, 0x01, 0x9d, 0x01, 0x2a, 1, 2, 3];

    #[test]
    fn rid_streams_are_identified_and_rewritten_into_the_router_namespace() {
        let caps = router_caps();
        let mut p = Producer::new(
            ProducerId::new(),
            ProducerOptions::new(MediaKind::Video, vp8_simulcast()),
            &caps,
        )
        .unwrap();
        assert_eq!(p.r#type, ProducerType::Simulcast);
        let now = Instant::now();
        let mut buf = packet(
            96,
            1,
            0xAAAA,
            &[(4, b"0"), (10, b"r1"), (2, &[1, 2, 3])],
            VP8_KEY,
        );
        let len = buf.len();
        let r = p.receive_rtp(now, &mut buf, len).unwrap();
        assert_eq!((r.encoding, r.key_frame), (1, true));
        let out = RtpPacket::parse(&buf[..r.len]).unwrap();
        assert_eq!(out.ssrc(), p.mapping().encodings[1].mapped_ssrc);
        let router_vp8 = p.consumable_rtp_parameters.codecs[0].payload_type;
        assert_eq!(out.payload_type(), router_vp8);
        // abs-send-time travels under the router's id; mid and rid do not.
        let abs_id = p
            .consumable_rtp_parameters
            .header_extensions
            .iter()
            .find(|e| e.uri == uri::ABS_SEND_TIME)
            .unwrap()
            .id;
        assert_eq!(out.extension(abs_id), Some(&[1u8, 2, 3][..]));
        assert_eq!(out.extensions().filter(|e| e.id == 10).count(), 0);
        assert_eq!(out.payload(), VP8_KEY);

        // Later packets of the same SSRC need no RID.
        let mut buf = packet(96, 2, 0xAAAA, &[], VP8_DELTA);
        let len = buf.len();
        let r = p.receive_rtp(now, &mut buf, len).unwrap();
        assert_eq!((r.encoding, r.key_frame), (1, false));
        // An unknown SSRC without RID is not ours.
        let mut buf = packet(96, 2, 0xBBBB, &[], VP8_DELTA);
        let len = buf.len();
        assert!(p.receive_rtp(now, &mut buf, len).is_none());
    }

    #[test]
    fn rtx_packets_are_restored_to_the_original() {
        let caps = router_caps();
        let mut p = Producer::new(
            ProducerId::new(),
            ProducerOptions::new(MediaKind::Video, vp8_simulcast()),
            &caps,
        )
        .unwrap();
        let now = Instant::now();
        let mut media = packet(96, 7, 0xAAAA, &[(10, b"r0")], VP8_DELTA);
        let len = media.len();
        p.receive_rtp(now, &mut media, len).unwrap();
        let mut rtx_payload = vec![0, 5];
        rtx_payload.extend_from_slice(VP8_DELTA);
        let mut rtx = packet(97, 100, 0xCCCC, &[(11, b"r0")], &rtx_payload);
        let len = rtx.len();
        let r = p.receive_rtp(now, &mut rtx, len).unwrap();
        let out = RtpPacket::parse(&rtx[..r.len]).unwrap();
        assert_eq!(out.sequence_number(), 5);
        assert_eq!(out.ssrc(), p.mapping().encodings[0].mapped_ssrc);
        assert_eq!(out.payload(), VP8_DELTA);
    }

    #[test]
    fn key_frame_requests_are_throttled_per_encoding() {
        let caps = router_caps();
        let mut p = Producer::new(
            ProducerId::new(),
            ProducerOptions::new(MediaKind::Video, vp8_simulcast()),
            &caps,
        )
        .unwrap();
        let t0 = Instant::now();
        let mut buf = packet(96, 1, 0xAAAA, &[(10, b"r0")], VP8_DELTA);
        let len = buf.len();
        p.receive_rtp(t0, &mut buf, len).unwrap();
        let mut out = Vec::new();
        for _ in 0..1000 {
            p.request_key_frame(t0, Some(0), &mut out);
        }
        assert_eq!(out.len(), 12, "one PLI for a thousand requests");
        let pli = Pli::parse(&out).unwrap();
        assert_eq!(pli.media_ssrc, 0xAAAA);
        out.clear();
        p.poll_feedback(t0 + Duration::from_millis(100), &mut out);
        assert!(out.is_empty());
        let interval = DEFAULT_KEY_FRAME_REQUEST_INTERVAL;
        assert_eq!(p.poll_timeout(), Some(t0 + interval));
        p.poll_feedback(t0 + interval, &mut out);
        assert_eq!(
            out.len(),
            12,
            "the merged request goes out when the interval ends"
        );
    }

    #[test]
    fn lost_packets_are_nacked_to_the_sender() {
        let caps = router_caps();
        let mut p = Producer::new(
            ProducerId::new(),
            ProducerOptions::new(MediaKind::Video, vp8_simulcast()),
            &caps,
        )
        .unwrap();
        let t0 = Instant::now();
        for seq in [1u16, 2, 5] {
            let mut buf = packet(96, seq, 0xAAAA, &[(10, b"r0")], VP8_DELTA);
            let len = buf.len();
            p.receive_rtp(t0, &mut buf, len).unwrap();
        }
        let mut out = Vec::new();
        p.poll_feedback(t0, &mut out);
        let nack = Nack::parse(&out).unwrap();
        assert_eq!(nack.media_ssrc, 0xAAAA);
        assert_eq!(nack.lost_seqs().collect::<Vec<_>>(), vec![3, 4]);
        out.clear();
        p.write_receiver_report(t0, &mut out);
        let rr = ReceiverReport::parse(&out).unwrap();
        let block = rr.report_blocks().next().unwrap();
        assert_eq!((block.ssrc, block.cumulative_lost), (0xAAAA, 2));
    }

    #[test]
    fn parameters_for_another_kind_are_refused() {
        let caps = router_caps();
        let err = Producer::new(
            ProducerId::new(),
            ProducerOptions::new(MediaKind::Audio, vp8_simulcast()),
            &caps,
        )
        .err()
        .unwrap();
        assert!(matches!(err, ProduceError::KindMismatch { .. }));
    }
}
