//! `bench goodput`: TCP goodput (iperf3) between two VMs, in one run on one
//! testbed:
//!
//! 1. **overlay**: the VMs on two PMs, through Iris's pipeline and its GRE
//!    mesh;
//! 2. **one bridge**: the receiving VM moved onto the sender's PM (announced
//!    by RARP, as after a live migration), so both sit on one `br-int`
//!    under Iris: the same pipeline minus the tunnel;
//! 3. **plain, two PMs**: the VMs on two PMs that no controller manages,
//!    whose `br-int`s have the single flow `actions=NORMAL` and are joined
//!    by a veth: as many vswitchd crossings as the overlay, no tunnel and no
//!    Iris pipeline;
//! 4. **plain, one bridge**: both VMs on one of those PMs.
//!
//! On this one host every PM's vswitchd shares the same cores, so a path
//! through two PMs costs the machine two vswitchd crossings per packet,
//! where real PMs would each spend their own CPU; each measurement records
//! the vswitchds' and the machine's CPU use, which says where time goes.
//!
//! The iperf3 server keeps running in the receiving VM's namespace across
//! the moves, as a guest's processes do across a migration. Offloads are off
//! on every VM link (the testbed's default), or, with `tso`, OVS runs with
//! `other_config:userspace-tso-enable=true` (set before vswitchd starts, as
//! OVS reads it only then) and the VM links' checksum, scatter-gather and
//! segmentation offloads are on. Each measurement also records the drop and
//! segmentation events OVS's coverage counters gained on the PMs involved.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use ofp::packet::ArpRepr;
use serde::Serialize;

use super::iperf::{self, Goodput};
use super::{coverage, drops_gained, round3, vm_link_ends, Conditions, CpuUse, CpuWatch};
use crate::command::output;
use crate::controller::ViEntry;
use crate::frames::send_frames;
use crate::readiness::{poll_until, Probe};
use crate::scenario::migrate::QEMU_ANNOUNCE;
use crate::scenario::{Harness, ScenarioError};
use crate::{FailMode, Iface, PmId, VethPair, VmId, INTEGRATION_BRIDGE, VM_MTU};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
pub const IPERF_PORT: &str = "5201";
/// GRE with a key on IPv4 over Ethernet: outer Ethernet 14 + IPv4 20 + GRE
/// 4 + key 4 bytes around the VM's frame.
pub const GRE_OVERHEAD: u32 = 38;
/// The target of the overlay's share of the one-bridge goodput.
pub const TARGET_RATIO: f64 = 0.9;

/// One run's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Seconds each iperf3 test measures.
    pub seconds: u32,
    /// Seconds at the start of each test iperf3 leaves out (slow start).
    pub omit: u32,
    /// OVS userspace TSO and the VM links' offloads on.
    pub tso: bool,
}

/// The MTUs along the path and the proof that full-sized frames cross the
/// tunnel.
#[derive(Debug, Clone, Serialize)]
pub struct Mtus {
    pub vm: u32,
    pub underlay: u32,
    pub gre_overhead: u32,
    /// `ping -M do -s 1472` (a 1500-byte IPv4 packet, never fragmented)
    /// from one VM to the other across the tunnel was answered.
    pub full_sized_frames_cross_the_tunnel: bool,
}

/// One path measured.
#[derive(Debug, Clone, Serialize)]
pub struct PathGoodput {
    pub path: &'static str,
    pub sender_pm: String,
    pub receiver_pm: String,
    pub iperf: Goodput,
    /// Drop and segmentation events OVS counted on the PMs involved during
    /// the test (`ovs-appctl coverage/show`).
    pub ovs_drop_events: BTreeMap<String, u64>,
    pub cpu: CpuUse,
}

/// What `bench goodput` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub benchmark: &'static str,
    pub tso: bool,
    pub seconds: u32,
    pub omit: u32,
    pub mtu: Mtus,
    pub overlay: PathGoodput,
    pub one_bridge: PathGoodput,
    pub plain_two_pms: PathGoodput,
    pub plain_one_bridge: PathGoodput,
    /// Overlay goodput over one-bridge goodput (under Iris both): the
    /// target's figure.
    pub overlay_to_one_bridge: Option<f64>,
    /// Overlay over the plain two-PM path: what the tunnel and Iris's
    /// pipeline cost at the same number of vswitchd crossings.
    pub overlay_to_plain_two_pms: Option<f64>,
    /// Iris's pipeline against NORMAL, both on one bridge.
    pub one_bridge_to_plain_one_bridge: Option<f64>,
    pub target_ratio: f64,
    pub target_met: bool,
    pub conditions: Conditions,
}

