//! The worker thread: a thin driver around the sans-IO [`Engine`]. It owns
//! the sockets and the clock, feeds datagrams, calls and timeouts in, and
//! sends what the engine gives out.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::mpsc as tokio_mpsc;

use super::engine::{SocketChange, Via};
use super::pipe::PipeMessage;
use super::{Call, Engine, WorkerError, WorkerEvent, WorkerSettings};
use crate::ids::{TransportId, WorkerId};

const SERVER: Token = Token(0);
const WAKER: Token = Token(1);
/// Longest sleep: the engine's periodic work (RTCP, layer checks) runs at
/// least this often.
const MAX_SLEEP: Duration = Duration::from_millis(20);
/// Datagrams handled before outgoing ones are flushed, so a burst in does
/// not delay everything out.
const FLUSH_EVERY: usize = 32;

pub(super) struct Started {
    pub thread: JoinHandle<()>,
    pub waker: Arc<Waker>,
    pub local_addr: SocketAddr,
}

pub(super) fn start(
    id: WorkerId,
    settings: WorkerSettings,
    calls: mpsc::Receiver<Call>,
    pipes: mpsc::Receiver<PipeMessage>,
    events: tokio_mpsc::UnboundedSender<WorkerEvent>,
) -> Result<Started, WorkerError> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let std_socket = std::net::UdpSocket::bind((settings.listen_ip, settings.port))?;
    std_socket.set_nonblocking(true)?;
    let local_addr = std_socket.local_addr()?;
    let mut socket = UdpSocket::from_std(std_socket);
    poll.registry()
        .register(&mut socket, SERVER, Interest::READABLE)?;
    let announced = settings
        .announced_address
        .clone()
        .unwrap_or_else(|| settings.listen_ip.to_string());
    let engine = Engine::new(id, local_addr, announced, events);
    let thread = std::thread::Builder::new()
        .name(format!("sfu-worker-{}", local_addr.port()))
        .spawn(move || {
            Driver {
                poll,
                server: socket,
                plain: HashMap::new(),
                tokens: HashMap::new(),
                next_token: 2,
                engine,
            }
            .run(calls, pipes)
        })?;
    Ok(Started {
        thread,
        waker,
        local_addr,
    })
}

/// A PlainTransport's sockets.
struct PlainSockets {
    rtp: (Token, UdpSocket),
    rtcp: Option<(Token, UdpSocket)>,
}

struct Driver {
    poll: Poll,
    server: UdpSocket,
    plain: HashMap<TransportId, PlainSockets>,
    /// Token -> (transport, is the RTCP socket).
    tokens: HashMap<Token, (TransportId, bool)>,
    next_token: usize,
    engine: Engine,
}

impl Driver {
    fn run(mut self, calls: mpsc::Receiver<Call>, pipes: mpsc::Receiver<PipeMessage>) {
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            let sleep = self
                .engine
                .poll_timeout()
                .map_or(MAX_SLEEP, |t| t.saturating_duration_since(now))
                .min(MAX_SLEEP);
            if let Err(e) = self.poll.poll(&mut events, Some(sleep)) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::error!("worker poll failed: {e}");
                    return;
                }
            }
            let now = Instant::now();
            // Readiness is edge-triggered: drain every socket that fired.
            self.drain_server(now, &mut buf);
            for event in events.iter() {
                if let Some(&(tid, rtcp)) = self.tokens.get(&event.token()) {
                    self.drain_plain(now, tid, rtcp, &mut buf);
                }
            }
            while let Ok(message) = pipes.try_recv() {
                self.engine.handle_pipe_message(now, message);
                self.flush();
            }
            loop {
                match calls.try_recv() {
                    Ok(call) => call(&mut self.engine, now),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        self.engine.stop();
                        break;
                    }
                }
            }
            self.apply_socket_changes();
            self.engine.handle_timeout(now);
            self.flush();
            if self.engine.stopped() {
                return;
            }
        }
    }

    fn drain_server(&mut self, now: Instant, buf: &mut [u8]) {
        let mut handled = 0;
        loop {
            match self.server.recv_from(buf) {
                Ok((n, from)) => {
                    self.engine.handle_datagram(now, from, &buf[..n]);
                    handled += 1;
                    if handled % FLUSH_EVERY == 0 {
                        self.flush();
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends surface here; not fatal.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) => {
                    tracing::warn!("worker recv failed: {e}");
                    break;
                }
            }
        }
    }

    fn drain_plain(&mut self, now: Instant, tid: TransportId, rtcp: bool, buf: &mut [u8]) {
        loop {
            let Some(sockets) = self.plain.get(&tid) else {
                return;
            };
            let socket = match (rtcp, &sockets.rtcp) {
                (true, Some((_, s))) => s,
                _ => &sockets.rtp.1,
            };
            match socket.recv_from(buf) {
                Ok((n, from)) => self
                    .engine
                    .handle_plain_datagram(now, tid, rtcp, from, &buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) => {
                    tracing::warn!("plain transport recv failed: {e}");
                    return;
                }
            }
        }
    }

    fn register(
        &mut self,
        tid: TransportId,
        rtcp: bool,
        socket: std::net::UdpSocket,
    ) -> Option<(Token, UdpSocket)> {
        socket.set_nonblocking(true).ok()?;
        let mut socket = UdpSocket::from_std(socket);
        let token = Token(self.next_token);
        self.next_token += 1;
        self.poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)
            .ok()?;
        self.tokens.insert(token, (tid, rtcp));
        Some((token, socket))
    }

    fn apply_socket_changes(&mut self) {
        for change in self.engine.take_socket_changes() {
            match change {
                SocketChange::Open {
                    transport,
                    rtp,
                    rtcp,
                } => {
                    let Some(rtp) = self.register(transport, false, rtp) else {
                        tracing::error!("cannot poll the socket of plain transport {transport}");
                        continue;
                    };
                    let rtcp = rtcp.and_then(|s| self.register(transport, true, s));
                    self.plain.insert(transport, PlainSockets { rtp, rtcp });
                }
                SocketChange::Close { transport } => {
                    if let Some(mut s) = self.plain.remove(&transport) {
                        let _ = self.poll.registry().deregister(&mut s.rtp.1);
                        self.tokens.remove(&s.rtp.0);
                        if let Some((token, mut socket)) = s.rtcp.take() {
                            let _ = self.poll.registry().deregister(&mut socket);
                            self.tokens.remove(&token);
                        }
                    }
                }
            }
        }
    }

    fn flush(&mut self) {
        while let Some((via, to, data)) = self.engine.poll_transmit() {
            let socket = match via {
                Via::Server => &self.server,
                Via::Plain { transport, rtcp } => match self.plain.get(&transport) {
                    Some(PlainSockets {
                        rtcp: Some((_, s)), ..
                    }) if rtcp => s,
                    Some(s) => &s.rtp.1,
                    None => continue,
                },
            };
            match socket.send_to(&data, to) {
                Ok(_) => {}
                // A full send buffer drops the datagram, as a congested
                // network would; RTX and key frames repair it.
                Err(_) => self.engine.note_send_dropped(),
            }
        }
    }
}
