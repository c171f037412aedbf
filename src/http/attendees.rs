//! `/webinars/{id}/attendees` (who registered and who came, for how long,
//! from where) and `/webinars/{id}/roles/{registrationId}` (promotion).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::{load_webinar, require_host, require_presenter};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, Caller, Validate};
use super::registrations::RegistrationView;
use super::AppState;
use crate::model::{self, AttendanceSession, Location, RegistrationStatus, Role};

#[derive(Debug, Serialize, ToSchema)]
pub struct LocationView {
    pub city: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttendeeView {
    /// None for hosts who joined with their account rather than a registration.
    pub registration_id: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    pub online: bool,
    pub joined_at: Option<String>,
    pub left_at: Option<String>,
    pub watch_seconds: i64,
    pub location: LocationView,
}

/// Folds one person's sessions into first join, last leave (when offline),
/// total watch time and latest known location.
fn fold(
    sessions: &[&AttendanceSession],
    now: model::Timestamp,
) -> (bool, Option<String>, Option<String>, i64, Location) {
    let online = sessions.iter().any(|s| s.left_at.is_none());
    let joined = sessions.iter().map(|s| s.joined_at).min();
    let left = if online {
        None
    } else {
        sessions.iter().filter_map(|s| s.left_at).max()
    };
    let watch = sessions.iter().map(|s| s.watch_seconds(now)).sum();
    let location = sessions
        .iter()
        .rev()
        .map(|s| &s.location)
        .find(|l| l.country.is_some() || l.city.is_some())
        .cloned()
        .unwrap_or_default();
    (
        online,
        joined.as_ref().map(model::rfc3339::format),
        left.as_ref().map(model::rfc3339::format),
        watch,
        location,
    )
}

#[utoipa::path(get, path = "/api/v1/webinars/{id}/attendees", tag = "attendees",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Vec<AttendeeView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<AttendeeView>>> {
    let webinar = load_webinar(&state, &id).await?;
    require_presenter(&state, &caller, &webinar).await?;
    let registrations = state
        .store
        .registrations(&webinar.id, Some(RegistrationStatus::Approved))
        .await?;
    let sessions = state.store.attendance(&webinar.id).await?;
    let now = model::now();

    let mut by_registration: BTreeMap<&str, Vec<&AttendanceSession>> = BTreeMap::new();
    let mut by_user: BTreeMap<&str, Vec<&AttendanceSession>> = BTreeMap::new();
    for s in &sessions {
        match (&s.registration_id, &s.user_id) {
            (Some(r), _) => by_registration.entry(r).or_default().push(s),
            (None, Some(u)) => by_user.entry(u).or_default().push(s),
            (None, None) => {}
        }
    }
    let mut out = Vec::new();
    for r in &registrations {
        let mine = by_registration
            .get(r.id.as_str())
            .cloned()
            .unwrap_or_default();
        let (online, joined_at, left_at, watch_seconds, location) = fold(&mine, now);
        out.push(AttendeeView {
            registration_id: Some(r.id.clone()),
            name: r.name.clone(),
            email: Some(r.email.clone()),
            role: r.role,
            online,
            joined_at,
            left_at,
            watch_seconds,
            location: LocationView {
                city: location.city,
                country: location.country,
            },
        });
    }
    for mine in by_user.values() {
        let (online, joined_at, left_at, watch_seconds, location) = fold(mine, now);
        let first = mine[0];
        out.push(AttendeeView {
            registration_id: None,
            name: first.name.clone(),
            email: None,
            role: first.role,
            online,
            joined_at,
            left_at,
            watch_seconds,
            location: LocationView {
                city: location.city,
                country: location.country,
            },
        });
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleUpdate {
    /// "co-host" or "attendee".
    pub role: Role,
}

impl Validate for RoleUpdate {
    fn validate(&self) -> Result<(), super::error::FieldErrors> {
        if self.role == Role::Host {
            return Err([(
                "role".to_string(),
                "must be co-host or attendee".to_string(),
            )]
            .into());
        }
        Ok(())
    }
}

#[utoipa::path(put, path = "/api/v1/webinars/{id}/roles/{registrationId}", tag = "attendees",
    params(("id" = String, Path), ("registrationId" = String, Path)), request_body = RoleUpdate,
    security(("bearer" = [])),
    responses((status = 200, body = RegistrationView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "not_approved", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_role(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, registration_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RoleUpdate>,
) -> ApiResult<Json<RegistrationView>> {
    let webinar = load_webinar(&state, &id).await?;
    require_host(&state, &caller, &webinar).await?;
    let mut reg = state
        .store
        .registration(&registration_id)
        .await?
        .filter(|r| r.webinar_id == webinar.id)
        .ok_or_else(|| ApiError::not_found("registration"))?;
    if reg.status != RegistrationStatus::Approved {
        return Err(ApiError::conflict(
            "not_approved",
            "only approved registrants can be given a role",
        ));
    }
    if reg.role != body.role {
        reg.role = body.role;
        state.store.update_registration(&reg).await?;
    }
    state
        .realtime
        .role_changed(&webinar.id, &reg.id, &reg.email, reg.role)
        .await;
    Ok(Json(RegistrationView::from(&reg)))
}
