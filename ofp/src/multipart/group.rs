//! Group bodies: OFPMP_GROUP (§7.3.5.9), OFPMP_GROUP_DESC (§7.3.5.10) and
//! OFPMP_GROUP_FEATURES (§7.3.5.11) replies.

use super::stats::{Counter, Duration, COUNTER_LEN};
use crate::codec::{Reader, Writer};
use crate::error::{ErrorCode, Result};
use crate::message::record::{parse_fixed, split};
use crate::message::{fmt_group, Bucket, GroupType};
use core::fmt;

/// Length of `ofp_group_stats` without bucket counters.
const GROUP_STATS_LEN: usize = 40;

/// `ofp_group_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupStats {
    pub group_id: u32,
    /// Flows and groups forwarding to this group.
    pub ref_count: u32,
    pub packet_count: u64,
    pub byte_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    /// One per bucket, in bucket order.
    pub bucket_stats: Vec<Counter>,
}

impl GroupStats {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut g = split(r, 0, GROUP_STATS_LEN, "ofp_group_stats", ErrorCode::BAD_LEN)?;
        g.skip(4)?;
        let group_id = g.u32()?;
        let ref_count = g.u32()?;
        g.skip(4)?;
        Ok(Self {
            group_id,
            ref_count,
            packet_count: g.u64()?,
            byte_count: g.u64()?,
            duration_sec: g.u32()?,
            duration_nsec: g.u32()?,
            bucket_stats: parse_fixed(g, COUNTER_LEN, "ofp_bucket_counter", Counter::parse)?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        let len_at = buf.reserve_len16();
        buf.put_zeros(2);
        buf.put_u32(self.group_id);
        buf.put_u32(self.ref_count);
        buf.put_zeros(4);
        buf.put_u64(self.packet_count);
        buf.put_u64(self.byte_count);
        buf.put_u32(self.duration_sec);
        buf.put_u32(self.duration_nsec);
        for c in &self.bucket_stats {
            c.emit(buf);
        }
        buf.patch_len16(len_at, start);
    }
}

impl fmt::Display for GroupStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Duration {
            sec: self.duration_sec,
            nsec: self.duration_nsec,
        };
        write!(
            f,
            " group_id={},duration={d},ref_count={},packet_count={},byte_count={}",
            self.group_id, self.ref_count, self.packet_count, self.byte_count
        )?;
        for (i, c) in self.bucket_stats.iter().enumerate() {
            write!(
                f,
                ",bucket{i}:packet_count={},byte_count={}",
                c.packet_count, c.byte_count
            )?;
        }
        Ok(())
    }
}

/// Length of `ofp_group_desc` without buckets.
const GROUP_DESC_LEN: usize = 8;

/// `ofp_group_desc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDesc {
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

impl GroupDesc {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut g = split(r, 0, GROUP_DESC_LEN, "ofp_group_desc", ErrorCode::BAD_LEN)?;
        g.skip(2)?;
        let group_type = GroupType::from(g.u8()?);
        g.skip(1)?;
        let group_id = g.u32()?;
        Ok(Self {
            group_type,
            group_id,
            buckets: Bucket::parse_list(g)?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        let len_at = buf.reserve_len16();
        buf.put_u8(self.group_type.into());
        buf.put_zeros(1);
        buf.put_u32(self.group_id);
        for b in &self.buckets {
            b.emit(buf);
        }
        buf.patch_len16(len_at, start);
    }
}

impl fmt::Display for GroupDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_group(f, self.group_id, self.group_type, &self.buckets)
    }
}

/// `ofp_group_capabilities` bits.
pub mod group_capabilities {
    pub const SELECT_WEIGHT: u32 = 1 << 0;
    pub const SELECT_LIVENESS: u32 = 1 << 1;
    pub const CHAINING: u32 = 1 << 2;
    pub const CHAINING_CHECKS: u32 = 1 << 3;
}

/// `ofp_group_features`. Arrays are indexed by [`GroupType`] code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupFeatures {
    /// Bitmap of supported group types (bit n: type n).
    pub types: u32,
    /// Bitmap of [`group_capabilities`].
    pub capabilities: u32,
    pub max_groups: [u32; 4],
    /// Bitmaps of supported action types (bit n: action type n).
    pub actions: [u32; 4],
}

impl GroupFeatures {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let types = r.u32()?;
        let capabilities = r.u32()?;
        let mut max_groups = [0; 4];
        for m in &mut max_groups {
            *m = r.u32()?;
        }
        let mut actions = [0; 4];
        for a in &mut actions {
            *a = r.u32()?;
        }
        Ok(Self {
            types,
            capabilities,
            max_groups,
            actions,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.types);
        buf.put_u32(self.capabilities);
        for v in self.max_groups.iter().chain(&self.actions) {
            buf.put_u32(*v);
        }
    }
}

impl fmt::Display for GroupFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Group table:\n    Types:  0x{:x}\n    Capabilities:  0x{:x}",
            self.types, self.capabilities
        )?;
        for (i, name) in ["all", "select", "indirect", "fast failover"]
            .iter()
            .enumerate()
        {
            if self.types & (1 << i) != 0 {
                write!(
                    f,
                    "\n    {name} group:\n       max_groups={:#x}\n       actions: 0x{:08x}",
                    self.max_groups[i], self.actions[i]
                )?;
            }
        }
        Ok(())
    }
}
