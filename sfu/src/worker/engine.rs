//! The sans-IO state of one worker: its routers, transports, producers and
//! consumers, and the per-packet path between them. Datagrams, calls and
//! time go in; datagrams to send and events come out. It reads no clock and
//! touches no socket, so tests can drive it with simulated time.
//!
//! The packet path reads top to bottom: the WebRtcServer finds the
//! transport, the transport decrypts, the producer (found by SSRC, MID or
//! RID) rewrites into the router's namespace, the router's producer ->
//! consumers map fans out, each consumer rewrites into a scratch buffer and
//! its transport encrypts and queues the datagram.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc as tokio_mpsc;

use super::pipe::{PipeInbox, PipeMessage};
use super::webrtc_server::WebRtcServer;
use super::{CallError, ConsumerInfo, ProducerInfo, WorkerEvent};
use crate::ids::{ConsumerId, ProducerId, RouterId, RtpObserverId, TransportId, WorkerId};
use crate::ortc;
use crate::router::allocation::{estimated_layer_bitrates, Allocator, ConsumerDemand};
use crate::router::bandwidth_estimator::{BandwidthEstimator, BandwidthEstimatorOptions};
use crate::router::consumer::{Consumer, ConsumerNeeds};
use crate::router::plain_transport::{
    PlainConnectParameters, PlainOutput, PlainTransport, PlainTransportOptions, SrtpParameters,
    TransportTuple,
};
use crate::router::producer::{Producer, Received};
use crate::router::rtp_observer::{ObserverReport, RtpObserver};
use crate::router::transport_cc::TransportCcRecorder;
use crate::router::{
    ConsumeError, ConsumerLayers, ConsumerOptions, ConsumerStats, ProduceError, ProducerOptions,
    ProducerStreamStats,
};
use crate::rtcp::{parse_compound, NtpTime, RtcpPacket};
use crate::rtp::{RtpPacket, RtpPacketMut};
use crate::rtp_parameters::{RtpCapabilities, RtpCodecCapability};
use crate::transport::{
    DtlsCertificate, DtlsParameters, IceCandidate, IceListenInfo, IceParameters, TransportEvent,
    TransportProtocol, WebRtcTransport, WebRtcTransportOptions,
};

/// What `create_webrtc_transport` gives the client.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebRtcTransportInfo {
    pub id: TransportId,
    pub ice_parameters: IceParameters,
    pub ice_candidates: Vec<IceCandidate>,
    pub dtls_parameters: DtlsParameters,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransportStats {
    pub transport_id: TransportId,
    pub ice_state: String,
    pub dtls_state: String,
    pub ice_selected_tuple: Option<String>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub rtp_packets_received: u64,
    pub rtp_packets_sent: u64,
    pub producers: usize,
    pub consumers: usize,
}

struct RouterEntry {
    capabilities: RtpCapabilities,
    transports: Vec<TransportId>,
    /// The fan-out map of the packet path.
    consumers_of: HashMap<ProducerId, Vec<ConsumerId>>,
}

/// The two kinds of transport behind one set of calls on the packet path.
enum AnyTransport {
    WebRtc(WebRtcTransport),
    Plain(PlainTransport),
}

impl AnyTransport {
    /// Sends `packet`, protected into a buffer from `buffers` where the
    /// transport encrypts.
    fn send_rtp(&mut self, now: Instant, packet: &[u8], buffers: &mut Buffers) -> bool {
        match self {
            AnyTransport::WebRtc(t) => t.send_rtp_into(now, packet, buffers.take()).is_ok(),
            AnyTransport::Plain(t) => t.send_rtp(packet),
        }
    }

    fn send_rtcp(&mut self, now: Instant, packet: &[u8]) {
        // Not connected yet: RTCP is periodic, the next one will do.
        match self {
            AnyTransport::WebRtc(t) => {
                let _ = t.send_rtcp(now, packet);
            }
            AnyTransport::Plain(t) => {
                t.send_rtcp(packet);
            }
        }
    }

