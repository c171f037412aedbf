//! The HTTP edge (axum): the REST API of `shared/CONTRACT.md` under
//! `/api/v1`, its OpenAPI document, health and Prometheus metrics; the
//! realtime layer's Socket.IO endpoint shares the listener.

pub mod access;
mod analytics;
mod attendees;
pub mod error;
pub mod extract;
mod metrics;
mod openapi;
mod rate_limit;
mod registrations;
mod users;
mod webinars;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post, put};
use axum::{middleware, Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use metrics::Metrics;
pub use rate_limit::RateLimiter;
pub use users::create_user;

use crate::auth::TokenIssuer;
use crate::config::Settings;
use crate::realtime::Realtime;
use crate::store::Store;
use error::ApiError;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub tokens: Arc<TokenIssuer>,
    /// Live rooms: REST changes that must take effect at once go through it.
    pub realtime: Realtime,
    pub metrics: Arc<Metrics>,
    pub login_limiter: Arc<RateLimiter>,
    pub register_limiter: Arc<RateLimiter>,
    /// A valid hash that matches no password: verified against when the
    /// account does not exist, so that login timing reveals nothing.
    pub dummy_hash: Arc<str>,
    pub public_url: Arc<str>,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/login", post(users::login))
        .route("/users", post(users::create))
        .route("/webinars", post(webinars::create).get(webinars::list))
        .route("/webinars/{id}", get(webinars::get).patch(webinars::update))
        .route(
            "/webinars/{id}/registrations",
            post(registrations::create).get(registrations::list),
        )
        .route(
            "/webinars/{id}/registrations/{rid}/approve",
            post(registrations::approve),
        )
        .route(
            "/webinars/{id}/registrations/{rid}/reject",
            post(registrations::reject),
        )
        .route("/webinars/{id}/join", post(registrations::join))
        .route("/webinars/{id}/attendees", get(attendees::list))
        .route("/webinars/{id}/roles/{rid}", put(attendees::set_role))
        .route("/webinars/{id}/analytics", get(analytics::get))
        .fallback(api_not_found);

    let app = Router::new()
        .nest("/api/v1", api)
        .route("/openapi.json", get(openapi::document))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text));
    // The browser app's files when they are there; a short page otherwise.
    let web_dir = state.settings.server.web_dir.clone();
    let app = if web_dir.join("index.html").is_file() {
        app.fallback_service(tower_http::services::ServeDir::new(web_dir))
    } else {
        app.route("/", get(index))
    };
    let mut app = app
        .layer(DefaultBodyLimit::max(state.settings.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        // Outside the request metrics: a Socket.IO connection is not a request.
        .layer(state.realtime.layer());
    if let Some(cors) = cors_layer(&state.settings) {
        app = app.layer(cors);
    }
    app.with_state(state)
}

/// Same origin only unless `server.cors_origins` lists others.
fn cors_layer(settings: &Settings) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = settings
        .server
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::PUT,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .allow_credentials(true),
    )
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("route")
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let (rooms, sockets) = state.realtime.totals();
    let text = state.metrics.render(&[
        (
            "webinar_realtime_rooms",
            "Webinar rooms with live state on this node.",
            rooms as f64,
        ),
        (
            "webinar_realtime_participants",
            "Sockets joined to a webinar room on this node.",
            sockets as f64,
        ),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn index(State(state): State<AppState>) -> Html<String> {
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Webinar</title>\
         <h1>Webinar platform</h1><p>The server is running at {url}.</p>\
         <ul><li><a href=\"/openapi.json\">REST API (OpenAPI)</a></li>\
         <li><a href=\"/healthz\">Health</a></li><li><a href=\"/metrics\">Metrics</a></li></ul>",
        url = state.public_url
    ))
}
