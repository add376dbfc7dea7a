//! Failed map writes.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::{AgentLab, Failback, Layout, Options, Probe};

/// Fills `FO_MAGLEV` with chunks of a service id no service has, until the
/// kernel refuses more. Returns their keys.
fn fill_maglev_map(lab: &AgentLab) -> Vec<failover_common::MaglevKey> {
    use aya::maps::{HashMap, MapData};
    use failover_common::{MaglevChunk, MaglevKey};
    let data = MapData::from_pin(lab.pin_dir().join("FO_MAGLEV")).expect("open FO_MAGLEV");
    let mut map: HashMap<MapData, MaglevKey, MaglevChunk> =
        HashMap::try_from(aya::maps::Map::HashMap(data)).expect("hash map");
    let mut junk = Vec::new();
    for chunk in 0..failover_common::MAGLEV_CHUNKS + 1 {
        let key = MaglevKey {
            service_id: 0xdead,
            generation: 0,
            chunk,
        };
        if map
            .insert(key, [0; failover_common::MAGLEV_CHUNK_SLOTS], 0)
            .is_err()
        {
            return junk;
        }
        junk.push(key);
    }
    panic!("FO_MAGLEV took more entries than it has");
}

fn empty_maglev_map(lab: &AgentLab, junk: &[failover_common::MaglevKey]) {
    use aya::maps::{HashMap, MapData};
    use failover_common::{MaglevChunk, MaglevKey};
    let data = MapData::from_pin(lab.pin_dir().join("FO_MAGLEV")).expect("open FO_MAGLEV");
    let mut map: HashMap<MapData, MaglevKey, MaglevChunk> =
        HashMap::try_from(aya::maps::Map::HashMap(data)).expect("hash map");
    for key in junk {
        map.remove(key).expect("remove junk");
    }
}

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
    let junk = fill_maglev_map(&lab);
    // a fails: the new table cannot be written.
    lab.health[0].set(failover_tests::agent_lab::Health::Down);
    lab.wait_log("map update failed", Duration::from_secs(3));
    let status = lab.status();
    assert!(status.totals.map_write_failures_total >= 1, "{status:#?}");
    // The agent keeps trying; once the kernel takes the write, the maps
    // carry its decision: a is down, new flows avoid it.
    empty_maglev_map(&lab, &junk);
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
