//! The per-packet path allocates nothing per consumer: after warm-up, a
//! packet fanned out to twenty consumers (producer receive, consumer
//! rewrite and NACK bookkeeping, SRTP protect into the reused datagram
//! buffer) makes no heap allocation at all. Counted with a global
//! allocator that wraps the system's (its own binary: nothing else runs).

use std::alloc::System;
use std::hint::black_box;

use sfu::bench_support::FanOut;
use sfu::transport::SrtpProfile;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

/// Enough consumers to show the cost is not per consumer, few enough for a
/// debug build's warm-up (600 packets each).
const CONSUMERS: usize = 20;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn fanning_out_packets_to_many_consumers_allocates_nothing() {
    for profile in [
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
    ] {
        let mut fan_out = FanOut::new(CONSUMERS, profile);
        fan_out.warm_up();
        let region = Region::new(GLOBAL);
        let mut datagrams = 0;
        for _ in 0..200 {
            datagrams += fan_out.fan_out(|destination, datagram| {
                black_box((destination, &datagram[..]));
            });
        }
        let change = region.change();
        assert_eq!(datagrams, 200 * CONSUMERS, "{profile:?}");
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "{profile:?}: {change:?} over {datagrams} datagrams"
        );
    }
}
