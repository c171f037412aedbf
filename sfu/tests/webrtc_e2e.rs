//! The SFU end to end against an independent WebRTC implementation
//! (webrtc-rs, driven as mediasoup-client drives a browser): a publisher
//! sends real VP8 and Opus RTP over ICE, DTLS and SRTP; several viewers
//! consume it through the real worker thread and UDP socket, and what they
//! decrypt is what was sent (modulo SSRC/sequence/timestamp rewriting).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use sfu::rtp_parameters::{MediaKind, RtpCapabilities, RtpCodecCapability};
use sfu::transport::{DtlsParameters, SrtpProfile, WebRtcTransportOptions};
use sfu::{ConsumerOptions, ProducerOptions, RouterId, Worker, WorkerEvent, WorkerSettings};
use support::peer::{
    parse_vp8, write_opus, write_vp8, ConsumerParameters, RecvTrack, RecvTransport, SendTrack,
    SendTransport, TransportParameters, OPUS_TOC,
};
use tokio::sync::mpsc;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TEST_TIMEOUT: Duration = Duration::from_secs(40);

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn media_codecs() -> Vec<RtpCodecCapability> {
    serde_json::from_value(json!([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}
    ]))
    .unwrap()
}

struct Setup {
    profile: Option<SrtpProfile>,
    /// The SFU insists on being the DTLS client (the browser is server).
    sfu_dtls_client: bool,
}

fn transport_options(setup: &Setup) -> WebRtcTransportOptions {
    let mut options = WebRtcTransportOptions::default();
    if let Some(p) = setup.profile {
        options.srtp_profiles = vec![p];
    }
    options
}

/// The server's transport parameters as mediasoup-client receives them.
fn client_view(info: &sfu::WebRtcTransportInfo, setup: &Setup) -> TransportParameters {
    let mut value = serde_json::to_value(info).unwrap();
    if setup.sfu_dtls_client {
        value["dtlsParameters"]["role"] = json!("client");
    }
    serde_json::from_value(value).unwrap()
}

fn sfu_dtls(params: &support::peer::DtlsParameters) -> DtlsParameters {
    serde_json::from_value(serde_json::to_value(params).unwrap()).unwrap()
}

struct Publisher {
    _transport: SendTransport,
    video: SendTrack,
    audio: SendTrack,
    video_producer: sfu::ProducerId,
    audio_producer: sfu::ProducerId,
}

async fn publish(
    worker: &Worker,
    router: RouterId,
    caps: &RtpCapabilities,
    setup: &Setup,
) -> Result<Publisher> {
    let info = worker
        .create_webrtc_transport_with(router, transport_options(setup))
        .await?;
    let mut transport = SendTransport::new(&client_view(&info, setup), caps).await?;
    let mut tracks = transport
        .produce_many(&[MediaKind::Video, MediaKind::Audio])
        .await?;
    let audio = tracks.pop().unwrap();
    let video = tracks.pop().unwrap();
    worker
        .connect_webrtc_transport(info.id, sfu_dtls(transport.dtls_parameters().unwrap()))
        .await?;
    let video_producer = worker
        .produce(
            info.id,
            ProducerOptions::new(MediaKind::Video, video.rtp_parameters.clone()),
        )
        .await?
        .id;
    let audio_producer = worker
        .produce(
            info.id,
            ProducerOptions::new(MediaKind::Audio, audio.rtp_parameters.clone()),
        )
        .await?
        .id;
    transport.peer.wait_connected(CONNECT_TIMEOUT).await?;
    Ok(Publisher {
        _transport: transport,
        video,
        audio,
        video_producer,
        audio_producer,
    })
}

struct Viewer {
    _transport: RecvTransport,
    video: RecvTrack,
    audio: RecvTrack,
}

