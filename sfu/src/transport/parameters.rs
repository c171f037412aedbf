//! The transport-level JSON shapes `mediasoup-client` exchanges with the
//! server: ICE parameters and candidates, DTLS parameters and fingerprints,
//! spelled in mediasoup's camelCase field for field.
//!
//! This module owns the shapes and their (de)serialisation only; what a
//! transport does with them lives in [`super::WebRtcTransport`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// Local ICE parameters, as `transport.iceParameters` in mediasoup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceParameters {
    /// The local ICE username fragment (`ice-ufrag`).
    pub username_fragment: String,
    /// The local ICE password (`ice-pwd`).
    pub password: String,
    /// Always `true` on the server side: the transport is an ICE-lite agent.
    /// Absent in input is read as `false`, as mediasoup-client does.
    #[serde(default)]
    pub ice_lite: bool,
}

/// Transport protocol of an ICE candidate or listen address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportProtocol {
    /// UDP.
    Udp,
    /// TCP (RFC 6544 framing is the socket driver's business).
    Tcp,
}

/// ICE candidate type. The server only ever offers host candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IceCandidateType {
    /// A host candidate: an address the server listens on (or announces).
    Host,
}

/// TCP candidate type (RFC 6544). The server only accepts connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IceCandidateTcpType {
    /// The server waits for the peer to connect.
    Passive,
}

/// One local ICE candidate, as an entry of `transport.iceCandidates`.
///
/// mediasoup writes the address both as `address` (current) and `ip`
/// (deprecated, read by older mediasoup-client versions); both are written
/// here and either is accepted on input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "IceCandidateWire", into = "IceCandidateWire")]
pub struct IceCandidate {
    /// Candidate foundation: equal for candidates of the same kind.
    pub foundation: String,
    /// Candidate priority (RFC 8445 §5.1.2.1).
    pub priority: u32,
    /// The IP address or hostname the peer should send to.
    pub address: String,
    /// UDP or TCP.
    pub protocol: TransportProtocol,
    /// The port the peer should send to.
    pub port: u16,
    /// Always host.
    pub candidate_type: IceCandidateType,
    /// `Some(Passive)` for TCP candidates, `None` for UDP.
    pub tcp_type: Option<IceCandidateTcpType>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IceCandidateWire {
    foundation: String,
    priority: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    protocol: TransportProtocol,
    port: u16,
    #[serde(rename = "type")]
    candidate_type: IceCandidateType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp_type: Option<IceCandidateTcpType>,
}

impl TryFrom<IceCandidateWire> for IceCandidate {
    type Error = String;

    fn try_from(wire: IceCandidateWire) -> Result<Self, Self::Error> {
        let address = wire
            .address
            .or(wire.ip)
            .ok_or_else(|| "ICE candidate has neither `address` nor `ip`".to_owned())?;
        Ok(IceCandidate {
            foundation: wire.foundation,
            priority: wire.priority,
            address,
            protocol: wire.protocol,
            port: wire.port,
            candidate_type: wire.candidate_type,
            tcp_type: wire.tcp_type,
        })
    }
}

impl From<IceCandidate> for IceCandidateWire {
    fn from(candidate: IceCandidate) -> Self {
        IceCandidateWire {
            foundation: candidate.foundation,
            priority: candidate.priority,
            ip: Some(candidate.address.clone()),
            address: Some(candidate.address),
            protocol: candidate.protocol,
            port: candidate.port,
            candidate_type: candidate.candidate_type,
            tcp_type: candidate.tcp_type,
        }
    }
}

/// An address the caller has bound for a transport, from which a host
/// candidate is made. The caller owns the sockets; this only describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IceListenInfo {
    /// UDP or TCP.
    pub protocol: TransportProtocol,
    /// The IP the socket is bound to.
    pub ip: IpAddr,
    /// What to announce instead of `ip` (a public IP or hostname when behind
    /// NAT). Default: `None`, announce `ip`.
    pub announced_address: Option<String>,
    /// The port the socket is bound to (already resolved, never 0).
    pub port: u16,
}

impl IceListenInfo {
    /// A listen info announcing its own IP.
    pub fn new(protocol: TransportProtocol, ip: IpAddr, port: u16) -> Self {
        IceListenInfo {
            protocol,
            ip,
            announced_address: None,
            port,
        }
    }

    /// Announce `address` instead of the bound IP.
    pub fn with_announced_address(mut self, address: impl Into<String>) -> Self {
        self.announced_address = Some(address.into());
        self
    }
}

/// Which side of the DTLS handshake an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsRole {
    /// Not decided yet (mediasoup's local role before `connect()`).
    #[default]
    Auto,
    /// Sends the ClientHello.
    Client,
    /// Answers the ClientHello.
    Server,
}

/// A certificate fingerprint hash function, as named in SDP (RFC 8122).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FingerprintAlgorithm {
    /// SHA-1.
    #[serde(rename = "sha-1")]
    Sha1,
    /// SHA-224.
    #[serde(rename = "sha-224")]
    Sha224,
    /// SHA-256: the only one this engine computes and verifies.
    #[serde(rename = "sha-256")]
    Sha256,
    /// SHA-384.
    #[serde(rename = "sha-384")]
    Sha384,
    /// SHA-512.
    #[serde(rename = "sha-512")]
    Sha512,
}

