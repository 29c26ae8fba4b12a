//! Nicira (experimenter 0x00002320) and ONF (0x4f4e4600) extension actions.
//!
//! Nicira actions start with `type, len, vendor, subtype` (10 bytes); the
//! ONF copy-field action with `type, len, experimenter, exp_type`. Subtypes
//! not listed here, and encodings that carry 64-bit experimenter OXM headers,
//! are left to the caller to keep raw.

use super::{
    bad_len, expect_len, Action, Controller2Prop, FieldMove, FieldRef, ResubmitKind, Subfield,
};
use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::oxm::{class, OxmField};

/// Nicira's experimenter id (NX_VENDOR_ID).
pub const NX_VENDOR_ID: u32 = 0x0000_2320;
/// The Open Networking Foundation's experimenter id (ONF_VENDOR_ID).
pub const ONF_VENDOR_ID: u32 = 0x4f4e_4600;
/// ONFACT_ET_COPY_FIELD.
const ONF_COPY_FIELD: u16 = 3200;

/// `nx_action_subtype` values handled here.
mod subtype {
    pub const RESUBMIT: u16 = 1;
    pub const SET_TUNNEL: u16 = 2;
    pub const POP_QUEUE: u16 = 5;
    pub const REG_MOVE: u16 = 6;
    pub const REG_LOAD: u16 = 7;
    pub const NOTE: u16 = 8;
    pub const SET_TUNNEL64: u16 = 9;
    pub const RESUBMIT_TABLE: u16 = 14;
    pub const EXIT: u16 = 17;
    pub const DEC_TTL: u16 = 18;
    pub const FIN_TIMEOUT: u16 = 19;
    pub const CONTROLLER: u16 = 20;
    pub const DEC_TTL_CNT_IDS: u16 = 21;
    pub const STACK_PUSH: u16 = 27;
    pub const STACK_POP: u16 = 28;
    pub const REG_LOAD2: u16 = 33;
    pub const CONJUNCTION: u16 = 34;
    pub const CONTROLLER2: u16 = 37;
    pub const OUTPUT_TRUNC: u16 = 39;
    pub const CT_CLEAR: u16 = 43;
    pub const RESUBMIT_TABLE_CT: u16 = 44;
}

/// A field header that this codec can carry in a fixed 32-bit slot; an
/// experimenter-class header needs 64 bits and sends the action to the raw
/// fallback.
fn field_ref(h: u32) -> Option<FieldRef> {
    ((h >> 16) as u16 != class::EXPERIMENTER).then_some(FieldRef(h))
}

/// Decodes the body after the experimenter id; `Ok(None)` means "keep raw".
pub(super) fn parse(experimenter: u32, b: Reader<'_>, len: usize) -> Result<Option<Action>> {
    match experimenter {
        NX_VENDOR_ID => parse_nx(b, len),
        ONF_VENDOR_ID => parse_onf(b, len),
        _ => Ok(None),
    }
}

