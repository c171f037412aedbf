//! Janus (1.x, VideoRoom plugin) as the comparison SFU: starts a private
//! `janus` process with a minimal configuration (VideoRoom + HTTP transport
//! only, no STUN, no event handlers, no recordings), and signals the
//! synthetic presenter and viewers into a room over the plain HTTP Janus
//! API (one Janus session, one plugin handle per peer, one long-poll loop
//! that routes events to the requests waiting for them).
//!
//! What the peers must know about Janus (checked against Janus 1.1.2):
//! - Janus is a full ICE agent (not ICE-lite): it sends connectivity checks
//!   and expects answers, in both directions. It is controlled when we
//!   offer (the presenter) and controlling with aggressive nomination when
//!   it offers (viewers).
//! - Its candidates are in the SDP (half-trickle, `a=end-of-candidates`),
//!   never trickled. Janus never gathers on loopback interfaces, and
//!   libnice does not pair its candidates with a 127.0.0.1 candidate of
//!   ours: it neither checks nor answers a peer bound to 127.0.0.1 (checked
//!   both ways). So Janus is confined to one non-loopback local address,
//!   [`Janus::ice_ip`], and the peers must bind their sockets to that
//!   address too (traffic between two local addresses stays on `lo`).
//! - DTLS: to our actpass offer Janus answers `a=setup:active` (Janus is
//!   the DTLS client, the presenter the server); to viewers it offers
//!   actpass and we answer `active` (the viewer is the DTLS client).
//! - A feed can be subscribed to only once its publisher's PeerConnection
//!   is up (ICE + DTLS done, `webrtcup`); before that `join` as subscriber
//!   fails with 428 "No such feed". See [`Janus::wait_publishing`].
//! - Viewers get Janus's own SSRCs (one audio, one video + an RTX SSRC in
//!   the offer); simulcast layers are switched onto that one video SSRC.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::params::{LocalParameters, RemoteParameters};
use crate::plan::MediaPlan;
use crate::sdp::{self, ParsedSdp};
use crate::viewer::ViewerStreams;

/// How long a request waits for its asynchronous plugin event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Janus answers a long poll after 30 s without events.
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(65);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const VIDEOROOM: &str = "janus.plugin.videoroom";
/// Room for one PeerConnection per port (Janus gathers one UDP port per
/// handle and interface): thousands of viewers.
pub const DEFAULT_RTP_PORTS: (u16, u16) = (20_000, 39_999);

/// The `janus` executable: `$JANUS_BIN`, else `/usr/bin/janus`, else the
/// first `janus` on `$PATH`.
pub fn janus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("JANUS_BIN") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let default = PathBuf::from("/usr/bin/janus");
    if default.is_file() {
        return Some(default);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("janus"))
            .find(|p| p.is_file())
    })
}

/// Whether Janus can be run here (its binary is found).
pub fn installed() -> bool {
    janus_binary().is_some()
}

/// The folder holding Janus's `plugins/` and `transports/` (Debian:
/// `/usr/lib/<multiarch>/janus`; source installs: `/opt/janus/lib/janus`).
fn janus_lib_dir(binary: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::env::var("JANUS_LIB_DIR") {
        candidates.push(dir.into());
    }
    // Next to the binary: <prefix>/bin/janus -> <prefix>/lib/janus.
    if let Some(prefix) = binary.parent().and_then(Path::parent) {
        candidates.push(prefix.join("lib/janus"));
        if let Ok(entries) = std::fs::read_dir(prefix.join("lib")) {
            for entry in entries.flatten() {
                candidates.push(entry.path().join("janus"));
            }
        }
    }
    for prefix in ["/usr", "/usr/local", "/opt/janus"] {
        candidates.push(Path::new(prefix).join("lib/janus"));
        if let Ok(entries) = std::fs::read_dir(Path::new(prefix).join("lib")) {
            for entry in entries.flatten() {
                candidates.push(entry.path().join("janus"));
            }
        }
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("plugins/libjanus_videoroom.so").exists())
}

/// The `*.so` file names in `dir` except `keep` (for `disable = "..."`).
fn other_modules(dir: &Path, keep: &str) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name.ends_with(".so") && name != keep)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.join(",")
}

/// Events of one plugin handle that no request was waiting for:
/// `webrtcup`, `media`, `slowlink`, `hangup`, `detached`, and plugin events
/// without a transaction (simulcast layer switches, publisher notices...).
pub struct HandleEvents {
    rx: mpsc::UnboundedReceiver<Value>,
}

