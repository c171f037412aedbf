//! A browser stand-in for the SFU's tests: a WebRTC peer that is not this
//! crate's code (webrtc-rs `webrtc` 0.21) driven the way `mediasoup-client`
//! drives a browser's `RTCPeerConnection` with its Chrome handler.
//!
//! This module owns:
//! - the JSON shapes the server hands to mediasoup-client (transport and
//!   consumer parameters) and the DTLS parameters it sends back on `connect`;
//! - [`SendTransport`]: a "send" transport. The peer offers, the remote
//!   answer is written from the server's ICE/DTLS parameters and the router's
//!   RTP capabilities as mediasoup-client's `RemoteSdp`/`AnswerMediaSection`
//!   write it, and each track's `rtpParameters` for `produce()` are read back
//!   from the local offer as mediasoup-client reads them;
//! - [`RecvTransport`]: a "recv" transport. The remote offer is written from
//!   consumer parameters as mediasoup-client's `OfferMediaSection` writes it,
//!   the peer answers, and received RTP is handed to the test per consumer;
//! - RTP payload builders and readers for VP8 and Opus with known contents;
//! - [`Peer`], the webrtc-rs connection with the events the harness waits
//!   on, which a test may also use on its own (as a fake server, say).
//!
//! `rtc`, the crate that defines most types `webrtc` takes and returns, is a
//! private dependency of `webrtc` and not a dependency of this crate, so the
//! few plain structs of it that have to be built here are built from
//! `Default` with their type taken from the signature they are passed to
//! (see [`default_coding`] and [`default_codec_parameters`]); received
//! packets are read through their fields, and packets to send are written as
//! bytes and parsed by `rtc`'s own `Unmarshal`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtc_shared::marshal::Unmarshal;
use serde::{Deserialize, Serialize};
use sfu::rtp_parameters::{
    MediaKind, ParameterMap, ParameterValue, RtcpFeedback, RtcpParameters, RtpCapabilities,
    RtpCodecCapability, RtpCodecParameters, RtpEncodingParameters, RtpHeaderExtensionDirection,
    RtpHeaderExtensionParameters, RtpParameters, RtxStream,
};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCBundlePolicy, RTCCertificate, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCRtcpMuxPolicy, RTCSessionDescription,
    Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

/// Errors of the harness: webrtc-rs errors, malformed SDP or parameters.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn error(message: impl Into<String>) -> Error {
    message.into().into()
}

/// How long the harness waits for ICE gathering on loopback.
const GATHERING_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Parameters exchanged with the server, as mediasoup's JSON
// ---------------------------------------------------------------------------

/// `iceParameters` of a server WebRtcTransport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceParameters {
    pub username_fragment: String,
    pub password: String,
    #[serde(default)]
    pub ice_lite: bool,
}

/// One of `iceCandidates` of a server WebRtcTransport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub foundation: String,
    pub priority: u32,
    /// mediasoup names the address `ip` and, since 3.13, also `address`;
    /// either is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `udp` or `tcp`.
    pub protocol: String,
    pub port: u16,
    /// Always `host` for mediasoup.
    #[serde(rename = "type")]
    pub candidate_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_type: Option<String>,
}

impl IceCandidate {
    /// The candidate's address, whichever field carried it.
    pub fn address(&self) -> Option<&str> {
        self.address.as_deref().or(self.ip.as_deref())
    }
}

/// DTLS role of one side of a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsRole {
    Auto,
    Client,
    Server,
}

impl DtlsRole {
    fn as_str(self) -> &'static str {
        match self {
            DtlsRole::Auto => "auto",
            DtlsRole::Client => "client",
            DtlsRole::Server => "server",
        }
    }

    /// The role an SDP `a=setup` value stands for.
    pub fn from_setup(setup: &str) -> Option<DtlsRole> {
        match setup {
            "active" => Some(DtlsRole::Client),
            "passive" => Some(DtlsRole::Server),
            "actpass" => Some(DtlsRole::Auto),
            _ => None,
        }
    }

    /// The SDP `a=setup` value for this role.
    pub fn setup(self) -> &'static str {
        match self {
            DtlsRole::Client => "active",
            DtlsRole::Server => "passive",
            DtlsRole::Auto => "actpass",
        }
    }
}

/// One certificate fingerprint, e.g. `sha-256` / `AB:CD:...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtlsFingerprint {
    pub algorithm: String,
    pub value: String,
}

/// `dtlsParameters`: the server's in its transport parameters, the peer's
/// in `connect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DtlsParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<DtlsRole>,
    pub fingerprints: Vec<DtlsFingerprint>,
}

/// What the server answers to `createWebRtcTransport`; other fields (`id`,
/// `sctpParameters`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportParameters {
    pub ice_parameters: IceParameters,
    pub ice_candidates: Vec<IceCandidate>,
    pub dtls_parameters: DtlsParameters,
}

/// What the server answers to `consume`; other fields (`type`,
/// `producerPaused`, `appData`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerParameters {
    pub id: String,
    pub producer_id: String,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
}

// ---------------------------------------------------------------------------
// The webrtc-rs peer and its events
// ---------------------------------------------------------------------------

/// One RTP packet as the peer received it (after SRTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRtp {
    pub ssrc: u32,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// Header extensions as (id, data).
    pub extensions: Vec<(u8, Vec<u8>)>,
    pub payload: Vec<u8>,
}

/// Received packets go to the channel of their SSRC, or to the unrouted one.
struct PacketRoutes {
    by_ssrc: Mutex<HashMap<u32, mpsc::UnboundedSender<ReceivedRtp>>>,
    unrouted: mpsc::UnboundedSender<ReceivedRtp>,
}

impl PacketRoutes {
    fn deliver(&self, packet: ReceivedRtp) {
        let routes = self.by_ssrc.lock().expect("no holder of the lock panics");
        let channel = routes.get(&packet.ssrc).unwrap_or(&self.unrouted);
        // A test that dropped its receiver is no longer interested.
        let _ = channel.send(packet);
    }
}

/// The event handler: records states, pumps each remote track into the
/// packet routes.
struct Events {
    state: watch::Sender<RTCPeerConnectionState>,
    gathering: watch::Sender<RTCIceGatheringState>,
    routes: Arc<PacketRoutes>,
}

type EventFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

// The trait is declared with `#[async_trait]`; this crate does not depend on
// the `async-trait` macro, so the methods are written in the form the macro
// expands to. Each does its work at once and returns a ready future.
impl PeerConnectionEventHandler for Events {
    fn on_ice_gathering_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCIceGatheringState,
    ) -> EventFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.gathering.send_replace(state);
        Box::pin(std::future::ready(()))
    }

    fn on_connection_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCPeerConnectionState,
    ) -> EventFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.state.send_replace(state);
        Box::pin(std::future::ready(()))
    }

    fn on_track<'life0, 'async_trait>(
        &'life0 self,
        track: Arc<dyn TrackRemote>,
    ) -> EventFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let routes = Arc::clone(&self.routes);
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    routes.deliver(ReceivedRtp {
                        ssrc: packet.header.ssrc,
                        payload_type: packet.header.payload_type,
                        sequence_number: packet.header.sequence_number,
                        timestamp: packet.header.timestamp,
                        marker: packet.header.marker,
                        extensions: packet
                            .header
                            .extensions
                            .iter()
                            .map(|extension| (extension.id, extension.payload.to_vec()))
                            .collect(),
                        payload: packet.payload.to_vec(),
                    });
                }
            }
        });
        Box::pin(std::future::ready(()))
    }
}

