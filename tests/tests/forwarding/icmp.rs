//! ICMP errors from backends reach the client, translated.

use std::{io::ErrorKind, time::Instant};

use failover::{BackendSpec, Proto, ServiceSpec};
use failover_common::stats::reason;

use crate::lab::{BACKEND_UDP_PORT, BACKENDS, Lab, VIP};

/// A UDP backend with nothing listening answers port unreachable; the data
/// path translates it (from the VIP, about the client's datagram to the
/// VIP), so the client's connected socket is refused at once instead of
/// waiting out its timeout.
#[test]
fn a_udp_client_learns_at_once_that_nothing_listens() {
    const DEAD_PORT: u16 = 54;
    let mut lab = Lab::new();
    lab.dp
        .add_service(
            ServiceSpec::new(VIP, DEAD_PORT, Proto::Udp),
            &BACKENDS.map(|b| BackendSpec::new(b.addr).port(BACKEND_UDP_PORT + 1)),
        )
        .expect("add a udp service nobody serves");
    let translated = lab.reason(reason::PASS_ICMP_TRANSLATED);
    let socket = lab.udp_socket();
    socket
        .connect((VIP, DEAD_PORT))
        .expect("connect the udp socket");
    socket.send(b"anyone there?").expect("send");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let err = socket.recv(&mut buf).expect_err("nothing listens");
    assert_eq!(
        err.kind(),
        ErrorKind::ConnectionRefused,
        "{err} after {:?}\n{}",
        started.elapsed(),
        lab.diag()
    );
    assert_eq!(lab.reason(reason::PASS_ICMP_TRANSLATED), translated + 1);
}
