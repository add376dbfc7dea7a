//! The demo's lab: namespaces and links, pass programs on the veth peers,
//! backend servers and the agent, each owned by a guard and torn down in
//! order in `Drop`.

use std::{path::PathBuf, time::Instant};

use anyhow::Context as _;

use super::{
    AGENT_START_TIMEOUT, AGENT_STOP_TIMEOUT, BACKEND_PORT, BACKEND_UDP_PORT, HOSTS, LOG_POLL, Stop,
    client::Client, config::config_text, signal::interrupted,
};
use crate::{
    Dataplane,
    lab::{
        agent::{AgentProcess, Stopped},
        netns::NetNs,
        servers::BackendServer,
        topology::{BackendLink, Topology},
    },
};

/// Everything the demo creates. `Drop` tears it down in order: the client
/// thread, the agent, the servers, the pass programs, the pins, the
/// namespaces, the temporary directory.
#[derive(Default)]
pub(super) struct Lab {
    pub(super) client: Option<Client>,
    pub(super) agent: Option<AgentProcess>,
    pub(super) servers: [Option<BackendServer>; 3],
    /// The pass programs on the client and backend ends of the veth pairs.
    peers: Option<Dataplane>,
    pin_dirs: Vec<PathBuf>,
    net: Option<Topology>,
    workdir: Option<PathBuf>,
}

impl Lab {
    fn check(&self) -> Result<(), Stop> {
        if interrupted() {
            Err(Stop::Interrupted)
        } else {
            Ok(())
        }
    }

    /// The namespaces; only after [`Self::build`].
    pub(super) fn net(&self) -> &Topology {
        self.net.as_ref().expect("lab built")
    }

