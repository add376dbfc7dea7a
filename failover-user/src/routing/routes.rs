//! The announcements as kernel routes: one host route per VIP to the
//! liveness device, in the table the routing daemon learns from, written
//! and read back with iproute2 (one `ip -batch` per change, rare: on start,
//! reload and when a VIP's usability changes).

use std::{
    collections::BTreeSet,
    io::Write,
    net::IpAddr,
    process::{Command, Stdio},
};

/// Runs `commands` (lines of `ip -batch`); the error names the first that
/// failed, as `ip` reports it.
pub fn batch(commands: &[String]) -> Result<(), String> {
    if commands.is_empty() {
        return Ok(());
    }
    // `-force`: a failed line does not stop the others; what holds is read
    // back afterwards.
    let mut child = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running ip (iproute2): {e}"))?;
    let input = commands.join("\n") + "\n";
    // Written from a thread of its own: ip's error output, read meanwhile,
    // cannot fill its pipe and block both. A write that fails (ip exited
    // early) still waits for ip: its error says why.
    let stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        stdin.map_or(Ok(()), |mut stdin| stdin.write_all(input.as_bytes()))
    });
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for ip: {e}"))?;
    let written = writer
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the writer panicked")));
    if let Err(err) = written
        && output.status.success()
    {
        return Err(format!("writing to ip: {err}"));
    }
    if output.status.success() {
        return Ok(());
    }
    Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
}

/// The host prefix of `vip`.
fn prefix(vip: IpAddr) -> String {
    match vip {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

/// Brings the device up (routes need it up).
pub fn up(device: &str) -> String {
    format!("link set dev {device} up")
}

/// (`ip -batch` takes no options per line: the prefix says the family.)
pub fn announce(vip: IpAddr, device: &str, table: u32) -> String {
    format!(
        "route replace {} dev {device} table {table} proto static",
        prefix(vip)
    )
}

pub fn withdraw(vip: IpAddr, device: &str, table: u32) -> String {
    format!("route del {} dev {device} table {table}", prefix(vip))
}

/// The VIPs routed to `device` in `table` now (both families).
pub fn announced(device: &str, table: u32) -> Result<BTreeSet<IpAddr>, String> {
    let mut vips = BTreeSet::new();
    for family in ["-4", "-6"] {
        let output = Command::new("ip")
            .args([
                family,
                "route",
                "show",
                "table",
                &table.to_string(),
                "dev",
                device,
            ])
            .output()
            .map_err(|e| format!("running ip (iproute2): {e}"))?;
        if !output.status.success() {
            let error = String::from_utf8_lossy(&output.stderr);
            // A table is created by its first route; a host without IPv6
            // has no IPv6 routes.
            if error.contains("FIB table does not exist") || error.contains("not supported") {
                continue;
            }
            return Err(error.trim().to_owned());
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let destination = line.split_whitespace().next().unwrap_or("");
            let address = destination.split('/').next().unwrap_or("");
            if let Ok(vip) = address.parse() {
                vips.insert(vip);
            }
        }
    }
    Ok(vips)
}
