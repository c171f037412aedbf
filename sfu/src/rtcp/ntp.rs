//! NTP timestamps as RTCP carries them (64-bit full in SR/RRTR, 32-bit
//! "compact" middle bits in LSR/DLSR/LRR/DLRR) and the round-trip time a
//! sender derives from a report block (RFC 3550 §6.4.1).

use std::time::Duration;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp: seconds since 1900 in the high 32 bits, binary
/// fraction in the low 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// From wall-clock time since the Unix epoch (the caller reads the
    /// clock; the packet layer never does).
    pub fn from_unix(since_epoch: Duration) -> Self {
        let secs = since_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET_SECS);
        let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTime((secs << 32) | frac)
    }

    /// Back to time since the Unix epoch; `None` for times before 1970.
    pub fn to_unix(self) -> Option<Duration> {
        let secs = (self.0 >> 32).checked_sub(NTP_UNIX_OFFSET_SECS)?;
        let nanos = ((self.0 & 0xFFFF_FFFF) * 1_000_000_000) >> 32;
        Some(Duration::new(secs, nanos as u32))
    }

    /// The middle 32 bits (16.16 fixed point seconds), as LSR carries it.
    pub fn compact(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// A compact NTP interval (1/65536 s units) as a duration.
pub fn compact_ntp_to_duration(compact: u32) -> Duration {
    Duration::from_nanos((u64::from(compact) * 1_000_000_000) >> 16)
}

/// A duration as a compact NTP interval (DLSR), saturating at ~18 hours.
pub fn duration_to_compact_ntp(d: Duration) -> u32 {
    let units = (d.as_nanos() << 16) / 1_000_000_000;
    units.min(u128::from(u32::MAX)) as u32
}

/// Round-trip time from a report block about our SR: `now` minus the
/// echoed SR time (LSR) minus the receiver's holding delay (DLSR). `None`
/// when the receiver has not seen an SR yet (LSR = 0); clock skew that
/// makes the result negative gives zero.
pub fn rtt_from_report(now: NtpTime, last_sr: u32, delay_since_last_sr: u32) -> Option<Duration> {
    if last_sr == 0 {
        return None;
    }
    let rtt = now
        .compact()
        .wrapping_sub(last_sr)
        .wrapping_sub(delay_since_last_sr);
    if rtt > 0x8000_0000 {
        return Some(Duration::ZERO);
    }
    Some(compact_ntp_to_duration(rtt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_round_trips_through_ntp() {
        let t = Duration::new(1_700_000_000, 250_000_000);
        let ntp = NtpTime::from_unix(t);
        assert_eq!(ntp.0 >> 32, 1_700_000_000 + NTP_UNIX_OFFSET_SECS);
        assert_eq!(ntp.0 & 0xFFFF_FFFF, 1 << 30);
        let back = ntp.to_unix().unwrap();
        assert!(back.abs_diff(t) < Duration::from_nanos(2));
        assert_eq!(NtpTime(0).to_unix(), None);
    }

    #[test]
    fn compact_form_is_the_middle_32_bits() {
        let ntp = NtpTime(0x1234_5678_9ABC_DEF0);
        assert_eq!(ntp.compact(), 0x5678_9ABC);
        assert_eq!(
            compact_ntp_to_duration(0x0001_8000),
            Duration::from_millis(1500)
        );
        assert_eq!(
            duration_to_compact_ntp(Duration::from_millis(1500)),
            0x0001_8000
        );
        assert_eq!(
            duration_to_compact_ntp(Duration::from_secs(1 << 20)),
            u32::MAX
        );
    }

    #[test]
    fn rtt_subtracts_echoed_time_and_holding_delay() {
        let sent = NtpTime::from_unix(Duration::from_secs(100));
        let now = NtpTime::from_unix(Duration::from_millis(100_250));
        let dlsr = duration_to_compact_ntp(Duration::from_millis(200));
        let rtt = rtt_from_report(now, sent.compact(), dlsr).unwrap();
        assert!(rtt.abs_diff(Duration::from_millis(50)) < Duration::from_micros(50));
        assert_eq!(rtt_from_report(now, 0, dlsr), None);
        // Holding delay longer than elapsed time: clock skew, clamp to zero.
        let big = duration_to_compact_ntp(Duration::from_secs(1));
        assert_eq!(
            rtt_from_report(now, sent.compact(), big),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn rtt_works_across_compact_wrap() {
        // Compact form of `now` is 0x100: the 32-bit value has wrapped.
        let now = NtpTime((1u64 << 48) | (0x0100u64 << 16));
        let lsr = 0xFFFF_FF00u32; // 0x200 units (~7.8 ms) before `now`
        let rtt = rtt_from_report(now, lsr, 0).unwrap();
        assert_eq!(rtt, compact_ntp_to_duration(0x200));
    }
}
