//! A switch is programmed only from a complete port inventory
//! (`control/inventory.rs`), and a switch no host claims is held apart.

use super::*;
use crate::control::inventory::{CROSS_CHECK_WAIT, FIRST_REPORT_WAIT};
use crate::switch_state::SwitchState;
use ofp::message::{PortReason, PortStatus};
use proptest::prelude::*;

fn pm1() -> HostName {
    HostName("pm1".into())
}

fn ovsdb_up(c: &mut Control, host: &str) {
    c.on_topology_event(TopologyEvent::Ovsdb {
        host: HostName(host.into()),
        connected: true,
    });
}

fn port(port_no: u32) -> Port {
    Port {
        port_no,
        name: ofp::codec::Name::new(&format!("p{port_no}")),
        ..Port::default()
    }
}

/// The switch `sim` stands for finishes its handshake on `c` as pm1's,
/// reporting `ports` in its PORT_DESC.
fn pm1_ready_holding(c: &mut Control, conn: u64, sim: &flowsim::Switch, ports: &[u32]) {
    let (flows, groups) = dump(sim);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(conn),
        upcall: Upcall::Ready {
            features: SwitchFeatures {
                datapath_id: 1,
                ..SwitchFeatures::default()
            },
            ports: ports.iter().map(|&p| port(p)).collect(),
            installed: Installed::from_dump(&flows, &groups),
        },
    });
}

/// pm1's report of [`report_of`] without its VM port.
fn pm1_without_its_vm() -> TopologyEvent {
    let TopologyEvent::Ports { host, tunnels, .. } = report_of("pm1") else {
        unreachable!()
    };
    TopologyEvent::Ports {
        host,
        vm_ports: vec![],
        tunnels,
    }
}

#[test]
fn a_switch_ready_before_its_port_report_is_left_as_it_is() {
    // pm1's switch holds what the controller before the restart gave it.
    let (_, _old, live) = pm1_programmed();
    let (mut c, _) = control();
    for h in ["pm1", "pm2", "gw"] {
        ovsdb_up(&mut c, h);
    }
    let mut rx = connect(&mut c, 1);
    pm1_ready_holding(&mut c, 1, &live, &[5, 10, 11]);
    assert!(
        batches(&mut rx).is_empty(),
        "nothing is planned before pm1's ports are reported"
    );
    c.on_topology_event(report_of("pm1"));
    assert!(
        batches(&mut rx).is_empty(),
        "nor before the ports of the hosts its flood group reaches"
    );
    c.on_topology_event(report_of("pm2"));
    c.on_topology_event(report_of("gw"));
    assert!(
        batches(&mut rx).is_empty(),
        "the switch was right all along: nothing deleted, nothing re-added"
    );
    assert_eq!(c.metrics.flow_mods_sent.get(), 0);
    assert_eq!(c.metrics.group_mods_sent.get(), 0);
    assert_eq!(c.metrics.switches_held_for_inventory.get(), 1);
    // And it is programmed again from then on.
    second_vm_port_on_pm1(&mut c);
    assert_eq!(batches(&mut rx).len(), 1);
}

#[test]
fn the_first_report_programs_a_waiting_switch_even_when_it_changes_nothing() {
    let (mut c, _) = control();
    let mut rx = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    assert!(batches(&mut rx).is_empty());
    // Hosts with no VM port and no tunnel yet: the reports change nothing
    // the topology held.
    for h in ["pm1", "pm2", "gw"] {
        c.on_topology_event(TopologyEvent::Ports {
            host: HostName(h.into()),
            vm_ports: vec![],
            tunnels: vec![],
        });
    }
    let b = batches(&mut rx);
    let [batch] = &b[..] else { panic!("{b:?}") };
    let mut sim = flowsim::Switch::new();
    apply(&mut sim, batch);
    assert_eq!(sim.state(), &compile(&c.registry, &c.topology, &pm1()));
}

#[test]
fn a_reconnected_ovsdb_holds_its_switch_until_it_reports_again() {
    let (mut c, mut rx, mut sim) = pm1_programmed();
    ovsdb_up(&mut c, "pm1");
    // What a guest announces meanwhile is learned, and waits for the report
    // to reach the switch.
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x42]);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: garp_in(mac, [10, 1, 0, 42], 5),
    });
    assert_eq!(located(&c, mac), port_of("pm1", 5));
    assert!(batches(&mut rx).iter().all(|b| b
        .messages
        .iter()
        .all(|m| matches!(m, Message::PacketOut(_)))));
    c.on_topology_event(report_of("pm1"));
    let b = batches(&mut rx);
    let [batch] = &b[..] else { panic!("{b:?}") };
    apply(&mut sim, batch);
    assert_eq!(sim.state(), &compile(&c.registry, &c.topology, &pm1()));
}

