//! `failover`: the agent and CLI. Only dispatches; the work lives in the library.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use failover::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo narrates on stdout; its own library logs would only clutter it.
    let default_level = if matches!(cli.command, Some(Command::Demo { .. })) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        None => {
            let _ = Cli::command().print_help();
            return ExitCode::SUCCESS;
        }
        Some(Command::Run { config, pid_file }) => cli::run::run(&config, &pid_file),
        Some(Command::Check { config }) => cli::check::run(&config),
        Some(Command::Failback { pid_file }) => cli::failback::run(&pid_file),
        Some(Command::Demo { probe_interval }) => cli::demo::run(probe_interval),
        Some(Command::Detach { pin_dir }) => cli::detach::run(&pin_dir),
        Some(Command::Inspect {
            pin_dir,
            json,
            what,
        }) => cli::inspect::run(&pin_dir, json, what),
        Some(Command::Counters) => {
            println!(
                "verdicts: {}",
                failover_common::stats::VERDICT_NAMES.join(", ")
            );
            println!(
                "reasons:  {}",
                failover_common::stats::reason::NAMES.join(", ")
            );
            println!("maps:     {}", failover_common::names::ALL.join(", "));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("failover: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