impl HandleEvents {
    /// The next event, or `None` after `timeout` (or once the handle is
    /// gone).
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Skips events until one satisfies `matches`; fails on timeout and on
    /// `hangup`/`detached` (unless `matches` accepts them).
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut matches: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(left, self.rx.recv())
                .await
                .map_err(|_| anyhow!("no matching Janus event within {timeout:?}"))?
                .ok_or_else(|| anyhow!("Janus handle gone"))?;
            if matches(&event) {
                return Ok(event);
            }
            match event["janus"].as_str() {
                Some("hangup") => bail!(
                    "Janus hung up the PeerConnection: {}",
                    event["reason"].as_str().unwrap_or("?")
                ),
                Some("detached") => bail!("Janus detached the handle"),
                _ => {}
            }
        }
    }

    /// Waits for `webrtcup`: ICE and DTLS completed on Janus's side.
    pub async fn webrtc_up(&mut self, timeout: Duration) -> Result<()> {
        self.wait_for(timeout, |e| e["janus"] == "webrtcup")
            .await
            .map(|_| ())
    }
}

/// The presenter's PeerConnection as Janus negotiated it.
pub struct Publisher {
    pub session_id: u64,
    pub handle_id: u64,
    pub room: u64,
    /// The publisher's participant id: what viewers subscribe to.
    pub feed_id: u64,
    pub private_id: u64,
    pub remote: RemoteParameters,
    /// Janus's answer, parsed (its RTCP sender SSRCs, mids...).
    pub answer: ParsedSdp,
    pub answer_sdp: String,
    pub offer_sdp: String,
    /// The plugin's `configured` event (`streams` with codecs, and
    /// `"simulcast": true` on video when Janus saw our SIM group).
    pub configured: Value,
    pub events: HandleEvents,
}

/// One viewer's subscription: Janus's offer, waiting for our answer
/// ([`Janus::subscribe_answer`]).
pub struct Subscription {
    pub session_id: u64,
    pub handle_id: u64,
    pub room: u64,
    pub feed: u64,
    /// Janus's offer, parsed: its ICE/DTLS parameters, the SSRCs and
    /// payload types it will send with.
    pub offer: ParsedSdp,
    pub offer_sdp: String,
    /// The subscription's video mid (for layer switches).
    pub video_mid: Option<String>,
    /// The `streams` of Janus's `attached` event.
    pub attached_streams: Value,
    pub events: HandleEvents,
}

impl Subscription {
    pub fn remote(&self) -> &RemoteParameters {
        &self.offer.remote
    }

    /// The SSRCs Janus will send this viewer (its own, whatever the
    /// presenter's): audio, the one video SSRC every layer is switched
    /// onto, and the video RTX SSRC (negotiated by our answer).
    pub fn streams(&self) -> ViewerStreams {
        ViewerStreams {
            video_ssrc: self.offer.video_ssrcs.first().copied(),
            video_rtx_ssrc: self.offer.video_rtx_ssrc,
            audio_ssrc: self.offer.audio_ssrc,
            transport_cc_ext: None,
        }
    }
}

#[derive(Default)]
struct Router {
    /// Requests waiting for their asynchronous event, by transaction.
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Event sinks, by handle id.
    handles: Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>,
}

impl Router {
    fn dispatch(&self, event: Value) {
        if event["janus"] == "keepalive" {
            return;
        }
        if let Some(transaction) = event["transaction"].as_str() {
            let waiter = self.pending.lock().unwrap().remove(transaction);
            if let Some(waiter) = waiter {
                let _ = waiter.send(event);
                return;
            }
        }
        if let Some(sender) = event["sender"].as_u64() {
            let mut handles = self.handles.lock().unwrap();
            if let Some(sink) = handles.get(&sender) {
                if sink.send(event).is_err() {
                    handles.remove(&sender);
                }
            }
        }
    }
}

/// Removes a pending transaction when its request is abandoned.
struct PendingGuard<'a> {
    router: &'a Router,
    transaction: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.router
            .pending
            .lock()
            .unwrap()
            .remove(&self.transaction);
    }
}

