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
//! The demo builds the namespaces and veth links (documentation address
//! ranges only, no default routes), starts a TCP server answering its name in
//! each backend namespace, writes an active-passive configuration to a
//! temporary file and starts the real agent (`failover run`) as a child
//! process inside the lb namespace (`setns` in `pre_exec`, not `ip netns
//! exec`, which would hide bpffs). A client thread in the client namespace
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

use std::{
    fmt::Write as _,
    fs::File,
    io::{ErrorKind, Read, Seek, SeekFrom, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    AttachMode, Dataplane,
    lab::{
        netns::{self, NetNs},
        servers::BackendServer,
    },
};

const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const VIP_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
/// The lab's servers also answer UDP; the demo does not use it.
const BACKEND_UDP_PORT: u16 = 5353;

/// A new client connection this often.
const REQUEST_EVERY: Duration = Duration::from_millis(20);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
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
    addr: Ipv4Addr,
    cidr: &'static str,
    lb_if: &'static str,
    lb_cidr: &'static str,
    lb_addr: &'static str,
}

const PRIMARY: usize = 0;
const STANDBY: usize = 1;
const BACKUP: usize = 2;

const HOSTS: [Host; 3] = [
    Host {
        name: "primary",
        tier: 0,
        addr: Ipv4Addr::new(198, 51, 100, 2),
        cidr: "198.51.100.2/28",
        lb_if: "lbb1",
        lb_cidr: "198.51.100.1/28",
        lb_addr: "198.51.100.1",
    },
    Host {
        name: "standby",
        tier: 1,
        addr: Ipv4Addr::new(198, 51, 100, 18),
        cidr: "198.51.100.18/28",
        lb_if: "lbb2",
        lb_cidr: "198.51.100.17/28",
        lb_addr: "198.51.100.17",
    },
    Host {
        name: "backup",
        tier: 2,
        addr: Ipv4Addr::new(198, 51, 100, 34),
        cidr: "198.51.100.34/28",
        lb_if: "lbb3",
        lb_cidr: "198.51.100.33/28",
        lb_addr: "198.51.100.33",
    },
];

// ---- Ctrl-C ----------------------------------------------------------------

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM only raise [`INTERRUPTED`]; the demo loops check it and
/// return, so the guards clean up.
fn install_signal_handlers() -> anyhow::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with an async-signal-safe handler (one
        // atomic store) and an empty mask.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("installing a signal handler");
        }
    }
    Ok(())
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

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

// ---- Entry point -----------------------------------------------------------

pub fn run(probe_interval: Duration) -> anyhow::Result<()> {
    if probe_interval < Duration::from_millis(5) || probe_interval > Duration::from_secs(5) {
        bail!("--probe-interval must be between 5ms and 5s");
    }
    let _ = PROBE_INTERVAL.set(probe_interval);
    // SAFETY: trivial libc call.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the demo needs root: it creates network namespaces and loads XDP programs \
             (run it as root, e.g. `sudo failover demo`)"
        );
    }
    install_signal_handlers()?;
    println!("failover demo: an edge host failing over between three backends (about 20 s)");
    println!();
    remove_leftovers();
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

// ---- The lab and its guards --------------------------------------------------

/// Everything the demo creates. `Drop` tears it down in order: the client
/// thread, the agent, the servers, the pass programs, the pins, the
/// namespaces, the temporary directory.
#[derive(Default)]
struct Lab {
    client: Option<Client>,
    agent: Option<Agent>,
    servers: [Option<BackendServer>; 3],
    /// The pass programs on the client and backend ends of the veth pairs.
    peers: Option<Dataplane>,
    pin_dirs: Vec<PathBuf>,
    client_ns: Option<NetNs>,
    lb_ns: Option<NetNs>,
    backend_ns: Vec<NetNs>,
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

