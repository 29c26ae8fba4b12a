//! The `iris-controller` process against real Open vSwitch: emulated PMs
//! from the testbed library (one ovsdb-server and ovs-vswitchd each, in
//! their own namespace, userspace datapath), the controller reaching them
//! over TLS on a management link into each PM's namespace (over a unix
//! socket linked into each PM's run directory in passive mode) and over
//! OVSDB.
//! The process, its configuration and the waits come from the testbed's
//! scenario harness, which the end-to-end scenarios (`iris-testbed
//! scenario`) share; the scenarios cover kill -9 restarts and host churn
//! under traffic, these tests what the bridges look like and a clean
//! restart. Needs root and Open vSwitch; fails (never skips) without them.

#![allow(clippy::unwrap_used)]

use iris_testbed::controller::{OpenFlowMode, ViEntry};
use iris_testbed::scenario::{flows_kept, FlowsByPm, Harness, Options};
use iris_testbed::{Config, PmId, VmId};
use std::time::{Duration, Instant};

/// The VI every VM of these tests belongs to.
const VI: u32 = 1;

fn harness(label: &'static str) -> Harness {
    let options = Options {
        controller: env!("CARGO_BIN_EXE_iris-controller").into(),
        gateway: None,
        testbed: Config::default(),
    };
    Harness::new(label, &options).unwrap_or_else(|e| panic!("cannot build a testbed: {e}"))
}

