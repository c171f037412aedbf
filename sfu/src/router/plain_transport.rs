//! PlainTransport: RTP and RTCP over plain UDP, optionally SRTP with
//! signalled keys, for server-side tools (the recorder, GStreamer, FFmpeg).
//! The remote address is given by `connect` or, with `comedia`, learnt from
//! the first packet received. Sans-IO like the WebRTC transport: the worker
//! owns the socket(s) and feeds datagrams in.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use rtc_crypto::RTCCryptoProvider;
use serde::{Deserialize, Serialize};

use crate::transport::{Output, SrtpProfile, SrtpSession, TransportEvent};

/// Settings of a PlainTransport.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlainTransportOptions {
    /// RTCP on the RTP port (otherwise on a second port). Default true.
    pub rtcp_mux: bool,
    /// Learn the remote address from the first packet received, instead of
    /// from `connect`. Default false.
    pub comedia: bool,
    /// Protect with SRTP; keys are exchanged in `srtpParameters`. Default false.
    pub enable_srtp: bool,
    /// Default AES_CM_128_HMAC_SHA1_80 (what GStreamer and FFmpeg support).
    pub srtp_crypto_suite: SrtpProfile,
}

impl Default for PlainTransportOptions {
    fn default() -> Self {
        Self {
            rtcp_mux: true,
            comedia: false,
            enable_srtp: false,
            srtp_crypto_suite: SrtpProfile::AesCm128HmacSha1_80,
        }
    }
}

/// mediasoup's `srtpParameters`: the suite and master key + salt, base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SrtpParameters {
    pub crypto_suite: SrtpProfile,
    pub key_base64: String,
}

/// mediasoup's transport tuple.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportTuple {
    pub local_address: String,
    pub local_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<u16>,
    pub protocol: &'static str,
}

/// What `connect` takes (mediasoup's `plainTransport.connect()`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlainConnectParameters {
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub rtcp_port: Option<u16>,
    pub srtp_parameters: Option<SrtpParameters>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlainConnectError {
    #[error("connect() already called")]
    AlreadyConnected,
    #[error("ip and port are required unless comedia is enabled")]
    MissingAddress,
    #[error("rtcpPort is required when rtcpMux is false")]
    MissingRtcpPort,
    #[error("srtpParameters are required when SRTP is enabled")]
    MissingSrtpParameters,
    #[error("srtpParameters given but SRTP is not enabled")]
    UnexpectedSrtpParameters,
    #[error("invalid srtpParameters: {0}")]
    InvalidSrtp(String),
}

pub(crate) struct PlainTransport {
    options: PlainTransportOptions,
    provider: Arc<dyn RTCCryptoProvider>,
    /// Our master key + salt, when SRTP is enabled.
    local_key: Option<Vec<u8>>,
    srtp: Option<SrtpSession>,
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    connected: bool,
    outputs: VecDeque<PlainOutput>,
    pub(crate) packets_received: u64,
    pub(crate) packets_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) errors: u64,
}

/// A datagram to send, and from which of the transport's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PlainOutput {
    Transmit {
        rtcp_socket: bool,
        destination: SocketAddr,
        payload: Vec<u8>,
    },
    Event(TransportEvent),
}

impl PlainTransport {
    pub(crate) fn new(options: PlainTransportOptions) -> Self {
        let provider = rtc_crypto::default_provider().expect("the ring provider is compiled in");
        let local_key = options.enable_srtp.then(|| {
            let suite = options.srtp_crypto_suite;
            let len = suite.master_key_len() + suite.master_salt_len();
            (0..len).map(|_| rand::random::<u8>()).collect()
        });
        Self {
            options,
            provider,
            local_key,
            srtp: None,
            remote: None,
            remote_rtcp: None,
            connected: false,
            outputs: VecDeque::new(),
            packets_received: 0,
            packets_sent: 0,
            bytes_received: 0,
            bytes_sent: 0,
            errors: 0,
        }
    }

    pub(crate) fn rtcp_mux(&self) -> bool {
        self.options.rtcp_mux
    }

    /// Our SRTP key, for the other side to decrypt what we send.
    pub(crate) fn srtp_parameters(&self) -> Option<SrtpParameters> {
        self.local_key.as_ref().map(|k| SrtpParameters {
            crypto_suite: self.options.srtp_crypto_suite,
            key_base64: base64::engine::general_purpose::STANDARD.encode(k),
        })
    }