async fn view(
    worker: &Worker,
    router: RouterId,
    caps: &RtpCapabilities,
    producers: [sfu::ProducerId; 2],
    setup: &Setup,
) -> Result<Viewer> {
    let info = worker
        .create_webrtc_transport_with(router, transport_options(setup))
        .await?;
    let mut transport = RecvTransport::new(&client_view(&info, setup)).await?;
    let mut params = Vec::new();
    let mut ids = Vec::new();
    for producer in producers {
        let consumer = worker
            .consume(info.id, ConsumerOptions::new(producer, caps.clone()))
            .await?;
        ids.push(consumer.id);
        params.push(serde_json::from_value::<ConsumerParameters>(
            serde_json::to_value(&consumer)?,
        )?);
    }
    let mut tracks = transport.consume_many(&params).await?;
    worker
        .connect_webrtc_transport(info.id, sfu_dtls(transport.dtls_parameters().unwrap()))
        .await?;
    for id in ids {
        worker.resume_consumer(id).await?;
    }
    transport.peer.wait_connected(CONNECT_TIMEOUT).await?;
    let audio = tracks.pop().unwrap();
    let video = tracks.pop().unwrap();
    Ok(Viewer {
        _transport: transport,
        video,
        audio,
    })
}

fn video_body(n: u16) -> Vec<u8> {
    format!("video frame {n:05}").into_bytes()
}

fn audio_body(n: u16) -> Vec<u8> {
    format!("audio {n:05}").into_bytes()
}

