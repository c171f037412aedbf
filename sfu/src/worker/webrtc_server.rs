//! The WebRtcServer: one UDP port per worker shared by all its WebRTC
//! transports. A datagram goes to its transport by the local ICE username
//! fragment of a STUN request, otherwise by the remote address that ICE
//! selected for that transport.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::ids::TransportId;

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

#[derive(Default)]
pub(crate) struct WebRtcServer {
    by_ufrag: HashMap<String, TransportId>,
    by_addr: HashMap<SocketAddr, TransportId>,
}

impl WebRtcServer {
    pub(crate) fn add_ufrag(&mut self, ufrag: &str, transport: TransportId) {
        self.by_ufrag.insert(ufrag.to_string(), transport);
    }

    /// The transport's traffic from `addr` is routed to it from now on.
    pub(crate) fn add_tuple(&mut self, addr: SocketAddr, transport: TransportId) {
        self.by_addr.insert(addr, transport);
    }

    /// Forgets everything routed to `transport`.
    pub(crate) fn remove_transport(&mut self, transport: TransportId) {
        self.by_ufrag.retain(|_, t| *t != transport);
        self.by_addr.retain(|_, t| *t != transport);
    }

    pub(crate) fn route(&self, from: SocketAddr, datagram: &[u8]) -> Option<TransportId> {
        if is_stun(datagram) {
            let ufrag = local_ufrag(datagram)?;
            return self.by_ufrag.get(ufrag).copied();
        }
        self.by_addr.get(&from).copied()
    }
}

/// RFC 7983: STUN starts with 0..=3, and RFC 5389 messages carry the magic cookie.
pub(crate) fn is_stun(d: &[u8]) -> bool {
    d.len() >= 20 && d[0] < 4 && d[4..8] == STUN_MAGIC_COOKIE
}

/// The local part of a STUN USERNAME ("<local ufrag>:<remote ufrag>"),
/// found without a full parse: the transport authenticates the request.
fn local_ufrag(d: &[u8]) -> Option<&str> {
    let body_len = usize::from(u16::from_be_bytes([d[2], d[3]]));
    let end = (20 + body_len).min(d.len());
    let mut at = 20;
    while at + 4 <= end {
        let kind = u16::from_be_bytes([d[at], d[at + 1]]);
        let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
        let value = d.get(at + 4..at + 4 + len)?;
        if kind == ATTR_USERNAME {
            let text = std::str::from_utf8(value).ok()?;
            return text.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&STUN_MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn stun_goes_by_ufrag_and_the_rest_by_address() {
        let mut server = WebRtcServer::default();
        let t1 = TransportId::new();
        let t2 = TransportId::new();
        server.add_ufrag("abcd", t1);
        server.add_ufrag("wxyz", t2);
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(server.route(a, &binding_request("wxyz:remote")), Some(t2));
        assert_eq!(server.route(a, &binding_request("nope:remote")), None);
        assert_eq!(server.route(a, &[0x80, 0x60, 0, 1]), None);
        server.add_tuple(a, t1);
        assert_eq!(server.route(a, &[0x80, 0x60, 0, 1]), Some(t1));
        server.remove_transport(t1);
        assert_eq!(server.route(a, &[0x80, 0x60, 0, 1]), None);
        // Truncated or garbage STUN never panics.
        let mut bad = binding_request("abcd:x");
        bad[3] = 0xff;
        bad.truncate(26);
        let _ = server.route(a, &bad);
    }
}
