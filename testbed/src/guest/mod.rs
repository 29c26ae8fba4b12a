//! Real guests: QEMU processes booting a small Linux image
//! ([`image::GuestImage`]) on a PM, their NIC a tap on the PM's `br-int`
//! plugged as libvirt plugs it, driven over QMP ([`qmp::Qmp`]), and live
//! migrated with QEMU's own machinery.
//!
//! A guest's tap is created in the PM's namespace and added to `br-int`
//! with `external_ids` `iris-vi`, `attached-mac`, `iface-id`,
//! `iface-status` and `vm-id`; QEMU runs in the same namespace and opens
//! the tap by name (`-netdev tap,ifname=…,script=no,downscript=no`). The
//! destination of a migration is a second QEMU on another PM, with its own
//! tap in the same VI, started with `-incoming tcp:<its PM's underlay
//! address>:<port>`: the migration stream crosses the testbed's underlay.
//! After the switch-over QEMU announces the guest itself (RARPs); the
//! testbed writes none.
//!
//! A guest on a VLAN ([`GuestSpec::vlan`]) is plugged as libvirt plugs a
//! NIC with a `<vlan><tag>`: on an IaaS compute node its tap joins the
//! Linux bridge of that VLAN; on a PM it is an access port of the PM's
//! bridge of that VLAN ([`pm_vlan_bridge`]), whose trunk is a port of
//! `br-int` in the VI, as an L1 node's hypervisor tags its guests.

pub mod image;
pub mod libvirtd;
pub mod qmp;

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;
use serde_json::{json, Value};

use crate::addr::{Ipv4Cidr, MacAddr};
use crate::error::{Error, Result};
use crate::link::Iface;
use crate::naming::NodeName;
use crate::pm::INTEGRATION_BRIDGE;
use crate::process::{tail_of, Process, STOP_GRACE};
use crate::readiness::{poll_until, Probe};
use crate::{Host, PmId, Testbed};

pub use image::GuestImage;
pub use qmp::Qmp;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// A minimal firmware that boots `-kernel` directly.
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";
/// The guest kernel's command line, before `iris.ip=`: the console on the
/// serial port, and a panic ends QEMU rather than hanging it.
pub const KERNEL_ARGS: &str = "console=ttyS0 quiet panic=-1 ipv6.disable=1";
/// How long QEMU may take to open its QMP socket.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// How QEMU runs the guest's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's own binary translation: slower, runs anywhere.
    Tcg,
}

impl Accel {
    /// KVM when this host's `/dev/kvm` can run an ordinary guest kernel,
    /// TCG otherwise; and why.
    ///
    /// `/dev/kvm` is not enough: on a host whose KVM is PVM (the
    /// `kvm_pvm` module, software virtualisation for clouds without nested
    /// virtualisation) only kernels built as PVM guests boot, and Debian's
    /// kernel spins in its decompressor.
    pub fn detect() -> (Self, String) {
        Self::detect_in(Path::new("/dev/kvm"), Path::new("/sys/module"))
    }

    fn detect_in(dev: &Path, modules: &Path) -> (Self, String) {
        if !dev.exists() {
            return (Self::Tcg, format!("{} does not exist", dev.display()));
        }
        let hardware = ["kvm_intel", "kvm_amd"]
            .into_iter()
            .find(|m| modules.join(m).exists());
        match hardware {
            Some(m) => (Self::Kvm, format!("{} with {m}", dev.display())),
            None if modules.join("kvm_pvm").exists() => (
                Self::Tcg,
                format!(
                    "{} is PVM (kvm_pvm), which boots only PVM guest kernels, not Debian's",
                    dev.display()
                ),
            ),
            None => (
                Self::Tcg,
                format!(
                    "{} exists but neither kvm_intel nor kvm_amd is loaded",
                    dev.display()
                ),
            ),
        }
    }

