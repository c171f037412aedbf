//! Simulcast layer selection and send-side bandwidth estimation through the
//! real worker, over UDP on loopback.
//!
//! A publishing tool (a plain UDP socket, as GStreamer or FFmpeg would be)
//! sends three SSRC-simulcast VP8 encodings into a comedia PlainTransport:
//! 150 kbps, 500 kbps and 1.5 Mbps at 30 fps, each packet carrying a
//! valid payload descriptor with a picture id and, in its body, which layer
//! and frame it belongs to. Each encoding has a key frame every
//! [`KEY_FRAME_EVERY`] frames and whenever a PLI or FIR for it reaches the
//! tool, as an encoder answers one.
//!
//! Viewers are webrtc-rs peers built as mediasoup-client builds a recv
//! transport; their default interceptors send transport-wide congestion
//! control feedback, which is all the SFU's estimator learns from. A
//! [`Relay`] can sit between one viewer and the worker as a bottleneck
//! link: SFU -> viewer RTP goes through a token bucket at a rate the test
//! changes, with a bounded queue that delays and, when full, drops; it can
//! also drop a seeded random share. STUN, DTLS and RTCP, and everything the
//! viewer sends (its feedback included), pass at once.
//!
//! The tests take the same lock, so that their timings do not compete for
//! the machine's cores; each is bounded by its own timeout once it holds
//! the lock.

mod support;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use sfu::rtp_parameters::{MediaKind, RtpCapabilities, RtpCodecCapability, RtpParameters};
use sfu::transport::DtlsParameters;
use sfu::{
    ConsumerId, ConsumerLayers, ConsumerOptions, PlainConnectParameters, PlainTransportOptions,
    ProducerId, ProducerOptions, RouterId, Worker, WorkerEvent, WorkerSettings,
};
use support::peer::{
    parse_vp8, rtp_packet, vp8_payload, ConsumerParameters, RecvTransport, RtpHeader,
    TransportParameters,
};
use support::{is_rtp, rtp_ids};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The publisher's encodings, lowest first: bits per second at 30 fps.
const LAYER_BITRATES: [u64; 3] = [150_000, 500_000, 1_500_000];
const LAYER_SSRCS: [u32; 3] = [0x5100_0000, 0x5100_0001, 0x5100_0002];
/// Where each encoding's RTP timestamps, picture ids and sequence numbers
/// start: all different, as independent encoders' are.
const LAYER_TIMESTAMP_BASES: [u32; 3] = [1_000, 7_777_777, 3_333_333_333];
const LAYER_PICTURE_ID_BASES: [u16; 3] = [10, 20_000, 32_700];
const LAYER_SEQ_BASES: [u16; 3] = [100, 30_000, 65_000];
const FPS: u32 = 30;
const FRAME_TICKS: u32 = 90_000 / FPS;
/// A periodic key frame on each encoding (about every 4 s).
const KEY_FRAME_EVERY: u32 = 120;
/// A key frame is this many times the size of a delta frame.
const KEY_FRAME_SIZE_FACTOR: usize = 2;
/// RTP payload bytes per packet at most (a frame is split into packets).
const MAX_PAYLOAD: usize = 1100;
const PAYLOAD_TYPE: u8 = 96;

/// The relay's queue holds at most this much sending time at its rate.
const MAX_QUEUE_DELAY: Duration = Duration::from_millis(250);

/// RTCP packet types (RFC 4585, RFC 5104) the tool answers.
const PSFB: u8 = 206;
const FMT_PLI: u8 = 1;
const FMT_FIR: u8 = 4;

/// Serialises the tests (see the module docs).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("no holder of the lock panics")
}

/// Knuth's MMIX linear congruential generator: seeded, reproducible loss.
struct Lcg(u64);

impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

// ---------------------------------------------------------------------------
// The publishing tool
// ---------------------------------------------------------------------------

/// The body every packet of the tool carries after its VP8 header(s): the
/// layer, the frame number and the packet's index in the frame.
fn marker(layer: usize, frame: u32, index: usize) -> String {
    format!("L{layer} F{frame:06} P{index:02} ")
}

/// Reads what [`marker`] wrote: (layer, frame).
fn read_marker(body: &[u8]) -> Option<(u8, u32)> {
    let text = std::str::from_utf8(body.get(..13)?).ok()?;
    let layer = text.strip_prefix('L')?.get(..1)?.parse().ok()?;
    let frame = text.get(3..)?.strip_prefix('F')?.get(..6)?.parse().ok()?;
    Some((layer, frame))
}

