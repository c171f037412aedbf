//! DTLS 1.2 for one transport, over rtc-dtls's sans-IO `Endpoint`: the
//! handshake in the role `connect()` decided, verification of the peer's
//! certificate against the fingerprints it signalled, and, once the
//! handshake completes, the SRTP session keyed from it.
//!
//! Also owns [`DtlsCertificate`], the self-signed certificate a worker
//! creates once and shares between its transports, as mediasoup does.
//!
//! rtc-dtls keys associations by remote address. The ICE-selected tuple can
//! change under a live association, so the endpoint only ever sees one
//! constant placeholder remote address ([`DTLS_PEER_KEY`]); the real
//! destination is the transport's selected tuple (engineering note §2).

use super::parameters::{DtlsFingerprint, FingerprintAlgorithm};
use super::srtp::{SrtpProfile, SrtpSession};
use bytes::BytesMut;
use rtc_crypto::{HashAlgorithm, RTCCryptoProvider};
use rtc_dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig,
    VerifyPeerCertificateFn,
};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::error::Error as RtcError;
use rtc_shared::TransportProtocol;
use serde::Serialize;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

/// The only remote address the DTLS endpoint ever sees. Port 9 (discard)
/// because rtc-dtls refuses to connect to port 0; nothing is ever sent to it.
const DTLS_PEER_KEY: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9));

/// The local address reported to the endpoint: likewise a placeholder.
const DTLS_LOCAL_KEY: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 10));

/// The RFC 5764 exporter label for DTLS-SRTP keys.
const SRTP_EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// DTLS record header: type (1), version (2), epoch (2), sequence (6),
/// length (2).
const DTLS_RECORD_HEADER_LEN: usize = 13;
const CONTENT_TYPE_ALERT: u8 = 21;
const ALERT_LEVEL_FATAL: u8 = 2;

/// Why a certificate could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// No built-in crypto provider is compiled in.
    #[error("no crypto provider: {0}")]
    NoProvider(String),
    /// Key generation, signing or hashing failed.
    #[error("certificate generation failed: {0}")]
    Generation(String),
}

/// A self-signed ECDSA P-256 certificate and its SHA-256 fingerprint: one
/// per worker, shared (behind an `Arc`) by all its transports.
pub struct DtlsCertificate {
    provider: Arc<dyn RTCCryptoProvider>,
    certificate: Certificate,
    fingerprint: DtlsFingerprint,
}

impl std::fmt::Debug for DtlsCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsCertificate")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl DtlsCertificate {
    /// Generates a certificate with the default (ring) crypto provider.
    pub fn generate() -> Result<Self, CertificateError> {
        let provider = rtc_crypto::default_provider()
            .map_err(|error| CertificateError::NoProvider(error.to_string()))?;
        DtlsCertificate::generate_with_provider(provider)
    }

    /// Generates a certificate whose key lives in `provider`, which every
    /// transport using the certificate then uses for all its crypto.
    pub fn generate_with_provider(
        provider: Arc<dyn RTCCryptoProvider>,
    ) -> Result<Self, CertificateError> {
        let certificate =
            Certificate::generate_self_signed(vec!["sfu".to_owned()], provider.crypto())
                .map_err(|error| CertificateError::Generation(error.to_string()))?;
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| CertificateError::Generation("empty certificate chain".to_owned()))?;
        let digest = provider
            .crypto()
            .hash(HashAlgorithm::Sha256, der.as_ref())
            .map_err(|error| CertificateError::Generation(error.to_string()))?;
        Ok(DtlsCertificate {
            provider,
            certificate,
            fingerprint: DtlsFingerprint::from_digest(FingerprintAlgorithm::Sha256, &digest),
        })
    }

    /// The SHA-256 fingerprint, in mediasoup's uppercase colon hex.
    pub fn fingerprint(&self) -> &DtlsFingerprint {
        &self.fingerprint
    }

    pub(crate) fn provider(&self) -> &Arc<dyn RTCCryptoProvider> {
        &self.provider
    }
}

/// The DTLS state of a transport, as mediasoup names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsState {
    /// Not started: waiting for `connect()` and ICE.
    New,
    /// Handshaking.
    Connecting,
    /// Handshake done, SRTP keyed.
    Connected,
    /// The handshake failed (fingerprint mismatch, fatal alert, timeout, no
    /// SRTP profile in common) or a fatal alert ended the association.
    Failed,
    /// close_notify sent or received.
    Closed,
}

/// Which side of the handshake we take, once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRole {
    Client,
    Server,
}

/// Per-transport DTLS settings.
#[derive(Debug, Clone)]
pub struct DtlsSettings {
    /// Offered (as client) or accepted (as server) SRTP profiles, most
    /// preferred first.
    pub srtp_profiles: Vec<SrtpProfile>,
    /// Maximum DTLS datagram size.
    pub mtu: usize,
    /// Inbound SRTP replay window handed to the SRTP session.
    pub srtp_replay_window: usize,
    /// Handshake flights are resent this often while unanswered (seven
    /// times at most). Zero: rtc-dtls's default, one second.
    pub retransmit_interval: std::time::Duration,
}

