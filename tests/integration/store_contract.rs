//! The contract every `Store` implementation keeps, run against the embedded
//! store and against MongoDB (a real wire-protocol server).

use std::sync::Arc;

use chrono::Duration;
use webinar::model::*;
use webinar::store::{EmbeddedStore, MongoStore, Store, StoreError};

use crate::common::mongo_base_uri;

async fn embedded() -> (Arc<dyn Store>, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("db.redb")).unwrap();
    (Arc::new(store), Some(dir))
}

async fn mongo() -> (Arc<dyn Store>, Option<tempfile::TempDir>) {
    let db = format!("contract_{}", uuid::Uuid::new_v4().simple());
    let store = MongoStore::connect(mongo_base_uri(), &db).await.unwrap();
    (Arc::new(store), None)
}

fn user(email: &str) -> User {
    User {
        id: new_id(),
        email: email.into(),
        name: "U".into(),
        password_hash: "h".into(),
        created_at: now(),
    }
}

fn webinar(host: &str, created: Timestamp) -> Webinar {
    Webinar {
        id: new_id(),
        host_id: host.into(),
        title: "T".into(),
        description: None,
        starts_at: Some(created + Duration::days(1)),
        duration_minutes: Some(60),
        capacity: 10,
        requires_approval: true,
        settings: WebinarSettings::default(),
        status: WebinarStatus::Setup,
        created_at: created,
        updated_at: created,
        started_at: None,
        ended_at: None,
    }
}

fn registration(webinar: &str, email: &str, created: Timestamp) -> Registration {
    let mut fields = serde_json::Map::new();
    fields.insert("company".into(), "Acme".into());
    Registration {
        id: new_id(),
        webinar_id: webinar.into(),
        name: "R".into(),
        email: email.into(),
        fields,
        status: RegistrationStatus::Pending,
        role: Role::Attendee,
        access_key_hash: "k".into(),
        created_at: created,
        decided_at: None,
    }
}

