//! The generator's I/O: a thread owning UDP sockets and the endpoints
//! (presenter or viewers) behind them, driven by mio. Async signalling
//! code talks to it with [`Command`]s; nothing else crosses threads.
//!
//! One thread carries the presenter alone (so its pacing is not delayed
//! by viewer traffic), others carry the viewers.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::oneshot;

use crate::params::RemoteParameters;
use crate::peer::{PeerState, Received};
use crate::presenter::Presenter;
use crate::viewer::{Viewer, ViewerSnapshot, ViewerStreams};

const WAKER: Token = Token(usize::MAX);
/// Timers of idle endpoints are checked at least this often.
const SWEEP: Duration = Duration::from_millis(10);

/// An endpoint the thread drives.
pub enum Endpoint {
    Presenter(Box<Presenter>),
    Viewer(Box<Viewer>),
}

/// What the signalling side asks of an I/O thread.
pub enum Command {
    Add {
        id: usize,
        socket: std::net::UdpSocket,
        endpoint: Endpoint,
    },
    /// The SFU's parameters arrived: start ICE and DTLS.
    Start {
        id: usize,
        remote: RemoteParameters,
    },
    SetStreams {
        id: usize,
        streams: ViewerStreams,
    },
    /// A layer switch was asked for at `at`: time its arrival.
    AwaitLayer {
        id: usize,
        layer: u8,
        at: Instant,
    },
    /// A simulated bottleneck on the viewer's downlink (bits/s), or none.
    SetBottleneck {
        id: usize,
        bitrate: Option<u64>,
    },
    Remove {
        id: usize,
    },
    Snapshot(oneshot::Sender<Vec<(usize, ViewerSnapshot)>>),
    /// Delay and layer-switch samples gathered so far (and cleared).
    TakeSamples(oneshot::Sender<Samples>),
    /// The layer each viewer last received (sampled viewers only; others
    /// do not decrypt), without taking samples.
    Layers(oneshot::Sender<Vec<(usize, Option<u8>)>>),
    /// Peer states, to wait for connections.
    States(oneshot::Sender<Vec<(usize, PeerState)>>),
    Stop,
}

/// Samples taken by sampled viewers.
#[derive(Debug, Default)]
pub struct Samples {
    pub delays_ms: Vec<f32>,
    pub layer_switches_ms: Vec<f64>,
    /// The layer each sampled viewer last received.
    pub layers: Vec<(usize, Option<u8>)>,
}

/// A handle on one I/O thread.
pub struct NetThread {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl NetThread {
    pub fn spawn(name: &str) -> anyhow::Result<NetThread> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                lower_priority();
                Loop::new(poll, receiver).run()
            })?;
        Ok(NetThread {
            commands,
            waker,
            thread: Some(thread),
        })
    }

    pub fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Sends a command carrying a reply channel and waits for the reply.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx));
        rx.await.context("the I/O thread stopped")
    }
}

