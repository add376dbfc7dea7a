//! Failed map writes.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::{AgentLab, Failback, FullMaglevMap, Layout, Options, Probe};

#[test]
fn a_failed_map_write_is_retried_until_the_maps_agree() {
    let layout = Layout::tiers(&[("a", 0), ("b", 0), ("c", 0)]);
    let options = Options {
        probe: Probe::Tcp {
            port: failover_tests::agent_lab::HEALTH_PORT,
        },
        failback: Failback::Auto(Duration::from_secs(5)),
    };
    let lab = AgentLab::start_layout(options, layout, |_, config| config);
    let full = FullMaglevMap::fill(&lab);
    // a fails: the new table cannot be written.
    lab.health[0].set(failover_tests::agent_lab::Health::Down);
    lab.wait_log("map update failed", Duration::from_secs(3));
    let status = lab.status();
    assert!(status.totals.map_write_failures_total >= 1, "{status:#?}");
    // The agent keeps trying; once the kernel takes the write, the maps
    // carry its decision: a is down, new flows avoid it.
    drop(full);
    let started = Instant::now();
    loop {
        let backends = lab.inspect(&["backends"]);
        let a = backends
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["address"] == failover_tests::agent_lab::HOSTS[0].addr.to_string())
            .cloned();
        if a.as_ref().is_some_and(|a| a["state"] == "down") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the maps never caught up with the agent: {a:?}\n{}",
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let samples = lab.sample(30, Duration::from_millis(10));
    assert_eq!(samples.answered_by("a"), 0, "{}", samples.summary());
    assert_eq!(samples.failures(), 0, "{}", samples.summary());
    assert_eq!(lab.status().totals.services_out_of_sync, 0);
}
