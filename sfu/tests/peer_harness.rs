//! Proves the browser stand-in of `support::peer` before it is pointed at the
//! SFU: the "server" here is another webrtc-rs peer, set up the way a
//! mediasoup WebRtcTransport is (ICE-lite, fixed ICE credentials, a known
//! certificate and port), so that its transport parameters exist as
//! mediasoup's JSON before any SDP, exactly as the SFU's will. The harness
//! only ever sees that JSON; the fake server sees the harness's real local
//! SDP, standing in for the server's `connect`.

mod support;

use std::time::Duration;

use serde_json::json;
use sfu::rtp_parameters::{MediaKind, RtpCapabilities};
use support::peer::{
    default_codec_parameters, local_track, parse_vp8, rtp_packet, vp8_payload, write_opus,
    write_rtp_packet, write_vp8, ConsumerParameters, DtlsRole, Peer, PeerOptions, ReceivedRtp,
    RecvTransport, Result, RtpHeader, Sdp, SendTrack, SendTransport, TransportParameters, OPUS_TOC,
};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::crypto::{default_provider, SignatureScheme};
use webrtc::peer_connection::{MediaEngine, RTCCertificate, RTCSessionDescription};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

/// Every test is bounded by this, whatever hangs.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The capabilities of a mediasoup router configured with Opus and VP8, as
/// mediasoup-client's `device.load()` receives them.
fn router_capabilities() -> RtpCapabilities {
    let extension = |kind: &str, uri: &str, id: u8, direction: &str| {
        json!({
            "kind": kind, "uri": uri, "preferredId": id,
            "preferredEncrypt": false, "direction": direction
        })
    };
    serde_json::from_value(json!({
        "codecs": [
            {
                "kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 100,
                "clockRate": 48000, "channels": 2,
                "parameters": { "minptime": 10, "useinbandfec": 1 },
                "rtcpFeedback": [{ "type": "nack", "parameter": "" },
                                 { "type": "transport-cc", "parameter": "" }]
            },
            {
                "kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 101,
                "clockRate": 90000, "parameters": {},
                "rtcpFeedback": [{ "type": "nack", "parameter": "" },
                                 { "type": "nack", "parameter": "pli" },
                                 { "type": "ccm", "parameter": "fir" },
                                 { "type": "goog-remb", "parameter": "" },
                                 { "type": "transport-cc", "parameter": "" }]
            },
            {
                "kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 102,
                "clockRate": 90000, "parameters": { "apt": 101 }, "rtcpFeedback": []
            }
        ],
        "headerExtensions": [
            extension("audio", "urn:ietf:params:rtp-hdrext:sdes:mid", 1, "sendrecv"),
            extension("video", "urn:ietf:params:rtp-hdrext:sdes:mid", 1, "sendrecv"),
            extension("video", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", 2, "recvonly"),
            extension("video", "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", 3, "recvonly"),
            extension("audio", "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", 4, "sendrecv"),
            extension("video", "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", 4, "sendrecv"),
            extension("audio", "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", 5, "recvonly"),
            extension("video", "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", 5, "sendrecv"),
            extension("audio", "urn:ietf:params:rtp-hdrext:ssrc-audio-level", 10, "sendrecv"),
            extension("video", "urn:3gpp:video-orientation", 11, "sendrecv"),
            extension("video", "urn:ietf:params:rtp-hdrext:toffset", 12, "sendrecv")
        ]
    }))
    .expect("the literal is mediasoup's RtpCapabilities")
}

/// A webrtc-rs peer standing in for a mediasoup WebRtcTransport, with the
/// transport parameters mediasoup would return for it.
struct FakeServer {
    peer: Peer,
    parameters: TransportParameters,
}

impl FakeServer {
    /// `media_engine`: the codecs with the payload types the server uses
    /// (default: webrtc-rs's).
    async fn new(media_engine: Option<MediaEngine>) -> Result<FakeServer> {
        let provider = default_provider()?;
        let certificate = RTCCertificate::generate(
            provider.crypto(),
            SignatureScheme::EcdsaP256Sha256,
            Default::default(),
        )?;
        let fingerprint = certificate
            .get_fingerprints(provider.crypto())?
            .pop()
            .ok_or("a certificate has a fingerprint")?;

        // The port must be known before the peer binds it, as mediasoup's
        // is; the moment between releasing and re-binding it on loopback is
        // accepted.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let username_fragment = format!("srv{:08x}", rand::random::<u32>());
        let password = format!("{:032x}", rand::random::<u128>());

        let peer = Peer::new(PeerOptions {
            ice_lite: true,
            answering_dtls_role: Some(DtlsRole::Server),
            ice_credentials: Some((username_fragment.clone(), password.clone())),
            certificate: Some(certificate),
            udp_port: port,
            media_engine,
        })
        .await?;

        // What mediasoup's createWebRtcTransport answers (uppercase
        // fingerprint, `ip` and `address`, role auto).
        let parameters = serde_json::from_value(json!({
            "id": "transport-1",
            "iceRole": "controlled",
            "iceParameters": {
                "usernameFragment": username_fragment,
                "password": password,
                "iceLite": true
            },
            "iceCandidates": [{
                "foundation": "udpcandidate",
                "priority": 1076302079u32,
                "ip": "127.0.0.1",
                "address": "127.0.0.1",
                "protocol": "udp",
                "port": port,
                "type": "host"
            }],
            "dtlsParameters": {
                "role": "auto",
                "fingerprints": [{
                    "algorithm": fingerprint.algorithm,
                    "value": fingerprint.value.to_uppercase()
                }]
            },
            "sctpParameters": null
        }))?;
        Ok(FakeServer { peer, parameters })
    }
}

/// A media engine with a mediasoup router's payload types (Opus 100, VP8
/// 101, RTX 102), so that the receiving peer is shown non-default ones.
fn router_media_engine() -> Result<MediaEngine> {
    let mut media_engine = MediaEngine::default();
    for (kind, payload_type, mime_type, clock_rate, channels, fmtp) in [
        (
            "audio",
            100,
            "audio/opus",
            48_000,
            2,
            "minptime=10;useinbandfec=1",
        ),
        ("video", 101, "video/VP8", 90_000, 0, ""),
        ("video", 102, "video/rtx", 90_000, 0, "apt=101"),
    ] {
        let mut codec = default_codec_parameters(MediaEngine::register_codec);
        codec.payload_type = payload_type;
        codec.rtp_codec.mime_type = mime_type.to_owned();
        codec.rtp_codec.clock_rate = clock_rate;
        codec.rtp_codec.channels = channels;
        codec.rtp_codec.sdp_fmtp_line = fmtp.to_owned();
        media_engine.register_codec(codec, kind.into())?;
    }
    Ok(media_engine)
}

/// Calls `send(n)` every 20 ms until a packet arrives on `packets`: the
/// first packets after "connected" may still meet a peer whose SRTP is not
/// ready, as a browser's may.
async fn send_until_received<F, Fut>(
    packets: &mut mpsc::UnboundedReceiver<ReceivedRtp>,
    mut send: F,
) -> Result<(u16, ReceivedRtp)>
where
    F: FnMut(u16) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    for n in 0..250u16 {
        send(n).await?;
        if let Ok(Some(packet)) =
            tokio::time::timeout(Duration::from_millis(20), packets.recv()).await
        {
            return Ok((n, packet));
        }
    }
    Err("no packet arrived in 5 s".into())
}

