//! Transport-wide congestion control feedback for what a transport
//! receives (draft-holmer-rmcat-transport-wide-cc-extensions-01): arrival
//! times of every packet carrying a transport-wide sequence number,
//! reported to the sender every 100 ms so that its send-side bandwidth
//! estimator (and so its simulcast layers) can ramp up.

use std::time::{Duration, Instant};

use crate::rtcp::TransportCcBuilder;

const FEEDBACK_INTERVAL: Duration = Duration::from_millis(100);
/// A feedback covers at most this many arrivals, so it fits one datagram.
const MAX_PER_FEEDBACK: usize = 200;

pub(crate) struct TransportCcRecorder {
    sender_ssrc: u32,
    media_ssrc: u32,
    feedback_count: u8,
    /// (transport sequence, arrival in µs) since the last feedback.
    arrivals: Vec<(u16, i64)>,
    /// Highest sequence already reported, so late duplicates are dropped.
    last_reported: Option<u16>,
    next_feedback: Option<Instant>,
    builder: TransportCcBuilder,
}

impl TransportCcRecorder {
    pub(crate) fn new(sender_ssrc: u32, media_ssrc: u32) -> Self {
        Self {
            sender_ssrc,
            media_ssrc,
            feedback_count: 0,
            arrivals: Vec::with_capacity(MAX_PER_FEEDBACK),
            last_reported: None,
            next_feedback: None,
            builder: TransportCcBuilder::new(sender_ssrc, media_ssrc, 0),
        }
    }

    pub(crate) fn record(&mut self, now: Instant, seq: u16, arrival_us: i64) {
        if let Some(last) = self.last_reported {
            if !crate::rtp::seq_is_newer(seq, last) {
                return;
            }
        }
        self.arrivals.push((seq, arrival_us));
        if self.arrivals.len() >= MAX_PER_FEEDBACK {
            self.next_feedback = Some(now);
        } else {
            self.next_feedback.get_or_insert(now + FEEDBACK_INTERVAL);
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next_feedback
    }

    /// Writes the feedback items due at `now` into `out`.
    pub(crate) fn poll_feedback(&mut self, now: Instant, out: &mut Vec<u8>) {
        let due = self.next_feedback.is_some_and(|t| now >= t);
        if !due || self.arrivals.is_empty() {
            return;
        }
        self.next_feedback = None;
        // Reordered packets: sort by distance from the first recorded one.
        let first = self.arrivals[0].0;
        self.arrivals
            .sort_by_key(|(seq, _)| seq.wrapping_sub(first) as i16);
        self.arrivals.dedup_by_key(|(seq, _)| *seq);
        self.builder =
            TransportCcBuilder::new(self.sender_ssrc, self.media_ssrc, self.feedback_count);
        let arrivals = std::mem::take(&mut self.arrivals);
        for (seq, at) in &arrivals {
            if self.builder.push(*seq, *at).is_err() {
                // A gap in time too large for one feedback: send what we have
                // and start the next one here.
                self.emit(out);
                self.builder =
                    TransportCcBuilder::new(self.sender_ssrc, self.media_ssrc, self.feedback_count);
                let _ = self.builder.push(*seq, *at);
            }
            self.last_reported = Some(*seq);
        }
        self.emit(out);
        self.arrivals = arrivals;
        self.arrivals.clear();
    }

    fn emit(&mut self, out: &mut Vec<u8>) {
        if self.builder.is_empty() {
            return;
        }
        let start = out.len();
        out.resize(start + self.builder.encoded_len(), 0);
        match self.builder.write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                self.feedback_count = self.feedback_count.wrapping_add(1);
            }
            Err(_) => out.truncate(start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::TransportCc;

    #[test]
    fn reordered_arrivals_are_reported_in_sequence_order() {
        let t0 = Instant::now();
        let mut r = TransportCcRecorder::new(1, 2);
        for (seq, at) in [(65534u16, 1_000i64), (0, 3_000), (65535, 2_000), (2, 5_000)] {
            r.record(t0, seq, at);
        }
        let mut out = Vec::new();
        r.poll_feedback(t0, &mut out);
        assert!(out.is_empty(), "not due before the interval");
        r.poll_feedback(t0 + FEEDBACK_INTERVAL, &mut out);
        let fb = TransportCc::parse(&out).unwrap();
        let arrivals: Vec<(u16, Option<i64>)> = fb.arrivals().collect();
        let seqs: Vec<u16> = arrivals.iter().map(|a| a.0).collect();
        assert_eq!(seqs, vec![65534, 65535, 0, 1, 2]);
        assert!(arrivals[3].1.is_none(), "1 was never received");
        let received: Vec<i64> = arrivals.iter().filter_map(|a| a.1).collect();
        assert_eq!(
            received.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>(),
            vec![1000, 1000, 2000]
        );
        // Late arrivals of reported packets are not reported again.
        r.record(t0, 65535, 9_000);
        out.clear();
        r.poll_feedback(t0 + FEEDBACK_INTERVAL * 3, &mut out);
        assert!(out.is_empty());
    }
}