/// How to build a [`Peer`]. The defaults are a browser's: full ICE, default
/// codecs (VP8 96 + RTX 97, Opus 111, ...), default interceptors (NACK,
/// RTCP reports, TWCC), a random certificate and ICE credentials, any
/// loopback port.
#[derive(Default)]
pub struct PeerOptions {
    /// Answer STUN checks only, as mediasoup does. Default false.
    pub ice_lite: bool,
    /// The DTLS role when answering. Default: webrtc-rs's (client).
    pub answering_dtls_role: Option<DtlsRole>,
    /// Fixed local ICE username fragment and password. Default random.
    pub ice_credentials: Option<(String, String)>,
    /// Fixed DTLS certificate. Default random.
    pub certificate: Option<RTCCertificate>,
    /// The UDP port on 127.0.0.1. Default 0 (any).
    pub udp_port: u16,
    /// Codecs; default interceptors are registered on top. Default
    /// webrtc-rs's default codecs.
    pub media_engine: Option<MediaEngine>,
}

/// A webrtc-rs peer connection bound to 127.0.0.1, with its connection
/// state, ICE gathering state and received RTP.
pub struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
    gathering: watch::Receiver<RTCIceGatheringState>,
    routes: Arc<PacketRoutes>,
    unrouted: Option<mpsc::UnboundedReceiver<ReceivedRtp>>,
}

impl Peer {
    pub async fn new(options: PeerOptions) -> Result<Peer> {
        let mut media_engine = match options.media_engine {
            Some(media_engine) => media_engine,
            None => {
                let mut media_engine = MediaEngine::default();
                media_engine.register_default_codecs()?;
                media_engine
            }
        };
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)?;

        let mut settings = SettingEngineBuilder::new().with_lite(options.ice_lite);
        if let Some(role) = options.answering_dtls_role {
            // rtc's role enum is (de)serialised with the same names as
            // mediasoup's, which is how it is named here.
            settings =
                settings.with_answering_dtls_role(serde_json::from_value(role.as_str().into())?);
        }
        if let Some((username_fragment, password)) = options.ice_credentials {
            settings = settings.with_ice_credentials(username_fragment, password);
        }

        // As mediasoup-client configures its RTCPeerConnection.
        let mut configuration = RTCConfigurationBuilder::new()
            .with_bundle_policy(RTCBundlePolicy::MaxBundle)
            .with_rtcp_mux_policy(RTCRtcpMuxPolicy::Require);
        if let Some(certificate) = options.certificate {
            configuration = configuration.with_certificates(vec![certificate]);
        }

        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let (unrouted_tx, unrouted) = mpsc::unbounded_channel();
        let routes = Arc::new(PacketRoutes {
            by_ssrc: Mutex::new(HashMap::new()),
            unrouted: unrouted_tx,
        });
        let events = Events {
            state: state_tx,
            gathering: gathering_tx,
            routes: Arc::clone(&routes),
        };

        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration.build())
            .with_media_engine(media_engine)
            .with_setting_engine(settings.build())
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(events))
            .with_udp_addrs(vec![format!("127.0.0.1:{}", options.udp_port)])
            .build()
            .await?;

        Ok(Peer {
            pc: Arc::new(pc),
            state,
            gathering,
            routes,
            unrouted: Some(unrouted),
        })
    }

    /// The current connection state.
    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// Waits until the connection (ICE and DTLS) is up; fails if it fails,
    /// closes or takes longer than `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let mut state = self.state.clone();
        let connected = state.wait_for(|state| {
            matches!(
                state,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        });
        let reached = *tokio::time::timeout(timeout, connected)
            .await
            .map_err(|_| error(format!("not connected after {timeout:?}")))??;
        match reached {
            RTCPeerConnectionState::Connected => Ok(()),
            other => Err(error(format!("connection {other} instead of connected"))),
        }
    }

    /// Waits until ICE gathering is complete, so that the local description
    /// lists the candidates.
    pub async fn wait_gathering_complete(&self, timeout: Duration) -> Result<()> {
        let mut gathering = self.gathering.clone();
        let complete = gathering.wait_for(|state| *state == RTCIceGatheringState::Complete);
        tokio::time::timeout(timeout, complete)
            .await
            .map_err(|_| error(format!("ICE gathering not complete after {timeout:?}")))??;
        Ok(())
    }

    /// The local description, once set.
    pub async fn local_description(&self) -> Result<RTCSessionDescription> {
        self.pc
            .local_description()
            .await
            .ok_or_else(|| error("no local description"))
    }

    /// Packets with `ssrc` from now on go to the returned channel.
    pub fn route_ssrc(&self, ssrc: u32) -> mpsc::UnboundedReceiver<ReceivedRtp> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.route_ssrc_to(ssrc, tx);
        rx
    }

    fn route_ssrc_to(&self, ssrc: u32, tx: mpsc::UnboundedSender<ReceivedRtp>) {
        self.routes
            .by_ssrc
            .lock()
            .expect("no holder of the lock panics")
            .insert(ssrc, tx);
    }

    /// The packets of SSRCs nobody routed (once; `None` after).
    pub fn take_unrouted(&mut self) -> Option<mpsc::UnboundedReceiver<ReceivedRtp>> {
        self.unrouted.take()
    }

    pub async fn close(&self) -> Result<()> {
        self.pc.close().await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Local tracks
// ---------------------------------------------------------------------------

/// A default value of the element type of `MediaStreamTrack::new`'s
/// encodings (rtc's `RTCRtpEncodingParameters`, which cannot be named here).
fn default_coding<S, T, L, K, C: Default>(_new: fn(S, T, L, K, Vec<C>) -> MediaStreamTrack) -> C {
    C::default()
}

/// A default value of the codec type `MediaEngine::register_codec` takes
/// (rtc's `RTCRtpCodecParameters`, which cannot be named here).
pub fn default_codec_parameters<C: Default, K, R>(_register: fn(&mut MediaEngine, C, K) -> R) -> C {
    C::default()
}

/// The codec the harness sends for a kind, as webrtc-rs's default media
/// engine names it: (MIME type, clock rate, channels, fmtp line).
fn send_codec(kind: MediaKind) -> (&'static str, u32, u16, &'static str) {
    match kind {
        MediaKind::Video => ("video/VP8", 90_000, 0, ""),
        MediaKind::Audio => ("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1"),
    }
}

/// A local track of `kind` that sends on `ssrc` (and RTX on `rtx_ssrc`),
/// with RTP written by the test.
pub fn local_track(
    kind: MediaKind,
    stream_id: &str,
    track_id: &str,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
) -> Arc<TrackLocalStaticRTP> {
    let (mime_type, clock_rate, channels, fmtp) = send_codec(kind);
    let mut coding = default_coding(MediaStreamTrack::new);
    coding.rtp_coding_parameters.ssrc = Some(ssrc);
    if let Some(rtx_ssrc) = rtx_ssrc {
        coding
            .rtp_coding_parameters
            .rtx
            .insert(Default::default())
            .ssrc = rtx_ssrc;
    }
    coding.codec.mime_type = mime_type.to_owned();
    coding.codec.clock_rate = clock_rate;
    coding.codec.channels = channels;
    coding.codec.sdp_fmtp_line = fmtp.to_owned();
    coding.active = true;
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream_id.to_owned(),
        track_id.to_owned(),
        track_id.to_owned(),
        kind.as_str().into(),
        vec![coding],
    )))
}

// ---------------------------------------------------------------------------
// Reading a local description
// ---------------------------------------------------------------------------

