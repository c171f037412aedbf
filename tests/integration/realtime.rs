//! The Socket.IO side of the contract against the real server: connection
//! auth, joining per role and capacity, the webinar lifecycle, role
//! enforcement, chat, captions, live statistics, promotions and kicks,
//! quality reports and location in analytics, and bad payloads.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{Backend, TestServer, JWT_SECRET};
use crate::mmdb::{city_db, Place};
use webinar_bench::sio::Sio;

struct Webinar {
    id: String,
    admin: String,
}

async fn webinar(server: &TestServer, extra: Value) -> Webinar {
    let admin = server.admin().await;
    let mut body = json!({"title": "Live launch", "capacity": 100, "requiresApproval": false});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, created) = server
        .call("POST", "/api/v1/webinars", Some(&admin), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    Webinar {
        id: created["id"].as_str().unwrap().to_string(),
        admin,
    }
}

async fn host_token(server: &TestServer, w: &Webinar) -> String {
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/v1/webinars/{}/join", w.id),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_string()
}

/// Registers someone; returns (registration id, join token).
async fn attendee_token(server: &TestServer, w: &Webinar, tag: &str) -> (String, String) {
    let (rid, key, status) = server
        .register(&w.id, &crate::common::unique_email(tag))
        .await;
    assert_eq!(status, "approved");
    let (status, body) = server.join_as(&w.id, &rid, &key).await;
    assert_eq!(status, 200, "{body}");
    (rid, body["token"].as_str().unwrap().to_string())
}

async fn connect(server: &TestServer, token: &str) -> Sio {
    Sio::connect(&server.base, Some(json!({ "token": token })))
        .await
        .expect("connect with a join token")
}

/// A connected and joined socket with its `join` ack data.
async fn joined(server: &TestServer, token: &str) -> (Sio, Value) {
    let mut s = connect(server, token).await;
    let data = s.ok("join", json!({})).await;
    (s, data)
}

async fn webinar_status(server: &TestServer, w: &Webinar) -> Value {
    let (status, body) = server
        .call(
            "GET",
            &format!("/api/v1/webinars/{}", w.id),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    body
}

async fn analytics(server: &TestServer, w: &Webinar) -> Value {
    let (status, body) = server
        .call(
            "GET",
            &format!("/api/v1/webinars/{}/analytics", w.id),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn connecting_needs_a_valid_join_token() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;

    let refused = |r: Result<Sio, String>| r.err().expect("connection should be refused");
    assert_eq!(
        refused(Sio::connect(&server.base, None).await),
        "unauthenticated"
    );
    assert_eq!(
        refused(Sio::connect(&server.base, Some(json!({}))).await),
        "unauthenticated"
    );
    assert_eq!(
        refused(Sio::connect(&server.base, Some(json!({"token": "garbage"}))).await),
        "invalid_token"
    );
    // A login token is not a join token.
    assert_eq!(
        refused(Sio::connect(&server.base, Some(json!({"token": w.admin}))).await),
        "invalid_token"
    );
    // Signed with the server's secret but already expired.
    let short = webinar::auth::TokenIssuer::new(
        JWT_SECRET.as_bytes(),
        &webinar::config::AuthSettings {
            join_token_minutes: Some(0),
            ..Default::default()
        },
    );
    let (rid, _) = attendee_token(&server, &w, "expired").await;
    let expired = short.join_token(&rid, &w.id, Some(&rid));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        refused(Sio::connect(&server.base, Some(json!({ "token": expired }))).await),
        "token_expired"
    );
    // A registration rejected after its token was issued is refused too.
    let (rid, token) = attendee_token(&server, &w, "rejected").await;
    let (status, _) = server
        .call(
            "POST",
            &format!("/api/v1/webinars/{}/registrations/{rid}/reject", w.id),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        refused(Sio::connect(&server.base, Some(json!({ "token": token }))).await),
        "forbidden"
    );
    // And a good token connects.
    let (_, token) = attendee_token(&server, &w, "good").await;
    connect(&server, &token).await;
}

#[tokio::test]
async fn join_acks_carry_the_role_from_the_store() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;

    let (mut host, data) = joined(&server, &host_token(&server, &w).await).await;
    assert_eq!(data["role"], "host");
    assert!(data["peerId"].as_str().is_some_and(|p| !p.is_empty()));
    assert_eq!(data["webinar"]["id"], w.id.as_str());
    assert_eq!(data["webinar"]["title"], "Live launch");
    assert_eq!(data["webinar"]["status"], "setup");
    assert!(data.get("routerRtpCapabilities").is_some());
    assert_eq!(data["producers"], json!([]));
    assert_eq!(data["chatHistory"], json!([]));

    let (_, token) = attendee_token(&server, &w, "viewer").await;
    let (_, data) = joined(&server, &token).await;
    assert_eq!(data["role"], "attendee");

    // Promoted over REST before joining: the token says nothing about roles.
    let (rid, token) = attendee_token(&server, &w, "cohost").await;
    let (status, _) = server
        .call(
            "PUT",
            &format!("/api/v1/webinars/{}/roles/{rid}", w.id),
            Some(&w.admin),
            Some(json!({"role": "co-host"})),
        )
        .await;
    assert_eq!(status, 200);
    let (mut cohost, data) = joined(&server, &token).await;
    assert_eq!(data["role"], "co-host");

    // One join per socket.
    assert_eq!(cohost.refused("join", json!({})).await, "already_joined");
    assert_eq!(host.refused("join", json!({})).await, "already_joined");
}

