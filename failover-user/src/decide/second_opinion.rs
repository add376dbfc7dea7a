//! Traffic as evidence of health: before probes that timed out take a
//! backend out, the data path is asked what it saw meanwhile. Pure: the
//! agent hands in the probes' run, the evidence since its first failure
//! and how late the agent's own timers fired; this says whether the
//! failure is ours or the backend's.
//!
//! - A backend that completed handshakes in the data path (SYN-ACKs from
//!   it, no refusals) while a TCP-connect probe of that very port timed
//!   out: the probes' path failed, not the backend (kept).
//! - The same with other probes (HTTP, UDP, ICMP, another port), while
//!   the agent's timers ran late by half the probe timeout or more: the
//!   edge host is starved (a flood, CPU pressure) and its probes are late
//!   (kept).
//! - Otherwise the backend is slow: it answers handshakes but not its
//!   probe in time; the probes decide (taken out, and said so).
//!
//! Refusals, bad answers, or no handshake seen are the backend's own
//! failure: the probes decide, as always.

use std::time::Duration;

use failover_common::Evidence;

use crate::probe::{ProbeError, ProbeOutcome};

/// What the data path and the agent's timers say about a probe failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opinion {
    /// Not a timeout, or no handshake seen: the probes decide.
    None,
    /// Keep the backend: the reason.
    Keep(String),
    /// The probes decide, but the backend answers handshakes: slow.
    Slow(String),
}

/// The run of probe results that decided a flip to unhealthy (`failed`,
/// the decisive run), the backend's evidence at its first failure and
/// now, whether the probe connects to the traffic port itself, the
/// probe's timeout and the worst lag of the agent's timers since.
pub fn judge(
    failed: &[ProbeOutcome],
    (before, now): (Evidence, Evidence),
    probes_the_traffic_port: bool,
    timeout: Duration,
    lag: Duration,
) -> Opinion {
    let timeouts = failed
        .iter()
        .all(|o| !o.ok && matches!(o.error, Some(ProbeError::TimedOut(_))));
    if failed.is_empty() || !timeouts {
        return Opinion::None;
    }
    let answered = now.syn_acks.saturating_sub(before.syn_acks);
    let refused = now.syn_resets.saturating_sub(before.syn_resets)
        + now.unreachable.saturating_sub(before.unreachable);
    if answered == 0 || refused > 0 {
        return Opinion::None;
    }
    if probes_the_traffic_port {
        return Opinion::Keep(format!(
            "its TCP probes of the traffic port timed out while the data path saw it complete {answered} handshakes: the probes' path failed, not the backend"
        ));
    }
    if lag >= timeout / 2 {
        return Opinion::Keep(format!(
            "starved: the agent's timers ran up to {lag:?} late (probe timeout {timeout:?}) while the data path saw it complete {answered} handshakes"
        ));
    }
    Opinion::Slow(format!(
        "slow: the data path saw it complete {answered} handshakes, but its probes timed out (the agent's timers ran at most {lag:?} late)"
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn timed_out() -> ProbeOutcome {
        ProbeOutcome {
            ok: false,
            latency: Duration::from_millis(50),
            error: Some(ProbeError::TimedOut(Duration::from_millis(50))),
            at: Instant::now(),
        }
    }

    fn acks(syn_acks: u64) -> Evidence {
        Evidence {
            syns: syn_acks,
            syn_acks,
            ..Evidence::default()
        }
    }

    const TIMEOUT: Duration = Duration::from_millis(50);

    #[test]
    fn a_tcp_probe_timing_out_while_handshakes_complete_keeps_the_backend() {
        let run = [timed_out(), timed_out(), timed_out()];
        let opinion = judge(&run, (acks(10), acks(25)), true, TIMEOUT, Duration::ZERO);
        assert!(matches!(opinion, Opinion::Keep(why) if why.contains("15 handshakes")));
    }

    #[test]
    fn other_probes_are_kept_only_when_the_agent_is_starved() {
        let run = [timed_out(), timed_out(), timed_out()];
        let starved = judge(
            &run,
            (acks(0), acks(5)),
            false,
            TIMEOUT,
            Duration::from_millis(30),
        );
        assert!(matches!(starved, Opinion::Keep(why) if why.starts_with("starved")));
        let slow = judge(
            &run,
            (acks(0), acks(5)),
            false,
            TIMEOUT,
            Duration::from_millis(2),
        );
        assert!(matches!(slow, Opinion::Slow(_)));
    }

    #[test]
    fn refusals_or_silence_leave_it_to_the_probes() {
        let run = [timed_out(), timed_out(), timed_out()];
        let silent = judge(&run, (acks(5), acks(5)), true, TIMEOUT, Duration::ZERO);
        assert_eq!(silent, Opinion::None);
        let refused = Evidence {
            syn_resets: 1,
            ..acks(9)
        };
        assert_eq!(
            judge(&run, (acks(5), refused), true, TIMEOUT, Duration::ZERO),
            Opinion::None
        );
        let mut mixed = run.to_vec();
        mixed[1].error = Some(ProbeError::NoEchoReply);
        assert_eq!(
            judge(&mixed, (acks(0), acks(9)), true, TIMEOUT, Duration::ZERO),
            Opinion::None
        );
    }
}
