//! OFPMP_TABLE_FEATURES request and reply bodies (§7.3.5.6).

use crate::codec::{Hex, Name, Reader, Writer};
use crate::error::{ErrorCode, Result};
use crate::message::record::{emit_tlv, parse_all, split, split_padded};
use crate::oxm::{FieldId, SubfieldName};
use core::fmt;

/// `ofp_table_feature_prop_type` codes. Odd codes are the table-miss
/// variants of the even code below them.
pub mod prop_type {
    pub const INSTRUCTIONS: u16 = 0;
    pub const INSTRUCTIONS_MISS: u16 = 1;
    pub const NEXT_TABLES: u16 = 2;
    pub const NEXT_TABLES_MISS: u16 = 3;
    pub const WRITE_ACTIONS: u16 = 4;
    pub const WRITE_ACTIONS_MISS: u16 = 5;
    pub const APPLY_ACTIONS: u16 = 6;
    pub const APPLY_ACTIONS_MISS: u16 = 7;
    pub const MATCH: u16 = 8;
    pub const WILDCARDS: u16 = 10;
    pub const WRITE_SETFIELD: u16 = 12;
    pub const WRITE_SETFIELD_MISS: u16 = 13;
    pub const APPLY_SETFIELD: u16 = 14;
    pub const APPLY_SETFIELD_MISS: u16 = 15;
    pub const EXPERIMENTER: u16 = 0xfffe;
    pub const EXPERIMENTER_MISS: u16 = 0xffff;
}

/// An instruction or action id: the `ofp_instruction` / `ofp_action_header`
/// type with whatever follows the 4-byte header (an experimenter id, or the
/// padding some switches add), kept so the list round-trips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureId {
    pub id_type: u16,
    pub data: Vec<u8>,
}

impl FeatureId {
    /// A plain id with no trailing bytes.
    pub fn new(id_type: u16) -> Self {
        Self {
            id_type,
            data: Vec::new(),
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut id = split(
            r,
            2,
            4,
            "ofp_table_feature_prop.id",
            ErrorCode::TABLE_FEATURES_BAD_LEN,
        )?;
        let id_type = id.u16()?;
        id.skip(2)?;
        Ok(Self {
            id_type,
            data: id.take_rest().to_vec(),
        })
    }

    fn emit(&self, buf: &mut Vec<u8>) {
        emit_tlv(buf, self.id_type, |b| b.put_slice(&self.data));
    }
}

/// An OXM id: the 32-bit OXM header (class, field, hasmask, length), plus
/// the experimenter id for class 0xffff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OxmId {
    pub header: u32,
    pub experimenter: Option<u32>,
}

/// `OFPXMC_EXPERIMENTER`.
const OXM_CLASS_EXPERIMENTER: u32 = 0xffff;

impl OxmId {
    pub fn class(&self) -> u16 {
        (self.header >> 16) as u16
    }

    pub fn field(&self) -> u8 {
        ((self.header >> 9) & 0x7f) as u8
    }

    pub fn has_mask(&self) -> bool {
        self.header & 0x100 != 0
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let header = r.u32()?;
        let experimenter = if header >> 16 == OXM_CLASS_EXPERIMENTER {
            Some(r.u32()?)
        } else {
            None
        };
        Ok(Self {
            header,
            experimenter,
        })
    }

    fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.header);
        if let Some(e) = self.experimenter {
            buf.put_u32(e);
        }
    }
}

impl fmt::Display for OxmId {
    /// The field's NXM/OXM name (`NXM_NX_TUN_ID`, `OXM_OF_IN_PORT`), with
    /// `/masked` when the id advertises masking.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            SubfieldName(FieldId::from_header(self.header, self.experimenter))
        )?;
        if self.has_mask() {
            f.write_str("/masked")?;
        }
        Ok(())
    }
}

/// An instruction id by the name `ovs-ofctl` gives the instruction.
struct InstructionName<'a>(&'a FeatureId);

impl fmt::Display for InstructionName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::instruction::instruction_type as t;
        let name = match self.0.id_type {
            t::GOTO_TABLE => "goto_table",
            t::WRITE_METADATA => "write_metadata",
            t::WRITE_ACTIONS => "write_actions",
            t::APPLY_ACTIONS => "apply_actions",
            t::CLEAR_ACTIONS => "clear_actions",
            t::METER => "meter",
            t::EXPERIMENTER => "experimenter",
            other => return write!(f, "instruction{other}"),
        };
        f.write_str(name)
    }
}

/// An action id by the name `ovs-ofctl` gives the action.
struct ActionName<'a>(&'a FeatureId);

