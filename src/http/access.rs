//! Who may do what to a webinar. Roles come from the store on every call
//! (server-side state is authoritative), never from the token alone.

use super::error::{ApiError, ApiResult};
use super::extract::{Caller, Principal};
use super::AppState;
use crate::model::{RegistrationStatus, Role, User, Webinar};

pub async fn load_webinar(state: &AppState, id: &str) -> ApiResult<Webinar> {
    state
        .store
        .webinar(id)
        .await?
        .ok_or_else(|| ApiError::not_found("webinar"))
}

/// The role a user account has in a webinar: its host, or a co-host through
/// an approved registration under the account's e-mail.
pub async fn user_role(
    state: &AppState,
    user: &User,
    webinar: &Webinar,
) -> ApiResult<Option<Role>> {
    if webinar.host_id == user.id {
        return Ok(Some(Role::Host));
    }
    let reg = state
        .store
        .registration_by_email(&webinar.id, &user.email)
        .await?;
    Ok(reg
        .filter(|r| r.status == RegistrationStatus::Approved && r.role == Role::CoHost)
        .map(|_| Role::CoHost))
}

/// The caller's current role in `webinar`, if any.
pub async fn role_in(
    state: &AppState,
    principal: &Principal,
    webinar: &Webinar,
) -> ApiResult<Option<Role>> {
    match principal {
        Principal::User(user) => user_role(state, user, webinar).await,
        Principal::Participant(claims) => {
            if claims.wid.as_deref() != Some(webinar.id.as_str()) {
                return Ok(None);
            }
            if let Some(rid) = &claims.rid {
                let reg = state.store.registration(rid).await?;
                return Ok(reg
                    .filter(|r| {
                        r.webinar_id == webinar.id && r.status == RegistrationStatus::Approved
                    })
                    .map(|r| r.role));
            }
            match state.store.user(&claims.sub).await? {
                Some(user) => user_role(state, &user, webinar).await,
                None => Ok(None),
            }
        }
    }
}

/// Hosts and co-hosts only: 401 without credentials, 403 for anyone else.
pub async fn require_presenter(
    state: &AppState,
    caller: &Caller,
    webinar: &Webinar,
) -> ApiResult<Role> {
    let principal = caller.require()?;
    match role_in(state, principal, webinar).await? {
        Some(role) if role.is_presenter() => Ok(role),
        _ => Err(ApiError::forbidden(
            "forbidden",
            "only the webinar's host and co-hosts may do this",
        )),
    }
}

/// The webinar's host only.
pub async fn require_host(state: &AppState, caller: &Caller, webinar: &Webinar) -> ApiResult<()> {
    let principal = caller.require()?;
    match role_in(state, principal, webinar).await? {
        Some(Role::Host) => Ok(()),
        _ => Err(ApiError::forbidden(
            "forbidden",
            "only the webinar's host may do this",
        )),
    }
}
