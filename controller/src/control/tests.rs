use super::program::RESYNC_INTERVAL;
use super::*;
use crate::compiler::compile;
use crate::flowsim;
use crate::model::Location;
use crate::registry::EntrySpec;
use crate::server::{Command, SwitchHandle};
use crate::session::{Batch, CloseReason};
use crate::switch_state::Installed;
use ofp::message::{Message, PacketIn, PacketInReason, SwitchFeatures, NO_BUFFER};
use ofp::multipart::{FlowStats, GroupDesc};
use ofp::oxm::Match;
use ofp::packet::{ArpRepr, MacAddr};
use std::time::Instant;

fn host(name: &str, ip: [u8; 4], dpid: u64, role: HostRole) -> ManagedHost {
    ManagedHost {
        host: Host {
            name: HostName(name.into()),
            underlay_ip: Ipv4Addr::from(ip),
            role,
            ovsdb_remote: format!("unix:/run/{name}.sock"),
            datapath_id: dpid,
        },
        controller: None,
    }
}

fn vi(id: u32, key: u32, gateways: &[&str]) -> Vi {
    Vi {
        id: ViId(id),
        name: format!("vi{id}"),
        gre_key: key,
        gateways: gateways.iter().map(|g| HostName((*g).into())).collect(),
    }
}

fn control() -> (Control, watch::Receiver<Vec<ManagedHost>>) {
    control_with(vec![vi(1, 1001, &["gw"])])
}

/// pm1, pm2 and gw, with `vis`.
fn control_with(vis: Vec<Vi>) -> (Control, watch::Receiver<Vec<ManagedHost>>) {
    let parts = Control::start(
        vec![
            host("pm1", [10, 0, 0, 1], 1, HostRole::Compute),
            host("pm2", [10, 0, 0, 2], 2, HostRole::Compute),
            host("gw", [10, 0, 0, 9], 9, HostRole::Gateway),
        ],
        vis,
        Registry::new(),
        Arc::new(Metrics::default()),
    );
    (parts.control, parts.hosts)
}

/// A handle whose connection side is held by the returned receiver.
fn handle(conn: u64) -> (SwitchHandle, mpsc::Receiver<Command>) {
    SwitchHandle::detached(ConnId(conn), 8)
}

fn ready(c: &mut Control, conn: u64, dpid: u64) {
    ready_with(c, conn, dpid, vec![], vec![]);
}

fn ready_with(
    c: &mut Control,
    conn: u64,
    dpid: u64,
    flows: Vec<FlowStats>,
    groups: Vec<GroupDesc>,
) {
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(conn),
        upcall: Upcall::Ready {
            features: SwitchFeatures {
                datapath_id: dpid,
                ..SwitchFeatures::default()
            },
            ports: vec![],
            installed: Installed::from_dump(&flows, &groups),
        },
    });
}

fn connect(c: &mut Control, conn: u64) -> mpsc::Receiver<Command> {
    let (h, rx) = handle(conn);
    c.on_switch_event(SwitchEvent::Connected {
        conn: ConnId(conn),
        peer: format!("127.0.0.1:{conn}"),
        handle: h,
        certificate: None,
    });
    rx
}

#[test]
fn a_ready_switch_is_matched_to_its_host_by_datapath_id() {
    let (mut c, _) = control();
    let _rx = connect(&mut c, 7);
    assert_eq!(c.health().switches_ready, 0);
    ready(&mut c, 7, 2);
    let pm2 = c.host(&HostName("pm2".into())).unwrap();
    assert_eq!(pm2.openflow_peer.as_deref(), Some("127.0.0.1:7"));
    assert_eq!(c.health().switches_ready, 1);
    assert_eq!(c.metrics.switches_connected.get(), 1);
    c.on_switch_event(SwitchEvent::Disconnected {
        conn: ConnId(7),
        reason: CloseReason::PeerClosed,
    });
    assert_eq!(c.metrics.switches_connected.get(), 0);
    assert!(c
        .host(&HostName("pm2".into()))
        .unwrap()
        .openflow_peer
        .is_none());
}

#[test]
fn a_second_connection_claiming_a_live_dpid_is_refused_and_the_first_keeps_it() {
    let (mut c, _) = control();
    let mut real = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    let mut impostor = connect(&mut c, 2);
    ready(&mut c, 2, 1);
    // The impostor's handle was dropped: its connection closes.
    while impostor.try_recv().is_ok() {}
    assert!(impostor.is_closed());
    assert!(!real.is_closed(), "the live connection keeps its session");
    let pm1 = c.host(&HostName("pm1".into())).unwrap();
    assert_eq!(pm1.openflow_peer.as_deref(), Some("127.0.0.1:1"));
    assert_eq!(c.metrics.switches_connected.get(), 1);
    assert!(c
        .metrics
        .render()
        .contains("iris_switches_refused_total{why=\"dpid_in_use\"} 1"));
    // The refused connection's late disconnect changes nothing.
    c.on_switch_event(SwitchEvent::Disconnected {
        conn: ConnId(2),
        reason: CloseReason::PeerClosed,
    });
    assert_eq!(c.metrics.switches_connected.get(), 1);
    // What is sent for pm1 still goes to the real switch.
    while real.try_recv().is_ok() {}
    assert!(!real.is_closed());
}

#[test]
fn a_reconnecting_switch_replaces_its_closed_old_connection() {
    let (mut c, _) = control();
    let old = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    // The old connection's task ended (the switch restarted) before the
    // control loop heard of it.
    drop(old);
    let new = connect(&mut c, 2);
    ready(&mut c, 2, 1);
    assert!(!new.is_closed());
    let pm1 = c.host(&HostName("pm1".into())).unwrap();
    assert_eq!(pm1.openflow_peer.as_deref(), Some("127.0.0.1:2"));
    assert_eq!(c.metrics.switches_connected.get(), 1);
    // Its late disconnect does not count twice.
    c.on_switch_event(SwitchEvent::Disconnected {
        conn: ConnId(1),
        reason: CloseReason::PeerClosed,
    });
    assert_eq!(c.metrics.switches_connected.get(), 1);
}

#[test]
fn tunnels_are_mapped_to_peers_by_underlay_address() {
    let (mut c, _) = control();
    let pm1 = HostName("pm1".into());
    let event = TopologyEvent::Ports {
        host: pm1.clone(),
        vm_ports: vec![VmPortSeen {
            name: "vm1".into(),
            ofport: 5,
            vi: ViId(1),
            attached_mac: None,
        }],
        // The last tunnel leads to an address no host has: ignored.
        tunnels: vec![
            ([10, 0, 0, 2].into(), 10),
            ([10, 0, 0, 9].into(), 11),
            ([10, 9, 9, 9].into(), 12),
        ],
    };
    let mut events = c.events.subscribe();
    c.on_topology_event(event.clone());
    let t = c.topology();
    assert_eq!(t.tunnels.len(), 2);
    assert_eq!(t.tunnels[&(pm1.clone(), HostName("gw".into()))], 11);
    assert_eq!(c.vm_ports(Some(&pm1), Some(ViId(1))).len(), 1);
    assert_eq!(c.vm_ports(None, Some(ViId(2))).len(), 0);
    assert!(events.try_recv().is_ok());
    // The same report again changes nothing and says nothing.
    c.on_topology_event(event);
    assert!(events.try_recv().is_err());
    // A port going away is reflected.
    c.on_topology_event(TopologyEvent::Ports {
        host: pm1.clone(),
        vm_ports: vec![],
        tunnels: vec![],
    });
    assert!(c.topology().vm_ports.is_empty() && c.topology().tunnels.is_empty());
}

#[test]
fn hosts_must_keep_distinct_addresses_and_ids() {
    let (mut c, hosts) = control();
    let clash = host("pm3", [10, 0, 0, 1], 3, HostRole::Compute);
    assert!(
        matches!(c.put_host(clash), Err(Refusal::Conflict { detail: m, .. }) if m.contains("pm1"))
    );
    let clash = host("pm3", [10, 0, 0, 3], 2, HostRole::Compute);
    assert!(
        matches!(c.put_host(clash), Err(Refusal::Conflict { detail: m, .. }) if m.contains("datapath_id"))
    );
    assert_eq!(
        c.put_host(host("pm3", [10, 0, 0, 3], 3, HostRole::Compute)),
        Ok(true)
    );
    assert_eq!(
        hosts.borrow().len(),
        4,
        "the OVSDB side hears of the new host"
    );
    // Replacing a host's definition is not a clash with itself.
    assert_eq!(
        c.put_host(host("pm3", [10, 0, 0, 33], 3, HostRole::Compute)),
        Ok(false)
    );
}

#[test]
fn a_gateway_in_use_cannot_be_removed_or_demoted() {
    let (mut c, _) = control();
    let gw = HostName("gw".into());
    assert!(
        matches!(c.delete_host(&gw, false), Err(Refusal::Conflict { detail: m, .. }) if m.contains("vi1"))
    );
    let demoted = host("gw", [10, 0, 0, 9], 9, HostRole::Compute);
    assert!(matches!(c.put_host(demoted), Err(Refusal::Conflict { .. })));
    c.delete_vi(ViId(1)).unwrap();
    c.delete_host(&gw, false).unwrap();
    assert!(matches!(
        c.delete_host(&gw, false),
        Err(Refusal::NotFound(_))
    ));
}

#[test]
fn removing_a_host_removes_the_tunnels_to_it() {
    let (mut c, hosts) = control();
    c.on_topology_event(TopologyEvent::Ports {
        host: HostName("pm1".into()),
        vm_ports: vec![],
        tunnels: vec![([10, 0, 0, 2].into(), 10)],
    });
    let _rx = connect(&mut c, 4);
    ready(&mut c, 4, 2);
    c.delete_host(&HostName("pm2".into()), false).unwrap();
    assert!(c.topology().tunnels.is_empty());
    assert_eq!(hosts.borrow().len(), 2);
    // Its switch stays connected but belongs to no host now: held apart.
    assert_eq!(c.health().switches_ready, 0);
    assert_eq!(c.health().unknown_switches, ["0000000000000002"]);
    assert!(c.hosts().iter().all(|h| h.openflow_peer.is_none()));
}

#[test]
fn vis_need_unique_keys_and_real_gateways() {
    let (mut c, _) = control();
    assert!(
        matches!(c.put_vi(vi(2, 1001, &[]), false), Err(Refusal::Conflict { detail: m, .. }) if m.contains("gre_key"))
    );
    assert!(
        matches!(c.put_vi(vi(2, 1002, &["pm1"]), false), Err(Refusal::Conflict { detail: m, .. }) if m.contains("compute"))
    );
    assert!(
        matches!(c.put_vi(vi(2, 1002, &["nope"]), false), Err(Refusal::Conflict { detail: m, .. }) if m.contains("not a known host"))
    );
    assert_eq!(c.put_vi(vi(2, 1002, &[]), false), Ok(true));
    assert_eq!(c.put_vi(vi(2, 1003, &["gw"]), false), Ok(false));
    assert_eq!(c.vi(ViId(2)).unwrap().gre_key, 1003);
    assert!(matches!(c.delete_vi(ViId(5)), Err(Refusal::NotFound(_))));
}

/// Every batch waiting in a connection's queue.
fn batches(rx: &mut mpsc::Receiver<Command>) -> Vec<Batch> {
    let mut out = Vec::new();
    while let Ok(c) = rx.try_recv() {
        if let Command::Submit(b) = c {
            out.push(b);
        }
    }
    out
}

fn dumps_requested(rx: &mut mpsc::Receiver<Command>) -> usize {
    let mut n = 0;
    while let Ok(c) = rx.try_recv() {
        n += usize::from(matches!(c, Command::Dump));
    }
    n
}

/// A VM port of VI 1 on pm1 (port 5) and pm2 (port 6), and the tunnels
/// between pm1, pm2 and gw.
fn with_ports(c: &mut Control) {
    for host in ["pm1", "pm2", "gw"] {
        c.on_topology_event(report_of(host));
    }
}

/// The port report of `host` (pm1, pm2 or gw) that [`with_ports`] sends.
fn report_of(host: &str) -> TopologyEvent {
    let ip = |h: u8| Ipv4Addr::from([10, 0, 0, h]);
    let (port, peers) = match host {
        "pm1" => (5, [(ip(2), 10), (ip(9), 11)]),
        "pm2" => (6, [(ip(1), 10), (ip(9), 11)]),
        _ => (7, [(ip(1), 10), (ip(2), 11)]),
    };
    TopologyEvent::Ports {
        host: HostName(host.into()),
        vm_ports: vec![VmPortSeen {
            name: format!("vm-{host}"),
            ofport: port,
            vi: ViId(1),
            attached_mac: None,
        }],
        tunnels: peers.to_vec(),
    }
}

/// pm1's report of [`report_of`] with VM port `ofport` of VI 1 plugged as
/// well.
fn pm1_with_port(ofport: u32) -> TopologyEvent {
    let TopologyEvent::Ports {
        host,
        mut vm_ports,
        tunnels,
    } = report_of("pm1")
    else {
        unreachable!()
    };
    vm_ports.push(VmPortSeen {
        name: format!("vm-pm1-{ofport}"),
        ofport,
        vi: ViId(1),
        attached_mac: None,
    });
    TopologyEvent::Ports {
        host,
        vm_ports,
        tunnels,
    }
}

/// The batch's messages applied to a simulated switch.
fn apply(sim: &mut flowsim::Switch, b: &Batch) {
    sim.apply_all(
        b.messages
            .iter()
            .filter(|m| !matches!(m, Message::BarrierRequest)),
    )
    .unwrap();
}

/// What a flow dump of `sim` would report.
fn dump(sim: &flowsim::Switch) -> (Vec<FlowStats>, Vec<GroupDesc>) {
    let st = sim.state();
    let flows = st
        .flows
        .values()
        .map(|f| FlowStats {
            table_id: f.table,
            duration_sec: 100,
            duration_nsec: 0,
            priority: f.priority,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            cookie: f.cookie,
            packet_count: 0,
            byte_count: 0,
            match_: f.match_.clone(),
            instructions: f.instructions.clone(),
        })
        .collect();
    let groups = st
        .groups
        .values()
        .map(|g| GroupDesc {
            group_type: g.group_type,
            group_id: g.group_id,
            buckets: g
                .buckets
                .iter()
                .map(|b| ofp::message::Bucket {
                    weight: 0,
                    watch_port: ofp::message::port_no::ANY,
                    watch_group: ofp::message::group_no::ANY,
                    actions: b.actions.clone(),
                })
                .collect(),
        })
        .collect();
    (flows, groups)
}

