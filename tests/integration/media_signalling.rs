//! Media signalling over Socket.IO against the real server and its media
//! workers: who may create which transport, produce and consume; what
//! attendees see during setup and once live; closes and demotions reaching
//! everyone. (Media itself flowing is proven in the SFU's tests and in the
//! browser tests.)

use serde_json::{json, Value};

use crate::common::{unique_email, Backend, TestServer};
use webinar_bench::sio::Sio;

async fn setup(server: &TestServer) -> (String, String) {
    let admin = server.admin().await;
    let wid = server.create_webinar(&admin, false).await;
    let (status, body) = server.join_as_host(&wid, &admin).await;
    assert_eq!(status, 200, "{body}");
    (wid, body["token"].as_str().unwrap().to_string())
}

async fn attendee(server: &TestServer, wid: &str) -> (String, String) {
    let (rid, key, _) = server.register(wid, &unique_email("viewer")).await;
    let (status, body) = server.join_as(wid, &rid, &key).await;
    assert_eq!(status, 200, "{body}");
    (rid, body["token"].as_str().unwrap().to_string())
}

async fn joined(server: &TestServer, token: &str) -> (Sio, Value) {
    let mut s = Sio::connect(&server.base, Some(json!({ "token": token })))
        .await
        .unwrap();
    let data = s.ok("join", json!({})).await;
    (s, data)
}

fn opus_parameters() -> Value {
    json!({
        "mid": "0",
        "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2,
                    "parameters": {"minptime": 10, "useinbandfec": 1}, "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}]}],
        "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {}}],
        "encodings": [{"ssrc": 424242, "dtx": false}],
        "rtcp": {"cname": "host", "reducedSize": true}
    })
}

async fn produce_mic(s: &mut Sio, source: &str) -> String {
    let t = s
        .ok("createWebRtcTransport", json!({"direction": "send"}))
        .await;
    let p = s
        .ok(
            "produce",
            json!({"transportId": t["id"], "kind": "audio", "rtpParameters": opus_parameters(), "appData": {"source": source}}),
        )
        .await;
    p["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn presenters_produce_and_attendees_consume_once_live() {
    let server = TestServer::start(Backend::Embedded).await;
    let (wid, host_token) = setup(&server).await;
    let (_, viewer_token) = attendee(&server, &wid).await;
    let (_, other_token) = attendee(&server, &wid).await;

    let (mut host, host_join) = joined(&server, &host_token).await;
    let caps = &host_join["routerRtpCapabilities"];
    let mimes: Vec<&str> = caps["codecs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["mimeType"].as_str().unwrap())
        .collect();
    assert!(
        mimes.contains(&"audio/opus") && mimes.contains(&"video/VP8"),
        "{mimes:?}"
    );
    assert_eq!(host_join["producers"], json!([]));

    let (mut viewer, _) = joined(&server, &viewer_token).await;
    let (mut other, _) = joined(&server, &other_token).await;

    // Attendees never send.
    assert_eq!(
        viewer
            .refused("createWebRtcTransport", json!({"direction": "send"}))
            .await,
        "forbidden"
    );
    let recv = viewer
        .ok("createWebRtcTransport", json!({"direction": "recv"}))
        .await;
    assert!(recv["iceParameters"]["usernameFragment"].is_string());
    assert_eq!(
        recv["dtlsParameters"]["fingerprints"][0]["algorithm"],
        "sha-256"
    );
    assert_eq!(
        viewer
            .refused("produce", json!({"transportId": recv["id"], "kind": "audio", "rtpParameters": opus_parameters(), "appData": {"source": "mic"}}))
            .await,
        "forbidden"
    );

    // Backstage: the host's mic is not announced to attendees during setup.
    let mic = produce_mic(&mut host, "mic").await;
    assert!(viewer
        .try_next_event("newProducer", std::time::Duration::from_millis(300))
        .await
        .is_none());
    let device_caps = caps.clone();
    assert_eq!(
        viewer
            .refused("consume", json!({"transportId": recv["id"], "producerId": mic, "rtpCapabilities": device_caps}))
            .await,
        "not_live"
    );
    // A track whose kind contradicts its source is refused.
    let t = host
        .ok("createWebRtcTransport", json!({"direction": "send"}))
        .await;
    assert_eq!(
        host.refused("produce", json!({"transportId": t["id"], "kind": "audio", "rtpParameters": opus_parameters(), "appData": {"source": "camera"}}))
            .await,
        "invalid_request"
    );

    // Going live announces it; the attendee consumes it, paused until resumed.
    host.ok("startWebinar", json!({})).await;
    let announced = viewer.next_event("newProducer").await;
    assert_eq!(announced["id"], mic.as_str());
    assert_eq!(announced["source"], "mic");
    assert_eq!(announced["kind"], "audio");
    let consumer = viewer
        .ok(
            "consume",
            json!({"transportId": recv["id"], "producerId": mic, "rtpCapabilities": device_caps}),
        )
        .await;
    assert_eq!(consumer["producerId"], mic.as_str());
    assert_eq!(consumer["kind"], "audio");
    assert_eq!(consumer["type"], "simple");
    assert_eq!(consumer["producerPaused"], false);
    assert_eq!(
        consumer["rtpParameters"]["codecs"][0]["mimeType"],
        "audio/opus"
    );
    viewer
        .ok("resumeConsumer", json!({"consumerId": consumer["id"]}))
        .await;

    // Nobody touches another peer's objects.
    assert_eq!(
        other
            .refused("resumeConsumer", json!({"consumerId": consumer["id"]}))
            .await,
        "forbidden"
    );
    assert_eq!(
        other
            .refused("connectWebRtcTransport", json!({"transportId": recv["id"], "dtlsParameters": {"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": "AA"}]}}))
            .await,
        "forbidden"
    );
    assert_eq!(
        other
            .refused("closeProducer", json!({"producerId": mic}))
            .await,
        "forbidden"
    );
    assert_eq!(
        other
            .refused(
                "resumeConsumer",
                json!({"consumerId": "00000000-0000-4000-8000-000000000000"})
            )
            .await,
        "not_found"
    );

    // A newcomer sees the live producer in its join ack.
    let (_, late_token) = attendee(&server, &wid).await;
    let (_, late_join) = joined(&server, &late_token).await;
    assert_eq!(late_join["producers"][0]["id"], mic.as_str());
    assert_eq!(late_join["producers"][0]["source"], "mic");

    // Pausing is announced; closing closes the consumers too.
    host.ok("pauseProducer", json!({"producerId": mic})).await;
    assert_eq!(
        viewer.next_event("producerPaused").await["id"],
        mic.as_str()
    );
    host.ok("closeProducer", json!({"producerId": mic})).await;
    assert_eq!(
        viewer.next_event("producerClosed").await["id"],
        mic.as_str()
    );
    assert_eq!(
        viewer.next_event("consumerClosed").await["consumerId"],
        consumer["id"]
    );
}

