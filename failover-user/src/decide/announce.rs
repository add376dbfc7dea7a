//! Which VIPs this edge host announces to the routing daemon (`[routing]`),
//! and why. A VIP is announced while this host can serve it: the agent
//! runs, the host is not drained, and at least one of the VIP's services
//! has a backend taking new flows that this agent has seen answer a probe
//! (a VIP carrying several services is not withdrawn for one of them: the
//! others would go down with it on every host). `when_unusable =
//! "announce"` keeps a VIP none of whose services can serve announced; its
//! packets are then dropped here. A VIP whose backends have not answered
//! yet is not announced either way.

use std::{collections::BTreeMap, net::IpAddr};

/// What becomes of a VIP none of whose services can take new flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnusable {
    /// Withdrawn: the routers send its traffic to other edge hosts.
    Withdraw,
    /// Still announced; its packets are dropped here (counted).
    Announce,
}

/// A service as the announcement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceUse {
    pub name: String,
    pub vip: IpAddr,
    pub state: Usable,
}

/// Whether a service can serve from this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usable {
    /// A backend takes its new flows (published in the data path) and has
    /// answered a probe of this agent.
    Yes,
    /// Backends take its new flows, but none has answered a probe yet
    /// (their health was adopted or assumed at start).
    Unproven,
    /// A backend could serve, but the flows the other edge hosts pinned
    /// have not all arrived yet (`[sync]`, at start): announcing now would
    /// reset those ECMP brings here.
    AwaitingPeers,
    /// No backend takes its new flows.
    No,
}

/// One VIP's announcement and its reason, for status and the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub announced: bool,
    pub why: String,
}

/// The announcement of every VIP of `services`.
pub fn announcements(
    services: &[ServiceUse],
    when_unusable: WhenUnusable,
    drained: bool,
) -> BTreeMap<IpAddr, Announcement> {
    let mut by_vip: BTreeMap<IpAddr, [Vec<&str>; 4]> = BTreeMap::new();
    for service in services {
        let [usable, unproven, awaiting, unusable] = by_vip.entry(service.vip).or_default();
        match service.state {
            Usable::Yes => usable.push(&service.name),
            Usable::Unproven => unproven.push(&service.name),
            Usable::AwaitingPeers => awaiting.push(&service.name),
            Usable::No => unusable.push(&service.name),
        }
    }
    by_vip
        .into_iter()
        .map(|(vip, [usable, unproven, awaiting, unusable])| {
            let announcement = if drained {
                Announcement {
                    announced: false,
                    why: "the host is drained".into(),
                }
            } else if !usable.is_empty() {
                Announcement {
                    announced: true,
                    why: format!("serving {}", usable.join(", ")),
                }
            } else if !awaiting.is_empty() {
                Announcement {
                    announced: false,
                    why: format!(
                        "waiting for the flows the other edge hosts pinned ([sync]) before serving {}",
                        awaiting.join(", ")
                    ),
                }
            } else if !unproven.is_empty() {
                Announcement {
                    announced: false,
                    why: format!(
                        "waiting for a backend of {} to answer a probe",
                        unproven.join(", ")
                    ),
                }
            } else if when_unusable == WhenUnusable::Announce {
                Announcement {
                    announced: true,
                    why: format!(
                        "no backend takes new flows of {}; announced anyway (when_unusable = \"announce\")",
                        unusable.join(", ")
                    ),
                }
            } else {
                Announcement {
                    announced: false,
                    why: format!("no backend takes new flows of {}", unusable.join(", ")),
                }
            };
            (vip, announcement)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, vip: &str, usable: bool) -> ServiceUse {
        ServiceUse {
            name: name.into(),
            vip: vip.parse().unwrap(),
            state: if usable { Usable::Yes } else { Usable::No },
        }
    }

    #[test]
    fn a_vip_waits_for_an_answered_probe_whatever_the_policy() {
        let unproven = ServiceUse {
            state: Usable::Unproven,
            ..service("web", "203.0.113.10", false)
        };
        for policy in [WhenUnusable::Withdraw, WhenUnusable::Announce] {
            let out = announcements(std::slice::from_ref(&unproven), policy, false);
            let web = &out[&"203.0.113.10".parse().unwrap()];
            assert!(!web.announced, "{policy:?}");
            assert_eq!(web.why, "waiting for a backend of web to answer a probe");
        }
    }

    #[test]
    fn a_vip_is_withdrawn_only_when_none_of_its_services_can_serve() {
        let services = [
            service("web", "203.0.113.10", true),
            service("dns", "203.0.113.10", false),
            service("mail", "203.0.113.11", false),
        ];
        let out = announcements(&services, WhenUnusable::Withdraw, false);
        let web = &out[&"203.0.113.10".parse().unwrap()];
        assert!(web.announced);
        assert_eq!(web.why, "serving web");
        let mail = &out[&"203.0.113.11".parse().unwrap()];
        assert!(!mail.announced);
        assert_eq!(mail.why, "no backend takes new flows of mail");
    }

    #[test]
    fn announce_when_unusable_keeps_it_and_says_so() {
        let out = announcements(
            &[service("mail", "203.0.113.11", false)],
            WhenUnusable::Announce,
            false,
        );
        let mail = &out[&"203.0.113.11".parse().unwrap()];
        assert!(mail.announced);
        assert!(mail.why.contains("announced anyway"), "{}", mail.why);
    }

    #[test]
    fn a_drained_host_announces_nothing() {
        let out = announcements(
            &[service("web", "2001:db8::10", true)],
            WhenUnusable::Announce,
            true,
        );
        assert!(
            out.values()
                .all(|a| !a.announced && a.why == "the host is drained")
        );
    }

    #[test]
    fn a_vip_waits_for_the_peers_pinned_flows_before_its_first_announcement() {
        let awaiting = ServiceUse {
            state: Usable::AwaitingPeers,
            ..service("web", "203.0.113.10", false)
        };
        let out = announcements(
            std::slice::from_ref(&awaiting),
            WhenUnusable::Announce,
            false,
        );
        let web = &out[&"203.0.113.10".parse().unwrap()];
        assert!(!web.announced);
        assert!(web.why.contains("[sync]"), "{}", web.why);
        // Another service of the VIP that can serve announces it.
        let out = announcements(
            &[awaiting, service("api", "203.0.113.10", true)],
            WhenUnusable::Withdraw,
            false,
        );
        assert!(out[&"203.0.113.10".parse().unwrap()].announced);
    }
}