#[test]
fn a_ready_switch_gets_its_compiled_tables_and_a_barrier() {
    let (mut c, _) = control();
    with_ports(&mut c);
    let mut rx = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    let b = batches(&mut rx);
    let [batch] = &b[..] else { panic!("{b:?}") };
    assert!(batch.barrier.is_some());
    let mut sim = flowsim::Switch::new();
    apply(&mut sim, batch);
    let want = compile(&c.registry, &c.topology, &HostName("pm1".into()));
    assert_eq!(sim.state(), &want);
    let flow_mods = batch
        .messages
        .iter()
        .filter(|m| matches!(m, Message::FlowMod(_)))
        .count() as u64;
    assert_eq!(c.metrics.flow_mods_sent.get(), flow_mods);
    // Nothing changed: nothing more is sent.
    c.on_topology_event(TopologyEvent::Ovsdb {
        host: HostName("pm1".into()),
        connected: true,
    });
    c.program_all();
    assert!(batches(&mut rx).is_empty());
}

/// pm1's switch connected and programmed, with a simulated switch holding
/// what it was sent.
fn pm1_programmed() -> (Control, mpsc::Receiver<Command>, flowsim::Switch) {
    let (mut c, _) = control();
    with_ports(&mut c);
    let mut rx = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    let mut sim = flowsim::Switch::new();
    apply(&mut sim, &batches(&mut rx)[0]);
    (c, rx, sim)
}

#[test]
fn a_switch_that_already_holds_its_flows_is_left_alone() {
    let (mut c, _rx, sim) = pm1_programmed();
    // The switch reconnects (or the controller restarts) holding those flows.
    let (flows, groups) = dump(&sim);
    let mut rx2 = connect(&mut c, 2);
    ready_with(&mut c, 2, 1, flows, groups);
    assert!(
        batches(&mut rx2).is_empty(),
        "no flow is deleted or re-added"
    );
}

/// A second VM port of VI 1 appears on pm1.
fn second_vm_port_on_pm1(c: &mut Control) {
    c.on_topology_event(TopologyEvent::Ports {
        host: HostName("pm1".into()),
        vm_ports: vec![
            VmPortSeen {
                name: "vm-pm1".into(),
                ofport: 5,
                vi: ViId(1),
                attached_mac: None,
            },
            VmPortSeen {
                name: "vm-pm1b".into(),
                ofport: 8,
                vi: ViId(1),
                attached_mac: None,
            },
        ],
        tunnels: vec![([10, 0, 0, 2].into(), 10), ([10, 0, 0, 9].into(), 11)],
    });
}

#[test]
fn a_changed_topology_sends_only_the_difference() {
    let (mut c, mut rx, mut sim) = pm1_programmed();
    second_vm_port_on_pm1(&mut c);
    let b = batches(&mut rx);
    let [delta] = &b[..] else { panic!("{b:?}") };
    let deletes = delta
        .messages
        .iter()
        .filter(|m| matches!(m, Message::FlowMod(f) if f.command == ofp::message::FlowModCommand::DeleteStrict))
        .count();
    assert_eq!(deletes, 0, "adding a port deletes nothing");
    apply(&mut sim, delta);
    let want = compile(&c.registry, &c.topology, &HostName("pm1".into()));
    assert_eq!(sim.state(), &want);
}

/// How many moves the latency histogram has seen.
fn moves_measured(c: &Control) -> u64 {
    c.metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("iris_move_latency_seconds_count "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn rarp_in(mac: MacAddr, in_port: u32) -> Upcall {
    rarp_received(mac, in_port, Instant::now())
}

/// A RARP's PacketIn whose bytes arrived at `received`.
fn rarp_received(mac: MacAddr, in_port: u32, received: Instant) -> Upcall {
    intercepted_at(&ArpRepr::rarp_announce(mac), in_port, received)
}

/// `frame` sent up by the interception table from `in_port`.
fn intercepted(frame: &ArpRepr, in_port: u32) -> Upcall {
    intercepted_at(frame, in_port, Instant::now())
}

fn intercepted_at(frame: &ArpRepr, in_port: u32, received: Instant) -> Upcall {
    let mut data = Vec::new();
    frame.emit(&mut data);
    Upcall::PacketIn {
        packet_in: PacketIn {
            buffer_id: NO_BUFFER,
            total_len: data.len() as u16,
            reason: PacketInReason::Action,
            table_id: crate::compiler::TABLE_INTERCEPT,
            cookie: 0,
            match_: Match::new().in_port(in_port),
            data,
        },
        received,
    }
}

#[test]
fn a_rarp_moves_the_mac_and_floods_once_every_switch_confirms() {
    let (mut c, _) = control();
    with_ports(&mut c);
    let mut rx1 = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    let mut rx2 = connect(&mut c, 2);
    ready(&mut c, 2, 2);
    let mut rx9 = connect(&mut c, 9);
    ready(&mut c, 9, 9);
    let confirm = |c: &mut Control, conn: u64, rx: &mut mpsc::Receiver<Command>| {
        for b in batches(rx) {
            if let Some(ticket) = b.barrier {
                c.on_switch_event(SwitchEvent::Upcall {
                    conn: ConnId(conn),
                    upcall: Upcall::BarrierConfirmed { ticket, errors: 0 },
                });
            }
        }
    };
    for (conn, rx) in [(1, &mut rx1), (2, &mut rx2), (9, &mut rx9)] {
        confirm(&mut c, conn, rx);
    }
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x42]);
    // The VM first lives on pm1 ...
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: rarp_in(mac, 5),
    });
    for (conn, rx) in [(1, &mut rx1), (2, &mut rx2), (9, &mut rx9)] {
        confirm(&mut c, conn, rx);
    }
    let mut events = c.events.subscribe();
    // ... and migrates to pm2, which sends its RARP.
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: rarp_in(mac, 6),
    });
    assert_eq!(located(&c, mac), port_of("pm2", 6));
    // pm2, where the VM now is, gets its flows first: the other switches
    // of VI 1 send it the VM's frames only once it has confirmed them.
    let b2 = batches(&mut rx2);
    assert!(
        !b2.is_empty() && b2.iter().all(|b| b.barrier.is_some()),
        "{b2:?}"
    );
    // (pm1 has the first placement's flood, nothing else.)
    let early: Vec<Batch> = [&mut rx1, &mut rx9].into_iter().flat_map(batches).collect();
    assert!(early.iter().all(|b| b.barrier.is_none()), "{early:?}");
    assert_eq!(moves_measured(&c), 0, "a first placement is not a move");
    for b in &b2 {
        c.on_switch_event(SwitchEvent::Upcall {
            conn: ConnId(2),
            upcall: Upcall::BarrierConfirmed {
                ticket: b.barrier.unwrap(),
                errors: 0,
            },
        });
    }
    // Then the others; the flood waits for their barriers.
    let b1 = batches(&mut rx1);
    let b9 = batches(&mut rx9);
    assert!(!b1.is_empty() && !b9.is_empty());
    assert!(batches(&mut rx2).is_empty(), "no flood yet");
    let tickets: Vec<(u64, u64)> = [(1, &b1), (9, &b9)]
        .iter()
        .flat_map(|(conn, bs)| bs.iter().filter_map(move |b| b.barrier.map(|t| (*conn, t))))
        .collect();
    for (i, (conn, ticket)) in tickets.iter().enumerate() {
        c.on_switch_event(SwitchEvent::Upcall {
            conn: ConnId(*conn),
            upcall: Upcall::BarrierConfirmed {
                ticket: *ticket,
                errors: 0,
            },
        });
        let flood = batches(&mut rx2);
        if i + 1 < tickets.len() {
            assert!(flood.is_empty(), "nothing before the last barrier");
        } else {
            let [b] = &flood[..] else { panic!("{flood:?}") };
            assert!(matches!(&b.messages[..], [Message::PacketOut(p)] if p.in_port == 6));
        }
    }
    assert_eq!(moves_measured(&c), 1);
    let mut saw_move = false;
    while let Ok(e) = events.try_recv() {
        if let NorthEvent::Move { event, .. } = e {
            assert_eq!(event.location.as_deref(), Some("pm2:6"));
            assert_eq!(event.from.as_deref(), Some("pm1:5"));
            saw_move = true;
        }
    }
    assert!(saw_move);
    let text = c.metrics.render();
    assert!(
        text.contains("iris_packet_ins_total{reason=\"rarp\"} 2"),
        "{text}"
    );
}

/// Three switches in sync (pm1, pm2 and gw as connections 1, 2 and 9) and
/// a VM of VI 1 that announced itself on pm1; each switch's queue by
/// connection.
fn vm_on_pm1() -> (Control, BTreeMap<u64, mpsc::Receiver<Command>>, MacAddr) {
    vm_on_pm1_in(vec![vi(1, 1001, &["gw"])])
}

/// [`vm_on_pm1`] with `vis`.
fn vm_on_pm1_in(vis: Vec<Vi>) -> (Control, BTreeMap<u64, mpsc::Receiver<Command>>, MacAddr) {
    let (mut c, _) = control_with(vis);
    with_ports(&mut c);
    let mut rxs = BTreeMap::new();
    for (conn, dpid) in [(1, 1), (2, 2), (9, 9)] {
        rxs.insert(conn, connect(&mut c, conn));
        ready(&mut c, conn, dpid);
    }
    answer_barriers(&mut c, &mut rxs, &[1, 2, 9], |_| 0);
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x42]);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: rarp_in(mac, 5),
    });
    answer_barriers(&mut c, &mut rxs, &[1, 2, 9], |_| 0);
    // The first placement's flood went out on pm1.
    batches(rxs.get_mut(&1).unwrap());
    (c, rxs, mac)
}

fn barrier(c: &mut Control, conn: u64, ticket: u64, errors: usize) {
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(conn),
        upcall: Upcall::BarrierConfirmed { ticket, errors },
    });
}

/// Answers the barriers waiting in the queues of `conns`, with
/// `errors(conn)` refusals each.
fn answer_barriers(
    c: &mut Control,
    rxs: &mut BTreeMap<u64, mpsc::Receiver<Command>>,
    conns: &[u64],
    errors: impl Fn(u64) -> usize,
) {
    for conn in conns {
        if let Some(rx) = rxs.get_mut(conn) {
            for t in tickets(rx) {
                barrier(c, *conn, t, errors(*conn));
            }
        }
    }
}

/// The barrier tickets of the batches waiting in `rx`.
fn tickets(rx: &mut mpsc::Receiver<Command>) -> Vec<u64> {
    batches(rx).iter().filter_map(|b| b.barrier).collect()
}

/// The VM of [`vm_on_pm1`] arrives on pm2 and announces itself there.
fn migrate_to_pm2(c: &mut Control, mac: MacAddr) {
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: rarp_in(mac, 6),
    });
}

/// The value of a metric line, 0 when absent.
fn metric(c: &Control, line: &str) -> u64 {
    c.metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// The move events published since `events` subscribed: (complete, why).
fn move_events(events: &mut broadcast::Receiver<NorthEvent>) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        match e {
            NorthEvent::Move { .. } => out.push((true, String::new())),
            NorthEvent::MoveIncomplete { why, .. } => out.push((false, why.into_owned())),
            _ => {}
        }
    }
    out
}

fn is_flood(batches: &[Batch]) -> bool {
    matches!(batches, [b] if matches!(&b.messages[..], [Message::PacketOut(p)] if p.in_port == 6))
}

/// The move was counted and announced as incomplete for `why`, not
/// measured, and the switches that did take their flows still got the
/// flood to relearn from.
fn assert_incomplete(
    c: &Control,
    rxs: &mut BTreeMap<u64, mpsc::Receiver<Command>>,
    events: &mut broadcast::Receiver<NorthEvent>,
    why: &'static str,
) {
    assert!(is_flood(&batches(rxs.get_mut(&2).unwrap())));
    assert_eq!(moves_measured(c), 0);
    let line = format!("iris_moves_incomplete_total{{why=\"{why}\"}}");
    assert_eq!(metric(c, &line), 1);
    assert_eq!(move_events(events), vec![(false, why.to_owned())]);
}

#[test]
fn a_move_is_timed_from_the_arrival_of_its_rarp() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    let mut events = c.events.subscribe();
    // The PacketIn waited in the queues before the control loop saw it.
    let queued = Duration::from_millis(300);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: rarp_received(mac, 6, Instant::now() - queued),
    });
    answer_barriers(&mut c, &mut rxs, &[2, 1, 9], |_| 0);
    let mut latency = None;
    while let Ok(e) = events.try_recv() {
        if let NorthEvent::Move { latency_ms, .. } = e {
            latency = Some(latency_ms);
        }
    }
    let latency = latency.expect("a confirmed move");
    assert!(latency >= 300.0, "{latency} ms");
    let measured = metric(&c, "iris_move_latency_seconds_bucket{le=\"0.256\"}");
    assert_eq!(measured, 0, "the sample is above 256 ms");
}

/// A store that notes, at each commit, how many commands the switches'
/// queues held then.
#[derive(Debug)]
struct WatchingStore {
    switches: Vec<SwitchHandle>,
    commits: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl store::Store for WatchingStore {
    fn load(&self) -> Result<store::Snapshot, store::StoreError> {
        Ok(store::Snapshot::default())
    }

    fn commit(&mut self, _: &store::Batch) -> Result<(), store::StoreError> {
        let queued = self.switches.iter().map(SwitchHandle::queued).sum();
        self.commits.lock().unwrap().push(queued);
        Ok(())
    }
}

/// Stores into a [`WatchingStore`]: for each commit, how many messages
/// were queued for the switches when it was made.
fn watch_commits(c: &mut Control) -> Arc<std::sync::Mutex<Vec<usize>>> {
    let commits = Arc::default();
    c.persist_to(Box::new(WatchingStore {
        switches: c.switches.values().map(|s| s.handle.clone()).collect(),
        commits: Arc::clone(&commits),
    }));
    commits
}

#[test]
fn a_move_is_stored_before_any_switch_is_reprogrammed() {
    // Killed between the two, a restart must not find the old location in
    // the store and move the flows back.
    let (mut c, mut rxs, mac) = vm_on_pm1();
    let commits = watch_commits(&mut c);
    migrate_to_pm2(&mut c, mac);
    assert_eq!(*commits.lock().unwrap(), vec![0]);
    assert!(!tickets(rxs.get_mut(&2).unwrap()).is_empty());
}

#[test]
fn a_store_that_fails_stops_the_controller_before_anything_acts() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    c.persist_to(Box::new(store::FullDisk));
    migrate_to_pm2(&mut c, mac);
    for rx in rxs.values_mut() {
        assert!(batches(rx).is_empty());
    }
    assert!(c.stop.is_cancelled(), "the whole controller stops");
    assert!(c.halted());
}

