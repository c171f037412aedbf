//! The whole send path over loopback UDP: one producer packet fanned out
//! to N consumers (producer receive, per consumer forward + SRTP protect),
//! each consumer's datagram sent to its own remote socket on 127.0.0.1,
//! drained by a receiver thread. Compares ways of sending:
//!
//! - `send_to`: std, one syscall per datagram (what the driver does today);
//! - `quinn_sendmsg`: quinn-udp's safe `UdpSocketState::send`, one
//!   `sendmsg` per datagram (it has no cross-destination batching);
//! - `nix_sendmmsg32`: nix's safe `sendmmsg`, 32 datagrams (to different
//!   destinations) per syscall;
//! - `quinn_gso_frame8`: a video frame of 8 packets is fanned out first,
//!   then each consumer's 8 datagrams leave in one UDP GSO `sendmsg`
//!   (`UDP_SEGMENT`) through quinn-udp.
//!
//! Throughput is in datagrams, so criterion's per-element time is the cost
//! per packet per consumer of the whole path. A summary against the target
//! (1.5x of protect + batched send) ends the run.
//!
//! Run: `cargo bench -p sfu --bench socket_path -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::io::{ErrorKind, IoSlice};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use mio::net::UdpSocket as MioUdpSocket;
use mio::{Events, Interest, Poll, Token};
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrIn};
use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};
use sfu::bench_support::FanOut;
use sfu::transport::SrtpProfile;

const CONSUMERS: [usize; 3] = [1, 100, 1000];
const MMSG_BATCH: usize = 32;
const FRAME_PACKETS: usize = 8;
/// From the engineering note (§5): GCM protect ~0.45 us, batched
/// (sendmmsg) loopback send ~3.0 us per packet.
const NOTE_PROTECT_NS: f64 = 450.0;
const NOTE_BATCHED_SEND_NS: f64 = 3000.0;

/// N remote sockets on 127.0.0.1 and a thread that drains them all.
struct Receivers {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Receivers {
    fn new(n: usize) -> Receivers {
        let poll = Poll::new().expect("epoll is available");
        let mut sockets = Vec::with_capacity(n);
        let mut addrs = Vec::with_capacity(n);
        for i in 0..n {
            let std_socket = UdpSocket::bind("127.0.0.1:0").expect("loopback bind");
            std_socket.set_nonblocking(true).expect("nonblocking");
            addrs.push(std_socket.local_addr().expect("bound address"));
            let mut socket = MioUdpSocket::from_std(std_socket);
            poll.registry()
                .register(&mut socket, Token(i), Interest::READABLE)
                .expect("register with epoll");
            sockets.push(socket);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, received) = (stop.clone(), received.clone());
            let mut poll = poll;
            std::thread::spawn(move || {
                let mut events = Events::with_capacity(1024);
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if poll
                        .poll(&mut events, Some(Duration::from_millis(20)))
                        .is_err()
                    {
                        continue;
                    }
                    for event in &events {
                        let socket = &sockets[event.token().0];
                        loop {
                            match socket.recv_from(&mut buf) {
                                Ok(_) => {
                                    received.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                Err(_) => break,
                            }
                        }
                    }
                }
            })
        };
        Receivers {
            addrs,
            stop,
            received,
            thread: Some(thread),
        }
    }
}

impl Receivers {
    /// Lets the drain catch up, stops it and says how many arrived.
    fn finish(mut self) -> u64 {
        std::thread::sleep(Duration::from_millis(100));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.received.load(Ordering::Relaxed)
    }
}

/// A fan-out whose consumers send to the receivers, the SFU's socket and
/// its quinn-udp state, and how many datagrams were handed to the kernel.
struct Rig {
    fan_out: FanOut,
    receivers: Receivers,
    socket: UdpSocket,
    quinn: UdpSocketState,
    sent: u64,
}

impl Rig {
    fn new(n: usize) -> Rig {
        let receivers = Receivers::new(n);
        let mut fan_out = FanOut::new(n, SrtpProfile::AeadAes128Gcm);
        fan_out.warm_up();
        for (i, addr) in receivers.addrs.iter().enumerate() {
            fan_out.set_destination(i, *addr);
        }
        let socket = UdpSocket::bind("127.0.0.1:0").expect("loopback bind");
        let quinn = UdpSocketState::new(UdpSockRef::from(&socket)).expect("quinn-udp socket state");
        Rig {
            fan_out,
            receivers,
            socket,
            quinn,
            sent: 0,
        }
    }
}

