//! Deterministic mutation loops: RTCP parsing must survive arbitrary bytes
//! without panicking, and every iterator of a parsed item must terminate.

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

    fn mutate(&mut self, buf: &mut Vec<u8>) {
        for _ in 0..1 + self.below(4) {
            match self.below(4) {
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
                _ => {
                    for _ in 0..self.below(8) {
                        buf.push(self.next() as u8);
                    }
                }
            }
        }
    }
}

/// A compound holding one of everything we parse.
fn seed() -> Vec<u8> {
    let mut b = vec![0u8; 2048];
    let mut n = 0;
    let block = ReportBlock {
        ssrc: 1,
        fraction_lost: 2,
        cumulative_lost: -3,
        extended_highest_seq: 4,
        jitter: 5,
        last_sr: 6,
        delay_since_last_sr: 7,
    };
    let info = SenderInfo {
        ntp: NtpTime(1 << 40),
        rtp_timestamp: 9,
        packet_count: 10,
        octet_count: 11,
    };
    n += SenderReport::write(&mut b[n..], 1, &info, &[block]).unwrap();
    n += ReceiverReport::write(&mut b[n..], 1, &[block, block]).unwrap();
    n += SourceDescription::write_cname(&mut b[n..], 1, b"cname-xyz").unwrap();
    n += Bye::write(&mut b[n..], &[1, 2], Some(b"bye")).unwrap();
    n += Nack::write(
        &mut b[n..],
        1,
        2,
        &[NackItem {
            pid: 65535,
            blp: 0xF0F0,
        }],
    )
    .unwrap();
    n += Pli {
        sender_ssrc: 1,
        media_ssrc: 2,
    }
    .write(&mut b[n..])
    .unwrap();
    n += Fir::write(&mut b[n..], 1, &[FirEntry { ssrc: 2, seq_nr: 3 }]).unwrap();
    n += Remb::write(&mut b[n..], 1, 1_000_000, &[2, 3]).unwrap();
    let mut twcc = TransportCcBuilder::new(1, 2, 3);
    for (i, seq) in [10u16, 11, 13, 40, 41].into_iter().enumerate() {
        twcc.push(seq, 1_000_000 + 30_000 * i as i64 - 5_000 * (i as i64 % 2))
            .unwrap();
    }
    n += twcc.write(&mut b[n..]).unwrap();
    n += ExtendedReport::write_rrtr(&mut b[n..], 1, NtpTime(77)).unwrap();
    n += ExtendedReport::write_dlrr(
        &mut b[n..],
        1,
        &[DlrrItem {
            ssrc: 1,
            last_rr: 2,
            delay_since_last_rr: 3,
        }],
    )
    .unwrap();
    b.truncate(n);
    b
}

fn exercise(buf: &[u8]) -> usize {
    let mut seen = 0;
    for item in parse_compound(buf) {
        let Ok(p) = item else { continue };
        seen += 1;
        match p {
            RtcpPacket::SenderReport(sr) => seen += sr.report_blocks().count(),
            RtcpPacket::ReceiverReport(rr) => seen += rr.report_blocks().count(),
            RtcpPacket::SourceDescription(s) => {
                for c in s.chunks() {
                    seen += c.items().count() + usize::from(c.cname().is_some());
                }
            }
            RtcpPacket::Bye(b) => seen += b.ssrcs().count(),
            RtcpPacket::Nack(n) => seen += n.lost_seqs().count(),
            RtcpPacket::TransportCc(t) => {
                let count = t.packets().count();
                assert_eq!(
                    count,
                    usize::from(t.status_count),
                    "validated feedback iterates fully"
                );
                seen += t.arrivals().count();
            }
            RtcpPacket::Pli(_) => {}
            RtcpPacket::Fir(f) => seen += f.entries().count(),
            RtcpPacket::Remb(r) => seen += r.ssrcs().count(),
            RtcpPacket::ExtendedReport(x) => {
                for b in x.blocks() {
                    if let XrBlock::Dlrr(d) = b {
                        seen += d.iter().count();
                    }
                }
            }
            RtcpPacket::Other { .. } => {}
        }
    }
    seen
}

#[test]
fn seed_compound_parses_every_item() {
    let buf = seed();
    assert!(parse_compound(&buf).all(|i| i.is_ok()));
    assert_eq!(parse_compound(&buf).count(), 11);
}

#[test]
fn mutated_compounds_never_panic() {
    let base = seed();
    let mut rng = Lcg(0xC0FFEE);
    for _ in 0..30_000 {
        let mut buf = base.clone();
        rng.mutate(&mut buf);
        exercise(&buf);
    }
}

#[test]
fn mutated_single_items_never_panic() {
    let base = seed();
    let items: Vec<Vec<u8>> = split_compound(&base).map(|i| i.unwrap().to_vec()).collect();
    let mut rng = Lcg(99);
    for item in &items {
        for _ in 0..3_000 {
            let mut buf = item.clone();
            rng.mutate(&mut buf);
            exercise(&buf);
        }
    }
}

#[test]
fn random_bytes_never_panic_rtcp_parsing() {
    let mut rng = Lcg(1234);
    for _ in 0..30_000 {
        let len = rng.below(64);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if len > 4 {
            // Keep the version right and the length plausible so parsers
            // past the framing get exercised.
            buf[0] = 0x80 | (buf[0] & 0x3F);
            buf[1] = 200 + (buf[1] % 8);
            buf[2] = 0;
            buf[3] = (len / 4).saturating_sub(1) as u8;
        }
        exercise(&buf);
    }
}
