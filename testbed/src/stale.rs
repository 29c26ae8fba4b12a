//! Finding and removing what testbeds left behind: namespaces, root-namespace
//! veths, processes and state directories of runs that crashed or were killed
//! before they could tear down.
//!
//! A prefix is stale when the process recorded as its owner no longer runs,
//! or when its namespaces or links exist without any state directory. Live
//! testbeds, including those of other processes, are never touched.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::Result;
use crate::link::{delete_link, root_veths, Iface, Place};
use crate::naming::Prefix;
use crate::netns;
use crate::process::{terminate_pids, STOP_GRACE};
use crate::state::{process_start_time, read_owner, remove_tree};
use crate::Inventory;

/// The broker's `netns` driver names an L1 node's namespace
/// `irisn-<PM namespace>-<node id>` (docs/broker.md): on a testbed PM it
/// belongs to the PM's testbed, and goes with it.
const NODE_NETNS: &str = "irisn-";

/// The testbed prefix a namespace belongs to: for an L1 node's, its PM's
/// (none when the PM is no testbed's: a broker's elsewhere on the host is
/// not ours to remove); otherwise its own (no testbed draws the prefix
/// `irisn`).
fn netns_prefix(ns: &str) -> Option<Prefix> {
    match ns.strip_prefix(NODE_NETNS) {
        Some(pm) => Prefix::of_netns(pm),
        None => Prefix::of_netns(ns),
    }
}

/// A state directory younger than this without an owner file is a testbed
/// being created (it writes the file right after reserving the directory),
/// not a leftover.
const OWNERLESS_GRACE: Duration = Duration::from_secs(30);

/// What [`cleanup_stale`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Stale prefixes whose resources were removed.
    pub removed: Vec<Prefix>,
    /// Prefixes left alone because their owner runs, with the owner's pid
    /// (`None`: a testbed still being created).
    pub live: Vec<(Prefix, Option<u32>)>,
    pub killed_pids: Vec<u32>,
    pub deleted_namespaces: Vec<String>,
    pub deleted_links: Vec<String>,
}

/// Removes the leftovers of every stale testbed found under `state_root` or on
/// the host.
pub fn cleanup_stale(state_root: &Path) -> Result<CleanupReport> {
    let namespaces = netns::list()?;
    let links = root_veths()?;
    let mut prefixes: BTreeSet<Prefix> = namespaces
        .iter()
        .filter_map(|ns| netns_prefix(ns))
        .chain(links.iter().filter_map(|l| Prefix::of_link(l)))
        .collect();
    if let Ok(entries) = fs::read_dir(state_root) {
        for entry in entries.flatten() {
            if let Some(prefix) = entry.file_name().to_str().and_then(Prefix::parse) {
                prefixes.insert(prefix);
            }
        }
    }
    let mut report = CleanupReport::default();
    for prefix in prefixes {
        match live_owner(state_root, &prefix) {
            Some(pid) => report.live.push((prefix, pid)),
            None => {
                remove_prefix(state_root, &prefix, &namespaces, &links, &mut report)?;
                report.removed.push(prefix);
            }
        }
    }
    Ok(report)
}

/// Removes everything carrying `prefix`, whether or not its owner runs. For a
/// testbed that is known to be abandoned.
pub fn cleanup_prefix(state_root: &Path, prefix: &Prefix) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    remove_prefix(
        state_root,
        prefix,
        &netns::list()?,
        &root_veths()?,
        &mut report,
    )?;
    report.removed.push(prefix.clone());
    Ok(report)
}

/// `Some` for a live prefix, with its owner's pid if known; `None` when stale.
fn live_owner(state_root: &Path, prefix: &Prefix) -> Option<Option<u32>> {
    let dir = state_root.join(prefix.as_str());
    match read_owner(&dir) {
        Some(owner) => owner.is_alive().then_some(Some(owner.pid)),
        None => {
            let age = fs::metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            // A directory being created has no owner file for a moment.
            match age {
                Some(age) if age < OWNERLESS_GRACE => Some(None),
                _ => None,
            }
        }
    }
}

