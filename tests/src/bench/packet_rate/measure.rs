//! One round: frames sent while the sink and the CPU are sampled, and its
//! steady part.

use std::time::{Duration, Instant};

use failover_common::{Counter, stats::action::XDP_REDIRECT, stats::reason};

use super::lab::Lab;
use crate::bench::cpu::machine_busy_seconds;

/// Bounds on the frames of one round.
pub(super) const MIN_ROUND_PACKETS: f64 = 100_000.0;
pub(super) const MAX_ROUND_PACKETS: f64 = 20_000_000.0;
/// How often the sink and /proc/stat are read during a round.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(5);
/// Fewer samples in the steady part than this: use the whole round.
const MIN_STEADY_SAMPLES: usize = 4;

/// Delivery and machine CPU time over part of a round.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Window {
    pub(super) received: u64,
    pub(super) seconds: f64,
    pub(super) cpu_seconds: f64,
}

/// What one round measured.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Round {
    pub(super) sent: u64,
    pub(super) received: u64,
    pub(super) addressed_as_expected: u64,
    /// The steady part the rate and CPU figures come from.
    pub(super) steady: Window,
}

impl Round {
    pub(super) fn mpps(&self) -> f64 {
        self.steady.received as f64 / self.steady.seconds / 1e6
    }

    pub(super) fn cores_busy(&self) -> f64 {
        self.steady.cpu_seconds / self.steady.seconds
    }

    pub(super) fn cpu_seconds_per_mpkt(&self) -> f64 {
        self.steady.cpu_seconds / (self.steady.received.max(1) as f64 / 1e6)
    }

    pub(super) fn loss(&self) -> f64 {
        1.0 - self.received as f64 / self.sent.max(1) as f64
    }
}

/// Sink counters and machine CPU time at one instant.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    received: u64,
    expected: u64,
    cpu_seconds: f64,
}

/// The part of a round between two samples.
fn window(from: &Sample, to: &Sample) -> Window {
    Window {
        received: to.received - from.received,
        seconds: (to.at - from.at).as_secs_f64(),
        cpu_seconds: to.cpu_seconds - from.cpu_seconds,
    }
}

/// The steady part of a round: from the first sample past 10 % of the
/// frames the sink received to the last before 90 %, which leaves out the
/// test run's setup and teardown. The whole round if too few samples fall
/// inside.
fn steady_window(start: &Sample, samples: &[Sample], end: &Sample) -> Window {
    let total = end.received - start.received;
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            let got = s.received - start.received;
            got >= total / 10 && got <= total - total / 10
        })
        .collect();
    match (inside.first(), inside.last()) {
        (Some(first), Some(last)) if inside.len() >= MIN_STEADY_SAMPLES => window(first, last),
        _ => window(start, end),
    }
}

impl Lab {
    fn sample(&self) -> Sample {
        let (received, expected) = self.sink_counts();
        Sample {
            at: Instant::now(),
            received,
            expected,
            cpu_seconds: machine_busy_seconds(),
        }
    }

    /// Sends `packets` frames while sampling the sink and the CPU; the
    /// generator's packet count bounds the round.
    pub(super) fn round(&self, packets: u32) -> Round {
        let start = self.sample();
        let mut samples = Vec::new();
        std::thread::scope(|scope| {
            let generator = scope.spawn(|| self.generate(packets));
            while !generator.is_finished() {
                std::thread::sleep(SAMPLE_INTERVAL);
                samples.push(self.sample());
            }
            generator
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        });
        // Frames still in a veth ring land within microseconds.
        std::thread::sleep(Duration::from_millis(5));
        let end = self.sample();
        Round {
            sent: u64::from(packets),
            received: end.received - start.received,
            addressed_as_expected: end.expected - start.expected,
            steady: steady_window(&start, &samples, &end),
        }
    }

    /// Our data path's (redirect verdicts, forwarded packets) so far.
    pub(super) fn our_counters(&self) -> Option<(u64, u64)> {
        let counters = self.dataplane.as_ref()?.counters();
        let verdicts = counters.verdicts().expect("verdict counters");
        let reasons = counters.reasons().expect("reason counters");
        let packets = |c: &Counter| c.packets;
        let forwarded = packets(&reasons[reason::FWD_NEW_FLOW as usize])
            + packets(&reasons[reason::FWD_ESTABLISHED as usize]);
        Some((packets(&verdicts[XDP_REDIRECT as usize]), forwarded))
    }
}
