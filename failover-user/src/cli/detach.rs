//! `failover detach`: remove links and maps; forwarding stops.

use std::path::Path;

use anyhow::Context as _;

pub fn run(pin_dir: &Path, dry_run: bool) -> anyhow::Result<()> {
    if !pin_dir.exists() {
        println!("nothing pinned at {}", pin_dir.display());
        return Ok(());
    }
    if dry_run {
        let mut pins: Vec<String> = std::fs::read_dir(pin_dir)
            .with_context(|| format!("reading {}", pin_dir.display()))?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        pins.sort();
        let links: Vec<&str> = pins
            .iter()
            .filter_map(|p| p.strip_prefix("link_"))
            .collect();
        println!(
            "dry run: would remove {} pins under {} and so stop forwarding on {}",
            pins.len(),
            pin_dir.display(),
            if links.is_empty() {
                "no interface".to_owned()
            } else {
                links.join(", ")
            }
        );
        return Ok(());
    }
    crate::dataplane::remove_pins(pin_dir)
        .with_context(|| format!("removing pins under {}", pin_dir.display()))?;
    println!(
        "detached: removed the XDP links and maps pinned at {}",
        pin_dir.display()
    );
    Ok(())
}
