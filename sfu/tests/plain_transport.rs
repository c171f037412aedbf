//! PlainTransport through the real worker: a tool (here a plain UDP
//! socket, as GStreamer or FFmpeg would be) sends RTP into one plain
//! transport and receives the consumer's stream from another, in clear and
//! with SRTP keys exchanged as mediasoup's `srtpParameters`.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use sfu::rtp::RtpPacket;
use sfu::rtp_parameters::{MediaKind, RtpCodecCapability, RtpParameters};
use sfu::transport::{SrtpProfile, SrtpSession};
use sfu::{
    ConsumerOptions, PlainConnectParameters, PlainTransportOptions, ProducerOptions,
    SrtpParameters, Worker, WorkerEvent, WorkerSettings,
};
use tokio::sync::mpsc;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn codecs() -> Vec<RtpCodecCapability> {
    serde_json::from_value(json!([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}
    ]))
    .unwrap()
}

fn vp8_params() -> RtpParameters {
    serde_json::from_value(json!({
        "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                    "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]}],
        "encodings": [{"ssrc": 22222222}],
        "rtcp": {"cname": "tool"}
    }))
    .unwrap()
}

fn vp8_packet(seq: u16, key: bool) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&22222222u32.to_be_bytes());
    // VP8 descriptor (S=1, PID=0) and a frame header whose P bit says key/delta.
    p.extend_from_slice(&[0x10, if key { 0x00 } else { 0x01 }, 0x9d, 0x01, 0x2a]);
    p.extend_from_slice(format!("frame {seq}").as_bytes());
    p
}

fn key_of(params: &SrtpParameters) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(&params.key_base64)
        .unwrap()
}

fn crypto() -> std::sync::Arc<dyn rtc_crypto::RTCCryptoProvider> {
    rtc_crypto::default_provider().unwrap()
}

