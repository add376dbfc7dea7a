//! `failover`: the agent and CLI. Only dispatches; the work lives in the library.

use std::process::ExitCode;

use clap::Parser;
use failover::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let long_running = matches!(
        cli.command,
        Some(Command::Run { .. } | Command::Demo { .. })
    );
    if !long_running {
        // A CLI piped into `head` exits quietly when the reader goes,
        // as other tools do. (The agent keeps ignoring SIGPIPE: a dead
        // log reader must not kill it.)
        // SAFETY: setting a signal disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
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
    match cli.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("failover: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
