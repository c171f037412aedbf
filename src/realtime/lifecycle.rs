//! A webinar's live life: joining (capacity, ended webinars, kicked
//! participants), `startWebinar` (setup -> live) and `endWebinar` (-> ended:
//! everyone is told and disconnected), and the host's controls: `setRole`
//! (also from REST, live), `kick` and `spotlight`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use socketioxide::SocketIo;

use super::connection::{resolve_role, Request};
use super::protocol::{parse, Empty, EventError, EventResult};
use super::room::{self, Member, Room, Rooms};
use super::{chat, media, stats};
use crate::media::Media;
use crate::model::{self, AttendanceSession, Role, WebinarStatus};

pub(super) async fn join(req: Request, data: Value) -> EventResult {
    parse::<Empty>(data)?;
    if req.conn.joined.swap(true, Ordering::SeqCst) {
        return Err(EventError::new("already_joined", "this socket has joined"));
    }
    let result = admit(&req).await;
    if result.is_err() {
        req.conn.joined.store(false, Ordering::SeqCst);
    }
    result
}

async fn admit(req: &Request) -> EventResult {
    let conn = &req.conn;
    let webinar = req
        .store()
        .webinar(&conn.webinar_id)
        .await?
        .ok_or_else(|| EventError::new("not_found", "webinar not found"))?;
    if webinar.status == WebinarStatus::Ended {
        return Err(EventError::webinar_ended());
    }
    let role = resolve_role(
        req.store(),
        &webinar.id,
        &webinar.host_id,
        &conn.participant,
    )
    .await?
    .ok_or_else(|| EventError::forbidden("you are no longer a participant of this webinar"))?;
    let room = conn
        .room
        .get_or_init(|| req.ctx_rooms().get_or_create(&webinar.id))
        .clone();
    let identity = conn.identity();
    let session = AttendanceSession {
        id: model::new_id(),
        webinar_id: webinar.id.clone(),
        registration_id: conn.registration_id().map(str::to_string),
        user_id: conn.user().map(|(id, _)| id.to_string()),
        peer_id: conn.peer_id.clone(),
        name: conn.name.clone(),
        role,
        joined_at: model::now(),
        left_at: None,
        location: conn.location.clone(),
    };
    let member = Member {
        peer_id: conn.peer_id.clone(),
        sid: req.socket.id,
        identity: identity.clone(),
        registration_id: conn.registration_id().map(str::to_string),
        email: conn.user().map(|(_, email)| email.to_string()),
        name: conn.name.clone(),
        role,
        session,
    };
    let (session, spotlight) = room.with(|st| {
        st.admit(member, webinar.capacity)?;
        // A presenter back within the grace period continues the session
        // their dropped socket left open.
        if role.is_presenter() {
            if let Some(pending) = st.pending_sessions.remove(&identity) {
                let m = st
                    .members
                    .get_mut(&conn.peer_id)
                    .expect("admitted just above under the same lock");
                m.session = AttendanceSession {
                    peer_id: conn.peer_id.clone(),
                    role,
                    ..pending.session
                };
            }
        }
        let session = st.members[&conn.peer_id].session.clone();
        Ok::<_, EventError>((session, st.spotlight.clone()))
    })?;
    let mut rooms = vec![room::everyone(&webinar.id), room::peer(&conn.peer_id)];
    if role.is_presenter() {
        rooms.push(room::presenters(&webinar.id));
    }
    req.socket.join(rooms);
    // `endWebinar` may have disconnected the room between the admission and
    // the socket joining the broadcast rooms.
    if room.with(|st| st.ended) {
        room.with(|st| st.remove(&conn.peer_id));
        return Err(EventError::webinar_ended());
    }
    if let Err(e) = req.store().put_attendance(&session).await {
        tracing::error!("storing attendance session {}: {e}", session.id);
    }
    stats::count_changed(req.background(), &req.io, &room);
    let history = chat::history(req.store(), &webinar.id).await?;
    let media_room = req.media().open_room(&webinar.id).await?;
    let producers = media::visible_producers(
        &media_room,
        role.is_presenter(),
        webinar.status == WebinarStatus::Live,
    );
    Ok(json!({
        "peerId": conn.peer_id,
        "role": role,
        "webinar": {"id": webinar.id, "title": webinar.title, "status": webinar.status},
        "routerRtpCapabilities": media_room.rtp_capabilities(),
        "producers": producers,
        "chatHistory": history,
        "spotlight": spotlight,
    }))
}