#[test]
fn a_host_whose_first_report_never_comes_holds_the_others_only_for_a_while() {
    let (mut c, _) = control();
    let mut rx = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    c.on_topology_event(report_of("pm1"));
    c.on_topology_event(report_of("gw"));
    assert!(batches(&mut rx).is_empty(), "pm2 has not reported");
    c.on_tick(Instant::now() + FIRST_REPORT_WAIT);
    let b = batches(&mut rx);
    let [batch] = &b[..] else { panic!("{b:?}") };
    let mut sim = flowsim::Switch::new();
    apply(&mut sim, batch);
    assert_eq!(sim.state(), &compile(&c.registry, &c.topology, &pm1()));
}

/// A restarted controller whose pm1 report lacks VM port 5, which pm1's
/// switch still has, with its flows; pm1's queue.
fn report_behind_the_switch() -> (Control, mpsc::Receiver<Command>) {
    let (_, _old, live) = pm1_programmed();
    let (mut c, _) = control();
    c.on_topology_event(pm1_without_its_vm());
    c.on_topology_event(report_of("pm2"));
    c.on_topology_event(report_of("gw"));
    let mut rx = connect(&mut c, 1);
    // Port 9 is new (no flow of its own) and 0xfffffffe the bridge's own.
    pm1_ready_holding(&mut c, 1, &live, &[5, 9, 10, 11, 0xffff_fffe]);
    assert!(
        batches(&mut rx).is_empty(),
        "port 5 is on the switch, with its flows"
    );
    (c, rx)
}

/// What pm1's switch gets now deletes port 5's classification.
fn port_5_unclassified(c: &Control, rx: &mut mpsc::Receiver<Command>) {
    let b = batches(rx);
    let [batch] = &b[..] else { panic!("{b:?}") };
    let classifier = crate::compiler::vm_port_classifier(5);
    assert!(batch.messages.iter().any(|m| matches!(
        m,
        Message::FlowMod(f) if f.command == ofp::message::FlowModCommand::DeleteStrict
            && f.table_id == classifier.table
            && f.priority == classifier.priority
    )));
    assert!(!compile(&c.registry, &c.topology, &pm1())
        .flows
        .contains_key(&classifier));
}

#[test]
fn a_report_that_lacks_a_port_the_switch_serves_waits_for_the_port_to_go() {
    let (mut c, mut rx) = report_behind_the_switch();
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::PortStatus(PortStatus {
            reason: PortReason::Delete,
            desc: port(5),
        }),
    });
    port_5_unclassified(&c, &mut rx);
}

#[test]
fn a_report_that_lacks_a_port_the_switch_serves_is_trusted_after_a_while() {
    let (mut c, mut rx) = report_behind_the_switch();
    c.on_tick(Instant::now() + CROSS_CHECK_WAIT);
    port_5_unclassified(&c, &mut rx);
}

#[test]
fn a_switch_no_host_claims_is_held_apart_until_one_does() {
    let (mut c, _) = control();
    with_ports(&mut c);
    let mut rx = connect(&mut c, 3);
    ready(&mut c, 3, 0x77);
    let health = c.health();
    assert_eq!(health.switches_ready, 0, "not a configured switch");
    assert_eq!(health.unknown_switches, ["0000000000000077"]);
    assert_eq!(c.metrics.switches_connected.get(), 0);
    assert_eq!(c.metrics.switches_unknown.get(), 1);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(3),
        upcall: garp_in(MacAddr([0x52, 0x54, 0, 0, 0, 7]), [10, 1, 0, 7], 5),
    });
    assert_eq!(
        metric(&c, "iris_packet_ins_total{reason=\"unknown_switch\"}"),
        1
    );
    assert!(batches(&mut rx).is_empty(), "its tables are left alone");
    // A host added with its datapath id claims it, and it is programmed
    // once that host's ports are reported.
    c.put_host(host("pm7", [10, 0, 0, 7], 0x77, HostRole::Compute))
        .unwrap();
    assert_eq!(c.health().switches_ready, 1);
    assert!(c.health().unknown_switches.is_empty());
    assert_eq!(c.metrics.switches_connected.get(), 1);
    assert_eq!(c.metrics.switches_unknown.get(), 0);
    c.on_topology_event(TopologyEvent::Ports {
        host: HostName("pm7".into()),
        vm_ports: vec![],
        tunnels: vec![],
    });
    assert_eq!(batches(&mut rx).len(), 1);
    c.on_switch_event(SwitchEvent::Disconnected {
        conn: ConnId(3),
        reason: CloseReason::PeerClosed,
    });
    assert_eq!(c.metrics.switches_connected.get(), 0);
}

