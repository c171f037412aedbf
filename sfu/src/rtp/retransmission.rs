//! The sent-packet store that answers NACKs: a fixed ring of preallocated
//! slots indexed by sequence number, so storing a packet on the send path
//! copies bytes but never allocates.

use std::time::{Duration, Instant};

use thiserror::Error;

use super::seq::seq_is_newer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RetransmissionBufferError {
    #[error("packet of {len} bytes exceeds the {max}-byte retransmission slot")]
    TooLarge { len: usize, max: usize },
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u16,
    len: usize,
    /// `None` when the slot is empty.
    stored_at: Option<Instant>,
    resent_at: Option<Instant>,
    resend_count: u32,
}

const EMPTY: Slot = Slot {
    seq: 0,
    len: 0,
    stored_at: None,
    resent_at: None,
    resend_count: 0,
};

/// Recently sent packets, by sequence number, for NACK -> RTX.
#[derive(Debug, Clone)]
pub struct RetransmissionBuffer {
    slot_size: usize,
    data: Vec<u8>,
    slots: Vec<Slot>,
    max_age: Duration,
}

impl RetransmissionBuffer {
    /// `capacity` is rounded up to a power of two (at most 32768) so that a
    /// slot index stays consistent across sequence-number wrap-around.
    /// Allocates `capacity * max_packet_size` bytes once.
    pub fn new(capacity: usize, max_packet_size: usize, max_age: Duration) -> Self {
        let capacity = capacity.clamp(1, 0x8000).next_power_of_two();
        RetransmissionBuffer {
            slot_size: max_packet_size,
            data: vec![0; capacity * max_packet_size],
            slots: vec![EMPTY; capacity],
            max_age,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn index(&self, seq: u16) -> usize {
        usize::from(seq) & (self.slots.len() - 1)
    }

    fn is_fresh(&self, slot: &Slot, now: Instant) -> bool {
        slot.stored_at
            .is_some_and(|at| now.saturating_duration_since(at) <= self.max_age)
    }

    /// Stores a sent packet. A late packet whose slot already holds a newer
    /// live packet is not stored (the newer one is likelier to be asked for).
    pub fn insert(
        &mut self,
        seq: u16,
        packet: &[u8],
        now: Instant,
    ) -> Result<(), RetransmissionBufferError> {
        if packet.len() > self.slot_size {
            return Err(RetransmissionBufferError::TooLarge {
                len: packet.len(),
                max: self.slot_size,
            });
        }
        let idx = self.index(seq);
        let slot = self.slots[idx];
        if self.is_fresh(&slot, now) && seq_is_newer(slot.seq, seq) {
            return Ok(());
        }
        let start = idx * self.slot_size;
        self.data[start..start + packet.len()].copy_from_slice(packet);
        self.slots[idx] = Slot {
            seq,
            len: packet.len(),
            stored_at: Some(now),
            resent_at: None,
            resend_count: 0,
        };
        Ok(())
    }

    /// The stored bytes of packet `seq`, if present and not older than the
    /// maximum age.
    pub fn get(&self, seq: u16, now: Instant) -> Option<&[u8]> {
        let idx = self.index(seq);
        let slot = &self.slots[idx];
        if slot.seq != seq || !self.is_fresh(slot, now) {
            return None;
        }
        let start = idx * self.slot_size;
        Some(&self.data[start..start + slot.len])
    }

    /// Like [`RetransmissionBuffer::get`] for answering a NACK: refuses when
    /// the packet was already resent less than `min_interval` ago (the
    /// earlier retransmission is probably still in flight, typically
    /// `min_interval` is the RTT), and records the retransmission.
    pub fn retransmit(&mut self, seq: u16, now: Instant, min_interval: Duration) -> Option<&[u8]> {
        let idx = self.index(seq);
        let slot = self.slots[idx];
        if slot.seq != seq || !self.is_fresh(&slot, now) {
            return None;
        }
        if slot
            .resent_at
            .is_some_and(|at| now.saturating_duration_since(at) < min_interval)
        {
            return None;
        }
        let slot = &mut self.slots[idx];
        slot.resent_at = Some(now);
        slot.resend_count = slot.resend_count.saturating_add(1);
        let start = idx * self.slot_size;
        Some(&self.data[start..start + slot.len])
    }

    /// How many times packet `seq` was retransmitted, if it is stored.
    pub fn resend_count(&self, seq: u16) -> Option<u32> {
        let slot = &self.slots[self.index(seq)];
        (slot.stored_at.is_some() && slot.seq == seq).then_some(slot.resend_count)
    }

    pub fn clear(&mut self) {
        self.slots.fill(EMPTY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer() -> RetransmissionBuffer {
        RetransmissionBuffer::new(100, 32, Duration::from_secs(2))
    }

    #[test]
    fn capacity_rounds_up_to_power_of_two() {
        assert_eq!(buffer().capacity(), 128);
        assert_eq!(
            RetransmissionBuffer::new(0, 8, Duration::ZERO).capacity(),
            1
        );
        assert_eq!(
            RetransmissionBuffer::new(1 << 20, 1, Duration::ZERO).capacity(),
            0x8000
        );
    }

    #[test]
    fn returns_stored_packet_until_max_age() {
        let t0 = Instant::now();
        let mut b = buffer();
        b.insert(65535, b"wrap", t0).unwrap();
        b.insert(0, b"zero", t0).unwrap();
        assert_eq!(b.get(65535, t0), Some(&b"wrap"[..]));
        assert_eq!(b.get(0, t0 + Duration::from_secs(2)), Some(&b"zero"[..]));
        assert_eq!(b.get(0, t0 + Duration::from_millis(2001)), None);
        assert_eq!(b.get(1, t0), None);
    }

    #[test]
    fn newer_packet_replaces_slot_and_old_seq_is_gone() {
        let t0 = Instant::now();
        let mut b = buffer();
        b.insert(5, b"old", t0).unwrap();
        b.insert(5 + 128, b"new", t0).unwrap();
        assert_eq!(b.get(5, t0), None);
        assert_eq!(b.get(133, t0), Some(&b"new"[..]));
        // The late one does not evict the newer packet.
        b.insert(5, b"late", t0).unwrap();
        assert_eq!(b.get(133, t0), Some(&b"new"[..]));
    }

    #[test]
    fn oversized_packet_is_rejected() {
        let mut b = buffer();
        assert_eq!(
            b.insert(1, &[0; 33], Instant::now()),
            Err(RetransmissionBufferError::TooLarge { len: 33, max: 32 })
        );
    }

    #[test]
    fn retransmission_is_throttled_by_min_interval() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(100);
        let mut b = buffer();
        b.insert(9, b"pkt", t0).unwrap();
        assert!(b.retransmit(9, t0, rtt).is_some());
        assert!(b
            .retransmit(9, t0 + Duration::from_millis(50), rtt)
            .is_none());
        assert!(b
            .retransmit(9, t0 + Duration::from_millis(100), rtt)
            .is_some());
        assert_eq!(b.resend_count(9), Some(2));
        b.clear();
        assert_eq!(b.get(9, t0), None);
        assert_eq!(b.resend_count(9), None);
    }
}
