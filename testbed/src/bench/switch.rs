//! One emulated OpenFlow 1.3 switch, without I/O: it answers what a
//! controller asks during and after the handshake the way Open vSwitch
//! would (as far as a controller can tell from the wire), encodes PacketIns,
//! and picks out of FLOW_MODs and PACKET_OUTs what ties them to a PacketIn.
//!
//! It keeps no flow table: FLOW_MODs, GROUP_MODs and METER_MODs are
//! accepted and counted, flow and group dumps come back empty.

use ofp::codec::Name;
use ofp::header::{HEADER_LEN, OFP_VERSION};
use ofp::message::{
    capabilities, port_no, port_state, AsyncConfig, ControllerRole, ErrorMsg, Hello, HelloElement,
    Message, PacketIn, PacketInReason, Port, QueueGetConfigReply, RoleMsg, SwitchConfig,
    SwitchFeatures, NO_BUFFER,
};
use ofp::multipart::{
    AggregateStats, Desc, GroupFeatures, MeterFeatures, MultipartReply, MultipartReplyBody,
    MultipartRequestBody,
};
use ofp::oxm::{FieldId, Match, OxmIter};
use ofp::packet::{ArpPacket, EtherType, EthernetFrame, MacAddr};
use ofp::{DecodeError, ErrorCode, MsgType, OfpMessage};

/// Who a switch is on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchSpec {
    /// Position among the emulated switches (0-based); also in every host MAC.
    pub index: u16,
    pub datapath_id: u64,
    /// Ports 1..=ports, all up.
    pub ports: u16,
    /// Packet buffers the switch claims: 0 (as Open vSwitch since 2.7) or
    /// more for cbench-style buffered PacketIns.
    pub n_buffers: u32,
}

/// How the PacketIns of a run look: what the flow that sent the packet up
/// would have put in them on a switch running this controller's pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInProfile {
    pub reason: PacketInReason,
    pub table_id: u8,
    pub cookie: u64,
    /// Whether the flow that sent the packet up also sent it on in the
    /// datapath (`CONTROLLER` and `goto_table`), so the controller owes a
    /// flow but no PACKET_OUT; otherwise the packet stopped at the
    /// controller, which must send it on itself.
    pub forwarded: bool,
}

/// What a message from the controller was, for the caller's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A FLOW_MOD or PACKET_OUT, with what may tie it to a PacketIn.
    Answer(Answer),
    /// The controller reported an error about something the switch sent.
    Error(ErrorCode),
    /// Anything else (handshake, echo, barrier, group and meter mods, ...),
    /// already answered when it needed an answer.
    Other(MsgType),
}

/// The two kinds of message a controller answers a PacketIn with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    FlowMod,
    PacketOut,
}

/// A FLOW_MOD or PACKET_OUT and what can tie it to a PacketIn: the switch
/// buffer it releases, the MACs it names, most telling first (Ethernet
/// source, destination, ARP sender, target), and the ARP sender and target
/// IPs; and what says whether it answers it: where it sends packets, and
/// for a FLOW_MOD whether it adds a flow, for an ARP frame its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub kind: AnswerKind,
    pub buffer_id: Option<u32>,
    pub macs: [Option<[u8; 6]>; 4],
    pub ips: [Option<[u8; 4]>; 2],
    /// A FLOW_MOD whose command is ADD.
    pub adds: bool,
    /// The one port its actions output to (OFPP_IN_PORT resolved to the
    /// PACKET_OUT's or the match's in_port); `None` when they output
    /// nowhere, to several ports, or to a group.
    pub out_port: Option<u32>,
    /// The operation of the ARP frame a PACKET_OUT carries.
    pub arp_op: Option<u16>,
}

/// The version bitmap element of our HELLO: OpenFlow 1.3 only.
const VERSION_BITMAP: u32 = 1 << OFP_VERSION;
/// What the switch claims in FEATURES_REPLY, as Open vSwitch does.
const CAPABILITIES: u32 = capabilities::FLOW_STATS
    | capabilities::TABLE_STATS
    | capabilities::PORT_STATS
    | capabilities::GROUP_STATS
    | capabilities::QUEUE_STATS;
