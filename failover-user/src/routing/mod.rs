//! `[routing]`: this host's VIPs announced through a routing daemon. The
//! agent writes a host route per VIP it can serve (`decide::announce`) to
//! its liveness device ([`device`]) in a kernel table of its own
//! ([`routes`]); the daemon (BIRD's `kernel` protocol with `learn`) picks
//! them up and announces them over BGP. No routing protocol is spoken
//! here.

pub mod device;
pub mod routes;

use std::{collections::BTreeMap, net::IpAddr};

use self::device::LivenessDevice;
use crate::{config::RoutingConfig, decide::announce::Announcement};

/// Why announcements could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("the liveness device")]
    Device(#[source] std::io::Error),
    #[error("bringing the liveness device {device} up: {message}")]
    DeviceUp { device: String, message: String },
    #[error("{}", path.display())]
    DrainFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the announcements to table {table}: {message}")]
    Routes { table: u32, message: String },
}

/// A VIP whose announcement changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    pub vip: IpAddr,
    pub announced: bool,
    pub why: String,
}

/// The announcements and the device they route to.
pub struct Announcer {
    config: RoutingConfig,
    device: LivenessDevice,
    /// Every VIP's announcement as last written.
    current: BTreeMap<IpAddr, Announcement>,
}

impl Announcer {
    /// Creates the liveness device and brings it up; announces nothing yet.
    pub fn start(config: &RoutingConfig) -> Result<Self, RoutingError> {
        let device = LivenessDevice::create(&config.device).map_err(RoutingError::Device)?;
        routes::batch(&[routes::up(device.name())]).map_err(|message| RoutingError::DeviceUp {
            device: config.device.clone(),
            message,
        })?;
        Ok(Self {
            config: config.clone(),
            device,
            current: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    /// Every VIP's announcement as last written.
    pub fn current(&self) -> &BTreeMap<IpAddr, Announcement> {
        &self.current
    }

    /// Writes `wanted`: announces and withdraws what changed, then reads
    /// the table back, so what is recorded is what the kernel holds.
    pub fn apply(&mut self, wanted: BTreeMap<IpAddr, Announcement>) -> Applied {
        let (device, table) = (self.device.name().to_owned(), self.config.table);
        let routes_error = |message| RoutingError::Routes { table, message };
        let before = match routes::announced(&device, table) {
            Ok(before) => before,
            Err(message) => return Applied::failed(routes_error(message)),
        };
        let mut commands = Vec::new();
        for (vip, announcement) in &wanted {
            match (announcement.announced, before.contains(vip)) {
                (true, false) => commands.push(routes::announce(*vip, &device, table)),
                (false, true) => commands.push(routes::withdraw(*vip, &device, table)),
                _ => {}
            }
        }
        // A VIP no service has any more.
        for vip in before.iter().filter(|vip| !wanted.contains_key(vip)) {
            commands.push(routes::withdraw(*vip, &device, table));
        }
        let mut error = routes::batch(&commands).err().map(routes_error);
        let after = match routes::announced(&device, table) {
            Ok(after) => after,
            Err(message) => return Applied::failed(routes_error(message)),
        };
        let mut changed: Vec<Changed> = self
            .current
            .iter()
            .filter(|(vip, was)| was.announced && !wanted.contains_key(vip) && !after.contains(vip))
            .map(|(vip, _)| Changed {
                vip: *vip,
                announced: false,
                why: "no service has it any more".into(),
            })
            .collect();
        let mut current = BTreeMap::new();
        // A VIP no service has, still routed: recorded until it is gone.
        for vip in after.iter().filter(|vip| !wanted.contains_key(vip)) {
            current.insert(
                *vip,
                Announcement {
                    announced: true,
                    why: "could not be withdrawn (no service has it any more)".into(),
                },
            );
            error.get_or_insert(RoutingError::Routes {
                table,
                message: format!("{vip} is still announced"),
            });
        }
        for (vip, mut announcement) in wanted {
            let announced = after.contains(&vip);
            if announced != announcement.announced {
                // Not written: the record says what holds.
                announcement = Announcement {
                    announced,
                    why: format!("could not be changed ({})", announcement.why),
                };
                error.get_or_insert(RoutingError::Routes {
                    table,
                    message: format!(
                        "{vip} is still {}",
                        if announced { "announced" } else { "withdrawn" }
                    ),
                });
            }
            // A VIP not recorded before was not announced.
            let was = self.current.get(&vip).is_some_and(|a| a.announced);
            if was != announced {
                changed.push(Changed {
                    vip,
                    announced,
                    why: announcement.why.clone(),
                });
            }
            current.insert(vip, announcement);
        }
        self.current = current;
        Applied { changed, error }
    }
}

/// What [`Announcer::apply`] did: the VIPs whose announcement changed, and
/// what failed (the next change, or the resync, tries again).
pub struct Applied {
    pub changed: Vec<Changed>,
    pub error: Option<RoutingError>,
}

impl Applied {
    fn failed(error: RoutingError) -> Self {
        Self {
            changed: Vec::new(),
            error: Some(error),
        }
    }
}
