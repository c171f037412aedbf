//! The embedded store: one redb file, JSON documents keyed by id, and index
//! tables whose keys are `<webinar id>\0<sortable time>\0<id>` so that lists
//! are ordered range scans. Every write is a committed (durable) transaction.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Store, StoreError, StoreResult};
use crate::model::*;

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

const USERS: Table = TableDefinition::new("users");
const USER_EMAILS: Table = TableDefinition::new("users_by_email");
const WEBINARS: Table = TableDefinition::new("webinars");
const WEBINARS_BY_HOST: Table = TableDefinition::new("webinars_by_host");
const REGISTRATIONS: Table = TableDefinition::new("registrations");
const REGISTRATIONS_BY_WEBINAR: Table = TableDefinition::new("registrations_by_webinar");
const REGISTRATIONS_BY_EMAIL: Table = TableDefinition::new("registrations_by_email");
const ATTENDANCE: Table = TableDefinition::new("attendance");
const ATTENDANCE_BY_WEBINAR: Table = TableDefinition::new("attendance_by_webinar");
const CHAT: Table = TableDefinition::new("chat_by_webinar");
const TRANSCRIPT: Table = TableDefinition::new("transcript_by_webinar");
const RECORDINGS: Table = TableDefinition::new("recordings");
const RECORDINGS_BY_WEBINAR: Table = TableDefinition::new("recordings_by_webinar");
const SUMMARIES: Table = TableDefinition::new("summaries");
const EVENTS: Table = TableDefinition::new("events_by_webinar");

const ALL_TABLES: [Table; 15] = [
    USERS,
    USER_EMAILS,
    WEBINARS,
    WEBINARS_BY_HOST,
    REGISTRATIONS,
    REGISTRATIONS_BY_WEBINAR,
    REGISTRATIONS_BY_EMAIL,
    ATTENDANCE,
    ATTENDANCE_BY_WEBINAR,
    CHAT,
    TRANSCRIPT,
    RECORDINGS,
    RECORDINGS_BY_WEBINAR,
    SUMMARIES,
    EVENTS,
];

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(backend)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(backend)
}

fn key(parts: &[&str]) -> String {
    parts.join("\0")
}

/// The half-open key range of every index key that starts with `prefix\0`.
fn prefix_range(prefix: &str) -> (String, String) {
    (format!("{prefix}\0"), format!("{prefix}\u{1}"))
}

