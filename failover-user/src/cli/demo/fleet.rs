//! `failover demo fleet`: no single point of failure, live. Two edge hosts
//! behind a router (BIRD: BGP with BFD, ECMP) each run the agent with
//! `[routing]` and their own BIRD; the backends learn their way back from
//! both. A client keeps long connections and opens new ones while edge
//! host 0 is taken away (its agent killed, its links down) and brought
//! back; the demo shows the routers follow and no connection is lost.
//!
//! Everything is owned by [`Fleet`] and torn down in `Drop`, in order:
//! the client, the agents (SIGTERM, then SIGKILL, reaped), the daemons, the
//! servers, the pins, the namespaces, the working directory.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::signal::interrupted;
use crate::lab::{
    agent::AgentProcess,
    bird::Bird,
    fleet::{
        self, BACKEND_PORT, BACKEND_UDP_PORT, BACKENDS, EDGES, FleetNet, ROUTER_CLIENT_ADDR,
        SERVICE_PORT, VIP, backend_addr, backend_link, bird, router_link,
    },
    load::{self, Load, LongLived, Plan},
    servers::BackendServer,
};

const LONG: usize = 50;
const CONVERGE: Duration = Duration::from_secs(30);
const WITHDRAW: Duration = Duration::from_secs(5);
const PHASE: Duration = Duration::from_secs(3);

/// Everything the fleet demo runs; `Drop` stops it in order.
#[derive(Default)]
struct Fleet {
    load: Option<Load>,
    agents: Vec<Option<AgentProcess>>,
    birds: Vec<Bird>,
    _servers: Vec<BackendServer>,
    pin_dirs: Vec<PathBuf>,
    net: Option<FleetNet>,
    workdir: Option<PathBuf>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        drop(self.load.take());
        for agent in self.agents.iter_mut().filter_map(Option::take) {
            drop(agent);
        }
        self.birds.clear();
        for dir in self.pin_dirs.drain(..) {
            if let Err(err) = crate::dataplane::remove_pins(&dir) {
                println!("  cannot remove pins in {}: {err}", dir.display());
            }
        }
        drop(self.net.take());
        if let Some(dir) = self.workdir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        println!("cleanup: agents, daemons, pins and namespaces removed");
    }
}

fn web() -> SocketAddr {
    SocketAddr::from((VIP, SERVICE_PORT))
}

fn check() -> anyhow::Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Edge host `i`'s agent configuration.
fn config_text(
    i: usize,
    pin_dir: &std::path::Path,
    dir: &std::path::Path,
    probe: Duration,
) -> String {
    let mut text = format!(
        "# written by `failover demo fleet`\npin_dir = \"{}\"\n\n[control]\nsocket = \"{}\"\n\n\
         [metrics]\nlisten = \"\"\n\n[routing]\ndaemon = \"bird\"\ntable = {}\n\
         drain_file = \"{}\"\n",
        pin_dir.display(),
        dir.join(format!("edge{i}.sock")).display(),
        bird::TABLE,
        dir.join(format!("edge{i}-drained")).display(),
    );
    for link in fleet::edge_links() {
        text += &format!("\n[[interfaces]]\nname = \"{link}\"\nmode = \"native\"\n");
    }
    text += &format!(
        "\n[[services]]\nname = \"web\"\nvip = \"{VIP}\"\nport = {SERVICE_PORT}\nprotocol = \"tcp\"\n\n\
         [services.probe]\ntype = \"tcp\"\ninterval = \"{}ms\"\ntimeout = \"{}ms\"\n",
        probe.as_millis(),
        (probe / 2).as_millis().max(1),
    );
    for k in 0..BACKENDS {
        text += &format!(
            "\n[[services.backends]]\nname = \"backend{k}\"\naddress = \"{}\"\nport = {BACKEND_PORT}\n",
            backend_addr(k)
        );
    }
    text
}

