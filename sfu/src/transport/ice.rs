//! The ICE-lite server of one transport, as mediasoup's `IceServer`: it owns
//! the local credentials (and the previous ones during an ICE restart), the
//! tuples (remote addresses) that passed a connectivity check, the selected
//! tuple, the ICE state and the consent-freshness timer.
//!
//! It answers STUN Binding requests and never sends a request of its own: the
//! browser is the controlling agent and nominates with USE-CANDIDATE. The
//! remote username fragment is never known (mediasoup-client does not signal
//! it), so a request is authenticated by the `"<local ufrag>:"` prefix of its
//! USERNAME and by MESSAGE-INTEGRITY keyed with the local password.

use rand::Rng;
use rtc_crypto::RTCCryptoProvider;
use rtc_stun::attributes::{
    AttrType, ATTR_FINGERPRINT, ATTR_ICE_CONTROLLED, ATTR_MESSAGE_INTEGRITY, ATTR_PRIORITY,
    ATTR_USERNAME, ATTR_USE_CANDIDATE,
};
use rtc_stun::error_code::{
    ErrorCode, ErrorCodeAttribute, CODE_BAD_REQUEST, CODE_ROLE_CONFLICT, CODE_UNAUTHORIZED,
};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{
    Message, MessageType, Setter, BINDING_SUCCESS, CLASS_ERROR_RESPONSE, CLASS_REQUEST,
    METHOD_BINDING,
};
use rtc_stun::textattrs::TextAttribute;
use rtc_stun::xoraddr::XorMappedAddress;
use serde::Serialize;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many tuples are remembered; the oldest unselected one makes
/// room for a new one (mediasoup's bound, so a peer cycling source ports
/// cannot grow the list).
const MAX_TUPLES: usize = 8;

/// The ICE renomination attribute (draft-thatcher-ice-renomination), which
/// mediasoup honours when a client sends it.
const ATTR_NOMINATION: AttrType = AttrType(0xC001);

/// MESSAGE-INTEGRITY is an HMAC-SHA1: exactly 20 bytes.
const MESSAGE_INTEGRITY_LEN: usize = 20;

/// Characters of generated credentials: a subset of RFC 8839's ice-char that
/// needs no escaping anywhere.
const CREDENTIAL_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Length of generated username fragments (RFC 8839 asks for at least 4).
const USERNAME_FRAGMENT_LEN: usize = 16;

/// Length of generated passwords (RFC 8839 asks for at least 22).
const PASSWORD_LEN: usize = 32;

/// The ICE state of a transport, as mediasoup names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IceState {
    /// No valid Binding request yet.
    New,
    /// A valid Binding request arrived, without nomination.
    Connected,
    /// A tuple was nominated (USE-CANDIDATE or a new NOMINATION).
    Completed,
    /// Consent expired: no valid Binding request within the consent timeout.
    Disconnected,
}

/// What the ICE server reports to its transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IceEvent {
    StateChanged(IceState),
    SelectedTupleChanged(SocketAddr),
}

/// Counters of STUN handling, for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IceCounters {
    /// Binding requests answered with a success response.
    pub(crate) requests_accepted: u64,
    /// Requests answered with an error response (400, 401, 487).
    pub(crate) requests_rejected: u64,
    /// STUN datagrams dropped without an answer (unparsable, bad
    /// FINGERPRINT, responses and indications).
    pub(crate) dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Credentials {
    username_fragment: String,
    password: String,
}

impl Credentials {
    fn generate() -> Self {
        Credentials {
            username_fragment: random_credential(USERNAME_FRAGMENT_LEN),
            password: random_credential(PASSWORD_LEN),
        }
    }
}

fn random_credential(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(CREDENTIAL_CHARS[rng.gen_range(0..CREDENTIAL_CHARS.len())]))
        .collect()
}

/// Which credentials authenticated a request.
enum Authenticated {
    Current,
    Previous,
}

