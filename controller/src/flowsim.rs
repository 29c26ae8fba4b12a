//! A simulated OpenFlow 1.3 switch, in the spirit of Faucet's fakeoftable:
//! it holds flows and groups, applies FLOW_MOD and GROUP_MOD the way Open
//! vSwitch does, and runs a packet through the pipeline to say where it goes.
//!
//! It implements what Iris's pipeline uses and refuses the rest with
//! [`SimError::Unsupported`] rather than guessing: matches on ports,
//! metadata, registers, tunnel id, Ethernet, VLAN id (with `OFPVID_NONE` and
//! `OFPVID_PRESENT`), ARP/RARP and IPv4 fields with masks and prerequisites;
//! `goto_table`, `write_metadata`, `apply_actions`; output (with `IN_PORT`
//! and `CONTROLLER`), ALL groups, `set_field` and Nicira/ONF field moves.
//! Like OVS, output to the port a packet came in on is dropped unless the
//! port is `IN_PORT`, and two flows of equal priority that both match are an
//! error (OpenFlow leaves the choice undefined, so a pipeline must not rely
//! on it).
//!
//! [`Fabric`] wires one simulated switch per host through the tunnel mesh.

use crate::compiler::compile;
use crate::model::{HostName, Topology};
use crate::packet_in::PacketInMeta;
use crate::reconciler::{reconcile, Foreign, Plan};
use crate::registry::Registry;
use crate::switch_state::{Flow, Group, SwitchState};
use ofp::action::{port, Action, FieldMove};
use ofp::instruction::Instruction;
use ofp::message::{
    FlowMod, FlowModCommand, GroupMod, GroupModCommand, GroupType, Message, PacketInReason,
    PacketOut,
};
use ofp::oxm::{class, FieldId, OxmField};
use std::collections::{BTreeMap, VecDeque};

/// Why the simulator refused a message or a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("the simulator does not implement {0}")]
    Unsupported(String),
    #[error("table {table}: {field} needs eth_type {needs} in the match (OFPBMC_BAD_PREREQ)")]
    BadPrerequisite {
        table: u8,
        field: &'static str,
        needs: &'static str,
    },
    #[error("table {table}: goto_table:{to} does not go forward (OFPBIC_BAD_TABLE_ID)")]
    GotoBackward { table: u8, to: u8 },
    #[error("group {0} does not exist (OFPBAC_BAD_OUT_GROUP / OFPGMFC_UNKNOWN_GROUP)")]
    UnknownGroup(u32),
    #[error("group {0} already exists (OFPGMFC_GROUP_EXISTS)")]
    GroupExists(u32),
    #[error("table {table}, priority {priority}: {count} flows match the packet; the pipeline must not rely on which one a switch picks")]
    Ambiguous {
        table: u8,
        priority: u16,
        count: usize,
    },
    #[error("frame of {0} bytes is shorter than an Ethernet header")]
    ShortFrame(usize),
    #[error("a move reads or writes bits outside {0}")]
    BadSubfield(&'static str),
    #[error("packet went through more than {0} switches; a forwarding loop")]
    Loop(usize),
    #[error("host {host} output to tunnel port {port}, which leads nowhere")]
    DeadTunnel { host: HostName, port: u32 },
    #[error("no simulated switch for host {0}")]
    UnknownHost(HostName),
}

type Result<T> = std::result::Result<T, SimError>;

