//! Proves that our JSON is mediasoup's as far as the unmodified npm
//! `mediasoup-client` is concerned: it loads our router capabilities, takes
//! our transport and consumer parameters, and its produce parameters are
//! accepted by our `produce`.
//!
//! mediasoup-client runs in Node with its own `FakeHandler` (the handler its
//! test suite uses), driven by `tests/mediasoup_client/compat.mjs` over JSON
//! lines on stdin/stdout. Every request it makes of its application
//! (`connect`, `produce`) is answered by a real [`Worker`] with exactly what
//! mediasoup-client emitted. No ICE or DTLS happens and nothing touches the
//! network beyond the worker's socket on 127.0.0.1.
//!
//! Needs `npm ci --prefix sfu/tests/mediasoup_client`; the test fails, not
//! skips, without it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sfu::rtp_parameters::{MediaKind, RtpCapabilities, RtpCodecCapability, RtpParameters};
use sfu::transport::{DtlsParameters, DtlsRole};
use sfu::{
    CallError, ConsumerInfo, ConsumerOptions, ConsumerType, ProducerId, ProducerInfo,
    ProducerOptions, ProducerType, RouterId, TransportId, WebRtcTransportInfo, Worker,
    WorkerSettings,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The whole exchange, Node start-up included, is bounded by this.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on every single read from the Node process.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

const INSTALL_HINT: &str =
    "run `npm ci --prefix sfu/tests/mediasoup_client` (from the repository root)";

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mediasoup_client")
}

/// A router's media codecs as an application configures mediasoup's.
fn media_codecs() -> Vec<RtpCodecCapability> {
    serde_json::from_value(json!([
        {
            "kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2
        },
        {
            "kind": "video", "mimeType": "video/VP8", "clockRate": 90000
        },
        {
            "kind": "video", "mimeType": "video/VP9", "clockRate": 90000,
            "parameters": { "profile-id": 0 }
        },
        {
            "kind": "video", "mimeType": "video/H264", "clockRate": 90000,
            "parameters": {
                "packetization-mode": 1,
                "profile-level-id": "42e01f",
                "level-asymmetry-allowed": 1
            }
        }
    ]))
    .expect("the literal is mediasoup's RtpCodecCapability list")
}

async fn start_worker() -> Worker {
    let (events_tx, _events_rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = WorkerSettings::new("127.0.0.1".parse().expect("a literal IP"), 0);
    Worker::new(settings, events_tx).expect("the worker starts on 127.0.0.1")
}

/// The Node process running mediasoup-client.
struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
}

impl Client {
    fn spawn() -> Client {
        let dir = client_dir();
        assert!(
            dir.join("node_modules/mediasoup-client/package.json")
                .is_file()
                && dir
                    .join("node_modules/fake-mediastreamtrack/package.json")
                    .is_file(),
            "mediasoup-client is not installed in {}: {INSTALL_HINT}",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("compat.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `node` (is Node.js installed?): {e}"));
        let stdin = child.stdin.take().expect("stdin was piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout was piped")).lines();
        let mut stderr_pipe = child.stderr.take().expect("stderr was piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text).await;
            sink.lock().expect("stderr buffer lock").push_str(&text);
        });
        Client {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    async fn send(&mut self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("node reads its stdin until it exits");
        self.stdin.flush().await.expect("flush node's stdin");
    }

    /// The next message; panics on a timeout, on node's end of output, and
    /// on an `error` report, with what node said.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(READ_TIMEOUT, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("no message from node within {READ_TIMEOUT:?}"));
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => {
                // Let the stderr reader catch up before reporting it.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "node stopped talking; stderr:\n{}",
                    self.stderr.lock().expect("stderr buffer lock")
                );
            }
        };
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("node wrote a line that is not JSON ({e}): {line}"));
        if message["type"] == "error" {
            panic!(
                "mediasoup-client failed: {}\n{}",
                message["message"].as_str().unwrap_or("?"),
                message["stack"].as_str().unwrap_or("")
            );
        }
        message
    }

    async fn wait_for_success(mut self) {
        let status = tokio::time::timeout(READ_TIMEOUT, self.child.wait())
            .await
            .expect("node exits after its last message")
            .expect("wait for node");
        assert!(
            status.success(),
            "node exited with {status}; stderr:\n{}",
            self.stderr.lock().expect("stderr buffer lock")
        );
    }
}

/// What the worker was asked for on mediasoup-client's behalf.
#[derive(Default)]
struct Requests {
    connected: Vec<(TransportId, DtlsParameters)>,
    produced: Vec<(RtpParameters, ProducerInfo)>,
}

