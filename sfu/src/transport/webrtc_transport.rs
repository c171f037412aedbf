//! `WebRtcTransport`: the sans-IO state machine of one mediasoup
//! WebRtcTransport. It composes the ICE-lite server, the DTLS transport and
//! the SRTP session, demultiplexes every datagram the socket driver hands it
//! (RFC 7983, and RFC 5761 for RTP/RTCP mux), and queues what to send and
//! what happened as [`Output`]s.
//!
//! It owns no socket and reads no clock: the driver calls
//! [`WebRtcTransport::handle_input`] for each datagram, drives timers with
//! [`WebRtcTransport::poll_timeout`] / [`WebRtcTransport::handle_timeout`],
//! and drains [`WebRtcTransport::poll_output`] after every call.

use super::dtls::{
    DtlsCertificate, DtlsEvent, DtlsSettings, DtlsState, DtlsTransport, HandshakeRole,
};
use super::ice::{IceEvent, IceServer, IceState};
use super::parameters::{
    DtlsFingerprint, DtlsParameters, DtlsRole, FingerprintAlgorithm, IceCandidate,
    IceCandidateTcpType, IceCandidateType, IceListenInfo, IceParameters, TransportProtocol,
};
use super::srtp::{SrtpError, SrtpProfile, SrtpSession};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// mediasoup's host-candidate priority inputs (RFC 8445 §5.1.2.1): type
/// preference 64 and a local preference starting at 10000, lowered by 100
/// per listen address so earlier addresses are preferred.
const ICE_TYPE_PREFERENCE: u32 = 64;
const ICE_DEFAULT_LOCAL_PREFERENCE: u32 = 10_000;
const ICE_LOCAL_PREFERENCE_STEP: u32 = 100;
const ICE_COMPONENT: u32 = 1;

/// How many early DTLS datagrams are held until `connect()` (a ClientHello
/// and a retransmission or two, in fragments).
const EARLY_DTLS_DATAGRAMS: usize = 4;

/// Settings of a [`WebRtcTransport`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebRtcTransportOptions {
    /// ICE consent freshness: with no valid Binding request for this long,
    /// ICE becomes disconnected. Zero disables the check. Default: 30 s
    /// (mediasoup's default; browsers send consent checks every ~5 s).
    pub ice_consent_timeout: Duration,
    /// SRTP profiles we offer (as DTLS client) or accept (as DTLS server),
    /// most preferred first. A DTLS server takes the client's order, so as
    /// server this only restricts. Default: AEAD_AES_128_GCM, then
    /// AES_CM_128_HMAC_SHA1_80.
    pub srtp_profiles: Vec<SrtpProfile>,
    /// Inbound SRTP/SRTCP replay window, in packets; 0 disables replay
    /// protection. Default: 128 (libsrtp's default, which mediasoup uses).
    pub srtp_replay_window: usize,
    /// Maximum DTLS datagram size. Default: 1200.
    pub dtls_mtu: usize,
}

impl Default for WebRtcTransportOptions {
    fn default() -> Self {
        WebRtcTransportOptions {
            ice_consent_timeout: Duration::from_secs(30),
            srtp_profiles: vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::AesCm128HmacSha1_80],
            srtp_replay_window: 128,
            dtls_mtu: 1200,
        }
    }
}

/// Something the transport wants its driver to do or know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `payload` as one datagram to `destination`.
    Transmit {
        /// The remote address (an ICE tuple).
        destination: SocketAddr,
        /// The datagram.
        payload: Vec<u8>,
    },
    /// Something happened.
    Event(TransportEvent),
}

/// What a transport reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    /// The ICE state changed.
    IceStateChanged(IceState),
    /// Media now goes to (and is expected from) this remote address.
    IceSelectedTupleChanged(SocketAddr),
    /// The DTLS state changed.
    DtlsStateChanged(DtlsState),
    /// A received RTP packet, decrypted and authenticated.
    Rtp(Vec<u8>),
    /// A received (compound) RTCP packet, decrypted and authenticated.
    Rtcp(Vec<u8>),
}

