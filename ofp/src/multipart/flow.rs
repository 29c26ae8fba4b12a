//! Flow bodies: OFPMP_FLOW (§7.3.5.2) and OFPMP_AGGREGATE (§7.3.5.3)
//! requests and replies.

use super::Duration;
use super::MultipartType;
use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, ErrorCode, Result};
use crate::framing::check_complete;
use crate::header::{MsgType, HEADER_LEN, OFP_VERSION};
use crate::instruction::{emit_instructions, parse_instructions, Instruction, InstructionList};
use crate::message::record::split;
use crate::message::{
    group_no, port_no, FlagNames, PrioritizedMatch, FLOW_MOD_FLAG_NAMES, TABLE_ALL,
};
use crate::oxm::{Match, OxmIter};
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

/// Offset of the multipart body in an OFPT_MULTIPART_REPLY message.
const MP_BODY_AT: usize = HEADER_LEN + 8;

/// A zero-copy view of an OFPT_MULTIPART_REPLY message of type OFPMP_FLOW.
///
/// A flow dump of hundreds of thousands of entries decoded into
/// [`FlowStats`] costs a match and instruction and action vectors per
/// entry; a reader that needs only some fields of each (a reconciler
/// wants identity and cookie) iterates [`FlowStatsReplyView::entries`]
/// instead.
#[derive(Debug, Clone, Copy)]
pub struct FlowStatsReplyView<'a> {
    msg: &'a [u8],
}

impl<'a> FlowStatsReplyView<'a> {
    /// Whether `msg` (a complete message) is a flow stats reply, by its
    /// header alone: the cheap test before [`Self::new_checked`].
    pub fn is_flow_reply(msg: &[u8]) -> bool {
        msg.len() >= MP_BODY_AT
            && MsgType::from(msg[1]) == MsgType::MultipartReply
            && MultipartType::from(u16::from_be_bytes([msg[8], msg[9]])) == MultipartType::Flow
    }

    /// Checks that `msg` is one complete OpenFlow 1.3 OFPMP_FLOW reply.
    /// The entries are checked as they are iterated.
    pub fn new_checked(msg: &'a [u8]) -> Result<Self> {
        check_complete(msg)?;
        if msg[0] != OFP_VERSION {
            return Err(DecodeError::BadVersion { version: msg[0] });
        }
        if !Self::is_flow_reply(msg) {
            return Err(DecodeError::bad_value(
                "ofp_multipart_reply",
                u64::from(msg[1]),
                ErrorCode::BAD_TYPE,
            ));
        }
        Ok(Self { msg })
    }

    pub fn xid(&self) -> u32 {
        u32::from_be_bytes([self.msg[4], self.msg[5], self.msg[6], self.msg[7]])
    }

    /// [`super::MULTIPART_MORE`] or 0.
    pub fn flags(&self) -> u16 {
        u16::from_be_bytes([self.msg[10], self.msg[11]])
    }

    /// Whether more parts with the same xid follow.
    pub fn more(&self) -> bool {
        self.flags() & super::MULTIPART_MORE != 0
    }

    /// The entries, each checked as it is reached; after an error the
    /// iterator ends.
    pub fn entries(&self) -> FlowStatsEntries<'a> {
        FlowStatsEntries {
            r: Reader::new(&self.msg[MP_BODY_AT..], "ofp_flow_stats"),
        }
    }
}

/// The entries of an OFPMP_FLOW reply body, as views.
#[derive(Debug, Clone)]
pub struct FlowStatsEntries<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for FlowStatsEntries<'a> {
    type Item = Result<FlowStatsView<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.is_empty() {
            return None;
        }
        let entry = FlowStatsView::split(&mut self.r);
        if entry.is_err() {
            // Nothing after a malformed entry can be framed.
            self.r = Reader::new(&[], "ofp_flow_stats");
        }
        Some(entry)
    }
}

/// A zero-copy view of one `ofp_flow_stats` entry.
///
/// Its length, its match's framing (not the fields) and its instructions'
/// framing (each a type and a length that is a multiple of 8 and fits; not
/// their contents) are checked when the view is made. [`Self::match_`] and
/// [`Self::to_flow_stats`] decode the rest, with the errors the owned
/// decode gives.
#[derive(Debug, Clone, Copy)]
pub struct FlowStatsView<'a> {
    entry: &'a [u8],
    /// End of the OXM TLVs (the match without its padding).
    oxm_end: usize,
    /// Start of the instructions (the end of the padded match).
    instructions_at: usize,
}

/// `ofp_match`'s type and length.
const MATCH_HEADER_LEN: usize = 4;

impl<'a> FlowStatsView<'a> {
    fn split(r: &mut Reader<'a>) -> Result<Self> {
        let entry = split(r, 0, FLOW_STATS_LEN, "ofp_flow_stats", ErrorCode::BAD_LEN)?;
        let entry = entry.rest();
        let m = Reader::new(&entry[FLOW_STATS_LEN..], "ofp_match");
        let bad_match = |len| DecodeError::bad_len_code("ofp_match", len, ErrorCode::MATCH_BAD_LEN);
        let match_len = usize::from(m.peek_u16(2)?);
        let padded = match_len.div_ceil(8) * 8;
        if match_len < MATCH_HEADER_LEN || padded > m.remaining() {
            return Err(bad_match(match_len));
        }
        let instructions_at = FLOW_STATS_LEN + padded;
        let mut ins = Reader::new(&entry[instructions_at..], "ofp_instruction");
        while !ins.is_empty() {
            ins.tlv8("ofp_instruction", ErrorCode::INSTRUCTION_BAD_LEN)?;
        }
        Ok(Self {
            entry,
            oxm_end: FLOW_STATS_LEN + match_len,
            instructions_at,
        })
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.entry[at], self.entry[at + 1]])
    }

    fn u64_at(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.entry[at..at + 8]);
        u64::from_be_bytes(b)
    }

    pub fn table_id(&self) -> u8 {
        self.entry[2]
    }

    pub fn priority(&self) -> u16 {
        self.u16_at(12)
    }

    pub fn cookie(&self) -> u64 {
        self.u64_at(24)
    }

    pub fn packet_count(&self) -> u64 {
        self.u64_at(32)
    }

    pub fn byte_count(&self) -> u64 {
        self.u64_at(40)
    }

    /// `ofp_match.type` (OFPMT_OXM in a valid entry).
    pub fn match_type(&self) -> u16 {
        self.u16_at(FLOW_STATS_LEN)
    }

    /// The OXM TLVs of the match, without its type, length and padding.
    pub fn match_bytes(&self) -> &'a [u8] {
        &self.entry[FLOW_STATS_LEN + MATCH_HEADER_LEN..self.oxm_end]
    }

    pub fn oxms(&self) -> OxmIter<'a> {
        OxmIter::new(self.match_bytes())
    }

    /// The match, decoded (its type and fields checked) as [`FlowStats`]
    /// decodes it.
    pub fn match_(&self) -> Result<Match> {
        let mut r = Reader::new(
            &self.entry[FLOW_STATS_LEN..self.instructions_at],
            "ofp_match",
        );
        Match::parse(&mut r)
    }

    /// The instructions as they are on the wire.
    pub fn instruction_bytes(&self) -> &'a [u8] {
        &self.entry[self.instructions_at..]
    }

    /// The whole entry, owned.
    pub fn to_flow_stats(&self) -> Result<FlowStats> {
        FlowStats::parse(&mut Reader::new(self.entry, "ofp_flow_stats"))
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