    fn poll_output(&mut self) -> Option<PlainOutput> {
        match self {
            AnyTransport::WebRtc(t) => t.poll_output().map(PlainOutput::from),
            AnyTransport::Plain(t) => t.poll_output(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            AnyTransport::WebRtc(t) => t.poll_timeout(),
            AnyTransport::Plain(_) => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let AnyTransport::WebRtc(t) = self {
            t.handle_timeout(now);
        }
    }

    fn close(&mut self, now: Instant) {
        if let AnyTransport::WebRtc(t) = self {
            t.close(now);
        }
    }

    fn webrtc(&mut self) -> Option<&mut WebRtcTransport> {
        match self {
            AnyTransport::WebRtc(t) => Some(t),
            AnyTransport::Plain(_) => None,
        }
    }
}

/// Datagram buffers coming back from the driver once sent, reused for the
/// next packets so that the fan-out does not allocate.
#[derive(Default)]
pub(crate) struct Buffers {
    spare: Vec<Vec<u8>>,
}

impl Buffers {
    /// At most this many are kept (a burst's worth for a thousand viewers).
    const KEPT: usize = 4096;

    fn take(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    fn give(&mut self, buffer: Vec<u8>) {
        if self.spare.len() < Self::KEPT && buffer.capacity() > 0 {
            self.spare.push(buffer);
        }
    }
}

/// The budget of a transport whose receiver gives no bandwidth feedback
/// (1 Tbit/s: more than any layer set needs, and far from overflowing the
/// allocator's signed arithmetic).
const UNLIMITED_BITRATE: u64 = 1 << 40;

/// A transport's outgoing bandwidth: the estimate, its allocation, our
/// transport-wide sequence numbers, and a running probe.
struct Bandwidth {
    estimator: BandwidthEstimator,
    allocator: Allocator,
    next_seq: u16,
    probe: Option<ProbeRun>,
}

/// Padding sent at `bitrate` until `until` to discover headroom.
struct ProbeRun {
    bitrate: u64,
    until: Instant,
    last: Instant,
    /// Bytes owed from earlier ticks.
    credit: f64,
}

impl Bandwidth {
    fn new() -> Self {
        Self {
            estimator: BandwidthEstimator::new(BandwidthEstimatorOptions::default()),
            allocator: Allocator::new(),
            next_seq: 0,
            probe: None,
        }
    }

    /// Gives an outgoing packet our transport-wide sequence number (in
    /// place, when it carries the extension) and records its departure.
    fn stamp(&mut self, now: Instant, packet: &mut [u8], ext: Option<u8>, probe: bool) {
        let Some(id) = ext else { return };
        let Ok(mut p) = RtpPacketMut::parse(packet) else {
            return;
        };
        let seq = self.next_seq;
        if p.set_extension(id, &seq.to_be_bytes()).is_ok() {
            self.next_seq = seq.wrapping_add(1);
            self.estimator.on_packet_sent(seq, packet.len(), now, probe);
        }
    }
}

impl Bandwidth {
    /// Whether a retransmission may go out now: only while the transport
    /// sends less than its estimate, or, when the path is not losing much
    /// (at most the 10 % that makes the estimator cut), less than what the
    /// receiver acknowledges if that is more.
    ///
    /// Without this, congestion feeds itself: a bottleneck that drops a
    /// burst of media gets NACKs for all of it, answered at once, which
    /// overflow its queue again and are NACKed again (receivers repeat
    /// NACKs every 100 ms or so, and an RTT measured from RTCP that skips
    /// the queue does not space the answers out). The loss of that storm
    /// drives the loss-based estimate to its floor, pausing the consumers,
    /// and RTX alone then fills the link for as long as the receiver keeps
    /// asking. libwebrtc limits retransmissions to its target bitrate for
    /// the same reason. Media itself is never held back (there is no
    /// pacer); only the repairs wait for room. The acknowledged rate
    /// counts when loss is low so that a stream the path demonstrably
    /// carries keeps its repairs while the estimate is still catching up
    /// with it (a single-layer stream is never probed for).
    fn may_retransmit(&mut self, now: Instant) -> bool {
        let mut budget = self.estimator.estimate();
        if !self.estimator.losing_much() {
            budget = budget.max(self.estimator.acked_bitrate().unwrap_or(0));
        }
        self.estimator.send_bitrate(now) < budget
    }
}

fn probe_credit(b: &Bandwidth) -> f64 {
    b.probe.as_ref().map_or(0.0, |p| p.credit)
}

/// Which socket a datagram leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// The worker's WebRtcServer port.
    Server,
    /// A PlainTransport's own RTP (or RTCP) socket.
    Plain { transport: TransportId, rtcp: bool },
}

/// Sockets the driver must start or stop polling.
pub(crate) enum SocketChange {
    Open {
        transport: TransportId,
        rtp: std::net::UdpSocket,
        rtcp: Option<std::net::UdpSocket>,
    },
    Close {
        transport: TransportId,
    },
}

/// What `create_plain_transport` gives the caller.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlainTransportInfo {
    pub id: TransportId,
    pub tuple: TransportTuple,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtcp_tuple: Option<TransportTuple>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srtp_parameters: Option<SrtpParameters>,
}

struct TransportEntry {
    router_id: RouterId,
    transport: AnyTransport,
    producers: Vec<ProducerId>,
    consumers: Vec<ConsumerId>,
    /// Media SSRC -> producer, learned as packets arrive.
    ssrc_to_producer: HashMap<u32, ProducerId>,
    /// Consumer SSRC (media and RTX) -> consumer, for RTCP feedback.
    ssrc_to_consumer: HashMap<u32, ConsumerId>,
    next_mid: u32,
    /// Has queued output not yet drained (it is in `Engine::dirty`).
    dirty: bool,
    /// Arrival times for congestion control feedback to the sender.
    transport_cc: Option<TransportCcRecorder>,
    /// Send-side bandwidth estimation and its sharing among the consumers,
    /// created with the first consumer.
    bandwidth: Option<Bandwidth>,
    rtp_in: u64,
    rtp_out: u64,
}

struct ProducerEntry {
    producer: Producer,
    /// For a pipe producer, an id no transport has.
    transport_id: TransportId,
    router_id: RouterId,
    /// A pipe producer's source: the worker and producer packets come from.
    pipe_source: Option<(PipeInbox, ProducerId)>,
}

struct ConsumerEntry {
    consumer: Consumer,
    transport_id: TransportId,
    router_id: RouterId,
}

const RTCP_INTERVAL: Duration = Duration::from_secs(1);
const FEEDBACK_INTERVAL: Duration = Duration::from_millis(10);
const LAYER_CHECK_INTERVAL: Duration = Duration::from_millis(250);
const TRANSPORT_TICK: Duration = Duration::from_millis(20);
const SCRATCH: usize = 1600;

pub(crate) struct Engine {
    #[allow(dead_code)]
    id: WorkerId,
    local_addr: SocketAddr,
    announced_address: String,
    /// ICE-TCP is listening on the same port number.
    tcp: bool,
    certificate: Arc<DtlsCertificate>,
    routers: HashMap<RouterId, RouterEntry>,
    transports: HashMap<TransportId, TransportEntry>,
    producers: HashMap<ProducerId, ProducerEntry>,
    consumers: HashMap<ConsumerId, ConsumerEntry>,
    observers: HashMap<RtpObserverId, (RouterId, RtpObserver)>,
    /// Producers piped to other workers: where each packet also goes.
    pipe_sinks: HashMap<ProducerId, Vec<(PipeInbox, ProducerId)>>,
    server: WebRtcServer,
    transmits: VecDeque<(Via, SocketAddr, Vec<u8>)>,
    socket_changes: Vec<SocketChange>,
    /// Transports with queued output, drained before the engine yields.
    dirty: Vec<TransportId>,
    events: tokio_mpsc::UnboundedSender<WorkerEvent>,
    scratch: Vec<u8>,
    buffers: Buffers,
    rtcp_scratch: Vec<u8>,
    /// Wall clock at `clock_base`, for NTP timestamps in reports.
    clock_base: (Instant, SystemTime),
    next_rtcp: Option<Instant>,
    next_feedback: Option<Instant>,
    next_layer_check: Option<Instant>,
    next_transport_tick: Option<Instant>,
    sends_dropped: u64,
    stopped: bool,
}

impl Engine {
    pub(crate) fn new(
        id: WorkerId,
        local_addr: SocketAddr,
        announced_address: String,
        tcp: bool,
        events: tokio_mpsc::UnboundedSender<WorkerEvent>,
    ) -> Self {
        Self {
            id,
            local_addr,
            announced_address,
            tcp,
            certificate: Arc::new(
                DtlsCertificate::generate().expect("generating a self-signed ECDSA certificate"),
            ),
            routers: HashMap::new(),
            transports: HashMap::new(),
            producers: HashMap::new(),
            consumers: HashMap::new(),
            observers: HashMap::new(),
            pipe_sinks: HashMap::new(),
            server: WebRtcServer::default(),
            transmits: VecDeque::new(),
            socket_changes: Vec::new(),
            dirty: Vec::new(),
            events,
            scratch: vec![0; SCRATCH],
            buffers: Buffers::default(),
            rtcp_scratch: Vec::with_capacity(1500),
            clock_base: (Instant::now(), SystemTime::now()),
            next_rtcp: None,
            next_feedback: None,
            next_layer_check: None,
            next_transport_tick: None,
            sends_dropped: 0,
            stopped: false,
        }
    }