/// (variant, consumers, datagrams handed to the kernel, datagrams received)
type Delivery = Vec<(&'static str, usize, u64, u64)>;

/// Records a finished benchmark's delivery, if it ran (was not filtered out).
fn record(delivery: &mut Delivery, variant: &'static str, n: usize, rig: Option<Rig>) {
    if let Some(rig) = rig {
        let sent = rig.sent;
        drop(rig.fan_out);
        delivery.push((variant, n, sent, rig.receivers.finish()));
    }
}

fn v4(addr: SocketAddr) -> SockaddrIn {
    match addr {
        SocketAddr::V4(a) => SockaddrIn::from(a),
        SocketAddr::V6(_) => SockaddrIn::from(SocketAddrV4::new([127, 0, 0, 1].into(), 9)),
    }
}

/// Sends `batch` with as few `sendmmsg` calls as the kernel allows;
/// returns how many datagrams were handed to the kernel.
fn flush_mmsg(
    socket: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrIn>,
    batch: &mut Vec<(SocketAddr, Vec<u8>)>,
) -> u64 {
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    let mut handed = 0;
    let mut start = 0;
    while start < batch.len() {
        let pending = &batch[start..];
        let slices: Vec<[IoSlice<'_>; 1]> = pending
            .iter()
            .map(|(_, datagram)| [IoSlice::new(datagram)])
            .collect();
        let addrs: Vec<Option<SockaddrIn>> = pending.iter().map(|(a, _)| Some(v4(*a))).collect();
        let sent = match sendmmsg(
            socket.as_raw_fd(),
            headers,
            &slices,
            &addrs,
            no_cmsgs,
            MsgFlags::empty(),
        ) {
            Ok(results) => results.count(),
            // Dropped like a failed send_to; skip past the batch.
            Err(_) => {
                start = batch.len();
                0
            }
        };
        handed += sent as u64;
        start += sent;
        if sent == 0 {
            break;
        }
    }
    batch.clear();
    handed
}

fn socket_fan_out(c: &mut Criterion) {
    // Each rig is built on the first call of its routine (criterion calls
    // it per sample, and not at all when the benchmark is filtered out).
    let mut delivery = Delivery::new();
    let mut group = c.benchmark_group("socket_fan_out");
    group.sample_size(20).sampling_mode(SamplingMode::Flat);
    for n in CONSUMERS {
        group.throughput(Throughput::Elements(n as u64));

        let mut rig: Option<Rig> = None;
        group.bench_function(BenchmarkId::new("send_to", n), |b| {
            let Rig {
                fan_out,
                socket,
                sent,
                ..
            } = rig.get_or_insert_with(|| Rig::new(n));
            b.iter(|| {
                fan_out.fan_out(|destination, datagram| {
                    let _ = black_box(socket.send_to(datagram, destination));
                    *sent += 1;
                })
            });
        });
        record(&mut delivery, "send_to", n, rig);

        let mut rig: Option<Rig> = None;
        group.bench_function(BenchmarkId::new("quinn_sendmsg", n), |b| {
            let Rig {
                fan_out,
                socket,
                quinn,
                sent,
                ..
            } = rig.get_or_insert_with(|| Rig::new(n));
            b.iter(|| {
                fan_out.fan_out(|destination, datagram| {
                    let transmit = Transmit {
                        destination,
                        ecn: None,
                        contents: datagram,
                        segment_size: None,
                        src_ip: None,
                    };
                    let _ = black_box(quinn.send(UdpSockRef::from(&*socket), &transmit));
                    *sent += 1;
                })
            });
        });
        record(&mut delivery, "quinn_sendmsg", n, rig);

        let mut rig: Option<Rig> = None;
        let mut headers = MultiHeaders::<SockaddrIn>::preallocate(MMSG_BATCH, None);
        let mut batch: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(MMSG_BATCH);
        group.bench_function(BenchmarkId::new("nix_sendmmsg32", n), |b| {
            let Rig {
                fan_out,
                socket,
                sent,
                ..
            } = rig.get_or_insert_with(|| Rig::new(n));
            b.iter(|| {
                fan_out.fan_out(|destination, datagram| {
                    batch.push((destination, std::mem::take(datagram)));
                    if batch.len() == MMSG_BATCH {
                        *sent += flush_mmsg(socket, &mut headers, &mut batch);
                    }
                });
                *sent += flush_mmsg(socket, &mut headers, &mut batch);
            });
        });
        record(&mut delivery, "nix_sendmmsg32", n, rig);
    }
    group.finish();

    // One GSO send per consumer per frame: throughput counts every packet.
    let mut group = c.benchmark_group("socket_fan_out_frame");
    group.sample_size(20).sampling_mode(SamplingMode::Flat);
    for n in CONSUMERS {
        group.throughput(Throughput::Elements((n * FRAME_PACKETS) as u64));
        let mut rig: Option<Rig> = None;
        let mut frames: Vec<Vec<u8>> = Vec::new();
        group.bench_function(BenchmarkId::new("quinn_gso_frame8", n), |b| {
            let Rig {
                fan_out,
                receivers,
                socket,
                quinn,
                sent,
            } = rig.get_or_insert_with(|| Rig::new(n));
            let gso = quinn.max_gso_segments();
            frames.resize_with(n, || Vec::with_capacity(FRAME_PACKETS * 1300));
            let mut segment = 0;
            b.iter(|| {
                for frame in &mut frames {
                    frame.clear();
                }
                for _ in 0..FRAME_PACKETS {
                    let mut i = 0;
                    fan_out.fan_out(|_, datagram| {
                        segment = datagram.len();
                        frames[i].extend_from_slice(datagram);
                        i += 1;
                    });
                }
                for (destination, contents) in receivers.addrs.iter().zip(&frames) {
                    let transmit = Transmit {
                        destination: *destination,
                        ecn: None,
                        contents,
                        segment_size: (gso > 1).then_some(segment),
                        src_ip: None,
                    };
                    let _ = black_box(quinn.send(UdpSockRef::from(&*socket), &transmit));
                    *sent += (contents.len() / segment.max(1)) as u64;
                }
            });
        });
        if let Some(rig) = &rig {
            eprintln!(
                "quinn-udp max_gso_segments on loopback: {}",
                rig.quinn.max_gso_segments()
            );
        }
        record(&mut delivery, "quinn_gso_frame8", n, rig);
    }
    group.finish();

    println!("\ndelivery (loopback drops when the draining thread falls behind):");
    for (variant, n, sent, received) in delivery {
        let pct = if sent == 0 {
            0.0
        } else {
            100.0 * received as f64 / sent as f64
        };
        println!(
            "{variant:<18} {n:>5} consumers: {sent:>10} sent, {received:>10} received ({pct:.0}%)"
        );
    }
}

fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

fn median_ns(id: &str) -> Option<f64> {
    let path = criterion_dir().join(id).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn summary() {
    // Protect as measured by the packet_path bench, when it has run.
    let protect = median_ns("srtp/protect/gcm").unwrap_or(NOTE_PROTECT_NS);
    let target = 1.5 * (protect + NOTE_BATCHED_SEND_NS);
    println!(
        "\nwhole path per packet per consumer; target 1.5 x (protect {protect:.0} ns + batched send {NOTE_BATCHED_SEND_NS:.0} ns) = {target:.0} ns:"
    );
    for (group, variant, per_iter) in [
        ("socket_fan_out", "send_to", 1),
        ("socket_fan_out", "quinn_sendmsg", 1),
        ("socket_fan_out", "nix_sendmmsg32", 1),
        ("socket_fan_out_frame", "quinn_gso_frame8", FRAME_PACKETS),
    ] {
        for n in CONSUMERS {
            let Some(total) = median_ns(&format!("{group}/{variant}/{n}")) else {
                continue;
            };
            let per = total / (n * per_iter) as f64;
            let verdict = if per <= target { "met" } else { "missed" };
            println!("{variant:<18} {n:>5} consumers: {per:>7.0} ns  {verdict}");
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    socket_fan_out(&mut c);
    c.final_summary();
    summary();
}
