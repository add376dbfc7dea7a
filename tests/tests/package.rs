//! `cargo xtask package`: the Debian package, built from this test run's
//! binary (`cargo xtask package` itself builds the release one), inspected
//! file by file; lintian (run by the packaging) finds no error.

use std::{path::PathBuf, process::Command};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

#[test]
fn the_debian_package_holds_the_binary_unit_configuration_docs_and_dashboards() {
    let out = root().join("target/package-test");
    let _ = std::fs::remove_dir_all(&out);
    let built = run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root())
            .args(["xtask", "package", "--binary"])
            .arg(failover_tests::failover_bin())
            .arg("--out")
            .arg(&out),
    );
    assert!(
        !built.lines().any(|l| l.starts_with("lintian: E:")),
        "{built}"
    );
    let deb = out.join(format!(
        "failover_{}-1_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(deb.exists(), "{built}");

    let fields = run(Command::new("dpkg-deb").args(["-f"]).arg(&deb).args([
        "Package",
        "Depends",
        "Architecture",
    ]));
    assert!(
        fields.contains("Package: failover") && fields.contains("iproute2"),
        "{fields}"
    );
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/sbin/failover",
        "./lib/systemd/system/failover.service",
        "./etc/failover/failover.toml",
        "./usr/share/man/man8/failover.8.gz",
        "./usr/share/man/man8/failover-status.8.gz",
        "./usr/share/man/man8/failover-run.8.gz",
        "./usr/share/bash-completion/completions/failover",
        "./usr/share/zsh/vendor-completions/_failover",
        "./usr/share/fish/vendor_completions.d/failover.fish",
        "./usr/share/failover/grafana/failover-dashboard.json",
        "./usr/share/failover/prometheus/failover-alerts.yml",
        "./usr/share/doc/failover/copyright",
        "./usr/share/doc/failover/changelog.Debian.gz",
    ] {
        assert!(
            listing.lines().any(|line| line.ends_with(path)),
            "{path} is not in the package:\n{listing}"
        );
    }
    assert!(
        listing.lines().all(|line| line.contains("root/root")),
        "every file owned by root:\n{listing}"
    );
    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(
        conffiles.trim(),
        "/etc/failover/failover.toml",
        "the configuration is kept on upgrade"
    );

    // Unpacked: the unit runs the packaged binary, the man page and the
    // completion come from this binary's own definitions, dist/ as is.
    let unpacked = out.join("unpacked");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    let unit =
        std::fs::read_to_string(unpacked.join("lib/systemd/system/failover.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/sbin/failover run"), "{unit}");
    assert!(!unit.contains("/usr/local/bin"), "{unit}");
    let man = run(Command::new("sh").arg("-c").arg(format!(
        "zcat {}",
        unpacked
            .join("usr/share/man/man8/failover-status.8.gz")
            .display()
    )));
    assert!(man.contains("watch"), "{man}");
    let completion =
        std::fs::read_to_string(unpacked.join("usr/share/bash-completion/completions/failover"))
            .unwrap();
    assert!(
        completion.contains("switchover") && completion.contains("inspect"),
        "bash completion"
    );
    for (packaged, dist) in [
        (
            "usr/share/failover/grafana/failover-dashboard.json",
            "dist/grafana/failover-dashboard.json",
        ),
        (
            "usr/share/failover/prometheus/failover-alerts.yml",
            "dist/prometheus/failover-alerts.yml",
        ),
        ("etc/failover/failover.toml", "dist/failover.toml"),
    ] {
        assert_eq!(
            std::fs::read(unpacked.join(packaged)).unwrap(),
            std::fs::read(root().join(dist)).unwrap(),
            "{packaged}"
        );
    }
    let version = run(Command::new(unpacked.join("usr/sbin/failover")).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let _ = std::fs::remove_dir_all(&out);
}

/// systemd refuses to start a unit whose `ReadWritePaths=` names a
/// directory that does not exist (226/NAMESPACE) unless the entry is
/// optional (`-`): every one the unit needs is a kernel mount or made by
/// the unit itself (`LogsDirectory=` and the like) on a fresh host.
#[test]
fn the_units_writable_paths_exist_on_a_fresh_host() {
    let unit = std::fs::read_to_string(root().join("dist/failover.service")).unwrap();
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    };
    let mut made: Vec<String> = vec!["/sys/fs/bpf".into(), "/run".into()];
    for (key, base) in [
        ("RuntimeDirectory", "/run"),
        ("StateDirectory", "/var/lib"),
        ("LogsDirectory", "/var/log"),
        ("CacheDirectory", "/var/cache"),
        ("ConfigurationDirectory", "/etc"),
    ] {
        made.extend(value(key).iter().map(|dir| format!("{base}/{dir}")));
    }
    for path in value("ReadWritePaths") {
        assert!(
            path.starts_with('-') || made.contains(&path),
            "ReadWritePaths={path} does not exist on a fresh host: the unit would not start\n{unit}"
        );
    }
}
