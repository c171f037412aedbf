//! The synthetic presenter: one peer sending the paced, stamped media and
//! answering key frame requests (PLI/FIR) as an encoder would.

use std::time::Instant;

use sfu::rtcp::{parse_compound, RtcpPacket};

use crate::media::Pacer;
use crate::peer::Peer;

pub struct Presenter {
    pub peer: Peer,
    pacer: Pacer,
    packet: Vec<u8>,
    /// Packets and key frame requests, for the report.
    pub packets_sent: u64,
    pub key_frame_requests: u64,
}

impl Presenter {
    pub fn new(peer: Peer, pacer: Pacer) -> Presenter {
        Presenter {
            peer,
            pacer,
            packet: Vec::with_capacity(1500),
            packets_sent: 0,
            key_frame_requests: 0,
        }
    }

    /// Sends what is due (once connected); returns when next to call.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Instant> {
        self.peer.handle_timeout(now);
        if self.peer.srtp().is_some() {
            while self.pacer.poll(now, &mut self.packet).is_some() {
                if self.peer.send_rtp(&self.packet) {
                    self.packets_sent += 1;
                }
            }
        }
        let media = self
            .peer
            .srtp()
            .is_some()
            .then(|| self.pacer.next_due())
            .flatten();
        [self.peer.poll_timeout(), media]
            .into_iter()
            .flatten()
            .min()
    }

    /// Reads the SFU's RTCP: PLI and FIR make the encoding restart on a
    /// key frame.
    pub fn on_rtcp(&mut self, packet: &[u8]) {
        let Some(srtp) = self.peer.srtp() else {
            return;
        };
        let Ok(plain) = srtp.unprotect_rtcp(packet) else {
            return;
        };
        for item in parse_compound(&plain).flatten() {
            match item {
                RtcpPacket::Pli(pli) => {
                    self.key_frame_requests += 1;
                    self.pacer.request_key_frame(pli.media_ssrc);
                }
                RtcpPacket::Fir(fir) => {
                    for entry in fir.entries() {
                        self.key_frame_requests += 1;
                        self.pacer.request_key_frame(entry.ssrc);
                    }
                }
                _ => {}
            }
        }
    }
}