/// Runs the benchmark on `h`.
pub fn measure(h: &mut Harness, o: Options) -> Result<Report, ScenarioError> {
    let conditions = Conditions::before();
    let mut pms = Vec::new();
    for (name, fail_mode) in [
        ("pm1", FailMode::Secure),
        ("pm2", FailMode::Secure),
        ("pm3", FailMode::Standalone),
        ("pm4", FailMode::Standalone),
    ] {
        let mut spec = h.pm_spec(name).fail_mode(fail_mode);
        if o.tso {
            spec = spec.other_config("userspace-tso-enable", "true");
        }
        pms.push(h.add_pm_spec(spec)?);
    }
    let (pm1, pm2, plain, plain2) = (pms[0], pms[1], pms[2], pms[3]);
    for pm in [plain, plain2] {
        h.tb.pm(pm).ofctl(&["del-flows", INTEGRATION_BRIDGE])?;
        h.tb.pm(pm)
            .ofctl(&["add-flow", INTEGRATION_BRIDGE, "actions=NORMAL"])?;
    }
    let _plain_link = join_bridges(h, plain, plain2, o.tso)?;

    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    let vms = h.add_vms(&mut vi, &[pm1, pm2])?;
    let (client, server) = (vms[0], vms[1]);
    set_offloads(h, &vms, o.tso)?;
    h.bring_up(&[pm1, pm2], vec![vi], &vms)?;
    let server_ip = h.tb.vm(server).ip().addr();
    h.wait_reachable(client, server_ip)?;
    h.wait_reachable(server, h.tb.vm(client).ip().addr())?;
    let mtu = mtus(h, client, server_ip)?;
    h.tb.spawn(
        server,
        "iperf3",
        &[
            "iperf3",
            "-s",
            "-p",
            IPERF_PORT,
            "-B",
            &server_ip.to_string(),
        ],
    )?;
    wait_listening(h.tb.vm(server).netns())?;

    h.note("overlay: the VMs on two PMs, through the GRE mesh");
    let overlay = path(h, o, "overlay", client, server, &[pm1, pm2])?;

    h.note("one bridge: the server moves onto the client's PM");
    h.tb.move_vm(server, pm1)?;
    set_offloads(h, &[server], o.tso)?;
    h.wait_classified(&[server])?;
    announce(h, server)?;
    h.wait_placed(VI, &[(client, None), (server, None)])?;
    h.wait_reachable(client, server_ip)?;
    let one_bridge = path(h, o, "one-bridge", client, server, &[pm1])?;

    h.note("plain, two PMs: NORMAL bridges joined by a veth, no controller");
    h.tb.move_vm(client, plain)?;
    h.tb.move_vm(server, plain2)?;
    set_offloads(h, &vms, o.tso)?;
    for &vm in &vms {
        announce(h, vm)?;
    }
    h.wait_reachable(client, server_ip)?;
    let plain_two_pms = path(h, o, "plain-two-pms", client, server, &[plain, plain2])?;

    h.note("plain, one bridge: both VMs on one NORMAL bridge");
    h.tb.move_vm(server, plain)?;
    set_offloads(h, &[server], o.tso)?;
    // Else the NORMAL bridges keep the server's MAC behind the veth
    // between them until the client's neighbour entry goes stale.
    announce(h, server)?;
    h.wait_reachable(client, server_ip)?;
    let plain_one_bridge = path(h, o, "plain-one-bridge", client, server, &[plain])?;

    let ratio = |over: &PathGoodput, base: &PathGoodput| {
        let b = base.iperf.gbps();
        (b > 0.0).then(|| round3(over.iperf.gbps() / b))
    };
    let overlay_to_one_bridge = ratio(&overlay, &one_bridge);
    Ok(Report {
        benchmark: "goodput",
        tso: o.tso,
        seconds: o.seconds,
        omit: o.omit,
        mtu,
        overlay_to_plain_two_pms: ratio(&overlay, &plain_two_pms),
        one_bridge_to_plain_one_bridge: ratio(&one_bridge, &plain_one_bridge),
        target_met: overlay_to_one_bridge.is_some_and(|r| r >= TARGET_RATIO),
        overlay_to_one_bridge,
        target_ratio: TARGET_RATIO,
        overlay,
        one_bridge,
        plain_two_pms,
        plain_one_bridge,
        conditions: conditions.after(),
    })
}

