//! The flow compiler: a pure function from the registry and the topology to
//! the flows and groups one switch should hold. `docs/pipeline.md` is the
//! specification; the table and register numbers below are its names.
//!
//! A VI is *present* on a host when the host has a VM port in it or is one of
//! its gateways. Only present VIs get flows, so a switch carries nothing of
//! an operator it does not serve.

use crate::model::{HostName, IpKey, Location, MacKey, Topology, Vi, ViId, Vlan};
use crate::registry::{Change, IpEntry, MacEntry, Registry, RegistryChange};
use crate::switch_state::{Flow, FlowKey, FlowKeyRef, Group, Installed, SwitchState};
use ofp::action::{port, Action};
use ofp::instruction::Instruction;
use ofp::oxm::{FieldId, Match, OxmField};
use ofp::packet::MacAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// Table 0: classify a packet into its VI.
pub const TABLE_CLASSIFY: u8 = 0;
/// Table 1: RARP, GARP and unknown sources to the controller.
pub const TABLE_INTERCEPT: u8 = 1;
/// Table 2: the ARP responder.
pub const TABLE_ARP: u8 = 2;
/// Table 3: L2 forwarding.
pub const TABLE_FORWARD: u8 = 3;

/// The register that says where a packet entered: [`FROM_VM`] or [`FROM_TUNNEL`].
pub const REG_ORIGIN: u8 = 6;
pub const FROM_VM: u32 = 0;
pub const FROM_TUNNEL: u32 = 1;

/// The flood group of `vi` for packets from a local VM port (local ports
/// and one bucket per other host in the VI) or, with `from_tunnel`, for
/// packets from a tunnel (local ports only: split horizon).
pub fn flood_group(vi: ViId, from_tunnel: bool) -> u32 {
    (vi.0 << 1) | u32::from(from_tunnel)
}

/// Whether a group id is in the range Iris numbers its groups in.
pub fn is_iris_group(group_id: u32) -> bool {
    group_id >> 1 <= ViId::MAX && group_id >> 1 != 0
}

const ARP: u16 = 0x0806;
const RARP: u16 = 0x8035;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const GROUP_BIT: [u8; 6] = [1, 0, 0, 0, 0, 0];

fn apply(actions: Vec<Action>) -> Instruction {
    Instruction::ApplyActions(actions)
}

fn controller() -> Instruction {
    apply(vec![Action::to_controller()])
}

fn goto(table: u8) -> Instruction {
    Instruction::GotoTable(table)
}

fn set_origin(origin: u32) -> Action {
    Action::SetField(OxmField::Reg(REG_ORIGIN, origin, None))
}

fn set_tun_id(key: u32) -> Action {
    Action::SetField(OxmField::TunnelId(u64::from(key), None))
}

fn vlan_match(m: Match, vlan: Vlan) -> Match {
    m.vlan_vid_raw(vlan.oxm_vid())
}

fn from(origin: u32) -> Match {
    Match::new().reg(REG_ORIGIN, origin)
}

fn in_vi(vi: ViId) -> Match {
    Match::new().metadata(u64::from(vi.0))
}

/// A request for `ip` turned, in place, into the reply from `mac`, and sent
/// back where it came from.
fn arp_responder(mac: MacAddr, ip: Ipv4Addr) -> Vec<Action> {
    let mv = |src, dst| {
        Action::move_field(src, dst).expect("the codec knows the widths of Ethernet and ARP fields")
    };
    vec![
        mv(FieldId::ETH_SRC, FieldId::ETH_DST),
        Action::SetField(OxmField::EthSrc(mac.0, None)),
        Action::SetField(OxmField::ArpOp(ARP_REPLY)),
        mv(FieldId::ARP_SHA, FieldId::ARP_THA),
        mv(FieldId::ARP_SPA, FieldId::ARP_TPA),
        Action::SetField(OxmField::ArpSha(mac.0, None)),
        Action::SetField(OxmField::ArpSpa(ip, None)),
        Action::output(port::IN_PORT),
    ]
}

/// Where unknown unicast, and ARP for unknown targets, from a VM port of
/// `vi` on `host` goes: to the first of the VI's gateways a tunnel reaches;
/// on a gateway itself, in a VI without one, or while no gateway is
/// reachable, flooded within the VI.
pub fn unknown_destination(topology: &Topology, host: &HostName, vi: &Vi) -> Vec<Action> {
    let gateway = if vi.gateways.contains(host) {
        None
    } else {
        vi.gateways
            .iter()
            .find_map(|g| topology.tunnel_port(host, g))
    };
    match gateway {
        Some(t) => vec![set_tun_id(vi.gre_key), Action::output(t)],
        None => vec![Action::Group(flood_group(vi.id, false))],
    }
}

