//! `cargo xtask package`: the Debian package. The production `failover`
//! binary (release, without the lab), the systemd unit, the sample
//! configuration, man pages and shell completions generated from the clap
//! definitions, the Grafana dashboard and Prometheus alert rules; built
//! with `dpkg-deb` and checked with `lintian` when it is installed (an
//! error fails the build).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd::{self, Env};

const MAINTAINER: &str = "failover maintainers <maintainers@failover.invalid>";
/// The Debian revision of the package of this version.
const REVISION: &str = "1";

/// `binary`: package this one instead of building the release binary (the
/// test suite packages its own build).
pub fn run(env: &Env, binary: Option<&Path>, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let binary = match binary {
        Some(binary) => binary.to_owned(),
        None => build(env)?,
    };
    let out = out.map_or_else(|| env.root.join("target/debian"), Path::to_owned);
    let version = format!("{}-{REVISION}", env!("CARGO_PKG_VERSION"));
    let name = format!("failover_{version}_amd64");
    let stage = out.join(&name);
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
    stage_files(env, &binary, &stage)?;
    write_control(&stage, &version)?;
    let deb = out.join(format!("{name}.deb"));
    cmd::status(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    lintian(&deb)?;
    eprintln!("xtask: package written: {}", deb.display());
    Ok(deb)
}

/// The release binary without the lab (its own profile: the lab build the
/// tests and the demo use stays as it is).
fn build(env: &Env) -> anyhow::Result<PathBuf> {
    cmd::status(env.cargo().args([
        "build",
        "--profile",
        "production",
        "-p",
        "failover-user",
        "--bin",
        "failover",
    ]))?;
    Ok(env.root.join("target/production/failover"))
}

fn stage_files(env: &Env, binary: &Path, stage: &Path) -> anyhow::Result<()> {
    let put = |relative: &str, contents: &[u8], mode: u32| -> anyhow::Result<()> {
        let path = stage.join(relative);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        set_mode(&path, mode)
    };
    let dist = env.root.join("dist");
    let read = |path: &Path| fs::read(path).with_context(|| format!("reading {}", path.display()));

    put("usr/sbin/failover", &read(binary)?, 0o755)?;
    cmd::status(
        Command::new("strip")
            .args([
                "--strip-unneeded",
                "--remove-section=.comment",
                "--remove-section=.note",
            ])
            .arg(stage.join("usr/sbin/failover")),
    )?;
    // The unit as shipped in dist/, with the packaged binary's path.
    let unit = String::from_utf8(read(&dist.join("failover.service"))?)?
        .replace("/usr/local/bin/failover", "/usr/sbin/failover");
    put(
        "lib/systemd/system/failover.service",
        unit.as_bytes(),
        0o644,
    )?;
    for (packaged, shipped) in [
        ("etc/failover/failover.toml", "failover.toml"),
        (
            "usr/share/failover/grafana/failover-dashboard.json",
            "grafana/failover-dashboard.json",
        ),
        (
            "usr/share/failover/prometheus/failover-alerts.yml",
            "prometheus/failover-alerts.yml",
        ),
    ] {
        put(packaged, &read(&dist.join(shipped))?, 0o644)?;
    }

    // Man pages and completions from the binary's own clap definitions.
    let assets = stage.with_extension("assets");
    let _ = fs::remove_dir_all(&assets);
    cmd::status(Command::new(binary).arg("generate-assets").arg(&assets))?;
    for entry in fs::read_dir(assets.join("man"))? {
        let path = entry?.path();
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        put(
            &format!("usr/share/man/man8/{file}.gz"),
            &gzip(&read(&path)?)?,
            0o644,
        )?;
    }
    let completions = assets.join("completions");
    for (packaged, generated) in [
        (
            "usr/share/bash-completion/completions/failover",
            "failover.bash",
        ),
        ("usr/share/zsh/vendor-completions/_failover", "_failover"),
        (
            "usr/share/fish/vendor_completions.d/failover.fish",
            "failover.fish",
        ),
    ] {
        put(packaged, &read(&completions.join(generated))?, 0o644)?;
    }
    fs::remove_dir_all(&assets)?;

    put(
        "usr/share/doc/failover/copyright",
        copyright().as_bytes(),
        0o644,
    )?;
    put(
        "usr/share/doc/failover/changelog.Debian.gz",
        &gzip(changelog()?.as_bytes())?,
        0o644,
    )?;
    put(
        "usr/share/doc/failover/README.md",
        &read(&env.root.join("README.md"))?,
        0o644,
    )?;
    // Not a Debian upload: there is no bug it closes.
    put(
        "usr/share/lintian/overrides/failover",
        b"failover: initial-upload-closes-no-bugs\n",
        0o644,
    )?;
    Ok(())
}

fn write_control(stage: &Path, version: &str) -> anyhow::Result<()> {
    let installed_kib = cmd::output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(stage),
    )?
    .split_whitespace()
    .next()
    .unwrap_or("0")
    .to_owned();
    let control = format!(
        "Package: failover\n\
         Version: {version}\n\
         Architecture: amd64\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Depends: libc6 (>= 2.34), iproute2\n\
         Recommends: bird2\n\
         Section: net\n\
         Priority: optional\n\
         Homepage: https://example.invalid/failover\n\
         Description: kernel-level packet failover for edge Linux hosts\n \
         An XDP data path forwards each service's traffic to a healthy backend\n \
         at line rate and keeps established flows on theirs; an agent probes\n \
         the backends, fails over and back, and announces the VIPs of a fleet\n \
         of edge hosts through BIRD. The data path keeps forwarding when the\n \
         agent stops.\n .\n \
         Includes the systemd unit, a sample configuration, man pages, shell\n \
         completions, a Grafana dashboard and Prometheus alert rules.\n"
    );
    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    fs::write(debian.join("control"), control)?;
    fs::write(debian.join("conffiles"), "/etc/failover/failover.toml\n")?;
    let sums = cmd::output(Command::new("sh").current_dir(stage).args([
        "-c",
        "find . -type f ! -path './DEBIAN/*' | sort | sed 's|^\\./||' | xargs md5sum",
    ]))?;
    fs::write(debian.join("md5sums"), sums)?;
    for file in ["control", "conffiles", "md5sums"] {
        set_mode(&debian.join(file), 0o644)?;
    }
    Ok(())
}

