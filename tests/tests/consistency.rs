//! Randomized map/agent consistency: random sequences of operations —
//! reloads of random valid configurations, drains, undrains, maintenance,
//! switchovers and releases, health flips, SIGKILL and restarts — under
//! client traffic. After every step: every tracked flow the data path
//! would follow goes to a backend of its own service that may keep it;
//! status and the maps agree on every backend; and `inspect explain`
//! predicts the backend a real new connection from a chosen port then
//! reaches. `FAILOVER_SEED` replays a sequence; the seed is printed.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    os::fd::FromRawFd,
    time::Duration,
};

use failover_tests::{
    agent_lab::{
        AgentLab, Failback, HEALTH_PORT, Health, Layout, Options, Probe, SECOND_SERVICE_PORT,
        SERVICE_PORT, VIP, ask, new_flows,
    },
    config::{BackendToml, ConfigToml, ProbeToml, ServiceToml},
    rng::Rng,
    status::service,
};

const STEPS: usize = 14;
const NAMES: [&str; 3] = ["a", "b", "c"];
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// A TCP connection to the VIP from `port` (inside the client namespace).
fn connect_from(port: u16) -> std::io::Result<TcpStream> {
    // SAFETY: plain socket calls on a descriptor we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        );
        to_address(libc::bind, fd, SocketAddrV4::new(CLIENT, port))?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        stream.set_write_timeout(Some(Duration::from_millis(500)))?;
        to_address(libc::connect, fd, SocketAddrV4::new(VIP, SERVICE_PORT))?;
        Ok(stream)
    }
}

