//! The media engine: a pure-Rust SFU with mediasoup's model (Worker, Router,
//! Transport, Producer, Consumer), so that the unmodified `mediasoup-client`
//! in a browser can publish to it and consume from it.
//!
//! This crate depends on nothing above it: the backend drives it through
//! [`Worker`] and hears from it through [`WorkerEvent`]s. Protocol state is
//! sans-IO: state machines take `now` and bytes in and give bytes, timeouts
//! and events out; the worker thread is a thin driver around them.
#![forbid(unsafe_code)]

#[doc(hidden)]
pub mod bench_support;
mod ids;
pub mod ortc;
pub mod router;
pub mod rtcp;
pub mod rtp;
pub mod rtp_parameters;
pub mod supported_rtp_capabilities;
pub mod transport;
mod worker;

pub use ids::{ConsumerId, ProducerId, RouterId, RtpObserverId, TransportId, WorkerId};
pub use router::{
    ActiveSpeakerObserverOptions, AudioLevel, AudioLevelObserverOptions, ConsumeError,
    ConsumerLayers, ConsumerOptions, ConsumerStats, ConsumerType, PlainConnectError,
    PlainConnectParameters, PlainTransportOptions, ProduceError, ProducerOptions,
    ProducerStreamStats, ProducerType, SrtpParameters, TransportTuple,
};
pub use worker::{
    CallError, ConsumerInfo, PlainTransportInfo, ProducerInfo, TransportStats, WebRtcTransportInfo,
    Worker, WorkerError, WorkerEvent, WorkerSettings,
};
