//! The fleet lab: a client behind an upstream router that spreads the
//! VIP's flows over the edge hosts by ECMP (BIRD: BGP with BFD, L4 hash),
//! each edge host running the agent (with `[routing]`) and a BIRD of its
//! own, and backends with a link to every edge host.
//!
//! ```text
//! client ── router ─┬─ edge0 ─┬─ backend0
//!                   └─ edge1 ─┴─ backend1   (every backend linked to every edge)
//! ```
//!
//! Addresses: client 192.0.2.2/24, router 192.0.2.1; router–edge i
//! 198.18.(i+1).0/30 (router .1, edge .2); edge i–backend k
//! 198.19.(i+1).(4k)/30 (edge .1, backend .2); backend k serves on
//! 198.51.100.(16k+2)/32 (its loopback), the VIP is 203.0.113.10. Backends
//! run BIRD too: they learn the clients' network from every edge host (BGP
//! with BFD) as one multipath route, so an edge host that dies, loudly or
//! silently, takes no replies either. Everything is torn down in `Drop`:
//! agents, daemons, pins, namespaces.

pub mod bird;
mod edge;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use failover::lab::{bird::Bird, netns::veth, servers::BackendServer};

pub use self::edge::Edge;
use crate::netns::NetNs;

pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const SERVICE_PORT: u16 = 80;
pub const BACKEND_PORT: u16 = 8080;
pub const BACKEND_UDP_PORT: u16 = 5353;
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const ROUTER_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const EDGES: usize = 2;
pub const BACKENDS: usize = 2;
/// How long the lab gives BGP, BFD and the first announcements.
const CONVERGE: Duration = Duration::from_secs(30);

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// Backend `k`'s service address.
pub const fn backend_addr(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 16 * k as u8 + 2)
}

/// The router's address towards edge `i`, and edge `i`'s.
pub const fn router_link(i: usize) -> (Ipv4Addr, Ipv4Addr) {
    let net = i as u8 + 1;
    (
        Ipv4Addr::new(198, 18, net, 1),
        Ipv4Addr::new(198, 18, net, 2),
    )
}

/// Edge `i`'s address towards backend `k`, and the backend's.
pub const fn backend_link(i: usize, k: usize) -> (Ipv4Addr, Ipv4Addr) {
    let (net, base) = (i as u8 + 1, 4 * k as u8);
    (
        Ipv4Addr::new(198, 19, net, base + 1),
        Ipv4Addr::new(198, 19, net, base + 2),
    )
}

/// The next hops of `prefix`'s route in `ns` (one, or each of a multipath
/// route).
fn nexthops(ns: &NetNs, prefix: &str) -> Vec<Ipv4Addr> {
    let output = std::process::Command::new("ip")
        .args(["-n", ns.name(), "-4", "route", "show", prefix])
        .output()
        .expect("ip route show");
    let text = String::from_utf8_lossy(&output.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "via")
        .filter_map(|w| w[1].parse().ok())
        .collect()
}

/// Loads an nftables ruleset in `ns`.
fn nft(ns: &NetNs, ruleset: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .expect("nft's stdin")
        .write_all(ruleset.as_bytes())
        .expect("write the ruleset");
    let status = child.wait().expect("wait for nft");
    assert!(status.success(), "nft in {}: {ruleset}", ns.name());
}

/// Edge host `i`'s routes: the client's network through the router, each
/// backend through its link (`replace`: a link that went down took them).
fn edge_routes(edge: &NetNs, i: usize) {
    let (router_addr, _) = router_link(i);
    edge.ip(&[
        "route",
        "replace",
        "192.0.2.0/24",
        "via",
        &router_addr.to_string(),
    ]);
    for k in 0..BACKENDS {
        let (_, backend_side) = backend_link(i, k);
        edge.ip(&[
            "route",
            "replace",
            &format!("{}/32", backend_addr(k)),
            "via",
            &backend_side.to_string(),
        ]);
    }
}

/// Field order is drop order: the agents and daemons stop before the
/// namespaces go.
pub struct FleetLab {
    pub edges: Vec<Edge>,
    pub router_bird: Bird,
    backend_birds: Vec<Bird>,
    _servers: Vec<BackendServer>,
    pub client: NetNs,
    pub router: NetNs,
    pub backends: Vec<NetNs>,
    dir: PathBuf,
}

