//! The `webinar` binary: loads settings and serves the platform until
//! Ctrl-C or SIGTERM.

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use webinar::config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let settings = Settings::load().context("loading settings")?;
    let listener = tokio::net::TcpListener::bind(settings.server.http_addr)
        .await
        .with_context(|| format!("binding {}", settings.server.http_addr))?;
    let url = settings.server.public_url_for(listener.local_addr()?);
    tracing::info!(store = ?settings.store.kind, data_dir = %settings.server.data_dir.display(), "starting");
    println!("Webinar platform running: open {url}");
    webinar::serve(settings, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