impl fmt::Display for FingerprintAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FingerprintAlgorithm::Sha1 => "sha-1",
            FingerprintAlgorithm::Sha224 => "sha-224",
            FingerprintAlgorithm::Sha256 => "sha-256",
            FingerprintAlgorithm::Sha384 => "sha-384",
            FingerprintAlgorithm::Sha512 => "sha-512",
        })
    }
}

/// A certificate fingerprint: the hash of the DER certificate in uppercase
/// colon-separated hex (`"AB:CD:..."`), as mediasoup writes it. Comparison of
/// a peer's value is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtlsFingerprint {
    /// The hash function.
    pub algorithm: FingerprintAlgorithm,
    /// Colon-separated hex of the digest.
    pub value: String,
}

impl DtlsFingerprint {
    /// The fingerprint of `digest` made with `algorithm`, in mediasoup's
    /// uppercase colon hex.
    pub fn from_digest(algorithm: FingerprintAlgorithm, digest: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut value = String::with_capacity(digest.len() * 3);
        for (index, byte) in digest.iter().enumerate() {
            if index > 0 {
                value.push(':');
            }
            value.push(char::from(HEX[usize::from(byte >> 4)]));
            value.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        DtlsFingerprint { algorithm, value }
    }

    /// Whether this fingerprint names `digest` under `algorithm`, ignoring
    /// the case of the hex digits.
    pub fn matches(&self, algorithm: FingerprintAlgorithm, digest: &[u8]) -> bool {
        self.algorithm == algorithm
            && self
                .value
                .eq_ignore_ascii_case(&DtlsFingerprint::from_digest(algorithm, digest).value)
    }
}

/// DTLS parameters, as `transport.dtlsParameters` (local) or the argument of
/// `transport.connect({ dtlsParameters })` (remote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DtlsParameters {
    /// The role of the endpoint these parameters describe. Absent in input is
    /// read as `auto`.
    #[serde(default)]
    pub role: DtlsRole,
    /// The fingerprints of the endpoint's certificate.
    pub fingerprints: Vec<DtlsFingerprint>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ice_candidate_is_written_with_both_address_spellings() {
        let candidate = IceCandidate {
            foundation: "udpcandidate".into(),
            priority: 1_076_302_079,
            address: "203.0.113.7".into(),
            protocol: TransportProtocol::Udp,
            port: 40_000,
            candidate_type: IceCandidateType::Host,
            tcp_type: None,
        };
        let value = serde_json::to_value(&candidate).expect("a candidate always serialises");
        assert_eq!(
            value,
            json!({
                "foundation": "udpcandidate",
                "priority": 1_076_302_079u32,
                "address": "203.0.113.7",
                "ip": "203.0.113.7",
                "protocol": "udp",
                "port": 40000,
                "type": "host",
            })
        );
    }

    #[test]
    fn ice_candidate_reads_either_address_spelling_and_tcp_type() {
        let old: IceCandidate = serde_json::from_value(json!({
            "foundation": "tcpcandidate", "priority": 1, "ip": "10.0.0.1",
            "protocol": "tcp", "port": 443, "type": "host", "tcpType": "passive"
        }))
        .expect("the deprecated `ip` spelling is accepted");
        assert_eq!(old.address, "10.0.0.1");
        assert_eq!(old.tcp_type, Some(IceCandidateTcpType::Passive));
        let missing = serde_json::from_value::<IceCandidate>(json!({
            "foundation": "x", "priority": 1, "protocol": "udp", "port": 1, "type": "host"
        }));
        assert!(missing.is_err());
    }

    #[test]
    fn dtls_parameters_round_trip_in_mediasoup_json() {
        let input = json!({
            "role": "client",
            "fingerprints": [{ "algorithm": "sha-256", "value": "AB:CD" }]
        });
        let parameters: DtlsParameters =
            serde_json::from_value(input.clone()).expect("mediasoup-client's shape parses");
        assert_eq!(parameters.role, DtlsRole::Client);
        assert_eq!(
            parameters.fingerprints[0].algorithm,
            FingerprintAlgorithm::Sha256
        );
        assert_eq!(
            serde_json::to_value(&parameters).expect("parameters serialise"),
            input
        );
        let defaulted: DtlsParameters = serde_json::from_value(json!({ "fingerprints": [] }))
            .expect("a missing role is accepted");
        assert_eq!(defaulted.role, DtlsRole::Auto);
    }

    #[test]
    fn ice_parameters_use_camel_case() {
        let parameters = IceParameters {
            username_fragment: "u".into(),
            password: "p".into(),
            ice_lite: true,
        };
        assert_eq!(
            serde_json::to_value(&parameters).expect("parameters serialise"),
            json!({ "usernameFragment": "u", "password": "p", "iceLite": true })
        );
    }

    #[test]
    fn fingerprint_is_uppercase_colon_hex_and_matches_any_case() {
        let fingerprint = DtlsFingerprint::from_digest(FingerprintAlgorithm::Sha256, &[0xab, 0x01]);
        assert_eq!(fingerprint.value, "AB:01");
        let lower = DtlsFingerprint {
            algorithm: FingerprintAlgorithm::Sha256,
            value: "ab:01".into(),
        };
        assert!(lower.matches(FingerprintAlgorithm::Sha256, &[0xab, 0x01]));
        assert!(!lower.matches(FingerprintAlgorithm::Sha1, &[0xab, 0x01]));
        assert!(!lower.matches(FingerprintAlgorithm::Sha256, &[0xab, 0x02]));
    }
}
