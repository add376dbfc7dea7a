//! The real agent (`failover run`) as a child process inside a namespace.
//!
//! The child joins the namespace with `setns` in `pre_exec`, not through `ip
//! netns exec` (which remounts /sys and hides bpffs). Its output is appended
//! to a log file, never a pipe: a dropped pipe would kill it with EPIPE and
//! leave its pins behind. It gets SIGTERM if the thread that started it dies
//! (parent-death signal), and runs in its own process group, so a Ctrl-C in
//! the terminal reaches only the parent, which then stops it in order.
//! [`AgentProcess::stop`] and `Drop` send SIGTERM, then SIGKILL after a grace
//! period, and always reap it.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

pub use super::child::Stopped;
use super::{child::Child, netns::NetNs};

/// How long the agent gets to exit after SIGTERM before SIGKILL, unless
/// [`AgentProcess::with_stop_timeout`] says otherwise.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A `failover run` child process; stopped and reaped in `Drop`.
pub struct AgentProcess {
    child: Child,
    log: PathBuf,
}

impl AgentProcess {
    /// Starts `<binary> run --config <config> --pid-file <pid_file>` inside
    /// `ns` with `RUST_LOG=info`, appending its output to `log`.
    pub fn start(
        ns: &NetNs,
        binary: &Path,
        config: &Path,
        pid_file: &Path,
        log: &Path,
    ) -> io::Result<Self> {
        Self::start_with(ns, binary, config, pid_file, log, &[])
    }

    /// [`Self::start`] with more arguments for `failover run`.
    pub fn start_with(
        ns: &NetNs,
        binary: &Path,
        config: &Path,
        pid_file: &Path,
        log: &Path,
        extra: &[&str],
    ) -> io::Result<Self> {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", log.display())))?;
        let mut command = Command::new(binary);
        command
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--pid-file")
            .arg(pid_file)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let child = Child::spawn(&mut command, Some(ns), STOP_TIMEOUT)?;
        Ok(Self {
            child,
            log: log.to_owned(),
        })
    }

    /// How long [`Self::stop`] (and `Drop`) wait after SIGTERM.
    pub fn with_stop_timeout(mut self, timeout: Duration) -> Self {
        self.child.set_stop_timeout(timeout);
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The log file the agent writes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the agent has exited (and reaps it).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends `signal` while the agent is unreaped; whether it was sent.
    pub fn signal(&self, signal: libc::c_int) -> bool {
        self.child.signal(signal)
    }

    /// SIGKILL (a crash), then waits for the exit and reaps it.
    pub fn sigkill(&mut self) -> io::Result<ExitStatus> {
        self.child.kill()
    }

    /// SIGTERM, then SIGKILL if it is still there after the stop timeout;
    /// always reaped. Harmless once the process has been reaped.
    pub fn stop(&mut self) -> Stopped {
        self.child.stop()
    }
}