/// `bind` or `connect` (`call`) of the socket `fd` to `addr`.
///
/// # Safety
/// `fd` is a socket the caller owns.
unsafe fn to_address(
    call: unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int,
    fd: libc::c_int,
    addr: SocketAddrV4,
) -> std::io::Result<()> {
    let sockaddr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `sockaddr` is a valid sockaddr_in of the length given.
    let rc = unsafe {
        call(
            fd,
            (&sockaddr as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A random valid configuration of web (tiers of a, b, c; table size;
/// dead-flow policy) and of a second service, api, on some of the hosts.
fn random_config(rng: &mut Rng, base: &ConfigToml) -> ConfigToml {
    let mut config = base.clone();
    // web: tiers (a always in tier 0), a Maglev table or none.
    let web = config.service_mut("web");
    for name in NAMES.iter().skip(1) {
        web.backend_mut(name).tier = Some(rng.below(2) as u8);
    }
    web.table_size = Some(rng.pick(&[0, 251, 16411]));
    // api: 1 to 3 of the hosts.
    let hosts = 1 + rng.below(3) as usize;
    let mut api = ServiceToml::tcp("api", VIP, 81).probe(
        ProbeToml::tcp()
            .port(HEALTH_PORT)
            .interval(Duration::from_millis(100))
            .timeout(Duration::from_millis(50)),
    );
    for i in 0..hosts {
        api = api.backend(
            BackendToml::new(format!("x{i}"), failover::lab::topology::backend_addr(i))
                .port(SECOND_SERVICE_PORT)
                .tier(rng.below(2) as u8),
        );
    }
    config.service(api)
}

/// Invariants after a step.
fn check(lab: &AgentLab, rng: &mut Rng, seed: u64, step: &str) {
    let context = |what: String| format!("seed {seed}, after {step}: {what}\n{}", lab.diag());
    let status = lab.status();
    let web = service(&status, "web");
    let web_id = u64::from(web.id);
    let backends = lab.inspect(&["backends"]);
    let rows = backends.as_array().unwrap();
    // Status and the maps agree on every backend of web.
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    for b in &web.backends {
        let id = u64::from(b.id);
        let row = rows
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{}", context(format!("backend {id} not in the maps"))));
        assert_eq!(row["service"], web_id, "{}", context(format!("{row}")));
        assert_eq!(
            row["state"],
            b.state.as_str(),
            "{}",
            context(format!("status {b:?} vs maps {row}"))
        );
        names.insert(id, b.name.clone());
    }
    // Every tracked flow the program would follow stays within its service.
    let flows = lab.inspect(&["flows", "--limit", "400"]);
    for flow in flows
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["state"] == "open" || f["state"] == "closing")
    {
        let (src, dst) = (flow["src"].as_str().unwrap(), flow["dst"].as_str().unwrap());
        let explained = lab.inspect(&["explain", "tcp", src, dst]);
        if explained["path"] != "established" {
            continue;
        }
        let id = explained["backend"].as_u64().unwrap();
        let row = rows
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{}", context(format!("{explained}"))));
        let service_of_dst = lab.inspect(&["services"]);
        let owner = service_of_dst
            .as_array()
            .unwrap()
            .iter()
            .find(|s| format!("{}:{}", s["vip"].as_str().unwrap(), s["port"]) == dst)
            .map(|s| s["id"].clone());
        assert_eq!(
            Some(row["service"].clone()),
            owner,
            "{}",
            context(format!(
                "flow {src}→{dst} followed to backend {id} of another service"
            ))
        );
        assert!(
            row["state"] == "up" || row["state"] == "draining",
            "{}",
            context(format!(
                "flow {src}→{dst} followed to a {} backend",
                row["state"]
            ))
        );
    }
    // explain predicts a real new connection.
    // Below the ephemeral range: no client socket of the load uses it.
    let port = 20_000 + rng.below(10_000) as u16;
    let explained = lab.inspect(&[
        "explain",
        "tcp",
        &format!("{CLIENT}:{port}"),
        &format!("{VIP}:{SERVICE_PORT}"),
    ]);
    let answer = lab
        .client
        .run(|| connect_from(port).and_then(|mut s| ask(&mut s)));
    match explained["path"].as_str() {
        Some("new_flow") | Some("established") => {
            let predicted = &names[&explained["backend"].as_u64().unwrap()];
            assert_eq!(
                answer.as_ref().ok(),
                Some(predicted),
                "{}",
                context(format!(
                    "explain said {explained}, a connection from :{port} got {answer:?}"
                ))
            );
        }
        _ => assert!(
            answer.is_err(),
            "{}",
            context(format!("explain said {explained}, got {answer:?}"))
        ),
    }
}

#[test]
fn random_operations_keep_maps_and_agent_consistent() {
    let (mut rng, seed) = Rng::from_env();
    eprintln!("seed {seed}");
    let layout = Layout::tiers(&[("a", 0), ("b", 0), ("c", 1)]);
    let options = Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Auto(Duration::from_millis(300)),
    };
    let mut lab = AgentLab::start_layout(options, layout, |_, config| config);
    let base = lab.config().clone();
    let load = new_flows(
        &lab.client,
        Duration::from_millis(25),
        Duration::from_millis(500),
    );
    let mut healthy = [true; 3];
    for n in 0..STEPS {
        let name = rng.pick(&NAMES);
        let i = NAMES.iter().position(|x| *x == name).unwrap();
        let target = format!("web/{name}");
        let step = match rng.below(9) {
            0 => {
                let deadline = rng.pick(&["2s", "30s"]);
                let (_, out) =
                    lab.ctl_output(&["drain", &target, "--deadline", deadline, "--no-wait"]);
                format!("drain {target} ({deadline}): {}", out.trim())
            }
            1 => {
                let (_, out) = lab.ctl_output(&["undrain", &target]);
                format!("undrain {target}: {}", out.trim())
            }
            2 => {
                let on = rng.pick(&["on", "off"]);
                let (_, out) = lab.ctl_output(&["maintenance", &target, on]);
                format!("maintenance {target} {on}: {}", out.trim())
            }
            3 => {
                let (_, out) = if rng.chance(70) {
                    lab.ctl_output(&["switchover", "web", "--to", name])
                } else {
                    lab.ctl_output(&["switchover", "web", "--release"])
                };
                format!("switchover: {}", out.trim())
            }
            4 => {
                healthy[i] = !healthy[i];
                lab.health[i].set(if healthy[i] { Health::Up } else { Health::Down });
                format!("{name} {}", if healthy[i] { "healthy" } else { "failing" })
            }
            5 => {
                lab.kill_agent();
                lab.start_agent();
                "SIGKILL and restart".to_owned()
            }
            _ => {
                lab.write_config(&random_config(&mut rng, &base));
                let (ok, out) = lab.ctl_output(&["reload"]);
                assert!(ok, "seed {seed}: a valid reload was refused: {out}");
                format!("reload: {}", out.trim())
            }
        };
        eprintln!("seed {seed} step {n}: {step}");
        std::thread::sleep(Duration::from_millis(600));
        check(&lab, &mut rng, seed, &step);
    }
    load.finish();
}
