//! Forwarding through the XDP data path between real sockets in network
//! namespaces: a client, an edge host (the load balancer), two backends.
//!
//! ```text
//!   client                 lb (XDP forwarder on lbc, lbb1, lbb2)          backends
//!   eth0 192.0.2.2/24 ──── lbc  192.0.2.1/24
//!                          lbb1 198.51.100.1/28  ──── eth0 198.51.100.2/28   backend1
//!                          lbb2 198.51.100.17/28 ──── eth0 198.51.100.18/28  backend2
//!
//!   VIP 203.0.113.10: tcp :80 → backends :8080, udp :53 → backends :5353
//! ```
//!
//! The data path only rewrites the destination (NAT mode), so the backends
//! route the clients' range back through the lb, where replies get the VIP
//! put back as their source. There are no default routes: a packet that
//! escapes the data path's rewrite has nowhere to go. The client and backend
//! ends of the veth pairs carry the pass program (native XDP_TX/redirect into
//! a veth needs an XDP program on its peer) and send with checksum offload
//! off (locally generated packets are CHECKSUM_PARTIAL, see ENVIRONMENT.md,
//! "veth + XDP pitfalls").
//!
//! Each test builds its own lab (namespaces are uniquely named), so they run
//! in parallel.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    sync::Mutex,
    time::{Duration, Instant},
};

use failover::{
    AttachMode, BackendSpec, BackendState, Dataplane, Proto, ServiceSpec,
    dataplane::ServiceEntry,
    lab::topology::{self, BackendLink, Topology},
};
use failover_common::{
    Counter, FAMILY_IPV4, FlowKey, PROTO_TCP, PROTO_UDP, TrafficStats, flow_direction, ipv4_addr,
    stats::{VERDICT_NAMES, reason},
};
use failover_tests::{
    netns::NetNs,
    pins::PinDir,
    servers::{BackendServer, ask},
};

const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const CLIENT: Ipv4Addr = topology::CLIENT_ADDR;

const TCP_PORT: u16 = 80;
const BACKEND_TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 53;
const BACKEND_UDP_PORT: u16 = 5353;

/// Connect, read and write timeout of every client socket.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a client waits for the reset of a re-picked connection.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// One backend host of the lab.
struct BackendHost {
    name: &'static str,
    addr: Ipv4Addr,
    lb_side: &'static str,
}

const BACKENDS: [BackendHost; 2] = [
    BackendHost {
        name: "backend1",
        addr: topology::backend_addr(0),
        lb_side: "lbb1",
    },
    BackendHost {
        name: "backend2",
        addr: topology::backend_addr(1),
        lb_side: "lbb2",
    },
];

fn backend_host(name: &str) -> &'static BackendHost {
    BACKENDS
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("unknown backend {name:?}"))
}

fn other_backend(name: &str) -> &'static str {
    BACKENDS
        .iter()
        .find(|b| b.name != name)
        .expect("two backends")
        .name
}

/// Field order is drop order: servers (threads joined) first, then the data
/// path (links detached), then the pins, then the namespaces.
struct Lab {
    servers: Vec<BackendServer>,
    dp: Dataplane,
    _pins: PinDir,
    client: NetNs,
    _lb: NetNs,
    _backend_ns: Vec<NetNs>,
    tcp: ServiceEntry,
    udp: ServiceEntry,
    /// A handle on every client UDP socket, so no two sockets of a lab ever
    /// share a source port: a new socket is always a new flow (a reused port
    /// would follow the conntrack entry of the earlier socket).
    udp_ports_held: Mutex<Vec<UdpSocket>>,
}

impl Lab {
    /// Native XDP, peers set up for it (a pass program), senders without
    /// transmit checksum offload.
    fn new() -> Self {
        Self::with_mode(AttachMode::Native)
    }

