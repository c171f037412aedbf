//! The transport parameters a simulated peer and an SFU exchange, whatever
//! the signalling (mediasoup-style JSON for ours, SDP for Janus).

use std::net::SocketAddr;

/// ICE username fragment and password of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// A certificate fingerprint as signalled: algorithm (`sha-256`) and
/// uppercase colon-separated hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub algorithm: String,
    pub value: String,
}

/// Which DTLS side the simulated peer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalDtlsRole {
    Client,
    Server,
}

/// What the peer signals about itself.
#[derive(Debug, Clone)]
pub struct LocalParameters {
    pub ice: IceCredentials,
    pub fingerprint: Fingerprint,
    /// The peer's only candidate (its UDP socket's address).
    pub address: SocketAddr,
}

/// What the SFU signalled about its side of one transport.
#[derive(Debug, Clone)]
pub struct RemoteParameters {
    pub ice: IceCredentials,
    /// An ICE-lite server never checks us; a full agent (Janus) does, and
    /// expects our answers.
    pub ice_lite: bool,
    /// UDP candidates, best first.
    pub candidates: Vec<SocketAddr>,
    pub fingerprints: Vec<Fingerprint>,
    /// The DTLS role the peer must take given what the SFU signalled.
    pub local_role: LocalDtlsRole,
    /// Whether the peer is the ICE controlling agent (it offered, or the
    /// SFU is ICE-lite).
    pub controlling: bool,
}
