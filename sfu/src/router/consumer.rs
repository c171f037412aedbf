//! Consumer: an outgoing track, fed by one producer. Picks which of the
//! producer's encodings to forward (simulcast), drops temporal layers above
//! the preferred one, rewrites SSRC, sequence numbers, timestamps (and VP8
//! picture ids across switches) so that the receiver sees one continuous
//! stream through pauses and switches, keeps what it sent for NACKs (sent
//! back as RTX when negotiated) and reports on the receiver's view.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::allocation::AllocatedLayers;
use super::producer::{Producer, ProducerType, RateMeter, Received};
use crate::ids::{ConsumerId, ProducerId};
use crate::ortc;
use crate::rtcp::{
    rtt_from_report, NtpTime, ReportBlock, SenderInfo, SenderReport, SourceDescription,
};
use crate::rtp::{
    rtx_encapsulate, ExtensionForm, HeaderExtension, RtpPacket, RtpPacketMut, SeqRewriter,
    TsRewriter, Vp8Descriptor, Vp8Rewriter, ONE_BYTE_PROFILE, RTP_HEADER_LEN, TWO_BYTE_PROFILE,
};
use crate::rtp_parameters::{
    header_extension_uri, MediaKind, RtpCapabilities, RtpParameters, ScalabilityMode,
};

/// Spatial and temporal layer of a simulcast or SVC stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerLayers {
    pub spatial_layer: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal_layer: Option<u8>,
}

#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerOptions {
    pub producer_id: ProducerId,
    /// The receiving device's capabilities (mediasoup-client `device.rtpCapabilities`).
    pub rtp_capabilities: RtpCapabilities,
    /// Start paused; resume once the client has set up its side. Default true.
    pub paused: bool,
    /// For simulcast/SVC: the layers to forward when bandwidth allows.
    /// Default: the highest.
    pub preferred_layers: Option<ConsumerLayers>,
}

