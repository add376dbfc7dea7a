//! One edge host of the fleet lab: its namespace, its BIRD, and the agent
//! with `[routing]`, its pins and files under the lab's directory.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use failover::lab::{agent::AgentProcess, bird::Bird};

use super::{
    BACKEND_PORT, BACKENDS, SERVICE_PORT, VIP, backend_addr, backend_link, bird, router_link,
};
use crate::{
    config::{
        BackendToml, ConfigToml, InterfaceToml, ProbeToml, RoutingToml, ServiceToml, SyncToml,
    },
    netns::NetNs,
    pins::PinDir,
};

/// Edge host `i`'s BIRD, on the lab's configuration.
fn start_bird(ns: &NetNs, dir: &Path, i: usize) -> Bird {
    let (router_addr, edge_addr) = router_link(i);
    let backends: Vec<_> = (0..BACKENDS).map(|k| backend_link(i, k).1).collect();
    Bird::start(
        ns,
        dir,
        "bird",
        &bird::edge(edge_addr, router_addr, &backends),
    )
    .unwrap_or_else(|e| panic!("start edge {i}'s BIRD: {e}"))
}

/// What the clients of [`Edge::write_seen_flows`] start with (for
/// `inspect flows --filter`): 198.18.200.0/22.
pub const SEEN_FLOWS_FILTER: &str = "198.18.20";

/// How long an agent gets to open its control socket.
const AGENT_START: Duration = Duration::from_secs(15);

/// Field order is drop order: the agent stops (and its device goes) before
/// BIRD, its pins and its namespace.
pub struct Edge {
    agent: Option<AgentProcess>,
    pub bird: Bird,
    pins: PinDir,
    pub ns: NetNs,
    dir: PathBuf,
    index: usize,
}

impl Edge {
    /// Edge host `i`: its BIRD, then its agent.
    pub(super) fn start(ns: NetNs, i: usize, lab_dir: &Path) -> Self {
        let dir = lab_dir.join(format!("edge{i}"));
        std::fs::create_dir_all(&dir).expect("create the edge host's directory");
        let bird = start_bird(&ns, &dir, i);
        let pins = PinDir::new();
        let mut edge = Self {
            agent: None,
            bird,
            pins,
            ns,
            dir,
            index: i,
        };
        edge.config().write(&edge.dir.join("failover.toml"));
        edge.start_agent();
        edge
    }

    /// The agent's configuration: every edge host has the same services.
    fn config(&self) -> ConfigToml {
        let probe = ProbeToml::tcp()
            .port(BACKEND_PORT)
            .interval(Duration::from_millis(100))
            .timeout(Duration::from_millis(50));
        let mut web = ServiceToml::tcp("web", VIP, SERVICE_PORT).probe(probe);
        for k in 0..BACKENDS {
            web = web.backend(
                BackendToml::new(format!("backend{k}"), backend_addr(k)).port(BACKEND_PORT),
            );
        }
        let mut config = ConfigToml::new()
            .pin_dir(self.pins.path())
            .control_socket(self.socket())
            .journal(self.journal())
            .routing(RoutingToml {
                table: Some(bird::TABLE),
                drain_file: Some(self.dir.join("host-drained")),
                ..RoutingToml::default()
            })
            .sync(SyncToml {
                listen: failover::lab::fleet::sync_addr(self.index),
                peers: failover::lab::fleet::sync_peers(self.index),
                interval: None,
            })
            .service(web);
        for interface in self.links() {
            config.interfaces.push(InterfaceToml::new(interface));
        }
        config
    }

    /// Rewrites the agent's configuration with `change` (apply it with
    /// `failover reload`).
    pub fn rewrite_config(&self, change: impl FnOnce(ConfigToml) -> ConfigToml) {
        change(self.config()).write(&self.dir.join("failover.toml"));
    }

