//! `cargo xtask bench`: runs the benchmark binary of the tests crate in release.

use std::process::ExitCode;

use crate::cmd::{self, Env};

pub fn run(env: &Env, quick: bool, only: Option<&str>) -> anyhow::Result<ExitCode> {
    // The agent under test is the release build, like the bench itself.
    let agent = cmd::build_release_agent(env)?;
    let mut cargo = cmd::run_tests_binary(env, "failover-bench");
    cargo.env("FAILOVER_BIN", agent);
    if quick {
        cargo.arg("--quick");
    }
    if let Some(only) = only {
        cargo.args(["--only", only]);
    }
    cmd::status(&mut cargo)?;
    Ok(ExitCode::SUCCESS)
}
