//! `failover`: the agent and CLI. Only dispatches; the work lives in the library.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use failover::{
    cli::{self, Cli, Command},
    control::Request,
};

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
    let json = cli.json;
    let result = match cli.command {
        None => {
            let _ = Cli::command().print_help();
            return ExitCode::SUCCESS;
        }
        Some(Command::Run { config, pid_file }) => cli::run::run(&config, &pid_file),
        Some(Command::Check { config }) => cli::check::run(&config),
        Some(Command::Failback {
            service,
            dry_run,
            pid_file,
        }) => match pid_file {
            Some(pid_file) => cli::failback::run(&pid_file),
            None => cli::ops::simple(&cli.socket, Request::Failback { service, dry_run }, json),
        },
        Some(Command::Status) => cli::ops::status(&cli.socket, json),
        Some(Command::Drain {
            backend,
            deadline,
            dry_run,
            no_wait,
        }) => cli::ops::drain(&cli.socket, &backend, deadline, dry_run, !no_wait, json),
        Some(Command::Undrain { backend, dry_run }) => {
            cli::ops::simple(&cli.socket, Request::Undrain { backend, dry_run }, json)
        }
        Some(Command::Switchover {
            service,
            to,
            release: _,
            dry_run,
        }) => cli::ops::simple(
            &cli.socket,
            Request::Switchover {
                service,
                to,
                dry_run,
            },
            json,
        ),
        Some(Command::Maintenance {
            backend,
            state,
            dry_run,
        }) => cli::ops::simple(
            &cli.socket,
            Request::Maintenance {
                backend,
                on: state == "on",
                dry_run,
            },
            json,
        ),
        Some(Command::Reload { dry_run }) => {
            cli::ops::simple(&cli.socket, Request::Reload { dry_run }, json)
        }
        Some(Command::Drill {
            service,
            verify_for,
        }) => cli::ops::drill(&cli.socket, &service, verify_for),
        Some(Command::Demo { probe_interval }) => cli::demo::run(probe_interval),
        Some(Command::Detach { pin_dir }) => cli::detach::run(&pin_dir),
        Some(Command::Inspect { pin_dir, what }) => cli::inspect::run(&pin_dir, json, what),
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