/// What the DTLS layer reports to its transport.
#[derive(Debug)]
pub enum DtlsEvent {
    StateChanged(DtlsState),
    /// The handshake completed; the session is keyed for our role.
    SrtpReady(SrtpSession),
}

/// Counters for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DtlsCounters {
    /// Datagrams the endpoint rejected without failing the association
    /// (malformed, unauthenticated, out of window).
    pub datagrams_discarded: u64,
    /// Application data records received (SCTP is not supported yet).
    pub application_data_ignored: u64,
}

/// The DTLS transport of one WebRTC transport. Sans-IO and usable on either
/// side: the SFU's transports use it, and so can a client (the bench's
/// simulated viewers do).
pub struct DtlsTransport {
    certificate: Arc<DtlsCertificate>,
    settings: DtlsSettings,
    endpoint: Option<Endpoint>,
    state: DtlsState,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<DtlsEvent>,
    counters: DtlsCounters,
}

impl DtlsTransport {
    pub fn new(certificate: Arc<DtlsCertificate>, settings: DtlsSettings) -> Self {
        DtlsTransport {
            certificate,
            settings,
            endpoint: None,
            state: DtlsState::New,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: DtlsCounters::default(),
        }
    }

    pub fn state(&self) -> DtlsState {
        self.state
    }

    pub fn counters(&self) -> DtlsCounters {
        self.counters
    }

    /// Starts the handshake in `role`, accepting only a peer certificate
    /// whose SHA-256 fingerprint is among `remote_fingerprints`. Does
    /// nothing unless the state is `New`.
    pub fn start(
        &mut self,
        now: Instant,
        role: HandshakeRole,
        remote_fingerprints: &[DtlsFingerprint],
    ) {
        if self.state != DtlsState::New {
            return;
        }
        self.set_state(DtlsState::Connecting);
        let is_client = role == HandshakeRole::Client;
        let config = match self.handshake_config(is_client, remote_fingerprints) {
            Ok(config) => Arc::new(config),
            Err(_) => {
                self.set_state(DtlsState::Failed);
                return;
            }
        };
        let endpoint = if is_client {
            let mut endpoint = Endpoint::new(DTLS_LOCAL_KEY, TransportProtocol::UDP, None);
            if endpoint.connect(now, DTLS_PEER_KEY, config, None).is_err() {
                self.set_state(DtlsState::Failed);
                return;
            }
            endpoint
        } else {
            Endpoint::new(DTLS_LOCAL_KEY, TransportProtocol::UDP, Some(config))
        };
        self.endpoint = Some(endpoint);
        self.drain_transmits();
    }