/// The fields the simulator knows, whatever their wire encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    InPort,
    Metadata,
    TunId,
    Reg(u8),
    EthDst,
    EthSrc,
    EthType,
    VlanVid,
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
    ArpTha,
    Ipv4Src,
    Ipv4Dst,
    IpProto,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::InPort => "in_port",
            Field::Metadata => "metadata",
            Field::TunId => "tun_id",
            Field::Reg(_) => "reg",
            Field::EthDst => "eth_dst",
            Field::EthSrc => "eth_src",
            Field::EthType => "eth_type",
            Field::VlanVid => "vlan_vid",
            Field::ArpOp => "arp_op",
            Field::ArpSpa => "arp_spa",
            Field::ArpTpa => "arp_tpa",
            Field::ArpSha => "arp_sha",
            Field::ArpTha => "arp_tha",
            Field::Ipv4Src => "ip_src",
            Field::Ipv4Dst => "ip_dst",
            Field::IpProto => "ip_proto",
        }
    }

    fn bits(self) -> u32 {
        match self {
            Field::InPort | Field::Reg(_) | Field::ArpSpa | Field::ArpTpa => 32,
            Field::Ipv4Src | Field::Ipv4Dst => 32,
            Field::Metadata | Field::TunId => 64,
            Field::EthDst | Field::EthSrc | Field::ArpSha | Field::ArpTha => 48,
            Field::EthType | Field::ArpOp => 16,
            Field::VlanVid => 13,
            Field::IpProto => 8,
        }
    }

    /// The eth_type values a match must pin for this field to be usable.
    fn prerequisite(self) -> Option<(&'static [u16], &'static str)> {
        match self {
            Field::ArpOp | Field::ArpSpa | Field::ArpTpa | Field::ArpSha | Field::ArpTha => {
                Some((&[0x0806, 0x8035], "arp or rarp"))
            }
            Field::Ipv4Src | Field::Ipv4Dst | Field::IpProto => Some((&[0x0800], "ip")),
            _ => None,
        }
    }

    /// The field a move or load names, in OXM or either NXM class.
    fn from_id(id: FieldId) -> Option<Self> {
        Some(match (id.class, id.field) {
            (class::OPENFLOW_BASIC, 0) | (class::NXM_0, 0) => Field::InPort,
            (class::OPENFLOW_BASIC, 2) => Field::Metadata,
            (class::OPENFLOW_BASIC, 3) | (class::NXM_0, 1) => Field::EthDst,
            (class::OPENFLOW_BASIC, 4) | (class::NXM_0, 2) => Field::EthSrc,
            (class::OPENFLOW_BASIC, 5) | (class::NXM_0, 3) => Field::EthType,
            (class::OPENFLOW_BASIC, 6) => Field::VlanVid,
            (class::OPENFLOW_BASIC, 10) | (class::NXM_0, 6) => Field::IpProto,
            (class::OPENFLOW_BASIC, 11) | (class::NXM_0, 7) => Field::Ipv4Src,
            (class::OPENFLOW_BASIC, 12) | (class::NXM_0, 8) => Field::Ipv4Dst,
            (class::OPENFLOW_BASIC, 21) | (class::NXM_0, 15) => Field::ArpOp,
            (class::OPENFLOW_BASIC, 22) | (class::NXM_0, 16) => Field::ArpSpa,
            (class::OPENFLOW_BASIC, 23) | (class::NXM_0, 17) => Field::ArpTpa,
            (class::OPENFLOW_BASIC, 24) | (class::NXM_1, 17) => Field::ArpSha,
            (class::OPENFLOW_BASIC, 25) | (class::NXM_1, 18) => Field::ArpTha,
            (class::OPENFLOW_BASIC, 38) | (class::NXM_1, 16) => Field::TunId,
            (class::NXM_1, n @ 0..=15) => Field::Reg(n),
            _ => return None,
        })
    }
}

fn mac_u128(m: [u8; 6]) -> u128 {
    m.iter().fold(0, |acc, b| (acc << 8) | u128::from(*b))
}

