//! Status never delays a decision.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::{AgentLab, PRIMARY};

use crate::{flows::expect_new_flows_on, tcp_probe};

/// Fills `FO_FLOWS` with live entries no packet matches (family 99).
fn fill_flow_table(lab: &AgentLab) {
    use aya::maps::{HashMap, MapData};
    use failover_common::{Flow, FlowKey};
    let data = MapData::from_pin(lab.pin_dir().join("FO_FLOWS")).expect("open FO_FLOWS");
    let mut map: HashMap<MapData, FlowKey, Flow> =
        HashMap::try_from(aya::maps::Map::LruHashMap(data)).expect("lru hash map");
    for i in 0..failover_common::DEFAULT_MAX_FLOWS {
        let key = FlowKey {
            src: [i, 0, 0, 0],
            family: 99,
            ..FlowKey::default()
        };
        let flow = Flow {
            last_seen_ns: u64::MAX / 2,
            expires_ns: u64::MAX,
            ..Flow::default()
        };
        map.insert(key, flow, 0).expect("insert a junk flow");
    }
}

/// `decisive_result_to_map_update=Some(…)` of a "new flows switched" line.
fn decisive_to_map(line: &str) -> Option<Duration> {
    let text = line.split("decisive_result_to_map_update=Some(").nth(1)?;
    let text = &text[..text.find(')')?];
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ns" => number / 1e9,
        "µs" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

#[test]
fn status_on_a_full_flow_table_does_not_delay_a_failover() {
    let mut lab = AgentLab::start(tcp_probe());
    fill_flow_table(&lab);
    // Operators (and `failover drain`) asking for status all the time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asker = {
        let (stop, socket) = (stop.clone(), lab.socket());
        std::thread::spawn(move || {
            let mut answers = 0;
            let started = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(30)
            {
                let ok = std::process::Command::new(failover_tests::failover_bin())
                    .arg("--socket")
                    .arg(&socket)
                    .args(["status", "--json"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                answers += usize::from(ok);
            }
            answers
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    drop(lab.servers[PRIMARY].take());
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(6));
    // Redispatch moves refused SYNs before the agent decides: wait for it.
    lab.wait_log("new flows switched", Duration::from_secs(6));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = asker.join().unwrap();
    assert!(answers >= 3, "status was hardly answered ({answers})");
    let switched = lab.log_lines("new flows switched");
    let took = switched
        .iter()
        .find_map(|line| decisive_to_map(line))
        .unwrap_or_else(|| panic!("no decision logged: {switched:#?}"));
    // A walk of the full table takes hundreds of milliseconds; the decision
    // must not wait for one (it takes well under a millisecond alone).
    assert!(
        took < Duration::from_millis(100),
        "decisive probe result to map update took {took:?} with status running\n{switched:#?}"
    );
    let status = lab.status();
    assert!(status.active_flows_counted_s_ago.is_some(), "{status:#?}");
}
