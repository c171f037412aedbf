//! One bench run: for each SFU and audience size, a fresh SFU, the
//! presenter, viewers joining at the ramp rate, a measurement window, a
//! layer switch; then the report.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use tokio::sync::Mutex;

use crate::media::{self, EncodedMedia, Pacer};
use crate::net::{bind_socket, Command, Endpoint, NetThread, Samples};
use crate::params::LocalParameters;
use crate::peer::{crypto_provider, fingerprint_of, ice_credentials, Peer, PeerState};
use crate::plan::MediaPlan;
use crate::presenter::Presenter;
use crate::procstat::{self, ProcessSample};
use crate::report::{self, Progress};
use crate::results::{BandwidthStep, Percentiles, Point, Report, Sfu};
use crate::viewer::{Viewer, ViewerSnapshot};
use crate::{janus, ours};
use sfu::transport::DtlsCertificate;

/// Options of a run (the `webinar-bench` command line).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "webinar-bench",
    about = "Simulated audiences through the real path, side by side with Janus"
)]
pub struct Options {
    /// About a minute: small audiences, short windows (what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// Audience sizes, comma separated (default 100,250,500,1000; quick: 10,30).
    #[arg(long, value_delimiter = ',')]
    pub viewers: Vec<usize>,
    /// Which SFUs to measure: webinar, janus (default both when Janus is
    /// installed).
    #[arg(long, value_delimiter = ',')]
    pub sfu: Vec<String>,
    /// Viewers joining per second.
    #[arg(long, default_value_t = 50.0)]
    pub ramp: f64,
    /// Measurement window per point, seconds (default 20; quick: 5).
    #[arg(long)]
    pub window: Option<u64>,
    /// Simulcast bitrates of the presenter's camera, kbps, lowest first.
    #[arg(long, value_delimiter = ',', default_values_t = vec![150, 500, 1500])]
    pub bitrates: Vec<u32>,
    #[arg(long, default_value_t = 32)]
    pub audio_kbps: u32,
    /// The layer viewers prefer (0 = lowest).
    #[arg(long, default_value_t = 1)]
    pub layer: u8,
    /// Media workers of our server (the targets are per worker).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Viewers that decrypt everything to measure delay and layer switches.
    #[arg(long, default_value_t = 50)]
    pub sampled: usize,
    /// The `webinar` binary (default: next to this one).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// Where the report (report.json, report.html) and the encoded media
    /// cache go.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

impl Options {
    fn audiences(&self) -> Vec<usize> {
        match (&self.viewers[..], self.quick) {
            ([], true) => vec![10, 30],
            ([], false) => vec![100, 250, 500, 1000],
            (sizes, _) => sizes.to_vec(),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.window.unwrap_or(if self.quick { 5 } else { 20 }))
    }

    fn sfus(&self) -> anyhow::Result<Vec<Sfu>> {
        if self.sfu.is_empty() {
            let mut sfus = vec![Sfu::Webinar];
            if janus::installed() {
                sfus.push(Sfu::Janus);
            }
            return Ok(sfus);
        }
        self.sfu
            .iter()
            .map(|name| match name.as_str() {
                "webinar" => Ok(Sfu::Webinar),
                "janus" => Ok(Sfu::Janus),
                other => bail!("unknown SFU {other:?} (webinar or janus)"),
            })
            .collect()
    }