    pub(crate) fn stop(&mut self) {
        let now = Instant::now();
        let ids: Vec<_> = self.routers.keys().copied().collect();
        for id in ids {
            let _ = self.close_router(now, id);
        }
        self.stopped = true;
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    pub(crate) fn note_send_dropped(&mut self) {
        self.sends_dropped += 1;
    }

    fn emit(&self, event: WorkerEvent) {
        let _ = self.events.send(event);
    }

    fn ntp(&self, now: Instant) -> NtpTime {
        let (base_instant, base_wall) = self.clock_base;
        let wall = base_wall + now.saturating_duration_since(base_instant);
        NtpTime::from_unix(
            wall.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        )
    }

    // ---------------------------------------------------------------- calls

    pub(crate) fn create_router(
        &mut self,
        media_codecs: Vec<RtpCodecCapability>,
    ) -> Result<(RouterId, RtpCapabilities), CallError> {
        let capabilities = ortc::generate_router_rtp_capabilities(&media_codecs)
            .map_err(|e| CallError::Invalid(e.to_string()))?;
        let id = RouterId::new();
        self.routers.insert(
            id,
            RouterEntry {
                capabilities: capabilities.clone(),
                transports: Vec::new(),
                consumers_of: HashMap::new(),
            },
        );
        Ok((id, capabilities))
    }

    pub(crate) fn close_router(&mut self, now: Instant, id: RouterId) -> Result<(), CallError> {
        let router = self
            .routers
            .get(&id)
            .ok_or_else(|| CallError::NotFound(format!("router {id}")))?;
        for t in router.transports.clone() {
            let _ = self.close_transport(now, t, true);
        }
        self.observers.retain(|_, (r, _)| *r != id);
        self.routers.remove(&id);
        Ok(())
    }

    pub(crate) fn create_webrtc_transport(
        &mut self,
        now: Instant,
        router_id: RouterId,
        options: WebRtcTransportOptions,
    ) -> Result<WebRtcTransportInfo, CallError> {
        let router = self
            .routers
            .get_mut(&router_id)
            .ok_or_else(|| CallError::NotFound(format!("router {router_id}")))?;
        let transport = WebRtcTransport::new(options, self.certificate.clone(), now);
        let id = TransportId::new();
        // UDP first: its candidate gets the higher priority.
        let mut listen = vec![IceListenInfo::new(
            TransportProtocol::Udp,
            self.local_addr.ip(),
            self.local_addr.port(),
        )
        .with_announced_address(self.announced_address.clone())];
        if self.tcp {
            listen.push(
                IceListenInfo::new(
                    TransportProtocol::Tcp,
                    self.local_addr.ip(),
                    self.local_addr.port(),
                )
                .with_announced_address(self.announced_address.clone()),
            );
        }
        let info = WebRtcTransportInfo {
            id,
            ice_parameters: transport.ice_parameters(),
            ice_candidates: transport.ice_candidates(&listen),
            dtls_parameters: transport.dtls_parameters(),
        };
        self.server
            .add_ufrag(&info.ice_parameters.username_fragment, id);
        router.transports.push(id);
        self.transports.insert(
            id,
            TransportEntry {
                router_id,
                transport: AnyTransport::WebRtc(transport),
                producers: Vec::new(),
                consumers: Vec::new(),
                ssrc_to_producer: HashMap::new(),
                ssrc_to_consumer: HashMap::new(),
                next_mid: 0,
                dirty: false,
                transport_cc: None,
                bandwidth: None,
                rtp_in: 0,
                rtp_out: 0,
            },
        );
        Ok(info)
    }

    pub(crate) fn connect_transport(
        &mut self,
        now: Instant,
        id: TransportId,
        dtls: DtlsParameters,
    ) -> Result<(), CallError> {
        let entry = self
            .transports
            .get_mut(&id)
            .ok_or_else(|| CallError::NotFound(format!("transport {id}")))?;
        entry
            .transport
            .webrtc()
            .ok_or_else(|| CallError::Invalid(format!("transport {id} is not a WebRtcTransport")))?
            .connect(now, dtls)
            .map_err(|e| CallError::Invalid(e.to_string()))?;
        self.mark_dirty(id);
        self.flush(now);
        Ok(())
    }

    pub(crate) fn restart_ice(
        &mut self,
        now: Instant,
        id: TransportId,
    ) -> Result<IceParameters, CallError> {
        let entry = self
            .transports
            .get_mut(&id)
            .ok_or_else(|| CallError::NotFound(format!("transport {id}")))?;
        let params = entry
            .transport
            .webrtc()
            .ok_or_else(|| CallError::Invalid(format!("transport {id} is not a WebRtcTransport")))?
            .restart_ice(now);
        // The old credentials stay valid until the peer uses the new ones.
        self.server.add_ufrag(&params.username_fragment, id);
        Ok(params)
    }

    pub(crate) fn close_transport(
        &mut self,
        now: Instant,
        id: TransportId,
        notify: bool,
    ) -> Result<(), CallError> {
        let entry = self
            .transports
            .get(&id)
            .ok_or_else(|| CallError::NotFound(format!("transport {id}")))?;
        let producers = entry.producers.clone();
        let consumers = entry.consumers.clone();
        let router_id = entry.router_id;
        for c in consumers {
            let _ = self.close_consumer(c, true);
        }
        for p in producers {
            let _ = self.close_producer(now, p, true);
        }
        if let Some(mut entry) = self.transports.remove(&id) {
            entry.transport.close(now);
            // The close_notify (WebRTC) is the only output that matters now.
            while let Some(out) = entry.transport.poll_output() {
                if let PlainOutput::Transmit {
                    destination,
                    payload,
                    ..
                } = out
                {
                    if let AnyTransport::WebRtc(_) = entry.transport {
                        self.transmits
                            .push_back((Via::Server, destination, payload));
                    }
                }
            }
            if let AnyTransport::Plain(_) = entry.transport {
                self.socket_changes
                    .push(SocketChange::Close { transport: id });
            }
        }
        self.server.remove_transport(id);
        if let Some(r) = self.routers.get_mut(&router_id) {
            r.transports.retain(|t| *t != id);
        }
        if notify {
            self.emit(WorkerEvent::TransportClosed { transport_id: id });
        }
        Ok(())
    }

    pub(crate) fn transport_stats(&self, id: TransportId) -> Result<TransportStats, CallError> {
        let e = self
            .transports
            .get(&id)
            .ok_or_else(|| CallError::NotFound(format!("transport {id}")))?;
        let (ice_state, dtls_state, tuple, bytes_received, bytes_sent) = match &e.transport {
            AnyTransport::WebRtc(t) => {
                let s = t.stats();
                (
                    format!("{:?}", t.ice_state()).to_lowercase(),
                    format!("{:?}", t.dtls_state()).to_lowercase(),
                    t.ice_selected_tuple().map(|a| a.to_string()),
                    s.bytes_received,
                    s.bytes_sent,
                )
            }
            AnyTransport::Plain(t) => (
                String::new(),
                String::new(),
                t.remote().map(|a| a.to_string()),
                t.bytes_received,
                t.bytes_sent,
            ),
        };
        Ok(TransportStats {
            transport_id: id,
            ice_state,
            dtls_state,
            ice_selected_tuple: tuple,
            bytes_received,
            bytes_sent,
            rtp_packets_received: e.rtp_in,
            rtp_packets_sent: e.rtp_out,
            producers: e.producers.len(),
            consumers: e.consumers.len(),
        })
    }

    pub(crate) fn produce(
        &mut self,
        _now: Instant,
        transport_id: TransportId,
        mut options: ProducerOptions,
    ) -> Result<ProducerInfo, CallError> {
        let entry = self
            .transports
            .get(&transport_id)
            .ok_or_else(|| CallError::NotFound(format!("transport {transport_id}")))?;
        let router = self
            .routers
            .get(&entry.router_id)
            .ok_or_else(|| CallError::NotFound(format!("router {}", entry.router_id)))?;
        // RID-only senders (browser simulcast) signal no CNAME; as
        // mediasoup's transport does, give every such producer of the
        // transport the same one, so receivers group its tracks.
        if options
            .rtp_parameters
            .rtcp
            .cname
            .as_deref()
            .is_none_or(str::is_empty)
        {
            let known = entry
                .producers
                .iter()
                .find_map(|p| self.producers[p].producer.rtp_parameters.rtcp.cname.clone());
            options.rtp_parameters.rtcp.cname =
                Some(known.unwrap_or_else(|| format!("{:08x}", rand::random::<u32>())));
        }
        let id = ProducerId::new();
        let producer = Producer::new(id, options, &router.capabilities)?;
        for p in &entry.producers {
            let other = &self.producers[p].producer;
            if let (Some(a), Some(b)) = (producer.mid(), other.mid()) {
                if a == b {
                    return Err(ProduceError::MidTaken(a.to_string()).into());
                }
            }
            if let Some(ssrc) = producer.ssrcs().find(|s| other.ssrcs().any(|o| o == *s)) {
                return Err(ProduceError::SsrcTaken(ssrc).into());
            }
        }
        let info = ProducerInfo {
            id,
            kind: producer.kind,
            r#type: producer.r#type,
            paused: producer.paused,
        };
        let router_id = entry.router_id;
        let entry = self
            .transports
            .get_mut(&transport_id)
            .expect("looked up above");
        entry.producers.push(id);
        for ssrc in producer.ssrcs() {
            entry.ssrc_to_producer.insert(ssrc, id);
        }
        self.routers
            .get_mut(&router_id)
            .expect("looked up above")
            .consumers_of
            .insert(id, Vec::new());
        self.producers.insert(
            id,
            ProducerEntry {
                producer,
                transport_id,
                router_id,
                pipe_source: None,
            },
        );
        Ok(info)
    }

    pub(crate) fn set_producer_paused(
        &mut self,
        now: Instant,
        id: ProducerId,
        paused: bool,
    ) -> Result<(), CallError> {
        let entry = self
            .producers
            .get_mut(&id)
            .ok_or_else(|| CallError::NotFound(format!("producer {id}")))?;
        if entry.producer.paused == paused {
            return Ok(());
        }
        entry.producer.paused = paused;
        let router_id = entry.router_id;
        for (inbox, remote) in self.pipe_sinks.get(&id).into_iter().flatten() {
            inbox.send(PipeMessage::ProducerPaused {
                producer: *remote,
                paused,
            });
        }
        let consumers = self.routers[&router_id]
            .consumers_of
            .get(&id)
            .cloned()
            .unwrap_or_default();
        for c in consumers {
            if let Some(ce) = self.consumers.get_mut(&c) {
                let needs = ce.consumer.set_producer_paused(paused);
                self.emit(if paused {
                    WorkerEvent::ConsumerProducerPaused { consumer_id: c }
                } else {
                    WorkerEvent::ConsumerProducerResumed { consumer_id: c }
                });
                self.apply_needs(now, c, needs);
            }
        }
        Ok(())
    }

    pub(crate) fn close_producer(
        &mut self,
        now: Instant,
        id: ProducerId,
        notify: bool,
    ) -> Result<(), CallError> {
        let entry = self
            .producers
            .remove(&id)
            .ok_or_else(|| CallError::NotFound(format!("producer {id}")))?;
        let consumers = self
            .routers
            .get_mut(&entry.router_id)
            .and_then(|r| r.consumers_of.remove(&id))
            .unwrap_or_default();
        for c in consumers {
            if self.close_consumer(c, false).is_ok() {
                self.emit(WorkerEvent::ConsumerClosed {
                    consumer_id: c,
                    producer_id: id,
                });
            }
        }
        if let Some(t) = self.transports.get_mut(&entry.transport_id) {
            t.producers.retain(|p| *p != id);
            t.ssrc_to_producer.retain(|_, p| *p != id);
        }
        for (_, o) in self.observers.values_mut() {
            o.remove_producer(id);
        }
        for (inbox, remote) in self.pipe_sinks.remove(&id).into_iter().flatten() {
            inbox.send(PipeMessage::ProducerClosed { producer: remote });
        }
        if notify {
            self.emit(WorkerEvent::ProducerClosed { producer_id: id });
        }
        let _ = now;
        Ok(())
    }

    pub(crate) fn producer_stats(
        &mut self,
        now: Instant,
        id: ProducerId,
    ) -> Result<Vec<ProducerStreamStats>, CallError> {
        let entry = self
            .producers
            .get_mut(&id)
            .ok_or_else(|| CallError::NotFound(format!("producer {id}")))?;
        Ok(entry.producer.stats(now))
    }

    pub(crate) fn can_consume(
        &self,
        producer_id: ProducerId,
        caps: &RtpCapabilities,
    ) -> Result<bool, CallError> {
        let entry = self
            .producers
            .get(&producer_id)
            .ok_or_else(|| CallError::NotFound(format!("producer {producer_id}")))?;
        ortc::can_consume(&entry.producer.consumable_rtp_parameters, caps)
            .map_err(|e| CallError::Invalid(e.to_string()))
    }

    pub(crate) fn consume(
        &mut self,
        now: Instant,
        transport_id: TransportId,
        options: ConsumerOptions,
    ) -> Result<ConsumerInfo, CallError> {
        let producer_id = options.producer_id;
        let transport = self
            .transports
            .get_mut(&transport_id)
            .ok_or_else(|| ConsumeError::TransportNotFound(transport_id.to_string()))?;
        let producer = self
            .producers
            .get(&producer_id)
            .ok_or(ConsumeError::ProducerNotFound(producer_id))?;
        if producer.router_id != transport.router_id {
            return Err(ConsumeError::ProducerNotFound(producer_id).into());
        }
        let mid = transport.next_mid.to_string();
        let id = ConsumerId::new();
        let consumer = Consumer::new(id, &producer.producer, &options, mid)?;
        transport.next_mid += 1;
        transport.consumers.push(id);
        transport.bandwidth.get_or_insert_with(Bandwidth::new);
        transport.ssrc_to_consumer.insert(consumer.ssrc(), id);
        if let Some(rtx) = consumer.rtx_ssrc() {
            transport.ssrc_to_consumer.insert(rtx, id);
        }
        let router_id = transport.router_id;
        let info = ConsumerInfo {
            id,
            producer_id,
            kind: consumer.kind,
            rtp_parameters: consumer.rtp_parameters.clone(),
            r#type: consumer.r#type,
            producer_paused: consumer.producer_paused,
        };
        let start_active = !consumer.paused;
        self.routers
            .get_mut(&router_id)
            .expect("a transport's router exists")
            .consumers_of
            .entry(producer_id)
            .or_default()
            .push(id);
        self.consumers.insert(
            id,
            ConsumerEntry {
                consumer,
                transport_id,
                router_id,
            },
        );
        if start_active {
            let needs = ConsumerNeeds {
                key_frame: Some({
                    let c = &self.consumers[&id].consumer;
                    c.encoding_of(c.target_spatial)
                }),
                layers_changed: false,
            };
            self.start_forwarding(now, id, needs);
        }
        Ok(info)
    }

    /// Acts on the needs of a consumer that starts (or restarts) sending,
    /// once the transport's bandwidth has been shared again with it.
    ///
    /// Until an allocation covers it, a simulcast consumer targets its
    /// preferred layer: it would ask for that layer's key frame and forward
    /// it (the largest frame of the best layer, over a path the estimate
    /// may say cannot carry it), only to be moved down at the next periodic
    /// allocation and ask for another key frame. As mediasoup does when a
    /// consumer's needs change, allocate at once; the allocation asks for
    /// the key frame of the layer it chose.
    fn start_forwarding(&mut self, now: Instant, id: ConsumerId, mut needs: ConsumerNeeds) {
        let Some(entry) = self.consumers.get(&id) else {
            return;
        };
        if needs.key_frame.is_some() {
            let (tid, target) = (entry.transport_id, entry.consumer.target_spatial);
            self.reallocate(now, tid);
            if self
                .consumers
                .get(&id)
                .is_some_and(|e| e.consumer.target_spatial != target)
            {
                needs.key_frame = None;
            }
        }
        self.apply_needs(now, id, needs);
    }

    pub(crate) fn set_consumer_paused(
        &mut self,
        now: Instant,
        id: ConsumerId,
        paused: bool,
    ) -> Result<(), CallError> {
        let entry = self
            .consumers
            .get_mut(&id)
            .ok_or_else(|| CallError::NotFound(format!("consumer {id}")))?;
        let needs = entry.consumer.set_paused(paused);
        self.start_forwarding(now, id, needs);
        Ok(())
    }

    pub(crate) fn close_consumer(
        &mut self,
        id: ConsumerId,
        _notify: bool,
    ) -> Result<(), CallError> {
        let entry = self
            .consumers
            .remove(&id)
            .ok_or_else(|| CallError::NotFound(format!("consumer {id}")))?;
        if let Some(r) = self.routers.get_mut(&entry.router_id) {
            if let Some(list) = r.consumers_of.get_mut(&entry.consumer.producer_id) {
                list.retain(|c| *c != id);
            }
        }
        if let Some(t) = self.transports.get_mut(&entry.transport_id) {
            t.consumers.retain(|c| *c != id);
            t.ssrc_to_consumer.retain(|_, c| *c != id);
        }
        Ok(())
    }

    pub(crate) fn request_consumer_key_frame(
        &mut self,
        now: Instant,
        id: ConsumerId,
    ) -> Result<(), CallError> {
        let entry = self
            .consumers
            .get_mut(&id)
            .ok_or_else(|| CallError::NotFound(format!("consumer {id}")))?;
        let needs = entry.consumer.note_key_frame_request();
        self.apply_needs(now, id, needs);
        Ok(())
    }

    pub(crate) fn set_consumer_preferred_layers(
        &mut self,
        now: Instant,
        id: ConsumerId,
        layers: ConsumerLayers,
    ) -> Result<(), CallError> {
        let entry = self
            .consumers
            .get_mut(&id)
            .ok_or_else(|| CallError::NotFound(format!("consumer {id}")))?;
        let producer = &self
            .producers
            .get(&entry.consumer.producer_id)
            .ok_or_else(|| CallError::NotFound("producer".into()))?
            .producer;
        let needs = entry.consumer.set_preferred_layers(layers, producer, now);
        self.apply_needs(now, id, needs);
        Ok(())
    }

    pub(crate) fn set_consumer_priority(
        &mut self,
        id: ConsumerId,
        priority: u8,
    ) -> Result<(), CallError> {
        let entry = self
            .consumers
            .get_mut(&id)
            .ok_or_else(|| CallError::NotFound(format!("consumer {id}")))?;
        if priority == 0 {
            return Err(CallError::Invalid("priority must be 1 to 255".into()));
        }
        entry.consumer.priority = priority;
        Ok(())
    }

    pub(crate) fn consumer_stats(
        &mut self,
        now: Instant,
        id: ConsumerId,
    ) -> Result<ConsumerStats, CallError> {
        let entry = self
            .consumers
            .get_mut(&id)
            .ok_or_else(|| CallError::NotFound(format!("consumer {id}")))?;
        Ok(entry.consumer.stats(now))
    }

    /// Acts on what a consumer asked for: a key frame from its producer,
    /// or telling the client its layers changed.
    fn apply_needs(&mut self, now: Instant, consumer_id: ConsumerId, needs: ConsumerNeeds) {
        let Some(entry) = self.consumers.get(&consumer_id) else {
            return;
        };
        if needs.layers_changed {
            self.emit(WorkerEvent::ConsumerLayersChanged {
                consumer_id,
                layers: entry.consumer.current_layers(),
            });
        }
        if let Some(encoding) = needs.key_frame {
            let producer_id = entry.consumer.producer_id;
            self.request_key_frame(now, producer_id, Some(encoding));
        }
    }

    fn request_key_frame(
        &mut self,
        now: Instant,
        producer_id: ProducerId,
        encoding: Option<usize>,
    ) {
        let Some(p) = self.producers.get_mut(&producer_id) else {
            return;
        };
        if let Some((inbox, source)) = &p.pipe_source {
            // The source worker throttles; asking it is cheap.
            inbox.send(PipeMessage::KeyFrameRequest {
                producer: *source,
                encoding,
            });
            return;
        }
        self.rtcp_scratch.clear();
        p.producer
            .request_key_frame(now, encoding, &mut self.rtcp_scratch);
        if !self.rtcp_scratch.is_empty() {
            let tid = p.transport_id;
            self.send_rtcp(now, tid);
        }
    }

    /// Sends `rtcp_scratch` on transport `tid`.
    fn send_rtcp(&mut self, now: Instant, tid: TransportId) {
        if let Some(t) = self.transports.get_mut(&tid) {
            t.transport.send_rtcp(now, &self.rtcp_scratch);
            if !t.dirty {
                t.dirty = true;
                self.dirty.push(tid);
            }
        }
    }

    fn mark_dirty(&mut self, tid: TransportId) {
        if let Some(t) = self.transports.get_mut(&tid) {
            if !t.dirty {
                t.dirty = true;
                self.dirty.push(tid);
            }
        }
    }

    /// Drains every transport with queued output (which may queue more).
    pub(crate) fn flush(&mut self, now: Instant) {
        while let Some(tid) = self.dirty.pop() {
            if let Some(t) = self.transports.get_mut(&tid) {
                t.dirty = false;
            }
            self.drain_transport(now, tid);
        }
    }

    // --------------------------------------------------------- packet path

    pub(crate) fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some(tid) = self.server.route(from, datagram) else {
            return;
        };
        let Some(entry) = self.transports.get_mut(&tid) else {
            return;
        };
        if let AnyTransport::WebRtc(t) = &mut entry.transport {
            t.handle_input(now, from, datagram);
        }
        self.drain_transport(now, tid);
        self.flush(now);
    }