    fn machine(self) -> &'static [&'static str] {
        match self {
            Self::Kvm => &["-machine", "pc,accel=kvm", "-cpu", "host"],
            Self::Tcg => &["-machine", "pc,accel=tcg"],
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// Names its tap (`<prefix><name>t<pm>`), files and `vm-id`.
    pub name: String,
    pub vi: u32,
    pub mac: MacAddr,
    pub ip: Ipv4Cidr,
    pub accel: Accel,
    pub memory_mib: u32,
    /// The VLAN the NIC is an access port of, if any.
    pub vlan: Option<u16>,
}

impl GuestSpec {
    pub fn new(name: &str, vi: u32, mac: MacAddr, ip: Ipv4Cidr, accel: Accel) -> Self {
        Self {
            name: name.to_owned(),
            vi,
            mac,
            ip,
            accel,
            memory_mib: 128,
            vlan: None,
        }
    }

    /// The NIC on VLAN `vid` (as a compute node plugs every guest).
    pub fn on_vlan(mut self, vid: u16) -> Self {
        self.vlan = Some(vid);
        self
    }
}

/// The OVS bridge of VLAN `vid` on `pm`: a netdev bridge whose own port
/// and guests' taps are access ports of `vid`, and whose patch port to
/// `br-int` carries the VI `vi` tagged. Its own port gets `addr` (the
/// PM's address on that VLAN, e.g. for migration streams), if given,
/// with a MAC of its own ([`host_mac`]). Made once; the bridge's name.
pub fn pm_vlan_bridge(
    tb: &Testbed,
    pm: PmId,
    vi: u32,
    vid: u16,
    addr: Option<Ipv4Cidr>,
) -> Result<String> {
    let pm = tb.pm(pm);
    let bridge = format!("brv{vid}");
    if pm.vsctl(&["br-exists", &bridge]).is_ok() {
        return Ok(bridge);
    }
    let (patch, peer) = (format!("{bridge}-int"), format!("{bridge}-vlan"));
    pm.vsctl(&[
        "add-br",
        &bridge,
        "--",
        "set",
        "Bridge",
        &bridge,
        "datapath_type=netdev",
        "fail_mode=standalone",
        "--",
        "set",
        "Interface",
        &bridge,
        &format!("mtu_request={}", crate::VM_MTU),
        "--",
        "set",
        "Port",
        &bridge,
        &format!("tag={vid}"),
        "--",
        "add-port",
        &bridge,
        &patch,
        "--",
        "set",
        "Interface",
        &patch,
        "type=patch",
        &format!("options:peer={peer}"),
        "--",
        "add-port",
        INTEGRATION_BRIDGE,
        &peer,
        "--",
        "set",
        "Interface",
        &peer,
        "type=patch",
        &format!("options:peer={patch}"),
        &format!("external_ids:iris-vi={vi}"),
        &format!("external_ids:iris-vm={bridge}"),
    ])?;
    let iface = Iface::new(&bridge, pm.netns().place());
    iface.disable_offloads()?;
    if let Some(addr) = addr {
        let hwaddr = format!("other-config:hwaddr=\"{}\"", host_mac(addr));
        pm.vsctl(&["set", "Bridge", &bridge, &hwaddr])?;
        iface.add_addr(addr)?;
    }
    iface.set_up()?;
    Ok(bridge)
}

/// Gives compute node `node` the address `addr` on the Linux bridge of
/// VLAN `vid` (made if need be), as a host's own address on that VLAN,
/// with a MAC of its own ([`host_mac`]).
pub fn compute_vlan_address(
    tb: &Testbed,
    node: crate::ComputeId,
    vid: u16,
    addr: Ipv4Cidr,
) -> Result<()> {
    let node = tb.compute(node);
    let bridge = node.vlan_bridge_for(vid)?;
    let mac = host_mac(addr).to_string();
    node.netns()
        .ip(&["link", "set", "dev", &bridge, "address", &mac])?;
    Iface::new(&bridge, node.netns().place()).add_addr(addr)
}

/// A host bridge's fixed MAC, made of its address (`02:00:<a.b.c.d>`).
/// A Linux or OVS bridge left to itself takes the lowest MAC of its ports,
/// so plugging a guest's tap could change it under the peers' ARP caches
/// (a migration stream to that host then went unanswered, its SYNs sent
/// to the old MAC).
pub fn host_mac(addr: Ipv4Cidr) -> MacAddr {
    let [a, b, c, d] = addr.addr().octets();
    MacAddr([0x02, 0x00, a, b, c, d])
}

/// Where a migration stands, from `query-migrate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationStatus {
    /// `none`, `setup`, `active`, `device`, `completed`, `failed`, …
    pub status: String,
    pub total_time_ms: Option<f64>,
    /// The time the guest was paused, as QEMU measured it.
    pub downtime_ms: Option<f64>,
    pub setup_time_ms: Option<f64>,
    pub transferred_bytes: Option<u64>,
    pub error: Option<String>,
}

