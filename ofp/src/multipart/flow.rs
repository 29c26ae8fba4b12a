//! Flow bodies: OFPMP_FLOW (§7.3.5.2) and OFPMP_AGGREGATE (§7.3.5.3)
//! requests and replies.

use super::Duration;
use crate::codec::{Reader, Writer};
use crate::error::{ErrorCode, Result};
use crate::instruction::{emit_instructions, parse_instructions, Instruction, InstructionList};
use crate::message::record::split;
use crate::message::{
    group_no, port_no, FlagNames, PrioritizedMatch, FLOW_MOD_FLAG_NAMES, TABLE_ALL,
};
use crate::oxm::Match;
use crate::print;
use core::fmt;

/// `ofp_flow_stats_request`, also the body of `ofp_aggregate_stats_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStatsRequest {
    /// A table, or [`TABLE_ALL`].
    pub table_id: u8,
    pub out_port: u32,
    pub out_group: u32,
    pub cookie: u64,
    /// Which cookie bits must match; 0 ignores the cookie.
    pub cookie_mask: u64,
    pub match_: Match,
}

impl Default for FlowStatsRequest {
    /// Every flow in every table: what a reconciler dumps on connect.
    fn default() -> Self {
        Self {
            table_id: TABLE_ALL,
            out_port: port_no::ANY,
            out_group: group_no::ANY,
            cookie: 0,
            cookie_mask: 0,
            match_: Match::default(),
        }
    }
}

impl FlowStatsRequest {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let table_id = r.u8()?;
        r.skip(3)?;
        let out_port = r.u32()?;
        let out_group = r.u32()?;
        r.skip(4)?;
        Ok(Self {
            table_id,
            out_port,
            out_group,
            cookie: r.u64()?,
            cookie_mask: r.u64()?,
            match_: Match::parse(r)?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u8(self.table_id);
        buf.put_zeros(3);
        buf.put_u32(self.out_port);
        buf.put_u32(self.out_group);
        buf.put_zeros(4);
        buf.put_u64(self.cookie);
        buf.put_u64(self.cookie_mask);
        self.match_.emit(buf);
    }
}

/// Length of `ofp_flow_stats` before the match.
const FLOW_STATS_LEN: usize = 48;

/// `ofp_flow_stats`: one flow entry as a flow dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    /// Bitmap of [`crate::message::flow_mod_flags`].
    pub flags: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

impl FlowStats {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut s = split(r, 0, FLOW_STATS_LEN, "ofp_flow_stats", ErrorCode::BAD_LEN)?;
        s.skip(2)?;
        let table_id = s.u8()?;
        s.skip(1)?;
        let duration_sec = s.u32()?;
        let duration_nsec = s.u32()?;
        let priority = s.u16()?;
        let idle_timeout = s.u16()?;
        let hard_timeout = s.u16()?;
        let flags = s.u16()?;
        s.skip(4)?;
        let cookie = s.u64()?;
        let packet_count = s.u64()?;
        let byte_count = s.u64()?;
        let match_ = Match::parse(&mut s)?;
        Ok(Self {
            table_id,
            duration_sec,
            duration_nsec,
            priority,
            idle_timeout,
            hard_timeout,
            flags,
            cookie,
            packet_count,
            byte_count,
            match_,
            instructions: parse_instructions(s)?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        let len_at = buf.reserve_len16();
        buf.put_u8(self.table_id);
        buf.put_zeros(1);
        buf.put_u32(self.duration_sec);
        buf.put_u32(self.duration_nsec);
        buf.put_u16(self.priority);
        buf.put_u16(self.idle_timeout);
        buf.put_u16(self.hard_timeout);
        buf.put_u16(self.flags);
        buf.put_zeros(4);
        buf.put_u64(self.cookie);
        buf.put_u64(self.packet_count);
        buf.put_u64(self.byte_count);
        self.match_.emit(buf);
        emit_instructions(&self.instructions, buf);
        buf.patch_len16(len_at, start);
    }
}

/// `ofp_aggregate_stats_reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AggregateStats {
    pub packet_count: u64,
    pub byte_count: u64,
    pub flow_count: u32,
}

impl AggregateStats {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let a = Self {
            packet_count: r.u64()?,
            byte_count: r.u64()?,
            flow_count: r.u32()?,
        };
        r.skip(4)?;
        Ok(a)
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u64(self.packet_count);
        buf.put_u64(self.byte_count);
        buf.put_u32(self.flow_count);
        buf.put_zeros(4);
    }
}

impl fmt::Display for AggregateStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "packet_count={} byte_count={} flow_count={}",
            self.packet_count, self.byte_count, self.flow_count
        )
    }
}

impl fmt::Display for FlowStatsRequest {
    /// The restrictions that are set, as `ovs-ofctl` prints them; nothing
    /// for a dump of every flow.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.table_id != TABLE_ALL {
            parts.push(format!("table_id={}", self.table_id));
        }
        if self.out_port != port_no::ANY {
            parts.push(format!("out_port={}", print::Port(self.out_port)));
        }
        if self.out_group != group_no::ANY {
            parts.push(format!("out_group={}", self.out_group));
        }
        if self.cookie_mask != 0 {
            parts.push(format!(
                "cookie=0x{:x}/0x{:x}",
                self.cookie, self.cookie_mask
            ));
        }
        let m = self.match_.to_string();
        if !m.is_empty() {
            parts.push(m);
        }
        f.write_str(&parts.join(" "))
    }
}

impl fmt::Display for FlowStats {
    /// One `ovs-ofctl dump-flows` line: `cookie=0x1, duration=1.500s,
    /// table=0, n_packets=0, n_bytes=0, priority=100,arp actions=...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Duration {
            sec: self.duration_sec,
            nsec: self.duration_nsec,
        };
        write!(
            f,
            "cookie=0x{:x}, duration={d}, table={}, n_packets={}, n_bytes={}, ",
            self.cookie, self.table_id, self.packet_count, self.byte_count
        )?;
        if self.idle_timeout != 0 {
            write!(f, "idle_timeout={}, ", self.idle_timeout)?;
        }
        if self.hard_timeout != 0 {
            write!(f, "hard_timeout={}, ", self.hard_timeout)?;
        }
        if self.flags != 0 {
            write!(
                f,
                "{} ",
                FlagNames::new(u32::from(self.flags), FLOW_MOD_FLAG_NAMES)
            )?;
        }
        PrioritizedMatch {
            priority: self.priority,
            match_: &self.match_,
        }
        .write_between(f, "", " ")?;
        write!(f, "{}", InstructionList(&self.instructions))
    }
}