/// What the compiler knows about one VI present on the host.
struct Present<'a> {
    vi: &'a Vi,
    /// The VI's VM ports on this host, in ofport order.
    local: Vec<u32>,
    /// Other hosts in the VI that a tunnel reaches, with the tunnel's ofport.
    peers: Vec<(&'a HostName, u32)>,
    /// This host is one of the VI's gateways.
    is_gateway: bool,
    /// See [`unknown_destination`].
    unknown_unicast: Vec<Action>,
}

/// The VIs present on `host`, with their local ports and reachable peers.
fn present<'a>(topology: &'a Topology, host: &HostName) -> Vec<Present<'a>> {
    let mut local: BTreeMap<ViId, Vec<u32>> = BTreeMap::new();
    for p in topology.vm_ports_on(host) {
        local.entry(p.vi).or_default().push(p.ofport);
    }
    let members = topology.vi_members();
    let mut out = Vec::new();
    for (id, vi) in &topology.vis {
        let Some(hosts) = members.get(id) else {
            continue;
        };
        if !id.is_valid() || !hosts.contains(host) {
            continue;
        }
        let peers = hosts
            .iter()
            .filter(|h| **h != host)
            .filter_map(|h| Some((*h, topology.tunnel_port(host, h)?)))
            .collect();
        out.push(Present {
            vi,
            local: local.remove(id).unwrap_or_default(),
            peers,
            is_gateway: topology.is_gateway_of(host, *id),
            unknown_unicast: unknown_destination(topology, host, vi),
        });
    }
    out
}

/// The hosts whose flows depend on what `changes` touched: the members of
/// every VI whose forwarding changed. Switches elsewhere hold nothing of
/// those VIs and need no recompiling.
pub fn affected_hosts<'a>(
    topology: &'a Topology,
    changes: &[RegistryChange],
) -> BTreeSet<&'a HostName> {
    let vis: BTreeSet<ViId> = changes
        .iter()
        .filter(|c| c.affects_flows())
        .map(RegistryChange::vi)
        .collect();
    if vis.is_empty() {
        return BTreeSet::new();
    }
    let members = topology.vi_members();
    vis.iter()
        .filter_map(|vi| members.get(vi))
        .flatten()
        .copied()
        .collect()
}

/// Where the compiler puts the flows and groups it compiles, one at a
/// time: a whole [`SwitchState`], or a comparison that keeps only what
/// differs from a switch ([`crate::reconciler::Diff`]). A later flow with
/// the identity of an earlier one replaces it, as an OpenFlow ADD does.
pub trait FlowSink {
    fn flow(&mut self, flow: Flow);
    fn group(&mut self, group: Group);

    /// A flow known by its identity and cookie, compiled whole (`make`)
    /// only if the sink needs more than those.
    fn known_flow(&mut self, key: FlowKeyRef<'_>, cookie: u64, make: &mut dyn FnMut() -> Flow) {
        let _ = (key, cookie);
        self.flow(make());
    }
}

impl FlowSink for SwitchState {
    fn flow(&mut self, flow: Flow) {
        self.insert_flow(flow);
    }

    fn group(&mut self, group: Group) {
        self.insert_group(group);
    }
}

/// Only the identity and cookie of each flow: what a switch should hold,
/// compiled ahead of seeing it ([`crate::reconciler::holds`]).
impl FlowSink for Installed {
    fn flow(&mut self, flow: Flow) {
        let key = flow.key();
        self.insert_flow(key.key_ref(), flow.cookie);
    }

    fn group(&mut self, group: Group) {
        self.groups.insert(group.group_id, group);
    }

    fn known_flow(&mut self, key: FlowKeyRef<'_>, cookie: u64, _: &mut dyn FnMut() -> Flow) {
        self.insert_flow(key, cookie);
    }
}

/// The identity and cookie of the flows of a VI's IP entries (GARP
/// interception, ARP responder), compiled once for every host that has a
/// VM port in the VI: those flows name the VI, the address and its MAC,
/// nothing of the host. After a restart every compute host compiles the
/// same ones; they were most of its compiling.
///
/// Kept for one registry version: a write to any entry drops it all.
#[derive(Debug, Default)]
pub struct Memo {
    registry_version: Option<u64>,
    ip_flows: BTreeMap<ViId, Vec<(IpKey, FlowKey, u64)>>,
}

