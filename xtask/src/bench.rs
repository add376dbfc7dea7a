//! `cargo xtask bench`: runs the benchmark binary of the tests crate in release.

use std::process::ExitCode;

use crate::cmd::{self, Env};

pub fn run(env: &Env, quick: bool) -> anyhow::Result<ExitCode> {
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
    cmd::status(&mut cargo)?;
    Ok(ExitCode::SUCCESS)
}
