//! `/webinars`: create, list, read (public or full view) and update.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::{load_webinar, require_presenter, role_in};
use super::error::{ApiError, ApiResult, ErrorBody, FieldErrors};
use super::extract::{ApiJson, Caller, Validate};
use super::AppState;
use crate::model::{self, RecordingMode, Timestamp, Webinar, WebinarSettings, WebinarStatus};

pub const MAX_CAPACITY: u32 = 100_000;
const MAX_TITLE: usize = 200;
const MAX_DESCRIPTION: usize = 10_000;
const MAX_DURATION_MINUTES: u32 = 7 * 24 * 60;

/// Settings of a webinar; omitted fields keep their current (or default) value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    pub chat: Option<bool>,
    pub recording: Option<RecordingMode>,
    pub transcription: Option<bool>,
    pub captions: Option<bool>,
}

impl SettingsInput {
    fn apply(&self, s: &mut WebinarSettings) {
        if let Some(v) = self.chat {
            s.chat = v;
        }
        if let Some(v) = self.recording {
            s.recording = v;
        }
        if let Some(v) = self.transcription {
            s.transcription = v;
        }
        if let Some(v) = self.captions {
            s.captions = v;
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateWebinar {
    pub title: String,
    pub description: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<Timestamp>,
    pub duration_minutes: Option<u32>,
    /// Most attendees at once (hosts and co-hosts are not counted).
    pub capacity: u32,
    pub requires_approval: bool,
    pub settings: Option<SettingsInput>,
}

/// Any subset of the create fields.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateWebinar {
    pub title: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<Timestamp>,
    pub duration_minutes: Option<u32>,
    pub capacity: Option<u32>,
    pub requires_approval: Option<bool>,
    pub settings: Option<SettingsInput>,
}

fn check_common(
    errors: &mut FieldErrors,
    title: Option<&str>,
    description: Option<&str>,
    duration: Option<u32>,
    capacity: Option<u32>,
) {
    if let Some(t) = title {
        let len = t.trim().chars().count();
        if len == 0 || len > MAX_TITLE {
            errors.insert(
                "title".into(),
                format!("must be 1 to {MAX_TITLE} characters"),
            );
        }
    }
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        errors.insert(
            "description".into(),
            format!("must be at most {MAX_DESCRIPTION} characters"),
        );
    }
    if duration.is_some_and(|d| d == 0 || d > MAX_DURATION_MINUTES) {
        errors.insert(
            "durationMinutes".into(),
            format!("must be 1 to {MAX_DURATION_MINUTES}"),
        );
    }
    if capacity.is_some_and(|c| c == 0 || c > MAX_CAPACITY) {
        errors.insert("capacity".into(), format!("must be 1 to {MAX_CAPACITY}"));
    }
}

impl Validate for CreateWebinar {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut e = FieldErrors::new();
        check_common(
            &mut e,
            Some(&self.title),
            self.description.as_deref(),
            self.duration_minutes,
            Some(self.capacity),
        );
        if e.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }
}

impl Validate for UpdateWebinar {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut e = FieldErrors::new();
        check_common(
            &mut e,
            self.title.as_deref(),
            self.description.as_deref(),
            self.duration_minutes,
            self.capacity,
        );
        if e.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }
}

/// Everything about a webinar (its host and co-hosts see this).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebinarView {
    pub id: String,
    pub host_id: String,
    pub title: String,
    pub description: Option<String>,
    pub starts_at: Option<String>,
    pub duration_minutes: Option<u32>,
    pub capacity: u32,
    pub requires_approval: bool,
    pub settings: WebinarSettings,
    pub status: WebinarStatus,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

/// What anyone may see of a webinar.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicWebinarView {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub starts_at: Option<String>,
    pub duration_minutes: Option<u32>,
    pub requires_approval: bool,
    pub status: WebinarStatus,
}

fn ts(t: &Option<Timestamp>) -> Option<String> {
    t.as_ref().map(model::rfc3339::format)
}

