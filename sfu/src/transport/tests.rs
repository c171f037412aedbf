//! End-to-end tests of [`WebRtcTransport`] against a "browser" built directly
//! from rtc-stun, rtc-dtls and rtc-srtp, over a simulated network (a delay
//! queue with optional loss and reordering) in virtual time.

use super::dtls::fingerprint_verifier;
use super::*;
use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtc_crypto::{HashAlgorithm, RTCCryptoProvider};
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::error::Error as RtcError;
use rtc_srtp::config::Config as SrtpConfig;
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;
use rtc_stun::attributes::{
    ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME, ATTR_USE_CANDIDATE,
};
use rtc_stun::error_code::ErrorCodeAttribute;
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{
    Getter, Message, Setter, TransactionId, BINDING_REQUEST, CLASS_ERROR_RESPONSE,
    CLASS_SUCCESS_RESPONSE,
};
use rtc_stun::textattrs::TextAttribute;
use rtc_stun::xoraddr::XorMappedAddress;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(198, 51, 100, 1),
    40_000,
));
const BROWSER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(192, 0, 2, 10),
    50_000,
));
const LATENCY: Duration = Duration::from_millis(10);
const CONSENT_INTERVAL: Duration = Duration::from_secs(5);

fn provider() -> Arc<dyn RTCCryptoProvider> {
    rtc_crypto::default_provider().expect("the ring provider is compiled in")
}

fn shared_certificate() -> Arc<DtlsCertificate> {
    Arc::new(DtlsCertificate::generate().expect("ring generates ECDSA certificates"))
}

/// A minimal RTP packet: V=2, PT 111, the given sequence number.
fn rtp_packet(sequence: u16, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, 111];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&(u32::from(sequence) * 960).to_be_bytes());
    packet.extend_from_slice(&0xCAFE_BABEu32.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// A receiver report with one report block.
fn rtcp_receiver_report(sender_ssrc: u32) -> Vec<u8> {
    let mut packet = vec![0x81, 201, 0, 7];
    packet.extend_from_slice(&sender_ssrc.to_be_bytes());
    packet.extend_from_slice(&0xCAFE_BABEu32.to_be_bytes());
    packet.extend_from_slice(&[0; 20]);
    packet
}

// ---------------------------------------------------------------------------
// The simulated network.

struct Datagram {
    deliver_at: Instant,
    from: SocketAddr,
    to: SocketAddr,
    payload: Vec<u8>,
}

type LossRule = Box<dyn FnMut(&Datagram) -> bool>;

struct Network {
    in_flight: Vec<Datagram>,
    /// Returns true for datagrams to lose.
    loss: LossRule,
    /// Extra random delay up to this much, which reorders datagrams.
    jitter: Duration,
    rng: StdRng,
}

impl Network {
    fn new() -> Self {
        Network {
            in_flight: Vec::new(),
            loss: Box::new(|_| false),
            jitter: Duration::ZERO,
            rng: StdRng::seed_from_u64(7),
        }
    }

    fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        let jitter = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.jitter.mul_f64(self.rng.gen::<f64>())
        };
        let datagram = Datagram {
            deliver_at: now + LATENCY + jitter,
            from,
            to,
            payload,
        };
        if !(self.loss)(&datagram) {
            self.in_flight.push(datagram);
        }
    }

    fn next_delivery(&self) -> Option<Instant> {
        self.in_flight
            .iter()
            .map(|datagram| datagram.deliver_at)
            .min()
    }

    /// The earliest datagram due at `now`, if any.
    fn pop_due(&mut self, now: Instant) -> Option<Datagram> {
        let index = self
            .in_flight
            .iter()
            .enumerate()
            .filter(|(_, datagram)| datagram.deliver_at <= now)
            .min_by_key(|(_, datagram)| datagram.deliver_at)
            .map(|(index, _)| index)?;
        Some(self.in_flight.remove(index))
    }
}

// ---------------------------------------------------------------------------
// The browser: a controlling ICE agent, a DTLS endpoint and SRTP contexts.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrowserRole {
    DtlsClient,
    DtlsServer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StunResult {
    Success(SocketAddr),
    Error(u16),
    BadIntegrity,
}

struct Browser {
    provider: Arc<dyn RTCCryptoProvider>,
    role: BrowserRole,
    certificate: Certificate,
    fingerprint: DtlsFingerprint,
    srtp_profiles: Vec<SrtpProtectionProfile>,
    /// What the browser believes the server's fingerprint is.
    expected_server_fingerprint: DtlsFingerprint,
    /// The server's ICE credentials the browser currently uses.
    remote_ice: IceParameters,
    endpoint: Option<Endpoint>,
    dtls_started: bool,
    pending_transactions: HashMap<[u8; 12], String>,
    unsolicited_stun: usize,
    stun_results: Vec<StunResult>,
    next_consent_check: Option<Instant>,
    consent_checks_enabled: bool,
    outbound_srtp: Option<Context>,
    inbound_srtp: Option<Context>,
    negotiated: Option<SrtpProtectionProfile>,
    handshake_complete: bool,
    dtls_errors: Vec<String>,
    peer_closed: bool,
    received_rtp: Vec<Vec<u8>>,
    received_rtcp: Vec<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
    /// Every datagram the browser sent, for replay and mutation tests.
    sent_log: Vec<Vec<u8>>,
}

