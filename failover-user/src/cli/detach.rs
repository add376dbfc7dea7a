//! `failover detach`: remove links and maps; forwarding stops.

use std::path::Path;

use anyhow::Context as _;

pub fn run(pin_dir: &Path) -> anyhow::Result<()> {
    if !pin_dir.exists() {
        println!("nothing pinned at {}", pin_dir.display());
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