const N_TABLES: u8 = 254;
/// 10 Gb/s, in kbit/s.
const PORT_SPEED: u32 = 10_000_000;
/// OFPPF_10GB_FD | OFPPF_COPPER.
const PORT_FEATURES: u32 = (1 << 6) | (1 << 11);
/// OVS's default miss_send_len.
const DEFAULT_MISS_SEND_LEN: u16 = 128;

// Offsets into whole messages, from the OpenFlow 1.3 structures.
const XID_AT: usize = 4;
const LEN_AT: usize = 2;
const PI_BUFFER_AT: usize = HEADER_LEN;
const PI_TOTAL_LEN_AT: usize = HEADER_LEN + 4;
/// `ofp_flow_mod`: command after cookie, cookie_mask and table_id;
/// buffer_id, then the match after out_port, out_group, flags and padding.
const FM_COMMAND_AT: usize = HEADER_LEN + 17;
const FM_BUFFER_AT: usize = HEADER_LEN + 24;
const FM_MATCH_AT: usize = HEADER_LEN + 40;
/// `ofp_packet_out`: buffer_id, in_port, actions_len, 6 bytes of padding.
const PO_BUFFER_AT: usize = HEADER_LEN;
const PO_IN_PORT_AT: usize = HEADER_LEN + 4;
const PO_ACTIONS_LEN_AT: usize = HEADER_LEN + 8;
const PO_ACTIONS_AT: usize = HEADER_LEN + 16;

/// The switch's protocol state.
#[derive(Debug)]
pub struct EmulatedSwitch {
    spec: SwitchSpec,
    profile: PacketInProfile,
    /// One encoded PacketIn per port with empty data, to copy and patch.
    packet_in_prefix: Vec<Vec<u8>>,
    config: SwitchConfig,
    async_config: AsyncConfig,
    next_xid: u32,
    hello_received: bool,
    features_replied: bool,
}

impl EmulatedSwitch {
    pub fn new(spec: SwitchSpec, profile: PacketInProfile) -> Self {
        let packet_in_prefix = (0..=u32::from(spec.ports))
            .map(|port| {
                let pi = PacketIn {
                    buffer_id: NO_BUFFER,
                    total_len: 0,
                    reason: profile.reason,
                    table_id: profile.table_id,
                    cookie: profile.cookie,
                    match_: Match::new().in_port(port),
                    data: Vec::new(),
                };
                let mut buf = Vec::new();
                OfpMessage::new(0, Message::PacketIn(pi)).emit(&mut buf);
                buf
            })
            .collect();
        Self {
            spec,
            profile,
            packet_in_prefix,
            config: SwitchConfig {
                flags: 0,
                miss_send_len: DEFAULT_MISS_SEND_LEN,
            },
            // OFPR_NO_MATCH and OFPR_ACTION for the master, port status
            // always, flow removed on idle/hard timeout and delete: what
            // OVS starts a connection with.
            async_config: AsyncConfig {
                packet_in_mask: [0b11, 0],
                port_status_mask: [0b111, 0b111],
                flow_removed_mask: [0b1111, 0],
            },
            next_xid: 1,
            hello_received: false,
            features_replied: false,
        }
    }

    pub fn spec(&self) -> &SwitchSpec {
        &self.spec
    }

    pub fn profile(&self) -> PacketInProfile {
        self.profile
    }

    /// Whether the controller has the switch's features, i.e. knows it.
    pub fn features_replied(&self) -> bool {
        self.features_replied
    }

    fn xid(&mut self) -> u32 {
        let x = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        x
    }

    /// The HELLO a switch opens the connection with.
    pub fn hello(&mut self, out: &mut Vec<u8>) {
        let xid = self.xid();
        OfpMessage::new(
            xid,
            Message::Hello(Hello {
                version: OFP_VERSION,
                elements: vec![HelloElement::VersionBitmap(vec![VERSION_BITMAP])],
            }),
        )
        .emit(out);
    }

