//! The lab: client, edge host and two backends, the services on the VIP,
//! and the client's side of TCP and UDP through it.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    sync::Mutex,
    time::Duration,
};

use crate::{
    netns::NetNs,
    pins::PinDir,
    servers::{BackendServer, ask},
};
use aya::programs::{Xdp, XdpMode};
use failover::{
    AttachMode, BackendSpec, Dataplane, Proto, ServiceSpec,
    dataplane::ServiceEntry,
    lab::topology::{self, BackendLink, PEER_IF, Topology},
};
use failover_common::{
    Counter, TrafficStats,
    stats::{VERDICT_NAMES, reason},
};

pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const CLIENT: Ipv4Addr = topology::CLIENT_ADDR;

pub const TCP_PORT: u16 = 80;
pub const BACKEND_TCP_PORT: u16 = 8080;
pub const UDP_PORT: u16 = 53;
pub const BACKEND_UDP_PORT: u16 = 5353;

/// Connect, read and write timeout of every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// One backend host of the lab.
pub struct BackendHost {
    pub name: &'static str,
    pub addr: Ipv4Addr,
    /// The edge host's interface towards it.
    pub lb_side: &'static str,
}

pub const BACKENDS: [BackendHost; 2] = [
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

pub fn backend_host(name: &str) -> &'static BackendHost {
    BACKENDS
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("unknown backend {name:?}"))
}

pub fn other_backend(name: &str) -> &'static str {
    BACKENDS
        .iter()
        .find(|b| b.name != name)
        .expect("two backends")
        .name
}

/// Field order is drop order: servers (threads joined) first, then the data
/// path (links detached), then the pins, then the namespaces.
pub struct Lab {
    servers: Vec<BackendServer>,
    pub dp: Dataplane,
    _pins: PinDir,
    client: NetNs,
    _lb: NetNs,
    _backend_ns: Vec<NetNs>,
    pub tcp: ServiceEntry,
    pub udp: ServiceEntry,
    /// The TCP service again on [`topology::VIP6`] (dual-stack labs).
    pub tcp6: Option<ServiceEntry>,
    /// A handle on every client UDP socket, so no two sockets of a lab ever
    /// share a source port: a new socket is always a new flow (a reused port
    /// would follow the conntrack entry of the earlier socket).
    udp_ports_held: Mutex<Vec<UdpSocket>>,
}

