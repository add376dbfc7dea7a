//! Bounds of every duration and number an operator can set (configuration
//! and control requests). Wide enough for any real deployment, narrow
//! enough that no arithmetic on them overflows (the longest detection,
//! interval × fall, is 1000 hours) and no value can starve the agent.

use std::{ops::RangeInclusive, time::Duration};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Probe interval.
pub const PROBE_INTERVAL: RangeInclusive<Duration> = ms(10)..=secs(3600);
/// Probe timeout (and at most the interval).
pub const PROBE_TIMEOUT: RangeInclusive<Duration> = ms(1)..=secs(3600);
/// Probe jitter (and below the interval).
pub const PROBE_JITTER: RangeInclusive<Duration> = ms(0)..=secs(3600);
/// Consecutive results to flip health.
pub const RISE_FALL: RangeInclusive<u32> = 1..=1000;
/// Most bytes an http or udp probe reads.
pub const MAX_RESPONSE_BYTES: RangeInclusive<usize> = 16..=16 * 1024 * 1024;
/// How long a recovered backend waits before failback.
pub const FAILBACK_DELAY: RangeInclusive<Duration> = ms(0)..=secs(7 * 24 * 3600);
/// How long a cold standby may take to come up.
pub const START_TIMEOUT: RangeInclusive<Duration> = ms(100)..=secs(3600);
/// Pause before a cold standby that did not come up is tried again.
pub const START_RETRY: RangeInclusive<Duration> = secs(1)..=secs(24 * 3600);
/// A backend's Maglev weight.
pub const WEIGHT: RangeInclusive<u32> = 1..=10_000;
/// One attempt to deliver an alert.
pub const ALERT_TIMEOUT: RangeInclusive<Duration> = ms(10)..=secs(60);
/// Further attempts after a failed delivery.
pub const ALERT_RETRIES: RangeInclusive<u32> = 0..=10;
/// Size at which the journal is rotated.
pub const JOURNAL_MAX_BYTES: RangeInclusive<u64> = 4096..=1 << 30;
/// Rotated journal files kept.
pub const JOURNAL_KEEP: RangeInclusive<u32> = 0..=100;
/// A drain's deadline (control request).
pub const DRAIN_DEADLINE: RangeInclusive<Duration> = ms(0)..=secs(7 * 24 * 3600);

/// Flow-table entries (`[conntrack] max_flows`).
pub const MAX_FLOWS: RangeInclusive<u32> =
    failover_common::MIN_MAX_FLOWS..=failover_common::MAX_MAX_FLOWS;
/// A flow's lifetime without packets (each `[conntrack]` timeout).
pub const FLOW_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(7 * 24 * 3600);
/// New flows one CPU records per second before the flood guard.
pub const NEW_FLOWS_PER_CPU: RangeInclusive<u32> = 1_000..=100_000_000;
/// `[services.passive]`: the window, the counts that eject, the cap.
pub const PASSIVE_WINDOW: RangeInclusive<Duration> = ms(100)..=secs(60);
pub const PASSIVE_COUNT: RangeInclusive<u64> = 1..=1_000_000;
/// How long a SYN may wait for its SYN-ACK (`syn_timeout`).
pub const PASSIVE_SYN_TIMEOUT: RangeInclusive<Duration> = ms(5)..=secs(10);
pub const PASSIVE_MAX_EJECTED_PERCENT: RangeInclusive<u32> = 1..=100;

/// `[services.damping]`: the half-life, the longest suppression, the
/// penalties and thresholds.
pub const DAMPING_HALF_LIFE: RangeInclusive<Duration> = secs(1)..=secs(3600);
pub const DAMPING_MAX_SUPPRESS: RangeInclusive<Duration> = secs(1)..=secs(24 * 3600);
pub const DAMPING_PENALTY: RangeInclusive<u32> = 1..=1_000_000;

/// `slow_start`: how long a returning backend's share ramps up.
pub const SLOW_START: RangeInclusive<Duration> = secs(1)..=secs(3600);

/// "between A and B" for error messages.
pub fn describe<T: std::fmt::Debug>(range: &RangeInclusive<T>) -> String {
    format!("between {:?} and {:?}", range.start(), range.end())
}

/// `[routing] table`: a kernel routing table of its own (253–255 are the
/// kernel's default, main and local tables; 0 is none).
pub const ROUTING_TABLE: RangeInclusive<u32> = 1..=252;

/// `[sync] interval`: how often the pinned flows go to the peers.
pub const SYNC_INTERVAL: RangeInclusive<Duration> = ms(100)..=secs(10);
/// `[sync] peers`: how many other edge hosts.
pub const SYNC_PEERS: RangeInclusive<usize> = 1..=32;
