//! Man pages and shell completions, generated from the clap definitions
//! (`failover generate-assets DIR`, hidden: `cargo xtask package` runs it),
//! so they never drift from the binary they ship with.

use std::{fs, path::Path};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;

/// Writes `DIR/man/failover*.8` (one page per verb) and
/// `DIR/completions/{failover.bash,_failover,failover.fish}`.
pub fn generate(out: &Path) -> anyhow::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut command = Cli::command();
    command.build();
    // Section 8: system administration (the binary is in /usr/sbin). One
    // page for the binary, one per visible verb (`failover-status.8`).
    let mut pages = vec![("failover".to_owned(), command.clone())];
    for verb in command
        .get_subcommands()
        .filter(|verb| !verb.is_hide_set() && verb.get_name() != "help")
    {
        let name = format!("failover-{}", verb.get_name());
        // clap names are 'static; a few short strings, once per run.
        let title: &'static str = Box::leak(name.clone().into_boxed_str());
        pages.push((name, verb.clone().name(title)));
    }
    for (name, page) in pages {
        let mut text = Vec::new();
        clap_mangen::Man::new(page)
            .section("8")
            .render(&mut text)
            .with_context(|| format!("rendering the man page of {name}"))?;
        let path = man.join(format!("{name}.8"));
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command.clone(), "failover", &completions)
            .with_context(|| format!("writing the {shell} completion"))?;
    }
    Ok(())
}