    pub(crate) fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    pub(crate) fn connect(
        &mut self,
        params: PlainConnectParameters,
    ) -> Result<(), PlainConnectError> {
        if self.connected {
            return Err(PlainConnectError::AlreadyConnected);
        }
        let srtp = match (&self.local_key, &params.srtp_parameters) {
            (Some(local), Some(remote)) => Some(self.srtp_session(local, remote)?),
            (Some(_), None) => return Err(PlainConnectError::MissingSrtpParameters),
            (None, Some(_)) => return Err(PlainConnectError::UnexpectedSrtpParameters),
            (None, None) => None,
        };
        let (remote, remote_rtcp) = if self.options.comedia {
            (None, None)
        } else {
            let (Some(ip), Some(port)) = (params.ip, params.port) else {
                return Err(PlainConnectError::MissingAddress);
            };
            let rtcp = if self.options.rtcp_mux {
                None
            } else {
                let p = params.rtcp_port.ok_or(PlainConnectError::MissingRtcpPort)?;
                Some(SocketAddr::new(ip, p))
            };
            (Some(SocketAddr::new(ip, port)), rtcp)
        };
        self.srtp = srtp;
        self.remote = remote;
        self.remote_rtcp = remote_rtcp;
        self.connected = true;
        Ok(())
    }

