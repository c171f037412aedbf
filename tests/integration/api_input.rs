//! Bad input gets a clear error and changes nothing.

use serde_json::{json, Value};

use crate::common::{test_settings, unique_email, Backend, TestServer};

async fn webinar_count(server: &TestServer, token: &str) -> usize {
    let (_, list) = server
        .call("GET", "/api/v1/webinars", Some(token), None)
        .await;
    list.as_array().unwrap().len()
}

async fn raw(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = server
        .http
        .request(method.parse().unwrap(), server.url(path))
        .bearer_auth(token)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_and_invalid_webinar_bodies_are_refused_without_effect() {
    let server = TestServer::start(Backend::Embedded).await;
    let host = server.admin().await;
    let json_ct = Some("application/json");
    let cases: Vec<(Option<&str>, &str, u16, Option<&str>)> = vec![
        (json_ct, r#"{"title": "x", "capacity": 10,"#, 400, None),
        (json_ct, r#"not json"#, 400, None),
        (
            json_ct,
            r#"{"title":"x","capacity":10,"requiresApproval":false} trailing"#,
            400,
            None,
        ),
        (
            None,
            r#"{"title":"x","capacity":10,"requiresApproval":false}"#,
            400,
            None,
        ),
        (
            Some("text/plain"),
            r#"{"title":"x","capacity":10,"requiresApproval":false}"#,
            400,
            None,
        ),
        (
            json_ct,
            r#"{"title":"x","capacity":"ten","requiresApproval":false}"#,
            422,
            Some("capacity"),
        ),
        (
            json_ct,
            r#"{"title":"x","capacity":-1,"requiresApproval":false}"#,
            422,
            Some("capacity"),
        ),
        (
            json_ct,
            r#"{"title":"x","capacity":10}"#,
            422,
            Some("requiresApproval"),
        ),
        (
            json_ct,
            r#"{"title":"x","capacity":10,"requiresApproval":false,"status":"live"}"#,
            422,
            Some("status"),
        ),
        (
            json_ct,
            r#"{"title":"","capacity":10,"requiresApproval":false}"#,
            422,
            Some("title"),
        ),
        (
            json_ct,
            r#"{"title":"x","capacity":0,"requiresApproval":false}"#,
            422,
            Some("capacity"),
        ),
        (
            json_ct,
            r#"{"title":"x","capacity":10,"requiresApproval":false,"startsAt":"tomorrow"}"#,
            422,
            Some("startsAt"),
        ),
        (
            json_ct,
            r#"{"title":"x","capacity":10,"requiresApproval":false,"settings":{"recording":"always"}}"#,
            422,
            Some("settings.recording"),
        ),
        (
            json_ct,
            r#"{"title":"x","capacity":10,"requiresApproval":false,"durationMinutes":0}"#,
            422,
            Some("durationMinutes"),
        ),
        (json_ct, r#"[1,2,3]"#, 422, Some("body")),
    ];
    for (ct, body, want, field) in cases {
        let (status, reply) = raw(
            &server,
            "POST",
            "/api/v1/webinars",
            &host,
            ct,
            body.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(status, want, "{body}: {reply}");
        assert!(reply["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        if let Some(field) = field {
            assert!(
                reply["error"]["details"].get(field).is_some(),
                "{body}: details should name {field}: {reply}"
            );
            assert_eq!(reply["error"]["code"], "invalid_fields");
        }
    }
    // Two bad fields at once are both named.
    let (status, reply) = server
        .call(
            "POST",
            "/api/v1/webinars",
            Some(&host),
            Some(json!({"title": "", "capacity": 0, "requiresApproval": true})),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        reply["error"]["details"]["title"].is_string()
            && reply["error"]["details"]["capacity"].is_string()
    );
    assert_eq!(
        webinar_count(&server, &host).await,
        0,
        "no refused request created a webinar"
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_and_change_nothing() {
    let server = TestServer::start(Backend::Embedded).await;
    let host = server.admin().await;
    let wid = server.create_webinar(&host, false).await;
    let huge = "x".repeat(server.settings.limits.max_body_bytes + 1);
    let (status, reply) = server
        .call(
            "PATCH",
            &format!("/api/v1/webinars/{wid}"),
            Some(&host),
            Some(json!({"description": huge})),
        )
        .await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["error"]["code"], "payload_too_large");
    let (_, w) = server
        .call("GET", &format!("/api/v1/webinars/{wid}"), Some(&host), None)
        .await;
    assert!(w["description"].is_null());
    let (status, _) = server
        .call(
            "POST",
            &format!("/api/v1/webinars/{wid}/registrations"),
            None,
            Some(json!({"name": "N", "email": unique_email("big"), "fields": {"bio": "y".repeat(100_000)}})),
        )
        .await;
    assert_eq!(status, 413);
    let (_, regs) = server
        .call(
            "GET",
            &format!("/api/v1/webinars/{wid}/registrations"),
            Some(&host),
            None,
        )
        .await;
    assert_eq!(regs.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn unknown_ids_get_404() {
    let server = TestServer::start(Backend::Embedded).await;
    let host = server.admin().await;
    let wid = server.create_webinar(&host, false).await;
    let (rid, _, _) = server.register(&wid, &unique_email("known")).await;
    let other = server.create_webinar(&host, false).await;
    let cases = [
        ("GET", "/api/v1/webinars/nope".to_string(), None),
        (
            "PATCH",
            "/api/v1/webinars/nope".to_string(),
            Some(json!({"title": "t"})),
        ),
        (
            "GET",
            "/api/v1/webinars/nope/registrations".to_string(),
            None,
        ),
        (
            "POST",
            "/api/v1/webinars/nope/registrations".to_string(),
            Some(json!({"name": "N", "email": "n@example.com"})),
        ),
        (
            "POST",
            format!("/api/v1/webinars/{wid}/registrations/nope/approve"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/webinars/{wid}/registrations/nope/reject"),
            None,
        ),
        // A registration of one webinar is unknown to another.
        (
            "POST",
            format!("/api/v1/webinars/{other}/registrations/{rid}/approve"),
            None,
        ),
        (
            "PUT",
            format!("/api/v1/webinars/{other}/roles/{rid}"),
            Some(json!({"role": "co-host"})),
        ),
        (
            "POST",
            format!("/api/v1/webinars/{other}/join"),
            Some(json!({"registrationId": rid, "accessKey": "k"})),
        ),
        ("GET", "/api/v1/webinars/nope/attendees".to_string(), None),
        ("POST", "/api/v1/webinars/nope/join".to_string(), None),
        ("GET", "/api/v1/no-such-route".to_string(), None),
    ];
    for (method, path, body) in cases {
        let (status, reply) = server.call(method, &path, Some(&host), body).await;
        assert_eq!(status, 404, "{method} {path}: {reply}");
        assert_eq!(reply["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn registration_input_is_checked() {
    let server = TestServer::start(Backend::Embedded).await;
    let host = server.admin().await;
    let wid = server.create_webinar(&host, true).await;
    let path = format!("/api/v1/webinars/{wid}/registrations");
    let email = unique_email("dup");
    server.register(&wid, &email).await;
    let cases = [
        (
            json!({"name": "N", "email": "not-an-email"}),
            422,
            Some("email"),
        ),
        (
            json!({"name": "", "email": "a@example.com"}),
            422,
            Some("name"),
        ),
        (json!({"email": "a@example.com"}), 422, Some("name")),
        (
            json!({"name": "N", "email": "a@example.com", "fields": {"x": {"nested": 1}}}),
            422,
            Some("fields.x"),
        ),
        (
            json!({"name": "N", "email": email.to_uppercase()}),
            409,
            None,
        ),
    ];
    for (body, want, field) in cases {
        let (status, reply) = server.call("POST", &path, None, Some(body.clone())).await;
        assert_eq!(status, want, "{body}: {reply}");
        if let Some(f) = field {
            assert!(reply["error"]["details"].get(f).is_some(), "{reply}");
        }
    }
    let (_, regs) = server.call("GET", &path, Some(&host), None).await;
    assert_eq!(regs.as_array().unwrap().len(), 1);

    let (status, reply) = server
        .call("GET", &format!("{path}?status=maybe"), Some(&host), None)
        .await;
    assert_eq!(
        (status, reply["error"]["details"]["status"].is_string()),
        (422, true)
    );

    // Join needs both credentials, and the right key.
    let (rid, _, _) = server.register(&wid, &unique_email("j")).await;
    let join = format!("/api/v1/webinars/{wid}/join");
    let (status, _) = server
        .call("POST", &join, None, Some(json!({"registrationId": rid})))
        .await;
    assert_eq!(status, 422);
    let (status, reply) = server
        .call(
            "POST",
            &join,
            None,
            Some(json!({"registrationId": rid, "accessKey": "wrong"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    // A role that is not co-host/attendee is refused.
    let (status, _) = server
        .call(
            "PUT",
            &format!("/api/v1/webinars/{wid}/roles/{rid}"),
            Some(&host),
            Some(json!({"role": "host"})),
        )
        .await;
    assert_eq!(status, 422);
    // A pending registrant cannot be promoted.
    let (status, reply) = server
        .call(
            "PUT",
            &format!("/api/v1/webinars/{wid}/roles/{rid}"),
            Some(&host),
            Some(json!({"role": "co-host"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (409, Some("not_approved"))
    );
}

#[tokio::test]
async fn users_input_is_checked() {
    let server = TestServer::start(Backend::Embedded).await;
    let host = server.admin().await;
    for (body, field) in [
        (
            json!({"email": "x", "password": "long-enough", "name": "N"}),
            "email",
        ),
        (
            json!({"email": "x@example.com", "password": "short", "name": "N"}),
            "password",
        ),
        (
            json!({"email": "x@example.com", "password": "long-enough", "name": ""}),
            "name",
        ),
    ] {
        let (status, reply) = server
            .call("POST", "/api/v1/users", Some(&host), Some(body))
            .await;
        assert_eq!(status, 422);
        assert!(reply["error"]["details"].get(field).is_some(), "{reply}");
    }
    let (status, reply) = server
        .call(
            "POST",
            "/api/v1/users",
            Some(&host),
            Some(json!({"email": crate::common::ADMIN_EMAIL, "password": "long-enough", "name": "N"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (409, Some("email_taken"))
    );
    let (status, reply) = server
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": crate::common::ADMIN_EMAIL, "password": "wrong"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let (status, _) = server
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "nobody@example.com", "password": "x"})),
        )
        .await;
    assert_eq!(status, 401);
    // The refused password did not replace the real one.
    server.admin().await;
}

#[tokio::test]
async fn login_and_registration_are_rate_limited_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(Backend::Embedded, dir.path());
    settings.limits.login_per_minute = 3;
    settings.limits.register_per_minute = 2;
    settings.server.trusted_proxies = vec!["127.0.0.1".to_string().try_into().unwrap()];
    let server = TestServer::start_with(settings).await;

    let login = |xff: &'static str| {
        let server = &server;
        async move {
            let resp = server
                .http
                .post(server.url("/api/v1/auth/login"))
                .header("X-Forwarded-For", xff)
                .json(&json!({"email": crate::common::ADMIN_EMAIL, "password": crate::common::ADMIN_PASSWORD}))
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.headers().get("retry-after").is_some(),
            )
        }
    };
    for _ in 0..3 {
        assert_eq!(login("203.0.113.1").await.0, 200);
    }
    assert_eq!(login("203.0.113.1").await, (429, true));
    // Another client behind the same trusted proxy has its own allowance.
    assert_eq!(login("203.0.113.2").await.0, 200);

    let host = {
        let resp = server
            .http
            .post(server.url("/api/v1/auth/login"))
            .header("X-Forwarded-For", "203.0.113.9")
            .json(&json!({"email": crate::common::ADMIN_EMAIL, "password": crate::common::ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        resp.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let wid = server.create_webinar(&host, false).await;
    let path = format!("/api/v1/webinars/{wid}/registrations");
    let mut statuses = Vec::new();
    for i in 0..3 {
        let (status, _) = server
            .call(
                "POST",
                &path,
                None,
                Some(json!({"name": "N", "email": format!("r{i}@example.com")})),
            )
            .await;
        statuses.push(status);
    }
    assert_eq!(statuses, vec![201, 201, 429]);
    let (_, regs) = server.call("GET", &path, Some(&host), None).await;
    assert_eq!(
        regs.as_array().unwrap().len(),
        2,
        "the refused registration was not stored"
    );
}