pub(super) async fn start(req: Request, data: Value) -> EventResult {
    parse::<Empty>(data)?;
    let (room, _, _) = req.require_presenter().await?;
    let mut webinar = req
        .store()
        .webinar(&room.webinar_id)
        .await?
        .ok_or_else(|| EventError::new("not_found", "webinar not found"))?;
    match webinar.status {
        WebinarStatus::Ended => return Err(EventError::webinar_ended()),
        WebinarStatus::Live => return Ok(json!({"status": WebinarStatus::Live})),
        WebinarStatus::Setup => {}
    }
    let now = model::now();
    webinar.status = WebinarStatus::Live;
    webinar.started_at.get_or_insert(now);
    webinar.updated_at = now;
    req.store().update_webinar(&webinar).await?;
    broadcast_state(&req.io, &room.webinar_id, WebinarStatus::Live).await;
    media::went_live(&req.io, req.media(), &room.webinar_id).await;
    Ok(json!({"status": WebinarStatus::Live}))
}

pub(super) async fn end(req: Request, data: Value) -> EventResult {
    parse::<Empty>(data)?;
    let (room, member, _) = req.require_presenter().await?;
    let mut webinar = req
        .store()
        .webinar(&room.webinar_id)
        .await?
        .ok_or_else(|| EventError::new("not_found", "webinar not found"))?;
    if webinar.status != WebinarStatus::Ended {
        let now = model::now();
        webinar.status = WebinarStatus::Ended;
        webinar.ended_at = Some(now);
        webinar.updated_at = now;
        req.store().update_webinar(&webinar).await?;
    }
    let pending = room.with(|st| {
        st.ended = true;
        std::mem::take(&mut st.pending_sessions)
    });
    for p in pending.into_values() {
        stats::close_session(req.store(), p.session, p.disconnected_at).await;
    }
    req.ctx_rooms().remove(&room.webinar_id);
    broadcast_state(&req.io, &room.webinar_id, WebinarStatus::Ended).await;
    // Everyone else goes now (after the state event, which is queued ahead
    // of the disconnect); the ender once it has its ack.
    let others = req
        .io
        .within(room::everyone(&room.webinar_id))
        .except(room::peer(&member.peer_id));
    if let Err(e) = others.disconnect().await {
        tracing::warn!("disconnecting webinar {}: {e}", room.webinar_id);
    }
    // Every producer, consumer and transport of the webinar goes with it.
    req.media().close_room(&room.webinar_id).await;
    req.disconnect_after_ack();
    Ok(json!({"status": WebinarStatus::Ended}))
}

