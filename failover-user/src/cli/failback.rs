//! `failover failback`: signal the running agent (SIGUSR1) to release holds.

use std::path::Path;

use anyhow::{Context as _, bail};

pub fn run(pid_file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(pid_file)
        .with_context(|| format!("reading {} (is the agent running?)", pid_file.display()))?;
    let pid: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} holds no pid", pid_file.display()))?;
    if !crate::agent::is_agent(pid) {
        bail!(
            "pid {pid} in {} is not a running `failover run` (a stale pid file?); nothing was signalled",
            pid_file.display()
        );
    }
    let pid = pid as i32;
    // SAFETY: plain kill(2) to the pid the agent wrote.
    if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
        bail!(
            "signalling agent {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    println!("asked agent {pid} to fail back every held service");
    Ok(())
}
