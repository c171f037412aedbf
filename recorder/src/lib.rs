//! Recording of a webinar's media: receives RTP like any other consumer of the
//! SFU and (with GStreamer) writes fragmented MP4 segments while live and one
//! MP4 at the end. Depends on nothing but its inputs.
//!
//! The GStreamer pipeline is not built yet; this crate currently owns only the
//! naming and layout of recording files on disk.
#![forbid(unsafe_code)]