/// The RTP packets of one frame of `layer`: the first starts VP8
/// partition 0 (with the frame header), the others continue it, the last
/// has the marker bit; sizes add up to the layer's bitrate.
fn frame_packets(
    layer: usize,
    frame: u32,
    key_frame: bool,
    seq: &mut u16,
    picture_id: u16,
) -> Result<Vec<Vec<u8>>> {
    let mut size = (LAYER_BITRATES[layer] / 8 / u64::from(FPS)) as usize;
    if key_frame {
        size *= KEY_FRAME_SIZE_FACTOR;
    }
    let count = size.div_ceil(MAX_PAYLOAD);
    let per_packet = size / count;
    let timestamp = LAYER_TIMESTAMP_BASES[layer].wrapping_add(frame * FRAME_TICKS);
    let mut packets = Vec::with_capacity(count);
    for index in 0..count {
        let mut body = marker(layer, frame, index).into_bytes();
        // Headers (12 RTP, 4 descriptor, 3 or 10 frame header) count too.
        body.resize(per_packet.saturating_sub(12 + 14).max(body.len()), b'.');
        let payload = if index == 0 {
            vp8_payload(picture_id, key_frame, &body)
        } else {
            // X, I: a 15-bit picture id; S clear: not the start of a frame.
            let mut payload = vec![0x80, 0x80, 0x80 | (picture_id >> 8) as u8, picture_id as u8];
            payload.extend_from_slice(&body);
            payload
        };
        let header = RtpHeader {
            payload_type: PAYLOAD_TYPE,
            marker: index + 1 == count,
            sequence_number: *seq,
            timestamp,
            ssrc: LAYER_SSRCS[layer],
        };
        *seq = seq.wrapping_add(1);
        packets.push(rtp_packet(&header, &[], &payload)?);
    }
    Ok(packets)
}

/// The encodings a PLI or FIR in an RTCP compound asks a key frame of.
fn key_frame_requests(mut compound: &[u8]) -> Vec<usize> {
    let mut layers = Vec::new();
    while compound.len() >= 4 {
        let length = (usize::from(u16::from_be_bytes([compound[2], compound[3]])) + 1) * 4;
        let Some(packet) = compound.get(..length) else {
            break;
        };
        let (packet_type, format) = (packet[1], packet[0] & 0x1f);
        let mut ssrcs = Vec::new();
        if packet_type == PSFB && format == FMT_PLI && packet.len() >= 12 {
            ssrcs.push(u32::from_be_bytes([
                packet[8], packet[9], packet[10], packet[11],
            ]));
        }
        if packet_type == PSFB && format == FMT_FIR {
            // FCI entries of 8 bytes (SSRC, seq nr, reserved) after the
            // header and the (unused) media SSRC.
            for entry in packet.get(12..).unwrap_or_default().chunks_exact(8) {
                ssrcs.push(u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]));
            }
        }
        layers.extend(
            ssrcs
                .iter()
                .filter_map(|ssrc| LAYER_SSRCS.iter().position(|s| s == ssrc)),
        );
        compound = &compound[length..];
    }
    layers
}

/// Key frame requests the tool received, per encoding.
#[derive(Default)]
struct ToolStats {
    requests: Mutex<[u32; 3]>,
}

/// Sends the three encodings for ever from `socket` to `target`, frame by
/// frame at 30 fps, answering PLI and FIR with a key frame of the encoding
/// they name.
async fn run_tool(socket: UdpSocket, target: SocketAddr, stats: Arc<ToolStats>) -> Result {
    let mut seqs = LAYER_SEQ_BASES;
    let mut key_frame_due = [true; 3];
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / FPS);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 2048];
    for frame in 0u32.. {
        loop {
            tokio::select! {
                _ = ticks.tick() => break,
                received = socket.recv(&mut buf) => {
                    // Errors are ICMP reports of a closed socket: ignored.
                    let Ok(n) = received else { continue };
                    for layer in key_frame_requests(&buf[..n]) {
                        key_frame_due[layer] = true;
                        lock(&stats.requests)[layer] += 1;
                    }
                }
            }
        }
        for layer in 0..3 {
            let key_frame = key_frame_due[layer] || frame % KEY_FRAME_EVERY == 0;
            key_frame_due[layer] = false;
            let picture_id = LAYER_PICTURE_ID_BASES[layer].wrapping_add(frame as u16) & 0x7fff;
            for packet in frame_packets(layer, frame, key_frame, &mut seqs[layer], picture_id)? {
                socket.send_to(&packet, target).await?;
            }
        }
    }
    Ok(())
}

struct Tool {
    producer: ProducerId,
    stats: Arc<ToolStats>,
    task: tokio::task::JoinHandle<Result>,
}