#[tokio::test]
async fn capacity_limits_attendees_but_not_presenters() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({"capacity": 1})).await;
    let (_, first) = attendee_token(&server, &w, "first").await;
    let (_, second) = attendee_token(&server, &w, "second").await;

    let (first_socket, _) = joined(&server, &first).await;
    let mut late = connect(&server, &second).await;
    assert_eq!(late.refused("join", json!({})).await, "capacity_reached");
    let (_, data) = joined(&server, &host_token(&server, &w).await).await;
    assert_eq!(data["role"], "host");

    // A seat frees up when someone leaves.
    first_socket.disconnect().await;
    let mut data = late.request("join", json!({})).await;
    for _ in 0..50 {
        if data["ok"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        data = late.request("join", json!({})).await;
    }
    assert_eq!(data["ok"], true, "{data}");
}

#[tokio::test]
async fn start_and_end_drive_the_webinar_status() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;
    let (mut host, _) = joined(&server, &host_token(&server, &w).await).await;
    let (_, token) = attendee_token(&server, &w, "viewer").await;
    let (mut viewer, data) = joined(&server, &token).await;
    assert_eq!(data["webinar"]["status"], "setup");

    assert_eq!(viewer.refused("startWebinar", json!({})).await, "forbidden");
    assert_eq!(
        host.ok("startWebinar", json!({})).await,
        json!({"status": "live"})
    );
    assert_eq!(
        viewer.next_event("webinarState").await,
        json!({"status": "live"})
    );
    let rest = webinar_status(&server, &w).await;
    assert_eq!(rest["status"], "live");
    assert!(rest["startedAt"].is_string());
    // Starting again is harmless.
    assert_eq!(
        host.ok("startWebinar", json!({})).await,
        json!({"status": "live"})
    );

    assert_eq!(viewer.refused("endWebinar", json!({})).await, "forbidden");
    assert_eq!(
        host.ok("endWebinar", json!({})).await,
        json!({"status": "ended"})
    );
    assert_eq!(
        viewer.next_event("webinarState").await,
        json!({"status": "ended"})
    );
    assert!(
        viewer.wait_closed().await,
        "attendees are disconnected at the end"
    );
    assert!(
        host.wait_closed().await,
        "the host is disconnected after its ack"
    );
    let rest = webinar_status(&server, &w).await;
    assert_eq!(rest["status"], "ended");
    assert!(rest["endedAt"].is_string());

    // Nobody gets back in, and attendance is closed.
    let mut again = connect(&server, &token).await;
    assert_eq!(again.refused("join", json!({})).await, "webinar_ended");
    let (_, attendees) = server
        .call(
            "GET",
            &format!("/api/v1/webinars/{}/attendees", w.id),
            Some(&w.admin),
            None,
        )
        .await;
    let viewer_row = attendees
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["role"] == "attendee")
        .unwrap();
    assert_eq!(viewer_row["online"], false);
    assert!(viewer_row["leftAt"].is_string());
}