impl fmt::Display for ActionName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::action::action_type as t;
        let name = match self.0.id_type {
            t::OUTPUT => "output",
            t::COPY_TTL_OUT => "copy_ttl_out",
            t::COPY_TTL_IN => "copy_ttl_in",
            t::SET_MPLS_TTL => "set_mpls_ttl",
            t::DEC_MPLS_TTL => "dec_mpls_ttl",
            t::PUSH_VLAN => "push_vlan",
            t::POP_VLAN => "strip_vlan",
            t::PUSH_MPLS => "push_mpls",
            t::POP_MPLS => "pop_mpls",
            t::SET_QUEUE => "set_queue",
            t::GROUP => "group",
            t::SET_NW_TTL => "mod_nw_ttl",
            t::DEC_NW_TTL => "dec_ttl",
            t::SET_FIELD => "set_field",
            t::PUSH_PBB => "push_pbb",
            t::POP_PBB => "pop_pbb",
            t::EXPERIMENTER => "experimenter",
            other => return write!(f, "action{other}"),
        };
        f.write_str(name)
    }
}

/// One table feature property. `miss` selects the table-miss variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableFeatureProp {
    Instructions {
        miss: bool,
        ids: Vec<FeatureId>,
    },
    NextTables {
        miss: bool,
        tables: Vec<u8>,
    },
    WriteActions {
        miss: bool,
        ids: Vec<FeatureId>,
    },
    ApplyActions {
        miss: bool,
        ids: Vec<FeatureId>,
    },
    Match(Vec<OxmId>),
    Wildcards(Vec<OxmId>),
    WriteSetfield {
        miss: bool,
        fields: Vec<OxmId>,
    },
    ApplySetfield {
        miss: bool,
        fields: Vec<OxmId>,
    },
    Experimenter {
        miss: bool,
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
    /// A property type this codec does not know; `data` follows the 4-byte
    /// header, without padding.
    Unknown {
        prop_type: u16,
        data: Vec<u8>,
    },
}

impl TableFeatureProp {
    fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut p = split_padded(
            r,
            4,
            "ofp_table_feature_prop",
            ErrorCode::TABLE_FEATURES_BAD_LEN,
        )?;
        let t = p.u16()?;
        p.skip(2)?;
        let miss = t & 1 == 1;
        let oxm_ids = |p: Reader<'_>| parse_all(p, OxmId::parse);
        let ids = |p: Reader<'_>| parse_all(p, FeatureId::parse);
        Ok(match t {
            prop_type::INSTRUCTIONS | prop_type::INSTRUCTIONS_MISS => {
                Self::Instructions { miss, ids: ids(p)? }
            }
            prop_type::NEXT_TABLES | prop_type::NEXT_TABLES_MISS => Self::NextTables {
                miss,
                tables: p.take_rest().to_vec(),
            },
            prop_type::WRITE_ACTIONS | prop_type::WRITE_ACTIONS_MISS => {
                Self::WriteActions { miss, ids: ids(p)? }
            }
            prop_type::APPLY_ACTIONS | prop_type::APPLY_ACTIONS_MISS => {
                Self::ApplyActions { miss, ids: ids(p)? }
            }
            prop_type::MATCH => Self::Match(oxm_ids(p)?),
            prop_type::WILDCARDS => Self::Wildcards(oxm_ids(p)?),
            prop_type::WRITE_SETFIELD | prop_type::WRITE_SETFIELD_MISS => Self::WriteSetfield {
                miss,
                fields: oxm_ids(p)?,
            },
            prop_type::APPLY_SETFIELD | prop_type::APPLY_SETFIELD_MISS => Self::ApplySetfield {
                miss,
                fields: oxm_ids(p)?,
            },
            prop_type::EXPERIMENTER | prop_type::EXPERIMENTER_MISS => Self::Experimenter {
                miss,
                experimenter: p.u32()?,
                exp_type: p.u32()?,
                data: p.take_rest().to_vec(),
            },
            prop_type => Self::Unknown {
                prop_type,
                data: p.take_rest().to_vec(),
            },
        })
    }

    /// The wire type code.
    pub fn prop_type(&self) -> u16 {
        let (base, miss) = match self {
            Self::Instructions { miss, .. } => (prop_type::INSTRUCTIONS, *miss),
            Self::NextTables { miss, .. } => (prop_type::NEXT_TABLES, *miss),
            Self::WriteActions { miss, .. } => (prop_type::WRITE_ACTIONS, *miss),
            Self::ApplyActions { miss, .. } => (prop_type::APPLY_ACTIONS, *miss),
            Self::Match(_) => (prop_type::MATCH, false),
            Self::Wildcards(_) => (prop_type::WILDCARDS, false),
            Self::WriteSetfield { miss, .. } => (prop_type::WRITE_SETFIELD, *miss),
            Self::ApplySetfield { miss, .. } => (prop_type::APPLY_SETFIELD, *miss),
            Self::Experimenter { miss, .. } => (prop_type::EXPERIMENTER, *miss),
            Self::Unknown { prop_type, .. } => (*prop_type, false),
        };
        base | u16::from(miss)
    }

    fn emit(&self, buf: &mut Vec<u8>) {
        let start = emit_tlv(buf, self.prop_type(), |b| match self {
            Self::Instructions { ids, .. }
            | Self::WriteActions { ids, .. }
            | Self::ApplyActions { ids, .. } => ids.iter().for_each(|id| id.emit(b)),
            Self::NextTables { tables, .. } => b.put_slice(tables),
            Self::Match(ids)
            | Self::Wildcards(ids)
            | Self::WriteSetfield { fields: ids, .. }
            | Self::ApplySetfield { fields: ids, .. } => ids.iter().for_each(|id| id.emit(b)),
            Self::Experimenter {
                experimenter,
                exp_type,
                data,
                ..
            } => {
                b.put_u32(*experimenter);
                b.put_u32(*exp_type);
                b.put_slice(data);
            }
            Self::Unknown { data, .. } => b.put_slice(data),
        });
        buf.pad_to_8(start);
    }
}