impl Memo {
    /// [`ip_flows`], from what was compiled for another host when it can.
    fn ip_flows(&mut self, out: &mut impl FlowSink, p: &Present<'_>, registry: &Registry) {
        if self.registry_version != Some(registry.version()) {
            self.ip_flows.clear();
            self.registry_version = Some(registry.version());
        }
        let flows = self.ip_flows.entry(p.vi.id).or_insert_with(|| {
            let mut flows = Vec::new();
            for (key, entry) in registry.ips_in(p.vi.id) {
                let mut one = Keep(Vec::with_capacity(2));
                ip_entry_flows(&mut one, p, key, entry);
                flows.extend(one.0.into_iter().map(|f| (*key, f.key(), f.cookie)));
            }
            flows
        });
        for (ip, key, cookie) in flows.iter() {
            out.known_flow(key.key_ref(), *cookie, &mut || {
                let mut one = Keep(Vec::with_capacity(2));
                if let Some(entry) = registry.ip(ip) {
                    ip_entry_flows(&mut one, p, ip, entry);
                }
                one.0
                    .into_iter()
                    .find(|f| f.key() == *key)
                    .expect("the registry is at the version the memo was compiled at")
            });
        }
    }

    /// Drops what is kept (its memory), until the next compile.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

/// The flows compiled for one entry, in order.
struct Keep(Vec<Flow>);

impl FlowSink for Keep {
    fn flow(&mut self, flow: Flow) {
        self.0.push(flow);
    }

    fn group(&mut self, _: Group) {}
}

/// The hosts whose flows depend on `host`'s ports (VM ports and tunnels),
/// now that they are `topology`'s and were in the VIs `vis_before`: the
/// host itself, and the members of every VI it joined or left. Another
/// switch sees a host's ports only through VI membership (its flood groups,
/// its tunnels to the VI's members): a MAC on that host is reached by the
/// tunnel to the host whatever port it sits on, and tunnels are each
/// switch's own. So a VM re-plugged in a VI its host already serves
/// reprograms one switch, not the mesh.
pub fn affected_by_ports<'a>(
    topology: &'a Topology,
    host: &'a HostName,
    vis_before: &BTreeSet<ViId>,
) -> BTreeSet<&'a HostName> {
    let vis_after: BTreeSet<ViId> = topology.vm_ports_on(host).map(|p| p.vi).collect();
    let mut out = BTreeSet::from([host]);
    let changed: BTreeSet<ViId> = vis_before
        .symmetric_difference(&vis_after)
        .copied()
        .collect();
    if changed.is_empty() {
        return out;
    }
    let members = topology.vi_members();
    out.extend(changed.iter().filter_map(|vi| members.get(vi)).flatten());
    out
}

/// The flows and groups `host`'s bridge should hold.
pub fn compile(registry: &Registry, topology: &Topology, host: &HostName) -> SwitchState {
    let mut out = SwitchState::default();
    compile_into(registry, topology, host, &mut out);
    out
}

/// [`compile`], flow by flow into `out`.
pub fn compile_into(
    registry: &Registry,
    topology: &Topology,
    host: &HostName,
    out: &mut impl FlowSink,
) {
    compile_with(registry, topology, host, out, None);
}

/// [`compile_into`], taking what hosts have in common from `memo` (and
/// keeping it there for the next host).
pub fn compile_into_memo(
    registry: &Registry,
    topology: &Topology,
    host: &HostName,
    out: &mut impl FlowSink,
    memo: &mut Memo,
) {
    compile_with(registry, topology, host, out, Some(memo));
}

fn compile_with(
    registry: &Registry,
    topology: &Topology,
    host: &HostName,
    out: &mut impl FlowSink,
    mut memo: Option<&mut Memo>,
) {
    let vis = present(topology, host);
    let any_local = vis.iter().any(|p| !p.local.is_empty());
    pipeline(out, any_local);
    for p in &vis {
        vi_flows(out, p);
        mac_flows(out, p, registry, topology, host);
        if !p.local.is_empty() {
            match memo.as_deref_mut() {
                Some(m) => m.ip_flows(out, p, registry),
                None => ip_flows(out, p, registry),
            }
        }
    }
}

/// [`compile_into_memo`], but with the flows of the entries `held`
/// changed as they were before those changes: a switch compiled whole
/// that must not learn these changes yet (moves whose new hosts have not
/// confirmed what takes the frames in, `control/program.rs`), and learns
/// them from [`compile_entries`] later.
pub fn compile_holding_back(
    held: &[RegistryChange],
    registry: &Registry,
    topology: &Topology,
    host: &HostName,
    out: &mut impl FlowSink,
    memo: &mut Memo,
) {
    let EntryFlows { before, after } = compile_entries(held, registry, topology, host);
    let mut sink = HoldingBack { out, after: &after };
    compile_into_memo(registry, topology, host, &mut sink, memo);
    // After the whole compile: a later flow with an earlier one's identity
    // replaces it.
    for flow in before.flows.into_values() {
        out.flow(flow);
    }
}