/// The ICE-lite server of one transport.
pub(crate) struct IceServer {
    crypto: Arc<dyn RTCCryptoProvider>,
    credentials: Credentials,
    /// The credentials before the last `restart`, still accepted until the
    /// peer authenticates with the new ones.
    previous_credentials: Option<Credentials>,
    state: IceState,
    /// Newest first, like mediasoup's list.
    tuples: VecDeque<SocketAddr>,
    selected_tuple: Option<SocketAddr>,
    remote_nomination: u32,
    /// Zero disables consent checking.
    consent_timeout: Duration,
    consent_deadline: Option<Instant>,
    events: VecDeque<IceEvent>,
    counters: IceCounters,
}

impl IceServer {
    /// A server with freshly generated credentials. `consent_timeout` of zero
    /// disables the consent-freshness check.
    pub(crate) fn new(crypto: Arc<dyn RTCCryptoProvider>, consent_timeout: Duration) -> Self {
        IceServer {
            crypto,
            credentials: Credentials::generate(),
            previous_credentials: None,
            state: IceState::New,
            tuples: VecDeque::new(),
            selected_tuple: None,
            remote_nomination: 0,
            consent_timeout,
            consent_deadline: None,
            events: VecDeque::new(),
            counters: IceCounters::default(),
        }
    }

    pub(crate) fn username_fragment(&self) -> &str {
        &self.credentials.username_fragment
    }

    pub(crate) fn password(&self) -> &str {
        &self.credentials.password
    }

    pub(crate) fn state(&self) -> IceState {
        self.state
    }

    pub(crate) fn selected_tuple(&self) -> Option<SocketAddr> {
        self.selected_tuple
    }

    pub(crate) fn counters(&self) -> IceCounters {
        self.counters
    }

    /// Whether ICE is up (connected or completed).
    pub(crate) fn is_connected(&self) -> bool {
        matches!(self.state, IceState::Connected | IceState::Completed)
    }

    /// Whether `tuple` passed a connectivity check and is still remembered.
    pub(crate) fn is_valid_tuple(&self, tuple: SocketAddr) -> bool {
        self.tuples.contains(&tuple)
    }

    /// Generates new local credentials. The previous ones stay valid until a
    /// request authenticates with the new ones, so media keeps flowing while
    /// the new parameters travel to the peer.
    pub(crate) fn restart(&mut self, now: Instant) {
        let previous = std::mem::replace(&mut self.credentials, Credentials::generate());
        // If the peer never used the credentials being replaced, the ones it
        // still uses are the older ones: keep those.
        if self.previous_credentials.is_none() {
            self.previous_credentials = Some(previous);
        }
        self.remote_nomination = 0;
        // Give the peer a full consent period to run ICE again.
        if self.consent_deadline.is_some() {
            self.consent_deadline = Some(now + self.consent_timeout);
        }
    }

    /// Aggressive-nomination clients may move media to another valid tuple
    /// without nominating it: follow them, as mediasoup does, when
    /// authenticated traffic (DTLS, SRTP) arrives from a known tuple.
    pub(crate) fn may_force_selected_tuple(&mut self, tuple: SocketAddr) {
        if self.is_connected() && self.is_valid_tuple(tuple) {
            self.set_selected_tuple(tuple);
        }
    }

