//! What a simulated viewer does with the media it gets, like a browser's
//! receiver: counts every packet per stream from the (clear) RTP header,
//! NACKs gaps, sends receiver reports with LSR/DLSR, and, when sampled,
//! decrypts every packet to read the presenter's send-time stamp (delay,
//! and which simulcast layer arrives).

use std::time::{Duration, Instant};

use sfu::rtcp::{
    parse_compound, Nack, NackItem, ReceiverReport, ReportBlock, RtcpPacket, TransportCcBuilder,
};

use crate::media::stamp;
use crate::peer::Peer;

/// Receiver reports go out this often, as browsers send them.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Transport-wide congestion control feedback goes out this often (as
/// libwebrtc's receiver sends it).
const FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);
/// A bottleneck's queue holds at most this much sending time; packets
/// beyond it are dropped.
const BOTTLENECK_QUEUE: Duration = Duration::from_millis(150);
/// At most this many sequence numbers are NACKed for one gap (a longer
/// gap is a stream restart, not loss).
const MAX_NACK_GAP: u16 = 256;

/// Counters of one received stream (by its SSRC).
#[derive(Debug, Clone, Default)]
struct StreamCounter {
    ssrc: u32,
    /// Extended sequence numbers: first seen and highest seen.
    first: Option<u64>,
    highest: u64,
    received: u64,
    bytes: u64,
    /// Expected and received at the last report (for fraction lost).
    expected_prior: u64,
    received_prior: u64,
    /// The last SR from this source: its compact NTP time and arrival.
    last_sr: Option<(u32, Instant)>,
}

impl StreamCounter {
    fn new(ssrc: u32) -> Self {
        StreamCounter {
            ssrc,
            ..Default::default()
        }
    }

    fn expected(&self) -> u64 {
        self.first.map_or(0, |first| self.highest + 1 - first)
    }

    /// Counts a packet; returns the sequence numbers skipped before it.
    fn count(&mut self, seq: u16, len: usize) -> Option<(u16, u16)> {
        self.received += 1;
        self.bytes += len as u64;
        let Some(_) = self.first else {
            self.first = Some(u64::from(seq) + (1 << 16));
            self.highest = u64::from(seq) + (1 << 16);
            return None;
        };
        // Extend around the highest seen (handles wrap and reordering).
        let delta = seq.wrapping_sub(self.highest as u16) as i16;
        let extended = (self.highest as i64 + i64::from(delta)) as u64;
        if extended > self.highest {
            let gap = (extended - self.highest - 1) as u16;
            let missing_from = (self.highest + 1) as u16;
            self.highest = extended;
            if gap > 0 && gap <= MAX_NACK_GAP {
                return Some((missing_from, gap));
            }
        }
        None
    }

    fn report_block(&mut self, now: Instant) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = if expected_interval == 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((compact, at)) => {
                let delay = now.saturating_duration_since(at);
                (
                    compact,
                    (delay.as_secs_f64() * 65536.0).min(u32::MAX as f64) as u32,
                )
            }
            None => (0, 0),
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: expected.saturating_sub(self.received) as i32,
            extended_highest_seq: self.highest as u32,
            jitter: 0,
            last_sr,
            delay_since_last_sr,
        }
    }
}

/// The streams a viewer receives, once signalled.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewerStreams {
    pub video_ssrc: Option<u32>,
    pub video_rtx_ssrc: Option<u32>,
    pub audio_ssrc: Option<u32>,
    /// The transport-wide sequence number extension's id, when the viewer
    /// negotiated congestion control feedback.
    pub transport_cc_ext: Option<u8>,
}

/// A bottleneck on the viewer's downlink, simulated where packets arrive:
/// they queue behind each other at `bitrate` and leave the queue at their
/// arrival time; a packet that would wait more than [`BOTTLENECK_QUEUE`]
/// is dropped (a tail-drop router queue).
#[derive(Debug, Clone, Copy)]
struct Bottleneck {
    bitrate: u64,
    busy_until: Option<Instant>,
}

impl Bottleneck {
    /// When a packet of `len` bytes that reached the queue at `now` gets
    /// out of it, or `None` when it is dropped.
    fn pass(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let start = self.busy_until.map_or(now, |busy| busy.max(now));
        if start.saturating_duration_since(now) > BOTTLENECK_QUEUE {
            return None;
        }
        let sending = Duration::from_secs_f64(len as f64 * 8.0 / self.bitrate as f64);
        self.busy_until = Some(start + sending);
        self.busy_until
    }
}

/// Transport-wide congestion control feedback, as a browser's receiver
/// sends it: arrival times of the transport sequence numbers it got.
struct CongestionFeedback {
    builder: TransportCcBuilder,
    count: u8,
    /// Arrivals not yet due (a bottleneck delays them), in order.
    pending: std::collections::VecDeque<(u16, Instant)>,
    next: Option<Instant>,
    epoch: Instant,
}

