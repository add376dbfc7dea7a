//! `cargo xtask build-and-run -- ARGS`: build `failover` in release and run it
//! with ARGS. Without arguments it runs `failover demo`, the self-contained
//! failover lab in network namespaces (needs root; removes everything it
//! created when it ends, also on Ctrl-C).

use std::{os::unix::process::CommandExt as _, process::ExitCode};

use anyhow::Context as _;

use crate::cmd::{self, Env};

pub fn build_and_run(env: &Env, args: &[String]) -> anyhow::Result<ExitCode> {
    let binary = cmd::build_release_agent(env)?;
    let demo = ["demo".to_owned()];
    let args = if args.is_empty() { &demo[..] } else { args };
    eprintln!("xtask: running `failover {}`", args.join(" "));
    let mut command = std::process::Command::new(&binary);
    command.args(args).env("PATH", &env.path);
    // Ctrl-C goes to the whole foreground group: let `failover` handle it
    // (the demo cleans up its lab) while xtask waits for it to finish.
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let status = command
        .status()
        .with_context(|| format!("running {}", binary.display()));
    // SAFETY: restoring the default disposition.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let status = status?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}
