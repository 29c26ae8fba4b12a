//! OFPT_FLOW_MOD (§7.3.4.1) and OFPT_FLOW_REMOVED (§7.4.2).

use super::flags::FlagNames;
use super::{group_no, port_no, NO_BUFFER};
use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, ErrorCode, Result};
use crate::header::{open_enum, Header, MsgType};
use crate::instruction::{emit_instructions, parse_instructions, Instruction, InstructionList};
use crate::multipart::Duration;
use crate::oxm::Match;
use crate::print;
use core::fmt;

open_enum! {
    /// `ofp_flow_mod_command`, named as `ovs-ofctl` prints them.
    pub enum FlowModCommand: u8 {
        Add = 0 => "ADD",
        Modify = 1 => "MOD",
        ModifyStrict = 2 => "MOD_STRICT",
        Delete = 3 => "DEL",
        DeleteStrict = 4 => "DEL_STRICT",
    }
}

/// `ofp_flow_mod_flags` bits.
pub mod flow_mod_flags {
    pub const SEND_FLOW_REM: u16 = 1 << 0;
    pub const CHECK_OVERLAP: u16 = 1 << 1;
    pub const RESET_COUNTS: u16 = 1 << 2;
    pub const NO_PKT_COUNTS: u16 = 1 << 3;
    pub const NO_BYT_COUNTS: u16 = 1 << 4;
    /// Every bit OpenFlow 1.3 defines.
    pub const ALL: u16 = 0x1f;
}

/// The flag names `ovs-ofctl` prints, in its order (for [`super::FlagNames`]).
pub const FLOW_MOD_FLAG_NAMES: &[(u32, &str)] = &[
    (flow_mod_flags::SEND_FLOW_REM as u32, "send_flow_rem"),
    (flow_mod_flags::CHECK_OVERLAP as u32, "check_overlap"),
    (flow_mod_flags::RESET_COUNTS as u32, "reset_counts"),
    (flow_mod_flags::NO_PKT_COUNTS as u32, "no_packet_counts"),
    (flow_mod_flags::NO_BYT_COUNTS as u32, "no_byte_counts"),
];

/// `OFP_DEFAULT_PRIORITY`.
pub const DEFAULT_PRIORITY: u16 = 0x8000;
/// `OFPTT_ALL`: every table, in deletes and stats requests.
pub const TABLE_ALL: u8 = 0xff;

/// `ofp_flow_mod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMod {
    pub cookie: u64,
    /// For MODIFY/DELETE: which cookie bits must match; 0 ignores the cookie.
    pub cookie_mask: u64,
    pub table_id: u8,
    pub command: FlowModCommand,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub buffer_id: u32,
    /// For DELETE: only flows that output to this port ([`port_no::ANY`]: any).
    pub out_port: u32,
    /// For DELETE: only flows that output to this group ([`group_no::ANY`]: any).
    pub out_group: u32,
    /// Bitmap of [`flow_mod_flags`].
    pub flags: u16,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

impl Default for FlowMod {
    /// An ADD into table 0 at the default priority, unbuffered, with no
    /// out_port/out_group restriction.
    fn default() -> Self {
        Self {
            cookie: 0,
            cookie_mask: 0,
            table_id: 0,
            command: FlowModCommand::Add,
            idle_timeout: 0,
            hard_timeout: 0,
            priority: DEFAULT_PRIORITY,
            buffer_id: NO_BUFFER,
            out_port: port_no::ANY,
            out_group: group_no::ANY,
            flags: 0,
            match_: Match::default(),
            instructions: Vec::new(),
        }
    }
}

impl FlowMod {
    /// Reads the body; an unknown command or flag is refused with the code a
    /// switch would send (OFPFMFC_BAD_COMMAND / OFPFMFC_BAD_FLAGS).
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let cookie = r.u64()?;
        let cookie_mask = r.u64()?;
        let table_id = r.u8()?;
        let command = FlowModCommand::from(r.u8()?);
        if let FlowModCommand::Unknown(c) = command {
            return Err(DecodeError::bad_value(
                "ofp_flow_mod.command",
                u64::from(c),
                ErrorCode::FLOW_MOD_BAD_COMMAND,
            ));
        }
        let idle_timeout = r.u16()?;
        let hard_timeout = r.u16()?;
        let priority = r.u16()?;
        let buffer_id = r.u32()?;
        let out_port = r.u32()?;
        let out_group = r.u32()?;
        let flags = r.u16()?;
        if flags & !flow_mod_flags::ALL != 0 {
            return Err(DecodeError::bad_value(
                "ofp_flow_mod.flags",
                u64::from(flags),
                ErrorCode::FLOW_MOD_BAD_FLAGS,
            ));
        }
        r.skip(2)?;
        let match_ = Match::parse(r)?;
        let instructions = parse_instructions(r.sub(r.remaining(), "ofp_flow_mod.instructions")?)?;
        Ok(Self {
            cookie,
            cookie_mask,
            table_id,
            command,
            idle_timeout,
            hard_timeout,
            priority,
            buffer_id,
            out_port,
            out_group,
            flags,
            match_,
            instructions,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u64(self.cookie);
        buf.put_u64(self.cookie_mask);
        buf.put_u8(self.table_id);
        buf.put_u8(self.command.into());
        buf.put_u16(self.idle_timeout);
        buf.put_u16(self.hard_timeout);
        buf.put_u16(self.priority);
        buf.put_u32(self.buffer_id);
        buf.put_u32(self.out_port);
        buf.put_u32(self.out_group);
        buf.put_u16(self.flags);
        buf.put_zeros(2);
        self.match_.emit(buf);
        emit_instructions(&self.instructions, buf);
    }

    /// Appends the whole message (header included) to `buf`; allocates
    /// nothing beyond `buf`'s own growth.
    pub fn encode(&self, xid: u32, buf: &mut Vec<u8>) {
        let start = buf.len();
        let len_at = Header::emit_start(MsgType::FlowMod, xid, buf);
        self.emit(buf);
        buf.patch_len16(len_at, start);
    }
}

open_enum! {
    /// `ofp_flow_removed_reason`.
    pub enum FlowRemovedReason: u8 {
        IdleTimeout = 0 => "idle",
        HardTimeout = 1 => "hard",
        Delete = 2 => "delete",
        GroupDelete = 3 => "group_delete",
    }
}

/// `ofp_flow_removed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRemoved {
    pub cookie: u64,
    pub priority: u16,
    pub reason: FlowRemovedReason,
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub packet_count: u64,
    pub byte_count: u64,
    pub match_: Match,
}