/// Why [`WebRtcTransport::connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// `connect()` was already called on this transport.
    #[error("connect() already called")]
    AlreadyConnected,
    /// The remote DTLS parameters carry no sha-256 fingerprint, the only
    /// algorithm verified.
    #[error("no sha-256 fingerprint in the remote DTLS parameters")]
    NoSupportedFingerprint,
    /// The transport is closed.
    #[error("transport closed")]
    Closed,
}

/// Why [`WebRtcTransport::send_rtp`] or [`WebRtcTransport::send_rtcp`]
/// dropped a packet. Each drop is also counted in the stats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// ICE is not connected, DTLS is not connected, or the transport is
    /// closed.
    #[error("transport not connected")]
    NotConnected,
    /// Protection failed (the packet is not RTP/RTCP, or the SRTP index
    /// space is exhausted).
    #[error("SRTP protection failed: {0}")]
    Protect(SrtpError),
}

/// Counters of a transport, for `getStats()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebRtcTransportStats {
    /// Datagrams handed to `handle_input`.
    pub packets_received: u64,
    /// Bytes handed to `handle_input`.
    pub bytes_received: u64,
    /// Datagrams queued as `Output::Transmit`.
    pub packets_sent: u64,
    /// Bytes queued as `Output::Transmit`.
    pub bytes_sent: u64,
    /// RTP packets received and decrypted.
    pub rtp_packets_received: u64,
    /// RTCP packets received and decrypted.
    pub rtcp_packets_received: u64,
    /// RTP packets protected and queued.
    pub rtp_packets_sent: u64,
    /// RTCP packets protected and queued.
    pub rtcp_packets_sent: u64,
    /// SRTP/SRTCP packets that failed authentication or parsing.
    pub srtp_unprotect_errors: u64,
    /// SRTP/SRTCP packets rejected as replays.
    pub srtp_replays_rejected: u64,
    /// Outgoing packets that failed protection.
    pub srtp_protect_errors: u64,
    /// Outgoing packets dropped because the transport was not connected, or
    /// datagrams with nowhere to go (no selected tuple).
    pub sends_dropped: u64,
    /// Datagrams ignored: unknown type, from an unknown tuple, or media
    /// before DTLS is connected.
    pub datagrams_ignored: u64,
    /// STUN Binding requests answered with success.
    pub stun_requests_accepted: u64,
    /// STUN requests answered with an error (400, 401, 487).
    pub stun_requests_rejected: u64,
    /// STUN datagrams dropped without an answer.
    pub stun_dropped: u64,
    /// DTLS datagrams the DTLS layer discarded.
    pub dtls_datagrams_discarded: u64,
    /// DTLS application data records ignored (data channels / SCTP are not
    /// supported yet).
    pub dtls_application_data_ignored: u64,
}

/// What a datagram is, by its first byte (RFC 7983) and, for RTP/RTCP, its
/// second (RFC 5761).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatagramKind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    Unknown,
}

/// Minimum sizes: STUN header, DTLS record header, RTCP common header and
/// RTP fixed header.
const STUN_HEADER_LEN: usize = 20;
const DTLS_RECORD_HEADER_LEN: usize = 13;
const RTCP_HEADER_LEN: usize = 4;
const RTP_HEADER_LEN: usize = 12;

fn classify(datagram: &[u8]) -> DatagramKind {
    match datagram.first() {
        Some(0..=3)
            if datagram.len() >= STUN_HEADER_LEN
                && rtc_stun::message::is_stun_message(datagram) =>
        {
            DatagramKind::Stun
        }
        Some(20..=63) if datagram.len() >= DTLS_RECORD_HEADER_LEN => DatagramKind::Dtls,
        Some(128..=191) => {
            // RTCP packet types 192..=223 sit where RTP payload types 64..=95
            // with the marker bit would, which is why those payload types
            // are never used with rtcp-mux.
            let is_rtcp_type = datagram
                .get(1)
                .is_some_and(|packet_type| (192..=223).contains(packet_type));
            if is_rtcp_type && datagram.len() >= RTCP_HEADER_LEN {
                DatagramKind::Rtcp
            } else if !is_rtcp_type && datagram.len() >= RTP_HEADER_LEN {
                DatagramKind::Rtp
            } else {
                DatagramKind::Unknown
            }
        }
        _ => DatagramKind::Unknown,
    }
}

