//! Media signalling: the contract's transport, producer and consumer events
//! wired to the webinar's media room (`crate::media`), and the media
//! engine's events (consumers closed, layers changed, active speaker)
//! turned into Socket.IO events. Only hosts and co-hosts send; attendees
//! watch once the webinar is live (presenters see each other backstage
//! during setup).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use sfu::rtp_parameters::{MediaKind, RtpCapabilities, RtpParameters};
use sfu::transport::DtlsParameters;
use sfu::{ConsumerId, ConsumerLayers, ProducerId, TransportId};
use socketioxide::SocketIo;

use super::connection::Request;
use super::protocol::{parse, EventError, EventResult};
use super::room;
use crate::media::{Direction, Media, MediaError, MediaEvent, MediaRoom, ProducerSummary, Source};
use crate::model::WebinarStatus;

impl From<MediaError> for EventError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::Engine(m) => EventError::internal("media", m),
            other => EventError::new(other.code(), other.to_string()),
        }
    }
}

/// The joined member's media room (opened at `join`).
fn media_room(req: &Request) -> Result<Arc<MediaRoom>, EventError> {
    let (room, _) = req.member()?;
    req.media()
        .room(&room.webinar_id)
        .ok_or_else(|| EventError::new("webinar_ended", "the webinar has no media any more"))
}

async fn is_live(req: &Request) -> Result<bool, EventError> {
    let webinar = req
        .store()
        .webinar(&req.conn.webinar_id)
        .await?
        .ok_or_else(|| EventError::new("not_found", "webinar not found"))?;
    Ok(webinar.status == WebinarStatus::Live)
}