/// Passes on every flow but those of `after`.
struct HoldingBack<'a, S> {
    out: &'a mut S,
    after: &'a SwitchState,
}

impl<S: FlowSink> FlowSink for HoldingBack<'_, S> {
    fn flow(&mut self, flow: Flow) {
        if !self.after.flows.contains_key(&flow.key()) {
            self.out.flow(flow);
        }
    }

    fn group(&mut self, group: Group) {
        self.out.group(group);
    }

    fn known_flow(&mut self, key: FlowKeyRef<'_>, cookie: u64, make: &mut dyn FnMut() -> Flow) {
        if !self.after.flows.contains_key(&FlowKey::from(key)) {
            self.out.known_flow(key, cookie, make);
        }
    }
}

/// The flows that depend on some registry entries, on one switch.
#[derive(Debug, Default)]
pub struct EntryFlows {
    /// As the entries were before the first of the changes.
    pub before: SwitchState,
    /// As the entries are now.
    pub after: SwitchState,
}

/// The flows of `host` that depend on the entries `changes` touched, before
/// the changes and now (as `registry` holds them). A flow of one MAC or IP
/// entry depends on that entry and the topology alone, and its match names
/// the entry, so with the topology unchanged, replacing the `before` flows
/// of a compiled switch by the `after` flows gives what [`compile`] gives
/// for the registry now, at the cost of the entries changed rather than of
/// the whole registry.
pub fn compile_entries(
    changes: &[RegistryChange],
    registry: &Registry,
    topology: &Topology,
    host: &HostName,
) -> EntryFlows {
    // Each key once, as it was before the first change that touched it.
    let mut macs: BTreeMap<&MacKey, Option<&MacEntry>> = BTreeMap::new();
    let mut ips: BTreeMap<&IpKey, Option<&IpEntry>> = BTreeMap::new();
    for c in changes {
        match c {
            RegistryChange::Mac(Change { key, before, .. }) => {
                macs.entry(key).or_insert(before.as_ref());
            }
            RegistryChange::Ip(Change { key, before, .. }) => {
                ips.entry(key).or_insert(before.as_ref());
            }
        }
    }
    let mut out = EntryFlows::default();
    for p in present(topology, host) {
        let vi = p.vi.id;
        for (key, before) in macs.iter().filter(|(k, _)| k.vi == vi) {
            if let Some(e) = before {
                mac_entry_flows(&mut out.before, &p, key, e, topology, host);
            }
            if let Some(e) = registry.mac(key) {
                mac_entry_flows(&mut out.after, &p, key, e, topology, host);
            }
        }
        if p.local.is_empty() {
            continue;
        }
        for (key, before) in ips.iter().filter(|(k, _)| k.vi == vi) {
            if let Some(e) = before {
                ip_entry_flows(&mut out.before, &p, key, e);
            }
            if let Some(e) = registry.ip(key) {
                ip_entry_flows(&mut out.after, &p, key, e);
            }
        }
    }
    out
}

/// The priority of the table 0 flows that classify a VM port's or a
/// tunnel's traffic into its VI.
const CLASSIFY_PRIORITY: u16 = 100;

/// The priority of the table 0 flow that classifies what comes by tunnel
/// with a VI's key.
const CLASSIFY_TUNNEL_PRIORITY: u16 = 90;

/// The identity of the flow that classifies traffic from VM port `port`
/// into its VI: a switch that holds it serves a VM on that port.
pub fn vm_port_classifier(port: u32) -> FlowKey {
    Flow::new(
        TABLE_CLASSIFY,
        CLASSIFY_PRIORITY,
        Match::new().in_port(port),
        vec![],
    )
    .key()
}

fn add(out: &mut impl FlowSink, table: u8, priority: u16, m: Match, i: Vec<Instruction>) {
    out.flow(Flow::new(table, priority, m, i));
}

