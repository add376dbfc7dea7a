//! `failover run`: the agent process.

use std::path::Path;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::agent;

/// Runs the agent on `config_path`; `socket` (from `--socket`) overrides
/// the configuration's control socket.
pub fn run(
    config_path: &Path,
    socket: Option<&Path>,
    pid_file: &Path,
    private_pins: bool,
) -> anyhow::Result<()> {
    let source = agent::Source {
        path: config_path.to_owned(),
        socket: socket.map(Path::to_owned),
    };
    let config = source.load()?;
    // Held until the process ends: one agent per pin directory.
    let _lock = agent::PinDirLock::acquire(&config.pin_dir, private_pins)?;
    if private_pins && crate::dataplane::bpffs::alone_in_mount_namespace() {
        tracing::warn!(pin_dir = %config.pin_dir.display(), "running in a private mount namespace (--private-pins): the pins die with the agent, and forwarding stops when it stops");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut user1 = signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?;
        let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let (commands_tx, commands) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            loop {
                let command = tokio::select! {
                    Some(()) = user1.recv() => agent::Command::Failback,
                    Some(()) = hangup.recv() => agent::Command::Reload,
                    else => return,
                };
                if commands_tx.send(command).await.is_err() {
                    return;
                }
            }
        });
        if let Err(err) = agent::write_pid_file(pid_file) {
            tracing::warn!(pid_file = %pid_file.display(), cause = %crate::util::chain(&err), "cannot write pid file; `failover failback` will not find the agent");
        }
        let shutdown = async move {
            tokio::select! {
                _ = terminate.recv() => info!("SIGTERM"),
                _ = interrupt.recv() => info!("SIGINT"),
            }
        };
        let result = agent::run(source, config, commands, shutdown).await;
        agent::remove_pid_file(pid_file);
        result.map_err(anyhow::Error::from)
    })
}