/// Runs one scenario: the worker side of the exchange plus what it records.
struct Session {
    worker: Worker,
    client: Client,
    requests: Requests,
}

impl Session {
    /// Reads messages, answering `request`s with the worker, until one of
    /// type `expected` arrives.
    async fn expect(&mut self, expected: &str) -> Value {
        loop {
            let message = self.client.next().await;
            if message["type"] == "request" {
                // A rejection goes back to mediasoup-client's errback, as
                // an application's would, and fails the test.
                let answer = self.answer(&message).await;
                let reply = match &answer {
                    Ok(data) => {
                        json!({ "type": "response", "reqId": message["reqId"], "data": data })
                    }
                    Err(error) => {
                        json!({ "type": "response", "reqId": message["reqId"], "error": error })
                    }
                };
                self.client.send(reply).await;
                if let Err(error) = answer {
                    panic!("mediasoup-client's request failed: {error}: {message}");
                }
                continue;
            }
            assert_eq!(
                message["type"], expected,
                "unexpected message from node: {message}"
            );
            return message;
        }
    }

    /// Answers one request with the worker, exactly as an application's
    /// signalling would, and records what the worker accepted.
    async fn answer(&mut self, request: &Value) -> Result<Value, String> {
        let transport_id: TransportId = serde_json::from_value(request["transportId"].clone())
            .map_err(|e| format!("transportId: {e}"))?;
        match request["method"].as_str() {
            Some("connect") => {
                let dtls: DtlsParameters =
                    serde_json::from_value(request["dtlsParameters"].clone()).map_err(|e| {
                        format!("our DtlsParameters cannot read mediasoup-client's: {e}")
                    })?;
                self.worker
                    .connect_webrtc_transport(transport_id, dtls.clone())
                    .await
                    .map_err(|e| format!("connect_webrtc_transport rejected them: {e}"))?;
                self.requests.connected.push((transport_id, dtls));
                Ok(json!({}))
            }
            Some("produce") => {
                let kind: MediaKind = serde_json::from_value(request["kind"].clone())
                    .map_err(|e| format!("kind: {e}"))?;
                let rtp_parameters: RtpParameters =
                    serde_json::from_value(request["rtpParameters"].clone()).map_err(|e| {
                        format!("our RtpParameters cannot read mediasoup-client's: {e}")
                    })?;
                let options = ProducerOptions::new(kind, rtp_parameters.clone());
                let info = self
                    .worker
                    .produce(transport_id, options)
                    .await
                    .map_err(|e| format!("produce rejected them: {e}"))?;
                self.requests.produced.push((rtp_parameters, info.clone()));
                Ok(json!({ "id": info.id }))
            }
            _ => Err("unknown method".to_owned()),
        }
    }
}

/// `params` with the defaults mediasoup-client's normalisation fills in:
/// only `dtx: false` on encodings, which mediasoup itself leaves out of
/// consumer parameters too.
fn with_client_defaults(params: &RtpParameters) -> RtpParameters {
    let mut params = params.clone();
    for encoding in &mut params.encodings {
        encoding.dtx.get_or_insert(false);
    }
    params
}

fn mime_types(codecs: &[RtpCodecCapability]) -> HashSet<String> {
    codecs.iter().map(|c| c.mime_type.to_lowercase()).collect()
}

