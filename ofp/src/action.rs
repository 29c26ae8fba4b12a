//! Actions (OpenFlow 1.3.5 §7.2.5) and the Nicira / ONF extension actions
//! Open vSwitch understands.
//!
//! Every OpenFlow 1.3 action is typed. Nicira actions (experimenter
//! 0x00002320) that Iris uses are typed too; any other experimenter action
//! (learn, ct, nat, sample, ...) is kept as [`Action::Experimenter`] and any
//! unknown action type as [`Action::Unknown`], both re-encoding byte for byte.

pub(crate) mod display;
mod nicira;

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, ErrorCode, Result};
use crate::oxm::{oxm_header, FieldId, OxmField};

pub use display::ActionList;
pub use nicira::{NX_VENDOR_ID, ONF_VENDOR_ID};

/// `ofp_action_type` values.
pub mod action_type {
    pub const OUTPUT: u16 = 0;
    pub const COPY_TTL_OUT: u16 = 11;
    pub const COPY_TTL_IN: u16 = 12;
    pub const SET_MPLS_TTL: u16 = 15;
    pub const DEC_MPLS_TTL: u16 = 16;
    pub const PUSH_VLAN: u16 = 17;
    pub const POP_VLAN: u16 = 18;
    pub const PUSH_MPLS: u16 = 19;
    pub const POP_MPLS: u16 = 20;
    pub const SET_QUEUE: u16 = 21;
    pub const GROUP: u16 = 22;
    pub const SET_NW_TTL: u16 = 23;
    pub const DEC_NW_TTL: u16 = 24;
    pub const SET_FIELD: u16 = 25;
    pub const PUSH_PBB: u16 = 26;
    pub const POP_PBB: u16 = 27;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// Reserved port numbers (`ofp_port_no`).
pub mod port {
    pub const MAX: u32 = 0xffff_ff00;
    pub const IN_PORT: u32 = 0xffff_fff8;
    pub const TABLE: u32 = 0xffff_fff9;
    pub const NORMAL: u32 = 0xffff_fffa;
    pub const FLOOD: u32 = 0xffff_fffb;
    pub const ALL: u32 = 0xffff_fffc;
    pub const CONTROLLER: u32 = 0xffff_fffd;
    pub const LOCAL: u32 = 0xffff_fffe;
    pub const ANY: u32 = 0xffff_ffff;
}

/// OFPCML_NO_BUFFER: send the whole packet to the controller, unbuffered.
pub const OFPCML_NO_BUFFER: u16 = 0xffff;

/// An OXM/NXM field named by its 32-bit header, as move, load and stack
/// actions carry it. The header includes the field's length and no mask bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldRef(pub u32);

impl FieldRef {
    /// The header for a field whose width this codec knows.
    pub fn new(id: FieldId) -> Option<Self> {
        let width = u8::try_from(id.width()?).ok()?;
        Some(Self(oxm_header(id.class, id.field, false, width)))
    }

    pub fn id(self) -> FieldId {
        FieldId::from_header(self.0, None)
    }

    /// The field's width in bits as OVS counts them (`[]` covers exactly these).
    pub fn bits(self) -> u32 {
        crate::oxm::field_bits(self.id()).unwrap_or(u32::from(self.0 as u8) * 8)
    }
}

/// A bit range of a field: `NXM_NX_REG0[4..31]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subfield {
    pub field: FieldRef,
    pub ofs: u16,
    pub n_bits: u16,
}

impl Subfield {
    /// The whole field (`FIELD[]`), if its width is known.
    pub fn whole(id: FieldId) -> Option<Self> {
        let field = FieldRef::new(id)?;
        Some(Self {
            field,
            ofs: 0,
            n_bits: u16::try_from(field.bits()).ok()?,
        })
    }
}

/// Copy `n_bits` bits from `src` at bit `src_ofs` to `dst` at bit `dst_ofs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldMove {
    pub n_bits: u16,
    pub src_ofs: u16,
    pub dst_ofs: u16,
    pub src: FieldRef,
    pub dst: FieldRef,
}

/// Which action a resubmit is: the plain port form or the table form (with or
/// without the conntrack original-direction tuple).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResubmitKind {
    /// NXAST_RESUBMIT: look up with a different in_port in the same table.
    Port,
    /// NXAST_RESUBMIT_TABLE.
    Table,
    /// NXAST_RESUBMIT_TABLE_CT: also matches on the conntrack original tuple.
    TableCt,
}

