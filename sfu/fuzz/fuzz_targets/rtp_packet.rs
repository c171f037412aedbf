//! RTP: the zero-copy view, every in-place rewrite the packet path does
//! (fixed header fields, extension id remapping and value writes, VP8
//! picture id / TL0PICIDX), RTX wrapping both ways, and the VP8/VP9/H.264
//! payload descriptors. Nothing may panic, and a rewritten packet must
//! still parse with the same layout.
#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use sfu::rtp::{
    h264_is_keyframe, rtx_decapsulate, rtx_encapsulate, ExtensionForm, RtpPacket, RtpPacketMut,
    Vp8Descriptor, Vp8Rewriter, Vp9Descriptor,
};

fn read_view(p: &RtpPacket<'_>) {
    black_box((
        p.len(),
        p.has_padding(),
        p.marker(),
        p.payload_type(),
        p.sequence_number(),
        p.timestamp(),
        p.ssrc(),
        p.extension_profile(),
        p.extension_form(),
        p.header_len(),
        p.padding_len(),
    ));
    for csrc in p.csrcs() {
        black_box(csrc);
    }
    for e in p.extensions() {
        black_box(p.extension(e.id));
    }
    let payload = p.payload();
    black_box(Vp8Descriptor::parse(payload).ok());
    black_box(Vp9Descriptor::parse(payload).ok());
    black_box(h264_is_keyframe(payload));
}

fuzz_target!(|data: &[u8]| {
    // The first byte steers the rewrites; the rest is the datagram.
    let Some((&knob, datagram)) = data.split_first() else {
        return;
    };
    black_box(Vp8Descriptor::parse(datagram).ok());
    black_box(Vp9Descriptor::parse(datagram).ok());

    let Ok(view) = RtpPacket::parse(datagram) else {
        return;
    };
    read_view(&view);
    let header_len = view.header_len();
    let payload_len = view.payload().len();
    let ids: Vec<(u8, usize)> = view.extensions().map(|e| (e.id, e.value.len())).collect();
    let form = view.extension_form();

    let mut out = vec![0u8; datagram.len() + 2];
    if let Ok(n) = rtx_encapsulate(datagram, 0x1111, 97, 7, &mut out) {
        let mut back = vec![0u8; n];
        let m = rtx_decapsulate(&out[..n], view.ssrc(), view.payload_type(), &mut back)
            .expect("an RTX packet we built decapsulates");
        // RTX does not carry padding (RFC 4588 §4): the original comes
        // back without it and without the P bit.
        let mut unpadded = datagram[..datagram.len() - view.padding_len()].to_vec();
        unpadded[0] &= !0x20;
        assert_eq!(
            &back[..m],
            &unpadded[..],
            "RTX round trip restores the packet"
        );
    }
    black_box(rtx_decapsulate(datagram, 0x2222, 96, &mut out).ok());

    let mut buf = datagram.to_vec();
    let Ok(mut p) = RtpPacketMut::parse(&mut buf) else {
        panic!("a packet that parses read-only parses mutable");
    };
    p.set_marker(knob & 1 != 0);
    p.set_payload_type(knob);
    p.set_sequence_number(u16::from(knob) << 8 | 0x5A);
    p.set_timestamp(u32::from(knob) * 3000);
    p.set_ssrc(0xDEAD_BEEF ^ u32::from(knob));
    if let Some(&(id, len)) = ids.first() {
        let value = vec![knob; len];
        black_box(p.set_extension(id, &value).ok());
        black_box(p.set_extension(id, &[knob; 3]).ok());
        if let Some(v) = p.extension_mut(id) {
            v.fill(knob);
        }
    }
    // Drop some ids and move the others, as producer and consumer do; an
    // id that does not fit the form is refused as a whole.
    let max_id = match form {
        Some(ExtensionForm::OneByte) => 14,
        _ => 255,
    };
    black_box(
        p.remap_extension_ids(|id| {
            if (id ^ knob) & 2 == 0 {
                None
            } else {
                Some(((u16::from(id) + u16::from(knob >> 2)) % max_id + 1) as u8)
            }
        })
        .ok(),
    );
    black_box(p.remap_extension_ids(|id| Some(id.wrapping_add(knob))).ok());

    if let Ok(d) = Vp8Descriptor::parse(p.view().payload()) {
        let mut rewriter = Vp8Rewriter::new();
        black_box(rewriter.rewrite(p.payload_mut(), &d).ok());
        rewriter.sync();
        rewriter.drop_picture(u16::from(knob));
        black_box(rewriter.rewrite(p.payload_mut(), &d).ok());
        black_box(
            d.set_picture_id(p.payload_mut(), u16::from(knob) * 129)
                .ok(),
        );
        black_box(d.set_tl0_pic_idx(p.payload_mut(), knob).ok());
    }

    let after = RtpPacket::parse(&buf).expect("rewrites keep the packet parseable");
    assert_eq!(
        after.header_len(),
        header_len,
        "rewrites keep the header length"
    );
    assert_eq!(
        after.payload().len(),
        payload_len,
        "rewrites keep the payload"
    );
    read_view(&after);
});