    /// XDP in `mode`; in skb mode on veth links as `ip link add` leaves
    /// them (nothing on the peers, transmit checksum offload on).
    fn with_mode(mode: AttachMode) -> Self {
        failover_tests::require_root();
        let links = BACKENDS.map(|host| BackendLink {
            role: "fwd-backend",
            lb_if: host.lb_side,
        });
        let net = Topology::build("fwd-client", "fwd-lb", &links);
        let plain = mode == AttachMode::Skb;
        if plain {
            for ns in net.namespaces() {
                for interface in ns.interfaces() {
                    ns.enable_tx_checksum(&interface);
                }
            }
        }

        let pins = PinDir::new();
        let mut dp = Dataplane::load(pins.path()).expect("load the data path");
        net.lb.run(|| {
            for interface in ["lbc", "lbb1", "lbb2"] {
                let used = dp.attach(interface, mode);
                assert_eq!(used.expect("attach the forwarder"), mode, "{interface}");
            }
        });
        if !plain {
            net.attach_pass_on_peers(&mut dp)
                .expect("attach the pass program");
        }
        let tcp = dp
            .add_service(
                ServiceSpec::new(VIP, TCP_PORT, Proto::Tcp),
                &BACKENDS.map(|b| BackendSpec::new(b.addr).port(BACKEND_TCP_PORT)),
            )
            .expect("add the tcp service");
        let udp = dp
            .add_service(
                ServiceSpec::new(VIP, UDP_PORT, Proto::Udp),
                &BACKENDS.map(|b| BackendSpec::new(b.addr).port(BACKEND_UDP_PORT)),
            )
            .expect("add the udp service");

        let servers = BACKENDS
            .iter()
            .zip(&net.backends)
            .map(|(host, ns)| {
                BackendServer::start(ns, host.name, BACKEND_TCP_PORT, BACKEND_UDP_PORT)
            })
            .collect();
        let Topology {
            client,
            lb,
            backends: backend_ns,
        } = net;
        Self {
            servers,
            dp,
            _pins: pins,
            client,
            _lb: lb,
            _backend_ns: backend_ns,
            tcp,
            udp,
            udp_ports_held: Mutex::new(Vec::new()),
        }
    }

    /// A TCP connection to the VIP from the client namespace.
    fn connect(&self) -> TcpStream {
        self.client
            .run(connect_vip)
            .unwrap_or_else(|e| panic!("connect to the vip: {e}\n{}", self.diag()))
    }

    /// `n` short connections from the client, one request each.
    fn short_requests(&self, n: usize) -> Vec<(u16, String)> {
        let results = self
            .client
            .run(|| (0..n).map(|_| short_request()).collect::<Vec<_>>());
        let failed: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| e.to_string())
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {n} tcp requests through the vip failed: {:?}\n{}",
            failed.len(),
            dedup(&failed),
            self.diag()
        );
        results.into_iter().map(Result::unwrap).collect()
    }

    /// A UDP socket bound in the client namespace, on a source port no
    /// other socket of this lab has used.
    fn udp_socket(&self) -> UdpSocket {
        let socket = self.client.run(|| {
            let socket = UdpSocket::bind((CLIENT, 0)).expect("bind a client udp socket");
            socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            socket.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            socket
        });
        let held = socket.try_clone().expect("dup a udp socket");
        self.udp_ports_held.lock().unwrap().push(held);
        socket
    }

    /// `n` UDP queries to the VIP, each from a new socket (a new flow).
    fn udp_queries(&self, n: usize) -> Vec<(u16, String)> {
        (0..n)
            .map(|i| {
                let socket = self.udp_socket();
                let port = socket.local_addr().unwrap().port();
                let name = self
                    .udp_query(&socket)
                    .unwrap_or_else(|e| panic!("udp query {i}: {e}\n{}", self.diag()));
                (port, name)
            })
            .collect()
    }

    /// One query on `socket`; checks the answer comes from the VIP.
    fn udp_query(&self, socket: &UdpSocket) -> std::io::Result<String> {
        socket.send_to(b"query", (VIP, UDP_PORT))?;
        let mut buf = [0u8; 256];
        let (n, from) = socket.recv_from(&mut buf)?;
        assert_eq!(
            from,
            SocketAddr::from((VIP, UDP_PORT)),
            "udp answer not from the vip\n{}",
            self.diag()
        );
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn backend_id(service: &ServiceEntry, name: &str) -> u32 {
        let addr = backend_host(name).addr;
        *service
            .backends
            .iter()
            .find(|(_, spec)| spec.addr == addr)
            .expect("backend of the service")
            .0
    }

    fn server(&self, name: &str) -> &BackendServer {
        self.servers
            .iter()
            .find(|s| s.name() == name)
            .expect("server")
    }

    fn reasons(&self) -> Vec<Counter> {
        self.dp.counters().reasons().expect("read reasons")
    }

    fn reason(&self, index: u32) -> u64 {
        self.reasons()[index as usize].packets
    }

    fn verdicts(&self) -> Vec<Counter> {
        self.dp.counters().verdicts().expect("read verdicts")
    }

    fn traffic(&self, backend_id: u32) -> TrafficStats {
        self.dp
            .counters()
            .backend(backend_id)
            .expect("read backend counters")
    }

    /// Non-zero data-path counters by name, for failure messages.
    fn diag(&self) -> String {
        let reasons = self.reasons();
        let reasons: Vec<String> = reason::NAMES
            .iter()
            .zip(&reasons)
            .filter(|(_, c)| c.packets > 0)
            .map(|(name, c)| format!("{name}={}", c.packets))
            .collect();
        let verdicts: Vec<String> = VERDICT_NAMES
            .iter()
            .zip(self.verdicts())
            .filter(|(_, c)| c.packets > 0)
            .map(|(name, c)| format!("{name}={}", c.packets))
            .collect();
        format!(
            "data path: reasons [{}], verdicts [{}], conntrack entries {}",
            reasons.join(" "),
            verdicts.join(" "),
            self.dp.conntrack().entries().len()
        )
    }
}

