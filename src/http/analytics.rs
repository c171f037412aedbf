//! `/webinars/{id}/analytics`: the webinar's report, computed from the store
//! (attendance sessions, registrations, chat, quality reports), so it is the
//! same live and after the event, and on any node.
//!
//! The audience is the registrants who joined (whatever their role):
//! `attended`, `averageWatchSeconds`, `countries` and `cities` are about
//! them. `peakConcurrent` and `currentConcurrent` count everyone in the room,
//! as the live `participantCount` does.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::access::{load_webinar, require_presenter};
use super::error::{ApiResult, ErrorBody};
use super::extract::Caller;
use super::AppState;
use crate::model::{
    self, AttendanceSession, Location, RegistrationStatus, Timestamp, WebinarStatus,
};
use crate::realtime::{QUALITY_EVENT, SERVER_QUALITY_EVENT};

#[derive(Debug, Serialize, ToSchema)]
pub struct CountryCount {
    pub country: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CityCount {
    pub city: String,
    pub country: Option<String>,
    pub count: u64,
}

/// Connection quality from clients' `reportStats` (averages over all
/// samples; null without samples).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QualityView {
    pub samples: u64,
    /// Sockets that reported at least once.
    pub reporters: u64,
    pub avg_rtt_ms: Option<f64>,
    pub p95_rtt_ms: Option<f64>,
    /// Percent of packets lost.
    pub avg_packet_loss: Option<f64>,
    pub avg_jitter_ms: Option<f64>,
    pub avg_bitrate_kbps: Option<f64>,
    /// The same figures as the media server measured them for each viewer
    /// (RTT from RTCP reports, loss reported by the viewer, bitrate sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub server: Option<Box<QualityView>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsView {
    pub registrations: u64,
    pub approved: u64,
    /// Registrants who joined at least once.
    pub attended: u64,
    /// Most people in the room at once (everyone, presenters included).
    pub peak_concurrent: u64,
    pub current_concurrent: u64,
    /// Total time in the room per registrant who joined.
    pub average_watch_seconds: u64,
    pub chat_messages: u64,
    /// Registrants who joined, by country (most first).
    pub countries: Vec<CountryCount>,
    pub cities: Vec<CityCount>,
    pub quality: QualityView,
}

/// Most sessions open at one instant; a leave and a join at the same
/// instant do not overlap.
fn peak(sessions: &[AttendanceSession], end_of: impl Fn(&AttendanceSession) -> Timestamp) -> u64 {
    let mut edges: Vec<(Timestamp, i64)> = Vec::with_capacity(sessions.len() * 2);
    for s in sessions {
        edges.push((s.joined_at, 1));
        edges.push((end_of(s), -1));
    }
    edges.sort();
    let (mut now, mut max) = (0i64, 0i64);
    for (_, delta) in edges {
        now += delta;
        max = max.max(now);
    }
    max as u64
}

