//! The worker thread: a thin driver around the sans-IO [`Engine`]. It owns
//! the UDP socket and the clock, feeds datagrams, calls and timeouts in,
//! and sends what the engine gives out.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::mpsc as tokio_mpsc;

use super::{Call, Engine, WorkerError, WorkerEvent, WorkerSettings};
use crate::ids::WorkerId;

const SOCKET: Token = Token(0);
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
    events: tokio_mpsc::UnboundedSender<WorkerEvent>,
) -> Result<Started, WorkerError> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let std_socket = std::net::UdpSocket::bind((settings.listen_ip, settings.port))?;
    std_socket.set_nonblocking(true)?;
    let local_addr = std_socket.local_addr()?;
    let mut socket = UdpSocket::from_std(std_socket);
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let announced = settings
        .announced_address
        .clone()
        .unwrap_or_else(|| settings.listen_ip.to_string());
    let engine = Engine::new(id, local_addr, announced, events);
    let thread = std::thread::Builder::new()
        .name(format!("sfu-worker-{}", local_addr.port()))
        .spawn(move || run(poll, socket, calls, engine))?;
    Ok(Started {
        thread,
        waker,
        local_addr,
    })
}

fn run(mut poll: Poll, socket: UdpSocket, calls: mpsc::Receiver<Call>, mut engine: Engine) {
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        let sleep = engine
            .poll_timeout()
            .map_or(MAX_SLEEP, |t| t.saturating_duration_since(now))
            .min(MAX_SLEEP);
        if let Err(e) = poll.poll(&mut events, Some(sleep)) {
            if e.kind() != ErrorKind::Interrupted {
                tracing::error!("worker poll failed: {e}");
                return;
            }
        }
        let now = Instant::now();
        // Readiness is edge-triggered: drain the socket every time.
        let mut handled = 0;
        loop {
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    engine.handle_datagram(now, from, &buf[..n]);
                    handled += 1;
                    if handled % FLUSH_EVERY == 0 {
                        flush(&socket, &mut engine);
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
        loop {
            match calls.try_recv() {
                Ok(call) => call(&mut engine, now),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    engine.stop();
                    break;
                }
            }
        }
        engine.handle_timeout(now);
        flush(&socket, &mut engine);
        if engine.stopped() {
            return;
        }
    }
}

fn flush(socket: &UdpSocket, engine: &mut Engine) {
    while let Some((to, data)) = engine.poll_transmit() {
        match socket.send_to(&data, to) {
            Ok(_) => {}
            // A full send buffer drops the datagram, as a congested network
            // would; RTX and key frames repair it.
            Err(e) if e.kind() == ErrorKind::WouldBlock => engine.note_send_dropped(),
            Err(_) => engine.note_send_dropped(),
        }
    }
}
