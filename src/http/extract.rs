//! Extractors of the HTTP edge: JSON bodies that fail with our error shape
//! (400 for malformed JSON, 422 naming the field for wrong or missing
//! fields, 413 for oversize bodies), the authenticated caller, and the
//! client address (believing `X-Forwarded-For` only from trusted proxies).

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldErrors};
use super::AppState;
use crate::auth::{Claims, TokenError, TokenKind};
use crate::config::TrustedProxy;
use crate::model::User;

/// A request body type checks its own values after parsing.
pub trait Validate {
    fn validate(&self) -> Result<(), FieldErrors> {
        Ok(())
    }
}

/// A JSON body, parsed and validated.
pub struct ApiJson<T>(pub T);

/// A JSON body that may be absent (an empty body reads as `T::default()`).
pub struct OptionalJson<T>(pub T);

async fn body_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(state.settings.limits.max_body_bytes)
        } else {
            ApiError::bad_request("unreadable_body", rejection.body_text())
        }
    })
}

fn check_content_type(req: &Request) -> Result<(), ApiError> {
    let ok = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "unsupported_content_type",
            "expected Content-Type: application/json",
        ))
    }
}

/// Parses JSON into `T`: syntax errors are 400, shape errors 422 with the
/// offending field named in `details`, then `T`'s own validation.
pub fn parse_json<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would read a struct from a JSON array too; every body here is an object.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b == b'[' || b.is_ascii_digit() || b == b'"' || b == b'-') {
        return Err(ApiError::invalid_field("body", "must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    let message = inner.to_string();
                    let field = field_of(&path, &message);
                    ApiError::invalid(FieldErrors::from([(field, strip_position(&message))]))
                }
                _ => ApiError::bad_request("malformed_json", format!("malformed JSON: {inner}")),
            });
        }
    };
    de.end()
        .map_err(|e| ApiError::bad_request("malformed_json", format!("malformed JSON: {e}")))?;
    value.validate().map_err(ApiError::invalid)?;
    Ok(value)
}

/// serde reports missing and unknown fields at the enclosing object's path,
/// naming the field only in its message; details name the field itself.
fn field_of(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        // Unknown fields are reported at their own path already.
        (p, Some(f)) if p == f || p.ends_with(&format!(".{f}")) => p.to_string(),
        (".", Some(f)) => f.to_string(),
        (p, Some(f)) => format!("{p}.{f}"),
        (".", None) => "body".to_string(),
        (p, None) => p.to_string(),
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

impl<T: DeserializeOwned + Validate> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        check_content_type(&req)?;
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

impl<T: DeserializeOwned + Validate + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        if has_type {
            check_content_type(&req)?;
        }
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !has_type {
            return Err(ApiError::bad_request(
                "unsupported_content_type",
                "expected Content-Type: application/json",
            ));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Who is calling, from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A login token: a user account (a host).
    User(User),
    /// A join token: a participant of one webinar.
    Participant(Claims),
}

/// The caller, if any. A token that is present but bad is refused (401)
/// even where anonymous calls are allowed.
pub struct Caller(pub Option<Principal>);

impl Caller {
    /// A login-token user; 401 without a token, 403 with a join token.
    pub fn user(&self) -> Result<&User, ApiError> {
        match &self.0 {
            Some(Principal::User(u)) => Ok(u),
            Some(Principal::Participant(_)) => Err(ApiError::forbidden(
                "forbidden",
                "this needs a host login token, not a join token",
            )),
            None => Err(unauthenticated()),
        }
    }

    pub fn require(&self) -> Result<&Principal, ApiError> {
        self.0.as_ref().ok_or_else(unauthenticated)
    }
}

fn unauthenticated() -> ApiError {
    ApiError::unauthorized("unauthenticated", "missing Authorization: Bearer token")
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Ok(Caller(None));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("invalid_token", "expected a Bearer token"))?;
        let claims = state.tokens.verify(token).map_err(|e| match e {
            TokenError::Expired => ApiError::unauthorized("token_expired", "token expired"),
            TokenError::Invalid => ApiError::unauthorized("invalid_token", "invalid token"),
        })?;
        match claims.kind {
            TokenKind::Login => {
                let user = state
                    .store
                    .user(&claims.sub)
                    .await?
                    .ok_or_else(|| ApiError::unauthorized("invalid_token", "unknown user"))?;
                Ok(Caller(Some(Principal::User(user))))
            }
            TokenKind::Join => Ok(Caller(Some(Principal::Participant(claims)))),
        }
    }
}

/// The client's address.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let xff = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Ok(ClientIp(client_ip(
            peer,
            xff,
            &state.settings.server.trusted_proxies,
        )))
    }
}

/// The client behind a chain of proxies: walking `X-Forwarded-For` from the
/// right, the first address that is not a trusted proxy. Only when the
/// direct peer itself is trusted is the header read at all.
pub fn client_ip(peer: IpAddr, xff: Option<&str>, trusted: &[TrustedProxy]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|t| t.0.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(xff) = xff else { return peer };
    let mut client = peer;
    for hop in xff.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> Vec<TrustedProxy> {
        list.iter()
            .map(|s| TrustedProxy::try_from(s.to_string()).unwrap())
            .collect()
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let peer: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, Some("1.2.3.4"), &proxies(&["10.0.0.0/8"])),
            peer
        );
    }

    #[test]
    fn forwarded_for_from_a_trusted_proxy_gives_the_first_untrusted_hop() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let t = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(peer, Some("6.6.6.6, 81.2.69.142, 10.0.0.9"), &t),
            "81.2.69.142".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, Some("garbage"), &t), peer);
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }
    impl Validate for Body {}

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"name":"a"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.details.unwrap().get("count").is_some());
        let e = parse_json::<Body>(br#"{"name":"a","count":"x"}"#).unwrap_err();
        assert!(e.details.unwrap().get("count").is_some());
        let e = parse_json::<Body>(br#"{"name":"a","count":1,"extra":1}"#).unwrap_err();
        assert!(e.details.unwrap().get("extra").is_some());
        let e = parse_json::<Body>(br#"{"name":"a","#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_json::<Body>(br#"{"name":"a","count":1} x"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
