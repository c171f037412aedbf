//! The SFU's loss recovery and key frame requests end to end, against an
//! independent WebRTC implementation (webrtc-rs, driven as mediasoup-client
//! drives a browser) over real UDP on loopback.
//!
//! A [`Relay`] sits between one peer and the worker's WebRtcServer socket:
//! the peer is given the relay's port in the server's ICE candidates, and
//! the relay forwards every datagram both ways except a deterministic 5%
//! of the SRTP RTP ones in the direction under test. STUN, DTLS and SRTCP
//! always pass, and SRTCP feedback the SFU sends is counted on the wire (an
//! SRTCP header is not encrypted).

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use sfu::rtp_parameters::{MediaKind, RtpCapabilities, RtpCodecCapability};
use sfu::transport::DtlsParameters;
use sfu::{
    ConsumerInfo, ConsumerOptions, ProducerId, ProducerOptions, RouterId, Worker, WorkerEvent,
    WorkerSettings,
};
use support::peer::{
    parse_vp8, write_opus, write_vp8, ConsumerParameters, ReceivedRtp, RecvTrack, RecvTransport,
    SendTrack, SendTransport, TransportParameters,
};
use support::rtp_ids;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TEST_TIMEOUT: Duration = Duration::from_secs(20);
/// One RTP datagram in this many is dropped in the lossy direction (5%).
const DROP_EVERY: u64 = 20;
/// Video frames (one packet each) whose delivery the loss tests check.
const FRAMES: u16 = 200;
const FRAME_INTERVAL: Duration = Duration::from_millis(10);
/// The publisher's first VP8 sequence number.
const FIRST_SEQ: u16 = 1000;
/// `ProducerOptions::key_frame_request_interval`'s default.
const KEY_FRAME_REQUEST_INTERVAL: Duration = sfu::router::DEFAULT_KEY_FRAME_REQUEST_INTERVAL;
/// How much earlier than the worker sent it the relay may stamp a packet
/// relative to the one before (thread wake-ups on a loaded 2-core machine).
const RELAY_JITTER: Duration = Duration::from_millis(50);
/// RTCP payload types (RFC 4585) and their generic NACK / PLI formats.
const RTPFB: u8 = 205;
const PSFB: u8 = 206;
const FMT_NACK: u8 = 1;
const FMT_PLI: u8 = 1;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

// ---------------------------------------------------------------------------
// The lossy relay
// ---------------------------------------------------------------------------

/// Which way a relay drops RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lossy {
    /// From the peer to the SFU (a publisher's uplink).
    ToSfu,
    /// From the SFU to the peer (a viewer's downlink).
    ToPeer,
}

/// The (packet type, format) of the first packet of an SRTCP datagram.
fn rtcp_type(datagram: &[u8]) -> Option<(u8, u8)> {
    (datagram.len() >= 8
        && (128..=191).contains(&datagram[0])
        && (192..=223).contains(&datagram[1]))
    .then(|| (datagram[1], datagram[0] & 0x1f))
}

/// Drops every [`DROP_EVERY`]th RTP datagram of each SSRC, starting with
/// the tenth: a stream's first packet, which starts the receiver's loss
/// tracking, always passes, and each stream loses its share however the
/// streams interleave.
#[derive(Default)]
struct Dropper {
    seen: HashMap<u32, u64>,
}

impl Dropper {
    fn drops(&mut self, ssrc: u32) -> bool {
        let seen = self.seen.entry(ssrc).or_default();
        *seen += 1;
        *seen % DROP_EVERY == DROP_EVERY / 2
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("no holder of the lock panics")
}

/// What a relay saw, in both directions.
#[derive(Default)]
struct RelayStats {
    /// The SSRC and sequence number of each RTP datagram dropped.
    dropped: Mutex<Vec<(u32, u16)>>,
    /// RTP datagrams forwarded, per SSRC.
    forwarded: Mutex<HashMap<u32, u64>>,
    /// SRTCP generic NACKs from the SFU to the peer.
    nacks: AtomicU64,
    /// When SRTCP PLIs from the SFU passed towards the peer.
    plis: Mutex<Vec<Instant>>,
}

impl RelayStats {
    /// The sequence numbers dropped of one SSRC.
    fn dropped(&self, ssrc: u32) -> Vec<u16> {
        lock(&self.dropped)
            .iter()
            .filter(|(dropped, _)| *dropped == ssrc)
            .map(|(_, seq)| *seq)
            .collect()
    }