    /// Appends a PACKET_IN carrying `frame`, received on `in_port`.
    ///
    /// # Panics
    /// If `in_port` is not one of the switch's ports.
    pub fn packet_in(&mut self, in_port: u32, buffer_id: u32, frame: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.packet_in_prefix[in_port as usize]);
        out.extend_from_slice(frame);
        let xid = self.xid();
        let msg = &mut out[start..];
        // Frames are at most a few hundred bytes: they fit the u16 fields.
        let len = msg.len() as u16;
        msg[LEN_AT..LEN_AT + 2].copy_from_slice(&len.to_be_bytes());
        msg[XID_AT..XID_AT + 4].copy_from_slice(&xid.to_be_bytes());
        msg[PI_BUFFER_AT..PI_BUFFER_AT + 4].copy_from_slice(&buffer_id.to_be_bytes());
        msg[PI_TOTAL_LEN_AT..PI_TOTAL_LEN_AT + 2]
            .copy_from_slice(&(frame.len() as u16).to_be_bytes());
    }

    /// Handles one whole message from the controller, appending any reply
    /// to `out`. An error means the message does not decode; the caller
    /// sends [`ErrorMsg::for_decode_error`] back, as a switch would.
    pub fn handle(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Result<Inbound, DecodeError> {
        let header = ofp::header::HeaderView::new_checked(msg)?;
        if header.version() != OFP_VERSION && header.msg_type() != MsgType::Hello {
            return Err(DecodeError::BadVersion {
                version: header.version(),
            });
        }
        // The hot path: the answers to PacketIns are read in place.
        match header.msg_type() {
            MsgType::FlowMod => return flow_mod_keys(msg).map(Inbound::Answer),
            MsgType::PacketOut => return packet_out_keys(msg).map(Inbound::Answer),
            _ => {}
        }
        let OfpMessage { xid, message } = OfpMessage::parse(msg)?;
        let msg_type = message.msg_type();
        let reply = match message {
            Message::Hello(h) => {
                if !h.accepts(OFP_VERSION) {
                    self.hello_received = true;
                    Some(Message::Error(ErrorMsg::hello_failed(
                        "this switch speaks OpenFlow 1.3 (0x04) only",
                    )))
                } else {
                    self.hello_received = true;
                    None
                }
            }
            Message::Error(e) => {
                return Ok(Inbound::Error(match e {
                    ErrorMsg::Standard { code, .. } => code,
                    ErrorMsg::Experimenter { exp_type, .. } => {
                        ErrorCode::new(ofp::error::error_type::EXPERIMENTER, exp_type)
                    }
                }))
            }
            Message::EchoRequest(data) => Some(Message::EchoReply(data)),
            Message::FeaturesRequest => {
                self.features_replied = true;
                Some(Message::FeaturesReply(SwitchFeatures {
                    datapath_id: self.spec.datapath_id,
                    n_buffers: self.spec.n_buffers,
                    n_tables: N_TABLES,
                    auxiliary_id: 0,
                    capabilities: CAPABILITIES,
                    reserved: 0,
                }))
            }
            Message::GetConfigRequest => Some(Message::GetConfigReply(self.config)),
            Message::SetConfig(c) => {
                self.config = c;
                None
            }
            Message::MultipartRequest(req) => Some(self.multipart(req.body)),
            Message::BarrierRequest => Some(Message::BarrierReply),
            Message::RoleRequest(r) => Some(Message::RoleReply(RoleMsg {
                role: match r.role {
                    ControllerRole::NoChange => ControllerRole::Equal,
                    other => other,
                },
                generation_id: r.generation_id,
            })),
            Message::GetAsyncRequest => Some(Message::GetAsyncReply(self.async_config)),
            Message::SetAsync(a) => {
                self.async_config = a;
                None
            }
            Message::QueueGetConfigRequest(q) => {
                Some(Message::QueueGetConfigReply(QueueGetConfigReply {
                    port: q.port,
                    queues: Vec::new(),
                }))
            }
            Message::GroupMod(_)
            | Message::MeterMod(_)
            | Message::PortMod(_)
            | Message::TableMod(_)
            | Message::EchoReply(_) => None,
            Message::Experimenter(_) => Some(error_reply(ErrorCode::BAD_EXPERIMENTER, msg)),
            // Messages only a switch sends, or types nobody knows.
            _ => Some(error_reply(ErrorCode::BAD_TYPE, msg)),
        };
        if let Some(reply) = reply {
            OfpMessage::new(xid, reply).emit(out);
        }
        Ok(Inbound::Other(msg_type))
    }

    fn multipart(&self, req: MultipartRequestBody) -> Message {
        let body = match req {
            MultipartRequestBody::Desc => MultipartReplyBody::Desc(Box::new(Desc {
                mfr_desc: Name::new("Iris"),
                hw_desc: Name::new("iris-testbed emulated switch"),
                sw_desc: Name::new(env!("CARGO_PKG_VERSION")),
                serial_num: Name::new("None"),
                dp_desc: Name::new(&format!("bench switch {}", self.spec.index)),
            })),
            MultipartRequestBody::PortDesc => MultipartReplyBody::PortDesc(self.ports()),
            MultipartRequestBody::Flow(_) => MultipartReplyBody::Flow(Vec::new()),
            MultipartRequestBody::Aggregate(_) => MultipartReplyBody::Aggregate(AggregateStats {
                packet_count: 0,
                byte_count: 0,
                flow_count: 0,
            }),
            MultipartRequestBody::Table => MultipartReplyBody::Table(Vec::new()),
            MultipartRequestBody::PortStats { .. } => MultipartReplyBody::PortStats(Vec::new()),
            MultipartRequestBody::Queue(_) => MultipartReplyBody::Queue(Vec::new()),
            MultipartRequestBody::Group { .. } => MultipartReplyBody::Group(Vec::new()),
            MultipartRequestBody::GroupDesc => MultipartReplyBody::GroupDesc(Vec::new()),
            MultipartRequestBody::GroupFeatures => {
                MultipartReplyBody::GroupFeatures(GroupFeatures {
                    // all, select, indirect, fast failover
                    types: 0b1111,
                    capabilities: 0,
                    max_groups: [65535; 4],
                    // output, push/pop VLAN, set_field, group
                    actions: [0x0201_9801; 4],
                })
            }
            MultipartRequestBody::Meter { .. } => MultipartReplyBody::Meter(Vec::new()),
            MultipartRequestBody::MeterConfig { .. } => MultipartReplyBody::MeterConfig(Vec::new()),
            // No meters: a controller that could rate-limit PacketIns with
            // them must not, so every controller sees every PacketIn.
            MultipartRequestBody::MeterFeatures => {
                MultipartReplyBody::MeterFeatures(MeterFeatures {
                    max_meter: 0,
                    band_types: 0,
                    capabilities: 0,
                    max_bands: 0,
                    max_color: 0,
                })
            }
            MultipartRequestBody::TableFeatures(_) => MultipartReplyBody::TableFeatures(Vec::new()),
            MultipartRequestBody::Experimenter(_) | MultipartRequestBody::Unknown { .. } => {
                return Message::Error(ErrorMsg::Standard {
                    code: ErrorCode::BAD_MULTIPART,
                    data: Vec::new(),
                })
            }
        };
        Message::MultipartReply(MultipartReply { flags: 0, body })
    }

    fn ports(&self) -> Vec<Port> {
        let local = std::iter::once((port_no::LOCAL, format!("bench{}", self.spec.index)));
        (1..=u32::from(self.spec.ports))
            .map(|p| (p, format!("p{p}")))
            .chain(local)
            .map(|(port_no, name)| {
                // The low 16 bits tell the ports apart (LOCAL included).
                let [p1, p0] = ((port_no & 0xffff) as u16).to_be_bytes();
                let [i1, i0] = self.spec.index.to_be_bytes();
                Port {
                    port_no,
                    hw_addr: MacAddr([0x0a, 0x00, i1, i0, p1, p0]),
                    name: Name::new(&name),
                    config: 0,
                    state: port_state::LIVE,
                    curr: PORT_FEATURES,
                    advertised: 0,
                    supported: 0,
                    peer: 0,
                    curr_speed: PORT_SPEED,
                    max_speed: PORT_SPEED,
                }
            })
            .collect()
    }
}