/// One property of NXAST_CONTROLLER2. `value` holds the `len - 4` bytes the
/// property's length covers; the padding to 8 bytes is implied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Controller2Prop {
    pub kind: u16,
    pub value: Vec<u8>,
}

/// NXAC2PT_* property types of NXAST_CONTROLLER2.
pub mod controller2_prop {
    /// u16 (followed by two pad bytes inside the property).
    pub const MAX_LEN: u16 = 0;
    /// u16 (followed by two pad bytes inside the property).
    pub const CONTROLLER_ID: u16 = 1;
    /// u8.
    pub const REASON: u16 = 2;
    /// Opaque bytes echoed in the packet-in.
    pub const USERDATA: u16 = 3;
    /// No value: pause the pipeline and let the controller resume it.
    pub const PAUSE: u16 = 4;
    /// u32.
    pub const METER_ID: u16 = 5;
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// OFPAT_OUTPUT. `max_len` only matters for the CONTROLLER port.
    Output {
        port: u32,
        max_len: u16,
    },
    CopyTtlOut,
    CopyTtlIn,
    SetMplsTtl(u8),
    DecMplsTtl,
    /// OFPAT_PUSH_VLAN with its ethertype (0x8100 or 0x88a8).
    PushVlan(u16),
    PopVlan,
    PushMpls(u16),
    /// OFPAT_POP_MPLS with the ethertype of the payload.
    PopMpls(u16),
    SetQueue(u32),
    Group(u32),
    SetNwTtl(u8),
    DecNwTtl,
    /// OFPAT_SET_FIELD: the field and value to write.
    SetField(OxmField),
    PushPbb(u16),
    PopPbb,

    /// NXAST_REG_MOVE (`move:` in OVS).
    RegMove(FieldMove),
    /// ONF copy-field (experimenter 0x4f4e4600, type 3200): the same
    /// operation as [`Action::RegMove`] in the ONF encoding.
    CopyField(FieldMove),
    /// NXAST_REG_LOAD: write `value` into `dst` (`load:` in OVS).
    RegLoad {
        dst: Subfield,
        value: u64,
    },
    /// NXAST_REG_LOAD2: a set-field that may carry a mask.
    RegLoad2(OxmField),
    /// NXAST_RESUBMIT / RESUBMIT_TABLE / RESUBMIT_TABLE_CT. `in_port` is a
    /// 16-bit port (0xfff8 = IN_PORT keeps the packet's); `table` 255 keeps
    /// the current table.
    Resubmit {
        in_port: u16,
        table: u8,
        kind: ResubmitKind,
    },
    /// NXAST_SET_TUNNEL: a 32-bit tunnel id.
    SetTunnel(u32),
    /// NXAST_SET_TUNNEL64.
    SetTunnel64(u64),
    /// NXAST_POP_QUEUE.
    PopQueue,
    /// NXAST_NOTE: opaque bytes, including trailing padding.
    Note(Vec<u8>),
    /// NXAST_EXIT.
    Exit,
    /// NXAST_DEC_TTL. OVS accepts it only in OpenFlow 1.0 and 1.1; in 1.3
    /// use [`Action::DecNwTtl`].
    NxDecTtl,
    /// NXAST_DEC_TTL_CNT_IDS: controllers to notify when the TTL expires.
    DecTtlCntIds(Vec<u16>),
    /// NXAST_FIN_TIMEOUT.
    FinTimeout {
        idle_timeout: u16,
        hard_timeout: u16,
    },
    /// NXAST_CONTROLLER.
    Controller {
        max_len: u16,
        controller_id: u16,
        reason: u8,
    },
    /// NXAST_CONTROLLER2: the controller action with its settings as
    /// properties (see [`Controller2Prop`]), in wire order.
    Controller2(Vec<Controller2Prop>),
    /// NXAST_CONJUNCTION: `clause` is 0-based on the wire.
    Conjunction {
        id: u32,
        clause: u8,
        n_clauses: u8,
    },
    /// NXAST_OUTPUT_TRUNC: output at most `max_len` bytes.
    OutputTrunc {
        port: u16,
        max_len: u32,
    },
    /// NXAST_STACK_PUSH.
    StackPush(Subfield),
    /// NXAST_STACK_POP.
    StackPop(Subfield),
    /// NXAST_CT_CLEAR.
    CtClear,

