//! The webinar platform's backend: configuration, the data layer, the REST
//! API and the realtime (Socket.IO) layer, over the `sfu` media engine and
//! the `recorder`.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod http;
pub mod media;
pub mod model;
pub mod realtime;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::http::{AppState, Metrics, RateLimiter};
use crate::realtime::{Geo, Realtime};
use crate::store::{Store, StoreError};

/// Everything the server needs, assembled from settings: the store, the
/// token issuer (with its persisted secret), the GeoIP database, the
/// realtime layer and the admin account.
pub async fn build_state(settings: Settings, public_url: String) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(&settings.server.data_dir).with_context(|| {
        format!(
            "creating data directory {}",
            settings.server.data_dir.display()
        )
    })?;
    let store = store::open(&settings).await.context("opening the store")?;
    let secret = auth::load_or_create_secret(&settings.auth, &settings.server.data_dir)
        .context("loading the JWT secret")?;
    let tokens = Arc::new(auth::TokenIssuer::new(&secret, &settings.auth));
    let geo = match &settings.geoip.city_db {
        Some(path) => Some(Arc::new(Geo::open(path)?)),
        None => None,
    };
    let media = media::Media::start(&settings.media).context("starting the media workers")?;
    let settings = Arc::new(settings);
    let realtime = Realtime::new(store.clone(), settings.clone(), tokens.clone(), geo, media);
    let dummy_hash: Arc<str> =
        tokio::task::spawn_blocking(|| auth::hash_password("no account has this password"))
            .await?
            .into();
    let state = AppState {
        login_limiter: Arc::new(RateLimiter::new(settings.limits.login_per_minute)),
        register_limiter: Arc::new(RateLimiter::new(settings.limits.register_per_minute)),
        settings,
        store,
        tokens,
        realtime,
        metrics: Arc::new(Metrics::default()),
        dummy_hash,
        public_url: public_url.into(),
    };
    ensure_admin(&state).await?;
    Ok(state)
}

/// Creates the configured admin host account unless it exists (so restarts
/// and several nodes starting at once are harmless).
async fn ensure_admin(state: &AppState) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (
        &state.settings.auth.admin_email,
        &state.settings.auth.admin_password,
    ) else {
        return Ok(());
    };
    let email = email.trim().to_lowercase();
    if state.store.user_by_email(&email).await?.is_some() {
        return Ok(());
    }
    match http::create_user(state, &email, password, "Admin").await {
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Serves the platform on `listener` until `shutdown` completes, then
/// finishes in-flight requests and returns.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bound = listener.local_addr()?;
    let public_url = settings.server.public_url_for(bound);
    let state = build_state(settings, public_url).await?;
    let realtime = state.realtime.clone();
    let app = http::router(state);
    // Socket.IO connections are long-lived: on shutdown they are closed
    // (which ends their attendance sessions) so that the server can finish.
    let shutdown = async move {
        shutdown.await;
        realtime.close().await;
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

/// For tests and tools that want the store a running server uses.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    store::open(settings).await
}
