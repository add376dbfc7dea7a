//! The demo's story: traffic to the primary, two failovers, a failback
//! after the hold-down and a standby rejoining, each measured from the
//! client's records while the agent's log is narrated alongside.

use std::time::{Duration, Instant};

use super::{
    BACKEND_PORT, BACKEND_UDP_PORT, BACKUP, DEMO_DEADLINE, FAILBACK_DELAY, HOSTS, LOG_POLL,
    PRIMARY, STANDBY, Stop, WINDOW,
    client::{Client, Outcome, Record},
    failover_bound,
    lab::Lab,
    log_tail::LogTail,
    narration::describe_agent_line,
    report::{self, Failover},
    settle_time,
    signal::interrupted,
};
use crate::lab::servers::BackendServer;

/// The phases of the demo and their measurements, printed as they happen.
pub(super) struct Scenario<'lab> {
    lab: &'lab mut Lab,
    /// t=0: when the client started.
    t0: Instant,
    deadline: Instant,
    next_line: Instant,
    /// Records already shown.
    shown: usize,
    log: LogTail,
}

impl<'lab> Scenario<'lab> {
    pub(super) fn new(lab: &'lab mut Lab) -> Result<Self, Stop> {
        let agent = lab.agent.as_ref().expect("agent started");
        let log = LogTail::open(agent.log_path())?;
        Ok(Self {
            lab,
            t0: Instant::now(),
            deadline: Instant::now() + DEMO_DEADLINE,
            next_line: Instant::now(),
            shown: 0,
            log,
        })
    }

    pub(super) fn play(&mut self) -> Result<(), Stop> {
        report::print_intro();
        // Show what the agent said during start-up.
        self.pump_log();

        let client = Client::start(&self.lab.net().client)?;
        self.lab.client = Some(client);
        self.t0 = Instant::now();
        self.next_line = self.t0 + WINDOW;

        println!();
        println!("1. traffic flows to the primary");
        self.run_for(Duration::from_secs(4))?;
        if self.answers_since(PRIMARY, self.t0) == 0 {
            return Err(anyhow::anyhow!("the primary never answered through the VIP").into());
        }

        println!();
        println!("2. killing the primary backend (its server stops)");
        println!(
            "   its host now refuses SYNs with RST: the XDP program sends each refused SYN on to the"
        );
        println!(
            "   standby (redispatch) and counts the refusals; three of them eject the primary, while"
        );
        println!(
            "   its probes (every {} ms, fall 3) would need three failures in a row",
            super::probe_interval().as_millis()
        );
        let first = self.fail(PRIMARY, STANDBY)?;
        self.run_for(settle_time())?;

        println!();
        println!("3. killing the standby too: the third tier (backup) takes over");
        let second = self.fail(STANDBY, BACKUP)?;
        self.run_for(settle_time())?;

        println!();
        println!("4. restoring the primary");
        println!(
            "   the agent sees it healthy after 2 probes, then holds failback for {} s so that a",
            FAILBACK_DELAY.as_secs()
        );
        println!("   flapping primary cannot drag traffic back and forth");
        let back = self.restore(PRIMARY)?;
        self.run_for(settle_time())?;

        println!();
        println!(
            "5. restoring the standby: it rejoins at once as the standby; new flows stay on the primary"
        );
        self.restart_server(STANDBY);
        self.run_for(Duration::from_secs(2))?;

        report::print_summary(&self.records(), &[first, second], back);
        Ok(())
    }

    /// Stops `victim`'s server, waits for answers from `successor`, reports the gap.
    fn fail(&mut self, victim: usize, successor: usize) -> Result<Failover, Stop> {
        let stopping = Instant::now();
        drop(self.lab.servers[victim].take());
        let killed = Instant::now();
        println!(
            "   t={:.2}s  {} killed",
            self.secs(killed),
            HOSTS[victim].name
        );
        let found = self.run_until(failover_bound(), |records| {
            first_answer(records, successor, killed).map(|r| r.finished)
        })?;
        // Connections that failed while the server was shutting down count too.
        let failed = self.failures_between(stopping, found.unwrap_or_else(Instant::now));
        match found {
            Some(at) => println!(
                "   measured failover gap: {:.2} s (from kill to first answer from the {}), failed requests: {}",
                (at - killed).as_secs_f64(),
                HOSTS[successor].name,
                report::describe_failures(&failed)
            ),
            None => println!(
                "   no answer from the {} within {:?} of the kill (failed requests: {})",
                HOSTS[successor].name,
                failover_bound(),
                report::describe_failures(&failed)
            ),
        }
        Ok(Failover {
            from: victim,
            to: successor,
            gap: found.map(|at| at - killed),
            failed: failed.len(),
        })
    }

