//! What a router owns, mediasoup's objects on the packet path: producers
//! (incoming tracks) and consumers (outgoing tracks). The router itself —
//! capabilities and the producer -> consumers fan-out map — lives in the
//! worker's engine, which owns every object of its thread.

pub(crate) mod allocation;
pub(crate) mod bandwidth_estimator;
pub(crate) mod consumer;
pub(crate) mod plain_transport;
pub(crate) mod producer;
pub(crate) mod rtp_observer;
pub(crate) mod transport_cc;

pub use consumer::{ConsumeError, ConsumerLayers, ConsumerOptions, ConsumerStats, ConsumerType};
pub use plain_transport::{
    PlainConnectError, PlainConnectParameters, PlainTransportOptions, SrtpParameters,
    TransportTuple,
};
pub use producer::{
    ProduceError, ProducerOptions, ProducerStreamStats, ProducerType,
    DEFAULT_KEY_FRAME_REQUEST_INTERVAL,
};
pub use rtp_observer::{ActiveSpeakerObserverOptions, AudioLevel, AudioLevelObserverOptions};
