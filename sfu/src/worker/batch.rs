//! Batched UDP sends: the datagrams a worker step produces for its shared
//! WebRTC socket (a packet fanned out to every viewer) leave in
//! `sendmmsg` calls of up to [`BATCH`] datagrams instead of one `sendto`
//! each. Besides the syscalls saved, the worker is then preempted by the
//! receivers it wakes at most once per batch rather than once per viewer.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

/// Datagrams per `sendmmsg` (the kernel's UIO_MAXIOV is far above).
pub(super) const BATCH: usize = 64;

/// Datagrams waiting for one socket.
pub(super) struct UdpBatch {
    headers: MultiHeaders<SockaddrStorage>,
    pending: Vec<(SocketAddr, Vec<u8>)>,
    /// The pending datagrams' destinations in the kernel's form, reused.
    /// (The `IoSlice`s borrow the datagrams, so that list is made per
    /// call: one allocation per up to [`BATCH`] datagrams.)
    addresses: Vec<Option<SockaddrStorage>>,
}

impl UdpBatch {
    pub(super) fn new() -> Self {
        UdpBatch {
            headers: MultiHeaders::preallocate(BATCH, None),
            pending: Vec::with_capacity(BATCH),
            addresses: Vec::with_capacity(BATCH),
        }
    }

    /// Queues a datagram; true when the batch is full and must be sent.
    pub(super) fn push(&mut self, to: SocketAddr, datagram: Vec<u8>) -> bool {
        self.pending.push((to, datagram));
        self.pending.len() >= BATCH
    }

    /// Sends everything queued on `socket`, handing each buffer to
    /// `recycle` afterwards; returns how many datagrams the kernel refused
    /// (a full send buffer drops them, as a congested network would).
    pub(super) fn send(&mut self, socket: &impl AsRawFd, mut recycle: impl FnMut(Vec<u8>)) -> u64 {
        let mut start = 0;
        let mut dropped = 0;
        let no_control: [ControlMessage<'_>; 0] = [];
        self.addresses.clear();
        self.addresses.extend(
            self.pending
                .iter()
                .map(|(to, _)| Some(SockaddrStorage::from(*to))),
        );
        while start < self.pending.len() {
            let pending = &self.pending[start..];
            let slices: Vec<[IoSlice<'_>; 1]> = pending
                .iter()
                .map(|(_, datagram)| [IoSlice::new(datagram)])
                .collect();
            let sent = sendmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                &slices,
                &self.addresses[start..],
                no_control,
                MsgFlags::empty(),
            )
            .map_or(0, |results| results.count());
            if sent == 0 {
                // The first datagram was refused: drop it and go on.
                dropped += 1;
                start += 1;
            } else {
                start += sent;
            }
        }
        for (_, buffer) in self.pending.drain(..) {
            recycle(buffer);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn a_batch_reaches_every_destination_in_order() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let receivers: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut batch = UdpBatch::new();
        // More than one sendmmsg's worth, spread over three receivers.
        for i in 0..(BATCH + 10) {
            let to = receivers[i % 3].local_addr().unwrap();
            assert_eq!(batch.push(to, vec![i as u8; 100 + i]), i + 1 >= BATCH);
        }
        let mut recycled = 0;
        assert_eq!(batch.send(&sender, |_| recycled += 1), 0);
        assert_eq!(recycled, BATCH + 10, "every buffer comes back");
        for (r, receiver) in receivers.iter().enumerate() {
            receiver.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 2048];
            let mut got = Vec::new();
            while let Ok(n) = receiver.recv(&mut buf) {
                got.push((buf[0], n));
            }
            let expected: Vec<(u8, usize)> = (0..(BATCH + 10))
                .filter(|i| i % 3 == r)
                .map(|i| (i as u8, 100 + i))
                .collect();
            assert_eq!(got, expected);
        }
        assert_eq!(batch.send(&sender, |_| panic!("nothing to recycle")), 0);
    }
}