async fn users_are_unique_by_email(store: Arc<dyn Store>) {
    let a = user("a@x.io");
    store.create_user(&a).await.unwrap();
    assert_eq!(store.user(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.user_by_email("a@x.io").await.unwrap(),
        Some(a.clone())
    );
    let dup = user("a@x.io");
    assert!(matches!(
        store.create_user(&dup).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.user(&dup.id).await.unwrap(),
        None,
        "a refused write stores nothing"
    );
    assert_eq!(store.user("nope").await.unwrap(), None);
    assert_eq!(store.user_by_email("b@x.io").await.unwrap(), None);
}

async fn webinars_list_by_host_in_creation_order(store: Arc<dyn Store>) {
    let t0 = now();
    let w2 = webinar("h1", t0 + Duration::seconds(5));
    let w1 = webinar("h1", t0);
    let other = webinar("h2", t0);
    for w in [&w2, &w1, &other] {
        store.create_webinar(w).await.unwrap();
    }
    let list = store.webinars_by_host("h1").await.unwrap();
    assert_eq!(
        list.iter().map(|w| &w.id).collect::<Vec<_>>(),
        vec![&w1.id, &w2.id]
    );
    let mut changed = w1.clone();
    changed.title = "New".into();
    changed.status = WebinarStatus::Live;
    store.update_webinar(&changed).await.unwrap();
    assert_eq!(store.webinar(&w1.id).await.unwrap(), Some(changed));
    let ghost = webinar("h1", t0);
    assert!(matches!(
        store.update_webinar(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.webinar(&ghost.id).await.unwrap(), None);
}

async fn registrations_are_unique_per_webinar_and_email(store: Arc<dyn Store>) {
    let t0 = now();
    let a = registration("w1", "a@x.io", t0);
    let b = registration("w1", "b@x.io", t0 + Duration::seconds(1));
    let a_elsewhere = registration("w2", "a@x.io", t0);
    for r in [&a, &b, &a_elsewhere] {
        store.create_registration(r).await.unwrap();
    }
    let dup = registration("w1", "a@x.io", t0);
    assert!(matches!(
        store.create_registration(&dup).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.registration(&dup.id).await.unwrap(), None);

    assert_eq!(
        store.registration_by_email("w1", "a@x.io").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.registration_by_email("w3", "a@x.io").await.unwrap(),
        None
    );
    let all = store.registrations("w1", None).await.unwrap();
    assert_eq!(all, vec![a.clone(), b.clone()]);

    let mut approved = b.clone();
    approved.status = RegistrationStatus::Approved;
    approved.role = Role::CoHost;
    approved.decided_at = Some(now());
    store.update_registration(&approved).await.unwrap();
    assert_eq!(
        store
            .registrations("w1", Some(RegistrationStatus::Approved))
            .await
            .unwrap(),
        vec![approved.clone()]
    );
    assert_eq!(
        store
            .registrations("w1", Some(RegistrationStatus::Pending))
            .await
            .unwrap(),
        vec![a.clone()]
    );
    let ghost = registration("w1", "z@x.io", t0);
    assert!(matches!(
        store.update_registration(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn attendance_sessions_are_upserted_and_listed_by_join_time(store: Arc<dyn Store>) {
    let t0 = now();
    let mut late = AttendanceSession {
        id: new_id(),
        webinar_id: "w1".into(),
        registration_id: Some("r1".into()),
        user_id: None,
        peer_id: "p1".into(),
        name: "N".into(),
        role: Role::Attendee,
        joined_at: t0 + Duration::seconds(10),
        left_at: None,
        location: Location {
            city: Some("London".into()),
            country: Some("GB".into()),
        },
    };
    let early = AttendanceSession {
        id: new_id(),
        joined_at: t0,
        registration_id: None,
        user_id: Some("u1".into()),
        role: Role::Host,
        location: Location::default(),
        ..late.clone()
    };
    store.put_attendance(&late).await.unwrap();
    store.put_attendance(&early).await.unwrap();
    late.left_at = Some(t0 + Duration::seconds(70));
    store.put_attendance(&late).await.unwrap();
    let list = store.attendance("w1").await.unwrap();
    assert_eq!(list, vec![early, late.clone()]);
    assert_eq!(list[1].watch_seconds(now()), 60);
    assert!(store.attendance("w2").await.unwrap().is_empty());
}

async fn chat_history_returns_the_latest_messages_oldest_first(store: Arc<dyn Store>) {
    let t0 = now();
    for i in 0..5 {
        let m = ChatMessage {
            id: new_id(),
            webinar_id: "w1".into(),
            peer_id: "p".into(),
            name: "N".into(),
            role: Role::Attendee,
            text: format!("m{i}"),
            ts: t0 + Duration::milliseconds(i * 10),
        };
        store.add_chat_message(&m).await.unwrap();
    }
    let last3: Vec<_> = store
        .chat_messages("w1", Some(3))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(last3, vec!["m2", "m3", "m4"]);
    assert_eq!(store.chat_messages("w1", None).await.unwrap().len(), 5);
    assert_eq!(store.count_chat_messages("w1").await.unwrap(), 5);
    assert_eq!(store.count_chat_messages("w2").await.unwrap(), 0);
}

async fn transcript_is_ordered_by_start_time(store: Arc<dyn Store>) {
    for (start, text) in [(2000, "second"), (500, "first"), (10_000, "third")] {
        let s = TranscriptSegment {
            id: new_id(),
            webinar_id: "w1".into(),
            start_ms: start,
            end_ms: start + 900,
            speaker: "Host".into(),
            text: text.into(),
            lang: Some("en".into()),
            source: "caption".into(),
        };
        store.add_transcript_segment(&s).await.unwrap();
    }
    let texts: Vec<_> = store
        .transcript("w1")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.text)
        .collect();
    assert_eq!(texts, vec!["first", "second", "third"]);
}

async fn recordings_summaries_and_events_round_trip(store: Arc<dyn Store>) {
    let t0 = now();
    let mut rec = Recording {
        id: new_id(),
        webinar_id: "w1".into(),
        status: RecordingStatus::Recording,
        started_at: t0,
        ended_at: None,
        duration_ms: None,
        size_bytes: None,
        path: None,
    };
    store.put_recording(&rec).await.unwrap();
    rec.status = RecordingStatus::Ready;
    rec.ended_at = Some(t0 + Duration::seconds(30));
    rec.duration_ms = Some(30_000);
    rec.size_bytes = Some(1234);
    rec.path = Some("recordings/x.mp4".into());
    store.put_recording(&rec).await.unwrap();
    assert_eq!(store.recording(&rec.id).await.unwrap(), Some(rec.clone()));
    assert_eq!(store.recordings("w1").await.unwrap(), vec![rec]);

    let mut summary = Summary {
        webinar_id: "w1".into(),
        status: "pending".into(),
        text: None,
        provider: "extractive".into(),
        created_at: t0,
    };
    store.put_summary(&summary).await.unwrap();
    summary.status = "ready".into();
    summary.text = Some("We launched.".into());
    store.put_summary(&summary).await.unwrap();
    assert_eq!(store.summary("w1").await.unwrap(), Some(summary));
    assert_eq!(store.summary("w2").await.unwrap(), None);

    for (i, kind) in ["quality", "state", "quality"].iter().enumerate() {
        let e = AnalyticsEvent {
            id: new_id(),
            webinar_id: "w1".into(),
            kind: kind.to_string(),
            peer_id: Some("p".into()),
            data: serde_json::json!({"rttMs": i}),
            ts: t0 + Duration::seconds(i as i64),
        };
        store.add_analytics_event(&e).await.unwrap();
    }
    let quality = store.analytics_events("w1", Some("quality")).await.unwrap();
    assert_eq!(quality.len(), 2);
    assert_eq!(quality[1].data["rttMs"], 2);
    assert_eq!(store.analytics_events("w1", None).await.unwrap().len(), 3);
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod embedded_store {
            $(#[tokio::test] async fn $case() {
                let (store, _dir) = super::embedded().await;
                super::$case(store).await;
            })*
        }
        mod mongodb_store {
            $(#[tokio::test] async fn $case() {
                let (store, _dir) = super::mongo().await;
                super::$case(store).await;
            })*
        }
    };
}

contract!(
    users_are_unique_by_email,
    webinars_list_by_host_in_creation_order,
    registrations_are_unique_per_webinar_and_email,
    attendance_sessions_are_upserted_and_listed_by_join_time,
    chat_history_returns_the_latest_messages_oldest_first,
    transcript_is_ordered_by_start_time,
    recordings_summaries_and_events_round_trip,
);

#[tokio::test]
async fn embedded_store_keeps_everything_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let w = webinar("h1", now());
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.create_webinar(&w).await.unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.webinar(&w.id).await.unwrap(), Some(w));
}