fn wait_nexthops(net: &FleetNet, want: usize, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < bound && !interrupted() {
        if fleet::nexthops(&net.router, &format!("{VIP}/32")).len() == want {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn names(addrs: &[Ipv4Addr]) -> String {
    addrs
        .iter()
        .map(|a| match (0..EDGES).find(|&i| router_link(i).1 == *a) {
            Some(i) => format!("edge{i}"),
            None => a.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

/// New connections and long-connection asks since `since`: (made, failed,
/// long connections that broke).
fn tally(load: &Load, since: Instant) -> (usize, usize, usize) {
    let recorded = load.snapshot();
    let new: Vec<_> = recorded
        .new_flows
        .iter()
        .filter(|s| s.started >= since)
        .collect();
    let broken = recorded
        .long
        .iter()
        .filter(|asks| asks.iter().any(|s| s.started >= since && s.result.is_err()))
        .count();
    (
        new.len(),
        new.iter().filter(|s| s.result.is_err()).count(),
        broken,
    )
}

pub(super) fn run(probe: Duration) -> anyhow::Result<()> {
    println!(
        "failover demo fleet: two edge hosts behind a router, one taken away and back (about 40 s)"
    );
    println!();
    let mut fleet = Fleet::default();
    let pid = std::process::id();
    let workdir = std::env::temp_dir().join(format!("failover-demo-{pid}"));
    std::fs::create_dir_all(&workdir).context("creating the demo's directory")?;
    fleet.workdir = Some(workdir.clone());
    println!("setting up: a client, a router, two edge hosts and two backends in namespaces");
    let net = FleetNet::build("demo-fl");
    for (k, ns) in net.backends.iter().enumerate() {
        fleet._servers.push(BackendServer::start(
            ns,
            &format!("backend{k}"),
            BACKEND_PORT,
            BACKEND_UDP_PORT,
        ));
    }
    let edge_addrs: Vec<Ipv4Addr> = (0..EDGES).map(|i| router_link(i).1).collect();
    fleet.birds.push(
        Bird::start(
            &net.router,
            &workdir,
            "router",
            &bird::router(ROUTER_CLIENT_ADDR, &edge_addrs),
        )
        .context("starting the router's BIRD (Debian bird2; `cargo xtask setup` installs it)")?,
    );
    for (k, ns) in net.backends.iter().enumerate() {
        let edges: Vec<Ipv4Addr> = (0..EDGES).map(|i| backend_link(i, k).0).collect();
        fleet.birds.push(Bird::start(
            ns,
            &workdir,
            &format!("backend{k}"),
            &bird::backend(backend_link(0, k).1, &edges),
        )?);
    }
    let binary = std::env::current_exe().context("finding this program")?;
    for (i, ns) in net.edges.iter().enumerate() {
        let (router_addr, edge_addr) = router_link(i);
        let backends: Vec<Ipv4Addr> = (0..BACKENDS).map(|k| backend_link(i, k).1).collect();
        fleet.birds.push(Bird::start(
            ns,
            &workdir,
            &format!("edge{i}"),
            &bird::edge(edge_addr, router_addr, &backends),
        )?);
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/fo-demo-{pid}-edge{i}"));
        fleet.pin_dirs.push(pin_dir.clone());
        let config = workdir.join(format!("edge{i}.toml"));
        std::fs::write(&config, config_text(i, &pin_dir, &workdir, probe))?;
        fleet.agents.push(Some(AgentProcess::start(
            ns,
            &binary,
            &config,
            &workdir.join(format!("edge{i}.pid")),
            &workdir.join(format!("edge{i}.log")),
        )?));
    }
    println!(
        "  BIRD on the router (BGP with BFD every 100 ms, ECMP), on each edge host and each backend"
    );
    println!(
        "  `failover run` on each edge host with [routing]: a route per VIP it can serve, which its BIRD announces"
    );
    fleet.net = Some(net);
    let net = fleet.net.as_ref().expect("just set");
    let Some(took) = wait_nexthops(net, EDGES, CONVERGE) else {
        check()?;
        bail!("the router never learned the VIP from both edge hosts within {CONVERGE:?}");
    };
    println!(
        "router: {VIP} via {} (ECMP), {:.1} s after the agents started",
        names(&fleet::nexthops(&net.router, &format!("{VIP}/32"))),
        took.as_secs_f64()
    );

    let streams: Vec<Option<std::net::TcpStream>> = net.client.run(|| {
        (0..LONG)
            .map(|_| load::connect(web(), Duration::from_secs(1)).ok())
            .collect()
    });
    let opened = streams.iter().filter(|s| s.is_some()).count();
    let plan = Plan {
        long: Some(LongLived {
            streams,
            every: Duration::from_millis(500),
            reconnect: None,
        }),
        lifetime: Duration::from_secs(120),
        ..Plan::new_flows(web(), Duration::from_millis(20), Duration::from_secs(1))
    };
    fleet.load = Some(Load::start(&net.client, plan)?);
    println!(
        "client: {opened} long connections asking every 0.5 s, and a new connection every 20 ms"
    );
    let load = fleet.load.as_ref().expect("just set");
    let phase = Instant::now();
    std::thread::sleep(PHASE);
    check()?;
    let (made, failed, broken) = tally(load, phase);
    println!(
        "  {PHASE:?}: {made} new connections, {failed} failed; {broken} long connections broken"
    );

    println!("\nedge0 goes away: its agent is killed (SIGKILL) and its links go down");
    let away = Instant::now();
    if let Some(mut agent) = fleet.agents[0].take() {
        let _ = agent.sigkill();
    }
    fleet::set_edge_links(&net.edges[0], 0, &fleet::edge_links(), false);
    match wait_nexthops(net, EDGES - 1, WITHDRAW) {
        Some(_) => println!(
            "  router: {VIP} via {} only, {:.0} ms after the kill (the agent's device, and its routes, died with it)",
            names(&fleet::nexthops(&net.router, &format!("{VIP}/32"))),
            away.elapsed().as_secs_f64() * 1000.0
        ),
        None => println!("  the router did not withdraw edge0 within {WITHDRAW:?}"),
    }
    std::thread::sleep(PHASE);
    check()?;
    let (made, failed, broken) = tally(load, away);
    println!(
        "  meanwhile: {made} new connections, {failed} failed; {broken} of {opened} long connections broken (edge1 continues edge0's flows: same Maglev table, stateless replies)"
    );

    println!("\nedge0 comes back: links up, agent started");
    let back = Instant::now();
    fleet::set_edge_links(&net.edges[0], 0, &fleet::edge_links(), true);
    let config = workdir.join("edge0.toml");
    fleet.agents[0] = Some(AgentProcess::start(
        &net.edges[0],
        &binary,
        &config,
        &workdir.join("edge0.pid"),
        &workdir.join("edge0.log"),
    )?);
    match wait_nexthops(net, EDGES, CONVERGE) {
        Some(took) => println!(
            "  router: {VIP} via {} again, {:.1} s later (a new BGP session, then the announcement)",
            names(&fleet::nexthops(&net.router, &format!("{VIP}/32"))),
            took.as_secs_f64()
        ),
        None => println!("  the router did not take edge0 back within {CONVERGE:?}"),
    }
    std::thread::sleep(PHASE);
    check()?;
    let (made, failed, broken) = tally(load, back);
    println!("  since: {made} new connections, {failed} failed; {broken} long connections broken");
    let (made, failed, broken) = tally(load, phase);
    println!(
        "\nsummary: {made} new connections, {failed} failed; {} of {opened} long connections went through it all",
        opened - broken
    );
    Ok(())
}