#[test]
fn a_switch_that_disconnects_during_a_move_leaves_it_incomplete() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    let mut events = c.events.subscribe();
    migrate_to_pm2(&mut c, mac);
    answer_barriers(&mut c, &mut rxs, &[2], |_| 0);
    let owed_by_pm1 = tickets(rxs.get_mut(&1).unwrap());
    assert!(!owed_by_pm1.is_empty());
    answer_barriers(&mut c, &mut rxs, &[9], |_| 0);
    assert!(
        batches(rxs.get_mut(&2).unwrap()).is_empty(),
        "pm1 still owes its barrier"
    );
    c.on_switch_event(SwitchEvent::Disconnected {
        conn: ConnId(1),
        reason: CloseReason::PeerClosed,
    });
    // pm1 never confirmed: the move is not measured as one.
    assert_incomplete(&c, &mut rxs, &mut events, "abandoned");
}

#[test]
fn refusals_in_a_move_batch_leave_it_incomplete() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    let mut events = c.events.subscribe();
    migrate_to_pm2(&mut c, mac);
    answer_barriers(
        &mut c,
        &mut rxs,
        &[2, 1, 9],
        |conn| if conn == 9 { 2 } else { 0 },
    );
    assert_incomplete(&c, &mut rxs, &mut events, "refused");
}

#[test]
fn a_move_waits_for_a_switch_whose_queue_was_full_until_it_is_resynchronised() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    let mut events = c.events.subscribe();
    // pm1 is not taking batches when the RARP arrives.
    while c.switches[&ConnId(1)]
        .handle
        .try_submit(Batch::default())
        .is_ok()
    {}
    migrate_to_pm2(&mut c, mac);
    answer_barriers(&mut c, &mut rxs, &[2, 9], |_| 0);
    assert!(
        batches(rxs.get_mut(&2).unwrap()).is_empty(),
        "no flood while pm1 may still send the VM's traffic to its old port"
    );
    assert_eq!(move_events(&mut events), vec![]);
    // pm1 catches up; the periodic resync dumps its tables and sends what
    // they lack.
    let rx1 = rxs.get_mut(&1).unwrap();
    assert!(batches(rx1).iter().all(|b| b.messages.is_empty()));
    c.on_tick(Instant::now());
    assert_eq!(dumps_requested(rx1), 1);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::Tables {
            installed: Installed::default(),
        },
    });
    let resync = tickets(rxs.get_mut(&1).unwrap());
    let [ticket] = resync[..] else {
        panic!("{resync:?}")
    };
    assert!(batches(rxs.get_mut(&2).unwrap()).is_empty());
    barrier(&mut c, 1, ticket, 0);
    assert!(is_flood(&batches(rxs.get_mut(&2).unwrap())));
    assert_eq!(moves_measured(&c), 1);
    assert_eq!(move_events(&mut events), vec![(true, String::new())]);
}

#[test]
fn a_flood_whose_switch_is_gone_is_counted_as_dropped() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    migrate_to_pm2(&mut c, mac);
    // The switch that sent the RARP leaves before its own barrier; the
    // others are reprogrammed all the same (the registry places the VM
    // there).
    assert!(!tickets(rxs.get_mut(&2).unwrap()).is_empty());
    c.on_switch_event(SwitchEvent::Disconnected {
        conn: ConnId(2),
        reason: CloseReason::PeerClosed,
    });
    answer_barriers(&mut c, &mut rxs, &[1, 9], |_| 0);
    assert!(batches(rxs.get_mut(&2).unwrap()).is_empty());
    assert_eq!(
        metric(&c, "iris_packet_outs_dropped_total{why=\"switch_gone\"}"),
        1
    );
    assert_eq!(
        metric(&c, "iris_moves_incomplete_total{why=\"abandoned\"}"),
        1
    );
}

#[test]
fn a_switch_whose_queue_is_full_is_resynchronised_from_a_dump() {
    let (mut c, _) = control();
    with_ports(&mut c);
    let (h, mut rx) = SwitchHandle::detached(ConnId(1), 1);
    c.on_switch_event(SwitchEvent::Connected {
        conn: ConnId(1),
        peer: "p".into(),
        handle: h,
        certificate: None,
    });
    ready(&mut c, 1, 1);
    // The first batch fills the queue; the next change cannot be queued.
    c.put_registry_entry(
        &EntrySpec {
            key: MacKey {
                vi: ViId(1),
                vlan: crate::model::Vlan::Untagged,
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
            },
            location: Some(Location::Port {
                host: HostName("pm2".into()),
                ofport: 6,
            }),
            ips: vec![[10, 1, 1, 1].into()],
        },
        false,
    )
    .unwrap();
    let first = batches(&mut rx);
    assert_eq!(first.len(), 1);
    // The switch was marked unknown; the periodic resync asks for a dump ...
    c.on_tick(Instant::now());
    assert_eq!(dumps_requested(&mut rx), 1);
    // ... and the dump (the first batch only) is reconciled to the rest.
    let mut sim = flowsim::Switch::new();
    apply(&mut sim, &first[0]);
    let (flows, groups) = dump(&sim);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::Tables {
            installed: Installed::from_dump(&flows, &groups),
        },
    });
    let b = batches(&mut rx);
    let [rest] = &b[..] else { panic!("{b:?}") };
    apply(&mut sim, rest);
    assert_eq!(
        sim.state(),
        &compile(&c.registry, &c.topology, &HostName("pm1".into()))
    );
}

#[test]
fn refusals_in_a_batch_lead_to_a_dump() {
    let (mut c, _) = control();
    with_ports(&mut c);
    let mut rx = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    let ticket = batches(&mut rx)[0].barrier.unwrap();
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::BarrierConfirmed { ticket, errors: 2 },
    });
    assert_eq!(dumps_requested(&mut rx), 1);
    // Not again while that dump is outstanding.
    c.on_tick(Instant::now());
    assert_eq!(dumps_requested(&mut rx), 0);
}

/// pm1 programmed, then made to resynchronise by a refusal in its batch;
/// the time the dump was asked for.
fn pm1_dumping() -> (Control, mpsc::Receiver<Command>, Instant) {
    let (mut c, _) = control();
    with_ports(&mut c);
    let mut rx = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    let ticket = batches(&mut rx)[0].barrier.unwrap();
    barrier(&mut c, 1, ticket, 1);
    let asked = Instant::now();
    assert_eq!(dumps_requested(&mut rx), 1);
    (c, rx, asked)
}

#[test]
fn a_refused_dump_is_asked_for_again() {
    let (mut c, mut rx, asked) = pm1_dumping();
    // The switch refuses the flow dump; the session gives up gathering.
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::SwitchError {
            error: ofp::message::ErrorMsg::Standard {
                code: ofp::ErrorCode::BAD_MULTIPART,
                data: vec![],
            },
            request: Some(Box::new(ofp::OfpMessage::new(
                7,
                Message::MultipartRequest(ofp::multipart::MultipartRequest::new(
                    ofp::multipart::MultipartRequestBody::Flow(Default::default()),
                )),
            ))),
        },
    });
    c.on_tick(asked + RESYNC_INTERVAL / 2);
    assert_eq!(dumps_requested(&mut rx), 0, "not in a loop");
    c.on_tick(asked + RESYNC_INTERVAL);
    assert_eq!(dumps_requested(&mut rx), 1);
}

#[test]
fn a_dump_that_never_comes_back_is_asked_for_again() {
    let (mut c, mut rx, asked) = pm1_dumping();
    c.on_tick(asked + RESYNC_INTERVAL / 2);
    assert_eq!(dumps_requested(&mut rx), 0);
    c.on_tick(asked + RESYNC_INTERVAL);
    assert_eq!(dumps_requested(&mut rx), 1);
    // A switch that is programmed again stops being asked.
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::Tables {
            installed: Installed::default(),
        },
    });
    c.on_tick(asked + RESYNC_INTERVAL * 3);
    assert_eq!(dumps_requested(&mut rx), 0);
}

#[test]
fn port_status_is_visible_on_the_host() {
    use ofp::message::{port_state, PortReason, PortStatus};
    let (mut c, _) = control();
    let _rx = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    let port = |state| Port {
        port_no: 4,
        name: ofp::codec::Name::new("vm4"),
        state,
        ..Port::default()
    };
    let status = |reason, p| SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::PortStatus(PortStatus { reason, desc: p }),
    };
    let pm1 = HostName("pm1".into());
    c.on_switch_event(status(PortReason::Add, port(0)));
    assert_eq!(
        c.host(&pm1).unwrap().openflow_ports,
        vec![SwitchPort {
            port_no: 4,
            name: "vm4".into(),
            up: true
        }]
    );
    c.on_switch_event(status(PortReason::Modify, port(port_state::LINK_DOWN)));
    assert!(!c.host(&pm1).unwrap().openflow_ports[0].up);
    c.on_switch_event(status(PortReason::Delete, port(0)));
    assert!(c.host(&pm1).unwrap().openflow_ports.is_empty());
}

fn garp_in(mac: MacAddr, ip: [u8; 4], in_port: u32) -> Upcall {
    intercepted(&ArpRepr::gratuitous(mac, Ipv4Addr::from(ip)), in_port)
}

#[test]
fn a_burst_of_packet_ins_reprograms_each_switch_once() {
    let (mut c, mut rx, mut sim) = pm1_programmed();
    c.begin_burst();
    for i in 1..=5 {
        c.on_switch_event(SwitchEvent::Upcall {
            conn: ConnId(1),
            upcall: garp_in(MacAddr([0x52, 0x54, 0, 0, 0, i]), [10, 1, 0, i], 5),
        });
    }
    assert!(
        batches(&mut rx).is_empty(),
        "nothing leaves during the burst"
    );
    c.end_burst();
    let b = batches(&mut rx);
    let [delta] = &b[..] else { panic!("{b:?}") };
    assert!(delta.barrier.is_some());
    apply(&mut sim, delta);
    let want = compile(&c.registry, &c.topology, &HostName("pm1".into()));
    assert_eq!(sim.state(), &want, "all five hosts learned in one batch");
    assert_eq!(c.registry.len().0, 5);
}

#[test]
fn a_burst_reprograms_every_member_of_the_vis_it_changed_once() {
    let (mut c, _) = control();
    with_ports(&mut c);
    // VI 2 has a port on pm2 only.
    c.topology.vis.insert(ViId(2), vi(2, 1002, &[]));
    c.on_topology_event(TopologyEvent::Ports {
        host: HostName("pm2".into()),
        vm_ports: vec![
            VmPortSeen {
                name: "vm-pm2".into(),
                ofport: 6,
                vi: ViId(1),
                attached_mac: None,
            },
            VmPortSeen {
                name: "vm2-pm2".into(),
                ofport: 8,
                vi: ViId(2),
                attached_mac: None,
            },
        ],
        tunnels: vec![
            (Ipv4Addr::from([10, 0, 0, 1]), 10),
            (Ipv4Addr::from([10, 0, 0, 9]), 11),
        ],
    });
    let mut rx: Vec<_> = [(1, 1), (2, 2), (3, 9)]
        .into_iter()
        .map(|(conn, dpid)| {
            let mut rx = connect(&mut c, conn);
            ready(&mut c, conn, dpid);
            let mut sim = flowsim::Switch::new();
            apply(&mut sim, &batches(&mut rx)[0]);
            (rx, sim)
        })
        .collect();
    // Hosts learned on pm1 (VI 1: every switch) and on pm2's VI 2 port
    // (pm2 alone), in one burst.
    c.begin_burst();
    for i in 1..=3 {
        c.on_switch_event(SwitchEvent::Upcall {
            conn: ConnId(1),
            upcall: garp_in(MacAddr([0x52, 0x54, 0, 0, 1, i]), [10, 1, 0, i], 5),
        });
        c.on_switch_event(SwitchEvent::Upcall {
            conn: ConnId(2),
            upcall: garp_in(MacAddr([0x52, 0x54, 0, 0, 2, i]), [10, 2, 0, i], 8),
        });
    }
    c.end_burst();
    for ((rx, sim), host) in rx.iter_mut().zip(["pm1", "pm2", "gw"]) {
        let b = batches(rx);
        let [delta] = &b[..] else {
            panic!("{host}: {b:?}")
        };
        apply(sim, delta);
        let want = compile(&c.registry, &c.topology, &HostName(host.into()));
        assert_eq!(sim.state(), &want, "{host} holds what it should");
    }
    assert_eq!(c.registry.len().0, 6);
}

/// A burst that holds one RARP from pm1's VM port 5, taken whole.
fn rarp_burst(c: &mut Control, mac: MacAddr) {
    c.begin_burst();
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: rarp_in(mac, 5),
    });
    c.end_burst();
}

#[test]
fn a_rarp_in_a_burst_floods_after_the_bursts_barriers() {
    let (mut c, mut rx, _) = pm1_programmed();
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x42]);
    rarp_burst(&mut c, mac);
    let b = batches(&mut rx);
    let [reprogram] = &b[..] else { panic!("{b:?}") };
    let ticket = reprogram.barrier.unwrap();
    c.begin_burst();
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::BarrierConfirmed { ticket, errors: 0 },
    });
    assert!(batches(&mut rx).is_empty());
    c.end_burst();
    let b = batches(&mut rx);
    let [flood] = &b[..] else { panic!("{b:?}") };
    assert!(matches!(&flood.messages[..], [Message::PacketOut(p)] if p.in_port == 5));
}