/// Producers a joining peer may see: all of them for presenters and once
/// the webinar is live; none for attendees waiting during setup.
pub(super) fn visible_producers(
    room: &MediaRoom,
    presenter: bool,
    live: bool,
) -> Vec<ProducerSummary> {
    if presenter || live {
        room.producers()
    } else {
        Vec::new()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTransport {
    direction: String,
}

pub(super) async fn create_transport(req: Request, data: Value) -> EventResult {
    let body: CreateTransport = parse(data)?;
    let direction = match body.direction.as_str() {
        "send" => {
            req.require_presenter().await?;
            Direction::Send
        }
        "recv" => {
            req.member()?;
            Direction::Recv
        }
        _ => return Err(EventError::invalid("direction must be send or recv")),
    };
    let room = media_room(&req)?;
    let info = room.create_transport(&req.conn.peer_id, direction).await?;
    serde_json::to_value(info).map_err(|e| EventError::internal("transport json", e))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConnectTransport {
    transport_id: TransportId,
    dtls_parameters: DtlsParameters,
}

pub(super) async fn connect_transport(req: Request, data: Value) -> EventResult {
    let body: ConnectTransport = parse(data)?;
    let room = media_room(&req)?;
    room.connect_transport(&req.conn.peer_id, body.transport_id, body.dtls_parameters)
        .await?;
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TransportRequest {
    transport_id: TransportId,
}

pub(super) async fn restart_ice(req: Request, data: Value) -> EventResult {
    let body: TransportRequest = parse(data)?;
    let room = media_room(&req)?;
    let ice = room
        .restart_ice(&req.conn.peer_id, body.transport_id)
        .await?;
    Ok(json!({"iceParameters": ice}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppData {
    source: Source,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Produce {
    transport_id: TransportId,
    kind: MediaKind,
    rtp_parameters: RtpParameters,
    app_data: AppData,
}

pub(super) async fn produce(req: Request, data: Value) -> EventResult {
    let body: Produce = parse(data)?;
    req.require_presenter().await?;
    let room = media_room(&req)?;
    let summary = room
        .produce(
            &req.conn.peer_id,
            body.transport_id,
            body.kind,
            body.rtp_parameters,
            body.app_data.source,
        )
        .await?;
    let live = is_live(&req).await?;
    announce(
        &req.io,
        &room.webinar_id,
        &summary,
        live,
        Some(&req.conn.peer_id),
    )
    .await;
    Ok(json!({"id": summary.id}))
}

/// `newProducer` to whoever may see it (everyone once live, presenters
/// during setup), except its owner.
async fn announce(
    io: &SocketIo,
    webinar_id: &str,
    p: &ProducerSummary,
    live: bool,
    except: Option<&str>,
) {
    let target = if live {
        room::everyone(webinar_id)
    } else {
        room::presenters(webinar_id)
    };
    let payload = json!({"id": p.id, "peerId": p.peer_id, "kind": p.kind, "source": p.source});
    let op = io.within(target);
    let result = match except {
        Some(peer) => {
            op.except(room::peer(peer))
                .emit("newProducer", &payload)
                .await
        }
        None => op.emit("newProducer", &payload).await,
    };
    if let Err(e) = result {
        tracing::warn!("newProducer in {webinar_id}: {e}");
    }
}

/// The webinar went live: attendees now see the producers presenters set up.
pub(super) async fn went_live(io: &SocketIo, media: &Media, webinar_id: &str) {
    let Some(room) = media.room(webinar_id) else {
        return;
    };
    for p in room.producers() {
        let payload = json!({"id": p.id, "peerId": p.peer_id, "kind": p.kind, "source": p.source});
        if let Err(e) = io
            .within(room::everyone(webinar_id))
            .except(room::presenters(webinar_id))
            .emit("newProducer", &payload)
            .await
        {
            tracing::warn!("newProducer in {webinar_id}: {e}");
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProducerRequest {
    producer_id: ProducerId,
}

async fn set_producer_paused(req: Request, data: Value, paused: bool) -> EventResult {
    let body: ProducerRequest = parse(data)?;
    let room = media_room(&req)?;
    room.set_producer_paused(&req.conn.peer_id, body.producer_id, paused)
        .await?;
    let event = if paused {
        "producerPaused"
    } else {
        "producerResumed"
    };
    let _ = req
        .io
        .within(room::everyone(&room.webinar_id))
        .emit(event, &json!({"id": body.producer_id}))
        .await;
    Ok(json!({}))
}

pub(super) async fn pause_producer(req: Request, data: Value) -> EventResult {
    set_producer_paused(req, data, true).await
}

pub(super) async fn resume_producer(req: Request, data: Value) -> EventResult {
    set_producer_paused(req, data, false).await
}

pub(super) async fn close_producer(req: Request, data: Value) -> EventResult {
    let body: ProducerRequest = parse(data)?;
    let room = media_room(&req)?;
    room.close_producer(&req.conn.peer_id, body.producer_id)
        .await?;
    producers_closed(&req.io, &room.webinar_id, &[body.producer_id]).await;
    Ok(json!({}))
}

pub(super) async fn producers_closed(io: &SocketIo, webinar_id: &str, ids: &[ProducerId]) {
    for id in ids {
        let _ = io
            .within(room::everyone(webinar_id))
            .emit("producerClosed", &json!({"id": id}))
            .await;
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Consume {
    transport_id: TransportId,
    producer_id: ProducerId,
    rtp_capabilities: RtpCapabilities,
}

pub(super) async fn consume(req: Request, data: Value) -> EventResult {
    let body: Consume = parse(data)?;
    let (_, member) = req.member()?;
    if !member.role.is_presenter() && !is_live(&req).await? {
        return Err(EventError::new(
            "not_live",
            "the webinar has not started yet",
        ));
    }
    let room = media_room(&req)?;
    let info = room
        .consume(
            &req.conn.peer_id,
            body.transport_id,
            body.producer_id,
            body.rtp_capabilities,
        )
        .await?;
    Ok(json!({
        "id": info.id,
        "producerId": info.producer_id,
        "kind": info.kind,
        "rtpParameters": info.rtp_parameters,
        "type": info.r#type,
        "producerPaused": info.producer_paused,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConsumerRequest {
    consumer_id: ConsumerId,
}

pub(super) async fn resume_consumer(req: Request, data: Value) -> EventResult {
    let body: ConsumerRequest = parse(data)?;
    media_room(&req)?
        .set_consumer_paused(&req.conn.peer_id, body.consumer_id, false)
        .await?;
    Ok(json!({}))
}

pub(super) async fn pause_consumer(req: Request, data: Value) -> EventResult {
    let body: ConsumerRequest = parse(data)?;
    media_room(&req)?
        .set_consumer_paused(&req.conn.peer_id, body.consumer_id, true)
        .await?;
    Ok(json!({}))
}

pub(super) async fn request_key_frame(req: Request, data: Value) -> EventResult {
    let body: ConsumerRequest = parse(data)?;
    media_room(&req)?
        .request_key_frame(&req.conn.peer_id, body.consumer_id)
        .await?;
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PreferredLayers {
    consumer_id: ConsumerId,
    spatial_layer: u8,
    temporal_layer: Option<u8>,
}

pub(super) async fn set_preferred_layers(req: Request, data: Value) -> EventResult {
    let body: PreferredLayers = parse(data)?;
    let layers = ConsumerLayers {
        spatial_layer: body.spatial_layer,
        temporal_layer: body.temporal_layer,
    };
    media_room(&req)?
        .set_preferred_layers(&req.conn.peer_id, body.consumer_id, layers)
        .await?;
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Priority {
    consumer_id: ConsumerId,
    priority: u8,
}

pub(super) async fn set_priority(req: Request, data: Value) -> EventResult {
    let body: Priority = parse(data)?;
    if body.priority == 0 {
        return Err(EventError::invalid("priority must be 1 to 255"));
    }
    media_room(&req)?
        .set_priority(&req.conn.peer_id, body.consumer_id, body.priority)
        .await?;
    Ok(json!({}))
}

/// Forwards the media engine's events to the sockets they concern, until
/// the media layer goes away.
pub(super) async fn forward_events(
    io: SocketIo,
    mut events: tokio::sync::broadcast::Receiver<MediaEvent>,
) {
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("dropped {n} media events");
                continue;
            }
            Err(_) => return,
        };
        let (target, name, payload) = match event {
            MediaEvent::ConsumerClosed {
                peer_id,
                consumer_id,
                ..
            } => (
                room::peer(&peer_id),
                "consumerClosed",
                json!({"consumerId": consumer_id}),
            ),
            MediaEvent::ConsumerLayersChanged {
                peer_id,
                consumer_id,
                layers,
                ..
            } => (
                room::peer(&peer_id),
                "consumerLayersChanged",
                json!({
                    "consumerId": consumer_id,
                    "spatialLayer": layers.map(|l| l.spatial_layer),
                    "temporalLayer": layers.and_then(|l| l.temporal_layer),
                }),
            ),
            MediaEvent::ProducerClosed {
                webinar_id,
                producer_id,
            } => (
                room::everyone(&webinar_id),
                "producerClosed",
                json!({"id": producer_id}),
            ),
            MediaEvent::ActiveSpeaker {
                webinar_id,
                peer_id,
                volume,
            } => (
                room::everyone(&webinar_id),
                "activeSpeaker",
                json!({"peerId": peer_id, "volume": volume}),
            ),
        };
        if let Err(e) = io.within(target).emit(name, &payload).await {
            tracing::debug!("{name}: {e}");
        }
    }
}
