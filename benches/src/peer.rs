//! One simulated WebRTC endpoint, sans-IO: ICE connectivity checks (as the
//! controlling agent towards an ICE-lite SFU, or either role towards a
//! full agent such as Janus, whose checks it answers), DTLS in the role
//! signalled (the SFU crate's [`DtlsTransport`]), and SRTP once keyed.
//! Datagrams in through [`Peer::handle_datagram`], out through
//! [`Peer::poll_transmit`], time through [`Peer::handle_timeout`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc_crypto::RTCCryptoProvider;
use rtc_stun::attributes::{
    ATTR_ICE_CONTROLLED, ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME, ATTR_USE_CANDIDATE,
};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{
    Message, MessageType, Setter, TransactionId, BINDING_REQUEST, BINDING_SUCCESS, CLASS_REQUEST,
    CLASS_SUCCESS_RESPONSE, METHOD_BINDING,
};
use rtc_stun::textattrs::TextAttribute;
use rtc_stun::xoraddr::XorMappedAddress;
use sfu::transport::{
    DtlsCertificate, DtlsEvent, DtlsFingerprint, DtlsSettings, DtlsState, DtlsTransport,
    FingerprintAlgorithm, HandshakeRole, SrtpError, SrtpProfile, SrtpSession,
};

use crate::params::{
    Fingerprint, IceCredentials, LocalDtlsRole, LocalParameters, RemoteParameters,
};

/// Connectivity checks until one succeeds, then consent checks.
const CHECK_INTERVAL: Duration = Duration::from_millis(50);
const CONSENT_INTERVAL: Duration = Duration::from_secs(2);
/// A browser resends an unanswered DTLS flight after about twice the ICE
/// round trip (libwebrtc: between 50 ms and 3 s), not after rtc-dtls's
/// fixed second; on loopback, 200 ms (seven resends: 1.6 s in all).
const DTLS_RETRANSMIT: Duration = Duration::from_millis(200);
/// Priority of our host candidate (type preference 126).
const PRIORITY: u32 = 2_130_706_431;

/// Where a peer is in connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Waiting for the SFU's parameters.
    New,
    /// ICE checks out, no answer yet.
    Checking,
    Handshaking,
    /// SRTP keyed: media can flow.
    Connected,
    Failed,
}

