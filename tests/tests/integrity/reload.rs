//! Refused reloads.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use failover_tests::{
    agent_lab::{AgentLab, Failback, Options, PRIMARY, Probe, SECOND_SERVICE_PORT},
    config::{BackendToml, ProbeToml, ServiceToml},
    status::{backend, new_flows_to},
};

use crate::flows::{all_new_flows_on, expect_new_flows_on};

/// Fills `FO_SERVICES` with entries no packet can match (family 99) until
/// the kernel refuses more: the next new service the agent writes fails
/// for real (E2BIG), half-way through a reload. Returns the junk keys.
fn fill_services_map(lab: &AgentLab) -> Vec<failover_common::ServiceKey> {
    use aya::maps::{HashMap, MapData};
    use failover_common::{Service, ServiceKey};
    let data = MapData::from_pin(lab.pin_dir().join("FO_SERVICES")).expect("open FO_SERVICES");
    let mut map: HashMap<MapData, ServiceKey, Service> =
        HashMap::try_from(aya::maps::Map::HashMap(data)).expect("hash map");
    let mut junk = Vec::new();
    for i in 0..failover_common::MAX_SERVICES + 1 {
        let key = ServiceKey {
            addr: [i, 0, 0, 0],
            port_be: 0,
            proto: 255,
            family: 99,
        };
        if map.insert(key, Service::new(9999), 0).is_err() {
            return junk;
        }
        junk.push(key);
    }
    panic!("FO_SERVICES took more entries than it has");
}

fn remove_junk(lab: &AgentLab, junk: &[failover_common::ServiceKey]) {
    use aya::maps::{HashMap, MapData};
    use failover_common::{Service, ServiceKey};
    let data = MapData::from_pin(lab.pin_dir().join("FO_SERVICES")).expect("open FO_SERVICES");
    let mut map: HashMap<MapData, ServiceKey, Service> =
        HashMap::try_from(aya::maps::Map::HashMap(data)).expect("hash map");
    for key in junk {
        map.remove(key).expect("remove junk");
    }
}

#[test]
fn a_reload_that_fails_half_way_restores_the_exact_state() {
    let options = Options {
        probe: Probe::Tcp {
            port: failover_tests::agent_lab::HEALTH_PORT,
        },
        failback: Failback::Auto(Duration::from_secs(5)),
    };
    let mut lab = AgentLab::start(options);
    // The primary fails: new flows on the standby.
    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Down);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(3));
    let before = lab.inspect(&["backends"]);

    // A reload that moves web to another port (its service is removed and
    // added again) and adds a service, which the full map refuses.
    let mut changed = lab.config().clone();
    assert_eq!(changed.service_mut("web").port, 80);
    changed.service_mut("web").port = 8000;
    let changed = changed.service(
        ServiceToml::tcp("extra", Ipv4Addr::new(203, 0, 113, 30), 80)
            .probe(ProbeToml::tcp().port(SECOND_SERVICE_PORT))
            .backend(
                BackendToml::new("x", Ipv4Addr::new(198, 51, 100, 2)).port(SECOND_SERVICE_PORT),
            ),
    );
    lab.write_config(&changed);
    let junk = fill_services_map(&lab);
    let (ok, out) = lab.ctl_output(&["reload"]);
    assert!(!ok, "the reload should have failed: {out}");
    remove_junk(&lab, &junk);

    // Exactly as before: the failed primary is down, in the maps, in
    // status and for traffic.
    assert_eq!(
        lab.inspect(&["backends"]),
        before,
        "the maps changed: {out}\n{}",
        lab.diag()
    );
    let status = lab.status();
    let primary = backend(&status, "web", "primary");
    assert_eq!(
        (primary.state.as_str(), primary.healthy),
        ("down", false),
        "{status:#?}"
    );
    assert_eq!(new_flows_to(&status, "web"), ["standby"]);
    all_new_flows_on(&lab, "standby", 20, "after the refused reload");
}