/// One `a=rtpmap` codec of an m-section with its fmtp and feedback, as
/// mediasoup-client's `extractRtpCapabilities` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SdpCodec {
    pub payload_type: u8,
    /// The rtpmap name, e.g. `VP8`, `opus`, `rtx`.
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
    pub parameters: ParameterMap,
    pub rtcp_feedback: Vec<RtcpFeedback>,
}

impl SdpCodec {
    fn mime_type(&self, kind: &str) -> String {
        format!("{kind}/{}", self.name)
    }

    fn is_rtx(&self) -> bool {
        self.name.eq_ignore_ascii_case("rtx")
    }

    fn apt(&self) -> Option<u8> {
        self.parameters
            .get("apt")
            .and_then(ParameterValue::as_integer)
            .and_then(|apt| u8::try_from(apt).ok())
    }
}

/// One m-section of an SDP, with what mediasoup-client reads from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SdpMediaSection {
    /// `audio`, `video` or `application`.
    pub kind: String,
    pub port: isize,
    pub mid: Option<String>,
    /// `sendonly`, `recvonly`, `sendrecv` or `inactive`.
    pub direction: Option<String>,
    pub setup: Option<String>,
    pub fingerprint: Option<DtlsFingerprint>,
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub msid: Option<String>,
    pub codecs: Vec<SdpCodec>,
    /// `a=extmap` as (id, URI).
    pub extmaps: Vec<(u8, String)>,
    /// `a=ssrc` as (SSRC, attribute, value).
    pub ssrcs: Vec<(u32, String, String)>,
    /// `a=ssrc-group` as (semantics, SSRCs).
    pub ssrc_groups: Vec<(String, Vec<u32>)>,
    /// `a=candidate` values.
    pub candidates: Vec<String>,
    /// `a=rtcp-fb:*`, applied to the codecs once all are read.
    wildcard_feedback: Vec<RtcpFeedback>,
}

/// An SDP as mediasoup-client reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sdp {
    pub setup: Option<String>,
    pub fingerprint: Option<DtlsFingerprint>,
    pub ice_lite: bool,
    pub extmap_allow_mixed: bool,
    pub media: Vec<SdpMediaSection>,
}

impl Sdp {
    /// Parses with webrtc-rs's own SDP parser, then reads the attributes.
    pub fn parse(description: &RTCSessionDescription) -> Result<Sdp> {
        let parsed = description.unmarshal()?;
        let mut sdp = Sdp::default();
        for attribute in &parsed.attributes {
            let value = attribute.value.as_deref().unwrap_or("");
            match attribute.key.as_str() {
                "setup" => sdp.setup = Some(value.to_owned()),
                "fingerprint" => sdp.fingerprint = parse_fingerprint(value),
                "ice-lite" => sdp.ice_lite = true,
                "extmap-allow-mixed" => sdp.extmap_allow_mixed = true,
                _ => {}
            }
        }
        for media in &parsed.media_descriptions {
            let mut section = SdpMediaSection {
                kind: media.media_name.media.clone(),
                port: media.media_name.port.value,
                ..SdpMediaSection::default()
            };
            for attribute in &media.attributes {
                let value = attribute.value.as_deref().unwrap_or("");
                section.read_attribute(&attribute.key, value)?;
            }
            section.apply_wildcard_feedback();
            sdp.media.push(section);
        }
        Ok(sdp)
    }

    /// The DTLS fingerprint, at session level or in the first open
    /// m-section (mediasoup-client's `extractDtlsParameters`).
    pub fn dtls_fingerprint(&self) -> Option<&DtlsFingerprint> {
        self.fingerprint.as_ref().or_else(|| {
            self.media
                .iter()
                .find(|media| media.port != 0)
                .and_then(|media| media.fingerprint.as_ref())
        })
    }

    /// The `a=setup` value, found the same way.
    pub fn dtls_setup(&self) -> Option<&str> {
        self.setup.as_deref().or_else(|| {
            self.media
                .iter()
                .find(|media| media.port != 0)
                .and_then(|media| media.setup.as_deref())
        })
    }

    pub fn section(&self, mid: &str) -> Option<&SdpMediaSection> {
        self.media
            .iter()
            .find(|media| media.mid.as_deref() == Some(mid))
    }
}

impl SdpMediaSection {
    fn read_attribute(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "mid" => self.mid = Some(value.to_owned()),
            "sendonly" | "recvonly" | "sendrecv" | "inactive" => {
                self.direction = Some(key.to_owned())
            }
            "setup" => self.setup = Some(value.to_owned()),
            "fingerprint" => self.fingerprint = parse_fingerprint(value),
            "ice-ufrag" => self.ice_ufrag = Some(value.to_owned()),
            "ice-pwd" => self.ice_pwd = Some(value.to_owned()),
            "msid" => self.msid = Some(value.to_owned()),
            "candidate" => self.candidates.push(value.to_owned()),
            "rtpmap" => {
                // `96 VP8/90000`, `111 opus/48000/2`
                let (payload_type, encoding) = split_payload_type(value)?;
                let mut parts = encoding.split('/');
                let name = parts.next().unwrap_or_default().to_owned();
                let clock_rate = parts
                    .next()
                    .and_then(|rate| rate.parse().ok())
                    .ok_or_else(|| error(format!("bad rtpmap {value:?}")))?;
                let channels = parts.next().and_then(|channels| channels.parse().ok());
                self.codecs.push(SdpCodec {
                    payload_type,
                    name,
                    clock_rate,
                    channels,
                    parameters: ParameterMap::new(),
                    rtcp_feedback: Vec::new(),
                });
            }
            "fmtp" => {
                let (payload_type, config) = split_payload_type(value)?;
                let parameters = parse_fmtp(config);
                if let Some(codec) = self.codec_mut(payload_type) {
                    codec.parameters = parameters;
                }
            }
            "rtcp-fb" => {
                let (payload_type, feedback) = value
                    .split_once(' ')
                    .ok_or_else(|| error(format!("bad rtcp-fb {value:?}")))?;
                let feedback = parse_feedback(feedback);
                if payload_type == "*" {
                    self.wildcard_feedback.push(feedback);
                } else if let Some(codec) = payload_type
                    .parse()
                    .ok()
                    .and_then(|payload_type| self.codec_mut(payload_type))
                {
                    codec.rtcp_feedback.push(feedback);
                }
            }
            "extmap" => {
                // `1 urn:...` or `1/sendonly urn:...`
                let (id, uri) = value
                    .split_once(' ')
                    .ok_or_else(|| error(format!("bad extmap {value:?}")))?;
                let id = id
                    .split('/')
                    .next()
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| error(format!("bad extmap {value:?}")))?;
                let uri = uri.split(' ').next().unwrap_or_default().to_owned();
                self.extmaps.push((id, uri));
            }
            "ssrc" => {
                // `1234 cname:abc`, `1234 msid:stream track`
                let (ssrc, attribute) = value
                    .split_once(' ')
                    .ok_or_else(|| error(format!("bad ssrc {value:?}")))?;
                let ssrc = ssrc
                    .parse()
                    .map_err(|_| error(format!("bad ssrc {value:?}")))?;
                let (name, attribute_value) = attribute.split_once(':').unwrap_or((attribute, ""));
                self.ssrcs
                    .push((ssrc, name.to_owned(), attribute_value.to_owned()));
            }
            "ssrc-group" => {
                let mut parts = value.split_whitespace();
                let semantics = parts.next().unwrap_or_default().to_owned();
                let ssrcs = parts
                    .map(|ssrc| ssrc.parse())
                    .collect::<Result<Vec<u32>, _>>()
                    .map_err(|_| error(format!("bad ssrc-group {value:?}")))?;
                self.ssrc_groups.push((semantics, ssrcs));
            }
            _ => {}
        }
        Ok(())
    }

    fn codec_mut(&mut self, payload_type: u8) -> Option<&mut SdpCodec> {
        self.codecs
            .iter_mut()
            .find(|codec| codec.payload_type == payload_type)
    }

    fn apply_wildcard_feedback(&mut self) {
        for feedback in std::mem::take(&mut self.wildcard_feedback) {
            for codec in self.codecs.iter_mut().filter(|codec| !codec.is_rtx()) {
                codec.rtcp_feedback.push(feedback.clone());
            }
        }
    }

    /// The CNAME of the first `a=ssrc:... cname:` line
    /// (mediasoup-client's `getCname`).
    pub fn cname(&self) -> Option<&str> {
        self.ssrcs
            .iter()
            .find(|(_, attribute, _)| attribute == "cname")
            .map(|(_, _, value)| value.as_str())
    }

    /// The encodings of the `a=ssrc` lines, each media SSRC with the RTX
    /// SSRC of its FID group (mediasoup-client's `getRtpEncodings`).
    pub fn encodings(&self) -> Vec<RtpEncodingParameters> {
        let mut ssrcs: Vec<u32> = Vec::new();
        for (ssrc, _, _) in &self.ssrcs {
            if !ssrcs.contains(ssrc) {
                ssrcs.push(*ssrc);
            }
        }
        let mut encodings = Vec::new();
        for (semantics, group) in &self.ssrc_groups {
            if let ("FID", [ssrc, rtx_ssrc]) = (semantics.as_str(), group.as_slice()) {
                if ssrcs.contains(ssrc) {
                    ssrcs.retain(|other| other != ssrc && other != rtx_ssrc);
                    encodings.push(RtpEncodingParameters {
                        ssrc: Some(*ssrc),
                        rtx: Some(RtxStream { ssrc: *rtx_ssrc }),
                        ..RtpEncodingParameters::default()
                    });
                }
            }
        }
        encodings.extend(ssrcs.into_iter().map(|ssrc| RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..RtpEncodingParameters::default()
        }));
        encodings
    }
}

