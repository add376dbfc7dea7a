//! The data path's own troubles that no probe sees: frames the kernel drops
//! after our redirects (per egress interface), VLAN devices (frames for
//! them must get their tag from the kernel), packets that arrive with
//! partial checksums, and the flood guard's episodes (`flood_guard`). A
//! thread looks every [`WATCH_EVERY`], off the decision
//! loop. An interface that drops redirected frames is sent its packets
//! through the kernel stack from then on (`pass_via_stack`) until the agent
//! starts again, and so is a VLAN device from the moment it is seen (the
//! program cannot know its tag); each finding is logged once with its
//! remedy and shown in status and metrics.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use failover_common::{Counter, stats::reason};
use tracing::{error, info, warn};

use super::flood_guard::FloodEpisodes;
use crate::{
    dataplane::error::DataplaneError,
    dataplane::maps::{Counters, EgressMap, PinDir, RedirectDrops},
    dataplane::netdev,
    outputs::telemetry::{EgressReport, EgressStatus, Telemetry},
};

const WATCH_EVERY: Duration = Duration::from_millis(250);
/// New interfaces are checked for VLAN devices every this many looks.
const VLAN_SCAN_EVERY: u64 = 4;
/// A partial-checksum warning is repeated at most this often.
const PARTIAL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The watching thread; stopped and joined when dropped.
pub struct EgressWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EgressWatch {
    /// Starts redirecting everywhere again (a fresh start detects afresh)
    /// and watching. `watching`: whether the kernel's drops are counted.
    pub fn start(
        pin_dir: &Path,
        telemetry: Telemetry,
        watching: bool,
    ) -> Result<Self, DataplaneError> {
        let mut egress = EgressMap::open(&mut PinDir(pin_dir))?;
        egress.clear()?;
        let drops = RedirectDrops::open(&mut PinDir(pin_dir))?;
        let counters = Counters::open(&mut PinDir(pin_dir))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut watch = Watch {
            egress,
            drops,
            counters,
            telemetry,
            baseline: BTreeMap::new(),
            flagged: BTreeSet::new(),
            report: EgressReport {
                watching,
                interfaces: Vec::new(),
            },
            partial_seen: None,
            partial_warned: None,
            flood: FloodEpisodes::default(),
            classified: BTreeSet::new(),
            looks: 0,
        };
        watch.baseline = watch.drops.all();
        watch.mark_vlan_devices();
        watch.publish();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("egress-watch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        watch.once();
                        std::thread::sleep(WATCH_EVERY);
                    }
                })
                .map_err(|source| DataplaneError::System {
                    what: "starting the egress watch thread",
                    source,
                })?
        };
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EgressWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Watch {
    egress: EgressMap,
    drops: RedirectDrops,
    counters: Counters,
    telemetry: Telemetry,
    /// Drops counted before this agent started, by ifindex.
    baseline: BTreeMap<u32, u64>,
    flagged: BTreeSet<u32>,
    report: EgressReport,
    /// Partial checksums counted at the last look.
    partial_seen: Option<u64>,
    partial_warned: Option<Instant>,
    flood: FloodEpisodes,
    /// Interfaces already checked for being VLAN devices.
    classified: BTreeSet<u32>,
    looks: u64,
}

