//! A socket's connection: the join-token check at connect (refusals become
//! `connect_error`), who the socket is (a registration or a host account,
//! bound to one webinar, with the address and location it connects from),
//! its current role read from the store, and the dispatch of every event to
//! a handler whose result is acknowledged as `{ok, data | error}`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use axum::extract::ConnectInfo;
use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;

use super::protocol::{envelope, EventError, EventResult};
use super::room::{self, IdentityKey, Member, Room};
use super::{captions, chat, lifecycle, media, stats, Background, Ctx};
use crate::auth::{TokenError, TokenKind};
use crate::http::extract::client_ip;
use crate::model::{Location, RegistrationStatus, Role};
use crate::store::{Store, StoreResult};

/// Who is behind a socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Participant {
    Registration {
        id: String,
    },
    /// A host account (the webinar's host, or a co-host through a
    /// registration under the account's e-mail).
    User {
        id: String,
        email: String,
    },
}

/// Per-socket state, kept in the socket's extensions.
pub struct Connection {
    pub webinar_id: String,
    /// The webinar's host account (it never changes).
    pub host_id: String,
    /// This socket's id in the room (a reconnect is a new peer).
    pub peer_id: String,
    pub participant: Participant,
    pub name: String,
    pub location: Location,
    pub joined: AtomicBool,
    /// The room joined (kept here so that leaving works after an ended
    /// room was dropped from the registry).
    pub room: OnceLock<Arc<Room>>,
    pub last_stats: Mutex<Option<Instant>>,
}

impl Connection {
    pub fn identity(&self) -> IdentityKey {
        match &self.participant {
            Participant::Registration { id } => format!("r:{id}"),
            Participant::User { id, .. } => format!("u:{id}"),
        }
    }

    pub fn registration_id(&self) -> Option<&str> {
        match &self.participant {
            Participant::Registration { id } => Some(id),
            Participant::User { .. } => None,
        }
    }

    pub fn user(&self) -> Option<(&str, &str)> {
        match &self.participant {
            Participant::User { id, email } => Some((id, email)),
            Participant::Registration { .. } => None,
        }
    }
}

/// The participant's role now, from the store: the registration's role while
/// it is approved; for an account, host of its own webinar or co-host
/// through an approved co-host registration under its e-mail (the rule of
/// `http::access::user_role`). `None`: no longer a participant.
pub async fn resolve_role(
    store: &dyn Store,
    webinar_id: &str,
    host_id: &str,
    participant: &Participant,
) -> StoreResult<Option<Role>> {
    match participant {
        Participant::Registration { id } => Ok(store
            .registration(id)
            .await?
            .filter(|r| r.webinar_id == webinar_id && r.status == RegistrationStatus::Approved)
            .map(|r| r.role)),
        Participant::User { id, .. } if id == host_id => Ok(Some(Role::Host)),
        Participant::User { email, .. } => Ok(store
            .registration_by_email(webinar_id, email)
            .await?
            .filter(|r| r.status == RegistrationStatus::Approved && r.role == Role::CoHost)
            .map(|_| Role::CoHost)),
    }
}

/// One event being handled.
pub struct Request {
    ctx: Arc<Ctx>,
    pub io: SocketIo,
    pub socket: SocketRef,
    pub conn: Arc<Connection>,
    /// Set by a handler whose own socket must go once its ack is out.
    disconnect_after_ack: Arc<AtomicBool>,
}

impl Request {
    pub fn store(&self) -> &dyn Store {
        self.ctx.store.as_ref()
    }

    pub fn ctx_rooms(&self) -> &Arc<room::Rooms> {
        &self.ctx.rooms
    }

    pub fn media(&self) -> &Arc<crate::media::Media> {
        &self.ctx.media
    }

    pub(super) fn background(&self) -> &Background {
        &self.ctx.background
    }

    pub fn disconnect_after_ack(&self) {
        self.disconnect_after_ack.store(true, Ordering::SeqCst);
    }

    /// The joined room and this socket's member entry (with its role as
    /// last known), or `not_joined`.
    pub fn member(&self) -> Result<(Arc<Room>, Member), EventError> {
        let room = self.conn.room.get().ok_or_else(EventError::not_joined)?;
        let member = room
            .with(|s| s.members.get(&self.conn.peer_id).cloned())
            .ok_or_else(EventError::not_joined)?;
        Ok((room.clone(), member))
    }