fn ones(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// A match field as (field, value, mask), masks filled in.
fn term(f: &OxmField) -> Result<(Field, u128, u128)> {
    use OxmField as F;
    let full = |field: Field, v: u128, m: Option<u128>| {
        (field, v, m.unwrap_or_else(|| ones(field.bits())))
    };
    Ok(match f {
        F::InPort(p) => full(Field::InPort, u128::from(*p), None),
        F::EthType(t) => full(Field::EthType, u128::from(*t), None),
        F::ArpOp(o) => full(Field::ArpOp, u128::from(*o), None),
        F::IpProto(p) => full(Field::IpProto, u128::from(*p), None),
        F::Metadata(v, m) => full(Field::Metadata, u128::from(*v), m.map(u128::from)),
        F::TunnelId(v, m) | F::NxTunId(v, m) => {
            full(Field::TunId, u128::from(*v), m.map(u128::from))
        }
        F::Reg(n, v, m) => full(Field::Reg(*n), u128::from(*v), m.map(u128::from)),
        F::VlanVid(v, m) => full(Field::VlanVid, u128::from(*v), m.map(u128::from)),
        F::EthDst(v, m) => full(Field::EthDst, mac_u128(*v), m.map(mac_u128)),
        F::EthSrc(v, m) => full(Field::EthSrc, mac_u128(*v), m.map(mac_u128)),
        F::ArpSha(v, m) => full(Field::ArpSha, mac_u128(*v), m.map(mac_u128)),
        F::ArpTha(v, m) => full(Field::ArpTha, mac_u128(*v), m.map(mac_u128)),
        F::ArpSpa(v, m) => full(Field::ArpSpa, ip_u128(*v), m.map(ip_u128)),
        F::ArpTpa(v, m) => full(Field::ArpTpa, ip_u128(*v), m.map(ip_u128)),
        F::Ipv4Src(v, m) => full(Field::Ipv4Src, ip_u128(*v), m.map(ip_u128)),
        F::Ipv4Dst(v, m) => full(Field::Ipv4Dst, ip_u128(*v), m.map(ip_u128)),
        other => {
            return Err(SimError::Unsupported(format!(
                "matching on {}",
                other.name()
            )))
        }
    })
}

fn ip_u128(ip: std::net::Ipv4Addr) -> u128 {
    u128::from(u32::from(ip))
}

/// Offsets of the ARP fields in an ARP body.
const ARP_OP_AT: usize = 6;
const ARP_SHA_AT: usize = 8;
const ARP_SPA_AT: usize = 14;
const ARP_THA_AT: usize = 18;
const ARP_TPA_AT: usize = 24;
const ARP_BODY: usize = 28;

/// A packet in flight: the frame plus its pipeline fields.
#[derive(Debug, Clone)]
struct Packet {
    in_port: u32,
    tun_id: u64,
    metadata: u64,
    regs: [u32; 16],
    frame: Vec<u8>,
    /// Offset of the EtherType after the VLAN tags.
    ethertype_at: usize,
}

impl Packet {
    fn new(in_port: u32, tun_id: u64, frame: &[u8]) -> Result<Self> {
        if frame.len() < 14 {
            return Err(SimError::ShortFrame(frame.len()));
        }
        let mut at = 12;
        // One 802.1Q tag is what Iris's VMs carry; OVS parses up to two.
        for _ in 0..2 {
            let tpid = u16::from_be_bytes([frame[at], frame[at + 1]]);
            if (tpid == 0x8100 || tpid == 0x88a8) && frame.len() >= at + 6 {
                at += 4;
            } else {
                break;
            }
        }
        Ok(Self {
            in_port,
            tun_id,
            metadata: 0,
            regs: [0; 16],
            frame: frame.to_vec(),
            ethertype_at: at,
        })
    }

    fn be(&self, at: usize, len: usize) -> Option<u128> {
        let b = self.frame.get(at..at + len)?;
        Some(b.iter().fold(0, |acc, x| (acc << 8) | u128::from(*x)))
    }

    fn eth_type(&self) -> u16 {
        self.be(self.ethertype_at, 2).map_or(0, |v| v as u16)
    }

    /// Where an Ethernet/IPv4 ARP or RARP body starts, if there is one.
    fn arp_at(&self) -> Option<usize> {
        let at = self.ethertype_at + 2;
        let body = self.frame.get(at..at + ARP_BODY)?;
        let (t, ok) = (self.eth_type(), body[..6] == [0, 1, 8, 0, 6, 4]);
        ((t == 0x0806 || t == 0x8035) && ok).then_some(at)
    }

    /// Where an IPv4 header starts, if there is one.
    fn ipv4_at(&self) -> Option<usize> {
        let at = self.ethertype_at + 2;
        (self.eth_type() == 0x0800 && self.frame.len() >= at + 20).then_some(at)
    }

    /// The field's value; `None` when the packet does not have it.
    fn get(&self, f: Field) -> Option<u128> {
        match f {
            Field::InPort => Some(u128::from(self.in_port)),
            Field::Metadata => Some(u128::from(self.metadata)),
            Field::TunId => Some(u128::from(self.tun_id)),
            Field::Reg(n) => Some(u128::from(self.regs[usize::from(n)])),
            Field::EthDst => self.be(0, 6),
            Field::EthSrc => self.be(6, 6),
            Field::EthType => Some(u128::from(self.eth_type())),
            Field::VlanVid => Some(if self.ethertype_at > 12 {
                0x1000 | (self.be(14, 2)? & 0x0fff)
            } else {
                0
            }),
            Field::ArpOp => self.be(self.arp_at()? + ARP_OP_AT, 2),
            Field::ArpSha => self.be(self.arp_at()? + ARP_SHA_AT, 6),
            Field::ArpSpa => self.be(self.arp_at()? + ARP_SPA_AT, 4),
            Field::ArpTha => self.be(self.arp_at()? + ARP_THA_AT, 6),
            Field::ArpTpa => self.be(self.arp_at()? + ARP_TPA_AT, 4),
            Field::Ipv4Src => self.be(self.ipv4_at()? + 12, 4),
            Field::Ipv4Dst => self.be(self.ipv4_at()? + 16, 4),
            Field::IpProto => self.be(self.ipv4_at()? + 9, 1),
        }
    }

    /// Writes a field; header fields are rewritten in the frame itself.
    fn set(&mut self, f: Field, v: u128) -> Result<()> {
        let v = v & ones(f.bits());
        let (at, len) = match f {
            Field::Metadata => {
                self.metadata = v as u64;
                return Ok(());
            }
            Field::TunId => {
                self.tun_id = v as u64;
                return Ok(());
            }
            Field::Reg(n) => {
                self.regs[usize::from(n)] = v as u32;
                return Ok(());
            }
            Field::EthDst => (0, 6),
            Field::EthSrc => (6, 6),
            Field::ArpOp | Field::ArpSha | Field::ArpSpa | Field::ArpTha | Field::ArpTpa => {
                let arp = self.arp_at().ok_or(SimError::BadSubfield(f.name()))?;
                match f {
                    Field::ArpOp => (arp + ARP_OP_AT, 2),
                    Field::ArpSha => (arp + ARP_SHA_AT, 6),
                    Field::ArpSpa => (arp + ARP_SPA_AT, 4),
                    Field::ArpTha => (arp + ARP_THA_AT, 6),
                    _ => (arp + ARP_TPA_AT, 4),
                }
            }
            other => {
                return Err(SimError::Unsupported(format!("writing {}", other.name())));
            }
        };
        let bytes = v.to_be_bytes();
        self.frame[at..at + len].copy_from_slice(&bytes[16 - len..]);
        Ok(())
    }
}

/// Where a packet went out of a switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub port: u32,
    /// The packet's tunnel id when it left (what a GRE port puts in the key).
    pub tun_id: u64,
    /// The frame after every rewrite.
    pub frame: Vec<u8>,
}

