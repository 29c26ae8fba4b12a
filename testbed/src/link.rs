//! Network interfaces: veth pairs whose ends live in namespaces (or the root
//! namespace), and the settings the testbed applies to any interface.

use crate::addr::{Ipv4Cidr, MacAddr};
use std::ffi::OsStr;
use std::process::Command;

use crate::command::{program, run, run_unless_gone};
use crate::error::Result;

/// The namespace an interface lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The host's own (root) namespace.
    Root,
    /// A named namespace.
    Netns(String),
}

impl Place {
    /// `ip`, aimed at this namespace (`ip -n <ns>`).
    pub(crate) fn ip(&self) -> Command {
        match self {
            Self::Root => Command::new("ip"),
            Self::Netns(ns) => program("ip", &["-n", ns.as_str()]),
        }
    }

    /// `program`, run inside this namespace (`ip netns exec <ns> program`).
    pub(crate) fn exec(&self, program_name: impl AsRef<OsStr>) -> Command {
        match self {
            Self::Root => Command::new(program_name),
            Self::Netns(ns) => {
                let mut command = program("ip", &["netns", "exec", ns.as_str()]);
                command.arg(program_name);
                command
            }
        }
    }
}

/// One network interface, by name and namespace. Methods configure it with
/// `ip` and `ethtool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub place: Place,
}

impl Iface {
    pub fn new(name: impl Into<String>, place: Place) -> Self {
        Self {
            name: name.into(),
            place,
        }
    }

    /// Runs `ip args…` in the interface's namespace. Returns stdout.
    pub(crate) fn ip(&self, args: &[&str]) -> Result<String> {
        let mut command = self.place.ip();
        command.args(args);
        run(&mut command)
    }

    pub fn set_up(&self) -> Result<()> {
        self.ip(&["link", "set", "dev", &self.name, "up"]).map(drop)
    }

    pub fn set_mac(&self, mac: MacAddr) -> Result<()> {
        self.ip(&[
            "link",
            "set",
            "dev",
            &self.name,
            "address",
            &mac.to_string(),
        ])
        .map(drop)
    }

    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.ip(&["link", "set", "dev", &self.name, "mtu", &mtu.to_string()])
            .map(drop)
    }

    pub fn add_addr(&self, addr: Ipv4Cidr) -> Result<()> {
        self.ip(&["addr", "add", &addr.to_string(), "dev", &self.name])
            .map(drop)
    }

    /// Makes the interface a port of the Linux bridge `bridge`.
    pub fn set_master(&self, bridge: &str) -> Result<()> {
        self.ip(&["link", "set", "dev", &self.name, "master", bridge])
            .map(drop)
    }

    /// Turns off checksum and segmentation offloads. The OVS userspace datapath
    /// reads frames with AF_PACKET and drops TSO/GSO super-frames and frames
    /// whose checksum was left to the (absent) hardware, so every interface
    /// whose traffic meets a netdev bridge needs this.
    pub fn disable_offloads(&self) -> Result<()> {
        self.set_offloads(false)
    }

    /// Turns scatter-gather, checksum and segmentation offloads on: what an
    /// interface needs to hand TSO super-frames to an OVS running with
    /// `other_config:userspace-tso-enable=true`, which reads them with their
    /// virtio-net header and leaves segmentation to the egress port.
    pub fn enable_offloads(&self) -> Result<()> {
        self.set_offloads(true)
    }

    fn set_offloads(&self, on: bool) -> Result<()> {
        let state = if on { "on" } else { "off" };
        let mut command = self.place.exec("ethtool");
        command.args(["-K", &self.name]);
        // Scatter-gather is left as the driver set it when turning off:
        // without tx checksumming the kernel does not use TSO/GSO anyway.
        let features: &[&str] = if on {
            &["sg", "tx", "tso", "gso"]
        } else {
            &["tx", "tso", "gso"]
        };
        for feature in features {
            command.args([*feature, state]);
        }
        run(&mut command).map(drop)
    }
}

/// A veth pair, deleted (both ends) when dropped.
#[derive(Debug)]
pub struct VethPair {
    a: Iface,
    b: Iface,
    deleted: bool,
}

impl VethPair {
    /// Creates the pair with each end directly in its namespace (it never
    /// appears in the root namespace unless placed there), sets the MTU of both
    /// ends, turns their offloads off and brings them up.
    pub fn create(a: Iface, b: Iface, mtu: u32) -> Result<Self> {
        let mtu_text = mtu.to_string();
        let mut command = program("ip", &["link", "add", &a.name]);
        if let Place::Netns(ns) = &a.place {
            command.args(["netns", ns]);
        }
        command.args(["mtu", &mtu_text, "type", "veth", "peer", "name", &b.name]);
        if let Place::Netns(ns) = &b.place {
            command.args(["netns", ns]);
        }
        command.args(["mtu", &mtu_text]);
        run(&mut command)?;
        let pair = Self {
            a,
            b,
            deleted: false,
        };
        for end in [&pair.a, &pair.b] {
            end.disable_offloads()?;
            end.set_up()?;
        }
        Ok(pair)
    }

    pub fn a(&self) -> &Iface {
        &self.a
    }

    pub fn b(&self) -> &Iface {
        &self.b
    }

    /// Deletes the pair. An end that is already gone (its namespace was
    /// deleted, or someone else removed it) counts as deleted.
    pub fn delete(&mut self) -> Result<()> {
        if self.deleted {
            return Ok(());
        }
        delete_link(&self.a)?;
        self.deleted = true;
        Ok(())
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            eprintln!("iris-testbed: {e}");
        }
    }
}

/// Deletes one interface (for a veth, both ends); a missing interface or
/// namespace is fine.
pub(crate) fn delete_link(iface: &Iface) -> Result<()> {
    let mut command = iface.place.ip();
    command.args(["link", "del", "dev", &iface.name]);
    run_unless_gone(
        &mut command,
        &[
            "Cannot find device",
            "No such device",
            "No such file or directory",
        ],
    )
}

/// Names of the veth interfaces in the root namespace.
pub(crate) fn root_veths() -> Result<Vec<String>> {
    let text = run(&mut program("ip", &["-o", "link", "show", "type", "veth"]))?;
    // Lines read "7: name@peer: <...> ..." or "7: name: <...>".
    Ok(text
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect())
}
