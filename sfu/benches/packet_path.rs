//! The in-process per-packet path, no syscalls: SRTP protect/unprotect per
//! profile, the consumer's RTP rewrite alone, and one producer fanned out
//! to 1, 100 and 1000 consumers (producer receive once, then per consumer
//! forward + SRTP protect). Ends with a summary of the fan-out cost per
//! packet per consumer against bare protect (target: within 1.5x).
//!
//! Run: `cargo bench -p sfu --bench packet_path -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use sfu::bench_support::{self, FanOut};
use sfu::transport::SrtpProfile;

const PROFILES: [(&str, SrtpProfile); 2] = [
    ("gcm", SrtpProfile::AeadAes128Gcm),
    ("cm80", SrtpProfile::AesCm128HmacSha1_80),
];
const FAN_OUT: [usize; 3] = [1, 100, 1000];
/// Packets protected ahead of each timed unprotect batch.
const UNPROTECT_BATCH: u64 = 4096;

fn srtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp");
    group.throughput(Throughput::Elements(1));
    for (name, profile) in PROFILES {
        let mut session = bench_support::srtp_session(profile);
        let mut packet = bench_support::sender_packet(0, 0, false);
        let mut seq = 0u16;
        let mut datagram = Vec::with_capacity(1600);
        group.bench_function(BenchmarkId::new("protect", name), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                packet[2..4].copy_from_slice(&seq.to_be_bytes());
                session
                    .protect_rtp_into(black_box(&packet), &mut datagram)
                    .expect("RTP protects");
                black_box(&datagram);
            });
        });
        group.bench_function(BenchmarkId::new("unprotect", name), |b| {
            // The inbound side replay-checks (window 128, as in production),
            // so every batch uses fresh sessions and fresh sequence numbers;
            // only the unprotect calls are timed.
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(UNPROTECT_BATCH);
                    left -= n;
                    let mut sender = bench_support::srtp_session(profile);
                    let mut receiver = bench_support::srtp_session(profile);
                    let protected: Vec<Vec<u8>> = (1..=n as u16)
                        .map(|seq| {
                            let packet = bench_support::sender_packet(seq, 0, false);
                            sender.protect_rtp(&packet).expect("RTP protects")
                        })
                        .collect();
                    let start = Instant::now();
                    for datagram in &protected {
                        black_box(
                            receiver
                                .unprotect_rtp(black_box(datagram))
                                .expect("a fresh packet unprotects"),
                        );
                    }
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

fn rtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("rtp");
    group.throughput(Throughput::Elements(1));
    let mut state: Option<FanOut> = None;
    group.bench_function("consumer_forward", |b| {
        let fan_out = state.get_or_insert_with(|| {
            let mut fan_out = FanOut::new(1, SrtpProfile::AeadAes128Gcm);
            fan_out.warm_up();
            assert!(fan_out.forward_only().is_some(), "the consumer forwards");
            fan_out
        });
        b.iter(|| black_box(fan_out.forward_only()));
    });
    let mut state: Option<FanOut> = None;
    group.bench_function("producer_receive", |b| {
        let fan_out = state.get_or_insert_with(|| FanOut::new(0, SrtpProfile::AeadAes128Gcm));
        b.iter(|| black_box(fan_out.receive()));
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    for (name, profile) in PROFILES {
        let mut group = c.benchmark_group(format!("fan_out_{name}"));
        group.sample_size(20).sampling_mode(SamplingMode::Flat);
        // The CM/HMAC profile only at 100 consumers, to keep the run short.
        let sizes: &[usize] = if name == "gcm" { &FAN_OUT } else { &[100] };
        for &n in sizes {
            group.throughput(Throughput::Elements(n as u64));
            // Built once, on the first call of the routine (criterion calls
            // it per sample, and not at all when filtered out), and run
            // until every consumer's NACK store has wrapped, so that samples
            // see the steady state and not first-touch page faults.
            let mut state: Option<FanOut> = None;
            group.bench_function(BenchmarkId::from_parameter(n), |b| {
                let fan_out = state.get_or_insert_with(|| {
                    let mut fan_out = FanOut::new(n, profile);
                    fan_out.warm_up();
                    fan_out
                });
                b.iter(|| {
                    fan_out.fan_out(|destination, datagram| {
                        black_box((destination, &datagram[..]));
                    })
                });
            });
        }
        group.finish();
    }
}

/// Criterion's output directory, as criterion itself finds it.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

/// The median time of one benchmark iteration, in ns, from criterion's
/// estimates of the latest run.
fn median_ns(id: &str) -> Option<f64> {
    let path = criterion_dir().join(id).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn summary() {
    println!("\nfan-out per packet per consumer vs bare SRTP protect (target <= 1.5x):");
    println!(
        "{:<8} {:>9} {:>14} {:>16} {:>8}",
        "profile", "consumers", "protect ns", "per consumer ns", "ratio"
    );
    for (name, _) in PROFILES {
        let Some(protect) = median_ns(&format!("srtp/protect/{name}")) else {
            continue;
        };
        for n in FAN_OUT {
            let Some(total) = median_ns(&format!("fan_out_{name}/{n}")) else {
                continue;
            };
            let per = total / n as f64;
            let ratio = per / protect;
            let verdict = if ratio <= 1.5 { "met" } else { "missed" };
            println!("{name:<8} {n:>9} {protect:>14.0} {per:>16.0} {ratio:>7.2}x {verdict}");
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    srtp(&mut c);
    rtp(&mut c);
    fan_out(&mut c);
    c.final_summary();
    summary();
}