impl Drop for NetThread {
    fn drop(&mut self) {
        self.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Lowers the calling thread's scheduling priority (nice 10, through
/// `renice`, best effort). The generator stands in for clients on other
/// machines: on a shared 2-core box its threads, woken by every datagram
/// the SFU sends, would otherwise preempt the SFU's worker in the middle of
/// its fan-out (seen in `perf` as the worker switched out inside
/// `sendto`), and the figures would measure the generator's contention.
fn lower_priority() {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|name| name.to_str()) else {
        return;
    };
    let _ = std::process::Command::new("renice")
        .args(["-n", "10", "-p", tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Binds a non-blocking UDP socket on `ip` (any port); returns it and
/// its address. (The kernel's default buffers, about 200 KiB, hold several
/// frames of every viewer's stream.)
pub fn bind_socket(ip: IpAddr) -> anyhow::Result<(std::net::UdpSocket, SocketAddr)> {
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
    socket.set_nonblocking(true)?;
    let address = socket.local_addr()?;
    Ok((socket, address))
}

struct Slot {
    socket: UdpSocket,
    endpoint: Endpoint,
    next_timeout: Option<Instant>,
}

struct Loop {
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    slots: HashMap<usize, Slot>,
    buf: Vec<u8>,
    next_sweep: Instant,
}

impl Loop {
    fn new(poll: Poll, commands: mpsc::Receiver<Command>) -> Loop {
        Loop {
            poll,
            commands,
            slots: HashMap::new(),
            buf: vec![0; 2048],
            next_sweep: Instant::now(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let next = self
                .slots
                .values()
                .filter_map(|s| s.next_timeout)
                .min()
                .unwrap_or(now + SWEEP)
                .min(self.next_sweep);
            let timeout = next.saturating_duration_since(now);
            if self.poll.poll(&mut events, Some(timeout)).is_err() {
                return;
            }
            let now = Instant::now();
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                self.read(event.token().0, now);
            }
            if !self.handle_commands(now) {
                return;
            }
            self.handle_timeouts(Instant::now());
        }
    }

    fn handle_commands(&mut self, now: Instant) -> bool {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Add {
                    id,
                    socket,
                    endpoint,
                } => {
                    let mut socket = UdpSocket::from_std(socket);
                    if self
                        .poll
                        .registry()
                        .register(&mut socket, Token(id), Interest::READABLE)
                        .is_ok()
                    {
                        self.slots.insert(
                            id,
                            Slot {
                                socket,
                                endpoint,
                                next_timeout: None,
                            },
                        );
                    }
                }
                Command::Start { id, remote } => {
                    if let Some(slot) = self.slots.get_mut(&id) {
                        match &mut slot.endpoint {
                            Endpoint::Presenter(p) => p.peer.start(now, remote),
                            Endpoint::Viewer(v) => v.peer.start(now, remote),
                        }
                        slot.next_timeout = Some(now);
                    }
                }
                Command::SetStreams { id, streams } => {
                    if let Some(Endpoint::Viewer(v)) =
                        self.slots.get_mut(&id).map(|s| &mut s.endpoint)
                    {
                        v.set_streams(streams);
                    }
                }
                Command::AwaitLayer { id, layer, at } => {
                    if let Some(Endpoint::Viewer(v)) =
                        self.slots.get_mut(&id).map(|s| &mut s.endpoint)
                    {
                        v.await_layer(layer, at);
                    }
                }
                Command::SetBottleneck { id, bitrate } => {
                    if let Some(Endpoint::Viewer(v)) =
                        self.slots.get_mut(&id).map(|s| &mut s.endpoint)
                    {
                        v.set_bottleneck(bitrate);
                    }
                }
                Command::Remove { id } => {
                    if let Some(mut slot) = self.slots.remove(&id) {
                        let _ = self.poll.registry().deregister(&mut slot.socket);
                    }
                }
                Command::Snapshot(reply) => {
                    let snapshots = self
                        .slots
                        .iter()
                        .filter_map(|(id, s)| match &s.endpoint {
                            Endpoint::Viewer(v) => Some((*id, v.snapshot())),
                            Endpoint::Presenter(_) => None,
                        })
                        .collect();
                    let _ = reply.send(snapshots);
                }
                Command::TakeSamples(reply) => {
                    let mut samples = Samples::default();
                    for (id, slot) in &mut self.slots {
                        if let Endpoint::Viewer(v) = &mut slot.endpoint {
                            samples.delays_ms.append(&mut v.delays_ms);
                            samples.layer_switches_ms.append(&mut v.layer_switches_ms);
                            samples.layers.push((*id, v.layer()));
                        }
                    }
                    let _ = reply.send(samples);
                }
                Command::Layers(reply) => {
                    let layers = self
                        .slots
                        .iter()
                        .filter_map(|(id, s)| match &s.endpoint {
                            Endpoint::Viewer(v) => Some((*id, v.layer())),
                            Endpoint::Presenter(_) => None,
                        })
                        .collect();
                    let _ = reply.send(layers);
                }
                Command::States(reply) => {
                    let states = self
                        .slots
                        .iter()
                        .map(|(id, s)| {
                            let state = match &s.endpoint {
                                Endpoint::Presenter(p) => p.peer.state(),
                                Endpoint::Viewer(v) => v.peer.state(),
                            };
                            (*id, state)
                        })
                        .collect();
                    let _ = reply.send(states);
                }
                Command::Stop => return false,
            }
        }
        true
    }

    /// Reads every datagram waiting on `id`'s socket.
    fn read(&mut self, id: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        loop {
            let (len, from) = match slot.socket.recv_from(&mut self.buf) {
                Ok(received) => received,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ICMP errors (port unreachable) surface here; keep going.
                Err(_) => continue,
            };
            let data = &self.buf[..len];
            match &mut slot.endpoint {
                Endpoint::Viewer(v) => match v.peer.handle_datagram(now, from, data) {
                    Received::Rtp(packet) => v.on_rtp(now, packet),
                    Received::Rtcp(packet) => v.on_rtcp(now, packet),
                    Received::Handled => slot.next_timeout = Some(now),
                },
                Endpoint::Presenter(p) => match p.peer.handle_datagram(now, from, data) {
                    Received::Rtcp(packet) => p.on_rtcp(packet),
                    Received::Rtp(_) => {}
                    Received::Handled => slot.next_timeout = Some(now),
                },
            }
            flush(slot);
        }
    }

    fn handle_timeouts(&mut self, now: Instant) {
        let sweep = now >= self.next_sweep;
        if sweep {
            self.next_sweep = now + SWEEP;
        }
        for slot in self.slots.values_mut() {
            if !sweep && slot.next_timeout.is_none_or(|at| at > now) {
                continue;
            }
            if slot.next_timeout.is_some_and(|at| at > now) {
                continue;
            }
            slot.next_timeout = match &mut slot.endpoint {
                Endpoint::Viewer(v) => v.handle_timeout(now),
                Endpoint::Presenter(p) => p.handle_timeout(now),
            };
            flush(slot);
        }
    }
}

/// Sends what the slot's peer queued.
fn flush(slot: &mut Slot) {
    loop {
        let transmit = match &mut slot.endpoint {
            Endpoint::Viewer(v) => v.peer.poll_transmit(),
            Endpoint::Presenter(p) => p.peer.poll_transmit(),
        };
        let Some((to, datagram)) = transmit else {
            return;
        };
        // A full socket buffer drops the datagram, as a network would.
        let _ = slot.socket.send_to(&datagram, to);
    }
}