/// lintian's verdict: its errors fail the package, its warnings are shown.
fn lintian(deb: &Path) -> anyhow::Result<()> {
    if Command::new("lintian").arg("--version").output().is_err() {
        eprintln!("xtask: lintian is not installed: the package is not checked");
        return Ok(());
    }
    let out = Command::new("lintian")
        .args([
            "--no-tag-display-limit",
            "--suppress-tags",
            "no-manual-page",
        ])
        .arg(deb)
        .output()
        .context("running lintian")?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        eprintln!("lintian: {line}");
    }
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    if !errors.is_empty() {
        bail!("lintian found {} errors in {}", errors.len(), deb.display());
    }
    Ok(())
}

fn copyright() -> String {
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
     Upstream-Name: failover\n\
     Source: https://example.invalid/failover\n\n\
     Files: *\n\
     Copyright: 2026 the failover developers\n\
     License: MIT or Apache-2.0\n \
     Licensed under either of the Apache License, Version 2.0 (see\n \
     /usr/share/common-licenses/Apache-2.0) or the MIT license, at your option.\n"
        .to_owned()
}

fn changelog() -> anyhow::Result<String> {
    let date = cmd::output(Command::new("date").args(["-u", "-R"]))?;
    Ok(format!(
        "failover ({}-{REVISION}) unstable; urgency=medium\n\n  \
         * Built by cargo xtask package.\n\n -- {MAINTAINER}  {}\n",
        env!("CARGO_PKG_VERSION"),
        date.trim()
    ))
}

/// gzip -9n (no name, no time stamp: reproducible).
fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting gzip")?;
    child
        .stdin
        .take()
        .context("gzip's stdin")?
        .write_all(data)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("gzip failed");
    }
    Ok(out.stdout)
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}