    /// A datagram on a PlainTransport's own socket.
    pub(crate) fn handle_plain_datagram(
        &mut self,
        now: Instant,
        tid: TransportId,
        on_rtcp_socket: bool,
        from: SocketAddr,
        datagram: &[u8],
    ) {
        let Some(entry) = self.transports.get_mut(&tid) else {
            return;
        };
        if let AnyTransport::Plain(t) = &mut entry.transport {
            t.handle_input(now, from, datagram, on_rtcp_socket);
        }
        self.drain_transport(now, tid);
        self.flush(now);
    }

    pub(crate) fn create_plain_transport(
        &mut self,
        router_id: RouterId,
        options: PlainTransportOptions,
        rtp: std::net::UdpSocket,
        rtcp: Option<std::net::UdpSocket>,
    ) -> Result<PlainTransportInfo, CallError> {
        let router = self
            .routers
            .get_mut(&router_id)
            .ok_or_else(|| CallError::NotFound(format!("router {router_id}")))?;
        let tuple = |s: &std::net::UdpSocket| -> Result<TransportTuple, CallError> {
            let local = s
                .local_addr()
                .map_err(|e| CallError::Invalid(e.to_string()))?;
            Ok(TransportTuple {
                local_address: local.ip().to_string(),
                local_port: local.port(),
                remote_ip: None,
                remote_port: None,
                protocol: "udp",
            })
        };
        let transport = PlainTransport::new(options);
        let rtcp = if transport.rtcp_mux() { None } else { rtcp };
        let id = TransportId::new();
        let info = PlainTransportInfo {
            id,
            tuple: tuple(&rtp)?,
            rtcp_tuple: rtcp.as_ref().map(tuple).transpose()?,
            srtp_parameters: transport.srtp_parameters(),
        };
        router.transports.push(id);
        self.transports.insert(
            id,
            TransportEntry {
                router_id,
                transport: AnyTransport::Plain(transport),
                producers: Vec::new(),
                consumers: Vec::new(),
                ssrc_to_producer: HashMap::new(),
                ssrc_to_consumer: HashMap::new(),
                next_mid: 0,
                dirty: false,
                transport_cc: None,
                bandwidth: None,
                rtp_in: 0,
                rtp_out: 0,
            },
        );
        self.socket_changes.push(SocketChange::Open {
            transport: id,
            rtp,
            rtcp,
        });
        Ok(info)
    }

