//! N+1: a spare takes exactly the failed member's share.

use std::time::Instant;

use failover_tests::{
    agent_lab::{AgentLab, Layout},
    config::{Redundancy, SetPolicies},
};

use crate::{
    NEW_FLOWS_N_PLUS_ONE,
    lab::{kill, tcp_probe},
    long::{Long, count_by_backend, disturbed, open_long},
    spread::Spread,
    view::{decisions, explain, ids, new_flows_to, selection, service_row, state, wait_status},
};

/// `mode = "n_plus_one"`: members a and b (tier 0), spare s (tier 1). The
/// spare takes nothing while both members serve; when b dies it takes
/// exactly b's share: a's share and a's flows stay as they were.
#[test]
fn n_plus_one_spare_takes_exactly_the_dead_members_share() {
    let layout = Layout::tiers(&[("a", 0), ("b", 0), ("s", 1)]).redundancy(Redundancy::NPlusOne);
    let mut lab = AgentLab::start_layout(tcp_probe(), layout, |_, config| config);
    let ids = ids(&lab);
    let status = lab.status();
    assert_eq!(
        new_flows_to(&status),
        ["a", "b"],
        "{:#}",
        decisions(&status)
    );
    let before = Spread::of(&lab, NEW_FLOWS_N_PLUS_ONE);
    let table_before = service_row(&lab);
    // Ports the client never uses for connections (below the ephemeral
    // range): explain says where a new flow from each would go.
    let probe_ports: Vec<u16> = (1000..1100).collect();
    let mapped_before: Vec<Option<u64>> = probe_ports
        .iter()
        .map(|&port| {
            let (path, backend) = explain(&lab, port);
            assert_eq!(path, "new_flow", "explain :{port}");
            backend
        })
        .collect();
    let mut longs = open_long(&lab, 20);
    let long_before = count_by_backend(&longs);

    let t0 = Instant::now();
    kill(&mut lab, "b");
    // The agent's view follows the data path: the spare stands in for b.
    let (status, gap) = wait_status(&lab, "b down, the spare standing in", t0, |st| {
        state(st, "b") == "down" && new_flows_to(st) == ["a", "s"]
    });
    assert_eq!(state(&status, "a"), "up");
    assert_eq!(state(&status, "s"), "up");
    let switched = lab.log_lines("new flows switched");
    assert!(
        switched.len() == 1 && switched[0].contains("from=a,b") && switched[0].contains("to=a,s"),
        "{switched:#?}"
    );

    let mut on_a: Vec<&mut Long> = longs.iter_mut().filter(|l| l.backend == "a").collect();
    let on_a_n = on_a.len();
    let disturbed_a = disturbed(&mut on_a);
    let after = Spread::of(&lab, NEW_FLOWS_N_PLUS_ONE);
    let table_after = service_row(&lab);
    let mapped_after: Vec<(u16, String, Option<u64>)> = probe_ports
        .iter()
        .map(|&port| {
            let (path, backend) = explain(&lab, port);
            (port, path, backend)
        })
        .collect();
    let kept_on_a = mapped_before
        .iter()
        .zip(&mapped_after)
        .filter(|(b, a)| **b == Some(ids["a"]) && a.2 == Some(ids["a"]))
        .count();
    let to_spare = mapped_before
        .iter()
        .zip(&mapped_after)
        .filter(|(b, a)| **b == Some(ids["b"]) && a.2 == Some(ids["s"]))
        .count();
    eprintln!(
        "n+1: before the failure {}; b down after {} ms; after {}; a's share {:.1} % → {:.1} %; \
         explain over {} ports: {kept_on_a} stay on a, {to_spare} move b → s; \
         long connections {long_before:?}, on a disturbed {}/{on_a_n}; \
         table generation {} → {}, selection {:?} → {:?} (ids {ids:?})",
        before.describe(),
        gap.as_millis(),
        after.describe(),
        before.share("a"),
        after.share("a"),
        probe_ports.len(),
        disturbed_a.len(),
        table_before["table_generation"],
        table_after["table_generation"],
        selection(&table_before),
        selection(&table_after),
    );

    // Before: the members split new flows, the spare takes none.
    assert!(before.failures.is_empty(), "{}", before.describe());
    assert_eq!(before.count("s"), 0, "{}", before.describe());
    assert!(
        (40.0..=60.0).contains(&before.share("a")),
        "{}",
        before.describe()
    );
    // After: b's share goes to the spare; a keeps about half.
    assert!(after.failures.is_empty(), "{}", after.describe());
    assert_eq!(after.count("b"), 0, "{}", after.describe());
    assert!(
        (40.0..=60.0).contains(&after.share("a")),
        "a's share changed: before {}, after {}",
        before.describe(),
        after.describe()
    );
    assert!(
        (40.0..=60.0).contains(&after.share("s")),
        "{}",
        after.describe()
    );
    // Exactly: every port that went to a still does, every one that went
    // to b now goes to the spare.
    for (before, (port, path, after)) in mapped_before.iter().zip(&mapped_after) {
        assert_eq!(path, "new_flow", "explain :{port} after the failure");
        let expected = if *before == Some(ids["b"]) {
            Some(ids["s"])
        } else {
            *before
        };
        assert_eq!(
            *after, expected,
            "explain :{port}: before {before:?}, after {after:?} (ids {ids:?})"
        );
    }
    assert!(kept_on_a > 20 && to_spare > 20, "{kept_on_a} {to_spare}");
    // a's established connections are untouched.
    assert!(on_a_n > 0, "no long connection on a: {long_before:?}");
    assert!(
        disturbed_a.is_empty(),
        "a's connections were disturbed: {disturbed_a:#?}\n{}",
        lab.diag()
    );
    // The data path still has its table: flipped to the other generation,
    // over a and the spare.
    assert!(
        table_after["table_size"].as_u64().unwrap_or(0) > 0,
        "{table_after}"
    );
    assert_ne!(
        table_after["table_generation"], table_before["table_generation"],
        "{table_before} {table_after}"
    );
    assert_eq!(selection(&table_before), {
        let mut v = vec![ids["a"], ids["b"]];
        v.sort_unstable();
        v
    });
    assert_eq!(selection(&table_after), {
        let mut v = vec![ids["a"], ids["s"]];
        v.sort_unstable();
        v
    });
}
