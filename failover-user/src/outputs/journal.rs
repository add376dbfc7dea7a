//! The event journal: one JSON object per line, each written with a single
//! `write(2)` (no user-space buffer) as its event arrives, rotated by size (`path` → `path.1` → … → `path.<keep>`, the oldest
//! dropped).
//!
//! The journal never stops the agent: a write that fails (disk full, the
//! directory removed) is logged and the line kept, and the next event tries
//! again, reopening the file. At most [`MAX_PENDING_LINES`] unwritten lines
//! are kept; beyond that the oldest are dropped and counted.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use tokio::sync::broadcast::{self, error::RecvError};
use tracing::{debug, warn};

use crate::{config::JournalConfig, events::Event};

/// Permissions of journal files: events name backends and addresses.
pub const FILE_MODE: u32 = 0o640;
/// Unwritten lines kept for the next attempt.
pub const MAX_PENDING_LINES: usize = 1024;

/// Appends every event received to the journal until the channel closes.
/// File work runs on a blocking thread, so a slow disk only delays the
/// journal (which then loses the oldest events, counted) and nothing else.
pub async fn run(config: JournalConfig, mut events: broadcast::Receiver<Event>) {
    let path = config.path.clone();
    let mut journal = Some(Journal::new(config.clone()));
    let mut lost = 0u64;
    loop {
        match events.recv().await {
            Ok(event) => {
                let mut taken = journal
                    .take()
                    .unwrap_or_else(|| Journal::new(config.clone()));
                let written = tokio::task::spawn_blocking(move || {
                    let result = taken.append(&event);
                    (taken, result)
                })
                .await;
                match written {
                    Ok((back, result)) => {
                        if let Err(err) = result {
                            warn!(
                                path = %path.display(),
                                pending = back.pending.len(),
                                cause = %crate::util::chain(&err),
                                "journal write failed; retrying with the next event"
                            );
                        }
                        journal = Some(back);
                    }
                    // Its pending lines are lost with it; start afresh.
                    Err(err) => {
                        warn!(path = %path.display(), cause = %crate::util::chain(&err), "journal writer panicked")
                    }
                }
            }
            Err(RecvError::Lagged(n)) => {
                lost += n;
                warn!(
                    lost = n,
                    lost_total = lost,
                    "journal fell behind; events lost"
                );
            }
            Err(RecvError::Closed) => break,
        }
    }
    if let Some(unwritten) = journal.map(|j| j.pending.len()).filter(|&n| n > 0) {
        warn!(path = %path.display(), unwritten, "journal closed with unwritten events");
    }
}

/// The journal file and what is waiting to go into it.
struct Journal {
    config: JournalConfig,
    /// Open file and its size; `None` after an error (reopened on next use).
    file: Option<(File, u64)>,
    /// Lines (with their `\n`) not written yet, oldest first.
    pending: VecDeque<String>,
    dropped: u64,
}