impl Browser {
    fn new(role: BrowserRole, server: &WebRtcTransport) -> Self {
        let provider = provider();
        let certificate =
            Certificate::generate_self_signed(vec!["browser".to_owned()], provider.crypto())
                .expect("ring generates ECDSA certificates");
        let digest = provider
            .crypto()
            .hash(HashAlgorithm::Sha256, certificate.certificate[0].as_ref())
            .expect("ring hashes");
        Browser {
            provider,
            role,
            certificate,
            fingerprint: DtlsFingerprint::from_digest(FingerprintAlgorithm::Sha256, &digest),
            srtp_profiles: vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ],
            expected_server_fingerprint: server.dtls_parameters().fingerprints[0].clone(),
            remote_ice: server.ice_parameters(),
            endpoint: None,
            dtls_started: false,
            pending_transactions: HashMap::new(),
            unsolicited_stun: 0,
            stun_results: Vec::new(),
            next_consent_check: None,
            consent_checks_enabled: true,
            outbound_srtp: None,
            inbound_srtp: None,
            negotiated: None,
            handshake_complete: false,
            dtls_errors: Vec::new(),
            peer_closed: false,
            received_rtp: Vec::new(),
            received_rtcp: Vec::new(),
            outgoing: VecDeque::new(),
            sent_log: Vec::new(),
        }
    }

    /// The DTLS parameters mediasoup-client would send in `connect()`.
    fn dtls_parameters(&self) -> DtlsParameters {
        DtlsParameters {
            role: match self.role {
                BrowserRole::DtlsClient => DtlsRole::Client,
                BrowserRole::DtlsServer => DtlsRole::Server,
            },
            fingerprints: vec![self.fingerprint.clone()],
        }
    }

    fn dtls_config(&self, is_client: bool) -> Arc<HandshakeConfig> {
        let expected = self.expected_server_fingerprint.clone();
        let hasher = self.provider.clone();
        let verify = fingerprint_verifier(move |certificates| {
            let leaf = certificates.first().ok_or(RtcError::ErrNonCertificate)?;
            let digest = hasher
                .crypto()
                .hash(HashAlgorithm::Sha256, leaf)
                .map_err(|error| RtcError::Other(error.to_string()))?;
            if expected.matches(FingerprintAlgorithm::Sha256, &digest) {
                Ok(())
            } else {
                Err(RtcError::ErrNoMatchingCertificateFingerprint)
            }
        });
        Arc::new(
            ConfigBuilder::default()
                .with_crypto_provider(self.provider.clone())
                .with_certificates(vec![self.certificate.clone()])
                .with_srtp_protection_profiles(self.srtp_profiles.clone())
                .with_client_auth(ClientAuthType::RequireAnyClientCert)
                .with_insecure_skip_verify(true)
                .with_verify_peer_certificate(Some(verify))
                .with_extended_master_secret(ExtendedMasterSecretType::Require)
                .build(is_client, None)
                .expect("the browser's DTLS config is valid"),
        )
    }

    /// Sends a binding request with the given credentials; returns it.
    fn send_binding_request(&mut self, ufrag: &str, password: &str, nominate: bool) -> Vec<u8> {
        let mut message = Message::new();
        message
            .build(&[
                Box::new(TransactionId::new()),
                Box::new(BINDING_REQUEST),
                Box::new(TextAttribute::new(ATTR_USERNAME, format!("{ufrag}:brws"))),
            ])
            .expect("a request header and USERNAME always encode");
        message.add(ATTR_PRIORITY, &2_130_706_431u32.to_be_bytes());
        message.add(
            ATTR_ICE_CONTROLLING,
            &0x0123_4567_89ab_cdefu64.to_be_bytes(),
        );
        if nominate {
            message.add(ATTR_USE_CANDIDATE, &[]);
        }
        MessageIntegrity::new_short_term_integrity_with_provider(
            password.to_owned(),
            self.provider.crypto(),
        )
        .add_to(&mut message)
        .expect("ring signs");
        FINGERPRINT
            .add_to(&mut message)
            .expect("FINGERPRINT always encodes");
        self.pending_transactions
            .insert(message.transaction_id.0, password.to_owned());
        self.outgoing.push_back(message.raw.clone());
        message.raw
    }

    fn send_connectivity_check(&mut self, now: Instant) {
        let ufrag = self.remote_ice.username_fragment.clone();
        let password = self.remote_ice.password.clone();
        self.send_binding_request(&ufrag, &password, true);
        self.next_consent_check = Some(now + CONSENT_INTERVAL);
    }

    fn start(&mut self, now: Instant) {
        if self.role == BrowserRole::DtlsServer {
            let config = self.dtls_config(false);
            self.endpoint = Some(Endpoint::new(
                BROWSER,
                rtc_shared::TransportProtocol::UDP,
                Some(config),
            ));
        }
        self.send_connectivity_check(now);
    }

    fn start_dtls_client(&mut self, now: Instant) {
        if self.role != BrowserRole::DtlsClient || self.dtls_started {
            return;
        }
        self.dtls_started = true;
        let config = self.dtls_config(true);
        let mut endpoint = Endpoint::new(BROWSER, rtc_shared::TransportProtocol::UDP, None);
        endpoint
            .connect(now, SERVER, config, None)
            .expect("connecting to a real port works");
        self.endpoint = Some(endpoint);
    }

    fn handle(&mut self, now: Instant, datagram: &[u8]) {
        match datagram.first() {
            Some(0..=3) => self.handle_stun(now, datagram),
            Some(20..=63) => self.handle_dtls(now, datagram),
            Some(128..=191) => self.handle_media(datagram),
            _ => panic!("the server sent an unclassifiable datagram"),
        }
    }

    fn handle_stun(&mut self, now: Instant, datagram: &[u8]) {
        let mut message = Message::new();
        message
            .unmarshal_binary(datagram)
            .expect("the server's STUN parses");
        FINGERPRINT
            .check(&message)
            .expect("the server's STUN carries a valid FINGERPRINT");
        // Garbage tests inject requests the browser never sent; the server
        // answers those too.
        let Some(password) = self.pending_transactions.remove(&message.transaction_id.0) else {
            self.unsolicited_stun += 1;
            return;
        };
        if message.typ.class == CLASS_ERROR_RESPONSE {
            let mut code = ErrorCodeAttribute::default();
            code.get_from(&message)
                .expect("error responses carry ERROR-CODE");
            self.stun_results.push(StunResult::Error(code.code.0));
            return;
        }
        assert_eq!(message.typ.class, CLASS_SUCCESS_RESPONSE);
        if MessageIntegrity::check(&mut message, password.as_bytes(), self.provider.crypto())
            .is_err()
        {
            self.stun_results.push(StunResult::BadIntegrity);
            return;
        }
        let mut mapped = XorMappedAddress::default();
        mapped
            .get_from(&message)
            .expect("success responses carry XOR-MAPPED-ADDRESS");
        self.stun_results
            .push(StunResult::Success(SocketAddr::new(mapped.ip, mapped.port)));
        self.start_dtls_client(now);
    }

    fn handle_dtls(&mut self, now: Instant, datagram: &[u8]) {
        let Some(endpoint) = self.endpoint.as_mut() else {
            return;
        };
        match endpoint.read(now, SERVER, None, BytesMut::from(datagram)) {
            Ok(events) => {
                for event in events {
                    match event {
                        EndpointEvent::HandshakeComplete => self.key_srtp(),
                        EndpointEvent::PeerClosed => self.peer_closed = true,
                        _ => {}
                    }
                }
            }
            Err(error) => self.dtls_errors.push(error.to_string()),
        }
    }

    fn key_srtp(&mut self) {
        let endpoint = self
            .endpoint
            .as_ref()
            .expect("a handshake completes on an endpoint");
        let state = endpoint
            .get_connection_state(SERVER)
            .expect("a completed handshake has a connection");
        let negotiated = state.srtp_protection_profile();
        let profile = match negotiated {
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm => ProtectionProfile::AeadAes256Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
                ProtectionProfile::Aes128CmHmacSha1_80
            }
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => {
                ProtectionProfile::Aes128CmHmacSha1_32
            }
            other => panic!("the server negotiated an unexpected profile {other:?}"),
        };
        let mut config = SrtpConfig {
            profile,
            ..Default::default()
        };
        let material = state
            .export_keying_material(
                rtc_srtp::config::LABEL_EXTRACTOR_DTLS_SRTP,
                &[],
                config.keying_material_len(),
            )
            .expect("a completed handshake exports keys");
        config
            .set_session_keys_from_keying_material(material.as_ref(), state.is_client())
            .expect("the exported length is the profile's");
        let crypto = self.provider.crypto();
        self.outbound_srtp = Some(
            Context::new(
                &config.keys.local_master_key,
                &config.keys.local_master_salt,
                profile,
                None,
                None,
                crypto,
            )
            .expect("keys of the profile's size"),
        );
        self.inbound_srtp = Some(
            Context::new(
                &config.keys.remote_master_key,
                &config.keys.remote_master_salt,
                profile,
                Some(srtp_replay_protection(64)),
                Some(srtcp_replay_protection(64)),
                crypto,
            )
            .expect("keys of the profile's size"),
        );
        self.negotiated = Some(negotiated);
        self.handshake_complete = true;
    }

    fn handle_media(&mut self, datagram: &[u8]) {
        let inbound = self
            .inbound_srtp
            .as_mut()
            .expect("the server sends media only once DTLS is up");
        if (192..=223).contains(&datagram[1]) {
            let packet = inbound
                .decrypt_rtcp(datagram)
                .expect("the server's SRTCP authenticates");
            self.received_rtcp.push(packet.to_vec());
        } else {
            let packet = inbound
                .decrypt_rtp(datagram)
                .expect("the server's SRTP authenticates");
            self.received_rtp.push(packet.to_vec());
        }
    }

    fn send_rtp(&mut self, packet: &[u8]) -> Vec<u8> {
        let protected = self
            .outbound_srtp
            .as_mut()
            .expect("media is sent once DTLS is up")
            .encrypt_rtp(packet)
            .expect("RTP protects")
            .to_vec();
        self.outgoing.push_back(protected.clone());
        protected
    }

    fn send_rtcp(&mut self, packet: &[u8]) -> Vec<u8> {
        let protected = self
            .outbound_srtp
            .as_mut()
            .expect("media is sent once DTLS is up")
            .encrypt_rtcp(packet)
            .expect("RTCP protects")
            .to_vec();
        self.outgoing.push_back(protected.clone());
        protected
    }

    fn close_dtls(&mut self, now: Instant) {
        if let Some(endpoint) = self.endpoint.as_mut() {
            endpoint.close(now).expect("closing never fails");
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let dtls = self
            .endpoint
            .as_ref()
            .and_then(|endpoint| endpoint.poll_timeout(&SERVER));
        let consent = self
            .next_consent_check
            .filter(|_| self.consent_checks_enabled);
        match (dtls, consent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(endpoint) = self.endpoint.as_mut() {
            if endpoint
                .poll_timeout(&SERVER)
                .is_some_and(|deadline| deadline <= now)
            {
                if let Err(error) = endpoint.handle_timeout(SERVER, now) {
                    self.dtls_errors.push(error.to_string());
                }
            }
        }
        if self.consent_checks_enabled
            && self
                .next_consent_check
                .is_some_and(|deadline| deadline <= now)
        {
            self.send_connectivity_check(now);
        }
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let datagram = self.outgoing.pop_front().or_else(|| {
            self.endpoint
                .as_mut()
                .and_then(|endpoint| endpoint.poll_transmit())
                .map(|transmit| transmit.message.to_vec())
        })?;
        self.sent_log.push(datagram.clone());
        Some(datagram)
    }
}

// ---------------------------------------------------------------------------
// The world: server transport, browser and network in virtual time.

struct World {
    now: Instant,
    transport: WebRtcTransport,
    browser: Browser,
    network: Network,
    events: Vec<TransportEvent>,
    /// Every datagram the server sent.
    server_sent: Vec<Vec<u8>>,
}

impl World {
    fn new(role: BrowserRole, options: WebRtcTransportOptions) -> Self {
        let now = Instant::now();
        let transport = WebRtcTransport::new(options, shared_certificate(), now);
        let browser = Browser::new(role, &transport);
        World {
            now,
            transport,
            browser,
            network: Network::new(),
            events: Vec::new(),
            server_sent: Vec::new(),
        }
    }

    /// Moves every queued datagram into the network and delivers what is due.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(output) = self.transport.poll_output() {
                progressed = true;
                match output {
                    Output::Transmit {
                        destination,
                        payload,
                    } => {
                        self.server_sent.push(payload.clone());
                        self.network.send(self.now, SERVER, destination, payload);
                    }
                    Output::Event(event) => self.events.push(event),
                }
            }
            while let Some(payload) = self.browser.poll_transmit() {
                progressed = true;
                self.network.send(self.now, BROWSER, SERVER, payload);
            }
            while let Some(datagram) = self.network.pop_due(self.now) {
                progressed = true;
                if datagram.to == SERVER {
                    self.transport
                        .handle_input(self.now, datagram.from, &datagram.payload);
                } else if datagram.to == BROWSER {
                    self.browser.handle(self.now, &datagram.payload);
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn fire_timers(&mut self) {
        if self
            .transport
            .poll_timeout()
            .is_some_and(|deadline| deadline <= self.now)
        {
            self.transport.handle_timeout(self.now);
        }
        self.browser.handle_timeout(self.now);
    }

    /// Runs the world for `duration` of virtual time.
    fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            self.pump();
            let next = [
                self.transport.poll_timeout(),
                self.browser.poll_timeout(),
                self.network.next_delivery(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(next) if next <= end => {
                    self.now = self.now.max(next);
                    self.fire_timers();
                }
                _ => {
                    self.now = end;
                    self.fire_timers();
                    self.pump();
                    return;
                }
            }
        }
    }

    /// ICE, then `connect()` with the browser's parameters, then run.
    fn connect(&mut self) {
        let parameters = self.browser.dtls_parameters();
        self.transport
            .connect(self.now, parameters)
            .expect("the first connect() with a sha-256 fingerprint is accepted");
        self.browser.start(self.now);
        self.run_for(Duration::from_secs(3));
    }

    fn connected(role: BrowserRole) -> Self {
        let mut world = World::new(role, WebRtcTransportOptions::default());
        world.connect();
        assert!(world.transport.is_connected(), "{:?}", world.events);
        assert!(world.browser.handshake_complete);
        world
    }

    fn received_rtp(&self) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter_map(|event| match event {
                TransportEvent::Rtp(packet) => Some(packet.clone()),
                _ => None,
            })
            .collect()
    }

    fn received_rtcp(&self) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter_map(|event| match event {
                TransportEvent::Rtcp(packet) => Some(packet.clone()),
                _ => None,
            })
            .collect()
    }

    fn dtls_states(&self) -> Vec<DtlsState> {
        self.events
            .iter()
            .filter_map(|event| match event {
                TransportEvent::DtlsStateChanged(state) => Some(*state),
                _ => None,
            })
            .collect()
    }

    fn ice_states(&self) -> Vec<IceState> {
        self.events
            .iter()
            .filter_map(|event| match event {
                TransportEvent::IceStateChanged(state) => Some(*state),
                _ => None,
            })
            .collect()
    }

    /// Media both ways still works.
    fn assert_media_flows(&mut self, sequence: u16) {
        let before = self.received_rtp().len();
        let packet = rtp_packet(sequence, b"still flowing");
        self.browser.send_rtp(&packet);
        self.transport
            .send_rtp(self.now, &packet)
            .expect("a connected transport sends");
        self.run_for(Duration::from_millis(100));
        assert_eq!(self.received_rtp().len(), before + 1);
        assert_eq!(self.received_rtp().last(), Some(&packet));
        assert_eq!(self.browser.received_rtp.last(), Some(&packet));
    }
}