/// Sends frames until every viewer has what it needs: for each viewer, a
/// run of frames whose bodies match and whose sequence numbers are
/// consecutive.
async fn stream_and_check(publisher: &Publisher, viewers: &mut [Viewer]) -> Result {
    let frames: u16 = 120;
    let sender = async {
        for n in 0..frames {
            let ts = 90_000 + u32::from(n) * 3000;
            write_vp8(&publisher.video, 1000 + n, ts, n % 30 == 0, &video_body(n)).await?;
            write_opus(
                &publisher.audio,
                5000 + n,
                48_000 + u32::from(n) * 960,
                &audio_body(n),
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Result::Ok(())
    };
    let receivers = async {
        let mut summaries = Vec::new();
        for v in viewers.iter_mut() {
            let mut video: HashMap<u16, (u16, u32)> = HashMap::new();
            let mut audio = 0usize;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
            while (video.len() < 30 || audio < 30) && tokio::time::Instant::now() < deadline {
                tokio::select! {
                    Some(p) = v.video.packets.recv() => {
                        if p.ssrc != v.video.ssrc { continue; }
                        let frame = parse_vp8(&p.payload).ok_or("not VP8")?;
                        let text = String::from_utf8(frame.body.to_vec())?;
                        let n: u16 = text.trim_start_matches("video frame ").parse()?;
                        assert_eq!(frame.body, &video_body(n)[..], "video payload intact");
                        assert_eq!(p.payload_type, v.video.payload_type);
                        video.insert(n, (p.sequence_number, p.timestamp));
                    }
                    Some(p) = v.audio.packets.recv() => {
                        assert_eq!(p.ssrc, v.audio.ssrc);
                        assert_eq!(p.payload[0], OPUS_TOC);
                        let text = std::str::from_utf8(&p.payload[1..])?;
                        assert!(text.starts_with("audio "), "audio payload intact: {text}");
                        audio += 1;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            summaries.push((video, audio));
        }
        Result::Ok(summaries)
    };
    let (sent, summaries) = tokio::join!(sender, receivers);
    sent?;
    for (i, (video, audio)) in summaries?.into_iter().enumerate() {
        assert!(
            video.len() >= 30,
            "viewer {i} got {} video frames",
            video.len()
        );
        assert!(audio >= 30, "viewer {i} got {audio} audio packets");
        // Rewritten sequence numbers and timestamps keep the sender's spacing.
        let mut frames: Vec<_> = video.into_iter().collect();
        frames.sort();
        for w in frames.windows(2) {
            let ((n0, (s0, t0)), (n1, (s1, t1))) = (w[0], w[1]);
            assert_eq!(s1.wrapping_sub(s0), n1 - n0, "viewer {i}: sequence gap");
            assert_eq!(
                t1.wrapping_sub(t0),
                u32::from(n1 - n0) * 3000,
                "viewer {i}: timestamp spacing"
            );
        }
    }
    Ok(())
}

async fn run(setup: Setup, viewers: usize) -> Result {
    let (tx, _events) = mpsc::unbounded_channel::<WorkerEvent>();
    let worker = Worker::new(WorkerSettings::new("127.0.0.1".parse().unwrap(), 0), tx)?;
    let (router, caps) = worker.create_router(media_codecs()).await?;
    let publisher = publish(&worker, router, &caps, &setup).await?;
    let mut all = Vec::new();
    for _ in 0..viewers {
        let ids = [publisher.video_producer, publisher.audio_producer];
        all.push(view(&worker, router, &caps, ids, &setup).await?);
    }
    stream_and_check(&publisher, &mut all).await?;
    let stats = worker.producer_stats(publisher.video_producer).await?;
    assert!(stats[0].packet_count >= 30, "{stats:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_viewers_receive_what_the_publisher_sends() {
    tokio::time::timeout(
        TEST_TIMEOUT,
        run(
            Setup {
                profile: None,
                sfu_dtls_client: false,
            },
            3,
        ),
    )
    .await
    .expect("test timed out")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_with_aes_cm_hmac_sha1_80() {
    tokio::time::timeout(
        TEST_TIMEOUT,
        run(
            Setup {
                profile: Some(SrtpProfile::AesCm128HmacSha1_80),
                sfu_dtls_client: false,
            },
            2,
        ),
    )
    .await
    .expect("test timed out")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_when_the_sfu_is_the_dtls_client() {
    tokio::time::timeout(
        TEST_TIMEOUT,
        run(
            Setup {
                profile: Some(SrtpProfile::AeadAes128Gcm),
                sfu_dtls_client: true,
            },
            2,
        ),
    )
    .await
    .expect("test timed out")
    .unwrap();
}

/// A producer of one worker, piped in memory to a router of another
/// worker, reaches viewers there; their key frame requests reach the
/// publisher through the pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_on_another_worker_receive_through_pipe_to_router() {
    let run = async {
        let setup = Setup {
            profile: None,
            sfu_dtls_client: false,
        };
        let (tx, _events) = mpsc::unbounded_channel::<WorkerEvent>();
        let origin = Worker::new(
            WorkerSettings::new("127.0.0.1".parse().unwrap(), 0),
            tx.clone(),
        )?;
        let edge = Worker::new(WorkerSettings::new("127.0.0.1".parse().unwrap(), 0), tx)?;
        let (origin_router, caps) = origin.create_router(media_codecs()).await?;
        let (edge_router, edge_caps) = edge.create_router(media_codecs()).await?;
        let publisher = publish(&origin, origin_router, &caps, &setup).await?;
        let video = origin
            .pipe_to_router(publisher.video_producer, &edge, edge_router)
            .await?;
        let audio = origin
            .pipe_to_router(publisher.audio_producer, &edge, edge_router)
            .await?;
        let mut viewers = vec![
            view(&edge, edge_router, &edge_caps, [video, audio], &setup).await?,
            view(&edge, edge_router, &edge_caps, [video, audio], &setup).await?,
        ];
        stream_and_check(&publisher, &mut viewers).await?;
        let stats = origin.producer_stats(publisher.video_producer).await?;
        assert!(
            stats[0].pli_count >= 1,
            "edge viewers' key frame requests reach the origin: {stats:?}"
        );
        // Closing the origin producer closes the piped one and its consumers.
        origin.close_producer(publisher.video_producer).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            edge.producer_stats(video).await.is_err(),
            "piped producer closed"
        );
        Result::Ok(())
    };
    tokio::time::timeout(TEST_TIMEOUT, run)
        .await
        .expect("test timed out")
        .unwrap();
}
