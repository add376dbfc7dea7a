//! Dual stack: the lab's web service on its IPv4 VIP and again on an IPv6
//! VIP (`web6`, the same backends at their IPv6 addresses, probed over
//! IPv6), and a UDP service on the IPv6 VIP (`dns6`). Real sockets over
//! IPv6 through the agent's data path: failover and failback, and a long
//! IPv6 connection on the standby kept across the failback.

use std::{
    net::{SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use failover::lab::{
    load::{self, Failed},
    topology::{VIP6, backend_addr6},
};
use failover_tests::{
    agent_lab::{
        AgentLab, BACKEND_UDP_PORT, Failback, HEALTH_PORT, Health, Layout, Options, PRIMARY, Probe,
        SERVICE_PORT, ask,
    },
    config::Protocol,
};

const TIMEOUT: Duration = Duration::from_millis(300);

fn web6() -> SocketAddr {
    SocketAddr::new(VIP6.into(), SERVICE_PORT)
}

/// One short IPv6 connection with one request: who answered.
fn request6(lab: &AgentLab) -> Result<String, Failed> {
    lab.client.run(|| load::request(web6(), TIMEOUT))
}

/// One UDP query to the IPv6 VIP's port 53: who answered.
fn query6(lab: &AgentLab) -> std::io::Result<String> {
    lab.client.run(|| {
        let socket = UdpSocket::bind("[::]:0")?;
        socket.set_read_timeout(Some(TIMEOUT))?;
        socket.connect(SocketAddr::new(VIP6.into(), 53))?;
        socket.send(b"who")?;
        let mut answer = [0u8; 64];
        let n = socket.recv(&mut answer)?;
        Ok(String::from_utf8_lossy(&answer[..n]).into_owned())
    })
}

/// Asks over IPv6 until `backend` answers (every 20 ms, within `bound`):
/// when it first did, and how many requests failed before.
fn until6(lab: &AgentLab, backend: &str, bound: Duration) -> (Duration, usize) {
    let start = Instant::now();
    let mut failed = 0;
    while start.elapsed() < bound {
        match request6(lab) {
            Ok(who) if who == backend => return (start.elapsed(), failed),
            Ok(_) => {}
            Err(_) => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "IPv6 new flows never reached {backend} within {bound:?} ({failed} failed)\n{}",
        lab.diag()
    );
}

#[test]
fn ipv6_service_fails_over_and_back_and_keeps_a_long_connection() {
    let delay = Duration::from_secs(1);
    let options = Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Auto(delay),
    };
    let lab = AgentLab::start_layout(
        options,
        Layout::primary_standby().dual_stack(),
        |_, mut config| {
            let mut web6 = config.services[0].clone();
            web6.name = "web6".into();
            web6.vip = VIP6.into();
            for (i, backend) in web6.backends.iter_mut().enumerate() {
                backend.address = backend_addr6(i).into();
            }
            let mut dns6 = web6.clone();
            dns6.name = "dns6".into();
            dns6.port = 53;
            dns6.protocol = Protocol::Udp;
            for backend in &mut dns6.backends {
                backend.port = Some(BACKEND_UDP_PORT);
            }
            config.services.push(web6);
            config.services.push(dns6);
            config
        },
    );
    // Both families reach the primary: real TCP and UDP sockets.
    until6(&lab, "primary", Duration::from_secs(5));
    assert_eq!(query6(&lab).expect("udp over ipv6"), "primary");
    assert_eq!(
        lab.client
            .run(|| load::request(failover_tests::agent_lab::web(), TIMEOUT))
            .expect("ipv4 beside"),
        "primary"
    );
    // The flow table and `explain` speak IPv6.
    let flows = lab.inspect(&["flows"]);
    assert!(
        flows.to_string().contains("[2001:db8:c::2]:"),
        "no IPv6 flow in {flows}"
    );
    let explained = lab.inspect(&[
        "explain",
        "tcp",
        "[2001:db8:c::2]:40000",
        "[2001:db8:10::10]:80",
    ]);
    assert!(
        explained.to_string().contains("2001:db8:b::2")
            || explained.to_string().contains("2001:db8:b:0::2"),
        "{explained}"
    );

    // Failover over IPv6.
    let t0 = Instant::now();
    lab.health[PRIMARY].set(Health::Down);
    let (gap, failed) = until6(&lab, "standby", Duration::from_secs(5));
    eprintln!(
        "ipv6 failover: first new flow on the standby {} ms after the fault ({failed} failed before)",
        gap.as_millis()
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(
        query6(&lab).expect("udp over ipv6 after failover"),
        "standby"
    );

    // A long IPv6 connection on the standby, then the primary returns.
    let mut long: TcpStream = lab
        .client
        .run(|| load::connect(web6(), TIMEOUT))
        .expect("long ipv6 connection");
    assert_eq!(
        ask(&mut long).expect("ask on the long connection"),
        "standby"
    );
    lab.health[PRIMARY].set(Health::Up);
    let (back, failed) = until6(&lab, "primary", delay + Duration::from_secs(5));
    eprintln!(
        "ipv6 failback: new flows on the primary {} ms after it was healthy ({failed} failed)",
        back.as_millis()
    );
    assert_eq!(failed, 0, "requests failed during the failback");
    for i in 0..5 {
        let answer = ask(&mut long).unwrap_or_else(|e| {
            panic!(
                "long ipv6 connection after failback, ask {i}: {e}\n{}",
                lab.diag()
            )
        });
        assert_eq!(answer, "standby", "the long IPv6 connection moved");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Status names the IPv6 services by their VIP.
    let status = lab.failover(&["--socket", lab.socket().to_str().unwrap(), "status"]);
    assert!(status.contains("[2001:db8:10::10]:80/tcp"), "{status}");
    assert!(status.contains("[2001:db8:10::10]:53/udp"), "{status}");
}