    /// The role from the store, for requests that need a presenter. A role
    /// that changed behind the room's back (another node, a direct store
    /// edit) is applied to the room first, so the refusal and the room agree.
    pub async fn current_role(&self) -> Result<(Arc<Room>, Member, Role), EventError> {
        let (room, member) = self.member()?;
        let role = resolve_role(
            self.store(),
            &self.conn.webinar_id,
            &self.conn.host_id,
            &self.conn.participant,
        )
        .await?
        .ok_or_else(|| EventError::forbidden("you are no longer a participant of this webinar"))?;
        if role != member.role {
            lifecycle::sync_member_role(&self.io, &self.ctx.media, &room, &member, role).await;
        }
        Ok((room, member, role))
    }

    pub async fn require_presenter(&self) -> Result<(Arc<Room>, Member, Role), EventError> {
        let (room, member, role) = self.current_role().await?;
        if !role.is_presenter() {
            return Err(EventError::forbidden(
                "only the webinar's host and co-hosts may do this",
            ));
        }
        Ok((room, member, role))
    }

    pub async fn require_host(&self) -> Result<(Arc<Room>, Member), EventError> {
        let (room, member, role) = self.current_role().await?;
        if role != Role::Host {
            return Err(EventError::forbidden("only the webinar's host may do this"));
        }
        Ok((room, member))
    }
}

/// Registers the default namespace: the token check, then the events.
///
/// The handlers socketioxide keeps hold the context weakly: a socket whose
/// transport outlives the server (a client that does not hang up) must not
/// keep the store open. `Realtime` owns the context.
pub(super) fn register(io: &SocketIo, ctx: Weak<Ctx>) {
    let authenticate = move |s: SocketRef, TryData(auth): TryData<Value>| {
        let weak = ctx.clone();
        let ctx = ctx.upgrade();
        async move {
            let ctx = ctx.ok_or(Refusal("unavailable"))?;
            let conn = authenticate(&ctx, &s, auth.ok()).await?;
            s.extensions.insert(Arc::new(conn));
            // The event handlers are registered here, before socketioxide
            // sends CONNECT: registered in the connect handler (which runs
            // after CONNECT is sent), a client's first event could arrive
            // before them and go unanswered.
            on_connect(weak, s);
            Ok::<(), Refusal>(())
        }
    };
    let connected = |_s: SocketRef| async {};
    io.ns("/", connected.with(authenticate));
}