impl Watch {
    fn once(&mut self) {
        self.looks += 1;
        let mut changed = self.looks.is_multiple_of(VLAN_SCAN_EVERY) && self.mark_vlan_devices();
        for (ifindex, total) in self.drops.all() {
            let dropped = total.saturating_sub(self.baseline.get(&ifindex).copied().unwrap_or(0));
            if dropped == 0 {
                continue;
            }
            let name = netdev::name_of(ifindex).unwrap_or_else(|| format!("ifindex {ifindex}"));
            if self.flagged.insert(ifindex) {
                let via_stack = self.egress.set_via_stack(ifindex, true).is_ok();
                error!(
                    interface = %name,
                    dropped,
                    remedy = %redirect_remedy(&name),
                    "the kernel drops the frames the data path redirects to this interface; its packets now go through the kernel stack (pass_via_stack) until the agent starts again"
                );
                self.report.interfaces.push(EgressStatus {
                    interface: name.clone(),
                    ifindex,
                    redirect_drops: dropped,
                    via_stack,
                });
                changed = true;
            } else if let Some(status) = self
                .report
                .interfaces
                .iter_mut()
                .find(|s| s.ifindex == ifindex && s.redirect_drops != dropped)
            {
                status.redirect_drops = dropped;
                changed = true;
            }
        }
        if let Ok(reasons) = self.counters.reasons() {
            self.look_at_partial_checksums(&reasons);
            self.flood.look(&reasons);
        }
        if changed {
            self.publish();
        }
    }

    /// Sends the data path's packets for VLAN devices not seen before
    /// through the stack; whether there were any.
    fn mark_vlan_devices(&mut self) -> bool {
        let mut found = false;
        for (ifindex, name) in netdev::interfaces() {
            if self.classified.contains(&ifindex) {
                continue;
            }
            // An interface whose driver cannot be read is asked again.
            let Ok(driver) = netdev::driver(&name) else {
                continue;
            };
            self.classified.insert(ifindex);
            if !netdev::is_vlan_driver(&driver) {
                continue;
            }
            // Drops counted later update this entry, not a second one.
            self.flagged.insert(ifindex);
            let via_stack = match self.egress.set_via_stack(ifindex, true) {
                Ok(()) => {
                    info!(
                        interface = %name,
                        "a VLAN device: packets the data path forwards out of it go through the kernel stack, which adds its tag (pass_via_stack)"
                    );
                    true
                }
                Err(err) => {
                    error!(
                        interface = %name,
                        cause = %crate::util::chain(&err),
                        "a VLAN device the data path cannot mark: packets it redirects there are dropped by the kernel until the redirect watch sees it"
                    );
                    false
                }
            };
            self.report.interfaces.push(EgressStatus {
                interface: name,
                ifindex,
                redirect_drops: 0,
                via_stack,
            });
            found = true;
        }
        found
    }

    fn look_at_partial_checksums(&mut self, reasons: &[Counter]) {
        let partial = reasons[reason::EVENT_PARTIAL_CHECKSUM as usize].packets;
        let before = self.partial_seen.replace(partial);
        let Some(before) = before else { return };
        let new = partial.saturating_sub(before);
        let due = self
            .partial_warned
            .is_none_or(|at| at.elapsed() >= PARTIAL_WARNING_EVERY);
        // One full checksum in 65,536 looks partial by chance: warn on a
        // run of them only.
        if new >= 4 && due {
            self.partial_warned = Some(Instant::now());
            warn!(
                packets = new,
                "packets arrive with partial checksums (sent by local sockets over veth with transmit checksum offload on): the data path completes their checksums as it rewrites them, at a cost per packet; turn transmit checksum offload off on the sending veths (`ethtool -K <veth> tx off`, in containers on the container side) to avoid it"
            );
        }
    }

    fn publish(&self) {
        let report = self.report.clone();
        self.telemetry.update(|snapshot| snapshot.egress = report);
    }
}

/// What to do about an interface that drops redirected frames.
fn redirect_remedy(name: &str) -> String {
    match netdev::driver(name).as_deref() {
        Ok("veth") => format!(
            "{name} is a veth whose peer cannot take redirected frames (no NAPI there): turn GRO on for its peer \
             (`ethtool -K <peer> gro on`, in the peer's namespace) or attach an XDP program to the peer, \
             or attach failover to {name}'s traffic in skb mode (mode = \"skb\")"
        ),
        Ok(driver) => format!(
            "the {driver} driver of {name} refused the redirected frames (no XDP transmit support, or its \
             queues are down or full): use mode = \"skb\" or a driver with XDP transmit support"
        ),
        Err(_) => format!("{name} refused the redirected frames: use mode = \"skb\""),
    }
}