    fn build(&mut self) -> Result<(), Stop> {
        let pid = std::process::id();
        println!("setting up the lab");

        // Namespaces and links.
        let client = NetNs::new("demo-client");
        let lb = NetNs::new("demo-lb");
        self.client_ns = Some(client);
        self.lb_ns = Some(lb);
        for host in &HOSTS {
            self.backend_ns
                .push(NetNs::new(&format!("demo-{}", host.name)));
        }
        self.check()?;
        let (client, lb) = (
            self.client_ns.as_ref().unwrap(),
            self.lb_ns.as_ref().unwrap(),
        );
        for ns in [client, lb].into_iter().chain(&self.backend_ns) {
            // No IPv6: no router solicitations wandering through the lab.
            ns.sysctl("net/ipv6/conf/default/disable_ipv6", "1");
            ns.sysctl("net/ipv6/conf/all/disable_ipv6", "1");
        }
        netns::veth((lb, "lbc"), (client, "eth0"));
        lb.ip(&["addr", "add", "192.0.2.1/24", "dev", "lbc"]);
        client.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
        client.ip(&["route", "add", "203.0.113.0/24", "via", "192.0.2.1"]);
        for (host, ns) in HOSTS.iter().zip(&self.backend_ns) {
            netns::veth((lb, host.lb_if), (ns, "eth0"));
            lb.ip(&["addr", "add", host.lb_cidr, "dev", host.lb_if]);
            ns.ip(&["addr", "add", host.cidr, "dev", "eth0"]);
            // NAT mode: replies go back through the edge host.
            ns.ip(&["route", "add", "192.0.2.0/24", "via", host.lb_addr]);
        }
        lb.sysctl("net/ipv4/conf/all/forwarding", "1");
        // Locally generated packets are CHECKSUM_PARTIAL; rewritten in native
        // XDP they would be dropped as bad checksums (veth pitfall 3).
        client.disable_tx_checksum("eth0");
        for ns in &self.backend_ns {
            ns.disable_tx_checksum("eth0");
        }
        println!(
            "  namespaces: {}, {}, {}",
            client.name(),
            lb.name(),
            self.backend_ns
                .iter()
                .map(NetNs::name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.check()?;

        // Native XDP_TX/redirect into a veth needs an XDP program on its peer.
        let peers_pins = PathBuf::from(format!("/sys/fs/bpf/fo-demo-{pid}-peers"));
        self.pin_dirs.push(peers_pins.clone());
        let mut peers =
            Dataplane::load(&peers_pins).context("loading the pass program for the veth peers")?;
        for ns in [client].into_iter().chain(&self.backend_ns) {
            ns.run(|| peers.attach_pass("eth0", AttachMode::Native))
                .with_context(|| format!("attaching the pass program in {}", ns.name()))?;
        }
        self.peers = Some(peers);

        // Backend servers.
        for (i, (host, ns)) in HOSTS.iter().zip(&self.backend_ns).enumerate() {
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
                .map(|h| format!("{} {}:{BACKEND_PORT}", h.name, h.addr))
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
        std::fs::write(&config_path, config_text(&agent_pins))
            .with_context(|| format!("writing {}", config_path.display()))?;
        let agent = Agent::start(
            lb,
            &config_path,
            &workdir.join("agent.pid"),
            &workdir.join("agent.log"),
        )?;
        println!(
            "  agent: failover run --config {} (pid {}, in {}), log {}",
            config_path.display(),
            agent.pid(),
            lb.name(),
            agent.log_path.display()
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
            if let Some(status) = agent.child.try_wait().context("waiting for the agent")? {
                return Err(anyhow::anyhow!("the agent exited during start-up ({status})").into());
            }
            let log = std::fs::read_to_string(&agent.log_path).unwrap_or_default();
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

    fn print_agent_log_tail(&self, lines: usize) {
        let Some(agent) = &self.agent else { return };
        let log = std::fs::read_to_string(&agent.log_path).unwrap_or_default();
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
        if let Some(agent) = self.agent.take() {
            done.push(agent.stop());
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
        let namespaces = usize::from(self.client_ns.is_some())
            + usize::from(self.lb_ns.is_some())
            + self.backend_ns.len();
        self.client_ns.take();
        self.lb_ns.take();
        self.backend_ns.clear();
        if namespaces > 0 {
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

/// Removes what demos killed before they could clean up (SIGKILL) left
/// behind: namespaces `fo-demo-<role>-<pid>-<n>`, pin directories
/// `/sys/fs/bpf/fo-demo-<pid>[-peers]` and temporary directories
/// `<tmp>/failover-demo-<pid>` of processes that no longer exist. (Their
/// agents were stopped by the parent-death signal.)
fn remove_leftovers() {
    let dead = |pid: &str| {
        !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && !Path::new("/proc").join(pid).exists()
    };
    let entries = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut removed = Vec::new();
    for name in entries(Path::new("/run/netns")) {
        // fo-demo-<role>-<pid>-<n>
        let mut parts = name.rsplit('-');
        let (Some(_n), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        if name.starts_with("fo-demo-") && dead(pid) {
            let deleted = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if deleted {
                removed.push(format!("namespace {name}"));
            }
        }
    }
    let bpffs = Path::new("/sys/fs/bpf");
    for name in entries(bpffs) {
        let Some(rest) = name.strip_prefix("fo-demo-") else {
            continue;
        };
        if dead(rest.strip_suffix("-peers").unwrap_or(rest)) {
            let dir = bpffs.join(&name);
            if crate::dataplane::remove_pins(&dir).is_ok() {
                removed.push(format!("pins {}", dir.display()));
            }
        }
    }
    let tmp = std::env::temp_dir();
    for name in entries(&tmp) {
        if name.strip_prefix("failover-demo-").is_some_and(dead)
            && std::fs::remove_dir_all(tmp.join(&name)).is_ok()
        {
            removed.push(tmp.join(&name).display().to_string());
        }
    }
    if !removed.is_empty() {
        println!(
            "removed leftovers of an earlier demo that was killed: {}",
            removed.join(", ")
        );
        println!();
    }
}

/// The demo's configuration: one TCP service, active-passive over three tiers.
fn config_text(pin_dir: &Path) -> String {
    let mut text = format!(
        r#"# written by `failover demo`
pin_dir = "{pin_dir}"

[[interfaces]]
name = "lbc"
mode = "native"
"#,
        pin_dir = pin_dir.display()
    );
    for host in &HOSTS {
        let _ = write!(
            text,
            "\n[[interfaces]]\nname = \"{}\"\nmode = \"native\"\n",
            host.lb_if
        );
    }
    let _ = write!(
        text,
        r#"
[[services]]
name = "web"
vip = "{VIP}"
port = {VIP_PORT}
protocol = "tcp"
failback = "auto"
failback_delay = "{delay}s"

[services.probe]
type = "tcp"
interval = "{interval}ms"
timeout = "{timeout}ms"
fall = 3
rise = 2
"#,
        delay = FAILBACK_DELAY.as_secs(),
        interval = probe_interval().as_millis(),
        timeout = (probe_interval() / 2).as_millis().max(1)
    );
    for host in &HOSTS {
        let _ = write!(
            text,
            "\n[[services.backends]]\nname = \"{}\"\naddress = \"{}\"\nport = {BACKEND_PORT}\ntier = {}\n",
            host.name, host.addr, host.tier
        );
    }
    text
}

/// The agent child process, stopped and reaped in `Drop`.
struct Agent {
    child: Child,
    log_path: PathBuf,
}

impl Agent {
    /// Starts `<this binary> run` inside `ns`, its output going to `log_path`.
    fn start(ns: &NetNs, config: &Path, pid_file: &Path, log_path: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the failover binary")?;
        let netns_path = format!("/run/netns/{}", ns.name());
        let netns = File::open(&netns_path).with_context(|| format!("opening {netns_path}"))?;
        let log =
            File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let netns_fd = netns.as_raw_fd();
        let mut command = Command::new(&exe);
        command
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--pid-file")
            .arg(pid_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file")?)
            .stderr(log)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            // Its own process group: a Ctrl-C in the terminal reaches only
            // the demo, which then stops the agent in order.
            .process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec. The
        // namespace fd stays open in the parent until spawn returns.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // If the demo dies without cleaning up, the agent goes too.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {} run", exe.display()))?;
        drop(netns);
        Ok(Self {
            child,
            log_path: log_path.to_owned(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after [`AGENT_STOP_TIMEOUT`]; always reaped.
    fn stop(mut self) -> String {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> String {
        if let Ok(Some(status)) = self.child.try_wait() {
            return format!("agent had already exited ({status})");
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: our own child, not yet reaped, so the pid is still ours.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + AGENT_STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => return "agent stopped (SIGTERM)".to_owned(),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        "agent killed (SIGKILL after SIGTERM timed out)".to_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // `stop` already reaped it; otherwise (a panic) stop it now.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop_inner();
        }
    }
}

// ---- The client --------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Answer(usize),
    Refused,
    Reset,
    Timeout,
    Other,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    started: Instant,
    finished: Instant,
    outcome: Outcome,
}

/// A thread in the client namespace opening a new TCP connection to the VIP
/// every [`REQUEST_EVERY`]; stopped and joined in `Drop`.
struct Client {
    records: Arc<Mutex<Vec<Record>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    fn start(ns: &NetNs) -> anyhow::Result<Self> {
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let netns_path = format!("/run/netns/{}", ns.name());
        let netns = File::open(&netns_path).with_context(|| format!("opening {netns_path}"))?;
        // SAFETY: a valid namespace fd; only this thread joins it.
        let entered = |netns: &File| unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
        let thread = {
            let (records, stop) = (records.clone(), stop.clone());
            std::thread::Builder::new()
                .name("demo-client".into())
                .spawn(move || {
                    if entered(&netns) != 0 {
                        eprintln!("demo client: setns: {}", std::io::Error::last_os_error());
                        return;
                    }
                    drop(netns);
                    client_loop(&records, &stop);
                })
                .context("spawning the client thread")?
        };
        Ok(Self {
            records,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn client_loop(records: &Mutex<Vec<Record>>, stop: &AtomicBool) {
    let began = Instant::now();
    let vip = SocketAddr::V4(SocketAddrV4::new(VIP, VIP_PORT));
    let mut next = began;
    while !stop.load(Ordering::Relaxed) && began.elapsed() < CLIENT_MAX_LIFETIME {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
            continue;
        }
        let started = Instant::now();
        let outcome = request(vip);
        let finished = Instant::now();
        records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Record {
                started,
                finished,
                outcome,
            });
        next += REQUEST_EVERY;
        // After a slow request, start again from now instead of bursting.
        if next < finished {
            next = finished;
        }
    }
}

/// One connection: send a line, read the backend's name.
fn request(vip: SocketAddr) -> Outcome {
    let classify = |err: &std::io::Error| match err.kind() {
        ErrorKind::ConnectionRefused => Outcome::Refused,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Outcome::Reset
        }
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::Timeout,
        _ => Outcome::Other,
    };
    let mut stream = match TcpStream::connect_timeout(&vip, CONNECT_TIMEOUT) {
        Ok(stream) => stream,
        Err(err) => return classify(&err),
    };
    if stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return Outcome::Other;
    }
    if let Err(err) = stream.write_all(b"hello\n") {
        return classify(&err);
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 64];
    while !answer.contains(&b'\n') && answer.len() < 256 {
        match stream.read(&mut buf) {
            Ok(0) => return Outcome::Reset,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(err) => return classify(&err),
        }
    }
    let name = String::from_utf8_lossy(&answer);
    HOSTS
        .iter()
        .position(|h| h.name == name.trim())
        .map_or(Outcome::Other, Outcome::Answer)
}

// ---- The scenario --------------------------------------------------------------

struct Scenario<'lab> {
    lab: &'lab mut Lab,
    records: Arc<Mutex<Vec<Record>>>,
    /// t=0: when the client started.
    t0: Instant,
    deadline: Instant,
    next_line: Instant,
    /// Records already shown.
    shown: usize,
    log: LogTail,
}

/// What the summary reports about one failover.
struct Failover {
    from: usize,
    to: usize,
    gap: Option<Duration>,
    failed: usize,
}

impl<'lab> Scenario<'lab> {
    fn new(lab: &'lab mut Lab) -> Result<Self, Stop> {
        let agent = lab.agent.as_ref().expect("agent started");
        let log = LogTail::open(&agent.log_path)?;
        Ok(Self {
            lab,
            records: Arc::new(Mutex::new(Vec::new())),
            t0: Instant::now(),
            deadline: Instant::now() + DEMO_DEADLINE,
            next_line: Instant::now(),
            shown: 0,
            log,
        })
    }

    fn play(&mut self) -> Result<(), Stop> {
        self.print_intro();
        // Show what the agent said during start-up.
        self.pump_log();

        let client = Client::start(self.lab.client_ns.as_ref().expect("client ns"))?;
        self.records = client.records.clone();
        self.lab.client = Some(client);
        self.t0 = Instant::now();
        self.next_line = self.t0 + WINDOW;

        println!();
        println!("1. traffic flows to the primary");
        self.run_for(Duration::from_secs(4))?;
        if self.answers_since(PRIMARY, self.t0) == 0 {
            return Err(anyhow::anyhow!("the primary never answered through the VIP").into());
        }

        println!();
        println!("2. killing the primary backend (its server stops)");
        let first = self.fail(PRIMARY, STANDBY)?;
        self.run_for(settle_time())?;

        println!();
        println!("3. killing the standby too: the third tier (backup) takes over");
        let second = self.fail(STANDBY, BACKUP)?;
        self.run_for(settle_time())?;

        println!();
        println!("4. restoring the primary");
        println!(
            "   the agent sees it healthy after 2 probes, then holds failback for {} s so that a",
            FAILBACK_DELAY.as_secs()
        );
        println!("   flapping primary cannot drag traffic back and forth");
        let back = self.restore(PRIMARY)?;
        self.run_for(settle_time())?;

        println!();
        println!(
            "5. restoring the standby: it rejoins at once as the standby; new flows stay on the primary"
        );
        self.restart_server(STANDBY);
        self.run_for(Duration::from_secs(2))?;

        self.print_summary(&[first, second], back);
        Ok(())
    }

    fn print_intro(&self) {
        println!();
        println!("the lab:");
        println!(
            "  client 192.0.2.2 ──► VIP {VIP}:{VIP_PORT} on the edge host \"lb\" (XDP on its interfaces, agent probing)"
        );
        for (i, host) in HOSTS.iter().enumerate() {
            let role = match host.tier {
                0 => "preferred",
                1 => "standby",
                _ => "last resort",
            };
            let branch = if i + 1 == HOSTS.len() {
                "└─►"
            } else {
                "├─►"
            };
            println!(
                "      {branch} {:<8} {:<19} tier {} ({role})",
                host.name,
                format!("{}:{BACKEND_PORT}", host.addr),
                host.tier
            );
        }
        println!(
            "  the agent probes each backend over TCP every {} ms (timeout {} ms); 3 failures in a row",
            probe_interval().as_millis(),
            (probe_interval() / 2).as_millis().max(1)
        );
        println!(
            "  make a backend unhealthy, 2 successes healthy again. New flows go to the best tier"
        );
        println!(
            "  with a healthy backend; failback to a better tier waits {} s (failback delay).",
            FAILBACK_DELAY.as_secs()
        );
        println!(
            "  the client opens a new TCP connection to {VIP}:{VIP_PORT} every {} ms; each line below",
            REQUEST_EVERY.as_millis()
        );
        println!(
            "  covers {} ms: which backend answered those connections, and how many failed",
            WINDOW.as_millis()
        );
        println!("  lines starting with [agent] come from the agent's log");
    }

    /// Stops `victim`'s server, waits for answers from `successor`, reports the gap.
    fn fail(&mut self, victim: usize, successor: usize) -> Result<Failover, Stop> {
        let stopping = Instant::now();
        drop(self.lab.servers[victim].take());
        let killed = Instant::now();
        println!(
            "   t={:.2}s  {} killed",
            self.secs(killed),
            HOSTS[victim].name
        );
        let found = self.run_until(failover_bound(), |records| {
            first_answer(records, successor, killed).map(|r| r.finished)
        })?;
        // Connections that failed while the server was shutting down count too.
        let failed = self.failures_between(stopping, found.unwrap_or_else(Instant::now));
        match found {
            Some(at) => println!(
                "   measured failover gap: {:.2} s (from kill to first answer from the {}), failed requests: {}",
                (at - killed).as_secs_f64(),
                HOSTS[successor].name,
                describe_failures(&failed)
            ),
            None => println!(
                "   no answer from the {} within {:?} of the kill (failed requests: {})",
                HOSTS[successor].name,
                failover_bound(),
                describe_failures(&failed)
            ),
        }
        Ok(Failover {
            from: victim,
            to: successor,
            gap: found.map(|at| at - killed),
            failed: failed.len(),
        })
    }

    /// Restarts `host`'s server and waits until new flows land on it again.
    fn restore(&mut self, host: usize) -> Result<Option<Duration>, Stop> {
        let restored = self.restart_server(host);
        let bound = FAILBACK_DELAY + failover_bound();
        let found = self.run_until(bound, |records| {
            first_answer(records, host, restored).map(|r| r.finished)
        })?;
        match found {
            Some(at) => println!(
                "   failback after the hold-down delay: new flows back on the {} at t={:.2}s, {:.2} s after it came back",
                HOSTS[host].name,
                self.secs(at),
                (at - restored).as_secs_f64()
            ),
            None => println!(
                "   no failback to the {} within {} s",
                HOSTS[host].name,
                bound.as_secs()
            ),
        }
        Ok(found.map(|at| at - restored))
    }

    /// Starts `host`'s server again; returns when.
    fn restart_server(&mut self, host: usize) -> Instant {
        self.lab.servers[host] = Some(BackendServer::start(
            &self.lab.backend_ns[host],
            HOSTS[host].name,
            BACKEND_PORT,
            BACKEND_UDP_PORT,
        ));
        let restored = Instant::now();
        println!(
            "   t={:.2}s  {} server running again",
            self.secs(restored),
            HOSTS[host].name
        );
        restored
    }

    fn print_summary(&self, failovers: &[Failover], failback: Option<Duration>) {
        let records = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        println!();
        println!("summary");
        for f in failovers {
            let gap = f.gap.map_or("no answer".to_owned(), |g| {
                format!("{:.2} s gap", g.as_secs_f64())
            });
            println!(
                "  failover {} -> {}: {gap}, {} failed requests",
                HOSTS[f.from].name, HOSTS[f.to].name, f.failed
            );
        }
        match failback {
            Some(d) => println!(
                "  failback to the primary: {:.2} s after it came back (hold-down {} s + 2 healthy probes)",
                d.as_secs_f64(),
                FAILBACK_DELAY.as_secs()
            ),
            None => println!("  failback to the primary: did not happen"),
        }
        let mut line = format!("  {} requests:", records.len());
        for (i, host) in HOSTS.iter().enumerate() {
            let n = records
                .iter()
                .filter(|r| r.outcome == Outcome::Answer(i))
                .count();
            let _ = write!(line, " {} {n},", host.name);
        }
        let failed = records
            .iter()
            .filter(|r| !matches!(r.outcome, Outcome::Answer(_)))
            .count();
        let _ = write!(line, " failed {failed}");
        println!("{line}");
        println!(
            "  the failed requests are the connections the data path still sent to a dead backend"
        );
        println!(
            "  before the agent's probes declared it unhealthy (3 probes, {} ms apart)",
            probe_interval().as_millis()
        );
    }

    fn secs(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.t0).as_secs_f64()
    }

    fn run_for(&mut self, duration: Duration) -> Result<(), Stop> {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.step()?;
        }
        Ok(())
    }

    /// Steps until `found` returns a time, or `bound` passes.
    fn run_until(
        &mut self,
        bound: Duration,
        found: impl Fn(&[Record]) -> Option<Instant>,
    ) -> Result<Option<Instant>, Stop> {
        let until = Instant::now() + bound;
        loop {
            let hit = found(&self.records.lock().unwrap_or_else(|e| e.into_inner()));
            if hit.is_some() {
                return Ok(hit);
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            self.step()?;
        }
    }

    /// Waits at most [`LOG_POLL`]: prints new agent log lines, and a traffic
    /// line when a window is complete.
    fn step(&mut self) -> Result<(), Stop> {
        if interrupted() {
            println!();
            println!("interrupted (Ctrl-C): cleaning up");
            return Err(Stop::Interrupted);
        }
        if Instant::now() > self.deadline {
            return Err(anyhow::anyhow!("the demo ran longer than {DEMO_DEADLINE:?}").into());
        }
        if let Some(agent) = self.lab.agent.as_mut()
            && let Ok(Some(status)) = agent.child.try_wait()
        {
            self.pump_log();
            return Err(anyhow::anyhow!("the agent exited unexpectedly ({status})").into());
        }
        let now = Instant::now();
        let wake = (now + LOG_POLL).min(self.next_line);
        if wake > now {
            std::thread::sleep(wake - now);
        }
        self.pump_log();
        if Instant::now() >= self.next_line {
            self.print_window(self.next_line);
            self.next_line += WINDOW;
        }
        Ok(())
    }

    fn print_window(&mut self, end: Instant) {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let mut answers = [0usize; 3];
        let mut failed = 0;
        let mut shown = self.shown;
        for record in records[self.shown..]
            .iter()
            .take_while(|r| r.finished < end)
        {
            match record.outcome {
                Outcome::Answer(i) => answers[i] += 1,
                _ => failed += 1,
            }
            shown += 1;
        }
        drop(records);
        self.shown = shown;
        let mut line = format!("  t={:5.2}s  answers:", self.secs(end));
        if answers.iter().all(|&n| n == 0) {
            line.push_str(" none");
        }
        for (i, &n) in answers.iter().enumerate() {
            if n > 0 {
                let _ = write!(
                    line,
                    " {} {} ({n})",
                    HOSTS[i].name,
                    "█".repeat(n.min(BAR_MAX))
                );
            }
        }
        let _ = write!(line, "  failed: {failed}");
        println!("{line}");
    }

    fn pump_log(&mut self) {
        for line in self.log.new_lines() {
            if let Some(text) = describe_agent_line(&line) {
                println!("      [agent] {text}");
            }
        }
    }

    fn answers_since(&self, backend: usize, since: Instant) -> usize {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.started >= since && r.outcome == Outcome::Answer(backend))
            .count()
    }

    fn failures_between(&self, from: Instant, to: Instant) -> Vec<Outcome> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.finished >= from && r.finished <= to)
            .filter(|r| !matches!(r.outcome, Outcome::Answer(_)))
            .map(|r| r.outcome)
            .collect()
    }
}

/// The first request started after `after` that `backend` answered.
fn first_answer(records: &[Record], backend: usize, after: Instant) -> Option<Record> {
    records
        .iter()
        .find(|r| r.started >= after && r.outcome == Outcome::Answer(backend))
        .copied()
}

fn describe_failures(failed: &[Outcome]) -> String {
    if failed.is_empty() {
        return "0".to_owned();
    }
    let count = |o: Outcome| failed.iter().filter(|&&f| f == o).count();
    let mut parts = Vec::new();
    for (outcome, what) in [
        (
            Outcome::Refused,
            "connection refused by the dead backend's host",
        ),
        (Outcome::Reset, "reset"),
        (Outcome::Timeout, "timed out"),
        (Outcome::Other, "other errors"),
    ] {
        let n = count(outcome);
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    format!("{} ({})", failed.len(), parts.join(", "))
}

// ---- The agent's log -------------------------------------------------------------

/// Reads complete lines appended to a file since the last call.
struct LogTail {
    file: File,
    pending: Vec<u8>,
}

impl LogTail {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            file,
            pending: Vec::new(),
        })
    }

    fn new_lines(&mut self) -> Vec<String> {
        let mut buf = Vec::new();
        // Bounded: the file only grows by what the agent logs.
        if self.file.read_to_end(&mut buf).is_err() {
            let _ = self.file.seek(SeekFrom::End(0));
            return Vec::new();
        }
        self.pending.extend_from_slice(&buf);
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.pending.drain(..=end).collect();
        String::from_utf8_lossy(&complete)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// One line of the agent's log (tracing's default format).
struct LogLine<'a> {
    level: &'a str,
    message: &'a str,
    fields: Vec<(&'a str, String)>,
}

/// A tracing line split into level, message and fields:
/// `2026-11-22T03:29:32.123Z  WARN failover::agent: new flows switched service=web from=a`.
fn parse_log_line(line: &str) -> Option<LogLine<'_>> {
    let mut words = line.split_whitespace();
    let _timestamp = words.next()?;
    let level = words.next()?;
    let target_end = line.find(": ")?;
    let rest = &line[target_end + 2..];
    // The message ends where the first `key=` field begins.
    let mut message_end = rest.len();
    let mut offset = 0;
    for word in rest.split(' ') {
        if let Some(eq) = word.find('=')
            && eq > 0
            && word[..eq]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            message_end = offset;
            break;
        }
        offset += word.len() + 1;
    }
    let message = rest[..message_end.min(rest.len())].trim();
    let fields = parse_fields(&rest[message_end.min(rest.len())..]);
    Some(LogLine {
        level,
        message,
        fields,
    })
}

/// `a=1 b="x y" c=Some(2ms)` → pairs, quotes removed.
fn parse_fields(text: &str) -> Vec<(&str, String)> {
    let mut fields = Vec::new();
    let mut rest = text.trim_start();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        fields.push((key, value));
        rest = next.trim_start();
    }
    fields
}

/// The agent log lines a newcomer should see, in words; `None` for the rest.
fn describe_agent_line(line: &str) -> Option<String> {
    let LogLine {
        level,
        message,
        fields,
    } = parse_log_line(line)?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| *k == name)
            .map(
                |(_, v)| match v.strip_prefix("Some(").and_then(|v| v.strip_suffix(')')) {
                    Some(inner) => inner.to_owned(),
                    None => v.clone(),
                },
            )
            .unwrap_or_default()
    };
    match message {
        "backend unhealthy" => Some(format!(
            "{} ({}) is UNHEALTHY: {}",
            field("backend"),
            field("address"),
            summarize_evidence(&field("evidence"), false)
        )),
        "backend healthy" => Some(format!(
            "{} ({}) is healthy: {}",
            field("backend"),
            field("address"),
            summarize_evidence(&field("evidence"), true)
        )),
        "healthy again; failback held for the failback delay" => Some(format!(
            "{} is healthy again, but new flows stay where they are for {} (failback delay)",
            field("backend"),
            short_duration(&field("failback_in"))
        )),
        "new flows switched" => {
            let gap = field("first_failure_to_map_update");
            let gap = if gap.is_empty() || gap == "None" {
                String::new()
            } else {
                format!(", {} after the first failed probe", short_duration(&gap))
            };
            Some(format!(
                "new flows switched: {} -> {} ({}{gap})",
                field("from"),
                field("to"),
                field("cause")
            ))
        }
        "agent running" => Some(format!(
            "running: {} service, {} probes",
            field("services"),
            field("probes")
        )),
        "XDP attached (pinned link)" => Some(format!(
            "XDP attached to {} ({})",
            field("interface"),
            field("mode").to_lowercase()
        )),
        _ if level == "WARN" || level == "ERROR" => Some(format!(
            "{level}: {message} {}",
            fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        )),
        _ => None,
    }
}

/// The agent's evidence (`ok 1.2ms, fail 0.3ms (connect: refused), ...`,
/// oldest first) in a few words: how many results in a row flipped it, and
/// the last error.
fn summarize_evidence(evidence: &str, healthy: bool) -> String {
    // Entries start with "ok " or "fail "; errors may contain ", ".
    let mut entries: Vec<&str> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while let Some(pos) = evidence[i..].find(", ") {
        let at = i + pos;
        let next = &evidence[at + 2..];
        if next.starts_with("ok ") || next.starts_with("fail ") {
            entries.push(&evidence[start..at]);
            start = at + 2;
        }
        i = at + 2;
    }
    if start < evidence.len() {
        entries.push(&evidence[start..]);
    }
    let kind = if healthy { "ok " } else { "fail " };
    let streak = entries
        .iter()
        .rev()
        .take_while(|e| e.starts_with(kind))
        .count();
    if healthy {
        return format!("{streak} successful probes in a row");
    }
    let error = entries
        .last()
        .and_then(|e| e.split_once(" ("))
        .map(|(_, err)| err.strip_suffix(')').unwrap_or(err))
        .map(|err| match err.rfind(" (os error ") {
            Some(cut) => &err[..cut],
            None => err,
        })
        .unwrap_or("");
    if error.is_empty() {
        format!("{streak} failed probes in a row")
    } else {
        format!("{streak} failed probes in a row ({error})")
    }
}

/// `192.507979ms` → `192.5ms`; anything else unchanged.
fn short_duration(text: &str) -> String {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    match text[..split].parse::<f64>() {
        Ok(value) if split > 0 => format!("{value:.1}{}", &text[split..])
            .replace(".0s", "s")
            .replace(".0ms", "ms"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_valid() {
        let text = config_text(Path::new("/sys/fs/bpf/fo-demo-test"));
        let config = crate::config::AgentConfig::parse(&text).unwrap();
        assert_eq!(config.services.len(), 1);
        assert_eq!(config.services[0].backends.len(), 3);
        assert_eq!(config.interfaces.len(), 4);
    }

    #[test]
    fn leftover_names_parse() {
        // The namespace pattern remove_leftovers relies on.
        let name = "fo-demo-primary-4242-2";
        let mut parts = name.rsplit('-');
        assert_eq!(parts.next(), Some("2"));
        assert_eq!(parts.next(), Some("4242"));
    }

    #[test]
    fn agent_lines_are_described() {
        let line = r#"2026-11-22T03:29:32.123456Z  WARN failover::agent: new flows switched service=web from=primary to=standby cause="backend failed" first_failure_to_map_update=Some(212.3ms)"#;
        assert_eq!(
            describe_agent_line(line).unwrap(),
            "new flows switched: primary -> standby (backend failed, 212.3ms after the first failed probe)"
        );
        let line = r#"2026-11-22T03:29:32.123456Z  WARN failover::agent: backend unhealthy service="web" backend=primary address=198.51.100.2 evidence="ok 3ms, fail 1ms (connect: refused, really (os error 111)), fail 2ms (connect: refused, really (os error 111))""#;
        assert_eq!(
            describe_agent_line(line).unwrap(),
            "primary (198.51.100.2) is UNHEALTHY: 2 failed probes in a row (connect: refused, really)"
        );
        let line = r#"2026-11-22T03:29:32.123456Z  INFO failover::agent: backend healthy service="web" backend=primary address=198.51.100.2 evidence="fail 1ms (x), ok 2ms, ok 3ms""#;
        assert_eq!(
            describe_agent_line(line).unwrap(),
            "primary (198.51.100.2) is healthy: 2 successful probes in a row"
        );
        assert_eq!(short_duration("1.999999s"), "2s");
        assert_eq!(short_duration("188.925806ms"), "188.9ms");
        assert_eq!(short_duration("None"), "None");
        let line = "2026-11-22T03:29:32.123456Z  INFO failover::agent: service added id=1";
        assert_eq!(describe_agent_line(line), None);
    }
}
