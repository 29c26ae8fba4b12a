//! Instructions (OpenFlow 1.3.5 §7.2.4).

use crate::action::{parse_actions, Action};
use crate::codec::{Hex, Reader, Writer};
use crate::error::{DecodeError, ErrorCode, Result};
use core::fmt;

/// `ofp_instruction_type` values.
pub mod instruction_type {
    pub const GOTO_TABLE: u16 = 1;
    pub const WRITE_METADATA: u16 = 2;
    pub const WRITE_ACTIONS: u16 = 3;
    pub const APPLY_ACTIONS: u16 = 4;
    pub const CLEAR_ACTIONS: u16 = 5;
    pub const METER: u16 = 6;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    GotoTable(u8),
    /// Writes `metadata` into the bits of the metadata register set in `mask`.
    WriteMetadata {
        metadata: u64,
        mask: u64,
    },
    /// Merges actions into the action set.
    WriteActions(Vec<Action>),
    /// Applies actions immediately, in order.
    ApplyActions(Vec<Action>),
    ClearActions,
    Meter(u32),
    /// `data` is everything after the experimenter id.
    Experimenter {
        experimenter: u32,
        data: Vec<u8>,
    },
    /// An instruction type this codec does not know; `data` follows the
    /// 4-byte type/length header.
    Unknown {
        instruction_type: u16,
        data: Vec<u8>,
    },
}

fn bad_len(len: usize) -> DecodeError {
    DecodeError::bad_len_code("ofp_instruction", len, ErrorCode::INSTRUCTION_BAD_LEN)
}

impl Instruction {
    /// Reads one instruction, consuming exactly its length field's bytes.
    pub fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let (kind, len, mut b) = r.tlv8("ofp_instruction", ErrorCode::INSTRUCTION_BAD_LEN)?;
        let fixed = |want: usize| {
            if len == want {
                Ok(())
            } else {
                Err(bad_len(len))
            }
        };
        use instruction_type as t;
        Ok(match kind {
            t::GOTO_TABLE => fixed(8).and_then(|()| b.u8()).map(Self::GotoTable)?,
            t::WRITE_METADATA => {
                fixed(24)?;
                b.skip(4)?;
                Self::WriteMetadata {
                    metadata: b.u64()?,
                    mask: b.u64()?,
                }
            }
            t::WRITE_ACTIONS | t::APPLY_ACTIONS => {
                b.skip(4)?;
                b.set_context("ofp_action");
                let actions = parse_actions(b)?;
                if kind == t::WRITE_ACTIONS {
                    Self::WriteActions(actions)
                } else {
                    Self::ApplyActions(actions)
                }
            }
            t::CLEAR_ACTIONS => fixed(8).map(|()| Self::ClearActions)?,
            t::METER => fixed(8).and_then(|()| b.u32()).map(Self::Meter)?,
            t::EXPERIMENTER => {
                let experimenter = b.u32()?;
                Self::Experimenter {
                    experimenter,
                    data: b.take_rest().to_vec(),
                }
            }
            other => Self::Unknown {
                instruction_type: other,
                data: b.take_rest().to_vec(),
            },
        })
    }

    pub fn emit(&self, buf: &mut Vec<u8>) {
        use instruction_type as t;
        let start = buf.len();
        let kind = match self {
            Self::GotoTable(_) => t::GOTO_TABLE,
            Self::WriteMetadata { .. } => t::WRITE_METADATA,
            Self::WriteActions(_) => t::WRITE_ACTIONS,
            Self::ApplyActions(_) => t::APPLY_ACTIONS,
            Self::ClearActions => t::CLEAR_ACTIONS,
            Self::Meter(_) => t::METER,
            Self::Experimenter { .. } => t::EXPERIMENTER,
            Self::Unknown {
                instruction_type, ..
            } => *instruction_type,
        };
        buf.put_u16(kind);
        let len_at = buf.reserve_len16();
        match self {
            Self::GotoTable(table) => buf.put_u8(*table),
            Self::WriteMetadata { metadata, mask } => {
                buf.put_zeros(4);
                buf.put_u64(*metadata);
                buf.put_u64(*mask);
            }
            Self::WriteActions(actions) | Self::ApplyActions(actions) => {
                buf.put_zeros(4);
                crate::action::emit_actions(actions, buf);
            }
            Self::ClearActions => buf.put_zeros(4),
            Self::Meter(id) => buf.put_u32(*id),
            Self::Experimenter { experimenter, data } => {
                buf.put_u32(*experimenter);
                buf.put_slice(data);
            }
            Self::Unknown { data, .. } => buf.put_slice(data),
        }
        buf.pad_to_8(start);
        buf.patch_len16(len_at, start);
    }

    /// OVS's position for this instruction when it prints a flow: meter,
    /// apply-actions, clear, write, metadata, goto (the order the pipeline
    /// executes them in).
    fn print_rank(&self) -> u8 {
        match self {
            Self::Meter(_) => 0,
            Self::ApplyActions(_) => 1,
            Self::ClearActions => 2,
            Self::WriteActions(_) => 3,
            Self::WriteMetadata { .. } => 4,
            Self::GotoTable(_) => 5,
            Self::Experimenter { .. } | Self::Unknown { .. } => 6,
        }
    }
}

impl fmt::Display for Instruction {
    /// One instruction in OVS's syntax; apply-actions prints its actions
    /// inline (`output:1,group:2`), as OVS does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GotoTable(t) => write!(f, "goto_table:{t}"),
            Self::WriteMetadata { metadata, mask } => {
                write!(f, "write_metadata:{metadata:#x}")?;
                if *mask != u64::MAX {
                    write!(f, "/{mask:#x}")?;
                }
                Ok(())
            }
            Self::WriteActions(actions) => {
                f.write_str("write_actions(")?;
                crate::action::display::write_actions(f, actions)?;
                f.write_str(")")
            }
            Self::ApplyActions(actions) => crate::action::display::write_actions(f, actions),
            Self::ClearActions => f.write_str("clear_actions"),
            Self::Meter(m) => write!(f, "meter:{m}"),
            Self::Experimenter { experimenter, data } => {
                write!(
                    f,
                    "experimenter_instruction({experimenter:#x},0x{})",
                    Hex(data)
                )
            }
            Self::Unknown {
                instruction_type,
                data,
            } => {
                write!(f, "instruction({instruction_type:#x},0x{})", Hex(data))
            }
        }
    }
}

/// A flow's instructions as `ovs-ofctl dump-flows` prints them:
/// `actions=meter:1,output:2,write_actions(group:1),goto_table:3`, or
/// `actions=drop` when nothing would be done.
#[derive(Debug, Clone, Copy)]
pub struct InstructionList<'a>(pub &'a [Instruction]);

impl fmt::Display for InstructionList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted: Vec<&Instruction> = self
            .0
            .iter()
            .filter(|i| !matches!(i, Instruction::ApplyActions(a) if a.is_empty()))
            .collect();
        sorted.sort_by_key(|i| i.print_rank());
        f.write_str("actions=")?;
        if sorted.is_empty() {
            return f.write_str("drop");
        }
        crate::print::write_comma_list(f, sorted)
    }
}

/// Reads instructions until the reader is exhausted.
pub fn parse_instructions(mut r: Reader<'_>) -> Result<Vec<Instruction>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(Instruction::parse(&mut r)?);
    }
    Ok(out)
}

pub fn emit_instructions(instructions: &[Instruction], buf: &mut Vec<u8>) {
    for i in instructions {
        i.emit(buf);
    }
}

#[cfg(test)]
mod tests;