fn options_with_profiles(profiles: &[SrtpProfile]) -> WebRtcTransportOptions {
    let mut options = WebRtcTransportOptions::default();
    options.srtp_profiles = profiles.to_vec();
    options
}

// ---------------------------------------------------------------------------
// ICE.

#[test]
fn ice_binding_with_use_candidate_completes_and_selects_the_browser_tuple() {
    let mut world = World::new(BrowserRole::DtlsClient, WebRtcTransportOptions::default());
    world.browser.start(world.now);
    world.run_for(Duration::from_millis(100));
    assert_eq!(
        world.browser.stun_results,
        vec![StunResult::Success(BROWSER)]
    );
    assert_eq!(world.transport.ice_state(), IceState::Completed);
    assert_eq!(world.transport.ice_selected_tuple(), Some(BROWSER));
    assert_eq!(
        &world.events[..2],
        &[
            TransportEvent::IceSelectedTupleChanged(BROWSER),
            TransportEvent::IceStateChanged(IceState::Completed),
        ]
    );
    // Without connect(), DTLS has not started.
    assert_eq!(world.transport.dtls_state(), DtlsState::New);
}

#[test]
fn ice_refuses_bad_message_integrity_and_a_wrong_ufrag_with_401() {
    let mut world = World::new(BrowserRole::DtlsClient, WebRtcTransportOptions::default());
    let ufrag = world.browser.remote_ice.username_fragment.clone();
    let password = world.browser.remote_ice.password.clone();
    world
        .browser
        .send_binding_request(&ufrag, "wrong-password-wrong-password!!", true);
    world
        .browser
        .send_binding_request("wrongufrag", &password, true);
    world.run_for(Duration::from_millis(100));
    assert_eq!(
        world.browser.stun_results,
        vec![StunResult::Error(401), StunResult::Error(401)]
    );
    assert_eq!(world.transport.ice_state(), IceState::New);
    assert_eq!(world.transport.ice_selected_tuple(), None);
    assert_eq!(world.transport.stats().stun_requests_rejected, 2);
}