    /// Restarts `host`'s server and waits until new flows land on it again.
    fn restore(&mut self, host: usize) -> Result<Option<Duration>, Stop> {
        let restored = self.restart_server(host);
        let bound = FAILBACK_DELAY + failover_bound();
        let found = self.run_until(bound, |records| {
            first_answer(records, host, restored).map(|r| r.finished)
        })?;
        match found {
            Some(at) => println!(
                "   failback after the hold-down delay: new flows back on the {} at t={:.2}s, {:.2} s after it came back",
                HOSTS[host].name,
                self.secs(at),
                (at - restored).as_secs_f64()
            ),
            None => println!(
                "   no failback to the {} within {} s",
                HOSTS[host].name,
                bound.as_secs()
            ),
        }
        Ok(found.map(|at| at - restored))
    }

    /// Starts `host`'s server again; returns when.
    fn restart_server(&mut self, host: usize) -> Instant {
        self.lab.servers[host] = Some(BackendServer::start(
            &self.lab.net().backends[host],
            HOSTS[host].name,
            BACKEND_PORT,
            BACKEND_UDP_PORT,
        ));
        let restored = Instant::now();
        println!(
            "   t={:.2}s  {} server running again",
            self.secs(restored),
            HOSTS[host].name
        );
        restored
    }

    fn secs(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.t0).as_secs_f64()
    }

    fn run_for(&mut self, duration: Duration) -> Result<(), Stop> {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.step()?;
        }
        Ok(())
    }

    /// Steps until `found` returns a time, or `bound` passes.
    fn run_until(
        &mut self,
        bound: Duration,
        found: impl Fn(&[Record]) -> Option<Instant>,
    ) -> Result<Option<Instant>, Stop> {
        let until = Instant::now() + bound;
        loop {
            let hit = found(&self.records());
            if hit.is_some() {
                return Ok(hit);
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            self.step()?;
        }
    }

    /// Waits at most [`LOG_POLL`]: prints new agent log lines, and a traffic
    /// line when a window is complete.
    fn step(&mut self) -> Result<(), Stop> {
        if interrupted() {
            println!();
            println!("interrupted (Ctrl-C): cleaning up");
            return Err(Stop::Interrupted);
        }
        if Instant::now() > self.deadline {
            return Err(anyhow::anyhow!("the demo ran longer than {DEMO_DEADLINE:?}").into());
        }
        if let Some(agent) = self.lab.agent.as_mut()
            && let Ok(Some(status)) = agent.try_wait()
        {
            self.pump_log();
            return Err(anyhow::anyhow!("the agent exited unexpectedly ({status})").into());
        }
        let now = Instant::now();
        let wake = (now + LOG_POLL).min(self.next_line);
        if wake > now {
            std::thread::sleep(wake - now);
        }
        self.pump_log();
        if Instant::now() >= self.next_line {
            self.print_window(self.next_line);
            self.next_line += WINDOW;
        }
        Ok(())
    }

    fn print_window(&mut self, end: Instant) {
        let records = self.records();
        let window: Vec<Record> = records[self.shown.min(records.len())..]
            .iter()
            .take_while(|r| r.finished < end)
            .copied()
            .collect();
        self.shown += window.len();
        report::print_window(self.secs(end), &window);
    }

    fn pump_log(&mut self) {
        for line in self.log.new_lines() {
            if let Some(text) = describe_agent_line(&line) {
                println!("      [agent] {text}");
            }
        }
    }

    /// The client's requests so far.
    fn records(&self) -> Vec<Record> {
        self.lab
            .client
            .as_ref()
            .map(Client::records)
            .unwrap_or_default()
    }

    fn answers_since(&self, backend: usize, since: Instant) -> usize {
        self.records()
            .iter()
            .filter(|r| r.started >= since && r.outcome == Outcome::Answer(backend))
            .count()
    }

    fn failures_between(&self, from: Instant, to: Instant) -> Vec<Outcome> {
        self.records()
            .iter()
            .filter(|r| r.finished >= from && r.finished <= to)
            .filter(|r| !matches!(r.outcome, Outcome::Answer(_)))
            .map(|r| r.outcome)
            .collect()
    }
}

/// The first request started after `after` that `backend` answered.
fn first_answer(records: &[Record], backend: usize, after: Instant) -> Option<Record> {
    records
        .iter()
        .find(|r| r.started >= after && r.outcome == Outcome::Answer(backend))
        .copied()
}