/// A viewer's counters at one moment, for differences over a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewerSnapshot {
    pub connected: bool,
    pub received: u64,
    pub expected: u64,
    pub bytes: u64,
    pub retransmissions: u64,
    pub nacks_sent: u64,
    pub join_to_first_frame: Option<Duration>,
}

/// One viewer: its peer and what it has received.
pub struct Viewer {
    pub peer: Peer,
    /// Decrypt every packet (delay and layer measurements).
    sampled: bool,
    ssrc: u32,
    streams: ViewerStreams,
    video: Option<StreamCounter>,
    audio: Option<StreamCounter>,
    retransmissions: u64,
    nacks_sent: u64,
    /// When the viewer started to join, and its first video packet.
    join_started: Instant,
    first_video: Option<Instant>,
    next_report: Option<Instant>,
    /// Send-to-receive delays, milliseconds (sampled viewers).
    pub delays_ms: Vec<f32>,
    /// The last layer seen in a stamp, and a switch being timed.
    layer: Option<u8>,
    awaited_layer: Option<(u8, Instant)>,
    pub layer_switches_ms: Vec<f64>,
    /// Delays are not sampled behind a bottleneck (its queue is not the
    /// SFU's).
    sample_delays: bool,
    bottleneck: Option<Bottleneck>,
    feedback: Option<CongestionFeedback>,
    rtcp: Vec<u8>,
}

impl Viewer {
    pub fn new(peer: Peer, sampled: bool, join_started: Instant) -> Viewer {
        Viewer {
            peer,
            sampled,
            ssrc: rand::random(),
            streams: ViewerStreams::default(),
            video: None,
            audio: None,
            retransmissions: 0,
            nacks_sent: 0,
            join_started,
            first_video: None,
            next_report: None,
            delays_ms: Vec::new(),
            layer: None,
            awaited_layer: None,
            layer_switches_ms: Vec::new(),
            sample_delays: true,
            bottleneck: None,
            feedback: None,
            rtcp: vec![0; 1500],
        }
    }

    /// Puts a bottleneck of `bitrate` bits/s on the viewer's downlink (or
    /// removes it). Its delays are no longer sampled.
    pub fn set_bottleneck(&mut self, bitrate: Option<u64>) {
        self.sample_delays = false;
        self.bottleneck = bitrate.map(|bitrate| Bottleneck {
            bitrate,
            busy_until: self.bottleneck.and_then(|b| b.busy_until),
        });
    }

    pub fn set_streams(&mut self, streams: ViewerStreams) {
        self.streams = streams;
        self.feedback = streams.transport_cc_ext.map(|_| CongestionFeedback {
            builder: TransportCcBuilder::new(self.ssrc, streams.video_ssrc.unwrap_or(0), 0),
            count: 0,
            pending: std::collections::VecDeque::new(),
            next: None,
            epoch: Instant::now(),
        });
        self.video = streams.video_ssrc.map(StreamCounter::new);
        self.audio = streams.audio_ssrc.map(StreamCounter::new);
    }

    /// Times the switch to `layer` asked for at `at` (sampled viewers).
    pub fn await_layer(&mut self, layer: u8, at: Instant) {
        if self.sampled {
            self.awaited_layer = Some((layer, at));
        }
    }

    pub fn snapshot(&self) -> ViewerSnapshot {
        let streams = [&self.video, &self.audio];
        let sum = |f: fn(&StreamCounter) -> u64| -> u64 {
            streams.iter().filter_map(|s| s.as_ref()).map(f).sum()
        };
        ViewerSnapshot {
            connected: self.peer.connected_at.is_some(),
            received: sum(|s| s.received),
            expected: sum(StreamCounter::expected),
            bytes: sum(|s| s.bytes),
            retransmissions: self.retransmissions,
            nacks_sent: self.nacks_sent,
            join_to_first_frame: self
                .first_video
                .map(|at| at.saturating_duration_since(self.join_started)),
        }
    }

