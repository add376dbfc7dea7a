//! What every failover test checks once it injected its fault: new flows
//! switch to the standby within the bound, the agent logs it once, and
//! they stay there.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::{AgentLab, FAILOVER_BOUND, Failback, Options, Probe};

/// How long a sampling loop waiting for a switch runs at most.
pub const SAMPLE_BOUND: Duration = Duration::from_secs(6);

pub fn tcp_probe(port: u16) -> Options {
    Options {
        probe: Probe::Tcp { port },
        failback: Failback::Auto(Duration::from_secs(5)),
    }
}

/// Injects a fault at `t0` (already done by the caller), samples new flows
/// until the standby answers, and checks the switch: within
/// [`FAILOVER_BOUND`], logged once by the agent, and stable afterwards.
pub fn expect_failover(lab: &AgentLab, what: &str, t0: Instant) -> Duration {
    // Short timeouts: a connection sent to a blackholed primary just before
    // the switch must not hide the switch for long.
    let samples = lab.sample_until_since("standby", SAMPLE_BOUND, t0, Duration::from_millis(100));
    let gap = samples.reached().unwrap_or_else(|| {
        panic!(
            "{what}: new flows never reached the standby: {}\n{}",
            samples.summary(),
            lab.diag()
        )
    });
    eprintln!(
        "{what}: first new flow on the standby {} ms after the fault ({} failed or on the primary before); samples {}",
        gap.as_millis(),
        samples.0.len() - 1,
        samples.summary()
    );
    assert!(
        gap < FAILOVER_BOUND,
        "{what}: failover took {gap:?}: {}\n{}",
        samples.summary(),
        lab.diag()
    );
    // The agent logged one switch, primary → standby, with its own gap.
    lab.wait_log("new flows switched", Duration::from_secs(2));
    let switches = lab.log_lines("new flows switched");
    assert_eq!(switches.len(), 1, "{what}: {switches:#?}\n{}", lab.diag());
    assert!(
        switches[0].contains("from=primary") && switches[0].contains("to=standby"),
        "{what}: {}",
        switches[0]
    );
    eprintln!("{what}: agent: {}", switches[0].trim());
    // And it stays there: every new flow goes to the standby.
    let after = lab.sample(20, Duration::from_millis(10));
    assert_eq!(
        after.answered_by("standby"),
        20,
        "{what}: new flows after the failover: {}\n{}",
        after.summary(),
        lab.diag()
    );
    gap
}