#[test]
fn consent_timeout_disconnects_ice_and_stops_sending() {
    let mut world = World::connected(BrowserRole::DtlsClient);
    world.run_for(Duration::from_secs(60));
    assert_eq!(
        world.transport.ice_state(),
        IceState::Completed,
        "consent checks every 5 s keep ICE up"
    );
    // The last check arrived less than 5 s ago: consent lasts 30 s from it.
    world.browser.consent_checks_enabled = false;
    world.run_for(Duration::from_secs(24));
    assert_eq!(world.transport.ice_state(), IceState::Completed);
    world.run_for(Duration::from_secs(7));
    assert_eq!(world.transport.ice_state(), IceState::Disconnected);
    assert_eq!(world.ice_states().last(), Some(&IceState::Disconnected));
    assert_eq!(world.transport.ice_selected_tuple(), None);
    assert_eq!(
        world.transport.send_rtp(world.now, &rtp_packet(1, b"x")),
        Err(SendError::NotConnected)
    );
    assert_eq!(world.transport.stats().sends_dropped, 1);

    // A new check brings ICE back, and DTLS (never torn down) still works.
    world.browser.consent_checks_enabled = true;
    world.browser.send_connectivity_check(world.now);
    world.run_for(Duration::from_millis(100));
    assert_eq!(world.transport.ice_state(), IceState::Completed);
    world.assert_media_flows(2);
}