fn split_payload_type(value: &str) -> Result<(u8, &str)> {
    let (payload_type, rest) = value.split_once(' ').unwrap_or((value, ""));
    let payload_type = payload_type
        .parse()
        .map_err(|_| error(format!("bad payload type in {value:?}")))?;
    Ok((payload_type, rest))
}

fn parse_fingerprint(value: &str) -> Option<DtlsFingerprint> {
    let (algorithm, value) = value.split_once(' ')?;
    Some(DtlsFingerprint {
        algorithm: algorithm.to_owned(),
        value: value.trim().to_owned(),
    })
}

fn parse_feedback(value: &str) -> RtcpFeedback {
    let (r#type, parameter) = value.split_once(' ').unwrap_or((value, ""));
    RtcpFeedback::new(r#type, parameter)
}

/// fmtp parameters as sdp-transform's `parseParams` gives them: numbers
/// where the value is one, except `profile-level-id`, which
/// mediasoup-client keeps a string.
fn parse_fmtp(config: &str) -> ParameterMap {
    config
        .split(';')
        .filter_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            let value = match value.parse::<i64>() {
                Ok(number) if key != "profile-level-id" => ParameterValue::Integer(number),
                _ => ParameterValue::String(value.to_owned()),
            };
            Some((key.to_owned(), value))
        })
        .collect()
}

fn fmtp_line(parameters: &ParameterMap) -> String {
    parameters
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(";")
}

// ---------------------------------------------------------------------------
// Writing the remote description (mediasoup-client's RemoteSdp)
// ---------------------------------------------------------------------------

/// The header extension mediasoup-client drops from answers unless the codec
/// is one mediasoup reads it for.
const DEPENDENCY_DESCRIPTOR_URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const TRANSPORT_WIDE_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
const ABS_SEND_TIME_URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";

/// One m-section of the remote description.
#[derive(Debug, Clone)]
struct RemoteSection {
    kind: MediaKind,
    mid: String,
    /// An offer section (server sends, recv transport) or an answer section
    /// (server receives, send transport).
    offer: bool,
    codecs: Vec<RtpCodecParameters>,
    header_extensions: Vec<RtpHeaderExtensionParameters>,
    /// Offer sections: `<stream id> <track id>`.
    msid: Option<String>,
    cname: Option<String>,
    ssrc: Option<u32>,
    rtx_ssrc: Option<u32>,
}

/// The server side of a transport as mediasoup-client writes it into SDP.
struct RemoteSdp {
    ice_parameters: IceParameters,
    ice_candidates: Vec<IceCandidate>,
    fingerprint: DtlsFingerprint,
    /// The server's role, written as `a=setup` in answer sections (offer
    /// sections always say `actpass`).
    server_dtls_role: DtlsRole,
    extmap_allow_mixed: bool,
    sections: Vec<RemoteSection>,
    session_version: u64,
}

impl RemoteSdp {
    fn new(server: &TransportParameters) -> Result<RemoteSdp> {
        // mediasoup-client takes the last fingerprint.
        let fingerprint = server
            .dtls_parameters
            .fingerprints
            .last()
            .cloned()
            .ok_or_else(|| error("server dtlsParameters has no fingerprint"))?;
        Ok(RemoteSdp {
            ice_parameters: server.ice_parameters.clone(),
            ice_candidates: server.ice_candidates.clone(),
            fingerprint,
            server_dtls_role: server.dtls_parameters.role.unwrap_or(DtlsRole::Auto),
            extmap_allow_mixed: false,
            sections: Vec::new(),
            session_version: 0,
        })
    }

    fn has_mid(&self, mid: &str) -> bool {
        self.sections.iter().any(|section| section.mid == mid)
    }

