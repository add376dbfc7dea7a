//! `dead_flows = "reset"`: TCP flows of a dead backend reset, UDP
//! re-picked.

use std::time::{Duration, Instant};

use failover::lab::topology::CLIENT_ADDR;
use failover_tests::{
    agent_lab::{AgentLab, HEALTH_PORT, HOSTS, Health, Layout, PRIMARY, STANDBY, VIP, ask},
    config::{BackendToml, DeadFlows, ProbeToml, ServiceToml, SetPolicies},
};

use crate::{
    lab::health_probe,
    view::{healthy, wait_status},
};

/// `dead_flows = "reset"` from the configuration: when a backend fails its
/// checks (its server still running), the next packet of a client's
/// established TCP connection to it is answered by the data path with a
/// RST from the VIP — the client sees the reset at once, and the request
/// never reaches any backend — while a UDP client's next datagram is
/// re-picked onto the survivor.
#[test]
fn reset_answers_a_dead_backends_tcp_flows_and_repicks_udp() {
    use std::{
        io::{ErrorKind, Read, Write},
        net::UdpSocket,
    };
    let layout = Layout::primary_standby().dead_flows(DeadFlows::Reset);
    let lab = AgentLab::start_layout(health_probe(), layout, |_, config| {
        config.service(
            ServiceToml::udp("dns", VIP, 53)
                .dead_flows(DeadFlows::Reset)
                .probe(
                    ProbeToml::tcp()
                        .port(HEALTH_PORT)
                        .interval(Duration::from_millis(100))
                        .timeout(Duration::from_millis(50)),
                )
                .backend(BackendToml::new("primary", HOSTS[PRIMARY].addr).port(5353))
                .backend(
                    BackendToml::new("standby", HOSTS[STANDBY].addr)
                        .port(5353)
                        .tier(1),
                ),
        )
    });
    // The configuration reached the data path: both services carry the flag.
    let services = lab.inspect(&["services"]);
    assert_eq!(services.as_array().map(Vec::len), Some(2), "{services:#}");
    for service in services.as_array().unwrap() {
        assert_eq!(service["reset_dead_flows"], true, "{services:#}");
    }

    let mut tcp = lab.connect();
    assert_eq!(ask(&mut tcp).unwrap(), "primary");
    let udp = lab.client.run(|| {
        let socket = UdpSocket::bind((CLIENT_ADDR, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        socket.connect((VIP, 53)).unwrap();
        socket
    });
    let mut answer = [0u8; 64];
    udp.send(b"who\n").unwrap();
    let n = udp.recv(&mut answer).expect("a udp answer");
    assert_eq!(&answer[..n], b"primary");

    let lines_before = lab.servers[0]
        .as_ref()
        .unwrap()
        .stats()
        .tcp_lines
        .load(std::sync::atomic::Ordering::Relaxed);
    let resets = lab.counter("tx_reset");
    let t0 = Instant::now();
    lab.health[0].set(Health::Down);
    wait_status(&lab, "primary unhealthy", t0, |st| !healthy(st, "primary"));

    // TCP: the request is answered with a reset, by the data path.
    let _ = tcp.write_all(b"which\n");
    let mut buf = [0u8; 64];
    let read = tcp.read(&mut buf);
    assert!(
        matches!(&read, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "the client should see a reset at once: {read:?}\n{}",
        lab.diag()
    );
    assert!(
        lab.counter("tx_reset") > resets,
        "the reset came from the data path"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        lab.servers[0]
            .as_ref()
            .unwrap()
            .stats()
            .tcp_lines
            .load(std::sync::atomic::Ordering::Relaxed),
        lines_before,
        "the request of the dead flow reached the backend"
    );
    // UDP: re-picked onto the standby.
    udp.send(b"who\n").unwrap();
    let n = udp
        .recv(&mut answer)
        .expect("a udp answer after the failure");
    assert_eq!(&answer[..n], b"standby");
}
