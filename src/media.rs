//! The backend's side of the media engine: one `sfu::Worker` per core, one
//! router per live webinar (a "media room"), and who owns which transport,
//! producer and consumer, so that every signalling request can be checked
//! against the peer that makes it. Worker events come back as
//! [`MediaEvent`]s addressed to a peer or a whole room, for the realtime
//! layer to turn into Socket.IO events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sfu::rtp_parameters::{MediaKind, RtpCapabilities, RtpCodecCapability, RtpParameters};
use sfu::transport::DtlsParameters;
use sfu::{
    ActiveSpeakerObserverOptions, CallError, ConsumerId, ConsumerInfo, ConsumerLayers,
    ConsumerOptions, ProducerId, ProducerOptions, RouterId, RtpObserverId, TransportId, Worker,
    WorkerEvent, WorkerSettings,
};
use tokio::sync::mpsc;

use crate::config::MediaSettings;

/// What a producer carries, as the contract names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Camera,
    Mic,
    Screen,
    ScreenAudio,
}

impl Source {
    fn kind(self) -> MediaKind {
        match self {
            Source::Camera | Source::Screen => MediaKind::Video,
            Source::Mic | Source::ScreenAudio => MediaKind::Audio,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Send,
    Recv,
}

/// A producer as the room lists it (`join`'s `producers`, `newProducer`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProducerSummary {
    pub id: ProducerId,
    pub peer_id: String,
    pub kind: MediaKind,
    pub source: Source,
    pub paused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("media engine: {0}")]
    Engine(String),
}

impl MediaError {
    /// The contract's snake_case error code.
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::NotFound(_) => "not_found",
            MediaError::Forbidden(_) => "forbidden",
            MediaError::Invalid(_) => "invalid_request",
            MediaError::Engine(_) => "media_error",
        }
    }
}

impl From<CallError> for MediaError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::NotFound(_) => MediaError::NotFound("media object"),
            CallError::Invalid(m) => MediaError::Invalid(m),
            CallError::Produce(p) => MediaError::Invalid(p.to_string()),
            CallError::Consume(c) => MediaError::Invalid(c.to_string()),
            other => MediaError::Engine(other.to_string()),
        }
    }
}

/// The server's view of one viewer's reception.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QualitySample {
    pub rtt_ms: Option<f64>,
    /// Percent of packets lost (worst consumer).
    pub packet_loss: f64,
    pub bitrate_kbps: f64,
}

/// Something the realtime layer should tell a peer or a room.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// `consumerClosed` to the consumer's owner.
    ConsumerClosed {
        webinar_id: String,
        peer_id: String,
        consumer_id: ConsumerId,
    },
    /// `consumerLayersChanged` to the consumer's owner.
    ConsumerLayersChanged {
        webinar_id: String,
        peer_id: String,
        consumer_id: ConsumerId,
        layers: Option<ConsumerLayers>,
    },
    /// `producerClosed` to the room.
    ProducerClosed {
        webinar_id: String,
        producer_id: ProducerId,
    },
    /// `activeSpeaker` to the room.
    ActiveSpeaker {
        webinar_id: String,
        peer_id: String,
        volume: i8,
    },
}

struct TransportMeta {
    peer_id: String,
    direction: Direction,
    /// Which of the room's routers (0: the origin).
    slot: usize,
}

struct ProducerMeta {
    summary: ProducerSummary,
    #[cfg_attr(not(test), allow(dead_code))] // read by tests and dumps
    transport_id: TransportId,
}

struct ConsumerMeta {
    peer_id: String,
    slot: usize,
}

#[derive(Default)]
struct RoomObjects {
    transports: HashMap<TransportId, TransportMeta>,
    producers: HashMap<ProducerId, ProducerMeta>,
    consumers: HashMap<ConsumerId, ConsumerMeta>,
    /// (origin producer, edge slot) -> the producer standing for it there.
    piped: HashMap<(ProducerId, usize), ProducerId>,
    /// Receive transports per slot, to spread viewers over workers.
    recv_transports: Vec<usize>,
}