/// Flows every bridge has, whatever VIs it serves.
fn pipeline(out: &mut impl FlowSink, any_local: bool) {
    // Misses: drop everywhere except the ARP table, which falls through.
    add(out, TABLE_CLASSIFY, 0, Match::new(), vec![]);
    add(out, TABLE_INTERCEPT, 0, Match::new(), vec![]);
    add(out, TABLE_ARP, 0, Match::new(), vec![goto(TABLE_FORWARD)]);
    add(out, TABLE_FORWARD, 0, Match::new(), vec![]);
    // A RARP or GARP from a port not classified yet: a migrated guest
    // announcing itself (QEMU sends RARPs, a guest with virtio-net's
    // announce feature GARPs) before OVSDB told the controller its new
    // port's VI. The controller holds it until then
    // (`control/held_rarps.rs`). A match cannot tell a GARP (sender IP ==
    // target IP) from other ARP, so all ARP goes up and the controller
    // drops what is not an announcement.
    for ethertype in [RARP, ARP] {
        add(
            out,
            TABLE_CLASSIFY,
            1,
            Match::new().eth_type(ethertype),
            vec![controller()],
        );
    }
    // Tunnels never teach: the switch at the other end already did.
    add(
        out,
        TABLE_INTERCEPT,
        10,
        from(FROM_TUNNEL),
        vec![goto(TABLE_ARP)],
    );
    if !any_local {
        return;
    }
    // The controller moves the MAC, reprograms, then floods the RARP itself.
    add(
        out,
        TABLE_INTERCEPT,
        300,
        from(FROM_VM).eth_type(RARP),
        vec![controller()],
    );
    // An unknown source: the controller learns it, the packet goes on.
    add(
        out,
        TABLE_INTERCEPT,
        50,
        from(FROM_VM),
        vec![controller(), goto(TABLE_ARP)],
    );
    // ARP probes (sender 0.0.0.0) ask whether an address is free: answering
    // the prober's own address would report a conflict, so they are flooded
    // for the real owner to answer.
    let probe = from(FROM_VM)
        .eth_type(ARP)
        .arp_op(ARP_REQUEST)
        .arp_spa(Ipv4Addr::UNSPECIFIED);
    add(out, TABLE_ARP, 110, probe, vec![goto(TABLE_FORWARD)]);
    // Unknown targets: the controller sends the request toward the gateway.
    let request = from(FROM_VM).eth_type(ARP).arp_op(ARP_REQUEST);
    add(out, TABLE_ARP, 50, request, vec![controller()]);
}

/// Classification, flood groups and unknown unicast for one VI.
fn vi_flows(out: &mut impl FlowSink, p: &Present<'_>) {
    let vi = p.vi;
    let enter = |origin| {
        vec![
            apply(vec![set_origin(origin)]),
            Instruction::WriteMetadata {
                metadata: u64::from(vi.id.0),
                mask: u64::MAX,
            },
            goto(TABLE_INTERCEPT),
        ]
    };
    for port in &p.local {
        add(
            out,
            TABLE_CLASSIFY,
            CLASSIFY_PRIORITY,
            Match::new().in_port(*port),
            enter(FROM_VM),
        );
    }
    // Whatever tunnel it came by: a host that joins the VI (a guest
    // migrating to it) sends the VI's frames the moment its own flows are
    // in, and the other members must take them already then, not once they
    // hear of it. Only the mesh's peers have a tunnel port here, and only
    // the controller's flows set a VI's key. Below the ports' classifiers:
    // on a gateway a VI's WAN tunnels are its ports.
    add(
        out,
        TABLE_CLASSIFY,
        CLASSIFY_TUNNEL_PRIORITY,
        Match::new().tunnel_id(u64::from(vi.gre_key)),
        enter(FROM_TUNNEL),
    );

    let local: Vec<Vec<Action>> = p.local.iter().map(|o| vec![Action::output(*o)]).collect();
    let mut everywhere = local.clone();
    everywhere.extend(
        p.peers
            .iter()
            .map(|(_, t)| vec![set_tun_id(vi.gre_key), Action::output(*t)]),
    );
    let (g_vm, g_tunnel) = (flood_group(vi.id, false), flood_group(vi.id, true));
    out.group(Group::all(g_vm, everywhere));
    out.group(Group::all(g_tunnel, local));
    for (origin, group) in [(FROM_VM, g_vm), (FROM_TUNNEL, g_tunnel)] {
        let m = in_vi(vi.id)
            .reg(REG_ORIGIN, origin)
            .eth_dst_masked(GROUP_BIT, GROUP_BIT);
        add(
            out,
            TABLE_FORWARD,
            50,
            m,
            vec![apply(vec![Action::Group(group)])],
        );
    }

    let m = in_vi(vi.id).reg(REG_ORIGIN, FROM_VM);
    add(
        out,
        TABLE_FORWARD,
        10,
        m,
        vec![apply(p.unknown_unicast.clone())],
    );
    // Unknown unicast that came by tunnel was flooded by its sender (a
    // gateway floods what its data center sends to a MAC it does not know,
    // the other hosts of a VI without gateway flood their own): delivered
    // to the local ports, it reaches a guest whose MAC has just appeared
    // here before that MAC's own flows do, and a guest that has never sent
    // a frame at all.
    let m = in_vi(vi.id).reg(REG_ORIGIN, FROM_TUNNEL);
    add(
        out,
        TABLE_FORWARD,
        10,
        m,
        vec![apply(vec![Action::Group(g_tunnel)])],
    );
    if p.is_gateway {
        // On a gateway the VI's ports lead into the operator's data center:
        // a request from there may be for a neighbour there, which answers
        // itself. Answered here, the reply would leave with that
        // neighbour's MAC as its source and teach the operator's switches
        // that it lives behind the gateway. So it is flooded in the VI
        // (the HaaS owner of the address answers) and never answered.
        let m = in_vi(vi.id)
            .reg(REG_ORIGIN, FROM_VM)
            .eth_type(ARP)
            .arp_op(ARP_REQUEST);
        add(
            out,
            TABLE_ARP,
            GATEWAY_ARP_PRIORITY,
            m,
            vec![goto(TABLE_FORWARD)],
        );
    }
}