async fn run(srtp: bool) -> Result {
    let (tx, _events) = mpsc::unbounded_channel::<WorkerEvent>();
    let worker = Worker::new(WorkerSettings::new("127.0.0.1".parse()?, 0), tx)?;
    let (router, caps) = worker.create_router(codecs()).await?;
    let mut options = PlainTransportOptions::default();
    options.enable_srtp = srtp;
    let mut sender_options = options.clone();
    sender_options.comedia = true;

    let tool_in = UdpSocket::bind("127.0.0.1:0")?;
    let tool_out = UdpSocket::bind("127.0.0.1:0")?;
    tool_out.set_read_timeout(Some(Duration::from_millis(200)))?;
    tool_in.set_read_timeout(Some(Duration::from_millis(20)))?;

    // The tool's own SRTP keys, one per direction.
    let suite = SrtpProfile::AesCm128HmacSha1_80;
    let tool_key: Vec<u8> = (0..30u8).collect();
    let tool_params = SrtpParameters {
        crypto_suite: suite,
        key_base64: base64::engine::general_purpose::STANDARD.encode(&tool_key),
    };

    let producer_side = worker
        .create_plain_transport(router, sender_options)
        .await?;
    let mut connect = PlainConnectParameters::default();
    if srtp {
        connect.srtp_parameters = Some(tool_params.clone());
    }
    worker
        .connect_plain_transport(producer_side.id, connect)
        .await?;
    let producer = worker
        .produce(
            producer_side.id,
            ProducerOptions::new(MediaKind::Video, vp8_params()),
        )
        .await?;

    let consumer_side = worker.create_plain_transport(router, options).await?;
    let out_addr = tool_out.local_addr()?;
    let mut connect = PlainConnectParameters::default();
    connect.ip = Some(out_addr.ip());
    connect.port = Some(out_addr.port());
    if srtp {
        connect.srtp_parameters = Some(tool_params.clone());
    }
    worker
        .connect_plain_transport(consumer_side.id, connect)
        .await?;
    let consumer = worker
        .consume(consumer_side.id, ConsumerOptions::new(producer.id, caps))
        .await?;
    worker.resume_consumer(consumer.id).await?;
    let consumer_ssrc = consumer.rtp_parameters.encodings[0].ssrc.unwrap();

    let zero = [0u8; 30];
    let mut tool_send = srtp.then(|| {
        let sfu_key = key_of(producer_side.srtp_parameters.as_ref().unwrap());
        SrtpSession::from_master_keys(
            suite,
            (&tool_key[..16], &tool_key[16..]),
            (&sfu_key[..16], &sfu_key[16..]),
            128,
            crypto().crypto(),
        )
        .unwrap()
    });
    let mut tool_recv = srtp.then(|| {
        let sfu_key = key_of(consumer_side.srtp_parameters.as_ref().unwrap());
        SrtpSession::from_master_keys(
            suite,
            (&zero[..16], &zero[16..]),
            (&sfu_key[..16], &sfu_key[16..]),
            128,
            crypto().crypto(),
        )
        .unwrap()
    });
    let target = format!(
        "{}:{}",
        producer_side.tuple.local_address, producer_side.tuple.local_port
    );

    let mut received = Vec::new();
    let mut rtcp_from_sfu = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut seq = 100u16;
    let mut buf = [0u8; 2000];
    while (received.len() < 20 || rtcp_from_sfu == 0) && Instant::now() < deadline {
        let packet = vp8_packet(seq, seq % 10 == 0);
        let wire = match &mut tool_send {
            Some(s) => s.protect_rtp(&packet)?,
            None => packet,
        };
        tool_in.send_to(&wire, &target)?;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
        while let Ok((n, _)) = tool_out.recv_from(&mut buf).map_err(|_| ()).and_then(|r| {
            if r.0 > 0 {
                Ok(r)
            } else {
                Err(())
            }
        }) {
            let clear = match &mut tool_recv {
                Some(s) => s.unprotect_rtp(&buf[..n])?,
                None => buf[..n].to_vec(),
            };
            if (192..=223).contains(&clear[1]) {
                continue;
            }
            let p = RtpPacket::parse(&clear)?;
            assert_eq!(p.ssrc(), consumer_ssrc);
            let text = String::from_utf8_lossy(&p.payload()[5..]).to_string();
            received.push((p.sequence_number(), text));
            tool_out.set_read_timeout(Some(Duration::from_millis(1)))?;
        }
        // The SFU reports to the sender (RTCP RR) on the comedia tuple.
        while let Ok((n, _)) = tool_in.recv_from(&mut buf) {
            if n >= 8 && (192..=223).contains(&buf[1]) {
                rtcp_from_sfu += 1;
            }
        }
    }
    assert!(
        received.len() >= 20,
        "consumer received {} packets",
        received.len()
    );
    assert!(received[0].1.starts_with("frame "), "{:?}", received[0]);
    let first: u16 = received[0].1["frame ".len()..].parse()?;
    assert_eq!(first % 10, 0, "forwarding starts on a key frame");
    for w in received.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].0.wrapping_add(1),
            "consecutive output sequence numbers"
        );
    }
    assert!(
        rtcp_from_sfu > 0,
        "the SFU sends receiver reports to the tool"
    );
    let stats = worker.transport_stats(producer_side.id).await?;
    assert!(stats.rtp_packets_received >= 20);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_rtp_goes_through_the_worker() {
    tokio::time::timeout(Duration::from_secs(20), run(false))
        .await
        .expect("timed out")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_srtp_with_signalled_keys_goes_through_the_worker() {
    tokio::time::timeout(Duration::from_secs(20), run(true))
        .await
        .expect("timed out")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plain_connect_parameters_are_refused() {
    let (tx, _events) = mpsc::unbounded_channel::<WorkerEvent>();
    let worker = Worker::new(WorkerSettings::new("127.0.0.1".parse().unwrap(), 0), tx).unwrap();
    let (router, _) = worker.create_router(codecs()).await.unwrap();
    let t = worker
        .create_plain_transport(router, PlainTransportOptions::default())
        .await
        .unwrap();
    assert!(worker
        .connect_plain_transport(t.id, PlainConnectParameters::default())
        .await
        .is_err());
    assert!(worker
        .connect_webrtc_transport(
            t.id,
            serde_json::from_value(json!({"role": "client", "fingerprints": []})).unwrap()
        )
        .await
        .is_err());
}