    pub(crate) fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.consent_deadline
    }

    /// Expires consent when its deadline has passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.consent_deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        self.consent_deadline = None;
        self.tuples.clear();
        self.selected_tuple = None;
        self.remote_nomination = 0;
        self.set_state(IceState::Disconnected);
    }

    /// Handles one STUN datagram from `from`. Returns the response to send
    /// back to `from`, if any.
    pub(crate) fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<Vec<u8>> {
        let mut request = Message::new();
        if request.unmarshal_binary(datagram).is_err() {
            self.counters.dropped += 1;
            return None;
        }
        // We never send requests, so responses answer nothing; indications
        // (keepalives) need no answer.
        if request.typ.class != CLASS_REQUEST {
            self.counters.dropped += 1;
            return None;
        }
        if request.typ.method != METHOD_BINDING {
            return self.reject(&request, CODE_BAD_REQUEST, "unknown method");
        }
        if !request.contains(ATTR_FINGERPRINT) {
            return self.reject(&request, CODE_BAD_REQUEST, "missing FINGERPRINT");
        }
        // A wrong CRC means corruption or something that is not STUN at all:
        // not worth an answer.
        if FINGERPRINT.check(&request).is_err() {
            self.counters.dropped += 1;
            return None;
        }
        if !request.contains(ATTR_PRIORITY) {
            return self.reject(&request, CODE_BAD_REQUEST, "missing PRIORITY");
        }
        let integrity_well_formed = request
            .get(ATTR_MESSAGE_INTEGRITY)
            .is_ok_and(|value| value.len() == MESSAGE_INTEGRITY_LEN);
        if !request.contains(ATTR_USERNAME) || !integrity_well_formed {
            return self.reject(
                &request,
                CODE_BAD_REQUEST,
                "missing USERNAME or MESSAGE-INTEGRITY",
            );
        }
        let authenticated = match self.authenticate(&mut request) {
            Some(authenticated) => authenticated,
            None => return self.reject(&request, CODE_UNAUTHORIZED, "wrong credentials"),
        };
        // We are ICE-lite, hence controlled: a controlled peer is a conflict
        // that only the peer can resolve.
        if request.contains(ATTR_ICE_CONTROLLED) {
            return self.reject(&request, CODE_ROLE_CONFLICT, "peer is ICE-CONTROLLED");
        }

        let password = match authenticated {
            Authenticated::Current => {
                // The peer has the new credentials: the old ones are done.
                self.previous_credentials = None;
                self.credentials.password.clone()
            }
            Authenticated::Previous => match &self.previous_credentials {
                Some(previous) => previous.password.clone(),
                None => self.credentials.password.clone(),
            },
        };
        let response = self.success_response(&request, from, password)?;
        self.counters.requests_accepted += 1;

        let nomination = request
            .get(ATTR_NOMINATION)
            .ok()
            .filter(|value| value.len() == 4)
            .map(|value| u32::from_be_bytes([value[0], value[1], value[2], value[3]]));
        self.handle_tuple(from, request.contains(ATTR_USE_CANDIDATE), nomination);
        if self.is_connected() && !self.consent_timeout.is_zero() {
            self.consent_deadline = Some(now + self.consent_timeout);
        }
        Some(response)
    }

    /// Checks USERNAME's local part and MESSAGE-INTEGRITY against the current
    /// credentials, then the previous ones.
    fn authenticate(&self, request: &mut Message) -> Option<Authenticated> {
        let username = TextAttribute::get_from_as(request, ATTR_USERNAME)
            .ok()?
            .text;
        if self.credentials_match(request, &username, &self.credentials) {
            return Some(Authenticated::Current);
        }
        match &self.previous_credentials {
            Some(previous) if self.credentials_match(request, &username, previous) => {
                Some(Authenticated::Previous)
            }
            _ => None,
        }
    }

    fn credentials_match(
        &self,
        request: &mut Message,
        username: &str,
        credentials: &Credentials,
    ) -> bool {
        let prefix_matches = username
            .strip_prefix(credentials.username_fragment.as_str())
            .is_some_and(|rest| rest.starts_with(':'));
        prefix_matches
            && MessageIntegrity::check(
                request,
                credentials.password.as_bytes(),
                self.crypto.crypto(),
            )
            .is_ok()
    }

    fn success_response(
        &mut self,
        request: &Message,
        from: SocketAddr,
        password: String,
    ) -> Option<Vec<u8>> {
        let mut response = Message::new();
        let setters: [Box<dyn Setter + '_>; 5] = [
            Box::new(request.transaction_id),
            Box::new(BINDING_SUCCESS),
            Box::new(XorMappedAddress {
                ip: from.ip(),
                port: from.port(),
            }),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                password,
                self.crypto.crypto(),
            )),
            Box::new(FINGERPRINT),
        ];
        match response.build(&setters) {
            Ok(()) => Some(response.raw),
            // Only a failing crypto provider gets here; the peer will retry.
            Err(_) => {
                self.counters.dropped += 1;
                None
            }
        }
    }

    /// An error response carrying only ERROR-CODE and FINGERPRINT: without
    /// valid credentials there is no key for MESSAGE-INTEGRITY.
    fn reject(&mut self, request: &Message, code: ErrorCode, reason: &str) -> Option<Vec<u8>> {
        let mut response = Message::new();
        let setters: [Box<dyn Setter + '_>; 4] = [
            Box::new(request.transaction_id),
            Box::new(MessageType::new(request.typ.method, CLASS_ERROR_RESPONSE)),
            Box::new(ErrorCodeAttribute {
                code,
                reason: reason.as_bytes().to_vec(),
            }),
            Box::new(FINGERPRINT),
        ];
        match response.build(&setters) {
            Ok(()) => {
                self.counters.requests_rejected += 1;
                Some(response.raw)
            }
            Err(_) => {
                self.counters.dropped += 1;
                None
            }
        }
    }

    /// mediasoup's `HandleTuple`: remember the tuple, and move the state and
    /// the selected tuple according to nomination.
    fn handle_tuple(&mut self, tuple: SocketAddr, use_candidate: bool, nomination: Option<u32>) {
        self.add_tuple(tuple);
        let nominated = use_candidate || nomination.is_some();
        let new_nomination = nomination.filter(|&value| value > self.remote_nomination);
        match self.state {
            IceState::New | IceState::Disconnected => {
                if !nominated {
                    self.set_selected_tuple(tuple);
                    self.set_state(IceState::Connected);
                } else if new_nomination.is_some() || nomination.is_none() {
                    self.set_selected_tuple(tuple);
                    self.note_nomination(new_nomination);
                    self.set_state(IceState::Completed);
                }
            }
            IceState::Connected => {
                if nominated && (new_nomination.is_some() || nomination.is_none()) {
                    self.set_selected_tuple(tuple);
                    self.note_nomination(new_nomination);
                    self.set_state(IceState::Completed);
                }
            }
            IceState::Completed => {
                if new_nomination.is_some() || use_candidate {
                    self.set_selected_tuple(tuple);
                    self.note_nomination(new_nomination);
                }
            }
        }
    }

    fn note_nomination(&mut self, nomination: Option<u32>) {
        if let Some(value) = nomination {
            self.remote_nomination = value;
        }
    }

    fn add_tuple(&mut self, tuple: SocketAddr) {
        if self.tuples.contains(&tuple) {
            return;
        }
        self.tuples.push_front(tuple);
        if self.tuples.len() > MAX_TUPLES {
            let selected = self.selected_tuple;
            let oldest_removable = self
                .tuples
                .iter()
                .rposition(|&stored| stored != tuple && Some(stored) != selected);
            if let Some(index) = oldest_removable {
                self.tuples.remove(index);
            }
        }
    }

    fn set_selected_tuple(&mut self, tuple: SocketAddr) {
        if self.selected_tuple != Some(tuple) {
            self.selected_tuple = Some(tuple);
            self.events.push_back(IceEvent::SelectedTupleChanged(tuple));
        }
    }

    fn set_state(&mut self, state: IceState) {
        if self.state != state {
            self.state = state;
            self.events.push_back(IceEvent::StateChanged(state));
        }
    }

    #[cfg(test)]
    pub(crate) fn previous_credentials_pending(&self) -> bool {
        self.previous_credentials.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc_stun::attributes::ATTR_ICE_CONTROLLING;
    use rtc_stun::error_code::ErrorCodeAttribute;
    use rtc_stun::message::{Getter, TransactionId, BINDING_REQUEST, CLASS_SUCCESS_RESPONSE};

    fn provider() -> Arc<dyn RTCCryptoProvider> {
        rtc_crypto::default_provider().expect("the ring provider is compiled in")
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 10], 50_000))
    }

    struct Request {
        username: String,
        password: String,
        use_candidate: bool,
        controlled: bool,
        nomination: Option<u32>,
    }

    impl Request {
        fn to(server: &IceServer) -> Self {
            Request {
                username: format!("{}:browser", server.username_fragment()),
                password: server.password().to_owned(),
                use_candidate: false,
                controlled: false,
                nomination: None,
            }
        }

        fn encode(&self) -> Vec<u8> {
            let crypto = provider();
            let mut message = Message::new();
            message
                .build(&[
                    Box::new(TransactionId::new()),
                    Box::new(BINDING_REQUEST),
                    Box::new(TextAttribute::new(ATTR_USERNAME, self.username.clone())),
                ])
                .expect("a request header and USERNAME always encode");
            message.add(ATTR_PRIORITY, &1_845_501_695u32.to_be_bytes());
            if self.controlled {
                message.add(ATTR_ICE_CONTROLLED, &7u64.to_be_bytes());
            } else {
                message.add(ATTR_ICE_CONTROLLING, &7u64.to_be_bytes());
            }
            if self.use_candidate {
                message.add(ATTR_USE_CANDIDATE, &[]);
            }
            if let Some(nomination) = self.nomination {
                message.add(ATTR_NOMINATION, &nomination.to_be_bytes());
            }
            MessageIntegrity::new_short_term_integrity_with_provider(
                self.password.clone(),
                crypto.crypto(),
            )
            .add_to(&mut message)
            .expect("the ring provider signs");
            FINGERPRINT
                .add_to(&mut message)
                .expect("FINGERPRINT always encodes");
            message.raw
        }
    }

    fn decode(response: &[u8]) -> Message {
        let mut message = Message::new();
        message
            .unmarshal_binary(response)
            .expect("the server's responses parse");
        message
    }

    fn error_code(response: &[u8]) -> u16 {
        let message = decode(response);
        assert_eq!(message.typ.class, CLASS_ERROR_RESPONSE);
        let mut attribute = ErrorCodeAttribute::default();
        attribute
            .get_from(&message)
            .expect("error responses carry ERROR-CODE");
        attribute.code.0
    }

    fn events(server: &mut IceServer) -> Vec<IceEvent> {
        std::iter::from_fn(|| server.poll_event()).collect()
    }

    #[test]
    fn valid_request_gets_an_authenticated_success_with_the_mapped_address() {
        let now = Instant::now();
        let mut server = IceServer::new(provider(), Duration::from_secs(30));
        let request = Request::to(&server).encode();
        let response = server
            .handle_stun(now, peer(), &request)
            .expect("a valid request is answered");
        let mut message = decode(&response);
        assert_eq!(message.typ.class, CLASS_SUCCESS_RESPONSE);
        assert_eq!(&message.raw[8..20], &request[8..20], "same transaction id");
        FINGERPRINT
            .check(&message)
            .expect("the response carries a valid FINGERPRINT");
        MessageIntegrity::check(
            &mut message,
            server.password().as_bytes(),
            provider().crypto(),
        )
        .expect("the response is signed with the local password");
        let mut mapped = XorMappedAddress::default();
        mapped
            .get_from(&message)
            .expect("the response carries XOR-MAPPED-ADDRESS");
        assert_eq!(SocketAddr::new(mapped.ip, mapped.port), peer());
        assert_eq!(server.state(), IceState::Connected);
        assert_eq!(
            events(&mut server),
            vec![
                IceEvent::SelectedTupleChanged(peer()),
                IceEvent::StateChanged(IceState::Connected)
            ]
        );
    }

    #[test]
    fn use_candidate_completes_and_a_later_nomination_switches_the_tuple() {
        let now = Instant::now();
        let mut server = IceServer::new(provider(), Duration::from_secs(30));
        let mut request = Request::to(&server);
        request.use_candidate = true;
        let datagram = request.encode();
        server.handle_stun(now, peer(), &datagram);
        assert_eq!(server.state(), IceState::Completed);
        let other = SocketAddr::from(([192, 0, 2, 11], 50_001));
        server.handle_stun(now, other, &datagram);
        assert_eq!(server.selected_tuple(), Some(other));
        assert!(server.is_valid_tuple(peer()) && server.is_valid_tuple(other));
    }

    #[test]
    fn wrong_password_or_wrong_ufrag_gets_401_and_no_tuple() {
        let now = Instant::now();
        let mut server = IceServer::new(provider(), Duration::from_secs(30));
        let mut bad_password = Request::to(&server);
        bad_password.password = "not-the-password-at-all-really".into();
        let response = server
            .handle_stun(now, peer(), &bad_password.encode())
            .expect("an unauthenticated request is answered");
        assert_eq!(error_code(&response), 401);
        let mut bad_ufrag = Request::to(&server);
        bad_ufrag.username = "someoneelse:browser".into();
        let response = server
            .handle_stun(now, peer(), &bad_ufrag.encode())
            .expect("an unauthenticated request is answered");
        assert_eq!(error_code(&response), 401);
        // The ufrag must be followed by ':', not merely be a prefix.
        let mut longer_ufrag = Request::to(&server);
        longer_ufrag.username = format!("{}x:browser", server.username_fragment());
        let response = server
            .handle_stun(now, peer(), &longer_ufrag.encode())
            .expect("an unauthenticated request is answered");
        assert_eq!(error_code(&response), 401);
        assert_eq!(server.state(), IceState::New);
        assert!(!server.is_valid_tuple(peer()));
    }

    #[test]
    fn controlled_peer_gets_487() {
        let mut server = IceServer::new(provider(), Duration::from_secs(30));
        let mut request = Request::to(&server);
        request.controlled = true;
        let response = server
            .handle_stun(Instant::now(), peer(), &request.encode())
            .expect("a role conflict is answered");
        assert_eq!(error_code(&response), 487);
    }

    #[test]
    fn request_without_fingerprint_gets_400_and_corrupt_fingerprint_is_dropped() {
        let now = Instant::now();
        let mut server = IceServer::new(provider(), Duration::from_secs(30));
        let mut message = Message::new();
        message
            .build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
            .expect("a bare request encodes");
        let response = server
            .handle_stun(now, peer(), &message.raw)
            .expect("a request without FINGERPRINT is answered");
        assert_eq!(error_code(&response), 400);

        let mut corrupt = Request::to(&server).encode();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(server.handle_stun(now, peer(), &corrupt).is_none());
        assert_eq!(server.counters().dropped, 1);
    }

    #[test]
    fn consent_expires_without_requests_and_resets_with_them() {
        let start = Instant::now();
        let mut server = IceServer::new(provider(), Duration::from_secs(30));
        let request = Request::to(&server).encode();
        server.handle_stun(start, peer(), &request);
        assert_eq!(server.poll_timeout(), Some(start + Duration::from_secs(30)));
        server.handle_stun(start + Duration::from_secs(20), peer(), &request);
        server.handle_timeout(start + Duration::from_secs(31));
        assert_eq!(server.state(), IceState::Connected, "consent was refreshed");
        server.handle_timeout(start + Duration::from_secs(50));
        assert_eq!(server.state(), IceState::Disconnected);
        assert_eq!(server.selected_tuple(), None);
        assert!(!server.is_valid_tuple(peer()));
        assert_eq!(server.poll_timeout(), None);
    }

    #[test]
    fn restart_keeps_old_credentials_until_the_new_ones_are_used() {
        let now = Instant::now();
        let mut server = IceServer::new(provider(), Duration::from_secs(30));
        let old_ufrag = server.username_fragment().to_owned();
        let old_password = server.password().to_owned();
        let old_request = Request::to(&server).encode();
        server.handle_stun(now, peer(), &old_request);
        server.restart(now);
        assert_ne!(server.username_fragment(), old_ufrag);
        assert_ne!(server.password(), old_password);

        let response = server
            .handle_stun(now, peer(), &Request::to(&server).encode())
            .map(|response| decode(&response).typ.class);
        assert_eq!(response, Some(CLASS_SUCCESS_RESPONSE));
        assert!(!server.previous_credentials_pending());
        // The old credentials are now refused.
        let mut stale = Request::to(&server);
        stale.username = format!("{old_ufrag}:browser");
        stale.password = old_password;
        let response = server
            .handle_stun(now, peer(), &stale.encode())
            .expect("a stale request is answered");
        assert_eq!(error_code(&response), 401);
    }

    #[test]
    fn old_credentials_are_answered_with_the_old_password_during_restart() {
        let now = Instant::now();
        let mut server = IceServer::new(provider(), Duration::from_secs(30));
        let old_password = server.password().to_owned();
        let old_request = Request::to(&server).encode();
        server.restart(now);
        let response = server
            .handle_stun(now, peer(), &old_request)
            .expect("old credentials still work");
        let mut message = decode(&response);
        MessageIntegrity::check(&mut message, old_password.as_bytes(), provider().crypto())
            .expect("signed with the password the peer knows");
    }

    #[test]
    fn tuples_are_bounded_and_the_selected_one_survives() {
        let now = Instant::now();
        let mut server = IceServer::new(provider(), Duration::from_secs(30));
        let mut nominate = Request::to(&server);
        nominate.use_candidate = true;
        server.handle_stun(now, peer(), &nominate.encode());
        let plain = Request::to(&server).encode();
        for port in 1..=(MAX_TUPLES as u16 * 2) {
            server.handle_stun(now, SocketAddr::from(([192, 0, 2, 20], port)), &plain);
        }
        assert_eq!(server.tuples.len(), MAX_TUPLES);
        assert!(server.is_valid_tuple(peer()));
        assert_eq!(server.selected_tuple(), Some(peer()));
    }

    #[test]
    fn renomination_only_moves_forward() {
        let now = Instant::now();
        let mut server = IceServer::new(provider(), Duration::from_secs(30));
        let first = SocketAddr::from(([192, 0, 2, 30], 1));
        let second = SocketAddr::from(([192, 0, 2, 30], 2));
        let mut request = Request::to(&server);
        request.nomination = Some(5);
        server.handle_stun(now, first, &request.encode());
        assert_eq!(server.state(), IceState::Completed);
        request.nomination = Some(3);
        server.handle_stun(now, second, &request.encode());
        assert_eq!(server.selected_tuple(), Some(first), "an older nomination");
        request.nomination = Some(6);
        server.handle_stun(now, second, &request.encode());
        assert_eq!(server.selected_tuple(), Some(second));
    }

    #[test]
    fn responses_and_garbage_are_dropped_silently() {
        let now = Instant::now();
        let mut server = IceServer::new(provider(), Duration::from_secs(30));
        let mut response = Message::new();
        response
            .build(&[Box::new(TransactionId::new()), Box::new(BINDING_SUCCESS)])
            .expect("a bare response encodes");
        assert!(server.handle_stun(now, peer(), &response.raw).is_none());
        let mut garbage = vec![0u8; 20];
        garbage[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        garbage[3] = 200; // length beyond the datagram
        assert!(server.handle_stun(now, peer(), &garbage).is_none());
        assert_eq!(server.state(), IceState::New);
    }
}