#[test]
fn ice_restart_keeps_media_flowing_and_retires_the_old_credentials() {
    let mut world = World::connected(BrowserRole::DtlsClient);
    let old = world.browser.remote_ice.clone();
    let new = world.transport.restart_ice(world.now);
    assert_ne!(new.username_fragment, old.username_fragment);
    assert_ne!(new.password, old.password);
    assert!(new.ice_lite);

    // Before the browser learns the new credentials, the old ones work.
    world.run_for(Duration::from_secs(6));
    assert_eq!(
        world.browser.stun_results.last(),
        Some(&StunResult::Success(BROWSER))
    );
    world.assert_media_flows(10);

    // The browser switches; the old credentials are refused afterwards.
    world.browser.remote_ice = new;
    world.run_for(Duration::from_secs(6));
    assert_eq!(
        world.browser.stun_results.last(),
        Some(&StunResult::Success(BROWSER))
    );
    world
        .browser
        .send_binding_request(&old.username_fragment, &old.password, true);
    world.run_for(Duration::from_millis(100));
    assert_eq!(
        world.browser.stun_results.last(),
        Some(&StunResult::Error(401))
    );
    world.assert_media_flows(11);
    assert_eq!(world.transport.ice_state(), IceState::Completed);
}

#[test]
fn a_newly_nominated_tuple_takes_over_media() {
    let mut world = World::connected(BrowserRole::DtlsClient);
    let moved = SocketAddr::from(([192, 0, 2, 10], 50_002));
    let ufrag = world.browser.remote_ice.username_fragment.clone();
    let password = world.browser.remote_ice.password.clone();
    let request = world.browser.send_binding_request(&ufrag, &password, true);
    world.browser.outgoing.clear();
    world.transport.handle_input(world.now, moved, &request);
    let outputs: Vec<Output> = std::iter::from_fn(|| world.transport.poll_output()).collect();
    assert!(
        matches!(&outputs[0], Output::Transmit { destination, .. } if *destination == moved),
        "the response goes back where the request came from"
    );
    assert_eq!(
        outputs[1..],
        [Output::Event(TransportEvent::IceSelectedTupleChanged(
            moved
        ))]
    );
    world
        .transport
        .send_rtp(world.now, &rtp_packet(1, b"moved"))
        .expect("still connected");
    assert!(matches!(
        world.transport.poll_output(),
        Some(Output::Transmit { destination, .. }) if destination == moved
    ));
}

// ---------------------------------------------------------------------------
// DTLS.

#[test]
fn dtls_completes_with_the_browser_as_client_and_gcm_preferred() {
    let world = World::connected(BrowserRole::DtlsClient);
    assert_eq!(world.transport.dtls_parameters().role, DtlsRole::Server);
    assert_eq!(
        world.transport.srtp_profile(),
        Some(SrtpProfile::AeadAes128Gcm)
    );
    assert_eq!(
        world.dtls_states(),
        vec![DtlsState::Connecting, DtlsState::Connected]
    );
    assert!(
        world.browser.dtls_errors.is_empty(),
        "{:?}",
        world.browser.dtls_errors
    );
}