async fn broadcast_state(io: &SocketIo, webinar_id: &str, status: WebinarStatus) {
    if let Err(e) = io
        .within(room::everyone(webinar_id))
        .emit("webinarState", &json!({"status": status}))
        .await
    {
        tracing::warn!("webinarState to {webinar_id}: {e}");
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SetRole {
    peer_id: String,
    role: Role,
}

pub(super) async fn set_role(req: Request, data: Value) -> EventResult {
    let body: SetRole = parse(data)?;
    if body.role == Role::Host {
        return Err(EventError::invalid("role must be co-host or attendee"));
    }
    let (room, _) = req.require_host().await?;
    let target = room
        .with(|st| st.members.get(&body.peer_id).cloned())
        .ok_or_else(|| EventError::peer_not_found(&body.peer_id))?;
    let Some(registration_id) = &target.registration_id else {
        return Err(EventError::forbidden(
            "only registered participants can be given a role",
        ));
    };
    let mut reg = req
        .store()
        .registration(registration_id)
        .await?
        .ok_or_else(|| EventError::peer_not_found(&body.peer_id))?;
    if reg.role != body.role {
        reg.role = body.role;
        req.store().update_registration(&reg).await?;
    }
    apply_role(
        &req.io,
        req.ctx_rooms(),
        req.media(),
        &room.webinar_id,
        &reg.id,
        &reg.email,
        body.role,
    )
    .await;
    Ok(json!({}))
}

/// Makes a registration's new role live for every socket of that person in
/// the webinar's room on this node (joined with the registration, or with
/// the host account under the registration's e-mail).
pub(super) async fn apply_role(
    io: &SocketIo,
    rooms: &Rooms,
    media: &Media,
    webinar_id: &str,
    registration_id: &str,
    email: &str,
    role: Role,
) {
    let Some(room) = rooms.get(webinar_id) else {
        return;
    };
    let members = room.with(|st| st.members_of(registration_id, email));
    for member in members {
        // Account holders are co-hosts only through their registration;
        // their webinar's host stays host whatever the registration says.
        if member.role == Role::Host {
            continue;
        }
        sync_member_role(io, media, &room, &member, role).await;
    }
}

/// Moves one member to `role`: the room's counts, the presenters'
/// broadcast room, and `roleChanged` to the presenters and to the peer.
pub(super) async fn sync_member_role(
    io: &SocketIo,
    media: &Media,
    room: &Arc<Room>,
    member: &Member,
    role: Role,
) {
    let changed = room.with(|st| {
        st.set_role(&member.peer_id, role)
            .is_some_and(|old| old != role)
    });
    if !changed {
        return;
    }
    // A demoted presenter stops presenting at once.
    if !role.is_presenter() {
        if let Some(media_room) = media.room(&room.webinar_id) {
            let closed = media_room.close_peer(&member.peer_id, true).await;
            media::producers_closed(io, &room.webinar_id, &closed).await;
        }
    }
    if let Some(socket) = io.get_socket(member.sid) {
        if role.is_presenter() {
            socket.join(room::presenters(&room.webinar_id));
        } else {
            socket.leave(room::presenters(&room.webinar_id));
        }
    }
    let targets = vec![
        room::presenters(&room.webinar_id),
        room::peer(&member.peer_id),
    ];
    if let Err(e) = io
        .within(targets)
        .emit(
            "roleChanged",
            &json!({"peerId": member.peer_id, "role": role}),
        )
        .await
    {
        tracing::warn!("roleChanged in {}: {e}", room.webinar_id);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PeerRequest {
    peer_id: String,
}

pub(super) async fn kick(req: Request, data: Value) -> EventResult {
    let body: PeerRequest = parse(data)?;
    let (room, me, my_role) = req.require_presenter().await?;
    let target = room
        .with(|st| st.members.get(&body.peer_id).cloned())
        .ok_or_else(|| EventError::peer_not_found(&body.peer_id))?;
    if target.identity == me.identity {
        return Err(EventError::invalid("you cannot remove yourself"));
    }
    match (target.role, my_role) {
        (Role::Host, _) => return Err(EventError::forbidden("the host cannot be removed")),
        (Role::CoHost, Role::CoHost) => {
            return Err(EventError::forbidden("only the host may remove a co-host"))
        }
        _ => {}
    }
    // Every socket of that person goes, and none may join again.
    let sockets = room.with(|st| {
        st.kicked.insert(target.identity.clone());
        st.members
            .values()
            .filter(|m| m.identity == target.identity)
            .map(|m| m.sid)
            .collect::<Vec<_>>()
    });
    for sid in sockets {
        if let Some(socket) = req.io.get_socket(sid) {
            socket.emit("kicked", &json!({})).ok();
            socket.disconnect().ok();
        }
    }
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spotlight {
    #[serde(default)]
    peer_id: Option<String>,
}

pub(super) async fn spotlight(req: Request, data: Value) -> EventResult {
    let body: Spotlight = parse(data)?;
    let (room, _, _) = req.require_presenter().await?;
    room.with(|st| {
        if let Some(p) = &body.peer_id {
            if !st.members.contains_key(p) {
                return Err(EventError::peer_not_found(p));
            }
        }
        st.spotlight = body.peer_id.clone();
        Ok(())
    })?;
    if let Err(e) = req
        .io
        .within(room::everyone(&room.webinar_id))
        .emit("spotlight", &json!({"peerId": body.peer_id}))
        .await
    {
        tracing::warn!("spotlight in {}: {e}", room.webinar_id);
    }
    Ok(json!({}))
}
