//! RTCP: compound splitting and every item parser, with each parsed item's
//! iterators walked to the end. Nothing may panic, and splitting must cover
//! the datagram exactly unless it reports a framing error.
#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use sfu::rtcp::{parse_compound, split_compound, RtcpHeader, RtcpPacket, XrBlock};

fn walk(item: &RtcpPacket<'_>) {
    match item {
        RtcpPacket::SenderReport(sr) => {
            black_box(sr.sender_info);
            for block in sr.report_blocks() {
                black_box(block);
            }
        }
        RtcpPacket::ReceiverReport(rr) => {
            for block in rr.report_blocks() {
                black_box(block);
            }
        }
        RtcpPacket::SourceDescription(sdes) => {
            for chunk in sdes.chunks() {
                black_box(chunk.cname());
                for entry in chunk.items() {
                    black_box(entry);
                }
            }
        }
        RtcpPacket::Bye(bye) => {
            black_box(bye.reason);
            for ssrc in bye.ssrcs() {
                black_box(ssrc);
            }
        }
        RtcpPacket::Nack(nack) => {
            for item in nack.items() {
                black_box(item);
            }
            for seq in nack.lost_seqs() {
                black_box(seq);
            }
        }
        RtcpPacket::TransportCc(twcc) => {
            black_box(twcc.reference_time_us());
            for packet in twcc.packets() {
                black_box(packet);
            }
            for arrival in twcc.arrivals() {
                black_box(arrival);
            }
        }
        RtcpPacket::Pli(pli) => {
            black_box(pli);
        }
        RtcpPacket::Fir(fir) => {
            for entry in fir.entries() {
                black_box(entry);
            }
        }
        RtcpPacket::Remb(remb) => {
            black_box(remb.bitrate);
            for ssrc in remb.ssrcs() {
                black_box(ssrc);
            }
        }
        RtcpPacket::ExtendedReport(xr) => {
            for block in xr.blocks() {
                if let XrBlock::Dlrr(items) = block {
                    for item in items.iter() {
                        black_box(item);
                    }
                } else {
                    black_box(block);
                }
            }
        }
        RtcpPacket::Other { header, item } => {
            black_box((header, item));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    black_box(RtcpHeader::parse(data).ok());
    // Every item alone, as the dispatcher sees it.
    black_box(RtcpPacket::parse(data).map(|item| walk(&item)).ok());

    let mut covered = 0;
    let mut framing_error = false;
    for item in split_compound(data) {
        match item {
            Ok(bytes) => {
                covered += bytes.len();
                black_box(RtcpPacket::parse(bytes).map(|item| walk(&item)).ok());
            }
            Err(_) => framing_error = true,
        }
    }
    if !framing_error {
        assert_eq!(covered, data.len(), "items tile the compound");
    }

    for item in parse_compound(data).flatten() {
        walk(&item);
    }
});