impl ConsumerOptions {
    pub fn new(producer_id: ProducerId, rtp_capabilities: RtpCapabilities) -> Self {
        Self {
            producer_id,
            rtp_capabilities,
            paused: true,
            preferred_layers: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerType {
    Simple,
    Simulcast,
    Svc,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("producer {0} not found")]
    ProducerNotFound(ProducerId),
    #[error("transport {0} not found")]
    TransportNotFound(String),
    #[error("the device cannot consume producer {0}")]
    CannotConsume(ProducerId),
    #[error("invalid rtpCapabilities: {0}")]
    InvalidCapabilities(#[from] ortc::ValidationError),
    #[error("consumer parameters: {0}")]
    Parameters(#[from] ortc::ConsumerParametersError),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStats {
    pub ssrc: u32,
    pub packet_count: u64,
    pub byte_count: u64,
    pub packets_retransmitted: u64,
    pub nack_count: u64,
    pub pli_count: u64,
    pub fraction_lost: u8,
    pub packets_lost: i64,
    pub round_trip_time_ms: Option<f64>,
    pub bitrate: u64,
    pub score: u8,
}

/// What a consumer needs from the router after handling something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ConsumerNeeds {
    /// Ask the producer for a key frame of this encoding.
    pub key_frame: Option<usize>,
    /// The forwarded layers changed (emit `consumerLayersChanged`).
    pub layers_changed: bool,
}

const MAX_PACKET: usize = 1500;
/// Sent packets remembered for NACKs (~2 s of a 2 Mbps stream of
/// 1200-byte packets); the bytes themselves are in the producer's store.
const SENT_HISTORY: usize = 512;
const SENT_MAX_AGE: Duration = Duration::from_secs(2);

/// One sent packet, as much as is needed to rebuild it from the producer's
/// copy: about 50 bytes instead of a 1.5 KB copy per consumer.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    at: Option<Instant>,
    seq_out: u16,
    seq_in: u16,
    encoding: u8,
    ts_out: u32,
    picture_id: Option<u16>,
    tl0: Option<u8>,
    resent_at: Option<Instant>,
}

pub(crate) struct Consumer {
    #[allow(dead_code)] // kept for dumps and logs
    pub id: ConsumerId,
    pub producer_id: ProducerId,
    pub kind: MediaKind,
    pub r#type: ConsumerType,
    pub rtp_parameters: RtpParameters,
    pub paused: bool,
    pub producer_paused: bool,
    pub priority: u8,
    pub preferred: ConsumerLayers,
    /// The encoding being forwarded (`None` until the first key frame).
    pub current_spatial: Option<usize>,
    pub target_spatial: usize,
    current_temporal: Option<u8>,
    /// What the transport's bandwidth allows (`None`: no estimate yet).
    allocated: Option<AllocatedLayers>,
    /// The receiver's transport-wide sequence number extension id, which
    /// the transport rewrites with its own numbering.
    pub(crate) transport_cc_ext: Option<u8>,
    encodings: usize,
    temporal_layers: u8,
    /// Spatial layers inside the one stream of an SVC producer.
    svc_spatial_layers: u8,
    ssrc: u32,
    rtx: Option<(u32, u8)>,
    /// Media payload type -> RTX payload type.
    rtx_pt_for: Vec<(u8, u8)>,
    rtx_seq: u16,
    allowed_ext: [bool; 256],
    seq: SeqRewriter,
    ts: TsRewriter,
    vp8: Option<Vp8Rewriter>,
    /// Video must start (and restart after a pause) on a key frame.
    key_frame_required: bool,
    /// What each recently sent sequence number was, to rebuild it from the
    /// producer's store when NACKed (`None`: no NACK negotiated).
    sent: Option<Box<[Sent]>>,
    /// Where a retransmission is rebuilt before RTX encapsulation.
    rtx_scratch: Box<[u8]>,
    rtt: Option<Duration>,
    packets: u64,
    bytes: u64,
    retransmitted: u64,
    nack_count: u64,
    pli_count: u64,
    fraction_lost: u8,
    packets_lost: i64,
    meter: RateMeter,
    /// Newest output timestamp and when it was sent (for SR timestamps).
    last_sent: Option<(u32, Instant)>,
    clock_rate: u32,
    cname: String,
    pub(crate) score: u8,
}

impl Consumer {
    pub(crate) fn new(
        id: ConsumerId,
        producer: &Producer,
        options: &ConsumerOptions,
        mid: String,
    ) -> Result<Self, ConsumeError> {
        ortc::validate_rtp_capabilities(&options.rtp_capabilities)?;
        if !ortc::can_consume(
            &producer.consumable_rtp_parameters,
            &options.rtp_capabilities,
        )? {
            return Err(ConsumeError::CannotConsume(producer.id));
        }
        let mut params = ortc::get_consumer_rtp_parameters(
            &producer.consumable_rtp_parameters,
            &options.rtp_capabilities,
            false,
        )?;
        params.mid = Some(mid);
        let encoding = params.encodings.first().cloned().unwrap_or_default();
        let ssrc = encoding.ssrc.unwrap_or_else(rand::random);
        let mode = ScalabilityMode::parse_or_default(encoding.scalability_mode.as_deref());
        let media = params
            .codecs
            .iter()
            .find(|c| !c.mime_type.to_ascii_lowercase().ends_with("/rtx"))
            .ok_or(ConsumeError::CannotConsume(producer.id))?
            .clone();
        let rtx_pt_for: Vec<(u8, u8)> = params
            .codecs
            .iter()
            .filter(|c| c.mime_type.to_ascii_lowercase().ends_with("/rtx"))
            .filter_map(|c| {
                let apt = c.parameters.get("apt")?.as_integer()?;
                Some((u8::try_from(apt).ok()?, c.payload_type))
            })
            .collect();
        let rtx = encoding
            .rtx
            .as_ref()
            .and_then(|r| rtx_pt_for.first().map(|(_, pt)| (r.ssrc, *pt)));
        let mut allowed_ext = [false; 256];
        for e in &params.header_extensions {
            allowed_ext[usize::from(e.id)] = true;
        }
        let nack = media
            .rtcp_feedback
            .iter()
            .any(|f| f.r#type == "nack" && f.parameter.is_empty());
        let r#type = match producer.r#type {
            ProducerType::Simple => ConsumerType::Simple,
            ProducerType::Simulcast => ConsumerType::Simulcast,
            ProducerType::Svc => ConsumerType::Svc,
        };
        let encodings = producer.encoding_count().max(1);
        let max_spatial = match r#type {
            ConsumerType::Svc => mode.spatial_layers.max(1) - 1,
            _ => (encodings - 1) as u8,
        };
        let preferred = options.preferred_layers.unwrap_or(ConsumerLayers {
            spatial_layer: max_spatial,
            temporal_layer: None,
        });
        let is_vp8 = media.mime_type.eq_ignore_ascii_case("video/vp8");
        Ok(Self {
            id,
            producer_id: producer.id,
            kind: producer.kind,
            r#type,
            rtp_parameters: params.clone(),
            paused: options.paused,
            producer_paused: producer.paused,
            priority: 1,
            preferred,
            current_spatial: None,
            target_spatial: usize::from(preferred.spatial_layer.min(max_spatial)),
            current_temporal: None,
            allocated: None,
            transport_cc_ext: params
                .header_extensions
                .iter()
                .find(|e| e.uri == header_extension_uri::TRANSPORT_WIDE_CC_01)
                .map(|e| e.id),
            encodings,
            temporal_layers: mode.temporal_layers.max(1),
            svc_spatial_layers: mode.spatial_layers.max(1),
            ssrc,
            rtx,
            rtx_pt_for,
            rtx_seq: rand::random(),
            allowed_ext,
            seq: SeqRewriter::new(rand::random::<u16>() & 0x7fff),
            ts: TsRewriter::new(media.clock_rate),
            vp8: (is_vp8 && r#type == ConsumerType::Simulcast).then(Vp8Rewriter::new),
            key_frame_required: producer.kind == MediaKind::Video,
            sent: (nack && producer.kind == MediaKind::Video)
                .then(|| vec![Sent::default(); SENT_HISTORY].into_boxed_slice()),
            rtx_scratch: vec![0; MAX_PACKET + 64].into_boxed_slice(),
            rtt: None,
            packets: 0,
            bytes: 0,
            retransmitted: 0,
            nack_count: 0,
            pli_count: 0,
            fraction_lost: 0,
            packets_lost: 0,
            meter: RateMeter::new(),
            last_sent: None,
            clock_rate: media.clock_rate,
            cname: params
                .rtcp
                .cname
                .clone()
                .unwrap_or_else(|| "sfu".to_string()),
            score: 10,
        })
    }

    pub(crate) fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub(crate) fn rtx_ssrc(&self) -> Option<u32> {
        self.rtx.map(|(s, _)| s)
    }

    fn active(&self) -> bool {
        !self.paused && !self.producer_paused
    }

    /// The layers being forwarded, for `consumerLayersChanged`.
    pub(crate) fn current_layers(&self) -> Option<ConsumerLayers> {
        if self.r#type == ConsumerType::Simple {
            return None;
        }
        self.current_spatial.map(|s| ConsumerLayers {
            spatial_layer: s as u8,
            temporal_layer: Some(self.current_temporal.unwrap_or(self.temporal_layers - 1)),
        })
    }

    /// Resumes or pauses (by the client). A resumed video consumer waits
    /// for a key frame, which it asks for.
    pub(crate) fn set_paused(&mut self, paused: bool) -> ConsumerNeeds {
        let was_active = self.active();
        self.paused = paused;
        self.on_activity_change(was_active)
    }

    pub(crate) fn set_producer_paused(&mut self, paused: bool) -> ConsumerNeeds {
        let was_active = self.active();
        self.producer_paused = paused;
        self.on_activity_change(was_active)
    }

    fn on_activity_change(&mut self, was_active: bool) -> ConsumerNeeds {
        let mut needs = ConsumerNeeds::default();
        if self.active() && !was_active {
            self.seq.sync();
            self.ts.sync();
            if let Some(v) = &mut self.vp8 {
                v.sync();
            }
            if self.kind == MediaKind::Video {
                self.key_frame_required = true;
                self.current_spatial = None;
                needs.key_frame = Some(self.encoding_of(self.target_spatial));
            }
        }
        needs
    }

    /// Temporal layers per encoding (1 when the codec has none).
    pub(crate) fn temporal_layers(&self) -> u8 {
        self.temporal_layers
    }

    /// Whether the receiver gives the feedback a bandwidth estimate needs
    /// (transport-wide congestion control or REMB). Without it, as in
    /// mediasoup, nothing limits the consumer below its preferred layers.
    pub(crate) fn has_bandwidth_feedback(&self) -> bool {
        self.transport_cc_ext.is_some()
            || self
                .rtp_parameters
                .codecs
                .iter()
                .any(|codec| codec.rtcp_feedback.iter().any(|f| f.r#type == "goog-remb"))
    }

    /// Whether the consumer forwards anything now (for allocation).
    pub(crate) fn is_active(&self) -> bool {
        self.active()
    }

    /// The transport's bandwidth allocation for this consumer: the highest
    /// layers it may forward (below the preferred ones), or none at all.
    pub(crate) fn set_allocation(
        &mut self,
        layers: AllocatedLayers,
        producer: &Producer,
        now: Instant,
    ) -> ConsumerNeeds {
        if layers == AllocatedLayers::NoActiveLayer || self.allocated == Some(layers) {
            return ConsumerNeeds::default();
        }
        let was_paused = self.allocated == Some(AllocatedLayers::PausedForBandwidth);
        self.allocated = Some(layers);
        let mut needs = self.update_layers(producer, now);
        if was_paused && self.kind == MediaKind::Video && self.active() {
            // Back from a bandwidth pause: restart on a key frame.
            self.key_frame_required = true;
            self.current_spatial = None;
            self.seq.sync();
            self.ts.sync();
            needs.key_frame = Some(self.encoding_of(self.target_spatial));
        }
        needs
    }

    /// The spatial layer an SVC consumer should forward up to: the
    /// preferred one, capped by the allocation and the stream's layers.
    fn svc_target(&self) -> usize {
        let mut max = usize::from(self.svc_spatial_layers - 1);
        if let Some(AllocatedLayers::Forward(l)) = self.allocated {
            max = max.min(usize::from(l.spatial_layer));
        }
        usize::from(self.preferred.spatial_layer).min(max)
    }

    /// The producer encoding carrying spatial layer `spatial`: the layer
    /// itself for simulcast, the one stream of an SVC producer. Key frame
    /// requests name encodings.
    pub(crate) fn encoding_of(&self, spatial: usize) -> usize {
        match self.r#type {
            ConsumerType::Svc => 0,
            _ => spatial,
        }
    }

    /// Spatial layers of the producer's stream (SVC) or encodings (simulcast).
    pub(crate) fn spatial_layers(&self) -> usize {
        match self.r#type {
            ConsumerType::Svc => usize::from(self.svc_spatial_layers),
            _ => self.encodings,
        }
    }

    fn bandwidth_paused(&self) -> bool {
        self.allocated == Some(AllocatedLayers::PausedForBandwidth)
    }

    /// The highest temporal layer to forward: the preferred one, capped by
    /// the allocation.
    fn max_temporal(&self) -> Option<u8> {
        let allocated = match self.allocated {
            Some(AllocatedLayers::Forward(l)) => l.temporal_layer,
            _ => None,
        };
        match (self.preferred.temporal_layer, allocated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn set_preferred_layers(
        &mut self,
        layers: ConsumerLayers,
        producer: &Producer,
        now: Instant,
    ) -> ConsumerNeeds {
        self.preferred = layers;
        self.update_layers(producer, now)
    }

    /// Picks the encoding to forward: the preferred one, or the best lower
    /// one that is active. Asks for a key frame of a new target.
    pub(crate) fn update_layers(&mut self, producer: &Producer, now: Instant) -> ConsumerNeeds {
        let mut needs = ConsumerNeeds::default();
        if self.r#type == ConsumerType::Svc {
            let target = self.svc_target();
            if target != self.target_spatial {
                self.target_spatial = target;
                if self.active() && self.current_spatial.is_some() {
                    // Spatial layers change at a key frame.
                    needs.key_frame = Some(0);
                }
            }
            return needs;
        }
        if self.r#type != ConsumerType::Simulcast {
            return needs;
        }
        let mut max = self.encodings - 1;
        if let Some(AllocatedLayers::Forward(l)) = self.allocated {
            max = max.min(usize::from(l.spatial_layer));
        }
        let mut target = usize::from(self.preferred.spatial_layer).min(max);
        while target > 0 && !producer.encoding_active(target, now) {
            target -= 1;
        }
        if target != self.target_spatial {
            self.target_spatial = target;
            if self.active() && self.current_spatial != Some(target) {
                needs.key_frame = Some(self.encoding_of(target));
            }
        }
        // The forwarded layer stopped: switch down without waiting.
        if let Some(cur) = self.current_spatial {
            if !producer.encoding_active(cur, now) && cur != target {
                self.current_spatial = None;
                self.key_frame_required = true;
                needs.key_frame = Some(self.encoding_of(target));
                needs.layers_changed = true;
            }
        }
        needs
    }

    /// Forwards one packet of the producer (already in the router's
    /// namespace) into `out`; returns its length, or `None` when this
    /// consumer does not send it.
    pub(crate) fn forward(
        &mut self,
        now: Instant,
        rx: &Received,
        packet: &[u8],
        out: &mut [u8],
        needs: &mut ConsumerNeeds,
    ) -> Option<usize> {
        if !self.active() || rx.paused {
            return None;
        }
        if self.bandwidth_paused() && self.kind == MediaKind::Video {
            return None;
        }
        if self.r#type == ConsumerType::Simulcast {
            if self.current_spatial != Some(rx.encoding) {
                if rx.encoding != self.target_spatial || !rx.key_frame {
                    return None;
                }
                // Switch at a key frame of the target layer.
                self.current_spatial = Some(rx.encoding);
                self.seq.sync();
                self.ts.sync();
                if let Some(v) = &mut self.vp8 {
                    v.sync();
                }
                self.key_frame_required = false;
                needs.layers_changed = true;
            }
        } else if rx.encoding != 0 && self.r#type == ConsumerType::Simple {
            return None;
        }
        // SVC: one stream whose packets carry their spatial layer. Layers
        // above the target are dropped; the target changes at a key frame
        // (K-SVC layers only meet there); the last packet of the highest
        // forwarded layer ends the frame for the receiver.
        let mut svc_marker = None;
        if self.r#type == ConsumerType::Svc {
            if let Some(sid) = rx.spatial_layer {
                let target = self.svc_target();
                if self.current_spatial != Some(target) && rx.key_frame {
                    if self.current_spatial.is_some() {
                        needs.layers_changed = true;
                    }
                    self.current_spatial = Some(target);
                    self.target_spatial = target;
                }
                if let Some(cur) = self.current_spatial {
                    if usize::from(sid) > cur {
                        if let Ok(p) = RtpPacket::parse(packet) {
                            self.seq.drop_packet(p.sequence_number());
                        }
                        return None;
                    }
                    // The end of the highest forwarded layer ends the
                    // frame; other packets keep the sender's marker (the
                    // sender may send fewer layers than the target).
                    if rx.end_of_layer_frame && usize::from(sid) == cur {
                        svc_marker = Some(true);
                    }
                }
            }
        }
        if self.key_frame_required {
            if !rx.key_frame {
                return None;
            }
            self.key_frame_required = false;
            self.current_spatial.get_or_insert(rx.encoding);
        }
        if packet.len() > out.len() {
            return None;
        }
        let seq_in = RtpPacket::parse(packet).ok()?.sequence_number();
        if let (Some(max_tl), Some(tl)) = (self.max_temporal(), rx.temporal_layer) {
            if tl > max_tl {
                self.seq.drop_packet(seq_in);
                if let Some(v) = &mut self.vp8 {
                    if let Ok(d) = Vp8Descriptor::parse(RtpPacket::parse(packet).ok()?.payload()) {
                        if let Some(pid) = d.picture_id {
                            v.drop_picture(pid.value);
                        }
                    }
                }
                return None;
            }
        }
        let seq_out = self.seq.input(seq_in)?;
        let len = match self.transport_cc_ext {
            Some(id) => copy_with_transport_cc_slot(packet, id, out)?,
            None => {
                out[..packet.len()].copy_from_slice(packet);
                packet.len()
            }
        };
        let allowed = &self.allowed_ext;
        let mut p = RtpPacketMut::parse(&mut out[..len]).ok()?;
        let ts_out = self.ts.input(p.view().timestamp(), now);
        p.set_ssrc(self.ssrc);
        p.set_sequence_number(seq_out);
        p.set_timestamp(ts_out);
        p.remap_extension_ids(|id| allowed[usize::from(id)].then_some(id))
            .ok()?;
        if let Some(v) = &mut self.vp8 {
            if let Ok(d) = Vp8Descriptor::parse(p.view().payload()) {
                let _ = v.rewrite(p.payload_mut(), &d);
            }
        }
        if let Some(marker) = svc_marker {
            p.set_marker(marker);
        }
        if let Some(sent) = &mut self.sent {
            let (picture_id, tl0) = match &self.vp8 {
                Some(_) => Vp8Descriptor::parse(p.view().payload())
                    .map(|d| (d.picture_id.map(|p| p.value), d.tl0_pic_idx))
                    .unwrap_or((None, None)),
                None => (None, None),
            };
            sent[usize::from(seq_out) % SENT_HISTORY] = Sent {
                at: Some(now),
                seq_out,
                seq_in,
                encoding: rx.encoding as u8,
                ts_out,
                picture_id,
                tl0,
                resent_at: None,
            };
        }
        self.packets += 1;
        self.bytes += len as u64;
        self.meter.add(now, len);
        self.last_sent = Some((ts_out, now));
        Some(len)
    }

    /// Answers a NACK for `seq`: the stored packet, as RTX when
    /// negotiated, into `out`.
    pub(crate) fn retransmit(
        &mut self,
        now: Instant,
        seq: u16,
        producer: &Producer,
        out: &mut [u8],
    ) -> Option<usize> {
        let min_interval = self
            .rtt
            .unwrap_or(Duration::from_millis(20))
            .min(Duration::from_millis(200));
        let entry = self
            .sent
            .as_mut()?
            .get_mut(usize::from(seq) % SENT_HISTORY)?;
        let fresh = entry
            .at
            .is_some_and(|at| now.saturating_duration_since(at) <= SENT_MAX_AGE);
        if entry.seq_out != seq || !fresh {
            return None;
        }
        if entry
            .resent_at
            .is_some_and(|at| now.saturating_duration_since(at) < min_interval)
        {
            return None;
        }
        let e = *entry;
        let original = producer.stored_packet(usize::from(e.encoding), e.seq_in, now)?;
        // Rebuilt as it was sent: the same rewriting as `forward`, with the
        // sequence number, timestamp and picture ids it had then.
        let scratch = &mut self.rtx_scratch;
        let len = match self.transport_cc_ext {
            Some(id) => copy_with_transport_cc_slot(original, id, scratch)?,
            None => {
                scratch.get_mut(..original.len())?.copy_from_slice(original);
                original.len()
            }
        };
        let allowed = &self.allowed_ext;
        {
            let mut p = RtpPacketMut::parse(&mut scratch[..len]).ok()?;
            p.set_ssrc(self.ssrc);
            p.set_sequence_number(e.seq_out);
            p.set_timestamp(e.ts_out);
            p.remap_extension_ids(|id| allowed[usize::from(id)].then_some(id))
                .ok()?;
            if e.picture_id.is_some() || e.tl0.is_some() {
                if let Ok(d) = Vp8Descriptor::parse(p.view().payload()) {
                    if let Some(pid) = e.picture_id {
                        let _ = d.set_picture_id(p.payload_mut(), pid);
                    }
                    if let Some(tl0) = e.tl0 {
                        let _ = d.set_tl0_pic_idx(p.payload_mut(), tl0);
                    }
                }
            }
        }
        if let Some(entry) = self
            .sent
            .as_mut()
            .and_then(|s| s.get_mut(usize::from(seq) % SENT_HISTORY))
        {
            entry.resent_at = Some(now);
        }
        let rtx = self.rtx;
        let pt_map = &self.rtx_pt_for;
        let stored = &self.rtx_scratch[..len];
        let n = match rtx {
            Some((rtx_ssrc, default_pt)) => {
                let media_pt = RtpPacket::parse(stored).ok()?.payload_type();
                let rtx_pt = pt_map
                    .iter()
                    .find(|(m, _)| *m == media_pt)
                    .map_or(default_pt, |(_, r)| *r);
                self.rtx_seq = self.rtx_seq.wrapping_add(1);
                rtx_encapsulate(stored, rtx_ssrc, rtx_pt, self.rtx_seq, out).ok()?
            }
            None => {
                if stored.len() > out.len() {
                    return None;
                }
                out[..stored.len()].copy_from_slice(stored);
                stored.len()
            }
        };
        self.retransmitted += 1;
        Some(n)
    }

    /// Whether this consumer can carry probe padding (video with RTX,
    /// already sending).
    pub(crate) fn can_pad(&self) -> bool {
        self.kind == MediaKind::Video
            && self.rtx.is_some()
            && self.last_sent.is_some()
            && self.active()
    }

    /// An RTX padding-only packet (for bandwidth probing) into `out`, with
    /// a transport-wide sequence number slot when negotiated.
    pub(crate) fn write_padding(&mut self, out: &mut [u8]) -> Option<usize> {
        const PADDING: usize = 224;
        let (rtx_ssrc, rtx_pt) = self.rtx?;
        let (ts, _) = self.last_sent?;
        self.rtx_seq = self.rtx_seq.wrapping_add(1);
        let ext = self.transport_cc_ext.filter(|id| (1..=14).contains(id));
        let header = 12 + if ext.is_some() { 8 } else { 0 };
        let len = header + PADDING;
        if out.len() < len {
            return None;
        }
        out[0] = 0x80 | 0x20 | if ext.is_some() { 0x10 } else { 0 };
        out[1] = rtx_pt & 0x7f;
        out[2..4].copy_from_slice(&self.rtx_seq.to_be_bytes());
        out[4..8].copy_from_slice(&ts.to_be_bytes());
        out[8..12].copy_from_slice(&rtx_ssrc.to_be_bytes());
        if let Some(id) = ext {
            out[12..16].copy_from_slice(&[0xBE, 0xDE, 0x00, 0x01]);
            out[16..20].copy_from_slice(&[(id << 4) | 1, 0, 0, 0]);
        }
        out[header..len].fill(0);
        out[len - 1] = PADDING as u8;
        Some(len)
    }

    pub(crate) fn note_nack(&mut self) {
        self.nack_count += 1;
    }

    pub(crate) fn note_key_frame_request(&mut self) -> ConsumerNeeds {
        self.pli_count += 1;
        ConsumerNeeds {
            key_frame: Some(self.encoding_of(self.current_spatial.unwrap_or(self.target_spatial))),
            layers_changed: false,
        }
    }

    /// A report block from the receiver about our stream.
    pub(crate) fn receive_report(&mut self, block: &ReportBlock, now_ntp: NtpTime) {
        self.fraction_lost = block.fraction_lost;
        self.packets_lost = i64::from(block.cumulative_lost);
        if let Some(rtt) = rtt_from_report(now_ntp, block.last_sr, block.delay_since_last_sr) {
            self.rtt = Some(rtt);
        }
        // mediasoup-style 0..10 score from the loss fraction.
        let loss = f64::from(block.fraction_lost) / 256.0;
        self.score = (10.0 - loss * 40.0).clamp(0.0, 10.0).round() as u8;
    }

    /// A sender report (with SDES CNAME) for this stream, into `out`.
    pub(crate) fn write_sender_report(&self, now: Instant, now_ntp: NtpTime, out: &mut Vec<u8>) {
        let Some((ts, at)) = self.last_sent else {
            return;
        };
        let elapsed = now.saturating_duration_since(at);
        let ticks = (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let info = SenderInfo {
            ntp: now_ntp,
            rtp_timestamp: ts.wrapping_add(ticks),
            packet_count: self.packets as u32,
            octet_count: self.bytes as u32,
        };
        let mut item = [0u8; 28];
        if let Ok(n) = SenderReport::write(&mut item, self.ssrc, &info, &[]) {
            out.extend_from_slice(&item[..n]);
        }
        let mut sdes = [0u8; 300];
        if let Ok(n) = SourceDescription::write_cname(&mut sdes, self.ssrc, self.cname.as_bytes()) {
            out.extend_from_slice(&sdes[..n]);
        }
    }

    pub(crate) fn stats(&mut self, now: Instant) -> ConsumerStats {
        ConsumerStats {
            ssrc: self.ssrc,
            packet_count: self.packets,
            byte_count: self.bytes,
            packets_retransmitted: self.retransmitted,
            nack_count: self.nack_count,
            pli_count: self.pli_count,
            fraction_lost: self.fraction_lost,
            packets_lost: self.packets_lost,
            round_trip_time_ms: self.rtt.map(|d| d.as_secs_f64() * 1000.0),
            bitrate: self.meter.bitrate(now),
            score: self.score,
        }
    }
}