    /// Handles an SRTP packet that arrived at `now`.
    pub fn on_rtp(&mut self, now: Instant, packet: &[u8]) {
        if packet.len() < 12 {
            return;
        }
        let now = match &mut self.bottleneck {
            Some(bottleneck) => match bottleneck.pass(now, packet.len()) {
                Some(out) => out,
                None => return,
            },
            None => now,
        };
        if let (Some(feedback), Some(id)) = (&mut self.feedback, self.streams.transport_cc_ext) {
            if let Some(seq) = transport_sequence(packet, id) {
                feedback.pending.push_back((seq, now));
            }
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let gap = if Some(ssrc) == self.streams.video_ssrc {
            self.first_video.get_or_insert(now);
            self.video.as_mut().and_then(|v| v.count(seq, packet.len()))
        } else if Some(ssrc) == self.streams.audio_ssrc {
            self.audio.as_mut().and_then(|a| a.count(seq, packet.len()))
        } else if Some(ssrc) == self.streams.video_rtx_ssrc {
            self.retransmissions += 1;
            None
        } else {
            None
        };
        if let Some((from, count)) = gap {
            self.send_nack(ssrc, from, count);
        }
        if self.sampled && Some(ssrc) != self.streams.video_rtx_ssrc {
            self.read_stamp(now, packet);
        }
    }

    fn read_stamp(&mut self, now: Instant, packet: &[u8]) {
        let Some(srtp) = self.peer.srtp() else {
            return;
        };
        let Ok(plain) = srtp.unprotect_rtp(packet) else {
            return;
        };
        let Some(payload) = rtp_payload(&plain) else {
            return;
        };
        let Some((layer, sent)) = stamp::read(payload) else {
            return;
        };
        if self.sample_delays {
            self.delays_ms
                .push(now.saturating_duration_since(sent).as_secs_f32() * 1000.0);
        }
        if layer != stamp::AUDIO {
            self.layer = Some(layer);
            if let Some((awaited, asked)) = self.awaited_layer {
                if layer == awaited {
                    self.layer_switches_ms
                        .push(now.saturating_duration_since(asked).as_secs_f64() * 1000.0);
                    self.awaited_layer = None;
                }
            }
        }
    }

    /// The simulcast layer the last stamped video packet came from.
    pub fn layer(&self) -> Option<u8> {
        self.layer
    }

    /// Handles an SRTCP packet: notes sender reports for LSR/DLSR.
    pub fn on_rtcp(&mut self, now: Instant, packet: &[u8]) {
        let Some(srtp) = self.peer.srtp() else {
            return;
        };
        let Ok(plain) = srtp.unprotect_rtcp(packet) else {
            return;
        };
        for item in parse_compound(&plain).flatten() {
            if let RtcpPacket::SenderReport(sr) = item {
                let compact = sr.sender_info.ntp.compact();
                for counter in [&mut self.video, &mut self.audio].into_iter().flatten() {
                    if counter.ssrc == sr.ssrc {
                        counter.last_sr = Some((compact, now));
                    }
                }
            }
        }
    }

    fn send_nack(&mut self, media_ssrc: u32, from: u16, count: u16) {
        let seqs: Vec<u16> = (0..count).map(|i| from.wrapping_add(i)).collect();
        let mut items = Vec::new();
        NackItem::from_seqs(&seqs, &mut items);
        let mut buf = std::mem::take(&mut self.rtcp);
        if let Ok(rr) = ReceiverReport::write(&mut buf, self.ssrc, &[]) {
            if let Ok(nack) = Nack::write(&mut buf[rr..], self.ssrc, media_ssrc, &items) {
                if self.peer.send_rtcp(&buf[..rr + nack]) {
                    self.nacks_sent += 1;
                }
            }
        }
        self.rtcp = buf;
    }

    /// Sends receiver reports when due; returns when next to call.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Instant> {
        self.peer.handle_timeout(now);
        if self.peer.srtp().is_none() {
            return self.peer.poll_timeout();
        }
        let due = *self.next_report.get_or_insert(now + REPORT_INTERVAL);
        if now >= due {
            let blocks: Vec<ReportBlock> = [&mut self.video, &mut self.audio]
                .into_iter()
                .flatten()
                .filter(|c| c.first.is_some())
                .map(|c| c.report_block(now))
                .collect();
            let mut buf = std::mem::take(&mut self.rtcp);
            if let Ok(len) = ReceiverReport::write(&mut buf, self.ssrc, &blocks) {
                self.peer.send_rtcp(&buf[..len]);
            }
            self.rtcp = buf;
            self.next_report = Some(now + REPORT_INTERVAL);
        }
        let feedback_due = self.send_feedback(now);
        [self.peer.poll_timeout(), self.next_report, feedback_due]
            .into_iter()
            .flatten()
            .min()
    }

