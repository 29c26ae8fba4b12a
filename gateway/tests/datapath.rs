//! The gateway's datapath against real Open vSwitch: two emulated gateway
//! nodes from the testbed library (each its own ovsdb-server and
//! ovs-vswitchd in a namespace, userspace datapath) on one underlay that
//! stands for the WAN, and a LAN namespace on the first one's trunk. The
//! bridge keeper builds and repairs the bridges, the OpenFlow session
//! installs the table and carries snooped frames up, and what crosses the
//! WAN is read off the far node's wire. Needs root and Open vSwitch; fails
//! (never skips) without them.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use iris_gateway::bridge::{self, BridgePlan, BridgeStatus, KeeperConfig, WanPort};
use iris_gateway::openflow::{self, mgmt_socket, OpenFlowConfig, OpenFlowStatus};
use iris_gateway::pipeline::{PipelinePlan, VlanSet, PRIORITY_FORWARD, PRIORITY_PORT_DROP};
use iris_testbed::flow_dump::{parse_dump_stats, FlowWithStats};
use iris_testbed::frames::{contains, gre_payload, Capture, FrameSender};
use iris_testbed::{Netns, PmId, Testbed, VethPair, INTEGRATION_BRIDGE};
use ofp::packet::{ArpRepr, EtherType, EthernetRepr, MacAddr, VlanTag};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const VI: u32 = 1;
const KEY: u32 = 1001;
const WAN_PORT: &str = "wan-1";
const IN_RANGE: u16 = 150;
const OUT_OF_RANGE: u16 = 300;

/// An ovsdb-server alone (no vswitchd) on a unix socket in `dir`, killed
/// when dropped: what the keeper does when the server goes away.
struct LoneOvsdb {
    child: std::process::Child,
}

impl LoneOvsdb {
    /// Starts a server on a fresh database in `dir`.
    fn start(dir: &std::path::Path) -> Self {
        let (db, sock) = (dir.join("conf.db"), dir.join("db.sock"));
        let _ = std::fs::remove_file(&db);
        let created = std::process::Command::new("ovsdb-tool")
            .arg("create")
            .arg(&db)
            .arg(iris_testbed::VSWITCH_SCHEMA)
            .status()
            .expect("ovsdb-tool from Open vSwitch");
        assert!(created.success());
        let child = std::process::Command::new("ovsdb-server")
            .arg(&db)
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg(format!("--unixctl={}", dir.join("ovsdb.ctl").display()))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ovsdb-server from Open vSwitch");
        wait_for("ovsdb-server's socket", || {
            std::os::unix::net::UnixStream::connect(&sock)
                .ok()
                .map(drop)
        });
        Self { child }
    }

    fn vsctl(dir: &std::path::Path, args: &[&str]) -> Option<String> {
        let out = std::process::Command::new("ovs-vsctl")
            .arg(format!("--db=unix:{}", dir.join("db.sock").display()))
            .args(["--no-wait", "--timeout=5"])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for LoneOvsdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`common::wait_for`] with this file's [`WAIT`].
fn wait_for<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    common::wait_for(what, WAIT, probe)
}

/// Two gateway nodes on a WAN underlay, and a LAN namespace plugged into
/// the first one's trunk.
struct World {
    // Dropped before the testbed: the trunk, then the LAN namespace.
    trunk: VethPair,
    lan: Netns,
    tb: Testbed,
    gw: PmId,
    far: PmId,
    rt: Runtime,
    shutdown: CancellationToken,
}