    pub(crate) fn connect_plain_transport(
        &mut self,
        id: TransportId,
        params: PlainConnectParameters,
    ) -> Result<(), CallError> {
        match self.transports.get_mut(&id).map(|e| &mut e.transport) {
            Some(AnyTransport::Plain(t)) => t
                .connect(params)
                .map_err(|e| CallError::Invalid(e.to_string())),
            Some(_) => Err(CallError::Invalid(format!(
                "transport {id} is not a PlainTransport"
            ))),
            None => Err(CallError::NotFound(format!("transport {id}"))),
        }
    }

    pub(crate) fn take_socket_changes(&mut self) -> Vec<SocketChange> {
        std::mem::take(&mut self.socket_changes)
    }

    /// Handles everything a transport produced after an input: datagrams
    /// to send, state changes, and decrypted RTP/RTCP.
    fn drain_transport(&mut self, now: Instant, tid: TransportId) {
        loop {
            let Some(entry) = self.transports.get_mut(&tid) else {
                return;
            };
            let Some(out) = entry.transport.poll_output() else {
                return;
            };
            match out {
                PlainOutput::Transmit {
                    rtcp_socket,
                    destination,
                    payload,
                } => {
                    let via = match entry.transport {
                        AnyTransport::WebRtc(_) => Via::Server,
                        AnyTransport::Plain(_) => Via::Plain {
                            transport: tid,
                            rtcp: rtcp_socket,
                        },
                    };
                    self.transmits.push_back((via, destination, payload));
                }
                PlainOutput::Event(event) => match event {
                    TransportEvent::Rtp(mut packet) => {
                        entry.rtp_in += 1;
                        self.on_rtp(now, tid, &mut packet);
                    }
                    TransportEvent::Rtcp(packet) => self.on_rtcp(now, tid, &packet),
                    TransportEvent::IceSelectedTupleChanged(addr) => {
                        self.server.add_tuple(addr, tid);
                    }
                    TransportEvent::IceStateChanged(state) => {
                        self.emit(WorkerEvent::TransportIceStateChanged {
                            transport_id: tid,
                            state: format!("{state:?}").to_lowercase(),
                        });
                    }
                    TransportEvent::DtlsStateChanged(state) => {
                        self.emit(WorkerEvent::TransportDtlsStateChanged {
                            transport_id: tid,
                            state: format!("{state:?}").to_lowercase(),
                        });
                    }
                    #[allow(unreachable_patterns)]
                    _ => {}
                },
            }
        }
    }

