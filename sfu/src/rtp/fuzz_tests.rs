//! Deterministic mutation loops: every parser and in-place rewriter in this
//! module must survive arbitrary bytes without panicking.

use std::time::{Duration, Instant};

use super::packet::tests::build;
use super::*;

/// Small deterministic LCG (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n.max(1)
    }

    /// Flips bits, overwrites bytes, truncates or extends `buf`.
    fn mutate(&mut self, buf: &mut Vec<u8>) {
        for _ in 0..1 + self.below(4) {
            match self.below(5) {
                0 if !buf.is_empty() => {
                    let i = self.below(buf.len());
                    buf[i] ^= 1 << self.below(8);
                }
                1 if !buf.is_empty() => {
                    let i = self.below(buf.len());
                    buf[i] = self.next() as u8;
                }
                2 => {
                    let n = self.below(buf.len() + 1);
                    buf.truncate(n);
                }
                3 => {
                    for _ in 0..self.below(8) {
                        buf.push(self.next() as u8);
                    }
                }
                _ => {
                    let i = self.below(buf.len() + 1);
                    buf.insert(i, self.next() as u8);
                }
            }
        }
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let one = [0x10, 0xAA, 0xF0, 0x21, 1, 2, 0, 0];
    let two = [200, 0, 0, 7, 2, 0xDE, 0xAD, 0];
    let vp8 = [0x90, 0xF0, 0x92, 0x34, 5, 0xA3, 0x10, 0xAA];
    let vp9 = [
        0x0A, 0x38, 1, 0x40, 0, 0xB4, 2, 0x80, 1, 0x68, 1, 4, 1, 0x9D,
    ];
    vec![
        build(96, 65535, 1, 2, &[], None, &[], 255),
        build(
            96,
            1,
            2,
            3,
            &[9, 8],
            Some((ONE_BYTE_PROFILE, &one)),
            &vp8,
            3,
        ),
        build(98, 1, 2, 3, &[], Some((0x1001, &two)), &vp9, 0),
        build(
            102,
            1,
            2,
            3,
            &[],
            None,
            &[0x78, 0, 2, 0x68, 0xCE, 0, 2, 0x65, 0x88],
            0,
        ),
        build(102, 1, 2, 3, &[], None, &[0x7C, 0x85, 0xAA], 0),
    ]
}

fn exercise(buf: &mut [u8], out: &mut [u8]) {
    if let Ok(p) = RtpPacket::parse(buf) {
        assert!(p.header_len() + p.padding_len() <= p.len());
        let _ = p.csrcs().count();
        for e in p.extensions() {
            assert!(e.id != 0);
        }
        let payload = p.payload();
        let _ = Vp8Descriptor::parse(payload);
        let _ = Vp9Descriptor::parse(payload);
        let _ = h264_is_keyframe(payload);
        let _ = rtx_encapsulate(buf, 1, 2, 3, out);
        let _ = rtx_decapsulate(buf, 1, 2, out);
    }
    if let Ok(mut m) = RtpPacketMut::parse(buf) {
        m.set_sequence_number(1);
        m.set_timestamp(2);
        m.set_ssrc(3);
        m.set_payload_type(0xFF);
        m.set_marker(true);
        let _ = m.set_extension(1, &[0]);
        let _ = m.remap_extension_ids(|id| if id % 3 == 0 { None } else { Some(id % 14 + 1) });
        let payload = m.payload_mut();
        if let Ok(d) = Vp8Descriptor::parse(payload) {
            let _ = d.set_picture_id(payload, 0x7FFF);
            let _ = d.set_tl0_pic_idx(payload, 7);
            let mut r = Vp8Rewriter::new();
            let _ = r.rewrite(payload, &d);
        }
        assert!(
            RtpPacket::parse(buf).is_ok(),
            "rewrites keep a packet valid"
        );
    }
}

#[test]
fn mutated_rtp_packets_never_panic_and_rewrites_keep_them_valid() {
    let mut rng = Lcg(0x5EED);
    let mut out = vec![0u8; 2048];
    for seed in seeds() {
        for _ in 0..4000 {
            let mut buf = seed.clone();
            rng.mutate(&mut buf);
            exercise(&mut buf, &mut out);
        }
    }
}

#[test]
fn random_bytes_never_panic_any_rtp_parser() {
    let mut rng = Lcg(42);
    let mut out = vec![0u8; 64];
    for _ in 0..20_000 {
        let len = rng.below(80);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if len > 0 && rng.below(2) == 0 {
            buf[0] = 0x80 | (buf[0] & 0x3F);
        }
        exercise(&mut buf, &mut out);
    }
}

#[test]
fn random_sequence_streams_never_panic_the_stateful_trackers() {
    let mut rng = Lcg(7);
    let t0 = Instant::now();
    let mut opts = NackGeneratorOptions::default();
    opts.max_missing = 50;
    let mut nack = NackGenerator::new(opts);
    let mut tracker = ExtendedSeqTracker::new(rng.next() as u16);
    let mut seqs = SeqRewriter::new(0);
    let mut tss = TsRewriter::new(90_000);
    let mut rtx = RetransmissionBuffer::new(64, 16, Duration::from_millis(500));
    let mut requested = Vec::new();
    let mut seq = 0u16;
    for i in 0..20_000u64 {
        let now = t0 + Duration::from_millis(i);
        seq = match rng.below(10) {
            0 => rng.next() as u16,
            1 => seq.wrapping_sub(rng.below(200) as u16),
            2 => seq.wrapping_add(rng.below(100) as u16),
            _ => seq.wrapping_add(1),
        };
        nack.on_packet(seq, now);
        tracker.update(seq);
        let _ = tracker.take_fraction_lost();
        let _ = tracker.cumulative_lost();
        match rng.below(20) {
            0 => seqs.sync(),
            1 => seqs.drop_packet(seq),
            2 => tss.sync(),
            _ => {}
        }
        let _ = seqs.input(seq);
        let _ = tss.input(rng.next(), now);
        let len = rng.below(20);
        let _ = rtx.insert(seq, &vec![0; len], now);
        let _ = rtx.retransmit(seq.wrapping_sub(3), now, Duration::from_millis(10));
        requested.clear();
        nack.poll_nacks(now, &mut requested);
        assert!(requested.len() <= 50);
        let _ = nack.poll_timeout();
    }
}