impl World {
    fn new(label: &str) -> Self {
        let common::TwoNodes {
            tb,
            gw,
            far,
            lan,
            trunk,
        } = common::TwoNodes::new(label);
        Self {
            trunk,
            lan,
            tb,
            gw,
            far,
            rt: Runtime::new().unwrap(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Stops every task, then takes the world down in order.
    fn finish(self) {
        self.shutdown.cancel();
        drop(self.rt);
        drop(self.trunk);
        drop(self.lan);
        self.tb.teardown().unwrap();
    }

    fn ip(&self, pm: PmId) -> IpAddr {
        self.tb.pm(pm).underlay_addr().addr().into()
    }

    /// The IaaS plan of `pm`'s `br-gw`, with its WAN port to `peer`.
    fn plan(&self, pm: PmId, peer: PmId, trunk: Option<&str>) -> BridgePlan {
        let mut plan = BridgePlan::iaas("br-gw", "");
        plan.trunk = trunk.map(str::to_owned);
        plan.wan_ports = vec![WanPort {
            name: WAN_PORT.into(),
            vi: VI,
            key: KEY,
            remote_ip: self.ip(peer),
            local_ip: Some(self.ip(pm)),
        }];
        plan
    }

    /// Starts a bridge keeper on `pm` for `plan`.
    fn keep(&self, pm: PmId, plan: BridgePlan) -> watch::Receiver<BridgeStatus> {
        let config = KeeperConfig::new(self.tb.pm(pm).ovsdb_unix_target());
        let (_plan_tx, plan_rx) = watch::channel(plan);
        let (status_tx, status_rx) = watch::channel(BridgeStatus::default());
        let shutdown = self.shutdown.clone();
        self.rt.spawn(async move {
            // The sender lives as long as the keeper.
            let _plan_tx = _plan_tx;
            bridge::keep(config, plan_rx, status_tx, shutdown).await;
        });
        status_rx
    }

    fn vsctl(&self, pm: PmId, args: &str) -> String {
        let args: Vec<&str> = args.split(' ').collect();
        self.tb.pm(pm).vsctl(&args).unwrap().trim().to_owned()
    }

    fn flows(&self) -> Vec<FlowWithStats> {
        let dump = self
            .tb
            .pm(self.gw)
            .ofctl(&["--no-names", "dump-flows", "br-gw"])
            .unwrap();
        parse_dump_stats(&dump)
    }
}

/// The pipeline's input, kept in step with the keeper's status.
fn follow(
    rt: &Runtime,
    status: watch::Receiver<BridgeStatus>,
    vlans: BTreeMap<u32, VlanSet>,
) -> watch::Receiver<Option<PipelinePlan>> {
    let (tx, rx) = watch::channel(None);
    rt.spawn(bridge::feed_pipeline(status, vlans, tx));
    rx
}

/// Starts an OpenFlow session to `br-gw` on the gateway node.
fn session(
    w: &World,
    plan: watch::Receiver<Option<PipelinePlan>>,
    token: CancellationToken,
) -> (watch::Receiver<OpenFlowStatus>, mpsc::Receiver<Vec<u8>>) {
    let mut config = OpenFlowConfig::new(mgmt_socket(w.tb.pm(w.gw).ovs().dir(), "br-gw"));
    config.stats = Duration::from_millis(200);
    let (frames_tx, frames_rx) = mpsc::channel(64);
    let (status_tx, status_rx) = watch::channel(OpenFlowStatus::default());
    w.rt.spawn(openflow::run(config, plan, frames_tx, status_tx, token));
    (status_rx, frames_rx)
}

fn bfd_up(status: &watch::Receiver<BridgeStatus>) -> bool {
    let s = status.borrow();
    s.wan_ports.first().and_then(|w| w.bfd_state.as_deref()) == Some("up")
}

fn tag(vid: u16) -> Vec<VlanTag> {
    vec![VlanTag {
        tpid: 0x8100,
        tci: vid,
    }]
}

/// A tagged frame carrying `marker`, long enough that nothing pads it.
fn data_frame(vid: u16, marker: &[u8]) -> Vec<u8> {
    sized_frame(vid, marker, 100)
}

/// A tagged frame of `len` bytes (without the FCS) carrying `marker`.
fn sized_frame(vid: u16, marker: &[u8], len: usize) -> Vec<u8> {
    let mut f = Vec::new();
    EthernetRepr {
        dst: MacAddr([0x52, 0x54, 0, 0, 0, 2]),
        src: MacAddr([0x52, 0x54, 0, 0, 0, 1]),
        tags: tag(vid),
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut f);
    f.extend_from_slice(marker);
    f.resize(len, 0);
    f
}

#[test]
fn the_keeper_builds_the_gateway_bridge_and_repairs_a_deleted_wan_port() {
    let w = World::new("gw-bridge");
    let trunk = w.trunk.a().name.clone();
    let status = w.keep(w.gw, w.plan(w.gw, w.far, Some(&trunk)));
    let far = w.keep(w.far, w.plan(w.far, w.gw, None));
    let first = wait_for("br-gw with its trunk and WAN port", || {
        let s = status.borrow().clone();
        (s.trunk_ofport.is_some() && s.wan_ports[0].ofport.is_some()).then_some(s)
    });
    assert!(first.ovsdb_connected && first.bridge_present, "{first:?}");

    let get = |what: &str| w.vsctl(w.gw, &format!("get {what}"));
    assert_eq!(get("Bridge br-gw fail_mode"), "secure");
    assert_eq!(get("Bridge br-gw protocols"), "[OpenFlow13]");
    assert_eq!(get("Bridge br-gw datapath_type"), "netdev");
    assert_eq!(w.vsctl(w.gw, "get-controller br-gw"), "");
    assert_eq!(get("Interface wan-1 type"), "gre");
    let options = get("Interface wan-1 options");
    for want in [
        format!("key=\"{KEY}\""),
        format!("remote_ip=\"{}\"", w.ip(w.far)),
        format!("local_ip=\"{}\"", w.ip(w.gw)),
    ] {
        assert!(options.contains(&want), "{options} lacks {want}");
    }
    assert_eq!(get("Interface wan-1 bfd:enable"), "\"true\"");
    assert_eq!(get("Port wan-1 external_ids:iris-role"), "wan");
    assert_eq!(
        get(&format!("Port {trunk} external_ids:iris-role")),
        "trunk"
    );

    // BFD comes up once both ends run it, and both read it from OVSDB.
    for s in [&status, &far] {
        wait_for("BFD up", || bfd_up(s).then_some(()));
    }

    // A deleted WAN port comes back by itself.
    w.vsctl(w.gw, "del-port br-gw wan-1");
    wait_for("wan-1 back on br-gw", || {
        let ports = w.vsctl(w.gw, "list-ports br-gw");
        ports.lines().any(|p| p == WAN_PORT).then_some(())
    });
    assert_eq!(get("Interface wan-1 options"), options);
    // So does a key someone changed.
    w.vsctl(w.gw, "set Interface wan-1 options:key=9");
    wait_for("the key put back", || {
        (get("Interface wan-1 options:key") == format!("\"{KEY}\"")).then_some(())
    });
    wait_for("the repaired port in the status", || {
        status.borrow().wan_ports[0].ofport.map(drop)
    });

    // On the HaaS side the controller's bridge gets the WAN port tagged
    // with its VI, and keeps every setting of its own.
    let mut haas = BridgePlan::haas(INTEGRATION_BRIDGE);
    haas.wan_ports = w.plan(w.far, w.gw, None).wan_ports;
    haas.wan_ports[0].name = "wan-h1".into();
    haas.wan_ports[0].key = 2002;
    let before = w.vsctl(w.far, "get Bridge br-int fail_mode protocols other_config");
    w.keep(w.far, haas);
    wait_for("wan-h1 on br-int", || {
        w.tb.pm(w.far)
            .vsctl(&["get", "Interface", "wan-h1", "external_ids:iris-vi"])
            .ok()
            .filter(|v| v.trim() == "\"1\"")
    });
    assert_eq!(
        w.vsctl(w.far, "get Port wan-h1 external_ids:iris-role"),
        "wan"
    );
    assert_eq!(
        w.vsctl(w.far, "get Bridge br-int fail_mode protocols other_config"),
        before
    );

    // A bridge the controller has not created yet is waited for.
    let mut late = BridgePlan::haas("br-late");
    late.wan_ports = w.plan(w.far, w.gw, None).wan_ports;
    late.wan_ports[0].name = "wan-l1".into();
    late.wan_ports[0].key = 3003;
    let waiting = w.keep(w.far, late);
    wait_for("the keeper saying it waits for br-late", || {
        waiting
            .borrow()
            .problem
            .as_ref()
            .filter(|p| p.contains("waiting"))
            .map(drop)
    });
    w.vsctl(
        w.far,
        "add-br br-late -- set Bridge br-late datapath_type=netdev",
    );
    wait_for("wan-l1 on br-late", || {
        let ports = w.vsctl(w.far, "list-ports br-late");
        ports.lines().any(|p| p == "wan-l1").then_some(())
    });
    // The status follows the database a moment later.
    wait_for("the keeper to stop saying it waits", || {
        waiting.borrow().problem.is_none().then_some(())
    });

    w.finish();
}

#[test]
fn the_pipeline_forwards_in_range_drops_the_rest_snoops_arp_and_survives_a_restart() {
    let w = World::new("gw-pipeline");
    let trunk = w.trunk.a().name.clone();
    let lan_end = w.trunk.b().name.clone();
    let status = w.keep(w.gw, w.plan(w.gw, w.far, Some(&trunk)));
    // The far end's WAN port answers BFD: once it is up, the tunnel's path
    // (the peer's underlay address resolved) is known to work.
    let _far = w.keep(w.far, w.plan(w.far, w.gw, None));
    wait_for("BFD up on the WAN port", || bfd_up(&status).then_some(()));
    let vlans = BTreeMap::from([(VI, VlanSet::from_entries(&["100-199"]).unwrap())]);
    let plan = follow(&w.rt, status, vlans);
    let first = CancellationToken::new();
    let (of, mut snooped) = session(&w, plan.clone(), first.clone());
    let programmed = |of: &watch::Receiver<OpenFlowStatus>| {
        wait_for("the table installed and confirmed", || {
            let s = of.borrow().clone();
            (s.connected && s.programmed).then_some(s)
        })
    };
    let installed = programmed(&of);
    assert!(
        installed.flows > 0 && installed.flow_mods_sent > 0,
        "{installed:?}"
    );
    assert_eq!(installed.malformed_messages, 0);

    // A frame of the VI's range crosses the WAN in the VI's tunnel, tag
    // intact; one outside every range does not cross at all.
    let far = w.tb.pm(w.far);
    let capture = Capture::start(far.netns(), far.underlay_interface()).unwrap();
    let (inside, outside) = (
        data_frame(IN_RANGE, b"in-range"),
        data_frame(OUT_OF_RANGE, b"off-range"),
    );
    // A guest's full 1500-byte payload behind its tag: 1518 bytes, 1556 on
    // the WAN with the GRE key.
    let full = sized_frame(IN_RANGE, b"full-size", 14 + 4 + 1500);
    let mut lan = FrameSender::open(&w.lan, &lan_end).unwrap();
    lan.send(&[
        (Duration::ZERO, inside.clone()),
        (Duration::ZERO, outside.clone()),
        (Duration::ZERO, full.clone()),
    ])
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let seen = capture.finish().unwrap();
    let tunnelled: Vec<_> = seen.iter().filter_map(|c| gre_payload(&c.data)).collect();
    let crossed = tunnelled
        .iter()
        .find(|g| contains(g.payload, b"in-range"))
        .unwrap_or_else(|| {
            panic!(
                "the in-range frame did not cross the WAN: {tunnelled:?} ({:02x?} frames seen)\n{}\n{}",
                seen.iter().map(|c| &c.data[..c.data.len().min(48)]).collect::<Vec<_>>(),
                w.tb.pm(w.gw).ofctl(&["dump-flows", "br-gw"]).unwrap(),
                w.tb.pm(w.gw).appctl(&["ofproto/trace", "br-gw", &format!("in_port={trunk},dl_vlan=150")]).unwrap_or_default(),
            )
        });
    assert_eq!(crossed.key, Some(KEY));
    assert!(
        crossed.payload.starts_with(&inside),
        "the frame crossed changed"
    );
    assert!(
        tunnelled.iter().any(|g| g.payload == full.as_slice()),
        "the full-size frame did not cross whole"
    );
    assert!(
        !tunnelled.iter().any(|g| contains(g.payload, b"off-range")),
        "the out-of-range frame leaked onto the WAN"
    );
    // It was dropped by the trunk's own drop flow, which counted it.
    let trunk_ofport = w.tb.pm(w.gw).ofport(&trunk).unwrap();
    let dropped = w
        .flows()
        .into_iter()
        .find(|f| {
            f.flow.priority == PRIORITY_PORT_DROP
                && f.flow.match_text == format!("in_port={trunk_ofport}")
        })
        .expect("the trunk's drop flow");
    assert!(dropped.n_packets >= 1, "{dropped:?}");

    // An ARP from the trunk comes up whole, with its tag.
    let mut arp = ArpRepr::gratuitous(
        MacAddr([0x52, 0x54, 0, 0, 0, 9]),
        "10.1.1.9".parse().unwrap(),
    );
    arp.tags = tag(IN_RANGE);
    let mut frame = Vec::new();
    arp.emit(&mut frame);
    lan.send(&[(Duration::ZERO, frame)]).unwrap();
    let up =
        w.rt.block_on(async { tokio::time::timeout(WAIT, snooped.recv()).await })
            .expect("the ARP in time")
            .expect("the session alive");
    let parsed = ArpRepr::parse_frame(&up).unwrap();
    assert_eq!(parsed.tags.first().map(VlanTag::vid), Some(IN_RANGE));
    assert_eq!(parsed.sha, arp.sha);

    // From the WAN, frames of the VI's VLANs reach the trunk; others are
    // dropped, counted by the WAN port's own drop flow. The far end sends
    // them into its tunnel from its bridge's local port.
    let far = w.tb.pm(w.far);
    far.exec(&["ip", "link", "set", "br-gw", "up"]).unwrap();
    far.ofctl(&["add-flow", "br-gw", "in_port=LOCAL,actions=output:wan-1"])
        .unwrap();
    let capture = Capture::start(&w.lan, &lan_end).unwrap();
    let mut from_far = FrameSender::open(far.netns(), "br-gw").unwrap();
    // Sent again each half second until counted: the far bridge's local
    // port has only just come up.
    let mut sent_at: Option<Instant> = None;
    let mut send_back = || {
        if sent_at.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
            from_far
                .send(&[
                    (Duration::ZERO, data_frame(IN_RANGE, b"back-in")),
                    (Duration::ZERO, data_frame(OUT_OF_RANGE, b"back-off")),
                ])
                .unwrap();
            sent_at = Some(Instant::now());
        }
    };
    let wan_ofport = w.tb.pm(w.gw).ofport(WAN_PORT).unwrap();
    let counted = |priority: u16, match_text: &str| {
        w.flows()
            .into_iter()
            .find(|f| f.flow.priority == priority && f.flow.match_text == match_text)
            .map_or(0, |f| f.n_packets)
    };
    wait_for("the WAN port's frames counted", || {
        let forwarded = counted(
            PRIORITY_FORWARD,
            &format!("in_port={wan_ofport},vlan_tci=0x1080/0x1fc0"),
        );
        let dropped = counted(PRIORITY_PORT_DROP, &format!("in_port={wan_ofport}"));
        let done = forwarded >= 1 && dropped >= 1;
        if !done {
            send_back();
        }
        done.then_some(())
    });
    // The session reads the same counters: the drop on the trunk, the one
    // on the WAN port.
    wait_for("the drops in the session's status", || {
        let d = of.borrow().drops.clone();
        let counted = |port| d.by_port.get(&port).copied().unwrap_or(0);
        (counted(trunk_ofport) >= 1 && counted(wan_ofport) >= 1).then_some(())
    });
    // A peer that sends with a key of no VI: its packets land on the
    // flow-based port, are dropped and counted there.
    let foreign = wait_for("the foreign-key port's ofport", || {
        plan.borrow().as_ref().and_then(|p| p.foreign_ofport)
    });
    let gw_ip = w.ip(w.gw).to_string();
    far.vsctl(&[
        "add-port",
        "br-gw",
        "bad-key",
        "--",
        "set",
        "Interface",
        "bad-key",
        "type=gre",
        &format!("options:remote_ip={gw_ip}"),
        "options:key=4242",
    ])
    .unwrap();
    far.ofctl(&["del-flows", "br-gw"]).unwrap();
    far.ofctl(&["add-flow", "br-gw", "in_port=LOCAL,actions=output:bad-key"])
        .unwrap();
    let mut sent_at: Option<Instant> = None;
    wait_for("the foreign key's drop counted", || {
        let d = of.borrow().drops.clone();
        if d.by_port.get(&foreign).copied().unwrap_or(0) >= 1 {
            return Some(());
        }
        if sent_at.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
            from_far
                .send(&[(Duration::ZERO, data_frame(IN_RANGE, b"wrong-key"))])
                .unwrap();
            sent_at = Some(Instant::now());
        }
        None
    });
    let arrived = capture.finish().unwrap();
    assert!(
        arrived.iter().any(|c| contains(&c.data, b"back-in")),
        "the in-range frame from the WAN did not reach the LAN"
    );
    assert!(
        !arrived.iter().any(|c| contains(&c.data, b"back-off")),
        "the out-of-range frame from the WAN reached the LAN"
    );
    assert!(
        !arrived.iter().any(|c| contains(&c.data, b"wrong-key")),
        "a frame with a foreign key reached the LAN"
    );

    // A new session onto the programmed bridge changes no flow: the same
    // flows, none re-added (their age kept growing), no FLOW_MOD sent.
    let before = w.flows();
    let dumped = Instant::now();
    first.cancel();
    wait_for("the first session gone", || {
        (!of.borrow().connected).then_some(())
    });
    let (again, _snooped) = session(&w, plan, w.shutdown.child_token());
    let restarted = programmed(&again);
    assert_eq!(restarted.flow_mods_sent, 0, "{restarted:?}");
    let after = w.flows();
    assert_eq!(
        before.iter().map(|f| &f.flow).collect::<Vec<_>>(),
        after.iter().map(|f| &f.flow).collect::<Vec<_>>()
    );
    let waited = dumped.elapsed().as_secs_f64();
    for (b, a) in before.iter().zip(&after) {
        assert!(
            a.duration + 0.5 >= b.duration + waited,
            "{:?} was re-added ({}s, was {}s {waited}s ago)",
            a.flow,
            a.duration,
            b.duration
        );
    }

    // A bridge deleted by hand is rebuilt by the keeper, and the session
    // installs the table anew. When the keeper re-adds the bridge before
    // ovs-vswitchd has applied the deletion, the switch keeps the bridge
    // and its OpenFlow connection and only renumbers the ports: the table
    // is then re-sent on the same connection, so either way counts.
    let sent = restarted.flow_mods_sent;
    w.vsctl(w.gw, "del-br br-gw");
    let rebuilt = wait_for("the table sent again after the rebuild", || {
        let s = again.borrow().clone();
        (s.connected && s.flow_mods_sent - sent >= s.flows as u64).then_some(s)
    });
    wait_for("the rebuilt bridge to hold the whole table", || {
        let s = again.borrow();
        (s.programmed && w.flows().len() == s.flows).then_some(())
    });
    assert_eq!(rebuilt.malformed_messages, 0);
    assert_eq!(rebuilt.switch_errors, 0);

    w.finish();
}

#[test]
fn the_keeper_reconnects_after_ovsdb_server_goes_away_and_rebuilds_a_wiped_database() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new().unwrap();
    let mut plan = BridgePlan::iaas("br-gw", "");
    plan.trunk = None;
    plan.wan_ports = vec![WanPort {
        name: WAN_PORT.into(),
        vi: VI,
        key: KEY,
        remote_ip: "192.0.2.1".parse().unwrap(),
        local_ip: None,
    }];
    let server = LoneOvsdb::start(dir.path());
    let (_plan_tx, plan_rx) = watch::channel(plan);
    let (status_tx, status) = watch::channel(BridgeStatus::default());
    let shutdown = CancellationToken::new();
    let config = KeeperConfig::new(format!("unix:{}", dir.path().join("db.sock").display()));
    rt.spawn(bridge::keep(config, plan_rx, status_tx, shutdown.clone()));
    let wan_port = || {
        LoneOvsdb::vsctl(dir.path(), &["list-ports", "br-gw"])
            .filter(|p| p.lines().any(|l| l == WAN_PORT))
            .map(drop)
    };
    wait_for("br-gw with its WAN port", wan_port);
    // The status follows the database a moment later.
    wait_for("the keeper to say it is connected", || {
        status.borrow().ovsdb_connected.then_some(())
    });

    drop(server);
    wait_for("the keeper to see the server gone", || {
        (!status.borrow().ovsdb_connected).then_some(())
    });
    // A new server with an empty database: the keeper finds it on its own.
    let _server = LoneOvsdb::start(dir.path());
    wait_for("br-gw rebuilt in the new database", wan_port);
    wait_for("the keeper to say so", || {
        let s = status.borrow();
        (s.ovsdb_connected && s.bridge_present).then_some(())
    });
    shutdown.cancel();
}