/// One webinar's media. Presenters send to the origin router; viewers are
/// spread over one router per worker (the room spans every worker), each
/// producer piped in memory to an edge router the first time a viewer
/// there consumes it: a big audience uses every core.
pub struct MediaRoom {
    pub webinar_id: String,
    worker: Worker,
    router_id: RouterId,
    /// Routers of the other workers (slots 1..).
    edges: Vec<(Worker, RouterId)>,
    pipe_lock: tokio::sync::Mutex<()>,
    rtp_capabilities: RtpCapabilities,
    active_speaker: RtpObserverId,
    objects: Mutex<RoomObjects>,
}

impl MediaRoom {
    pub fn rtp_capabilities(&self) -> &RtpCapabilities {
        &self.rtp_capabilities
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, RoomObjects> {
        self.objects
            .lock()
            .expect("media room lock is never poisoned")
    }

    pub fn producers(&self) -> Vec<ProducerSummary> {
        let mut list: Vec<_> = self
            .objects()
            .producers
            .values()
            .map(|p| p.summary.clone())
            .collect();
        list.sort_by(|a, b| a.peer_id.cmp(&b.peer_id).then(a.id.cmp(&b.id)));
        list
    }

    /// The worker and router of a slot (0: the origin).
    fn slot(&self, slot: usize) -> (&Worker, RouterId) {
        match slot {
            0 => (&self.worker, self.router_id),
            i => {
                let (w, r) = &self.edges[i - 1];
                (w, *r)
            }
        }
    }

    fn owned_transport(
        &self,
        peer_id: &str,
        id: TransportId,
    ) -> Result<(Direction, usize), MediaError> {
        let objects = self.objects();
        let t = objects
            .transports
            .get(&id)
            .ok_or(MediaError::NotFound("transport"))?;
        if t.peer_id != peer_id {
            return Err(MediaError::Forbidden("not your transport"));
        }
        Ok((t.direction, t.slot))
    }

    pub async fn create_transport(
        &self,
        peer_id: &str,
        direction: Direction,
    ) -> Result<sfu::WebRtcTransportInfo, MediaError> {
        let slot = match direction {
            Direction::Send => 0,
            Direction::Recv => {
                let mut objects = self.objects();
                let slots = self.edges.len() + 1;
                objects.recv_transports.resize(slots, 0);
                let slot = (0..slots)
                    .min_by_key(|i| objects.recv_transports[*i])
                    .unwrap_or(0);
                objects.recv_transports[slot] += 1;
                slot
            }
        };
        let (worker, router_id) = self.slot(slot);
        let info = worker.create_webrtc_transport(router_id).await?;
        self.objects().transports.insert(
            info.id,
            TransportMeta {
                peer_id: peer_id.to_string(),
                direction,
                slot,
            },
        );
        Ok(info)
    }

    pub async fn connect_transport(
        &self,
        peer_id: &str,
        id: TransportId,
        dtls: DtlsParameters,
    ) -> Result<(), MediaError> {
        let (_, slot) = self.owned_transport(peer_id, id)?;
        Ok(self.slot(slot).0.connect_webrtc_transport(id, dtls).await?)
    }

    pub async fn restart_ice(
        &self,
        peer_id: &str,
        id: TransportId,
    ) -> Result<sfu::transport::IceParameters, MediaError> {
        let (_, slot) = self.owned_transport(peer_id, id)?;
        Ok(self.slot(slot).0.restart_ice(id).await?)
    }

    pub async fn produce(
        &self,
        peer_id: &str,
        transport_id: TransportId,
        kind: MediaKind,
        rtp_parameters: RtpParameters,
        source: Source,
    ) -> Result<ProducerSummary, MediaError> {
        if self.owned_transport(peer_id, transport_id)?.0 != Direction::Send {
            return Err(MediaError::Invalid("produce needs a send transport".into()));
        }
        if source.kind() != kind {
            return Err(MediaError::Invalid(format!(
                "a {kind:?} track cannot be {source:?}"
            )));
        }
        {
            let objects = self.objects();
            if objects
                .producers
                .values()
                .any(|p| p.summary.peer_id == peer_id && p.summary.source == source)
            {
                return Err(MediaError::Invalid(format!(
                    "{source:?} is already published"
                )));
            }
        }
        let info = self
            .worker
            .produce(transport_id, ProducerOptions::new(kind, rtp_parameters))
            .await?;
        if kind == MediaKind::Audio {
            // Best effort: a speaker indicator is not worth failing a produce.
            let _ = self
                .worker
                .observer_add_producer(self.active_speaker, info.id)
                .await;
        }
        let summary = ProducerSummary {
            id: info.id,
            peer_id: peer_id.to_string(),
            kind,
            source,
            paused: info.paused,
        };
        self.objects().producers.insert(
            info.id,
            ProducerMeta {
                summary: summary.clone(),
                transport_id,
            },
        );
        Ok(summary)
    }

    fn owned_producer(&self, peer_id: &str, id: ProducerId) -> Result<(), MediaError> {
        let objects = self.objects();
        let p = objects
            .producers
            .get(&id)
            .ok_or(MediaError::NotFound("producer"))?;
        if p.summary.peer_id != peer_id {
            return Err(MediaError::Forbidden("not your producer"));
        }
        Ok(())
    }

    pub async fn set_producer_paused(
        &self,
        peer_id: &str,
        id: ProducerId,
        paused: bool,
    ) -> Result<(), MediaError> {
        self.owned_producer(peer_id, id)?;
        if paused {
            self.worker.pause_producer(id).await?;
        } else {
            self.worker.resume_producer(id).await?;
        }
        if let Some(p) = self.objects().producers.get_mut(&id) {
            p.summary.paused = paused;
        }
        Ok(())
    }

    /// Closes a producer of `peer_id` (its consumers close with it).
    pub async fn close_producer(&self, peer_id: &str, id: ProducerId) -> Result<(), MediaError> {
        self.owned_producer(peer_id, id)?;
        self.worker.close_producer(id).await?;
        self.forget_producer(id);
        Ok(())
    }

    fn forget_producer(&self, id: ProducerId) {
        let mut objects = self.objects();
        objects.producers.remove(&id);
        // Its consumers stay known until the worker reports them closed
        // (an edge worker does so after the close crosses the pipe), so
        // that their owners are told.
        objects.piped.retain(|(origin, _), _| *origin != id);
    }

    pub async fn consume(
        &self,
        peer_id: &str,
        transport_id: TransportId,
        producer_id: ProducerId,
        rtp_capabilities: RtpCapabilities,
    ) -> Result<ConsumerInfo, MediaError> {
        let (direction, slot) = self.owned_transport(peer_id, transport_id)?;
        if direction != Direction::Recv {
            return Err(MediaError::Invalid("consume needs a recv transport".into()));
        }
        if !self.objects().producers.contains_key(&producer_id) {
            return Err(MediaError::NotFound("producer"));
        }
        let local = self.producer_on(producer_id, slot).await?;
        let mut info = self
            .slot(slot)
            .0
            .consume(transport_id, ConsumerOptions::new(local, rtp_capabilities))
            .await?;
        // Clients know the producer by its origin id.
        info.producer_id = producer_id;
        self.objects().consumers.insert(
            info.id,
            ConsumerMeta {
                peer_id: peer_id.to_string(),
                slot,
            },
        );
        Ok(info)
    }

    /// The producer standing for `producer_id` on `slot`'s router, piped
    /// there from the origin on first use.
    async fn producer_on(
        &self,
        producer_id: ProducerId,
        slot: usize,
    ) -> Result<ProducerId, MediaError> {
        if slot == 0 {
            return Ok(producer_id);
        }
        let _guard = self.pipe_lock.lock().await;
        if let Some(p) = self.objects().piped.get(&(producer_id, slot)) {
            return Ok(*p);
        }
        let (edge, router) = self.slot(slot);
        let piped = self
            .worker
            .pipe_to_router(producer_id, edge, router)
            .await?;
        self.objects().piped.insert((producer_id, slot), piped);
        Ok(piped)
    }

    /// The worker of a consumer of `peer_id`.
    fn owned_consumer(&self, peer_id: &str, id: ConsumerId) -> Result<&Worker, MediaError> {
        let slot = {
            let objects = self.objects();
            let c = objects
                .consumers
                .get(&id)
                .ok_or(MediaError::NotFound("consumer"))?;
            if c.peer_id != peer_id {
                return Err(MediaError::Forbidden("not your consumer"));
            }
            c.slot
        };
        Ok(self.slot(slot).0)
    }

    pub async fn set_consumer_paused(
        &self,
        peer_id: &str,
        id: ConsumerId,
        paused: bool,
    ) -> Result<(), MediaError> {
        let worker = self.owned_consumer(peer_id, id)?;
        if paused {
            worker.pause_consumer(id).await?;
        } else {
            worker.resume_consumer(id).await?;
        }
        Ok(())
    }

    pub async fn request_key_frame(&self, peer_id: &str, id: ConsumerId) -> Result<(), MediaError> {
        let worker = self.owned_consumer(peer_id, id)?;
        Ok(worker.request_consumer_key_frame(id).await?)
    }

    pub async fn set_preferred_layers(
        &self,
        peer_id: &str,
        id: ConsumerId,
        layers: ConsumerLayers,
    ) -> Result<(), MediaError> {
        let worker = self.owned_consumer(peer_id, id)?;
        Ok(worker.set_consumer_preferred_layers(id, layers).await?)
    }

    pub async fn set_priority(
        &self,
        peer_id: &str,
        id: ConsumerId,
        priority: u8,
    ) -> Result<(), MediaError> {
        let worker = self.owned_consumer(peer_id, id)?;
        Ok(worker.set_consumer_priority(id, priority).await?)
    }

    /// Everything of a peer that leaves (or is demoted, for `producers_only`):
    /// returns the producers closed, for `producerClosed`.
    pub async fn close_peer(&self, peer_id: &str, producers_only: bool) -> Vec<ProducerId> {
        let (transports, producers): (Vec<(TransportId, usize)>, Vec<ProducerId>) = {
            let objects = self.objects();
            (
                objects
                    .transports
                    .iter()
                    .filter(|(_, t)| {
                        t.peer_id == peer_id && (!producers_only || t.direction == Direction::Send)
                    })
                    .map(|(id, t)| (*id, t.slot))
                    .collect(),
                objects
                    .producers
                    .values()
                    .filter(|p| p.summary.peer_id == peer_id)
                    .map(|p| p.summary.id)
                    .collect(),
            )
        };
        for p in &producers {
            let _ = self.worker.close_producer(*p).await;
            self.forget_producer(*p);
        }
        for (t, slot) in transports {
            let _ = self.slot(slot).0.close_transport(t).await;
            let mut objects = self.objects();
            if let Some(meta) = objects.transports.remove(&t) {
                if meta.direction == Direction::Recv {
                    if let Some(n) = objects.recv_transports.get_mut(slot) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
            objects
                .consumers
                .retain(|_, c| c.peer_id != peer_id || producers_only);
        }
        producers
    }

    /// What the media engine measures of each viewer's reception: per peer,
    /// the worst round-trip time and loss and the total bitrate of its
    /// consumers (for the quality figures of the analytics).
    pub async fn quality_samples(&self) -> Vec<(String, QualitySample)> {
        let consumers: Vec<(ConsumerId, String, usize)> = self
            .objects()
            .consumers
            .iter()
            .map(|(id, c)| (*id, c.peer_id.clone(), c.slot))
            .collect();
        let mut per_peer: HashMap<String, QualitySample> = HashMap::new();
        for (id, peer, slot) in consumers {
            let Ok(stats) = self.slot(slot).0.consumer_stats(id).await else {
                continue;
            };
            let sample = per_peer.entry(peer).or_default();
            if let Some(rtt) = stats.round_trip_time_ms {
                sample.rtt_ms = Some(sample.rtt_ms.map_or(rtt, |r: f64| r.max(rtt)));
            }
            let loss = f64::from(stats.fraction_lost) * 100.0 / 256.0;
            sample.packet_loss = sample.packet_loss.max(loss);
            sample.bitrate_kbps += stats.bitrate as f64 / 1000.0;
        }
        per_peer
            .into_iter()
            .filter(|(_, s)| s.bitrate_kbps > 0.0)
            .collect()
    }

    /// The producer's owner, for events.
    fn producer_owner(&self, id: ProducerId) -> Option<String> {
        self.objects()
            .producers
            .get(&id)
            .map(|p| p.summary.peer_id.clone())
    }

    fn consumer_owner(&self, id: ConsumerId) -> Option<String> {
        self.objects().consumers.get(&id).map(|c| c.peer_id.clone())
    }

    #[cfg(test)]
    fn transport_of(&self, id: ProducerId) -> Option<TransportId> {
        self.objects().producers.get(&id).map(|p| p.transport_id)
    }
}

/// The media workers and the rooms on them.
pub struct Media {
    workers: Vec<Worker>,
    rooms: Mutex<HashMap<String, Arc<MediaRoom>>>,
    /// Rooms per worker, to place a new room on the least loaded one.
    load: Mutex<Vec<usize>>,
    events: tokio::sync::broadcast::Sender<MediaEvent>,
}

/// The codecs every room's router offers.
fn media_codecs() -> Vec<RtpCodecCapability> {
    serde_json::from_value(serde_json::json!([
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
        {"kind": "video", "mimeType": "video/VP9", "clockRate": 90000, "parameters": {"profile-id": 0}},
        {"kind": "video", "mimeType": "video/H264", "clockRate": 90000,
         "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f", "level-asymmetry-allowed": 1}}
    ]))
    .expect("the built-in codec list is valid")
}

impl Media {
    /// Starts `settings.workers` workers; worker i listens on
    /// `rtc_port + i` (any free port when `rtc_port` is 0).
    pub fn start(settings: &MediaSettings) -> anyhow::Result<Arc<Media>> {
        let (tx, rx) = mpsc::unbounded_channel::<WorkerEvent>();
        let mut workers = Vec::new();
        for i in 0..settings.worker_count() {
            let port = if settings.rtc_port == 0 {
                0
            } else {
                settings
                    .rtc_port
                    .checked_add(i as u16)
                    .ok_or_else(|| anyhow::anyhow!("media.rtc_port + workers exceeds 65535"))?
            };
            let mut ws = WorkerSettings::new(settings.listen_ip, port);
            ws.announced_address = settings.announced_ip.clone();
            workers.push(Worker::new(ws, tx.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "starting media worker {i} on {}:{port}: {e}",
                    settings.listen_ip
                )
            })?);
        }
        let (events, _) = tokio::sync::broadcast::channel(4096);
        let media = Arc::new(Media {
            load: Mutex::new(vec![0; workers.len()]),
            workers,
            rooms: Mutex::new(HashMap::new()),
            events,
        });
        let weak = Arc::downgrade(&media);
        tokio::spawn(async move {
            let mut rx = rx;
            while let Some(event) = rx.recv().await {
                let Some(media) = weak.upgrade() else { break };
                media.on_worker_event(event);
            }
        });
        Ok(media)
    }