#[tokio::test]
async fn a_demoted_co_host_stops_presenting_at_once() {
    let server = TestServer::start(Backend::Embedded).await;
    let (wid, host_token) = setup(&server).await;
    let (rid, co_token) = attendee(&server, &wid).await;
    let (mut host, _) = joined(&server, &host_token).await;
    let (mut co, co_join) = joined(&server, &co_token).await;
    let co_peer = co_join["peerId"].as_str().unwrap().to_string();
    host.ok("setRole", json!({"peerId": co_peer, "role": "co-host"}))
        .await;
    co.next_event("roleChanged").await;
    let mic = produce_mic(&mut co, "mic").await;
    assert_eq!(host.next_event("newProducer").await["id"], mic.as_str());
    // Demoted over REST: the producer closes and everyone hears of it.
    let admin = server.admin().await;
    let (status, _) = server
        .call(
            "PUT",
            &format!("/api/v1/webinars/{wid}/roles/{rid}"),
            Some(&admin),
            Some(json!({"role": "attendee"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(host.next_event("producerClosed").await["id"], mic.as_str());
    assert_eq!(
        co.refused("createWebRtcTransport", json!({"direction": "send"}))
            .await,
        "forbidden"
    );
}

#[tokio::test]
async fn ending_the_webinar_ends_its_media() {
    let server = TestServer::start(Backend::Embedded).await;
    let (wid, host_token) = setup(&server).await;
    let (mut host, _) = joined(&server, &host_token).await;
    produce_mic(&mut host, "mic").await;
    host.ok("startWebinar", json!({})).await;
    host.ok("endWebinar", json!({})).await;
    // A new host socket cannot reach the old media: the webinar is over.
    let mut again = Sio::connect(&server.base, Some(json!({ "token": host_token })))
        .await
        .unwrap();
    assert_eq!(again.refused("join", json!({})).await, "webinar_ended");
    let _ = wid;
}

#[tokio::test]
async fn a_dropped_host_keeps_presenting_for_the_grace_period_and_viewers_can_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::common::test_settings(Backend::Embedded, dir.path());
    settings.server.presenter_grace_seconds = 2;
    let server = TestServer::start_with(settings).await;
    let (wid, host_token) = setup(&server).await;
    let (_, viewer_token) = attendee(&server, &wid).await;
    let (mut host, _) = joined(&server, &host_token).await;
    let mic = produce_mic(&mut host, "mic").await;
    host.ok("startWebinar", json!({})).await;
    let (mut viewer, join) = joined(&server, &viewer_token).await;
    let caps = join["routerRtpCapabilities"].clone();
    let recv = viewer
        .ok("createWebRtcTransport", json!({"direction": "recv"}))
        .await;
    viewer
        .ok(
            "consume",
            json!({"transportId": recv["id"], "producerId": mic, "rtpCapabilities": caps}),
        )
        .await;

    // The host's connection drops: its media is not cut at once...
    let dropped_at = std::time::Instant::now();
    host.disconnect().await;
    assert!(
        viewer
            .try_next_event("producerClosed", std::time::Duration::from_millis(1000))
            .await
            .is_none(),
        "a signalling blip must not cut the presenter's media"
    );
    // ...but after the grace period.
    assert_eq!(
        viewer.next_event("producerClosed").await["id"],
        mic.as_str()
    );
    assert!(dropped_at.elapsed() >= std::time::Duration::from_secs(2));

    // A viewer whose connection drops comes back with the same token and
    // consumes again.
    let (mut host, _) = joined(&server, &host_token).await;
    let mic = produce_mic(&mut host, "mic").await;
    viewer.disconnect().await;
    let (mut viewer, join) = joined(&server, &viewer_token).await;
    assert_eq!(join["role"], "attendee");
    assert!(join["producers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == mic.as_str()));
    let recv = viewer
        .ok("createWebRtcTransport", json!({"direction": "recv"}))
        .await;
    let consumer = viewer
        .ok(
            "consume",
            json!({"transportId": recv["id"], "producerId": mic, "rtpCapabilities": caps}),
        )
        .await;
    viewer
        .ok("resumeConsumer", json!({"consumerId": consumer["id"]}))
        .await;
}