/// Turns the offloads of `vms`' links on (TSO runs) or leaves them off as
/// the testbed made them; re-plugging a VM re-creates its link with them off.
fn set_offloads(h: &Harness, vms: &[VmId], on: bool) -> Result<(), ScenarioError> {
    if on {
        for &vm in vms {
            for end in vm_link_ends(h, vm) {
                end.enable_offloads()?;
            }
        }
    }
    Ok(())
}

/// A veth between the `br-int`s of `a` and `b`: the plain two-PM path's
/// wire, VM-sized like the VMs' links. Deleted when dropped.
fn join_bridges(h: &Harness, a: PmId, b: PmId, offloads: bool) -> Result<VethPair, ScenarioError> {
    let (a, b) = (h.tb.pm(a), h.tb.pm(b));
    let end = |pm: &crate::Pm| format!("{}{}w", h.tb.prefix(), pm.name());
    let link = VethPair::create(
        Iface::new(end(a), a.netns().place()),
        Iface::new(end(b), b.netns().place()),
        VM_MTU,
    )?;
    for (pm, iface) in [(a, link.a()), (b, link.b())] {
        if offloads {
            iface.enable_offloads()?;
        }
        pm.vsctl(&["add-port", INTEGRATION_BRIDGE, &iface.name])?;
    }
    Ok(link)
}

/// The RARPs a hypervisor sends for a migrated guest, in QEMU's rounds:
/// the only thing that moves a seeded MAC in Iris's registry, and what
/// makes learning bridges forget where the MAC was. The rounds matter: a
/// first RARP sent while vswitchd is still adding the new port is lost
/// (measured: the plain bridge then kept the MAC behind its old port until
/// the client's neighbour entry went stale, about 30 s).
fn announce(h: &Harness, vm: VmId) -> Result<(), ScenarioError> {
    let v = h.tb.vm(vm);
    let mut rarp = Vec::new();
    ArpRepr::rarp_announce(ofp::packet::MacAddr(v.mac().0)).emit(&mut rarp);
    let rounds: Vec<(Duration, Vec<u8>)> =
        QEMU_ANNOUNCE.iter().map(|&p| (p, rarp.clone())).collect();
    send_frames(v.netns(), v.interface(), &rounds)?;
    Ok(())
}

fn mtus(h: &Harness, client: VmId, server_ip: Ipv4Addr) -> Result<Mtus, ScenarioError> {
    let c = h.tb.vm(client);
    let pm = h.tb.pm(c.pm());
    let read = |netns: &crate::Netns, iface: &str| -> Result<u32, ScenarioError> {
        let text = netns.run(&["cat", &format!("/sys/class/net/{iface}/mtu")])?;
        text.trim().parse().map_err(|_| {
            ScenarioError::Testbed(crate::Error::UnexpectedOutput {
                command: format!("cat /sys/class/net/{iface}/mtu"),
                reason: "not a number".into(),
                output: text.clone(),
            })
        })
    };
    let vm = read(c.netns(), c.interface())?;
    let underlay = read(pm.netns(), pm.underlay_interface())?;
    let crossed = crate::ping::full_sized_crosses(c.netns(), server_ip, Duration::from_secs(1))?;
    Ok(Mtus {
        vm,
        underlay,
        gre_overhead: GRE_OVERHEAD,
        full_sized_frames_cross_the_tunnel: crossed,
    })
}

/// Waits until an iperf3 server listens on [`IPERF_PORT`] inside `netns`.
pub fn wait_listening(netns: &crate::Netns) -> Result<(), ScenarioError> {
    let filter = format!("sport = :{IPERF_PORT}");
    poll_until("iperf3 listening", Duration::from_secs(10), || {
        let text = netns.run(&["ss", "-Htln", &filter])?;
        Ok(if text.trim().is_empty() {
            Probe::NotYet("no listening socket".into())
        } else {
            Probe::Ready(())
        })
    })?;
    Ok(())
}