impl Lab {
    /// Native XDP, peers set up for it (a pass program), senders without
    /// transmit checksum offload.
    #[expect(
        clippy::new_without_default,
        reason = "a lab makes namespaces and links: no default value"
    )]
    pub fn new() -> Self {
        Self::with_mode(AttachMode::Native)
    }

    /// XDP in `mode`; in skb mode on veth links as `ip link add` leaves
    /// them (nothing on the peers, transmit checksum offload on).
    pub fn with_mode(mode: AttachMode) -> Self {
        Self::build(mode, failover_common::DEFAULT_MAX_FLOWS, None, false)
    }

    /// Native XDP with a flow table of `max_flows` entries.
    pub fn with_max_flows(max_flows: u32) -> Self {
        Self::build(AttachMode::Native, max_flows, None, false)
    }

    /// Native XDP, IPv6 on as well, the TCP service also on the IPv6 VIP
    /// (`tcp6`, the backends at their IPv6 addresses).
    pub fn dual_stack() -> Self {
        Self::build(
            AttachMode::Native,
            failover_common::DEFAULT_MAX_FLOWS,
            None,
            true,
        )
    }

    /// Native XDP, with `door` (loaded, not attached) instead of the pass
    /// program on the backends' side of their links: a flood's filter.
    pub fn with_backend_door(door: &mut Xdp) -> Self {
        Self::build(
            AttachMode::Native,
            failover_common::DEFAULT_MAX_FLOWS,
            Some(door),
            false,
        )
    }

    fn build(mode: AttachMode, max_flows: u32, door: Option<&mut Xdp>, ipv6: bool) -> Self {
        crate::require_root();
        let links = BACKENDS.map(|host| BackendLink {
            role: "fwd-backend",
            lb_if: host.lb_side,
        });
        let net = Topology::build("fwd-client", "fwd-lb", &links);
        if ipv6 {
            net.add_ipv6();
        }
        let plain = mode == AttachMode::Skb;
        if plain {
            for ns in net.namespaces() {
                for interface in ns.interfaces() {
                    ns.enable_tx_checksum(&interface);
                }
            }
        }

        let pins = PinDir::new();
        let mut dp = Dataplane::load_with(pins.path(), max_flows).expect("load the data path");
        net.lb.run(|| {
            for interface in ["lbc", "lbb1", "lbb2"] {
                let used = dp.attach(interface, mode);
                assert_eq!(used.expect("attach the forwarder"), mode, "{interface}");
            }
        });
        match (plain, door) {
            (true, _) => {}
            (false, None) => net
                .attach_pass_on_peers(&mut dp)
                .expect("attach the pass program"),
            (false, Some(door)) => {
                net.client
                    .run(|| dp.attach_pass(PEER_IF, AttachMode::Native))
                    .expect("attach the pass program on the client");
                for ns in &net.backends {
                    ns.run(|| door.attach(PEER_IF, XdpMode::Driver))
                        .expect("attach the door on a backend");
                }
            }
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
        let tcp6 = ipv6.then(|| {
            let backends: Vec<BackendSpec> = (0..BACKENDS.len())
                .map(|i| BackendSpec::new(topology::backend_addr6(i)).port(BACKEND_TCP_PORT))
                .collect();
            dp.add_service(
                ServiceSpec::new(topology::VIP6, TCP_PORT, Proto::Tcp),
                &backends,
            )
            .expect("add the ipv6 tcp service")
        });

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
            ..
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
            tcp6,
            udp_ports_held: Mutex::new(Vec::new()),
        }
    }

    /// Makes the TCP service active-passive: the first backend in tier 0,
    /// the second in tier 1 (the service is added again, with new ids).
    pub fn make_tcp_active_passive(&mut self) {
        self.dp
            .remove_service(self.tcp.id)
            .expect("remove the tcp service");
        self.tcp = self
            .dp
            .add_service(
                ServiceSpec::new(VIP, TCP_PORT, Proto::Tcp),
                &[
                    BackendSpec::new(BACKENDS[0].addr).port(BACKEND_TCP_PORT),
                    BackendSpec::new(BACKENDS[1].addr)
                        .port(BACKEND_TCP_PORT)
                        .tier(1),
                ],
            )
            .expect("add the tcp service with tiers");
    }

    /// Adds a TCP service on the VIP's `port`, served by both backends on
    /// `backend_port` (a service's backend endpoints are its own).
    pub fn add_tcp_service(&mut self, port: u16, backend_port: u16) -> ServiceEntry {
        let servers = std::mem::take(&mut self.servers);
        self.servers = servers
            .into_iter()
            .zip(&self._backend_ns)
            .map(|(server, ns)| server.also_on(ns, backend_port))
            .collect();
        self.dp
            .add_service(
                ServiceSpec::new(VIP, port, Proto::Tcp),
                &BACKENDS.map(|b| BackendSpec::new(b.addr).port(backend_port)),
            )
            .expect("add a tcp service")
    }

    /// The edge host's namespace.
    pub fn lb(&self) -> &NetNs {
        &self._lb
    }

    /// The client's namespace.
    pub fn client(&self) -> &NetNs {
        &self.client
    }

    /// The client's interface towards the edge host.
    pub fn client_ifindex(&self) -> u32 {
        self.client.ifindex(PEER_IF)
    }

    /// Runs `f` in the edge host's namespace (BPF_PROG_TEST_RUN of its
    /// program resolves routes and interfaces there).
    pub fn in_lb<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self._lb.run(f)
    }

    /// The edge host's interface towards the client.
    pub fn client_side_ifindex(&self) -> u32 {
        self._lb.ifindex("lbc")
    }

    /// A TCP connection to the VIP from the client namespace.
    pub fn connect(&self) -> TcpStream {
        self.connect_to(TCP_PORT)
    }

    /// A TCP connection to the IPv6 VIP from the client namespace.
    pub fn connect6(&self) -> TcpStream {
        let target = SocketAddr::new(topology::VIP6.into(), TCP_PORT);
        self.client
            .run(|| configured(TcpStream::connect_timeout(&target, IO_TIMEOUT)?))
            .unwrap_or_else(|e| {
                panic!(
                    "connect to the ipv6 vip: {e}
{}",
                    self.diag()
                )
            })
    }

    /// A TCP connection to the VIP's `port` from the client namespace.
    pub fn connect_to(&self, port: u16) -> TcpStream {
        self.client
            .run(|| connect_vip(port))
            .unwrap_or_else(|e| panic!("connect to the vip: {e}\n{}", self.diag()))
    }

    /// One short connection to the VIP's `port` (one request): the local
    /// port and the answering backend, or why it failed.
    pub fn try_short_request(&self, port: u16) -> std::io::Result<(u16, String)> {
        self.client.run(|| short_request(port))
    }

    /// `n` short connections from the client, one request each.
    pub fn short_requests(&self, n: usize) -> Vec<(u16, String)> {
        let results = self
            .client
            .run(|| (0..n).map(|_| short_request(TCP_PORT)).collect::<Vec<_>>());
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
    pub fn udp_socket(&self) -> UdpSocket {
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

    /// `queries` UDP queries to the VIP from the client's source `port` (a
    /// socket bound there for them and closed after): each port a flow of
    /// its own. Returns the last answer.
    pub fn udp_queries_from(&self, port: u16, queries: usize) -> std::io::Result<String> {
        let socket = self.client.run(|| {
            let socket = UdpSocket::bind((CLIENT, port))?;
            socket.set_read_timeout(Some(IO_TIMEOUT))?;
            socket.set_write_timeout(Some(IO_TIMEOUT))?;
            Ok::<_, std::io::Error>(socket)
        })?;
        let mut answer = String::new();
        for _ in 0..queries {
            answer = self.udp_query(&socket)?;
        }
        Ok(answer)
    }

    /// `n` UDP queries to the VIP, each from a new socket (a new flow).
    pub fn udp_queries(&self, n: usize) -> Vec<(u16, String)> {
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
    pub fn udp_query(&self, socket: &UdpSocket) -> std::io::Result<String> {
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

    pub fn backend_id(service: &ServiceEntry, name: &str) -> u32 {
        let addr = backend_host(name).addr;
        *service
            .backends
            .iter()
            .find(|(_, spec)| spec.addr == addr)
            .expect("backend of the service")
            .0
    }

    pub fn server(&self, name: &str) -> &BackendServer {
        self.servers
            .iter()
            .find(|s| s.name() == name)
            .expect("server")
    }

    pub fn reasons(&self) -> Vec<Counter> {
        self.dp.counters().reasons().expect("read reasons")
    }

    pub fn reason(&self, index: u32) -> u64 {
        self.reasons()[index as usize].packets
    }

    pub fn verdicts(&self) -> Vec<Counter> {
        self.dp.counters().verdicts().expect("read verdicts")
    }

    pub fn traffic(&self, backend_id: u32) -> TrafficStats {
        self.dp
            .counters()
            .backend(backend_id)
            .expect("read backend counters")
    }

    /// Non-zero data-path counters by name, for failure messages.
    pub fn diag(&self) -> String {
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
            "data path: reasons [{}], verdicts [{}], flow entries {}",
            reasons.join(" "),
            verdicts.join(" "),
            self.dp.flows().entries().len()
        )
    }
}

fn connect_vip(port: u16) -> std::io::Result<TcpStream> {
    configured(TcpStream::connect_timeout(
        &SocketAddr::from((VIP, port)),
        IO_TIMEOUT,
    )?)
}

/// The lab's client socket options: bounded reads and writes, no delay.
fn configured(stream: TcpStream) -> std::io::Result<TcpStream> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects, checks the peer is the VIP, asks once; returns (local port,
/// answering backend).
fn short_request(port: u16) -> std::io::Result<(u16, String)> {
    let mut stream = connect_vip(port)?;
    let peer = stream.peer_addr()?;
    if peer != SocketAddr::from((VIP, port)) {
        return Err(std::io::Error::other(format!(
            "connected to {peer}, not the vip"
        )));
    }
    let port = stream.local_addr()?.port();
    Ok((port, ask(&mut stream)?))
}

fn dedup(errors: &[String]) -> BTreeSet<&String> {
    errors.iter().collect()
}