/// Prints a list of table ids compactly: `1-253` or `0 2 5-7`.
struct TableRanges<'a>(&'a [u8]);

impl fmt::Display for TableRanges<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let t = self.0;
        while i < t.len() {
            let mut j = i;
            while j + 1 < t.len() && u16::from(t[j + 1]) == u16::from(t[j]) + 1 {
                j += 1;
            }
            if i > 0 {
                f.write_str(" ")?;
            }
            if j > i {
                write!(f, "{}-{}", t[i], t[j])?;
            } else {
                write!(f, "{}", t[i])?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

impl fmt::Display for TableFeatureProp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T: fmt::Display>(
            f: &mut fmt::Formatter<'_>,
            items: impl Iterator<Item = T>,
        ) -> fmt::Result {
            for (i, x) in items.enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{x}")?;
            }
            Ok(())
        }
        let miss = |m: &bool| if *m { " (table miss)" } else { "" };
        match self {
            Self::Instructions { miss: m, ids } => {
                write!(f, "instructions{}: ", miss(m))?;
                list(f, ids.iter().map(InstructionName))
            }
            Self::NextTables { miss: m, tables } => {
                write!(f, "next tables{}: {}", miss(m), TableRanges(tables))
            }
            Self::WriteActions { miss: m, ids } => {
                write!(f, "write actions{}: ", miss(m))?;
                list(f, ids.iter().map(ActionName))
            }
            Self::ApplyActions { miss: m, ids } => {
                write!(f, "apply actions{}: ", miss(m))?;
                list(f, ids.iter().map(ActionName))
            }
            Self::Match(ids) => {
                f.write_str("match: ")?;
                list(f, ids.iter())
            }
            Self::Wildcards(ids) => {
                f.write_str("wildcards: ")?;
                list(f, ids.iter())
            }
            Self::WriteSetfield { miss: m, fields } => {
                write!(f, "write set-field{}: ", miss(m))?;
                list(f, fields.iter())
            }
            Self::ApplySetfield { miss: m, fields } => {
                write!(f, "apply set-field{}: ", miss(m))?;
                list(f, fields.iter())
            }
            Self::Experimenter {
                miss: m,
                experimenter,
                exp_type,
                data,
            } => write!(
                f,
                "experimenter{}: experimenter=0x{experimenter:x} exp_type={exp_type} data={}",
                miss(m),
                Hex(data)
            ),
            Self::Unknown { prop_type, data } => write!(f, "property {prop_type}: {}", Hex(data)),
        }
    }
}

/// Length of `ofp_table_features` without properties.
const TABLE_FEATURES_LEN: usize = 64;

/// `ofp_table_features`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFeatures {
    pub table_id: u8,
    pub name: Name<32>,
    pub metadata_match: u64,
    pub metadata_write: u64,
    pub config: u32,
    pub max_entries: u32,
    pub properties: Vec<TableFeatureProp>,
}

impl TableFeatures {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut t = split(
            r,
            0,
            TABLE_FEATURES_LEN,
            "ofp_table_features",
            ErrorCode::TABLE_FEATURES_BAD_LEN,
        )?;
        t.skip(2)?;
        let table_id = t.u8()?;
        t.skip(5)?;
        Ok(Self {
            table_id,
            name: t.name()?,
            metadata_match: t.u64()?,
            metadata_write: t.u64()?,
            config: t.u32()?,
            max_entries: t.u32()?,
            properties: parse_all(t, TableFeatureProp::parse)?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        let len_at = buf.reserve_len16();
        buf.put_u8(self.table_id);
        buf.put_zeros(5);
        buf.put_slice(&self.name.0);
        buf.put_u64(self.metadata_match);
        buf.put_u64(self.metadata_write);
        buf.put_u32(self.config);
        buf.put_u32(self.max_entries);
        for p in &self.properties {
            p.emit(buf);
        }
        buf.patch_len16(len_at, start);
    }
}

impl fmt::Display for TableFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  table {} (\"{}\"):\n    metadata: match=0x{:x} write=0x{:x}",
            self.table_id, self.name, self.metadata_match, self.metadata_write
        )?;
        if self.config != 0 {
            write!(f, "\n    config=0x{:x}", self.config)?;
        }
        write!(f, "\n    max_entries={}", self.max_entries)?;
        for p in &self.properties {
            write!(f, "\n    {p}")?;
        }
        Ok(())
    }
}
