//! The REST contract's main flows, on both stores, over a real listener.

use serde_json::json;
use webinar::model::WebinarStatus;
use webinar::store::{EmbeddedStore, Store};

use crate::common::{unique_email, Backend, TestServer};

async fn register_approve_join(backend: Backend) {
    let server = TestServer::start(backend).await;
    let host = server.admin().await;
    let wid = server.create_webinar(&host, true).await;

    let email = unique_email("ann");
    let (rid, key, status) = server.register(&wid, &email).await;
    assert_eq!(status, "pending");

    let (status, body) = server.join_as(&wid, &rid, &key).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "pending_approval");

    let (status, pending) = server
        .call(
            "GET",
            &format!("/api/v1/webinars/{wid}/registrations?status=pending"),
            Some(&host),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(pending.as_array().unwrap().len(), 1);
    assert_eq!(pending[0]["email"], email);

    let (status, reg) = server
        .call(
            "POST",
            &format!("/api/v1/webinars/{wid}/registrations/{rid}/approve"),
            Some(&host),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["status"], "approved");

    let (status, joined) = server.join_as(&wid, &rid, &key).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["role"], "attendee");
    assert!(joined["token"].as_str().unwrap().len() > 20);

    let (status, attendees) = server
        .call(
            "GET",
            &format!("/api/v1/webinars/{wid}/attendees"),
            Some(&host),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(attendees[0]["registrationId"], rid.as_str());
    assert_eq!(attendees[0]["online"], false);
    assert_eq!(attendees[0]["watchSeconds"], 0);

    // Anyone sees the public view; the host sees everything.
    let (_, public) = server
        .call("GET", &format!("/api/v1/webinars/{wid}"), None, None)
        .await;
    assert_eq!(public["title"], "Launch");
    assert_eq!(public["status"], "setup");
    assert!(public.get("capacity").is_none());
    let (_, full) = server
        .call("GET", &format!("/api/v1/webinars/{wid}"), Some(&host), None)
        .await;
    assert_eq!(full["capacity"], 100);
    assert_eq!(full["settings"]["chat"], true);

    // Rejecting takes effect at the next join.
    server
        .call(
            "POST",
            &format!("/api/v1/webinars/{wid}/registrations/{rid}/reject"),
            Some(&host),
            None,
        )
        .await;
    let (status, body) = server.join_as(&wid, &rid, &key).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("rejected"))
    );
    server.stop().await;
}

#[tokio::test]
async fn registrant_joins_after_approval_on_the_embedded_store() {
    register_approve_join(Backend::Embedded).await;
}

#[tokio::test]
async fn registrant_joins_after_approval_on_mongodb() {
    register_approve_join(Backend::Mongo).await;
}

#[tokio::test]
async fn registration_without_approval_step_is_approved_at_once() {
    let server = TestServer::start(Backend::Embedded).await;
    let host = server.admin().await;
    let wid = server.create_webinar(&host, false).await;
    let (rid, key, status) = server.register(&wid, &unique_email("bob")).await;
    assert_eq!(status, "approved");
    let (status, body) = server.join_as(&wid, &rid, &key).await;
    assert_eq!(status, 200, "{body}");
}

async fn everything_survives_a_restart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let host = server.admin().await;
    let wid = server.create_webinar(&host, true).await;
    let (rid, key, _) = server.register(&wid, &unique_email("kept")).await;
    server
        .call(
            "POST",
            &format!("/api/v1/webinars/{wid}/registrations/{rid}/approve"),
            Some(&host),
            None,
        )
        .await;
    let (status, _) = server
        .call(
            "POST",
            "/api/v1/users",
            Some(&host),
            Some(json!({"email": "second@example.com", "password": "another-pass", "name": "Second"})),
        )
        .await;
    assert_eq!(status, 201);
    let (settings, dir) = server.stop().await;

    let server = TestServer::start_with(settings).await;
    // The old token is still valid: the signing secret persisted.
    let (status, list) = server
        .call("GET", "/api/v1/webinars", Some(&host), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], wid.as_str());
    let (status, body) = server.join_as(&wid, &rid, &key).await;
    assert_eq!(status, 200, "{body}");
    server.login("second@example.com", "another-pass").await;
    // The admin account was not created twice.
    server.admin().await;
    server.stop().await;
    drop(dir);
}

#[tokio::test]
async fn everything_survives_a_restart_on_the_embedded_store() {
    everything_survives_a_restart(Backend::Embedded).await;
}

#[tokio::test]
async fn everything_survives_a_restart_on_mongodb() {
    everything_survives_a_restart(Backend::Mongo).await;
}

