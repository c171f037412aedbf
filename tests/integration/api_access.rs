//! Who may call what: every REST endpoint against every kind of caller.

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

use crate::common::{unique_email, Backend, TestServer, JWT_SECRET};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anonymous,
    Forged,
    Expired,
    Host,
    HostJoin,
    CoHostLogin,
    CoHostJoin,
    OtherHost,
    Attendee,
    AttendeeOfOtherWebinar,
}

use Who::*;

const EVERYONE: [Who; 10] = [
    Anonymous,
    Forged,
    Expired,
    Host,
    HostJoin,
    CoHostLogin,
    CoHostJoin,
    OtherHost,
    Attendee,
    AttendeeOfOtherWebinar,
];

struct Fixture {
    server: TestServer,
    webinar: String,
    attendee_rid: String,
    tokens: Vec<(Who, Option<String>)>,
}

fn sign(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn fixture() -> Fixture {
    let server = TestServer::start(Backend::Embedded).await;
    let host = server.admin().await;
    let webinar = server.create_webinar(&host, false).await;
    let other_webinar = server.create_webinar(&host, false).await;

    let join = |wid: &str, body: Value, token: Option<String>| {
        let server = &server;
        let wid = wid.to_string();
        async move {
            let (status, body) = server
                .call(
                    "POST",
                    &format!("/api/v1/webinars/{wid}/join"),
                    token.as_deref(),
                    Some(body),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body["token"].as_str().unwrap().to_string()
        }
    };

    let (attendee_rid, key, _) = server.register(&webinar, &unique_email("att")).await;
    let attendee = join(
        &webinar,
        json!({"registrationId": attendee_rid, "accessKey": key}),
        None,
    )
    .await;
    let (orid, okey, _) = server.register(&other_webinar, &unique_email("oth")).await;
    let attendee_elsewhere = join(
        &other_webinar,
        json!({"registrationId": orid, "accessKey": okey}),
        None,
    )
    .await;

    // A co-host: a user account whose registration was promoted.
    let cohost_email = unique_email("cohost");
    let (status, _) = server
        .call(
            "POST",
            "/api/v1/users",
            Some(&host),
            Some(json!({"email": cohost_email, "password": "cohost-pass", "name": "Co"})),
        )
        .await;
    assert_eq!(status, 201);
    let (crid, ckey, _) = server.register(&webinar, &cohost_email).await;
    let (status, _) = server
        .call(
            "PUT",
            &format!("/api/v1/webinars/{webinar}/roles/{crid}"),
            Some(&host),
            Some(json!({"role": "co-host"})),
        )
        .await;
    assert_eq!(status, 200);
    let cohost_join = join(
        &webinar,
        json!({"registrationId": crid, "accessKey": ckey}),
        None,
    )
    .await;
    let cohost_login = server.login(&cohost_email, "cohost-pass").await;

    let other_email = unique_email("other");
    server
        .call(
            "POST",
            "/api/v1/users",
            Some(&host),
            Some(json!({"email": other_email, "password": "other-pass", "name": "Other"})),
        )
        .await;
    let other_host = server.login(&other_email, "other-pass").await;
    let host_join = {
        let (status, body) = server
            .call(
                "POST",
                &format!("/api/v1/webinars/{webinar}/join"),
                Some(&host),
                None,
            )
            .await;
        assert_eq!((status, body["role"].as_str()), (200, Some("host")));
        body["token"].as_str().unwrap().to_string()
    };
    let now = chrono::Utc::now().timestamp();
    let admin_id = {
        let (_, body) = server
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"email": crate::common::ADMIN_EMAIL, "password": crate::common::ADMIN_PASSWORD})),
            )
            .await;
        body["user"]["id"].as_str().unwrap().to_string()
    };
    let forged = sign(
        json!({"sub": admin_id, "kind": "login", "iat": now, "exp": now + 3600}),
        "not-the-secret",
    );
    let expired = sign(
        json!({"sub": admin_id, "kind": "login", "iat": now - 7200, "exp": now - 3600}),
        JWT_SECRET,
    );

    let tokens = vec![
        (Anonymous, None),
        (Forged, Some(forged)),
        (Expired, Some(expired)),
        (Host, Some(host)),
        (HostJoin, Some(host_join)),
        (CoHostLogin, Some(cohost_login)),
        (CoHostJoin, Some(cohost_join)),
        (OtherHost, Some(other_host)),
        (Attendee, Some(attendee)),
        (AttendeeOfOtherWebinar, Some(attendee_elsewhere)),
    ];
    Fixture {
        server,
        webinar,
        attendee_rid,
        tokens,
    }
}

/// The status each caller gets; `allowed` get `ok`, the others 401 when
/// they have no valid credentials and 403 otherwise.
fn expected(who: Who, allowed: &[Who], ok: u16) -> u16 {
    match who {
        Anonymous | Forged | Expired if !allowed.contains(&who) => 401,
        _ if allowed.contains(&who) => ok,
        _ => 403,
    }
}

