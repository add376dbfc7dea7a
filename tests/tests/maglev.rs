//! The data path picks new flows' backends from the service's Maglev table,
//! and a backend going down flips to a new table generation that moves only
//! that backend's slots (plus Maglev's small churn).

use std::collections::BTreeMap;

use failover::{BackendSpec, BackendState};
use failover_common::{
    FlowKey,
    hash::{FLOW_HASH_SEED, flow_hash},
    stats::reason,
};
use failover_tests::{lab::*, packet};

const SIZE: u32 = failover::decide::maglev::DEFAULT_TABLE_SIZE;

fn key(port: u16) -> FlowKey {
    client_flow_key(port, 80)
}

/// The backend id in every slot of the service's current table.
fn table_of(lab: &TestRunLab, service: u32) -> Vec<u32> {
    (0..SIZE)
        .map(|slot| lab.dataplane.table_slot(service, slot).expect("slot"))
        .collect()
}

fn syn(port: u16) -> Vec<u8> {
    client_syn(port, 80).build()
}

#[test]
fn new_flows_follow_the_table_and_a_failure_moves_only_its_slots() {
    let (mut lab, entry) =
        TestRunLab::with_tcp_service(80, &[BACKEND_1, BACKEND_2, BACKEND_3].map(BackendSpec::new));
    let service = entry.id;
    let id_of = |addr| backend_id(&entry, addr);
    let table = |lab: &TestRunLab| table_of(lab, service);

    let check_flows = |lab: &TestRunLab, ports: std::ops::Range<u16>| -> BTreeMap<u32, usize> {
        let mut spread = BTreeMap::new();
        for port in ports {
            let result = lab.run(&syn(port), lab.client_ifindex);
            let dst = packet::parse(&result.output).expect("forwarded").dst;
            let slot = flow_hash(&key(port), FLOW_HASH_SEED) % SIZE;
            let expected = lab.dataplane.table_slot(service, slot).unwrap();
            assert_eq!(
                id_of(dst),
                expected,
                "port {port}: the pick must be the table's slot {slot}"
            );
            *spread.entry(expected).or_insert(0) += 1;
        }
        spread
    };

    let before = table(&lab);
    let spread = check_flows(&lab, 20_000..20_600);
    assert_eq!(
        spread.len(),
        3,
        "all three backends take new flows: {spread:?}"
    );
    for count in spread.values() {
        assert!((150..=250).contains(count), "uneven spread: {spread:?}");
    }

    let dead = id_of(BACKEND_2);
    lab.dataplane
        .set_backend_state(dead, BackendState::Down)
        .unwrap();
    let after = table(&lab);
    assert!(
        after.iter().all(|id| *id != dead),
        "the dead backend keeps no slot"
    );
    let moved_others = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| **b != dead && b != a)
        .count();
    assert!(
        moved_others as f64 <= SIZE as f64 * 0.015,
        "{moved_others} slots of surviving backends moved"
    );
    let spread = check_flows(&lab, 21_000..21_400);
    assert!(!spread.contains_key(&dead));
    let stale = lab.reasons()[reason::EVENT_STALE_SELECTION as usize].packets;
    assert_eq!(stale, 0, "the flip is atomic: no pick met a stale slot");
}

/// N+1: two active members and a spare; when a member fails the spare takes
/// exactly its slots in the data path's table, and the other member's slots
/// stay; when it recovers the original table comes back.
#[test]
fn n_plus_one_spare_takes_exactly_the_failed_members_slots() {
    let (mut lab, entry) = TestRunLab::with_tcp_service(
        80,
        &[
            BackendSpec::new(BACKEND_1),
            BackendSpec::new(BACKEND_2),
            BackendSpec::new(BACKEND_3).tier(1),
        ],
    );
    let service = entry.id;
    let id_of = |addr| backend_id(&entry, addr);
    lab.dataplane
        .set_settings(
            service,
            failover::dataplane::ServiceSettings {
                mode: failover::decide::select::Mode::NPlusOne,
                ..Default::default()
            },
        )
        .unwrap();
    let table = |lab: &TestRunLab| table_of(lab, service);
    let (first, second, spare) = (id_of(BACKEND_1), id_of(BACKEND_2), id_of(BACKEND_3));
    let healthy = table(&lab);
    assert!(
        !healthy.contains(&spare),
        "the spare takes nothing while both members are up"
    );

    lab.dataplane
        .set_backend_state(first, BackendState::Down)
        .unwrap();
    let failed = table(&lab);
    for (slot, (before, after)) in healthy.iter().zip(&failed).enumerate() {
        let expected = if *before == first { spare } else { second };
        assert_eq!(*after, expected, "slot {slot}");
    }
    // The data path follows: flows hashing to the failed member's slots go to the spare.
    let mut to_spare = 0;
    for port in 30_000..30_300u16 {
        let result = lab.run(&syn(port), lab.client_ifindex);
        let dst = packet::parse(&result.output).expect("forwarded").dst;
        let slot = flow_hash(&key(port), FLOW_HASH_SEED) % SIZE;
        assert_eq!(id_of(dst), failed[slot as usize], "port {port}");
        to_spare += usize::from(id_of(dst) == spare);
    }
    assert!(
        to_spare > 100,
        "about half the new flows go to the spare: {to_spare}"
    );

    lab.dataplane
        .set_backend_state(first, BackendState::Up)
        .unwrap();
    assert_eq!(table(&lab), healthy, "recovery restores the original table");
}