/// The n-th VP8 frame: (sequence number, timestamp, key frame, body).
fn video_frame(n: u16) -> (u16, u32, bool, Vec<u8>) {
    (
        1000 + n,
        90_000 + u32::from(n) * 3000,
        n % 10 == 0,
        format!("video frame {n}").into_bytes(),
    )
}

fn audio_frame(n: u16) -> (u16, u32, Vec<u8>) {
    (
        2000 + n,
        48_000 + u32::from(n) * 960,
        format!("audio frame {n}").into_bytes(),
    )
}

async fn send_video(track: &SendTrack, n: u16) -> Result<()> {
    let (sequence_number, timestamp, keyframe, body) = video_frame(n);
    write_vp8(track, sequence_number, timestamp, keyframe, &body).await
}

async fn send_audio(track: &SendTrack, n: u16) -> Result<()> {
    let (sequence_number, timestamp, body) = audio_frame(n);
    write_opus(track, sequence_number, timestamp, &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_transport_publishes_to_a_server_known_only_by_its_mediasoup_parameters() {
    tokio::time::timeout(TEST_TIMEOUT, publish())
        .await
        .expect("test took too long")
        .expect("test failed");
}

async fn publish() -> Result<()> {
    let server = FakeServer::new(None).await?;
    let router_capabilities = router_capabilities();
    let mut client = SendTransport::new(&server.parameters, &router_capabilities).await?;

    // Two produce() calls, two offer/answer rounds, as mediasoup-client does.
    let video = client.produce(MediaKind::Video).await?;
    let audio = client.produce(MediaKind::Audio).await?;

    // The DTLS parameters for connect: the fingerprint of the offer, and the
    // client role mediasoup-client takes against a server in role auto.
    let offer = client.peer.local_description().await?;
    let offer_sdp = Sdp::parse(&offer)?;
    let dtls = client
        .dtls_parameters()
        .expect("known after produce")
        .clone();
    assert_eq!(dtls.role, Some(DtlsRole::Client));
    assert_eq!(Some(&dtls.fingerprints[0]), offer_sdp.dtls_fingerprint());
    let remote = Sdp::parse(
        &client
            .peer
            .pc
            .remote_description()
            .await
            .ok_or("the answer is set")?,
    )?;
    assert!(remote.ice_lite);
    assert_eq!(remote.media[0].setup.as_deref(), Some("passive"));

    // The rtpParameters produce() would send: codecs and ids from the offer,
    // SSRCs and CNAME from its a=ssrc lines.
    let video_section = offer_sdp.section(&video.mid).ok_or("video mid in offer")?;
    let params = &video.rtp_parameters;
    assert_eq!(params.mid.as_deref(), Some(video.mid.as_str()));
    assert_eq!(params.codecs.len(), 2, "VP8 and its RTX: {params:?}");
    assert_eq!(params.codecs[0].mime_type, "video/VP8");
    assert_eq!(params.codecs[1].mime_type, "video/rtx");
    assert_eq!(
        params.codecs[1].parameters["apt"].as_integer(),
        Some(i64::from(params.codecs[0].payload_type))
    );
    assert_eq!(params.encodings.len(), 1);
    assert_eq!(params.encodings[0].ssrc, Some(video.ssrc));
    assert_eq!(params.encodings[0].rtx.map(|rtx| rtx.ssrc), video.rtx_ssrc);
    assert!(video.rtx_ssrc.is_some());
    assert_eq!(params.rtcp.cname.as_deref(), video_section.cname());
    for extension in &params.header_extensions {
        assert!(video_section
            .extmaps
            .contains(&(extension.id, extension.uri.clone())));
    }
    assert_eq!(audio.rtp_parameters.codecs[0].mime_type, "audio/opus");
    assert_eq!(audio.rtp_parameters.codecs[0].channels, Some(2));
    assert_eq!(audio.rtp_parameters.encodings[0].ssrc, Some(audio.ssrc));

    // The engine's own checks accept them and map them onto the router.
    for track in [&video, &audio] {
        let json = serde_json::to_value(&track.rtp_parameters)?;
        let parsed = serde_json::from_value(json)?;
        sfu::ortc::validate_rtp_parameters(&parsed)?;
        sfu::ortc::get_producer_rtp_parameters_mapping(&parsed, &router_capabilities)?;
    }

    // connect(): the server learns the client's side.
    server
        .peer
        .pc
        .set_remote_description(RTCSessionDescription::offer(offer.sdp.clone())?)
        .await?;
    let answer = server.peer.pc.create_answer(None).await?;
    server.peer.pc.set_local_description(answer).await?;
    let mut video_packets = server.peer.route_ssrc(video.ssrc);
    let mut audio_packets = server.peer.route_ssrc(audio.ssrc);

    client.peer.wait_connected(CONNECT_TIMEOUT).await?;
    server.peer.wait_connected(CONNECT_TIMEOUT).await?;

    let (n, packet) = send_until_received(&mut video_packets, |n| send_video(&video, n)).await?;
    let (sequence_number, timestamp, keyframe, body) = video_frame(n);
    assert_eq!(packet.ssrc, video.ssrc);
    assert_eq!(packet.payload_type, video.payload_type);
    assert_eq!(packet.sequence_number, sequence_number);
    assert_eq!(packet.timestamp, timestamp);
    assert!(packet.marker);
    let mid_id = video
        .extension_id("urn:ietf:params:rtp-hdrext:sdes:mid")
        .ok_or("MID negotiated")?;
    assert!(packet
        .extensions
        .contains(&(mid_id, video.mid.as_bytes().to_vec())));
    let frame = parse_vp8(&packet.payload).ok_or("a VP8 payload")?;
    assert!(frame.start_of_frame);
    assert_eq!(frame.keyframe, keyframe);
    assert_eq!(frame.body, body.as_slice());

    let (n, packet) = send_until_received(&mut audio_packets, |n| send_audio(&audio, n)).await?;
    let (sequence_number, _, body) = audio_frame(n);
    assert_eq!(packet.ssrc, audio.ssrc);
    assert_eq!(packet.payload_type, audio.payload_type);
    assert_eq!(packet.sequence_number, sequence_number);
    assert_eq!(packet.payload[0], OPUS_TOC);
    assert_eq!(&packet.payload[1..], body.as_slice());

    client.peer.close().await?;
    server.peer.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_transport_receives_consumers_offered_from_their_mediasoup_parameters() {
    tokio::time::timeout(TEST_TIMEOUT, consume())
        .await
        .expect("test took too long")
        .expect("test failed");
}

async fn consume() -> Result<()> {
    let server = FakeServer::new(Some(router_media_engine()?)).await?;

    // The server's outgoing streams, on SSRCs of its choosing.
    let cname = "producer-cname";
    let (video_ssrc, video_rtx_ssrc, audio_ssrc) = (0x1111_0001, 0x1111_0002, 0x2222_0001);
    let server_video = local_track(
        MediaKind::Video,
        cname,
        "consumer-video",
        video_ssrc,
        Some(video_rtx_ssrc),
    );
    let server_audio = local_track(MediaKind::Audio, cname, "consumer-audio", audio_ssrc, None);
    for track in [&server_video, &server_audio] {
        server
            .peer
            .pc
            .add_transceiver_from_track(
                track.clone() as std::sync::Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    streams: vec![cname.to_owned()],
                    send_encodings: Vec::new(),
                }),
            )
            .await?;
    }
    let offer = server.peer.pc.create_offer(None).await?;
    server.peer.pc.set_local_description(offer).await?;
    let server_sdp = Sdp::parse(&server.peer.local_description().await?)?;
    let mid_of = |ssrc: u32| {
        server_sdp
            .media
            .iter()
            .find(|media| media.ssrcs.iter().any(|(other, _, _)| *other == ssrc))
            .and_then(|media| media.mid.clone())
            .expect("the server offers each of its SSRCs")
    };
    let mid_extension = |mid: &str| {
        let section = server_sdp.section(mid).expect("section of mid");
        section
            .extmaps
            .iter()
            .filter(|(_, uri)| uri == "urn:ietf:params:rtp-hdrext:sdes:mid")
            .map(|(id, uri)| json!({ "uri": uri, "id": id, "encrypt": false, "parameters": {} }))
            .collect::<Vec<_>>()
    };

    // What the server's consume() answers, field for field.
    let video_mid = mid_of(video_ssrc);
    let audio_mid = mid_of(audio_ssrc);
    let consumers: Vec<ConsumerParameters> = serde_json::from_value(json!([
        {
            "id": "consumer-video", "producerId": "producer-video", "kind": "video",
            "type": "simple", "producerPaused": false,
            "rtpParameters": {
                "mid": video_mid,
                "codecs": [
                    { "mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000,
                      "parameters": {},
                      "rtcpFeedback": [{ "type": "nack", "parameter": "" },
                                       { "type": "nack", "parameter": "pli" },
                                       { "type": "ccm", "parameter": "fir" }] },
                    { "mimeType": "video/rtx", "payloadType": 102, "clockRate": 90000,
                      "parameters": { "apt": 101 }, "rtcpFeedback": [] }
                ],
                "headerExtensions": mid_extension(&video_mid),
                "encodings": [{ "ssrc": video_ssrc, "rtx": { "ssrc": video_rtx_ssrc } }],
                "rtcp": { "cname": cname, "reducedSize": true }
            }
        },
        {
            "id": "consumer-audio", "producerId": "producer-audio", "kind": "audio",
            "rtpParameters": {
                "mid": audio_mid,
                "codecs": [
                    { "mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000,
                      "channels": 2, "parameters": { "minptime": 10, "useinbandfec": 1 },
                      "rtcpFeedback": [] }
                ],
                "headerExtensions": mid_extension(&audio_mid),
                "encodings": [{ "ssrc": audio_ssrc }],
                "rtcp": { "cname": cname, "reducedSize": true }
            }
        }
    ]))?;

    let mut client = RecvTransport::new(&server.parameters).await?;
    let mut tracks = client.consume_many(&consumers).await?;
    let mut audio = tracks.pop().ok_or("two tracks")?;
    let mut video = tracks.pop().ok_or("two tracks")?;
    assert_eq!((video.ssrc, video.payload_type), (video_ssrc, 101));
    assert_eq!(video.rtx_ssrc, Some(video_rtx_ssrc));
    assert_eq!((audio.ssrc, audio.payload_type), (audio_ssrc, 100));

    // The DTLS parameters for connect: the answer's fingerprint and the
    // role of its a=setup (webrtc-rs, like Chrome, answers active).
    let answer = client.peer.local_description().await?;
    let answer_sdp = Sdp::parse(&answer)?;
    let dtls = client
        .dtls_parameters()
        .expect("known after consume")
        .clone();
    assert_eq!(dtls.role, Some(DtlsRole::Client));
    assert_eq!(Some(&dtls.fingerprints[0]), answer_sdp.dtls_fingerprint());
    // The peer accepted the server's payload types.
    let video_answer = answer_sdp.section(&video.mid).ok_or("video answered")?;
    assert_eq!(video_answer.codecs[0].payload_type, 101);

    // connect(): the server learns the client's side.
    server
        .peer
        .pc
        .set_remote_description(RTCSessionDescription::answer(answer.sdp.clone())?)
        .await?;
    client.peer.wait_connected(CONNECT_TIMEOUT).await?;
    server.peer.wait_connected(CONNECT_TIMEOUT).await?;

    let (n, packet) = send_until_received(&mut video.packets, |n| {
        let (sequence_number, timestamp, keyframe, body) = video_frame(n);
        let header = RtpHeader {
            payload_type: 101,
            marker: true,
            sequence_number,
            timestamp,
            ssrc: video_ssrc,
        };
        let packet = rtp_packet(&header, &[], &vp8_payload(n, keyframe, &body));
        let track = server_video.clone();
        async move { write_rtp_packet(&track, &packet?).await }
    })
    .await?;
    let (sequence_number, timestamp, keyframe, body) = video_frame(n);
    assert_eq!((packet.ssrc, packet.payload_type), (video_ssrc, 101));
    assert_eq!(packet.sequence_number, sequence_number);
    assert_eq!(packet.timestamp, timestamp);
    let frame = parse_vp8(&packet.payload).ok_or("a VP8 payload")?;
    assert_eq!(frame.picture_id, Some(n));
    assert_eq!(frame.keyframe, keyframe);
    assert_eq!(frame.body, body.as_slice());

    let (n, packet) = send_until_received(&mut audio.packets, |n| {
        let (sequence_number, timestamp, body) = audio_frame(n);
        let header = RtpHeader {
            payload_type: 100,
            marker: false,
            sequence_number,
            timestamp,
            ssrc: audio_ssrc,
        };
        let packet = rtp_packet(&header, &[], &support::peer::opus_payload(&body));
        let track = server_audio.clone();
        async move { write_rtp_packet(&track, &packet?).await }
    })
    .await?;
    let (sequence_number, _, body) = audio_frame(n);
    assert_eq!((packet.ssrc, packet.payload_type), (audio_ssrc, 100));
    assert_eq!(packet.sequence_number, sequence_number);
    assert_eq!(&packet.payload[1..], body.as_slice());

    client.peer.close().await?;
    server.peer.close().await?;
    Ok(())
}

#[test]
fn vp8_payloads_carry_key_frame_bit_picture_id_and_body() {
    for (picture_id, keyframe) in [(0x1234, true), (7, false)] {
        let payload = vp8_payload(picture_id, keyframe, b"body");
        let frame = parse_vp8(&payload).expect("a VP8 payload");
        assert_eq!(frame.picture_id, Some(picture_id));
        assert!(frame.start_of_frame);
        assert_eq!(frame.keyframe, keyframe);
        assert_eq!(frame.body, b"body");
    }
}

#[test]
fn rtp_packets_pad_one_byte_header_extensions_to_words() {
    let header = RtpHeader {
        payload_type: 101,
        marker: true,
        sequence_number: 0x0102,
        timestamp: 0x0304_0506,
        ssrc: 0x0708_090a,
    };
    let packet = rtp_packet(&header, &[(1, b"0")], &[0xaa]).expect("fits");
    assert_eq!(
        packet,
        [
            0x90, 0xe5, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, // fixed
            0xbe, 0xde, 0x00, 0x01, 0x10, b'0', 0x00, 0x00, // one-byte extensions
            0xaa,
        ]
    );
    assert!(rtp_packet(&header, &[(15, b"x")], &[]).is_err());
}
