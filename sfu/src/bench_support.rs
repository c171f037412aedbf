//! Harnesses for the benchmarks in `benches/`, which cannot reach the
//! crate-private per-packet objects. Everything here is built from the real
//! [`Producer`], [`Consumer`] and [`SrtpSession`] and calls the same methods
//! the worker's engine calls on the packet path; nothing is reimplemented.
//! Not part of the API: hidden from the docs, no stability promised.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::ids::{ConsumerId, ProducerId};
use crate::ortc;
use crate::router::consumer::{Consumer, ConsumerNeeds};
use crate::router::producer::{Producer, Received};
use crate::router::{ConsumerOptions, ProducerOptions};
use crate::rtp::RtpPacketMut;
use crate::rtp_parameters::{
    header_extension_uri as uri, MediaKind, RtpCapabilities, RtpCodecCapability, RtpParameters,
};
use crate::transport::{SrtpProfile, SrtpSession};

/// Size of every RTP packet the harnesses produce, before SRTP.
pub const PACKET_LEN: usize = 1200;
/// The media SSRC of the simulated sender.
const SENDER_SSRC: u32 = 0x1234_5678;
/// RTP clock ticks between packets (one packet per millisecond at 90 kHz).
const TS_STEP: u32 = 90;
const PACKET_INTERVAL: Duration = Duration::from_millis(1);
/// More than a consumer's NACK store holds (512 packets).
const WARM_UP_PACKETS: usize = 600;

/// An SRTP session keyed with fixed master keys (both directions use the
/// same key, so a session can unprotect what an identical one protected).
pub fn srtp_session(profile: SrtpProfile) -> SrtpSession {
    let provider = rtc_crypto::default_provider().expect("the ring crypto provider is compiled in");
    let key: Vec<u8> = (0..profile.master_key_len()).map(|i| i as u8).collect();
    let salt: Vec<u8> = (0..profile.master_salt_len())
        .map(|i| 0xA0 ^ i as u8)
        .collect();
    SrtpSession::from_master_keys(
        profile,
        (&key, &salt),
        (&key, &salt),
        // The production default of WebRtcTransportOptions.
        128,
        provider.crypto(),
    )
    .expect("keys and salts have the profile's lengths")
}

/// A [`PACKET_LEN`]-byte VP8 RTP packet as a browser sends it: 28-byte
/// header with three one-byte extensions (mid, abs-send-time,
/// transport-wide sequence number), a VP8 descriptor with a 15-bit picture
/// id, and filler payload. `key_frame` sets the VP8 key frame bit.
pub fn sender_packet(seq: u16, timestamp: u32, key_frame: bool) -> Vec<u8> {
    sender_packet_with_ids(seq, timestamp, key_frame, SenderExtIds::default())
}

/// The sender's header extension ids.
#[derive(Debug, Clone, Copy)]
struct SenderExtIds {
    mid: u8,
    abs_send_time: u8,
    transport_cc: u8,
}

impl Default for SenderExtIds {
    fn default() -> Self {
        // mediasoup's (and so a mediasoup-client browser's) video ids.
        SenderExtIds {
            mid: 1,
            abs_send_time: 4,
            transport_cc: 5,
        }
    }
}

fn sender_packet_with_ids(seq: u16, timestamp: u32, key_frame: bool, ids: SenderExtIds) -> Vec<u8> {
    let mut p = Vec::with_capacity(PACKET_LEN);
    p.extend_from_slice(&[0x90, 96]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&SENDER_SSRC.to_be_bytes());
    // One-byte extension block: 3 elements in 9 bytes, padded to 12.
    p.extend_from_slice(&[0xBE, 0xDE, 0, 3]);
    p.extend_from_slice(&[ids.mid << 4, b'0']);
    p.extend_from_slice(&[(ids.abs_send_time << 4) | 2, 0x01, 0x02, 0x03]);
    p.extend_from_slice(&[(ids.transport_cc << 4) | 1]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0]);
    // VP8 descriptor: X, S; I with a 15-bit picture id; then the VP8
    // payload header, whose low bit is 0 on a key frame.
    let picture_id = (seq & 0x7FFF) | 0x8000;
    p.extend_from_slice(&[0x90, 0x80]);
    p.extend_from_slice(&picture_id.to_be_bytes());
    p.push(if key_frame { 0x00 } else { 0x01 });
    p.resize(PACKET_LEN, 0xAB);
    p
}

