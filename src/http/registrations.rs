//! Registrations (`/webinars/{id}/registrations`) and joining
//! (`/webinars/{id}/join`), which turns an approved registration, or a
//! host/co-host login, into a join token for the realtime connection.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{load_webinar, require_presenter, user_role};
use super::error::{ApiError, ApiResult, ErrorBody, FieldErrors};
use super::extract::{ApiJson, Caller, ClientIp, OptionalJson, Principal, Validate};
use super::users::{check_name, valid_email};
use super::AppState;
use crate::auth;
use crate::model::{self, Registration, RegistrationStatus, Role, WebinarStatus};
use crate::store::StoreError;

const MAX_FIELDS: usize = 20;
const MAX_FIELD_KEY: usize = 64;
const MAX_FIELD_VALUE: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRegistration {
    pub name: String,
    pub email: String,
    /// Answers to the webinar's extra registration questions (text values).
    #[schema(value_type = Option<Object>)]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Validate for CreateRegistration {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut e = FieldErrors::new();
        check_name(&mut e, &self.name);
        if !valid_email(self.email.trim()) {
            e.insert("email".into(), "is not a valid e-mail address".into());
        }
        if let Some(fields) = &self.fields {
            if fields.len() > MAX_FIELDS {
                e.insert("fields".into(), format!("at most {MAX_FIELDS} fields"));
            }
            for (k, v) in fields {
                let ok_value = match v {
                    serde_json::Value::String(s) => s.chars().count() <= MAX_FIELD_VALUE,
                    serde_json::Value::Bool(_)
                    | serde_json::Value::Number(_)
                    | serde_json::Value::Null => true,
                    _ => false,
                };
                if k.is_empty() || k.chars().count() > MAX_FIELD_KEY || !ok_value {
                    e.insert(
                        format!("fields.{k}"),
                        format!("keys are 1 to {MAX_FIELD_KEY} characters; values are text up to {MAX_FIELD_VALUE} characters, numbers or booleans"),
                    );
                }
            }
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationCreated {
    pub id: String,
    pub status: RegistrationStatus,
    /// Shown once: with the registration id it is the registrant's credential to join.
    pub access_key: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationView {
    pub id: String,
    pub webinar_id: String,
    pub name: String,
    pub email: String,
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub status: RegistrationStatus,
    pub role: Role,
    pub created_at: String,
    pub decided_at: Option<String>,
}

impl From<&Registration> for RegistrationView {
    fn from(r: &Registration) -> Self {
        Self {
            id: r.id.clone(),
            webinar_id: r.webinar_id.clone(),
            name: r.name.clone(),
            email: r.email.clone(),
            fields: r.fields.clone(),
            status: r.status,
            role: r.role,
            created_at: model::rfc3339::format(&r.created_at),
            decided_at: r.decided_at.as_ref().map(model::rfc3339::format),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/webinars/{id}/registrations", tag = "registrations",
    params(("id" = String, Path)), request_body = CreateRegistration,
    responses((status = 201, body = RegistrationCreated), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateRegistration>,
) -> ApiResult<(StatusCode, Json<RegistrationCreated>)> {
    state.register_limiter.check(ip)?;
    let webinar = load_webinar(&state, &id).await?;
    if webinar.status == WebinarStatus::Ended {
        return Err(ApiError::conflict("webinar_ended", "the webinar has ended"));
    }
    let access_key = auth::new_access_key();
    let status = if webinar.requires_approval {
        RegistrationStatus::Pending
    } else {
        RegistrationStatus::Approved
    };
    let now = model::now();
    let registration = Registration {
        id: model::new_id(),
        webinar_id: webinar.id.clone(),
        name: body.name.trim().to_string(),
        email: body.email.trim().to_lowercase(),
        fields: body.fields.unwrap_or_default(),
        status,
        role: Role::Attendee,
        access_key_hash: auth::access_key_hash(&access_key),
        created_at: now,
        decided_at: (status == RegistrationStatus::Approved).then_some(now),
    };
    state
        .store
        .create_registration(&registration)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::conflict(
                "already_registered",
                "this e-mail is already registered for the webinar",
            ),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(RegistrationCreated {
            id: registration.id,
            status,
            access_key,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// pending, approved or rejected
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/webinars/{id}/registrations", tag = "registrations",
    params(("id" = String, Path), ListQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<RegistrationView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<RegistrationView>>> {
    let Query(query) = query.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some("pending") => Some(RegistrationStatus::Pending),
        Some("approved") => Some(RegistrationStatus::Approved),
        Some("rejected") => Some(RegistrationStatus::Rejected),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "status",
                "must be pending, approved or rejected",
            ))
        }
    };
    let webinar = load_webinar(&state, &id).await?;
    require_presenter(&state, &caller, &webinar).await?;
    let list = state.store.registrations(&webinar.id, status).await?;
    Ok(Json(list.iter().map(RegistrationView::from).collect()))
}

async fn decide(
    state: AppState,
    caller: Caller,
    webinar_id: String,
    registration_id: String,
    status: RegistrationStatus,
) -> ApiResult<Json<RegistrationView>> {
    let webinar = load_webinar(&state, &webinar_id).await?;
    require_presenter(&state, &caller, &webinar).await?;
    let mut reg = state
        .store
        .registration(&registration_id)
        .await?
        .filter(|r| r.webinar_id == webinar.id)
        .ok_or_else(|| ApiError::not_found("registration"))?;
    if reg.status != status {
        reg.status = status;
        reg.decided_at = Some(model::now());
        if status == RegistrationStatus::Rejected {
            // A rejected co-host loses the role with the registration.
            reg.role = Role::Attendee;
        }
        state.store.update_registration(&reg).await?;
    }
    Ok(Json(RegistrationView::from(&reg)))
}

#[utoipa::path(post, path = "/api/v1/webinars/{id}/registrations/{rid}/approve", tag = "registrations",
    params(("id" = String, Path), ("rid" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = RegistrationView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, rid)): Path<(String, String)>,
) -> ApiResult<Json<RegistrationView>> {
    decide(state, caller, id, rid, RegistrationStatus::Approved).await
}

#[utoipa::path(post, path = "/api/v1/webinars/{id}/registrations/{rid}/reject", tag = "registrations",
    params(("id" = String, Path), ("rid" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = RegistrationView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, rid)): Path<(String, String)>,
) -> ApiResult<Json<RegistrationView>> {
    decide(state, caller, id, rid, RegistrationStatus::Rejected).await
}

/// A registrant's credentials; hosts and co-hosts send none and use their
/// login token instead.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinRequest {
    pub registration_id: Option<String>,
    pub access_key: Option<String>,
}
impl Validate for JoinRequest {}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    /// Join token for the Socket.IO connection (`auth: {token}`).
    pub token: String,
    pub role: Role,
    pub webinar_id: String,
}

#[utoipa::path(post, path = "/api/v1/webinars/{id}/join", tag = "registrations",
    params(("id" = String, Path)), request_body(content = JoinRequest, description = "registrants only"),
    responses((status = 200, body = JoinResponse), (status = 401, body = ErrorBody),
        (status = 403, description = "pending_approval, rejected or not a host/co-host", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "webinar_ended", body = ErrorBody)))]