fn connect_vip() -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&SocketAddr::from((VIP, TCP_PORT)), IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects, checks the peer is the VIP, asks once; returns (local port,
/// answering backend).
fn short_request() -> std::io::Result<(u16, String)> {
    let mut stream = connect_vip()?;
    let peer = stream.peer_addr()?;
    if peer != SocketAddr::from((VIP, TCP_PORT)) {
        return Err(std::io::Error::other(format!(
            "connected to {peer}, not the vip"
        )));
    }
    let port = stream.local_addr()?.port();
    Ok((port, ask(&mut stream)?))
}

fn tally<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name.clone()).or_insert(0) += 1;
    }
    counts
}

fn dedup(errors: &[String]) -> BTreeSet<&String> {
    errors.iter().collect()
}

/// Every answer names a backend, and each backend got at least `min_share`
/// of them.
fn assert_spread(what: &str, counts: &BTreeMap<String, usize>, total: usize, min_share: f64) {
    for name in counts.keys() {
        assert!(
            BACKENDS.iter().any(|b| b.name == name),
            "{what}: unexpected answer {name:?}"
        );
    }
    for host in &BACKENDS {
        let got = counts.get(host.name).copied().unwrap_or(0);
        assert!(
            got as f64 >= min_share * total as f64,
            "{what}: {} got {got} of {total} flows (want at least {:.0} %): {counts:?}",
            host.name,
            min_share * 100.0
        );
    }
}

fn flow_key(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), proto: u8) -> FlowKey {
    FlowKey {
        src: ipv4_addr(src.0.octets()),
        dst: ipv4_addr(dst.0.octets()),
        src_port_be: src.1.to_be(),
        dst_port_be: dst.1.to_be(),
        proto,
        family: FAMILY_IPV4,
        _pad: [0; 2],
    }
}

#[test]
fn many_flows_spread_over_both_backends_and_replies_come_from_the_vip() {
    spread_and_vip_replies(&Lab::new());
}

/// The same in skb (generic) mode on plain veth links.
#[test]
fn skb_mode_on_plain_veth_spreads_flows_and_replies_from_the_vip() {
    spread_and_vip_replies(&Lab::with_mode(AttachMode::Skb));
}

