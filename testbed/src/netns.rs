//! Named network namespaces (`ip netns`), each owned by a guard that deletes it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::{program, run, run_unless_gone};
use crate::error::{Error, Result};
use crate::link::Place;

/// Where `ip netns` keeps its namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";

/// A named network namespace, deleted when dropped.
///
/// A new namespace has its loopback up and IPv6 disabled: the testbed's data
/// plane is IPv4, and IPv6 autoconfiguration would otherwise emit router
/// solicitations and MLD reports from every interface, which every bridge floods
/// and a controller would receive as unexpected packets.
#[derive(Debug)]
pub struct Netns {
    name: String,
    deleted: bool,
    /// False for a handle on a namespace another node owns: it neither
    /// deletes the namespace nor stops what runs in it.
    owned: bool,
}

impl Netns {
    pub fn create(name: String) -> Result<Self> {
        run(&mut program("ip", &["netns", "add", &name]))?;
        // From here on the guard deletes the namespace if setup fails.
        let ns = Self {
            name,
            deleted: false,
            owned: true,
        };
        ns.run(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A second handle on this namespace for a part built into it by
    /// someone else (a WAN cable's end in a gateway node): it runs commands
    /// there, but deleting or dropping it leaves the namespace to its owner.
    pub(crate) fn borrowed(&self) -> Self {
        Self {
            name: self.name.clone(),
            deleted: false,
            owned: false,
        }
    }

    /// Whether deleting this handle deletes the namespace.
    pub fn is_owned(&self) -> bool {
        self.owned
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file `ip netns` mounts the namespace on; opening it and calling
    /// `setns` moves a thread into the namespace.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// `program` prepared to run inside the namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.place().exec(program)
    }

    /// Runs `argv` inside the namespace; a non-zero exit is an error. Returns stdout.
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        let (first, rest) = argv
            .split_first()
            .ok_or_else(|| Error::Usage("empty command line".into()))?;
        let mut command = self.command(first);
        command.args(rest);
        run(&mut command)
    }

    /// Runs `ip -n <ns> args…`, which needs no process inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut command = self.place().ip();
        command.args(args);
        run(&mut command)
    }

    /// Where interfaces of this namespace live, for [`crate::link::Iface`].
    pub fn place(&self) -> Place {
        Place::Netns(self.name.clone())
    }

    /// Pids of the processes inside the namespace (none once it is deleted).
    pub fn pids(&self) -> Result<Vec<u32>> {
        if self.deleted {
            return Ok(Vec::new());
        }
        pids(&self.name)
    }

    /// Deletes the namespace. Processes still inside keep it alive in the
    /// kernel, so stop them first. Deleting twice is a no-op.
    pub fn delete(&mut self) -> Result<()> {
        if self.deleted || !self.owned {
            return Ok(());
        }
        delete(&self.name)?;
        self.deleted = true;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            eprintln!("iris-testbed: {e}");
        }
    }
}

/// Deletes the namespace `name`; one that does not exist is fine.
pub(crate) fn delete(name: &str) -> Result<()> {
    run_unless_gone(
        &mut program("ip", &["netns", "del", name]),
        &["No such file or directory"],
    )
}

/// Names of all named namespaces on the host.
pub fn list() -> Result<Vec<String>> {
    let text = run(&mut program("ip", &["netns", "list"]))?;
    // Lines read "name" or "name (id: 3)".
    Ok(text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Pids of the processes inside the namespace `name`.
pub(crate) fn pids(name: &str) -> Result<Vec<u32>> {
    let text = run(&mut program("ip", &["netns", "pids", name]))?;
    text.split_whitespace()
        .map(|pid| {
            pid.parse().map_err(|_| Error::UnexpectedOutput {
                command: format!("ip netns pids {name}"),
                reason: "expected one pid per line".into(),
                output: text.clone(),
            })
        })
        .collect()
}
