//! Passive detection (`[services.passive]`): the primary's service port
//! closes — its host answers every SYN with a RST — while its probes, every
//! 2 s with fall 3, would take 4 s or more to notice. The data path counts
//! RSTs answering SYNs exactly; the agent ejects the primary on them and
//! new flows go to the standby within a fraction of a second, logged with
//! the evidence. A primary that goes silent (its replies blackholed) leaves
//! SYNs unanswered: confirmed by a burst of probes, it is ejected too.
//! With redispatch (the default), the SYNs the primary refuses meanwhile
//! reach the standby instead: no client sees the failure.

use std::time::{Duration, Instant};

use failover_tests::{
    agent_lab::{AgentLab, BACKEND_PORT, Failback, Layout, Options, PRIMARY, Probe},
    config::{PassiveToml, SetPolicies},
};

#[test]
fn a_primary_answering_syns_with_resets_is_ejected_before_its_probes_notice() {
    // Without redispatch the refused connections fail: what they measure
    // is the ejection alone.
    let mut lab = slow_probes_lab(PassiveToml::default(), false);
    let t0 = Instant::now();
    // Its server gone, the primary's host answers SYNs to :8080 with RSTs.
    lab.servers[PRIMARY] = None;
    let unhealthy = ejected_before_the_probes(&lab, t0, "passive", "the primary's port closed");
    assert!(
        unhealthy[0].contains("primary") && unhealthy[0].contains("RSTs answering"),
        "{unhealthy:#?}"
    );
    assert!(
        lab.counter("fwd_new_flow") > 0,
        "no new flow went through the data path"
    );
}

/// New connections (each given 100 ms) from `t0` until the standby
/// answers one, well before the probes could have decided (at least two
/// more rounds of 2 s after the first failure, fall 3); prints the gap as
/// `label`, after `what`. Returns the agent's "backend unhealthy" lines.
fn ejected_before_the_probes(lab: &AgentLab, t0: Instant, label: &str, what: &str) -> Vec<String> {
    let samples = lab.sample_until_since(
        "standby",
        Duration::from_secs(10),
        t0,
        Duration::from_millis(100),
    );
    let gap = samples
        .reached()
        .unwrap_or_else(|| panic!("never failed over: {}\n{}", samples.summary(), lab.diag()));
    eprintln!(
        "{label}: first new flow on the standby {} ms after {what}; samples {}",
        gap.as_millis(),
        samples.summary()
    );
    assert!(
        gap < Duration::from_millis(1500),
        "took {gap:?}: the probes, not the evidence, decided\n{}",
        lab.diag()
    );
    lab.wait_log("backend unhealthy", Duration::from_secs(2));
    lab.log_lines("backend unhealthy")
}

/// Options and layout of the tests here: a TCP probe of the service port
/// every 2 s (timeout 500 ms), fall 3, failback by the operator; SYN
/// redispatch on or off.
fn slow_probes_lab(passive: PassiveToml, redispatch: bool) -> AgentLab {
    let options = Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Manual,
    };
    let layout = Layout::primary_standby()
        .probe_timing(Duration::from_secs(2), Duration::from_millis(500))
        .redispatch(redispatch);
    AgentLab::start_layout(options, layout, |_, config| {
        config.with_service("web", |mut web| {
            web.passive = Some(passive);
            web
        })
    })
}

#[test]
fn a_silent_primary_is_ejected_once_probes_confirm_its_unanswered_syns() {
    let lab = slow_probes_lab(
        PassiveToml {
            unanswered: Some(3),
            syn_timeout: Some(Duration::from_millis(50)),
            ..PassiveToml::default()
        },
        true,
    );
    let t0 = Instant::now();
    // The primary's host still takes packets but every answer is dropped
    // by its routing: no RST, no ICMP, nothing.
    lab.backends[PRIMARY].ip(&["rule", "add", "pref", "10", "blackhole"]);
    let unhealthy = ejected_before_the_probes(&lab, t0, "blackhole", "the primary went silent");
    assert!(
        unhealthy[0].contains("primary")
            && unhealthy[0].contains("SYNs unanswered")
            && unhealthy[0].contains("confirming probes failed"),
        "{unhealthy:#?}"
    );
}

#[test]
fn unanswered_syns_a_probe_still_answers_eject_nothing() {
    let lab = slow_probes_lab(
        PassiveToml {
            unanswered: Some(3),
            syn_timeout: Some(Duration::from_millis(50)),
            ..PassiveToml::default()
        },
        true,
    );
    // Answers to the clients' network are lost (an asymmetric fault
    // beyond the backend), the agent's probes still get theirs: the
    // confirming probes pass and the primary stays.
    lab.backends[PRIMARY].ip(&["route", "replace", "blackhole", "192.0.2.0/24"]);
    let samples = lab.sample(8, Duration::from_millis(20));
    assert_eq!(samples.answered_by("standby"), 0, "{}", samples.summary());
    lab.wait_log("a confirming probe passed", Duration::from_secs(5));
    assert!(
        lab.log_lines("backend unhealthy").is_empty(),
        "{:#?}",
        lab.log_lines("backend unhealthy")
    );
}

#[test]
fn with_redispatch_no_client_sees_the_primary_refuse() {
    let mut lab = slow_probes_lab(PassiveToml::default(), true);
    let before = lab.counter("event_syn_redispatched");
    let t0 = Instant::now();
    lab.servers[PRIMARY] = None;
    let redispatched = || lab.counter("event_syn_redispatched");
    // New connections every 10 ms for half a second: the first few are
    // refused by the primary and redispatched, then it is ejected.
    let samples = lab.sample(50, Duration::from_millis(10));
    eprintln!(
        "redispatch: {} of 50 answered by the standby, {} failed, {} redispatched, in {} ms; {}",
        samples.answered_by("standby"),
        samples.failures(),
        redispatched() - before,
        t0.elapsed().as_millis(),
        samples.summary()
    );
    assert_eq!(
        samples.failures(),
        0,
        "{}\n{}",
        samples.summary(),
        lab.diag()
    );
    assert_eq!(samples.answered_by("standby"), 50, "{}", samples.summary());
    let moved = redispatched() - before;
    assert!(
        (3..10).contains(&moved),
        "{moved} SYNs redispatched: the refusals before the ejection (3) and no more\n{}",
        lab.diag()
    );
    lab.wait_log("backend unhealthy", Duration::from_secs(2));
    assert!(lab.log_lines("backend unhealthy")[0].contains("RSTs answering"));
}
