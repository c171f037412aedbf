//! The realtime layer: Socket.IO (socketioxide) at `/socket.io` on the REST
//! listener, default namespace, per `shared/CONTRACT.md`.
//!
//! A socket is authenticated at connect by its join token and belongs to the
//! token's webinar; its role is read from the store (and re-read for every
//! presenter-only request), never trusted from the token. The modules, one
//! per concern:
//! - `connection`: the connect-time check, a socket's identity, the request
//!   dispatch that turns every event into one `{ok, data | error}` ack;
//! - `room`: in-memory room state (members, capacity, spotlight, kicks);
//! - `lifecycle`: `join`, `startWebinar`/`endWebinar`, `setRole`, `kick`,
//!   `spotlight`, and live role changes made over REST;
//! - `chat`, `captions`: messages and live captions (final ones become
//!   transcript segments);
//! - `stats`: the coalesced `participantCount`, attendance sessions,
//!   quality reports;
//! - `geo`: city and country of a client address.
//!
//! Media signalling (transports, producers, consumers) is not wired yet:
//! `join` answers `routerRtpCapabilities: null` and no producers, and the
//! media events get an `unknown_event` error ack.

mod captions;
mod chat;
mod connection;
mod geo;
mod lifecycle;
mod media;
mod protocol;
mod room;
mod stats;

use std::sync::Arc;

use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use geo::Geo;
pub use stats::{QUALITY_EVENT, SERVER_QUALITY_EVENT};

use crate::auth::TokenIssuer;
use crate::config::Settings;
use crate::media::Media;
use crate::model::Role;
use crate::store::Store;
use room::Rooms;

/// What the event handlers share. It holds no `SocketIo` handle (handlers
/// get it from socketioxide), so that the handlers that socketioxide owns
/// do not own socketioxide back.
struct Ctx {
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    tokens: Arc<TokenIssuer>,
    rooms: Arc<Rooms>,
    geo: Option<Arc<Geo>>,
    media: Arc<Media>,
    background: Background,
}

/// The realtime layer's own tasks (event handling, delayed counts, grace
/// periods): tracked so that shutdown can cut the waits short and finish
/// them, leaving nothing that still holds the store once `close` returns.
#[derive(Clone, Default)]
struct Background {
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Background {
    fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Sleeps for `duration`; false when shutdown cut the wait short.
    async fn sleep(&self, duration: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.stop.cancelled() => false,
        }
    }

    fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// The Socket.IO server and the live rooms of this node. Cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    io: SocketIo,
    layer: SocketIoLayer,
    ctx: Arc<Ctx>,
}

impl Realtime {
    pub fn new(
        store: Arc<dyn Store>,
        settings: Arc<Settings>,
        tokens: Arc<TokenIssuer>,
        geo: Option<Arc<Geo>>,
        media: Arc<Media>,
    ) -> Self {
        let (layer, io) = SocketIo::builder().req_path("/socket.io").build_layer();
        let background = Background::default();
        // Not on the tracker: it lives as long as the media layer, and
        // shutdown only has to stop it.
        let (events, stop) = (media.subscribe(), background.stop.clone());
        let forward_io = io.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = media::forward_events(forward_io, events) => {}
                _ = stop.cancelled() => {}
            }
        });
        let interval = std::time::Duration::from_secs(settings.media.quality_sample_seconds.max(1));
        tokio::spawn(stats::sample_quality(
            store.clone(),
            Arc::downgrade(&media),
            background.clone(),
            interval,
        ));
        let ctx = Arc::new(Ctx {
            store,
            settings,
            tokens,
            rooms: Arc::new(Rooms::default()),
            geo,
            media,
            background,
        });
        connection::register(&io, Arc::downgrade(&ctx));
        Self { io, layer, ctx }
    }

    /// The tower layer that answers `/socket.io` on the HTTP listener.
    pub fn layer(&self) -> SocketIoLayer {
        self.layer.clone()
    }

    /// Disconnects every socket and closes their attendance sessions at
    /// once (no grace period: nobody comes back to a stopping server), then
    /// waits for the layer's tasks; part of a graceful shutdown.
    pub async fn close(&self) {
        let background = &self.ctx.background;
        background.stop.cancel();
        self.io.close().await;
        background.tasks.close();
        background.tasks.wait().await;
    }

    /// A registration's role was changed outside Socket.IO (REST): the
    /// person's live sockets get it at once.
    pub async fn role_changed(
        &self,
        webinar_id: &str,
        registration_id: &str,
        email: &str,
        role: Role,
    ) {
        lifecycle::apply_role(
            &self.io,
            &self.ctx.rooms,
            &self.ctx.media,
            webinar_id,
            registration_id,
            email,
            role,
        )
        .await;
    }

    /// (rooms with live state, joined sockets) on this node.
    pub fn totals(&self) -> (usize, usize) {
        self.ctx.rooms.totals()
    }
}
