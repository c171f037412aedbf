//! Prometheus metrics of the HTTP edge: request counts and latency by route
//! and status, rendered in the text exposition format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), RouteStats>>,
}

#[derive(Default, Clone, Copy)]
struct RouteStats {
    count: u64,
    seconds: f64,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut map = self
            .requests
            .lock()
            .expect("metrics lock is never poisoned");
        let entry = map
            .entry((method.to_string(), route.to_string(), status))
            .or_default();
        entry.count += 1;
        entry.seconds += seconds;
    }

    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let map = self
            .requests
            .lock()
            .expect("metrics lock is never poisoned")
            .clone();
        let mut out = String::new();
        out.push_str("# HELP webinar_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE webinar_http_requests_total counter\n");
        for ((method, route, status), s) in &map {
            let _ = writeln!(
                out,
                "webinar_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str(
            "# HELP webinar_http_request_seconds_sum Time spent answering, by route and status.\n",
        );
        out.push_str("# TYPE webinar_http_request_seconds_sum counter\n");
        for ((method, route, status), s) in &map {
            let _ = writeln!(
                out,
                "webinar_http_request_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {:.6}",
                s.seconds
            );
        }
        for (name, help, value) in extra {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// Middleware: counts every request under its route pattern (never the raw
/// path, which would make one series per webinar id).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(req).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
