//! Live statistics: the room's `participantCount` (at most once a second per
//! room, coalescing bursts of joins and leaves, and the only presence signal
//! attendees get: no per-peer join/leave fan-out), attendance sessions
//! (opened by `join`, closed on leave; a presenter's after a grace period
//! so that a reconnect continues it), and clients' connection quality
//! reports (`reportStats`), kept as analytics events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Map, Value};
use socketioxide::SocketIo;

use super::connection::{Connection, Request};
use super::media as signalling;
use super::protocol::{parse, EventError, EventResult};
use super::room::{self, PendingSession, Room};
use super::Background;
use crate::media::Media;
use crate::model::{self, AnalyticsEvent, AttendanceSession, Timestamp};
use crate::store::Store;

/// Analytics event kind of a quality report.
pub const QUALITY_EVENT: &str = "quality";
/// Analytics events of each viewer's reception as the media engine measures it.
pub const SERVER_QUALITY_EVENT: &str = "server_quality";
const COUNT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a presenter's session stays open after their socket dropped.
/// Least time between two stored quality reports of one socket.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Schedules a `participantCount` for the room: sent at once when the last
/// one is older than a second, else when that second is over, carrying the
/// count at that moment (so a burst of changes costs one event).
pub(super) fn count_changed(background: &Background, io: &SocketIo, room: &Arc<Room>) {
    let delay = room.with(|st| {
        if st.count.scheduled {
            return None;
        }
        st.count.scheduled = true;
        Some(st.count.last_sent_at.map_or(Duration::ZERO, |t| {
            (t + COUNT_INTERVAL).saturating_duration_since(Instant::now())
        }))
    });
    let Some(delay) = delay else { return };
    let io = io.clone();
    let room = room.clone();
    let bg = background.clone();
    background.spawn(async move {
        if !bg.sleep(delay).await {
            return;
        }
        let count = room.with(|st| {
            st.count.scheduled = false;
            let count = st.members.len();
            if st.count.last_sent == Some(count) {
                return None;
            }
            st.count.last_sent = Some(count);
            st.count.last_sent_at = Some(Instant::now());
            Some(count)
        });
        if let Some(count) = count {
            if let Err(e) = io
                .within(room::everyone(&room.webinar_id))
                .emit("participantCount", &json!({"count": count}))
                .await
            {
                tracing::warn!("participantCount in {}: {e}", room.webinar_id);
            }
        }
    });
}

pub async fn close_session(store: &dyn Store, mut session: AttendanceSession, at: Timestamp) {
    session.left_at = Some(at);
    if let Err(e) = store.put_attendance(&session).await {
        tracing::error!("closing attendance session {}: {e}", session.id);
    }
}