    fn srtp_session(
        &self,
        local: &[u8],
        remote: &SrtpParameters,
    ) -> Result<SrtpSession, PlainConnectError> {
        let suite = self.options.srtp_crypto_suite;
        if remote.crypto_suite != suite {
            return Err(PlainConnectError::InvalidSrtp(format!(
                "cryptoSuite must be {suite:?}"
            )));
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(&remote.key_base64)
            .map_err(|e| PlainConnectError::InvalidSrtp(e.to_string()))?;
        let (klen, slen) = (suite.master_key_len(), suite.master_salt_len());
        if key.len() != klen + slen {
            return Err(PlainConnectError::InvalidSrtp(format!(
                "keyBase64 must hold {} bytes",
                klen + slen
            )));
        }
        SrtpSession::from_master_keys(
            suite,
            (&local[..klen], &local[klen..]),
            (&key[..klen], &key[klen..]),
            // The peer is a local tool, not an adversary, but replayed
            // packets are still refused.
            128,
            self.provider.crypto(),
        )
        .map_err(|e| PlainConnectError::InvalidSrtp(e.to_string()))
    }

    /// A datagram from the RTP socket (or the RTCP one when not muxed).
    pub(crate) fn handle_input(
        &mut self,
        _now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        on_rtcp_socket: bool,
    ) {
        if !self.connected {
            return;
        }
        if self.options.comedia {
            if on_rtcp_socket {
                self.remote_rtcp.get_or_insert(from);
            } else if self.remote.is_none() {
                self.remote = Some(from);
            }
        }
        // Anything from elsewhere than the remote is not ours.
        let expected = if on_rtcp_socket {
            self.remote_rtcp
        } else {
            self.remote
        };
        if expected != Some(from) {
            return;
        }
        if datagram.len() < 12 || datagram[0] >> 6 != 2 {
            self.errors += 1;
            return;
        }
        let is_rtcp = on_rtcp_socket || (192..=223).contains(&datagram[1]);
        let clear = match (&mut self.srtp, is_rtcp) {
            (Some(s), false) => s.unprotect_rtp(datagram),
            (Some(s), true) => s.unprotect_rtcp(datagram),
            (None, _) => Ok(datagram.to_vec()),
        };
        let Ok(clear) = clear else {
            self.errors += 1;
            return;
        };
        self.packets_received += 1;
        self.bytes_received += datagram.len() as u64;
        self.outputs.push_back(PlainOutput::Event(if is_rtcp {
            TransportEvent::Rtcp(clear)
        } else {
            TransportEvent::Rtp(clear)
        }));
    }

    pub(crate) fn send_rtp(&mut self, packet: &[u8]) -> bool {
        let Some(to) = self.remote else { return false };
        let payload = match &mut self.srtp {
            Some(s) => match s.protect_rtp(packet) {
                Ok(p) => p,
                Err(_) => return false,
            },
            None => packet.to_vec(),
        };
        self.packets_sent += 1;
        self.bytes_sent += payload.len() as u64;
        self.outputs.push_back(PlainOutput::Transmit {
            rtcp_socket: false,
            destination: to,
            payload,
        });
        true
    }

    pub(crate) fn send_rtcp(&mut self, packet: &[u8]) -> bool {
        let (to, rtcp_socket) = match (self.options.rtcp_mux, self.remote, self.remote_rtcp) {
            (true, Some(r), _) => (r, false),
            (false, _, Some(r)) => (r, true),
            _ => return false,
        };
        let payload = match &mut self.srtp {
            Some(s) => match s.protect_rtcp(packet) {
                Ok(p) => p,
                Err(_) => return false,
            },
            None => packet.to_vec(),
        };
        self.outputs.push_back(PlainOutput::Transmit {
            rtcp_socket,
            destination: to,
            payload,
        });
        true
    }

    pub(crate) fn poll_output(&mut self) -> Option<PlainOutput> {
        self.outputs.pop_front()
    }
}

/// Maps a WebRTC transport output into the plain form (for code shared by
/// both kinds of transport).
impl From<Output> for PlainOutput {
    fn from(o: Output) -> Self {
        match o {
            Output::Transmit {
                destination,
                payload,
            } => PlainOutput::Transmit {
                rtcp_socket: false,
                destination,
                payload,
            },
            Output::Event(e) => PlainOutput::Event(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 9]);
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn comedia_learns_the_remote_from_the_first_packet() {
        let mut t = PlainTransport::new(PlainTransportOptions {
            comedia: true,
            ..Default::default()
        });
        t.connect(PlainConnectParameters::default()).unwrap();
        assert!(!t.send_rtp(&rtp(1)), "nowhere to send yet");
        let from: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        t.handle_input(Instant::now(), from, &rtp(1), false);
        assert!(
            matches!(t.poll_output(), Some(PlainOutput::Event(TransportEvent::Rtp(p))) if p == rtp(1))
        );
        // Another address is ignored once the remote is known.
        t.handle_input(
            Instant::now(),
            "127.0.0.1:7001".parse().unwrap(),
            &rtp(2),
            false,
        );
        assert!(t.poll_output().is_none());
        assert!(t.send_rtp(&rtp(3)));
        assert!(
            matches!(t.poll_output(), Some(PlainOutput::Transmit { destination, .. }) if destination == from)
        );
    }

    #[test]
    fn srtp_keys_are_exchanged_and_media_round_trips() {
        let options = PlainTransportOptions {
            enable_srtp: true,
            ..Default::default()
        };
        let mut a = PlainTransport::new(options.clone());
        let mut b = PlainTransport::new(options);
        let (pa, pb): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:2000".parse().unwrap(),
        );
        a.connect(PlainConnectParameters {
            ip: Some(pb.ip()),
            port: Some(pb.port()),
            srtp_parameters: b.srtp_parameters(),
            ..Default::default()
        })
        .unwrap();
        b.connect(PlainConnectParameters {
            ip: Some(pa.ip()),
            port: Some(pa.port()),
            srtp_parameters: a.srtp_parameters(),
            ..Default::default()
        })
        .unwrap();
        assert!(a.send_rtp(&rtp(5)));
        let Some(PlainOutput::Transmit { payload, .. }) = a.poll_output() else {
            panic!()
        };
        assert_ne!(payload, rtp(5), "encrypted on the wire");
        b.handle_input(Instant::now(), pa, &payload, false);
        assert!(
            matches!(b.poll_output(), Some(PlainOutput::Event(TransportEvent::Rtp(p))) if p == rtp(5))
        );
        // Replays and tampering are refused.
        b.handle_input(Instant::now(), pa, &payload, false);
        let mut bad = payload.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        b.handle_input(Instant::now(), pa, &bad, false);
        assert!(b.poll_output().is_none());
        assert_eq!(b.errors, 2);
    }

    #[test]
    fn bad_connect_parameters_are_refused() {
        let mut t = PlainTransport::new(PlainTransportOptions::default());
        assert_eq!(
            t.connect(PlainConnectParameters::default()),
            Err(PlainConnectError::MissingAddress)
        );
        let mut s = PlainTransport::new(PlainTransportOptions {
            enable_srtp: true,
            comedia: true,
            ..Default::default()
        });
        let bad = PlainConnectParameters {
            srtp_parameters: Some(SrtpParameters {
                crypto_suite: SrtpProfile::AesCm128HmacSha1_80,
                key_base64: "c2hvcnQ=".into(),
            }),
            ..Default::default()
        };
        assert!(matches!(
            s.connect(bad),
            Err(PlainConnectError::InvalidSrtp(_))
        ));
        assert_eq!(
            s.connect(PlainConnectParameters::default()),
            Err(PlainConnectError::MissingSrtpParameters)
        );
    }
}