/// A private Janus process and one Janus API session on it.
pub struct Janus {
    child: tokio::process::Child,
    pid: u32,
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/janus`
    base: String,
    session_id: u64,
    /// A handle for synchronous room requests (create, listparticipants).
    control: u64,
    router: Arc<Router>,
    poller: tokio::task::JoinHandle<()>,
    transactions: AtomicU64,
    transaction_prefix: String,
    log_path: PathBuf,
    ice_ip: IpAddr,
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.poller.abort();
        let _ = self.child.start_kill();
    }
}

impl Janus {
    /// Writes a minimal configuration into `work_dir/janus-conf`, starts
    /// `janus -F` on it (log in `work_dir/janus.log`, its stdout/stderr in
    /// `work_dir/janus.out`), waits for `GET /janus/info`, and opens the
    /// session all handles live in.
    pub async fn start(
        work_dir: &Path,
        http_port: u16,
        rtp_port_range: (u16, u16),
    ) -> Result<Janus> {
        let binary = janus_binary().ok_or_else(|| anyhow!("janus not found (set JANUS_BIN)"))?;
        let lib = janus_lib_dir(&binary)
            .ok_or_else(|| anyhow!("Janus plugins folder not found (set JANUS_LIB_DIR)"))?;
        let conf = work_dir.join("janus-conf");
        std::fs::create_dir_all(&conf).with_context(|| format!("creating {}", conf.display()))?;
        let log_path = work_dir.join("janus.log");
        let _ = std::fs::remove_file(&log_path);
        let ice_ip = ice_ip_hint();
        write_configs(&conf, &lib, &log_path, http_port, rtp_port_range, ice_ip)?;

        let out = std::fs::File::create(work_dir.join("janus.out"))?;
        let err = out.try_clone()?;
        let mut child = tokio::process::Command::new(&binary)
            .arg("--configs-folder")
            .arg(&conf)
            .arg("--config")
            .arg(conf.join("janus.jcfg"))
            .current_dir(work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let pid = child.id().unwrap_or(0);

        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(64)
            .timeout(LONG_POLL_TIMEOUT)
            .build()?;
        let base = format!("http://127.0.0.1:{http_port}/janus");

        // Wait until the HTTP transport answers.
        let started = Instant::now();
        let local_ip = loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "janus exited at startup ({status}): {}",
                    tail(&log_path, &work_dir.join("janus.out"))
                );
            }
            let info = http
                .get(format!("{base}/info"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(response) = info {
                if let Ok(info) = response.json::<Value>().await {
                    if info["janus"] == "server_info" {
                        if info["plugins"].get(VIDEOROOM).is_none() {
                            bail!("janus runs without the VideoRoom plugin: {info}");
                        }
                        break info["local-ip"]
                            .as_str()
                            .and_then(|ip| ip.parse::<IpAddr>().ok());
                    }
                }
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                let _ = child.start_kill();
                bail!(
                    "janus did not answer on {base}/info within {STARTUP_TIMEOUT:?}: {}",
                    tail(&log_path, &work_dir.join("janus.out"))
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let ice_ip = ice_ip
            .or(local_ip.filter(|ip| !ip.is_loopback() && !ip.is_unspecified()))
            .ok_or_else(|| {
                anyhow!("no non-loopback IPv4 address for Janus's ICE (set JANUS_ICE_IP)")
            })?;

        let router = Arc::new(Router::default());
        let mut janus = Janus {
            child,
            pid,
            http,
            base,
            session_id: 0,
            control: 0,
            router,
            poller: tokio::spawn(async {}),
            transactions: AtomicU64::new(0),
            transaction_prefix: format!("wb{:08x}", rand::random::<u32>()),
            log_path,
            ice_ip,
        };
        let created = janus
            .post(&janus.base.clone(), json!({"janus": "create"}))
            .await?;
        janus.session_id = created["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no session id in {created}"))?;
        janus.poller = tokio::spawn(poll_events(
            janus.http.clone(),
            format!("{}/{}", janus.base, janus.session_id),
            janus.router.clone(),
        ));
        let (control, _) = janus.attach().await?;
        janus.control = control;
        Ok(janus)
    }

    /// [`Janus::start`] on a free HTTP port, with RTP ports
    /// [`DEFAULT_RTP_PORTS`].
    pub async fn start_auto(work_dir: &Path) -> Result<Janus> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Janus::start(work_dir, port, DEFAULT_RTP_PORTS).await
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The only address Janus gathers ICE candidates on (a non-loopback
    /// local IPv4 address). Peers talking to Janus must bind their UDP
    /// sockets to it: Janus ignores peers on 127.0.0.1.
    pub fn ice_ip(&self) -> IpAddr {
        self.ice_ip
    }

    /// Janus's own log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Creates a VP8/Opus room (random id) for `publishers` publishers, no
    /// bitrate cap, a FIR/PLI to publishers every 10 s, no recording, no
    /// join notices.
    pub async fn create_room(&self, publishers: u32) -> Result<u64> {
        let (data, _) = self
            .message(
                self.control,
                json!({
                    "request": "create",
                    "description": "webinar-bench",
                    "publishers": publishers.max(1),
                    "bitrate": 0,
                    "fir_freq": 10,
                    "audiocodec": "opus",
                    "videocodec": "vp8",
                    "record": false,
                    "notify_joining": false,
                    "permanent": false,
                }),
                None,
            )
            .await?;
        data["room"]
            .as_u64()
            .ok_or_else(|| anyhow!("no room id in {data}"))
    }

    pub async fn destroy_room(&self, room: u64) -> Result<()> {
        self.message(
            self.control,
            json!({"request": "destroy", "room": room, "permanent": false}),
            None,
        )
        .await
        .map(|_| ())
    }

    /// The room's participants (`listparticipants`): `id`, `display`,
    /// `publisher` (true once its PeerConnection is up)...
    pub async fn participants(&self, room: u64) -> Result<Vec<Value>> {
        let (data, _) = self
            .message(
                self.control,
                json!({"request": "listparticipants", "room": room}),
                None,
            )
            .await?;
        Ok(data["participants"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until `feed` is an active publisher of `room` (its
    /// PeerConnection is up), i.e. until viewers can subscribe to it.
    pub async fn wait_publishing(&self, room: u64, feed: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let active = self
                .participants(room)
                .await?
                .iter()
                .any(|p| p["id"].as_u64() == Some(feed) && p["publisher"] == true);
            if active {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("feed {feed} not publishing in room {room} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Joins `room` as the presenter and publishes [`sdp::publisher_offer`];
    /// returns Janus's parsed answer. ICE and DTLS are then up to the peer
    /// (`publisher.events.webrtc_up(..)` tells when Janus is done).
    pub async fn publish(
        &self,
        room: u64,
        plan: &MediaPlan,
        local: &LocalParameters,
    ) -> Result<Publisher> {
        let (handle_id, events) = self.attach().await?;
        let result = async {
            let (joined, _) = self
                .message(
                    handle_id,
                    json!({"request": "join", "ptype": "publisher", "room": room,
                           "display": "webinar-bench presenter"}),
                    None,
                )
                .await
                .context("joining as publisher")?;
            let feed_id = joined["id"]
                .as_u64()
                .ok_or_else(|| anyhow!("no participant id in {joined}"))?;
            let private_id = joined["private_id"].as_u64().unwrap_or(0);
            let offer_sdp = sdp::publisher_offer(plan, local, sdp_session_id());
            let (configured, jsep) = self
                .message(
                    handle_id,
                    json!({"request": "publish", "display": "webinar-bench presenter"}),
                    Some(json!({"type": "offer", "sdp": offer_sdp, "trickle": false})),
                )
                .await
                .context("publishing")?;
            let jsep = jsep.ok_or_else(|| anyhow!("no JSEP answer with {configured}"))?;
            let answer_sdp = jsep["sdp"]
                .as_str()
                .ok_or_else(|| anyhow!("JSEP without sdp: {jsep}"))?
                .to_string();
            let answer = sdp::parse_remote(&answer_sdp, true).context("parsing Janus's answer")?;
            Ok::<_, anyhow::Error>((
                feed_id, private_id, offer_sdp, answer_sdp, answer, configured,
            ))
        }
        .await;
        match result {
            Ok((feed_id, private_id, offer_sdp, answer_sdp, answer, configured)) => Ok(Publisher {
                session_id: self.session_id,
                handle_id,
                room,
                feed_id,
                private_id,
                remote: answer.remote.clone(),
                answer,
                answer_sdp,
                offer_sdp,
                configured,
                events,
            }),
            Err(e) => {
                let _ = self.detach(handle_id).await;
                Err(e)
            }
        }
    }

    /// Attaches a viewer handle and joins `room` as a subscriber of all of
    /// `feed`'s streams, simulcast layer `substream` (0 = lowest); returns
    /// Janus's offer. The feed must be publishing ([`Janus::wait_publishing`]).
    pub async fn subscribe_offer(
        &self,
        room: u64,
        feed: u64,
        substream: u8,
    ) -> Result<Subscription> {
        let (handle_id, events) = self.attach().await?;
        let result = async {
            let (attached, jsep) = self
                .message(
                    handle_id,
                    json!({"request": "join", "ptype": "subscriber", "room": room,
                           "streams": [{"feed": feed, "substream": substream}]}),
                    None,
                )
                .await
                .context("joining as subscriber")?;
            let jsep = jsep.ok_or_else(|| anyhow!("no JSEP offer with {attached}"))?;
            let offer_sdp = jsep["sdp"]
                .as_str()
                .ok_or_else(|| anyhow!("JSEP without sdp: {jsep}"))?
                .to_string();
            let offer = sdp::parse_remote(&offer_sdp, false).context("parsing Janus's offer")?;
            Ok::<_, anyhow::Error>((attached, offer_sdp, offer))
        }
        .await;
        match result {
            Ok((attached, offer_sdp, offer)) => {
                let video_mid = attached["streams"]
                    .as_array()
                    .and_then(|streams| streams.iter().find(|s| s["type"] == "video"))
                    .and_then(|s| s["mid"].as_str())
                    .or_else(|| offer.mid_of("video"))
                    .map(str::to_string);
                Ok(Subscription {
                    session_id: self.session_id,
                    handle_id,
                    room,
                    feed,
                    offer,
                    offer_sdp,
                    video_mid,
                    attached_streams: attached["streams"].clone(),
                    events,
                })
            }
            Err(e) => {
                let _ = self.detach(handle_id).await;
                Err(e)
            }
        }
    }

    /// Sends our answer ([`sdp::subscriber_answer`]) with `start`; Janus
    /// then starts ICE (it is controlling) and DTLS (it is the server).
    pub async fn subscribe_answer(
        &self,
        sub: &Subscription,
        local: &LocalParameters,
    ) -> Result<()> {
        let answer = sdp::subscriber_answer(&sub.offer, &sub.offer_sdp, local, sdp_session_id());
        let (data, _) = self
            .message(
                sub.handle_id,
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer, "trickle": false})),
            )
            .await
            .context("starting the subscription")?;
        if data["started"] != "ok" {
            bail!("unexpected answer to start: {data}");
        }
        Ok(())
    }

    /// [`Janus::subscribe_offer`] then [`Janus::subscribe_answer`] with the
    /// parameters `local_for` gives once it has seen Janus's offer.
    pub async fn subscribe(
        &self,
        room: u64,
        feed: u64,
        substream: u8,
        local_for: impl FnOnce(&ParsedSdp) -> LocalParameters,
    ) -> Result<Subscription> {
        let sub = self.subscribe_offer(room, feed, substream).await?;
        let local = local_for(&sub.offer);
        if let Err(e) = self.subscribe_answer(&sub, &local).await {
            let _ = self.detach(sub.handle_id).await;
            return Err(e);
        }
        Ok(sub)
    }

    /// Switches the viewer to simulcast layer `substream` (0 = lowest).
    /// Janus switches at the next key frame of that layer and then sends a
    /// `{"videoroom": "event", "substream": n}` event (see `sub.events`).
    pub async fn configure_substream(&self, sub: &Subscription, substream: u8) -> Result<()> {
        let mid = sub
            .video_mid
            .as_deref()
            .ok_or_else(|| anyhow!("subscription without video"))?;
        let (data, _) = self
            .message(
                sub.handle_id,
                json!({"request": "configure", "streams": [{"mid": mid, "substream": substream}]}),
                None,
            )
            .await?;
        if data["configured"] != "ok" {
            bail!("unexpected answer to configure: {data}");
        }
        Ok(())
    }

    /// Leaves (publisher or viewer) and detaches the handle.
    pub async fn leave(&self, handle_id: u64) -> Result<()> {
        let _ = self
            .message(handle_id, json!({"request": "leave"}), None)
            .await;
        self.detach(handle_id).await
    }

    /// Detaches a handle (closing its PeerConnection).
    pub async fn detach(&self, handle_id: u64) -> Result<()> {
        self.router.handles.lock().unwrap().remove(&handle_id);
        self.post(
            &format!("{}/{}/{}", self.base, self.session_id, handle_id),
            json!({"janus": "detach"}),
        )
        .await
        .map(|_| ())
    }

    /// Destroys the session (every handle and PeerConnection), then kills
    /// the process.
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.post(
                &format!("{}/{}", self.base, self.session_id),
                json!({"janus": "destroy"}),
            ),
        )
        .await;
        self.poller.abort();
        let _ = self.child.kill().await;
    }

    // -- Janus API plumbing ------------------------------------------------

    fn transaction(&self) -> String {
        format!(
            "{}-{}",
            self.transaction_prefix,
            self.transactions.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// POSTs a Janus API request; `Err` on transport errors and on
    /// `{"janus": "error"}`.
    async fn post(&self, url: &str, mut body: Value) -> Result<Value> {
        if body.get("transaction").is_none() {
            body["transaction"] = json!(self.transaction());
        }
        let response: Value = self
            .http
            .post(url)
            .timeout(EVENT_TIMEOUT)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?
            .json()
            .await
            .with_context(|| format!("POST {url}: not JSON"))?;
        if response["janus"] == "error" {
            bail!(
                "Janus error {} on {}: {}",
                response["error"]["code"],
                body["janus"],
                response["error"]["reason"].as_str().unwrap_or("?")
            );
        }
        Ok(response)
    }

    /// Attaches a VideoRoom handle and routes its events.
    async fn attach(&self) -> Result<(u64, HandleEvents)> {
        let response = self
            .post(
                &format!("{}/{}", self.base, self.session_id),
                json!({"janus": "attach", "plugin": VIDEOROOM}),
            )
            .await?;
        let handle = response["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no handle id in {response}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.router.handles.lock().unwrap().insert(handle, tx);
        Ok((handle, HandleEvents { rx }))
    }

    /// Sends a plugin message on `handle` and returns the plugin's data and
    /// JSEP, whether the plugin answered synchronously (`success`) or with
    /// an event (`ack`, then an event with our transaction on the long
    /// poll). Plugin errors (`error_code`) are `Err`.
    async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<(Value, Option<Value>)> {
        let transaction = self.transaction();
        let (tx, rx) = oneshot::channel();
        self.router
            .pending
            .lock()
            .unwrap()
            .insert(transaction.clone(), tx);
        let _guard = PendingGuard {
            router: &self.router,
            transaction: transaction.clone(),
        };
        let request = body["request"].as_str().unwrap_or("?").to_string();
        let mut message = json!({"janus": "message", "transaction": transaction, "body": body});
        if let Some(jsep) = jsep {
            message["jsep"] = jsep;
        }
        let response = self
            .post(
                &format!("{}/{}/{}", self.base, self.session_id, handle),
                message,
            )
            .await
            .with_context(|| format!("VideoRoom {request}"))?;
        let event = match response["janus"].as_str() {
            Some("success") => response,
            Some("ack") => tokio::time::timeout(EVENT_TIMEOUT, rx)
                .await
                .map_err(|_| {
                    anyhow!("no Janus event for VideoRoom {request} within {EVENT_TIMEOUT:?}")
                })?
                .map_err(|_| anyhow!("event router gone"))?,
            _ => bail!("unexpected Janus response to {request}: {response}"),
        };
        let data = event["plugindata"]["data"].clone();
        if data.get("error_code").is_some() || data["videoroom"] == "error" {
            bail!(
                "VideoRoom {request} failed ({}): {}",
                data["error_code"],
                data["error"].as_str().unwrap_or("?")
            );
        }
        let jsep = event.get("jsep").cloned();
        Ok((data, jsep))
    }
}

/// The long-poll loop of the session: `GET /janus/<session>?maxev=N`
/// returns the queued events (an array), or a keepalive after 30 s.
async fn poll_events(http: reqwest::Client, url: String, router: Arc<Router>) {
    let mut request_id: u64 = 0;
    loop {
        request_id += 1;
        let response = http
            .get(format!("{url}?maxev=100&rid={request_id}"))
            .timeout(LONG_POLL_TIMEOUT)
            .send()
            .await;
        let body = match response {
            Ok(response) => response.json::<Value>().await,
            Err(e) => Err(e),
        };
        match body {
            Ok(Value::Array(events)) => {
                for event in events {
                    router.dispatch(event);
                }
            }
            Ok(event) if event["janus"] == "error" => {
                // No such session (destroyed) or similar: back off.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(event) => router.dispatch(event),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The local address Janus should do ICE on: `$JANUS_ICE_IP`, else the
/// source address the kernel picks towards a public address (the primary
/// interface's; nothing is sent). `None`: let Janus pick (its `local-ip`).
fn ice_ip_hint() -> Option<IpAddr> {
    if let Ok(ip) = std::env::var("JANUS_ICE_IP") {
        return ip.parse().ok();
    }
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A fresh `o=` session id (positive, below 2^62).
fn sdp_session_id() -> u64 {
    rand::random::<u64>() >> 2
}

fn write_configs(
    conf: &Path,
    lib: &Path,
    log_path: &Path,
    http_port: u16,
    (rtp_min, rtp_max): (u16, u16),
    ice_ip: Option<IpAddr>,
) -> Result<()> {
    // One ICE address (and it in the SDP's c= lines), or Janus's choice.
    let (interface, enforce) = match ice_ip {
        Some(ip) => (
            format!("interface = \"{ip}\""),
            format!("ice_enforce_list = \"{ip}\""),
        ),
        None => (String::new(), String::new()),
    };
    let disabled_plugins = other_modules(&lib.join("plugins"), "libjanus_videoroom.so");
    let disabled_transports = other_modules(&lib.join("transports"), "libjanus_http.so");
    let disabled_loggers = other_modules(&lib.join("loggers"), "");
    let disabled_events = other_modules(&lib.join("events"), "");
    let janus = format!(
        r#"general: {{
	configs_folder = "{conf}"
	plugins_folder = "{lib}/plugins"
	transports_folder = "{lib}/transports"
	events_folder = "{lib}/events"
	loggers_folder = "{lib}/loggers"
	log_to_stdout = false
	log_to_file = "{log}"
	debug_level = 3
	debug_timestamps = true
	debug_colors = false
	{interface}
	server_name = "webinar-bench"
	session_timeout = 0
	reclaim_session_timeout = 0
	hide_dependencies = true
	protected_folders = [ "/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/var" ]
}}
certificates: {{
}}
media: {{
	ipv6 = false
	rtp_port_range = "{rtp_min}-{rtp_max}"
}}
nat: {{
	nice_debug = false
	ignore_mdns = true
	ice_ignore_list = "vmnet"
	{enforce}
}}
plugins: {{
	disable = "{disabled_plugins}"
}}
transports: {{
	disable = "{disabled_transports}"
}}
loggers: {{
	disable = "{disabled_loggers}"
}}
events: {{
	broadcast = false
	disable = "{disabled_events}"
}}
"#,
        conf = conf.display(),
        lib = lib.display(),
        log = log_path.display(),
    );
    let http = format!(
        r#"general: {{
	json = "compact"
	base_path = "/janus"
	http = true
	port = {http_port}
	ip = "127.0.0.1"
	https = false
	events = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
"#
    );
    let videoroom = "general: {\n\tevents = false\n}\n";
    std::fs::write(conf.join("janus.jcfg"), janus)?;
    std::fs::write(conf.join("janus.transport.http.jcfg"), http)?;
    std::fs::write(conf.join("janus.plugin.videoroom.jcfg"), videoroom)?;
    Ok(())
}

/// The last lines of Janus's log and output, for startup errors.
fn tail(log: &Path, out: &Path) -> String {
    let mut text = String::new();
    for path in [log, out] {
        if let Ok(content) = std::fs::read_to_string(path) {
            let lines: Vec<&str> = content.lines().collect();
            let start = lines.len().saturating_sub(15);
            text.push_str(&format!(
                "\n--- {} ---\n{}",
                path.display(),
                lines[start..].join("\n")
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Fingerprint, IceCredentials, LocalDtlsRole};
    use std::collections::HashSet;
    use std::net::{SocketAddr, TcpListener};

    fn free_tcp_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// What a STUN Binding request from Janus says.
    #[derive(Debug)]
    struct Check {
        from: SocketAddr,
        username: String,
        controlling: bool,
        controlled: bool,
        use_candidate: bool,
    }

    /// Waits for a STUN Binding request on `socket` (Janus's connectivity
    /// checks) and decodes the attributes that matter.
    async fn expect_check(socket: &tokio::net::UdpSocket) -> Check {
        let mut buf = [0u8; 1500];
        loop {
            let (len, from) =
                tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
                    .await
                    .expect("no connectivity check from Janus within 5 s")
                    .unwrap();
            let packet = &buf[..len];
            if len < 20 || packet[0..2] != [0x00, 0x01] || packet[4..8] != [0x21, 0x12, 0xA4, 0x42]
            {
                continue;
            }
            let mut check = Check {
                from,
                username: String::new(),
                controlling: false,
                controlled: false,
                use_candidate: false,
            };
            let mut at = 20;
            while at + 4 <= len {
                let kind = u16::from_be_bytes([packet[at], packet[at + 1]]);
                let length = u16::from_be_bytes([packet[at + 2], packet[at + 3]]) as usize;
                let value = &packet[(at + 4).min(len)..(at + 4 + length).min(len)];
                match kind {
                    0x0006 => check.username = String::from_utf8_lossy(value).into_owned(),
                    0x802A => check.controlling = true,
                    0x8029 => check.controlled = true,
                    0x0025 => check.use_candidate = true,
                    _ => {}
                }
                at += 4 + length.div_ceil(4) * 4;
            }
            return check;
        }
    }

    async fn udp_socket(ip: IpAddr) -> (tokio::net::UdpSocket, SocketAddr) {
        let socket = tokio::net::UdpSocket::bind((ip, 0)).await.unwrap();
        let address = socket.local_addr().unwrap();
        (socket, address)
    }

    fn made_up_local(address: SocketAddr) -> LocalParameters {
        let hex: Vec<String> = (0..32)
            .map(|_| format!("{:02X}", rand::random::<u8>()))
            .collect();
        LocalParameters {
            ice: IceCredentials {
                ufrag: format!("u{:07x}", rand::random::<u32>() >> 4),
                pwd: format!("{:032x}", rand::random::<u128>()),
            },
            fingerprint: Fingerprint {
                algorithm: "sha-256".to_string(),
                value: hex.join(":"),
            },
            address,
        }
    }

    /// Starts the real Janus, creates a room, publishes (no media: ICE and
    /// DTLS never happen), checks Janus's answer, and checks a viewer can
    /// not subscribe before the presenter's PeerConnection is up. Then
    /// subscribes to a dummy publisher (a room option that makes Janus
    /// offer viewers without any real publisher) to check the viewer side:
    /// Janus's offer, our answer accepted by `start`, a layer switch.
    #[tokio::test]
    async fn janus_videoroom_signalling() {
        if janus_binary().is_none() {
            eprintln!("SKIPPED: janus is not installed (no /usr/bin/janus, JANUS_BIN unset)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let rtp_base = 20_000 + (rand::random::<u16>() % 400) * 100;
        let janus = Janus::start(dir.path(), free_tcp_port(), (rtp_base, rtp_base + 99))
            .await
            .unwrap();
        assert!(janus.pid() > 0);

        // Presenter.
        let room = janus.create_room(1).await.unwrap();
        let plan = MediaPlan::simulcast(&[150, 500, 1500], 64);
        let ice_ip = janus.ice_ip();
        assert!(!ice_ip.is_loopback());
        let (presenter_socket, address) = udp_socket(ice_ip).await;
        let presenter_local = made_up_local(address);
        let publisher = janus.publish(room, &plan, &presenter_local).await.unwrap();
        eprintln!("Janus's answer to the presenter:\n{}", publisher.answer_sdp);
        let remote = &publisher.remote;
        assert_eq!(remote.candidates.len(), 1, "one ICE address");
        let candidate = remote.candidates[0];
        assert_eq!(candidate.ip(), ice_ip);
        assert!(
            (rtp_base..=rtp_base + 99).contains(&candidate.port()),
            "{candidate}"
        );
        assert_eq!(remote.fingerprints[0].algorithm, "sha-256");
        assert_eq!(remote.fingerprints[0].value.len(), 95);
        assert!(!remote.ice_lite);
        assert!(remote.controlling);
        assert_eq!(
            remote.local_role,
            LocalDtlsRole::Server,
            "Janus answers setup:active"
        );
        assert_eq!(
            publisher.answer.audio_payload_type,
            Some(crate::plan::OPUS_PAYLOAD_TYPE)
        );
        assert_eq!(
            publisher.answer.video_payload_type,
            Some(crate::plan::VP8_PAYLOAD_TYPE)
        );
        assert!(publisher.feed_id > 0);
        let video = publisher.configured["streams"]
            .as_array()
            .and_then(|streams| streams.iter().find(|s| s["type"] == "video"))
            .cloned()
            .unwrap();
        assert_eq!(
            video["simulcast"], true,
            "Janus took our SIM group: {video}"
        );
        // Janus, a full ICE agent, checks our candidate (from a candidate of
        // its own, across lo) even though we offered: controlled side.
        let check = expect_check(&presenter_socket).await;
        eprintln!("Janus's check to the presenter: {check:?}");
        assert!(remote.candidates.contains(&check.from), "{check:?}");
        assert_eq!(
            check.username,
            format!("{}:{}", presenter_local.ice.ufrag, remote.ice.ufrag)
        );
        assert!(check.controlled && !check.controlling, "{check:?}");
        let participants = janus.participants(room).await.unwrap();
        assert_eq!(participants.len(), 1);
        assert_eq!(participants[0]["publisher"], false, "no PeerConnection yet");
        let early = janus.subscribe_offer(room, publisher.feed_id, 0).await;
        let error = format!("{:#}", early.err().expect("subscribing before webrtcup"));
        assert!(error.contains("428"), "{error}");
        assert!(janus
            .wait_publishing(room, publisher.feed_id, Duration::from_millis(200))
            .await
            .is_err());

        // Viewers of a dummy publisher.
        let (data, _) = janus
            .message(
                janus.control,
                json!({"request": "create", "publishers": 2, "videocodec": "vp8",
                       "audiocodec": "opus", "dummy_publisher": true, "record": false}),
                None,
            )
            .await
            .unwrap();
        let dummy_room = data["room"].as_u64().unwrap();
        let dummy = janus.participants(dummy_room).await.unwrap()[0]["id"]
            .as_u64()
            .unwrap();
        janus
            .wait_publishing(dummy_room, dummy, Duration::from_secs(1))
            .await
            .unwrap();
        let mut subs = Vec::new();
        let (viewer_socket, viewer_address) = udp_socket(ice_ip).await;
        let viewer_local = made_up_local(viewer_address);
        for i in 0..3u16 {
            let sub = janus
                .subscribe(dummy_room, dummy, 0, |offer| {
                    assert!(offer.video_payload_type.is_some());
                    if i == 0 {
                        viewer_local.clone()
                    } else {
                        made_up_local(SocketAddr::new(ice_ip, 51_000 + i))
                    }
                })
                .await
                .unwrap();
            subs.push(sub);
        }
        let sub = &subs[0];
        // After `start`, Janus checks the viewer as the controlling agent
        // (aggressive nomination: USE-CANDIDATE on its checks).
        let check = expect_check(&viewer_socket).await;
        eprintln!("Janus's check to a viewer: {check:?}");
        assert!(sub.remote().candidates.contains(&check.from), "{check:?}");
        assert_eq!(
            check.username,
            format!("{}:{}", viewer_local.ice.ufrag, sub.remote().ice.ufrag)
        );
        assert!(check.controlling && !check.controlled, "{check:?}");
        let streams = sub.streams();
        assert_eq!(streams.video_ssrc, sub.offer.video_ssrcs.first().copied());
        assert!(streams.video_rtx_ssrc.is_some() && streams.audio_ssrc.is_some());
        eprintln!("Janus's offer to a viewer:\n{}", sub.offer_sdp);
        let remote = sub.remote();
        assert!(!remote.controlling, "Janus offers and controls");
        assert_eq!(remote.local_role, LocalDtlsRole::Client);
        assert_eq!(
            remote.candidates,
            vec![SocketAddr::new(ice_ip, remote.candidates[0].port())]
        );
        assert!(sub.offer.audio_ssrc.is_some());
        assert_eq!(sub.offer.video_ssrcs.len(), 1);
        assert_eq!(sub.video_mid.as_deref(), Some("1"));
        janus.configure_substream(sub, 2).await.unwrap();
        let handles: HashSet<u64> = subs.iter().map(|s| s.handle_id).collect();
        assert_eq!(handles.len(), 3);
        janus.leave(subs.pop().unwrap().handle_id).await.unwrap();
        janus.destroy_room(dummy_room).await.unwrap();
        janus.stop().await;
    }
}