pub async fn join(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<JoinRequest>,
) -> ApiResult<Json<JoinResponse>> {
    let webinar = load_webinar(&state, &id).await?;
    let response = match (&body.registration_id, &body.access_key) {
        (Some(rid), Some(key)) => {
            let reg = state
                .store
                .registration(rid)
                .await?
                .filter(|r| r.webinar_id == webinar.id)
                .ok_or_else(|| ApiError::not_found("registration"))?;
            if auth::access_key_hash(key) != reg.access_key_hash {
                return Err(ApiError::unauthorized(
                    "invalid_credentials",
                    "wrong access key",
                ));
            }
            match reg.status {
                RegistrationStatus::Pending => {
                    return Err(ApiError::forbidden(
                        "pending_approval",
                        "the registration is waiting for the host's approval",
                    ))
                }
                RegistrationStatus::Rejected => {
                    return Err(ApiError::forbidden(
                        "rejected",
                        "the registration was rejected",
                    ))
                }
                RegistrationStatus::Approved => {}
            }
            JoinResponse {
                token: state.tokens.join_token(&reg.id, &webinar.id, Some(&reg.id)),
                role: reg.role,
                webinar_id: webinar.id.clone(),
            }
        }
        (None, None) => {
            let user = match &caller.0 {
                Some(Principal::User(u)) => u,
                Some(Principal::Participant(_)) => {
                    return Err(ApiError::forbidden(
                        "forbidden",
                        "join with registration credentials or a host login token",
                    ))
                }
                None => {
                    return Err(ApiError::unauthorized(
                        "unauthenticated",
                        "send registrationId and accessKey, or a host login token",
                    ))
                }
            };
            let role = user_role(&state, user, &webinar).await?.ok_or_else(|| {
                ApiError::forbidden("forbidden", "you are not a host or co-host of this webinar")
            })?;
            JoinResponse {
                token: state.tokens.join_token(&user.id, &webinar.id, None),
                role,
                webinar_id: webinar.id.clone(),
            }
        }
        _ => {
            let mut e = FieldErrors::new();
            let missing = if body.registration_id.is_none() {
                "registrationId"
            } else {
                "accessKey"
            };
            e.insert(
                missing.into(),
                "is required with the other credential".into(),
            );
            return Err(ApiError::invalid(e));
        }
    };
    if webinar.status == WebinarStatus::Ended {
        return Err(ApiError::conflict("webinar_ended", "the webinar has ended"));
    }
    Ok(Json(response))
}