#[tokio::test]
async fn presenter_events_are_refused_to_attendees() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;
    let (mut host, host_ack) = joined(&server, &host_token(&server, &w).await).await;
    let host_peer = host_ack["peerId"].as_str().unwrap().to_string();
    let (_, token) = attendee_token(&server, &w, "viewer").await;

    // Before joining, nothing but `join` works.
    let mut viewer = connect(&server, &token).await;
    assert_eq!(
        viewer.refused("sendChat", json!({"text": "hi"})).await,
        "not_joined"
    );
    let data = viewer.ok("join", json!({})).await;
    let me = data["peerId"].as_str().unwrap().to_string();

    for (event, payload) in [
        ("startWebinar", json!({})),
        ("endWebinar", json!({})),
        ("setRole", json!({"peerId": me, "role": "co-host"})),
        ("kick", json!({"peerId": host_peer})),
        ("spotlight", json!({"peerId": me})),
        ("spotlight", json!({"peerId": null})),
        ("pushCaption", json!({"text": "hello", "isFinal": true})),
    ] {
        assert_eq!(viewer.refused(event, payload).await, "forbidden", "{event}");
    }
    // setRole is the host's alone.
    let (rid, token) = attendee_token(&server, &w, "cohost").await;
    server
        .call(
            "PUT",
            &format!("/api/v1/webinars/{}/roles/{rid}", w.id),
            Some(&w.admin),
            Some(json!({"role": "co-host"})),
        )
        .await;
    let (mut cohost, _) = joined(&server, &token).await;
    assert_eq!(
        cohost
            .refused("setRole", json!({"peerId": me, "role": "co-host"}))
            .await,
        "forbidden"
    );
    // Nobody removes the host.
    assert_eq!(
        cohost.refused("kick", json!({"peerId": host_peer})).await,
        "forbidden"
    );
    assert_eq!(
        host.refused("setRole", json!({"peerId": host_peer, "role": "attendee"}))
            .await,
        "forbidden"
    );
}