#[test]
fn dtls_completes_with_the_browser_as_server() {
    let world = World::connected(BrowserRole::DtlsServer);
    assert_eq!(world.transport.dtls_parameters().role, DtlsRole::Client);
    assert_eq!(
        world.transport.srtp_profile(),
        Some(SrtpProfile::AeadAes128Gcm)
    );
    assert_eq!(
        world.dtls_states(),
        vec![DtlsState::Connecting, DtlsState::Connected]
    );
}

#[test]
fn each_srtp_profile_can_be_forced_in_either_role() {
    for role in [BrowserRole::DtlsClient, BrowserRole::DtlsServer] {
        for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::AesCm128HmacSha1_80] {
            let mut world = World::new(role, options_with_profiles(&[profile]));
            world.connect();
            assert!(world.transport.is_connected(), "{role:?} {profile:?}");
            assert_eq!(world.transport.srtp_profile(), Some(profile), "{role:?}");
            assert_eq!(world.browser.negotiated, Some(profile.to_dtls()));
            world.assert_media_flows(1);
        }
    }
}

#[test]
fn dtls_completes_after_the_first_flight_is_lost() {
    for role in [BrowserRole::DtlsClient, BrowserRole::DtlsServer] {
        let mut world = World::new(role, WebRtcTransportOptions::default());
        let mut dropped = false;
        world.network.loss = Box::new(move |datagram| {
            let is_dtls = matches!(datagram.payload.first(), Some(20..=63));
            if is_dtls && !dropped {
                dropped = true;
                return true;
            }
            false
        });
        world.connect();
        assert!(
            world.transport.is_connected(),
            "{role:?}: {:?}",
            world.events
        );
        world.assert_media_flows(1);
    }
}

#[test]
fn dtls_from_the_browser_before_connect_is_held_until_connect() {
    let mut world = World::new(BrowserRole::DtlsClient, WebRtcTransportOptions::default());
    world.browser.start(world.now);
    world.run_for(Duration::from_millis(500));
    assert_eq!(world.transport.dtls_state(), DtlsState::New);
    let parameters = world.browser.dtls_parameters();
    world
        .transport
        .connect(world.now, parameters)
        .expect("connect() is accepted");
    // The held ClientHello is answered at once: well before the browser's
    // first retransmission (1 s after the original, 500 ms from now).
    world.run_for(Duration::from_millis(100));
    assert!(world.transport.is_connected(), "{:?}", world.events);
    world.assert_media_flows(1);
}

#[test]
fn wrong_remote_fingerprint_fails_the_handshake() {
    for role in [BrowserRole::DtlsClient, BrowserRole::DtlsServer] {
        let mut world = World::new(role, WebRtcTransportOptions::default());
        let mut parameters = world.browser.dtls_parameters();
        parameters.fingerprints[0] =
            DtlsFingerprint::from_digest(FingerprintAlgorithm::Sha256, &[0x42; 32]);
        world
            .transport
            .connect(world.now, parameters)
            .expect("a well-formed but wrong fingerprint is accepted by connect()");
        world.browser.start(world.now);
        world.run_for(Duration::from_secs(5));
        assert_eq!(world.transport.dtls_state(), DtlsState::Failed, "{role:?}");
        assert_eq!(
            world.dtls_states(),
            vec![DtlsState::Connecting, DtlsState::Failed],
            "{role:?}"
        );
        assert!(!world.transport.is_connected());
        assert!(!world.browser.handshake_complete, "{role:?}");
        // The transport itself lives on: ICE still answers.
        assert_eq!(world.transport.ice_state(), IceState::Completed);
    }
}

#[test]
fn browser_rejecting_our_certificate_fails_the_handshake() {
    let mut world = World::new(BrowserRole::DtlsClient, WebRtcTransportOptions::default());
    world.browser.expected_server_fingerprint =
        DtlsFingerprint::from_digest(FingerprintAlgorithm::Sha256, &[0x42; 32]);
    world.connect();
    assert_eq!(world.transport.dtls_state(), DtlsState::Failed);
}

#[test]
fn connect_is_refused_twice_and_without_a_sha256_fingerprint() {
    let mut world = World::new(BrowserRole::DtlsClient, WebRtcTransportOptions::default());
    assert_eq!(world.transport.dtls_parameters().role, DtlsRole::Auto);
    let mut parameters = world.browser.dtls_parameters();
    parameters.fingerprints[0].algorithm = FingerprintAlgorithm::Sha1;
    assert_eq!(
        world.transport.connect(world.now, parameters),
        Err(ConnectError::NoSupportedFingerprint)
    );
    assert_eq!(world.transport.dtls_parameters().role, DtlsRole::Auto);
    let parameters = world.browser.dtls_parameters();
    assert_eq!(
        world.transport.connect(world.now, parameters.clone()),
        Ok(())
    );
    assert_eq!(
        world.transport.connect(world.now, parameters),
        Err(ConnectError::AlreadyConnected)
    );
}

#[test]
fn remote_auto_role_makes_us_client_as_mediasoup_does() {
    let mut world = World::new(BrowserRole::DtlsServer, WebRtcTransportOptions::default());
    let mut parameters = world.browser.dtls_parameters();
    parameters.role = DtlsRole::Auto;
    world
        .transport
        .connect(world.now, parameters)
        .expect("connect() is accepted");
    assert_eq!(world.transport.dtls_parameters().role, DtlsRole::Client);
    world.browser.start(world.now);
    world.run_for(Duration::from_secs(3));
    assert!(world.transport.is_connected());
}

