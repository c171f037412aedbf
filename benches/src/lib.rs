//! The bench suite's load generator (`webinar-bench`): a synthetic
//! presenter and N synthetic viewers joined through the real path (REST,
//! Socket.IO, ICE, DTLS, SRTP) of this project's server, and the same
//! audience driven through Janus's VideoRoom for a side-by-side ratio.
//!
//! - [`plan`] fixes what the presenter sends; [`media`] encodes it once
//!   with GStreamer and paces it, stamping send times into payloads.
//! - [`peer`] is one simulated WebRTC endpoint (ICE, DTLS, SRTP, RTCP) and
//!   [`net`] the thread that moves every peer's datagrams.
//! - [`ours`] and [`janus`] signal the peers into each SFU.
//! - [`procstat`] samples the SFU process; [`results`] and [`report`]
//!   turn the measurements into a table, JSON and an HTML chart.

pub mod janus;
pub mod media;
pub mod net;
pub mod ours;
pub mod params;
pub mod peer;
pub mod plan;
pub mod presenter;
pub mod procstat;
pub mod report;
pub mod results;
pub mod run;
pub mod sdp;
pub mod sio;
pub mod viewer;
