//! Opening a sled database whose lock another process still holds.
//!
//! sled takes an exclusive `flock` on its `db` file while a database is
//! open. A process restarted at once after a `kill -9` can find that lock
//! still held for a moment: the lock belongs to the open file, and a child
//! the dead process was spawning holds a copy of every descriptor until it
//! execs. Both the controller and the broker therefore wait a bounded time
//! for the lock, naming who holds it, rather than refusing at once; a
//! second daemon started on the same directory by mistake is still refused,
//! only later.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long a process waits for a store's lock before it gives up.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Whether `e` is sled's report of a lock held by another open file (sled
/// says so only in the message, with kind `Other`).
pub fn is_lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock"))
}

/// The processes with the file `file` open, as "pid (command)", found
/// through `/proc`; empty where `/proc` says nothing (another namespace, no
/// permission).
pub fn holders(file: &Path) -> Vec<String> {
    let Ok(target) = std::fs::canonicalize(file) else {
        return Vec::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let opens = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == target));
        if opens {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            found.push(format!("{pid} ({})", comm.trim()));
        }
    }
    found
}

/// [`holders`] as one phrase for a message.
pub fn holders_text(file: &Path) -> String {
    let who = holders(file);
    if who.is_empty() {
        "not visible in /proc".to_owned()
    } else {
        who.join(", ")
    }
}

/// Calls `open` until it succeeds, fails for another reason than a held
/// lock (`held` says which), or `wait` has passed; says once, naming the
/// holders of `dir`'s `db` file, that it waits.
pub fn open_waiting<T, E>(
    dir: &Path,
    wait: Duration,
    mut open: impl FnMut() -> Result<T, E>,
    held: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let deadline = Instant::now() + wait;
    let mut said = false;
    loop {
        match open() {
            Err(e) if held(&e) && Instant::now() < deadline => {
                if !said {
                    said = true;
                    tracing::warn!(
                        "the store {} is locked by another process ({}); waiting up to {} s \
                         for it to let go",
                        dir.display(),
                        holders_text(&dir.join("db")),
                        wait.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_let_go_while_waiting_is_taken_and_one_kept_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let first = sled::open(dir.path()).unwrap();
        let me = format!("{} (", std::process::id());
        assert!(
            holders(&dir.path().join("db"))
                .iter()
                .any(|h| h.starts_with(&me)),
            "this process holds the db file"
        );
        // Kept: refused once the wait is over, as sled's lock error.
        let start = Instant::now();
        let kept = open_waiting(
            dir.path(),
            Duration::from_millis(200),
            || sled::open(dir.path()),
            is_lock_held,
        );
        assert!(kept.as_ref().is_err_and(is_lock_held), "{kept:?}");
        assert!(start.elapsed() >= Duration::from_millis(200));
        // Let go during the wait: opened.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        let opened = open_waiting(
            dir.path(),
            LOCK_WAIT,
            || sled::open(dir.path()),
            is_lock_held,
        );
        releaser.join().unwrap();
        assert!(opened.is_ok(), "{opened:?}");
    }

    #[test]
    fn another_error_is_returned_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let start = Instant::now();
        let r = open_waiting(&file, LOCK_WAIT, || sled::open(&file), is_lock_held);
        assert!(r.is_err());
        assert!(start.elapsed() < LOCK_WAIT);
    }
}