#[test]
fn close_sends_close_notify_and_the_peer_sees_it() {
    let mut world = World::connected(BrowserRole::DtlsClient);
    world.transport.close(world.now);
    world.run_for(Duration::from_millis(100));
    assert!(world.browser.peer_closed);
    assert_eq!(world.dtls_states().last(), Some(&DtlsState::Closed));
    assert!(world.transport.is_closed());
    assert_eq!(world.transport.poll_timeout(), None);
    assert_eq!(
        world.transport.send_rtp(world.now, &rtp_packet(1, b"x")),
        Err(SendError::NotConnected)
    );
}

#[test]
fn close_notify_from_the_browser_closes_dtls() {
    let mut world = World::connected(BrowserRole::DtlsServer);
    world.browser.close_dtls(world.now);
    world.run_for(Duration::from_millis(100));
    assert_eq!(world.transport.dtls_state(), DtlsState::Closed);
    assert_eq!(world.dtls_states().last(), Some(&DtlsState::Closed));
    assert!(!world.transport.is_connected());
}

// ---------------------------------------------------------------------------
// SRTP.

#[test]
fn rtp_and_rtcp_round_trip_both_ways_byte_for_byte() {
    for role in [BrowserRole::DtlsClient, BrowserRole::DtlsServer] {
        let mut world = World::connected(role);
        let uplink: Vec<Vec<u8>> = (0..20)
            .map(|sequence| rtp_packet(sequence, &[sequence as u8; 100]))
            .collect();
        for packet in &uplink {
            world.browser.send_rtp(packet);
        }
        world.browser.send_rtcp(&rtcp_receiver_report(1));
        let downlink: Vec<Vec<u8>> = (1000..1020)
            .map(|sequence| rtp_packet(sequence, &[0xAB; 1000]))
            .collect();
        for packet in &downlink {
            world
                .transport
                .send_rtp(world.now, packet)
                .expect("a connected transport sends RTP");
        }
        world
            .transport
            .send_rtcp(world.now, &rtcp_receiver_report(2))
            .expect("a connected transport sends RTCP");
        world.run_for(Duration::from_millis(100));

        assert_eq!(world.received_rtp(), uplink, "{role:?}");
        assert_eq!(world.received_rtcp(), vec![rtcp_receiver_report(1)]);
        assert_eq!(world.browser.received_rtp, downlink);
        assert_eq!(world.browser.received_rtcp, vec![rtcp_receiver_report(2)]);
        let stats = world.transport.stats();
        assert_eq!(stats.rtp_packets_received, 20);
        assert_eq!(stats.rtcp_packets_received, 1);
        assert_eq!(stats.rtp_packets_sent, 20);
        assert_eq!(stats.rtcp_packets_sent, 1);
        assert_eq!(stats.srtp_unprotect_errors, 0);
    }
}

#[test]
fn media_survives_loss_and_reordering() {
    let mut world = World::connected(BrowserRole::DtlsClient);
    world.network.jitter = Duration::from_millis(30);
    let mut rng = StdRng::seed_from_u64(3);
    world.network.loss = Box::new(move |datagram| {
        matches!(datagram.payload.first(), Some(128..=191)) && rng.gen_bool(0.1)
    });
    let sent: Vec<Vec<u8>> = (0..200)
        .map(|sequence| rtp_packet(sequence, &[7; 200]))
        .collect();
    for packet in &sent {
        world.browser.send_rtp(packet);
        world.run_for(Duration::from_millis(1));
    }
    world.run_for(Duration::from_millis(200));
    let received = world.received_rtp();
    assert!(
        received.len() > 150 && received.len() < 200,
        "{}",
        received.len()
    );
    assert!(received.iter().all(|packet| sent.contains(packet)));
    assert_eq!(world.transport.stats().srtp_replays_rejected, 0);
    assert_eq!(world.transport.stats().srtp_unprotect_errors, 0);
}

#[test]
fn replayed_srtp_and_srtcp_are_rejected() {
    let mut world = World::connected(BrowserRole::DtlsClient);
    let packet = rtp_packet(5, b"once");
    let protected = world.browser.send_rtp(&packet);
    let report = world.browser.send_rtcp(&rtcp_receiver_report(9));
    world.run_for(Duration::from_millis(50));
    world.browser.outgoing.push_back(protected);
    world.browser.outgoing.push_back(report);
    world.run_for(Duration::from_millis(50));
    assert_eq!(world.received_rtp(), vec![packet]);
    assert_eq!(world.received_rtcp(), vec![rtcp_receiver_report(9)]);
    assert_eq!(world.transport.stats().srtp_replays_rejected, 2);
    world.assert_media_flows(6);
}

#[test]
fn media_from_an_unknown_address_is_ignored() {
    let mut world = World::connected(BrowserRole::DtlsClient);
    let protected = world.browser.send_rtp(&rtp_packet(1, b"spoofed"));
    world.browser.outgoing.clear();
    let stranger = SocketAddr::from(([203, 0, 113, 99], 1234));
    world
        .transport
        .handle_input(world.now, stranger, &protected);
    world.pump();
    assert!(world.received_rtp().is_empty());
    assert_eq!(world.transport.ice_selected_tuple(), Some(BROWSER));
}

#[test]
fn sending_before_connected_is_dropped_and_counted() {
    let mut world = World::new(BrowserRole::DtlsClient, WebRtcTransportOptions::default());
    assert_eq!(
        world
            .transport
            .send_rtp(world.now, &rtp_packet(1, b"early")),
        Err(SendError::NotConnected)
    );
    assert_eq!(
        world
            .transport
            .send_rtcp(world.now, &rtcp_receiver_report(1)),
        Err(SendError::NotConnected)
    );
    assert_eq!(world.transport.stats().sends_dropped, 2);
    assert_eq!(world.transport.poll_output(), None);
}

