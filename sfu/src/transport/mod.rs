//! The WebRTC transport layer, sans-IO: everything between a UDP/TCP socket
//! and the RTP/RTCP packets of one mediasoup-client transport.
//!
//! - [`WebRtcTransport`] composes the parts below, demultiplexes datagrams
//!   (STUN / DTLS / SRTP / SRTCP) and reports [`Output`]s.
//! - The ICE-lite server answers the client's connectivity checks and tracks
//!   the selected tuple and consent freshness.
//! - DTLS 1.2 authenticates the peer by its signalled fingerprint and keys
//!   SRTP; [`DtlsCertificate`] is created once per worker and shared.
//! - [`SrtpSession`] protects and unprotects media.
//! - The JSON shapes (`iceParameters`, `iceCandidates`, `dtlsParameters`)
//!   are mediasoup's, field for field.
//!
//! Nothing here owns a socket, spawns a thread or reads a clock: every entry
//! point takes `now`, and bytes to send come back as [`Output::Transmit`].

mod dtls;
mod ice;
mod parameters;
mod srtp;
mod srtp_protect;
mod webrtc_transport;

#[cfg(test)]
mod tests;

pub use dtls::{
    CertificateError, DtlsCertificate, DtlsCounters, DtlsEvent, DtlsSettings, DtlsState,
    DtlsTransport, HandshakeRole,
};
pub use ice::IceState;
pub use parameters::{
    DtlsFingerprint, DtlsParameters, DtlsRole, FingerprintAlgorithm, IceCandidate,
    IceCandidateTcpType, IceCandidateType, IceListenInfo, IceParameters, TransportProtocol,
};
pub use srtp::{SrtpError, SrtpProfile, SrtpSession};
pub use webrtc_transport::{
    ConnectError, Output, SendError, TransportEvent, WebRtcTransport, WebRtcTransportOptions,
    WebRtcTransportStats,
};
