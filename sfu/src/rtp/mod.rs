//! The RTP packet layer the per-packet path is built on: zero-copy packet
//! views with in-place rewriting, sequence/timestamp arithmetic and
//! rewriting, the retransmission buffer and RTX, NACK generation, and the
//! video payload formats.
//!
//! Nothing here allocates per packet: views borrow the datagram, rewrites
//! patch it in place, and buffers are preallocated when created. Nothing
//! reads a clock: time is passed in as `now`. No input panics.

mod codecs;
#[cfg(test)]
mod fuzz_tests;
mod nack;
mod packet;
mod retransmission;
mod rewriter;
mod rtx;
mod seq;

pub use codecs::{
    h264_is_keyframe, CodecError, PictureId, Vp8Descriptor, Vp8Rewriter, Vp9Descriptor,
};
pub use nack::{NackGenerator, NackGeneratorOptions, NackOutcome, NackStats};
pub use packet::{
    ExtensionForm, ExtensionRemapError, ExtensionWriteError, HeaderExtension, HeaderExtensions,
    RtpPacket, RtpPacketMut, RtpParseError, ONE_BYTE_PROFILE, RTP_HEADER_LEN, TWO_BYTE_PROFILE,
};
pub use retransmission::{RetransmissionBuffer, RetransmissionBufferError};
pub use rewriter::{SeqRewriter, TsRewriter};
pub use rtx::{rtx_decapsulate, rtx_encapsulate, RtxError};
pub use seq::{seq_diff, seq_is_newer, ts_diff, ts_is_newer, ExtendedSeqTracker, SeqUpdate};