#[tokio::test]
async fn chat_round_trips_is_stored_limited_and_can_be_turned_off() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;
    let (mut host, _) = joined(&server, &host_token(&server, &w).await).await;
    let (_, token) = attendee_token(&server, &w, "chatty").await;
    let (mut viewer, data) = joined(&server, &token).await;
    let me = data["peerId"].as_str().unwrap().to_string();

    let ack = viewer
        .ok("sendChat", json!({"text": "  hello everyone  "}))
        .await;
    assert!(ack["id"].is_string() && ack["ts"].is_string(), "{ack}");
    let message = host.next_event("chatMessage").await;
    assert_eq!(message["id"], ack["id"]);
    assert_eq!(message["peerId"], me.as_str());
    assert_eq!(message["name"], "Ann Attendee");
    assert_eq!(message["role"], "attendee");
    assert_eq!(message["text"], "hello everyone");
    assert_eq!(message["ts"], ack["ts"]);
    assert_eq!(viewer.next_event("chatMessage").await["id"], ack["id"]);

    // Length limits, counted after trimming.
    for text in [json!(""), json!("   "), json!("x".repeat(2001))] {
        assert_eq!(
            viewer.refused("sendChat", json!({ "text": text })).await,
            "invalid_payload"
        );
    }
    viewer
        .ok("sendChat", json!({"text": "é".repeat(2000)}))
        .await;

    // Five messages in five seconds; the sixth waits.
    for i in 0..3 {
        viewer
            .ok("sendChat", json!({"text": format!("msg {i}")}))
            .await;
    }
    assert_eq!(
        viewer
            .refused("sendChat", json!({"text": "one too many"}))
            .await,
        "rate_limited"
    );
    // The limit is per person: the host still talks.
    host.ok("sendChat", json!({"text": "welcome"})).await;

    // A later joiner gets the history.
    let (_, token) = attendee_token(&server, &w, "late").await;
    let (_, data) = joined(&server, &token).await;
    let history = data["chatHistory"].as_array().unwrap();
    assert_eq!(history.len(), 6);
    assert_eq!(history[0]["text"], "hello everyone");
    assert_eq!(history[5]["text"], "welcome");

    // Chat off: refused for everyone.
    let (status, _) = server
        .call(
            "PATCH",
            &format!("/api/v1/webinars/{}", w.id),
            Some(&w.admin),
            Some(json!({"settings": {"chat": false}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        host.refused("sendChat", json!({"text": "anyone?"})).await,
        "chat_disabled"
    );

    // Stored: visible to a fresh process on the same data.
    let (settings, _dir) = server.stop().await;
    let store = webinar::open_store(&settings).await.unwrap();
    assert_eq!(store.count_chat_messages(&w.id).await.unwrap(), 6);
}

#[tokio::test]
async fn captions_are_broadcast_and_final_ones_kept_as_transcript() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;
    let (mut host, host_ack) = joined(&server, &host_token(&server, &w).await).await;
    let (_, token) = attendee_token(&server, &w, "reader").await;
    let (mut viewer, _) = joined(&server, &token).await;
    host.ok("startWebinar", json!({})).await;

    host.ok(
        "pushCaption",
        json!({"text": "Welcome to", "isFinal": false}),
    )
    .await;
    let interim = viewer.next_event("caption").await;
    assert_eq!(interim["peerId"], host_ack["peerId"]);
    assert_eq!(interim["name"], "Admin");
    assert_eq!(interim["text"], "Welcome to");
    assert_eq!(interim["isFinal"], false);
    assert!(interim["ts"].is_string());
    tokio::time::sleep(Duration::from_millis(200)).await;
    host.ok(
        "pushCaption",
        json!({"text": "Welcome to the launch", "isFinal": true, "lang": "en"}),
    )
    .await;
    let last = viewer.next_event("caption").await;
    assert_eq!(last["isFinal"], true);
    assert_eq!(
        host.refused("pushCaption", json!({"text": "", "isFinal": true}))
            .await,
        "invalid_payload"
    );
    assert_eq!(
        host.refused("pushCaption", json!({"text": "no flag"}))
            .await,
        "invalid_payload"
    );

    let (settings, _dir) = server.stop().await;
    let store = webinar::open_store(&settings).await.unwrap();
    let transcript = store.transcript(&w.id).await.unwrap();
    assert_eq!(transcript.len(), 1, "interim captions are not stored");
    let segment = &transcript[0];
    assert_eq!(segment.text, "Welcome to the launch");
    assert_eq!(segment.speaker, "Admin");
    assert_eq!(segment.lang.as_deref(), Some("en"));
    assert_eq!(segment.source, "caption");
    assert!(
        segment.end_ms - segment.start_ms >= 150,
        "the segment starts at the utterance's first interim piece: {segment:?}"
    );
}

#[tokio::test]
async fn participant_count_is_coalesced_and_attendees_get_no_presence() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;
    let (mut host, _) = joined(&server, &host_token(&server, &w).await).await;
    let (_, token) = attendee_token(&server, &w, "watcher").await;
    let (mut watcher, _) = joined(&server, &token).await;
    // Let the first counts go out, then start clean.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    host.seen.clear();
    watcher.received_names();
    watcher.seen.clear();

    let mut others = Vec::new();
    for i in 0..6 {
        let (_, token) = attendee_token(&server, &w, &format!("burst{i}")).await;
        others.push(joined(&server, &token).await.0);
    }
    for s in others.drain(..3) {
        s.disconnect().await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let counts = host.received("participantCount");
    assert!(!counts.is_empty());
    assert!(
        counts.len() <= 4,
        "9 changes should be coalesced: {counts:?}"
    );
    for pair in counts.windows(2) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(900),
            "at most one participantCount a second: {counts:?}"
        );
    }
    assert_eq!(counts.last().unwrap().data, json!({"count": 5}));

    // The watcher saw counts and nothing about who came and went.
    let names = watcher.received_names();
    assert!(names.iter().all(|n| n == "participantCount"), "{names:?}");
    assert_eq!(
        watcher.received("participantCount").last().unwrap().data,
        json!({"count": 5})
    );
}