/// The error a switch returns for a message it will not act on.
fn error_reply(code: ErrorCode, offending: &[u8]) -> Message {
    Message::Error(ErrorMsg::Standard {
        code,
        data: offending[..offending.len().min(ofp::message::ERROR_DATA_LEN)].to_vec(),
    })
}

fn truncated(at: &'static str, needed: usize, msg: &[u8]) -> DecodeError {
    DecodeError::Truncated {
        at,
        needed,
        available: msg.len(),
    }
}

fn be_u16(msg: &[u8], at: usize) -> Result<u16, DecodeError> {
    msg.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| truncated("ofp_message", at + 2, msg))
}

fn be_u32(msg: &[u8], at: usize) -> Result<u32, DecodeError> {
    msg.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| truncated("ofp_message", at + 4, msg))
}

fn some_buffer(id: u32) -> Option<u32> {
    (id != NO_BUFFER).then_some(id)
}

/// Calls `f` with the type and the bytes of each of the `ofp_instruction`s
/// or `ofp_action_header`s (16-bit type, 16-bit length of at least `min`)
/// that `items` lists.
fn each_tlv<'a>(
    mut items: &'a [u8],
    at: &'static str,
    min: usize,
    code: ErrorCode,
    mut f: impl FnMut(u16, &'a [u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    while items.len() >= 4 {
        let kind = be_u16(items, 0)?;
        let len = usize::from(be_u16(items, 2)?);
        if len < min || len > items.len() {
            return Err(DecodeError::BadLength {
                at,
                length: len,
                code,
            });
        }
        f(kind, &items[..len])?;
        items = &items[len..];
    }
    Ok(())
}