#[test]
fn port_reports_in_a_burst_reprogram_each_switch_once() {
    let (mut c, mut rx, mut sim) = pm1_programmed();
    let report = |ports: &[(&str, u32)]| TopologyEvent::Ports {
        host: HostName("pm1".into()),
        vm_ports: ports
            .iter()
            .map(|(name, ofport)| VmPortSeen {
                name: (*name).into(),
                ofport: *ofport,
                vi: ViId(1),
                attached_mac: None,
            })
            .collect(),
        tunnels: vec![([10, 0, 0, 2].into(), 10), ([10, 0, 0, 9].into(), 11)],
    };
    c.begin_burst();
    c.on_topology_event(report(&[("vm-pm1", 5), ("vm-b", 8)]));
    c.on_topology_event(report(&[("vm-pm1", 5), ("vm-b", 8), ("vm-c", 9)]));
    assert!(batches(&mut rx).is_empty());
    c.end_burst();
    let b = batches(&mut rx);
    let [delta] = &b[..] else { panic!("{b:?}") };
    apply(&mut sim, delta);
    let want = compile(&c.registry, &c.topology, &HostName("pm1".into()));
    assert_eq!(sim.state(), &want);
}

#[test]
fn a_port_report_reprograms_only_the_switches_whose_flows_it_changes() {
    let (mut c, mut rxs, _) = vm_on_pm1();
    let pm1 = |ports: &[u32]| TopologyEvent::Ports {
        host: HostName("pm1".into()),
        vm_ports: ports
            .iter()
            .map(|p| VmPortSeen {
                name: format!("vm-{p}"),
                ofport: *p,
                vi: ViId(1),
                attached_mac: None,
            })
            .collect(),
        tunnels: vec![([10, 0, 0, 2].into(), 10), ([10, 0, 0, 9].into(), 11)],
    };
    let reprogrammed = |rxs: &mut BTreeMap<u64, mpsc::Receiver<Command>>| {
        rxs.iter_mut()
            .filter_map(|(conn, rx)| (!batches(rx).is_empty()).then_some(*conn))
            .collect::<Vec<_>>()
    };
    // A VM plugged into a VI pm1 already serves: pm2 and gw reach it by
    // their tunnel to pm1 as before.
    c.on_topology_event(pm1(&[5, 8]));
    assert_eq!(reprogrammed(&mut rxs), [1]);
    // pm1 leaves VI 1: the others' floods must stop sending to it, once
    // the port that left with the VM's MAC is no longer waited for.
    c.on_topology_event(pm1(&[]));
    assert_eq!(reprogrammed(&mut rxs), [1]);
    c.on_tick(Instant::now() + parked::DEPARTED_FOR);
    assert_eq!(reprogrammed(&mut rxs), [1, 2, 9]);
}

#[test]
fn a_burst_is_stored_in_one_commit_while_its_flows_go_out() {
    let (mut c, mut rx, _) = pm1_programmed();
    let commits = watch_commits(&mut c);
    c.begin_burst();
    for i in 1..=5 {
        c.on_switch_event(SwitchEvent::Upcall {
            conn: ConnId(1),
            upcall: garp_in(MacAddr([0x52, 0x54, 0, 0, 0, i]), [10, 1, 0, i], 5),
        });
    }
    assert!(commits.lock().unwrap().is_empty(), "nothing stored yet");
    c.end_burst();
    // One commit, made once the burst's flows were queued for the switch
    // (what it learned came from the data plane, not from the API).
    assert_eq!(*commits.lock().unwrap(), vec![1]);
    assert_eq!(batches(&mut rx).len(), 1);
}

/// A store whose commit waits (a second at most) for the connection's side
/// to take a batch off the switch's queue, and records whether it did.
struct CommitWhileSending {
    taken: std::sync::mpsc::Receiver<()>,
    during_commit: Arc<std::sync::Mutex<Vec<bool>>>,
}

impl store::Store for CommitWhileSending {
    fn load(&self) -> Result<store::Snapshot, store::StoreError> {
        Ok(store::Snapshot::default())
    }

    fn commit(&mut self, _: &store::Batch) -> Result<(), store::StoreError> {
        let taken = self.taken.recv_timeout(Duration::from_secs(1)).is_ok();
        self.during_commit.lock().unwrap().push(taken);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_connection_writes_a_bursts_flows_while_the_store_commits() {
    // One worker: the connection's task, woken by the batch, could only
    // run once the control loop let go of the worker, after the commit,
    // unless the commit hands the worker over.
    let (mut c, mut rx, _) = pm1_programmed();
    let (taken_tx, taken) = std::sync::mpsc::channel();
    let connection = tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            if matches!(cmd, Command::Submit(_)) {
                let _ = taken_tx.send(());
            }
        }
    });
    let during_commit = Arc::default();
    c.persist_to(Box::new(CommitWhileSending {
        taken,
        during_commit: Arc::clone(&during_commit),
    }));
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x42]);
    let c = tokio::spawn(async move {
        rarp_burst(&mut c, mac);
        c
    })
    .await
    .unwrap();
    assert_eq!(*during_commit.lock().unwrap(), vec![true]);
    assert_eq!(located(&c, mac), port_of("pm1", 5));
    drop(c);
    connection.await.unwrap();
}

#[test]
fn a_burst_the_store_refuses_floods_nothing_and_is_never_acknowledged() {
    let (mut c, mut rx, _) = pm1_programmed();
    let mut events = c.events.subscribe();
    c.persist_to(Box::new(store::FullDisk));
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x42]);
    rarp_burst(&mut c, mac);
    assert!(c.halted());
    // The flows left with the commit; nothing that waited for it did.
    let b = batches(&mut rx);
    let [flows] = &b[..] else { panic!("{b:?}") };
    assert!(flows
        .messages
        .iter()
        .all(|m| matches!(m, Message::FlowMod(_))));
    let ticket = flows.barrier.unwrap();
    barrier(&mut c, 1, ticket, 0);
    assert!(batches(&mut rx).is_empty(), "no flood");
    assert_eq!(c.switches[&ConnId(1)].handle.acked(), 0);
    assert!(events.try_recv().is_err(), "no registry event");
}

/// A store whose every commit waits for the test to let it go.
struct GatedStore {
    go: std::sync::mpsc::Receiver<()>,
}

impl store::Store for GatedStore {
    fn load(&self) -> Result<store::Snapshot, store::StoreError> {
        Ok(store::Snapshot::default())
    }

    fn commit(&mut self, _: &store::Batch) -> Result<(), store::StoreError> {
        self.go
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| store::StoreError::Backend {
                backend: "test",
                message: "never let go".into(),
            })
    }
}

/// The registry events waiting in `events`.
/// That the burst of RARP `mac` was acted on: its PacketIns acknowledged
/// up to `acked`, its registry event announced and its flood sent.
fn acted_on(
    c: &Control,
    events: &mut broadcast::Receiver<NorthEvent>,
    rx: &mut mpsc::Receiver<Command>,
    acked: u64,
    mac: &str,
) {
    assert_eq!(c.switches[&ConnId(1)].handle.acked(), acked);
    let seen = registry_events(events);
    assert_eq!(
        seen.iter().map(|e| e.mac.as_str()).collect::<Vec<_>>(),
        [mac]
    );
    let b = batches(rx);
    assert!(
        matches!(&b[..], [flood] if flood.messages.iter().all(|m| matches!(m, Message::PacketOut(_)))),
        "{b:?}"
    );
}

fn registry_events(events: &mut broadcast::Receiver<NorthEvent>) -> Vec<RegistryEvent> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let NorthEvent::Registry(e) = e {
            out.push(e);
        }
    }
    out
}

#[test]
fn a_burst_committed_behind_the_next_one_is_acted_on_only_once_durable() {
    let (mut c, mut rx, _) = pm1_programmed();
    let mut events = c.events.subscribe();
    let (go, gate) = std::sync::mpsc::channel();
    c.persist_to(Box::new(GatedStore { go: gate }));
    c.overlap_commits = true;
    let (first, second) = (
        MacAddr([0x52, 0x54, 0, 0, 0, 0x42]),
        MacAddr([0x52, 0x54, 0, 0, 0, 0x43]),
    );
    rarp_burst(&mut c, first);
    // Its flows left; its commit waits at the gate, and so does the rest.
    let b = batches(&mut rx);
    let [flows] = &b[..] else { panic!("{b:?}") };
    barrier(&mut c, 1, flows.barrier.unwrap(), 0);
    assert!(batches(&mut rx).is_empty(), "no flood before the commit");
    assert_eq!(c.switches[&ConnId(1)].handle.acked(), 0);
    assert!(registry_events(&mut events).is_empty());
    // The next burst is compiled and sent while the first commits, and
    // waits behind it without holding up the loop: nothing of either goes
    // out before its commit.
    rarp_burst(&mut c, second);
    let b = batches(&mut rx);
    let [flows] = &b[..] else { panic!("{b:?}") };
    assert!(flows
        .messages
        .iter()
        .all(|m| matches!(m, Message::FlowMod(_))));
    barrier(&mut c, 1, flows.barrier.unwrap(), 0);
    assert!(batches(&mut rx).is_empty(), "no flood before the commits");
    assert_eq!(c.switches[&ConnId(1)].handle.acked(), 0);
    assert!(registry_events(&mut events).is_empty());
    // The first commit returns: what waited for it goes out, and the
    // second burst's commit starts.
    go.send(()).unwrap();
    let start = Instant::now();
    while c.switches[&ConnId(1)].handle.acked() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the first commit never settled"
        );
        std::thread::sleep(Duration::from_millis(5));
        c.settle_commit(false);
    }
    // The first only.
    acted_on(&c, &mut events, &mut rx, 1, &first.to_string());
    go.send(()).unwrap();
    c.settle_commit(true);
    acted_on(&c, &mut events, &mut rx, 2, &second.to_string());
}

/// Bursts that end while a commit is under way are committed together
/// once it returns, as one batch, and each is then acted on in order.
#[test]
fn bursts_that_end_during_a_commit_are_committed_together() {
    let (mut c, mut rx, _) = pm1_programmed();
    let mut events = c.events.subscribe();
    let (go, gate) = std::sync::mpsc::channel();
    let (seen_tx, seen) = std::sync::mpsc::channel();
    c.persist_to(Box::new(CountingGate {
        go: gate,
        seen: seen_tx,
    }));
    c.overlap_commits = true;
    let macs: Vec<MacAddr> = (0x50..0x54)
        .map(|i| MacAddr([0x52, 0x54, 0, 0, 0, i]))
        .collect();
    for m in &macs {
        rarp_burst(&mut c, *m);
        let b = batches(&mut rx);
        let [flows] = &b[..] else { panic!("{b:?}") };
        barrier(&mut c, 1, flows.barrier.unwrap(), 0);
    }
    go.send(()).unwrap();
    go.send(()).unwrap();
    c.settle_commit(true);
    let commits: Vec<usize> = seen.try_iter().collect();
    assert_eq!(
        commits.len(),
        2,
        "the first burst alone, then the three after it: {commits:?}"
    );
    assert!(commits[1] > commits[0], "{commits:?}");
    assert_eq!(c.switches[&ConnId(1)].handle.acked(), 4);
    let announced = registry_events(&mut events);
    assert_eq!(
        announced.iter().map(|e| e.mac.clone()).collect::<Vec<_>>(),
        macs.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    // Each burst's flood, in the order of the bursts.
    let floods = batches(&mut rx);
    let flooded: Vec<u8> = floods
        .iter()
        .flat_map(|b| &b.messages)
        .filter_map(|m| match m {
            Message::PacketOut(p) => p.data.get(11).copied(),
            _ => None,
        })
        .collect();
    assert_eq!(flooded, [0x50, 0x51, 0x52, 0x53], "{floods:?}");
}

/// A store whose every commit waits for the test to let it go, and says
/// how many writes each had.
struct CountingGate {
    go: std::sync::mpsc::Receiver<()>,
    seen: std::sync::mpsc::Sender<usize>,
}

impl store::Store for CountingGate {
    fn load(&self) -> Result<store::Snapshot, store::StoreError> {
        Ok(store::Snapshot::default())
    }

    fn commit(&mut self, batch: &store::Batch) -> Result<(), store::StoreError> {
        let _ = self.seen.send(batch.len());
        self.go
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| store::StoreError::Backend {
                backend: "test",
                message: "never let go".into(),
            })
    }
}

/// The store's tidying (the sled journal's fold, 100 ms or more) runs
/// after the commit's answer: what waited for the commit goes out while
/// it runs.
#[test]
fn what_waits_for_a_commit_goes_out_before_the_store_tidies() {
    let (mut c, mut rx, _) = pm1_programmed();
    let mut events = c.events.subscribe();
    let (go, gate) = std::sync::mpsc::channel();
    let (tidying_tx, tidying) = std::sync::mpsc::channel();
    let waited_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    c.persist_to(Box::new(SlowTidy {
        go: gate,
        tidying: tidying_tx,
        waited_out: waited_out.clone(),
    }));
    c.overlap_commits = true;
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x61]);
    rarp_burst(&mut c, mac);
    let b = batches(&mut rx);
    let [flows] = &b[..] else { panic!("{b:?}") };
    barrier(&mut c, 1, flows.barrier.unwrap(), 0);
    c.settle_commit(true);
    tidying
        .recv_timeout(Duration::from_secs(10))
        .expect("the store tidies after the commit");
    // Tidying is still held here, and the burst was acted on.
    acted_on(&c, &mut events, &mut rx, 1, &mac.to_string());
    go.send(()).unwrap();
    // Tidying before the answer would have held the loop until it gave
    // up waiting for the test.
    c.settle_commit(true);
    assert!(!waited_out.load(std::sync::atomic::Ordering::SeqCst));
}

/// A store that commits at once and whose tidying waits for the test.
struct SlowTidy {
    go: std::sync::mpsc::Receiver<()>,
    tidying: std::sync::mpsc::Sender<()>,
    /// Set when the test never let the tidying go.
    waited_out: Arc<std::sync::atomic::AtomicBool>,
}

impl store::Store for SlowTidy {
    fn load(&self) -> Result<store::Snapshot, store::StoreError> {
        Ok(store::Snapshot::default())
    }

