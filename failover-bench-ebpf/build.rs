use which::which;

/// The build uses `bpf-linker` from PATH without cargo knowing; rebuild when
/// that binary changes (xtask installs it into `.tools/`).
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => {
            println!("cargo:warning=bpf-linker not found on PATH ({err}); run `cargo xtask setup`")
        }
    }
}