/// What a datagram turned out to be, for the caller to handle.
pub enum Received<'a> {
    /// An SRTP packet (still protected; the RTP header is readable).
    Rtp(&'a [u8]),
    /// An SRTCP packet (still protected).
    Rtcp(&'a [u8]),
    /// ICE or DTLS, handled inside.
    Handled,
}

/// The crypto provider shared by every peer of the process.
pub fn crypto_provider() -> Arc<dyn RTCCryptoProvider> {
    rtc_crypto::default_provider().expect("the ring provider is compiled in")
}

/// Generates local ICE credentials as browsers do (4 and 22 characters).
pub fn ice_credentials() -> IceCredentials {
    use rand::distributions::{Alphanumeric, DistString};
    let mut rng = rand::thread_rng();
    IceCredentials {
        ufrag: Alphanumeric.sample_string(&mut rng, 8),
        pwd: Alphanumeric.sample_string(&mut rng, 24),
    }
}

/// Our certificate's fingerprint as signalled.
pub fn fingerprint_of(certificate: &DtlsCertificate) -> Fingerprint {
    let f = certificate.fingerprint();
    Fingerprint {
        algorithm: "sha-256".to_owned(),
        value: f.value.clone(),
    }
}

pub struct Peer {
    local: LocalParameters,
    remote: Option<RemoteParameters>,
    provider: Arc<dyn RTCCryptoProvider>,
    dtls: DtlsTransport,
    srtp: Option<SrtpSession>,
    state: PeerState,
    /// The remote candidate that answered our check (or checked us).
    selected: Option<SocketAddr>,
    tiebreaker: u64,
    next_check: Option<Instant>,
    /// A check of ours was answered; the remote checked us.
    answered: bool,
    checked: bool,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    /// When SRTP got keyed.
    pub connected_at: Option<Instant>,
}

impl Peer {
    pub fn new(
        local: LocalParameters,
        certificate: Arc<DtlsCertificate>,
        provider: Arc<dyn RTCCryptoProvider>,
    ) -> Peer {
        let dtls = DtlsTransport::new(
            certificate,
            DtlsSettings {
                srtp_profiles: vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::AesCm128HmacSha1_80],
                mtu: 1200,
                srtp_replay_window: 128,
                retransmit_interval: DTLS_RETRANSMIT,
            },
        );
        Peer {
            local,
            remote: None,
            provider,
            dtls,
            srtp: None,
            state: PeerState::New,
            selected: None,
            tiebreaker: rand::random(),
            next_check: None,
            answered: false,
            checked: false,
            transmits: VecDeque::new(),
            connected_at: None,
        }
    }

    pub fn local(&self) -> &LocalParameters {
        &self.local
    }

    pub fn state(&self) -> PeerState {
        self.state
    }

    /// Starts connecting to an SFU transport: checks its candidates and,
    /// as DTLS client, starts the handshake once a check succeeds.
    pub fn start(&mut self, now: Instant, remote: RemoteParameters) {
        self.remote = Some(remote);
        self.state = PeerState::Checking;
        self.next_check = Some(now);
        self.handle_timeout(now);
    }

    /// The address media goes to.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.next_check, self.dtls.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_check.is_some_and(|at| now >= at) {
            self.send_checks(now);
        }
        if self.dtls.poll_timeout().is_some_and(|at| now >= at) {
            self.dtls.handle_timeout(now);
            self.drain_dtls(now);
        }
    }

    /// Handles one datagram from `from`.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &'a [u8],
    ) -> Received<'a> {
        match data.first() {
            Some(0..=3) => self.handle_stun(now, from, data),
            Some(20..=63) => {
                self.dtls.handle_datagram(now, data);
                self.drain_dtls(now);
            }
            Some(128..=191) if data.len() >= 2 => {
                return if (192..=223).contains(&data[1]) {
                    Received::Rtcp(data)
                } else {
                    Received::Rtp(data)
                };
            }
            _ => {}
        }
        Received::Handled
    }

    pub fn srtp(&mut self) -> Option<&mut SrtpSession> {
        self.srtp.as_mut()
    }

    /// Protects and queues an RTP packet to the selected candidate.
    pub fn send_rtp(&mut self, packet: &[u8]) -> bool {
        self.send_protected(packet, SrtpSession::protect_rtp)
    }

    /// Protects and queues an RTCP compound packet.
    pub fn send_rtcp(&mut self, packet: &[u8]) -> bool {
        self.send_protected(packet, SrtpSession::protect_rtcp)
    }

    fn send_protected(
        &mut self,
        packet: &[u8],
        protect: impl FnOnce(&mut SrtpSession, &[u8]) -> Result<Vec<u8>, SrtpError>,
    ) -> bool {
        let (Some(to), Some(srtp)) = (self.selected, self.srtp.as_mut()) else {
            return false;
        };
        match protect(srtp, packet) {
            Ok(protected) => {
                self.transmits.push_back((to, protected));
                true
            }
            Err(_) => false,
        }
    }

    fn send_checks(&mut self, now: Instant) {
        let Some(remote) = &self.remote else {
            return;
        };
        let targets: Vec<SocketAddr> = match self.selected {
            Some(selected) => vec![selected],
            None => remote.candidates.clone(),
        };
        let username = format!("{}:{}", remote.ice.ufrag, self.local.ice.ufrag);
        let password = remote.ice.pwd.clone();
        let controlling = remote.controlling;
        for to in targets {
            if let Some(request) = self.binding_request(&username, &password, controlling) {
                self.transmits.push_back((to, request));
            }
        }
        self.next_check = Some(
            now + if self.selected.is_some() {
                CONSENT_INTERVAL
            } else {
                CHECK_INTERVAL
            },
        );
    }

    fn binding_request(
        &self,
        username: &str,
        password: &str,
        controlling: bool,
    ) -> Option<Vec<u8>> {
        let mut message = Message::new();
        message
            .build(&[
                Box::new(TransactionId::new()),
                Box::new(BINDING_REQUEST),
                Box::new(TextAttribute::new(ATTR_USERNAME, username.to_owned())),
            ])
            .ok()?;
        message.add(ATTR_PRIORITY, &PRIORITY.to_be_bytes());
        if controlling {
            message.add(ATTR_ICE_CONTROLLING, &self.tiebreaker.to_be_bytes());
            message.add(ATTR_USE_CANDIDATE, &[]);
        } else {
            message.add(ATTR_ICE_CONTROLLED, &self.tiebreaker.to_be_bytes());
        }
        MessageIntegrity::new_short_term_integrity_with_provider(
            password.to_owned(),
            self.provider.crypto(),
        )
        .add_to(&mut message)
        .ok()?;
        FINGERPRINT.add_to(&mut message).ok()?;
        Some(message.raw)
    }

    fn handle_stun(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let mut message = Message::new();
        if message.unmarshal_binary(data).is_err() {
            return;
        }
        let kind = message.typ;
        if kind == MessageType::new(METHOD_BINDING, CLASS_SUCCESS_RESPONSE) {
            let Some(remote) = &self.remote else {
                return;
            };
            if MessageIntegrity::check(
                &mut message,
                remote.ice.pwd.as_bytes(),
                self.provider.crypto(),
            )
            .is_err()
            {
                return;
            }
            self.answered = true;
            self.on_check_succeeded(now, from);
        } else if kind == MessageType::new(METHOD_BINDING, CLASS_REQUEST) {
            // A full agent checks us: answer with our password.
            if MessageIntegrity::check(
                &mut message,
                self.local.ice.pwd.as_bytes(),
                self.provider.crypto(),
            )
            .is_err()
            {
                return;
            }
            let crypto = self.provider.clone();
            let mut response = Message::new();
            let setters: [Box<dyn Setter + '_>; 5] = [
                Box::new(message.transaction_id),
                Box::new(BINDING_SUCCESS),
                Box::new(XorMappedAddress {
                    ip: from.ip(),
                    port: from.port(),
                }),
                Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                    self.local.ice.pwd.clone(),
                    crypto.crypto(),
                )),
                Box::new(FINGERPRINT),
            ];
            if response.build(&setters).is_ok() {
                self.transmits.push_back((from, response.raw));
            }
            // A check from the remote proves the path too (it is how a
            // controlling full agent's nomination reaches us).
            self.checked = true;
            self.on_check_succeeded(now, from);
        }
    }

    fn on_check_succeeded(&mut self, now: Instant, from: SocketAddr) {
        if self.selected.is_none() {
            self.selected = Some(from);
            self.next_check = Some(now + CONSENT_INTERVAL);
        }
        // As DTLS server we listen at once. As client we send the
        // ClientHello when both sides see the path: towards an ICE-lite
        // server once it answered us; towards a full agent (Janus) once it
        // also checked us (its ICE is connected only then, and a
        // ClientHello sent earlier is dropped and retransmitted a second
        // later).
        let Some(remote) = &self.remote else {
            return;
        };
        let ready = remote.local_role == LocalDtlsRole::Server
            || (self.answered && (remote.ice_lite || self.checked));
        if self.state == PeerState::Checking && ready {
            self.state = PeerState::Handshaking;
            let role = match remote.local_role {
                LocalDtlsRole::Client => HandshakeRole::Client,
                LocalDtlsRole::Server => HandshakeRole::Server,
            };
            let fingerprints: Vec<DtlsFingerprint> = remote
                .fingerprints
                .iter()
                .filter(|f| f.algorithm.eq_ignore_ascii_case("sha-256"))
                .map(|f| DtlsFingerprint {
                    algorithm: FingerprintAlgorithm::Sha256,
                    value: f.value.to_ascii_uppercase(),
                })
                .collect();
            self.dtls.start(now, role, &fingerprints);
            self.drain_dtls(now);
        }
    }

    fn drain_dtls(&mut self, now: Instant) {
        while let Some(datagram) = self.dtls.poll_transmit() {
            if let Some(to) = self.selected {
                self.transmits.push_back((to, datagram));
            }
        }
        while let Some(event) = self.dtls.poll_event() {
            match event {
                DtlsEvent::SrtpReady(session) => {
                    self.srtp = Some(session);
                    self.state = PeerState::Connected;
                    self.connected_at = Some(now);
                }
                DtlsEvent::StateChanged(DtlsState::Failed | DtlsState::Closed) => {
                    self.state = PeerState::Failed;
                }
                DtlsEvent::StateChanged(_) => {}
            }
        }
    }
}