    fn forwarded(&self, ssrc: u32) -> u64 {
        lock(&self.forwarded).get(&ssrc).copied().unwrap_or(0)
    }

    fn nacks(&self) -> u64 {
        self.nacks.load(Ordering::Relaxed)
    }

    fn plis(&self) -> Vec<Instant> {
        lock(&self.plis).clone()
    }

    fn pli_count(&self) -> usize {
        lock(&self.plis).len()
    }

    /// Whether to forward `datagram`, dropping RTP when `lossy`.
    fn passes(&self, dropper: &mut Dropper, lossy: bool, datagram: &[u8]) -> bool {
        let Some((ssrc, seq)) = rtp_ids(datagram) else {
            return true;
        };
        if lossy && dropper.drops(ssrc) {
            lock(&self.dropped).push((ssrc, seq));
            return false;
        }
        *lock(&self.forwarded).entry(ssrc).or_default() += 1;
        true
    }

    fn observe_from_sfu(&self, datagram: &[u8]) {
        match rtcp_type(datagram) {
            Some((RTPFB, FMT_NACK)) => {
                self.nacks.fetch_add(1, Ordering::Relaxed);
            }
            Some((PSFB, FMT_PLI)) => lock(&self.plis).push(Instant::now()),
            _ => {}
        }
    }
}

/// A UDP relay for one peer: the peer talks to `addr`, the SFU sees the
/// relay's other socket as the peer.
struct Relay {
    addr: SocketAddr,
    stats: Arc<RelayStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(sfu: SocketAddr, lossy: Option<Lossy>) -> Result<Relay> {
        let peer_side = UdpSocket::bind("127.0.0.1:0").await?;
        let sfu_side = UdpSocket::bind("127.0.0.1:0").await?;
        sfu_side.connect(sfu).await?;
        let addr = peer_side.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let task = tokio::spawn(relay(peer_side, sfu_side, lossy, Arc::clone(&stats)));
        Ok(Relay { addr, stats, task })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    peer_side: UdpSocket,
    sfu_side: UdpSocket,
    lossy: Option<Lossy>,
    stats: Arc<RelayStats>,
) {
    let mut dropper = Dropper::default();
    let mut peer = None;
    let mut from_peer = vec![0u8; 2048];
    let mut from_sfu = vec![0u8; 2048];
    // Errors are not fatal: on loopback they are ICMP port-unreachable
    // reports of a socket that closed, which the next datagram outlives.
    loop {
        tokio::select! {
            received = peer_side.recv_from(&mut from_peer) => {
                let Ok((n, from)) = received else { continue };
                peer = Some(from);
                let datagram = &from_peer[..n];
                if stats.passes(&mut dropper, lossy == Some(Lossy::ToSfu), datagram) {
                    let _ = sfu_side.send(datagram).await;
                }
            }
            received = sfu_side.recv(&mut from_sfu) => {
                let Ok(n) = received else { continue };
                let datagram = &from_sfu[..n];
                stats.observe_from_sfu(datagram);
                if !stats.passes(&mut dropper, lossy == Some(Lossy::ToPeer), datagram) {
                    continue;
                }
                if let Some(peer) = peer {
                    let _ = peer_side.send_to(datagram, peer).await;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Publisher and viewers
// ---------------------------------------------------------------------------

fn media_codecs() -> Vec<RtpCodecCapability> {
    serde_json::from_value(json!([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}
    ]))
    .expect("the codec list is valid")
}

async fn start() -> Result<(Worker, RouterId, RtpCapabilities)> {
    let (tx, _events) = mpsc::unbounded_channel::<WorkerEvent>();
    let worker = Worker::new(WorkerSettings::new("127.0.0.1".parse()?, 0), tx)?;
    let (router, caps) = worker.create_router(media_codecs()).await?;
    Ok((worker, router, caps))
}

/// The server's transport parameters as mediasoup-client receives them,
/// with the candidates' port that of `relay` when the peer goes through one.
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

fn sfu_dtls(params: &support::peer::DtlsParameters) -> Result<DtlsParameters> {
    Ok(serde_json::from_value(serde_json::to_value(params)?)?)
}

struct Publisher {
    _transport: SendTransport,
    video: SendTrack,
    audio: SendTrack,
    video_producer: ProducerId,
    audio_producer: ProducerId,
}

async fn publish(
    worker: &Worker,
    router: RouterId,
    caps: &RtpCapabilities,
    relay: Option<&Relay>,
) -> Result<Publisher> {
    let info = worker.create_webrtc_transport(router).await?;
    let mut transport = SendTransport::new(&client_view(&info, relay)?, caps).await?;
    let mut tracks = transport
        .produce_many(&[MediaKind::Video, MediaKind::Audio])
        .await?;
    let audio = tracks.pop().ok_or("no audio track")?;
    let video = tracks.pop().ok_or("no video track")?;
    let dtls = transport.dtls_parameters().ok_or("no DTLS parameters")?;
    worker
        .connect_webrtc_transport(info.id, sfu_dtls(dtls)?)
        .await?;
    let mut producers = Vec::new();
    for track in [&video, &audio] {
        let options = ProducerOptions::new(track.kind, track.rtp_parameters.clone());
        producers.push(worker.produce(info.id, options).await?.id);
    }
    transport.peer.wait_connected(CONNECT_TIMEOUT).await?;
    Ok(Publisher {
        _transport: transport,
        video,
        audio,
        video_producer: producers[0],
        audio_producer: producers[1],
    })
}

/// A connected viewer whose consumers are still paused.
struct Viewer {
    _transport: RecvTransport,
    /// One per consumer, in the order of `consumers`.
    tracks: Vec<RecvTrack>,
    consumers: Vec<ConsumerInfo>,
}

impl Viewer {
    async fn resume(&self, worker: &Worker) -> Result {
        for consumer in &self.consumers {
            worker.resume_consumer(consumer.id).await?;
        }
        Ok(())
    }

    /// The RTX payload type of consumer `i`.
    fn rtx_payload_type(&self, i: usize) -> Option<u8> {
        self.consumers[i]
            .rtp_parameters
            .codecs
            .iter()
            .find(|codec| codec.mime_type.to_ascii_lowercase().ends_with("/rtx"))
            .map(|codec| codec.payload_type)
    }
}

/// A viewer consuming each of `producers` (paused, as mediasoup starts
/// consumers), its transport connected.
async fn join(
    worker: &Worker,
    router: RouterId,
    caps: &RtpCapabilities,
    producers: &[ProducerId],
    relay: Option<&Relay>,
) -> Result<Viewer> {
    let info = worker.create_webrtc_transport(router).await?;
    let mut transport = RecvTransport::new(&client_view(&info, relay)?).await?;
    let mut consumers = Vec::new();
    let mut params = Vec::new();
    for &producer in producers {
        let consumer = worker
            .consume(info.id, ConsumerOptions::new(producer, caps.clone()))
            .await?;
        params.push(serde_json::from_value::<ConsumerParameters>(
            serde_json::to_value(&consumer)?,
        )?);
        consumers.push(consumer);
    }
    let tracks = transport.consume_many(&params).await?;
    let dtls = transport.dtls_parameters().ok_or("no DTLS parameters")?;
    worker
        .connect_webrtc_transport(info.id, sfu_dtls(dtls)?)
        .await?;
    transport.peer.wait_connected(CONNECT_TIMEOUT).await?;
    Ok(Viewer {
        _transport: transport,
        tracks,
        consumers,
    })
}

fn video_body(n: u16) -> Vec<u8> {
    format!("video frame {n:05}").into_bytes()
}

/// Publishes for ever: VP8 frame `n` (one packet, sequence number
/// `FIRST_SEQ + n`) and an Opus packet every [`FRAME_INTERVAL`]. Frame 0
/// is a key frame, and so is the next frame after each PLI `plis` saw reach
/// the publisher, as a browser's encoder answers one (webrtc-rs hands PLIs
/// to no application on its default interceptors, hence the relay).
async fn stream(publisher: &Publisher, plis: Option<&RelayStats>) -> Result {
    let mut answered = 0;
    for n in 0..=u16::MAX {
        let requested = plis.map_or(0, RelayStats::pli_count);
        let key_frame = n == 0 || requested > answered;
        answered = requested;
        let sequence_number = FIRST_SEQ.wrapping_add(n);
        let timestamp = 90_000u32.wrapping_add(u32::from(n) * 3000);
        write_vp8(
            &publisher.video,
            sequence_number,
            timestamp,
            key_frame,
            &video_body(n),
        )
        .await?;
        let audio_timestamp = 48_000u32.wrapping_add(u32::from(n) * 960);
        let audio_body = format!("audio {n:05}");
        write_opus(
            &publisher.audio,
            5000u16.wrapping_add(n),
            audio_timestamp,
            audio_body.as_bytes(),
        )
        .await?;
        tokio::time::sleep(FRAME_INTERVAL).await;
    }
    Err("the publisher ran out of frame numbers".into())
}

/// A frame number and whether the frame is a key frame, from a VP8 payload
/// written by [`stream`].
fn frame(payload: &[u8]) -> Result<(u16, bool)> {
    let vp8 = parse_vp8(payload).ok_or("not VP8")?;
    let text = std::str::from_utf8(vp8.body)?;
    let n = text
        .strip_prefix("video frame ")
        .ok_or_else(|| format!("not a frame of the publisher: {text:?}"))?
        .parse()?;
    Ok((n, vp8.keyframe))
}

/// What one viewer received of the video: frame number -> the sequence
/// number the SFU gave it.
///
/// webrtc-rs 0.21 restores RTX packets to the stream they repair before
/// the application sees them (rtc's `peer_connection/handler/endpoint.rs`),
/// so a repaired frame arrives on the consumer's SSRC like any other; a
/// packet on the RTX SSRC (a stack that hands RTX up as is) is decapsulated
/// here (RFC 4588: the original sequence number, then the payload). Which
/// frames could only have come as RTX is known from what the relay dropped.
#[derive(Debug, Default)]
struct VideoLog {
    frames: HashMap<u16, u16>,
    /// Packets received on the RTX SSRC.
    raw_rtx: usize,
}

impl VideoLog {
    fn missing(&self) -> Vec<u16> {
        (0..FRAMES)
            .filter(|n| !self.frames.contains_key(n))
            .collect()
    }

    fn record(
        &mut self,
        track: &RecvTrack,
        rtx_payload_type: Option<u8>,
        packet: ReceivedRtp,
    ) -> Result {
        let (n, seq) = if packet.ssrc == track.ssrc {
            assert_eq!(packet.payload_type, track.payload_type);
            (frame(&packet.payload)?.0, packet.sequence_number)
        } else if Some(packet.ssrc) == track.rtx_ssrc {
            assert_eq!(
                Some(packet.payload_type),
                rtx_payload_type,
                "RTX payload type"
            );
            self.raw_rtx += 1;
            let (original, payload) = packet.payload.split_at(2);
            (
                frame(payload)?.0,
                u16::from_be_bytes([original[0], original[1]]),
            )
        } else {
            return Err(format!("packet of unknown SSRC {}", packet.ssrc).into());
        };
        if let Some(earlier) = self.frames.insert(n, seq) {
            assert_eq!(earlier, seq, "frame {n} came twice with different numbers");
        }
        Ok(())
    }

    /// The sequence number of frame 0, after checking that every frame got
    /// that plus its number (the SFU's rewriting keeps the sender's spacing,
    /// repaired frames included).
    fn first_sequence_number(&self, viewer: &str) -> u16 {
        let first = *self
            .frames
            .get(&0)
            .unwrap_or_else(|| panic!("{viewer}: no frame 0"));
        for (n, seq) in &self.frames {
            assert_eq!(
                seq.wrapping_sub(first),
                *n,
                "{viewer}: frame {n} has sequence number {seq}, frame 0 had {first}"
            );
        }
        first
    }
}

/// Reads each viewer's video (its first track) until it has frames
/// `0..FRAMES` or `deadline` passes.
async fn collect(viewers: &mut [Viewer], deadline: Instant) -> Result<Vec<VideoLog>> {
    let mut logs = Vec::new();
    for viewer in viewers {
        let rtx_payload_type = viewer.rtx_payload_type(0);
        let track = &mut viewer.tracks[0];
        let mut log = VideoLog::default();
        while !log.missing().is_empty() {
            match tokio::time::timeout_at(deadline, track.packets.recv()).await {
                Ok(Some(packet)) => log.record(track, rtx_payload_type, packet)?,
                Ok(None) => return Err("the viewer's peer is gone".into()),
                Err(_) => break,
            }
        }
        logs.push(log);
    }
    Ok(logs)
}

/// Publishes until every viewer has frames `0..FRAMES` (or the recovery
/// deadline passes) and returns what each got.
async fn stream_to(publisher: &Publisher, viewers: &mut [Viewer]) -> Result<Vec<VideoLog>> {
    // 2 s of frames, then time for the last losses to be repaired.
    let deadline = Instant::now() + Duration::from_secs(8);
    tokio::select! {
        sent = stream(publisher, None) => {
            Err(sent.err().unwrap_or_else(|| "the publisher stopped".into()))
        }
        logs = collect(viewers, deadline) => logs,
    }
}

async fn producer_pli_count(worker: &Worker, producer: ProducerId) -> Result<u64> {
    let stats = worker.producer_stats(producer).await?;
    Ok(stats.iter().map(|stream| stream.pli_count).sum())
}

/// Waits until the SFU has sent `count` key frame requests to the producer.
async fn wait_for_plis(worker: &Worker, producer: ProducerId, count: u64) -> Result {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let sent = producer_pli_count(worker, producer).await?;
        if sent >= count {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{sent} PLIs sent to the producer, not {count}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next video frame a track receives: its number and whether it is a
/// key frame.
async fn next_frame(track: &mut RecvTrack) -> Result<(u16, bool)> {
    let packet = track.recv(Duration::from_secs(2)).await?;
    frame(&packet.payload)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

async fn check_viewer_downlink_loss() -> Result {
    let (worker, router, caps) = start().await?;
    let publisher = publish(&worker, router, &caps, None).await?;
    let producers = [publisher.video_producer, publisher.audio_producer];
    let relay = Relay::start(worker.local_addr(), Some(Lossy::ToPeer)).await?;
    let lossy = join(&worker, router, &caps, &producers, Some(&relay)).await?;
    let clean = join(&worker, router, &caps, &producers, None).await?;
    lossy.resume(&worker).await?;
    clean.resume(&worker).await?;
    let lossy_track = (lossy.tracks[0].ssrc, lossy.tracks[0].rtx_ssrc);
    let (lossy_video, clean_video) = (lossy.consumers[0].id, clean.consumers[0].id);

    let mut viewers = [lossy, clean];
    let logs = stream_to(&publisher, &mut viewers).await?;
    let (lossy_log, clean_log) = (&logs[0], &logs[1]);

    // The lossy viewer has every frame, the dropped ones included, and only
    // RTX could have brought those.
    assert_eq!(
        lossy_log.missing(),
        Vec::<u16>::new(),
        "lossy viewer: frames never received"
    );
    let first = lossy_log.first_sequence_number("lossy viewer");
    let (ssrc, rtx_ssrc) = lossy_track;
    let dropped: Vec<u16> = relay
        .stats
        .dropped(ssrc)
        .into_iter()
        .filter(|seq| seq.wrapping_sub(first) < FRAMES)
        .collect();
    assert!(
        dropped.len() >= usize::from(FRAMES) / DROP_EVERY as usize - 1,
        "the relay dropped {dropped:?} of the viewer's video"
    );
    let rtx_ssrc = rtx_ssrc.ok_or("the consumer has no RTX stream")?;
    let rtx_delivered = relay.stats.forwarded(rtx_ssrc);
    assert!(
        rtx_delivered >= dropped.len() as u64,
        "{rtx_delivered} RTX packets reached the viewer for {} losses",
        dropped.len()
    );
    // At least one retransmission per loss; in practice about ten times
    // that: webrtc-rs's NACK generator watches the media SSRC in its
    // interceptors, before RTX is restored, so it never learns of a repair
    // and asks again every 100 ms, and the SFU answers each time.
    let stats = worker.consumer_stats(lossy_video).await?;
    assert!(stats.nack_count > 0, "{stats:?}");
    assert!(
        stats.packets_retransmitted >= dropped.len() as u64,
        "{} frames lost: {stats:?}",
        dropped.len()
    );

    // The other viewer of the same producer lost nothing and was sent no
    // retransmission.
    assert_eq!(
        clean_log.missing(),
        Vec::<u16>::new(),
        "clean viewer: frames never received"
    );
    clean_log.first_sequence_number("clean viewer");
    assert_eq!(clean_log.raw_rtx, 0, "clean viewer got RTX");
    let stats = worker.consumer_stats(clean_video).await?;
    assert_eq!(
        (stats.nack_count, stats.packets_retransmitted),
        (0, 0),
        "{stats:?}"
    );
    Ok(())
}

async fn check_publisher_uplink_loss() -> Result {
    let (worker, router, caps) = start().await?;
    let relay = Relay::start(worker.local_addr(), Some(Lossy::ToSfu)).await?;
    let publisher = publish(&worker, router, &caps, Some(&relay)).await?;
    let producers = [publisher.video_producer, publisher.audio_producer];
    let mut viewers = [
        join(&worker, router, &caps, &producers, None).await?,
        join(&worker, router, &caps, &producers, None).await?,
    ];
    for viewer in &viewers {
        viewer.resume(&worker).await?;
    }

    let logs = stream_to(&publisher, &mut viewers).await?;

    let dropped: Vec<u16> = relay
        .stats
        .dropped(publisher.video.ssrc)
        .into_iter()
        .filter(|seq| seq.wrapping_sub(FIRST_SEQ) < FRAMES)
        .collect();
    assert!(
        dropped.len() >= usize::from(FRAMES) / DROP_EVERY as usize - 1,
        "the relay dropped {dropped:?} of the publisher's video"
    );
    let stats = worker.producer_stats(publisher.video_producer).await?;
    assert!(stats[0].nack_count > 0, "{stats:?}");
    assert!(relay.stats.nacks() > 0, "no NACK reached the publisher");
    // The publisher answers: the harness registers webrtc-rs's default
    // interceptors on every peer, senders included, and they include a NACK
    // responder (rtc-interceptor's `nack/responder.rs`) for local streams
    // that negotiated `nack`, answering with RTX as the stream has an RTX
    // SSRC and payload type. The SFU restores each RTX packet and forwards
    // it in its place in the sequence, so viewers get every frame.
    let rtx_ssrc = publisher.video.rtx_ssrc.ok_or("the publisher has no RTX")?;
    assert!(
        relay.stats.forwarded(rtx_ssrc) > 0,
        "the publisher sent no RTX"
    );
    assert!(
        stats[0].packets_retransmitted >= dropped.len() as u64,
        "{} frames lost: {stats:?}",
        dropped.len()
    );
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(
            log.missing(),
            Vec::<u16>::new(),
            "viewer {i}: frames never received"
        );
        log.first_sequence_number(&format!("viewer {i}"));
    }
    Ok(())
}

async fn check_key_frame_requests() -> Result {
    let (worker, router, caps) = start().await?;
    // A relay without loss, to see the PLIs reach the publisher.
    let relay = Relay::start(worker.local_addr(), None).await?;
    let publisher = publish(&worker, router, &caps, Some(&relay)).await?;
    let producer = publisher.video_producer;
    let scenario = async {
        // The stream is up and nobody has asked for a key frame.
        let deadline = Instant::now() + Duration::from_secs(2);
        while worker.producer_stats(producer).await?[0].packet_count == 0 {
            if Instant::now() >= deadline {
                return Err("the producer received nothing".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(producer_pli_count(&worker, producer).await?, 0);

        // A viewer joins: one PLI, and the viewer starts on the key frame
        // that answers it.
        let mut viewer = join(&worker, router, &caps, &[producer], None).await?;
        viewer.resume(&worker).await?;
        wait_for_plis(&worker, producer, 1).await?;
        let (_, key_frame) = next_frame(&mut viewer.tracks[0]).await?;
        assert!(key_frame, "a joining viewer starts on a key frame");
        tokio::time::sleep(KEY_FRAME_REQUEST_INTERVAL + Duration::from_millis(100)).await;
        assert_eq!(producer_pli_count(&worker, producer).await?, 1);
        assert_eq!(relay.stats.pli_count(), 1, "PLIs on the wire");

        // The viewer's consumer pauses and resumes: one more.
        let consumer = viewer.consumers[0].id;
        worker.pause_consumer(consumer).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        while viewer.tracks[0].packets.try_recv().is_ok() {}
        worker.resume_consumer(consumer).await?;
        wait_for_plis(&worker, producer, 2).await?;
        let (_, key_frame) = next_frame(&mut viewer.tracks[0]).await?;
        assert!(key_frame, "a resumed consumer restarts on a key frame");
        tokio::time::sleep(KEY_FRAME_REQUEST_INTERVAL + Duration::from_millis(100)).await;
        assert_eq!(producer_pli_count(&worker, producer).await?, 2);
        assert_eq!(relay.stats.pli_count(), 2, "PLIs on the wire");

        // Eight consumers resume at once: the requests are merged into at
        // most two PLIs in a second (one at once, one when the interval
        // ends), and every consumer starts on a key frame.
        let mut crowd = join(&worker, router, &caps, &[producer; 8], None).await?;
        tokio::time::sleep(KEY_FRAME_REQUEST_INTERVAL).await;
        let resumed_at = Instant::now();
        let mut resumes = tokio::task::JoinSet::new();
        for consumer in &crowd.consumers {
            let (worker, id) = (worker.clone(), consumer.id);
            resumes.spawn(async move { worker.resume_consumer(id).await });
        }
        while let Some(resumed) = resumes.join_next().await {
            resumed??;
        }
        for track in &mut crowd.tracks {
            let (_, key_frame) = next_frame(track).await?;
            assert!(key_frame, "a resumed consumer starts on a key frame");
        }
        tokio::time::sleep_until(resumed_at + Duration::from_secs(1)).await;
        let in_the_second: Vec<Instant> = relay
            .stats
            .plis()
            .into_iter()
            .filter(|at| *at >= resumed_at)
            .collect();
        assert!(
            (1..=2).contains(&in_the_second.len()),
            "{} PLIs within a second of eight resumes",
            in_the_second.len()
        );
        if let [first, second] = in_the_second[..] {
            // The relay stamps PLIs as it reads them, a socket hop after the
            // worker sent them, so scheduling jitter can shave a little off
            // the interval the worker kept.
            assert!(
                second - first >= KEY_FRAME_REQUEST_INTERVAL - RELAY_JITTER,
                "PLIs {:?} apart",
                second - first
            );
        }
        let sent = producer_pli_count(&worker, producer).await? - 2;
        assert_eq!(
            sent,
            in_the_second.len() as u64,
            "PLIs counted and on the wire"
        );

        // All of them came from the SFU's own requests, none from viewers.
        for consumer in viewer.consumers.iter().chain(&crowd.consumers) {
            assert_eq!(worker.consumer_stats(consumer.id).await?.pli_count, 0);
        }
        Result::Ok(())
    };
    tokio::select! {
        sent = stream(&publisher, Some(&relay.stats)) => {
            Err(sent.err().unwrap_or_else(|| "the publisher stopped".into()))
        }
        checked = scenario => checked,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_downlink_loss_is_repaired_with_rtx() {
    tokio::time::timeout(TEST_TIMEOUT, check_viewer_downlink_loss())
        .await
        .expect("test timed out")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_uplink_loss_is_nacked_and_repaired() {
    tokio::time::timeout(TEST_TIMEOUT, check_publisher_uplink_loss())
        .await
        .expect("test timed out")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_resumes_request_key_frames_throttled() {
    tokio::time::timeout(TEST_TIMEOUT, check_key_frame_requests())
        .await
        .expect("test timed out")
        .unwrap();
}
