//! The fleet lab: the fleet topology (`failover::lab::fleet`) with BIRD on
//! the router, every edge host and every backend, the agent (with
//! `[routing]`) on each edge host, and backend servers. Everything is torn
//! down in `Drop`: agents, daemons, pins, namespaces.

mod edge;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub use failover::lab::fleet::{
    BACKEND_PORT, BACKEND_UDP_PORT, BACKENDS, CLIENT_ADDR, EDGES, SERVICE_PORT, VIP, backend_addr,
    backend_link, bird, router_link,
};
use failover::lab::{
    bird::Bird,
    fleet::{self, FleetNet, ROUTER_CLIENT_ADDR},
    servers::BackendServer,
};

pub use self::edge::{Edge, SEEN_FLOWS_FILTER};
use crate::netns::NetNs;

/// How long the lab gives BGP, BFD and the first announcements.
const CONVERGE: Duration = Duration::from_secs(30);

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

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
        let FleetNet {
            client,
            router,
            edges: edge_ns,
            backends,
        } = FleetNet::build("fl");
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
        fleet::nexthops(&self.backends[k], "192.0.2.0/24")
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
    /// down: only BFD tells (`fleet::silence`).
    pub fn host_silent(&self, i: usize) {
        fleet::silence(&self.router, &self.backends, i).expect("silence the host");
    }

    /// Edge host `i` heard again.
    pub fn host_heard(&self, i: usize) {
        let _ = i;
        fleet::hear(&self.router, &self.backends).expect("hear the host again");
    }

    /// Where the lab's configurations and logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The edge hosts (their addresses) the router sends the VIP's flows to.
    pub fn router_nexthops(&self) -> Vec<Ipv4Addr> {
        fleet::nexthops(&self.router, &format!("{VIP}/32"))
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
        fleet::set_edge_links(&self.edges[i].ns, i, &fleet::edge_links(), false);
    }

    /// Edge host `i` back: its links up (and the routes they took with
    /// them) and its agent started.
    pub fn host_up(&mut self, i: usize) {
        fleet::set_edge_links(&self.edges[i].ns, i, &fleet::edge_links(), true);
        self.edges[i].start_agent();
    }

    /// Edge host `i`'s links to the backends down (it reaches none), or up
    /// again with their routes.
    pub fn backend_links(&self, i: usize, up: bool) {
        let links = &fleet::edge_links()[1..];
        fleet::set_edge_links(&self.edges[i].ns, i, links, up);
    }

    /// Backend `name`'s maintenance on every edge host (`failover
    /// maintenance`).
    pub fn maintenance(&self, backend: &str, on: bool) {
        for edge in &self.edges {
            let output = edge.failover(&[
                "maintenance",
                &format!("web/{backend}"),
                if on { "on" } else { "off" },
            ]);
            assert!(
                output.status.success(),
                "maintenance {backend} {on}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// Each edge host's `[sync]` view (its status).
    pub fn sync_views(&self) -> Vec<failover::flow_sync::SyncView> {
        self.edges
            .iter()
            .map(|edge| edge.status().sync.expect("[sync] is configured"))
            .collect()
    }

    /// Waits (bounded by `bound`) until some flows are pinned off the table
    /// and every edge host learned at least what the others pinned; the
    /// views at the end.
    pub fn wait_pinned_shared(&self, bound: Duration) -> Vec<failover::flow_sync::SyncView> {
        let started = Instant::now();
        let first = self.sync_views();
        loop {
            let views = self.sync_views();
            // Two rounds of every host since the call: each counted what
            // changed before it, and the others heard that.
            let fresh = views
                .iter()
                .zip(&first)
                .all(|(now, then)| now.rounds_total >= then.rounds_total + 2);
            let pinned: u64 = views.iter().map(|v| v.pinned_flows).sum();
            let shared = views.iter().enumerate().all(|(i, v)| {
                let others: u64 = views
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, o)| o.pinned_flows)
                    .sum();
                v.received.get("learned").copied().unwrap_or(0)
                    + v.received.get("refreshed").copied().unwrap_or(0)
                    >= others
            });
            if (fresh && pinned > 0 && shared) || started.elapsed() > bound {
                return views;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes `count` flows seen on edge 0 (`Edge::write_seen_flows`, on
    /// backend1: about half pinned off the table), waits (bounded) until
    /// edge 0's rounds count them and edge 1 holds a copy of every one it
    /// pinned. The pinned ones, and when edge 1 held them all (after the
    /// write; `None`: never, or too few were pinned).
    pub fn big_round(&self, count: u32, bound: Duration) -> (u64, Option<Duration>) {
        self.edges[0].write_seen_flows(count, 1);
        let written = Instant::now();
        while self.edges[0].status().sync.map_or(0, |v| v.pinned_flows) < u64::from(count) / 4
            && written.elapsed() < bound
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let filter = ["--filter", SEEN_FLOWS_FILTER];
        let pinned = self.edges[0]
            .flow_rows(&["--pinned", filter[0], filter[1]])
            .len() as u64;
        if pinned < u64::from(count) / 4 {
            return (pinned, None);
        }
        while written.elapsed() < bound {
            // Edge 1 never saw these: every row is a copy.
            if self.edges[1].flow_rows(&filter).len() as u64 >= pinned {
                return (pinned, Some(written.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (pinned, None)
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
