//! Running commands with the project's tool directory on PATH.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
};

use anyhow::{Context as _, bail};

/// What every command needs: where the workspace is and the PATH that has
/// our bpf-linker first.
pub struct Env {
    pub root: PathBuf,
    pub path: String,
}

impl Env {
    /// A `cargo` command in the workspace with our PATH.
    pub fn cargo(&self) -> Command {
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command.current_dir(&self.root).env("PATH", &self.path);
        command
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Runs to completion; fails with the command line if it exits non-zero.
pub fn status(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    check(command, status)
}

pub fn check(command: &Command, status: ExitStatus) -> anyhow::Result<()> {
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// Runs and returns stdout; fails with stderr if it exits non-zero.
pub fn output(command: &mut Command) -> anyhow::Result<String> {
    let out = command
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn is_root() -> bool {
    // Without libc: the effective uid is in /proc/self/status ("Uid: r e s f").
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The eBPF crates build only for the BPF target (through aya-build in the
/// build scripts of `failover-user` and `tests`): left out of host builds.
pub const EBPF_CRATES_EXCLUDED: [&str; 4] = [
    "--exclude",
    "failover-ebpf",
    "--exclude",
    "failover-bench-ebpf",
];

/// The `failover` binary's cargo features for the demo, the tests and the
/// benchmarks: the namespace lab and `failover demo`. One set everywhere, so
/// the builds share artifacts instead of rebuilding each other's.
pub const AGENT_FEATURES: [&str; 2] = ["--features", "failover-user/lab"];

/// Runs `command` with its output in `target/xtask-<name>.log` (one line
/// says so): the log's end is shown only if it fails.
pub fn logged(command: &mut Command, name: &str) -> anyhow::Result<()> {
    let target = workspace_root().join("target");
    std::fs::create_dir_all(&target)?;
    let log_path = target.join(format!("xtask-{name}.log"));
    if let Err(failed) = crate::logged::run(command, &log_path)? {
        for line in &failed.tail {
            eprintln!("  {line}");
        }
        bail!(
            "{command:?} failed ({}); the whole log: {}",
            failed.status,
            log_path.display()
        );
    }
    Ok(())
}

/// Builds the release `failover` binary (with the lab) quietly, one line
/// for the stage; returns the binary's path.
pub fn build_release_agent(env: &Env) -> anyhow::Result<PathBuf> {
    eprintln!(
        "xtask: building failover (release, with the demo lab; a first build takes several minutes; log: target/xtask-build.log)"
    );
    let started = std::time::Instant::now();
    logged(
        env.cargo()
            .args([
                "build",
                "--release",
                "-p",
                "failover-user",
                "--bin",
                "failover",
            ])
            .args(AGENT_FEATURES),
        "build",
    )?;
    eprintln!("xtask: built in {:.0} s", started.elapsed().as_secs_f64());
    Ok(env.root.join("target/release/failover"))
}

/// `cargo run --release` of a binary of the tests crate, arguments to follow.
pub fn run_tests_binary(env: &Env, binary: &str) -> Command {
    let mut cargo = env.cargo();
    cargo.args([
        "run",
        "--release",
        "-p",
        "failover-tests",
        "--bin",
        binary,
        "--",
    ]);
    cargo
}
