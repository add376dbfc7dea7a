//! Test support for failover: packet builders, namespace and pin guards, the
//! BPF_PROG_TEST_RUN lab the data-path fixtures run in, and the backend
//! servers of the namespace integration tests.

pub mod lab;
pub mod netns;
pub mod packet;
pub mod pins;
pub mod servers;

/// Privileged tests call this first. As root it returns; otherwise it fails
/// the test (a privileged test never reports a skip as a pass).
pub fn require_root() {
    // SAFETY: trivial libc call.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (BPF, network namespaces); run `cargo xtask test` as root"
    );
}