/// A packet the switch sent to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToController {
    pub table_id: u8,
    /// The cookie of the flow that sent it.
    pub cookie: u64,
    pub in_port: u32,
    pub tun_id: u64,
    pub frame: Vec<u8>,
}

impl ToController {
    /// What the controller reads from the PACKET_IN this would be.
    pub fn meta(&self) -> PacketInMeta {
        PacketInMeta {
            reason: PacketInReason::Action,
            table_id: self.table_id,
            cookie: self.cookie,
            in_port: self.in_port,
            tun_id: (self.tun_id != 0).then_some(self.tun_id),
        }
    }
}

/// One flow a packet matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub table: u8,
    pub priority: u16,
    pub cookie: u64,
}

/// What a switch did with one packet. Nothing in `outputs` and
/// `to_controller` means it was dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub outputs: Vec<Output>,
    pub to_controller: Vec<ToController>,
    /// The flows matched, in pipeline order.
    pub path: Vec<Hit>,
}

/// A simulated switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Switch {
    state: SwitchState,
}

impl Switch {
    pub fn new() -> Self {
        Self::default()
    }

    /// What a flow and group dump would report.
    pub fn state(&self) -> &SwitchState {
        &self.state
    }

    /// Applies messages in order, as a switch would; stops at the first
    /// one it refuses.
    pub fn apply_all<'a>(&mut self, msgs: impl IntoIterator<Item = &'a Message>) -> Result<()> {
        msgs.into_iter().try_for_each(|m| self.apply(m))
    }

    /// Applies one message with Open vSwitch's OpenFlow 1.3 semantics: ADD
    /// replaces a flow of the same identity (cookie included);
    /// MODIFY_STRICT replaces only the instructions and keeps the cookie;
    /// DELETE_STRICT removes the flow if its cookie matches under the mask;
    /// deleting a group deletes the flows that use it.
    pub fn apply(&mut self, msg: &Message) -> Result<()> {
        match msg {
            Message::FlowMod(fm) => self.flow_mod(fm),
            Message::GroupMod(gm) => self.group_mod(gm),
            Message::BarrierRequest => Ok(()),
            other => Err(SimError::Unsupported(format!(
                "{:?} messages",
                other.msg_type()
            ))),
        }
    }

    fn flow_mod(&mut self, fm: &FlowMod) -> Result<()> {
        let flow = Flow {
            cookie: fm.cookie,
            ..Flow::new(
                fm.table_id,
                fm.priority,
                fm.match_.clone(),
                fm.instructions.clone(),
            )
        };
        let key = flow.key();
        let cookie_ok = |f: &Flow| f.cookie & fm.cookie_mask == fm.cookie & fm.cookie_mask;
        match fm.command {
            FlowModCommand::Add => {
                self.check(&flow)?;
                self.state.insert_flow(flow);
            }
            FlowModCommand::ModifyStrict => {
                self.check(&flow)?;
                if let Some(f) = self.state.flows.get_mut(&key).filter(|f| cookie_ok(f)) {
                    f.instructions = flow.instructions;
                }
            }
            FlowModCommand::DeleteStrict => {
                if self.state.flows.get(&key).is_some_and(cookie_ok) {
                    self.state.flows.remove(&key);
                }
            }
            other => return Err(SimError::Unsupported(format!("FLOW_MOD {other}"))),
        }
        Ok(())
    }

    fn group_mod(&mut self, gm: &GroupMod) -> Result<()> {
        if gm.group_type != GroupType::All && gm.command != GroupModCommand::Delete {
            return Err(SimError::Unsupported(format!("{} groups", gm.group_type)));
        }
        let id = gm.group_id;
        let group = Group::normalised(id, gm.group_type, &gm.buckets);
        match gm.command {
            GroupModCommand::Add if self.state.groups.contains_key(&id) => {
                return Err(SimError::GroupExists(id))
            }
            GroupModCommand::Modify if !self.state.groups.contains_key(&id) => {
                return Err(SimError::UnknownGroup(id))
            }
            GroupModCommand::Add | GroupModCommand::Modify => {
                for b in &group.buckets {
                    check_actions(&b.actions, &[], 0, &self.state)?;
                }
                self.state.insert_group(group);
            }
            GroupModCommand::Delete => {
                self.state.groups.remove(&id);
                self.state.flows.retain(|_, f| f.groups().all(|g| g != id));
            }
            other => return Err(SimError::Unsupported(format!("GROUP_MOD {other}"))),
        }
        Ok(())
    }

    /// What OVS checks when a flow is added: fields it can match,
    /// prerequisites of matched and written fields, forward gotos, groups
    /// that exist.
    fn check(&self, flow: &Flow) -> Result<()> {
        let terms = flow
            .match_
            .fields
            .iter()
            .map(term)
            .collect::<Result<Vec<_>>>()?;
        let eth_types: Vec<u16> = terms
            .iter()
            .filter(|(f, _, m)| *f == Field::EthType && *m == 0xffff)
            .map(|(_, v, _)| *v as u16)
            .collect();
        for (f, ..) in &terms {
            prerequisite(flow.table, *f, &eth_types)?;
        }
        for i in &flow.instructions {
            match i {
                Instruction::GotoTable(t) if *t <= flow.table => {
                    return Err(SimError::GotoBackward {
                        table: flow.table,
                        to: *t,
                    })
                }
                Instruction::GotoTable(_) | Instruction::WriteMetadata { .. } => {}
                Instruction::ApplyActions(a) => {
                    check_actions(a, &eth_types, flow.table, &self.state)?
                }
                other => {
                    return Err(SimError::Unsupported(format!("instruction {other}")));
                }
            }
        }
        Ok(())
    }

    /// Runs a packet that arrived on `in_port` (with tunnel id `tun_id`, 0
    /// for a VM port) through the pipeline.
    pub fn process(&self, in_port: u32, tun_id: u64, frame: &[u8]) -> Result<Outcome> {
        let mut pkt = Packet::new(in_port, tun_id, frame)?;
        let mut out = Outcome::default();
        let mut table = 0u8;
        loop {
            let Some(flow) = self.lookup(table, &pkt)? else {
                // OpenFlow 1.3 table miss with no miss flow: drop.
                return Ok(out);
            };
            out.path.push(Hit {
                table,
                priority: flow.priority,
                cookie: flow.cookie,
            });
            let mut next = None;
            for i in &flow.instructions {
                match i {
                    Instruction::ApplyActions(a) => {
                        self.run(a, &mut pkt, (table, flow.cookie), &mut out)?
                    }
                    Instruction::WriteMetadata { metadata, mask } => {
                        pkt.metadata = (pkt.metadata & !mask) | (metadata & mask);
                    }
                    Instruction::GotoTable(t) => next = Some(*t),
                    other => {
                        return Err(SimError::Unsupported(format!("instruction {other}")));
                    }
                }
            }
            match next {
                Some(t) if t > table => table = t,
                Some(t) => return Err(SimError::GotoBackward { table, to: t }),
                None => return Ok(out),
            }
        }
    }

    /// The highest-priority flow of `table` that matches; two at that
    /// priority is an error.
    fn lookup(&self, table: u8, pkt: &Packet) -> Result<Option<&Flow>> {
        let mut found: Option<&Flow> = None;
        let mut count = 0;
        for f in self.state.table(table) {
            if found.is_some_and(|best| best.priority > f.priority) {
                break;
            }
            if matches(f, pkt)? {
                found = Some(f);
                count += 1;
            }
        }
        match found {
            Some(f) if count > 1 => Err(SimError::Ambiguous {
                table,
                priority: f.priority,
                count,
            }),
            other => Ok(other),
        }
    }

    /// Runs apply-actions; `by` is the (table, cookie) a controller packet
    /// reports.
    fn run(
        &self,
        actions: &[Action],
        pkt: &mut Packet,
        by: (u8, u64),
        out: &mut Outcome,
    ) -> Result<()> {
        for a in actions {
            match a {
                Action::Output { port: p, .. } => output(*p, pkt, by, out)?,
                Action::Group(id) => {
                    let g = self
                        .state
                        .groups
                        .get(id)
                        .ok_or(SimError::UnknownGroup(*id))?;
                    for b in &g.buckets {
                        let mut copy = pkt.clone();
                        self.run(&b.actions, &mut copy, by, out)?;
                    }
                }
                Action::SetField(f) => {
                    let (field, v, _) = term(f)?;
                    pkt.set(field, v)?;
                }
                Action::RegMove(m) | Action::CopyField(m) => move_bits(pkt, m)?,
                other => return Err(SimError::Unsupported(format!("action {other:?}"))),
            }
        }
        Ok(())
    }

    /// Runs a PACKET_OUT's actions on its frame, as if it had arrived on
    /// its `in_port`.
    pub fn packet_out(&self, po: &PacketOut) -> Result<Outcome> {
        let mut pkt = Packet::new(po.in_port, 0, &po.data)?;
        let mut out = Outcome::default();
        check_actions(&po.actions, &[], 0, &self.state)?;
        self.run(&po.actions, &mut pkt, (0, 0), &mut out)?;
        Ok(out)
    }
}