/// One input the control loop takes about pm1's restart.
#[derive(Debug, Clone, Copy)]
enum Input {
    /// pm1's switch finishes its handshake holding its live tables.
    Ready,
    /// A host's OVSDB session connects.
    Ovsdb(&'static str),
    /// A host's OVSDB reports its ports.
    Report(&'static str),
}

/// Whether `state` holds every flow and group of `kept` as it is there.
fn holds_all(state: &SwitchState, kept: &SwitchState) -> bool {
    kept.flows
        .iter()
        .all(|(k, f)| state.flows.get(k) == Some(f))
        && kept
            .groups
            .iter()
            .all(|(id, g)| state.groups.get(id) == Some(g))
}

proptest! {
    /// After a restart, whatever order the switch, the OVSDB sessions and
    /// their reports come in, no message ever deletes or changes a flow or
    /// group that the final tables keep; and once every session has
    /// reported after connecting, the switch holds the final tables.
    #[test]
    fn no_order_of_inputs_deletes_what_the_final_tables_keep(
        order in Just(vec![
            Input::Ready,
            Input::Ovsdb("pm1"),
            Input::Report("pm1"),
            Input::Ovsdb("pm2"),
            Input::Report("pm2"),
            Input::Ovsdb("gw"),
            Input::Report("gw"),
        ]).prop_shuffle(),
        plugged in any::<bool>(),
    ) {
        let (_, _old, live) = pm1_programmed();
        let report = |h: &str| if h == "pm1" && plugged { pm1_with_port(8) } else { report_of(h) };
        let want = {
            let (mut f, _) = control();
            for h in ["pm1", "pm2", "gw"] {
                f.on_topology_event(report(h));
            }
            compile(&f.registry, &f.topology, &pm1())
        };
        let mut kept = SwitchState::default();
        for (k, f) in &live.state().flows {
            if want.flows.get(k) == Some(f) {
                kept.flows.insert(k.clone(), f.clone());
            }
        }
        for (id, g) in &live.state().groups {
            if want.groups.get(id) == Some(g) {
                kept.groups.insert(*id, g.clone());
            }
        }
        prop_assert!(!kept.flows.is_empty());

        let (mut c, _) = control();
        let mut rx = connect(&mut c, 1);
        let mut sim = live.clone();
        let ports: &[u32] = if plugged { &[5, 8, 10, 11] } else { &[5, 10, 11] };
        for input in &order {
            match *input {
                Input::Ready => pm1_ready_holding(&mut c, 1, &live, ports),
                Input::Ovsdb(h) => ovsdb_up(&mut c, h),
                Input::Report(h) => c.on_topology_event(report(h)),
            }
            for b in batches(&mut rx) {
                for m in &b.messages {
                    sim.apply(m).unwrap();
                    prop_assert!(
                        holds_all(sim.state(), &kept),
                        "after {input:?} in {order:?}, {m:?} took away what the final tables keep"
                    );
                }
            }
        }
        let position = |i: &dyn Fn(&Input) -> bool| order.iter().position(i);
        let reported_after_connecting = position(&|i| matches!(i, Input::Ovsdb("pm1")))
            < position(&|i| matches!(i, Input::Report("pm1")));
        if reported_after_connecting {
            prop_assert_eq!(sim.state(), &want);
        } else {
            // pm1's session connected after its only report: the switch got
            // the final tables before that, or is left as it was.
            prop_assert!(sim.state() == &want || sim.state() == live.state());
        }
    }
}

#[test]
fn switches_no_host_claims_beyond_the_bound_are_disconnected_and_a_known_one_still_connects() {
    let (mut c, _) = control();
    with_ports(&mut c);
    let mut held = Vec::new();
    for i in 0..MAX_UNKNOWN_SWITCHES + 3 {
        let conn = 100 + u64::try_from(i).unwrap();
        held.push(connect(&mut c, conn));
        ready(&mut c, conn, 0xbad0_0000 + conn);
    }
    assert_eq!(c.health().unknown_switches.len(), MAX_UNKNOWN_SWITCHES);
    assert_eq!(c.metrics.switches_unknown.get(), 16);
    assert_eq!(c.metrics.switches_unknown_refused.get(), 3);
    for (i, mut rx) in held.into_iter().enumerate() {
        let released = matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
        assert_eq!(released, i >= MAX_UNKNOWN_SWITCHES, "switch {i}");
    }
    let _rx = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    assert_eq!(c.health().switches_ready, 1);
}