fn remove_prefix(
    state_root: &Path,
    prefix: &Prefix,
    namespaces: &[String],
    links: &[String],
    report: &mut CleanupReport,
) -> Result<()> {
    let dir = state_root.join(prefix.as_str());
    let ours: Vec<&String> = namespaces
        .iter()
        .filter(|ns| netns_prefix(ns).as_ref() == Some(prefix))
        .collect();
    // Processes first: those inside the namespaces, and the OVS daemons,
    // which name the state directory on their command line.
    let mut pids = BTreeSet::new();
    for ns in &ours {
        pids.extend(netns::pids(ns)?);
    }
    pids.extend(pids_mentioning(&dir));
    let pids: Vec<u32> = pids.into_iter().collect();
    terminate_pids(&pids, STOP_GRACE)?;
    report.killed_pids.extend(&pids);
    for link in links
        .iter()
        .filter(|l| Prefix::of_link(l).as_ref() == Some(prefix))
    {
        delete_link(&Iface::new(link, Place::Root))?;
        report.deleted_links.push(link.clone());
    }
    for ns in ours {
        netns::delete(ns)?;
        report.deleted_namespaces.push(ns.clone());
    }
    remove_tree(&dir)
}

/// Live processes whose command line mentions `dir`.
fn pids_mentioning(dir: &Path) -> Vec<u32> {
    // The trailing slash keeps `/x/ir7kq` from matching `/x/ir7kqz…`.
    let needle = format!("{}/", dir.to_string_lossy());
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| {
                    cmdline
                        .split(|b| *b == 0)
                        .any(|arg| String::from_utf8_lossy(arg).contains(&needle))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Which of a testbed's resources still exist (empty after a clean teardown).
pub fn leftovers(inventory: &Inventory) -> Result<Vec<String>> {
    let mut left = Vec::new();
    let namespaces = netns::list()?;
    for ns in namespaces
        .iter()
        .filter(|ns| netns_prefix(ns).as_ref() == Some(&inventory.prefix))
    {
        left.push(format!("namespace {ns}"));
    }
    for link in root_veths()?
        .iter()
        .filter(|l| Prefix::of_link(l).as_ref() == Some(&inventory.prefix))
    {
        left.push(format!("root-namespace link {link}"));
    }
    for pid in &inventory.pids {
        if process_start_time(*pid)?.is_some() {
            left.push(format!("process {pid}"));
        }
    }
    if inventory.state_dir.exists() {
        left.push(format!("state directory {}", inventory.state_dir.display()));
    }
    Ok(left)
}

impl std::fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |items: &mut dyn Iterator<Item = String>| {
            let v: Vec<String> = items.collect();
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        writeln!(
            f,
            "removed testbeds: {}",
            join(&mut self.removed.iter().map(|p| p.to_string()))
        )?;
        writeln!(
            f,
            "left alone (owner running): {}",
            join(&mut self.live.iter().map(|(p, pid)| match pid {
                Some(pid) => format!("{p} (pid {pid})"),
                None => format!("{p} (being created)"),
            }))
        )?;
        writeln!(
            f,
            "stopped processes: {}",
            join(&mut self.killed_pids.iter().map(u32::to_string))
        )?;
        writeln!(
            f,
            "deleted namespaces: {}",
            join(&mut self.deleted_namespaces.iter().cloned())
        )?;
        write!(
            f,
            "deleted root-namespace links: {}",
            join(&mut self.deleted_links.iter().cloned())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_l1_nodes_namespace_belongs_to_its_pms_testbed() {
        let p = Prefix::parse("ir7kq");
        assert_eq!(netns_prefix("ir7kq-pm1"), p);
        assert_eq!(netns_prefix("irisn-ir7kq-pm1-379259d4df20"), p);
        assert_eq!(netns_prefix("irisn-pmfull-7c272b99f1c2"), None);
        assert_eq!(netns_prefix("irisn-"), None);
    }
}