    /// Any other experimenter action; `data` is everything after the
    /// experimenter id, padding included.
    Experimenter {
        experimenter: u32,
        data: Vec<u8>,
    },
    /// An action type this codec does not know; `data` follows the 4-byte
    /// type/length header.
    Unknown {
        action_type: u16,
        data: Vec<u8>,
    },
}

fn bad_len(len: usize) -> DecodeError {
    DecodeError::bad_len_code("ofp_action", len, ErrorCode::ACTION_BAD_LEN)
}

/// Checks that a fixed-size action has exactly its size.
fn expect_len(len: usize, want: usize) -> Result<()> {
    if len == want {
        Ok(())
    } else {
        Err(bad_len(len))
    }
}

impl Action {
    /// Reads one action, consuming exactly its length field's bytes.
    pub fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let (kind, len, mut b) = r.tlv8("ofp_action", ErrorCode::ACTION_BAD_LEN)?;
        use action_type as t;
        let fixed = |want: usize| expect_len(len, want);
        let a = match kind {
            t::OUTPUT => {
                fixed(16)?;
                let port = b.u32()?;
                Self::Output {
                    port,
                    max_len: b.u16()?,
                }
            }
            t::COPY_TTL_OUT => fixed(8).map(|()| Self::CopyTtlOut)?,
            t::COPY_TTL_IN => fixed(8).map(|()| Self::CopyTtlIn)?,
            t::SET_MPLS_TTL => fixed(8).and_then(|()| b.u8()).map(Self::SetMplsTtl)?,
            t::DEC_MPLS_TTL => fixed(8).map(|()| Self::DecMplsTtl)?,
            t::PUSH_VLAN => fixed(8).and_then(|()| b.u16()).map(Self::PushVlan)?,
            t::POP_VLAN => fixed(8).map(|()| Self::PopVlan)?,
            t::PUSH_MPLS => fixed(8).and_then(|()| b.u16()).map(Self::PushMpls)?,
            t::POP_MPLS => fixed(8).and_then(|()| b.u16()).map(Self::PopMpls)?,
            t::SET_QUEUE => fixed(8).and_then(|()| b.u32()).map(Self::SetQueue)?,
            t::GROUP => fixed(8).and_then(|()| b.u32()).map(Self::Group)?,
            t::SET_NW_TTL => fixed(8).and_then(|()| b.u8()).map(Self::SetNwTtl)?,
            t::DEC_NW_TTL => fixed(8).map(|()| Self::DecNwTtl)?,
            t::SET_FIELD => Self::SetField(parse_set_field(&mut b, len)?),
            t::PUSH_PBB => fixed(8).and_then(|()| b.u16()).map(Self::PushPbb)?,
            t::POP_PBB => fixed(8).map(|()| Self::PopPbb)?,
            t::EXPERIMENTER => {
                let experimenter = b.u32()?;
                match nicira::parse(experimenter, b.clone(), len)? {
                    Some(a) => a,
                    None => Self::Experimenter {
                        experimenter,
                        data: b.take_rest().to_vec(),
                    },
                }
            }
            other => Self::Unknown {
                action_type: other,
                data: b.take_rest().to_vec(),
            },
        };
        Ok(a)
    }

    pub fn emit(&self, buf: &mut Vec<u8>) {
        use action_type as t;
        let start = buf.len();
        let kind = match self {
            Self::Output { .. } => t::OUTPUT,
            Self::CopyTtlOut => t::COPY_TTL_OUT,
            Self::CopyTtlIn => t::COPY_TTL_IN,
            Self::SetMplsTtl(_) => t::SET_MPLS_TTL,
            Self::DecMplsTtl => t::DEC_MPLS_TTL,
            Self::PushVlan(_) => t::PUSH_VLAN,
            Self::PopVlan => t::POP_VLAN,
            Self::PushMpls(_) => t::PUSH_MPLS,
            Self::PopMpls(_) => t::POP_MPLS,
            Self::SetQueue(_) => t::SET_QUEUE,
            Self::Group(_) => t::GROUP,
            Self::SetNwTtl(_) => t::SET_NW_TTL,
            Self::DecNwTtl => t::DEC_NW_TTL,
            Self::SetField(_) => t::SET_FIELD,
            Self::PushPbb(_) => t::PUSH_PBB,
            Self::PopPbb => t::POP_PBB,
            Self::Unknown { action_type, .. } => *action_type,
            _ => t::EXPERIMENTER,
        };
        buf.put_u16(kind);
        let len_at = buf.reserve_len16();
        match self {
            Self::Output { port, max_len } => {
                buf.put_u32(*port);
                buf.put_u16(*max_len);
            }
            Self::SetMplsTtl(v) | Self::SetNwTtl(v) => buf.put_u8(*v),
            Self::PushVlan(e) | Self::PushMpls(e) | Self::PopMpls(e) | Self::PushPbb(e) => {
                buf.put_u16(*e)
            }
            Self::SetQueue(v) | Self::Group(v) => buf.put_u32(*v),
            Self::SetField(f) => f.emit(buf),
            Self::Experimenter { experimenter, data } => {
                buf.put_u32(*experimenter);
                buf.put_slice(data);
            }
            Self::Unknown { data, .. } => buf.put_slice(data),
            Self::CopyTtlOut
            | Self::CopyTtlIn
            | Self::DecMplsTtl
            | Self::PopVlan
            | Self::DecNwTtl
            | Self::PopPbb => buf.put_zeros(4),
            nx => nicira::emit_body(nx, buf),
        }
        buf.pad_to_8(start);
        buf.patch_len16(len_at, start);
    }

    /// `output:port`.
    pub fn output(port: u32) -> Self {
        Self::Output { port, max_len: 0 }
    }

    /// Send the whole packet to the controller (`CONTROLLER:65535`).
    pub fn to_controller() -> Self {
        Self::Output {
            port: port::CONTROLLER,
            max_len: OFPCML_NO_BUFFER,
        }
    }

    /// `move:SRC[]->DST[]` for two fields of the same width, e.g. Ethernet
    /// source to destination in an ARP responder. `None` if a width is unknown.
    pub fn move_field(src: FieldId, dst: FieldId) -> Option<Self> {
        let (s, d) = (Subfield::whole(src)?, Subfield::whole(dst)?);
        Some(Self::RegMove(FieldMove {
            n_bits: s.n_bits.min(d.n_bits),
            src_ofs: 0,
            dst_ofs: 0,
            src: s.field,
            dst: d.field,
        }))
    }

    /// `load:value->DST[]` over the whole field (at most 64 bits wide).
    pub fn load(dst: FieldId, value: u64) -> Option<Self> {
        let dst = Subfield::whole(dst)?;
        (dst.n_bits <= 64).then_some(Self::RegLoad { dst, value })
    }

    /// `resubmit(,table)`.
    pub fn resubmit_table(table: u8) -> Self {
        Self::Resubmit {
            in_port: 0xfff8,
            table,
            kind: ResubmitKind::Table,
        }
    }
}

/// Reads the OXM of a set-field action; the rest of the action must be the
/// padding to 8 bytes, no more.
/// A field value the match rules reject is BAD_SET_ARGUMENT here.
fn parse_set_field(b: &mut Reader<'_>, len: usize) -> Result<OxmField> {
    let at = "ofp_action_set_field";
    let bad = || DecodeError::bad_len_code(at, len, ErrorCode::ACTION_BAD_SET_LEN);
    let field = OxmField::parse(b).map_err(|e| match e {
        DecodeError::BadValue { value, .. } => {
            DecodeError::bad_value(at, value, ErrorCode::ACTION_BAD_SET_ARGUMENT)
        }
        _ => bad(),
    })?;
    if b.remaining() >= 8 {
        return Err(bad());
    }
    Ok(field)
}

/// Reads actions until the reader is exhausted.
pub fn parse_actions(mut r: Reader<'_>) -> Result<Vec<Action>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(Action::parse(&mut r)?);
    }
    Ok(out)
}

pub fn emit_actions(actions: &[Action], buf: &mut Vec<u8>) {
    for a in actions {
        a.emit(buf);
    }
}

#[cfg(test)]
mod tests;
