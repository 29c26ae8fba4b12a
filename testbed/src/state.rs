//! The testbed's state directory: one directory per live testbed under a common
//! root, holding each emulated PM's OVS database, sockets and logs.
//!
//! Creating the directory is what reserves a [`Prefix`]: `mkdir` is atomic, so
//! two testbeds (in one process or in several) can never take the same prefix.
//! The `owner` file names the process that owns the testbed, which is how
//! [`crate::stale`] tells the leftovers of a crashed run from a live testbed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::naming::Prefix;

/// Default root of all state directories. `/run` is a tmpfs: a reboot, which
/// also removes every namespace, empties it.
pub const DEFAULT_STATE_ROOT: &str = "/run/iris-testbed";

const OWNER_FILE: &str = "owner";

/// The process that owns a testbed, identified by pid and start time so that a
/// recycled pid is not mistaken for the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot).
    pub start_time: u64,
}

impl Owner {
    pub fn current() -> Result<Self> {
        let pid = std::process::id();
        let start_time = process_start_time(pid)?.ok_or_else(|| {
            Error::io(
                "reading this process's start time",
                io::Error::new(io::ErrorKind::NotFound, "/proc/self/stat vanished"),
            )
        })?;
        Ok(Self { pid, start_time })
    }

    /// Whether the owner still runs (a zombie does not count).
    pub fn is_alive(&self) -> bool {
        matches!(process_start_time(self.pid), Ok(Some(t)) if t == self.start_time)
    }

    fn encode(&self, label: &str) -> String {
        format!("{} {}\n{label}\n", self.pid, self.start_time)
    }

    fn decode(text: &str) -> Option<Self> {
        let mut fields = text.lines().next()?.split_whitespace();
        let pid = fields.next()?.parse().ok()?;
        let start_time = fields.next()?.parse().ok()?;
        Some(Self { pid, start_time })
    }
}

/// Start time of a running (non-zombie) process, `None` if there is none.
pub(crate) fn process_start_time(pid: u32) -> Result<Option<u64>> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    match fs::read_to_string(&path) {
        Ok(stat) => Ok(parse_stat(&stat)
            .filter(|(state, _)| *state != 'Z' && *state != 'X')
            .map(|(_, start)| start)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io_at("reading", &path, e)),
    }
}

/// (state, start time) from a `/proc/<pid>/stat` line. The command name in
/// parentheses may itself contain spaces and parentheses, so fields are counted
/// from the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) comes field 4; start time is field 22.
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

/// A reserved prefix and its directory; removing it is the last step of a
/// teardown.
#[derive(Debug)]
pub struct StateDir {
    prefix: Prefix,
    path: PathBuf,
    removed: bool,
}

impl StateDir {
    /// Reserves a fresh prefix under `root`. `label` (e.g. the test name) is
    /// recorded for humans reading the directory.
    pub fn reserve(root: &Path, label: &str) -> Result<Self> {
        fs::create_dir_all(root).map_err(|e| Error::io_at("creating", root, e))?;
        let owner = Owner::current()?;
        // A prefix is free when its directory can be created and no namespace of
        // an earlier run still carries it (its directory may have been removed by
        // hand).
        let taken = crate::netns::list()?;
        for _ in 0..64 {
            let prefix = Prefix::random();
            if taken
                .iter()
                .any(|ns| Prefix::of_netns(ns).as_ref() == Some(&prefix))
            {
                continue;
            }
            let path = root.join(prefix.as_str());
            match fs::create_dir(&path) {
                Ok(()) => {
                    let dir = Self {
                        prefix,
                        path,
                        removed: false,
                    };
                    let owner_path = dir.path.join(OWNER_FILE);
                    fs::write(&owner_path, owner.encode(label))
                        .map_err(|e| Error::io_at("writing", &owner_path, e))?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io_at("creating", &path, e)),
            }
        }
        Err(Error::Usage(format!(
            "no free testbed prefix after 64 tries under {}; run `iris-testbed cleanup-stale`",
            root.display()
        )))
    }

    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh subdirectory for one node's files.
    pub fn node_dir(&self, node: &str) -> Result<PathBuf> {
        let path = self.path.join(node);
        fs::create_dir(&path).map_err(|e| Error::io_at("creating", &path, e))?;
        Ok(path)
    }

    /// Removes the directory. When the thread is panicking (a failed test or
    /// scenario), the daemons' logs are first copied to a directory under the
    /// system's temporary directory and its path is printed, since they are
    /// usually what explains the failure.
    pub fn remove(&mut self) -> Result<()> {
        if self.removed {
            return Ok(());
        }
        if std::thread::panicking() {
            match preserve_logs(&self.path, self.prefix.as_str()) {
                Ok(Some(dest)) => eprintln!(
                    "iris-testbed {}: daemon logs kept in {}",
                    self.prefix,
                    dest.display()
                ),
                Ok(None) => {}
                Err(e) => eprintln!("iris-testbed {}: cannot keep logs: {e}", self.prefix),
            }
        }
        remove_tree(&self.path)?;
        self.removed = true;
        Ok(())
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("iris-testbed {}: {e}", self.prefix);
        }
    }
}

/// Removes a directory tree; one that is already gone is fine.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io_at("removing", path, e)),
    }
}

/// Copies every `*.log` and `*.stderr` file below `dir` into a fresh directory
/// under the temporary directory, keeping the node subdirectories. `None` when
/// there was nothing to keep.
pub(crate) fn preserve_logs(dir: &Path, prefix: &str) -> Result<Option<PathBuf>> {
    let dest = std::env::temp_dir().join(format!("iris-testbed-{prefix}-logs"));
    let mut kept = false;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = fs::read_dir(&current).map_err(|e| Error::io_at("reading", &current, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io_at("reading", &current, e))?;
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let is_log = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("log" | "stderr")
            );
            if !is_log {
                continue;
            }
            let relative = path.strip_prefix(dir).unwrap_or(&path);
            let target = dest.join(relative);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(|e| Error::io_at("creating", parent, e))?;
            }
            fs::copy(&path, &target).map_err(|e| Error::io_at("copying", &path, e))?;
            kept = true;
        }
    }
    Ok(kept.then_some(dest))
}

/// The owner recorded in the state directory `dir`; `None` when the file is
/// missing or unreadable.
pub(crate) fn read_owner(dir: &Path) -> Option<Owner> {
    Owner::decode(&fs::read_to_string(dir.join(OWNER_FILE)).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(('S', 987654)));
        assert_eq!(parse_stat("12 (x) Z"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_a_live_owner_and_a_bogus_one_is_not() {
        let me = Owner::current().unwrap();
        assert!(me.is_alive());
        let recycled = Owner {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert!(!recycled.is_alive());
        assert_eq!(Owner::decode(&me.encode("label")), Some(me));
        assert_eq!(Owner::decode("not numbers\n"), None);
    }
}