/// Why a connection was refused; its text is the `connect_error` message.
#[derive(Debug)]
struct Refusal(&'static str);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

async fn authenticate(
    ctx: &Ctx,
    s: &SocketRef,
    auth: Option<Value>,
) -> Result<Connection, Refusal> {
    let token = auth
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .ok_or(Refusal("unauthenticated"))?;
    let claims = ctx.tokens.verify(token).map_err(|e| match e {
        TokenError::Expired => Refusal("token_expired"),
        TokenError::Invalid => Refusal("invalid_token"),
    })?;
    let webinar_id = match (claims.kind, &claims.wid) {
        (TokenKind::Join, Some(wid)) => wid.clone(),
        _ => return Err(Refusal("invalid_token")),
    };
    let internal = |e| {
        tracing::error!("realtime connect: {e}");
        Refusal("internal")
    };
    let webinar = ctx
        .store
        .webinar(&webinar_id)
        .await
        .map_err(internal)?
        .ok_or(Refusal("not_found"))?;
    let (participant, name) = match &claims.rid {
        Some(rid) => {
            let reg = ctx
                .store
                .registration(rid)
                .await
                .map_err(internal)?
                .ok_or(Refusal("forbidden"))?;
            (Participant::Registration { id: reg.id }, reg.name)
        }
        None => {
            let user = ctx
                .store
                .user(&claims.sub)
                .await
                .map_err(internal)?
                .ok_or(Refusal("invalid_token"))?;
            (
                Participant::User {
                    id: user.id,
                    email: user.email,
                },
                user.name,
            )
        }
    };
    let role = resolve_role(
        ctx.store.as_ref(),
        &webinar.id,
        &webinar.host_id,
        &participant,
    )
    .await
    .map_err(internal)?;
    if role.is_none() {
        return Err(Refusal("forbidden"));
    }
    let location = match &ctx.geo {
        Some(geo) => geo.locate(socket_client_ip(ctx, s)),
        None => Location::default(),
    };
    Ok(Connection {
        webinar_id: webinar.id,
        host_id: webinar.host_id,
        peer_id: s.id.to_string(),
        participant,
        name,
        location,
        joined: AtomicBool::new(false),
        room: OnceLock::new(),
        last_stats: Mutex::new(None),
    })
}

/// The client's address: the TCP peer, or what `X-Forwarded-For` says when
/// the peer is a trusted proxy.
fn socket_client_ip(ctx: &Ctx, s: &SocketRef) -> IpAddr {
    let parts = s.req_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let xff = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    client_ip(peer, xff, &ctx.settings.server.trusted_proxies)
}

fn on_connect(ctx: Weak<Ctx>, s: SocketRef) {
    on(&s, &ctx, "join", lifecycle::join);
    on(&s, &ctx, "startWebinar", lifecycle::start);
    on(&s, &ctx, "endWebinar", lifecycle::end);
    on(&s, &ctx, "setRole", lifecycle::set_role);
    on(&s, &ctx, "kick", lifecycle::kick);
    on(&s, &ctx, "spotlight", lifecycle::spotlight);
    on(&s, &ctx, "sendChat", chat::send);
    on(&s, &ctx, "pushCaption", captions::push);
    on(&s, &ctx, "reportStats", stats::report);
    on(&s, &ctx, "createWebRtcTransport", media::create_transport);
    on(&s, &ctx, "connectWebRtcTransport", media::connect_transport);
    on(&s, &ctx, "restartIce", media::restart_ice);
    on(&s, &ctx, "produce", media::produce);
    on(&s, &ctx, "pauseProducer", media::pause_producer);
    on(&s, &ctx, "resumeProducer", media::resume_producer);
    on(&s, &ctx, "closeProducer", media::close_producer);
    on(&s, &ctx, "consume", media::consume);
    on(&s, &ctx, "resumeConsumer", media::resume_consumer);
    on(&s, &ctx, "pauseConsumer", media::pause_consumer);
    on(
        &s,
        &ctx,
        "requestConsumerKeyFrame",
        media::request_key_frame,
    );
    on(
        &s,
        &ctx,
        "setConsumerPreferredLayers",
        media::set_preferred_layers,
    );
    on(&s, &ctx, "setConsumerPriority", media::set_priority);
    s.on_fallback(|ack: AckSender| async move {
        let result: EventResult = Err(EventError::new(
            "unknown_event",
            "this server does not handle that event",
        ));
        ack.send(&envelope(&result)).ok();
    });
    s.on_disconnect(move |s: SocketRef, io: SocketIo| {
        // Spawned on the tracker right away (not inside the future that
        // socketioxide spawns), so that shutdown waits for it.
        let ctx = ctx.upgrade();
        let conn = s.extensions.get::<Arc<Connection>>();
        let work = ctx.zip(conn).map(|(ctx, conn)| {
            let store = ctx.store.clone();
            let media = ctx.media.clone();
            let background = ctx.background.clone();
            let grace = std::time::Duration::from_secs(ctx.settings.server.presenter_grace_seconds);
            ctx.background.spawn(async move {
                stats::leave(&io, store, &media, &background, &conn, grace).await
            })
        });
        async move {
            if let Some(work) = work {
                work.await.ok();
            }
        }
    });
}

/// Routes `event` to `handler` and acknowledges its result. The payload is
/// handed over as JSON for the handler to parse strictly; no payload at all
/// reads as `null`.
fn on<F, Fut>(s: &SocketRef, ctx: &Weak<Ctx>, event: &'static str, handler: F)
where
    F: Fn(Request, Value) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = EventResult> + Send + 'static,
{
    let ctx = ctx.clone();
    s.on(
        event,
        move |s: SocketRef, io: SocketIo, TryData(data): TryData<Value>, ack: AckSender| {
            let Some(ctx) = ctx.upgrade() else {
                let result: EventResult = Err(EventError::new(
                    "unavailable",
                    "the server is shutting down",
                ));
                ack.send(&envelope(&result)).ok();
                return futures::future::Either::Left(std::future::ready(()));
            };
            let handler = handler.clone();
            let background = ctx.background.clone();
            let work = background.spawn(async move {
                let Some(conn) = s.extensions.get::<Arc<Connection>>() else {
                    // The connect check always stores it; a socket without
                    // one never passed that check.
                    s.disconnect().ok();
                    return;
                };
                let disconnect_after_ack = Arc::new(AtomicBool::new(false));
                let request = Request {
                    ctx,
                    io,
                    socket: s.clone(),
                    conn,
                    disconnect_after_ack: disconnect_after_ack.clone(),
                };
                let result = handler(request, data.unwrap_or(Value::Null)).await;
                if let Err(e) = ack.send(&envelope(&result)) {
                    tracing::debug!("ack for {event} not sent: {e}");
                }
                if disconnect_after_ack.load(Ordering::SeqCst) {
                    s.disconnect().ok();
                }
            });
            futures::future::Either::Right(async move {
                work.await.ok();
            })
        },
    );
}