fn router_capabilities() -> RtpCapabilities {
    let codecs: Vec<RtpCodecCapability> = serde_json::from_value(serde_json::json!([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}
    ]))
    .expect("static codec list parses");
    ortc::generate_router_rtp_capabilities(&codecs).expect("opus and VP8 are supported")
}

/// What mediasoup-client in Chrome produces for a single-encoding VP8
/// track with RTX, using the router's extension ids.
fn producer_parameters(caps: &RtpCapabilities) -> (RtpParameters, SenderExtIds) {
    let id_of = |u: &str| {
        caps.header_extensions
            .iter()
            .find(|e| e.uri == u && e.kind == MediaKind::Video)
            .map(|e| e.preferred_id)
            .expect("the router offers the extension for video")
    };
    let ids = SenderExtIds {
        mid: id_of(uri::MID),
        abs_send_time: id_of(uri::ABS_SEND_TIME),
        transport_cc: id_of(uri::TRANSPORT_WIDE_CC_01),
    };
    let params = serde_json::from_value(serde_json::json!({
        "mid": "0",
        "codecs": [
            {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
             "rtcpFeedback": [{"type": "goog-remb"}, {"type": "transport-cc"},
                              {"type": "ccm", "parameter": "fir"}, {"type": "nack"},
                              {"type": "nack", "parameter": "pli"}]},
            {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
             "parameters": {"apt": 96}}
        ],
        "headerExtensions": [
            {"uri": uri::MID, "id": ids.mid},
            {"uri": uri::ABS_SEND_TIME, "id": ids.abs_send_time},
            {"uri": uri::TRANSPORT_WIDE_CC_01, "id": ids.transport_cc}
        ],
        "encodings": [{"ssrc": SENDER_SSRC, "rtx": {"ssrc": SENDER_SSRC + 1}}],
        "rtcp": {"cname": "bench"}
    }))
    .expect("static producer parameters parse");
    (params, ids)
}

/// One consumer and the SRTP session of its transport.
struct Leg {
    consumer: Consumer,
    srtp: SrtpSession,
    destination: SocketAddr,
}

/// One VP8 producer fanned out to N resumed consumers, each on its own
/// transport (own SRTP session and remote address): the engine's
/// `fan_out` per-packet path without the maps and the socket driver.
pub struct FanOut {
    producer: Producer,
    legs: Vec<Leg>,
    ext_ids: SenderExtIds,
    /// The next packet as the sender sends it.
    template: Vec<u8>,
    /// The producer rewrites in place here (the transport's decrypted copy).
    input: Vec<u8>,
    /// The engine's per-consumer scratch buffer.
    scratch: Vec<u8>,
    /// The protected datagram, reused.
    datagram: Vec<u8>,
    /// For [`FanOut::forward_only`]: one packet already in the router's
    /// namespace, and what the producer said about it.
    routed: Vec<u8>,
    routed_rx: Option<Received>,
    seq: u16,
    timestamp: u32,
    now: Instant,
}

impl FanOut {
    /// A producer and `consumers` consumers whose transports protect with
    /// `profile`. The consumers are resumed and have had their first key
    /// frame, so every later packet is forwarded to each of them.
    pub fn new(consumers: usize, profile: SrtpProfile) -> FanOut {
        let caps = router_capabilities();
        let (params, ext_ids) = producer_parameters(&caps);
        let producer = Producer::new(
            ProducerId::new(),
            ProducerOptions::new(MediaKind::Video, params),
            &caps,
        )
        .expect("the producer parameters match the router");
        let legs = (0..consumers)
            .map(|i| {
                let options = ConsumerOptions::new(producer.id, caps.clone());
                let mut consumer =
                    Consumer::new(ConsumerId::new(), &producer, &options, i.to_string())
                        .expect("the device can consume the producer");
                let _ = consumer.set_paused(false);
                Leg {
                    consumer,
                    srtp: srtp_session(profile),
                    destination: SocketAddr::from((Ipv4Addr::LOCALHOST, 9)),
                }
            })
            .collect();
        let mut fan_out = FanOut {
            producer,
            legs,
            ext_ids,
            template: Vec::with_capacity(PACKET_LEN),
            input: vec![0; 1500],
            scratch: vec![0; 1500],
            datagram: Vec::with_capacity(1600),
            routed: Vec::new(),
            routed_rx: None,
            seq: 1000,
            timestamp: 90_000,
            now: Instant::now(),
        };
        // The first key frame starts every consumer.
        fan_out.template = sender_packet_with_ids(fan_out.seq, fan_out.timestamp, true, ext_ids);
        let sent = fan_out.fan_out(|_, _| {});
        assert_eq!(sent, consumers, "every consumer forwards the key frame");
        fan_out.template = sender_packet_with_ids(fan_out.seq, fan_out.timestamp, false, ext_ids);
        fan_out
    }