/// One iperf3 test from `client` to `server`, with the coverage counters of
/// `pms` around it.
fn path(
    h: &Harness,
    o: Options,
    name: &'static str,
    client: VmId,
    server: VmId,
    pms: &[PmId],
) -> Result<PathGoodput, ScenarioError> {
    let before = coverage(h, pms)?;
    let watch = CpuWatch::start(h, pms);
    let iperf = run_iperf(
        h.tb.vm(client).netns(),
        o.seconds,
        o.omit,
        h.tb.vm(server).ip().addr(),
    )?;
    let cpu = watch.finish();
    let after = coverage(h, pms)?;
    h.note(format!("{name}: {iperf}"));
    Ok(PathGoodput {
        path: name,
        sender_pm: h.tb.pm(h.tb.vm(client).pm()).name().to_owned(),
        receiver_pm: h.tb.pm(h.tb.vm(server).pm()).name().to_owned(),
        iperf,
        ovs_drop_events: drops_gained(&before, &after),
        cpu,
    })
}

/// One iperf3 test from inside `client` to the server listening on
/// [`IPERF_PORT`] at `server`: `seconds` measured after `omit` left out.
pub fn run_iperf(
    client: &crate::Netns,
    seconds: u32,
    omit: u32,
    server: Ipv4Addr,
) -> Result<Goodput, ScenarioError> {
    // A data plane that stalls TCP must not hang the benchmark.
    let limit = (seconds + omit + 20).to_string();
    let mut command = client.command("timeout");
    command
        .args([
            &limit,
            "iperf3",
            "-c",
            &server.to_string(),
            "-p",
            IPERF_PORT,
        ])
        .args(["-t", &seconds.to_string(), "-O", &omit.to_string()])
        .args(["-J", "--connect-timeout", "5000"]);
    let out = output(&mut command)?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(124) {
        return Ok(Goodput::Failed {
            error: format!("iperf3 did not finish within {limit} s"),
        });
    }
    iperf::parse(&text).map_err(|e| {
        ScenarioError::Testbed(crate::Error::UnexpectedOutput {
            command: "iperf3 -J".into(),
            reason: e,
            output: format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
        })
    })
}

impl fmt::Display for Goodput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Measured(t) => {
                write!(f, "{:.3} Gb/s", t.received_gbps)?;
                if let Some(r) = t.retransmits {
                    write!(f, ", {r} retransmits")?;
                }
                Ok(())
            }
            Self::Failed { error } => write!(f, "failed: {error}"),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tso = if self.tso {
            "OVS userspace TSO on, VM offloads on"
        } else {
            "offloads off"
        };
        writeln!(
            f,
            "goodput ({tso}; iperf3 TCP, {} s after {} s omitted)",
            self.seconds, self.omit
        )?;
        for p in [
            &self.overlay,
            &self.one_bridge,
            &self.plain_two_pms,
            &self.plain_one_bridge,
        ] {
            write!(
                f,
                "  {:<16} {} -> {}: {}; vswitchd CPU % {:?}, machine busy {}%",
                p.path,
                p.sender_pm,
                p.receiver_pm,
                p.iperf,
                p.cpu.vswitchd_percent,
                p.cpu
                    .machine_busy_percent
                    .map_or_else(|| "?".to_owned(), |b| b.to_string())
            )?;
            if !p.ovs_drop_events.is_empty() {
                write!(f, "; OVS events {:?}", p.ovs_drop_events)?;
            }
            writeln!(f)?;
        }
        let show = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3}"));
        writeln!(
            f,
            "  overlay / one bridge: {} (target >= {}: {})",
            show(self.overlay_to_one_bridge),
            self.target_ratio,
            if self.target_met { "met" } else { "missed" }
        )?;
        writeln!(
            f,
            "  overlay / plain two PMs: {}; one bridge / plain one bridge: {}",
            show(self.overlay_to_plain_two_pms),
            show(self.one_bridge_to_plain_one_bridge)
        )?;
        write!(
            f,
            "  MTU: VM {}, underlay {}, GRE adds {}; 1500-byte packets with DF across the tunnel: {}",
            self.mtu.vm,
            self.mtu.underlay,
            self.mtu.gre_overhead,
            if self.mtu.full_sized_frames_cross_the_tunnel { "yes" } else { "NO" }
        )
    }
}
