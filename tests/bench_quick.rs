//! The bench suite's quick mode, as CI runs it: a real run of
//! `webinar-bench --quick` against this build's `webinar` server (and Janus
//! when installed), asserting only that the figures are sane (every viewer
//! got media, delays and CPU are positive and plausible, a viewer behind a
//! bandwidth step switched down, the reports were written), never speed.

use webinar_bench::results::Sfu;
use webinar_bench::run::{run, Options};

use clap::Parser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_bench_produces_sane_figures() {
    let out = tempfile::tempdir().unwrap();
    let server = env!("CARGO_BIN_EXE_webinar");
    let out_dir = out.path().to_str().unwrap();
    let args = [
        "webinar-bench",
        "--quick",
        "--server",
        server,
        "--out",
        out_dir,
    ];
    let options = Options::parse_from(args);
    let report = run(options, args.join(" ")).await.expect("the bench runs");
    println!("{}", webinar_bench::report::table(&report));

    let janus = std::path::Path::new("/usr/bin/janus").exists();
    let sfus = if janus { 2 } else { 1 };
    assert_eq!(report.points.len(), 2 * sfus, "two audience sizes per SFU");
    for point in &report.points {
        let name = point.sfu.map(Sfu::name).unwrap_or("?");
        let at = format!(
            "{name} with {} viewers: {:?}",
            point.viewers, point.problems
        );
        assert_eq!(point.viewers_receiving, point.viewers, "{at}");
        assert!(point.problems.is_empty(), "{at}");
        assert!(
            point.packets_forwarded > 0 && point.sfu_cpu_seconds > 0.0,
            "{at}"
        );
        assert!(
            point.cpu_us_per_packet > 0.0 && point.cpu_us_per_packet < 10_000.0,
            "{at}"
        );
        assert!(point.loss_percent_mean < 5.0, "{at}");
        assert!(point.delay_ms.samples > 100, "{at}");
        assert!(
            point.delay_ms.p50 > 0.0 && point.delay_ms.p50 < 500.0,
            "{at}"
        );
        assert!(
            point.join_to_first_frame_ms.samples == point.viewers,
            "{at}"
        );
        assert!(point.join_to_first_frame_ms.p50 > 0.0, "{at}");
        assert!(point.layer_switch_ms.samples > 0, "{at}");
        // A viewer of a 500 kbps layer plus 32 kbps audio receives about
        // half a megabit per second.
        let per_viewer = point.megabits_per_second / point.viewers as f64;
        assert!(
            (0.2..1.5).contains(&per_viewer),
            "{at}: {per_viewer} Mbit/s each"
        );
    }
    // The bandwidth step (ours only, with the largest audience): the
    // viewer behind it reached a higher layer, then went down to the
    // lowest when its capacity fell to 300 kbit/s.
    let steps: Vec<_> = report
        .points
        .iter()
        .filter_map(|p| p.bandwidth_step.as_ref())
        .collect();
    assert_eq!(steps.len(), 1, "one bandwidth step per run");
    assert!(
        steps[0].layer_before.is_some_and(|l| l >= 1),
        "{:?}",
        steps[0]
    );
    assert!(steps[0].down_ms.is_some(), "{:?}", steps[0]);

    let json = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        parsed["points"].as_array().unwrap().len(),
        report.points.len()
    );
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2, "CPU and delay charts");
}
