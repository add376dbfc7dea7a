//! A process the lab started (the agent, BIRD, Prometheus, a browser): one
//! home for how such a child is run and ended. It runs in its own process
//! group, inside a lab namespace when given one, and gets SIGTERM if the
//! thread that started it dies. It is only ever signalled by the pid it was
//! started with: [`Child::stop`] sends SIGTERM, waits a bounded time, then
//! SIGKILLs its whole group (so helpers of a hung process go too), and it is
//! always reaped; `Drop` does the same for one still running.

use std::{
    io,
    os::unix::process::CommandExt,
    process::{self, Command, ExitStatus},
    time::{Duration, Instant},
};

use super::netns::{NetNs, spawn_inside};

/// How often a wait looks whether the child has exited.
const POLL: Duration = Duration::from_millis(10);

/// How [`Child::stop`] ended the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It had exited before it was asked to.
    AlreadyExited(ExitStatus),
    /// It exited on SIGTERM within the grace period.
    Terminated(ExitStatus),
    /// It ignored SIGTERM and was SIGKILLed.
    Killed,
}

/// A started child process; stopped and reaped in `Drop`.
pub struct Child {
    child: process::Child,
    stop_timeout: Duration,
}

impl Child {
    /// Spawns `command` in its own process group, inside `ns` if given;
    /// [`Self::stop`] grants it `stop_timeout` after SIGTERM.
    pub fn spawn(
        command: &mut Command,
        ns: Option<&NetNs>,
        stop_timeout: Duration,
    ) -> io::Result<Self> {
        command.process_group(0);
        let child = match ns {
            Some(ns) => {
                let netns = ns.open()?;
                spawn_inside(command, &netns);
                command.spawn()?
            }
            None => command.spawn()?,
        };
        Ok(Self {
            child,
            stop_timeout,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How long [`Self::stop`] waits after SIGTERM.
    pub fn set_stop_timeout(&mut self, timeout: Duration) {
        self.stop_timeout = timeout;
    }

    /// The process itself (its pipes, say).
    pub fn inner(&mut self) -> &mut process::Child {
        &mut self.child
    }

    /// The exit status if it has exited (and reaps it).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits up to `bound` for it to exit by itself; past that it is
    /// killed, and `None` says so.
    pub fn wait_bounded(&mut self, bound: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                self.kill()?;
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL to its process group (a crash), then reaped.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        self.signal_group(libc::SIGKILL);
        self.child.wait()
    }

    /// SIGTERM, then SIGKILL to its group if it is still there after the
    /// stop timeout; always reaped. Harmless once it has been reaped.
    pub fn stop(&mut self) -> Stopped {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Stopped::AlreadyExited(status);
        }
        // SAFETY: kill(2) to our own, not yet reaped child: the pid cannot
        // have been reused.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + self.stop_timeout;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return Stopped::Terminated(status),
                Ok(None) => std::thread::sleep(POLL),
                Err(_) => break,
            }
        }
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
        Stopped::Killed
    }

    fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: kill(2) to the process group our not yet reaped child
        // leads (it was spawned with process_group(0), so its pgid is its
        // pid, which cannot have been reused while it is unreaped).
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), signal) };
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}
