//! Command-line types (clap) and one module per subcommand.

pub mod check;
pub mod demo;
pub mod detach;
pub mod failback;
pub mod inspect;
pub mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Kernel-level packet failover for edge Linux hosts.
#[derive(Parser)]
#[command(name = "failover", version, about)]
pub struct Cli {
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
    /// Ask the running agent to fail back services held on a standby.
    ///
    /// Example: failover failback
    Failback {
        #[arg(long, default_value = DEFAULT_PID_FILE)]
        pid_file: PathBuf,
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
        /// Machine-readable output.
        #[arg(long, global = true)]
        json: bool,
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
    crate::config::parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration (e.g. 100ms, 1s)"))
}
