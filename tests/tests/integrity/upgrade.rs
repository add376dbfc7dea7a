//! Pinned maps across versions and sizes: the earlier layout's flow table
//! is retired at start, a pinned table of another size is refused with
//! both remedies, never half-adopted, and counters of a build that counted
//! other reasons start again from zero.

use std::ffi::CString;

use failover::{Dataplane, DataplaneError};
use failover_common::{Counter, DEFAULT_MAX_FLOWS, names, stats::reason};
use failover_tests::pins::PinDir;

const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;

/// Creates an LRU hash like the earlier layout's `FO_CONNTRACK` (40-byte
/// keys, 64-byte values) and pins it at `path`.
fn pin_earlier_conntrack(path: &std::path::Path) {
    pin_map(path, [BPF_MAP_TYPE_LRU_HASH, 40, 64, 1024]);
}

/// Creates a map of `[type, key size, value size, entries]` and pins it at
/// `path`.
fn pin_map(path: &std::path::Path, layout: [u32; 4]) {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_OBJ_PIN: libc::c_long = 6;
    let mut create = [0u32; 30];
    create[..4].copy_from_slice(&layout);
    // SAFETY: bpf(2) with a zeroed attribute block of the right size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            create.as_ptr(),
            size_of_val(&create),
        )
    };
    assert!(fd >= 0, "create a map: {}", std::io::Error::last_os_error());
    let path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut pin = [0u64; 2];
    pin[0] = path.as_ptr() as u64;
    pin[1] = fd as u64;
    // SAFETY: bpf(2) with a pathname pointer that outlives the call.
    let pinned = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_PIN, pin.as_ptr(), 16usize) };
    assert_eq!(pinned, 0, "pin: {}", std::io::Error::last_os_error());
    // SAFETY: our descriptor; the pin keeps the map.
    unsafe { libc::close(fd as i32) };
}

#[test]
fn the_earlier_flow_table_is_retired_and_another_size_refused() {
    failover_tests::require_root();
    let pins = PinDir::new();
    std::fs::create_dir_all(pins.path()).unwrap();
    let earlier = pins.path().join("FO_CONNTRACK");
    pin_earlier_conntrack(&earlier);
    let dataplane = Dataplane::load(pins.path()).expect("load over the earlier layout");
    assert!(!earlier.exists(), "the earlier table's pin is removed");
    assert!(pins.path().join(names::FLOWS).exists());
    assert_eq!(dataplane.flows().capacity(), DEFAULT_MAX_FLOWS);
    drop(dataplane);

    // The pinned table is the default size; asking for another is refused
    // before anything is loaded, naming both remedies.
    let err = match Dataplane::load_with(pins.path(), 1_024) {
        Err(err) => err,
        Ok(_) => panic!("a table of another size was adopted"),
    };
    assert!(
        matches!(
            err,
            DataplaneError::FlowTableSize {
                found: DEFAULT_MAX_FLOWS,
                wanted: 1_024,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("max_flows = 262144") && text.contains("failover detach"),
        "{text}"
    );
    // The same size is adopted.
    let again = Dataplane::load_with(pins.path(), DEFAULT_MAX_FLOWS).expect("same size");
    assert_eq!(again.flows().capacity(), DEFAULT_MAX_FLOWS);
}

#[test]
fn counters_of_another_build_start_again_from_zero() {
    failover_tests::require_root();
    let pins = PinDir::new();
    std::fs::create_dir_all(pins.path()).unwrap();
    // An earlier build counted two reasons fewer.
    let reasons = pins.path().join(names::REASONS);
    let earlier = reason::COUNT - 2;
    pin_map(
        &reasons,
        [
            BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            size_of::<Counter>() as u32,
            earlier,
        ],
    );
    let dataplane = Dataplane::load(pins.path()).expect("load over the earlier counters");
    let info = aya::maps::MapInfo::from_pin(&reasons).expect("the counters are pinned again");
    assert_eq!(info.max_entries(), reason::COUNT);
    let counted = dataplane.counters().reasons().expect("read the counters");
    assert!(counted.iter().all(|c| c.packets == 0));
}