/// A slot naming a backend that is not usable (what a writer that ignored
/// the ordering would leave between two writes) is counted as
/// `event_stale_selection`, and the pick falls back to a usable backend.
#[test]
fn a_stale_slot_is_counted_and_the_pick_falls_back() {
    use aya::maps::{Array, MapData};
    let (lab, entry) =
        TestRunLab::with_tcp_service(80, &[BACKEND_1, BACKEND_2, BACKEND_3].map(BackendSpec::new));
    let stale = backend_id(&entry, BACKEND_2);
    // Mark it down behind the data path's back: the table still names it.
    let data = MapData::from_pin(lab.pins.path().join("FO_BACKENDS")).unwrap();
    let mut backends: Array<MapData, failover_common::Backend> =
        Array::try_from(aya::maps::Map::Array(data)).unwrap();
    let mut value = backends.get(&stale, 0).unwrap();
    value.state = failover_common::backend_state::DOWN;
    backends.set(stale, value, 0).unwrap();

    let before = lab.reasons()[reason::EVENT_STALE_SELECTION as usize].packets;
    let mut stale_slots = 0;
    for port in 22_000..22_300 {
        let slot = flow_hash(&key(port), FLOW_HASH_SEED) % SIZE;
        let names_stale = lab.dataplane.table_slot(entry.id, slot) == Some(stale);
        let result = lab.run(&syn(port), lab.client_ifindex);
        let dst = packet::parse(&result.output).expect("forwarded").dst;
        assert_ne!(dst, BACKEND_2, "port {port} went to the down backend");
        stale_slots += usize::from(names_stale);
    }
    assert!(stale_slots > 50, "{stale_slots}");
    assert_eq!(
        lab.reasons()[reason::EVENT_STALE_SELECTION as usize].packets - before,
        stale_slots as u64,
        "every pick that met the stale slot is counted"
    );
}

/// New flows while the agent flips a backend down and up 200 times (each
/// flip a new table generation): every one finds a backend of the service
/// that takes new flows, none is dropped and none meets a stale slot.
/// (One lookup reads one whole
/// chunk, replaced atomically, so a half-written table cannot be seen by
/// a packet at all; what this guards is the order of the writes.)
#[test]
fn new_flows_during_table_flips_always_find_a_backend() {
    let (mut lab, entry) =
        TestRunLab::with_tcp_service(80, &[BACKEND_1, BACKEND_2, BACKEND_3].map(BackendSpec::new));
    let flipping = backend_id(&entry, BACKEND_3);
    // A second loaded program on the same pinned maps sends the traffic
    // while the lab's data path writes.
    let sender = failover::Dataplane::load(lab.pins.path()).expect("second handle");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (client_if, ns) = (lab.client_ifindex, &lab.ns);
    let dataplane = &mut lab.dataplane;
    let results = std::thread::scope(|scope| {
        let traffic = scope.spawn(|| {
            ns.run(|| {
                let program = sender.program().unwrap();
                let mut results = Vec::new();
                let mut port = 10_000u16;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && port < 60_000 {
                    let result = failover_tests::lab::run_xdp(program, &syn(port), client_if);
                    results.push((port, result));
                    port += 1;
                }
                results
            })
        });
        for i in 0..200 {
            let state = if i % 2 == 0 {
                BackendState::Down
            } else {
                BackendState::Up
            };
            dataplane.set_backend_state(flipping, state).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        traffic.join().unwrap()
    });
    assert!(results.len() > 200, "too little traffic: {}", results.len());
    for (port, result) in &results {
        assert_eq!(result.action, 4, "port {port}: not redirected");
        let dst = packet::parse(&result.output).expect("forwarded").dst;
        assert!(
            [BACKEND_1, BACKEND_2, BACKEND_3].contains(&dst),
            "port {port}: {dst}"
        );
    }
    assert_eq!(lab.reasons()[reason::DROP_NO_BACKEND as usize].packets, 0);
    // Written in order (a backend before the table that names it; a table
    // without it before it stops), no pick ever met a slot whose backend
    // refuses new flows.
    assert_eq!(
        lab.reasons()[reason::EVENT_STALE_SELECTION as usize].packets,
        0,
        "a pick met a stale slot while {} flows were picked",
        results.len()
    );
}