fn parse_nx(mut b: Reader<'_>, len: usize) -> Result<Option<Action>> {
    use subtype as st;
    let fixed = |want: usize| expect_len(len, want);
    let a = match b.u16()? {
        s @ (st::RESUBMIT | st::RESUBMIT_TABLE | st::RESUBMIT_TABLE_CT) => {
            fixed(16)?;
            let in_port = b.u16()?;
            let kind = match s {
                st::RESUBMIT => ResubmitKind::Port,
                st::RESUBMIT_TABLE => ResubmitKind::Table,
                _ => ResubmitKind::TableCt,
            };
            // The plain form has no table: its byte is padding, so 255
            // ("current table") is what it means.
            let table = b.u8()?;
            let table = if kind == ResubmitKind::Port {
                255
            } else {
                table
            };
            Action::Resubmit {
                in_port,
                table,
                kind,
            }
        }
        st::SET_TUNNEL => {
            fixed(16)?;
            b.skip(2)?;
            Action::SetTunnel(b.u32()?)
        }
        st::POP_QUEUE => fixed(16).map(|()| Action::PopQueue)?,
        st::REG_MOVE if len == 24 => match read_move(&mut b, false)? {
            Some(m) => Action::RegMove(m),
            None => return Ok(None),
        },
        st::REG_LOAD => {
            fixed(24)?;
            let ofs_nbits = b.u16()?;
            let Some(field) = field_ref(b.u32()?) else {
                return Ok(None);
            };
            let dst = Subfield {
                field,
                ofs: ofs_nbits >> 6,
                n_bits: (ofs_nbits & 0x3f) + 1,
            };
            Action::RegLoad {
                dst,
                value: b.u64()?,
            }
        }
        st::NOTE => Action::Note(b.take_rest().to_vec()),
        st::SET_TUNNEL64 => {
            fixed(24)?;
            b.skip(6)?;
            Action::SetTunnel64(b.u64()?)
        }
        st::EXIT => fixed(16).map(|()| Action::Exit)?,
        st::DEC_TTL => fixed(16).map(|()| Action::NxDecTtl)?,
        st::FIN_TIMEOUT => {
            fixed(16)?;
            Action::FinTimeout {
                idle_timeout: b.u16()?,
                hard_timeout: b.u16()?,
            }
        }
        st::CONTROLLER => {
            fixed(16)?;
            Action::Controller {
                max_len: b.u16()?,
                controller_id: b.u16()?,
                reason: b.u8()?,
            }
        }
        st::DEC_TTL_CNT_IDS => {
            let n = usize::from(b.u16()?);
            fixed(16 + (2 * n).div_ceil(8) * 8)?;
            b.skip(4)?;
            let ids = (0..n).map(|_| b.u16()).collect::<Result<Vec<_>>>()?;
            Action::DecTtlCntIds(ids)
        }
        s @ (st::STACK_PUSH | st::STACK_POP) => {
            fixed(24)?;
            let ofs = b.u16()?;
            let Some(field) = field_ref(b.u32()?) else {
                return Ok(None);
            };
            let sub = Subfield {
                field,
                ofs,
                n_bits: b.u16()?,
            };
            if s == st::STACK_PUSH {
                Action::StackPush(sub)
            } else {
                Action::StackPop(sub)
            }
        }
        st::REG_LOAD2 => {
            let field = OxmField::parse(&mut b).map_err(|_| bad_len(len))?;
            if b.remaining() >= 8 {
                return Err(bad_len(len));
            }
            Action::RegLoad2(field)
        }
        st::CONTROLLER2 => {
            b.skip(6)?;
            let mut props = Vec::new();
            while !b.is_empty() {
                props.push(read_controller2_prop(&mut b).map_err(|_| bad_len(len))?);
            }
            Action::Controller2(props)
        }
        st::CONJUNCTION => {
            fixed(16)?;
            let (clause, n_clauses) = (b.u8()?, b.u8()?);
            Action::Conjunction {
                id: b.u32()?,
                clause,
                n_clauses,
            }
        }
        st::OUTPUT_TRUNC => {
            fixed(16)?;
            Action::OutputTrunc {
                port: b.u16()?,
                max_len: b.u32()?,
            }
        }
        st::CT_CLEAR => fixed(16).map(|()| Action::CtClear)?,
        _ => return Ok(None),
    };
    Ok(Some(a))
}

/// One `type, len, value` property padded to 8 bytes; `len` counts the
/// 4-byte property header.
fn read_controller2_prop(b: &mut Reader<'_>) -> Result<Controller2Prop> {
    let kind = b.u16()?;
    let len = usize::from(b.u16()?);
    let value = b
        .take(len.checked_sub(4).ok_or_else(|| bad_len(len))?)?
        .to_vec();
    b.skip((8 - len % 8) % 8)?;
    Ok(Controller2Prop { kind, value })
}

fn parse_onf(mut b: Reader<'_>, len: usize) -> Result<Option<Action>> {
    if b.u16()? != ONF_COPY_FIELD || len != 32 {
        return Ok(None);
    }
    b.skip(2)?;
    Ok(read_move(&mut b, true)?.map(Action::CopyField))
}

/// `n_bits, src_ofs, dst_ofs`, then (after two pad bytes in the ONF layout,
/// `pad`) the two field headers; `None` when a header is an experimenter one.
fn read_move(b: &mut Reader<'_>, pad: bool) -> Result<Option<FieldMove>> {
    let (n_bits, src_ofs, dst_ofs) = (b.u16()?, b.u16()?, b.u16()?);
    if pad {
        b.skip(2)?;
    }
    Ok(match (field_ref(b.u32()?), field_ref(b.u32()?)) {
        (Some(src), Some(dst)) => Some(FieldMove {
            n_bits,
            src_ofs,
            dst_ofs,
            src,
            dst,
        }),
        _ => None,
    })
}

/// The inverse of [`read_move`]; `pad` adds the ONF layout's two pad bytes.
fn put_move(buf: &mut Vec<u8>, m: &FieldMove, pad: bool) {
    buf.put_u16(m.n_bits);
    buf.put_u16(m.src_ofs);
    buf.put_u16(m.dst_ofs);
    if pad {
        buf.put_zeros(2);
    }
    buf.put_u32(m.src.0);
    buf.put_u32(m.dst.0);
}

