//! OFPT_GROUP_MOD (§7.3.4.2) and the buckets shared with group descriptions.

use super::record::{parse_all, split};
use crate::action::{emit_actions, parse_actions, Action, ActionList};
use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, ErrorCode, Result};
use crate::header::open_enum;
use crate::print;
use core::fmt;

/// `ofp_group`: reserved group numbers.
pub mod group_no {
    /// Highest number of a real group.
    pub const MAX: u32 = 0xffff_ff00;
    /// Every group, in deletes and stats requests.
    pub const ALL: u32 = 0xffff_fffc;
    /// "No group": wildcard in flow requests, unset in buckets.
    pub const ANY: u32 = 0xffff_ffff;
}

open_enum! {
    /// `ofp_group_mod_command`.
    pub enum GroupModCommand: u16 {
        Add = 0 => "ADD",
        Modify = 1 => "MOD",
        Delete = 2 => "DEL",
    }
}

open_enum! {
    /// `ofp_group_type`, named as `ovs-ofctl` prints them.
    pub enum GroupType: u8 {
        All = 0 => "all",
        Select = 1 => "select",
        Indirect = 2 => "indirect",
        FastFailover = 3 => "ff",
    }
}

/// Length of `ofp_bucket` without its actions.
const BUCKET_LEN: usize = 16;

/// `ofp_bucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Share of traffic in a select group.
    pub weight: u16,
    /// Liveness condition for fast-failover groups ([`super::port_no::ANY`]: none).
    pub watch_port: u32,
    pub watch_group: u32,
    pub actions: Vec<Action>,
}

impl Bucket {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut b = split(r, 0, BUCKET_LEN, "ofp_bucket", ErrorCode::BAD_LEN)?;
        b.skip(2)?;
        let weight = b.u16()?;
        let watch_port = b.u32()?;
        let watch_group = b.u32()?;
        b.skip(4)?;
        Ok(Self {
            weight,
            watch_port,
            watch_group,
            actions: parse_actions(b)?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        let len_at = buf.reserve_len16();
        buf.put_u16(self.weight);
        buf.put_u32(self.watch_port);
        buf.put_u32(self.watch_group);
        buf.put_zeros(4);
        emit_actions(&self.actions, buf);
        buf.patch_len16(len_at, start);
    }

    /// Reads buckets until `r` is exhausted.
    pub(crate) fn parse_list(r: Reader<'_>) -> Result<Vec<Self>> {
        parse_all(r, Self::parse)
    }
}

/// `ofp_group_mod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMod {
    pub command: GroupModCommand,
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

impl GroupMod {
    /// Reads the body; an unknown command or group type is refused with
    /// OFPGMFC_BAD_COMMAND / OFPGMFC_BAD_TYPE.
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let command = GroupModCommand::from(r.u16()?);
        if let GroupModCommand::Unknown(c) = command {
            return Err(DecodeError::bad_value(
                "ofp_group_mod.command",
                u64::from(c),
                ErrorCode::GROUP_MOD_BAD_COMMAND,
            ));
        }
        let group_type = GroupType::from(r.u8()?);
        if let GroupType::Unknown(t) = group_type {
            return Err(DecodeError::bad_value(
                "ofp_group_mod.type",
                u64::from(t),
                ErrorCode::GROUP_MOD_BAD_TYPE,
            ));
        }
        r.skip(1)?;
        let group_id = r.u32()?;
        let buckets = Bucket::parse_list(r.sub(r.remaining(), "ofp_bucket")?)?;
        Ok(Self {
            command,
            group_type,
            group_id,
            buckets,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u16(self.command.into());
        buf.put_u8(self.group_type.into());
        buf.put_zeros(1);
        buf.put_u32(self.group_id);
        for b in &self.buckets {
            b.emit(buf);
        }
    }
}

impl fmt::Display for Bucket {
    /// `bucket=weight:2,watch_port:1,actions=output:1`, leaving out what is
    /// unset.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bucket=")?;
        if self.weight != 0 {
            write!(f, "weight:{},", self.weight)?;
        }
        if self.watch_port != super::port_no::ANY {
            write!(f, "watch_port:{},", print::Port(self.watch_port))?;
        }
        if self.watch_group != group_no::ANY {
            write!(f, "watch_group:{},", self.watch_group)?;
        }
        write!(f, "{}", ActionList(&self.actions))
    }
}

/// Prints `group_id=1,type=select,bucket=...,bucket=...` as `ovs-ofctl`
/// prints groups.
pub(crate) fn fmt_group(
    f: &mut fmt::Formatter<'_>,
    group_id: u32,
    group_type: GroupType,
    buckets: &[Bucket],
) -> fmt::Result {
    match group_id {
        group_no::ALL => f.write_str("group_id=all")?,
        group_no::ANY => f.write_str("group_id=any")?,
        id => write!(f, "group_id={id}")?,
    }
    write!(f, ",type={group_type}")?;
    for b in buckets {
        write!(f, ",{b}")?;
    }
    Ok(())
}

impl fmt::Display for GroupMod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.command)?;
        fmt_group(f, self.group_id, self.group_type, &self.buckets)
    }
}
