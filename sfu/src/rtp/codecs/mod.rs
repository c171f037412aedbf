//! Video payload formats the SFU must look into: keyframe detection for all,
//! layer information for VP8/VP9 (temporal and spatial layer selection), and
//! in-place VP8 picture-id / TL0PICIDX rewriting. Opus needs nothing.
//!
//! Every parse returns a fresh value per packet; no parser keeps state
//! between packets (a reused VP8 parser object is how stale fields leak).

mod h264;
mod vp8;
mod vp9;

pub use h264::h264_is_keyframe;
pub use vp8::{PictureId, Vp8Descriptor, Vp8Rewriter};
pub use vp9::Vp9Descriptor;

use thiserror::Error;

/// Why a payload descriptor could not be parsed or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("payload descriptor needs {needed} bytes, payload has {len}")]
    Truncated { needed: usize, len: usize },
    #[error("payload descriptor has no {0} field to rewrite")]
    FieldAbsent(&'static str),
}

/// Checks that `buf` holds at least `needed` bytes.
fn need(buf: &[u8], needed: usize) -> Result<(), CodecError> {
    if buf.len() < needed {
        Err(CodecError::Truncated {
            needed,
            len: buf.len(),
        })
    } else {
        Ok(())
    }
}