/// Copies `packet` into `out`, adding an element for a transport-wide
/// sequence number (extension `id`, zero for now) when it has none; returns
/// the copy's length.
///
/// The transport stamps its own transport-wide sequence numbers on what it
/// sends, in place, and the receiver only reports on packets that carry
/// one. Browsers send the extension, so their packets arrive with the slot;
/// a PlainTransport tool (FFmpeg, GStreamer) does not, and without the slot
/// the estimator would hear about probe padding only: no feedback for the
/// media, so no estimate, no layer switch and not even the lost-feedback
/// decrease (mediasoup's producer adds the slot to every packet for the
/// same reason). A packet with an extension block of another profile is
/// copied as it is.
fn copy_with_transport_cc_slot(packet: &[u8], id: u8, out: &mut [u8]) -> Option<usize> {
    let view = RtpPacket::parse(packet).ok()?;
    let form = view.extension_form();
    let copy = |out: &mut [u8]| {
        let dst = out.get_mut(..packet.len())?;
        dst.copy_from_slice(packet);
        Some(packet.len())
    };
    if view.extension(id).is_some() || matches!(form, Some(ExtensionForm::Other(_))) {
        return copy(out);
    }
    let two_byte = form == Some(ExtensionForm::TwoByte);
    if !two_byte && !(1..=14).contains(&id) {
        return copy(out);
    }
    // The block's elements, then ours, padded to 32-bit words.
    let mut block = [0u8; 1024];
    let mut n = 0;
    for e in view
        .extensions()
        .chain(std::iter::once(HeaderExtension { id, value: &[0, 0] }))
    {
        let element = if two_byte { 2 } else { 1 } + e.value.len();
        if n + element > block.len() || (!two_byte && e.value.is_empty()) {
            return copy(out);
        }
        if two_byte {
            block[n] = e.id;
            block[n + 1] = e.value.len() as u8;
            n += 2;
        } else {
            block[n] = (e.id << 4) | (e.value.len() as u8 - 1);
            n += 1;
        }
        block[n..n + e.value.len()].copy_from_slice(e.value);
        n += e.value.len();
    }
    let words = n.div_ceil(4);
    let fixed = RTP_HEADER_LEN + 4 * view.csrc_count();
    let rest = &packet[view.header_len()..];
    let len = fixed + 4 + 4 * words + rest.len();
    if len > out.len() {
        return copy(out);
    }
    out[..fixed].copy_from_slice(&packet[..fixed]);
    out[0] |= 0x10;
    let profile = if two_byte {
        view.extension_profile().unwrap_or(TWO_BYTE_PROFILE)
    } else {
        ONE_BYTE_PROFILE
    };
    out[fixed..fixed + 2].copy_from_slice(&profile.to_be_bytes());
    out[fixed + 2..fixed + 4].copy_from_slice(&(words as u16).to_be_bytes());
    let data = fixed + 4;
    out[data..data + 4 * words].fill(0);
    out[data..data + n].copy_from_slice(&block[..n]);
    out[data + 4 * words..len].copy_from_slice(rest);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::super::producer::{ProducerOptions, Received};
    use super::*;
    use crate::rtcp::Nack;

    fn device_caps() -> RtpCapabilities {
        // What mediasoup-client's device reports for Chrome: the router's
        // codecs (it loads them) with the same payload types.
        super::super::producer::tests_support::router_caps()
    }

    fn simple_vp8() -> RtpParameters {
        serde_json::from_value(serde_json::json!({
            "mid": "0",
            "codecs": [
                {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                 "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]},
                {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}}
            ],
            "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4}],
            "encodings": [{"ssrc": 1111, "rtx": {"ssrc": 2222}}],
            "rtcp": {"cname": "c"}
        }))
        .unwrap()
    }

    fn setup() -> (Producer, Consumer) {
        let caps = device_caps();
        let producer = Producer::new(
            ProducerId::new(),
            ProducerOptions::new(MediaKind::Video, simple_vp8()),
            &caps,
        )
        .unwrap();
        let options = ConsumerOptions::new(producer.id, caps);
        let consumer = Consumer::new(ConsumerId::new(), &producer, &options, "1".into()).unwrap();
        (producer, consumer)
    }

    const KEY: &[u8] = &[0x10, 0x00, 0x9d, 0x01, 0x2a, 9, 9];
    const DELTA: &[u8] = &[0x10, 0x01, 0x9d, 0x01, 0x2a, 9, 9];

    fn receive(p: &mut Producer, now: Instant, seq: u16, payload: &[u8]) -> (Received, Vec<u8>) {
        let mut buf = super::super::producer::tests_support::packet(96, seq, 1111, &[], payload);
        let len = buf.len();
        let rx = p.receive_rtp(now, &mut buf, len).unwrap();
        buf.truncate(rx.len);
        (rx, buf)
    }

    #[test]
    fn a_paused_consumer_sends_nothing_and_resumes_on_a_key_frame() {
        let (mut p, mut c) = setup();
        let now = Instant::now();
        let mut out = [0u8; 1600];
        let mut needs = ConsumerNeeds::default();
        let (rx, pkt) = receive(&mut p, now, 10, KEY);
        assert!(
            c.forward(now, &rx, &pkt, &mut out, &mut needs).is_none(),
            "starts paused"
        );
        let n = c.set_paused(false);
        assert_eq!(n.key_frame, Some(0), "resuming asks for a key frame");
        let (rx, pkt) = receive(&mut p, now, 11, DELTA);
        assert!(
            c.forward(now, &rx, &pkt, &mut out, &mut needs).is_none(),
            "waits for a key frame"
        );
        let (rx, pkt) = receive(&mut p, now, 12, KEY);
        let len = c.forward(now, &rx, &pkt, &mut out, &mut needs).unwrap();
        let sent = RtpPacket::parse(&out[..len]).unwrap();
        assert_eq!(sent.ssrc(), c.ssrc());
        assert_eq!(sent.payload(), KEY);
        let first = sent.sequence_number();
        let (rx, pkt) = receive(&mut p, now, 13, DELTA);
        let len = c.forward(now, &rx, &pkt, &mut out, &mut needs).unwrap();
        assert_eq!(
            RtpPacket::parse(&out[..len]).unwrap().sequence_number(),
            first.wrapping_add(1)
        );

        // Pause and resume: the sequence continues without a gap.
        c.set_paused(true);
        for seq in 14..40 {
            let (rx, pkt) = receive(&mut p, now, seq, DELTA);
            assert!(c.forward(now, &rx, &pkt, &mut out, &mut needs).is_none());
        }
        c.set_paused(false);
        let (rx, pkt) = receive(&mut p, now, 40, KEY);
        let len = c.forward(now, &rx, &pkt, &mut out, &mut needs).unwrap();
        assert_eq!(
            RtpPacket::parse(&out[..len]).unwrap().sequence_number(),
            first.wrapping_add(2)
        );
    }

    #[test]
    fn nacked_packets_are_resent_as_rtx() {
        let (mut p, mut c) = setup();
        let now = Instant::now();
        c.set_paused(false);
        let mut out = [0u8; 1600];
        let mut needs = ConsumerNeeds::default();
        let (rx, pkt) = receive(&mut p, now, 1, KEY);
        let len = c.forward(now, &rx, &pkt, &mut out, &mut needs).unwrap();
        let sent = out[..len].to_vec();
        let seq = RtpPacket::parse(&sent).unwrap().sequence_number();
        let mut rtx = [0u8; 1600];
        let n = c.retransmit(now, seq, &p, &mut rtx).unwrap();
        let r = RtpPacket::parse(&rtx[..n]).unwrap();
        assert_eq!(Some(r.ssrc()), c.rtx_ssrc());
        assert_eq!(&r.payload()[..2], &seq.to_be_bytes());
        assert_eq!(&r.payload()[2..], KEY);
        assert!(
            c.retransmit(now, seq, &p, &mut rtx).is_none(),
            "not resent again within the RTT"
        );
        assert!(
            c.retransmit(now, seq.wrapping_add(5), &p, &mut rtx)
                .is_none(),
            "never sent"
        );
        let _ = Nack::parse;
    }

    #[test]
    fn forwarded_packets_get_a_transport_wide_sequence_number_slot() {
        let (mut p, mut c) = setup();
        let id = c
            .transport_cc_ext
            .expect("the device negotiated transport-cc");
        let now = Instant::now();
        c.set_paused(false);
        let mut out = [0u8; 1600];
        let mut needs = ConsumerNeeds::default();
        // The sender's packet has no extension at all (a plain RTP tool).
        let (rx, pkt) = receive(&mut p, now, 1, KEY);
        assert!(!RtpPacket::parse(&pkt).unwrap().has_extension());
        let len = c.forward(now, &rx, &pkt, &mut out, &mut needs).unwrap();
        let sent = RtpPacket::parse(&out[..len]).unwrap();
        assert_eq!(sent.extension(id), Some(&[0u8, 0][..]));
        assert_eq!(sent.payload(), KEY);
        // Retransmissions carry it too (the transport stamps them as well).
        let mut rtx = [0u8; 1600];
        let n = c
            .retransmit(now, sent.sequence_number(), &p, &mut rtx)
            .unwrap();
        assert!(RtpPacket::parse(&rtx[..n]).unwrap().extension(id).is_some());

        // Other elements stay, in either form; a slot already there is kept.
        let mut one_byte = vec![0x90, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        one_byte.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x30, 7, 0, 0]);
        one_byte.extend_from_slice(b"payload");
        let n = copy_with_transport_cc_slot(&one_byte, 5, &mut out).unwrap();
        let copy = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(copy.extension(3), Some(&[7u8][..]));
        assert_eq!(copy.extension(5), Some(&[0u8, 0][..]));
        assert_eq!(copy.payload(), b"payload");
        let again = out[..n].to_vec();
        let mut out2 = [0u8; 1600];
        assert_eq!(copy_with_transport_cc_slot(&again, 5, &mut out2), Some(n));
        assert_eq!(&out2[..n], &again[..]);
        let mut two_byte = vec![0x90, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        two_byte.extend_from_slice(&[0x10, 0x00, 0, 1, 20, 1, 9, 0]);
        two_byte.extend_from_slice(b"payload");
        let n = copy_with_transport_cc_slot(&two_byte, 5, &mut out).unwrap();
        let copy = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(copy.extension_form(), Some(ExtensionForm::TwoByte));
        assert_eq!(copy.extension(20), Some(&[9u8][..]));
        assert_eq!(copy.extension(5), Some(&[0u8, 0][..]));
        assert_eq!(copy.payload(), b"payload");
    }

    #[test]
    fn devices_without_the_codec_cannot_consume() {
        let caps = device_caps();
        let producer = Producer::new(
            ProducerId::new(),
            ProducerOptions::new(MediaKind::Video, simple_vp8()),
            &caps,
        )
        .unwrap();
        let mut audio_only = caps.clone();
        audio_only.codecs.retain(|c| c.kind == MediaKind::Audio);
        let options = ConsumerOptions::new(producer.id, audio_only);
        assert!(matches!(
            Consumer::new(ConsumerId::new(), &producer, &options, "0".into()),
            Err(ConsumeError::CannotConsume(_))
        ));
    }

    /// A VP9 payload: non-flexible descriptor with layer indices.
    fn vp9(key: bool, start: bool, end: bool, sid: u8, tid: u8, body: u8) -> Vec<u8> {
        let b0 = 0x20
            | if key { 0 } else { 0x40 }
            | if start { 0x08 } else { 0 }
            | if end { 0x04 } else { 0 };
        vec![b0, (tid << 5) | (sid << 1), 0, body, body]
    }

    #[test]
    fn svc_consumers_forward_up_to_their_spatial_layer_and_end_frames_there() {
        let codecs: Vec<crate::rtp_parameters::RtpCodecCapability> = serde_json::from_value(serde_json::json!([
            {"kind": "video", "mimeType": "video/VP9", "clockRate": 90000, "parameters": {"profile-id": 0}}
        ]))
        .unwrap();
        let caps = crate::ortc::generate_router_rtp_capabilities(&codecs).unwrap();
        let params: RtpParameters = serde_json::from_value(serde_json::json!({
            "codecs": [{"mimeType": "video/VP9", "payloadType": 98, "clockRate": 90000, "parameters": {"profile-id": 0},
                        "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]}],
            "encodings": [{"ssrc": 5555, "scalabilityMode": "L3T3_KEY"}],
            "rtcp": {"cname": "c"}
        }))
        .unwrap();
        let mut p = Producer::new(
            ProducerId::new(),
            ProducerOptions::new(MediaKind::Video, params),
            &caps,
        )
        .unwrap();
        let options = ConsumerOptions::new(p.id, caps.clone());
        let mut c = Consumer::new(ConsumerId::new(), &p, &options, "0".into()).unwrap();
        assert_eq!(c.r#type, ConsumerType::Svc);
        c.set_paused(false);
        let now = Instant::now();
        let mut seq = 100u16;
        let mut out = [0u8; 1600];
        // Three frames of three spatial layers (one packet each); returns
        // (body, marker, out seq) of what the consumer sent.
        let mut frames = |c: &mut Consumer, p: &mut Producer, key_first: bool| {
            let mut sent = Vec::new();
            for f in 0..3u8 {
                for sid in 0..3u8 {
                    let key = key_first && f == 0;
                    let payload = vp9(
                        key && sid == 0 || (key && sid > 0),
                        true,
                        true,
                        sid,
                        0,
                        f * 10 + sid,
                    );
                    let mut buf =
                        super::super::producer::tests_support::packet(98, seq, 5555, &[], &payload);
                    seq += 1;
                    let len = buf.len();
                    let rx = p.receive_rtp(now, &mut buf, len).unwrap();
                    let mut needs = ConsumerNeeds::default();
                    if let Some(n) = c.forward(now, &rx, &buf[..rx.len], &mut out, &mut needs) {
                        let r = RtpPacket::parse(&out[..n]).unwrap();
                        sent.push((r.payload()[3], r.marker(), r.sequence_number()));
                    }
                }
            }
            sent
        };
        let all = frames(&mut c, &mut p, true);
        assert_eq!(
            all.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![0, 1, 2, 10, 11, 12, 20, 21, 22]
        );
        assert_eq!(
            all.iter().filter(|s| s.1).map(|s| s.0).collect::<Vec<_>>(),
            vec![2, 12, 22],
            "the top layer ends each frame"
        );

        // Asking for layer 0 takes effect at the next key frame.
        let n = c.set_preferred_layers(
            ConsumerLayers {
                spatial_layer: 0,
                temporal_layer: None,
            },
            &p,
            now,
        );
        assert_eq!(n.key_frame, Some(0));
        let low = frames(&mut c, &mut p, true);
        assert_eq!(low.iter().map(|s| s.0).collect::<Vec<_>>(), vec![0, 10, 20]);
        assert!(low.iter().all(|s| s.1), "layer 0 now ends each frame");
        let last_before = all.last().unwrap().2;
        let seqs: Vec<u16> = low.iter().map(|s| s.2).collect();
        assert_eq!(
            seqs,
            vec![last_before + 1, last_before + 2, last_before + 3],
            "no sequence gaps"
        );
    }
}