    fn server_binary(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.server {
            return Ok(path.clone());
        }
        let exe = std::env::current_exe()?;
        let dir = exe
            .parent()
            .ok_or_else(|| anyhow!("no directory for {}", exe.display()))?;
        // Next to webinar-bench, or one up from a test binary in deps/.
        for candidate in [dir.join("webinar"), dir.join("../webinar")] {
            if candidate.exists() {
                return Ok(candidate);
            }
        }
        bail!("no webinar binary next to {}; pass --server", exe.display())
    }
}

/// Runs the bench and writes the reports; returns the report.
pub async fn run(options: Options, command: String) -> anyhow::Result<Report> {
    let sfus = options.sfus()?;
    let plan = MediaPlan::simulcast(&options.bitrates, options.audio_kbps);
    if usize::from(options.layer) >= plan.encodings.len() {
        bail!(
            "--layer {} but only {} encodings",
            options.layer,
            plan.encodings.len()
        );
    }
    std::fs::create_dir_all(&options.out)?;
    eprintln!(
        "encoding the presenter's media with GStreamer (cached in {}/media)",
        options.out.display()
    );
    let media = media::encode(&plan, &options.out.join("media"))?;
    for (encoding, stream) in plan.encodings.iter().zip(&media.video) {
        eprintln!(
            "  {}x{}: {} kbps encoded ({} asked), {} packets per loop",
            encoding.width,
            encoding.height,
            stream.bitrate / 1000,
            encoding.bitrate_kbps,
            stream.packets.len()
        );
    }
    let certificate = Arc::new(DtlsCertificate::generate()?);
    let mut report = Report {
        command,
        started_at: chrono_like_now(),
        machine: procstat::machine(),
        quick: options.quick,
        ..Default::default()
    };
    let audiences = options.audiences();
    let largest = audiences.iter().copied().max().unwrap_or(0);
    for &viewers in &audiences {
        for &sfu in &sfus {
            eprintln!("{} with {viewers} viewers", sfu.name());
            // The bandwidth step is measured once, with the largest audience.
            let step = viewers == largest;
            let measured = measure(&options, sfu, viewers, step, &plan, &media, &certificate).await;
            let point = match measured {
                Ok(point) => point,
                Err(error) => Point {
                    sfu: Some(sfu),
                    viewers,
                    problems: vec![format!("{error:#}")],
                    ..Default::default()
                },
            };
            report.points.push(point);
        }
    }
    report.targets = report::check_targets(&report.points);
    report::write_json(&report, &options.out.join("report.json"))?;
    report::write_html(&report, &options.out.join("report.html"))?;
    Ok(report)
}

/// Seconds since the Unix epoch, formatted as RFC 3339 (UTC).
fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The SFU under test, started fresh for one point.
enum Target {
    Webinar {
        server: ours::Server,
        webinar: String,
    },
    Janus {
        janus: janus::Janus,
        room: u64,
        feed: u64,
        /// Janus's configuration and log.
        _work: tempfile::TempDir,
    },
}

impl Target {
    fn pid(&self) -> u32 {
        match self {
            Target::Webinar { server, .. } => server.pid(),
            Target::Janus { janus, .. } => janus.pid(),
        }
    }
}

/// How the run talks to one viewer after it joined (to switch layers).
enum ViewerControl {
    Webinar {
        sio: crate::sio::Sio,
        video_consumer: String,
    },
    Janus {
        subscription: janus::Subscription,
    },
}

/// A new peer on a fresh socket bound to `ip`.
fn new_peer(
    ip: IpAddr,
    certificate: &Arc<DtlsCertificate>,
) -> anyhow::Result<(std::net::UdpSocket, Peer)> {
    let (socket, address) = bind_socket(ip)?;
    let local = LocalParameters {
        ice: ice_credentials(),
        fingerprint: fingerprint_of(certificate),
        address,
    };
    Ok((
        socket,
        Peer::new(local, certificate.clone(), crypto_provider()),
    ))
}

/// Waits until the peer `id` on `net` is connected.
async fn wait_connected(net: &NetThread, id: usize, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let states = net.ask(Command::States).await?;
        match states.iter().find(|(i, _)| *i == id).map(|(_, s)| *s) {
            Some(PeerState::Connected) => return Ok(()),
            Some(PeerState::Failed) => bail!("peer {id}: DTLS failed"),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("peer {id} not connected within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const PRESENTER: usize = 0;
const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Adds the presenter (a peer on `ip` and the pacer) to `net`; returns
/// what it signals.
fn add_presenter(
    net: &NetThread,
    ip: IpAddr,
    certificate: &Arc<DtlsCertificate>,
    media: &EncodedMedia,
    plan: &MediaPlan,
) -> anyhow::Result<LocalParameters> {
    let (socket, peer) = new_peer(ip, certificate)?;
    let local = peer.local().clone();
    let pacer = Pacer::new(media.clone(), plan, Instant::now());
    net.send(Command::Add {
        id: PRESENTER,
        socket,
        endpoint: Endpoint::Presenter(Box::new(Presenter::new(
            peer,
            pacer,
            media.video.iter().map(|stream| stream.bitrate).sum(),
        ))),
    });
    Ok(local)
}

async fn measure(
    options: &Options,
    sfu: Sfu,
    viewers: usize,
    step: bool,
    plan: &MediaPlan,
    media: &EncodedMedia,
    certificate: &Arc<DtlsCertificate>,
) -> anyhow::Result<Point> {
    let mut problems = Vec::new();
    // The SFU, and the presenter publishing to it.
    let presenter_net = NetThread::spawn("bench-presenter")?;
    let mut host_sio = None;
    let target = match sfu {
        Sfu::Webinar => {
            let server = ours::Server::start(&options.server_binary()?, options.workers).await?;
            let (webinar, host_token) = server.create_webinar(viewers + 10).await?;
            let local = add_presenter(&presenter_net, LOOPBACK, certificate, media, plan)?;
            let (mut sio, _) = ours::connect(&server.base, &host_token).await?;
            let (transport, remote) = ours::create_transport(&mut sio, "send").await?;
            ours::connect_transport(&mut sio, &transport, &local).await?;
            presenter_net.send(Command::Start {
                id: PRESENTER,
                remote,
            });
            ours::produce(&mut sio, &transport, plan).await?;
            sio.call("startWebinar", serde_json::json!({}))
                .await
                .map_err(|e| anyhow!(e))?;
            host_sio = Some(sio);
            Target::Webinar { server, webinar }
        }
        Sfu::Janus => {
            let work = tempfile::tempdir()?;
            let janus = janus::Janus::start_auto(work.path()).await?;
            let room = janus.create_room(1).await?;
            let local = add_presenter(&presenter_net, janus.ice_ip(), certificate, media, plan)?;
            let publisher = janus.publish(room, plan, &local).await?;
            presenter_net.send(Command::Start {
                id: PRESENTER,
                remote: publisher.remote.clone(),
            });
            Target::Janus {
                janus,
                room,
                feed: publisher.feed_id,
                _work: work,
            }
        }
    };
    wait_connected(&presenter_net, PRESENTER, Duration::from_secs(10))
        .await
        .context("the presenter did not connect")?;
    // Let the SFU see the streams before anyone consumes them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = procstat::sample(target.pid())?;

    // The audience, at the ramp rate.
    let viewer_net = Arc::new(NetThread::spawn("bench-viewers")?);
    let target = Arc::new(target);
    let controls: Arc<Mutex<Vec<(usize, ViewerControl)>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let sample_every = (viewers / options.sampled.max(1)).max(1);
    let mut progress = Progress::new(&format!("{} joining", sfu.name()), viewers as u64);
    let mut joins = tokio::task::JoinSet::new();
    let ramp_start = Instant::now();
    for index in 1..=viewers {
        let due = ramp_start + Duration::from_secs_f64((index - 1) as f64 / options.ramp);
        tokio::time::sleep_until(due.into()).await;
        let (net, target, joined, failures) = (
            viewer_net.clone(),
            target.clone(),
            controls.clone(),
            failures.clone(),
        );
        let certificate = certificate.clone();
        let sampled = index % sample_every == 0;
        let layer = options.layer;
        joins.spawn(async move {
            let joined_viewer =
                join_viewer(&net, &target, index, sampled, layer, false, &certificate).await;
            match joined_viewer {
                Ok(control) => joined.lock().await.push((index, control)),
                Err(error) => failures
                    .lock()
                    .await
                    .push(format!("viewer {index}: {error:#}")),
            }
        });
        progress.set(
            index as u64,
            &format!("{} joined", controls.lock().await.len()),
        );
    }
    while joins.join_next().await.is_some() {}
    progress.finish();
    let ramp_seconds = ramp_start.elapsed().as_secs_f64();
    {
        let failures = failures.lock().await;
        if !failures.is_empty() {
            problems.push(format!(
                "{} viewers failed to join; first: {}",
                failures.len(),
                failures[0]
            ));
        }
    }
    // Settle, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = viewer_net.ask(Command::TakeSamples).await?;
    let start = window_sample(&viewer_net, target.pid()).await?;
    tokio::time::sleep(options.window()).await;
    let end = window_sample(&viewer_net, target.pid()).await?;
    let samples = viewer_net.ask(Command::TakeSamples).await?;
    check_layers(&samples, options.layer, &mut problems);

    // A layer switch up then down for the sampled viewers.
    let top = (plan.encodings.len() - 1) as u8;
    let switches = switch_layers(&viewer_net, &target, &controls, top, options.layer).await;
    if let Err(error) = &switches {
        problems.push(format!("layer switch: {error:#}"));
    }

    // One more viewer, giving congestion control feedback, behind a
    // bottleneck that steps down and back up (SFUs that adapt layers to
    // each viewer's bandwidth: ours; Janus's VideoRoom does not).
    let step = match &*target {
        Target::Webinar { .. } if step => {
            // On a thread of its own: its arrival times (and so its
            // congestion control feedback) must not carry the jitter of
            // the thread that receives for the whole audience.
            let step_net = NetThread::spawn("bench-step")?;
            match bandwidth_step(&step_net, &target, viewers + 1, top, certificate).await {
                Ok(step) => Some(step),
                Err(error) => {
                    problems.push(format!("bandwidth step: {error:#}"));
                    None
                }
            }
        }
        Target::Webinar { .. } | Target::Janus { .. } => None,
    };

    let mut point = point_from(sfu, viewers, &before, &start, &end, samples);
    point.layer_switch_ms = switches.unwrap_or_default();
    point.bandwidth_step = step;
    point.problems = problems;
    if point.viewers_receiving < viewers {
        point.problems.push(format!(
            "{} of {viewers} viewers received media (ramp {ramp_seconds:.1} s)",
            point.viewers_receiving
        ));
    }
    drop(host_sio);
    drop(controls);
    drop(presenter_net);
    if let Ok(target) = Arc::try_unwrap(target) {
        if let Target::Janus { janus, .. } = target {
            janus.stop().await;
        }
    }
    Ok(point)
}

/// Joins one viewer: signalling, a socket and a peer, consumers of the
/// presenter's camera (at `layer`) and microphone.
async fn join_viewer(
    net: &NetThread,
    target: &Target,
    index: usize,
    sampled: bool,
    layer: u8,
    congestion_control: bool,
    certificate: &Arc<DtlsCertificate>,
) -> anyhow::Result<ViewerControl> {
    let started = Instant::now();
    let ip = match target {
        Target::Webinar { .. } => LOOPBACK,
        Target::Janus { janus, .. } => janus.ice_ip(),
    };
    let (socket, peer) = new_peer(ip, certificate)?;
    let local = peer.local().clone();
    net.send(Command::Add {
        id: index,
        socket,
        endpoint: Endpoint::Viewer(Box::new(Viewer::new(peer, sampled, started))),
    });
    match target {
        Target::Webinar { server, webinar } => {
            let token = server.register_viewer(webinar, index).await?;
            let (mut sio, joined) = ours::connect(&server.base, &token).await?;
            let capabilities =
                ours::viewer_capabilities(&joined["routerRtpCapabilities"], congestion_control);
            let producers = joined["producers"].as_array().cloned().unwrap_or_default();
            let producer = |kind: &str| {
                producers
                    .iter()
                    .find(|p| p["kind"] == kind)
                    .and_then(|p| p["id"].as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("no {kind} producer in join"))
            };
            let (video_producer, audio_producer) = (producer("video")?, producer("audio")?);
            let (transport, remote) = ours::create_transport(&mut sio, "recv").await?;
            let video = ours::consume(&mut sio, &transport, &video_producer, &capabilities).await?;
            let audio = ours::consume(&mut sio, &transport, &audio_producer, &capabilities).await?;
            net.send(Command::SetStreams {
                id: index,
                streams: ours::streams(&video, &audio),
            });
            // As mediasoup-client: the transport is connected (acked)
            // before the browser starts ICE.
            ours::connect_transport(&mut sio, &transport, &local).await?;
            net.send(Command::Start { id: index, remote });
            sio.call(
                "setConsumerPreferredLayers",
                serde_json::json!({"consumerId": video.id, "spatialLayer": layer}),
            )
            .await
            .map_err(|e| anyhow!(e))?;
            for consumer in [&video.id, &audio.id] {
                sio.call(
                    "resumeConsumer",
                    serde_json::json!({"consumerId": consumer}),
                )
                .await
                .map_err(|e| anyhow!(e))?;
            }
            Ok(ViewerControl::Webinar {
                sio,
                video_consumer: video.id,
            })
        }
        Target::Janus {
            janus, room, feed, ..
        } => {
            let subscription = janus.subscribe_offer(*room, *feed, layer).await?;
            net.send(Command::SetStreams {
                id: index,
                streams: subscription.streams(),
            });
            janus.subscribe_answer(&subscription, &local).await?;
            net.send(Command::Start {
                id: index,
                remote: subscription.offer.remote.clone(),
            });
            Ok(ViewerControl::Janus { subscription })
        }
    }
}

/// Counters of all viewers and the SFU's process at one moment.
struct WindowSample {
    at: Instant,
    viewers: Vec<(usize, ViewerSnapshot)>,
    sfu: ProcessSample,
    generator: ProcessSample,
}

async fn window_sample(net: &NetThread, pid: u32) -> anyhow::Result<WindowSample> {
    let viewers = net.ask(Command::Snapshot).await?;
    Ok(WindowSample {
        at: Instant::now(),
        viewers,
        sfu: procstat::sample(pid)?,
        generator: procstat::sample_self()?,
    })
}

/// Notes sampled viewers that did not get the layer they prefer.
fn check_layers(samples: &Samples, layer: u8, problems: &mut Vec<String>) {
    let wrong = samples
        .layers
        .iter()
        .filter(|(_, l)| l.is_some_and(|l| l != layer))
        .count();
    if wrong > 0 {
        problems.push(format!(
            "{wrong} sampled viewers received another layer than {layer}"
        ));
    }
}

/// Switches every sampled viewer's video to `up`, then back to `back`,
/// and returns how long each switch took to show in the packets.
async fn switch_layers(
    net: &NetThread,
    target: &Target,
    controls: &Mutex<Vec<(usize, ViewerControl)>>,
    up: u8,
    back: u8,
) -> anyhow::Result<Percentiles> {
    let sampled: Vec<usize> = net
        .ask(Command::TakeSamples)
        .await?
        .layers
        .into_iter()
        .filter_map(|(id, layer)| layer.map(|_| id))
        .collect();
    let mut controls = controls.lock().await;
    for layer in [up, back] {
        for (id, control) in controls.iter_mut() {
            if !sampled.contains(id) {
                continue;
            }
            net.send(Command::AwaitLayer {
                id: *id,
                layer,
                at: Instant::now(),
            });
            match (control, target) {
                (
                    ViewerControl::Webinar {
                        sio,
                        video_consumer,
                    },
                    _,
                ) => {
                    sio.call(
                        "setConsumerPreferredLayers",
                        serde_json::json!({"consumerId": video_consumer, "spatialLayer": layer}),
                    )
                    .await
                    .map_err(|e| anyhow!(e))?;
                }
                (ViewerControl::Janus { subscription }, Target::Janus { janus, .. }) => {
                    janus.configure_substream(subscription, layer).await?;
                }
                (ViewerControl::Janus { .. }, Target::Webinar { .. }) => {}
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let mut switches = net.ask(Command::TakeSamples).await?.layer_switches_ms;
    Ok(Percentiles::of(&mut switches))
}

/// Capacity of the stepped viewer's downlink: above the top layer plus
/// audio, then between the lowest and the middle layer.
const STEP_HIGH: u64 = 3_000_000;
const STEP_LOW: u64 = 300_000;

/// Joins viewer `id` preferring the top layer, with congestion control
/// feedback, behind a 3 Mbit/s bottleneck; once it receives the top layer
/// steps the bottleneck to 300 kbit/s, then back, timing each switch.
async fn bandwidth_step(
    net: &NetThread,
    target: &Target,
    id: usize,
    top: u8,
    certificate: &Arc<DtlsCertificate>,
) -> anyhow::Result<BandwidthStep> {
    let control = join_viewer(net, target, id, true, top, true, certificate).await?;
    net.send(Command::SetBottleneck {
        id,
        bitrate: Some(STEP_HIGH),
    });
    let mut step = BandwidthStep {
        high_kbps: STEP_HIGH / 1000,
        low_kbps: STEP_LOW / 1000,
        ..Default::default()
    };
    // The estimate starts low and climbs to the top layer.
    step.layer_before = wait_for_layer(net, id, Some(top), Duration::from_secs(15)).await?;
    let before = snapshot_of(net, id).await?;
    net.send(Command::AwaitLayer {
        id,
        layer: 0,
        at: Instant::now(),
    });
    net.send(Command::SetBottleneck {
        id,
        bitrate: Some(STEP_LOW),
    });
    wait_for_layer(net, id, Some(0), Duration::from_secs(10)).await?;
    step.down_ms = take_switch(net).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let low = snapshot_of(net, id).await?;
    let expected = low.expected - before.expected;
    step.low_phase_loss_percent = if expected == 0 {
        0.0
    } else {
        expected.saturating_sub(low.received - before.received) as f64 * 100.0 / expected as f64
    };
    net.send(Command::AwaitLayer {
        id,
        layer: top,
        at: Instant::now(),
    });
    net.send(Command::SetBottleneck {
        id,
        bitrate: Some(STEP_HIGH),
    });
    wait_for_layer(net, id, Some(top), Duration::from_secs(20)).await?;
    step.up_ms = take_switch(net).await?;
    drop(control);
    net.send(Command::Remove { id });
    Ok(step)
}

/// Waits until viewer `id` receives `layer`; returns the layer it has then
/// (which is not `layer` when the wait timed out).
async fn wait_for_layer(
    net: &NetThread,
    id: usize,
    layer: Option<u8>,
    within: Duration,
) -> anyhow::Result<Option<u8>> {
    let deadline = Instant::now() + within;
    loop {
        let current = net
            .ask(Command::Layers)
            .await?
            .into_iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, l)| l);
        if current == layer || Instant::now() > deadline {
            return Ok(current);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The switch time recorded since the last call (one viewer awaiting).
async fn take_switch(net: &NetThread) -> anyhow::Result<Option<f64>> {
    Ok(net
        .ask(Command::TakeSamples)
        .await?
        .layer_switches_ms
        .first()
        .copied())
}

async fn snapshot_of(net: &NetThread, id: usize) -> anyhow::Result<ViewerSnapshot> {
    net.ask(Command::Snapshot)
        .await?
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, s)| s)
        .ok_or_else(|| anyhow!("viewer {id} is gone"))
}

/// The point's figures from the samples around the window.
fn point_from(
    sfu: Sfu,
    viewers: usize,
    before: &ProcessSample,
    start: &WindowSample,
    end: &WindowSample,
    samples: Samples,
) -> Point {
    let seconds = end.at.duration_since(start.at).as_secs_f64();
    let mut packets = 0u64;
    let mut bytes = 0u64;
    let mut losses = Vec::new();
    let mut joins = Vec::new();
    let mut receiving = 0;
    for (id, last) in &end.viewers {
        if let Some(ms) = last.join_to_first_frame {
            joins.push(ms.as_secs_f64() * 1000.0);
        }
        let first = start
            .viewers
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, s)| *s)
            .unwrap_or_default();
        let received = last.received - first.received;
        let expected = last.expected - first.expected;
        if received > 0 {
            receiving += 1;
        }
        packets += received;
        bytes += last.bytes - first.bytes;
        if expected > 0 {
            losses.push(expected.saturating_sub(received) as f64 * 100.0 / expected as f64);
        }
    }
    let cpu = end.sfu.cpu_seconds - start.sfu.cpu_seconds;
    let mut delays: Vec<f64> = samples.delays_ms.iter().map(|&d| f64::from(d)).collect();
    let consumers = (2 * viewers).max(1) as f64;
    Point {
        sfu: Some(sfu),
        viewers,
        viewers_receiving: receiving,
        window_seconds: seconds,
        sfu_cpu_seconds: cpu,
        sfu_cpu_percent: end.sfu.cpu_percent_since(&start.sfu),
        packets_forwarded: packets,
        cpu_us_per_packet: if packets > 0 {
            cpu * 1e6 / packets as f64
        } else {
            0.0
        },
        cpu_percent_per_viewer: end.sfu.cpu_percent_since(&start.sfu) / viewers.max(1) as f64,
        packets_per_second: packets as f64 / seconds,
        megabits_per_second: bytes as f64 * 8.0 / seconds / 1e6,
        loss_percent_mean: if losses.is_empty() {
            0.0
        } else {
            losses.iter().sum::<f64>() / losses.len() as f64
        },
        loss_percent_max: losses.iter().copied().fold(0.0, f64::max),
        delay_ms: Percentiles::of(&mut delays),
        join_to_first_frame_ms: Percentiles::of(&mut joins),
        sfu_rss_mib_before: before.rss_mib(),
        sfu_rss_mib_with_viewers: start.sfu.rss_mib(),
        sfu_kib_per_consumer: (start.sfu.rss_bytes as f64 - before.rss_bytes as f64)
            / 1024.0
            / consumers,
        layer_switch_ms: Percentiles::default(),
        bandwidth_step: None,
        generator_cpu_percent: end.generator.cpu_percent_since(&start.generator),
        problems: Vec::new(),
    }
}