fn spread_and_vip_replies(lab: &Lab) {
    // TCP: 200 short connections, each from a new source port.
    let answers = lab.short_requests(200);
    let ports: BTreeSet<u16> = answers.iter().map(|(port, _)| *port).collect();
    assert_eq!(ports.len(), 200, "source ports were reused");
    let tcp_counts = tally(answers.iter().map(|(_, name)| name));
    assert_spread("tcp", &tcp_counts, 200, 0.25);
    for host in &BACKENDS {
        let accepted = lab
            .server(host.name)
            .stats()
            .tcp_connections
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            accepted, tcp_counts[host.name],
            "{} accepted {accepted} connections",
            host.name
        );
    }

    // UDP: 100 datagrams from distinct sockets; every answer from VIP:53.
    let answers = lab.udp_queries(100);
    let ports: BTreeSet<u16> = answers.iter().map(|(port, _)| *port).collect();
    assert_eq!(ports.len(), 100, "udp source ports were reused");
    let udp_counts = tally(answers.iter().map(|(_, name)| name));
    assert_spread("udp", &udp_counts, 100, 0.25);
    for host in &BACKENDS {
        let received = lab
            .server(host.name)
            .stats()
            .udp_datagrams
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            received, udp_counts[host.name],
            "{} received {received} datagrams",
            host.name
        );
    }
    eprintln!("tcp {tcp_counts:?}, udp {udp_counts:?}; {}", lab.diag());
}

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
        .conntrack()
        .get(&key)
        .expect("read conntrack")
        .expect("long connection tracked");
    assert_eq!(entry.direction, flow_direction::FORWARD);
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

/// Reads counters until two reads 100 ms apart agree (late FIN/ACKs settle).
fn settled<T: PartialEq>(mut read: impl FnMut() -> T) -> T {
    let mut last = read();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("counters never settled");
}