/// A socket went away: it leaves its room; its attendance session closes
/// now, or for a presenter of a room still running, after the grace period
/// unless they are back by then.
pub(super) async fn leave(
    io: &SocketIo,
    store: Arc<dyn Store>,
    media: &Arc<Media>,
    background: &Background,
    conn: &Connection,
    grace: Duration,
) {
    let Some(room) = conn.room.get() else { return };
    close_media(io, media, background, room, conn, grace);
    let now = model::now();
    let left = room.with(|st| {
        let member = st.remove(&conn.peer_id)?;
        if member.role.is_presenter() && !st.ended && !background.stopping() {
            st.pending_sessions.insert(
                member.identity.clone(),
                PendingSession {
                    session: member.session.clone(),
                    disconnected_at: now,
                },
            );
            return Some((member, true));
        }
        Some((member, false))
    });
    let Some((member, pending)) = left else {
        return;
    };
    count_changed(background, io, room);
    if !pending {
        close_session(store.as_ref(), member.session, now).await;
        return;
    }
    let room = room.clone();
    let bg = background.clone();
    background.spawn(async move {
        // Cut short by shutdown: the session closes at once.
        bg.sleep(grace).await;
        let still_pending = room.with(|st| {
            let ours = st
                .pending_sessions
                .get(&member.identity)
                .is_some_and(|p| p.session.id == member.session.id);
            if ours {
                st.pending_sessions.remove(&member.identity)
            } else {
                None
            }
        });
        if let Some(p) = still_pending {
            close_session(store.as_ref(), p.session, p.disconnected_at).await;
        }
    });
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReportStats {
    rtt_ms: Option<f64>,
    /// Percent of packets lost, 0..100.
    packet_loss: Option<f64>,
    jitter_ms: Option<f64>,
    bitrate_kbps: Option<f64>,
}

fn check(
    out: &mut Map<String, Value>,
    name: &str,
    value: Option<f64>,
    max: f64,
) -> Result<(), EventError> {
    let Some(v) = value else { return Ok(()) };
    if !v.is_finite() || !(0.0..=max).contains(&v) {
        return Err(EventError::invalid(format!(
            "{name} must be a number from 0 to {max}"
        )));
    }
    out.insert(name.to_string(), json!(v));
    Ok(())
}

pub(super) async fn report(req: Request, data: Value) -> EventResult {
    let body: ReportStats = parse(data)?;
    let mut sample = Map::new();
    check(&mut sample, "rttMs", body.rtt_ms, 60_000.0)?;
    check(&mut sample, "packetLoss", body.packet_loss, 100.0)?;
    check(&mut sample, "jitterMs", body.jitter_ms, 60_000.0)?;
    check(&mut sample, "bitrateKbps", body.bitrate_kbps, 1_000_000.0)?;
    let (room, member) = req.member()?;
    if sample.is_empty() {
        return Ok(json!({}));
    }
    {
        let mut last = req
            .conn
            .last_stats
            .lock()
            .expect("stats lock is never poisoned");
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < STATS_INTERVAL) {
            return Err(EventError::new(
                "rate_limited",
                "at most one report a second",
            ));
        }
        *last = Some(now);
    }
    let event = AnalyticsEvent {
        id: model::new_id(),
        webinar_id: room.webinar_id.clone(),
        kind: QUALITY_EVENT.to_string(),
        peer_id: Some(member.peer_id),
        data: Value::Object(sample),
        ts: model::now(),
    };
    req.store().add_analytics_event(&event).await?;
    Ok(json!({}))
}

/// A socket's media goes with it: at once for attendees (a reconnecting
/// viewer consumes anew), after the grace period for presenters, whose
/// media keeps flowing through a signalling blip.
fn close_media(
    io: &SocketIo,
    media: &Arc<Media>,
    background: &Background,
    room: &Arc<Room>,
    conn: &Connection,
    grace: Duration,
) {
    let Some(media_room) = media.room(&room.webinar_id) else {
        return;
    };
    let presenter = room.with(|st| st.members.get(&conn.peer_id).map(|m| m.role.is_presenter()));
    let peer_id = conn.peer_id.clone();
    let webinar_id = room.webinar_id.clone();
    let io = io.clone();
    let bg = background.clone();
    let wait = presenter.unwrap_or(false) && !background.stopping();
    background.spawn(async move {
        if wait {
            bg.sleep(grace).await;
        }
        let closed = media_room.close_peer(&peer_id, false).await;
        signalling::producers_closed(&io, &webinar_id, &closed).await;
    });
}

/// Samples every room's viewers' reception (RTT, loss, bitrate, as the
/// media engine measures it) into the analytics, every `interval`, until
/// shutdown.
pub(super) async fn sample_quality(
    store: Arc<dyn Store>,
    media: std::sync::Weak<Media>,
    background: Background,
    interval: Duration,
) {
    while background.sleep(interval).await {
        let Some(media) = media.upgrade() else { return };
        for room in media.rooms_snapshot() {
            for (peer_id, sample) in room.quality_samples().await {
                let event = AnalyticsEvent {
                    id: model::new_id(),
                    webinar_id: room.webinar_id.clone(),
                    kind: SERVER_QUALITY_EVENT.to_string(),
                    peer_id: Some(peer_id),
                    data: serde_json::to_value(&sample).unwrap_or_default(),
                    ts: model::now(),
                };
                if let Err(e) = store.add_analytics_event(&event).await {
                    tracing::warn!("storing a quality sample: {e}");
                }
            }
        }
    }
}
