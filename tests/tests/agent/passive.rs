//! Passive detection (`[services.passive]`): the primary's service port
//! closes — its host answers every SYN with a RST — while its probes, every
//! 2 s with fall 3, would take 4 s or more to notice. The data path counts
//! RSTs answering SYNs exactly; the agent ejects the primary on them and
//! new flows go to the standby within a fraction of a second, logged with
//! the evidence.

use std::time::{Duration, Instant};

use failover_tests::{
    agent_lab::{AgentLab, BACKEND_PORT, Failback, Layout, Options, PRIMARY, Probe},
    config::PassiveToml,
};

#[test]
fn a_primary_answering_syns_with_resets_is_ejected_before_its_probes_notice() {
    let options = Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Manual,
    };
    let layout =
        Layout::primary_standby().probe_timing(Duration::from_secs(2), Duration::from_millis(500));
    let mut lab = AgentLab::start_layout(options, layout, |_, config| {
        config.with_service("web", |mut web| {
            web.passive = Some(PassiveToml::default());
            web
        })
    });
    let t0 = Instant::now();
    // Its server gone, the primary's host answers SYNs to :8080 with RSTs.
    lab.servers[PRIMARY] = None;
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
        "passive: first new flow on the standby {} ms after the primary's port closed; samples {}",
        gap.as_millis(),
        samples.summary()
    );
    // The probes alone: at least two more rounds of 2 s after the first
    // failure (fall 3).
    assert!(
        gap < Duration::from_millis(1500),
        "took {gap:?}: the probes, not the evidence, decided\n{}",
        lab.diag()
    );
    lab.wait_log("backend unhealthy", Duration::from_secs(2));
    let unhealthy = lab.log_lines("backend unhealthy");
    assert!(
        unhealthy[0].contains("primary") && unhealthy[0].contains("RSTs answering"),
        "{unhealthy:#?}"
    );
    assert!(
        lab.counter("fwd_new_flow") > 0,
        "no new flow went through the data path"
    );
}
