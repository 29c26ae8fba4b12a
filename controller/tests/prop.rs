//! Random registries over the fabric test world: whatever the registry says,
//! reconciling any switch state to its compiled flows gives exactly those
//! flows, and the fabric keeps its promises (floods reach the whole VI once,
//! unicast reaches the MAC's place, known ARP is answered in the datapath).

mod common;

use common::*;
use iris_controller::compiler::{
    affected_by_ports, compile, compile_entries, compile_holding_back, compile_into, Memo,
    TABLE_ARP,
};
use iris_controller::flowsim::{Fabric, Switch};
use iris_controller::model::{IpKey, Location, MacKey, Topology, ViId, Vlan, VmPort};
use iris_controller::reconciler::{holds, reconcile, Diff, Foreign};
use iris_controller::registry::{
    Change, EntrySpec, IpEntry, MacEntry, Origin, Registry, RegistryChange, Timestamp,
};
use iris_controller::switch_state::{Flow, Installed, SwitchState, COOKIE_TAG_MASK};
use ofp::oxm::Match;
use ofp::packet::{ArpRepr, MacAddr};
use proptest::prelude::*;
use std::net::Ipv4Addr;

const MACS: [&str; 4] = [
    "52:54:00:00:00:01",
    "52:54:00:00:00:02",
    "52:54:00:00:00:03",
    "52:54:00:00:00:09",
];
const IPS: [[u8; 4]; 3] = [[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 9]];
const VLANS: [Option<u16>; 3] = [None, Some(10), Some(20)];
/// A sender no registry knows, so its frames are never announcements.
const STRANGER: &str = "02:00:00:00:00:ff";

fn vlan(v: Option<u16>) -> Vlan {
    v.map_or(Vlan::Untagged, Vlan::Tagged)
}

/// Every place a MAC of `vi` can be: its VM ports, behind the gateway, a
/// port that is not the VI's, or nowhere yet.
fn locations(t: &Topology, vi: u32) -> Vec<Option<Location>> {
    let mut l: Vec<Option<Location>> = t
        .vm_ports
        .values()
        .filter(|p| p.vi == ViId(vi))
        .map(|p| {
            Some(Location::Port {
                host: p.host.clone(),
                ofport: p.ofport,
            })
        })
        .collect();
    l.push(Some(Location::BehindGateway {
        gateway: host("gw"),
    }));
    l.push(Some(Location::Port {
        host: host("h2"),
        ofport: 99,
    }));
    l.push(None);
    l
}

fn origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        Just(Origin::Seeded),
        Just(Origin::Learned),
        Just(Origin::Announced),
        Just(Origin::Api)
    ]
}

prop_compose! {
    fn mac_entry()(vi in 1u32..=2, v in 0..VLANS.len(), m in 0..MACS.len(), l in 0usize..16, o in origin())
        -> (MacKey, MacEntry) {
        let locs = locations(&topology(), vi);
        let key = MacKey { vi: ViId(vi), vlan: vlan(VLANS[v]), mac: mac(MACS[m]) };
        (key, MacEntry { location: locs[l % locs.len()].clone(), origin: o, since: Timestamp(0) })
    }
}

prop_compose! {
    fn ip_entry()(vi in 1u32..=2, v in 0..VLANS.len(), i in 0..IPS.len(), m in 0..MACS.len(), o in origin())
        -> (IpKey, IpEntry) {
        let key = IpKey { vi: ViId(vi), vlan: vlan(VLANS[v]), ip: Ipv4Addr::from(IPS[i]) };
        (key, IpEntry { mac: mac(MACS[m]), origin: o, since: Timestamp(0) })
    }
}

prop_compose! {
    fn registry()(macs in prop::collection::vec(mac_entry(), 0..14),
                  ips in prop::collection::vec(ip_entry(), 0..10)) -> Registry {
        Registry::restore(macs, ips)
    }
}

/// One thing an OVSDB report can say changed about a host's ports: a VM
/// port plugged (or re-plugged into another VI), the i-th VM port gone or
/// moved to another VI, the i-th tunnel gone. VI 3 is one no other host
/// serves.
#[derive(Debug, Clone)]
enum PortsChange {
    Plug { ofport: u32, vi: u32 },
    Unplug(usize),
    Rehome(usize, u32),
    DropTunnel(usize),
}

fn ports_change() -> impl Strategy<Value = PortsChange> {
    prop_oneof![
        (1u32..=14, 1u32..=3).prop_map(|(ofport, vi)| PortsChange::Plug { ofport, vi }),
        (0usize..8).prop_map(PortsChange::Unplug),
        (0usize..8, 1u32..=3).prop_map(|(i, vi)| PortsChange::Rehome(i, vi)),
        (0usize..4).prop_map(PortsChange::DropTunnel),
    ]
}