// ---------------------------------------------------------------------------
// Robustness.

/// A random datagram whose first byte falls in the given RFC 7983 range.
fn random_datagram(rng: &mut StdRng, class: usize) -> Vec<u8> {
    let len = rng.gen_range(0..300);
    let mut datagram: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    if let Some(first) = datagram.first_mut() {
        *first = match class % 4 {
            0 => rng.gen_range(0..=3),
            1 => rng.gen_range(20..=63),
            2 => rng.gen_range(128..=191),
            _ => rng.gen(),
        };
    }
    if class % 4 == 0 && datagram.len() >= 8 {
        // Make it look like STUN so it reaches the STUN parser.
        datagram[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    }
    datagram
}

/// `original` with a few random bytes flipped, truncated sometimes.
fn mutate(rng: &mut StdRng, original: &[u8]) -> Vec<u8> {
    let mut datagram = original.to_vec();
    if datagram.is_empty() {
        return datagram;
    }
    for _ in 0..rng.gen_range(1..4) {
        let index = rng.gen_range(0..datagram.len());
        datagram[index] ^= rng.gen_range(1..=255u8);
    }
    if rng.gen_bool(0.2) {
        datagram.truncate(rng.gen_range(0..datagram.len()));
    }
    datagram
}

#[test]
fn random_garbage_never_panics_and_never_kills_a_connected_transport() {
    let mut rng = StdRng::seed_from_u64(11);
    // Before ICE: from the future browser address and from strangers.
    let mut world = World::new(BrowserRole::DtlsClient, WebRtcTransportOptions::default());
    for class in 0..2_000 {
        let datagram = random_datagram(&mut rng, class);
        world.transport.handle_input(world.now, BROWSER, &datagram);
    }
    while world.transport.poll_output().is_some() {}
    world.connect();
    assert!(world.transport.is_connected());

    // Connected: random and mutated real traffic from the browser's tuple.
    let mut samples = world.browser.sent_log.clone();
    samples.push(world.browser.send_rtp(&rtp_packet(100, &[1; 50])));
    samples.push(world.browser.send_rtcp(&rtcp_receiver_report(5)));
    world.run_for(Duration::from_millis(50));
    for round in 0..5_000 {
        let datagram = if round % 2 == 0 {
            random_datagram(&mut rng, round / 2)
        } else {
            let sample = &samples[rng.gen_range(0..samples.len())];
            mutate(&mut rng, sample)
        };
        world.transport.handle_input(world.now, BROWSER, &datagram);
    }
    world.pump();
    assert!(world.transport.is_connected(), "{:?}", world.dtls_states());
    assert_eq!(world.transport.dtls_state(), DtlsState::Connected);
    world.assert_media_flows(200);
}

#[test]
fn garbage_during_the_handshake_neither_panics_nor_breaks_it() {
    let mut rng = StdRng::seed_from_u64(13);
    for role in [BrowserRole::DtlsClient, BrowserRole::DtlsServer] {
        let mut world = World::new(role, WebRtcTransportOptions::default());
        let parameters = world.browser.dtls_parameters();
        world
            .transport
            .connect(world.now, parameters)
            .expect("connect() is accepted");
        world.browser.start(world.now);
        for _ in 0..20 {
            world.run_for(Duration::from_millis(5));
            for class in 0..100 {
                let datagram = random_datagram(&mut rng, class);
                world.transport.handle_input(world.now, BROWSER, &datagram);
                let stranger = SocketAddr::from(([203, 0, 113, 1], 9));
                world.transport.handle_input(world.now, stranger, &datagram);
            }
        }
        world.run_for(Duration::from_secs(3));
        assert_eq!(world.transport.ice_state(), IceState::Completed);
        assert!(
            world.transport.is_connected(),
            "{role:?}: {:?}",
            world.dtls_states()
        );
    }
}

// ---------------------------------------------------------------------------
// Parameters.

#[test]
fn ice_candidates_follow_mediasoup_shape_and_priorities() {
    let world = World::new(BrowserRole::DtlsClient, WebRtcTransportOptions::default());
    let candidates = world.transport.ice_candidates(&[
        IceListenInfo::new(
            TransportProtocol::Udp,
            "10.0.0.1".parse().expect("an IP"),
            40_000,
        )
        .with_announced_address("203.0.113.7"),
        IceListenInfo::new(
            TransportProtocol::Tcp,
            "10.0.0.1".parse().expect("an IP"),
            40_001,
        ),
    ]);
    assert_eq!(candidates.len(), 2);
    assert_eq!(candidates[0].address, "203.0.113.7");
    assert_eq!(candidates[0].foundation, "udpcandidate");
    assert_eq!(candidates[0].tcp_type, None);
    assert_eq!(candidates[1].address, "10.0.0.1");
    assert_eq!(candidates[1].tcp_type, Some(IceCandidateTcpType::Passive));
    assert!(candidates[0].priority > candidates[1].priority);
    assert_eq!(candidates[0].priority, (64 << 24) + (10_000 << 8) + 255);
    let parameters = world.transport.ice_parameters();
    assert!(parameters.ice_lite);
    assert!(parameters.username_fragment.len() >= 4 && parameters.password.len() >= 22);
}

#[test]
fn the_certificate_fingerprint_is_uppercase_colon_hex_sha256() {
    let certificate = shared_certificate();
    let fingerprint = certificate.fingerprint();
    assert_eq!(fingerprint.algorithm, FingerprintAlgorithm::Sha256);
    assert_eq!(fingerprint.value.len(), 32 * 3 - 1);
    assert!(fingerprint
        .value
        .chars()
        .all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase()));
}
