//! Drives this project's server as its users do: the `webinar` binary in
//! its own process (so its CPU is measured apart from the generator), a
//! webinar created over REST, the presenter and every viewer joined over
//! Socket.IO with mediasoup's signalling.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::params::{
    Fingerprint, IceCredentials, LocalDtlsRole, LocalParameters, RemoteParameters,
};
use crate::plan::{
    MediaPlan, AUDIO_CLOCK_RATE, OPUS_PAYLOAD_TYPE, VIDEO_CLOCK_RATE, VP8_PAYLOAD_TYPE,
};
use crate::sio::Sio;
use crate::viewer::ViewerStreams;

const ADMIN_EMAIL: &str = "bench@example.com";
const ADMIN_PASSWORD: &str = "bench-password-1";

/// The `webinar` server process.
pub struct Server {
    child: Child,
    pub base: String,
    _data_dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `binary` on embedded defaults with `workers` media workers,
    /// on a free port, and waits for `/healthz`.
    pub async fn start(binary: &Path, workers: usize) -> anyhow::Result<Server> {
        let data_dir = tempfile::tempdir()?;
        let port = free_tcp_port()?;
        let child = Command::new(binary)
            .env("WEBINAR__SERVER__HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("WEBINAR__SERVER__DATA_DIR", data_dir.path())
            .env("WEBINAR__AUTH__ADMIN_EMAIL", ADMIN_EMAIL)
            .env("WEBINAR__AUTH__ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("WEBINAR__MEDIA__WORKERS", workers.to_string())
            .env("WEBINAR__MEDIA__RTC_PORT", "0")
            // One machine registers the whole audience.
            .env("WEBINAR__LIMITS__REGISTER_PER_MINUTE", "1000000")
            .env("WEBINAR__LIMITS__LOGIN_PER_MINUTE", "1000000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _data_dir: data_dir,
            http: reqwest::Client::new(),
        };
        for _ in 0..200 {
            let healthy = server
                .http
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{} did not answer /healthz within 10 s", binary.display())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status} {body}");
        }
        Ok(body)
    }

    /// Logs in as the bench's host, creates a webinar for `capacity`
    /// viewers, and returns its id and the host's join token.
    pub async fn create_webinar(&self, capacity: usize) -> anyhow::Result<(String, String)> {
        let login = self
            .post(
                "/auth/login",
                None,
                json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
            )
            .await?;
        let token = login["token"].as_str().ok_or_else(|| anyhow!("no token"))?;
        let webinar = self
            .post(
                "/webinars",
                Some(token),
                json!({"title": "Bench", "capacity": capacity, "requiresApproval": false,
                       "settings": {"chat": false, "recording": "off"}}),
            )
            .await?;
        let id = webinar["id"]
            .as_str()
            .ok_or_else(|| anyhow!("no webinar id"))?;
        let join = self
            .post(&format!("/webinars/{id}/join"), Some(token), json!({}))
            .await?;
        let join_token = join["token"]
            .as_str()
            .ok_or_else(|| anyhow!("no join token"))?;
        Ok((id.to_owned(), join_token.to_owned()))
    }

    /// Registers viewer `index` and returns its join token.
    pub async fn register_viewer(&self, webinar: &str, index: usize) -> anyhow::Result<String> {
        let registration = self
            .post(
                &format!("/webinars/{webinar}/registrations"),
                None,
                json!({"name": format!("Viewer {index}"), "email": format!("viewer{index}@bench.example")}),
            )
            .await?;
        let join = self
            .post(
                &format!("/webinars/{webinar}/join"),
                None,
                json!({"registrationId": registration["id"], "accessKey": registration["accessKey"]}),
            )
            .await?;
        join["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no join token"))
    }
}

fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Connects with a join token and joins the webinar.
pub async fn connect(base: &str, token: &str) -> anyhow::Result<(Sio, Value)> {
    let mut sio = Sio::connect(base, Some(json!({ "token": token })))
        .await
        .map_err(|e| anyhow!("connect: {e}"))?;
    let joined = sio.call("join", json!({})).await.map_err(|e| anyhow!(e))?;
    Ok((sio, joined))
}

