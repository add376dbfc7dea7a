//! `cargo xtask bench`: runs the benchmark binary of the tests crate in release.

use std::process::ExitCode;

use crate::{
    cmd::{self, Env},
    setup,
};

pub fn run(env: &Env, quick: bool, only: Option<&str>) -> anyhow::Result<ExitCode> {
    // HAProxy and nftables are the peers measured beside us.
    setup::ensure_packages(setup::BENCH_PACKAGES)?;
    let mut cargo = env.cargo();
    cargo.args([
        "run",
        "--release",
        "-p",
        "failover-tests",
        "--bin",
        "failover-bench",
        "--",
    ]);
    if quick {
        cargo.arg("--quick");
    }
    if let Some(only) = only {
        cargo.args(["--only", only]);
    }
    cmd::status(&mut cargo)?;
    Ok(ExitCode::SUCCESS)
}