#[tokio::test]
async fn set_role_takes_effect_live_over_socket_and_rest() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;
    let (mut host, _) = joined(&server, &host_token(&server, &w).await).await;
    let (rid, promoted_token) = attendee_token(&server, &w, "promoted").await;
    let (mut promoted, data) = joined(&server, &promoted_token).await;
    let peer = data["peerId"].as_str().unwrap().to_string();
    let (_, token) = attendee_token(&server, &w, "bystander").await;
    let (mut bystander, _) = joined(&server, &token).await;

    assert_eq!(
        promoted
            .refused("pushCaption", json!({"text": "hi", "isFinal": true}))
            .await,
        "forbidden"
    );
    assert_eq!(
        host.refused("setRole", json!({"peerId": peer, "role": "host"}))
            .await,
        "invalid_payload"
    );
    assert_eq!(
        host.refused("setRole", json!({"peerId": "nobody", "role": "co-host"}))
            .await,
        "not_found"
    );
    host.ok("setRole", json!({"peerId": peer, "role": "co-host"}))
        .await;
    let expected = json!({"peerId": peer, "role": "co-host"});
    assert_eq!(promoted.next_event("roleChanged").await, expected);
    assert_eq!(host.next_event("roleChanged").await, expected);
    promoted
        .ok(
            "pushCaption",
            json!({"text": "now I present", "isFinal": true}),
        )
        .await;
    let (_, reg) = server
        .call(
            "GET",
            &format!("/api/v1/webinars/{}/registrations", w.id),
            Some(&w.admin),
            None,
        )
        .await;
    let row = reg
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == rid.as_str())
        .unwrap();
    assert_eq!(row["role"], "co-host");

    // Demoted over REST: live at once, and the new co-host's view of
    // role changes includes their own.
    let (status, _) = server
        .call(
            "PUT",
            &format!("/api/v1/webinars/{}/roles/{rid}", w.id),
            Some(&w.admin),
            Some(json!({"role": "attendee"})),
        )
        .await;
    assert_eq!(status, 200);
    let expected = json!({"peerId": peer, "role": "attendee"});
    assert_eq!(promoted.next_event("roleChanged").await, expected);
    assert_eq!(host.next_event("roleChanged").await, expected);
    assert_eq!(
        promoted
            .refused("pushCaption", json!({"text": "hi", "isFinal": true}))
            .await,
        "forbidden"
    );
    // Role changes of others are not an attendee's business.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(bystander.received("roleChanged").is_empty());

    // A reconnecting client gets its (store) role back.
    host.ok("setRole", json!({"peerId": peer, "role": "co-host"}))
        .await;
    promoted.next_event("roleChanged").await;
    promoted.disconnect().await;
    let (_, data) = joined(&server, &promoted_token).await;
    assert_eq!(data["role"], "co-host");
}

#[tokio::test]
async fn kick_removes_a_participant_for_good() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;
    let (_host, _) = joined(&server, &host_token(&server, &w).await).await;
    let (rid, token) = attendee_token(&server, &w, "cohost").await;
    server
        .call(
            "PUT",
            &format!("/api/v1/webinars/{}/roles/{rid}", w.id),
            Some(&w.admin),
            Some(json!({"role": "co-host"})),
        )
        .await;
    let (mut cohost, _) = joined(&server, &token).await;
    let (_, token) = attendee_token(&server, &w, "troll").await;
    let (mut troll, data) = joined(&server, &token).await;
    let troll_peer = data["peerId"].as_str().unwrap().to_string();

    assert_eq!(
        troll.refused("kick", json!({"peerId": troll_peer})).await,
        "forbidden"
    );
    cohost.ok("kick", json!({"peerId": troll_peer})).await;
    assert_eq!(troll.next_event("kicked").await, json!({}));
    assert!(troll.wait_closed().await);
    let mut back = connect(&server, &token).await;
    assert_eq!(back.refused("join", json!({})).await, "kicked");
    assert_eq!(
        cohost.refused("kick", json!({"peerId": troll_peer})).await,
        "not_found"
    );
}

#[tokio::test]
async fn spotlight_is_broadcast_and_cleared() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;
    let (mut host, data) = joined(&server, &host_token(&server, &w).await).await;
    let host_peer = data["peerId"].clone();
    let (_, token) = attendee_token(&server, &w, "viewer").await;
    let (mut viewer, _) = joined(&server, &token).await;

    host.ok("spotlight", json!({ "peerId": host_peer })).await;
    assert_eq!(
        viewer.next_event("spotlight").await,
        json!({ "peerId": host_peer })
    );
    host.ok("spotlight", json!({"peerId": null})).await;
    assert_eq!(
        viewer.next_event("spotlight").await,
        json!({"peerId": null})
    );
    assert_eq!(
        host.refused("spotlight", json!({"peerId": "nobody"})).await,
        "not_found"
    );
    // A late joiner learns the current spotlight from its join ack.
    host.ok("spotlight", json!({ "peerId": host_peer })).await;
    let (_, token) = attendee_token(&server, &w, "late").await;
    let (_, data) = joined(&server, &token).await;
    assert_eq!(data["spotlight"], host_peer);
}

