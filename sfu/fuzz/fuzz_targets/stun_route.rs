//! Arbitrary datagrams into a fresh `WebRtcTransport` (the worker's STUN
//! username sniffing is private): covers the RFC 7983 demultiplexer, the
//! ICE-lite STUN handling, and the DTLS and SRTP/SRTCP entry points in the
//! states a fresh transport can reach. Several datagrams per input, so
//! that a valid-looking STUN request can be followed by DTLS or media.
//! When the input asks, a valid nominating Binding request comes first, so
//! that ICE connects and the datagrams after it reach DTLS (and the SRTP
//! gate) instead of stopping at the ICE tuple check. Nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtc_stun::attributes::{
    ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME, ATTR_USE_CANDIDATE,
};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{Message, Setter, TransactionId, BINDING_REQUEST};
use rtc_stun::textattrs::TextAttribute;
use sfu::transport::{
    DtlsCertificate, DtlsFingerprint, DtlsParameters, DtlsRole, FingerprintAlgorithm,
    WebRtcTransport, WebRtcTransportOptions,
};

/// Certificates take ~100 us to make: one for the whole run.
fn certificate() -> Arc<DtlsCertificate> {
    static CERTIFICATE: OnceLock<Arc<DtlsCertificate>> = OnceLock::new();
    CERTIFICATE
        .get_or_init(|| Arc::new(DtlsCertificate::generate().expect("certificate generates")))
        .clone()
}

/// A nominating Binding request with the transport's credentials, as a
/// browser sends it.
fn binding_request(ufrag: &str, password: &str) -> Vec<u8> {
    let provider = rtc_crypto::default_provider().expect("the ring provider is compiled in");
    let mut message = Message::new();
    message
        .build(&[
            Box::new(TransactionId::new()),
            Box::new(BINDING_REQUEST),
            Box::new(TextAttribute::new(ATTR_USERNAME, format!("{ufrag}:fuzz"))),
        ])
        .expect("a request header and USERNAME always encode");
    message.add(ATTR_PRIORITY, &2_130_706_431u32.to_be_bytes());
    message.add(ATTR_ICE_CONTROLLING, &7u64.to_be_bytes());
    message.add(ATTR_USE_CANDIDATE, &[]);
    MessageIntegrity::new_short_term_integrity_with_provider(
        password.to_owned(),
        provider.crypto(),
    )
    .add_to(&mut message)
    .expect("ring signs");
    FINGERPRINT
        .add_to(&mut message)
        .expect("FINGERPRINT always encodes");
    message.raw
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, mut rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let mut transport = WebRtcTransport::new(WebRtcTransportOptions::default(), certificate(), now);
    if knob & 1 != 0 {
        let remote = DtlsParameters {
            role: if knob & 2 != 0 {
                DtlsRole::Client
            } else {
                DtlsRole::Auto
            },
            fingerprints: vec![DtlsFingerprint {
                algorithm: FingerprintAlgorithm::Sha256,
                value: "AB:".repeat(31) + "AB",
            }],
        };
        let _ = transport.connect(now, remote);
    }
    let from: SocketAddr = ([127, 0, 0, 1], 40000 + u16::from(knob)).into();
    if knob & 4 != 0 {
        let ice = transport.ice_parameters();
        let request = binding_request(&ice.username_fragment, &ice.password);
        transport.handle_input(now, from, &request);
        while transport.poll_output().is_some() {}
    }
    // Datagrams are framed by a 2-byte length prefix.
    let mut at = now;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (datagram, tail) = rest[2..].split_at(len);
        transport.handle_input(at, from, datagram);
        while transport.poll_output().is_some() {}
        at += Duration::from_millis(10);
        rest = tail;
    }
    if let Some(deadline) = transport.poll_timeout() {
        transport.handle_timeout(deadline);
    }
    while transport.poll_output().is_some() {}
    let _ = transport.stats();
});