    fn find_producer(&mut self, tid: TransportId, packet: &[u8]) -> Option<ProducerId> {
        let entry = self.transports.get_mut(&tid)?;
        let view = RtpPacket::parse(packet).ok()?;
        if let Some(p) = entry.ssrc_to_producer.get(&view.ssrc()) {
            return Some(*p);
        }
        let found = entry
            .producers
            .iter()
            .find(|p| self.producers[*p].producer.claims(&view))
            .copied()?;
        entry.ssrc_to_producer.insert(view.ssrc(), found);
        Some(found)
    }

    fn on_rtp(&mut self, now: Instant, tid: TransportId, packet: &mut Vec<u8>) {
        let Some(pid) = self.find_producer(tid, packet) else {
            return;
        };
        let arrival_us = now.saturating_duration_since(self.clock_base.0).as_micros() as i64;
        let Some(pe) = self.producers.get_mut(&pid) else {
            return;
        };
        if let Ok(view) = RtpPacket::parse(packet) {
            if let (Some(seq), Some(t)) = (
                pe.producer.transport_seq(&view),
                self.transports.get_mut(&tid),
            ) {
                let media_ssrc = pe.producer.first_ssrc().unwrap_or(view.ssrc());
                let sender = pe.producer.rtcp_ssrc;
                t.transport_cc
                    .get_or_insert_with(|| TransportCcRecorder::new(sender, media_ssrc))
                    .record(now, seq, arrival_us);
            }
        }
        let len = packet.len();
        let Some(rx) = pe.producer.receive_rtp(now, packet, len) else {
            return;
        };
        if rx.paused {
            return;
        }
        let router_id = pe.router_id;
        if let Some(sinks) = self.pipe_sinks.get(&pid) {
            for (inbox, remote) in sinks {
                inbox.send(PipeMessage::Rtp {
                    producer: *remote,
                    packet: packet[..rx.len].to_vec(),
                });
            }
        }
        if let Some(level) = rx.audio_level {
            for (r, o) in self.observers.values_mut() {
                if *r == router_id && o.has_producer(pid) {
                    o.on_level(pid, level);
                }
            }
        }
        self.fan_out(now, router_id, pid, &rx, &packet[..rx.len]);
    }

    fn fan_out(
        &mut self,
        now: Instant,
        router_id: RouterId,
        pid: ProducerId,
        rx: &Received,
        packet: &[u8],
    ) {
        let Self {
            routers,
            consumers,
            transports,
            dirty,
            scratch,
            buffers,
            ..
        } = self;
        let Some(list) = routers
            .get(&router_id)
            .and_then(|r| r.consumers_of.get(&pid))
        else {
            return;
        };
        let mut pending: Vec<(ConsumerId, ConsumerNeeds)> = Vec::new();
        for cid in list {
            let Some(ce) = consumers.get_mut(cid) else {
                continue;
            };
            let mut needs = ConsumerNeeds::default();
            if let Some(n) = ce.consumer.forward(now, rx, packet, scratch, &mut needs) {
                if let Some(t) = transports.get_mut(&ce.transport_id) {
                    if let Some(b) = &mut t.bandwidth {
                        b.stamp(now, &mut scratch[..n], ce.consumer.transport_cc_ext, false);
                    }
                    if t.transport.send_rtp(now, &scratch[..n], buffers) {
                        t.rtp_out += 1;
                    }
                    if !t.dirty {
                        t.dirty = true;
                        dirty.push(ce.transport_id);
                    }
                }
            }
            if needs != ConsumerNeeds::default() {
                pending.push((*cid, needs));
            }
        }
        for (cid, needs) in pending {
            self.apply_needs(now, cid, needs);
        }
    }