/// `t` after `changes` to the ports of `host`.
fn with_ports_changed(t: &Topology, name: &str, changes: &[PortsChange]) -> Topology {
    let mut t = t.clone();
    let h = host(name);
    for c in changes {
        let ports: Vec<u32> = t.vm_ports_on(&h).map(|p| p.ofport).collect();
        let tunnels: Vec<(_, _)> = t.tunnels.keys().filter(|(a, _)| *a == h).cloned().collect();
        match *c {
            PortsChange::Plug { ofport, vi } => {
                let name = format!("{name}p{ofport}");
                let vi = ViId(vi);
                t.vm_ports.insert(
                    (h.clone(), ofport),
                    VmPort {
                        host: h.clone(),
                        name,
                        ofport,
                        vi,
                        attached_mac: None,
                    },
                );
            }
            PortsChange::Unplug(i) if !ports.is_empty() => {
                t.vm_ports.remove(&(h.clone(), ports[i % ports.len()]));
            }
            PortsChange::Rehome(i, vi) if !ports.is_empty() => {
                let key = (h.clone(), ports[i % ports.len()]);
                if let Some(p) = t.vm_ports.get_mut(&key) {
                    p.vi = ViId(vi);
                }
            }
            PortsChange::DropTunnel(i) if !tunnels.is_empty() => {
                t.tunnels.remove(&tunnels[i % tunnels.len()]);
            }
            _ => {}
        }
    }
    t
}

/// Brings a switch holding `from` to `to` and checks it got there in one
/// plan, with nothing left to do afterwards.
fn converges(from: &SwitchState, to: &SwitchState) -> Result<(), TestCaseError> {
    let mut sw = Switch::new();
    sw.apply_all(&reconcile(from, &SwitchState::default(), Foreign::Delete).messages)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(sw.state(), from);
    let plan = reconcile(to, sw.state(), Foreign::Delete);
    sw.apply_all(&plan.messages)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(sw.state(), to);
    prop_assert!(reconcile(to, sw.state(), Foreign::Delete)
        .messages
        .is_empty());
    Ok(())
}

/// The changes that take the registry from `from` to `to`, one per key
/// that differs.
fn changes(from: &Registry, to: &Registry) -> Vec<RegistryChange> {
    let mut out = Vec::new();
    let macs: std::collections::BTreeSet<&MacKey> =
        from.macs().chain(to.macs()).map(|(k, _)| k).collect();
    for k in macs {
        let (before, after) = (from.mac(k).cloned(), to.mac(k).cloned());
        if before != after {
            out.push(RegistryChange::Mac(Change {
                key: *k,
                before,
                after,
            }));
        }
    }
    let ips: std::collections::BTreeSet<&IpKey> =
        from.ips().chain(to.ips()).map(|(k, _)| k).collect();
    for k in ips {
        let (before, after) = (from.ip(k).cloned(), to.ip(k).cloned());
        if before != after {
            out.push(RegistryChange::Ip(Change {
                key: *k,
                before,
                after,
            }));
        }
    }
    out
}

/// `state` as a switch might hold it: the flows at `foreign` (indices,
/// wrapped) written by somebody else, those at `stale` Iris's with other
/// instructions than compiled, and one foreign flow where Iris has none.
fn tampered(state: &SwitchState, foreign: &[usize], stale: &[usize]) -> SwitchState {
    let mut out = state.clone();
    let n = out.flows.len();
    for (i, f) in out.flows.values_mut().enumerate() {
        if foreign.iter().any(|j| j % n == i) {
            f.cookie &= !COOKIE_TAG_MASK;
        } else if stale.iter().any(|j| j % n == i) {
            f.cookie ^= 1;
        }
    }
    let mut theirs = Flow::new(0, 7, Match::new().in_port(99), vec![]);
    theirs.cookie = 0x1234;
    out.insert_flow(theirs);
    out
}

