//! `cargo xtask setup`: everything a fresh machine needs to build and test,
//! installed once into the project (`.tools/`, git-ignored) and checked in
//! seconds afterwards.
//!
//! - nightly toolchain with `rust-src` (the eBPF crate builds core itself);
//! - bpf-linker built against nightly rustc's own libLLVM, because the
//!   linker's LLVM must match rustc's and Debian has no LLVM of that version;
//! - the system tools the tests and the benchmark call (iproute2, HAProxy,
//!   nftables, BIRD).

use std::{
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd::{self, Env};

const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages and the command that shows each is installed.
/// (HAProxy and nftables are the peers the benchmark measures us against;
/// the test run includes its quick pass. BIRD is the routing daemon of the
/// fleet labs: the upstream router and each edge host's BGP speaker.
/// Chromium loads the status page, Prometheus scrapes the agent and
/// evaluates the alert rules, lintian checks the package.)
const PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip"),
    ("haproxy", "haproxy"),
    ("nftables", "nft"),
    ("bird2", "bird"),
    ("chromium", "chromium"),
    ("prometheus", "promtool"),
    ("lintian", "lintian"),
];

/// Services the packages start on the host at install, which the tests run
/// themselves in their namespaces instead.
const HOST_SERVICES: &[(&str, &str)] = &[
    ("bird2", "bird.service"),
    ("prometheus", "prometheus.service"),
    ("prometheus", "prometheus-node-exporter.service"),
];

pub fn run() -> anyhow::Result<Env> {
    let root = cmd::workspace_root();
    let tools = root.join(".tools");
    ensure_nightly()?;
    let linker_bin = ensure_bpf_linker(&tools)?;
    ensure_packages(PACKAGES)?;
    let path = format!(
        "{}:{}",
        linker_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Ok(Env { root, path })
}

fn nightly(args: &[&str]) -> Command {
    let mut command = Command::new("rustc");
    command.arg("+nightly").args(args);
    command
}

fn ensure_nightly() -> anyhow::Result<()> {
    if nightly(&["-V"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        eprintln!(
            "xtask: nightly toolchain missing; installing it with rust-src (log: target/xtask-rustup.log)"
        );
        cmd::logged(
            Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]),
            "rustup",
        )
        .context(
            "the eBPF program needs a nightly toolchain with rust-src; \
             install it with `rustup toolchain install nightly --component rust-src`",
        )?;
    }
    let sysroot = sysroot()?;
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        eprintln!("xtask: adding rust-src to nightly");
        cmd::status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

fn sysroot() -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(
        cmd::output(&mut nightly(&["--print", "sysroot"]))?.trim(),
    ))
}

/// The LLVM version nightly rustc was built with, e.g. "22.1.4".
fn llvm_version() -> anyhow::Result<String> {
    let verbose = cmd::output(&mut nightly(&["-vV"]))?;
    verbose
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .map(|v| v.trim().to_owned())
        .context("`rustc +nightly -vV` does not name its LLVM version")
}

/// Builds bpf-linker into `.tools/bpf-linker` unless the one there was built
/// for the same LLVM and sysroot. Returns its bin directory.
fn ensure_bpf_linker(tools: &Path) -> anyhow::Result<PathBuf> {
    let prefix = tools.join("bpf-linker");
    let bin_dir = prefix.join("bin");
    let sysroot = sysroot()?;
    let llvm = llvm_version()?;
    let stamp_path = prefix.join("stamp");
    let stamp = format!(
        "bpf-linker {BPF_LINKER_VERSION} llvm {llvm} sysroot {}\n",
        sysroot.display()
    );
    if bin_dir.join("bpf-linker").is_file()
        && fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp)
    {
        return Ok(bin_dir);
    }

    let major = llvm.split('.').next().unwrap_or_default();
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {llvm} (about a minute, once)"
    );
    let llvm_prefix = tools.join("llvm-prefix");
    let _ = fs::remove_dir_all(&llvm_prefix);
    fs::create_dir_all(llvm_prefix.join("lib"))?;
    fs::create_dir_all(llvm_prefix.join("bin"))?;
    let libllvm = find_libllvm(&sysroot.join("lib"))?;
    symlink(&libllvm, llvm_prefix.join("lib/libLLVM.so"))?;
    // bpf-linker's build only asks llvm-config for the version.
    let llvm_config = llvm_prefix.join("bin/llvm-config");
    fs::write(&llvm_config, format!("#!/bin/sh\necho {llvm}\n"))?;
    fs::set_permissions(&llvm_config, fs::Permissions::from_mode(0o755))?;

    let sysroot_lib = sysroot.join("lib");
    let mut install = Command::new("cargo");
    install
        .env("LLVM_PREFIX", &llvm_prefix)
        // Without the rpath the linker cannot find rustc's libLLVM at run time.
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", sysroot_lib.display()),
        )
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
            "--force",
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .arg("--root")
        .arg(&prefix);
    cmd::logged(&mut install, "bpf-linker").context("building bpf-linker")?;
    cmd::output(Command::new(bin_dir.join("bpf-linker")).arg("--version"))
        .context("the freshly built bpf-linker does not run")?;
    fs::write(&stamp_path, stamp)?;
    Ok(bin_dir)
}

fn find_libllvm(lib_dir: &Path) -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = fs::read_dir(lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM") && n.contains(".so"))
        })
        // One of the names is a linker script (INPUT(...)); link the ELF itself.
        .filter(|path| is_elf(path))
        .collect();
    candidates.sort();
    match candidates.into_iter().next() {
        Some(path) => Ok(path),
        None => bail!(
            "no libLLVM in {}: this nightly does not ship rustc's LLVM as a shared library",
            lib_dir.display()
        ),
    }
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// Installs the missing ones of `packages` with apt-get (as root).
fn ensure_packages(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, probe)| {
            Command::new("sh")
                .args(["-c", &format!("command -v {probe}")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !cmd::is_root() {
        bail!(
            "missing Debian packages {missing:?}; install them as root (apt-get install {})",
            missing.join(" ")
        );
    }
    eprintln!(
        "xtask: installing the Debian packages {} (log: target/xtask-apt-install.log)",
        missing.join(", ")
    );
    cmd::logged(
        Command::new("apt-get").arg("update").arg("-q"),
        "apt-update",
    )?;
    cmd::logged(
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-install",
    )?;
    // The labs run their own daemons in their namespaces; the packages'
    // services, started on the host by the install, would route there or
    // hold their ports.
    if std::path::Path::new("/run/systemd/system").exists() {
        for (package, service) in HOST_SERVICES {
            if missing.contains(package) {
                let _ = Command::new("systemctl")
                    .args(["disable", "--now", service])
                    .status();
            }
        }
    }
    Ok(())
}