impl FlowRemoved {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            cookie: r.u64()?,
            priority: r.u16()?,
            reason: FlowRemovedReason::from(r.u8()?),
            table_id: r.u8()?,
            duration_sec: r.u32()?,
            duration_nsec: r.u32()?,
            idle_timeout: r.u16()?,
            hard_timeout: r.u16()?,
            packet_count: r.u64()?,
            byte_count: r.u64()?,
            match_: Match::parse(r)?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u64(self.cookie);
        buf.put_u16(self.priority);
        buf.put_u8(self.reason.into());
        buf.put_u8(self.table_id);
        buf.put_u32(self.duration_sec);
        buf.put_u32(self.duration_nsec);
        buf.put_u16(self.idle_timeout);
        buf.put_u16(self.hard_timeout);
        buf.put_u64(self.packet_count);
        buf.put_u64(self.byte_count);
        self.match_.emit(buf);
    }
}

/// A match preceded by its priority, as OVS prints flows:
/// `priority=100,arp,arp_tpa=10.0.0.1`. The default priority is left out.
#[derive(Debug, Clone, Copy)]
pub struct PrioritizedMatch<'a> {
    pub priority: u16,
    pub match_: &'a Match,
}

impl PrioritizedMatch<'_> {
    /// Writes `lead`, the match and `trail`, or nothing when the match is
    /// empty and the priority the default.
    pub(crate) fn write_between(
        &self,
        f: &mut fmt::Formatter<'_>,
        lead: &str,
        trail: &str,
    ) -> fmt::Result {
        let m = self.to_string();
        if m.is_empty() {
            Ok(())
        } else {
            write!(f, "{lead}{m}{trail}")
        }
    }
}

impl fmt::Display for PrioritizedMatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.match_.to_string();
        match (self.priority != DEFAULT_PRIORITY, m.is_empty()) {
            (true, true) => write!(f, "priority={}", self.priority),
            (true, false) => write!(f, "priority={},{m}", self.priority),
            (false, _) => f.write_str(&m),
        }
    }
}

/// Writes each flag name preceded by a space.
fn fmt_flow_flags(f: &mut fmt::Formatter<'_>, flags: u16) -> fmt::Result {
    if flags != 0 {
        write!(
            f,
            " {}",
            FlagNames::new(u32::from(flags), FLOW_MOD_FLAG_NAMES)
        )?;
    }
    Ok(())
}

impl fmt::Display for FlowMod {
    /// `ovs-ofctl`'s rendering: `ADD table:1 priority=100,arp actions=output:2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.command)?;
        if self.table_id != 0 {
            write!(f, " table:{}", self.table_id)?;
        }
        if self.cookie_mask != 0 {
            write!(f, " cookie:0x{:x}/0x{:x}", self.cookie, self.cookie_mask)?;
        } else if self.cookie != 0 {
            write!(f, " cookie:0x{:x}", self.cookie)?;
        }
        if self.idle_timeout != 0 {
            write!(f, " idle:{}", self.idle_timeout)?;
        }
        if self.hard_timeout != 0 {
            write!(f, " hard:{}", self.hard_timeout)?;
        }
        PrioritizedMatch {
            priority: self.priority,
            match_: &self.match_,
        }
        .write_between(f, " ", "")?;
        if self.buffer_id != NO_BUFFER {
            write!(f, " buf:0x{:x}", self.buffer_id)?;
        }
        if self.out_port != port_no::ANY {
            write!(f, " out_port:{}", print::Port(self.out_port))?;
        }
        if self.out_group != group_no::ANY {
            write!(f, " out_group:{}", self.out_group)?;
        }
        fmt_flow_flags(f, self.flags)?;
        write!(f, " {}", InstructionList(&self.instructions))
    }
}

impl fmt::Display for FlowRemoved {
    /// `ovs-ofctl`'s rendering: the flow, then `reason=idle table_id=0
    /// cookie:0x1 duration1.5s idle60 hard0 pkts1 bytes60`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        PrioritizedMatch {
            priority: self.priority,
            match_: &self.match_,
        }
        .write_between(f, "", " ")?;
        let d = Duration {
            sec: self.duration_sec,
            nsec: self.duration_nsec,
        };
        write!(
            f,
            "reason={} table_id={} cookie:0x{:x} duration{d} idle{} hard{} pkts{} bytes{}",
            self.reason,
            self.table_id,
            self.cookie,
            self.idle_timeout,
            self.hard_timeout,
            self.packet_count,
            self.byte_count
        )
    }
}