async fn run_mediasoup_client_exchange() {
    let worker = start_worker().await;
    let (router_id, router_capabilities): (RouterId, RtpCapabilities) = worker
        .create_router(media_codecs())
        .await
        .expect("a router with Opus, VP8, VP9 and H264");
    let send_transport: WebRtcTransportInfo = worker
        .create_webrtc_transport(router_id)
        .await
        .expect("a send transport");
    let recv_transport: WebRtcTransportInfo = worker
        .create_webrtc_transport(router_id)
        .await
        .expect("a recv transport");

    let mut session = Session {
        worker,
        client: Client::spawn(),
        requests: Requests::default(),
    };
    session
        .client
        .send(json!({
            "type": "init",
            "routerRtpCapabilities": router_capabilities,
            "sendTransport": send_transport,
            "recvTransport": recv_transport,
        }))
        .await;

    // device.load() accepted our capabilities, and what it derived from them
    // is a subset of them with our payload types.
    let loaded = session.expect("loaded").await;
    assert_eq!(
        loaded["canProduce"],
        json!({ "audio": true, "video": true }),
        "the device can produce both kinds with our capabilities"
    );
    let device_capabilities: RtpCapabilities =
        serde_json::from_value(loaded["rtpCapabilities"].clone())
            .expect("our RtpCapabilities read the device's");
    for codec in &device_capabilities.codecs {
        assert!(
            router_capabilities.codecs.iter().any(|ours| {
                ours.mime_type.eq_ignore_ascii_case(&codec.mime_type)
                    && ours.preferred_payload_type == codec.preferred_payload_type
            }),
            "device codec {codec:?} is not one of the router's"
        );
    }
    let device_mime_types = mime_types(&device_capabilities.codecs);
    for mime_type in ["audio/opus", "video/vp8", "video/vp9"] {
        assert!(
            device_mime_types.contains(mime_type),
            "the device lost {mime_type}: {device_mime_types:?}"
        );
    }

    // Every produce() went through our produce() with what mediasoup-client
    // emitted, after it connected the send transport.
    let produced = session.expect("produced").await;
    let requests = &session.requests;
    assert_eq!(
        requests.connected.first().map(|(id, _)| *id),
        Some(send_transport.id),
        "the send transport connects before its first produce"
    );
    for (transport_id, dtls) in &requests.connected {
        assert_ne!(
            dtls.role,
            DtlsRole::Auto,
            "mediasoup-client's fake handler names its DTLS role on {transport_id}"
        );
        assert_eq!(dtls.fingerprints.len(), 1, "{dtls:?}");
    }
    let producer_types: Vec<_> = requests
        .produced
        .iter()
        .map(|(params, info)| {
            (
                info.kind,
                params.codecs[0].mime_type.to_lowercase(),
                info.r#type,
            )
        })
        .collect();
    let mut expected_types = vec![
        (
            MediaKind::Audio,
            "audio/opus".to_owned(),
            ProducerType::Simple,
        ),
        (
            MediaKind::Video,
            "video/vp8".to_owned(),
            ProducerType::Simulcast,
        ),
        (MediaKind::Video, "video/vp9".to_owned(), ProducerType::Svc),
    ];
    if device_mime_types.contains("video/h264") {
        expected_types.push((
            MediaKind::Video,
            "video/h264".to_owned(),
            ProducerType::Simple,
        ));
    }
    assert_eq!(producer_types, expected_types);
    let (vp8_parameters, _) = &requests.produced[1];
    assert_eq!(
        vp8_parameters.encodings.len(),
        3,
        "three simulcast encodings"
    );
    assert!(
        vp8_parameters
            .encodings
            .iter()
            .all(|e| e.ssrc.is_some() && e.rtx.is_some()),
        "the fake handler gives each encoding an SSRC and an RTX SSRC: {:?}",
        vp8_parameters.encodings
    );
    let client_producers = produced["producers"].as_array().expect("producers");
    assert_eq!(client_producers.len(), requests.produced.len());
    for (client_producer, (_, info)) in client_producers.iter().zip(&requests.produced) {
        assert_eq!(
            client_producer["id"],
            json!(info.id),
            "the producer got our id"
        );
    }

    // Consumers made for mediasoup-client's own device capabilities.
    let device_capabilities: RtpCapabilities =
        serde_json::from_value(produced["rtpCapabilities"].clone())
            .expect("our RtpCapabilities read the device's");
    let producer_ids: Vec<ProducerId> = requests.produced.iter().map(|(_, info)| info.id).collect();
    let mut consumers: Vec<ConsumerInfo> = Vec::new();
    for producer_id in producer_ids {
        let can_consume = session
            .worker
            .can_consume(producer_id, device_capabilities.clone())
            .await
            .expect("can_consume on a live producer");
        assert!(can_consume, "the device can consume producer {producer_id}");
        let consumer = session
            .worker
            .consume(
                recv_transport.id,
                ConsumerOptions::new(producer_id, device_capabilities.clone()),
            )
            .await
            .unwrap_or_else(|e| panic!("consume of {producer_id} for the device: {e}"));
        consumers.push(consumer);
    }
    let consumer_types: Vec<_> = consumers.iter().map(|c| c.r#type).collect();
    let mut expected_consumer_types = vec![
        ConsumerType::Simple,
        ConsumerType::Simulcast,
        ConsumerType::Svc,
    ];
    expected_consumer_types.resize(consumers.len(), ConsumerType::Simple);
    assert_eq!(consumer_types, expected_consumer_types);
    session
        .client
        .send(json!({ "type": "consume", "consumers": consumers }))
        .await;

    // recvTransport.consume() took each of them as we sent it: its own
    // normalisation leaves our rtpParameters unchanged.
    let consumed = session.expect("consumed").await;
    assert_eq!(
        session
            .requests
            .connected
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        [send_transport.id, recv_transport.id],
        "each transport connects once, on its first use"
    );
    let client_consumers = consumed["consumers"].as_array().expect("consumers");
    assert_eq!(client_consumers.len(), consumers.len());
    for (client_consumer, ours) in client_consumers.iter().zip(&consumers) {
        assert_eq!(client_consumer["id"], json!(ours.id));
        assert_eq!(client_consumer["producerId"], json!(ours.producer_id));
        assert_eq!(client_consumer["kind"], json!(ours.kind));
        assert_eq!(client_consumer["trackKind"], json!(ours.kind));
        let normalised: RtpParameters =
            serde_json::from_value(client_consumer["rtpParameters"].clone())
                .expect("our RtpParameters read the consumer's");
        assert_eq!(
            normalised,
            with_client_defaults(&ours.rtp_parameters),
            "mediasoup-client changed our consumer rtpParameters"
        );
    }

    // Our recv transport and consumer parameters, through the RemoteSdp a
    // browser handler would build from them.
    let remote_sdp = &consumed["remoteSdp"];
    assert_eq!(
        remote_sdp["iceLite"],
        json!(true),
        "a=ice-lite: {remote_sdp}"
    );
    let media = remote_sdp["media"].as_array().expect("media sections");
    assert_eq!(media.len(), consumers.len());
    let fingerprint = &recv_transport
        .dtls_parameters
        .fingerprints
        .last()
        .expect("our DTLS parameters have a fingerprint");
    for (section, consumer) in media.iter().zip(&consumers) {
        assert_eq!(section["type"], json!(consumer.kind), "{section}");
        assert_eq!(
            section["iceUfrag"],
            json!(recv_transport.ice_parameters.username_fragment)
        );
        assert_eq!(
            section["icePwd"],
            json!(recv_transport.ice_parameters.password)
        );
        assert_eq!(
            section["fingerprint"],
            json!({ "type": fingerprint.algorithm.to_string(), "hash": fingerprint.value }),
            "{section}"
        );
        let candidates: Vec<(String, u16)> = recv_transport
            .ice_candidates
            .iter()
            .map(|c| (c.address.clone(), c.port))
            .collect();
        let sdp_candidates: Vec<(String, u16)> = section["candidates"]
            .as_array()
            .expect("candidates")
            .iter()
            .map(|c| {
                (
                    c["ip"].as_str().expect("candidate ip").to_owned(),
                    c["port"].as_u64().expect("candidate port") as u16,
                )
            })
            .collect();
        assert_eq!(sdp_candidates, candidates, "{section}");
        let payloads: Vec<&str> = section["payloads"]
            .as_str()
            .expect("payloads")
            .split(' ')
            .collect();
        for codec in &consumer.rtp_parameters.codecs {
            assert!(
                payloads.contains(&codec.payload_type.to_string().as_str()),
                "payload type {} of {} missing from {section}",
                codec.payload_type,
                codec.mime_type
            );
        }
        let ssrc = consumer.rtp_parameters.encodings[0]
            .ssrc
            .expect("a consumer encoding has an SSRC");
        assert!(
            section["ssrcs"]
                .as_array()
                .expect("ssrcs")
                .contains(&json!(ssrc)),
            "ssrc {ssrc} missing from {section}"
        );
    }

    session.client.wait_for_success().await;
}

#[tokio::test]
async fn mediasoup_client_loads_produces_and_consumes_with_our_parameters() {
    tokio::time::timeout(TEST_TIMEOUT, run_mediasoup_client_exchange())
        .await
        .unwrap_or_else(|_| {
            panic!("the exchange with mediasoup-client took over {TEST_TIMEOUT:?}")
        });
}

#[tokio::test]
async fn producing_a_codec_the_router_lacks_is_rejected() {
    let worker = start_worker().await;
    let (router_id, _) = worker
        .create_router(media_codecs())
        .await
        .expect("a router with Opus, VP8, VP9 and H264");
    let transport = worker
        .create_webrtc_transport(router_id)
        .await
        .expect("a send transport");
    let av1: RtpParameters = serde_json::from_value(json!({
        "mid": "0",
        "codecs": [{
            "mimeType": "video/AV1", "payloadType": 45, "clockRate": 90000,
            "parameters": {}, "rtcpFeedback": [{ "type": "nack", "parameter": "" }]
        }],
        "headerExtensions": [
            { "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 1, "encrypt": false, "parameters": {} }
        ],
        "encodings": [{ "ssrc": 1111 }],
        "rtcp": { "cname": "av1-sender", "reducedSize": true }
    }))
    .expect("the literal is mediasoup-client's RtpParameters");

    let result = worker
        .produce(transport.id, ProducerOptions::new(MediaKind::Video, av1))
        .await;

    match result {
        Err(CallError::Produce(e)) => assert!(
            e.to_string().to_lowercase().contains("av1"),
            "the error names the codec: {e}"
        ),
        other => panic!("an AV1 producer on a router without AV1: {other:?}"),
    }
}