    /// The SDP text, with a new session version each time.
    fn render(&mut self) -> String {
        self.session_version += 1;
        let mut sdp = String::new();
        let mut line = |text: String| {
            sdp.push_str(&text);
            sdp.push_str("\r\n");
        };
        line("v=0".into());
        line(format!(
            "o=mediasoup-client-harness 10000 {} IN IP4 0.0.0.0",
            self.session_version
        ));
        line("s=-".into());
        line("t=0 0".into());
        if self.ice_parameters.ice_lite {
            line("a=ice-lite".into());
        }
        let mids: Vec<&str> = self
            .sections
            .iter()
            .map(|section| section.mid.as_str())
            .collect();
        line(format!("a=group:BUNDLE {}", mids.join(" ")));
        line("a=msid-semantic: WMS *".into());
        line(format!(
            "a=fingerprint:{} {}",
            self.fingerprint.algorithm, self.fingerprint.value
        ));
        if self.extmap_allow_mixed {
            line("a=extmap-allow-mixed".into());
        }
        line("a=ice-options:ice2".into());

        for section in &self.sections {
            let payload_types: Vec<String> = section
                .codecs
                .iter()
                .map(|codec| codec.payload_type.to_string())
                .collect();
            line(format!(
                "m={} 7 UDP/TLS/RTP/SAVPF {}",
                section.kind,
                payload_types.join(" ")
            ));
            line("c=IN IP4 127.0.0.1".into());
            for codec in &section.codecs {
                let name = codec
                    .mime_type
                    .split_once('/')
                    .map_or(codec.mime_type.as_str(), |(_, name)| name);
                match codec.channels {
                    Some(channels) if channels > 1 => line(format!(
                        "a=rtpmap:{} {name}/{}/{channels}",
                        codec.payload_type, codec.clock_rate
                    )),
                    _ => line(format!(
                        "a=rtpmap:{} {name}/{}",
                        codec.payload_type, codec.clock_rate
                    )),
                }
                if !codec.parameters.is_empty() {
                    line(format!(
                        "a=fmtp:{} {}",
                        codec.payload_type,
                        fmtp_line(&codec.parameters)
                    ));
                }
                for feedback in &codec.rtcp_feedback {
                    if feedback.parameter.is_empty() {
                        line(format!(
                            "a=rtcp-fb:{} {}",
                            codec.payload_type, feedback.r#type
                        ));
                    } else {
                        line(format!(
                            "a=rtcp-fb:{} {} {}",
                            codec.payload_type, feedback.r#type, feedback.parameter
                        ));
                    }
                }
            }
            for extension in &section.header_extensions {
                line(format!("a=extmap:{} {}", extension.id, extension.uri));
            }
            let (setup, direction) = if section.offer {
                ("actpass", "sendonly")
            } else {
                (self.server_dtls_role.setup(), "recvonly")
            };
            line(format!("a=setup:{setup}"));
            line(format!("a=mid:{}", section.mid));
            line(format!("a={direction}"));
            if let Some(msid) = &section.msid {
                line(format!("a=msid:{msid}"));
            }
            line(format!(
                "a=ice-ufrag:{}",
                self.ice_parameters.username_fragment
            ));
            line(format!("a=ice-pwd:{}", self.ice_parameters.password));
            for candidate in &self.ice_candidates {
                let mut text = format!(
                    "a=candidate:{} 1 {} {} {} {} typ {}",
                    candidate.foundation,
                    candidate.protocol,
                    candidate.priority,
                    candidate.address().unwrap_or("0.0.0.0"),
                    candidate.port,
                    candidate.candidate_type
                );
                if let Some(tcp_type) = &candidate.tcp_type {
                    text.push_str(&format!(" tcptype {tcp_type}"));
                }
                line(text);
            }
            line("a=end-of-candidates".into());
            line("a=ice-options:renomination".into());
            if let (Some(ssrc), Some(cname)) = (section.ssrc, &section.cname) {
                line(format!("a=ssrc:{ssrc} cname:{cname}"));
                if let Some(rtx_ssrc) = section.rtx_ssrc {
                    line(format!("a=ssrc:{rtx_ssrc} cname:{cname}"));
                }
            }
            if let (Some(ssrc), Some(rtx_ssrc)) = (section.ssrc, section.rtx_ssrc) {
                line(format!("a=ssrc-group:FID {ssrc} {rtx_ssrc}"));
            }
            line("a=rtcp-mux".into());
            line("a=rtcp-rsize".into());
        }
        sdp
    }
}

// ---------------------------------------------------------------------------
// Send transport
// ---------------------------------------------------------------------------

/// What [`negotiate_send`] decides for one offered m-section.
struct SendNegotiation {
    /// What `produce()` sends to the server.
    rtp_parameters: RtpParameters,
    /// What the remote answer accepts.
    answer: RemoteSection,
}

fn is_rtx(mime_type: &str) -> bool {
    mime_type
        .split_once('/')
        .is_some_and(|(_, name)| name.eq_ignore_ascii_case("rtx"))
}

fn integer_parameter(parameters: &ParameterMap, key: &str) -> Option<i64> {
    parameters.get(key).and_then(ParameterValue::as_integer)
}

/// mediasoup-client's strict codec match between a codec of the local offer
/// and one of the router's. H.264 profiles are compared by their
/// `profile_idc` and constraint flags only, which is enough for the
/// profiles browsers offer.
fn codecs_match(kind: MediaKind, local: &SdpCodec, router: &RtpCodecCapability) -> bool {
    let mime_type = local.mime_type(kind.as_str());
    if !mime_type.eq_ignore_ascii_case(&router.mime_type) || local.clock_rate != router.clock_rate {
        return false;
    }
    if kind == MediaKind::Audio && local.channels.unwrap_or(1) != router.channels.unwrap_or(1) {
        return false;
    }
    match mime_type.to_ascii_lowercase().as_str() {
        "video/h264" => {
            let profile = |parameters: &ParameterMap| {
                parameters
                    .get("profile-level-id")
                    .map(|value| value.to_string().to_ascii_lowercase())
                    .and_then(|id| id.get(..4).map(str::to_owned))
            };
            integer_parameter(&local.parameters, "packetization-mode").unwrap_or(0)
                == integer_parameter(&router.parameters, "packetization-mode").unwrap_or(0)
                && profile(&local.parameters) == profile(&router.parameters)
        }
        "video/vp9" => {
            integer_parameter(&local.parameters, "profile-id").unwrap_or(0)
                == integer_parameter(&router.parameters, "profile-id").unwrap_or(0)
        }
        _ => true,
    }
}

/// What mediasoup-client's `send()` derives from one m-section of its offer
/// and the router's capabilities: the first router codec (in the router's
/// order) the section offers, with its RTX when both sides have one, the
/// feedback both support, and the router's header extensions the section
/// offers, all with the offer's payload types and ids.
fn negotiate_send(
    kind: MediaKind,
    mid: &str,
    section: &SdpMediaSection,
    router_capabilities: &RtpCapabilities,
) -> Result<SendNegotiation> {
    let (local, router) = router_capabilities
        .codecs
        .iter()
        .filter(|router| router.kind == kind && !is_rtx(&router.mime_type))
        .find_map(|router| {
            section
                .codecs
                .iter()
                .filter(|local| !local.is_rtx())
                .find(|local| codecs_match(kind, local, router))
                .map(|local| (local, router))
        })
        .ok_or_else(|| {
            error(format!(
                "no {kind} codec of the offer (mid {mid}) is in the router's capabilities"
            ))
        })?;

    let router_has_rtx = router_capabilities.codecs.iter().any(|codec| {
        is_rtx(&codec.mime_type)
            && integer_parameter(&codec.parameters, "apt")
                == router.preferred_payload_type.map(i64::from)
    });
    let local_rtx = section
        .codecs
        .iter()
        .find(|codec| codec.is_rtx() && codec.apt() == Some(local.payload_type))
        .filter(|_| router_has_rtx);

    let rtcp_feedback: Vec<RtcpFeedback> = local
        .rtcp_feedback
        .iter()
        .filter(|feedback| router.rtcp_feedback.contains(feedback))
        .cloned()
        .collect();

    let header_extensions: Vec<RtpHeaderExtensionParameters> = router_capabilities
        .header_extensions
        .iter()
        // A router `recvonly` extension is one mediasoup-client sends.
        .filter(|extension| {
            extension.kind == kind
                && matches!(
                    extension.direction,
                    RtpHeaderExtensionDirection::Sendrecv | RtpHeaderExtensionDirection::Recvonly
                )
        })
        .filter_map(|extension| {
            section
                .extmaps
                .iter()
                .find(|(_, uri)| *uri == extension.uri)
                .map(|(id, uri)| RtpHeaderExtensionParameters {
                    uri: uri.clone(),
                    id: *id,
                    encrypt: false,
                    parameters: ParameterMap::new(),
                })
        })
        .collect();

    let media_codec =
        |parameters: ParameterMap, rtcp_feedback: Vec<RtcpFeedback>| RtpCodecParameters {
            mime_type: local.mime_type(kind.as_str()),
            payload_type: local.payload_type,
            clock_rate: local.clock_rate,
            channels: if kind == MediaKind::Audio {
                local.channels
            } else {
                None
            },
            parameters,
            rtcp_feedback,
        };
    let rtx_codec = local_rtx.map(|rtx| RtpCodecParameters {
        mime_type: format!("{kind}/rtx"),
        payload_type: rtx.payload_type,
        clock_rate: local.clock_rate,
        channels: None,
        parameters: [("apt".to_owned(), i64::from(local.payload_type).into())].into(),
        rtcp_feedback: Vec::new(),
    });

    let mut rtp_parameters = RtpParameters {
        mid: Some(mid.to_owned()),
        codecs: vec![media_codec(local.parameters.clone(), rtcp_feedback.clone())],
        header_extensions: header_extensions.clone(),
        encodings: section.encodings(),
        rtcp: RtcpParameters {
            cname: section.cname().map(str::to_owned),
            reduced_size: true,
        },
    };
    rtp_parameters.codecs.extend(rtx_codec.clone());
    if rtp_parameters.encodings.is_empty() {
        return Err(error(format!("no a=ssrc lines in the offer (mid {mid})")));
    }

    // The answer carries the router's codec parameters and one bandwidth
    // estimator's feedback (mediasoup-client's getSendingRemoteRtpParameters).
    let has_extension = |uri: &str| header_extensions.iter().any(|ext| ext.uri == uri);
    let answer_feedback: Vec<RtcpFeedback> = rtcp_feedback
        .into_iter()
        .filter(|feedback| {
            if has_extension(TRANSPORT_WIDE_CC_URI) {
                feedback.r#type != "goog-remb"
            } else if has_extension(ABS_SEND_TIME_URI) {
                feedback.r#type != "transport-cc"
            } else {
                feedback.r#type != "goog-remb" && feedback.r#type != "transport-cc"
            }
        })
        .collect();
    let mut answer_codecs = vec![media_codec(router.parameters.clone(), answer_feedback)];
    answer_codecs.extend(rtx_codec);
    let reads_dependency_descriptor = ["video/av1", "video/h264"]
        .iter()
        .any(|mime_type| router.mime_type.eq_ignore_ascii_case(mime_type));
    let answer_extensions = header_extensions
        .into_iter()
        .filter(|ext| reads_dependency_descriptor || ext.uri != DEPENDENCY_DESCRIPTOR_URI)
        .collect();

    Ok(SendNegotiation {
        rtp_parameters,
        answer: RemoteSection {
            kind,
            mid: mid.to_owned(),
            offer: false,
            codecs: answer_codecs,
            header_extensions: answer_extensions,
            msid: None,
            cname: None,
            ssrc: None,
            rtx_ssrc: None,
        },
    })
}

