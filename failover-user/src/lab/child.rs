//! A process the lab started (the agent, BIRD, Prometheus, a browser, a
//! peer we are measured against): one home for how such a child is run and
//! ended. It runs in its own process group (a Ctrl-C in the terminal
//! reaches only us, and we stop it in order), inside a lab namespace when
//! given one (`setns` before exec, not `ip netns exec`, which would hide
//! bpffs), and gets SIGTERM when the thread that started it dies, so start
//! it from the thread that owns it. It is only ever signalled through the
//! pid it was started with, while that pid is still unreaped:
//! [`Child::stop`] sends SIGTERM and waits a bounded time; then, or once it
//! exited, its whole group gets SIGKILL (helpers it left behind go too),
//! and it is reaped. `Drop` does the same for one still running.

use std::{
    io,
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::{self, Command, ExitStatus},
    time::{Duration, Instant},
};

use super::netns::NetNs;

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
    /// It could not be waited for (reaped elsewhere): not signalled.
    Lost,
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
        let netns = ns.map(NetNs::open).transpose()?;
        let namespace_fd = netns.as_ref().map(AsRawFd::as_raw_fd);
        // SAFETY: getpid(2) in the parent, before the fork.
        let parent = unsafe { libc::getpid() };
        command.process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if let Some(fd) = namespace_fd
                    && libc::setns(fd, libc::CLONE_NEWNET) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                // The parent may have died before the prctl: then no
                // signal will come.
                if libc::getppid() != parent {
                    return Err(io::Error::other("the parent exited"));
                }
                Ok(())
            });
        }
        // `netns` stays open until the child has joined it.
        let child = command.spawn()?;
        drop(netns);
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
        while !self.exited()? {
            if Instant::now() >= deadline {
                self.kill()?;
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
        self.end_group();
        self.child.wait().map(Some)
    }

    /// SIGKILL to its process group (a crash), then reaped.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        // Unreaped (running or not), the group is still ours to signal;
        // reaped before, std keeps its status.
        if self.exited().is_ok() {
            self.end_group();
        }
        self.child.wait()
    }

    /// SIGTERM, then SIGKILL to its group once it exited or after the stop
    /// timeout; always reaped. Harmless once it has been reaped.
    pub fn stop(&mut self) -> Stopped {
        match self.exited() {
            Ok(false) => {}
            Ok(true) => {
                self.end_group();
                return self
                    .child
                    .wait()
                    .map_or(Stopped::Lost, Stopped::AlreadyExited);
            }
            // Reaped before: std keeps its status.
            Err(_) => {
                return match self.child.try_wait() {
                    Ok(Some(status)) => Stopped::AlreadyExited(status),
                    _ => Stopped::Lost,
                };
            }
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + self.stop_timeout;
        let mut exited = false;
        while Instant::now() < deadline {
            match self.exited() {
                Ok(true) => {
                    exited = true;
                    break;
                }
                Ok(false) => std::thread::sleep(POLL),
                Err(_) => return Stopped::Lost,
            }
        }
        self.end_group();
        match self.child.wait() {
            Ok(status) if exited => Stopped::Terminated(status),
            Ok(_) => Stopped::Killed,
            Err(_) => Stopped::Lost,
        }
    }

    /// Sends `signal` (SIGHUP to reload, say) if it is still unreaped, so
    /// its pid is still its own; whether it was sent.
    pub fn signal(&self, signal: libc::c_int) -> bool {
        if self.exited().is_err() {
            return false;
        }
        // SAFETY: kill(2) to our own, not yet reaped child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) == 0 }
    }

    /// Whether it has exited, without reaping it (so its pid, and the
    /// group it leads, stay ours to signal).
    fn exited(&self) -> io::Result<bool> {
        // SAFETY: a zeroed siginfo_t for waitid(2) to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid(2) on our own child, WNOWAIT: it is not reaped.
        let done = unsafe {
            libc::waitid(
                libc::P_PID,
                self.child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: filled by waitid; 0 while the child runs.
        Ok(unsafe { info.si_pid() } != 0)
    }

    /// SIGKILL to the process group our child leads (it was spawned with
    /// process_group(0), so the pgid is its pid, which cannot have been
    /// reused while the child is unreaped).
    fn end_group(&self) {
        // SAFETY: kill(2) to a process group of ours, as above.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Not reaped yet (running, or exited with helpers maybe left).
        if self.exited().is_ok() {
            self.stop();
        }
    }
}
