//! A backend marked down takes no new flows, and its flows are re-picked.

use std::{
    io::ErrorKind,
    time::{Duration, Instant},
};

use failover::BackendState;
use failover_common::stats::reason;
use failover_tests::servers::ask;

use crate::{
    checks::tally,
    lab::{Lab, other_backend},
};

/// How long a client waits for the reset of a re-picked connection.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn backend_marked_down_takes_no_new_flows_and_its_flows_are_repicked() {
    let mut lab = Lab::new();

    // TCP: a long connection, on backend `dead`.
    let mut long = lab.connect();
    long.set_read_timeout(Some(RESET_TIMEOUT)).unwrap();
    let dead = ask(&mut long).expect("first answer on the long connection");
    let survivor = other_backend(&dead);
    // UDP: a client socket whose flow is on `dead` too.
    let udp_on_dead = (0..64)
        .map(|_| lab.udp_socket())
        .find(|socket| lab.udp_query(socket).expect("udp query") == dead)
        .unwrap_or_else(|| panic!("no udp flow landed on {dead} in 64 tries"));

    let repicks = lab.reason(reason::EVENT_REPICK);
    lab.dp
        .set_backend_state(Lab::backend_id(&lab.tcp, &dead), BackendState::Down)
        .expect("mark down");

    // New flows all go to the survivor.
    let answers = lab.short_requests(50);
    let counts = tally(answers.iter().map(|(_, name)| name));
    assert_eq!(
        counts.get(survivor),
        Some(&50),
        "new flows after marking {dead} down: {counts:?}"
    );

    // The long connection's next packet is re-picked to the survivor, whose
    // kernel knows no such connection and resets it.
    let started = Instant::now();
    let result = ask(&mut long);
    let elapsed = started.elapsed();
    match result {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!(
            "long connection after marking {dead} down: expected a reset, got {other:?} after {elapsed:?}\n{}",
            lab.diag()
        ),
    }
    assert!(elapsed < RESET_TIMEOUT, "reset took {elapsed:?}");
    let repicks_tcp = lab.reason(reason::EVENT_REPICK);
    assert!(
        repicks_tcp > repicks,
        "event_repick did not move ({repicks})\n{}",
        lab.diag()
    );
    eprintln!("tcp flow on {dead} reset {elapsed:?} after its next packet");

    // UDP: same for the other service (its own backend ids).
    lab.dp
        .set_backend_state(Lab::backend_id(&lab.udp, &dead), BackendState::Down)
        .expect("mark down");
    let answers = lab.udp_queries(20);
    let counts = tally(answers.iter().map(|(_, name)| name));
    assert_eq!(
        counts.get(survivor),
        Some(&20),
        "new udp flows after marking {dead} down: {counts:?}"
    );
    let answer = lab
        .udp_query(&udp_on_dead)
        .unwrap_or_else(|e| panic!("udp flow of {dead}: {e}\n{}", lab.diag()));
    assert_eq!(
        answer, survivor,
        "the udp flow of the dead backend was not re-picked"
    );
    assert!(
        lab.reason(reason::EVENT_REPICK) > repicks_tcp,
        "udp re-pick not counted\n{}",
        lab.diag()
    );
    // And it stays there.
    assert_eq!(lab.udp_query(&udp_on_dead).expect("udp query"), survivor);
}