fn nx_start(buf: &mut Vec<u8>, subtype: u16) {
    buf.put_u32(NX_VENDOR_ID);
    buf.put_u16(subtype);
}

/// Writes an extension action's body after `type, len`; the caller pads and
/// patches the length.
pub(super) fn emit_body(a: &Action, buf: &mut Vec<u8>) {
    use subtype as st;
    match a {
        Action::RegMove(m) => {
            nx_start(buf, st::REG_MOVE);
            put_move(buf, m, false);
        }
        Action::CopyField(m) => {
            buf.put_u32(ONF_VENDOR_ID);
            buf.put_u16(ONF_COPY_FIELD);
            buf.put_zeros(2);
            put_move(buf, m, true);
        }
        Action::RegLoad { dst, value } => {
            nx_start(buf, st::REG_LOAD);
            buf.put_u16((dst.ofs << 6) | (dst.n_bits.wrapping_sub(1) & 0x3f));
            buf.put_u32(dst.field.0);
            buf.put_u64(*value);
        }
        Action::RegLoad2(field) => {
            nx_start(buf, st::REG_LOAD2);
            field.emit(buf);
        }
        Action::Resubmit {
            in_port,
            table,
            kind,
        } => {
            let s = match kind {
                ResubmitKind::Port => st::RESUBMIT,
                ResubmitKind::Table => st::RESUBMIT_TABLE,
                ResubmitKind::TableCt => st::RESUBMIT_TABLE_CT,
            };
            nx_start(buf, s);
            buf.put_u16(*in_port);
            buf.put_u8(if *kind == ResubmitKind::Port {
                0
            } else {
                *table
            });
        }
        Action::SetTunnel(id) => {
            nx_start(buf, st::SET_TUNNEL);
            buf.put_zeros(2);
            buf.put_u32(*id);
        }
        Action::SetTunnel64(id) => {
            nx_start(buf, st::SET_TUNNEL64);
            buf.put_zeros(6);
            buf.put_u64(*id);
        }
        Action::PopQueue => nx_start(buf, st::POP_QUEUE),
        Action::Note(data) => {
            nx_start(buf, st::NOTE);
            buf.put_slice(data);
        }
        Action::Exit => nx_start(buf, st::EXIT),
        Action::NxDecTtl => nx_start(buf, st::DEC_TTL),
        Action::DecTtlCntIds(ids) => {
            nx_start(buf, st::DEC_TTL_CNT_IDS);
            buf.put_u16(u16::try_from(ids.len()).unwrap_or(u16::MAX));
            buf.put_zeros(4);
            for id in ids {
                buf.put_u16(*id);
            }
        }
        Action::FinTimeout {
            idle_timeout,
            hard_timeout,
        } => {
            nx_start(buf, st::FIN_TIMEOUT);
            buf.put_u16(*idle_timeout);
            buf.put_u16(*hard_timeout);
        }
        Action::Controller {
            max_len,
            controller_id,
            reason,
        } => {
            nx_start(buf, st::CONTROLLER);
            buf.put_u16(*max_len);
            buf.put_u16(*controller_id);
            buf.put_u8(*reason);
        }
        Action::StackPush(sub) | Action::StackPop(sub) => {
            let s = if matches!(a, Action::StackPush(_)) {
                st::STACK_PUSH
            } else {
                st::STACK_POP
            };
            nx_start(buf, s);
            buf.put_u16(sub.ofs);
            buf.put_u32(sub.field.0);
            buf.put_u16(sub.n_bits);
        }
        Action::Controller2(props) => {
            nx_start(buf, st::CONTROLLER2);
            buf.put_zeros(6);
            for p in props {
                let start = buf.len();
                buf.put_u16(p.kind);
                let len_at = buf.reserve_len16();
                buf.put_slice(&p.value);
                buf.patch_len16(len_at, start);
                buf.pad_to_8(start);
            }
        }
        Action::Conjunction {
            id,
            clause,
            n_clauses,
        } => {
            nx_start(buf, st::CONJUNCTION);
            buf.put_u8(*clause);
            buf.put_u8(*n_clauses);
            buf.put_u32(*id);
        }
        Action::OutputTrunc { port, max_len } => {
            nx_start(buf, st::OUTPUT_TRUNC);
            buf.put_u16(*port);
            buf.put_u32(*max_len);
        }
        Action::CtClear => nx_start(buf, st::CT_CLEAR),
        // The OpenFlow 1.3 actions are written by `Action::emit` itself.
        _ => {}
    }
}
