//! What the tests check of new flows: where they go, and how soon.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::AgentLab;

/// Waits (bounded) until new flows reach `name`.
pub fn expect_new_flows_on(
    lab: &AgentLab,
    name: &str,
    since: Instant,
    bound: Duration,
) -> Duration {
    let samples = lab.sample_until_since(name, bound, since, Duration::from_millis(100));
    samples.reached().unwrap_or_else(|| {
        panic!(
            "new flows never reached {name}: {}\n{}",
            samples.summary(),
            lab.diag()
        )
    })
}

/// Samples `n` new flows and checks that all went to `name`.
pub fn all_new_flows_on(lab: &AgentLab, name: &str, n: usize, what: &str) {
    let samples = lab.sample(n, Duration::from_millis(20));
    assert_eq!(
        samples.answered_by(name),
        n,
        "{what}: {}\n{}",
        samples.summary(),
        lab.diag()
    );
}
