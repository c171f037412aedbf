//! The data layer: one `Store` trait for everything the platform keeps, with
//! two implementations that pass the same contract suite: `EmbeddedStore` (a
//! redb file under the data directory; the default, so one command runs
//! everything) and `MongoStore` (the official driver, for production).

mod embedded;
mod mongo;

use std::sync::Arc;

use async_trait::async_trait;

pub use embedded::EmbeddedStore;
pub use mongo::MongoStore;

use crate::config::{Settings, StoreKind};
use crate::model::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (the text says which).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("store backend: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Every list is returned oldest first (by the time field that names it).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Fails with `Conflict` when the id or the e-mail is taken.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn user(&self, id: &str) -> StoreResult<Option<User>>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;

    async fn create_webinar(&self, webinar: &Webinar) -> StoreResult<()>;
    async fn webinar(&self, id: &str) -> StoreResult<Option<Webinar>>;
    /// By `created_at`.
    async fn webinars_by_host(&self, host_id: &str) -> StoreResult<Vec<Webinar>>;
    /// Replaces the stored webinar; `NotFound` when there is none.
    async fn update_webinar(&self, webinar: &Webinar) -> StoreResult<()>;

    /// Fails with `Conflict` when this e-mail is already registered for the webinar.
    async fn create_registration(&self, registration: &Registration) -> StoreResult<()>;
    async fn registration(&self, id: &str) -> StoreResult<Option<Registration>>;
    async fn registration_by_email(
        &self,
        webinar_id: &str,
        email: &str,
    ) -> StoreResult<Option<Registration>>;
    /// By `created_at`, optionally only those with `status`.
    async fn registrations(
        &self,
        webinar_id: &str,
        status: Option<RegistrationStatus>,
    ) -> StoreResult<Vec<Registration>>;
    /// Replaces the stored registration (the e-mail and webinar never change).
    async fn update_registration(&self, registration: &Registration) -> StoreResult<()>;

    /// Inserts or replaces (a session is written at join and again at leave).
    async fn put_attendance(&self, session: &AttendanceSession) -> StoreResult<()>;
    /// By `joined_at`.
    async fn attendance(&self, webinar_id: &str) -> StoreResult<Vec<AttendanceSession>>;

    async fn add_chat_message(&self, message: &ChatMessage) -> StoreResult<()>;
    /// The latest `limit` messages (all when `None`), oldest first.
    async fn chat_messages(
        &self,
        webinar_id: &str,
        limit: Option<usize>,
    ) -> StoreResult<Vec<ChatMessage>>;
    async fn count_chat_messages(&self, webinar_id: &str) -> StoreResult<u64>;

    async fn add_transcript_segment(&self, segment: &TranscriptSegment) -> StoreResult<()>;
    /// By `start_ms`.
    async fn transcript(&self, webinar_id: &str) -> StoreResult<Vec<TranscriptSegment>>;

    /// Inserts or replaces.
    async fn put_recording(&self, recording: &Recording) -> StoreResult<()>;
    async fn recording(&self, id: &str) -> StoreResult<Option<Recording>>;
    /// By `started_at`.
    async fn recordings(&self, webinar_id: &str) -> StoreResult<Vec<Recording>>;

    /// Inserts or replaces the webinar's summary.
    async fn put_summary(&self, summary: &Summary) -> StoreResult<()>;
    async fn summary(&self, webinar_id: &str) -> StoreResult<Option<Summary>>;

    async fn add_analytics_event(&self, event: &AnalyticsEvent) -> StoreResult<()>;
    /// By `ts`, optionally only events of `kind`.
    async fn analytics_events(
        &self,
        webinar_id: &str,
        kind: Option<&str>,
    ) -> StoreResult<Vec<AnalyticsEvent>>;
}

/// Opens the store the settings ask for.
pub async fn open(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match settings.store.kind {
        StoreKind::Embedded => {
            std::fs::create_dir_all(&settings.server.data_dir)?;
            let path = settings.server.data_dir.join("webinar.redb");
            Arc::new(EmbeddedStore::open(&path)?)
        }
        StoreKind::Mongodb => {
            let uri = settings
                .store
                .mongodb_uri
                .as_deref()
                .expect("validated: mongodb_uri is set when kind = mongodb");
            Arc::new(MongoStore::connect(uri, &settings.store.mongodb_database).await?)
        }
    })
}