/// The VM ports of `vi`, as (host, port).
fn vi_ports(t: &Topology, vi: u32) -> Vec<(String, u32)> {
    vi_ports_except(t, vi, ("", 0))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn reconciling_reaches_exactly_the_compiled_state(a in registry(), b in registry()) {
        let t = topology();
        for h in t.hosts.keys() {
            let (want, other) = (compile(&a, &t, h), compile(&b, &t, h));
            converges(&SwitchState::default(), &want)?;
            converges(&other, &want)?;
            // Compiling is deterministic.
            prop_assert_eq!(&want, &compile(&a.clone(), &t, h));
        }
    }

    #[test]
    fn programming_only_the_changed_entries_reaches_the_compiled_state(
        a in registry(), mid in registry(), b in registry()
    ) {
        // Two rounds of changes taken together, as a burst takes them.
        let mut burst = changes(&a, &mid);
        burst.extend(changes(&mid, &b));
        let t = topology();
        for h in t.hosts.keys() {
            let mut sw = Switch::new();
            let held = compile(&a, &t, h);
            sw.apply_all(&reconcile(&held, &SwitchState::default(), Foreign::Delete).messages)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let flows = compile_entries(&burst, &b, &t, h);
            let part = held.flows_at(flows.before.flows.keys().chain(flows.after.flows.keys()));
            let plan = reconcile(&flows.after, &part, Foreign::Keep);
            sw.apply_all(&plan.messages)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let want = compile(&b, &t, h);
            prop_assert_eq!(sw.state(), &want, "the switch");
            let mut view = held.clone();
            view.replace_flows(&part, &flows.after);
            prop_assert_eq!(&view, &want, "the controller's view of it");
        }
    }

    #[test]
    fn a_switch_compiled_whole_holding_changes_back_gets_their_entries_as_they_were(
        a in registry(), b in registry()
    ) {
        let t = topology();
        let held = changes(&a, &b);
        for h in t.hosts.keys() {
            let mut out = SwitchState::default();
            compile_holding_back(&held, &b, &t, h, &mut out, &mut Memo::default());
            prop_assert_eq!(&out, &compile(&a, &t, h), "{}", h);
        }
    }

    #[test]
    fn the_compact_diff_decides_what_the_full_diff_decides(
        a in registry(), mid in registry(), b in registry(),
        foreign in prop::collection::vec(0usize..64, 0..4),
        stale in prop::collection::vec(0usize..64, 0..4),
    ) {
        let t = topology();
        for h in t.hosts.keys() {
            let want = compile(&b, &t, h);
            let held = tampered(&compile(&a, &t, h), &foreign, &stale);
            let compact = Installed::of(&held);
            for mode in [Foreign::Keep, Foreign::Delete] {
                // Everything, compared flow by flow as it is compiled.
                let mut diff = Diff::new(&compact);
                compile_into(&b, &t, h, &mut diff);
                let (plan, next) = diff.finish(mode);
                prop_assert_eq!(&plan, &reconcile(&want, &held, mode), "{}", h);
                prop_assert_eq!(&next, &Installed::of(&want));
            }
            // Only the entries a burst changed, against the compact state.
            let mut burst = changes(&a, &mid);
            burst.extend(changes(&mid, &b));
            let flows = compile_entries(&burst, &b, &t, h);
            let keys = flows.before.flows.keys().chain(flows.after.flows.keys());
            let part = held.flows_at(keys);
            let compact_part =
                compact.flows_at(flows.before.flows.iter().chain(&flows.after.flows));
            prop_assert_eq!(
                reconcile(&flows.after, &compact_part, Foreign::Keep),
                reconcile(&flows.after, &part, Foreign::Keep)
            );
            let (mut view, mut compact_view) = (held.clone(), compact.clone());
            view.replace_flows(&part, &flows.after);
            compact_view.replace_flows(&compact_part, &flows.after);
            prop_assert_eq!(compact_view, Installed::of(&view));
        }
    }

    #[test]
    fn tables_compiled_ahead_are_held_exactly_when_the_diff_plans_nothing(
        a in registry(), b in registry(), same in any::<bool>(), drop_group in any::<bool>(),
        foreign in prop::collection::vec(0usize..64, 0..3),
        stale in prop::collection::vec(0usize..64, 0..3),
    ) {
        let t = topology();
        for h in t.hosts.keys() {
            let mut ahead = Installed::default();
            compile_into(&b, &t, h, &mut ahead);
            let mut held = tampered(&compile(if same { &b } else { &a }, &t, h), &foreign, &stale);
            if drop_group {
                held.groups.pop_first();
            }
            let compact = Installed::of(&held);
            for mode in [Foreign::Keep, Foreign::Delete] {
                let mut diff = Diff::new(&compact);
                compile_into(&b, &t, h, &mut diff);
                let (plan, _) = diff.finish(mode);
                prop_assert_eq!(holds(&ahead, &compact, mode), plan.summary.is_noop(), "{}", h);
            }
        }
    }

    #[test]
    fn a_ports_report_reprograms_every_switch_whose_flows_it_changes(
        r in registry(),
        h in 0..HOSTS.len(),
        report in prop::collection::vec(ports_change(), 1..4),
    ) {
        let before = topology();
        let reported = host(HOSTS[h]);
        let vis_before = before.vm_ports_on(&reported).map(|p| p.vi).collect();
        let after = with_ports_changed(&before, HOSTS[h], &report);
        let affected = affected_by_ports(&after, &reported, &vis_before);
        prop_assert!(affected.contains(&reported));
        for x in after.hosts.keys().filter(|x| !affected.contains(x)) {
            prop_assert_eq!(
                compile(&r, &before, x),
                compile(&r, &after, x),
                "{} was left alone but its flows changed", x
            );
        }
    }

    #[test]
    fn the_fabric_keeps_its_promises(r in registry()) {
        let mut f = Fabric::new(topology());
        f.converge(&r).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let stranger = mac(STRANGER);
        for vi in [1u32, 2] {
            let ports = vi_ports(&f.topology, vi);
            for (h, p) in &ports {
                for v in VLANS {
                    // A broadcast reaches every other port of the VI once.
                    let bytes = frame(MacAddr::BROADCAST, stranger, v, 0x0800);
                    let trip = f.inject(&host(h), *p, &bytes)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(places(&trip), vi_ports_except(&f.topology, vi, (h, *p)));

                    // Unicast to every MAC the registry places on one of
                    // the VI's ports (or behind its gateway) gets there.
                    for (key, e) in r.macs_in(ViId(vi)).filter(|(k, _)| k.vlan == vlan(v)) {
                        let place = match &e.location {
                            Some(Location::Port { host, ofport })
                                if ports.contains(&(host.0.clone(), *ofport)) =>
                            {
                                (host.0.clone(), *ofport)
                            }
                            Some(Location::BehindGateway { .. }) if vi == 1 => {
                                ("gw".to_owned(), GATEWAY_UPLINK)
                            }
                            _ => continue,
                        };
                        let bytes = frame(key.mac, stranger, v, 0x0800);
                        let trip = f.inject(&host(h), *p, &bytes)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let want = if place == (h.clone(), *p) { vec![] } else { vec![place] };
                        prop_assert_eq!(places(&trip), want, "{:?} from {}:{}", key, h, p);
                    }

                    // Every IP the registry knows is answered in the datapath,
                    // but to the operator's side of a gateway: its requests
                    // are flooded in the VI for the owner to answer.
                    for (key, e) in r.ips_in(ViId(vi)).filter(|(k, _)| k.vlan == vlan(v)) {
                        let ask = ArpRepr::request(stranger, Ipv4Addr::new(10, 9, 9, 9), key.ip);
                        let bytes = arp_bytes(&with_vlan(ask, v));
                        let trip = f.inject(&host(h), *p, &bytes)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        if f.topology.is_gateway_of(&host(h), ViId(vi)) {
                            prop_assert_eq!(
                                places(&trip),
                                vi_ports_except(&f.topology, vi, (h, *p))
                            );
                            prop_assert!(trip.to_controller.iter().all(|(_, pi)| pi.table_id != TABLE_ARP));
                            continue;
                        }
                        prop_assert_eq!(places(&trip), vec![(h.clone(), *p)]);
                        let reply = ArpRepr::parse_frame(&trip.delivered[0].frame)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!((reply.sha, reply.spa), (e.mac, key.ip));
                        prop_assert!(trip.to_controller.iter().all(|(_, pi)| pi.table_id != TABLE_ARP));
                    }
                }
            }
        }
    }

    /// The per-MAC IP index (what `get` and `list` show, and what deleting
    /// a MAC removes) always says what the IP bindings say.
    #[test]
    fn the_ip_index_follows_every_change(
        r in registry(),
        ops in prop::collection::vec(
            (mac_entry(), prop::collection::vec(0..IPS.len(), 0..3), any::<bool>()),
            0..12,
        ),
    ) {
        let t = topology();
        let mut r = r;
        index_agrees(&r)?;
        for ((key, entry), ips, delete) in ops {
            if delete {
                if r.delete(&key).is_ok() {
                    prop_assert!(!r.ips().any(|(k, e)| same_mac(&key, k, e)));
                }
            } else {
                let spec = EntrySpec {
                    key,
                    location: entry.location,
                    ips: ips.into_iter().map(|i| Ipv4Addr::from(IPS[i])).collect(),
                };
                let _ = r.put(Timestamp(1), &t, &spec);
            }
            index_agrees(&r)?;
        }
    }
}

/// Whether IP binding (`k`, `e`) resolves to `key`.
fn same_mac(key: &MacKey, k: &IpKey, e: &IpEntry) -> bool {
    k.vi == key.vi && k.vlan == key.vlan && e.mac == key.mac
}

/// Every MAC's IPs, as the registry shows them, are exactly the bindings
/// that resolve to it.
fn index_agrees(r: &Registry) -> Result<(), TestCaseError> {
    for (key, _) in r.macs() {
        let bound: Vec<Ipv4Addr> = r
            .ips()
            .filter(|(k, e)| same_mac(key, k, e))
            .map(|(k, _)| k.ip)
            .collect();
        let shown = r.get(key).map(|e| e.ips).unwrap_or_default();
        prop_assert_eq!(shown, bound, "IPs of {:?}", key);
    }
    Ok(())
}