fn sorted_desc<K: Ord>(counts: BTreeMap<K, u64>) -> Vec<(K, u64)> {
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn quality(samples: &[serde_json::Value], reporters: u64) -> QualityView {
    let field = |name: &str| -> Vec<f64> {
        samples
            .iter()
            .filter_map(|d| d.get(name).and_then(serde_json::Value::as_f64))
            .collect()
    };
    let avg = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let mut rtt = field("rttMs");
    rtt.sort_by(f64::total_cmp);
    let p95 = (!rtt.is_empty())
        .then(|| rtt[((rtt.len() as f64 * 0.95).ceil() as usize).clamp(1, rtt.len()) - 1]);
    QualityView {
        samples: samples.len() as u64,
        reporters,
        avg_rtt_ms: avg(&rtt),
        p95_rtt_ms: p95,
        avg_packet_loss: avg(&field("packetLoss")),
        avg_jitter_ms: avg(&field("jitterMs")),
        avg_bitrate_kbps: avg(&field("bitrateKbps")),
        server: None,
    }
}

#[utoipa::path(get, path = "/api/v1/webinars/{id}/analytics", tag = "analytics",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = AnalyticsView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AnalyticsView>> {
    let webinar = load_webinar(&state, &id).await?;
    require_presenter(&state, &caller, &webinar).await?;
    let registrations = state.store.registrations(&webinar.id, None).await?;
    let sessions = state.store.attendance(&webinar.id).await?;
    let chat_messages = state.store.count_chat_messages(&webinar.id).await?;
    let reports = state
        .store
        .analytics_events(&webinar.id, Some(QUALITY_EVENT))
        .await?;

    // Sessions still open after the webinar ended (a crashed node) count
    // until the end, not until now.
    let ended = webinar.status == WebinarStatus::Ended;
    let now = model::now();
    let cutoff = if ended {
        webinar.ended_at.unwrap_or(now)
    } else {
        now
    };
    let end_of = |s: &AttendanceSession| s.left_at.unwrap_or(cutoff).max(s.joined_at);

    let mut watch: BTreeMap<&str, i64> = BTreeMap::new();
    let mut location: BTreeMap<&str, &Location> = BTreeMap::new();
    for s in &sessions {
        let Some(rid) = s.registration_id.as_deref() else {
            continue;
        };
        *watch.entry(rid).or_default() += (end_of(s) - s.joined_at).num_seconds().max(0);
        if s.location.country.is_some() || s.location.city.is_some() {
            location.insert(rid, &s.location);
        }
    }
    let attended = watch.len() as u64;
    let total_watch: i64 = watch.values().sum();
    let mut countries: BTreeMap<String, u64> = BTreeMap::new();
    let mut cities: BTreeMap<(String, Option<String>), u64> = BTreeMap::new();
    for l in location.values() {
        if let Some(c) = &l.country {
            *countries.entry(c.clone()).or_default() += 1;
        }
        if let Some(city) = &l.city {
            *cities.entry((city.clone(), l.country.clone())).or_default() += 1;
        }
    }
    let reporters: BTreeSet<&str> = reports
        .iter()
        .filter_map(|e| e.peer_id.as_deref())
        .collect();
    let samples: Vec<_> = reports.iter().map(|e| e.data.clone()).collect();

    Ok(Json(AnalyticsView {
        registrations: registrations.len() as u64,
        approved: registrations
            .iter()
            .filter(|r| r.status == RegistrationStatus::Approved)
            .count() as u64,
        attended,
        peak_concurrent: peak(&sessions, end_of),
        current_concurrent: if ended {
            0
        } else {
            sessions.iter().filter(|s| s.left_at.is_none()).count() as u64
        },
        average_watch_seconds: (total_watch.max(0) as u64)
            .checked_div(attended)
            .unwrap_or(0),
        chat_messages,
        countries: sorted_desc(countries)
            .into_iter()
            .map(|(country, count)| CountryCount { country, count })
            .collect(),
        cities: sorted_desc(cities)
            .into_iter()
            .map(|((city, country), count)| CityCount {
                city,
                country,
                count,
            })
            .collect(),
        quality: {
            let mut q = quality(&samples, reporters.len() as u64);
            let server = state
                .store
                .analytics_events(&webinar.id, Some(SERVER_QUALITY_EVENT))
                .await?;
            let peers: BTreeSet<&str> =
                server.iter().filter_map(|e| e.peer_id.as_deref()).collect();
            let data: Vec<_> = server.iter().map(|e| e.data.clone()).collect();
            q.server = Some(Box::new(quality(&data, peers.len() as u64)));
            q
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(joined: i64, left: Option<i64>) -> AttendanceSession {
        let t = |s: i64| chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        AttendanceSession {
            id: model::new_id(),
            webinar_id: "w".into(),
            registration_id: None,
            user_id: None,
            peer_id: "p".into(),
            name: "n".into(),
            role: crate::model::Role::Attendee,
            joined_at: t(joined),
            left_at: left.map(t),
            location: Location::default(),
        }
    }

    #[test]
    fn peak_counts_overlaps_but_not_back_to_back_stays() {
        let end = chrono::DateTime::from_timestamp(1_700_001_000, 0).unwrap();
        let sessions = vec![
            session(0, Some(10)),
            session(10, Some(20)),
            session(5, None),
            session(6, Some(7)),
        ];
        assert_eq!(peak(&sessions, |s| s.left_at.unwrap_or(end)), 3);
        assert_eq!(peak(&[], |s| s.joined_at), 0);
    }

    #[test]
    fn quality_averages_each_field_over_its_samples() {
        let q = quality(
            &[
                serde_json::json!({"rttMs": 100.0, "packetLoss": 1.0}),
                serde_json::json!({"rttMs": 300.0}),
            ],
            2,
        );
        assert_eq!(q.samples, 2);
        assert_eq!(q.avg_rtt_ms, Some(200.0));
        assert_eq!(q.p95_rtt_ms, Some(300.0));
        assert_eq!(q.avg_packet_loss, Some(1.0));
        assert_eq!(q.avg_jitter_ms, None);
    }
}