    /// Events for the realtime layer.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<MediaEvent> {
        self.events.subscribe()
    }

    pub fn room(&self, webinar_id: &str) -> Option<Arc<MediaRoom>> {
        self.rooms
            .lock()
            .expect("media rooms lock is never poisoned")
            .get(webinar_id)
            .cloned()
    }

    /// The webinar's room, created on the least loaded worker if needed.
    pub async fn open_room(&self, webinar_id: &str) -> Result<Arc<MediaRoom>, MediaError> {
        if let Some(room) = self.room(webinar_id) {
            return Ok(room);
        }
        let index = {
            let load = self.load.lock().expect("media load lock is never poisoned");
            (0..load.len()).min_by_key(|i| load[*i]).unwrap_or(0)
        };
        let worker = self
            .workers
            .get(index)
            .ok_or(MediaError::Engine("no media workers".into()))?
            .clone();
        let (router_id, rtp_capabilities) = worker.create_router(media_codecs()).await?;
        let active_speaker = worker
            .create_active_speaker_observer(router_id, ActiveSpeakerObserverOptions::default())
            .await?;
        let mut edges = Vec::new();
        for (i, edge) in self.workers.iter().enumerate() {
            if i != index {
                let (edge_router, _) = edge.create_router(media_codecs()).await?;
                edges.push((edge.clone(), edge_router));
            }
        }
        let room = Arc::new(MediaRoom {
            webinar_id: webinar_id.to_string(),
            worker: worker.clone(),
            router_id,
            edges,
            pipe_lock: tokio::sync::Mutex::new(()),
            rtp_capabilities,
            active_speaker,
            objects: Mutex::new(RoomObjects::default()),
        });
        let existing = {
            let mut rooms = self
                .rooms
                .lock()
                .expect("media rooms lock is never poisoned");
            match rooms.get(webinar_id) {
                Some(existing) => Some(existing.clone()),
                None => {
                    rooms.insert(webinar_id.to_string(), room.clone());
                    None
                }
            }
        };
        if let Some(existing) = existing {
            // Another request opened it meanwhile: keep theirs.
            let _ = worker.close_router(router_id).await;
            for (edge, router) in &room.edges {
                let _ = edge.close_router(*router).await;
            }
            return Ok(existing);
        }
        self.load.lock().expect("media load lock is never poisoned")[index] += 1;
        Ok(room)
    }

    /// Closes every transport, producer and consumer of the webinar.
    pub async fn close_room(&self, webinar_id: &str) {
        let room = self
            .rooms
            .lock()
            .expect("media rooms lock is never poisoned")
            .remove(webinar_id);
        if let Some(room) = room {
            let _ = room.worker.close_router(room.router_id).await;
            for (edge, router) in &room.edges {
                let _ = edge.close_router(*router).await;
            }
            if let Some(i) = self.workers.iter().position(|w| w.id() == room.worker.id()) {
                let mut load = self.load.lock().expect("media load lock is never poisoned");
                load[i] = load[i].saturating_sub(1);
            }
        }
    }

    pub fn rooms_snapshot(&self) -> Vec<Arc<MediaRoom>> {
        self.rooms
            .lock()
            .expect("media rooms lock is never poisoned")
            .values()
            .cloned()
            .collect()
    }

    fn on_worker_event(&self, event: WorkerEvent) {
        let rooms = self.rooms_snapshot();
        let out = match event {
            WorkerEvent::ConsumerClosed { consumer_id, .. } => rooms.iter().find_map(|r| {
                let peer_id = r.consumer_owner(consumer_id)?;
                r.objects().consumers.remove(&consumer_id);
                Some(MediaEvent::ConsumerClosed {
                    webinar_id: r.webinar_id.clone(),
                    peer_id,
                    consumer_id,
                })
            }),
            WorkerEvent::ConsumerLayersChanged {
                consumer_id,
                layers,
            } => rooms.iter().find_map(|r| {
                Some(MediaEvent::ConsumerLayersChanged {
                    webinar_id: r.webinar_id.clone(),
                    peer_id: r.consumer_owner(consumer_id)?,
                    consumer_id,
                    layers,
                })
            }),
            WorkerEvent::ProducerClosed { producer_id } => rooms.iter().find_map(|r| {
                r.producer_owner(producer_id)?;
                r.forget_producer(producer_id);
                Some(MediaEvent::ProducerClosed {
                    webinar_id: r.webinar_id.clone(),
                    producer_id,
                })
            }),
            WorkerEvent::DominantSpeaker {
                observer_id,
                producer_id,
                volume,
            } => rooms
                .iter()
                .find(|r| r.active_speaker == observer_id)
                .and_then(|r| {
                    Some(MediaEvent::ActiveSpeaker {
                        webinar_id: r.webinar_id.clone(),
                        peer_id: r.producer_owner(producer_id)?,
                        volume,
                    })
                }),
            _ => None,
        };
        if let Some(e) = out {
            let _ = self.events.send(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MediaSettings {
        let mut s = MediaSettings::default();
        s.rtc_port = 0;
        s.workers = Some(2);
        s
    }

    #[tokio::test]
    async fn rooms_spread_over_workers_and_are_reused() {
        let media = Media::start(&settings()).unwrap();
        let a = media.open_room("w1").await.unwrap();
        let again = media.open_room("w1").await.unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        let b = media.open_room("w2").await.unwrap();
        assert_ne!(
            a.worker.id(),
            b.worker.id(),
            "the second room goes to the idle worker"
        );
        assert!(a
            .rtp_capabilities()
            .codecs
            .iter()
            .any(|c| c.mime_type == "video/VP8"));
        media.close_room("w1").await;
        assert!(media.room("w1").is_none());
    }

    #[tokio::test]
    async fn peers_may_only_use_their_own_transports() {
        let media = Media::start(&settings()).unwrap();
        let room = media.open_room("w").await.unwrap();
        let t = room
            .create_transport("alice", Direction::Recv)
            .await
            .unwrap();
        let dtls: DtlsParameters = serde_json::from_value(serde_json::json!({
            "role": "client", "fingerprints": [{"algorithm": "sha-256", "value": "AA"}]
        }))
        .unwrap();
        assert!(matches!(
            room.connect_transport("mallory", t.id, dtls.clone()).await,
            Err(MediaError::Forbidden(_))
        ));
        assert!(matches!(
            room.connect_transport("alice", TransportId::new(), dtls)
                .await,
            Err(MediaError::NotFound(_))
        ));
        let params: RtpParameters = serde_json::from_value(serde_json::json!({
            "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2}],
            "encodings": [{"ssrc": 1}], "rtcp": {"cname": "x"}
        }))
        .unwrap();
        assert!(
            matches!(
                room.produce("alice", t.id, MediaKind::Audio, params.clone(), Source::Mic)
                    .await,
                Err(MediaError::Invalid(_))
            ),
            "a recv transport cannot produce"
        );
        let s = room
            .create_transport("alice", Direction::Send)
            .await
            .unwrap();
        assert!(
            matches!(
                room.produce(
                    "alice",
                    s.id,
                    MediaKind::Audio,
                    params.clone(),
                    Source::Camera
                )
                .await,
                Err(MediaError::Invalid(_))
            ),
            "the source must match the kind"
        );
        let p = room
            .produce("alice", s.id, MediaKind::Audio, params, Source::Mic)
            .await
            .unwrap();
        assert_eq!(room.transport_of(p.id), Some(s.id));
        assert_eq!(room.producers().len(), 1);
        assert!(matches!(
            room.close_producer("mallory", p.id).await,
            Err(MediaError::Forbidden(_))
        ));
        let closed = room.close_peer("alice", true).await;
        assert_eq!(closed, vec![p.id]);
        assert!(room.producers().is_empty());
    }

    #[tokio::test]
    async fn viewers_spread_over_workers_and_consume_through_pipes() {
        let media = Media::start(&settings()).unwrap();
        let room = media.open_room("big").await.unwrap();
        let send = room
            .create_transport("host", Direction::Send)
            .await
            .unwrap();
        let params: RtpParameters = serde_json::from_value(serde_json::json!({
            "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2}],
            "encodings": [{"ssrc": 7}], "rtcp": {"cname": "h"}
        }))
        .unwrap();
        let mic = room
            .produce("host", send.id, MediaKind::Audio, params, Source::Mic)
            .await
            .unwrap();
        let mut slots = Vec::new();
        for viewer in ["v1", "v2", "v3", "v4"] {
            let t = room
                .create_transport(viewer, Direction::Recv)
                .await
                .unwrap();
            let c = room
                .consume(viewer, t.id, mic.id, room.rtp_capabilities().clone())
                .await
                .unwrap();
            assert_eq!(c.producer_id, mic.id, "clients see the origin producer id");
            room.set_consumer_paused(viewer, c.id, false).await.unwrap();
            slots.push(room.objects().transports[&t.id].slot);
        }
        assert_eq!(
            slots,
            vec![0, 1, 0, 1],
            "viewers alternate between the two workers"
        );
        assert_eq!(
            room.objects().piped.len(),
            1,
            "one pipe serves every viewer of the edge"
        );
        // Closing the producer at the origin closes its pipe.
        room.close_producer("host", mic.id).await.unwrap();
        assert!(room.objects().piped.is_empty());
    }
}