/// Where a list of actions sends packets: the one port every OUTPUT names,
/// or nothing when they name several or a group takes the packet.
#[derive(Debug, Default)]
struct Outputs {
    port: Option<u32>,
    several: bool,
}

impl Outputs {
    /// Reads the `ofp_action_header`s of `actions`; OFPP_IN_PORT stands
    /// for `in_port`, when the message says which port that is.
    fn read(&mut self, actions: &[u8], in_port: Option<u32>) -> Result<(), DecodeError> {
        const OUTPUT: u16 = 0;
        const GROUP: u16 = 22;
        let code = ErrorCode::ACTION_BAD_LEN;
        each_tlv(actions, "ofp_action", 8, code, |kind, action| {
            match kind {
                OUTPUT => {
                    let port = match (be_u32(action, 4)?, in_port) {
                        (port_no::IN_PORT, Some(p)) => p,
                        (port, _) => port,
                    };
                    match self.port {
                        Some(p) if p != port => self.several = true,
                        _ => self.port = Some(port),
                    }
                }
                GROUP => self.several = true,
                _ => {}
            }
            Ok(())
        })
    }

    fn single(&self) -> Option<u32> {
        self.port.filter(|_| !self.several)
    }
}

/// The buffer and the MACs a FLOW_MOD matches on, and where its apply- and
/// write-actions send what matches.
fn flow_mod_keys(msg: &[u8]) -> Result<Answer, DecodeError> {
    const WRITE_ACTIONS: u16 = 3;
    const APPLY_ACTIONS: u16 = 4;
    let command = *msg
        .get(FM_COMMAND_AT)
        .ok_or_else(|| truncated("ofp_flow_mod", FM_COMMAND_AT + 1, msg))?;
    let buffer_id = be_u32(msg, FM_BUFFER_AT)?;
    let match_len = usize::from(be_u16(msg, FM_MATCH_AT + 2)?);
    let bad_match = DecodeError::BadLength {
        at: "ofp_match",
        length: match_len,
        code: ErrorCode::MATCH_BAD_LEN,
    };
    let oxms = msg
        .get(FM_MATCH_AT + 4..FM_MATCH_AT + match_len.max(4))
        .ok_or(bad_match)?;
    let mut macs = [None; 4];
    let mut ips = [None; 2];
    let mut in_port = None;
    for tlv in OxmIter::new(oxms) {
        let tlv = tlv?;
        // A masked field names a group of hosts, not one.
        if tlv.mask.is_some() {
            continue;
        }
        let value = tlv.value;
        match tlv.id() {
            FieldId::IN_PORT => in_port = value.try_into().ok().map(u32::from_be_bytes),
            FieldId::ETH_SRC => macs[0] = value.try_into().ok(),
            FieldId::ETH_DST => macs[1] = value.try_into().ok(),
            FieldId::ARP_SHA => macs[2] = value.try_into().ok(),
            FieldId::ARP_THA => macs[3] = value.try_into().ok(),
            FieldId::ARP_SPA => ips[0] = value.try_into().ok(),
            FieldId::ARP_TPA => ips[1] = value.try_into().ok(),
            _ => {}
        }
    }
    // The match is padded to a multiple of 8; the instructions follow.
    let instructions = msg
        .get(FM_MATCH_AT + match_len.div_ceil(8) * 8..)
        .unwrap_or(&[]);
    let mut outputs = Outputs::default();
    let code = ErrorCode::INSTRUCTION_BAD_LEN;
    each_tlv(
        instructions,
        "ofp_instruction",
        4,
        code,
        |kind, instruction| {
            if matches!(kind, WRITE_ACTIONS | APPLY_ACTIONS) {
                outputs.read(instruction.get(8..).unwrap_or(&[]), in_port)?;
            }
            Ok(())
        },
    )?;
    Ok(Answer {
        kind: AnswerKind::FlowMod,
        buffer_id: some_buffer(buffer_id),
        macs,
        ips,
        adds: command == 0,
        out_port: outputs.single(),
        arp_op: None,
    })
}

