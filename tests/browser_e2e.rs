//! End to end in a real browser: Debian's Chromium, driven by
//! playwright-core (tests/browser/run.mjs), runs test pages that use the
//! unmodified mediasoup-client and socket.io-client against this server:
//! publishing camera, microphone and screen, decoding video on two
//! viewers, chat, captions, capacity, promotion, and the end of the
//! webinar. The pages are bundled by scripts/install-deps.

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

// Its own test binary, so that Chromium does not compete for the two cores
// with the other integration tests (binaries run one after another).
#[allow(dead_code)]
#[path = "integration/common.rs"]
mod common;

use common::{test_settings, unique_email, Backend, TestServer};

/// One Chromium scenario at a time: two would share the two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a Playwright scenario of tests/browser with its JSON config;
/// fails with its output unless it succeeds; returns its stdout.
async fn run_scenario(dir: PathBuf, script: &'static str, config: serde_json::Value) -> String {
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(dir.join(script))
            .arg(config.to_string())
            .current_dir(&dir)
            .output()
            .expect("running node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    stdout
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_webinar_works_in_chromium() {
    let _one = ONE_BROWSER.lock().await;
    let dir = browser_dir();
    assert!(
        dir.join("dist/client.js").is_file() && dir.join("node_modules").is_dir(),
        "the browser test pages are not built: run scripts/install-deps \
         (npm ci --prefix tests/browser && node tests/browser/build.mjs)"
    );
    let data = tempfile::tempdir().unwrap();
    let mut settings = test_settings(Backend::Embedded, data.path());
    settings.server.web_dir = dir.join("dist");
    // Two workers: the second viewer watches through an in-memory pipe.
    settings.media.workers = Some(2);
    settings.media.quality_sample_seconds = 1;
    let server = TestServer::start_with(settings).await;
    let admin = server.admin().await;
    let (status, w) = server
        .call(
            "POST",
            "/api/v1/webinars",
            Some(&admin),
            Some(json!({"title": "Browser launch", "capacity": 2, "requiresApproval": false})),
        )
        .await;
    assert_eq!(status, 201);
    let wid = w["id"].as_str().unwrap().to_string();
    let (status, host) = server.join_as_host(&wid, &admin).await;
    assert_eq!(status, 200);
    let mut tokens = Vec::new();
    let mut registrations = Vec::new();
    for i in 0..3 {
        let (rid, key, _) = server.register(&wid, &unique_email(&format!("b{i}"))).await;
        let (status, joined) = server.join_as(&wid, &rid, &key).await;
        assert_eq!(status, 200);
        tokens.push(joined["token"].as_str().unwrap().to_string());
        registrations.push(rid);
    }
    let config = json!({
        "base": server.base,
        "webinarId": wid,
        "adminToken": admin,
        "hostToken": host["token"],
        "viewerTokens": [tokens[0], tokens[1]],
        "extraToken": tokens[2],
        "promoteRegistrationId": registrations[1],
    });
    let stdout = run_scenario(dir, "run.mjs", config).await;
    assert!(stdout.contains("\"result\":\"passed\""), "{stdout}");
    println!("{stdout}");
    // The caption reached the transcript, and the chat message the store.
    let (_, analytics) = server
        .call(
            "GET",
            &format!("/api/v1/webinars/{wid}/analytics"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(analytics["chatMessages"], 1, "{analytics}");
    // The server sampled the viewers' reception while media flowed.
    let server_quality = &analytics["quality"]["server"];
    assert!(
        server_quality["samples"].as_u64().unwrap() > 0,
        "{analytics}"
    );
    assert!(
        server_quality["avgBitrateKbps"].as_f64().unwrap() > 10.0,
        "{analytics}"
    );
    server.stop().await;
}

/// Chrome sends three simulcast layers of a 1280x720 camera; a viewer
/// asking for each layer in turn decodes 320, 640 and 1280 pixels wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_decodes_each_of_three_simulcast_layers_in_chromium() {
    let _one = ONE_BROWSER.lock().await;
    let dir = browser_dir();
    assert!(
        dir.join("dist/client.js").is_file() && dir.join("node_modules").is_dir(),
        "the browser test pages are not built: run scripts/install-deps"
    );
    let data = tempfile::tempdir().unwrap();
    let mut settings = test_settings(Backend::Embedded, data.path());
    settings.server.web_dir = dir.join("dist");
    let server = TestServer::start_with(settings).await;
    let admin = server.admin().await;
    let wid = server.create_webinar(&admin, false).await;
    let (status, host) = server.join_as_host(&wid, &admin).await;
    assert_eq!(status, 200);
    let (rid, key, _) = server.register(&wid, &unique_email("s3")).await;
    let (status, viewer) = server.join_as(&wid, &rid, &key).await;
    assert_eq!(status, 200);
    let config =
        json!({"base": server.base, "hostToken": host["token"], "viewerToken": viewer["token"]});
    let stdout = run_scenario(dir, "simulcast.mjs", config).await;
    assert!(stdout.contains("\"result\":\"passed\""), "{stdout}");
    println!("{stdout}");
    server.stop().await;
}