    /// Runs enough packets through every consumer for its NACK store to
    /// wrap, so that later packets meet the steady state (every slot's
    /// pages touched) rather than first-touch page faults.
    pub fn warm_up(&mut self) {
        for _ in 0..WARM_UP_PACKETS {
            self.fan_out(|_, _| {});
        }
    }

    /// Number of consumers.
    pub fn consumers(&self) -> usize {
        self.legs.len()
    }

    /// Sends consumer `i`'s datagrams to `destination`.
    pub fn set_destination(&mut self, i: usize, destination: SocketAddr) {
        self.legs[i].destination = destination;
    }

    /// Advances the sender to its next packet: sequence number, timestamp,
    /// transport-wide sequence number and clock.
    fn next_packet(&mut self) {
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(TS_STEP);
        self.now += PACKET_INTERVAL;
        let mut p =
            RtpPacketMut::parse(&mut self.template).expect("the template is a valid RTP packet");
        p.set_sequence_number(self.seq);
        p.set_timestamp(self.timestamp);
        let _ = p.set_extension(self.ext_ids.transport_cc, &self.seq.to_be_bytes());
    }

    /// The producer's half: the next sender packet, copied into the
    /// transport's buffer and rewritten in place by
    /// `Producer::receive_rtp`. Returns the routed length.
    pub fn receive(&mut self) -> Option<usize> {
        self.next_packet();
        let len = self.template.len();
        self.input[..len].copy_from_slice(&self.template);
        self.producer
            .receive_rtp(self.now, &mut self.input, len)
            .map(|rx| rx.len)
    }

    /// The whole in-process path for one sender packet: producer receive
    /// once, then for each consumer `Consumer::forward` into the scratch
    /// buffer and `SrtpSession::protect_rtp_into` a reused datagram buffer
    /// (the worker reuses the buffers its driver has sent), each protected
    /// datagram handed to `transmit` with its destination (where the
    /// transport would queue an `Output::Transmit`; a caller keeping it
    /// takes it out of the `Vec`). Returns the number of datagrams.
    pub fn fan_out(&mut self, mut transmit: impl FnMut(SocketAddr, &mut Vec<u8>)) -> usize {
        self.next_packet();
        let len = self.template.len();
        self.input[..len].copy_from_slice(&self.template);
        let Some(rx) = self.producer.receive_rtp(self.now, &mut self.input, len) else {
            return 0;
        };
        let packet = &self.input[..rx.len];
        let mut sent = 0;
        for leg in &mut self.legs {
            let mut needs = ConsumerNeeds::default();
            let Some(n) =
                leg.consumer
                    .forward(self.now, &rx, packet, &mut self.scratch, &mut needs)
            else {
                continue;
            };
            if leg
                .srtp
                .protect_rtp_into(&self.scratch[..n], &mut self.datagram)
                .is_ok()
            {
                transmit(leg.destination, &mut self.datagram);
                sent += 1;
            }
        }
        sent
    }

    /// `Consumer::forward` alone (the RTP rewrite: SSRC, sequence number,
    /// timestamp, extension filtering, and the copy into the NACK store) of
    /// consumer 0, on a packet already in the router's namespace whose
    /// sequence number and timestamp advance each call. Returns the length.
    pub fn forward_only(&mut self) -> Option<usize> {
        if self.routed_rx.is_none() {
            self.next_packet();
            let len = self.template.len();
            self.input[..len].copy_from_slice(&self.template);
            let rx = self.producer.receive_rtp(self.now, &mut self.input, len)?;
            self.routed = self.input[..rx.len].to_vec();
            self.routed_rx = Some(rx);
        }
        let rx = self.routed_rx?;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(TS_STEP);
        self.now += PACKET_INTERVAL;
        {
            let mut p = RtpPacketMut::parse(&mut self.routed).ok()?;
            p.set_sequence_number(self.seq);
            p.set_timestamp(self.timestamp);
        }
        let leg = self.legs.first_mut()?;
        let mut needs = ConsumerNeeds::default();
        leg.consumer
            .forward(self.now, &rx, &self.routed, &mut self.scratch, &mut needs)
    }
}
