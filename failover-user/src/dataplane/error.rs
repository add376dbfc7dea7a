//! Errors of the data-path layer.

use std::{io, path::PathBuf};

use aya::{EbpfError, maps::MapError, programs::ProgramError};

/// Failures loading, attaching or writing the data path.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("bpffs at {path}: {source}")]
    Bpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("loading the eBPF object (is this root, on Linux >= 5.15 with BTF?)")]
    Load(#[source] EbpfError),
    #[error("program {name} is missing from the eBPF object")]
    MissingProgram { name: &'static str },
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("map {name} is missing from the eBPF object")]
    MissingMap { name: &'static str },
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("attaching XDP to {interface} in {mode} mode")]
    Attach {
        interface: String,
        mode: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(
        "pinned map {path} has another layout ({found}) than this build needs ({wanted}): \
         it was pinned by another version of failover. Its flows and state cannot be adopted: \
         run `failover detach --pin-dir {pin_dir}` (forwarding stops until the agent starts) \
         or give this agent another pin_dir"
    )]
    IncompatiblePin {
        path: PathBuf,
        found: String,
        wanted: String,
        pin_dir: PathBuf,
    },
    #[error(
        "the pinned flow table has {found} entries and max_flows is {wanted}: a flow table's \
         size is fixed when it is created. Set `[conntrack] max_flows = {found}`, or run \
         `failover detach --pin-dir {pin_dir}` and start again to create it anew (forwarding \
         stops until then, and tracked flows are picked again by the table)"
    )]
    FlowTableSize {
        found: u32,
        wanted: u32,
        pin_dir: PathBuf,
    },
    #[error("removing the retired pin {path}")]
    Unpin {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no BPF filesystem at /sys/fs/bpf in this process's mount namespace, which is not the host's \
         (started with `ip netns exec`? it remounts /sys): pins under {pin_dir} would live in a \
         bpffs that dies with the agent, and with them the XDP attachments — forwarding would stop \
         when the agent stops, silently. Enter only the network namespace instead \
         (`nsenter --net=/run/netns/NAME failover run ...`, or systemd's NetworkNamespacePath=), \
         or pass --private-pins to run without fail-static"
    )]
    PrivatePins { pin_dir: PathBuf },
    #[error("watching for dropped redirects: {what}")]
    Watch { what: String },
    #[error("{what}")]
    System {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("interface {interface}")]
    Interface {
        interface: String,
        #[source]
        source: io::Error,
    },
}

/// A service or backend description the data path cannot take. Nothing is
/// written when one of these is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("service {service} already exists")]
    DuplicateService { service: String },
    #[error("service {service} has {count} backends; at most {max} per service")]
    TooManyBackends {
        service: String,
        count: usize,
        max: usize,
    },
    #[error("no room for service {service}: all {max} service slots are in use")]
    NoServiceSlot { service: String, max: u32 },
    #[error("no room for {needed} backends: {free} of {max} backend slots are free")]
    NoBackendSlot {
        needed: usize,
        free: usize,
        max: u32,
    },
    #[error("service {service} needs at least one backend")]
    NoBackends { service: String },
    #[error("unknown service id {id}")]
    UnknownService { id: u32 },
    #[error("unknown backend id {id}")]
    UnknownBackend { id: u32 },
    #[error("backend {backend} appears twice in service {service}")]
    DuplicateBackend { service: String, backend: String },
    #[error(
        "backend {backend} of service {service} also serves {other} on the same port: \
         replies could not be told apart; give each service its own backend port"
    )]
    SharedEndpoint {
        backend: String,
        service: String,
        other: String,
    },
}