impl Drop for Tool {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn simulcast_parameters() -> RtpParameters {
    serde_json::from_value(json!({
        "codecs": [{
            "mimeType": "video/VP8", "payloadType": PAYLOAD_TYPE, "clockRate": 90000,
            "rtcpFeedback": [{"type": "nack", "parameter": "pli"}, {"type": "ccm", "parameter": "fir"}]
        }],
        "encodings": LAYER_SSRCS.iter().map(|ssrc| json!({"ssrc": ssrc})).collect::<Vec<_>>(),
        "rtcp": {"cname": "simulcast-tool"}
    }))
    .expect("the tool's rtpParameters are valid")
}

/// A comedia PlainTransport, its producer of the tool's three encodings,
/// and the tool sending into it.
async fn start_tool(worker: &Worker, router: RouterId) -> Result<Tool> {
    let mut options = PlainTransportOptions::default();
    options.comedia = true;
    let transport = worker.create_plain_transport(router, options).await?;
    // With comedia the tool's address is learnt from its first packet.
    worker
        .connect_plain_transport(transport.id, PlainConnectParameters::default())
        .await?;
    let producer = worker
        .produce(
            transport.id,
            ProducerOptions::new(MediaKind::Video, simulcast_parameters()),
        )
        .await?;
    let target: SocketAddr = format!(
        "{}:{}",
        transport.tuple.local_address, transport.tuple.local_port
    )
    .parse()?;
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let stats = Arc::new(ToolStats::default());
    let task = tokio::spawn(run_tool(socket, target, Arc::clone(&stats)));
    Ok(Tool {
        producer: producer.id,
        stats,
        task,
    })
}

// ---------------------------------------------------------------------------
// The bottleneck relay
// ---------------------------------------------------------------------------

/// What the relay did to SFU -> viewer RTP.
#[derive(Default)]
struct RelayStats {
    /// (SSRC, sequence number) of each RTP datagram dropped: by the full
    /// queue or by random loss.
    dropped: Mutex<HashSet<(u32, u16)>>,
    /// (SSRC, sequence number) of each RTP datagram forwarded to the
    /// viewer.
    passed: Mutex<HashSet<(u32, u16)>>,
    queue_drops: Mutex<u64>,
    random_drops: Mutex<u64>,
    forwarded: Mutex<u64>,
}

struct RelayShared {
    /// The bottleneck's rate in bits/s; 0: no limit.
    rate_bps: Mutex<u64>,
    stats: RelayStats,
}

/// A UDP relay for one viewer: the viewer talks to `addr`, the SFU sees
/// the relay's other socket as the viewer.
struct Relay {
    addr: SocketAddr,
    shared: Arc<RelayShared>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// `rate_bps` 0: no limit; `loss`: the share of RTP dropped at random,
    /// reproducibly from `seed`.
    async fn start(sfu: SocketAddr, rate_bps: u64, loss: f64, seed: u64) -> Result<Relay> {
        let viewer_side = UdpSocket::bind("127.0.0.1:0").await?;
        let sfu_side = UdpSocket::bind("127.0.0.1:0").await?;
        sfu_side.connect(sfu).await?;
        let addr = viewer_side.local_addr()?;
        let shared = Arc::new(RelayShared {
            rate_bps: Mutex::new(rate_bps),
            stats: RelayStats::default(),
        });
        let link = Bottleneck {
            shared: Arc::clone(&shared),
            loss,
            rng: Lcg(seed),
            queue: VecDeque::new(),
            queued_bytes: 0,
            tokens: 0.0,
            refilled: Instant::now(),
        };
        let task = tokio::spawn(relay(viewer_side, sfu_side, link));
        Ok(Relay { addr, shared, task })
    }

    fn set_rate(&self, rate_bps: u64) {
        *lock(&self.shared.rate_bps) = rate_bps;
    }