    fn commit(&mut self, _: &store::Batch) -> Result<(), store::StoreError> {
        Ok(())
    }

    fn tidy(&mut self) -> Result<bool, store::StoreError> {
        let _ = self.tidying.send(());
        if self.go.recv_timeout(Duration::from_secs(5)).is_err() {
            self.waited_out
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(false)
    }
}

#[test]
fn a_burst_whose_commit_behind_fails_is_never_acted_on() {
    let (mut c, mut rx, _) = pm1_programmed();
    let mut events = c.events.subscribe();
    c.persist_to(Box::new(store::FullDisk));
    c.overlap_commits = true;
    rarp_burst(&mut c, MacAddr([0x52, 0x54, 0, 0, 0, 0x42]));
    let b = batches(&mut rx);
    let [flows] = &b[..] else { panic!("{b:?}") };
    c.settle_commit(true);
    assert!(c.halted() && c.stop.is_cancelled());
    barrier(&mut c, 1, flows.barrier.unwrap(), 0);
    assert!(batches(&mut rx).is_empty(), "no flood");
    assert_eq!(c.switches[&ConnId(1)].handle.acked(), 0);
    assert!(registry_events(&mut events).is_empty());
}

/// A RARP that table 0 sent up from `in_port` (a port with no
/// classification flow yet).
fn unclassified_rarp(mac: MacAddr, in_port: u32, received: Instant) -> Upcall {
    unclassified(&ArpRepr::rarp_announce(mac), in_port, received)
}

/// `frame` sent up by table 0 from `in_port` (a port with no
/// classification flow yet).
fn unclassified(frame: &ArpRepr, in_port: u32, received: Instant) -> Upcall {
    let Upcall::PacketIn { mut packet_in, .. } = intercepted_at(frame, in_port, received) else {
        unreachable!()
    };
    packet_in.table_id = crate::compiler::TABLE_CLASSIFY;
    Upcall::PacketIn {
        packet_in,
        received,
    }
}

/// pm2 reports its VM ports: the one of [`with_ports`] and `extra`.
fn pm2_reports(c: &mut Control, extra: &[u32]) {
    let ip = |h: u8| Ipv4Addr::from([10, 0, 0, h]);
    let mut vm_ports = vec![VmPortSeen {
        name: "vm-pm2".into(),
        ofport: 6,
        vi: ViId(1),
        attached_mac: None,
    }];
    vm_ports.extend(extra.iter().map(|&p| VmPortSeen {
        name: format!("new-{p}"),
        ofport: p,
        vi: ViId(1),
        attached_mac: None,
    }));
    c.on_topology_event(TopologyEvent::Ports {
        host: HostName("pm2".into()),
        vm_ports,
        tunnels: vec![(ip(1), 10), (ip(9), 11)],
    });
}

#[test]
fn a_rarp_from_a_port_not_yet_reported_waits_for_the_report() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    let arrived = Instant::now() - Duration::from_millis(30);
    // The guest resumes on pm2's new port 8 before OVSDB reports it.
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: unclassified_rarp(mac, 8, arrived),
    });
    assert_eq!(located(&c, mac), port_of("pm1", 5), "held, not handled");
    assert_eq!(c.held_rarps.len(), 1);
    // A report of another host, or of pm2 without the port, releases nothing.
    pm2_reports(&mut c, &[9]);
    assert_eq!(c.held_rarps.len(), 1);
    pm2_reports(&mut c, &[8, 9]);
    assert_eq!(c.held_rarps.len(), 0);
    assert_eq!(located(&c, mac), port_of("pm2", 8));
    let mut events = c.events.subscribe();
    answer_barriers(&mut c, &mut rxs, &[2, 1, 9], |_| 0);
    assert_eq!(moves_measured(&c), 1);
    let mut latency = None;
    while let Ok(e) = events.try_recv() {
        if let NorthEvent::Move { latency_ms, .. } = e {
            latency = Some(latency_ms);
        }
    }
    assert!(
        latency.is_some_and(|ms| ms >= 30.0),
        "the wait counts: {latency:?}"
    );
    assert_eq!(metric(&c, "iris_packet_ins_total{reason=\"rarp\"}"), 2);
}

#[test]
fn a_held_rarp_is_given_up_and_tunnels_are_never_held() {
    let (mut c, _rxs, mac) = vm_on_pm1();
    let arrived = Instant::now();
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: unclassified_rarp(mac, 8, arrived),
    });
    // Port 10 is pm2's tunnel to pm1: a RARP with a key no VI owns.
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: unclassified_rarp(mac, 10, arrived),
    });
    assert_eq!(c.held_rarps.len(), 1);
    c.on_tick(arrived + Duration::from_millis(500));
    assert_eq!(c.held_rarps.len(), 1, "not yet");
    c.on_tick(arrived + held_rarps::HOLD_FOR);
    assert_eq!(c.held_rarps.len(), 0);
    assert_eq!(
        metric(&c, "iris_packet_ins_total{reason=\"rarp_given_up\"}"),
        1
    );
    // Reported later, the port finds nothing waiting: the MAC stays.
    pm2_reports(&mut c, &[8]);
    assert_eq!(located(&c, mac), port_of("pm1", 5));
}

#[test]
fn a_garp_from_a_port_not_yet_reported_moves_the_mac_once_reported() {
    // A guest with virtio-net's announce feature resumes on pm2's new
    // port 8 and sends a GARP before OVSDB reports the port.
    let (mut c, mut rxs, mac) = vm_on_pm1();
    let ip = Ipv4Addr::new(10, 1, 0, 42);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: unclassified(&ArpRepr::gratuitous(mac, ip), 8, Instant::now()),
    });
    assert_eq!(located(&c, mac), port_of("pm1", 5), "held, not handled");
    assert_eq!(c.held_rarps.len(), 1);
    pm2_reports(&mut c, &[8]);
    assert_eq!(c.held_rarps.len(), 0);
    assert_eq!(located(&c, mac), port_of("pm2", 8));
    let bound = c.registry.ip(&crate::model::IpKey {
        vi: ViId(1),
        vlan: crate::model::Vlan::Untagged,
        ip,
    });
    assert_eq!(bound.map(|e| e.mac), Some(mac));
    assert_eq!(metric(&c, "iris_packet_ins_total{reason=\"garp\"}"), 1);
    // The GARP stopped in table 0: once every switch confirms its flows,
    // the controller floods it in the VI as if it came in on port 8.
    answer_barriers(&mut c, &mut rxs, &[2, 1, 9], |_| 0);
    let floods = batches(rxs.get_mut(&2).unwrap());
    assert!(
        matches!(&floods[..], [b] if matches!(&b.messages[..],
            [Message::PacketOut(p)] if p.in_port == 8 && p.data[12..14] == [8, 6])),
        "{floods:?}"
    );
}

/// Whether `m` adds or changes a flow for frames to or from `mac`.
fn is_flow_of(m: &Message, mac: MacAddr) -> bool {
    let Message::FlowMod(f) = m else {
        return false;
    };
    [ofp::oxm::FieldId::ETH_DST, ofp::oxm::FieldId::ETH_SRC]
        .into_iter()
        .any(|id| {
            matches!(f.match_.get(id),
                Some(ofp::oxm::OxmField::EthDst(a, _) | ofp::oxm::OxmField::EthSrc(a, _)) if *a == mac.0)
        })
}

/// pm2 reports its VM ports (port 8 of VI 1 when `with_port_8`, else
/// none), taken in a burst as the control loop does.
fn pm2_reports_in_a_burst(c: &mut Control, with_port_8: bool) {
    let vm_ports = if with_port_8 {
        vec![VmPortSeen {
            name: "vm-moved".into(),
            ofport: 8,
            vi: ViId(1),
            attached_mac: None,
        }]
    } else {
        Vec::new()
    };
    c.begin_burst();
    c.on_topology_event(TopologyEvent::Ports {
        host: HostName("pm2".into()),
        vm_ports,
        tunnels: vec![([10, 0, 0, 1].into(), 10), ([10, 0, 0, 9].into(), 11)],
    });
    c.end_burst();
}

#[test]
fn a_move_a_port_report_releases_reaches_its_destination_first_then_the_others_before_their_reprogramming(
) {
    // pm2 serves no VI: the VM that migrates there is the first of VI 1,
    // so the report of its port reprograms pm1 and gw (their floods now
    // reach pm2) and pm2 whole. The guest's RARP came first and is held.
    let (mut c, mut rxs, mac) = vm_on_pm1();
    pm2_reports_in_a_burst(&mut c, false);
    answer_barriers(&mut c, &mut rxs, &[1, 2, 9], |_| 0);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: unclassified_rarp(mac, 8, Instant::now()),
    });
    pm2_reports_in_a_burst(&mut c, true);
    assert_eq!(located(&c, mac), port_of("pm2", 8));
    // pm2 alone first: the moved MAC's flows, then the VI's pipeline and
    // its new port.
    let to_pm2 = batches(rxs.get_mut(&2).unwrap());
    let [moved, report] = &to_pm2[..] else {
        panic!("{to_pm2:?}")
    };
    assert!(moved.messages.iter().all(|m| is_flow_of(m, mac)));
    assert!(report
        .messages
        .iter()
        .any(|m| matches!(m, Message::GroupMod(_))));
    for conn in [1, 9] {
        assert!(
            batches(rxs.get_mut(&conn).unwrap()).is_empty(),
            "conn{conn}"
        );
    }
    barrier(&mut c, 2, moved.barrier.unwrap(), 0);
    for conn in [1, 9] {
        assert!(
            batches(rxs.get_mut(&conn).unwrap()).is_empty(),
            "conn{conn}"
        );
    }
    barrier(&mut c, 2, report.barrier.unwrap(), 0);
    let mut owed = Vec::new();
    for conn in [1, 9] {
        let b = batches(rxs.get_mut(&conn).unwrap());
        owed.extend(b.iter().filter_map(|b| Some((conn, b.barrier?))));
        // First the moved MAC's flows alone, confirmed by their own
        // barrier; then the report's reprogramming (the floods' groups).
        let [moved, report] = &b[..] else {
            panic!("conn{conn}: {b:?}")
        };
        assert!(moved.barrier.is_some());
        assert!(
            !moved.messages.is_empty() && moved.messages.iter().all(|m| is_flow_of(m, mac)),
            "conn{conn}: {moved:?}"
        );
        assert!(
            report
                .messages
                .iter()
                .any(|m| matches!(m, Message::GroupMod(_))),
            "conn{conn}: {report:?}"
        );
        assert!(!report.messages.iter().any(|m| is_flow_of(m, mac)));
    }
    // The RARP's flood waits for all of them.
    for (conn, ticket) in owed {
        assert!(batches(rxs.get_mut(&2).unwrap()).is_empty());
        barrier(&mut c, conn, ticket, 0);
    }
    let floods = batches(rxs.get_mut(&2).unwrap());
    assert!(
        matches!(&floods[..], [b] if matches!(&b.messages[..],
            [Message::PacketOut(p)] if p.in_port == 8)),
        "{floods:?}"
    );
}

#[test]
fn the_others_follow_a_move_only_once_its_destination_confirmed_what_it_was_sent_before() {
    // The order in which a move lost a ping: the report of the guest's new
    // port brings VI 1's pipeline to pm2, and the guest's GARP, classified
    // by then, moves it there before pm2 has confirmed that pipeline. A
    // frame pm1 sent it at once could reach pm2 ahead of the pipeline.
    let (mut c, mut rxs, mac) = vm_on_pm1();
    pm2_reports_in_a_burst(&mut c, false);
    answer_barriers(&mut c, &mut rxs, &[1, 2, 9], |_| 0);
    pm2_reports_in_a_burst(&mut c, true);
    let pipeline = tickets(rxs.get_mut(&2).unwrap());
    assert!(!pipeline.is_empty());
    answer_barriers(&mut c, &mut rxs, &[1, 9], |_| 0);
    c.begin_burst();
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: garp_in(mac, [10, 1, 0, 42], 8),
    });
    c.end_burst();
    assert_eq!(located(&c, mac), port_of("pm2", 8));
    let moved = tickets(rxs.get_mut(&2).unwrap());
    assert!(!moved.is_empty());
    for t in moved {
        barrier(&mut c, 2, t, 0);
    }
    for conn in [1, 9] {
        assert!(
            batches(rxs.get_mut(&conn).unwrap()).is_empty(),
            "conn{conn} before pm2 confirmed its pipeline"
        );
    }
    for t in pipeline {
        barrier(&mut c, 2, t, 0);
    }
    for conn in [1, 9] {
        let b = batches(rxs.get_mut(&conn).unwrap());
        assert!(
            b.iter()
                .flat_map(|b| &b.messages)
                .any(|m| is_flow_of(m, mac)),
            "conn{conn}: {b:?}"
        );
    }
}

#[test]
fn the_others_wait_only_for_the_destinations_pipeline() {
    // A switch delivers a frame that came by tunnel for a MAC it does not
    // know yet to the VI's local ports, in a VI with a gateway too: the
    // moved MAC's own flow need not be in first, the pipeline that
    // classifies its port and floods to it must.
    for gateways in [&["gw"][..], &[]] {
        the_others_wait_only_for_the_destinations_pipeline_in(vi(1, 1001, gateways));
    }
}

fn the_others_wait_only_for_the_destinations_pipeline_in(vi: Vi) {
    let (mut c, mut rxs, mac) = vm_on_pm1_in(vec![vi]);
    // pm2 already serves the VI on port 6: the move (taken in a burst, as
    // the control loop takes PacketIns) sends every switch its flows at
    // once.
    c.begin_burst();
    migrate_to_pm2(&mut c, mac);
    c.end_burst();
    for conn in [1, 2, 9] {
        assert!(
            !tickets(rxs.get_mut(&conn).unwrap()).is_empty(),
            "conn{conn}"
        );
    }
    answer_barriers(&mut c, &mut rxs, &[1, 2, 9], |_| 0);
    // The guest returns to pm1 on a new port 12: its report compiles pm1
    // whole, and the others wait for that batch.
    c.begin_burst();
    c.on_topology_event(pm1_with_port(12));
    c.end_burst();
    let pipeline = tickets(rxs.get_mut(&1).unwrap());
    assert!(!pipeline.is_empty());
    c.begin_burst();
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: rarp_in(mac, 12),
    });
    c.end_burst();
    assert_eq!(located(&c, mac), port_of("pm1", 12));
    for conn in [2, 9] {
        assert!(
            batches(rxs.get_mut(&conn).unwrap()).is_empty(),
            "conn{conn}"
        );
    }
    let moved = tickets(rxs.get_mut(&1).unwrap());
    assert!(!moved.is_empty());
    for t in pipeline {
        barrier(&mut c, 1, t, 0);
    }
    // Not waiting for the MAC's own flows on pm1.
    for conn in [2, 9] {
        assert!(
            !tickets(rxs.get_mut(&conn).unwrap()).is_empty(),
            "conn{conn}"
        );
    }
}

