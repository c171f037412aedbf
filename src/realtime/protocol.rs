//! The shape of Socket.IO requests and answers: every acknowledgement is
//! `{ok: true, data}` or `{ok: false, error: {code, message}}`, and payloads
//! are parsed strictly into typed requests, so that a bad payload becomes an
//! error ack instead of a dropped event.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::store::StoreError;

/// Why a request was refused; `code` is stable snake_case for clients.
#[derive(Debug, Clone, PartialEq)]
pub struct EventError {
    pub code: &'static str,
    pub message: String,
}

pub type EventResult = Result<Value, EventError>;

impl EventError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid_payload", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new("forbidden", message)
    }

    pub fn not_joined() -> Self {
        Self::new("not_joined", "send `join` first")
    }

    pub fn webinar_ended() -> Self {
        Self::new("webinar_ended", "the webinar has ended")
    }

    pub fn peer_not_found(peer_id: &str) -> Self {
        Self::new(
            "not_found",
            format!("peer {peer_id} is not in this webinar"),
        )
    }

    /// Logged in full; the client only learns that something failed.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!("realtime {context}: {error}");
        Self::new("internal", "internal server error")
    }
}

impl From<StoreError> for EventError {
    fn from(e: StoreError) -> Self {
        Self::internal("store", e)
    }
}

/// The acknowledgement body for a result.
pub fn envelope(result: &EventResult) -> Value {
    match result {
        Ok(data) => json!({"ok": true, "data": data}),
        Err(e) => json!({"ok": false, "error": {"code": e.code, "message": e.message}}),
    }
}

/// A request payload as `T`. A missing payload reads as `{}` (clients emit
/// `join` with only a callback); anything but an object is refused.
pub fn parse<T: DeserializeOwned>(data: Value) -> Result<T, EventError> {
    let data = match data {
        Value::Null => Value::Object(Default::default()),
        Value::Object(map) => Value::Object(map),
        _ => return Err(EventError::invalid("the payload must be a JSON object")),
    };
    serde_json::from_value(data).map_err(|e| EventError::invalid(e.to_string()))
}

/// An empty request (`{}`); unknown fields are refused like everywhere else.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Chat {
        text: String,
    }

    #[test]
    fn payloads_that_are_not_objects_are_refused() {
        assert!(parse::<Empty>(Value::Null).is_ok());
        assert_eq!(
            parse::<Empty>(json!([1])).unwrap_err().code,
            "invalid_payload"
        );
        assert_eq!(
            parse::<Chat>(json!("hi")).unwrap_err().code,
            "invalid_payload"
        );
        assert_eq!(
            parse::<Chat>(json!({"text": 1})).unwrap_err().code,
            "invalid_payload"
        );
        assert_eq!(
            parse::<Chat>(json!({"text": "a", "x": 1}))
                .unwrap_err()
                .code,
            "invalid_payload"
        );
    }

    #[test]
    fn acks_have_the_contract_envelope() {
        assert_eq!(
            envelope(&Ok(json!({"a": 1}))),
            json!({"ok": true, "data": {"a": 1}})
        );
        assert_eq!(
            envelope(&Err(EventError::not_joined())),
            json!({"ok": false, "error": {"code": "not_joined", "message": "send `join` first"}})
        );
    }
}