#[tokio::test]
async fn a_generated_jwt_secret_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::common::test_settings(Backend::Embedded, dir.path());
    settings.auth.jwt_secret = None;
    let server = TestServer::start_with(settings).await;
    let token = server.admin().await;
    let (settings, _) = server.stop().await;
    assert!(dir.path().join("jwt_secret").exists());
    let server = TestServer::start_with(settings).await;
    let (status, _) = server
        .call("GET", "/api/v1/webinars", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn ended_webinars_refuse_joins_registrations_and_edits() {
    let server = TestServer::start(Backend::Embedded).await;
    let host = server.admin().await;
    let wid = server.create_webinar(&host, false).await;
    let (rid, key, _) = server.register(&wid, &unique_email("late")).await;
    let (settings, dir) = server.stop().await;
    {
        // End it the way the realtime layer will: through the store.
        let store = EmbeddedStore::open(&settings.server.data_dir.join("webinar.redb")).unwrap();
        let mut w = store.webinar(&wid).await.unwrap().unwrap();
        w.status = WebinarStatus::Ended;
        store.update_webinar(&w).await.unwrap();
    }
    let server = TestServer::start_with(settings).await;
    let (status, body) = server.join_as(&wid, &rid, &key).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("webinar_ended"))
    );
    let (status, body) = server.join_as_host(&wid, &host).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("webinar_ended"))
    );
    let (status, _) = server
        .call(
            "POST",
            &format!("/api/v1/webinars/{wid}/registrations"),
            None,
            Some(json!({"name": "X", "email": unique_email("x")})),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = server
        .call(
            "PATCH",
            &format!("/api/v1/webinars/{wid}"),
            Some(&host),
            Some(json!({"title": "New"})),
        )
        .await;
    assert_eq!(status, 409);
    server.stop().await;
    drop(dir);
}

#[tokio::test]
async fn patch_changes_only_the_given_fields() {
    let server = TestServer::start(Backend::Embedded).await;
    let host = server.admin().await;
    let wid = server.create_webinar(&host, false).await;
    let (status, w) = server
        .call(
            "PATCH",
            &format!("/api/v1/webinars/{wid}"),
            Some(&host),
            Some(json!({"capacity": 5, "settings": {"chat": false}, "startsAt": "2030-01-02T03:04:05Z"})),
        )
        .await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["capacity"], 5);
    assert_eq!(w["settings"]["chat"], false);
    assert_eq!(w["settings"]["captions"], true);
    assert_eq!(w["title"], "Launch");
    assert_eq!(w["startsAt"], "2030-01-02T03:04:05.000Z");
    let (_, again) = server
        .call("GET", &format!("/api/v1/webinars/{wid}"), Some(&host), None)
        .await;
    assert_eq!(again["capacity"], 5);
}

#[tokio::test]
async fn health_metrics_and_openapi_are_served() {
    let server = TestServer::start(Backend::Embedded).await;
    let (status, _) = server.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    server.admin().await;
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"webinar_http_requests_total{method="POST",route="/api/v1/auth/login",status="200"} 1"#),
        "{text}"
    );
    let (status, doc) = server.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/auth/login",
        "/api/v1/users",
        "/api/v1/webinars",
        "/api/v1/webinars/{id}",
        "/api/v1/webinars/{id}/registrations",
        "/api/v1/webinars/{id}/registrations/{rid}/approve",
        "/api/v1/webinars/{id}/registrations/{rid}/reject",
        "/api/v1/webinars/{id}/join",
        "/api/v1/webinars/{id}/attendees",
        "/api/v1/webinars/{id}/roles/{registrationId}",
    ] {
        assert!(paths.contains_key(path), "openapi lacks {path}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn promotion_and_demotion_take_effect_at_once() {
    let server = TestServer::start(Backend::Embedded).await;
    let host = server.admin().await;
    let wid = server.create_webinar(&host, false).await;
    let (rid, key, _) = server.register(&wid, &unique_email("promoted")).await;
    let (_, joined) = server.join_as(&wid, &rid, &key).await;
    let token = joined["token"].as_str().unwrap().to_string();
    let patch = |t: String| {
        let server = &server;
        let wid = wid.clone();
        async move {
            server
                .call(
                    "PATCH",
                    &format!("/api/v1/webinars/{wid}"),
                    Some(&t),
                    Some(json!({"title": "T2"})),
                )
                .await
                .0
        }
    };
    assert_eq!(patch(token.clone()).await, 403);
    let (status, reg) = server
        .call(
            "PUT",
            &format!("/api/v1/webinars/{wid}/roles/{rid}"),
            Some(&host),
            Some(json!({"role": "co-host"})),
        )
        .await;
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["role"], "co-host");
    // The same token now carries co-host rights: roles come from the store.
    assert_eq!(patch(token.clone()).await, 200);
    server
        .call(
            "PUT",
            &format!("/api/v1/webinars/{wid}/roles/{rid}"),
            Some(&host),
            Some(json!({"role": "attendee"})),
        )
        .await;
    assert_eq!(patch(token).await, 403);
    let (_, joined) = server.join_as(&wid, &rid, &key).await;
    assert_eq!(joined["role"], "attendee");
}