impl MigrationStatus {
    pub fn parse(v: &Value) -> Self {
        let ms = |k: &str| v[k].as_f64();
        Self {
            status: v["status"].as_str().unwrap_or("none").to_owned(),
            total_time_ms: ms("total-time"),
            downtime_ms: ms("downtime"),
            setup_time_ms: ms("setup-time"),
            transferred_bytes: v["ram"]["transferred"].as_u64(),
            error: v["error-desc"].as_str().map(str::to_owned),
        }
    }

    /// Whether the migration is over, one way or the other.
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

/// One QEMU process of a guest, on one PM.
#[derive(Debug)]
pub struct Guest {
    name: String,
    host: Host,
    tap: String,
    serial: PathBuf,
    process: Process,
    qmp: Qmp,
    started: Instant,
    plugged: bool,
}

impl Guest {
    /// Plugs a tap for `spec` into `pm`'s `br-int` and boots the image on
    /// it; returns once QMP answers (see [`Guest::wait_booted`]).
    pub fn boot(tb: &Testbed, pm: PmId, spec: &GuestSpec, image: &GuestImage) -> Result<Self> {
        Self::start(tb, Host::Pm(pm), spec, image, None)
    }

    /// Plugs a tap for `spec` into `host` (on a compute node, into the
    /// Linux bridge of the spec's VLAN) and boots the image on it.
    pub fn boot_on(tb: &Testbed, host: Host, spec: &GuestSpec, image: &GuestImage) -> Result<Self> {
        Self::start(tb, host, spec, image, None)
    }

    /// Plugs a tap for `spec` into `host` and starts a QEMU that waits for
    /// the guest's migration on `at`, an address of `host`.
    pub fn incoming_on(
        tb: &Testbed,
        host: Host,
        spec: &GuestSpec,
        image: &GuestImage,
        at: SocketAddrV4,
    ) -> Result<Self> {
        Self::start(tb, host, spec, image, Some(at))
    }

    /// Plugs a tap for `spec` into `pm`'s `br-int` and starts a QEMU that
    /// waits for the guest's migration on `pm`'s underlay address, `port`;
    /// returns that address and the guest.
    pub fn incoming(
        tb: &Testbed,
        pm: PmId,
        spec: &GuestSpec,
        image: &GuestImage,
        port: u16,
    ) -> Result<(SocketAddrV4, Self)> {
        let at = SocketAddrV4::new(tb.pm(pm).underlay_addr().addr(), port);
        Ok((at, Self::start(tb, Host::Pm(pm), spec, image, Some(at))?))
    }

