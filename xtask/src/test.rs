//! `cargo xtask test`: every test of the workspace. As root all of them run;
//! a privileged test that cannot set itself up fails (it never skips). As
//! another user only the unprivileged ones run and the command says which
//! were left out, and fails.

use std::{fs, process::ExitCode};

use anyhow::Context as _;

use crate::cmd::{self, Env};

pub fn run(env: &Env, args: &[String]) -> anyhow::Result<ExitCode> {
    if !cmd::is_root() {
        return run_unprivileged(env);
    }
    remove_stale_leftovers();
    // Agent tests run the real `failover` binary as a separate process.
    cmd::status(
        env.cargo()
            .args(["build", "-p", "failover-user", "--bin", "failover"])
            .args(cmd::AGENT_FEATURES),
    )?;
    let mut cargo = env.cargo();
    cargo.env("FAILOVER_BIN", env.root.join("target/debug/failover"));
    cargo
        .args(["test", "--workspace"])
        .args(cmd::EBPF_CRATES_EXCLUDED);
    if !args.is_empty() {
        cargo.arg("--").args(args);
    }
    cmd::status(&mut cargo)?;
    Ok(ExitCode::SUCCESS)
}

fn run_unprivileged(env: &Env) -> anyhow::Result<ExitCode> {
    cmd::status(
        env.cargo()
            .args(["test", "--workspace", "--lib", "--bins"])
            .args(cmd::EBPF_CRATES_EXCLUDED),
    )?;
    let privileged = privileged_tests(env)?;
    eprintln!(
        "\nxtask: NOT RUN (need root for BPF and network namespaces): {}\n\
         xtask: run `sudo -E cargo xtask test` for the full suite.",
        privileged.join(", ")
    );
    Ok(ExitCode::FAILURE)
}

/// Integration test targets of the `tests` crate: all load BPF or make namespaces.
fn privileged_tests(env: &Env) -> anyhow::Result<Vec<String>> {
    let dir = env.root.join("tests/tests");
    // A test target is `tests/<name>.rs` or `tests/<name>/main.rs`.
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            match name.strip_suffix(".rs") {
                Some(stem) => Some(format!("tests/{stem}")),
                None => entry
                    .path()
                    .join("main.rs")
                    .is_file()
                    .then(|| format!("tests/{name}")),
            }
        })
        .collect();
    names.sort();
    Ok(names)
}

fn pid_alive(pid: &str) -> bool {
    std::path::Path::new("/proc").join(pid).exists()
}

/// Namespaces (`fo-<role>-<pid>-<n>`) and pin directories
/// (`/sys/fs/bpf/fo-test-<pid>-<n>`) left by test processes that were killed
/// before their guards ran. Only those of dead processes are touched.
fn remove_stale_leftovers() {
    if let Ok(list) = cmd::output(std::process::Command::new("ip").args(["netns", "list"])) {
        for name in list
            .lines()
            .filter_map(|line| line.split_whitespace().next())
        {
            // fo-<role>-<pid>-<n>; roles may contain dashes, so read from the end.
            let parts: Vec<&str> = name.split('-').collect();
            if parts.len() >= 4 && parts[0] == "fo" && !pid_alive(parts[parts.len() - 2]) {
                eprintln!("xtask: removing stale namespace {name}");
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", name])
                    .status();
            }
        }
    }
    if let Ok(entries) = fs::read_dir("/sys/fs/bpf") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix("fo-test-")
                && let Some(pid) = rest.split('-').next()
                && !pid_alive(pid)
            {
                eprintln!("xtask: removing stale pins {name}");
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}