impl Journal {
    fn new(config: JournalConfig) -> Self {
        Self {
            config,
            file: None,
            pending: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Queues the event's line and writes everything pending.
    fn append(&mut self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_string(event).map_err(io::Error::other)?;
        line.push('\n');
        if self.pending.len() == MAX_PENDING_LINES {
            self.pending.pop_front();
            self.dropped += 1;
            warn!(
                dropped_total = self.dropped,
                "journal backlog full; oldest unwritten event dropped"
            );
        }
        self.pending.push_back(line);
        let result = self.write_pending();
        if result.is_err() {
            // Reopen next time: the handle may point at a removed file.
            self.file = None;
        }
        result
    }

    fn write_pending(&mut self) -> io::Result<()> {
        while let Some(len) = self.pending.front().map(|line| line.len() as u64) {
            let size = match &self.file {
                Some((_, size)) => *size,
                None => self.open()?,
            };
            // A line longer than max_bytes still goes in, alone in its file.
            if size > 0 && size + len > self.config.max_bytes {
                self.file = None;
                self.rotate()?;
                self.open()?;
            }
            let (file, size) = self.file.as_mut().expect("opened above");
            file.write_all(self.pending[0].as_bytes())?;
            file.flush()?;
            *size += len;
            self.pending.pop_front();
        }
        Ok(())
    }

    /// Opens (creating) the journal for appending; returns its size.
    fn open(&mut self) -> io::Result<u64> {
        let path = &self.config.path;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        // Never through a symlink: someone who can write the directory must
        // not make the agent append to (or chmod) another file.
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "{} is a symlink: the journal is not written through one",
                            path.display()
                        ),
                    )
                } else {
                    e
                }
            })?;
        let mut size = file.metadata()?.len();
        if size == 0 {
            // Whatever the umask; on the descriptor, not the path.
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        } else {
            // A write cut short earlier may have left half a line: end it so
            // the next line parses.
            file.seek(SeekFrom::End(-1))?;
            let mut last = [0u8];
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                size += 1;
            }
        }
        self.file = Some((file, size));
        Ok(size)
    }

    /// Shifts `path.N` to `path.N+1` (dropping `path.<keep>`) and `path` to
    /// `path.1`; with `keep` 0 the full journal is removed.
    fn rotate(&mut self) -> io::Result<()> {
        let path = &self.config.path;
        let keep = self.config.keep;
        if keep == 0 {
            return remove_if_exists(path);
        }
        // Only the files there are: `keep` may be large.
        let mut top = 0;
        while top < keep && numbered(path, top + 1).exists() {
            top += 1;
        }
        if top == keep {
            fs::remove_file(numbered(path, keep))?;
            top -= 1;
        }
        for n in (1..=top).rev() {
            fs::rename(numbered(path, n), numbered(path, n + 1))?;
        }
        fs::rename(path, numbered(path, 1))?;
        debug!(path = %path.display(), keep, "journal rotated");
        Ok(())
    }
}