    fn start(
        tb: &Testbed,
        host: Host,
        spec: &GuestSpec,
        image: &GuestImage,
        incoming: Option<SocketAddrV4>,
    ) -> Result<Self> {
        let node = NodeName::new(&spec.name)?;
        let role = match host {
            Host::Pm(pm) => format!("t{}", pm.0),
            Host::Compute(cn) => format!("c{}", cn.0),
        };
        let tap = tb.prefix().link(&node, &role)?;
        let (netns, dir) = match host {
            Host::Pm(pm) => (tb.pm(pm).netns(), tb.pm(pm).ovs().dir()),
            Host::Compute(cn) => (tb.compute(cn).netns(), tb.compute(cn).ovs().dir()),
        };
        let stem = unused_stem(dir, &tap);
        let serial = dir.join(format!("{stem}.serial.log"));
        let qmp_path = dir.join(format!("{tap}.qmp"));
        let log = dir.join(format!("{stem}.qemu.log"));
        let _ = std::fs::remove_file(&qmp_path);

        netns.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
        let iface = Iface::new(&tap, netns.place());
        iface.set_mtu(crate::VM_MTU)?;
        iface.disable_offloads()?;
        iface.set_up()?;
        if let Err(e) = plug_tap(tb, host, spec, &tap) {
            let _ = unplug_tap(tb, host, &tap);
            return Err(e);
        }

        let memory = spec.memory_mib.to_string();
        let append = format!("{KERNEL_ARGS} iris.ip={}", spec.ip);
        let netdev = format!("tap,id=n0,ifname={tap},script=no,downscript=no,vnet_hdr=off");
        let device = format!("virtio-net-pci,netdev=n0,mac={},romfile=", spec.mac);
        let serial_arg = format!("file:{}", serial.display());
        let qmp_arg = format!("unix:{},server=on,wait=off", qmp_path.display());
        let mut command = netns.command(QEMU);
        command.args(["-name", &spec.name]);
        // qboot (qemu-system-data) goes straight to the kernel, where
        // SeaBIOS takes a second or more under TCG.
        if Path::new(QBOOT).is_file() {
            command.args(["-bios", QBOOT]);
        }
        command.args(spec.accel.machine());
        command.args(["-m", &memory, "-smp", "1"]);
        command.args([
            "-nographic",
            "-nodefaults",
            "-no-user-config",
            "-monitor",
            "none",
        ]);
        command.args(["-serial", &serial_arg, "-qmp", &qmp_arg]);
        command.args(["-kernel"]).arg(&image.kernel);
        command.args(["-initrd"]).arg(&image.initramfs);
        command.args(["-append", &append, "-netdev", &netdev, "-device", &device]);
        if let Some(at) = incoming {
            command.args(["-incoming", &format!("tcp:{at}")]);
        }
        let started = Instant::now();
        let running =
            Process::spawn(format!("qemu {tap}"), command, Some(&log)).and_then(|mut p| {
                // A QEMU that exits (a missing kernel, a busy tap) says why
                // in its output, before or after it opened its socket.
                poll_until(&format!("QMP of {tap}"), QMP_TIMEOUT, || {
                    p.ensure_running()?;
                    Ok(if qmp_path.exists() {
                        Probe::Ready(())
                    } else {
                        Probe::NotYet(format!("no {}", qmp_path.display()))
                    })
                })?;
                match Qmp::connect(&qmp_path, QMP_TIMEOUT) {
                    Ok(q) => Ok((p, q)),
                    Err(e) => Err(exit_of(&mut p).unwrap_or(e)),
                }
            });
        // A guest that did not start leaves no tap behind (its QEMU is
        // stopped as the process is dropped).
        let (process, qmp) = running.inspect_err(|_| {
            if let Err(e) = unplug_tap(tb, host, &tap) {
                eprintln!("iris-testbed: {e}");
            }
        })?;
        Ok(Self {
            name: spec.name.clone(),
            host,
            tap,
            serial,
            process,
            qmp,
            started,
            plugged: true,
        })
    }