    pub(super) fn build(&mut self) -> Result<(), Stop> {
        let pid = std::process::id();
        println!("setting up the lab");

        // Namespaces and links.
        let roles: Vec<String> = HOSTS.iter().map(|h| format!("demo-{}", h.name)).collect();
        let links: Vec<BackendLink<'_>> = HOSTS
            .iter()
            .zip(&roles)
            .map(|(host, role)| BackendLink {
                role,
                lb_if: host.lb_if,
            })
            .collect();
        let net = Topology::build("demo-client", "demo-lb", &links);
        if super::ipv6() {
            net.add_ipv6();
        }
        self.net = Some(net);
        let net = self.net.as_ref().expect("just built");
        println!(
            "  namespaces: {}",
            net.namespaces()
                .map(NetNs::name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.check()?;

        // The pass program on the veth peers, loaded from its own pins.
        let peers_pins = PathBuf::from(format!("/sys/fs/bpf/fo-demo-{pid}-peers"));
        self.pin_dirs.push(peers_pins.clone());
        let mut peers =
            Dataplane::load(&peers_pins).context("loading the pass program for the veth peers")?;
        net.attach_pass_on_peers(&mut peers)
            .map_err(anyhow::Error::from)?;
        self.peers = Some(peers);

        // Backend servers.
        for (i, (host, ns)) in HOSTS.iter().zip(&net.backends).enumerate() {
            self.servers[i] = Some(BackendServer::start(
                ns,
                host.name,
                BACKEND_PORT,
                BACKEND_UDP_PORT,
            ));
        }
        println!(
            "  backend servers: {} (each answers a TCP line with its name)",
            HOSTS
                .iter()
                .map(|h| format!("{} {}", h.name, super::endpoint(h.addr(), BACKEND_PORT)))
                .collect::<Vec<_>>()
                .join(", ")
        );

        // The agent.
        let workdir = std::env::temp_dir().join(format!("failover-demo-{pid}"));
        let _ = std::fs::remove_dir_all(&workdir);
        std::fs::create_dir(&workdir).with_context(|| format!("creating {}", workdir.display()))?;
        self.workdir = Some(workdir.clone());
        let agent_pins = PathBuf::from(format!("/sys/fs/bpf/fo-demo-{pid}"));
        self.pin_dirs.push(agent_pins.clone());
        let config_path = workdir.join("failover.toml");
        std::fs::write(
            &config_path,
            config_text(&agent_pins, &workdir.join("control.sock")),
        )
        .with_context(|| format!("writing {}", config_path.display()))?;
        let exe = std::env::current_exe().context("locating the failover binary")?;
        let agent = AgentProcess::start(
            &net.lb,
            &exe,
            &config_path,
            &workdir.join("agent.pid"),
            &workdir.join("agent.log"),
        )
        .with_context(|| format!("starting {} run", exe.display()))?
        .with_stop_timeout(AGENT_STOP_TIMEOUT);
        println!(
            "  agent: failover run --config {} (pid {}, in {}), log {}",
            config_path.display(),
            agent.pid(),
            net.lb.name(),
            agent.log_path().display()
        );
        self.agent = Some(agent);
        self.wait_for_agent()?;
        Ok(())
    }

    /// Waits until the agent logs "agent running", fails if it exits first.
    fn wait_for_agent(&mut self) -> Result<(), Stop> {
        let started = Instant::now();
        let agent = self.agent.as_mut().expect("agent started");
        loop {
            if interrupted() {
                return Err(Stop::Interrupted);
            }
            if let Some(status) = agent.try_wait().context("waiting for the agent")? {
                return Err(anyhow::anyhow!("the agent exited during start-up ({status})").into());
            }
            let log = std::fs::read_to_string(agent.log_path()).unwrap_or_default();
            if log.contains("agent running") {
                return Ok(());
            }
            if started.elapsed() > AGENT_START_TIMEOUT {
                return Err(anyhow::anyhow!(
                    "the agent did not report \"agent running\" within {AGENT_START_TIMEOUT:?}"
                )
                .into());
            }
            std::thread::sleep(LOG_POLL);
        }
    }

    pub(super) fn print_agent_log_tail(&self, lines: usize) {
        let Some(agent) = &self.agent else { return };
        let log = std::fs::read_to_string(agent.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        if all.is_empty() {
            return;
        }
        println!("last lines of the agent's log:");
        for line in &all[all.len().saturating_sub(lines)..] {
            println!("  {line}");
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut done = Vec::new();
        if let Some(client) = self.client.take() {
            drop(client);
            done.push("client stopped".to_owned());
        }
        if let Some(mut agent) = self.agent.take() {
            done.push(match agent.stop() {
                Stopped::AlreadyExited(status) => format!("agent had already exited ({status})"),
                Stopped::Terminated(_) => "agent stopped (SIGTERM)".to_owned(),
                Stopped::Killed => "agent killed (SIGKILL after SIGTERM timed out)".to_owned(),
                Stopped::Lost => "agent could not be waited for (reaped elsewhere)".to_owned(),
            });
        }
        let servers = self.servers.iter_mut().filter_map(Option::take).count();
        if servers > 0 {
            done.push(match servers {
                1 => "1 backend server stopped".to_owned(),
                n => format!("{n} backend servers stopped"),
            });
        }
        if let Some(peers) = self.peers.take() {
            drop(peers);
        }
        let mut pins = 0;
        for dir in self.pin_dirs.drain(..) {
            match crate::dataplane::remove_pins(&dir) {
                Ok(()) => pins += 1,
                Err(err) => println!("  cannot remove pins in {}: {err}", dir.display()),
            }
        }
        if pins > 0 {
            done.push(format!("pins removed ({pins} directories)"));
        }
        if let Some(net) = self.net.take() {
            let namespaces = net.namespaces().count();
            drop(net);
            done.push(format!("{namespaces} namespaces deleted"));
        }
        if let Some(dir) = self.workdir.take() {
            let _ = std::fs::remove_dir_all(&dir);
            done.push(format!("{} removed", dir.display()));
        }
        if !done.is_empty() {
            println!("cleanup: {}", done.join(", "));
        }
    }
}