/// `path.n`
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicU32, Ordering},
        time::Duration,
    };

    use serde_json::{Value, json};

    use super::*;
    use crate::events::{EventBus, EventKind};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(what: &str) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "failover-journal-{what}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn lines(path: &Path) -> Vec<Value> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    fn numbered_event(i: u64) -> Event {
        Event::new(EventKind::Operation, format!("operation {i}"))
            .service("web")
            .details(json!({ "seq": i }))
    }

    /// Runs the journal over `events` until the bus closes.
    async fn journal(config: JournalConfig, events: Vec<Event>) {
        let bus = EventBus::new(events.len() + 1);
        let rx = bus.subscribe();
        for event in events {
            bus.publish(event);
        }
        drop(bus);
        tokio::time::timeout(Duration::from_secs(10), run(config, rx))
            .await
            .expect("journal ends when the bus closes");
    }

    #[tokio::test]
    async fn a_symlink_in_place_of_the_journal_is_not_followed() {
        let dir = TempDir::new("symlink");
        std::fs::create_dir_all(&dir.0).unwrap();
        let target = dir.0.join("elsewhere");
        std::fs::write(&target, "not the journal\n").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = dir.0.join("events.jsonl");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let config = JournalConfig {
            path,
            max_bytes: 1 << 20,
            keep: 3,
        };
        journal(config, vec![Event::new(EventKind::AgentStart, "started")]).await;
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "not the journal\n"
        );
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "the link's target was chmod-ed");
    }

    #[tokio::test]
    async fn appends_one_json_line_per_event() {
        let dir = TempDir::new("lines");
        let path = dir.0.join("nested/dir/events.jsonl");
        let config = JournalConfig {
            path: path.clone(),
            max_bytes: 1 << 20,
            keep: 3,
        };
        let events = vec![
            Event::new(EventKind::AgentStart, "started"),
            Event::new(EventKind::Failover, "web: primary -> standby")
                .service("web")
                .backend("standby")
                .details(json!({ "gap_ms": 210 })),
            Event::new(EventKind::BackendUp, "primary healthy").backend("pri\"mary\n"),
        ];
        journal(config.clone(), events).await;

        let written = lines(&path);
        let kinds: Vec<&str> = written
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["agent_start", "failover", "backend_up"]);
        assert_eq!(written[1]["details"]["gap_ms"], 210);
        assert_eq!(written[2]["backend"], "pri\"mary\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, FILE_MODE);

        // A second agent run appends to the same journal.
        journal(config, vec![Event::new(EventKind::AgentStop, "bye")]).await;
        assert_eq!(lines(&path).len(), 4);
        assert!(!numbered(&path, 1).exists());
    }

    #[tokio::test]
    async fn rotation_keeps_at_most_keep_files_and_the_newest_events() {
        let dir = TempDir::new("rotate");
        let path = dir.0.join("events.jsonl");
        let max_bytes = 600;
        let config = JournalConfig {
            path: path.clone(),
            max_bytes,
            keep: 2,
        };
        let count = 60;
        journal(config, (0..count).map(numbered_event).collect()).await;

        let mut files: Vec<String> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]);

        // Oldest to newest: a gap-free run of sequence numbers ending with the last event.
        let mut seqs = Vec::new();
        for file in [numbered(&path, 2), numbered(&path, 1), path.clone()] {
            assert!(
                std::fs::metadata(&file).unwrap().len() <= max_bytes,
                "{}",
                file.display()
            );
            seqs.extend(
                lines(&file)
                    .iter()
                    .map(|e| e["details"]["seq"].as_u64().unwrap()),
            );
        }
        assert_eq!(seqs.last(), Some(&(count - 1)));
        assert!(seqs.len() > 3, "{seqs:?}");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }

    #[tokio::test]
    async fn keep_zero_only_keeps_the_current_file() {
        let dir = TempDir::new("keep0");
        let path = dir.0.join("events.jsonl");
        let config = JournalConfig {
            path: path.clone(),
            max_bytes: 300,
            keep: 0,
        };
        journal(config, (0..20).map(numbered_event).collect()).await;
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
        let last = lines(&path).last().unwrap()["details"]["seq"].as_u64();
        assert_eq!(last, Some(19));
    }

    #[tokio::test]
    async fn a_huge_keep_only_touches_existing_files() {
        let dir = TempDir::new("keepmax");
        let path = dir.0.join("events.jsonl");
        let config = JournalConfig {
            path: path.clone(),
            max_bytes: 300,
            keep: u32::MAX,
        };
        journal(config, (0..20).map(numbered_event).collect()).await;
        let files = std::fs::read_dir(&dir.0).unwrap().count() as u32;
        let mut seqs = Vec::new();
        for n in (1..files).rev() {
            seqs.extend(
                lines(&numbered(&path, n))
                    .iter()
                    .map(|e| e["details"]["seq"].as_u64().unwrap()),
            );
        }
        seqs.extend(
            lines(&path)
                .iter()
                .map(|e| e["details"]["seq"].as_u64().unwrap()),
        );
        assert_eq!(seqs, (0..20).collect::<Vec<u64>>(), "nothing dropped");
    }

    #[test]
    fn a_failed_write_is_retried_with_the_next_event() {
        let dir = TempDir::new("retry");
        std::fs::create_dir_all(&dir.0).unwrap();
        // The journal's directory is a plain file: opening fails.
        let blocker = dir.0.join("logs");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let path = blocker.join("events.jsonl");
        let mut journal = Journal::new(JournalConfig {
            path: path.clone(),
            max_bytes: 1 << 20,
            keep: 1,
        });

        assert!(journal.append(&numbered_event(0)).is_err());
        assert!(journal.append(&numbered_event(1)).is_err());
        std::fs::remove_file(&blocker).unwrap();
        journal.append(&numbered_event(2)).unwrap();

        let seqs: Vec<u64> = lines(&path)
            .iter()
            .map(|e| e["details"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [0, 1, 2]);
    }

    #[test]
    fn a_cut_line_is_ended_before_appending() {
        let dir = TempDir::new("cut");
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("events.jsonl");
        std::fs::write(&path, b"{\"kind\":\"agent_start\"}\n{\"kind\":\"fail").unwrap();
        let mut journal = Journal::new(JournalConfig {
            path: path.clone(),
            max_bytes: 1 << 20,
            keep: 1,
        });
        journal.append(&numbered_event(7)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["details"]["seq"], 7);
        assert_eq!(text.lines().count(), 3);
    }
}