/// `pms` PMs, VMs `vm<n>` of [`VI`] on the first `vms` of them, and the VI
/// with the VMs seeded.
fn world(h: &mut Harness, pms: usize, vms: usize) -> (Vec<PmId>, Vec<VmId>, Vec<ViEntry>) {
    let names: Vec<String> = (1..=pms).map(|i| format!("pm{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let pms = h.add_pms(&names).unwrap();
    let mut vi = ViEntry::new(VI, "acme", 1001);
    let vms = h.add_vms(&mut vi, &pms[..vms]).unwrap();
    (pms, vms, vec![vi])
}

/// Starts the controller on `pms` and `vis` and waits for every switch, every
/// OVSDB session and the full mesh.
fn start(h: &mut Harness, pms: &[PmId], vis: Vec<ViEntry>) {
    let config = h.config(pms, vis).unwrap();
    h.start_controller(&config).unwrap();
    let n = pms.len() as u64;
    h.wait_ready(n, n).unwrap();
    h.wait_full_mesh(pms).unwrap();
}

/// After a restart: given the time to happen, no reconciliation sent
/// anything, and every flow of `before` (dumped at `dumped`) is still there,
/// never replaced.
fn nothing_resent(h: &Harness, pms: &[PmId], before: &FlowsByPm, dumped: Instant) {
    std::thread::sleep(Duration::from_secs(2));
    let m = h.controller().unwrap().metrics().unwrap();
    assert_eq!(m.value("iris_flow_mods_sent_total"), 0.0);
    assert_eq!(m.value("iris_group_mods_sent_total"), 0.0);
    let after = h.iris_flows(pms).unwrap();
    flows_kept(before, &after, dumped.elapsed().as_secs_f64()).unwrap();
}

/// Three pings from `from` to `to`, every one answered.
fn answered(h: &Harness, from: VmId, to: std::net::Ipv4Addr) {
    let r =
        h.tb.vm(from)
            .ping(to, 3, Duration::from_millis(200))
            .unwrap();
    assert!(r.all_replied(), "{r:?}");
}

#[test]
fn the_controller_configures_real_ovs_and_a_clean_restart_changes_no_flow() {
    let mut h = harness("ctl-restart");
    // OpenFlow over TLS, as in production: each switch with a certificate
    // naming its host, over a management link.
    h.use_tls().unwrap();
    let (pms, vms, vis) = world(&mut h, 2, 2);
    // OVSDB makes each bridge right.
    start(&mut h, &pms, vis);
    h.check_openflow_over_tls(&pms).unwrap();
    for &pm in &pms {
        let get = |what: &str| {
            h.tb.pm(pm)
                .vsctl(&["get", "Bridge", "br-int", what])
                .unwrap()
        };
        assert_eq!(get("fail_mode").trim(), "secure");
        assert_eq!(get("protocols").trim(), "[OpenFlow13]");
        assert_eq!(get("datapath_type").trim(), "netdev");
        assert_eq!(
            get("other_config:datapath-id")
                .trim()
                .trim_matches('"')
                .len(),
            16
        );
        let target = h.tb.pm(pm).vsctl(&["get-controller", "br-int"]).unwrap();
        let ssl = format!("ssl:{}:", h.tb.pm(pm).management().unwrap().root.addr());
        assert!(target.trim().starts_with(&ssl), "{target}");
        for gre in h.tunnels(pm).unwrap() {
            let options =
                h.tb.pm(pm)
                    .vsctl(&["get", "Interface", &gre, "options"])
                    .unwrap();
            assert!(options.contains("key=flow"), "{options}");
        }
    }
    // The handshake completed on both switches and flows were sent.
    let c = h.controller().unwrap();
    let hosts = c.get_json("/v1/hosts").unwrap();
    assert!(
        hosts
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["openflow_connected"] == true),
        "{hosts}"
    );
    h.wait_classified(&vms).unwrap();
    let c = h.controller().unwrap();
    assert!(c.metrics().unwrap().value("iris_flow_mods_sent_total") > 0.0);
    let ports = c.get_json("/v1/vm-ports").unwrap();
    assert_eq!(ports.as_array().unwrap().len(), 2, "{ports}");

    // The VMs reach each other across the GRE mesh.
    let vm2 = h.tb.vm(vms[1]).ip().addr();
    h.wait_reachable(vms[0], vm2).unwrap();

    let (before, dumped) = h.settled_iris_flows(&pms).unwrap();
    assert!(
        before.values().all(|flows| !flows.is_empty()),
        "{before:#?}"
    );
    h.stop_controller().unwrap();

    // With the controller gone, the switches keep forwarding.
    answered(&h, vms[0], vm2);

    h.restart_controller().unwrap();
    h.wait_ready(2, 2).unwrap();
    nothing_resent(&h, &pms, &before, dumped);
    answered(&h, vms[0], vm2);
    h.teardown().unwrap();
}

#[test]
fn in_passive_mode_a_killed_controller_gets_every_switch_back_changing_no_flow() {
    let mut h = harness("ctl-passive");
    h.set_openflow(OpenFlowMode::Passive);
    let (pms, vms, vis) = world(&mut h, 3, 3);
    start(&mut h, &pms, vis);
    for &pm in &pms {
        // Each bridge listens beside its OVSDB, as a primary controller.
        let vsctl = |args: &[&str]| h.tb.pm(pm).vsctl(args).unwrap();
        let target = vsctl(&["get-controller", "br-int"]);
        assert_eq!(
            target.trim(),
            h.tb.pm(pm).passive_controller_target(),
            "{target}"
        );
        let kind = vsctl(&["--columns=type", "--bare", "list", "Controller"]);
        assert_eq!(kind.trim(), "primary");
        assert_eq!(
            vsctl(&["get", "Bridge", "br-int", "fail_mode"]).trim(),
            "secure"
        );
    }
    h.wait_classified(&vms).unwrap();
    let vm2 = h.tb.vm(vms[1]).ip().addr();
    h.wait_reachable(vms[0], vm2).unwrap();
    let (before, dumped) = h.settled_iris_flows(&pms).unwrap();
    assert!(before.values().all(|f| !f.is_empty()), "{before:#?}");

    // How fast is the restart bench's to say (`iris-testbed bench scale
    // restart --openflow passive`): a shared machine makes timings noisy.
    h.kill_controller().unwrap();
    h.restart_controller().unwrap();
    h.wait_ready(3, 3).unwrap();
    nothing_resent(&h, &pms, &before, dumped);
    answered(&h, vms[0], vm2);
    h.teardown().unwrap();
}

#[test]
fn a_switch_without_openflow13_is_refused_with_hello_failed() {
    let mut h = harness("ctl-of10");
    h.use_tls().unwrap();
    let (pms, _, vis) = world(&mut h, 1, 0);
    // The controller manages no host, so nothing rewrites the bridge's
    // protocols: the switch offers OpenFlow 1.0 only.
    let config = h.config(&[], vis).unwrap();
    h.start_controller(&config).unwrap();
    let target = h.host(pms[0]).unwrap().controller;
    let pm = h.tb.pm(pms[0]);
    pm.vsctl(&["set", "Bridge", "br-int", "protocols=OpenFlow10"])
        .unwrap();
    pm.set_controller(&[&target]).unwrap();
    let log = pm.ovs().vswitchd_log();
    let line = h
        .controller_mut()
        .unwrap()
        .wait_log("does not speak OpenFlow 1.3", Duration::from_secs(20))
        .unwrap();
    assert!(line.contains("protocols=OpenFlow13"), "{line}");
    let health = h.controller().unwrap().get_json("/healthz").unwrap();
    assert_eq!(health["switches_ready"], 0);
    // OVS saw the refusal too (it logs it a moment later).
    h.wait_for("OVS to log the refusal", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap();
        Ok(if text.contains("version negotiation failed") {
            Ok(())
        } else {
            Err("not yet".into())
        })
    })
    .unwrap();
    h.teardown().unwrap();
}