/// Above the responder (100) and probe (110) flows: see [`vi_flows`].
const GATEWAY_ARP_PRIORITY: u16 = 120;

/// Source checks and forwarding for every MAC of the VI the registry places.
fn mac_flows(
    out: &mut impl FlowSink,
    p: &Present<'_>,
    registry: &Registry,
    topology: &Topology,
    host: &HostName,
) {
    for (key, entry) in registry.macs_in(p.vi.id) {
        mac_entry_flows(out, p, key, entry, topology, host);
    }
}

/// Source check and forwarding for one MAC.
fn mac_entry_flows(
    out: &mut impl FlowSink,
    p: &Present<'_>,
    key: &MacKey,
    entry: &MacEntry,
    topology: &Topology,
    host: &HostName,
) {
    let vi = p.vi;
    let to_mac = vlan_match(in_vi(vi.id), key.vlan).eth_dst(key.mac.0);
    let check = goto(TABLE_ARP);
    match &entry.location {
        None => {}
        Some(Location::Port { host: h, ofport }) if h == host => {
            // A port of another VI (or gone) never carries this VI's MAC.
            if !p.local.contains(ofport) {
                if topology.departed_from(host, *ofport, key) {
                    // Its guest left with the port and has not shown up
                    // anywhere yet: what is sent to it waits in the
                    // controller for it to reappear.
                    add(out, TABLE_FORWARD, 100, to_mac, vec![controller()]);
                }
                return;
            }
            let src = vlan_match(from(FROM_VM).in_port(*ofport), key.vlan).eth_src(key.mac.0);
            add(out, TABLE_INTERCEPT, 100, src, vec![check]);
            let output = apply(vec![Action::output(*ofport)]);
            add(out, TABLE_FORWARD, 100, to_mac, vec![output]);
        }
        Some(Location::BehindGateway { gateway }) if gateway == host => {
            // The operator's data center is reached through this
            // gateway's own ports in the VI.
            let src = vlan_match(from(FROM_VM), key.vlan)
                .metadata(u64::from(vi.id.0))
                .eth_src(key.mac.0);
            add(out, TABLE_INTERCEPT, 100, src, vec![check]);
            let local = apply(vec![Action::Group(flood_group(vi.id, true))]);
            add(out, TABLE_FORWARD, 100, to_mac, vec![local]);
        }
        Some(Location::Port { host: h, .. } | Location::BehindGateway { gateway: h }) => {
            let Some(tunnel) = topology.tunnel_port(host, h) else {
                return;
            };
            if topology.moved_from(host, key) {
                // It left this host a moment ago: a switch that has not
                // taken its move yet still sends it here. The controller
                // forwards those frames; a tunnel output here would break
                // the rule below, and be dropped when the frame came from
                // the MAC's new host.
                let stray = to_mac.clone().reg(REG_ORIGIN, FROM_TUNNEL);
                add(out, TABLE_FORWARD, 100, stray, vec![controller()]);
            }
            // Only what entered here may leave by tunnel: two switches
            // that disagree for a moment about a MAC cannot bounce a
            // frame between them.
            let m = to_mac.reg(REG_ORIGIN, FROM_VM);
            let send = apply(vec![set_tun_id(vi.gre_key), Action::output(tunnel)]);
            add(out, TABLE_FORWARD, 100, m, vec![send]);
        }
    }
}