    fn on_rtcp(&mut self, now: Instant, tid: TransportId, compound: &[u8]) {
        let now_ntp = self.ntp(now);
        let mut key_frames: Vec<ConsumerId> = Vec::new();
        let mut resend: Vec<(ConsumerId, u16)> = Vec::new();
        {
            let Some(entry) = self.transports.get(&tid) else {
                return;
            };
            for item in parse_compound(compound).flatten() {
                match item {
                    RtcpPacket::SenderReport(sr) => {
                        if let Some(pid) = entry.ssrc_to_producer.get(&sr.ssrc) {
                            if let Some(p) = self.producers.get_mut(pid) {
                                p.producer
                                    .receive_sender_report(sr.ssrc, sr.sender_info.ntp, now);
                            }
                        }
                        for block in sr.report_blocks() {
                            if let Some(c) = entry.ssrc_to_consumer.get(&block.ssrc) {
                                if let Some(ce) = self.consumers.get_mut(c) {
                                    ce.consumer.receive_report(&block, now_ntp);
                                }
                            }
                        }
                    }
                    RtcpPacket::ReceiverReport(rr) => {
                        for block in rr.report_blocks() {
                            if let Some(c) = entry.ssrc_to_consumer.get(&block.ssrc) {
                                if let Some(ce) = self.consumers.get_mut(c) {
                                    ce.consumer.receive_report(&block, now_ntp);
                                }
                            }
                        }
                    }
                    RtcpPacket::Nack(nack) => {
                        if let Some(c) = entry.ssrc_to_consumer.get(&nack.media_ssrc) {
                            if let Some(ce) = self.consumers.get_mut(c) {
                                ce.consumer.note_nack();
                            }
                            resend.extend(nack.lost_seqs().map(|s| (*c, s)));
                        }
                    }
                    RtcpPacket::Pli(pli) => {
                        if let Some(c) = entry.ssrc_to_consumer.get(&pli.media_ssrc) {
                            key_frames.push(*c);
                        }
                    }
                    RtcpPacket::Fir(fir) => {
                        for e in fir.entries() {
                            if let Some(c) = entry.ssrc_to_consumer.get(&e.ssrc) {
                                key_frames.push(*c);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        // Congestion feedback about what we send on this transport.
        let mut estimate_changed = false;
        if let Some(b) = self
            .transports
            .get_mut(&tid)
            .and_then(|t| t.bandwidth.as_mut())
        {
            for item in parse_compound(compound).flatten() {
                match item {
                    RtcpPacket::TransportCc(fb) => {
                        b.estimator.on_transport_cc(&fb, now);
                        estimate_changed = true;
                    }
                    RtcpPacket::Remb(remb) => {
                        b.estimator.on_remb(remb.bitrate, now);
                        estimate_changed = true;
                    }
                    _ => {}
                }
            }
        }
        if estimate_changed {
            self.reallocate(now, tid);
        }
        for (cid, seq) in resend {
            let Self {
                consumers,
                producers,
                transports,
                dirty,
                scratch,
                buffers,
                ..
            } = self;
            let Some(ce) = consumers.get_mut(&cid) else {
                continue;
            };
            let over_budget = transports
                .get_mut(&ce.transport_id)
                .and_then(|t| t.bandwidth.as_mut())
                .is_some_and(|b| !b.may_retransmit(now));
            if over_budget {
                // Left unanswered; the receiver asks again.
                continue;
            }
            let Some(pe) = producers.get(&ce.consumer.producer_id) else {
                continue;
            };
            if let Some(n) = ce.consumer.retransmit(now, seq, &pe.producer, scratch) {
                if let Some(t) = transports.get_mut(&ce.transport_id) {
                    if let Some(b) = &mut t.bandwidth {
                        b.stamp(now, &mut scratch[..n], ce.consumer.transport_cc_ext, false);
                    }
                    t.transport.send_rtp(now, &scratch[..n], buffers);
                    if !t.dirty {
                        t.dirty = true;
                        dirty.push(ce.transport_id);
                    }
                }
            }
        }
        for cid in key_frames {
            if let Some(ce) = self.consumers.get_mut(&cid) {
                let needs = ce.consumer.note_key_frame_request();
                self.apply_needs(now, cid, needs);
            }
        }
    }

    // ------------------------------------------------------------- timers

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_rtcp,
            self.next_feedback,
            self.next_layer_check,
            self.next_transport_tick,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.next_transport_tick.is_none_or(|t| now >= t) {
            self.next_transport_tick = Some(now + TRANSPORT_TICK);
            let ids: Vec<TransportId> = self.transports.keys().copied().collect();
            for tid in ids {
                if let Some(t) = self.transports.get_mut(&tid) {
                    if t.transport.poll_timeout().is_some_and(|at| now >= at) {
                        t.transport.handle_timeout(now);
                    }
                    if let Some(b) = &mut t.bandwidth {
                        if b.estimator.poll_timeout().is_some_and(|at| now >= at) {
                            b.estimator.handle_timeout(now);
                        }
                    }
                }
                self.send_probe_padding(now, tid);
                self.drain_transport(now, tid);
            }
        }
        if self.next_feedback.is_none_or(|t| now >= t) {
            self.next_feedback = Some(now + FEEDBACK_INTERVAL);
            let tids: Vec<TransportId> = self
                .transports
                .iter()
                .filter(|(_, t)| {
                    t.transport_cc
                        .as_ref()
                        .and_then(|r| r.poll_timeout())
                        .is_some_and(|at| now >= at)
                })
                .map(|(id, _)| *id)
                .collect();
            for tid in tids {
                self.rtcp_scratch.clear();
                if let Some(r) = self
                    .transports
                    .get_mut(&tid)
                    .and_then(|t| t.transport_cc.as_mut())
                {
                    r.poll_feedback(now, &mut self.rtcp_scratch);
                }
                if !self.rtcp_scratch.is_empty() {
                    self.send_rtcp(now, tid);
                }
            }
            let ids: Vec<ProducerId> = self.producers.keys().copied().collect();
            for pid in ids {
                let Some(p) = self.producers.get_mut(&pid) else {
                    continue;
                };
                if p.pipe_source.is_some() || p.producer.poll_timeout().is_none_or(|at| now < at) {
                    continue;
                }
                self.rtcp_scratch.clear();
                p.producer.poll_feedback(now, &mut self.rtcp_scratch);
                let tid = p.transport_id;
                if !self.rtcp_scratch.is_empty() {
                    self.send_rtcp(now, tid);
                }
            }
        }
        if self.next_layer_check.is_none_or(|t| now >= t) {
            self.next_layer_check = Some(now + LAYER_CHECK_INTERVAL);
            let with_consumers: Vec<TransportId> = self
                .transports
                .iter()
                .filter(|(_, t)| t.bandwidth.is_some() && !t.consumers.is_empty())
                .map(|(id, _)| *id)
                .collect();
            for tid in with_consumers {
                self.reallocate(now, tid);
            }
            let ids: Vec<ConsumerId> = self.consumers.keys().copied().collect();
            for cid in ids {
                let Some(ce) = self.consumers.get_mut(&cid) else {
                    continue;
                };
                let Some(pe) = self.producers.get(&ce.consumer.producer_id) else {
                    continue;
                };
                let needs = ce.consumer.update_layers(&pe.producer, now);
                if needs != ConsumerNeeds::default() {
                    self.apply_needs(now, cid, needs);
                }
            }
        }
        if self.next_rtcp.is_none_or(|t| now >= t) {
            self.next_rtcp = Some(now + RTCP_INTERVAL);
            self.send_reports(now);
        }
        self.run_observers(now);
        self.flush(now);
    }

    /// Receiver reports to producers and sender reports for consumers.
    fn send_reports(&mut self, now: Instant) {
        let now_ntp = self.ntp(now);
        let pids: Vec<ProducerId> = self.producers.keys().copied().collect();
        for pid in pids {
            let Some(p) = self.producers.get_mut(&pid) else {
                continue;
            };
            self.rtcp_scratch.clear();
            p.producer
                .write_receiver_report(now, &mut self.rtcp_scratch);
            let tid = p.transport_id;
            if !self.rtcp_scratch.is_empty() {
                self.send_rtcp(now, tid);
            }
        }
        let cids: Vec<ConsumerId> = self.consumers.keys().copied().collect();
        for cid in cids {
            let Some(c) = self.consumers.get(&cid) else {
                continue;
            };
            self.rtcp_scratch.clear();
            c.consumer
                .write_sender_report(now, now_ntp, &mut self.rtcp_scratch);
            let tid = c.transport_id;
            if !self.rtcp_scratch.is_empty() {
                self.send_rtcp(now, tid);
            }
        }
    }

    fn run_observers(&mut self, now: Instant) {
        let mut reports = Vec::new();
        for (id, (_, o)) in &mut self.observers {
            if o.poll_timeout().is_some_and(|t| now < t) {
                continue;
            }
            if let Some(r) = o.handle_timeout(now) {
                reports.push((*id, r));
            }
        }
        for (observer_id, r) in reports {
            self.emit(match r {
                ObserverReport::Volumes(volumes) => WorkerEvent::AudioLevels {
                    observer_id,
                    volumes,
                },
                ObserverReport::Silence => WorkerEvent::Silence { observer_id },
                ObserverReport::DominantSpeaker(level) => WorkerEvent::DominantSpeaker {
                    observer_id,
                    producer_id: level.producer_id,
                    volume: level.volume,
                },
            });
        }
    }

    pub(crate) fn create_observer(
        &mut self,
        router_id: RouterId,
        observer: RtpObserver,
    ) -> Result<RtpObserverId, CallError> {
        if !self.routers.contains_key(&router_id) {
            return Err(CallError::NotFound(format!("router {router_id}")));
        }
        let id = RtpObserverId::new();
        self.observers.insert(id, (router_id, observer));
        Ok(id)
    }

    pub(crate) fn observer_add_producer(
        &mut self,
        id: RtpObserverId,
        producer_id: ProducerId,
    ) -> Result<(), CallError> {
        let (router_id, o) = self
            .observers
            .get_mut(&id)
            .ok_or_else(|| CallError::NotFound(format!("observer {id}")))?;
        let p = self
            .producers
            .get(&producer_id)
            .ok_or_else(|| CallError::NotFound(format!("producer {producer_id}")))?;
        if p.router_id != *router_id || p.producer.kind != crate::rtp_parameters::MediaKind::Audio {
            return Err(CallError::Invalid(format!(
                "producer {producer_id} is not an audio producer of this router"
            )));
        }
        o.add_producer(producer_id);
        Ok(())
    }

    pub(crate) fn observer_remove_producer(
        &mut self,
        id: RtpObserverId,
        producer_id: ProducerId,
    ) -> Result<(), CallError> {
        let (_, o) = self
            .observers
            .get_mut(&id)
            .ok_or_else(|| CallError::NotFound(format!("observer {id}")))?;
        o.remove_producer(producer_id);
        Ok(())
    }

    pub(crate) fn close_observer(&mut self, id: RtpObserverId) -> Result<(), CallError> {
        self.observers
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| CallError::NotFound(format!("observer {id}")))
    }

    /// What a target worker needs to create a pipe producer for `id`.
    pub(crate) fn pipe_source(
        &self,
        id: ProducerId,
    ) -> Result<
        (
            crate::rtp_parameters::MediaKind,
            crate::rtp_parameters::RtpParameters,
            bool,
        ),
        CallError,
    > {
        let p = self
            .producers
            .get(&id)
            .ok_or_else(|| CallError::NotFound(format!("producer {id}")))?;
        Ok((
            p.producer.kind,
            p.producer.consumable_rtp_parameters.clone(),
            p.producer.paused,
        ))
    }

    pub(crate) fn add_pipe_sink(
        &mut self,
        id: ProducerId,
        inbox: PipeInbox,
        remote: ProducerId,
    ) -> Result<(), CallError> {
        if !self.producers.contains_key(&id) {
            return Err(CallError::NotFound(format!("producer {id}")));
        }
        self.pipe_sinks.entry(id).or_default().push((inbox, remote));
        Ok(())
    }

    /// A producer on `router_id` fed by another worker's producer.
    pub(crate) fn create_pipe_producer(
        &mut self,
        router_id: RouterId,
        kind: crate::rtp_parameters::MediaKind,
        rtp_parameters: crate::rtp_parameters::RtpParameters,
        paused: bool,
        source: PipeInbox,
        source_producer: ProducerId,
    ) -> Result<ProducerId, CallError> {
        let router = self
            .routers
            .get_mut(&router_id)
            .ok_or_else(|| CallError::NotFound(format!("router {router_id}")))?;
        let id = ProducerId::new();
        let mut options = ProducerOptions::new(kind, rtp_parameters);
        options.paused = paused;
        let producer = Producer::new(id, options, &router.capabilities)?;
        router.consumers_of.insert(id, Vec::new());
        self.producers.insert(
            id,
            ProducerEntry {
                producer,
                transport_id: TransportId::new(),
                router_id,
                pipe_source: Some((source, source_producer)),
            },
        );
        Ok(id)
    }

    pub(crate) fn handle_pipe_message(&mut self, now: Instant, message: PipeMessage) {
        match message {
            PipeMessage::Rtp {
                producer,
                mut packet,
            } => {
                let Some(pe) = self.producers.get_mut(&producer) else {
                    return;
                };
                let len = packet.len();
                let Some(rx) = pe.producer.receive_rtp(now, &mut packet, len) else {
                    return;
                };
                if rx.paused {
                    return;
                }
                let router_id = pe.router_id;
                self.fan_out(now, router_id, producer, &rx, &packet[..rx.len]);
                self.flush(now);
            }
            PipeMessage::ProducerPaused { producer, paused } => {
                let _ = self.set_producer_paused(now, producer, paused);
                self.flush(now);
            }
            PipeMessage::ProducerClosed { producer } => {
                let _ = self.close_producer(now, producer, true);
            }
            PipeMessage::KeyFrameRequest { producer, encoding } => {
                self.request_key_frame(now, producer, encoding);
                self.flush(now);
            }
        }
    }

    /// Shares the transport's estimated outgoing bitrate among its
    /// consumers and applies the result; starts a probe when a better
    /// layer needs more than the estimate.
    fn reallocate(&mut self, now: Instant, tid: TransportId) {
        let Some(t) = self.transports.get(&tid) else {
            return;
        };
        if t.bandwidth.is_none() {
            return;
        }
        // A probe is padding on a video consumer already sending; without
        // one the cluster would go out as media alone and be judged a
        // failure (backing probing off for seconds), as happens when the
        // first allocation runs before the first key frame was forwarded.
        let can_pad = t.consumers.iter().any(|c| {
            self.consumers
                .get(c)
                .is_some_and(|ce| ce.consumer.can_pad())
        });
        // Without any consumer's receiver giving feedback there is no
        // estimate to share: every consumer gets its preferred layers.
        let estimated = t.consumers.iter().any(|cid| {
            self.consumers
                .get(cid)
                .is_some_and(|ce| ce.consumer.has_bandwidth_feedback())
        });
        let mut demands = Vec::new();
        for cid in &t.consumers {
            let Some(ce) = self.consumers.get(cid) else {
                continue;
            };
            let c = &ce.consumer;
            if !c.is_active() {
                continue;
            }
            let Some(pe) = self.producers.get_mut(&c.producer_id) else {
                continue;
            };
            let encodings = pe.producer.encoding_bitrates(now);
            let bitrates = match c.kind {
                // One SVC stream carries every spatial layer: its bitrate is
                // shared among them (each layer roughly doubling the last).
                crate::rtp_parameters::MediaKind::Video
                    if c.r#type == crate::router::ConsumerType::Svc =>
                {
                    let total: u64 = encodings.iter().sum();
                    let n = c.spatial_layers().max(1) as u32;
                    let weight = |s: u32| (1u64 << (s + 1)) - 1;
                    let per_layer: Vec<u64> =
                        (0..n).map(|s| total * weight(s) / weight(n - 1)).collect();
                    estimated_layer_bitrates(&per_layer, c.temporal_layers())
                }
                crate::rtp_parameters::MediaKind::Video => {
                    estimated_layer_bitrates(&encodings, c.temporal_layers())
                }
                crate::rtp_parameters::MediaKind::Audio => vec![vec![encodings.iter().sum()]],
            };
            demands.push(ConsumerDemand {
                id: *cid,
                kind: c.kind,
                priority: c.priority,
                preferred: c.preferred,
                bitrates,
            });
        }
        let Some(b) = self
            .transports
            .get_mut(&tid)
            .and_then(|t| t.bandwidth.as_mut())
        else {
            return;
        };
        let estimate = if estimated {
            b.estimator.estimate()
        } else {
            UNLIMITED_BITRATE
        };
        let allocations = b.allocator.allocate(now, estimate, &demands);
        if let Some(target) = b.allocator.probe_target() {
            if b.probe.is_none() && can_pad {
                if let Some(cluster) = b.estimator.wants_probe(now, target) {
                    b.probe = Some(ProbeRun {
                        bitrate: cluster.padding_bitrate,
                        until: now + cluster.duration,
                        last: now,
                        credit: 0.0,
                    });
                }
            }
        }
        for a in allocations {
            let Some(ce) = self.consumers.get_mut(&a.id) else {
                continue;
            };
            let Some(pe) = self.producers.get(&ce.consumer.producer_id) else {
                continue;
            };
            let needs = ce.consumer.set_allocation(a.layers, &pe.producer, now);
            if needs != ConsumerNeeds::default() {
                self.apply_needs(now, a.id, needs);
            }
        }
    }

    /// Sends the padding a running probe owes by now, as RTX padding-only
    /// packets of a video consumer of the transport.
    fn send_probe_padding(&mut self, now: Instant, tid: TransportId) {
        let Self {
            transports,
            consumers,
            dirty,
            scratch,
            buffers,
            ..
        } = self;
        let Some(t) = transports.get_mut(&tid) else {
            return;
        };
        let Some(b) = t.bandwidth.as_mut() else {
            return;
        };
        let Some(probe) = b.probe.as_mut() else {
            return;
        };
        if now >= probe.until {
            b.probe = None;
            return;
        }
        let elapsed = now.saturating_duration_since(probe.last).as_secs_f64();
        probe.last = now;
        probe.credit += elapsed * probe.bitrate as f64 / 8.0;
        let Some(carrier) = t
            .consumers
            .iter()
            .find(|c| consumers.get(c).is_some_and(|ce| ce.consumer.can_pad()))
            .copied()
        else {
            b.probe = None;
            return;
        };
        let ce = consumers.get_mut(&carrier).expect("found just above");
        // At most a burst of 20 packets per tick, so a late tick does not
        // flood the link.
        let mut sent = 0;
        while probe_credit(b) >= 200.0 && sent < 20 {
            let Some(n) = ce.consumer.write_padding(scratch) else {
                break;
            };
            b.stamp(now, &mut scratch[..n], ce.consumer.transport_cc_ext, true);
            let _ = t.transport.send_rtp(now, &scratch[..n], buffers);
            if let Some(p) = b.probe.as_mut() {
                p.credit -= n as f64;
            }
            sent += 1;
        }
        if sent > 0 && !t.dirty {
            t.dirty = true;
            dirty.push(tid);
        }
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<(Via, SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// Datagrams waiting for [`Engine::poll_transmit`].
    pub(crate) fn pending_transmits(&self) -> usize {
        self.transmits.len()
    }

    /// Takes back a datagram buffer the driver has sent.
    pub(crate) fn recycle(&mut self, buffer: Vec<u8>) {
        self.buffers.give(buffer);
    }
}
