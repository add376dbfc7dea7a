//! Cleaning up after earlier demos that were killed before their guards ran.

use std::{
    path::Path,
    process::{Command, Stdio},
};

/// Removes what demos killed before they could clean up (SIGKILL) left
/// behind: namespaces `fo-demo-<role>-<pid>-<n>`, pin directories
/// `/sys/fs/bpf/fo-demo-<pid>[-peers|-edge<i>]` and temporary directories
/// `<tmp>/failover-demo-<pid>` of processes that no longer exist. (Their
/// agents were stopped by the parent-death signal.)
pub(super) fn remove_leftovers() {
    let dead = |pid: &str| {
        !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && !Path::new("/proc").join(pid).exists()
    };
    let entries = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut removed = Vec::new();
    for name in entries(Path::new("/run/netns")) {
        // fo-demo-<role>-<pid>-<n>
        let mut parts = name.rsplit('-');
        let (Some(_n), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        if name.starts_with("fo-demo-") && dead(pid) {
            let deleted = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if deleted {
                removed.push(format!("namespace {name}"));
            }
        }
    }
    let bpffs = Path::new("/sys/fs/bpf");
    for name in entries(bpffs) {
        let Some(rest) = name.strip_prefix("fo-demo-") else {
            continue;
        };
        // fo-demo-<pid>, fo-demo-<pid>-peers, fo-demo-<pid>-edge<i> (the fleet)
        if dead(rest.split('-').next().unwrap_or(rest)) {
            let dir = bpffs.join(&name);
            if crate::dataplane::remove_pins(&dir).is_ok() {
                removed.push(format!("pins {}", dir.display()));
            }
        }
    }
    let tmp = std::env::temp_dir();
    for name in entries(&tmp) {
        if name.strip_prefix("failover-demo-").is_some_and(dead)
            && std::fs::remove_dir_all(tmp.join(&name)).is_ok()
        {
            removed.push(tmp.join(&name).display().to_string());
        }
    }
    if !removed.is_empty() {
        println!(
            "removed leftovers of an earlier demo that was killed: {}",
            removed.join(", ")
        );
        println!();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn leftover_names_parse() {
        // The namespace pattern remove_leftovers relies on.
        let name = "fo-demo-primary-4242-2";
        let mut parts = name.rsplit('-');
        assert_eq!(parts.next(), Some("2"));
        assert_eq!(parts.next(), Some("4242"));
    }
}