    /// The edge host's links: to the router, then to each backend.
    pub fn links(&self) -> Vec<String> {
        failover::lab::fleet::edge_links()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// Starts the agent; returns once its control socket answers.
    pub fn start_agent(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let agent = AgentProcess::start(
            &self.ns,
            &crate::failover_bin(),
            &self.dir.join("failover.toml"),
            &self.dir.join("agent.pid"),
            &self.log(),
        )
        .expect("start the agent");
        self.agent = Some(agent);
        let started = Instant::now();
        while !self.socket().exists() {
            assert!(
                started.elapsed() < AGENT_START,
                "the agent did not start within {AGENT_START:?}:\n{}",
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The routing daemon restarted: stopped (SIGTERM: it closes its
    /// sessions), then started on the same configuration.
    pub fn restart_bird(&mut self) {
        self.bird.stop();
        self.bird = start_bird(&self.ns, &self.dir, self.index);
    }

    /// SIGKILL: the agent is gone at once, its device and routes with it.
    pub fn kill_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.sigkill();
        }
    }

    /// Where this edge host's agent pins its maps.
    pub fn pin_dir(&self) -> &Path {
        self.pins.path()
    }

    /// Writes `count` flows into the flow table as if this host had seen
    /// them now (clients in 198.18.200.0/22, see [`SEEN_FLOWS_FILTER`], to
    /// the VIP), all
    /// on backend `k`: those the table gives another backend are pinned.
    pub fn write_seen_flows(&self, count: u32, k: usize) {
        use failover::dataplane::{
            flow_maps::Flows,
            maps::{Backends, PinDir as Pins},
        };
        use failover_common::{FAMILY_IPV4, Flow, FlowKey, PROTO_TCP, flow_state, ipv4_addr};

        assert!(count <= 1 << 18, "198.18.200.0/22 × 256 ports");
        let pins = self.pins.path();
        let backends = Backends::open(&mut Pins(pins)).expect("open the backends");
        let addr = ipv4_addr(backend_addr(k).octets());
        let (id, backend) = backends
            .in_use()
            .expect("read the backends")
            .into_iter()
            .find(|(_, b)| b.addr == addr)
            .expect("the backend is configured");
        let mut flows = Flows::open(&mut Pins(pins)).expect("open the flow table");
        let now = failover::dataplane::now_ns();
        for i in 0..count {
            let client = [198, 18, 200 + (i >> 16) as u8, (i >> 8) as u8];
            let key = FlowKey::new(
                FAMILY_IPV4,
                ipv4_addr(client),
                ipv4_addr(VIP.octets()),
                (1024 + (i & 0xff) as u16).to_be(),
                SERVICE_PORT.to_be(),
                PROTO_TCP,
            );
            let flow = Flow {
                backend_id: id,
                service_id: backend.service_id,
                backend_generation: backend.generation,
                state: flow_state::OPEN,
                last_seen_ns: now,
                expires_ns: now + 600_000_000_000,
                ..Flow::default()
            };
            flows.put(&key, &flow, false).expect("write a flow");
        }
    }

    /// Everything the stopped agent left pinned removed (its flow table,
    /// links, saved state), as on a host that rebooted.
    pub fn forget_pins(&self) {
        assert!(self.agent.is_none(), "the agent still runs");
        failover::dataplane::remove_pins(self.pins.path()).expect("remove the pins");
    }

    /// SIGTERM (a clean stop).
    pub fn stop_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.stop();
        }
    }

    /// `failover <args>` against this edge host's agent.
    pub fn failover(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(crate::failover_bin())
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run failover")
    }

    pub fn status(&self) -> crate::status::StatusAnswer {
        let output = self.failover(&["status", "--json"]);
        let text = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "status: {e}: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    /// The client ports of the flows this edge host has pinned off the
    /// table now (`failover inspect flows --pinned`: what `[sync]` sends).
    pub fn pinned_client_ports(&self) -> std::collections::BTreeSet<u16> {
        self.flow_rows(&["--pinned"])
            .iter()
            .filter_map(|row| row["src"].as_str()?.rsplit(':').next()?.parse().ok())
            .collect()
    }

    /// The flow table's rows (`failover inspect flows` with `args`).
    pub fn flow_rows(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let output = std::process::Command::new(crate::failover_bin())
            .arg("inspect")
            .arg("--pin-dir")
            .arg(self.pins.path())
            .args(["--json", "flows", "--limit", "1000000"])
            .args(args)
            .output()
            .expect("run failover inspect");
        assert!(
            output.status.success(),
            "inspect flows {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("inspect prints JSON")
    }

    /// The routes in the announcement table now (what BIRD learns).
    pub fn announced_routes(&self) -> String {
        let output = std::process::Command::new("ip")
            .args([
                "-n",
                self.ns.name(),
                "route",
                "show",
                "table",
                &bird::TABLE.to_string(),
            ])
            .output()
            .expect("ip route show");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    pub(super) fn diag(&self) -> String {
        format!(
            "BIRD: {}\nannouncement table: {}\nagent log:\n{}",
            self.bird
                .birdc(&["show", "protocols"])
                .unwrap_or_else(|e| e.to_string()),
            self.announced_routes(),
            self.agent_log()
        )
    }
}
