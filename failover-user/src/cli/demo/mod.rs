//! `failover demo`: a self-contained failover lab in network namespaces.
//!
//! ```text
//!   client ns            lb ns (XDP on every interface + the agent)     backend nss
//!   eth0 192.0.2.2 ───── lbc  192.0.2.1
//!                        lbb1 198.51.100.1  ───── eth0 198.51.100.2   primary  tier 0
//!                        lbb2 198.51.100.17 ───── eth0 198.51.100.18  standby  tier 1
//!                        lbb3 198.51.100.33 ───── eth0 198.51.100.34  backup   tier 2
//!   VIP 203.0.113.10:80 (tcp) → backends :8080
//! ```
//!
//! The demo builds the namespaces and veth links (the library's
//! `lab::topology`: documentation address ranges only, no default routes),
//! starts a TCP server answering its name in each backend namespace, writes
//! an active-passive configuration to a temporary file and starts the real
//! agent (`failover run`, the library's `lab::agent::AgentProcess`) as a
//! child process inside the lb namespace (`setns` in `pre_exec`, not `ip
//! netns exec`, which would hide bpffs). A client thread in the client namespace
//! opens a new TCP connection to the VIP every 20 ms and records who answered.
//! The demo then kills backends and brings them back, narrating what happens,
//! measuring the failover gaps and showing the agent's decisions from its log.
//!
//! Everything it creates is owned by guards that undo it in `Drop` (also on
//! panic): the client thread, the agent (SIGTERM, then SIGKILL, reaped), the
//! servers, the pass programs, the pins, the namespaces and the temporary
//! directory. Ctrl-C (SIGINT) or SIGTERM only raise a flag that every loop
//! checks, so the demo returns normally and the guards run. Every loop is
//! bounded in time.
//!
//! Modules: [`lab`] builds and tears down the lab, [`config`] writes the
//! agent's configuration, [`client`] is the client thread, [`scenario`] plays
//! the phases and measures them, [`report`] prints the introduction, traffic
//! lines and summary, [`narration`] turns the agent's log ([`log_tail`])
//! into words, [`signal`] handles Ctrl-C and [`leftovers`] removes what
//! killed demos left behind.

mod client;
mod config;
mod fleet;
mod lab;
mod leftovers;
mod log_tail;
mod narration;
mod report;
mod scenario;
mod signal;

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::bail;

use self::{lab::Lab, scenario::Scenario};
use crate::lab::topology::{VIP6, backend_addr, backend_addr6};

const VIP4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Whether this run is on IPv6 (`failover demo --ipv6`).
static IPV6: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn ipv6() -> bool {
    *IPV6.get().unwrap_or(&false)
}

/// The demo's VIP: IPv4, or IPv6 with `--ipv6`.
fn vip() -> IpAddr {
    if ipv6() { VIP6.into() } else { VIP4.into() }
}

/// `address:port` (bracketed for IPv6).
fn endpoint(addr: IpAddr, port: u16) -> String {
    crate::model::endpoint_text(addr, port)
}
const VIP_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
/// The lab's servers also answer UDP; the demo does not use it.
const BACKEND_UDP_PORT: u16 = 5353;

/// A new client connection this often.
const REQUEST_EVERY: Duration = Duration::from_millis(20);
/// Bound of each request's connect, and of its read and write.
const IO_TIMEOUT: Duration = Duration::from_millis(300);
/// One output line per window.
const WINDOW: Duration = Duration::from_millis(250);
/// How often the agent's log is read between output lines.
const LOG_POLL: Duration = Duration::from_millis(50);
/// Failback hold-down of the demo configuration.
const FAILBACK_DELAY: Duration = Duration::from_secs(2);
/// Probe interval of this run (`failover demo --probe-interval`); the probe
/// timeout is half of it, fall 3, rise 2.
static PROBE_INTERVAL: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

fn probe_interval() -> Duration {
    *PROBE_INTERVAL.get().unwrap_or(&Duration::from_millis(100))
}

/// How long to watch after a failover: long enough for detection at any interval.
fn settle_time() -> Duration {
    (probe_interval() * 6).max(Duration::from_millis(2500))
}

/// How long a failover may take before the demo says it did not happen.
fn failover_bound() -> Duration {
    (probe_interval() * 10).max(Duration::from_secs(5))
}
/// The whole demo stops after this, whatever happens.
const DEMO_DEADLINE: Duration = Duration::from_secs(90);
/// The client thread stops after this even if nobody tells it to.
const CLIENT_MAX_LIFETIME: Duration = Duration::from_secs(120);
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(10);
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many blocks in one bar of the live output.
const BAR_MAX: usize = 24;

/// One backend host of the lab.
struct Host {
    name: &'static str,
    tier: u8,
    /// Its index in the topology (its addresses).
    index: usize,
    /// The lb's interface toward it.
    lb_if: &'static str,
}

impl Host {
    /// Its address in this run's family.
    fn addr(&self) -> IpAddr {
        if ipv6() {
            backend_addr6(self.index).into()
        } else {
            backend_addr(self.index).into()
        }
    }
}

const PRIMARY: usize = 0;
const STANDBY: usize = 1;
const BACKUP: usize = 2;

const HOSTS: [Host; 3] = [
    Host {
        name: "primary",
        tier: 0,
        index: PRIMARY,
        lb_if: "lbb1",
    },
    Host {
        name: "standby",
        tier: 1,
        index: STANDBY,
        lb_if: "lbb2",
    },
    Host {
        name: "backup",
        tier: 2,
        index: BACKUP,
        lb_if: "lbb3",
    },
];

/// Why the demo stopped early.
#[derive(Debug)]
enum Stop {
    Interrupted,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(err: anyhow::Error) -> Self {
        Stop::Failed(err)
    }
}

pub fn run(probe_interval: Duration, ipv6: bool, fleet: bool) -> anyhow::Result<()> {
    if probe_interval < Duration::from_millis(5) || probe_interval > Duration::from_secs(5) {
        bail!("--probe-interval must be between 5ms and 5s");
    }
    let _ = PROBE_INTERVAL.set(probe_interval);
    let _ = IPV6.set(ipv6);
    // SAFETY: trivial libc call.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the demo needs root: it creates network namespaces and loads XDP programs \
             (run it as root, e.g. `sudo failover demo`)"
        );
    }
    signal::install_handlers()?;
    if fleet {
        if ipv6 {
            bail!("the fleet demo runs on IPv4 only");
        }
        leftovers::remove_leftovers();
        return fleet::run(probe_interval);
    }
    println!("failover demo: an edge host failing over between three backends (about 20 s)");
    println!();
    leftovers::remove_leftovers();
    let mut lab = Lab::default();
    let outcome = match lab.build() {
        Ok(()) => Scenario::new(&mut lab).and_then(|mut scenario| scenario.play()),
        Err(Stop::Failed(err)) => Err(Stop::Failed(err)),
        Err(Stop::Interrupted) => Err(Stop::Interrupted),
    };
    if let Err(Stop::Failed(_)) = &outcome {
        lab.print_agent_log_tail(25);
    }
    println!();
    drop(lab);
    match outcome {
        Ok(()) => Ok(()),
        Err(Stop::Interrupted) => bail!("interrupted; the lab was removed"),
        Err(Stop::Failed(err)) => Err(err.context("the demo failed; the lab was removed")),
    }
}