/// A track the peer sends, and what the server needs to know of it.
pub struct SendTrack {
    pub kind: MediaKind,
    pub mid: String,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    /// The payload type the track sends with (the first codec's).
    pub payload_type: u8,
    /// What mediasoup-client's `produce()` sends to the server.
    pub rtp_parameters: RtpParameters,
    pub track: Arc<TrackLocalStaticRTP>,
    next_picture_id: AtomicU16,
}

impl SendTrack {
    /// The negotiated id of a header extension.
    pub fn extension_id(&self, uri: &str) -> Option<u8> {
        self.rtp_parameters
            .header_extensions
            .iter()
            .find(|extension| extension.uri == uri)
            .map(|extension| extension.id)
    }

    /// Sends one RTP packet on the track's SSRC and payload type, with the
    /// MID header extension (as browsers send it) and `extensions`, given as
    /// (URI, data) and written with their negotiated ids.
    pub async fn write_rtp(
        &self,
        marker: bool,
        sequence_number: u16,
        timestamp: u32,
        payload: &[u8],
        extensions: &[(&str, &[u8])],
    ) -> Result<()> {
        let mut elements: Vec<(u8, &[u8])> = Vec::new();
        if let Some(id) = self.extension_id(MID_URI) {
            elements.push((id, self.mid.as_bytes()));
        }
        for (uri, data) in extensions {
            let id = self
                .extension_id(uri)
                .ok_or_else(|| error(format!("header extension {uri} was not negotiated")))?;
            elements.push((id, data));
        }
        let header = RtpHeader {
            payload_type: self.payload_type,
            marker,
            sequence_number,
            timestamp,
            ssrc: self.ssrc,
        };
        write_rtp_packet(&self.track, &rtp_packet(&header, &elements, payload)?).await
    }
}

/// A "send" transport of mediasoup-client: one peer connection that only
/// sends, one m-section per produced track.
pub struct SendTransport {
    pub peer: Peer,
    router_capabilities: RtpCapabilities,
    remote: RemoteSdp,
    local_dtls_role: DtlsRole,
    dtls_parameters: Option<DtlsParameters>,
    stream_id: String,
    tracks_created: usize,
}

impl SendTransport {
    /// A send transport towards the server transport `server`, for a router
    /// with `router_capabilities`, on a browser-like peer.
    pub async fn new(
        server: &TransportParameters,
        router_capabilities: &RtpCapabilities,
    ) -> Result<SendTransport> {
        let peer = Peer::new(PeerOptions::default()).await?;
        SendTransport::with_peer(peer, server, router_capabilities)
    }

    pub fn with_peer(
        peer: Peer,
        server: &TransportParameters,
        router_capabilities: &RtpCapabilities,
    ) -> Result<SendTransport> {
        // As mediasoup-client: the peer is DTLS client unless the server
        // insists on being one.
        let local_dtls_role = match server.dtls_parameters.role {
            Some(DtlsRole::Client) => DtlsRole::Server,
            _ => DtlsRole::Client,
        };
        let mut remote = RemoteSdp::new(server)?;
        remote.server_dtls_role = match local_dtls_role {
            DtlsRole::Server => DtlsRole::Client,
            _ => DtlsRole::Server,
        };
        Ok(SendTransport {
            peer,
            router_capabilities: router_capabilities.clone(),
            remote,
            local_dtls_role,
            dtls_parameters: None,
            stream_id: format!("harness-send-{:08x}", rand::random::<u32>()),
            tracks_created: 0,
        })
    }

    /// The peer's DTLS parameters for the server transport's `connect`,
    /// known after the first produce.
    pub fn dtls_parameters(&self) -> Option<&DtlsParameters> {
        self.dtls_parameters.as_ref()
    }

    /// Adds a track of `kind` (VP8 with RTX for video, Opus for audio) and
    /// negotiates it, as `transport.produce()` does.
    pub async fn produce(&mut self, kind: MediaKind) -> Result<SendTrack> {
        let mut tracks = self.produce_many(&[kind]).await?;
        Ok(tracks.remove(0))
    }

