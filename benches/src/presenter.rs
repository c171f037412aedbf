//! The synthetic presenter: one peer sending the stamped media and
//! answering key frame requests (PLI/FIR) as an encoder would.
//!
//! Video goes out through a pacer like libwebrtc's (a browser never sends
//! a frame as one burst): a budget refilled at 2.5 times the video
//! bitrate, so a key frame's packets are spread over a few milliseconds.
//! Audio is not held back (libwebrtc gives it priority).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sfu::rtcp::{parse_compound, RtcpPacket};

use crate::media::{stamp, Pacer, Track};
use crate::peer::Peer;

/// libwebrtc's default pacing factor.
const PACING_FACTOR: f64 = 2.5;
/// The media's RTP header: no CSRCs, no extensions.
const RTP_HEADER: usize = 12;
/// The budget may not build up beyond this much sending time.
const MAX_BUDGET: Duration = Duration::from_millis(5);

pub struct Presenter {
    pub peer: Peer,
    media: Pacer,
    packet: Vec<u8>,
    /// Video packets due but not yet sent, and the send budget in bytes.
    queue: VecDeque<Vec<u8>>,
    budget: f64,
    bytes_per_second: f64,
    last_refill: Option<Instant>,
}

impl Presenter {
    /// `video_bitrate` is the sum of the encodings' bitrates, bits/s.
    pub fn new(peer: Peer, media: Pacer, video_bitrate: u64) -> Presenter {
        Presenter {
            peer,
            media,
            packet: Vec::with_capacity(1500),
            queue: VecDeque::new(),
            budget: 0.0,
            bytes_per_second: video_bitrate as f64 * PACING_FACTOR / 8.0,
            last_refill: None,
        }
    }

    /// Sends what is due (once connected); returns when next to call.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Instant> {
        self.peer.handle_timeout(now);
        if self.peer.srtp().is_none() {
            return self.peer.poll_timeout();
        }
        while let Some(track) = self.media.poll(now, &mut self.packet) {
            if track == Track::Audio {
                self.peer.send_rtp(&self.packet);
            } else {
                self.queue.push_back(self.packet.clone());
            }
        }
        self.refill(now);
        while self.budget > 0.0 {
            let Some(mut packet) = self.queue.pop_front() else {
                break;
            };
            self.budget -= packet.len() as f64;
            // Delay is measured from the wire, not from the pacer's queue.
            if packet.len() > RTP_HEADER {
                stamp::retime(&mut packet[RTP_HEADER..], now);
            }
            self.peer.send_rtp(&packet);
        }
        let paced = (!self.queue.is_empty())
            .then(|| now + Duration::from_secs_f64(-self.budget.min(0.0) / self.bytes_per_second));
        [self.peer.poll_timeout(), self.media.next_due(), paced]
            .into_iter()
            .flatten()
            .min()
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = self
            .last_refill
            .map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        self.last_refill = Some(now);
        let max = self.bytes_per_second * MAX_BUDGET.as_secs_f64();
        self.budget = (self.budget + elapsed.as_secs_f64() * self.bytes_per_second).min(max);
        if self.queue.is_empty() {
            // An idle pacer starts the next frame with a full budget at most.
            self.budget = self.budget.max(0.0);
        }
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
                RtcpPacket::Pli(pli) => self.media.request_key_frame(pli.media_ssrc),
                RtcpPacket::Fir(fir) => {
                    for entry in fir.entries() {
                        self.media.request_key_frame(entry.ssrc);
                    }
                }
                _ => {}
            }
        }
    }
}