fn output(p: u32, pkt: &Packet, (table_id, cookie): (u8, u64), out: &mut Outcome) -> Result<()> {
    let to = match p {
        port::IN_PORT => pkt.in_port,
        port::CONTROLLER => {
            out.to_controller.push(ToController {
                table_id,
                cookie,
                in_port: pkt.in_port,
                tun_id: pkt.tun_id,
                frame: pkt.frame.clone(),
            });
            return Ok(());
        }
        // OVS drops output to the ingress port unless asked by IN_PORT.
        p if p == pkt.in_port => return Ok(()),
        p if p > port::MAX => {
            return Err(SimError::Unsupported(format!(
                "output to reserved port {p:#x}"
            )))
        }
        p => p,
    };
    out.outputs.push(Output {
        port: to,
        tun_id: pkt.tun_id,
        frame: pkt.frame.clone(),
    });
    Ok(())
}

fn matches(f: &Flow, pkt: &Packet) -> Result<bool> {
    for field in &f.match_.fields {
        let (field, v, m) = term(field)?;
        match pkt.get(field) {
            Some(p) if p & m == v & m => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

fn prerequisite(table: u8, f: Field, eth_types: &[u16]) -> Result<()> {
    match f.prerequisite() {
        Some((allowed, needs)) if !eth_types.iter().any(|t| allowed.contains(t)) => {
            Err(SimError::BadPrerequisite {
                table,
                field: f.name(),
                needs,
            })
        }
        _ => Ok(()),
    }
}

/// Checks actions the way OVS does when a flow or group is added.
fn check_actions(
    actions: &[Action],
    eth_types: &[u16],
    table: u8,
    state: &SwitchState,
) -> Result<()> {
    let written = |id: FieldId| {
        Field::from_id(id).ok_or_else(|| SimError::Unsupported(format!("field {id:?}")))
    };
    for a in actions {
        match a {
            Action::Output { .. } => {}
            Action::Group(g) if !state.groups.contains_key(g) => {
                return Err(SimError::UnknownGroup(*g))
            }
            Action::Group(_) => {}
            Action::SetField(f) => {
                let (field, ..) = term(f)?;
                // Group buckets are checked without a match (table 0, no
                // eth_type), so only pipeline fields may be set there.
                prerequisite(table, field, eth_types)?;
            }
            Action::RegMove(m) | Action::CopyField(m) => {
                for id in [m.src.id(), m.dst.id()] {
                    prerequisite(table, written(id)?, eth_types)?;
                }
            }
            other => return Err(SimError::Unsupported(format!("action {other:?}"))),
        }
    }
    Ok(())
}

fn move_bits(pkt: &mut Packet, m: &FieldMove) -> Result<()> {
    let field = |id: FieldId| {
        Field::from_id(id).ok_or_else(|| SimError::Unsupported(format!("moving field {id:?}")))
    };
    let (src, dst) = (field(m.src.id())?, field(m.dst.id())?);
    let n = u32::from(m.n_bits);
    if u32::from(m.src_ofs) + n > src.bits() {
        return Err(SimError::BadSubfield(src.name()));
    }
    if u32::from(m.dst_ofs) + n > dst.bits() {
        return Err(SimError::BadSubfield(dst.name()));
    }
    let v = pkt.get(src).ok_or(SimError::BadSubfield(src.name()))?;
    let cur = pkt.get(dst).ok_or(SimError::BadSubfield(dst.name()))?;
    let bits = (v >> m.src_ofs) & ones(n);
    let mask = ones(n) << m.dst_ofs;
    pkt.set(dst, (cur & !mask) | (bits << m.dst_ofs))
}

/// A frame that reached a VM port (or any non-tunnel port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub host: HostName,
    pub port: u32,
    pub frame: Vec<u8>,
}

/// Everything one injected frame caused across the fabric.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trip {
    pub delivered: Vec<Delivered>,
    pub to_controller: Vec<(HostName, ToController)>,
    /// How many times the frame crossed a tunnel.
    pub tunnel_hops: usize,
}

/// One simulated switch per host, joined by the topology's tunnels: what
/// leaves host A on its tunnel to B enters B on B's tunnel to A, carrying
/// its tunnel id.
#[derive(Debug, Clone)]
pub struct Fabric {
    pub topology: Topology,
    pub switches: BTreeMap<HostName, Switch>,
}

/// How many switches one frame may pass before the fabric calls it a loop.
const MAX_SWITCHES: usize = 64;

impl Fabric {
    /// An empty switch for every host of the topology.
    pub fn new(topology: Topology) -> Self {
        let switches = topology
            .hosts
            .keys()
            .map(|h| (h.clone(), Switch::new()))
            .collect();
        Self { topology, switches }
    }

    pub fn switch(&self, host: &HostName) -> Result<&Switch> {
        self.switches
            .get(host)
            .ok_or_else(|| SimError::UnknownHost(host.clone()))
    }

    pub fn switch_mut(&mut self, host: &HostName) -> Result<&mut Switch> {
        self.switches
            .get_mut(host)
            .ok_or_else(|| SimError::UnknownHost(host.clone()))
    }

    /// Brings every switch to what the compiler wants for `registry`, as the
    /// controller would: compile, reconcile against the switch's tables,
    /// apply the plan. Hosts new to the topology get an empty switch first.
    /// Returns each host's plan.
    pub fn converge(&mut self, registry: &Registry) -> Result<BTreeMap<HostName, Plan>> {
        let mut plans = BTreeMap::new();
        for host in self.topology.hosts.keys() {
            let sw = self.switches.entry(host.clone()).or_default();
            let desired = compile(registry, &self.topology, host);
            let plan = reconcile(&desired, sw.state(), Foreign::Delete);
            sw.apply_all(&plan.messages)?;
            plans.insert(host.clone(), plan);
        }
        Ok(plans)
    }

    /// Sends `frame` into `host`'s switch on `in_port` and follows every
    /// copy through the tunnels.
    pub fn inject(&self, host: &HostName, in_port: u32, frame: &[u8]) -> Result<Trip> {
        let first = self.switch(host)?.process(in_port, 0, frame)?;
        self.follow(host, first)
    }

    /// Executes a PACKET_OUT on `host`'s switch and follows every copy.
    pub fn packet_out(&self, host: &HostName, po: &PacketOut) -> Result<Trip> {
        let first = self.switch(host)?.packet_out(po)?;
        self.follow(host, first)
    }

    /// Delivers what `host` output, sending tunnel outputs on to the peers.
    fn follow(&self, host: &HostName, first: Outcome) -> Result<Trip> {
        let mut trip = Trip::default();
        let mut queue = VecDeque::from([(host.clone(), first)]);
        let mut visits = 1;
        while let Some((h, out)) = queue.pop_front() {
            trip.to_controller
                .extend(out.to_controller.into_iter().map(|p| (h.clone(), p)));
            for o in out.outputs {
                let Some(peer) = self.topology.tunnel_peer(&h, o.port) else {
                    trip.delivered.push(Delivered {
                        host: h.clone(),
                        port: o.port,
                        frame: o.frame,
                    });
                    continue;
                };
                let back =
                    self.topology
                        .tunnel_port(peer, &h)
                        .ok_or_else(|| SimError::DeadTunnel {
                            host: h.clone(),
                            port: o.port,
                        })?;
                visits += 1;
                if visits > MAX_SWITCHES {
                    return Err(SimError::Loop(MAX_SWITCHES));
                }
                trip.tunnel_hops += 1;
                let next = self.switch(peer)?.process(back, o.tun_id, &o.frame)?;
                queue.push_back((peer.clone(), next));
            }
        }
        Ok(trip)
    }
}

#[cfg(test)]
mod tests;
