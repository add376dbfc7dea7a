//! Command-line types (clap) and one module per subcommand.

pub mod check;
pub mod demo;
pub mod detach;
pub mod failback;
pub mod inspect;
pub mod ops;
pub mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Kernel-level packet failover for edge Linux hosts.
#[derive(Parser)]
#[command(name = "failover", version, about)]
pub struct Cli {
    /// The agent's control socket.
    #[arg(long, global = true, default_value = crate::config::DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
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
        #[arg(long, short)]
        config: PathBuf,
        /// Where to write the agent's pid (for `failover failback`).
        #[arg(long, default_value = DEFAULT_PID_FILE)]
        pid_file: PathBuf,
    },
    /// Validate a configuration and explain what it would do; touches nothing.
    ///
    /// Example: failover check --config failover.toml
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
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
    /// Example: failover status
    Status,
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
    },
    /// Detach the data path and remove every pin (stops forwarding).
    ///
    /// Example: failover detach --pin-dir /sys/fs/bpf/failover
    Detach {
        #[arg(long, default_value = crate::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Read the pinned maps (works with the agent dead).
    ///
    /// Example: failover inspect backends --json
    Inspect {
        #[arg(long, default_value = crate::DEFAULT_PIN_DIR, global = true)]
        pin_dir: PathBuf,
        #[command(subcommand)]
        what: inspect::What,
    },
    /// A self-contained lab: client, edge host and three backends in network
    /// namespaces; kills backends and brings them back while a client keeps
    /// connecting, and shows the failover gaps (about 20 s, needs root).
    /// Everything it creates is removed when it ends, also on Ctrl-C.
    ///
    /// Example: failover demo --probe-interval 10ms
    Demo {
        /// Probe interval (timeout is half of it; fall 3, rise 2). The agent's
        /// own default is 1s.
        #[arg(long, default_value = "100ms", value_parser = parse_duration_arg)]
        probe_interval: std::time::Duration,
    },
    /// Print the data path's counter and map names.
    ///
    /// Example: failover counters
    Counters,
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. 100ms, 1s)"))
}
