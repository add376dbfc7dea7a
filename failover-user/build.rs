//! Builds the XDP program (`failover-ebpf`) for the BPF target with nightly and
//! embeds it: `failover` is one self-contained binary.

#[path = "../build-support/ebpf.rs"]
mod ebpf;

fn main() {
    let root_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../failover-ebpf");
    ebpf::exit_on_error(ebpf::build("failover-ebpf", &root_dir, &["failover"]));
}
