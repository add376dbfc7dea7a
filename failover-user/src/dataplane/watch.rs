//! Watching the kernel drop frames the data path redirected: attaches
//! `failover_redirect_watch` to the `xdp:xdp_redirect_err` tracepoint, which
//! counts our program's failed redirects per egress interface in
//! `FO_REDIRECT_DROPS` (the agent then logs the remedy and sends that
//! interface's packets through the stack).

use std::{ffi::CString, io, path::Path};

use aya::programs::TracePoint;

use super::Dataplane;
use crate::dataplane::error::DataplaneError;

const TRACEFS: &str = "/sys/kernel/tracing";
const TRACEFS_MAGIC: i64 = 0x7472_6163;

/// A watch program, its tracepoint, and the record fields it reads with
/// their offsets (see the eBPF side).
struct Watch {
    program: &'static str,
    tracepoint: &'static str,
    fields: &'static [(&'static str, usize)],
}

const WATCHES: [Watch; 1] = [Watch {
    program: "failover_redirect_watch",
    tracepoint: "xdp_redirect_err",
    fields: &[("prog_id", 8), ("to_ifindex", 24)],
}];

impl Dataplane {
    /// Starts counting the kernel's drops of redirected frames. Mounts
    /// tracefs on /sys/kernel/tracing if nothing is there (as systemd does
    /// at boot); checks the tracepoint's record layout first.
    pub fn watch_redirects(&mut self) -> Result<(), DataplaneError> {
        let err = |what: String| DataplaneError::Watch { what };
        ensure_tracefs().map_err(|e| err(format!("mounting tracefs on {TRACEFS}: {e}")))?;
        // Only our forwarding program's failures count.
        let ours = self
            .program()?
            .info()
            .map_err(|source| DataplaneError::Program {
                name: crate::PROGRAM_NAME,
                source,
            })?
            .id();
        let mut watched: aya::maps::Array<_, u32> = self
            .ebpf
            .map_mut("FO_WATCHED_PROGRAM")
            .ok_or(DataplaneError::MissingMap {
                name: "FO_WATCHED_PROGRAM",
            })?
            .try_into()
            .map_err(|source| DataplaneError::Map {
                name: "FO_WATCHED_PROGRAM",
                source,
            })?;
        watched
            .set(0, ours, 0)
            .map_err(|source| DataplaneError::Map {
                name: "FO_WATCHED_PROGRAM",
                source,
            })?;
        for watch in &WATCHES {
            let format = std::fs::read_to_string(
                Path::new(TRACEFS).join(format!("events/xdp/{}/format", watch.tracepoint)),
            )
            .map_err(|e| {
                err(format!(
                    "reading the {} tracepoint's format: {e}",
                    watch.tracepoint
                ))
            })?;
            check_offsets(&format, watch.fields).map_err(err)?;
            let name = watch.program;
            let program: &mut TracePoint = self
                .ebpf
                .program_mut(name)
                .ok_or(DataplaneError::MissingProgram { name })?
                .try_into()
                .map_err(|source| DataplaneError::Program { name, source })?;
            program
                .load()
                .map_err(|source| DataplaneError::Program { name, source })?;
            program
                .attach("xdp", watch.tracepoint)
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        Ok(())
    }
}

/// The fields the program reads are where it reads them.
fn check_offsets(format: &str, fields: &[(&str, usize)]) -> Result<(), String> {
    for &(field, offset) in fields {
        let line = format
            .lines()
            .find(|l| l.contains(&format!(" {field};")))
            .ok_or_else(|| format!("the tracepoint has no field {field}"))?;
        let found: Option<usize> = line
            .split("offset:")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|n| n.trim().parse().ok());
        if found != Some(offset) {
            return Err(format!(
                "the tracepoint's {field} is at offset {found:?}, the program reads {offset}"
            ));
        }
    }
    Ok(())
}

fn ensure_tracefs() -> io::Result<()> {
    let path = CString::new(TRACEFS).expect("no NUL");
    // SAFETY: valid C string and a zeroed statfs for the kernel to fill.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } == 0 && stat.f_type as i64 == TRACEFS_MAGIC
    {
        return Ok(());
    }
    // SAFETY: valid C strings; no mount data.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            path.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_read_from_the_format() {
        let good = "\tfield:int prog_id;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:int to_ifindex;\toffset:24;\tsize:4;\tsigned:1;\n";
        let fields = WATCHES[0].fields;
        assert_eq!(check_offsets(good, fields), Ok(()));
        let moved = good.replace("offset:24", "offset:28");
        assert!(
            check_offsets(&moved, fields)
                .unwrap_err()
                .contains("to_ifindex")
        );
        assert!(check_offsets("", fields).is_err());
    }
}