    fn stats(&self) -> &RelayStats {
        &self.shared.stats
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The SFU -> viewer link: random loss, then a token bucket in front of a
/// FIFO queue bounded to [`MAX_QUEUE_DELAY`] at the current rate.
struct Bottleneck {
    shared: Arc<RelayShared>,
    loss: f64,
    rng: Lcg,
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    /// Bytes that may leave now.
    tokens: f64,
    refilled: Instant,
}

impl Bottleneck {
    fn rate(&self) -> u64 {
        *lock(&self.shared.rate_bps)
    }

    /// Takes an RTP datagram from the SFU: queues it or drops it.
    fn offer(&mut self, datagram: &[u8]) {
        let stats = &self.shared.stats;
        if self.loss > 0.0 && self.rng.next_f64() < self.loss {
            lock(&stats.dropped).extend(rtp_ids(datagram));
            *lock(&stats.random_drops) += 1;
            return;
        }
        let rate = self.rate();
        let limit = if rate == 0 {
            usize::MAX
        } else {
            (rate as f64 / 8.0 * MAX_QUEUE_DELAY.as_secs_f64()) as usize
        };
        if self.queued_bytes + datagram.len() > limit.max(3 * 1500) {
            lock(&stats.dropped).extend(rtp_ids(datagram));
            *lock(&stats.queue_drops) += 1;
            return;
        }
        self.queued_bytes += datagram.len();
        self.queue.push_back(datagram.to_vec());
    }

    /// The datagrams whose turn has come; when the next one's comes.
    fn due(&mut self, now: Instant) -> (Vec<Vec<u8>>, Option<Instant>) {
        let rate = self.rate();
        let mut out = Vec::new();
        if rate == 0 {
            self.queued_bytes = 0;
            return (self.queue.drain(..).collect(), None);
        }
        let bytes_per_s = rate as f64 / 8.0;
        // A burst of at most 10 ms at the rate (and at least one packet).
        let depth = (bytes_per_s * 0.010).max(1500.0);
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * bytes_per_s).min(depth);
        self.refilled = now;
        while let Some(head) = self.queue.front() {
            if (head.len() as f64) > self.tokens {
                let wait = (head.len() as f64 - self.tokens) / bytes_per_s;
                return (out, Some(now + Duration::from_secs_f64(wait)));
            }
            self.tokens -= head.len() as f64;
            self.queued_bytes -= head.len();
            out.extend(self.queue.pop_front());
        }
        (out, None)
    }
}

async fn relay(viewer_side: UdpSocket, sfu_side: UdpSocket, mut link: Bottleneck) {
    let mut viewer = None;
    let mut from_viewer = vec![0u8; 2048];
    let mut from_sfu = vec![0u8; 2048];
    let mut next_departure: Option<Instant> = None;
    // Errors are not fatal: on loopback they are ICMP port-unreachable
    // reports of a socket that closed, which the next datagram outlives.
    loop {
        let wake = async {
            match next_departure {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = viewer_side.recv_from(&mut from_viewer) => {
                let Ok((n, from)) = received else { continue };
                viewer = Some(from);
                let _ = sfu_side.send(&from_viewer[..n]).await;
            }
            received = sfu_side.recv(&mut from_sfu) => {
                let Ok(n) = received else { continue };
                let datagram = &from_sfu[..n];
                if is_rtp(datagram) {
                    link.offer(datagram);
                } else if let Some(viewer) = viewer {
                    let _ = viewer_side.send_to(datagram, viewer).await;
                }
            }
            () = wake => {}
        }
        let (due, next) = link.due(Instant::now());
        next_departure = next;
        if let Some(viewer) = viewer {
            *lock(&link.shared.stats.forwarded) += due.len() as u64;
            lock(&link.shared.stats.passed).extend(due.iter().filter_map(|d| rtp_ids(d)));
            for datagram in due {
                let _ = viewer_side.send_to(&datagram, viewer).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Viewers
// ---------------------------------------------------------------------------

fn media_codecs() -> Vec<RtpCodecCapability> {
    serde_json::from_value(json!([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}
    ]))
    .expect("the codec list is valid")
}

/// The server's transport parameters as mediasoup-client receives them,
/// with the candidates' port that of `relay` when the viewer goes through
/// one.
fn client_view(
    info: &sfu::WebRtcTransportInfo,
    relay: Option<&Relay>,
) -> Result<TransportParameters> {
    let mut value = serde_json::to_value(info)?;
    if let Some(relay) = relay {
        let candidates = value["iceCandidates"]
            .as_array_mut()
            .ok_or("no iceCandidates")?;
        for candidate in candidates {
            candidate["port"] = json!(relay.addr.port());
        }
    }
    Ok(serde_json::from_value(value)?)
}

/// One video packet as a viewer got it.
#[derive(Debug, Clone, Copy)]
struct Got {
    at: Instant,
    seq: u16,
    timestamp: u32,
    layer: u8,
    frame: u32,
    /// The first packet of a key frame.
    key_frame: bool,
    /// The first packet of a frame.
    start: bool,
    picture_id: Option<u16>,
}

#[derive(Default)]
struct ViewerLog {
    packets: Vec<Got>,
    /// Packets that were not the tool's VP8 (e.g. padding handed up).
    other: u64,
}

/// A connected viewer consuming the tool's producer, receiving in the
/// background.
struct Viewer {
    name: &'static str,
    consumer: ConsumerId,
    /// The SSRC the consumer sends on.
    ssrc: u32,
    log: Arc<Mutex<ViewerLog>>,
    _transport: RecvTransport,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Viewer {
    async fn join(
        name: &'static str,
        worker: &Worker,
        router: RouterId,
        caps: &RtpCapabilities,
        producer: ProducerId,
        preferred: Option<u8>,
        relay: Option<&Relay>,
    ) -> Result<Viewer> {
        let info = worker.create_webrtc_transport(router).await?;
        let mut transport = RecvTransport::new(&client_view(&info, relay)?).await?;
        let mut options = ConsumerOptions::new(producer, caps.clone());
        options.preferred_layers = preferred.map(|spatial_layer| ConsumerLayers {
            spatial_layer,
            temporal_layer: None,
        });
        let consumer = worker.consume(info.id, options).await?;
        let params: ConsumerParameters = serde_json::from_value(serde_json::to_value(&consumer)?)?;
        let track = transport.consume(&params).await?;
        let dtls = transport.dtls_parameters().ok_or("no DTLS parameters")?;
        let dtls: DtlsParameters = serde_json::from_value(serde_json::to_value(dtls)?)?;
        worker.connect_webrtc_transport(info.id, dtls).await?;
        transport.peer.wait_connected(CONNECT_TIMEOUT).await?;
        worker.resume_consumer(consumer.id).await?;

        let log = Arc::new(Mutex::new(ViewerLog::default()));
        let (ssrc, rtx_ssrc) = (track.ssrc, track.rtx_ssrc);
        let mut packets = track.packets;
        let task = tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                while let Some(packet) = packets.recv().await {
                    let at = Instant::now();
                    // webrtc-rs restores RTX to the stream it repairs; a
                    // stack that does not would hand it up as is.
                    let (seq, payload) = if packet.ssrc == ssrc {
                        (packet.sequence_number, &packet.payload[..])
                    } else if Some(packet.ssrc) == rtx_ssrc && packet.payload.len() > 2 {
                        let seq = u16::from_be_bytes([packet.payload[0], packet.payload[1]]);
                        (seq, &packet.payload[2..])
                    } else {
                        lock(&log).other += 1;
                        continue;
                    };
                    let got = parse_vp8(payload).and_then(|vp8| {
                        let (layer, frame) = read_marker(vp8.body)?;
                        Some(Got {
                            at,
                            seq,
                            timestamp: packet.timestamp,
                            layer,
                            frame,
                            key_frame: vp8.start_of_frame && vp8.keyframe,
                            start: vp8.start_of_frame,
                            picture_id: vp8.picture_id,
                        })
                    });
                    let mut log = lock(&log);
                    match got {
                        Some(got) => log.packets.push(got),
                        None => log.other += 1,
                    }
                }
            }
        });
        Ok(Viewer {
            name,
            consumer: consumer.id,
            ssrc,
            log,
            _transport: transport,
            task,
        })
    }

    fn packets(&self) -> Vec<Got> {
        lock(&self.log).packets.clone()
    }

    /// The packets received at or after `since`.
    fn packets_since(&self, since: Instant) -> Vec<Got> {
        lock(&self.log)
            .packets
            .iter()
            .filter(|got| got.at >= since)
            .copied()
            .collect()
    }

    /// The layer of the newest packet.
    fn layer(&self) -> Option<u8> {
        lock(&self.log).packets.last().map(|got| got.layer)
    }

    /// Waits (up to `timeout`) until `layer`, and only it, has been
    /// arriving for `hold` at (nearly) one packet per frame or more;
    /// returns when.
    async fn wait_flowing(&self, layer: u8, hold: Duration, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        let enough = (hold.as_secs_f64() * f64::from(FPS) * 0.8) as usize;
        loop {
            let now = Instant::now();
            let recent = self.packets_since(now - hold);
            if recent.len() >= enough && recent.iter().all(|got| got.layer == layer) {
                return Ok(now);
            }
            if now >= deadline {
                return Err(format!(
                    "{}: layer {layer} not flowing for {hold:?} within {timeout:?} \
                     ({} packets in the last {hold:?}, now on {:?})",
                    self.name,
                    recent.len(),
                    self.layer()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The longest time between two packets received in `from..to`.
    fn longest_silence(&self, from: Instant, to: Instant) -> Duration {
        let arrivals: Vec<Instant> = self
            .packets_since(from)
            .iter()
            .map(|got| got.at)
            .filter(|at| *at < to)
            .collect();
        arrivals
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or(to - from)
    }

    /// Waits (up to `timeout`) until only `layer` has arrived for `hold`;
    /// returns when its run started: the arrival of its first packet after
    /// the last packet of another layer.
    async fn wait_steady(&self, layer: u8, hold: Duration, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let since = {
                let log = lock(&self.log);
                let run = log
                    .packets
                    .iter()
                    .rposition(|got| got.layer != layer)
                    .map_or(0, |last_other| last_other + 1);
                log.packets.get(run).map(|got| got.at)
            };
            if let Some(since) = since {
                if Instant::now() - since >= hold {
                    return Ok(since);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}: not steady on layer {layer} for {hold:?} within {timeout:?} (now on {:?})",
                    self.name,
                    self.layer()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first packet received at or after `since` that `matches`,
    /// waiting up to `timeout` for it.
    async fn wait_for(
        &self,
        since: Instant,
        timeout: Duration,
        what: &str,
        matches: impl Fn(&Got) -> bool,
    ) -> Result<Got> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = lock(&self.log)
                .packets
                .iter()
                .find(|got| got.at >= since && matches(got))
                .copied();
            if let Some(got) = found {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                let log = lock(&self.log);
                return Err(format!(
                    "{}: no {what} within {timeout:?} (now on layer {:?}; {} packets, {} others)",
                    self.name,
                    log.packets.last().map(|got| got.layer),
                    log.packets.len(),
                    log.other
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Checks on what a viewer received
// ---------------------------------------------------------------------------

/// Output sequence numbers unwrapped from the first packet's.
fn unwrapped(packets: &[Got]) -> Vec<(i64, Got)> {
    let Some(first) = packets.first() else {
        return Vec::new();
    };
    packets
        .iter()
        .map(|got| {
            let delta = i64::from(got.seq.wrapping_sub(first.seq) as i16);
            (i64::from(first.seq) + delta, *got)
        })
        .collect()
}

/// What a relay did to one SSRC: the sequence numbers it dropped and
/// those it passed on.
struct RelayView {
    dropped: HashSet<u16>,
    passed: HashSet<u16>,
}

impl RelayView {
    fn of(relay: &Relay, ssrc: u32) -> RelayView {
        let of_ssrc = |set: &Mutex<HashSet<(u32, u16)>>| -> HashSet<u16> {
            lock(set)
                .iter()
                .filter(|(s, _)| *s == ssrc)
                .map(|(_, seq)| *seq)
                .collect()
        };
        let stats = relay.stats();
        RelayView {
            dropped: of_ssrc(&stats.dropped),
            passed: of_ssrc(&stats.passed),
        }
    }
}

/// A change of layer in the stream a viewer received.
#[derive(Debug, Clone, Copy)]
struct Switch {
    from: u8,
    to: u8,
    /// When the first packet of the new layer arrived (retransmissions of
    /// earlier packets may arrive later).
    at: Instant,
}

fn describe(switches: &[Switch], t0: Instant) -> String {
    switches
        .iter()
        .map(|s| {
            let at = s.at.saturating_duration_since(t0).as_secs_f64();
            format!("{} -> {} at {at:.2} s", s.from, s.to)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that the viewer's stream is one RTP stream: every sequence
/// number between the first and the last arrived (or was dropped by the
/// relay, when there is one), each once with the same contents, and
/// timestamps never go back, going forward from one frame to the next and
/// at every layer switch. Returns the layer switches in sequence order.
fn check_continuity(name: &str, packets: &[Got], relay: Option<&RelayView>) -> Result<Vec<Switch>> {
    let mut by_seq: Vec<(i64, Got)> = unwrapped(packets);
    by_seq.sort_by_key(|(seq, _)| *seq);
    by_seq.dedup_by(|b, a| {
        if a.0 == b.0 {
            assert_eq!(
                (a.1.layer, a.1.frame, a.1.timestamp),
                (b.1.layer, b.1.frame, b.1.timestamp),
                "{name}: sequence number {} came twice with different contents",
                a.1.seq
            );
            true
        } else {
            false
        }
    });
    let (Some(first), Some(last)) = (by_seq.first(), by_seq.last()) else {
        return Err(format!("{name}: no video").into());
    };
    let have: HashSet<i64> = by_seq.iter().map(|(seq, _)| *seq).collect();
    let missing: Vec<u16> = (first.0..=last.0)
        .filter(|seq| !have.contains(seq))
        .map(|seq| seq as u16)
        .filter(|seq| relay.is_none_or(|r| !r.dropped.contains(seq)))
        .collect();
    if !missing.is_empty() {
        let (after_relay, before_relay): (Vec<u16>, Vec<u16>) = missing
            .iter()
            .partition(|seq| relay.is_some_and(|r| r.passed.contains(seq)));
        panic!(
            "{name}: sequence gaps the relay did not make ({} packets received): \
             passed on by the relay {after_relay:?}, never reached it {before_relay:?}",
            by_seq.len(),
        );
    }
    let mut switches = Vec::new();
    for pair in by_seq.windows(2) {
        let ((seq_a, a), (seq_b, b)) = (pair[0], pair[1]);
        let advance = b.timestamp.wrapping_sub(a.timestamp) as i32;
        let same_frame = a.layer == b.layer && a.frame == b.frame;
        if same_frame {
            assert_eq!(advance, 0, "{name}: one frame, two timestamps at {seq_b}");
        } else {
            assert!(
                advance > 0,
                "{name}: timestamp {} after {} at sequence numbers {seq_a}..{seq_b} \
                 (layer {} frame {} -> layer {} frame {})",
                b.timestamp,
                a.timestamp,
                a.layer,
                a.frame,
                b.layer,
                b.frame
            );
        }
        if a.layer != b.layer {
            switches.push(Switch {
                from: a.layer,
                to: b.layer,
                at: b.at,
            });
            if seq_b == seq_a + 1 {
                assert!(
                    b.key_frame,
                    "{name}: switched from layer {} to {} on a packet that does not start a \
                     key frame (frame {})",
                    a.layer, b.layer, b.frame
                );
            }
        }
    }
    Ok(switches)
}

/// Checks that the picture ids run on by one frame at a time across the
/// whole stream (no loss expected).
fn check_picture_ids(name: &str, packets: &[Got]) {
    let mut by_seq = unwrapped(packets);
    by_seq.sort_by_key(|(seq, _)| *seq);
    for pair in by_seq.windows(2) {
        let (a, b) = (pair[0].1, pair[1].1);
        let (Some(pa), Some(pb)) = (a.picture_id, b.picture_id) else {
            panic!("{name}: a packet without picture id");
        };
        let step = pb.wrapping_sub(pa) & 0x7fff;
        let expected = if b.start { 1 } else { 0 };
        assert_eq!(
            step, expected,
            "{name}: picture id {pa} -> {pb} (layer {} frame {} -> layer {} frame {})",
            a.layer, a.frame, b.layer, b.frame
        );
    }
}

/// The layer changes the worker reports, recorded as they come.
struct LayerEvents {
    log: Arc<Mutex<Vec<(Instant, ConsumerId, Option<u8>)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LayerEvents {
    fn record(mut events: mpsc::UnboundedReceiver<WorkerEvent>) -> LayerEvents {
        let log = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                while let Some(event) = events.recv().await {
                    if let WorkerEvent::ConsumerLayersChanged {
                        consumer_id,
                        layers,
                    } = event
                    {
                        let layer = layers.map(|l| l.spatial_layer);
                        lock(&log).push((Instant::now(), consumer_id, layer));
                    }
                }
            }
        });
        LayerEvents { log, task }
    }

    /// `consumer`'s reported layers, with when relative to `t0`.
    fn describe(&self, consumer: ConsumerId, t0: Instant) -> String {
        lock(&self.log)
            .iter()
            .filter(|(_, id, _)| *id == consumer)
            .map(|(at, _, layer)| {
                let layer = layer.map_or("none".to_owned(), |l| l.to_string());
                format!(
                    "{:.2} s: {layer}",
                    at.saturating_duration_since(t0).as_secs_f64()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for LayerEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Result<(Worker, RouterId, RtpCapabilities, LayerEvents)> {
    let (tx, events) = mpsc::unbounded_channel::<WorkerEvent>();
    let worker = Worker::new(WorkerSettings::new("127.0.0.1".parse()?, 0), tx)?;
    let (router, caps) = worker.create_router(media_codecs()).await?;
    Ok((worker, router, caps, LayerEvents::record(events)))
}

/// Runs one test's scenario alone, bounded by `limit` once it runs.
async fn alone<F: std::future::Future<Output = Result>>(limit: Duration, scenario: F) {
    let _turn = ONE_AT_A_TIME.lock().await;
    tokio::time::timeout(limit, scenario)
        .await
        .expect("test timed out")
        .unwrap();
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

async fn check_preferred_layers() -> Result {
    let (worker, router, caps, events) = start().await?;
    let tool = start_tool(&worker, router).await?;
    let mut viewers = Vec::new();
    for (name, preferred) in [("low", 0), ("mid", 1), ("high", 2)] {
        viewers.push(
            Viewer::join(
                name,
                &worker,
                router,
                &caps,
                tool.producer,
                Some(preferred),
                None,
            )
            .await?,
        );
    }
    let t0 = Instant::now();

    // Each settles on its preferred layer: the top one once the estimate
    // (600 kbps before any feedback) has grown enough.
    for (viewer, layer) in viewers.iter().zip(0u8..) {
        let since = viewer
            .wait_steady(layer, Duration::from_secs(1), Duration::from_secs(10))
            .await?;
        println!(
            "{}: on its preferred layer {layer} from {:.2} s",
            viewer.name,
            since.saturating_duration_since(t0).as_secs_f64()
        );
    }
    for viewer in &viewers[..2] {
        let layers: HashSet<u8> = viewer.packets().iter().map(|got| got.layer).collect();
        assert_eq!(
            layers.len(),
            1,
            "{}: a layer below the initial estimate starts as it is: {layers:?}",
            viewer.name
        );
    }

    // New preferences: each switches at the next key frame of its new
    // layer, which the SFU asks the tool for.
    let changes = [(0, 2u8), (1, 0), (2, 1)];
    let changed = Instant::now();
    for (i, layer) in changes {
        let layers = ConsumerLayers {
            spatial_layer: layer,
            temporal_layer: None,
        };
        worker
            .set_consumer_preferred_layers(viewers[i].consumer, layers)
            .await?;
    }
    for ((i, layer), from) in changes.into_iter().zip(0u8..) {
        let viewer = &viewers[i];
        let got = viewer
            .wait_for(changed, Duration::from_secs(5), "new layer", |got| {
                got.layer == layer
            })
            .await?;
        assert!(
            got.key_frame,
            "{}: the first packet of layer {layer} does not start a key frame: {got:?}",
            viewer.name
        );
        println!(
            "MEASURED {}: preferred layer {from} -> {layer}, first packet of layer {layer} after {:?}",
            viewer.name,
            got.at - changed
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    for ((viewer, (_, layer)), from) in viewers.iter().zip(changes).zip(0u8..) {
        let packets = viewer.packets();
        assert!(
            packets[0].key_frame,
            "{}: the stream starts with {:?}",
            viewer.name, packets[0]
        );
        assert_eq!(viewer.layer(), Some(layer), "{}", viewer.name);
        let switches = check_continuity(viewer.name, &packets, None)?;
        assert_eq!(
            switches.last().map(|s| (s.from, s.to)),
            Some((from, layer)),
            "{}: switches {}",
            viewer.name,
            describe(&switches, t0)
        );
        check_picture_ids(viewer.name, &packets);
        assert_eq!(lock(&viewer.log).other, 0, "{}: stray packets", viewer.name);
        println!(
            "{}: {} packets in sequence, layer switches {}; the worker reported {}",
            viewer.name,
            packets.len(),
            describe(&switches, t0),
            events.describe(viewer.consumer, t0)
        );
    }
    println!(
        "key frame requests the tool got per layer: {:?}",
        lock(&tool.stats.requests)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_viewers_get_their_preferred_layer_and_switch_at_key_frames() {
    alone(Duration::from_secs(25), check_preferred_layers()).await;
}

fn relay_summary(relay: &Relay) -> String {
    let stats = relay.stats();
    format!(
        "the relay forwarded {} RTP packets, dropped {} at its full queue and {} at random",
        lock(&stats.forwarded),
        lock(&stats.queue_drops),
        lock(&stats.random_drops)
    )
}

/// Bottleneck capacities of the step test, in bits/s.
const AMPLE: u64 = 3_000_000;
const SCARCE: u64 = 300_000;
/// The switch times the step test accepts.
const MAX_DOWN_SWITCH: Duration = Duration::from_secs(2);
const MAX_UP_SWITCH: Duration = Duration::from_secs(10);
/// How long the link stays at each capacity before the next step. Layer 0
/// usually flows steadily 2.4-3.6 s after the step down, but about one run
/// in six the transition's loss burst pauses video for over 5 s before the
/// estimate recovers (a known slow recovery of the estimator, noted on
/// issue #6); the lowest layer must flow by the end of this period.
const AT_THE_TOP: Duration = Duration::from_secs(2);
const CONGESTED: Duration = Duration::from_secs(12);
/// How long a layer must be the only one received to count as settled.
const STEADY: Duration = Duration::from_secs(1);

/// A worker with the tool publishing, and one viewer (preferring the top
/// layer) behind a relay of `rate` bits/s dropping `loss` of its RTP at
/// random (seeded).
async fn viewer_behind_relay(
    rate: u64,
    loss: f64,
    seed: u64,
) -> Result<(Worker, LayerEvents, Tool, Relay, Viewer)> {
    let (worker, router, caps, events) = start().await?;
    let tool = start_tool(&worker, router).await?;
    let relay = Relay::start(worker.local_addr(), rate, loss, seed).await?;
    let viewer = Viewer::join(
        "viewer",
        &worker,
        router,
        &caps,
        tool.producer,
        None,
        Some(&relay),
    )
    .await?;
    Ok((worker, events, tool, relay, viewer))
}

async fn check_bandwidth_step() -> Result {
    let (_worker, events, tool, relay, viewer) = viewer_behind_relay(AMPLE, 0.0, 1).await?;
    let t0 = Instant::now();
    let at = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();

    // At 3 Mbps the estimate grows to the top layer, which stays.
    let top = viewer
        .wait_steady(2, STEADY, Duration::from_secs(15))
        .await?;
    println!(
        "at {} kbps: on the top layer from {:.2} s",
        AMPLE / 1000,
        at(top)
    );
    tokio::time::sleep(AT_THE_TOP).await;
    assert_eq!(
        viewer.wait_steady(2, STEADY, Duration::ZERO).await?,
        top,
        "left the top layer at {} kbps",
        AMPLE / 1000
    );

    // Down to 300 kbps: the consumer leaves the top layer, and settles on
    // the one layer that fits.
    let step_down = Instant::now();
    relay.set_rate(SCARCE);
    let lower = viewer
        .wait_for(step_down, MAX_DOWN_SWITCH, "lower layer", |got| {
            got.layer < 2
        })
        .await?;
    let lowest = viewer
        .wait_for(step_down, Duration::from_secs(5), "lowest layer", |got| {
            got.layer == 0
        })
        .await?;
    println!(
        "MEASURED {} -> {} kbps at {:.2} s: first packet of a lower layer (layer {}) after {:?}, \
         of layer 0 after {:?}",
        AMPLE / 1000,
        SCARCE / 1000,
        at(step_down),
        lower.layer,
        lower.at - step_down,
        lowest.at - step_down
    );
    // The transition's burst of loss may cut the estimate below even the
    // lowest layer for a moment (a bandwidth pause); by the end of the
    // period the lowest layer flows steadily.
    let flowing = viewer
        .wait_flowing(
            0,
            STEADY,
            CONGESTED.saturating_sub(Instant::now() - step_down),
        )
        .await?;
    println!(
        "MEASURED at {} kbps: layer 0 flowing steadily {:?} after the step; longest silence \
         {:?}",
        SCARCE / 1000,
        flowing - STEADY - step_down,
        viewer.longest_silence(step_down, flowing)
    );
    tokio::time::sleep_until(step_down + CONGESTED).await;
    viewer.wait_flowing(0, STEADY, Duration::ZERO).await?;

    // Back to 3 Mbps: the consumer climbs back to the top.
    let step_up = Instant::now();
    relay.set_rate(AMPLE);
    let back = viewer
        .wait_for(step_up, MAX_UP_SWITCH, "top layer again", |got| {
            got.layer == 2
        })
        .await?;
    println!(
        "MEASURED {} -> {} kbps at {:.2} s: first packet of the top layer after {:?}",
        SCARCE / 1000,
        AMPLE / 1000,
        at(step_up),
        back.at - step_up
    );
    viewer
        .wait_steady(2, STEADY, Duration::from_secs(3))
        .await?;

    let view = RelayView::of(&relay, viewer.ssrc);
    let packets = viewer.packets();
    let switches = check_continuity(viewer.name, &packets, Some(&view))?;
    println!(
        "{} packets in sequence but for {} the relay dropped; layer switches {}; \
         the worker reported {}; {}; key frame requests the tool got per layer: {:?}",
        packets.len(),
        view.dropped.len(),
        describe(&switches, t0),
        events.describe(viewer.consumer, t0),
        relay_summary(&relay),
        lock(&tool.stats.requests)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_follows_a_bottleneck_down_and_back_up() {
    alone(Duration::from_secs(40), check_bandwidth_step()).await;
}

/// Random loss of the loss test, at a capacity well above the top layer.
const RANDOM_LOSS: f64 = 0.02;
const LOSS_SEED: u64 = 0x5eed_2024;
const LOSS_CAPACITY: u64 = 10_000_000;
const OBSERVED: Duration = Duration::from_secs(20);

async fn check_random_loss() -> Result {
    let (worker, events, _tool, relay, viewer) =
        viewer_behind_relay(LOSS_CAPACITY, RANDOM_LOSS, LOSS_SEED).await?;
    let t0 = Instant::now();
    let top = viewer
        .wait_steady(2, STEADY, Duration::from_secs(15))
        .await?;
    println!(
        "{}% loss: on the top layer from {:.2} s",
        RANDOM_LOSS * 100.0,
        top.saturating_duration_since(t0).as_secs_f64()
    );
    tokio::time::sleep_until(top + OBSERVED).await;

    let view = RelayView::of(&relay, viewer.ssrc);
    let switches = check_continuity(viewer.name, &viewer.packets(), Some(&view))?;
    let observed: Vec<Switch> = switches.into_iter().filter(|s| s.at >= top).collect();
    let down = observed.iter().filter(|s| s.to < s.from).count();
    let stats = worker.consumer_stats(viewer.consumer).await?;
    println!(
        "MEASURED {}% random loss for {OBSERVED:?} from the top layer: {down} down-switches \
         ({}); the worker reported {}; {}; {} NACKs, {} retransmissions",
        RANDOM_LOSS * 100.0,
        describe(&observed, t0),
        events.describe(viewer.consumer, t0),
        relay_summary(&relay),
        stats.nack_count,
        stats.packets_retransmitted
    );
    assert!(
        down <= 1,
        "{down} down-switches in {OBSERVED:?} of {}% random loss: {}",
        RANDOM_LOSS * 100.0,
        describe(&observed, t0)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_loss_at_ample_capacity_does_not_flap_layers() {
    alone(Duration::from_secs(40), check_random_loss()).await;
}