impl FleetLab {
    /// Builds the lab and starts everything; returns once the router
    /// spreads the VIP over every edge host.
    pub fn start() -> Self {
        crate::require_root();
        let dir = std::env::temp_dir().join(format!(
            "fo-fleet-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the fleet lab's directory");
        let client = NetNs::new("flclient");
        let router = NetNs::new("flrouter");
        let edge_ns: Vec<NetNs> = (0..EDGES).map(|_| NetNs::new("fledge")).collect();
        let backends: Vec<NetNs> = (0..BACKENDS).map(|_| NetNs::new("flbackend")).collect();

        veth((&client, "eth0"), (&router, "c0"));
        client.ip(&["addr", "add", &format!("{CLIENT_ADDR}/24"), "dev", "eth0"]);
        client.ip(&[
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            &ROUTER_CLIENT_ADDR.to_string(),
        ]);
        router.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_CLIENT_ADDR}/24"),
            "dev",
            "c0",
        ]);
        router.sysctl("net/ipv4/ip_forward", "1");
        router.sysctl("net/ipv4/fib_multipath_hash_policy", "1");
        for (i, edge) in edge_ns.iter().enumerate() {
            let (router_addr, edge_addr) = router_link(i);
            let router_if = format!("e{i}");
            veth((edge, "up0"), (&router, &router_if));
            edge.ip(&["addr", "add", &format!("{edge_addr}/30"), "dev", "up0"]);
            router.ip(&[
                "addr",
                "add",
                &format!("{router_addr}/30"),
                "dev",
                &router_if,
            ]);
            // Redirected replies arrive there: NAPI for them.
            router.enable_gro(&router_if);
            edge.sysctl("net/ipv4/ip_forward", "1");
        }
        for (k, backend) in backends.iter().enumerate() {
            backend.ip(&[
                "addr",
                "add",
                &format!("{}/32", backend_addr(k)),
                "dev",
                "lo",
            ]);
            backend.sysctl("net/ipv4/conf/all/ignore_routes_with_linkdown", "1");
            backend.sysctl("net/ipv4/fib_multipath_hash_policy", "1");
            for (i, edge) in edge_ns.iter().enumerate() {
                let (edge_addr, backend_side) = backend_link(i, k);
                let (edge_if, backend_if) = (format!("bk{k}"), format!("e{i}"));
                veth((edge, &edge_if), (backend, &backend_if));
                edge.ip(&["addr", "add", &format!("{edge_addr}/30"), "dev", &edge_if]);
                backend.ip(&[
                    "addr",
                    "add",
                    &format!("{backend_side}/30"),
                    "dev",
                    &backend_if,
                ]);
                backend.enable_gro(&backend_if);
            }
        }
        for (i, edge) in edge_ns.iter().enumerate() {
            edge_routes(edge, i);
        }
        let servers = backends
            .iter()
            .enumerate()
            .map(|(k, ns)| {
                BackendServer::start(ns, &format!("backend{k}"), BACKEND_PORT, BACKEND_UDP_PORT)
            })
            .collect();

        let edge_addrs: Vec<Ipv4Addr> = (0..EDGES).map(|i| router_link(i).1).collect();
        let router_bird = Bird::start(
            &router,
            &dir,
            "router",
            &bird::router(ROUTER_CLIENT_ADDR, &edge_addrs),
        )
        .expect("start the router's BIRD");
        let backend_birds = backends
            .iter()
            .enumerate()
            .map(|(k, ns)| {
                let edges: Vec<Ipv4Addr> = (0..EDGES).map(|i| backend_link(i, k).0).collect();
                let id = backend_link(0, k).1;
                Bird::start(ns, &dir, &format!("backend{k}"), &bird::backend(id, &edges))
                    .unwrap_or_else(|e| panic!("start backend {k}'s BIRD: {e}"))
            })
            .collect();
        let edges = edge_ns
            .into_iter()
            .enumerate()
            .map(|(i, ns)| Edge::start(ns, i, &dir))
            .collect();
        let lab = Self {
            edges,
            router_bird,
            backend_birds,
            _servers: servers,
            client,
            router,
            backends,
            dir,
        };
        let waited = lab.wait_nexthops(EDGES, CONVERGE);
        assert!(
            waited.is_some(),
            "the router never spread the VIP over {EDGES} edge hosts within {CONVERGE:?}\n{}",
            lab.diag()
        );
        for k in 0..BACKENDS {
            let waited = lab.wait_return_paths(k, EDGES, CONVERGE);
            assert!(
                waited.is_some(),
                "backend {k} never learned its way back over {EDGES} edge hosts within {CONVERGE:?}\n{}",
                lab.diag()
            );
        }
        lab
    }

    /// The edge hosts (their addresses on its links) backend `k` sends its
    /// replies through.
    pub fn return_paths(&self, k: usize) -> Vec<Ipv4Addr> {
        nexthops(&self.backends[k], "192.0.2.0/24")
    }

    /// Waits (bounded) until backend `k` replies through `want` edge hosts.
    pub fn wait_return_paths(&self, k: usize, want: usize, bound: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < bound {
            if self.return_paths(k).len() == want {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Edge host `i` silent, as a host that died without its links going
    /// down: nothing reaches it or leaves it on any link (nftables on the
    /// router's and the backends' side), so only BFD tells.
    pub fn host_silent(&self, i: usize) {
        let ruleset = |device: &str| {
            format!(
                "table netdev fo_silent {{\n\
                 chain in {{ type filter hook ingress device \"{device}\" priority 0; policy drop; }}\n\
                 chain out {{ type filter hook egress device \"{device}\" priority 0; policy drop; }}\n}}\n"
            )
        };
        nft(&self.router, &ruleset(&format!("e{i}")));
        for backend in &self.backends {
            nft(backend, &ruleset(&format!("e{i}")));
        }
    }

    /// Edge host `i` heard again.
    pub fn host_heard(&self, i: usize) {
        let _ = i;
        for ns in std::iter::once(&self.router).chain(&self.backends) {
            nft(ns, "delete table netdev fo_silent\n");
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The edge hosts (their addresses) the router sends the VIP's flows to.
    pub fn router_nexthops(&self) -> Vec<Ipv4Addr> {
        nexthops(&self.router, &format!("{VIP}/32"))
    }

    /// Waits (bounded) until the router has `want` next hops for the VIP;
    /// how long that took.
    pub fn wait_nexthops(&self, want: usize, bound: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < bound {
            if self.router_nexthops().len() == want {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Edge host `i` gone: its agent killed (SIGKILL) and every link down.
    pub fn host_down(&mut self, i: usize) {
        self.edges[i].kill_agent();
        for interface in self.edges[i].links() {
            self.edges[i].ns.ip(&["link", "set", &interface, "down"]);
        }
    }

    /// Edge host `i` back: its links up (and the routes they took with
    /// them) and its agent started.
    pub fn host_up(&mut self, i: usize) {
        for interface in self.edges[i].links() {
            self.edges[i].ns.ip(&["link", "set", &interface, "up"]);
        }
        edge_routes(&self.edges[i].ns, i);
        self.edges[i].start_agent();
    }

    /// Edge host `i`'s links to the backends down (it reaches none), or up
    /// again with their routes.
    pub fn backend_links(&self, i: usize, up: bool) {
        let edge = &self.edges[i];
        for link in edge.links().iter().skip(1) {
            edge.ns
                .ip(&["link", "set", link, if up { "up" } else { "down" }]);
        }
        if up {
            edge_routes(&edge.ns, i);
        }
    }

    /// Everything a failure message needs: routes, sessions, logs.
    pub fn diag(&self) -> String {
        let mut out = format!("router's route to the VIP: {:?}\n", self.router_nexthops());
        out += &self
            .router_bird
            .birdc(&["show", "protocols"])
            .unwrap_or_else(|e| e.to_string());
        for (k, bird) in self.backend_birds.iter().enumerate() {
            out += &format!(
                "\nbackend {k} replies through {:?}\n{}",
                self.return_paths(k),
                bird.birdc(&["show", "protocols"])
                    .unwrap_or_else(|e| e.to_string())
            );
        }
        for (i, edge) in self.edges.iter().enumerate() {
            out += &format!("\n---- edge {i} ----\n{}", edge.diag());
        }
        out
    }
}