/// Two guests cross in one burst: a (of [`vm_on_pm1`]) leaves pm1 for
/// pm2 while b leaves pm2 for pm1, on `b_port`, a port pm1 reports in the
/// same burst unless it is 5 (a's). Each host is where one arrives and a
/// sender to the other.
fn guests_crossing(
    b_port: u32,
) -> (
    Control,
    BTreeMap<u64, mpsc::Receiver<Command>>,
    MacAddr,
    MacAddr,
) {
    let (mut c, mut rxs, a) = vm_on_pm1();
    let b = MacAddr([0x52, 0x54, 0, 0, 0, 0x43]);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: rarp_in(b, 6),
    });
    answer_barriers(&mut c, &mut rxs, &[1, 2, 9], |_| 0);
    batches(rxs.get_mut(&2).unwrap());
    c.begin_burst();
    migrate_to_pm2(&mut c, a);
    if b_port != 5 {
        c.on_topology_event(pm1_with_port(b_port));
    }
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: rarp_in(b, b_port),
    });
    c.end_burst();
    assert_eq!(located(&c, a), port_of("pm2", 6));
    assert_eq!(located(&c, b), port_of("pm1", b_port));
    (c, rxs, a, b)
}

/// How many of `sent`'s messages are flows of `mac`.
fn flows_of(sent: &[Batch], mac: MacAddr) -> usize {
    sent.iter()
        .flat_map(|b| &b.messages)
        .filter(|m| is_flow_of(m, mac))
        .count()
}

/// Confirms every batch of `sent`, by connection.
fn confirm(c: &mut Control, sent: &BTreeMap<u64, Vec<Batch>>) {
    for (conn, batches) in sent {
        for t in batches.iter().filter_map(|b| b.barrier) {
            barrier(c, *conn, t, 0);
        }
    }
}

#[test]
fn guests_that_cross_on_ports_already_served_learn_their_arrival_before_the_others_move() {
    // Nothing is compiled whole, so nothing is waited for (a frame for a
    // MAC a switch does not know yet is delivered to the VI's local
    // ports): each destination gets its own arrival in a batch ahead of
    // the one with the other guest's move, and the gateway both at once.
    let (_c, mut rxs, a, b) = guests_crossing(5);
    for (conn, arrived, left) in [(1, b, a), (2, a, b)] {
        let sent = batches(rxs.get_mut(&conn).unwrap());
        let first_with = |mac| {
            sent.iter()
                .position(|b| flows_of(std::slice::from_ref(b), mac) > 0)
        };
        let (arrival, departure) = (first_with(arrived), first_with(left));
        assert!(
            arrival.is_some() && departure.is_some() && arrival < departure,
            "conn{conn}: {sent:?}"
        );
    }
    let gw = batches(rxs.get_mut(&9).unwrap());
    assert!(flows_of(&gw, a) > 0 && flows_of(&gw, b) > 0, "{gw:?}");
}

#[test]
fn a_destination_compiled_whole_in_the_first_round_keeps_where_the_other_guest_was() {
    let (mut c, mut rxs, a, b) = guests_crossing(12);
    let first: BTreeMap<u64, Vec<Batch>> = [1, 2]
        .into_iter()
        .map(|conn| (conn, batches(rxs.get_mut(&conn).unwrap())))
        .collect();
    assert!(flows_of(&first[&1], b) > 0, "{first:?}");
    assert_eq!(flows_of(&first[&1], a), 0, "{first:?}");
    confirm(&mut c, &first);
    let second = BTreeMap::from([(1, batches(rxs.get_mut(&1).unwrap()))]);
    assert!(flows_of(&second[&1], a) > 0, "{second:?}");
    // What the control loop thinks pm1 holds is what it compiles for it.
    confirm(&mut c, &second);
    c.program_all();
    assert!(batches(rxs.get_mut(&1).unwrap()).is_empty());
}

#[test]
fn a_move_through_the_api_reaches_its_destination_first() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    let spec = EntrySpec {
        key: MacKey {
            vi: ViId(1),
            vlan: crate::model::Vlan::Untagged,
            mac,
        },
        location: port_of("pm2", 6),
        ips: vec![],
    };
    c.put_registry_entry(&spec, false).unwrap();
    assert_eq!(located(&c, mac), port_of("pm2", 6));
    let first = tickets(rxs.get_mut(&2).unwrap());
    assert!(!first.is_empty());
    for conn in [1, 9] {
        assert!(
            batches(rxs.get_mut(&conn).unwrap()).is_empty(),
            "conn{conn}"
        );
    }
    for t in first {
        barrier(&mut c, 2, t, 0);
    }
    for conn in [1, 9] {
        assert!(
            !tickets(rxs.get_mut(&conn).unwrap()).is_empty(),
            "conn{conn}"
        );
    }
}

#[test]
fn other_arp_from_a_port_not_yet_reported_is_not_held() {
    let (mut c, _rxs, mac) = vm_on_pm1();
    let arrived = Instant::now();
    let request = ArpRepr::request(mac, Ipv4Addr::new(10, 1, 0, 42), Ipv4Addr::new(10, 1, 0, 1));
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: unclassified(&request, 8, arrived),
    });
    assert_eq!(c.held_rarps.len(), 0);
    assert_eq!(
        metric(&c, "iris_packet_ins_total{reason=\"not_from_vm_port\"}"),
        1
    );
    // A GARP that waits in vain is given up and counted as one.
    let garp = ArpRepr::gratuitous(mac, Ipv4Addr::new(10, 1, 0, 42));
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: unclassified(&garp, 8, arrived),
    });
    assert_eq!(c.held_rarps.len(), 1);
    c.on_tick(arrived + held_rarps::HOLD_FOR);
    assert_eq!(
        metric(&c, "iris_packet_ins_total{reason=\"garp_given_up\"}"),
        1
    );
    pm2_reports(&mut c, &[8]);
    assert_eq!(located(&c, mac), port_of("pm1", 5));
}

/// Where the registry places `mac` (untagged, VI 1).
/// `host`'s report of [`report_of`] with VM ports `nics` of VI 1 carrying
/// `mac` as `attached-mac` (added where the report has no such port), and
/// none at all when `nics` is `None`.
fn report_with_nics(host: &str, nics: Option<&[u32]>, mac: MacAddr) -> TopologyEvent {
    let TopologyEvent::Ports {
        host,
        mut vm_ports,
        tunnels,
    } = report_of(host)
    else {
        unreachable!()
    };
    match nics {
        None => vm_ports.clear(),
        Some(nics) => {
            for &ofport in nics {
                if !vm_ports.iter().any(|p| p.ofport == ofport) {
                    vm_ports.push(VmPortSeen {
                        name: format!("vm-{host}-{ofport}"),
                        ofport,
                        vi: ViId(1),
                        attached_mac: None,
                    });
                }
                for p in vm_ports.iter_mut().filter(|p| p.ofport == ofport) {
                    p.attached_mac = Some(mac);
                }
            }
        }
    }
    TopologyEvent::Ports {
        host,
        vm_ports,
        tunnels,
    }
}

/// A guest's port leaves while another port of its VI carries its NIC
/// (`attached-mac`), made first as a migration makes it: the MAC follows
/// the NIC there at once, with no announcement (the destination's switch
/// may not have passed it up). With no such port, or with two, it stays
/// on the port that left until the guest announces itself.
#[test]
fn a_mac_follows_its_nic_when_its_port_leaves_after_the_destinations_came() {
    for nics in [&[][..], &[6], &[6, 8]] {
        let (mut c, _rxs, mac) = vm_on_pm1();
        c.on_topology_event(report_with_nics("pm2", Some(nics), mac));
        assert_eq!(located(&c, mac), port_of("pm1", 5), "{nics:?}");
        c.on_topology_event(report_with_nics("pm1", None, mac));
        let expected = match nics {
            [one] => port_of("pm2", *one),
            _ => port_of("pm1", 5),
        };
        assert_eq!(located(&c, mac), expected, "{nics:?}");
    }
    // A standby leaves it to the leader (and records no refused write).
    let (mut c, _rxs, mac) = vm_on_pm1();
    c.stand_by(7);
    c.on_topology_event(report_with_nics("pm2", Some(&[6]), mac));
    c.on_topology_event(report_with_nics("pm1", None, mac));
    assert_eq!(located(&c, mac), port_of("pm1", 5));
    assert!(c.take_refusal().is_none());
    // The NIC's port made after the guest's left (a re-plug): the MAC
    // waits for the announcement.
    let (mut c, _rxs, mac) = vm_on_pm1();
    c.on_topology_event(report_with_nics("pm1", None, mac));
    c.on_topology_event(report_with_nics("pm2", Some(&[6]), mac));
    assert_eq!(located(&c, mac), port_of("pm1", 5));
    migrate_to_pm2(&mut c, mac);
    assert_eq!(located(&c, mac), port_of("pm2", 6));
}

fn located(c: &Control, mac: MacAddr) -> Option<Location> {
    let key = MacKey {
        vi: ViId(1),
        vlan: crate::model::Vlan::Untagged,
        mac,
    };
    c.registry.mac(&key).and_then(|e| e.location.clone())
}

fn port_of(host: &str, ofport: u32) -> Option<Location> {
    Some(Location::Port {
        host: HostName(host.into()),
        ofport,
    })
}

/// The ARP reply frame the published snapshot gives for `request` from
/// connection 1's `in_port`, if it answers.
fn snapshot_answer(c: &Control, request: &ArpRepr, in_port: u32) -> Option<Vec<u8>> {
    let snapshot = c.answers.current();
    let Upcall::PacketIn { packet_in, .. } = intercepted(request, in_port) else {
        unreachable!()
    };
    let packet_in = PacketIn {
        table_id: crate::compiler::TABLE_ARP,
        ..packet_in
    };
    let wire = ofp::message::OfpMessage::new(1, Message::PacketIn(packet_in)).to_bytes();
    let view = ofp::message::PacketInView::new_checked(&wire).unwrap();
    let mut reply = Vec::new();
    snapshot?.answer(ConnId(1), &view, &mut reply)?;
    Some(reply)
}

#[test]
fn the_arp_snapshot_is_withdrawn_by_every_change_and_republished_once_quiet() {
    let (mut c, _rxs, mac) = vm_on_pm1();
    let ip = |i: u8| Ipv4Addr::new(10, 1, 0, i);
    let key = |mac| MacKey {
        vi: ViId(1),
        vlan: crate::model::Vlan::Untagged,
        mac,
    };
    let other = MacAddr([0x52, 0x54, 0, 0, 0, 0x43]);
    let request = ArpRepr::request(mac, ip(1), ip(2));
    let spec = |m, ips| EntrySpec {
        key: key(m),
        location: None,
        ips,
    };
    c.put_registry_entry(
        &EntrySpec {
            location: Some(Location::Port {
                host: HostName("pm1".into()),
                ofport: 5,
            }),
            ..spec(mac, vec![ip(1)])
        },
        false,
    )
    .unwrap();
    c.put_registry_entry(&spec(other, vec![ip(2)]), false)
        .unwrap();
    let start = Instant::now();
    c.refresh_answers(start);
    assert_eq!(snapshot_answer(&c, &request, 5), None, "not quiet yet");
    let later = start + ANSWERS_QUIET * 2;
    c.refresh_answers(later);
    let reply = snapshot_answer(&c, &request, 5).expect("answered");
    assert_eq!(ArpRepr::parse_frame(&reply).unwrap().sha, other);

    // Rebinding the IP withdraws the snapshot before the call returns.
    let third = MacAddr([0x52, 0x54, 0, 0, 0, 0x44]);
    c.put_registry_entry(&spec(third, vec![ip(2)]), true)
        .unwrap();
    assert_eq!(snapshot_answer(&c, &request, 5), None);
    c.refresh_answers(Instant::now() + ANSWERS_QUIET * 2);
    let reply = snapshot_answer(&c, &request, 5).expect("answered");
    assert_eq!(ArpRepr::parse_frame(&reply).unwrap().sha, third);

    // So does a change of ports.
    c.on_topology_event(TopologyEvent::Ports {
        host: HostName("pm1".into()),
        vm_ports: vec![],
        tunnels: vec![],
    });
    assert_eq!(snapshot_answer(&c, &request, 5), None);
    c.refresh_answers(Instant::now() + ANSWERS_QUIET * 2);
    assert_eq!(snapshot_answer(&c, &request, 5), None, "no VM port 5 now");
}

#[test]
fn packet_ins_are_acknowledged_once_their_burst_is_committed() {
    let (mut c, _rxs, mac) = vm_on_pm1();
    let acked = |c: &Control| c.switches[&ConnId(1)].handle.acked();
    // Outside a burst (vm_on_pm1 sent one RARP), at once.
    assert_eq!(acked(&c), 1);
    let commits = watch_commits(&mut c);
    c.begin_burst();
    let moved = ArpRepr::gratuitous(mac, Ipv4Addr::new(10, 1, 0, 9));
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: intercepted(&moved, 5),
    });
    assert_eq!(acked(&c), 1, "not before the burst is stored");
    assert!(commits.lock().unwrap().is_empty());
    c.end_burst();
    assert_eq!(commits.lock().unwrap().len(), 1);
    assert_eq!(acked(&c), 2);
}

/// Each committed batch's keys in order, each with whether it was written
/// (`false`: deleted).
type CommittedKeys = Vec<Vec<(String, bool)>>;

/// A store that keeps the keys of every batch committed to it.
#[derive(Debug, Default)]
struct KeyStore(Arc<std::sync::Mutex<CommittedKeys>>);