    /// Adds several tracks and negotiates them in one offer/answer.
    pub async fn produce_many(&mut self, kinds: &[MediaKind]) -> Result<Vec<SendTrack>> {
        let mut added = Vec::new();
        for &kind in kinds {
            self.tracks_created += 1;
            let ssrc = random_ssrc();
            let rtx_ssrc = (kind == MediaKind::Video).then(random_ssrc);
            let track_id = format!("{}-{kind}-{}", self.stream_id, self.tracks_created);
            let track = local_track(kind, &self.stream_id, &track_id, ssrc, rtx_ssrc);
            self.peer
                .pc
                .add_transceiver_from_track(
                    Arc::clone(&track) as Arc<dyn TrackLocal>,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        streams: vec![self.stream_id.clone()],
                        send_encodings: Vec::new(),
                    }),
                )
                .await?;
            added.push((kind, ssrc, track));
        }

        let offer = self.peer.pc.create_offer(None).await?;
        self.peer.pc.set_local_description(offer).await?;
        self.peer.wait_gathering_complete(GATHERING_TIMEOUT).await?;
        let local = Sdp::parse(&self.peer.local_description().await?)?;

        if self.dtls_parameters.is_none() {
            let fingerprint = local
                .dtls_fingerprint()
                .cloned()
                .ok_or_else(|| error("no a=fingerprint in the local offer"))?;
            self.dtls_parameters = Some(DtlsParameters {
                role: Some(self.local_dtls_role),
                fingerprints: vec![fingerprint],
            });
        }
        self.remote.extmap_allow_mixed |= local.extmap_allow_mixed;

        let mut tracks = Vec::new();
        for (kind, ssrc, track) in added {
            let section = local
                .media
                .iter()
                .find(|media| media.ssrcs.iter().any(|(other, _, _)| *other == ssrc))
                .ok_or_else(|| error(format!("SSRC {ssrc} is not in the local offer")))?;
            let mid = section
                .mid
                .clone()
                .ok_or_else(|| error(format!("no a=mid for SSRC {ssrc}")))?;
            if self.remote.has_mid(&mid) {
                return Err(error(format!("mid {mid} negotiated twice")));
            }
            let negotiated = negotiate_send(kind, &mid, section, &self.router_capabilities)?;
            self.remote.sections.push(negotiated.answer);
            let rtp_parameters = negotiated.rtp_parameters;
            tracks.push(SendTrack {
                kind,
                mid,
                ssrc,
                rtx_ssrc: rtp_parameters
                    .encodings
                    .iter()
                    .find(|encoding| encoding.ssrc == Some(ssrc))
                    .and_then(|encoding| encoding.rtx)
                    .map(|rtx| rtx.ssrc),
                payload_type: rtp_parameters.codecs[0].payload_type,
                rtp_parameters,
                track,
                next_picture_id: AtomicU16::new(rand::random::<u16>() & 0x7fff),
            });
        }

        let answer = RTCSessionDescription::answer(self.remote.render())?;
        self.peer.pc.set_remote_description(answer).await?;
        Ok(tracks)
    }
}

fn random_ssrc() -> u32 {
    // Zero is legal but reads like "unset" in logs.
    rand::random::<u32>().max(1)
}

// ---------------------------------------------------------------------------
// Recv transport
// ---------------------------------------------------------------------------

/// A track the peer receives for one consumer.
pub struct RecvTrack {
    pub consumer_id: String,
    pub producer_id: String,
    pub kind: MediaKind,
    pub mid: String,
    /// The SSRC the server sends on.
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    /// The first codec's payload type.
    pub payload_type: u8,
    /// Packets on `ssrc` and `rtx_ssrc`.
    pub packets: mpsc::UnboundedReceiver<ReceivedRtp>,
}

impl RecvTrack {
    /// The next packet, or an error after `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Result<ReceivedRtp> {
        tokio::time::timeout(timeout, self.packets.recv())
            .await
            .map_err(|_| {
                error(format!(
                    "no RTP for consumer {} within {timeout:?}",
                    self.consumer_id
                ))
            })?
            .ok_or_else(|| error("the peer is gone"))
    }
}

/// A "recv" transport of mediasoup-client: one peer connection that only
/// receives, one m-section per consumer.
pub struct RecvTransport {
    pub peer: Peer,
    remote: RemoteSdp,
    dtls_parameters: Option<DtlsParameters>,
}

impl RecvTransport {
    /// A recv transport towards the server transport `server`, on a
    /// browser-like peer.
    ///
    /// The peer answers as DTLS client, as Chrome does and as
    /// mediasoup-client assumes (the server's role is taken as the opposite
    /// only when the server insists on being client). webrtc-rs left to
    /// itself would answer an ICE-lite offer as DTLS server.
    pub async fn new(server: &TransportParameters) -> Result<RecvTransport> {
        let answering_dtls_role = match server.dtls_parameters.role {
            Some(DtlsRole::Client) => DtlsRole::Server,
            _ => DtlsRole::Client,
        };
        let peer = Peer::new(PeerOptions {
            answering_dtls_role: Some(answering_dtls_role),
            ..PeerOptions::default()
        })
        .await?;
        RecvTransport::with_peer(peer, server)
    }

    /// The same on a peer of the caller's; it should be built with the
    /// answering DTLS role [`RecvTransport::new`] chooses, or the role in
    /// [`RecvTransport::dtls_parameters`] is the one webrtc-rs picked.
    pub fn with_peer(peer: Peer, server: &TransportParameters) -> Result<RecvTransport> {
        Ok(RecvTransport {
            peer,
            remote: RemoteSdp::new(server)?,
            dtls_parameters: None,
        })
    }

    /// The peer's DTLS parameters for the server transport's `connect`,
    /// known after the first consume.
    pub fn dtls_parameters(&self) -> Option<&DtlsParameters> {
        self.dtls_parameters.as_ref()
    }

    /// Negotiates one consumer, as `transport.consume()` does.
    pub async fn consume(&mut self, consumer: &ConsumerParameters) -> Result<RecvTrack> {
        let mut tracks = self.consume_many(std::slice::from_ref(consumer)).await?;
        Ok(tracks.remove(0))
    }

    /// Negotiates several consumers in one offer/answer.
    pub async fn consume_many(
        &mut self,
        consumers: &[ConsumerParameters],
    ) -> Result<Vec<RecvTrack>> {
        let mut tracks = Vec::new();
        for consumer in consumers {
            let parameters = &consumer.rtp_parameters;
            let mid = parameters
                .mid
                .clone()
                .unwrap_or_else(|| self.remote.sections.len().to_string());
            if self.remote.has_mid(&mid) {
                return Err(error(format!(
                    "consumer {}: mid {mid} is already in use",
                    consumer.id
                )));
            }
            let encoding = parameters
                .encodings
                .first()
                .ok_or_else(|| error(format!("consumer {} has no encoding", consumer.id)))?;
            let ssrc = encoding
                .ssrc
                .ok_or_else(|| error(format!("consumer {} has no SSRC", consumer.id)))?;
            let rtx_ssrc = encoding.rtx.map(|rtx| rtx.ssrc);
            let payload_type = parameters
                .codecs
                .first()
                .ok_or_else(|| error(format!("consumer {} has no codec", consumer.id)))?
                .payload_type;
            // mediasoup-client's default stream id is the CNAME, and the
            // track id is the consumer id.
            let stream_id = parameters.rtcp.cname.clone().unwrap_or_else(|| "-".into());
            self.remote.sections.push(RemoteSection {
                kind: consumer.kind,
                mid: mid.clone(),
                offer: true,
                codecs: parameters.codecs.clone(),
                header_extensions: parameters.header_extensions.clone(),
                msid: Some(format!("{stream_id} {}", consumer.id)),
                cname: parameters.rtcp.cname.clone(),
                ssrc: Some(ssrc),
                rtx_ssrc,
            });

            let (tx, packets) = mpsc::unbounded_channel();
            self.peer.route_ssrc_to(ssrc, tx.clone());
            if let Some(rtx_ssrc) = rtx_ssrc {
                self.peer.route_ssrc_to(rtx_ssrc, tx);
            }
            tracks.push(RecvTrack {
                consumer_id: consumer.id.clone(),
                producer_id: consumer.producer_id.clone(),
                kind: consumer.kind,
                mid,
                ssrc,
                rtx_ssrc,
                payload_type,
                packets,
            });
        }
        // mediasoup may send one- and two-byte header extensions.
        self.remote.extmap_allow_mixed = true;

        let offer = RTCSessionDescription::offer(self.remote.render())?;
        self.peer.pc.set_remote_description(offer).await?;
        let answer = self.peer.pc.create_answer(None).await?;
        self.peer.pc.set_local_description(answer).await?;
        let local = Sdp::parse(&self.peer.local_description().await?)?;

        for track in &tracks {
            let accepted = local
                .section(&track.mid)
                .is_some_and(|section| section.port != 0);
            if !accepted {
                return Err(error(format!(
                    "the peer rejected consumer {} (mid {})",
                    track.consumer_id, track.mid
                )));
            }
        }
        if self.dtls_parameters.is_none() {
            let fingerprint = local
                .dtls_fingerprint()
                .cloned()
                .ok_or_else(|| error("no a=fingerprint in the local answer"))?;
            let role = local
                .dtls_setup()
                .and_then(DtlsRole::from_setup)
                .ok_or_else(|| error("no usable a=setup in the local answer"))?;
            self.dtls_parameters = Some(DtlsParameters {
                role: Some(role),
                fingerprints: vec![fingerprint],
            });
        }
        Ok(tracks)
    }
}

