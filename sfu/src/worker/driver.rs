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

use std::io::{Read, Write};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::mpsc as tokio_mpsc;

use super::batch::{self, UdpBatch};
use super::engine::{SocketChange, Via};
use super::pipe::PipeMessage;
use super::{Call, Engine, WorkerError, WorkerEvent, WorkerSettings};
use crate::ids::{TransportId, WorkerId};

const SERVER: Token = Token(0);
const WAKER: Token = Token(1);
const TCP_LISTENER: Token = Token(2);
/// ICE-TCP connections accepted at once; more are refused.
const MAX_TCP_CONNECTIONS: usize = 4096;
/// Outgoing bytes buffered per TCP connection before datagrams are dropped
/// (a stalled client must not grow the worker's memory).
const MAX_TCP_BACKLOG: usize = 1 << 20;
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
    // ICE-TCP on the same port number, for clients whose network blocks UDP.
    let tcp = match TcpListener::bind(local_addr) {
        Ok(mut l) => {
            poll.registry()
                .register(&mut l, TCP_LISTENER, Interest::READABLE)?;
            Some(l)
        }
        Err(e) => {
            tracing::warn!("no ICE-TCP on {local_addr}: {e}");
            None
        }
    };
    let announced = settings
        .announced_address
        .clone()
        .unwrap_or_else(|| settings.listen_ip.to_string());
    let engine = Engine::new(id, local_addr, announced, tcp.is_some(), events);
    let thread = std::thread::Builder::new()
        .name(format!("sfu-worker-{}", local_addr.port()))
        .spawn(move || {
            Driver {
                poll,
                server: socket,
                plain: HashMap::new(),
                tokens: HashMap::new(),
                tcp,
                tcp_conns: HashMap::new(),
                tcp_by_addr: HashMap::new(),
                next_token: 3,
                engine,
                batch: UdpBatch::new(),
            }
            .run(calls, pipes)
        })?;
    Ok(Started {
        thread,
        waker,
        local_addr,
    })
}

/// An ICE-TCP connection: RFC 4571 framing (a 16-bit length before each
/// STUN, DTLS or SRTP datagram) in both directions.
struct TcpConn {
    stream: TcpStream,
    addr: SocketAddr,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
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
    tcp: Option<TcpListener>,
    tcp_conns: HashMap<Token, TcpConn>,
    tcp_by_addr: HashMap<SocketAddr, Token>,
    next_token: usize,
    engine: Engine,
    /// Datagrams for the shared WebRTC socket, sent together.
    batch: UdpBatch,
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
                let token = event.token();
                if token == TCP_LISTENER {
                    self.accept_tcp();
                } else if let Some(&(tid, rtcp)) = self.tokens.get(&token) {
                    self.drain_plain(now, tid, rtcp, &mut buf);
                } else if self.tcp_conns.contains_key(&token) {
                    if event.is_writable() {
                        self.write_tcp(token);
                    }
                    if event.is_readable() || event.is_read_closed() {
                        self.read_tcp(now, token, &mut buf);
                    }
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
                    // A packet fanned out to a batch's worth of viewers
                    // leaves before the next datagram is read.
                    if handled % FLUSH_EVERY == 0 || self.engine.pending_transmits() >= batch::BATCH
                    {
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

    fn accept_tcp(&mut self) {
        loop {
            let Some(listener) = &self.tcp else { return };
            match listener.accept() {
                Ok((mut stream, addr)) => {
                    if self.tcp_conns.len() >= MAX_TCP_CONNECTIONS {
                        continue; // dropping the stream closes it
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.tcp_by_addr.insert(addr, token);
                    self.tcp_conns.insert(
                        token,
                        TcpConn {
                            stream,
                            addr,
                            inbuf: Vec::new(),
                            outbuf: Vec::new(),
                        },
                    );
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("ICE-TCP accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn read_tcp(&mut self, now: Instant, token: Token, buf: &mut [u8]) {
        let mut closed = false;
        let Some(conn) = self.tcp_conns.get_mut(&token) else {
            return;
        };
        loop {
            match conn.stream.read(buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => conn.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let addr = conn.addr;
        let mut frames = Vec::new();
        let mut at = 0;
        while conn.inbuf.len() >= at + 2 {
            let len = usize::from(u16::from_be_bytes([conn.inbuf[at], conn.inbuf[at + 1]]));
            if conn.inbuf.len() < at + 2 + len {
                break;
            }
            frames.push(conn.inbuf[at + 2..at + 2 + len].to_vec());
            at += 2 + len;
        }
        conn.inbuf.drain(..at);
        for frame in frames {
            self.engine.handle_datagram(now, addr, &frame);
        }
        if closed {
            self.close_tcp(token);
        }
    }

    fn write_tcp(&mut self, token: Token) {
        let mut failed = false;
        if let Some(conn) = self.tcp_conns.get_mut(&token) {
            while !conn.outbuf.is_empty() {
                match conn.stream.write(&conn.outbuf) {
                    Ok(0) => {
                        failed = true;
                        break;
                    }
                    Ok(n) => {
                        conn.outbuf.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
        }
        if failed {
            self.close_tcp(token);
        }
    }

    fn close_tcp(&mut self, token: Token) {
        if let Some(mut conn) = self.tcp_conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.tcp_by_addr.remove(&conn.addr);
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

    fn send_tcp(&mut self, token: Token, data: &[u8]) {
        let Some(conn) = self.tcp_conns.get_mut(&token) else {
            return;
        };
        let Ok(len) = u16::try_from(data.len()) else {
            return;
        };
        if conn.outbuf.len() + data.len() + 2 > MAX_TCP_BACKLOG {
            self.engine.note_send_dropped();
            return;
        }
        conn.outbuf.extend_from_slice(&len.to_be_bytes());
        conn.outbuf.extend_from_slice(data);
        self.write_tcp(token);
    }

    fn flush(&mut self) {
        while let Some((via, to, data)) = self.engine.poll_transmit() {
            if via == Via::Server {
                if let Some(&token) = self.tcp_by_addr.get(&to) {
                    self.send_tcp(token, &data);
                    continue;
                }
                if self.batch.push(to, data) {
                    self.send_batch();
                }
                continue;
            }
            let Via::Plain { transport, rtcp } = via else {
                continue;
            };
            let socket = match self.plain.get(&transport) {
                Some(PlainSockets {
                    rtcp: Some((_, s)), ..
                }) if rtcp => s,
                Some(s) => &s.rtp.1,
                None => continue,
            };
            // A full send buffer drops the datagram, as a congested
            // network would; RTX and key frames repair it.
            if socket.send_to(&data, to).is_err() {
                self.engine.note_send_dropped();
            }
        }
        self.send_batch();
    }

    fn send_batch(&mut self) {
        let engine = &mut self.engine;
        let dropped = self
            .batch
            .send(&self.server, |buffer| engine.recycle(buffer));
        for _ in 0..dropped {
            self.engine.note_send_dropped();
        }
    }
}
