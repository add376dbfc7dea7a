//! Command-line types (clap) and one module per subcommand.

mod assets;
pub mod check;
#[cfg(feature = "lab")]
pub mod demo;
pub mod detach;
pub mod failback;
pub mod host;
pub mod inspect;
pub mod ops;
pub mod run;
pub mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Kernel-level packet failover for edge Linux hosts.
#[derive(Parser)]
#[command(name = "failover", version, about)]
pub struct Cli {
    /// The agent's configuration: `run` and `check` read it; the other
    /// commands take the control socket and pin directory from it.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// The agent's control socket (default: the configuration's `[control]
    /// socket` with --config, else /run/failover/control.sock). With `run`,
    /// overrides the configuration's.
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Default pid file of a running agent.
pub const DEFAULT_PID_FILE: &str = "/run/failover.pid";

#[derive(Subcommand)]
pub enum Command {
    /// Run the agent: attach, probe backends, fail over and back.
    ///
    /// Example: failover run --config /etc/failover/failover.toml
    Run {
        /// Where to write the agent's pid (for `failover failback`).
        #[arg(long, default_value = DEFAULT_PID_FILE)]
        pid_file: PathBuf,
        /// Accept pins in a bpffs private to this mount namespace (started
        /// with `ip netns exec`): forwarding then stops with the agent.
        #[arg(long)]
        private_pins: bool,
    },
    /// Validate a configuration and explain what it would do; touches nothing.
    ///
    /// Example: failover check --config failover.toml
    Check,
    /// Fail back services held on a standby (all, or one).
    ///
    /// Example: failover failback web
    Failback {
        /// Only this service.
        service: Option<String>,
        #[arg(long)]
        dry_run: bool,
        /// Signal the agent with this pid file instead of using the control socket.
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// Services, who takes new flows, backend health with the last probe, flows.
    ///
    /// Example: failover status --watch
    Status {
        /// Refresh in place (packets per second, the last events) until
        /// Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// How often --watch refreshes (100ms to 1h).
        #[arg(long, default_value = "1s", value_parser = watch_interval)]
        interval: std::time::Duration,
        /// Stop --watch after this many refreshes.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Stop new flows to a backend; established flows finish. Follows the
    /// flows as they end; at the deadline the rest are re-picked.
    ///
    /// Example: failover drain web/primary --deadline 5m
    Drain {
        /// `service/backend`, or `backend` if the name is unique.
        backend: String,
        #[arg(long, value_parser = parse_duration_arg)]
        deadline: Option<std::time::Duration>,
        #[arg(long)]
        dry_run: bool,
        /// Return at once instead of following the flows.
        #[arg(long)]
        no_wait: bool,
    },
    /// The edge host in a fleet (`[routing]`): `drain` withdraws every VIP,
    /// so the routers send its traffic to the other hosts, and follows its
    /// flows until none is left (then it is safe to stop); `undrain`
    /// announces again. A drain lasts across restarts.
    ///
    /// Example: failover host drain
    Host {
        #[arg(value_parser = ["drain", "undrain"])]
        action: String,
        /// drain: return at once instead of following the flows.
        #[arg(long)]
        no_wait: bool,
        /// drain: stop following after this long (default 10m).
        #[arg(long, value_parser = parse_duration_arg)]
        timeout: Option<std::time::Duration>,
    },
    /// End a drain: health decides again.
    ///
    /// Example: failover undrain web/primary
    Undrain {
        backend: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Planned failover: new flows go to BACKEND alone from now on (no
    /// failed request); the others keep their flows and stand by, and take
    /// over if it fails. `--release` ends it: tiers and health decide again.
    ///
    /// Example: failover switchover web --to standby
    Switchover {
        service: String,
        #[arg(long, required_unless_present = "release", conflicts_with = "release")]
        to: Option<String>,
        #[arg(long)]
        release: bool,
        #[arg(long)]
        dry_run: bool,
    },
    /// Maintenance: no traffic (flows re-picked), no alerts; `off` returns it.
    ///
    /// Example: failover maintenance web/primary on
    Maintenance {
        backend: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-read the configuration and apply only the difference (as SIGHUP).
    ///
    /// Example: failover reload --dry-run
    Reload {
        #[arg(long)]
        dry_run: bool,
    },
    /// Failover drill: switch to the standby, verify it carries traffic,
    /// switch back, report each step.
    ///
    /// Example: failover drill web
    Drill {
        service: String,
        /// How long to wait for the standby to prove itself.
        #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
        verify_for: std::time::Duration,
        /// Say which standby would be drilled with; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Detach the data path and remove every pin (stops forwarding).
    ///
    /// Example: failover detach --pin-dir /sys/fs/bpf/failover
    Detach {
        /// Default: the configuration's with --config, else /sys/fs/bpf/failover.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Read the pinned maps (works with the agent dead).
    ///
    /// Example: failover inspect backends --json
    Inspect {
        /// Default: the configuration's with --config, else /sys/fs/bpf/failover.
        #[arg(long, global = true)]
        pin_dir: Option<PathBuf>,
        #[command(subcommand)]
        what: inspect::What,
    },
    /// A self-contained lab: client, edge host and three backends in network
    /// namespaces; kills backends and brings them back while a client keeps
    /// connecting, and shows the failover gaps (about 20 s, needs root).
    /// Everything it creates is removed when it ends, also on Ctrl-C.
    ///
    /// Example: failover demo --probe-interval 10ms (add --ipv6 for IPv6)
    Demo {
        /// Probe interval (timeout is half of it; fall 3, rise 2). The agent's
        /// own default is 1s.
        #[arg(long, default_value = "100ms", value_parser = parse_duration_arg)]
        probe_interval: std::time::Duration,
        /// Run the lab on IPv6 (VIP 2001:db8:10::10, backends in 2001:db8:b::/48).
        #[arg(long)]
        ipv6: bool,
        /// `fleet`: two edge hosts behind a router (BIRD, BGP with BFD,
        /// ECMP), one taken away and back, no connection lost.
        #[arg(value_parser = ["fleet"])]
        scenario: Option<String>,
    },
    /// Print the data path's counter and map names.
    ///
    /// Example: failover counters
    Counters,
    /// Writes the man pages and shell completions (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Directory to write `man/` and `completions/` into.
        out: PathBuf,
    },
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. 100ms, 1s)"))
}

/// `status --interval`: a duration within 100 ms and an hour.
fn watch_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = parse_duration_arg(text)?;
    let bounds = std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(3600);
    if bounds.contains(&interval) {
        Ok(interval)
    } else {
        Err(format!("{text}: must be between 100ms and 1h"))
    }
}

impl Cli {
    /// The configuration named by --config, if any.
    fn config_file(&self) -> anyhow::Result<Option<crate::config::AgentConfig>> {
        self.config
            .as_deref()
            .map(crate::config::AgentConfig::from_file)
            .transpose()
            .map_err(anyhow::Error::from)
    }

    fn config_path(&self, command: &str) -> anyhow::Result<&std::path::Path> {
        self.config
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("`failover {command}` needs --config FILE"))
    }

    /// The control socket: --socket, else the configuration's, else the
    /// default.
    fn control_socket(&self) -> anyhow::Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        Ok(self.config_file()?.map_or_else(
            || PathBuf::from(crate::config::DEFAULT_CONTROL_SOCKET),
            |config| config.control_socket,
        ))
    }

    /// The pin directory: given, else the configuration's, else the default.
    fn pin_dir(&self, given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
        if let Some(dir) = given {
            return Ok(dir);
        }
        Ok(self.config_file()?.map_or_else(
            || PathBuf::from(crate::DEFAULT_PIN_DIR),
            |config| config.pin_dir,
        ))
    }

    /// Runs the command (`None`: prints the help).
    pub fn execute(mut self) -> anyhow::Result<()> {
        use crate::control::Request;
        let json = self.json;
        let Some(command) = self.command.take() else {
            use clap::CommandFactory;
            Self::command().print_help()?;
            return Ok(());
        };
        match command {
            Command::Run {
                pid_file,
                private_pins,
            } => run::run(
                self.config_path("run")?,
                self.socket.as_deref(),
                &pid_file,
                private_pins,
            ),
            Command::Check => check::run(self.config_path("check")?),
            Command::Failback {
                service,
                dry_run,
                pid_file,
            } => match pid_file {
                Some(pid_file) => failback::run(&pid_file),
                None => ops::simple(
                    &self.control_socket()?,
                    Request::Failback { service, dry_run },
                    json,
                ),
            },
            Command::Status {
                watch,
                interval,
                count,
            } => {
                if watch {
                    if json {
                        anyhow::bail!("--watch draws a table; use --json without it");
                    }
                    status::watch(&self.control_socket()?, interval, count)
                } else {
                    status::once(&self.control_socket()?, json)
                }
            }
            Command::Drain {
                backend,
                deadline,
                dry_run,
                no_wait,
            } => ops::drain(
                &self.control_socket()?,
                &backend,
                deadline,
                dry_run,
                !no_wait,
                json,
            ),
            Command::Host {
                action,
                no_wait,
                timeout,
            } => host::run(
                &self.control_socket()?,
                action == "drain",
                !no_wait,
                timeout,
                json,
            ),
            Command::Undrain { backend, dry_run } => ops::simple(
                &self.control_socket()?,
                Request::Undrain { backend, dry_run },
                json,
            ),
            Command::Switchover {
                service,
                to,
                release: _,
                dry_run,
            } => ops::simple(
                &self.control_socket()?,
                Request::Switchover {
                    service,
                    to,
                    dry_run,
                },
                json,
            ),
            Command::Maintenance {
                backend,
                state,
                dry_run,
            } => ops::simple(
                &self.control_socket()?,
                Request::Maintenance {
                    backend,
                    on: state == "on",
                    dry_run,
                },
                json,
            ),
            Command::Reload { dry_run } => {
                ops::simple(&self.control_socket()?, Request::Reload { dry_run }, json)
            }
            Command::Drill {
                service,
                verify_for,
                dry_run,
            } => ops::drill(&self.control_socket()?, &service, verify_for, dry_run),
            #[cfg(feature = "lab")]
            Command::Demo {
                probe_interval,
                ipv6,
                scenario,
            } => demo::run(probe_interval, ipv6, scenario.as_deref() == Some("fleet")),
            #[cfg(not(feature = "lab"))]
            Command::Demo { .. } => Err(anyhow::anyhow!(
                "this `failover` was built without the demo lab (cargo feature `lab`); \
                 `cargo xtask build-and-run` builds and runs it, or build with \
                 `cargo build --release -p failover-user --features lab`"
            )),
            Command::Detach { pin_dir, dry_run } => detach::run(&self.pin_dir(pin_dir)?, dry_run),
            Command::Inspect { pin_dir, what } => inspect::run(&self.pin_dir(pin_dir)?, json, what),
            Command::GenerateAssets { out } => assets::generate(&out),
            Command::Counters => {
                println!(
                    "verdicts: {}",
                    failover_common::stats::VERDICT_NAMES.join(", ")
                );
                println!(
                    "reasons:  {}",
                    failover_common::stats::reason::NAMES.join(", ")
                );
                println!("maps:     {}", failover_common::names::ALL.join(", "));
                Ok(())
            }
        }
    }
}