// ---------------------------------------------------------------------------
// RTP payloads
// ---------------------------------------------------------------------------

/// The fixed fields of an RTP header the harness writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// An RTP packet (RFC 3550) with one-byte header extensions (RFC 8285).
pub fn rtp_packet(
    header: &RtpHeader,
    extensions: &[(u8, &[u8])],
    payload: &[u8],
) -> Result<Vec<u8>> {
    let mut packet = Vec::with_capacity(12 + 4 + 4 * extensions.len() + payload.len());
    let x = if extensions.is_empty() { 0 } else { 0x10 };
    packet.push(0x80 | x);
    packet.push(u8::from(header.marker) << 7 | (header.payload_type & 0x7f));
    packet.extend_from_slice(&header.sequence_number.to_be_bytes());
    packet.extend_from_slice(&header.timestamp.to_be_bytes());
    packet.extend_from_slice(&header.ssrc.to_be_bytes());
    if !extensions.is_empty() {
        let mut elements = Vec::new();
        for (id, data) in extensions {
            if !(1..=14).contains(id) || data.is_empty() || data.len() > 16 {
                return Err(error(format!(
                    "extension id {id} with {} bytes does not fit a one-byte header",
                    data.len()
                )));
            }
            elements.push(id << 4 | (data.len() as u8 - 1));
            elements.extend_from_slice(data);
        }
        while elements.len() % 4 != 0 {
            elements.push(0);
        }
        packet.extend_from_slice(&[0xbe, 0xde]);
        packet.extend_from_slice(&((elements.len() / 4) as u16).to_be_bytes());
        packet.extend_from_slice(&elements);
    }
    packet.extend_from_slice(payload);
    Ok(packet)
}

/// Sends a whole RTP packet, given as bytes, on a local track. The SSRC and
/// payload type must be ones the track negotiated, or webrtc-rs drops it.
pub async fn write_rtp_packet(track: &TrackLocalStaticRTP, packet: &[u8]) -> Result<()> {
    // webrtc-rs takes rtc's packet type, which is parsed from the bytes.
    let packet = Unmarshal::unmarshal(&mut &packet[..])?;
    track.write_rtp(packet).await?;
    Ok(())
}

/// The picture size written in fake VP8 key frames.
const VP8_WIDTH: u16 = 640;
const VP8_HEIGHT: u16 = 360;

/// A VP8 RTP payload (RFC 7741) holding one whole frame: the payload
/// descriptor (start of partition 0, 15-bit picture id, as browsers send)
/// and a frame whose header has the key frame bit right (and, for a key
/// frame, the start code and picture size), followed by `body`.
pub fn vp8_payload(picture_id: u16, keyframe: bool, body: &[u8]) -> Vec<u8> {
    let mut payload = vec![
        0x90, // X: extensions follow; S: start of partition 0
        0x80, // I: picture id present
        0x80 | ((picture_id >> 8) as u8 & 0x7f),
        picture_id as u8,
    ];
    let first_partition_size = body.len() as u32;
    // Frame tag (RFC 6386 9.1): bit 0 is 0 for a key frame; version 0;
    // show_frame; 19-bit first partition size.
    let tag = (first_partition_size << 5) | (1 << 4) | u32::from(!keyframe);
    payload.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        payload.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        payload.extend_from_slice(&VP8_WIDTH.to_le_bytes());
        payload.extend_from_slice(&VP8_HEIGHT.to_le_bytes());
    }
    payload.extend_from_slice(body);
    payload
}

/// What [`parse_vp8`] reads from a VP8 RTP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vp8Frame<'a> {
    pub picture_id: Option<u16>,
    /// Start of partition 0, i.e. the packet starts a frame.
    pub start_of_frame: bool,
    /// Only meaningful when `start_of_frame`.
    pub keyframe: bool,
    /// What follows the frame header (what [`vp8_payload`] was given).
    pub body: &'a [u8],
}

/// Reads a VP8 payload descriptor and, at the start of a frame, the frame
/// header. `None` if the payload is too short for what it declares.
pub fn parse_vp8(payload: &[u8]) -> Option<Vp8Frame<'_>> {
    let first = *payload.first()?;
    let start_of_frame = first & 0x10 != 0 && first & 0x0f == 0;
    let mut offset = 1;
    let mut picture_id = None;
    if first & 0x80 != 0 {
        let extensions = *payload.get(offset)?;
        offset += 1;
        if extensions & 0x80 != 0 {
            let id = *payload.get(offset)?;
            if id & 0x80 != 0 {
                let low = *payload.get(offset + 1)?;
                picture_id = Some(u16::from(id & 0x7f) << 8 | u16::from(low));
                offset += 2;
            } else {
                picture_id = Some(u16::from(id));
                offset += 1;
            }
        }
        if extensions & 0x40 != 0 {
            offset += 1; // TL0PICIDX
        }
        if extensions & 0x30 != 0 {
            offset += 1; // TID / KEYIDX
        }
    }
    let frame = payload.get(offset..)?;
    if !start_of_frame {
        return Some(Vp8Frame {
            picture_id,
            start_of_frame,
            keyframe: false,
            body: frame,
        });
    }
    let keyframe = *frame.first()? & 0x01 == 0;
    let header_len = if keyframe { 10 } else { 3 };
    Some(Vp8Frame {
        picture_id,
        start_of_frame,
        keyframe,
        body: frame.get(header_len..)?,
    })
}

/// The Opus TOC byte the harness writes: CELT-only full band 20 ms, stereo,
/// one frame (RFC 6716 3.1).
pub const OPUS_TOC: u8 = 0xfc;

/// An Opus RTP payload (RFC 7587): a TOC byte, then `body`.
pub fn opus_payload(body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + body.len());
    payload.push(OPUS_TOC);
    payload.extend_from_slice(body);
    payload
}

/// Sends one VP8 frame in one packet (marker set), with the track's next
/// picture id.
pub async fn write_vp8(
    track: &SendTrack,
    sequence_number: u16,
    timestamp: u32,
    keyframe: bool,
    body: &[u8],
) -> Result<()> {
    let picture_id = track.next_picture_id.fetch_add(1, Ordering::Relaxed) & 0x7fff;
    let payload = vp8_payload(picture_id, keyframe, body);
    track
        .write_rtp(true, sequence_number, timestamp, &payload, &[])
        .await
}

/// Sends one Opus packet.
pub async fn write_opus(
    track: &SendTrack,
    sequence_number: u16,
    timestamp: u32,
    body: &[u8],
) -> Result<()> {
    track
        .write_rtp(false, sequence_number, timestamp, &opus_payload(body), &[])
        .await
}
