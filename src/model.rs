//! The domain: what the platform stores about webinars and the people in
//! them. These are the stored shapes; the HTTP layer has its own views.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub type Timestamp = DateTime<Utc>;

/// Timestamps are stored as fixed-width RFC 3339 UTC text with milliseconds,
/// so that both stores order them correctly as strings.
pub mod rfc3339 {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(t: &Timestamp) -> String {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_some(&super::format(t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| {
                    chrono::DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(serde::de::Error::custom)
                })
                .transpose()
        }
    }
}

/// Now, truncated to the millisecond precision timestamps are stored with.
pub fn now() -> Timestamp {
    let t = Utc::now();
    DateTime::from_timestamp_millis(t.timestamp_millis()).expect("current time is representable")
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A host account (every user account may host webinars).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "_id")]
    pub id: String,
    /// Lower-cased; unique.
    pub email: String,
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebinarStatus {
    Setup,
    Live,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordingMode {
    Off,
    Manual,
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebinarSettings {
    pub chat: bool,
    pub recording: RecordingMode,
    pub transcription: bool,
    pub captions: bool,
}

impl Default for WebinarSettings {
    fn default() -> Self {
        Self {
            chat: true,
            recording: RecordingMode::Manual,
            transcription: false,
            captions: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webinar {
    #[serde(rename = "_id")]
    pub id: String,
    /// The user who created it; the webinar's host.
    pub host_id: String,
    pub title: String,
    pub description: Option<String>,
    #[serde(with = "rfc3339::option", default)]
    pub starts_at: Option<Timestamp>,
    pub duration_minutes: Option<u32>,
    /// Most attendees at once (hosts and co-hosts are not counted).
    pub capacity: u32,
    pub requires_approval: bool,
    pub settings: WebinarSettings,
    pub status: WebinarStatus,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub updated_at: Timestamp,
    #[serde(with = "rfc3339::option", default)]
    pub started_at: Option<Timestamp>,
    #[serde(with = "rfc3339::option", default)]
    pub ended_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationStatus {
    Pending,
    Approved,
    Rejected,
}

impl RegistrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Role {
    #[serde(rename = "host")]
    Host,
    #[serde(rename = "co-host")]
    CoHost,
    #[serde(rename = "attendee")]
    Attendee,
}

impl Role {
    /// Hosts and co-hosts present and manage the webinar.
    pub fn is_presenter(self) -> bool {
        matches!(self, Role::Host | Role::CoHost)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::CoHost => "co-host",
            Role::Attendee => "attendee",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    #[serde(rename = "_id")]
    pub id: String,
    pub webinar_id: String,
    pub name: String,
    /// Lower-cased; unique per webinar.
    pub email: String,
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub status: RegistrationStatus,
    /// Server-side role in the webinar; changes take effect at once.
    pub role: Role,
    /// SHA-256 (hex) of the access key handed out at registration.
    pub access_key_hash: String,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339::option", default)]
    pub decided_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Location {
    pub city: Option<String>,
    pub country: Option<String>,
}

/// One stay of one participant in a live webinar (join to leave).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttendanceSession {
    #[serde(rename = "_id")]
    pub id: String,
    pub webinar_id: String,
    pub registration_id: Option<String>,
    pub user_id: Option<String>,
    pub peer_id: String,
    pub name: String,
    pub role: Role,
    #[serde(with = "rfc3339")]
    pub joined_at: Timestamp,
    #[serde(with = "rfc3339::option", default)]
    pub left_at: Option<Timestamp>,
    #[serde(default)]
    pub location: Location,
}

impl AttendanceSession {
    pub fn watch_seconds(&self, now: Timestamp) -> i64 {
        let end = self.left_at.unwrap_or(now);
        (end - self.joined_at).num_seconds().max(0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    #[serde(rename = "_id")]
    pub id: String,
    pub webinar_id: String,
    pub peer_id: String,
    pub name: String,
    pub role: Role,
    pub text: String,
    #[serde(with = "rfc3339")]
    pub ts: Timestamp,
}

/// A final caption or a piece of the server-side transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptSegment {
    #[serde(rename = "_id")]
    pub id: String,
    pub webinar_id: String,
    /// Milliseconds from the webinar's start.
    pub start_ms: i64,
    pub end_ms: i64,
    pub speaker: String,
    pub text: String,
    pub lang: Option<String>,
    /// "caption" (pushed by a presenter's browser) or the provider's name.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordingStatus {
    Recording,
    Processing,
    Ready,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    #[serde(rename = "_id")]
    pub id: String,
    pub webinar_id: String,
    pub status: RecordingStatus,
    #[serde(with = "rfc3339")]
    pub started_at: Timestamp,
    #[serde(with = "rfc3339::option", default)]
    pub ended_at: Option<Timestamp>,
    pub duration_ms: Option<i64>,
    pub size_bytes: Option<i64>,
    /// Final MP4, relative to the data directory.
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// One summary per webinar: keyed by the webinar id.
    #[serde(rename = "_id")]
    pub webinar_id: String,
    /// "pending", "ready" or "failed".
    pub status: String,
    pub text: Option<String>,
    pub provider: String,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
}

/// Something that happened in a webinar, kept for reports (quality samples,
/// caption views, state changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsEvent {
    #[serde(rename = "_id")]
    pub id: String,
    pub webinar_id: String,
    pub kind: String,
    pub peer_id: Option<String>,
    pub data: serde_json::Value,
    #[serde(with = "rfc3339")]
    pub ts: Timestamp,
}
