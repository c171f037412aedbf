//! The media engine: a pure-Rust SFU with mediasoup's model (Worker, Router,
//! Transport, Producer, Consumer), so that the unmodified `mediasoup-client`
//! in a browser can publish to it and consume from it.
//!
//! This crate depends on nothing above it: the backend drives it through its
//! public API and its events. Protocol state is sans-IO: state machines take
//! `now` and bytes in and give bytes, timeouts and events out.
#![forbid(unsafe_code)]

pub mod ortc;
pub mod rtp_parameters;
pub mod supported_rtp_capabilities;

pub mod rtcp;
pub mod rtp;
