//! Flow bodies: OFPMP_FLOW (§7.3.5.2) and OFPMP_AGGREGATE (§7.3.5.3)
//! requests and replies.

use crate::codec::{Reader, Writer};
use crate::error::{ErrorCode, Result};
use crate::instruction::{emit_instructions, parse_instructions, Instruction};
use crate::message::record::split;
use crate::message::{group_no, port_no, TABLE_ALL};
use crate::oxm::Match;

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

impl core::fmt::Display for AggregateStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "packet_count={} byte_count={} flow_count={}",
            self.packet_count, self.byte_count, self.flow_count
        )
    }
}