impl store::Store for KeyStore {
    fn load(&self) -> Result<store::Snapshot, store::StoreError> {
        Ok(store::Snapshot::default())
    }

    fn commit(&mut self, batch: &store::Batch) -> Result<(), store::StoreError> {
        let keys = batch.ops().map(|(k, v)| (k.to_owned(), v.is_some()));
        self.0.lock().unwrap().push(keys.collect());
        Ok(())
    }
}

#[test]
fn a_deleted_vi_is_stored_gone_after_its_entries() {
    // A large VI's commit may be stored in pieces: one cut short must leave
    // the VI with part of its entries, never entries of a VI that is gone.
    let (mut c, _rxs, _) = vm_on_pm1();
    let commits = Arc::default();
    c.persist_to(Box::new(KeyStore(Arc::clone(&commits))));
    c.delete_vi(ViId(1)).unwrap();
    let commits = commits.lock().unwrap();
    let [keys] = commits.as_slice() else {
        panic!("one commit, not {commits:?}")
    };
    let (last, rest) = keys.split_last().unwrap();
    assert_eq!(last, &("v1/vi/1".to_owned(), false));
    assert!(
        !rest.is_empty()
            && rest
                .iter()
                .all(|(k, put)| k.starts_with("v1/mac/1/") && !put)
    );
}

/// pm1's switch programmed by one controller, and a second controller (a
/// restart) that has pm1's ports and OVSDB and compiled pm1's tables ahead
/// of its switch.
fn restarted_with_pm1_prepared() -> (Control, flowsim::Switch) {
    let (_, _rx, sim) = pm1_programmed();
    let (mut c, _) = control();
    c.on_topology_event(TopologyEvent::Ovsdb {
        host: HostName("pm1".into()),
        connected: true,
    });
    with_ports(&mut c);
    c.prepare_next(Instant::now());
    assert!(c.prepared.contains_key(&HostName("pm1".into())));
    (c, sim)
}

/// The switch reconnects to `c` with what `sim` holds; what it is sent.
fn reconnect_pm1(c: &mut Control, sim: &flowsim::Switch) -> Vec<Batch> {
    let (flows, groups) = dump(sim);
    let mut rx = connect(c, 7);
    ready_with(c, 7, 1, flows, groups);
    batches(&mut rx)
}

/// pm1's switch, holding what `sim` holds, reconnects after something
/// changed since its tables were compiled ahead: it gets what changed, as
/// compiled now.
fn reconnects_to_what_changed(c: &mut Control, mut sim: flowsim::Switch) {
    let b = reconnect_pm1(c, &sim);
    assert_eq!(b.len(), 1, "what changed is sent");
    apply(&mut sim, &b[0]);
    let want = compile(&c.registry, &c.topology, &HostName("pm1".into()));
    assert_eq!(sim.state(), &want);
    assert_eq!(c.metrics.switches_held_tables_ahead.get(), 0);
}

#[test]
fn a_switch_holding_the_tables_compiled_ahead_is_left_alone_without_compiling() {
    let (mut c, sim) = restarted_with_pm1_prepared();
    assert!(reconnect_pm1(&mut c, &sim).is_empty());
    assert_eq!(c.metrics.switches_held_tables_ahead.get(), 1);
    assert!(c.prepared.is_empty(), "used once");
}

#[test]
fn tables_compiled_ahead_are_not_trusted_after_the_registry_changed() {
    let (mut c, sim) = restarted_with_pm1_prepared();
    let port = c
        .topology
        .vm_port(&HostName("pm1".into()), 5)
        .unwrap()
        .clone();
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x42]);
    let changes = c
        .registry
        .learn_source(Timestamp(1), &port, crate::model::Vlan::Untagged, mac);
    assert!(!changes.is_empty());
    reconnects_to_what_changed(&mut c, sim);
}

#[test]
fn tables_compiled_ahead_are_not_trusted_after_the_topology_changed() {
    let (mut c, sim) = restarted_with_pm1_prepared();
    second_vm_port_on_pm1(&mut c);
    reconnects_to_what_changed(&mut c, sim);
}

#[test]
fn tables_are_compiled_ahead_only_for_hosts_whose_switch_is_away_and_not_kept_forever() {
    let (mut c, _rx, _sim) = pm1_programmed();
    for h in ["pm1", "pm2"] {
        c.on_topology_event(TopologyEvent::Ovsdb {
            host: HostName(h.into()),
            connected: true,
        });
    }
    // Not before their ports are reported again.
    assert!(c.to_prepare.is_empty());
    with_ports(&mut c);
    let now = Instant::now();
    while !c.to_prepare.is_empty() {
        c.prepare_next(now);
    }
    let prepared: Vec<&str> = c.prepared.keys().map(|h| h.0.as_str()).collect();
    assert_eq!(prepared, ["pm2"], "pm1's switch is connected");
    c.on_tick(now + program::PREPARED_TTL);
    assert!(c.prepared.is_empty());
}

mod inventory;

/// A verified certificate as the server hands it over, issued for `name`.
fn certificate(dir: &std::path::Path, name: &str) -> Arc<crate::tls::PeerCertificate> {
    use rustls::pki_types::pem::PemObject;
    let pki = iris_testbed::pki::Pki::new(dir, "iris").unwrap();
    let files = pki.issue(name).unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_file(&files.certificate).unwrap();
    Arc::new(crate::tls::PeerCertificate::new(der))
}

fn connect_with(
    c: &mut Control,
    conn: u64,
    cert: &Arc<crate::tls::PeerCertificate>,
) -> mpsc::Receiver<Command> {
    let (h, rx) = handle(conn);
    c.on_switch_event(SwitchEvent::Connected {
        conn: ConnId(conn),
        peer: format!("127.0.0.1:{conn}"),
        handle: h,
        certificate: Some(cert.clone()),
    });
    rx
}

#[test]
fn a_certificate_speaks_for_the_host_it_names_or_whose_fingerprint_is_bound_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _) = control();
    // ovs-pki puts a switch's name in the CN only: no subjectAltName names
    // pm1, so the certificate alone does not make its switch pm1.
    let unnamed = certificate(dir.path(), "switch-7f3a");
    let mut rx = connect_with(&mut c, 1, &unnamed);
    ready(&mut c, 1, 1);
    while rx.try_recv().is_ok() {}
    assert!(rx.is_closed(), "refused");
    assert!(c
        .host(&HostName("pm1".into()))
        .unwrap()
        .openflow_peer
        .is_none());
    assert!(c
        .metrics
        .render()
        .contains("iris_switches_refused_total{why=\"certificate_not_this_host\"} 1"));
    // Bound by its fingerprint, it is pm1's; still not pm2's.
    c.bind_certificates([(HostName("pm1".into()), *unnamed.sha256())].into());
    let rx = connect_with(&mut c, 2, &unnamed);
    ready(&mut c, 2, 1);
    assert!(!rx.is_closed());
    assert!(c
        .host(&HostName("pm1".into()))
        .unwrap()
        .openflow_peer
        .is_some());
    let mut rx = connect_with(&mut c, 3, &unnamed);
    ready(&mut c, 3, 2);
    while rx.try_recv().is_ok() {}
    assert!(
        rx.is_closed(),
        "a fingerprint bound to pm1 does not make pm2"
    );
    // A certificate naming pm2 is pm2's.
    let pm2 = certificate(dir.path(), "pm2");
    let rx = connect_with(&mut c, 4, &pm2);
    ready(&mut c, 4, 2);
    assert!(!rx.is_closed());
    assert_eq!(c.metrics.switches_connected.get(), 2);
}
mod store_unavailable;

/// Every command waiting in a connection's queue: its batches, and how
/// many dumps were asked for.
fn commands(rx: &mut mpsc::Receiver<Command>) -> (Vec<Batch>, usize) {
    let (mut out, mut dumps) = (Vec::new(), 0);
    while let Ok(c) = rx.try_recv() {
        match c {
            Command::Submit(b) => out.push(b),
            Command::Dump => dumps += 1,
        }
    }
    (out, dumps)
}

/// The role requests of `batches`, and how many of their messages write
/// to the switch (FLOW_MOD, GROUP_MOD, PACKET_OUT).
fn roles_and_writes(batches: &[Batch]) -> (Vec<ofp::message::RoleMsg>, usize) {
    let messages = batches.iter().flat_map(|b| &b.messages);
    let roles = messages
        .clone()
        .filter_map(|m| match m {
            Message::RoleRequest(r) => Some(*r),
            _ => None,
        })
        .collect();
    let writes = messages
        .filter(|m| {
            matches!(
                m,
                Message::FlowMod(_) | Message::GroupMod(_) | Message::PacketOut(_)
            )
        })
        .count();
    (roles, writes)
}

fn role(role: ofp::message::ControllerRole, generation_id: u64) -> ofp::message::RoleMsg {
    ofp::message::RoleMsg {
        role,
        generation_id,
    }
}

fn entry(mac: u8) -> EntrySpec {
    EntrySpec {
        key: MacKey {
            vi: ViId(1),
            vlan: crate::model::Vlan::Untagged,
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
        },
        location: Some(Location::Port {
            host: HostName("pm2".into()),
            ofport: 6,
        }),
        ips: vec![[10, 1, 1, mac].into()],
    }
}

#[test]
fn a_standby_asks_for_slave_and_never_writes_to_a_switch_or_the_store() {
    use ofp::message::ControllerRole;
    let (mut c, _) = control();
    c.stand_by(7);
    with_ports(&mut c);
    let mut rx = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    let (b, _) = commands(&mut rx);
    assert_eq!(
        roles_and_writes(&b),
        (vec![role(ControllerRole::Slave, 7)], 0),
        "{b:?}"
    );
    // A PacketIn (one sent before the switch took the role) is left alone.
    let mac = MacAddr([2, 0, 0, 0, 0, 9]);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: rarp_in(mac, 5),
    });
    let (b, dumps) = commands(&mut rx);
    assert_eq!((b.len(), dumps), (0, 0), "{b:?}");
    assert_eq!(metric(&c, "iris_packet_ins_total{reason=\"standby\"}"), 1);
    // A write that reaches the control loop is refused, not applied.
    let _ = c.put_registry_entry(&entry(1), false);
    assert!(c.take_refusal().is_some_and(|w| w.contains("standby")));
    assert!(c.registry_entry(&entry(1).key).is_none());
    assert_eq!(commands(&mut rx).0.len(), 0);
    assert_eq!(c.metrics.flow_mods_sent.get(), 0);
    assert_eq!(c.metrics.leader.get(), 0);
}

#[test]
fn a_standby_that_wins_claims_master_reads_the_tables_and_sends_nothing_to_a_switch_already_right()
{
    use ofp::message::ControllerRole;
    // What the old leader left on pm1's switch.
    let (_, _, sim) = pm1_programmed();
    let (mut c, _) = control();
    c.stand_by(3);
    with_ports(&mut c);
    let mut rx = connect(&mut c, 1);
    let (flows, groups) = dump(&sim);
    ready_with(&mut c, 1, 1, flows.clone(), groups.clone());
    let _ = commands(&mut rx);
    c.lead(4);
    let (b, dumps) = commands(&mut rx);
    assert_eq!(
        roles_and_writes(&b),
        (vec![role(ControllerRole::Master, 4)], 0)
    );
    assert_eq!(dumps, 1, "the new leader reads the switch's tables");
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::Tables {
            installed: Installed::from_dump(&flows, &groups),
        },
    });
    let (b, _) = commands(&mut rx);
    assert_eq!(roles_and_writes(&b).1, 0, "{b:?}");
    assert_eq!(c.metrics.flow_mods_sent.get(), 0);
    assert_eq!(c.metrics.leader.get(), 1);
    assert_eq!(c.metrics.leader_generation.get(), 4);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::Role(role(ControllerRole::Master, 4)),
    });
    assert_eq!(c.metrics.switches_master.get(), 1);
    // It writes now: a new entry reaches the switch.
    c.put_registry_entry(&entry(1), false).unwrap();
    assert!(c.take_refusal().is_none());
    let (b, _) = commands(&mut rx);
    assert!(roles_and_writes(&b).1 > 0, "{b:?}");
}

/// A standby with pm1's switch ready that won as generation 2, and the
/// switch's answer to the new leader's dump: empty tables.
fn led_over_an_empty_switch() -> (Control, mpsc::Receiver<Command>) {
    let (mut c, _) = control();
    c.stand_by(1);
    with_ports(&mut c);
    let mut rx = connect(&mut c, 1);
    ready(&mut c, 1, 1);
    c.lead(2);
    let _ = commands(&mut rx);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::Tables {
            installed: Installed::default(),
        },
    });
    (c, rx)
}

#[test]
fn a_new_leader_puts_back_what_a_switch_lacks() {
    let (c, mut rx) = led_over_an_empty_switch();
    let (b, _) = commands(&mut rx);
    let mut sim = flowsim::Switch::new();
    for batch in &b {
        apply(&mut sim, batch);
    }
    assert_eq!(
        sim.state(),
        &compile(&c.registry, &c.topology, &HostName("pm1".into()))
    );
    assert_eq!(roles_and_writes(&b).0, vec![]);
}

#[test]
fn a_leader_that_loses_its_lease_asks_for_slave_and_stops_writing_at_once() {
    use ofp::message::ControllerRole;
    let (mut c, mut rx) = led_over_an_empty_switch();
    let _ = commands(&mut rx);
    c.stand_by(2);
    let (b, _) = commands(&mut rx);
    assert_eq!(
        roles_and_writes(&b),
        (vec![role(ControllerRole::Slave, 2)], 0)
    );
    assert_eq!(c.metrics.switches_master.get(), 0);
    let _ = c.put_registry_entry(&entry(1), false);
    assert!(c.take_refusal().is_some());
    assert!(c.registry_entry(&entry(1).key).is_none());
    assert_eq!(roles_and_writes(&commands(&mut rx).0).1, 0);
    // A stale MASTER refused later is understood as another leader's.
    let stale = ofp::message::ErrorMsg::Standard {
        code: ofp::ErrorCode::new(ofp::error::error_type::ROLE_REQUEST_FAILED, 0),
        data: vec![],
    };
    assert!(c.on_role_error(ConnId(1), &stale));
    let other = ofp::message::ErrorMsg::Standard {
        code: ofp::ErrorCode::BAD_TYPE,
        data: vec![],
    };
    assert!(!c.on_role_error(ConnId(1), &other));
}

