//! The data path picks new flows' backends from the service's Maglev table,
//! and a backend going down flips to a new table generation that moves only
//! that backend's slots (plus Maglev's small churn).

use std::collections::BTreeMap;

use failover::{BackendSpec, BackendState, Proto, ServiceSpec};
use failover_common::{
    FlowKey,
    hash::{FLOW_HASH_SEED, flow_hash},
    stats::reason,
};
use failover_tests::{lab::*, packet};

const SIZE: u32 = failover::maglev::DEFAULT_TABLE_SIZE;

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
    let mut lab = TestRunLab::new();
    let entry = lab
        .dataplane
        .add_service(
            ServiceSpec::new(VIP, 80, Proto::Tcp),
            &[
                BackendSpec::new(BACKEND_1),
                BackendSpec::new(BACKEND_2),
                BackendSpec::new(BACKEND_3),
            ],
        )
        .unwrap();
    let service = entry.id;
    let id_of = |addr| {
        *entry
            .backends
            .iter()
            .find(|(_, s)| s.addr == addr)
            .unwrap()
            .0
    };
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
    let mut lab = TestRunLab::new();
    let entry = lab
        .dataplane
        .add_service(
            ServiceSpec::new(VIP, 80, Proto::Tcp),
            &[
                BackendSpec::new(BACKEND_1),
                BackendSpec::new(BACKEND_2),
                BackendSpec::new(BACKEND_3).tier(1),
            ],
        )
        .unwrap();
    let service = entry.id;
    let id_of = |addr| {
        *entry
            .backends
            .iter()
            .find(|(_, s)| s.addr == addr)
            .unwrap()
            .0
    };
    lab.dataplane
        .set_settings(
            service,
            failover::dataplane::ServiceSettings {
                mode: failover::table::Mode::NPlusOne,
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