#[test]
fn counters_and_conntrack_agree_with_the_traffic() {
    let lab = Lab::new();
    let tcp_answers = lab.short_requests(40);
    let udp_answers = lab.udp_queries(40);
    let tcp_counts = tally(tcp_answers.iter().map(|(_, name)| name));
    let udp_counts = tally(udp_answers.iter().map(|(_, name)| name));
    assert_spread("tcp", &tcp_counts, 40, 0.1);
    assert_spread("udp", &udp_counts, 40, 0.1);

    let ids: Vec<u32> = lab
        .tcp
        .backends
        .keys()
        .chain(lab.udp.backends.keys())
        .copied()
        .collect();
    let (per_backend, tcp_service, udp_service, verdicts, reasons) = settled(|| {
        (
            ids.iter().map(|id| lab.traffic(*id)).collect::<Vec<_>>(),
            lab.dp.counters().service(lab.tcp.id).unwrap(),
            lab.dp.counters().service(lab.udp.id).unwrap(),
            lab.verdicts(),
            lab.reasons(),
        )
    });
    let traffic: BTreeMap<u32, TrafficStats> = ids.iter().copied().zip(per_backend).collect();

    // Per backend: both directions counted, consistent with what servers saw.
    for host in &BACKENDS {
        let conns = tcp_counts[host.name] as u64;
        let t = traffic[&Lab::backend_id(&lab.tcp, host.name)];
        eprintln!("tcp {}: {conns} connections, {t:?}", host.name);
        // At least SYN, request, FIN towards; SYN-ACK and answer back.
        assert!(
            t.to_backend.packets >= 3 * conns,
            "tcp {}: {t:?} for {conns} connections",
            host.name
        );
        assert!(
            t.from_backend.packets >= 2 * conns,
            "tcp {}: {t:?} for {conns} connections",
            host.name
        );
        let queries = udp_counts[host.name] as u64;
        let u = traffic[&Lab::backend_id(&lab.udp, host.name)];
        eprintln!("udp {}: {queries} queries, {u:?}", host.name);
        assert_eq!(u.to_backend.packets, queries, "udp {}: {u:?}", host.name);
        assert_eq!(u.from_backend.packets, queries, "udp {}: {u:?}", host.name);
    }
    // Per service: the sum of its backends.
    for (service, stats) in [(&lab.tcp, tcp_service), (&lab.udp, udp_service)] {
        let sum = |f: fn(&TrafficStats) -> Counter| {
            service
                .backends
                .keys()
                .map(|id| f(&traffic[id]))
                .fold(Counter::default(), |a, c| Counter {
                    packets: a.packets + c.packets,
                    bytes: a.bytes + c.bytes,
                })
        };
        assert_eq!(
            stats.to_backend,
            sum(|t| t.to_backend),
            "service {}",
            service.spec
        );
        assert_eq!(
            stats.from_backend,
            sum(|t| t.from_backend),
            "service {}",
            service.spec
        );
    }

    // Every packet has exactly one outcome; nothing was dropped or aborted.
    let outcomes: u64 = reasons[..reason::FIRST_EVENT as usize]
        .iter()
        .map(|c| c.packets)
        .sum();
    let verdict_total: u64 = verdicts.iter().map(|c| c.packets).sum();
    assert_eq!(
        outcomes,
        verdict_total,
        "outcomes vs verdicts\n{}",
        lab.diag()
    );
    assert_eq!(verdicts[0].packets, 0, "aborted\n{}", lab.diag());
    for index in [
        reason::DROP_NO_BACKEND,
        reason::DROP_NO_ROUTE,
        reason::DROP_FRAG_NEEDED,
        reason::DROP_FIB_ERROR,
        reason::EVENT_REPICK,
        reason::EVENT_CONNTRACK_INSERT_FAILED,
    ] {
        assert_eq!(
            reasons[index as usize].packets,
            0,
            "{}\n{}",
            reason::NAMES[index as usize],
            lab.diag()
        );
    }
    // Each flow's first packet is forwarded directly, or (next hop not yet
    // resolved on the edge host) rewritten and handed to the stack.
    let new_flows = reasons[reason::FWD_NEW_FLOW as usize].packets;
    let via_stack = reasons[reason::PASS_NO_NEIGHBOUR as usize].packets;
    assert!(
        new_flows <= 80 && new_flows + via_stack >= 80,
        "80 new flows\n{}",
        lab.diag()
    );
    assert!(
        reasons[reason::FWD_ESTABLISHED as usize].packets > 0,
        "{}",
        lab.diag()
    );
    assert!(
        reasons[reason::FWD_REPLY as usize].packets > 0,
        "{}",
        lab.diag()
    );
    // Forwarded natively between interfaces, not only through the stack.
    assert!(verdicts[4].packets > 0, "no redirects\n{}", lab.diag());

    // Conntrack: every flow has both entries, naming the backend that answered.
    let entries = lab.dp.conntrack().entries();
    assert_eq!(entries.len(), 2 * 80, "two conntrack entries per flow");
    let conntrack = lab.dp.conntrack();
    let flows = tcp_answers
        .iter()
        .map(|a| (a, &lab.tcp, TCP_PORT, BACKEND_TCP_PORT, PROTO_TCP))
        .chain(
            udp_answers
                .iter()
                .map(|a| (a, &lab.udp, UDP_PORT, BACKEND_UDP_PORT, PROTO_UDP)),
        );
    for ((port, name), service, vip_port, backend_port, proto) in flows {
        let backend = backend_host(name);
        let forward = flow_key((CLIENT, *port), (VIP, vip_port), proto);
        let entry = conntrack
            .get(&forward)
            .unwrap()
            .unwrap_or_else(|| panic!("no entry for {forward:?}"));
        assert_eq!(entry.direction, flow_direction::FORWARD);
        assert_eq!(entry.service_id, service.id);
        assert_eq!(
            entry.backend_id,
            Lab::backend_id(service, name),
            "flow from port {port} answered by {name}"
        );
        let reply = flow_key((backend.addr, backend_port), (CLIENT, *port), proto);
        let entry = conntrack
            .get(&reply)
            .unwrap()
            .unwrap_or_else(|| panic!("no reply entry for {reply:?}"));
        assert_eq!(entry.direction, flow_direction::REPLY);
        assert_eq!(entry.nat_addr, ipv4_addr(VIP.octets()));
        assert_eq!(u16::from_be(entry.nat_port_be), vip_port);
        assert_eq!(entry.backend_id, Lab::backend_id(service, name));
    }
}

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