#[tokio::test]
async fn every_endpoint_allows_exactly_its_roles() {
    let f = fixture().await;
    let w = f.webinar.clone();
    let accounts = [Host, CoHostLogin, OtherHost];
    let presenters = [Host, HostJoin, CoHostLogin, CoHostJoin];
    let valid = [
        Host,
        HostJoin,
        CoHostLogin,
        CoHostJoin,
        OtherHost,
        Attendee,
        AttendeeOfOtherWebinar,
        Anonymous,
    ];
    // (method, path, body, allowed, success status)
    type Case = (&'static str, String, Option<Value>, Vec<Who>, u16);
    let cases: Vec<Case> = vec![
        ("POST", "/api/v1/users".into(), None, accounts.to_vec(), 201),
        (
            "POST",
            "/api/v1/webinars".into(),
            Some(json!({"title": "T", "capacity": 10, "requiresApproval": false})),
            accounts.to_vec(),
            201,
        ),
        (
            "GET",
            "/api/v1/webinars".into(),
            None,
            accounts.to_vec(),
            200,
        ),
        (
            "GET",
            format!("/api/v1/webinars/{w}"),
            None,
            valid.to_vec(),
            200,
        ),
        (
            "PATCH",
            format!("/api/v1/webinars/{w}"),
            Some(json!({"description": "d"})),
            presenters.to_vec(),
            200,
        ),
        (
            "GET",
            format!("/api/v1/webinars/{w}/registrations"),
            None,
            presenters.to_vec(),
            200,
        ),
        (
            "GET",
            format!("/api/v1/webinars/{w}/attendees"),
            None,
            presenters.to_vec(),
            200,
        ),
        (
            "GET",
            format!("/api/v1/webinars/{w}/analytics"),
            None,
            presenters.to_vec(),
            200,
        ),
        (
            "POST",
            format!(
                "/api/v1/webinars/{w}/registrations/{}/approve",
                f.attendee_rid
            ),
            None,
            presenters.to_vec(),
            200,
        ),
        (
            "PUT",
            format!("/api/v1/webinars/{w}/roles/{}", f.attendee_rid),
            Some(json!({"role": "attendee"})),
            vec![Host, HostJoin],
            200,
        ),
        (
            "POST",
            format!("/api/v1/webinars/{w}/join"),
            None,
            vec![Host, CoHostLogin],
            200,
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, allowed, ok) in &cases {
        for (who, token) in &f.tokens {
            let body = match (path.as_str(), body) {
                ("/api/v1/users", _) => {
                    Some(json!({"email": unique_email("u"), "password": "password-1", "name": "U"}))
                }
                (_, b) => b.clone(),
            };
            let (status, reply) = f.server.call(method, path, token.as_deref(), body).await;
            let want = expected(*who, allowed, *ok);
            if status != want {
                failures.push(format!(
                    "{method} {path} as {who:?}: got {status}, want {want}: {reply}"
                ));
            }
            if status >= 400 {
                assert!(
                    reply["error"]["code"].is_string(),
                    "error body shape: {reply}"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "access matrix failures:\n{}",
        failures.join("\n")
    );

    // Presenters get the full webinar view; everyone else the public one.
    for (who, token) in &f.tokens {
        if matches!(who, Forged | Expired) {
            continue;
        }
        let (_, view) = f
            .server
            .call(
                "GET",
                &format!("/api/v1/webinars/{w}"),
                token.as_deref(),
                None,
            )
            .await;
        assert_eq!(
            view.get("capacity").is_some(),
            presenters.contains(who),
            "{who:?}: {view}"
        );
    }
}

#[tokio::test]
async fn anyone_may_register_and_log_in() {
    let f = fixture().await;
    for (who, token) in &f.tokens {
        if matches!(who, Forged | Expired) {
            continue;
        }
        let (status, body) = f
            .server
            .call(
                "POST",
                &format!("/api/v1/webinars/{}/registrations", f.webinar),
                token.as_deref(),
                Some(json!({"name": "N", "email": unique_email("any")})),
            )
            .await;
        assert_eq!(status, 201, "{who:?}: {body}");
    }
    assert!(EVERYONE.len() == f.tokens.len());
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_even_where_anonymous_calls_are_allowed() {
    let f = fixture().await;
    for (who, token) in &f.tokens {
        if !matches!(who, Forged | Expired) {
            continue;
        }
        let (status, body) = f
            .server
            .call(
                "GET",
                &format!("/api/v1/webinars/{}", f.webinar),
                token.as_deref(),
                None,
            )
            .await;
        assert_eq!(status, 401, "{who:?}");
        let code = body["error"]["code"].as_str().unwrap();
        assert_eq!(
            code,
            if *who == Expired {
                "token_expired"
            } else {
                "invalid_token"
            }
        );
    }
    let resp = f
        .server
        .http
        .get(f.server.url("/api/v1/webinars"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
