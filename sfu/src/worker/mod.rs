//! Worker: one OS thread with its own event loop that owns routers,
//! transports, producers and consumers, and the UDP socket of its
//! WebRtcServer. Nothing on the packet path is shared or locked; async code
//! talks to a worker through [`Worker`], whose calls run on the worker
//! thread and answer through a oneshot channel, and hears from it through
//! [`WorkerEvent`]s.

mod batch;
mod driver;
mod engine;
mod pipe;
mod webrtc_server;

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::Serialize;
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

pub(crate) use engine::Engine;
pub use engine::{PlainTransportInfo, TransportStats, WebRtcTransportInfo};

use crate::ids::{ConsumerId, ProducerId, RouterId, RtpObserverId, TransportId, WorkerId};
use crate::router::rtp_observer::RtpObserver;
use crate::router::{
    ActiveSpeakerObserverOptions, AudioLevel, AudioLevelObserverOptions, ConsumeError,
    ConsumerLayers, ConsumerOptions, ConsumerStats, ConsumerType, ProduceError, ProducerOptions,
    ProducerStreamStats, ProducerType,
};
use crate::router::{PlainConnectParameters, PlainTransportOptions};
use crate::rtp_parameters::{MediaKind, RtpCapabilities, RtpCodecCapability, RtpParameters};
use crate::transport::{DtlsParameters, IceParameters, WebRtcTransportOptions};

/// Where a worker listens and what it tells browsers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerSettings {
    /// Address the WebRtcServer's UDP socket binds.
    pub listen_ip: IpAddr,
    /// Port of the UDP socket (0: any free port).
    pub port: u16,
    /// Address put in ICE candidates (a public address behind NAT);
    /// `listen_ip` when `None`.
    pub announced_address: Option<String>,
}

impl WorkerSettings {
    pub fn new(listen_ip: IpAddr, port: u16) -> Self {
        Self {
            listen_ip,
            port,
            announced_address: None,
        }
    }
}

/// Something that happened inside a worker that its owner should know.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum WorkerEvent {
    /// The consumer was closed by the worker (its producer or transport
    /// closed), not by a call.
    ConsumerClosed {
        consumer_id: ConsumerId,
        producer_id: ProducerId,
    },
    ConsumerProducerPaused {
        consumer_id: ConsumerId,
    },
    ConsumerProducerResumed {
        consumer_id: ConsumerId,
    },
    ConsumerLayersChanged {
        consumer_id: ConsumerId,
        layers: Option<ConsumerLayers>,
    },
    /// The producer was closed by the worker (its transport closed).
    ProducerClosed {
        producer_id: ProducerId,
    },
    TransportIceStateChanged {
        transport_id: TransportId,
        state: String,
    },
    TransportDtlsStateChanged {
        transport_id: TransportId,
        state: String,
    },
    TransportClosed {
        transport_id: TransportId,
    },
    /// An AudioLevelObserver's report: the loudest producers, loudest first.
    AudioLevels {
        observer_id: RtpObserverId,
        volumes: Vec<AudioLevel>,
    },
    /// An AudioLevelObserver heard nobody above its threshold.
    Silence {
        observer_id: RtpObserverId,
    },
    /// An ActiveSpeakerObserver's new dominant speaker.
    DominantSpeaker {
        observer_id: RtpObserverId,
        producer_id: ProducerId,
        volume: i8,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the worker has stopped")]
    Closed,
    #[error("cannot start the worker: {0}")]
    Io(#[from] std::io::Error),
}

/// Errors of calls that name objects.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Produce(#[from] ProduceError),
    #[error(transparent)]
    Consume(#[from] ConsumeError),
}

/// What `produce` returns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerInfo {
    pub id: ProducerId,
    pub kind: MediaKind,
    pub r#type: ProducerType,
    pub paused: bool,
}

/// What `consume` returns: the consumer parameters the client needs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerInfo {
    pub id: ConsumerId,
    pub producer_id: ProducerId,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub r#type: ConsumerType,
    pub producer_paused: bool,
}

type Call = Box<dyn FnOnce(&mut Engine, std::time::Instant) + Send>;

/// Handle to a worker thread. Cheap to clone; the thread stops when the
/// last handle is dropped or [`Worker::close`] is called.
#[derive(Clone)]
pub struct Worker {
    id: WorkerId,
    pipe_inbox: pipe::PipeInbox,
    local_addr: SocketAddr,
    listen_ip: IpAddr,
    calls: mpsc::Sender<Call>,
    waker: Arc<mio::Waker>,
    _thread: Arc<ThreadGuard>,
}

struct ThreadGuard {
    handle: std::sync::Mutex<Option<JoinHandle<()>>>,
    calls: mpsc::Sender<Call>,
    waker: Arc<mio::Waker>,
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        let _ = self.calls.send(Box::new(|engine, _| engine.stop()));
        let _ = self.waker.wake();
        if let Some(h) = self.handle.lock().ok().and_then(|mut h| h.take()) {
            let _ = h.join();
        }
    }
}

