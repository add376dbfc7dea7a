//! `failover`: the agent and CLI. Only dispatches; the work lives in the library.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Kernel-level packet failover for edge Linux hosts.
#[derive(Parser)]
#[command(name = "failover", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the data path's counter and map names (what `inspect` will show).
    ///
    /// Example: failover counters
    Counters,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => {
            let _ = Cli::command().print_help();
            println!(
                "\nThe agent (`failover run`) and the demo lab arrive with the agent issue; \
                 today this binary embeds and loads the XDP data path for the tests."
            );
            ExitCode::SUCCESS
        }
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
            ExitCode::SUCCESS
        }
    }
}
