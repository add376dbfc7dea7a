//! `cargo xtask bench`: runs the benchmark binary of the tests crate in release.

use std::process::ExitCode;

use crate::cmd::{self, Env};

pub fn run(env: &Env, quick: bool, only: Option<&str>) -> anyhow::Result<ExitCode> {
    // The agent under test is the release build, like the bench itself.
    cmd::status(env.cargo().args([
        "build",
        "--release",
        "-p",
        "failover-user",
        "--bin",
        "failover",
    ]))?;
    let mut cargo = env.cargo();
    cargo.env("FAILOVER_BIN", env.root.join("target/release/failover"));
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
