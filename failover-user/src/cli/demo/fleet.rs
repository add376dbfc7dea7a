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
        self._servers.clear();
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
    let peers: Vec<String> = fleet::sync_peers(i)
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect();
    text += &format!(
        "\n[sync]\nlisten = \"{}\"\npeers = [{}]\n",
        fleet::sync_addr(i),
        peers.join(", ")
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
    let mut names: Vec<String> = addrs
        .iter()
        .map(|a| match (0..EDGES).find(|&i| router_link(i).1 == *a) {
            Some(i) => format!("edge{i}"),
            None => a.to_string(),
        })
        .collect();
    names.sort();
    names.join(" and ")
}

/// The last lines of each agent's log, for a demo that failed.
fn print_log_tails(workdir: &std::path::Path) {
    for i in 0..EDGES {
        let log = std::fs::read_to_string(workdir.join(format!("edge{i}.log"))).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        println!("last lines of edge{i}'s agent log:");
        for line in &lines[lines.len().saturating_sub(10)..] {
            println!("  {line}");
        }
    }
}

/// New connections that ended since `since`, and long connections with an
/// ask that failed since: (made, failed, long connections that broke).
fn tally(recorded: &load::Recorded, since: Instant) -> (usize, usize, usize) {
    let new: Vec<_> = recorded
        .new_flows
        .iter()
        .filter(|s| s.done >= since)
        .collect();
    let broken = recorded
        .long
        .iter()
        .filter(|asks| asks.iter().any(|s| s.done >= since && s.result.is_err()))
        .count();
    (
        new.len(),
        new.iter().filter(|s| s.result.is_err()).count(),
        broken,
    )
}

pub(super) fn run(probe: Duration) -> anyhow::Result<()> {
    let mut fleet = Fleet::default();
    let outcome = play(&mut fleet, probe);
    if outcome.is_err()
        && let Some(workdir) = &fleet.workdir
    {
        print_log_tails(workdir);
    }
    println!();
    drop(fleet);
    outcome.map_err(|err| err.context("the fleet demo failed; the lab was removed"))
}

fn play(lab: &mut Fleet, probe: Duration) -> anyhow::Result<()> {
    println!(
        "failover demo fleet: two edge hosts behind a router, one taken away and back (about 40 s)"
    );
    println!();
    let pid = std::process::id();
    let workdir = std::env::temp_dir().join(format!("failover-demo-{pid}"));
    std::fs::create_dir_all(&workdir).context("creating the demo's directory")?;
    lab.workdir = Some(workdir.clone());
    println!("setting up: a client, a router, two edge hosts and two backends in namespaces");
    // Owned by the guard at once: an early error still stops the daemons
    // before the namespaces go.
    lab.net = Some(FleetNet::build("demo-fl"));
    let Fleet {
        net: Some(net),
        birds,
        _servers: servers,
        agents,
        pin_dirs,
        load: client_load,
        ..
    } = lab
    else {
        unreachable!("just set");
    };
    let net: &FleetNet = net;
    for (k, ns) in net.backends.iter().enumerate() {
        servers.push(BackendServer::start(
            ns,
            &format!("backend{k}"),
            BACKEND_PORT,
            BACKEND_UDP_PORT,
        ));
    }
    let edge_addrs: Vec<Ipv4Addr> = (0..EDGES).map(|i| router_link(i).1).collect();
    birds.push(
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
        birds.push(Bird::start(
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
        birds.push(Bird::start(
            ns,
            &workdir,
            &format!("edge{i}"),
            &bird::edge(edge_addr, router_addr, &backends),
        )?);
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/fo-demo-{pid}-edge{i}"));
        pin_dirs.push(pin_dir.clone());
        let config = workdir.join(format!("edge{i}.toml"));
        std::fs::write(&config, config_text(i, &pin_dir, &workdir, probe))?;
        agents.push(Some(AgentProcess::start(
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
    let Some(took) = wait_nexthops(net, EDGES, CONVERGE) else {
        check()?;
        bail!("the router never learned the VIP from both edge hosts within {CONVERGE:?}");
    };
    // And the backends their way back over both.
    let started = Instant::now();
    while !net
        .backends
        .iter()
        .all(|b| fleet::nexthops(b, "192.0.2.0/24").len() == EDGES)
    {
        check()?;
        if started.elapsed() > CONVERGE {
            bail!(
                "the backends never learned their way back over both edge hosts within {CONVERGE:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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
    let phase = Instant::now();
    *client_load = Some(Load::start(&net.client, plan)?);
    println!(
        "client: {opened} long connections asking every 0.5 s, and a new connection every 20 ms"
    );
    let load = client_load.as_ref().expect("just set");
    std::thread::sleep(PHASE);
    check()?;
    let (made, failed, broken) = tally(&load.snapshot(), phase);
    println!(
        "  {PHASE:?}: {made} new connections, {failed} failed; {broken} long connections broken"
    );

    println!("\nedge0 goes away: its agent is killed (SIGKILL) and its links go down");
    let away = Instant::now();
    if let Some(mut agent) = agents[0].take() {
        let _ = agent.sigkill();
    }
    fleet::set_edge_links(&net.edges[0], 0, &fleet::edge_links(), false);
    if wait_nexthops(net, EDGES - 1, WITHDRAW).is_none() {
        check()?;
        bail!("the router did not withdraw edge0 within {WITHDRAW:?}");
    }
    println!(
        "  router: {VIP} via {} only, {:.0} ms after the kill (the agent's device, and its routes, died with it)",
        names(&fleet::nexthops(&net.router, &format!("{VIP}/32"))),
        away.elapsed().as_secs_f64() * 1000.0
    );
    std::thread::sleep(PHASE);
    check()?;
    let (made, failed, broken) = tally(&load.snapshot(), away);
    println!(
        "  meanwhile: {made} new connections, {failed} failed; {broken} of {opened} long connections broken (edge1 continues edge0's flows: same Maglev table, stateless replies)"
    );

    println!("\nedge0 comes back: links up, agent started");
    let back = Instant::now();
    fleet::set_edge_links(&net.edges[0], 0, &fleet::edge_links(), true);
    let config = workdir.join("edge0.toml");
    agents[0] = Some(AgentProcess::start(
        &net.edges[0],
        &binary,
        &config,
        &workdir.join("edge0.pid"),
        &workdir.join("edge0.log"),
    )?);
    let Some(took) = wait_nexthops(net, EDGES, CONVERGE) else {
        check()?;
        bail!("the router did not take edge0 back within {CONVERGE:?}");
    };
    println!(
        "  router: {VIP} via {} again, {:.1} s later (a new BGP session, then the announcement)",
        names(&fleet::nexthops(&net.router, &format!("{VIP}/32"))),
        took.as_secs_f64()
    );
    std::thread::sleep(PHASE);
    check()?;
    let (made, failed, broken) = tally(&load.snapshot(), back);
    println!("  since: {made} new connections, {failed} failed; {broken} long connections broken");
    let recorded = client_load.take().expect("running").finish();
    let (made, failed, broken) = tally(&recorded, phase);
    println!(
        "\nsummary: {made} new connections, {failed} failed; {} of {opened} long connections went through it all",
        opened - broken
    );
    if broken > 0 {
        bail!("{broken} long connections broke");
    }
    Ok(())
}
