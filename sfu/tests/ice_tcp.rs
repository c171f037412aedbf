//! ICE-TCP: every worker also listens for TCP on its UDP port number, and
//! offers a passive TCP candidate; a client whose network blocks UDP
//! connects and speaks RFC 4571-framed STUN (then DTLS and SRTP) over it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rtc_stun::attributes::{
    ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME, ATTR_USE_CANDIDATE,
};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{
    Getter, Message, Setter, TransactionId, BINDING_REQUEST, CLASS_SUCCESS_RESPONSE,
};
use rtc_stun::textattrs::TextAttribute;
use rtc_stun::xoraddr::XorMappedAddress;
use serde_json::json;
use sfu::transport::TransportProtocol;
use sfu::{Worker, WorkerEvent, WorkerSettings};
use tokio::sync::mpsc;

fn binding_request(ufrag: &str, password: &str) -> Vec<u8> {
    let provider = rtc_crypto::default_provider().unwrap();
    let mut m = Message::new();
    m.build(&[
        Box::new(TransactionId::new()),
        Box::new(BINDING_REQUEST),
        Box::new(TextAttribute::new(
            ATTR_USERNAME,
            format!("{ufrag}:tcpclient"),
        )),
    ])
    .unwrap();
    m.add(ATTR_PRIORITY, &1_845_501_695u32.to_be_bytes());
    m.add(ATTR_ICE_CONTROLLING, &7u64.to_be_bytes());
    m.add(ATTR_USE_CANDIDATE, &[]);
    MessageIntegrity::new_short_term_integrity_with_provider(
        password.to_owned(),
        provider.crypto(),
    )
    .add_to(&mut m)
    .unwrap();
    FINGERPRINT.add_to(&mut m).unwrap();
    m.raw
}

fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut frame = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut frame).unwrap();
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stun_over_tcp_is_answered_on_the_same_port_number() {
    let (tx, mut events) = mpsc::unbounded_channel::<WorkerEvent>();
    let worker = Worker::new(WorkerSettings::new("127.0.0.1".parse().unwrap(), 0), tx).unwrap();
    let (router, _) = worker
        .create_router(serde_json::from_value(json!([{"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2}])).unwrap())
        .await
        .unwrap();
    let info = worker.create_webrtc_transport(router).await.unwrap();
    let udp = info
        .ice_candidates
        .iter()
        .find(|c| c.protocol == TransportProtocol::Udp)
        .unwrap();
    let tcp = info
        .ice_candidates
        .iter()
        .find(|c| c.protocol == TransportProtocol::Tcp)
        .expect("a TCP candidate");
    assert_eq!(tcp.port, udp.port, "same port number");
    assert!(udp.priority > tcp.priority, "UDP is preferred");
    let json = serde_json::to_value(tcp).unwrap();
    assert_eq!(json["tcpType"], "passive");

    let mut stream = TcpStream::connect(("127.0.0.1", tcp.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = binding_request(
        &info.ice_parameters.username_fragment,
        &info.ice_parameters.password,
    );
    // Written in two pieces: framing must survive partial reads.
    let mut framed = (request.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&request);
    stream.write_all(&framed[..7]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    stream.write_all(&framed[7..]).unwrap();

    let response = read_frame(&mut stream);
    let mut m = Message::new();
    m.unmarshal_binary(&response).unwrap();
    assert_eq!(m.typ.class, CLASS_SUCCESS_RESPONSE);
    let mut mapped = XorMappedAddress::default();
    mapped.get_from(&m).unwrap();
    assert_eq!(mapped.port, stream.local_addr().unwrap().port());

    // The transport reports ICE completed over TCP.
    let completed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = events.recv().await {
            if let WorkerEvent::TransportIceStateChanged { state, .. } = e {
                if state == "completed" {
                    return true;
                }
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(completed);

    // A bad password over TCP gets no success.
    let bad = binding_request(
        &info.ice_parameters.username_fragment,
        "wrong-password-wrong-password",
    );
    let mut framed = (bad.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bad);
    stream.write_all(&framed).unwrap();
    let reply = read_frame(&mut stream);
    let mut m = Message::new();
    m.unmarshal_binary(&reply).unwrap();
    assert_ne!(m.typ.class, CLASS_SUCCESS_RESPONSE);
}