/// The sans-IO state machine of one WebRTC transport. See the module docs.
pub struct WebRtcTransport {
    certificate: Arc<DtlsCertificate>,
    ice: IceServer,
    dtls: DtlsTransport,
    /// Our DTLS role: `Auto` until `connect()`.
    dtls_local_role: DtlsRole,
    remote_fingerprints: Vec<DtlsFingerprint>,
    /// DTLS datagrams (a ClientHello) that arrived over ICE before
    /// `connect()`: replayed when DTLS starts as server, so the client
    /// need not wait for its retransmission timer (1 s).
    early_dtls: Vec<Vec<u8>>,
    srtp: Option<SrtpSession>,
    outputs: VecDeque<Output>,
    stats: WebRtcTransportStats,
    closed: bool,
}

impl std::fmt::Debug for WebRtcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcTransport")
            .field("ice_state", &self.ice.state())
            .field("dtls_state", &self.dtls.state())
            .field("dtls_local_role", &self.dtls_local_role)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl WebRtcTransport {
    /// A transport with fresh ICE credentials, using the worker's
    /// `certificate`. Nothing is scheduled at creation; `now` is taken for
    /// the sans-IO convention that every entry point gets the time.
    pub fn new(
        options: WebRtcTransportOptions,
        certificate: Arc<DtlsCertificate>,
        _now: Instant,
    ) -> Self {
        let ice = IceServer::new(certificate.provider().clone(), options.ice_consent_timeout);
        let dtls = DtlsTransport::new(
            certificate.clone(),
            DtlsSettings {
                srtp_profiles: options.srtp_profiles,
                mtu: options.dtls_mtu,
                srtp_replay_window: options.srtp_replay_window,
                retransmit_interval: std::time::Duration::ZERO,
            },
        );
        WebRtcTransport {
            certificate,
            ice,
            dtls,
            dtls_local_role: DtlsRole::Auto,
            remote_fingerprints: Vec::new(),
            early_dtls: Vec::new(),
            srtp: None,
            outputs: VecDeque::new(),
            stats: WebRtcTransportStats::default(),
            closed: false,
        }
    }

    /// The local ICE parameters to signal to the client.
    pub fn ice_parameters(&self) -> IceParameters {
        IceParameters {
            username_fragment: self.ice.username_fragment().to_owned(),
            password: self.ice.password().to_owned(),
            ice_lite: true,
        }
    }

    /// Host candidates for the addresses the caller listens on, preferred
    /// in the order given (mediasoup's priority formula).
    pub fn ice_candidates(&self, listen_infos: &[IceListenInfo]) -> Vec<IceCandidate> {
        listen_infos
            .iter()
            .enumerate()
            .map(|(index, info)| {
                let step = u32::try_from(index)
                    .unwrap_or(u32::MAX)
                    .saturating_mul(ICE_LOCAL_PREFERENCE_STEP);
                let local_preference = ICE_DEFAULT_LOCAL_PREFERENCE.saturating_sub(step);
                let priority =
                    (ICE_TYPE_PREFERENCE << 24) + (local_preference << 8) + (256 - ICE_COMPONENT);
                let (foundation, tcp_type) = match info.protocol {
                    TransportProtocol::Udp => ("udpcandidate", None),
                    TransportProtocol::Tcp => ("tcpcandidate", Some(IceCandidateTcpType::Passive)),
                };
                IceCandidate {
                    foundation: foundation.to_owned(),
                    priority,
                    address: info
                        .announced_address
                        .clone()
                        .unwrap_or_else(|| info.ip.to_string()),
                    protocol: info.protocol,
                    port: info.port,
                    candidate_type: IceCandidateType::Host,
                    tcp_type,
                }
            })
            .collect()
    }

    /// The local DTLS parameters: our certificate's fingerprint and our
    /// role, `auto` until `connect()` decides it.
    pub fn dtls_parameters(&self) -> DtlsParameters {
        DtlsParameters {
            role: self.dtls_local_role,
            fingerprints: vec![self.certificate.fingerprint().clone()],
        }
    }

    /// Applies the client's DTLS parameters. Our role is the opposite of a
    /// `client` or `server` remote; for an `auto` remote we are client,
    /// as mediasoup is ("we are ICE controlled"). The handshake starts as
    /// soon as ICE is connected too. Allowed once.
    pub fn connect(&mut self, now: Instant, remote: DtlsParameters) -> Result<(), ConnectError> {
        if self.closed {
            return Err(ConnectError::Closed);
        }
        if self.dtls_local_role != DtlsRole::Auto {
            return Err(ConnectError::AlreadyConnected);
        }
        if !remote
            .fingerprints
            .iter()
            .any(|fingerprint| fingerprint.algorithm == FingerprintAlgorithm::Sha256)
        {
            return Err(ConnectError::NoSupportedFingerprint);
        }
        self.dtls_local_role = match remote.role {
            DtlsRole::Client => DtlsRole::Server,
            DtlsRole::Server | DtlsRole::Auto => DtlsRole::Client,
        };
        self.remote_fingerprints = remote.fingerprints;
        self.maybe_run_dtls(now);
        self.drain();
        Ok(())
    }

    /// New local ICE credentials (the old ones keep working until the
    /// client uses the new ones). Returns the parameters to signal.
    pub fn restart_ice(&mut self, now: Instant) -> IceParameters {
        self.ice.restart(now);
        self.ice_parameters()
    }

    /// Handles one datagram received from `from`. Never panics, whatever the
    /// bytes; bad input is counted and dropped.
    pub fn handle_input(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if self.closed {
            return;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        match classify(datagram) {
            DatagramKind::Stun => self.on_stun(now, from, datagram),
            DatagramKind::Dtls => self.on_dtls(now, from, datagram),
            DatagramKind::Rtp => self.on_srtp(from, datagram),
            DatagramKind::Rtcp => self.on_srtcp(from, datagram),
            DatagramKind::Unknown => self.stats.datagrams_ignored += 1,
        }
        self.drain();
    }

    /// Runs the timers that are due: consent expiry and DTLS retransmission.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.ice.handle_timeout(now);
        self.dtls.handle_timeout(now);
        self.drain();
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        match (self.ice.poll_timeout(), self.dtls.poll_timeout()) {
            (Some(ice), Some(dtls)) => Some(ice.min(dtls)),
            (ice, dtls) => ice.or(dtls),
        }
    }

    /// The next thing to send or report.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Protects one RTP packet and queues it to the selected tuple.
    pub fn send_rtp(&mut self, now: Instant, packet: &[u8]) -> Result<(), SendError> {
        self.send_rtp_into(now, packet, Vec::new())
    }

    /// [`WebRtcTransport::send_rtp`], protecting into `buffer` (whose
    /// capacity is reused: a recycled buffer means no allocation).
    pub fn send_rtp_into(
        &mut self,
        _now: Instant,
        packet: &[u8],
        mut buffer: Vec<u8>,
    ) -> Result<(), SendError> {
        let destination = self.media_destination()?;
        let srtp = self.srtp.as_mut().ok_or(SendError::NotConnected)?;
        match srtp.protect_rtp_into(packet, &mut buffer) {
            Ok(()) => {
                self.stats.rtp_packets_sent += 1;
                self.transmit(destination, buffer);
                Ok(())
            }
            Err(error) => {
                self.stats.srtp_protect_errors += 1;
                Err(SendError::Protect(error))
            }
        }
    }

    /// Protects one (compound) RTCP packet and queues it to the selected
    /// tuple.
    pub fn send_rtcp(&mut self, _now: Instant, packet: &[u8]) -> Result<(), SendError> {
        let destination = self.media_destination()?;
        let srtp = self.srtp.as_mut().ok_or(SendError::NotConnected)?;
        match srtp.protect_rtcp(packet) {
            Ok(protected) => {
                self.stats.rtcp_packets_sent += 1;
                self.transmit(destination, protected);
                Ok(())
            }
            Err(error) => {
                self.stats.srtp_protect_errors += 1;
                Err(SendError::Protect(error))
            }
        }
    }

    /// Sends close_notify (when DTLS is up) and stops: later input is
    /// ignored and sends fail. The close_notify and the `closed` DTLS state
    /// event are still in the output queue.
    pub fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.dtls.close(now);
        self.srtp = None;
        self.drain();
        self.closed = true;
    }

    /// Whether `close()` was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether media can flow: ICE connected or completed, DTLS connected.
    pub fn is_connected(&self) -> bool {
        !self.closed
            && self.ice.is_connected()
            && self.dtls.state() == DtlsState::Connected
            && self.srtp.is_some()
    }

    /// The ICE state.
    pub fn ice_state(&self) -> IceState {
        self.ice.state()
    }

    /// The remote address media goes to, if any.
    pub fn ice_selected_tuple(&self) -> Option<SocketAddr> {
        self.ice.selected_tuple()
    }

    /// The DTLS state.
    pub fn dtls_state(&self) -> DtlsState {
        self.dtls.state()
    }

    /// The negotiated SRTP profile, once DTLS is connected.
    pub fn srtp_profile(&self) -> Option<SrtpProfile> {
        self.srtp.as_ref().map(SrtpSession::profile)
    }

    /// The counters.
    pub fn stats(&self) -> WebRtcTransportStats {
        let ice = self.ice.counters();
        let dtls = self.dtls.counters();
        WebRtcTransportStats {
            stun_requests_accepted: ice.requests_accepted,
            stun_requests_rejected: ice.requests_rejected,
            stun_dropped: ice.dropped,
            dtls_datagrams_discarded: dtls.datagrams_discarded,
            dtls_application_data_ignored: dtls.application_data_ignored,
            ..self.stats
        }
    }

    fn on_stun(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if let Some(response) = self.ice.handle_stun(now, from, datagram) {
            self.transmit(from, response);
        }
        // Move ICE events out before DTLS can emit its own, so the driver
        // sees "ICE connected" before "DTLS connecting".
        self.drain_ice();
        self.maybe_run_dtls(now);
    }

    fn on_dtls(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        // DTLS from an address that never passed ICE is not from our peer.
        if !self.ice.is_valid_tuple(from) {
            self.stats.datagrams_ignored += 1;
            return;
        }
        self.ice.may_force_selected_tuple(from);
        self.drain_ice();
        if self.dtls.state() == DtlsState::New && self.dtls_local_role == DtlsRole::Auto {
            if self.early_dtls.len() < EARLY_DTLS_DATAGRAMS {
                self.early_dtls.push(datagram.to_vec());
            } else {
                self.stats.datagrams_ignored += 1;
            }
            return;
        }
        self.dtls.handle_datagram(now, datagram);
    }

    fn on_srtp(&mut self, from: SocketAddr, datagram: &[u8]) {
        let Some(srtp) = self.media_session(from) else {
            return;
        };
        match srtp.unprotect_rtp(datagram) {
            Ok(packet) => {
                self.stats.rtp_packets_received += 1;
                // Authenticated media from a valid tuple: the client may be
                // switching paths without nominating (aggressive ICE).
                self.ice.may_force_selected_tuple(from);
                self.outputs
                    .push_back(Output::Event(TransportEvent::Rtp(packet)));
            }
            Err(error) => self.count_unprotect_error(&error),
        }
    }

    fn on_srtcp(&mut self, from: SocketAddr, datagram: &[u8]) {
        let Some(srtp) = self.media_session(from) else {
            return;
        };
        match srtp.unprotect_rtcp(datagram) {
            Ok(packet) => {
                self.stats.rtcp_packets_received += 1;
                self.outputs
                    .push_back(Output::Event(TransportEvent::Rtcp(packet)));
            }
            Err(error) => self.count_unprotect_error(&error),
        }
    }

    /// The SRTP session, if media from `from` is acceptable now.
    fn media_session(&mut self, from: SocketAddr) -> Option<&mut SrtpSession> {
        let acceptable = self.dtls.state() == DtlsState::Connected
            && self.srtp.is_some()
            && self.ice.is_valid_tuple(from);
        if !acceptable {
            self.stats.datagrams_ignored += 1;
            return None;
        }
        self.srtp.as_mut()
    }

    fn count_unprotect_error(&mut self, error: &SrtpError) {
        match error {
            SrtpError::Replayed => self.stats.srtp_replays_rejected += 1,
            _ => self.stats.srtp_unprotect_errors += 1,
        }
    }

    /// mediasoup's `MayRunDtlsTransport`: DTLS starts once `connect()` has
    /// given us a role and ICE is connected or completed.
    ///
    /// Unlike mediasoup, a still-`auto` role does not start DTLS as server
    /// when ICE connects first: the peer certificate is verified during the
    /// handshake, which needs the fingerprint from `connect()`. A
    /// ClientHello that arrives earlier is held and replayed here.
    fn maybe_run_dtls(&mut self, now: Instant) {
        if self.dtls.state() != DtlsState::New || !self.ice.is_connected() {
            return;
        }
        let role = match self.dtls_local_role {
            DtlsRole::Auto => return,
            DtlsRole::Client => HandshakeRole::Client,
            DtlsRole::Server => HandshakeRole::Server,
        };
        self.dtls.start(now, role, &self.remote_fingerprints);
        let early = std::mem::take(&mut self.early_dtls);
        if role == HandshakeRole::Server {
            for datagram in early {
                self.dtls.handle_datagram(now, &datagram);
            }
        }
    }

    fn media_destination(&mut self) -> Result<SocketAddr, SendError> {
        match self.ice.selected_tuple() {
            Some(destination) if self.is_connected() => Ok(destination),
            _ => {
                self.stats.sends_dropped += 1;
                Err(SendError::NotConnected)
            }
        }
    }

    fn transmit(&mut self, destination: SocketAddr, payload: Vec<u8>) {
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        self.outputs.push_back(Output::Transmit {
            destination,
            payload,
        });
    }

    fn drain_ice(&mut self) {
        while let Some(event) = self.ice.poll_event() {
            let event = match event {
                IceEvent::StateChanged(state) => TransportEvent::IceStateChanged(state),
                IceEvent::SelectedTupleChanged(tuple) => {
                    TransportEvent::IceSelectedTupleChanged(tuple)
                }
            };
            self.outputs.push_back(Output::Event(event));
        }
    }

    /// Moves everything the parts queued into our output queue.
    fn drain(&mut self) {
        self.drain_ice();
        while let Some(event) = self.dtls.poll_event() {
            match event {
                DtlsEvent::SrtpReady(session) => self.srtp = Some(session),
                DtlsEvent::StateChanged(state) => {
                    if state != DtlsState::Connected {
                        self.srtp = None;
                    }
                    self.outputs
                        .push_back(Output::Event(TransportEvent::DtlsStateChanged(state)));
                }
            }
        }
        while let Some(datagram) = self.dtls.poll_transmit() {
            match self.ice.selected_tuple() {
                Some(destination) => self.transmit(destination, datagram),
                None => self.stats.sends_dropped += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_demultiplexed_by_first_byte_and_rtcp_packet_type() {
        let mut stun = vec![0u8; 20];
        stun[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        assert_eq!(classify(&stun), DatagramKind::Stun);
        assert_eq!(classify(&stun[..19]), DatagramKind::Unknown);
        let mut not_stun = stun.clone();
        not_stun[4] = 0;
        assert_eq!(classify(&not_stun), DatagramKind::Unknown);

        assert_eq!(classify(&[22; 13]), DatagramKind::Dtls);
        assert_eq!(classify(&[22; 12]), DatagramKind::Unknown);

        let mut media = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for (packet_type, kind) in [
            (200, DatagramKind::Rtcp),
            (192, DatagramKind::Rtcp),
            (223, DatagramKind::Rtcp),
            (111, DatagramKind::Rtp),
            // Payload type 96 with the marker bit set.
            (224, DatagramKind::Rtp),
            (191, DatagramKind::Rtp),
        ] {
            media[1] = packet_type;
            assert_eq!(classify(&media), kind, "packet type {packet_type}");
        }
        assert_eq!(classify(&[0x80, 201, 0, 1]), DatagramKind::Rtcp);
        assert_eq!(classify(&[0x80, 111, 0, 1]), DatagramKind::Unknown);
        assert_eq!(classify(&[]), DatagramKind::Unknown);
        assert_eq!(classify(&[64; 40]), DatagramKind::Unknown);
        assert_eq!(classify(&[17; 40]), DatagramKind::Unknown);
    }
}