/// The buffer a PACKET_OUT releases, the MACs of the frame it carries and
/// where it sends it.
fn packet_out_keys(msg: &[u8]) -> Result<Answer, DecodeError> {
    let buffer_id = be_u32(msg, PO_BUFFER_AT)?;
    let in_port = be_u32(msg, PO_IN_PORT_AT)?;
    let actions_len = usize::from(be_u16(msg, PO_ACTIONS_LEN_AT)?);
    let data_at = PO_ACTIONS_AT + actions_len;
    let frame = msg
        .get(data_at..)
        .ok_or_else(|| truncated("ofp_packet_out", data_at, msg))?;
    let mut outputs = Outputs::default();
    outputs.read(&msg[PO_ACTIONS_AT..data_at], Some(in_port))?;
    let mut macs = [None; 4];
    let mut ips = [None; 2];
    let mut arp_op = None;
    // A buffered packet goes out without data; anything else that is not
    // Ethernet names no host.
    if let Ok(eth) = EthernetFrame::new_checked(frame) {
        macs[0] = Some(eth.src().0);
        macs[1] = Some(eth.dst().0);
        if matches!(eth.ethertype(), EtherType::Arp | EtherType::Rarp) {
            if let Ok(arp) = ArpPacket::new_checked(eth.payload()) {
                macs[2] = Some(arp.sha().0);
                macs[3] = Some(arp.tha().0);
                ips = [Some(arp.spa().octets()), Some(arp.tpa().octets())];
                arp_op = Some(u16::from(arp.op()));
            }
        }
    }
    Ok(Answer {
        kind: AnswerKind::PacketOut,
        buffer_id: some_buffer(buffer_id),
        macs,
        ips,
        adds: false,
        out_port: outputs.single(),
        arp_op,
    })
}

#[cfg(test)]
mod tests;