fn padded(n: i64) -> String {
    // Offset so negative values (never expected) still sort before positive ones.
    format!("{:020}", (n as i128 + i64::MAX as i128 + 1) as u128)
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        for table in ALL_TABLES {
            txn.open_table(table)?;
        }
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// redb is synchronous; its work goes to the blocking pool so that a
    /// disk sync never stalls the async runtime.
    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(backend)?
    }

    async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
        id: &str,
    ) -> StoreResult<Option<T>> {
        let id = id.to_string();
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(table).map_err(backend)?;
            let value = t.get(id.as_str()).map_err(backend)?;
            value.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    /// Documents of `table` whose ids are the values of the index entries
    /// under `prefix`, in index order.
    async fn by_index<T: DeserializeOwned + Send + 'static>(
        &self,
        index: Table,
        table: Table,
        prefix: String,
    ) -> StoreResult<Vec<T>> {
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let idx = txn.open_table(index).map_err(backend)?;
            let docs = txn.open_table(table).map_err(backend)?;
            let (start, end) = prefix_range(&prefix);
            let mut out = Vec::new();
            for entry in idx.range(start.as_str()..end.as_str()).map_err(backend)? {
                let (_, id) = entry.map_err(backend)?;
                let id = std::str::from_utf8(id.value()).map_err(backend)?;
                if let Some(doc) = docs.get(id).map_err(backend)? {
                    out.push(decode(doc.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Documents stored directly under index keys starting with `prefix`.
    async fn scan<T: DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
        prefix: String,
        latest: Option<usize>,
    ) -> StoreResult<Vec<T>> {
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(table).map_err(backend)?;
            let (start, end) = prefix_range(&prefix);
            let range = t.range(start.as_str()..end.as_str()).map_err(backend)?;
            let mut out = Vec::new();
            match latest {
                Some(n) => {
                    for entry in range.rev().take(n) {
                        out.push(decode(entry.map_err(backend)?.1.value())?);
                    }
                    out.reverse();
                }
                None => {
                    for entry in range {
                        out.push(decode(entry.map_err(backend)?.1.value())?);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Writes one document (and its index entries) in one transaction.
    /// `unique` entries must not exist yet; `index` entries are (re)written.
    async fn write(
        &self,
        table: Table,
        id: String,
        doc: Vec<u8>,
        must_exist: Option<bool>,
        unique: Vec<(Table, String, String)>,
        index: Vec<(Table, String)>,
    ) -> StoreResult<()> {
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut t = txn.open_table(table).map_err(backend)?;
                let exists = t.get(id.as_str()).map_err(backend)?.is_some();
                match must_exist {
                    Some(true) if !exists => return Err(StoreError::NotFound(id)),
                    Some(false) if exists => {
                        return Err(StoreError::Conflict(format!("id {id} exists")))
                    }
                    _ => {}
                }
                for (utable, ukey, what) in &unique {
                    let mut u = txn.open_table(*utable).map_err(backend)?;
                    if u.get(ukey.as_str()).map_err(backend)?.is_some() {
                        return Err(StoreError::Conflict(what.clone()));
                    }
                    u.insert(ukey.as_str(), id.as_bytes()).map_err(backend)?;
                }
                for (itable, ikey) in &index {
                    let mut i = txn.open_table(*itable).map_err(backend)?;
                    i.insert(ikey.as_str(), id.as_bytes()).map_err(backend)?;
                }
                t.insert(id.as_str(), doc.as_slice()).map_err(backend)?;
            }
            // Dropping an uncommitted transaction (the early returns above)
            // aborts it, so a refused write changes nothing.
            txn.commit().map_err(backend)
        })
        .await
    }

    /// Inserts a document stored directly under an ordered key.
    async fn append(&self, table: Table, key: String, doc: Vec<u8>) -> StoreResult<()> {
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut t = txn.open_table(table).map_err(backend)?;
                if t.get(key.as_str()).map_err(backend)?.is_some() {
                    return Err(StoreError::Conflict("duplicate id".into()));
                }
                t.insert(key.as_str(), doc.as_slice()).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.write(
            USERS,
            user.id.clone(),
            encode(user)?,
            Some(false),
            vec![(
                USER_EMAILS,
                user.email.clone(),
                format!("e-mail {} is taken", user.email),
            )],
            vec![],
        )
        .await
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        self.get(USERS, id).await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email.to_string();
        let id: Option<String> = self
            .run(move |db| {
                let txn = db.begin_read().map_err(backend)?;
                let t = txn.open_table(USER_EMAILS).map_err(backend)?;
                let v = t.get(email.as_str()).map_err(backend)?;
                Ok(v.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
            })
            .await?;
        match id {
            Some(id) => self.user(&id).await,
            None => Ok(None),
        }
    }

    async fn create_webinar(&self, webinar: &Webinar) -> StoreResult<()> {
        let idx = key(&[
            &webinar.host_id,
            &rfc3339::format(&webinar.created_at),
            &webinar.id,
        ]);
        self.write(
            WEBINARS,
            webinar.id.clone(),
            encode(webinar)?,
            Some(false),
            vec![],
            vec![(WEBINARS_BY_HOST, idx)],
        )
        .await
    }

    async fn webinar(&self, id: &str) -> StoreResult<Option<Webinar>> {
        self.get(WEBINARS, id).await
    }

    async fn webinars_by_host(&self, host_id: &str) -> StoreResult<Vec<Webinar>> {
        self.by_index(WEBINARS_BY_HOST, WEBINARS, host_id.to_string())
            .await
    }

    async fn update_webinar(&self, webinar: &Webinar) -> StoreResult<()> {
        self.write(
            WEBINARS,
            webinar.id.clone(),
            encode(webinar)?,
            Some(true),
            vec![],
            vec![],
        )
        .await
    }

    async fn create_registration(&self, r: &Registration) -> StoreResult<()> {
        let idx = key(&[&r.webinar_id, &rfc3339::format(&r.created_at), &r.id]);
        self.write(
            REGISTRATIONS,
            r.id.clone(),
            encode(r)?,
            Some(false),
            vec![(
                REGISTRATIONS_BY_EMAIL,
                key(&[&r.webinar_id, &r.email]),
                format!("{} is already registered", r.email),
            )],
            vec![(REGISTRATIONS_BY_WEBINAR, idx)],
        )
        .await
    }

    async fn registration(&self, id: &str) -> StoreResult<Option<Registration>> {
        self.get(REGISTRATIONS, id).await
    }

    async fn registration_by_email(
        &self,
        webinar_id: &str,
        email: &str,
    ) -> StoreResult<Option<Registration>> {
        let k = key(&[webinar_id, email]);
        let id: Option<String> = self
            .run(move |db| {
                let txn = db.begin_read().map_err(backend)?;
                let t = txn.open_table(REGISTRATIONS_BY_EMAIL).map_err(backend)?;
                let v = t.get(k.as_str()).map_err(backend)?;
                Ok(v.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
            })
            .await?;
        match id {
            Some(id) => self.registration(&id).await,
            None => Ok(None),
        }
    }

    async fn registrations(
        &self,
        webinar_id: &str,
        status: Option<RegistrationStatus>,
    ) -> StoreResult<Vec<Registration>> {
        let all: Vec<Registration> = self
            .by_index(
                REGISTRATIONS_BY_WEBINAR,
                REGISTRATIONS,
                webinar_id.to_string(),
            )
            .await?;
        Ok(all
            .into_iter()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .collect())
    }

    async fn update_registration(&self, r: &Registration) -> StoreResult<()> {
        self.write(
            REGISTRATIONS,
            r.id.clone(),
            encode(r)?,
            Some(true),
            vec![],
            vec![],
        )
        .await
    }

    async fn put_attendance(&self, s: &AttendanceSession) -> StoreResult<()> {
        let idx = key(&[&s.webinar_id, &rfc3339::format(&s.joined_at), &s.id]);
        self.write(
            ATTENDANCE,
            s.id.clone(),
            encode(s)?,
            None,
            vec![],
            vec![(ATTENDANCE_BY_WEBINAR, idx)],
        )
        .await
    }

    async fn attendance(&self, webinar_id: &str) -> StoreResult<Vec<AttendanceSession>> {
        self.by_index(ATTENDANCE_BY_WEBINAR, ATTENDANCE, webinar_id.to_string())
            .await
    }

    async fn add_chat_message(&self, m: &ChatMessage) -> StoreResult<()> {
        let k = key(&[&m.webinar_id, &rfc3339::format(&m.ts), &m.id]);
        self.append(CHAT, k, encode(m)?).await
    }

    async fn chat_messages(
        &self,
        webinar_id: &str,
        limit: Option<usize>,
    ) -> StoreResult<Vec<ChatMessage>> {
        self.scan(CHAT, webinar_id.to_string(), limit).await
    }

    async fn count_chat_messages(&self, webinar_id: &str) -> StoreResult<u64> {
        let prefix = webinar_id.to_string();
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(CHAT).map_err(backend)?;
            let (start, end) = prefix_range(&prefix);
            let n = t
                .range(start.as_str()..end.as_str())
                .map_err(backend)?
                .count();
            Ok(n as u64)
        })
        .await
    }

    async fn add_transcript_segment(&self, s: &TranscriptSegment) -> StoreResult<()> {
        let k = key(&[&s.webinar_id, &padded(s.start_ms), &s.id]);
        self.append(TRANSCRIPT, k, encode(s)?).await
    }

    async fn transcript(&self, webinar_id: &str) -> StoreResult<Vec<TranscriptSegment>> {
        self.scan(TRANSCRIPT, webinar_id.to_string(), None).await
    }

    async fn put_recording(&self, r: &Recording) -> StoreResult<()> {
        let idx = key(&[&r.webinar_id, &rfc3339::format(&r.started_at), &r.id]);
        self.write(
            RECORDINGS,
            r.id.clone(),
            encode(r)?,
            None,
            vec![],
            vec![(RECORDINGS_BY_WEBINAR, idx)],
        )
        .await
    }

    async fn recording(&self, id: &str) -> StoreResult<Option<Recording>> {
        self.get(RECORDINGS, id).await
    }

    async fn recordings(&self, webinar_id: &str) -> StoreResult<Vec<Recording>> {
        self.by_index(RECORDINGS_BY_WEBINAR, RECORDINGS, webinar_id.to_string())
            .await
    }

    async fn put_summary(&self, s: &Summary) -> StoreResult<()> {
        self.write(
            SUMMARIES,
            s.webinar_id.clone(),
            encode(s)?,
            None,
            vec![],
            vec![],
        )
        .await
    }

    async fn summary(&self, webinar_id: &str) -> StoreResult<Option<Summary>> {
        self.get(SUMMARIES, webinar_id).await
    }

    async fn add_analytics_event(&self, e: &AnalyticsEvent) -> StoreResult<()> {
        let k = key(&[&e.webinar_id, &rfc3339::format(&e.ts), &e.id]);
        self.append(EVENTS, k, encode(e)?).await
    }

    async fn analytics_events(
        &self,
        webinar_id: &str,
        kind: Option<&str>,
    ) -> StoreResult<Vec<AnalyticsEvent>> {
        let all: Vec<AnalyticsEvent> = self.scan(EVENTS, webinar_id.to_string(), None).await?;
        Ok(all
            .into_iter()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .collect())
    }
}