/// Creates a WebRTC transport in `direction`; returns its id and the
/// parameters our peer needs (ICE-lite server: we control and, as
/// mediasoup-client does, take the DTLS client role).
pub async fn create_transport(
    sio: &mut Sio,
    direction: &str,
) -> anyhow::Result<(String, RemoteParameters)> {
    let t = sio
        .call("createWebRtcTransport", json!({ "direction": direction }))
        .await
        .map_err(|e| anyhow!(e))?;
    let candidates: Vec<SocketAddr> = t["iceCandidates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["protocol"] == "udp")
        .filter_map(|c| {
            format!("{}:{}", c["address"].as_str()?, c["port"].as_u64()?)
                .parse()
                .ok()
        })
        .collect();
    let fingerprints = t["dtlsParameters"]["fingerprints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some(Fingerprint {
                algorithm: f["algorithm"].as_str()?.to_owned(),
                value: f["value"].as_str()?.to_owned(),
            })
        })
        .collect();
    let remote = RemoteParameters {
        ice: IceCredentials {
            ufrag: t["iceParameters"]["usernameFragment"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            pwd: t["iceParameters"]["password"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        },
        ice_lite: true,
        candidates,
        fingerprints,
        local_role: LocalDtlsRole::Client,
        controlling: true,
    };
    if remote.candidates.is_empty() {
        bail!("no UDP candidate in {t}");
    }
    let id = t["id"].as_str().ok_or_else(|| anyhow!("no transport id"))?;
    Ok((id.to_owned(), remote))
}

/// Signals our side of a transport (DTLS client, our fingerprint).
pub async fn connect_transport(
    sio: &mut Sio,
    transport: &str,
    local: &LocalParameters,
) -> anyhow::Result<()> {
    sio.call(
        "connectWebRtcTransport",
        json!({"transportId": transport, "dtlsParameters": {
            "role": "client",
            "fingerprints": [{"algorithm": local.fingerprint.algorithm, "value": local.fingerprint.value}]
        }}),
    )
    .await
    .map_err(|e| anyhow!(e))?;
    Ok(())
}

/// Produces the plan's camera (SSRC simulcast) and microphone; returns
/// the producer ids (video, audio).
pub async fn produce(
    sio: &mut Sio,
    transport: &str,
    plan: &MediaPlan,
) -> anyhow::Result<(String, String)> {
    let feedback = json!([{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
                          {"type": "ccm", "parameter": "fir"}]);
    let encodings: Vec<Value> = plan
        .encodings
        .iter()
        .map(|e| json!({"ssrc": e.ssrc, "maxBitrate": e.bitrate_kbps * 1000}))
        .collect();
    let video = produce_one(
        sio,
        transport,
        "video",
        "camera",
        json!({"mid": "1",
               "codecs": [{"mimeType": "video/VP8", "payloadType": VP8_PAYLOAD_TYPE,
                           "clockRate": VIDEO_CLOCK_RATE, "parameters": {}, "rtcpFeedback": feedback}],
               "headerExtensions": [],
               "encodings": encodings,
               "rtcp": {"cname": "bench-presenter", "reducedSize": true}}),
    )
    .await?;
    let audio = produce_one(
        sio,
        transport,
        "audio",
        "mic",
        json!({"mid": "0",
               "codecs": [{"mimeType": "audio/opus", "payloadType": OPUS_PAYLOAD_TYPE,
                           "clockRate": AUDIO_CLOCK_RATE, "channels": 2,
                           "parameters": {"useinbandfec": 1}, "rtcpFeedback": []}],
               "headerExtensions": [],
               "encodings": [{"ssrc": plan.audio_ssrc}],
               "rtcp": {"cname": "bench-presenter", "reducedSize": true}}),
    )
    .await?;
    let id = |v: &Value| {
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no producer id"))
    };
    Ok((id(&video)?, id(&audio)?))
}

/// The transport-wide congestion control extension's URI.
const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

async fn produce_one(
    sio: &mut Sio,
    transport: &str,
    kind: &str,
    source: &str,
    rtp_parameters: Value,
) -> anyhow::Result<Value> {
    sio.call(
        "produce",
        json!({"transportId": transport, "kind": kind, "appData": {"source": source},
               "rtpParameters": rtp_parameters}),
    )
    .await
    .map_err(|e| anyhow!(e))
}

/// What a bench viewer can receive, derived from the router's
/// capabilities: Opus, VP8 and its RTX, with NACK and PLI feedback; with
/// `congestion_control`, also the transport-wide sequence extension and
/// `transport-cc` feedback (the viewer then sends feedback like a
/// browser), otherwise no header extensions at all.
pub fn viewer_capabilities(router: &Value, congestion_control: bool) -> Value {
    let mut video_feedback = vec![
        json!({"type": "nack", "parameter": ""}),
        json!({"type": "nack", "parameter": "pli"}),
        json!({"type": "ccm", "parameter": "fir"}),
    ];
    let mut audio_feedback = Vec::new();
    if congestion_control {
        video_feedback.push(json!({"type": "transport-cc", "parameter": ""}));
        audio_feedback.push(json!({"type": "transport-cc", "parameter": ""}));
    }
    let codecs: Vec<Value> = router["codecs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let mime = c["mimeType"].as_str()?.to_ascii_lowercase();
            let mut codec = c.clone();
            match mime.as_str() {
                "audio/opus" => codec["rtcpFeedback"] = json!(audio_feedback),
                "video/vp8" => codec["rtcpFeedback"] = json!(video_feedback),
                "video/rtx" => {
                    let apt = c["parameters"]["apt"].as_u64()?;
                    let vp8 = router["codecs"].as_array()?.iter().any(|v| {
                        v["mimeType"]
                            .as_str()
                            .is_some_and(|m| m.eq_ignore_ascii_case("video/vp8"))
                            && v["preferredPayloadType"].as_u64() == Some(apt)
                    });
                    if !vp8 {
                        return None;
                    }
                }
                _ => return None,
            }
            Some(codec)
        })
        .collect();
    let extensions: Vec<Value> = router["headerExtensions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| congestion_control && e["uri"] == TRANSPORT_CC_URI)
        .cloned()
        .collect();
    json!({"codecs": codecs, "headerExtensions": extensions})
}

/// One consumer as signalled.
pub struct Consumed {
    pub id: String,
    pub ssrc: Option<u32>,
    pub rtx_ssrc: Option<u32>,
    pub transport_cc_ext: Option<u8>,
}

/// Consumes `producer` on `transport` (paused, as the server creates it).
pub async fn consume(
    sio: &mut Sio,
    transport: &str,
    producer: &str,
    capabilities: &Value,
) -> anyhow::Result<Consumed> {
    let c = sio
        .call(
            "consume",
            json!({"transportId": transport, "producerId": producer, "rtpCapabilities": capabilities}),
        )
        .await
        .map_err(|e| anyhow!(e))?;
    let encoding = &c["rtpParameters"]["encodings"][0];
    Ok(Consumed {
        id: c["id"]
            .as_str()
            .ok_or_else(|| anyhow!("no consumer id"))?
            .to_owned(),
        ssrc: encoding["ssrc"].as_u64().map(|s| s as u32),
        rtx_ssrc: encoding["rtx"]["ssrc"].as_u64().map(|s| s as u32),
        transport_cc_ext: c["rtpParameters"]["headerExtensions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["uri"] == TRANSPORT_CC_URI)
            .and_then(|e| e["id"].as_u64())
            .map(|id| id as u8),
    })
}

/// The viewer streams of a video and an audio consumer.
pub fn streams(video: &Consumed, audio: &Consumed) -> ViewerStreams {
    ViewerStreams {
        video_ssrc: video.ssrc,
        video_rtx_ssrc: video.rtx_ssrc,
        audio_ssrc: audio.ssrc,
        transport_cc_ext: video.transport_cc_ext,
    }
}
