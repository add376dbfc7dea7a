//! `cargo xtask fuzz [--packets N] [--seed S]`: the packet fuzzer of the
//! tests crate, in release (a million frames by default; the test suite
//! runs 100,000 of the same).

use std::process::ExitCode;

use anyhow::bail;

use crate::cmd::{self, Env};

pub fn run(env: &Env, packets: Option<u64>, seed: Option<u64>) -> anyhow::Result<ExitCode> {
    if !cmd::is_root() {
        bail!("the fuzzer loads BPF and makes a network namespace: run it as root");
    }
    let mut cargo = cmd::run_tests_binary(env, "failover-fuzz");
    if let Some(packets) = packets {
        cargo.args(["--packets", &packets.to_string()]);
    }
    if let Some(seed) = seed {
        cargo.args(["--seed", &seed.to_string()]);
    }
    cmd::status(&mut cargo)?;
    Ok(ExitCode::SUCCESS)
}