/// GARP interception and the ARP responder for every IP of the VI.
fn ip_flows(out: &mut impl FlowSink, p: &Present<'_>, registry: &Registry) {
    for (key, entry) in registry.ips_in(p.vi.id) {
        ip_entry_flows(out, p, key, entry);
    }
}

/// GARP interception and the ARP responder for one IP.
fn ip_entry_flows(out: &mut impl FlowSink, p: &Present<'_>, key: &IpKey, entry: &IpEntry) {
    let vi = p.vi;
    let arp = vlan_match(from(FROM_VM), key.vlan)
        .metadata(u64::from(vi.id.0))
        .eth_type(ARP);
    let garp = arp.clone().arp_spa(key.ip).arp_tpa(key.ip);
    let announce = vec![controller(), goto(TABLE_FORWARD)];
    add(out, TABLE_INTERCEPT, 200, garp, announce);
    let request = arp.arp_op(ARP_REQUEST).arp_tpa(key.ip);
    let answer = apply(arp_responder(entry.mac, key.ip));
    add(out, TABLE_ARP, 100, request, vec![answer]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{host, world};
    use crate::model::MacKey;
    use crate::registry::{IpEntry, MacEntry, Origin, Timestamp};

    fn placed(vi: u32, mac: &str, location: Location) -> (MacKey, MacEntry) {
        let key = MacKey {
            vi: ViId(vi),
            vlan: Vlan::Tagged(10),
            mac: mac.parse().unwrap(),
        };
        let entry = MacEntry {
            location: Some(location),
            origin: Origin::Api,
            since: Timestamp(0),
        };
        (key, entry)
    }

    #[test]
    fn a_gateway_floods_the_operators_arp_requests_above_every_answer() {
        let t = world();
        let on = |h: &str| {
            compile(&Registry::new(), &t, &host(h))
                .flows
                .values()
                .filter(|f| f.table == TABLE_ARP && f.priority == GATEWAY_ARP_PRIORITY)
                .map(|f| (f.match_.lookup().metadata(), f.instructions.clone()))
                .collect::<Vec<_>>()
        };
        // gw is VI 1's gateway; a, a compute host, gets no such flow.
        assert_eq!(on("gw"), [(Some((1, None)), vec![goto(TABLE_FORWARD)])]);
        assert!(on("a").is_empty());
    }

    #[test]
    fn a_host_outside_every_vi_gets_only_the_skeleton() {
        let mut t = world();
        t.vm_ports.clear();
        t.vis.values_mut().for_each(|v| v.gateways.clear());
        let s = compile(&Registry::new(), &t, &host("a"));
        let flows: Vec<(u8, u16)> = s.flows.values().map(|f| (f.table, f.priority)).collect();
        // Table 0's priority-1 flows send up RARP and ARP (announcements of
        // ports not classified yet).
        assert_eq!(
            flows,
            [(0, 1), (0, 1), (0, 0), (1, 10), (1, 0), (2, 0), (3, 0)]
        );
        assert!(s.groups.is_empty());
    }

    #[test]
    fn only_present_and_valid_vis_get_flows() {
        let mut t = world();
        // VI 2 has ports on a and b only; c and gw carry nothing of it.
        for h in ["c", "gw"] {
            let s = compile(&Registry::new(), &t, &host(h));
            assert!(!s.groups.contains_key(&flood_group(ViId(2), false)), "{h}");
            assert!(s
                .flows
                .values()
                .all(|f| f.match_.lookup().metadata() != Some((2, None))));
        }
        // An id too large for Iris's group range is refused outright.
        let mut big = t.vis[&ViId(2)].clone();
        big.id = ViId(ViId::MAX + 1);
        t.vis.remove(&ViId(2));
        t.vis.insert(big.id, big);
        for p in t.vm_ports.values_mut().filter(|p| p.vi == ViId(2)) {
            p.vi = ViId(ViId::MAX + 1);
        }
        let s = compile(&Registry::new(), &t, &host("a"));
        assert_eq!(s.groups.len(), 2, "VI 1's two groups only");
    }

    #[test]
    fn a_mac_never_lands_on_another_vis_port() {
        let t = world();
        // a:2 belongs to VI 2; a VI 1 MAC placed there is ignored on a.
        let wrong = placed(
            1,
            "52:54:00:00:00:01",
            Location::Port {
                host: host("a"),
                ofport: 2,
            },
        );
        let r = Registry::restore([wrong], []);
        let with = compile(&r, &t, &host("a"));
        let without = compile(&Registry::new(), &t, &host("a"));
        assert_eq!(with, without);
    }

    #[test]
    fn changes_affect_the_members_of_their_vi() {
        let t = world();
        let mut r = Registry::new();
        let port = t.vm_port(&host("b"), 2).unwrap().clone();
        let vi2 = r.learn_source(
            Timestamp(0),
            &port,
            Vlan::Untagged,
            "52:54:00:00:00:01".parse().unwrap(),
        );
        let names = |c| {
            affected_hosts(&t, c)
                .into_iter()
                .map(|h| h.0.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&vi2), ["a", "b"]);
        let port = t.vm_port(&host("c"), 3).unwrap().clone();
        let vi1 = r.learn_source(
            Timestamp(0),
            &port,
            Vlan::Untagged,
            "52:54:00:00:00:01".parse().unwrap(),
        );
        assert_eq!(names(&vi1), ["a", "b", "c", "gw"]);
        assert!(names(&[]).is_empty());
    }

    fn ip(vi: u32, last: u8, mac: u8) -> (IpKey, IpEntry) {
        let key = IpKey {
            vi: ViId(vi),
            vlan: Vlan::Tagged(10),
            ip: Ipv4Addr::new(10, 0, 0, last),
        };
        let entry = IpEntry {
            mac: MacAddr([0x52, 0x54, 0, 0, 0, mac]),
            origin: Origin::Api,
            since: Timestamp(0),
        };
        (key, entry)
    }

    /// Every host compiled with one memo, into each kind of sink, against
    /// what compiling it alone gives.
    fn memo_agrees(r: &Registry, t: &Topology, memo: &mut Memo, actual: &Installed) {
        for h in crate::fixtures::HOSTS {
            let h = host(h);
            let want = compile(r, t, &h);
            let mut whole = SwitchState::default();
            compile_into_memo(r, t, &h, &mut whole, memo);
            assert_eq!(whole, want, "{h}");
            let mut tables = Installed::default();
            compile_into_memo(r, t, &h, &mut tables, memo);
            assert_eq!(tables, Installed::of(&want), "{h}");
            let mut fresh = crate::reconciler::Diff::new(actual);
            compile_into(r, t, &h, &mut fresh);
            let mut memoised = crate::reconciler::Diff::new(actual);
            compile_into_memo(r, t, &h, &mut memoised, memo);
            let keep = crate::reconciler::Foreign::Keep;
            assert_eq!(memoised.finish(keep), fresh.finish(keep), "{h}");
        }
    }

    proptest::proptest! {
        #[test]
        fn tables_compiled_with_the_memo_are_those_compiled_alone(
            ips in proptest::collection::vec((1u32..=2, 1u8..=40, 1u8..=8), 0..24),
            held in proptest::collection::vec((0usize..4, proptest::bool::ANY), 0..4),
        ) {
            let t = world();
            let macs = (1..=8u8).map(|m| {
                placed(1 + u32::from(m % 2), &format!("52:54:00:00:00:{m:02x}"),
                    Location::BehindGateway { gateway: host("gw") })
            });
            let mut r = Registry::restore(macs, ips.iter().map(|&(v, l, m)| ip(v, l, m)));
            // What a switch holds: some host's flows, some with another cookie.
            let mut actual = Installed::default();
            for (i, stale) in held {
                let s = compile(&r, &t, &host(crate::fixtures::HOSTS[i]));
                for f in s.flows.values() {
                    actual.insert_flow(f.key().key_ref(), f.cookie ^ u64::from(stale));
                }
            }
            let mut memo = Memo::default();
            memo_agrees(&r, &t, &mut memo, &actual);
            // A registry write leaves nothing of the memo trusted.
            r.remove_vi(ViId(1));
            memo_agrees(&r, &t, &mut memo, &actual);
        }
    }

    #[test]
    fn group_numbers_stay_in_iris_range() {
        assert_eq!(flood_group(ViId(1), false), 2);
        assert_eq!(flood_group(ViId(1), true), 3);
        let last = flood_group(ViId(ViId::MAX), true);
        assert!(is_iris_group(2) && is_iris_group(last));
        assert!(!is_iris_group(0) && !is_iris_group(1) && !is_iris_group(last + 1));
    }

    #[test]
    fn the_responder_rewrites_in_the_order_the_doc_gives() {
        let mac: MacAddr = "52:54:00:00:00:02".parse().unwrap();
        let text =
            ofp::action::ActionList(&arp_responder(mac, Ipv4Addr::new(10, 0, 0, 2))).to_string();
        assert_eq!(
            text,
            "actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:52:54:00:00:00:02->eth_src,\
             set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],\
             move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:52:54:00:00:00:02->arp_sha,\
             set_field:10.0.0.2->arp_spa,IN_PORT"
        );
    }
}