#[tokio::test]
async fn quality_reports_are_validated_stored_and_reported() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;
    let (_, a) = attendee_token(&server, &w, "a").await;
    let (_, b) = attendee_token(&server, &w, "b").await;
    let (mut a, _) = joined(&server, &a).await;
    let (mut b, _) = joined(&server, &b).await;

    a.ok(
        "reportStats",
        json!({"rttMs": 100, "packetLoss": 2.0, "jitterMs": 10, "bitrateKbps": 1500}),
    )
    .await;
    b.ok("reportStats", json!({"rttMs": 300})).await;
    assert_eq!(
        b.refused("reportStats", json!({"rttMs": 50})).await,
        "rate_limited"
    );
    for bad in [
        json!({"rttMs": -1}),
        json!({"packetLoss": 101}),
        json!({"rttMs": "fast"}),
        json!({"cpu": 5}),
    ] {
        assert_eq!(a.refused("reportStats", bad).await, "invalid_payload");
    }

    let report = analytics(&server, &w).await;
    let q = &report["quality"];
    assert_eq!(q["samples"], 2, "{report}");
    assert_eq!(q["reporters"], 2);
    assert_eq!(q["avgRttMs"], 200.0);
    assert_eq!(q["avgPacketLoss"], 2.0);
    assert_eq!(q["avgBitrateKbps"], 1500.0);
    assert_eq!(report["currentConcurrent"], 2);
    assert_eq!(report["attended"], 2);
    assert_eq!(report["registrations"], 2);
    assert_eq!(report["approved"], 2);

    // The analytics route is for presenters.
    let (_, token) = attendee_token(&server, &w, "nosy").await;
    let (status, _) = server
        .call(
            "GET",
            &format!("/api/v1/webinars/{}/analytics", w.id),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn location_comes_from_the_geoip_database_and_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    std::fs::write(
        &db,
        city_db(&[
            Place {
                network: "127.0.0.0/8",
                city: "Loopville",
                country: "Localland",
                iso_code: "LL",
            },
            Place {
                network: "81.2.69.0/24",
                city: "London",
                country: "United Kingdom",
                iso_code: "GB",
            },
        ]),
    )
    .unwrap();
    let mut settings = crate::common::test_settings(Backend::Embedded, &dir.path().join("data"));
    settings.geoip.city_db = Some(db);
    settings.server.trusted_proxies = vec!["127.0.0.1".to_string().try_into().unwrap()];
    let server = TestServer::start_with(settings).await;
    let w = webinar(&server, json!({})).await;

    let (_, local) = attendee_token(&server, &w, "local").await;
    let (_local, _) = joined(&server, &local).await;
    let (_, proxied) = attendee_token(&server, &w, "proxied").await;
    let mut s = Sio::connect_with_headers(
        &server.base,
        Some(json!({ "token": proxied })),
        &[("x-forwarded-for", "81.2.69.142")],
    )
    .await
    .unwrap();
    s.ok("join", json!({})).await;

    let (_, attendees) = server
        .call(
            "GET",
            &format!("/api/v1/webinars/{}/attendees", w.id),
            Some(&w.admin),
            None,
        )
        .await;
    let mut places: Vec<_> = attendees
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["location"]["city"].clone(),
                a["location"]["country"].clone(),
                a["online"].clone(),
            )
        })
        .collect();
    places.sort_by_key(|p| p.0.to_string());
    assert_eq!(
        places,
        vec![
            (json!("London"), json!("United Kingdom"), json!(true)),
            (json!("Loopville"), json!("Localland"), json!(true)),
        ]
    );
    let report = analytics(&server, &w).await;
    let mut countries = report["countries"].as_array().unwrap().clone();
    countries.sort_by_key(|c| c["country"].to_string());
    assert_eq!(
        countries,
        vec![
            json!({"country": "Localland", "count": 1}),
            json!({"country": "United Kingdom", "count": 1}),
        ]
    );
    assert_eq!(report["cities"].as_array().unwrap().len(), 2);
    assert!(report["cities"]
        .as_array()
        .unwrap()
        .contains(&json!({"city": "London", "country": "United Kingdom", "count": 1})));
}

