//! Building one of our eBPF crates for the BPF target from a build script
//! (shared by `failover-user/build.rs` and `tests/build.rs` with
//! `#[path]`), quietly: the nested cargo's output goes to a log file in
//! OUT_DIR, and only a failure is reported, with the log's last lines and
//! its path. (Relaying every line as a cargo warning, as aya-build does,
//! buried a first build under seventy `warning: ... Compiling` lines.)

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};

#[path = "logged.rs"]
mod logged;

/// The BPF target (every host we support is little-endian).
const TARGET: &str = "bpfel-unknown-none";

/// Builds the bins `bins` of package `name` (at `root_dir`) with nightly
/// and copies each to `OUT_DIR/<bin>`.
pub fn build(name: &str, root_dir: &Path, bins: &[&str]) -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed={}", root_dir.display());
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let target_dir = out_dir.join("ebpf-target").join(name);
    let log_path = out_dir.join(format!("{name}-build.log"));

    // Through rustup when there is one: the nightly toolchain, whatever
    // toolchain runs this build script.
    let mut cargo = if Command::new("rustup")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
    {
        let mut command = Command::new("rustup");
        command.args(["run", "nightly", "cargo"]);
        command
    } else {
        Command::new("cargo")
    };
    cargo
        .args([
            "build",
            "--package",
            name,
            "--bins",
            "--release",
            "--target",
            TARGET,
        ])
        .args(["-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        // One separator-joined list: the BPF architecture for the program's
        // cfg, debug info and BTF for the loader.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"),
        )
        // The outer build's compiler must not leak into the nested one.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    let run = logged::run(&mut cargo, &log_path).map_err(|err| {
        let missing = err
            .root_cause()
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        if missing {
            err.context("is rustup's nightly toolchain installed? `cargo xtask setup`")
        } else {
            err
        }
    })?;
    if let Err(failed) = run {
        println!(
            "cargo:warning=building the eBPF program {name} for {TARGET} failed ({}); the end of its log:",
            failed.status
        );
        for line in &failed.tail {
            println!("cargo:warning=  {line}");
        }
        println!("cargo:warning=the whole log: {}", log_path.display());
        bail!("building {name} failed; its log: {}", log_path.display());
    }
    for bin in bins {
        let built = target_dir.join(TARGET).join("release").join(bin);
        let copy = out_dir.join(bin);
        fs::copy(&built, &copy)
            .with_context(|| format!("copying {} to {}", built.display(), copy.display()))?;
    }
    Ok(())
}

/// Ends the build script on an error with its message alone (the log was
/// named already; a backtrace of the build script would bury it).
pub fn exit_on_error(result: anyhow::Result<()>) {
    if let Err(err) = result {
        eprintln!("{err:#}");
        std::process::exit(1);
    }
}
