//! Project tasks. `cargo xtask <command>`; every command runs `setup` first.

mod bench;
mod cmd;
mod fuzz;
#[path = "../../build-support/logged.rs"]
mod logged;
mod package;
mod run;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "failover project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what builds and tests need (idempotent; seconds when done).
    Setup,
    /// Build the `failover` binary (release) and run it with ARGS.
    ///
    /// Example: cargo xtask build-and-run -- counters
    BuildAndRun {
        /// Arguments for `failover`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit, BPF_PROG_TEST_RUN fixtures, netns integration.
    Test {
        /// Extra arguments for the test binaries (after `--`), e.g. a filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure data path, packet and request rates, failover and control
    /// plane against baselines and peers in the same run; writes BENCHMARKS.md.
    Bench {
        /// A short sanity run (report under target/).
        #[arg(long)]
        quick: bool,
        /// Only these sections, comma-separated (report under target/).
        #[arg(long)]
        only: Option<String>,
    },
    /// Build the Debian package (release binary, unit, sample
    /// configuration, man pages, completions, dashboard, alert rules) into
    /// target/debian/, checked by lintian.
    Package {
        /// Package this binary instead of building the release one.
        #[arg(long)]
        binary: Option<std::path::PathBuf>,
        /// Where to write it (default: target/debian).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Random and mutated frames through the real XDP program, checked
    /// against invariants (a million by default); prints seed and rate.
    Fuzz {
        /// How many frames (1 to 1e9).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
        packets: Option<u64>,
        /// Replay a run.
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run().map(|_| ExitCode::SUCCESS),
        Command::BuildAndRun { args } => {
            setup::run().and_then(|env| run::build_and_run(&env, &args))
        }
        Command::Test { args } => setup::run().and_then(|env| test::run(&env, &args)),
        Command::Bench { quick, only } => {
            setup::run().and_then(|env| bench::run(&env, quick, only.as_deref()))
        }
        Command::Package { binary, out } => setup::run().and_then(|env| {
            package::run(&env, binary.as_deref(), out.as_deref()).map(|_| ExitCode::SUCCESS)
        }),
        Command::Fuzz { packets, seed } => {
            setup::run().and_then(|env| fuzz::run(&env, packets, seed))
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
