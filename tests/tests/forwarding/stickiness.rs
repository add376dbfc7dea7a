//! A long connection stays on its backend while new flows spread.

use failover_common::{PROTO_TCP, stats::reason};
use failover_tests::servers::ask;

use crate::{
    checks::{assert_spread, flow_key, tally},
    lab::{CLIENT, Lab, TCP_PORT, VIP},
};

#[test]
fn long_connection_stays_on_its_backend_while_new_flows_spread() {
    let lab = Lab::new();
    let mut long = lab.connect();
    let port = long.local_addr().unwrap().port();
    let first = ask(&mut long).expect("first answer on the long connection");
    let repicks_before = lab.reason(reason::EVENT_REPICK);

    let mut new_flows = Vec::new();
    for round in 0..10 {
        new_flows.extend(lab.short_requests(10));
        let answer = ask(&mut long)
            .unwrap_or_else(|e| panic!("long connection, round {round}: {e}\n{}", lab.diag()));
        assert_eq!(answer, first, "long connection moved in round {round}");
    }
    let counts = tally(new_flows.iter().map(|(_, name)| name));
    assert_spread("new flows", &counts, 100, 0.25);

    // The data path's view agrees: the flow's entry still names its backend.
    let key = flow_key((CLIENT, port), (VIP, TCP_PORT), PROTO_TCP);
    let entry = lab
        .dp
        .flows()
        .get(&key)
        .expect("read the flow table")
        .expect("long connection tracked");
    assert_eq!(entry.backend_id, Lab::backend_id(&lab.tcp, &first));
    assert_eq!(
        lab.reason(reason::EVENT_REPICK),
        repicks_before,
        "a flow was re-picked\n{}",
        lab.diag()
    );
    let lines = lab
        .server(&first)
        .stats()
        .tcp_lines
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(lines >= 11, "{first} answered only {lines} lines");
}