    /// Waits until the guest's `/init` reports `eth0` configured on the
    /// serial console; how long since QEMU started.
    pub fn wait_booted(&mut self, timeout: Duration) -> Result<Duration> {
        let what = format!("guest {} booting on {}", self.name, self.tap);
        let started = self.started;
        let serial = self.serial.clone();
        let process = &mut self.process;
        poll_until(&what, timeout, || {
            process.ensure_running()?;
            let text = std::fs::read_to_string(&serial).unwrap_or_default();
            if text.contains(image::READY_MARK) {
                Ok(Probe::Ready(started.elapsed()))
            } else if let Some(line) = text.lines().find(|l| l.contains(image::FAILED_MARK)) {
                Err(Error::NotReady {
                    what: what.clone(),
                    waited: started.elapsed(),
                    detail: format!("{line}; the console ends with:\n{}", tail_of(&serial, 20)),
                })
            } else {
                Ok(Probe::NotYet(format!(
                    "the console ends with:\n{}",
                    tail_of(&serial, 5)
                )))
            }
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where this QEMU runs.
    pub fn host(&self) -> Host {
        self.host
    }

    /// The guest's tap, its port on the PM's `br-int`.
    pub fn tap(&self) -> &str {
        &self.tap
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The QMP session.
    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }

    /// `query-status`: `running`, `paused`, `inmigrate`, `postmigrate`, …
    pub fn run_state(&mut self) -> Result<String> {
        let v = self.qmp.execute("query-status", None)?;
        Ok(v["status"].as_str().unwrap_or("").to_owned())
    }

    /// Pauses the guest (`stop`).
    pub fn pause(&mut self) -> Result<()> {
        self.qmp.execute("stop", None).map(drop)
    }

    /// Resumes the guest (`cont`).
    pub fn resume(&mut self) -> Result<()> {
        self.qmp.execute("cont", None).map(drop)
    }

    /// Polls `query-status` until the guest runs (a destination resumes it
    /// once it has loaded the last of the state); how long that took.
    pub fn wait_running(&mut self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let what = format!("guest {} running on {}", self.name, self.tap);
        poll_until(&what, timeout, || {
            self.process.ensure_running()?;
            let state = self.run_state()?;
            Ok(if state == "running" {
                Probe::Ready(start.elapsed())
            } else {
                Probe::NotYet(state)
            })
        })
    }

    /// Sets migration parameters (`migrate-set-parameters`), e.g.
    /// `{"max-bandwidth": 1048576}`.
    pub fn set_migration_parameters(&mut self, parameters: Value) -> Result<()> {
        self.qmp
            .execute("migrate-set-parameters", Some(parameters))
            .map(drop)
    }

    /// `query-migrate-parameters`.
    pub fn migration_parameters(&mut self) -> Result<Value> {
        self.qmp.execute("query-migrate-parameters", None)
    }

    /// Turns migration capabilities on or off (`migrate-set-capabilities`).
    pub fn set_migration_capabilities(&mut self, capabilities: &[(&str, bool)]) -> Result<()> {
        let list: Vec<Value> = capabilities
            .iter()
            .map(|(c, on)| json!({"capability": c, "state": on}))
            .collect();
        self.qmp
            .execute(
                "migrate-set-capabilities",
                Some(json!({ "capabilities": list })),
            )
            .map(drop)
    }

    /// Starts migrating the guest to `to` (a QEMU started with
    /// [`Guest::incoming`]); returns at once.
    pub fn migrate(&mut self, to: SocketAddrV4) -> Result<()> {
        self.qmp
            .execute("migrate", Some(json!({ "uri": format!("tcp:{to}") })))
            .map(drop)
    }

    /// `query-migrate`.
    pub fn migration(&mut self) -> Result<MigrationStatus> {
        Ok(MigrationStatus::parse(
            &self.qmp.execute("query-migrate", None)?,
        ))
    }

    /// Polls `query-migrate` until the migration is over (completed,
    /// failed or cancelled), up to `timeout`.
    pub fn wait_migration(&mut self, timeout: Duration) -> Result<MigrationStatus> {
        let what = format!("the migration of guest {}", self.name);
        poll_until(&what, timeout, || {
            let s = self.migration()?;
            Ok(if s.finished() {
                Probe::Ready(s)
            } else {
                Probe::NotYet(format!("{s:?}"))
            })
        })
    }

    /// SIGKILL to QEMU, as a crash or an OOM kill would end it.
    pub fn kill(&mut self) -> Result<()> {
        self.process.signal(Signal::SIGKILL)?;
        self.process.stop(STOP_GRACE).map(drop)
    }

    /// Stops QEMU (SIGTERM) and unplugs the tap, as libvirt does with the
    /// source of a finished migration or a destination that failed.
    pub fn remove(mut self, tb: &Testbed) -> Result<()> {
        self.stop(tb)
    }

    /// [`Guest::remove`], keeping the record of what ran (its files and
    /// QMP events) for [`Guest::state`].
    pub fn stop(&mut self, tb: &Testbed) -> Result<()> {
        self.process.stop(STOP_GRACE)?;
        self.unplug(tb)
    }

    /// What this QEMU is doing, for a failure report: whether it runs,
    /// `query-status`, `query-migrate` and every QMP event received (each
    /// with QEMU's timestamp), and where its console and log are. A
    /// question that cannot be answered is answered with why.
    pub fn state(&mut self) -> Value {
        let process = match self.process.try_exit_status() {
            Ok(None) => "running".to_owned(),
            Ok(Some(status)) => format!("exited ({status})"),
            Err(e) => e.to_string(),
        };
        let mut ask = |command: &str| {
            if process != "running" {
                return json!(format!("not asked: QEMU {process}"));
            }
            self.qmp
                .execute(command, None)
                .unwrap_or_else(|e| json!(format!("error: {e}")))
        };
        let status = ask("query-status");
        let migration = ask("query-migrate");
        json!({
            "tap": self.tap,
            "pid": self.process.pid(),
            "process": process,
            "query-status": status,
            "query-migrate": migration,
            "events": self.qmp.events.iter().map(|(_, e)| e).collect::<Vec<_>>(),
            "console": self.serial,
            "qemu_log": self.process.output_path(),
        })
    }

    fn unplug(&mut self, tb: &Testbed) -> Result<()> {
        if !self.plugged {
            return Ok(());
        }
        unplug_tap(tb, self.host, &self.tap)?;
        self.plugged = false;
        Ok(())
    }

    /// The guest's serial console, as QEMU writes it.
    pub fn serial_log(&self) -> &Path {
        &self.serial
    }

    /// QEMU's own output.
    pub fn qemu_log(&self) -> Option<&Path> {
        self.process.output_path()
    }
}

/// The first `<tap>-<n>` (n = 1, 2, …) that names no QEMU log in `dir`:
/// each QEMU that runs on a tap (a guest that migrates away and back runs
/// a second one there) gets a console and a log of its own.
fn unused_stem(dir: &Path, tap: &str) -> String {
    let mut n = 1;
    loop {
        let stem = format!("{tap}-{n}");
        if !dir.join(format!("{stem}.qemu.log")).exists() {
            return stem;
        }
        n += 1;
    }
}

/// How `process` exited, if it does within a second.
fn exit_of(process: &mut Process) -> Option<Error> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match process.ensure_running() {
            Err(e) => return Some(e),
            Ok(()) if Instant::now() >= deadline => return None,
            Ok(()) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Plugs `tap` into `host` as libvirt would for `spec`: a port of the
/// PM's `br-int` carrying the guest's identity, an access port of the PM's
/// bridge of its VLAN, or a port of the compute node's VLAN bridge.
fn plug_tap(tb: &Testbed, host: Host, spec: &GuestSpec, tap: &str) -> Result<()> {
    let pm = match (host, spec.vlan) {
        (Host::Compute(cn), Some(vid)) => {
            let bridge = tb.compute(cn).vlan_bridge_for(vid)?;
            return Iface::new(tap, tb.compute(cn).netns().place()).set_master(&bridge);
        }
        (Host::Compute(_), None) => {
            return Err(Error::Usage(format!(
                "guest {} has no VLAN; a compute node plugs guests into a VLAN's bridge",
                spec.name
            )))
        }
        (Host::Pm(pm), Some(vid)) => {
            let bridge = pm_vlan_bridge(tb, pm, spec.vi, vid, None)?;
            return tb
                .pm(pm)
                .vsctl(&[
                    "add-port",
                    &bridge,
                    tap,
                    "--",
                    "set",
                    "Port",
                    tap,
                    &format!("tag={vid}"),
                ])
                .map(drop);
        }
        (Host::Pm(pm), None) => tb.pm(pm),
    };
    pm.vsctl(&[
        "add-port",
        INTEGRATION_BRIDGE,
        tap,
        "--",
        "set",
        "Interface",
        tap,
        &format!("external_ids:iris-vi={}", spec.vi),
        &format!("external_ids:attached-mac={}", spec.mac),
        &format!("external_ids:iface-id={}", spec.name),
        "external_ids:iface-status=active",
        &format!("external_ids:vm-id={}", spec.name),
    ])
    .map(drop)
}

/// Removes `tap` from whichever bridge holds it on `host` and deletes it.
fn unplug_tap(tb: &Testbed, host: Host, tap: &str) -> Result<()> {
    let netns = match host {
        Host::Pm(pm) => {
            let pm = tb.pm(pm);
            pm.vsctl(&["--if-exists", "del-port", tap])?;
            pm.netns()
        }
        Host::Compute(cn) => tb.compute(cn).netns(),
    };
    crate::link::delete_link(&Iface::new(tap, netns.place()))
}

/// The port a destination QEMU listens on: any would do, since it listens
/// in its own PM's namespace, on that PM's underlay address.
pub const MIGRATION_PORT: u16 = 4444;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_only_with_a_hardware_module() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("kvm");
        let modules = dir.path().join("module");
        std::fs::create_dir(&modules).unwrap();
        let (accel, why) = Accel::detect_in(&dev, &modules);
        assert_eq!(accel, Accel::Tcg);
        assert!(why.contains("does not exist"), "{why}");
        std::fs::write(&dev, "").unwrap();
        std::fs::create_dir(modules.join("kvm_pvm")).unwrap();
        let (accel, why) = Accel::detect_in(&dev, &modules);
        assert_eq!(accel, Accel::Tcg);
        assert!(why.contains("PVM"), "{why}");
        std::fs::create_dir(modules.join("kvm_amd")).unwrap();
        assert_eq!(Accel::detect_in(&dev, &modules).0, Accel::Kvm);
    }

    #[test]
    fn each_qemu_on_a_tap_gets_a_console_and_a_log_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unused_stem(dir.path(), "p0t1"), "p0t1-1");
        std::fs::write(dir.path().join("p0t1-1.qemu.log"), "").unwrap();
        assert_eq!(unused_stem(dir.path(), "p0t1"), "p0t1-2");
        assert_eq!(unused_stem(dir.path(), "p0t2"), "p0t2-1");
    }

    #[test]
    fn a_host_bridge_mac_is_its_address_and_locally_administered() {
        let a = host_mac("10.1.0.201/24".parse().unwrap());
        assert_eq!(a.to_string(), "02:00:0a:01:00:c9");
        assert_ne!(a, host_mac("10.1.0.211/24".parse().unwrap()));
    }

    #[test]
    fn query_migrate_is_read_with_its_times() {
        let v = json!({
            "status": "completed", "total-time": 812, "downtime": 17, "setup-time": 3,
            "ram": {"transferred": 4_521_000}
        });
        let s = MigrationStatus::parse(&v);
        assert!(s.finished());
        assert_eq!(s.total_time_ms, Some(812.0));
        assert_eq!(s.downtime_ms, Some(17.0));
        assert_eq!(s.transferred_bytes, Some(4_521_000));
        let failed = MigrationStatus::parse(&json!({"status": "failed", "error-desc": "reset"}));
        assert!(failed.finished());
        assert_eq!(failed.error.as_deref(), Some("reset"));
        assert!(!MigrationStatus::parse(&json!({"status": "active"})).finished());
    }
}