impl Worker {
    /// Starts a worker thread with its WebRtcServer socket bound.
    pub fn new(
        settings: WorkerSettings,
        events: tokio_mpsc::UnboundedSender<WorkerEvent>,
    ) -> Result<Worker, WorkerError> {
        let id = WorkerId::new();
        let (calls_tx, calls_rx) = mpsc::channel::<Call>();
        let settings_listen_ip = settings.listen_ip;
        let (pipe_tx, pipe_rx) = mpsc::channel::<pipe::PipeMessage>();
        let started = driver::start(id, settings, calls_rx, pipe_rx, events)?;
        let pipe_inbox = pipe::PipeInbox::new(pipe_tx, started.waker.clone());
        let guard = ThreadGuard {
            handle: std::sync::Mutex::new(Some(started.thread)),
            calls: calls_tx.clone(),
            waker: started.waker.clone(),
        };
        Ok(Worker {
            id,
            pipe_inbox,
            listen_ip: settings_listen_ip,
            local_addr: started.local_addr,
            calls: calls_tx,
            waker: started.waker,
            _thread: Arc::new(guard),
        })
    }

    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// The WebRtcServer's UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs `f` on the worker thread and returns its result.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, WorkerError> {
        let (tx, rx) = oneshot::channel();
        self.calls
            .send(Box::new(move |engine, now| {
                let _ = tx.send(f(engine, now));
            }))
            .map_err(|_| WorkerError::Closed)?;
        self.waker.wake().map_err(|_| WorkerError::Closed)?;
        rx.await.map_err(|_| WorkerError::Closed)
    }

    /// Creates a router for these codecs; returns its id and capabilities.
    pub async fn create_router(
        &self,
        media_codecs: Vec<RtpCodecCapability>,
    ) -> Result<(RouterId, RtpCapabilities), CallError> {
        self.call(move |e, _| e.create_router(media_codecs)).await?
    }

    pub async fn close_router(&self, router_id: RouterId) -> Result<(), CallError> {
        self.call(move |e, now| e.close_router(now, router_id))
            .await?
    }

    pub async fn create_webrtc_transport(
        &self,
        router_id: RouterId,
    ) -> Result<WebRtcTransportInfo, CallError> {
        self.create_webrtc_transport_with(router_id, WebRtcTransportOptions::default())
            .await
    }

    /// The same with non-default transport settings (SRTP profiles, ...).
    pub async fn create_webrtc_transport_with(
        &self,
        router_id: RouterId,
        options: WebRtcTransportOptions,
    ) -> Result<WebRtcTransportInfo, CallError> {
        self.call(move |e, now| e.create_webrtc_transport(now, router_id, options))
            .await?
    }

    /// A PlainTransport with its own UDP port(s) on the worker's address.
    pub async fn create_plain_transport(
        &self,
        router_id: RouterId,
        options: PlainTransportOptions,
    ) -> Result<PlainTransportInfo, CallError> {
        let bind = || std::net::UdpSocket::bind((self.listen_ip, 0)).map_err(WorkerError::from);
        let rtp = bind()?;
        let rtcp = if options.rtcp_mux {
            None
        } else {
            Some(bind()?)
        };
        self.call(move |e, _| e.create_plain_transport(router_id, options, rtp, rtcp))
            .await?
    }

    pub async fn connect_plain_transport(
        &self,
        transport_id: TransportId,
        parameters: PlainConnectParameters,
    ) -> Result<(), CallError> {
        self.call(move |e, _| e.connect_plain_transport(transport_id, parameters))
            .await?
    }

    pub async fn connect_webrtc_transport(
        &self,
        transport_id: TransportId,
        dtls_parameters: DtlsParameters,
    ) -> Result<(), CallError> {
        self.call(move |e, now| e.connect_transport(now, transport_id, dtls_parameters))
            .await?
    }

    pub async fn restart_ice(&self, transport_id: TransportId) -> Result<IceParameters, CallError> {
        self.call(move |e, now| e.restart_ice(now, transport_id))
            .await?
    }

    pub async fn close_transport(&self, transport_id: TransportId) -> Result<(), CallError> {
        self.call(move |e, now| e.close_transport(now, transport_id, false))
            .await?
    }

    pub async fn transport_stats(
        &self,
        transport_id: TransportId,
    ) -> Result<TransportStats, CallError> {
        self.call(move |e, _| e.transport_stats(transport_id))
            .await?
    }

    pub async fn produce(
        &self,
        transport_id: TransportId,
        options: ProducerOptions,
    ) -> Result<ProducerInfo, CallError> {
        self.call(move |e, now| e.produce(now, transport_id, options))
            .await?
    }

    pub async fn pause_producer(&self, producer_id: ProducerId) -> Result<(), CallError> {
        self.call(move |e, now| e.set_producer_paused(now, producer_id, true))
            .await?
    }

    pub async fn resume_producer(&self, producer_id: ProducerId) -> Result<(), CallError> {
        self.call(move |e, now| e.set_producer_paused(now, producer_id, false))
            .await?
    }

    pub async fn close_producer(&self, producer_id: ProducerId) -> Result<(), CallError> {
        self.call(move |e, now| e.close_producer(now, producer_id, false))
            .await?
    }

    pub async fn producer_stats(
        &self,
        producer_id: ProducerId,
    ) -> Result<Vec<ProducerStreamStats>, CallError> {
        self.call(move |e, now| e.producer_stats(now, producer_id))
            .await?
    }

    /// Makes `producer_id` (of this worker) consumable on `target_router`
    /// of `target` (another worker, or this one): returns the id of the
    /// producer that stands for it there. Packets cross in memory, already
    /// decrypted; key frame requests come back the same way.
    pub async fn pipe_to_router(
        &self,
        producer_id: ProducerId,
        target: &Worker,
        target_router: RouterId,
    ) -> Result<ProducerId, CallError> {
        let (kind, parameters, paused) =
            self.call(move |e, _| e.pipe_source(producer_id)).await??;
        let source = self.pipe_inbox.clone();
        let piped = target
            .call(move |e, _| {
                e.create_pipe_producer(target_router, kind, parameters, paused, source, producer_id)
            })
            .await??;
        let sink = target.pipe_inbox.clone();
        self.call(move |e, _| e.add_pipe_sink(producer_id, sink, piped))
            .await??;
        Ok(piped)
    }

    /// Whether a device with `rtp_capabilities` can consume the producer.
    pub async fn can_consume(
        &self,
        producer_id: ProducerId,
        rtp_capabilities: RtpCapabilities,
    ) -> Result<bool, CallError> {
        self.call(move |e, _| e.can_consume(producer_id, &rtp_capabilities))
            .await?
    }

    pub async fn consume(
        &self,
        transport_id: TransportId,
        options: ConsumerOptions,
    ) -> Result<ConsumerInfo, CallError> {
        self.call(move |e, now| e.consume(now, transport_id, options))
            .await?
    }

    pub async fn pause_consumer(&self, consumer_id: ConsumerId) -> Result<(), CallError> {
        self.call(move |e, now| e.set_consumer_paused(now, consumer_id, true))
            .await?
    }

    pub async fn resume_consumer(&self, consumer_id: ConsumerId) -> Result<(), CallError> {
        self.call(move |e, now| e.set_consumer_paused(now, consumer_id, false))
            .await?
    }

    pub async fn close_consumer(&self, consumer_id: ConsumerId) -> Result<(), CallError> {
        self.call(move |e, _| e.close_consumer(consumer_id, false))
            .await?
    }

    pub async fn request_consumer_key_frame(
        &self,
        consumer_id: ConsumerId,
    ) -> Result<(), CallError> {
        self.call(move |e, now| e.request_consumer_key_frame(now, consumer_id))
            .await?
    }

    pub async fn set_consumer_preferred_layers(
        &self,
        consumer_id: ConsumerId,
        layers: ConsumerLayers,
    ) -> Result<(), CallError> {
        self.call(move |e, now| e.set_consumer_preferred_layers(now, consumer_id, layers))
            .await?
    }

    pub async fn set_consumer_priority(
        &self,
        consumer_id: ConsumerId,
        priority: u8,
    ) -> Result<(), CallError> {
        self.call(move |e, _| e.set_consumer_priority(consumer_id, priority))
            .await?
    }

    pub async fn create_audio_level_observer(
        &self,
        router_id: RouterId,
        options: AudioLevelObserverOptions,
    ) -> Result<RtpObserverId, CallError> {
        self.call(move |e, _| e.create_observer(router_id, RtpObserver::audio_level(options)))
            .await?
    }

    pub async fn create_active_speaker_observer(
        &self,
        router_id: RouterId,
        options: ActiveSpeakerObserverOptions,
    ) -> Result<RtpObserverId, CallError> {
        self.call(move |e, _| e.create_observer(router_id, RtpObserver::active_speaker(options)))
            .await?
    }

    /// Adds an audio producer of the observer's router to an observer.
    pub async fn observer_add_producer(
        &self,
        observer_id: RtpObserverId,
        producer_id: ProducerId,
    ) -> Result<(), CallError> {
        self.call(move |e, _| e.observer_add_producer(observer_id, producer_id))
            .await?
    }

    pub async fn observer_remove_producer(
        &self,
        observer_id: RtpObserverId,
        producer_id: ProducerId,
    ) -> Result<(), CallError> {
        self.call(move |e, _| e.observer_remove_producer(observer_id, producer_id))
            .await?
    }

    pub async fn close_observer(&self, observer_id: RtpObserverId) -> Result<(), CallError> {
        self.call(move |e, _| e.close_observer(observer_id)).await?
    }

    pub async fn consumer_stats(
        &self,
        consumer_id: ConsumerId,
    ) -> Result<ConsumerStats, CallError> {
        self.call(move |e, now| e.consumer_stats(now, consumer_id))
            .await?
    }
}
