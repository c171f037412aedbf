//! The MongoDB store (official `mongodb` driver): one collection per kind of
//! document, with the indexes production needs: unique e-mail per user and per
//! webinar registration, and (webinar, time) indexes for every per-webinar list.

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::error::{Error, ErrorKind, WriteFailure};
use mongodb::options::IndexOptions;
use mongodb::{Client, Collection, Database, IndexModel};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Store, StoreError, StoreResult};
use crate::model::*;

#[derive(Clone)]
pub struct MongoStore {
    db: Database,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn is_duplicate_key(e: &Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(we)) => we.code == 11000,
        ErrorKind::Command(ce) => ce.code == 11000,
        _ => false,
    }
}

impl MongoStore {
    /// Connects, checks the server answers, and creates the indexes
    /// (idempotent). The database is the URI's, else `default_database`.
    pub async fn connect(uri: &str, default_database: &str) -> anyhow::Result<Self> {
        let client = Client::with_uri_str(uri).await?;
        let db = client
            .default_database()
            .unwrap_or_else(|| client.database(default_database));
        db.run_command(doc! {"ping": 1}).await?;
        let store = Self { db };
        store.create_indexes().await?;
        Ok(store)
    }

    async fn create_indexes(&self) -> anyhow::Result<()> {
        let unique = |keys: Document| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(true).build())
                .build()
        };
        let plain = |keys: Document| IndexModel::builder().keys(keys).build();
        self.raw("users")
            .create_index(unique(doc! {"email": 1}))
            .await?;
        self.raw("webinars")
            .create_index(plain(doc! {"host_id": 1, "created_at": 1}))
            .await?;
        let registrations = self.raw("registrations");
        registrations
            .create_index(unique(doc! {"webinar_id": 1, "email": 1}))
            .await?;
        registrations
            .create_index(plain(doc! {"webinar_id": 1, "created_at": 1}))
            .await?;
        self.raw("attendance")
            .create_index(plain(doc! {"webinar_id": 1, "joined_at": 1}))
            .await?;
        self.raw("chat_messages")
            .create_index(plain(doc! {"webinar_id": 1, "ts": 1}))
            .await?;
        self.raw("transcript_segments")
            .create_index(plain(doc! {"webinar_id": 1, "start_ms": 1}))
            .await?;
        self.raw("recordings")
            .create_index(plain(doc! {"webinar_id": 1, "started_at": 1}))
            .await?;
        self.raw("analytics_events")
            .create_index(plain(doc! {"webinar_id": 1, "ts": 1}))
            .await?;
        Ok(())
    }

    fn raw(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    fn coll<T: Send + Sync>(&self, name: &str) -> Collection<T> {
        self.db.collection(name)
    }

    async fn insert<T: Serialize + Send + Sync>(
        &self,
        name: &str,
        value: &T,
        conflict: impl FnOnce() -> String,
    ) -> StoreResult<()> {
        match self.coll::<T>(name).insert_one(value).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::Conflict(conflict())),
            Err(e) => Err(backend(e)),
        }
    }

    async fn replace<T: Serialize + Send + Sync>(
        &self,
        name: &str,
        id: &str,
        value: &T,
        upsert: bool,
    ) -> StoreResult<()> {
        let result = self
            .coll::<T>(name)
            .replace_one(doc! {"_id": id}, value)
            .upsert(upsert)
            .await
            .map_err(|e| {
                if is_duplicate_key(&e) {
                    StoreError::Conflict(format!("{name} {id}"))
                } else {
                    backend(e)
                }
            })?;
        if !upsert && result.matched_count == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(())
    }

    async fn one<T: DeserializeOwned + Send + Sync>(
        &self,
        name: &str,
        filter: Document,
    ) -> StoreResult<Option<T>> {
        self.coll::<T>(name).find_one(filter).await.map_err(backend)
    }

    async fn list<T: DeserializeOwned + Send + Sync>(
        &self,
        name: &str,
        filter: Document,
        sort: Document,
    ) -> StoreResult<Vec<T>> {
        self.coll::<T>(name)
            .find(filter)
            .sort(sort)
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.insert("users", user, || format!("e-mail {} is taken", user.email))
            .await
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        self.one("users", doc! {"_id": id}).await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.one("users", doc! {"email": email}).await
    }

    async fn create_webinar(&self, webinar: &Webinar) -> StoreResult<()> {
        self.insert("webinars", webinar, || format!("webinar {}", webinar.id))
            .await
    }

    async fn webinar(&self, id: &str) -> StoreResult<Option<Webinar>> {
        self.one("webinars", doc! {"_id": id}).await
    }

    async fn webinars_by_host(&self, host_id: &str) -> StoreResult<Vec<Webinar>> {
        self.list(
            "webinars",
            doc! {"host_id": host_id},
            doc! {"created_at": 1, "_id": 1},
        )
        .await
    }

    async fn update_webinar(&self, webinar: &Webinar) -> StoreResult<()> {
        self.replace("webinars", &webinar.id, webinar, false).await
    }

    async fn create_registration(&self, r: &Registration) -> StoreResult<()> {
        self.insert("registrations", r, || {
            format!("{} is already registered", r.email)
        })
        .await
    }

    async fn registration(&self, id: &str) -> StoreResult<Option<Registration>> {
        self.one("registrations", doc! {"_id": id}).await
    }

    async fn registration_by_email(
        &self,
        webinar_id: &str,
        email: &str,
    ) -> StoreResult<Option<Registration>> {
        self.one(
            "registrations",
            doc! {"webinar_id": webinar_id, "email": email},
        )
        .await
    }

    async fn registrations(
        &self,
        webinar_id: &str,
        status: Option<RegistrationStatus>,
    ) -> StoreResult<Vec<Registration>> {
        let mut filter = doc! {"webinar_id": webinar_id};
        if let Some(s) = status {
            filter.insert("status", s.as_str());
        }
        self.list("registrations", filter, doc! {"created_at": 1, "_id": 1})
            .await
    }

    async fn update_registration(&self, r: &Registration) -> StoreResult<()> {
        self.replace("registrations", &r.id, r, false).await
    }

    async fn put_attendance(&self, s: &AttendanceSession) -> StoreResult<()> {
        self.replace("attendance", &s.id, s, true).await
    }

    async fn attendance(&self, webinar_id: &str) -> StoreResult<Vec<AttendanceSession>> {
        self.list(
            "attendance",
            doc! {"webinar_id": webinar_id},
            doc! {"joined_at": 1, "_id": 1},
        )
        .await
    }

    async fn add_chat_message(&self, m: &ChatMessage) -> StoreResult<()> {
        self.insert("chat_messages", m, || format!("chat message {}", m.id))
            .await
    }

    async fn chat_messages(
        &self,
        webinar_id: &str,
        limit: Option<usize>,
    ) -> StoreResult<Vec<ChatMessage>> {
        let filter = doc! {"webinar_id": webinar_id};
        match limit {
            None => {
                self.list("chat_messages", filter, doc! {"ts": 1, "_id": 1})
                    .await
            }
            Some(n) => {
                let mut latest: Vec<ChatMessage> = self
                    .coll::<ChatMessage>("chat_messages")
                    .find(filter)
                    .sort(doc! {"ts": -1, "_id": -1})
                    .limit(i64::try_from(n).unwrap_or(i64::MAX))
                    .await
                    .map_err(backend)?
                    .try_collect()
                    .await
                    .map_err(backend)?;
                latest.reverse();
                Ok(latest)
            }
        }
    }

    async fn count_chat_messages(&self, webinar_id: &str) -> StoreResult<u64> {
        self.raw("chat_messages")
            .count_documents(doc! {"webinar_id": webinar_id})
            .await
            .map_err(backend)
    }

    async fn add_transcript_segment(&self, s: &TranscriptSegment) -> StoreResult<()> {
        self.insert("transcript_segments", s, || format!("segment {}", s.id))
            .await
    }

    async fn transcript(&self, webinar_id: &str) -> StoreResult<Vec<TranscriptSegment>> {
        self.list(
            "transcript_segments",
            doc! {"webinar_id": webinar_id},
            doc! {"start_ms": 1, "_id": 1},
        )
        .await
    }

    async fn put_recording(&self, r: &Recording) -> StoreResult<()> {
        self.replace("recordings", &r.id, r, true).await
    }

    async fn recording(&self, id: &str) -> StoreResult<Option<Recording>> {
        self.one("recordings", doc! {"_id": id}).await
    }

    async fn recordings(&self, webinar_id: &str) -> StoreResult<Vec<Recording>> {
        self.list(
            "recordings",
            doc! {"webinar_id": webinar_id},
            doc! {"started_at": 1, "_id": 1},
        )
        .await
    }

    async fn put_summary(&self, s: &Summary) -> StoreResult<()> {
        self.replace("summaries", &s.webinar_id, s, true).await
    }

    async fn summary(&self, webinar_id: &str) -> StoreResult<Option<Summary>> {
        self.one("summaries", doc! {"_id": webinar_id}).await
    }

    async fn add_analytics_event(&self, e: &AnalyticsEvent) -> StoreResult<()> {
        self.insert("analytics_events", e, || format!("event {}", e.id))
            .await
    }

    async fn analytics_events(
        &self,
        webinar_id: &str,
        kind: Option<&str>,
    ) -> StoreResult<Vec<AnalyticsEvent>> {
        let mut filter = doc! {"webinar_id": webinar_id};
        if let Some(k) = kind {
            filter.insert("kind", k);
        }
        self.list("analytics_events", filter, doc! {"ts": 1, "_id": 1})
            .await
    }
}