    /// Sends transport-wide feedback for the arrivals due by `now`, every
    /// [`FEEDBACK_INTERVAL`]; returns when next.
    fn send_feedback(&mut self, now: Instant) -> Option<Instant> {
        let feedback = self.feedback.as_mut()?;
        let due = *feedback.next.get_or_insert(now + FEEDBACK_INTERVAL);
        if now < due {
            return Some(due);
        }
        feedback.next = Some(now + FEEDBACK_INTERVAL);
        let mut packets = Vec::new();
        while feedback.pending.front().is_some_and(|(_, at)| *at <= now) {
            packets.extend(feedback.pending.pop_front());
        }
        let mut compounds = Vec::new();
        for (seq, at) in packets {
            let arrival_us = at.saturating_duration_since(feedback.epoch).as_micros() as i64;
            if feedback.builder.push(seq, arrival_us).is_err() {
                compounds.push(finish(feedback, &mut self.rtcp));
                let _ = feedback.builder.push(seq, arrival_us);
            }
        }
        if !feedback.builder.is_empty() {
            compounds.push(finish(feedback, &mut self.rtcp));
        }
        for compound in compounds.into_iter().flatten() {
            self.peer.send_rtcp(&compound);
        }
        feedback.next
    }
}

/// Writes the feedback built so far and starts the next one.
fn finish(feedback: &mut CongestionFeedback, buf: &mut [u8]) -> Option<Vec<u8>> {
    let written = feedback
        .builder
        .write(buf)
        .ok()
        .map(|len| buf[..len].to_vec());
    feedback.count = feedback.count.wrapping_add(1);
    feedback.builder.reset(feedback.count);
    written
}

/// The transport-wide sequence number in a packet's one-byte header
/// extensions (RFC 8285), if it carries extension `id`.
fn transport_sequence(packet: &[u8], id: u8) -> Option<u16> {
    if packet[0] & 0x10 == 0 {
        return None;
    }
    let start = 12 + 4 * usize::from(packet[0] & 0x0f);
    let header = packet.get(start..start + 4)?;
    if header[..2] != [0xbe, 0xde] {
        return None;
    }
    let len = 4 * usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut elements = packet.get(start + 4..start + 4 + len)?;
    while let Some((&first, rest)) = elements.split_first() {
        if first == 0 {
            elements = rest;
            continue;
        }
        let (element_id, size) = (first >> 4, usize::from(first & 0x0f) + 1);
        if element_id == 15 {
            return None;
        }
        let data = rest.get(..size)?;
        if element_id == id && size == 2 {
            return Some(u16::from_be_bytes([data[0], data[1]]));
        }
        elements = &rest[size..];
    }
    None
}

/// The payload of a plain RTP packet (after CSRCs, extension, padding).
pub fn rtp_payload(packet: &[u8]) -> Option<&[u8]> {
    if packet.len() < 12 {
        return None;
    }
    let mut offset = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*packet.get(offset + 2)?, *packet.get(offset + 3)?]);
        offset += 4 + 4 * usize::from(words);
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*packet.last()?))?;
    }
    packet.get(offset..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_find_gaps_across_wrap_and_ignore_reordering() {
        let mut c = StreamCounter::new(1);
        assert_eq!(c.count(65534, 100), None);
        assert_eq!(c.count(65535, 100), None);
        assert_eq!(c.count(2, 100), Some((0, 2)));
        assert_eq!(c.count(0, 100), None, "a late packet is not a new gap");
        assert_eq!(c.expected(), 5);
        assert_eq!(c.received, 4);
        let block = c.report_block(Instant::now());
        assert_eq!(block.cumulative_lost, 1);
        assert_eq!(block.fraction_lost, 51);
    }

    #[test]
    fn a_bottleneck_queues_then_drops() {
        let now = Instant::now();
        // 8 kbit/s: a 1000-byte packet takes one second.
        let mut b = Bottleneck {
            bitrate: 80_000,
            busy_until: None,
        };
        assert_eq!(b.pass(now, 1000), Some(now + Duration::from_millis(100)));
        assert_eq!(b.pass(now, 1000), Some(now + Duration::from_millis(200)));
        b.pass(now, 1000);
        // The queue now holds 300 ms: beyond 150 ms the packet is dropped.
        assert_eq!(b.pass(now, 1000), None);
        let later = now + Duration::from_secs(1);
        assert_eq!(
            b.pass(later, 1000),
            Some(later + Duration::from_millis(100))
        );
    }

    #[test]
    fn transport_sequence_numbers_are_found_among_extensions() {
        let mut packet = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
        // mid (id 1, "0"), padding, transport-cc (id 3) = 0x1234.
        packet.extend_from_slice(&[0xbe, 0xde, 0, 2, 0x10, b'0', 0, 0x31, 0x12, 0x34, 0, 0]);
        packet.extend_from_slice(&[1, 2, 3]);
        assert_eq!(transport_sequence(&packet, 3), Some(0x1234));
        assert_eq!(transport_sequence(&packet, 5), None);
    }

    #[test]
    fn payloads_skip_extensions_and_padding() {
        let mut packet = vec![0xb0, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
        packet.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]);
        packet.extend_from_slice(&[1, 2, 3, 0, 2]);
        assert_eq!(rtp_payload(&packet), Some(&[1u8, 2, 3][..]));
    }
}