#[tokio::test]
async fn bad_payloads_get_error_acks_and_the_socket_keeps_working() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;
    let (_, token) = attendee_token(&server, &w, "fuzzy").await;
    let mut s = connect(&server, &token).await;

    assert_eq!(s.refused("join", json!("please")).await, "invalid_payload");
    assert_eq!(s.refused("join", json!([1, 2])).await, "invalid_payload");
    assert_eq!(
        s.refused("join", json!({"extra": 1})).await,
        "invalid_payload"
    );
    // `join` with only a callback, like `socket.emit("join", cb)`.
    let ack = s.request_args("join", vec![]).await;
    assert_eq!(ack["ok"], true, "{ack}");

    for bad in [
        json!({}),
        json!({"text": 5}),
        json!({"text": null}),
        json!(42),
    ] {
        assert_eq!(s.refused("sendChat", bad).await, "invalid_payload");
    }
    assert_eq!(s.refused("noSuchEvent", json!({})).await, "unknown_event");
    assert_eq!(
        s.refused("createWebRtcTransport", json!({"direction": "sideways"}))
            .await,
        "invalid_payload"
    );
    assert_eq!(
        s.refused("consume", json!({"transportId": "not-a-uuid"}))
            .await,
        "invalid_payload"
    );
    assert_eq!(
        s.refused("setRole", json!({"peerId": 1, "role": "co-host"}))
            .await,
        "invalid_payload"
    );
    assert_eq!(s.refused("kick", json!({})).await, "invalid_payload");
    s.ok("sendChat", json!({"text": "still here"})).await;
}

#[tokio::test]
async fn a_presenter_reconnecting_within_the_grace_period_keeps_one_session() {
    let server = TestServer::start(Backend::Embedded).await;
    let w = webinar(&server, json!({})).await;
    let token = host_token(&server, &w).await;
    let (host, _) = joined(&server, &token).await;
    let (_, viewer) = attendee_token(&server, &w, "viewer").await;
    let (viewer, _) = joined(&server, &viewer).await;
    host.disconnect().await;
    viewer.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_host, data) = joined(&server, &token).await;
    assert_eq!(data["role"], "host");

    let (_, attendees) = server
        .call(
            "GET",
            &format!("/api/v1/webinars/{}/attendees", w.id),
            Some(&w.admin),
            None,
        )
        .await;
    let rows = attendees.as_array().unwrap();
    let host_row = rows.iter().find(|a| a["role"] == "host").unwrap();
    assert_eq!(host_row["online"], true, "{attendees}");
    let viewer_row = rows.iter().find(|a| a["role"] == "attendee").unwrap();
    assert_eq!(viewer_row["online"], false, "{attendees}");
    let report = analytics(&server, &w).await;
    assert_eq!(report["currentConcurrent"], 1, "{report}");
    assert_eq!(report["peakConcurrent"], 2, "{report}");
}

/// One whole flow on MongoDB: join, start, chat, captions, stats, end, report.
#[tokio::test]
async fn a_live_webinar_runs_on_mongodb() {
    let server = TestServer::start(Backend::Mongo).await;
    let w = webinar(&server, json!({})).await;
    let (mut host, _) = joined(&server, &host_token(&server, &w).await).await;
    let (_, token) = attendee_token(&server, &w, "mongo").await;
    let (mut viewer, _) = joined(&server, &token).await;

    host.ok("startWebinar", json!({})).await;
    viewer.next_event("webinarState").await;
    viewer
        .ok("sendChat", json!({"text": "hello from mongo"}))
        .await;
    assert_eq!(
        host.next_event("chatMessage").await["text"],
        "hello from mongo"
    );
    host.ok("pushCaption", json!({"text": "hi all", "isFinal": true}))
        .await;
    viewer.ok("reportStats", json!({"rttMs": 42})).await;
    host.ok("endWebinar", json!({})).await;
    assert!(viewer.wait_closed().await);

    let report = analytics(&server, &w).await;
    assert_eq!(report["chatMessages"], 1, "{report}");
    assert_eq!(report["attended"], 1);
    assert_eq!(report["currentConcurrent"], 0);
    assert_eq!(report["peakConcurrent"], 2);
    assert_eq!(report["quality"]["avgRttMs"], 42.0);
    assert_eq!(webinar_status(&server, &w).await["status"], "ended");
}