    fn handshake_config(
        &self,
        is_client: bool,
        remote_fingerprints: &[DtlsFingerprint],
    ) -> Result<HandshakeConfig, RtcError> {
        let provider = self.certificate.provider().clone();
        let expected: Vec<DtlsFingerprint> = remote_fingerprints
            .iter()
            .filter(|fingerprint| fingerprint.algorithm == FingerprintAlgorithm::Sha256)
            .cloned()
            .collect();
        let hasher = provider.clone();
        // WebRTC authenticates the peer by the fingerprint it signalled, not
        // by a CA chain: CA verification is skipped and this callback is the
        // whole check. Returning an error aborts with a fatal alert.
        let verify: VerifyPeerCertificateFn = fingerprint_verifier(move |certificates| {
            let leaf = certificates.first().ok_or(RtcError::ErrNonCertificate)?;
            let digest = hasher
                .crypto()
                .hash(HashAlgorithm::Sha256, leaf)
                .map_err(|error| RtcError::Other(error.to_string()))?;
            if expected
                .iter()
                .any(|fingerprint| fingerprint.matches(FingerprintAlgorithm::Sha256, &digest))
            {
                Ok(())
            } else {
                Err(RtcError::ErrNoMatchingCertificateFingerprint)
            }
        });
        ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![self.certificate.certificate.clone()])
            .with_srtp_protection_profiles(
                self.settings
                    .srtp_profiles
                    .iter()
                    .map(|profile| profile.to_dtls())
                    .collect(),
            )
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .with_insecure_skip_verify(true)
            .with_verify_peer_certificate(Some(verify))
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_mtu(self.settings.mtu)
            .with_flight_interval(self.settings.retransmit_interval)
            .build(is_client, None)
    }

    /// Feeds one DTLS datagram from the selected (or a valid) tuple.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if !matches!(self.state, DtlsState::Connecting | DtlsState::Connected) {
            self.counters.datagrams_discarded += 1;
            return;
        }
        let Some(endpoint) = self.endpoint.as_mut() else {
            self.counters.datagrams_discarded += 1;
            return;
        };
        let result = endpoint.read(now, DTLS_PEER_KEY, None, BytesMut::from(datagram));
        let sent_fatal_alert = self.drain_transmits();
        match result {
            Ok(events) => {
                for event in events {
                    self.handle_endpoint_event(now, event);
                }
            }
            // A fatal alert, received or sent, ends the association. Any
            // other error is a datagram the endpoint discarded: garbage must
            // not kill a handshake or a session.
            Err(RtcError::ErrAlertFatalOrClose) => self.fail(),
            Err(_) if sent_fatal_alert => self.fail(),
            Err(_) => self.counters.datagrams_discarded += 1,
        }
    }

    fn handle_endpoint_event(&mut self, now: Instant, event: EndpointEvent) {
        match event {
            EndpointEvent::HandshakeComplete => self.on_handshake_complete(now),
            EndpointEvent::ApplicationData(_) => self.counters.application_data_ignored += 1,
            EndpointEvent::PeerClosed => {
                self.endpoint = None;
                self.set_state(DtlsState::Closed);
            }
            _ => {}
        }
    }

    fn on_handshake_complete(&mut self, now: Instant) {
        let session = self.endpoint.as_ref().and_then(|endpoint| {
            let state = endpoint.get_connection_state(DTLS_PEER_KEY)?;
            // No use_srtp agreement means no media: as fatal as a bad
            // certificate for a WebRTC transport.
            let profile = SrtpProfile::from_dtls(state.srtp_protection_profile())?;
            let keying_material = state
                .export_keying_material(SRTP_EXPORTER_LABEL, &[], profile.keying_material_len())
                .ok()?;
            SrtpSession::from_keying_material(
                profile,
                keying_material.as_ref(),
                state.is_client(),
                self.settings.srtp_replay_window,
                self.certificate.provider().crypto(),
            )
            .ok()
        });
        match session {
            Some(session) => {
                self.events.push_back(DtlsEvent::SrtpReady(session));
                self.set_state(DtlsState::Connected);
            }
            None => {
                if let Some(endpoint) = self.endpoint.as_mut() {
                    // Tell the peer rather than leave it waiting.
                    endpoint.stop(now, DTLS_PEER_KEY);
                }
                self.drain_transmits();
                self.fail();
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            DtlsState::Connecting | DtlsState::Connected => self
                .endpoint
                .as_ref()
                .and_then(|endpoint| endpoint.poll_timeout(&DTLS_PEER_KEY)),
            _ => None,
        }
    }

    /// Drives handshake retransmissions; exhausting them fails the handshake.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        let Some(endpoint) = self.endpoint.as_mut() else {
            return;
        };
        let result = endpoint.handle_timeout(DTLS_PEER_KEY, now);
        self.drain_transmits();
        if result.is_err() {
            self.fail();
        }
    }

    /// Sends close_notify (if an association exists) and closes.
    pub fn close(&mut self, now: Instant) {
        if let Some(mut endpoint) = self.endpoint.take() {
            // Only fails for an association that does not exist.
            let _ = endpoint.close(now);
            while let Some(transmit) = endpoint.poll_transmit() {
                self.transmits.push_back(transmit.message.to_vec());
            }
        }
        if self.state != DtlsState::Failed {
            self.set_state(DtlsState::Closed);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    fn fail(&mut self) {
        self.endpoint = None;
        self.set_state(DtlsState::Failed);
    }

    fn set_state(&mut self, state: DtlsState) {
        if self.state != state {
            self.state = state;
            self.events.push_back(DtlsEvent::StateChanged(state));
        }
    }

    /// Moves the endpoint's queued datagrams to our queue. Returns whether
    /// one of them carries a plaintext fatal alert: that is how the endpoint
    /// tells that it aborted the handshake (it reports an aborted handshake
    /// and a discarded datagram with the same kind of error).
    fn drain_transmits(&mut self) -> bool {
        let Some(endpoint) = self.endpoint.as_mut() else {
            return false;
        };
        let mut fatal = false;
        while let Some(transmit) = endpoint.poll_transmit() {
            fatal |= carries_plaintext_fatal_alert(&transmit.message);
            self.transmits.push_back(transmit.message.to_vec());
        }
        fatal
    }
}

/// Pins the closure's signature to [`VerifyPeerCertificateFn`] without
/// naming the certificate-chain type, which rtc-dtls takes from rustls
/// without re-exporting it.
pub(super) fn fingerprint_verifier<Chain: 'static>(
    check: impl Fn(&[Vec<u8>]) -> Result<(), RtcError> + Send + Sync + 'static,
) -> Arc<dyn Fn(&[Vec<u8>], &[Chain]) -> Result<(), RtcError> + Send + Sync> {
    Arc::new(move |certificates: &[Vec<u8>], _chains: &[Chain]| check(certificates))
}

/// Whether a DTLS datagram holds an epoch-0 (unencrypted) alert record of
/// level fatal. Records after the handshake are encrypted and not looked at.
fn carries_plaintext_fatal_alert(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while rest.len() >= DTLS_RECORD_HEADER_LEN {
        let content_type = rest[0];
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        let length = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        let body = &rest[DTLS_RECORD_HEADER_LEN..];
        if content_type == CONTENT_TYPE_ALERT
            && epoch == 0
            && body.first() == Some(&ALERT_LEVEL_FATAL)
        {
            return true;
        }
        rest = body.get(length..).unwrap_or(&[]);
    }
    false
}