impl From<&Webinar> for WebinarView {
    fn from(w: &Webinar) -> Self {
        Self {
            id: w.id.clone(),
            host_id: w.host_id.clone(),
            title: w.title.clone(),
            description: w.description.clone(),
            starts_at: ts(&w.starts_at),
            duration_minutes: w.duration_minutes,
            capacity: w.capacity,
            requires_approval: w.requires_approval,
            settings: w.settings.clone(),
            status: w.status,
            created_at: model::rfc3339::format(&w.created_at),
            updated_at: model::rfc3339::format(&w.updated_at),
            started_at: ts(&w.started_at),
            ended_at: ts(&w.ended_at),
        }
    }
}

impl From<&Webinar> for PublicWebinarView {
    fn from(w: &Webinar) -> Self {
        Self {
            id: w.id.clone(),
            title: w.title.clone(),
            description: w.description.clone(),
            starts_at: ts(&w.starts_at),
            duration_minutes: w.duration_minutes,
            requires_approval: w.requires_approval,
            status: w.status,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/webinars", tag = "webinars",
    request_body = CreateWebinar,
    security(("bearer" = [])),
    responses(
        (status = 201, body = WebinarView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWebinar>,
) -> ApiResult<(StatusCode, Json<WebinarView>)> {
    let user = caller.user()?;
    let now = model::now();
    let mut settings = WebinarSettings::default();
    if let Some(input) = &body.settings {
        input.apply(&mut settings);
    }
    let webinar = Webinar {
        id: model::new_id(),
        host_id: user.id.clone(),
        title: body.title.trim().to_string(),
        description: body.description,
        starts_at: body.starts_at,
        duration_minutes: body.duration_minutes,
        capacity: body.capacity,
        requires_approval: body.requires_approval,
        settings,
        status: WebinarStatus::Setup,
        created_at: now,
        updated_at: now,
        started_at: None,
        ended_at: None,
    };
    state.store.create_webinar(&webinar).await?;
    Ok((StatusCode::CREATED, Json(WebinarView::from(&webinar))))
}

#[utoipa::path(get, path = "/api/v1/webinars", tag = "webinars",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<WebinarView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<WebinarView>>> {
    let user = caller.user()?;
    let webinars = state.store.webinars_by_host(&user.id).await?;
    Ok(Json(webinars.iter().map(WebinarView::from).collect()))
}

/// The public view for anyone; hosts and co-hosts get everything.
#[utoipa::path(get, path = "/api/v1/webinars/{id}", tag = "webinars",
    params(("id" = String, Path)),
    responses((status = 200, description = "WebinarView for hosts and co-hosts, PublicWebinarView otherwise", body = PublicWebinarView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let webinar = load_webinar(&state, &id).await?;
    let full = match &caller.0 {
        Some(p) => role_in(&state, p, &webinar)
            .await?
            .is_some_and(|r| r.is_presenter()),
        None => false,
    };
    let value = if full {
        serde_json::to_value(WebinarView::from(&webinar))
    } else {
        serde_json::to_value(PublicWebinarView::from(&webinar))
    };
    Ok(Json(
        value.map_err(|e| ApiError::internal("webinar view", e))?,
    ))
}

#[utoipa::path(patch, path = "/api/v1/webinars/{id}", tag = "webinars",
    params(("id" = String, Path)), request_body = UpdateWebinar,
    security(("bearer" = [])),
    responses((status = 200, body = WebinarView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateWebinar>,
) -> ApiResult<Json<WebinarView>> {
    let mut webinar = load_webinar(&state, &id).await?;
    require_presenter(&state, &caller, &webinar).await?;
    if webinar.status == WebinarStatus::Ended {
        return Err(ApiError::conflict("webinar_ended", "the webinar has ended"));
    }
    if let Some(t) = body.title {
        webinar.title = t.trim().to_string();
    }
    if let Some(d) = body.description {
        webinar.description = Some(d);
    }
    if let Some(s) = body.starts_at {
        webinar.starts_at = Some(s);
    }
    if let Some(d) = body.duration_minutes {
        webinar.duration_minutes = Some(d);
    }
    if let Some(c) = body.capacity {
        webinar.capacity = c;
    }
    if let Some(r) = body.requires_approval {
        webinar.requires_approval = r;
    }
    if let Some(s) = &body.settings {
        s.apply(&mut webinar.settings);
    }
    webinar.updated_at = model::now();
    state.store.update_webinar(&webinar).await?;
    Ok(Json(WebinarView::from(&webinar)))
}
