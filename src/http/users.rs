//! `/auth/login` and `/users`: host accounts.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody, FieldErrors};
use super::extract::{ApiJson, Caller, ClientIp, Validate};
use super::AppState;
use crate::auth;
use crate::model::{self, User};
use crate::store::StoreError;

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 256;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}
impl Validate for LoginRequest {}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub name: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub token: String,
    pub user: UserView,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    pub password: String,
    pub name: String,
}

/// A plausible address: one `@`, something before it, a dotted domain after.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && email.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub fn check_name(errors: &mut FieldErrors, name: &str) {
    let len = name.trim().chars().count();
    if len == 0 || len > 100 {
        errors.insert("name".into(), "must be 1 to 100 characters".into());
    }
}

impl Validate for CreateUser {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut e = FieldErrors::new();
        if !valid_email(self.email.trim()) {
            e.insert("email".into(), "is not a valid e-mail address".into());
        }
        let len = self.password.chars().count();
        if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&len) {
            e.insert(
                "password".into(),
                format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
            );
        }
        check_name(&mut e, &self.name);
        if e.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    state.login_limiter.check(ip)?;
    let email = body.email.trim().to_lowercase();
    let user = state.store.user_by_email(&email).await?;
    let password = body.password;
    // Hash even for unknown accounts so timing does not reveal which exist.
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hash.to_string());
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::internal("password check", e))?;
    match user {
        Some(user) if ok => Ok(Json(LoginResponse {
            token: state.tokens.login_token(&user.id),
            user: UserView::from(&user),
        })),
        _ => Err(ApiError::unauthorized(
            "invalid_credentials",
            "wrong e-mail or password",
        )),
    }
}

/// Creates a user and its password hash (on the blocking pool: argon2 is slow by design).
pub async fn create_user(
    state: &AppState,
    email: &str,
    password: &str,
    name: &str,
) -> Result<User, StoreError> {
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let user = User {
        id: model::new_id(),
        email: email.trim().to_lowercase(),
        name: name.trim().to_string(),
        password_hash: hash,
        created_at: model::now(),
    };
    state.store.create_user(&user).await?;
    Ok(user)
}

#[utoipa::path(post, path = "/api/v1/users", tag = "auth",
    request_body = CreateUser,
    security(("bearer" = [])),
    responses((status = 201, body = UserView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    caller.user()?;
    let user = create_user(&state, &body.email, &body.password, &body.name)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::conflict("email_taken", "an account with this e-mail exists")
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}