#[test]
fn a_standby_reload_takes_the_stores_registry_and_hosts_and_keeps_the_ports() {
    let (mut c, mut hosts) = control();
    c.stand_by(1);
    with_ports(&mut c);
    let ports = c.topology.vm_ports.len();
    let mut registry = Registry::new();
    let changes = registry.put(now_ms(), &c.topology, &entry(3)).unwrap();
    assert!(!changes.is_empty());
    let mut all: Vec<ManagedHost> = hosts.borrow_and_update().clone();
    all.push(host("pm3", [10, 0, 0, 3], 3, HostRole::Compute));
    let vis = c.vis();
    c.reload(all, vis, registry);
    assert!(c.registry_entry(&entry(3).key).is_some());
    assert!(c.topology.hosts.contains_key(&HostName("pm3".into())));
    assert_eq!(c.topology.vm_ports.len(), ports);
    assert!(hosts.has_changed().unwrap(), "the OVSDB side hears of pm3");
}

/// pm1's OVSDB reports its ports without the VM's port 5: it was unplugged.
fn pm1_unplugged(c: &mut Control) {
    let ip = |h: u8| Ipv4Addr::from([10, 0, 0, h]);
    c.on_topology_event(TopologyEvent::Ports {
        host: HostName("pm1".into()),
        vm_ports: vec![],
        tunnels: vec![(ip(2), 10), (ip(9), 11)],
    });
}

/// A frame for `dst` that table 3 of pm1 sent up, having come from pm2's
/// tunnel (port 10) with VI 1's key; `seq` tells the frames apart.
fn parked_frame(dst: MacAddr, seq: u8) -> (Upcall, Vec<u8>) {
    let mut data = Vec::new();
    data.extend_from_slice(&dst.0);
    data.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 0x77]);
    data.extend_from_slice(&[0x08, 0x00]);
    data.extend_from_slice(&[seq; 46]);
    let packet_in = PacketIn {
        buffer_id: NO_BUFFER,
        total_len: data.len() as u16,
        reason: PacketInReason::Action,
        table_id: crate::compiler::TABLE_FORWARD,
        cookie: 0,
        match_: Match::new().in_port(10).tunnel_id(1001),
        data: data.clone(),
    };
    let upcall = Upcall::PacketIn {
        packet_in,
        received: Instant::now(),
    };
    (upcall, data)
}

/// [`parked_frame`] `seq` for `mac`, sent up by pm1; its bytes.
fn sent_up_on_pm1(c: &mut Control, mac: MacAddr, seq: u8) -> Vec<u8> {
    let (upcall, data) = parked_frame(mac, seq);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall,
    });
    data
}

/// The PacketOuts in `rx`'s batches.
fn packet_outs(rx: &mut mpsc::Receiver<Command>) -> Vec<ofp::message::PacketOut> {
    batches(rx)
        .into_iter()
        .flat_map(|b| b.messages)
        .filter_map(|m| match m {
            Message::PacketOut(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// PacketOuts of `frames`, in order, straight out of `port`.
fn sent_out_of(outs: &[ofp::message::PacketOut], port: u32) -> Vec<Vec<u8>> {
    outs.iter()
        .filter(|p| p.in_port == ofp::action::port::CONTROLLER)
        .filter(|p| p.actions == [ofp::action::Action::output(port)])
        .map(|p| p.data.clone())
        .collect()
}

#[test]
fn frames_for_a_guest_whose_port_left_wait_for_it_and_follow_its_move() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    pm1_unplugged(&mut c);
    answer_barriers(&mut c, &mut rxs, &[1, 2, 9], |_| 0);
    let departed = (HostName("pm1".into()), 5);
    assert!(c.topology.departed.contains_key(&departed));
    assert_eq!(located(&c, mac), port_of("pm1", 5), "not moved by leaving");

    // pm2's pinger still sends to pm1, which sends the frames up: held.
    let f1 = sent_up_on_pm1(&mut c, mac, 1);
    let f2 = sent_up_on_pm1(&mut c, mac, 2);
    assert_eq!(c.parked.len(), 2);
    for conn in [1, 2, 9] {
        assert!(packet_outs(rxs.get_mut(&conn).unwrap()).is_empty());
    }

    // The guest resumes on pm2's new port 8: the held frames go straight
    // out of it, in order, without waiting for any barrier.
    pm2_reports(&mut c, &[8]);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: rarp_in(mac, 8),
    });
    assert_eq!(located(&c, mac), port_of("pm2", 8));
    let outs = packet_outs(rxs.get_mut(&2).unwrap());
    assert_eq!(sent_out_of(&outs, 8), [f1, f2]);
    assert_eq!(c.parked.len(), 0);

    // A frame a switch sent before it took the move is forwarded at once.
    let f3 = sent_up_on_pm1(&mut c, mac, 3);
    let outs = packet_outs(rxs.get_mut(&2).unwrap());
    assert_eq!(sent_out_of(&outs, 8), [f3]);
    answer_barriers(&mut c, &mut rxs, &[1, 2, 9], |_| 0);
    assert_eq!(
        metric(&c, "iris_parked_frames_total{outcome=\"forwarded\"}"),
        3
    );
    assert_eq!(metric(&c, "iris_packet_ins_total{reason=\"parked\"}"), 3);

    // pm1 is remembered as the host the MAC left, for the stragglers.
    let key = MacKey {
        vi: ViId(1),
        vlan: crate::model::Vlan::Untagged,
        mac,
    };
    assert!(c.topology.moved_from(&departed.0, &key));
    // Then both end: pm1 leaves VI 1, its flows for it go.
    assert!(c.topology.vi_members()[&ViId(1)].contains(&departed.0));
    // The guest has shown up elsewhere: its departure ends with the
    // moved-from record, not after the long wait for guests still away.
    c.on_tick(Instant::now() + parked::HOLD_FOR);
    assert!(c.topology.departed.is_empty());
    assert!(c.topology.moved_from.is_empty());
    assert!(!c.topology.vi_members()[&ViId(1)].contains(&departed.0));
    let b = batches(rxs.get_mut(&1).unwrap());
    assert!(
        b.iter()
            .any(|b| b.messages.iter().any(|m| matches!(m, Message::FlowMod(_)))),
        "pm1 reprogrammed: {b:?}"
    );
}

#[test]
fn frames_for_a_guest_that_does_not_reappear_are_bounded_and_dropped() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    pm1_unplugged(&mut c);
    answer_barriers(&mut c, &mut rxs, &[1, 2, 9], |_| 0);
    let extra = 3;
    for seq in 0..parked::MAX_PER_MAC + extra {
        sent_up_on_pm1(&mut c, mac, seq as u8);
    }
    assert_eq!(c.parked.len(), parked::MAX_PER_MAC);
    assert_eq!(
        metric(&c, "iris_parked_frames_total{outcome=\"full\"}"),
        extra as u64
    );
    // The port comes back on pm1 before the hold ends: the frames go to it.
    c.on_topology_event(report_of("pm1"));
    assert!(c.topology.departed.is_empty());
    let outs = packet_outs(rxs.get_mut(&1).unwrap());
    let sent = sent_out_of(&outs, 5);
    assert_eq!(sent.len(), parked::MAX_PER_MAC);
    assert_eq!(sent[0][14], extra as u8, "the oldest gave way");

    // Unplugged again, and the guest never shows up: each frame dropped
    // after the hold, the port still waited for.
    pm1_unplugged(&mut c);
    sent_up_on_pm1(&mut c, mac, 0);
    assert_eq!(c.parked.len(), 1);
    let unplugged = Instant::now();
    c.on_tick(unplugged + parked::HOLD_FOR);
    assert_eq!(c.parked.len(), 0);
    assert!(!c.topology.departed.is_empty());
    // A frame sent while the guest is still away is held as long: the
    // moment after it announces itself, frames still come this way.
    sent_up_on_pm1(&mut c, mac, 1);
    assert_eq!(c.parked.len(), 1);
    c.on_tick(unplugged + parked::DEPARTED_FOR);
    assert!(c.topology.departed.is_empty());
    assert_eq!(c.parked.len(), 0);
    assert_eq!(
        metric(&c, "iris_parked_frames_total{outcome=\"expired\"}"),
        2
    );
}

#[test]
fn a_frame_sent_up_for_no_known_vi_is_counted_as_invalid() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    let (Upcall::PacketIn { mut packet_in, .. }, _) = parked_frame(mac, 1) else {
        unreachable!()
    };
    packet_in.match_ = Match::new().in_port(10).tunnel_id(4242);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(1),
        upcall: Upcall::PacketIn {
            packet_in,
            received: Instant::now(),
        },
    });
    assert_eq!(c.parked.len(), 0);
    assert_eq!(metric(&c, "iris_packet_ins_total{reason=\"invalid\"}"), 1);
    for conn in [1, 2, 9] {
        assert!(packet_outs(rxs.get_mut(&conn).unwrap()).is_empty());
    }
}

#[test]
fn after_a_live_migration_frames_still_sent_to_the_old_host_follow_the_guest() {
    // As QEMU migrates: the guest resumes on pm2 and announces itself while
    // its port on pm1 is still there; only then does the port go.
    let (mut c, mut rxs, mac) = vm_on_pm1();
    pm2_reports(&mut c, &[8]);
    answer_barriers(&mut c, &mut rxs, &[1, 2, 9], |_| 0);
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: rarp_in(mac, 8),
    });
    let pm1 = HostName("pm1".into());
    let key = MacKey {
        vi: ViId(1),
        vlan: crate::model::Vlan::Untagged,
        mac,
    };
    assert!(c.topology.moved_from(&pm1, &key));
    // Once pm2 holds the guest's flows, pm1 is told to send up what comes
    // for the MAC by tunnel.
    answer_barriers(&mut c, &mut rxs, &[2], |_| 0);
    let to_pm1 = batches(rxs.get_mut(&1).unwrap());
    let stray = to_pm1.iter().flat_map(|b| &b.messages).any(|m| {
        matches!(m, Message::FlowMod(f)
            if f.table_id == crate::compiler::TABLE_FORWARD
                && is_flow_of(m, mac)
                && f.instructions == [ofp::instruction::Instruction::ApplyActions(
                    vec![ofp::action::Action::to_controller()])])
    });
    assert!(stray, "{to_pm1:?}");
    // The source's port goes: nothing is left there to wait for.
    pm1_unplugged(&mut c);
    assert!(c.topology.departed.is_empty());
    // A frame pm2 still sent to pm1 reaches the guest from the controller.
    let f = sent_up_on_pm1(&mut c, mac, 1);
    let outs = packet_outs(rxs.get_mut(&2).unwrap());
    assert_eq!(sent_out_of(&outs, 8), [f]);
    assert_eq!(c.parked.len(), 0);
    // A move within one host leaves nothing behind.
    pm2_reports(&mut c, &[8, 9]);
    c.on_tick(Instant::now() + parked::HOLD_FOR);
    assert!(c.topology.moved_from.is_empty());
    c.on_switch_event(SwitchEvent::Upcall {
        conn: ConnId(2),
        upcall: rarp_in(mac, 9),
    });
    assert_eq!(located(&c, mac), port_of("pm2", 9));
    assert!(c.topology.moved_from.is_empty());
}

/// A shared store as a standby sees it: the revision of its last whole
/// read and of the marker, as the test sets them.
#[derive(Debug)]
struct RevisionStore {
    loaded_at: i64,
    marker: Arc<std::sync::atomic::AtomicI64>,
}

impl store::Store for RevisionStore {
    fn load(&self) -> Result<store::Snapshot, store::StoreError> {
        Ok(store::Snapshot::default())
    }

    fn commit(&mut self, _: &store::Batch) -> Result<(), store::StoreError> {
        Ok(())
    }

    fn loaded_at(&self) -> Option<i64> {
        Some(self.loaded_at)
    }

    fn marker_revision(&self) -> Option<i64> {
        Some(self.marker.load(std::sync::atomic::Ordering::Relaxed))
    }
}

#[test]
fn a_followed_view_counts_as_the_store_only_up_to_the_commits_it_holds() {
    use std::sync::atomic::Ordering;
    let (mut c, _) = control();
    c.stand_by(1);
    let marker = Arc::new(std::sync::atomic::AtomicI64::new(90));
    c.persist_to(Box::new(RevisionStore {
        loaded_at: 100,
        marker: Arc::clone(&marker),
    }));
    assert!(!c.view_is_current(), "nothing read yet");
    assert_eq!(c.viewed_whole_store(), Some(100));
    assert!(c.view_is_current(), "the read holds the marker's commit");
    // A commit the standby has not applied yet.
    marker.store(120, Ordering::Relaxed);
    assert!(!c.view_is_current());
    let key = MacKey {
        vi: ViId(1),
        vlan: crate::model::Vlan::Untagged,
        mac: MacAddr([0x52, 0x54, 0, 0, 0x77, 1]),
    };
    let entry = crate::registry::MacEntry {
        location: Some(Location::BehindGateway {
            gateway: HostName("gw1".into()),
        }),
        origin: crate::registry::Origin::Api,
        since: Timestamp(5),
    };
    let record = store::RegistryRecord::Mac(key, Some(entry.clone()));
    assert!(c.apply_stored(vec![record.clone()], 120));
    assert_eq!(c.registry.mac(&key), Some(&entry));
    assert!(c.view_is_current());
    // Deleted by the next commit.
    assert!(c.apply_stored(vec![store::RegistryRecord::Mac(key, None)], 121));
    assert_eq!(c.registry.mac(&key), None);
    assert_eq!(c.metrics.store_followed_revision.get(), 121);
    assert_eq!(c.metrics.store_whole_reads.get(), 1);
    // Once it led, its view is its own until read whole again.
    c.lead(2);
    assert!(!c.view_is_current());
    assert!(
        !c.apply_stored(vec![record], 130),
        "a leader applies nothing"
    );
    assert_eq!(c.registry.mac(&key), None);
    assert_eq!(c.metrics.store_followed_revision.get(), 0);
    c.stand_by(3);
    assert!(!c.view_is_current());
    assert_eq!(c.viewed_whole_store(), Some(100));
    assert_eq!(c.metrics.store_whole_reads.get(), 2);
}
