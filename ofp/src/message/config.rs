//! Switch-wide configuration messages: features (§7.3.1), switch config
//! (§7.3.2), table mod (§7.3.3), role (§7.3.9) and async config (§7.3.10).

use super::flags::FlagNames;
use crate::action::OFPCML_NO_BUFFER;
use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::header::open_enum;
use core::fmt;

/// `ofp_capabilities` bits of [`SwitchFeatures::capabilities`].
pub mod capabilities {
    pub const FLOW_STATS: u32 = 1 << 0;
    pub const TABLE_STATS: u32 = 1 << 1;
    pub const PORT_STATS: u32 = 1 << 2;
    pub const GROUP_STATS: u32 = 1 << 3;
    pub const IP_REASM: u32 = 1 << 5;
    pub const QUEUE_STATS: u32 = 1 << 6;
    pub const PORT_BLOCKED: u32 = 1 << 8;
}

const CAPABILITY_NAMES: &[(u32, &str)] = &[
    (capabilities::FLOW_STATS, "FLOW_STATS"),
    (capabilities::TABLE_STATS, "TABLE_STATS"),
    (capabilities::PORT_STATS, "PORT_STATS"),
    (capabilities::GROUP_STATS, "GROUP_STATS"),
    (capabilities::IP_REASM, "IP_REASM"),
    (capabilities::QUEUE_STATS, "QUEUE_STATS"),
    (capabilities::PORT_BLOCKED, "PORT_BLOCKED"),
];

/// `ofp_switch_features`: the body of OFPT_FEATURES_REPLY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwitchFeatures {
    pub datapath_id: u64,
    pub n_buffers: u32,
    pub n_tables: u8,
    /// Non-zero on auxiliary connections.
    pub auxiliary_id: u8,
    /// Bitmap of [`capabilities`].
    pub capabilities: u32,
    pub reserved: u32,
}

impl SwitchFeatures {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let datapath_id = r.u64()?;
        let n_buffers = r.u32()?;
        let n_tables = r.u8()?;
        let auxiliary_id = r.u8()?;
        r.skip(2)?;
        Ok(Self {
            datapath_id,
            n_buffers,
            n_tables,
            auxiliary_id,
            capabilities: r.u32()?,
            reserved: r.u32()?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u64(self.datapath_id);
        buf.put_u32(self.n_buffers);
        buf.put_u8(self.n_tables);
        buf.put_u8(self.auxiliary_id);
        buf.put_zeros(2);
        buf.put_u32(self.capabilities);
        buf.put_u32(self.reserved);
    }
}

impl fmt::Display for SwitchFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dpid:{:016x}\nn_tables:{}, n_buffers:{}",
            self.datapath_id, self.n_tables, self.n_buffers
        )?;
        if self.auxiliary_id != 0 {
            write!(f, ", auxiliary_id:{}", self.auxiliary_id)?;
        }
        write!(
            f,
            "\ncapabilities: {}",
            FlagNames::new(self.capabilities, CAPABILITY_NAMES)
        )
    }
}

/// `ofp_config_flags` values of [`SwitchConfig::flags`].
pub mod config_flags {
    pub const FRAG_NORMAL: u16 = 0;
    pub const FRAG_DROP: u16 = 1;
    pub const FRAG_REASM: u16 = 2;
    pub const FRAG_MASK: u16 = 3;
}

/// `ofp_switch_config`: the body of OFPT_GET_CONFIG_REPLY and OFPT_SET_CONFIG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwitchConfig {
    pub flags: u16,
    /// Bytes of a table-miss packet sent to the controller.
    pub miss_send_len: u16,
}

impl SwitchConfig {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            flags: r.u16()?,
            miss_send_len: r.u16()?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u16(self.flags);
        buf.put_u16(self.miss_send_len);
    }
}

impl fmt::Display for SwitchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frags = match self.flags & config_flags::FRAG_MASK {
            config_flags::FRAG_NORMAL => "normal",
            config_flags::FRAG_DROP => "drop",
            config_flags::FRAG_REASM => "reassemble",
            _ => "nx-match",
        };
        write!(f, "frags={frags}")?;
        if self.flags & !config_flags::FRAG_MASK != 0 {
            write!(f, " flags=0x{:x}", self.flags)?;
        }
        if self.miss_send_len == OFPCML_NO_BUFFER {
            f.write_str(" miss_send_len=NO_BUFFER")
        } else {
            write!(f, " miss_send_len={}", self.miss_send_len)
        }
    }
}

/// `ofp_table_mod`: the body of OFPT_TABLE_MOD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableMod {
    /// A table, or `OFPTT_ALL` (0xff).
    pub table_id: u8,
    /// Bitmap of `OFPTC_*`; 1.3 defines only the deprecated bits 0–1.
    pub config: u32,
}

impl TableMod {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let table_id = r.u8()?;
        r.skip(3)?;
        Ok(Self {
            table_id,
            config: r.u32()?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u8(self.table_id);
        buf.put_zeros(3);
        buf.put_u32(self.config);
    }
}

impl fmt::Display for TableMod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.table_id == 0xff {
            f.write_str("table_id=ALL")?;
        } else {
            write!(f, "table_id={}", self.table_id)?;
        }
        if self.config != 0 {
            write!(f, " config=0x{:x}", self.config)?;
        }
        Ok(())
    }
}

open_enum! {
    /// `ofp_controller_role`.
    pub enum ControllerRole: u32 {
        NoChange = 0 => "nochange",
        Equal = 1 => "equal",
        Master = 2 => "primary",
        Slave = 3 => "secondary",
    }
}

/// `ofp_role_request`: the body of OFPT_ROLE_REQUEST and OFPT_ROLE_REPLY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleMsg {
    pub role: ControllerRole,
    /// Orders master elections between controllers (§6.3.7).
    pub generation_id: u64,
}

impl RoleMsg {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let role = ControllerRole::from(r.u32()?);
        r.skip(4)?;
        Ok(Self {
            role,
            generation_id: r.u64()?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.role.into());
        buf.put_zeros(4);
        buf.put_u64(self.generation_id);
    }
}

impl fmt::Display for RoleMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "role={}", self.role)?;
        // The spec reserves all-ones for "no generation id" with NOCHANGE/EQUAL.
        if self.generation_id != u64::MAX {
            write!(f, " generation_id={}", self.generation_id)?;
        }
        Ok(())
    }
}

const PACKET_IN_REASONS: &[(u32, &str)] = &[(1, "no_match"), (2, "action"), (4, "invalid_ttl")];
const PORT_STATUS_REASONS: &[(u32, &str)] = &[(1, "add"), (2, "delete"), (4, "modify")];
const FLOW_REMOVED_REASONS: &[(u32, &str)] =
    &[(1, "idle"), (2, "hard"), (4, "delete"), (8, "group_delete")];

/// `ofp_async_config`: the body of OFPT_GET_ASYNC_REPLY and OFPT_SET_ASYNC.
/// Index 0 applies while the controller is master or equal, index 1 while
/// it is slave; bit `n` enables reason `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncConfig {
    pub packet_in_mask: [u32; 2],
    pub port_status_mask: [u32; 2],
    pub flow_removed_mask: [u32; 2],
}

impl AsyncConfig {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut pair = || -> Result<[u32; 2]> { Ok([r.u32()?, r.u32()?]) };
        Ok(Self {
            packet_in_mask: pair()?,
            port_status_mask: pair()?,
            flow_removed_mask: pair()?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        for mask in [
            self.packet_in_mask,
            self.port_status_mask,
            self.flow_removed_mask,
        ] {
            buf.put_u32(mask[0]);
            buf.put_u32(mask[1]);
        }
    }
}

impl fmt::Display for AsyncConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, role) in ["primary", "secondary"].iter().enumerate() {
            write!(f, "\n {role}:")?;
            for (label, mask, names) in [
                ("PACKET_IN", self.packet_in_mask[i], PACKET_IN_REASONS),
                ("PORT_STATUS", self.port_status_mask[i], PORT_STATUS_REASONS),
                (
                    "FLOW_REMOVED",
                    self.flow_removed_mask[i],
                    FLOW_REMOVED_REASONS,
                ),
            ] {
                let flags = FlagNames {
                    bits: mask,
                    names,
                    sep: " ",
                    empty: "(off)",
                };
                write!(f, "\n  {label:>14}: {flags}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::hex;

    fn reparse<T>(
        body: &[u8],
        parse: fn(&mut Reader<'_>) -> Result<T>,
        emit: fn(&T, &mut Vec<u8>),
    ) -> T {
        let mut r = Reader::new(body, "test");
        let v = parse(&mut r).unwrap();
        assert!(r.is_empty());
        let mut out = Vec::new();
        emit(&v, &mut out);
        assert_eq!(out, body);
        for n in 0..body.len() {
            assert!(parse(&mut Reader::new(&body[..n], "test")).is_err());
        }
        v
    }

    #[test]
    fn features_reply_fields_and_text() {
        // From OVS's "OFPT_FEATURES_REPLY - with auxiliary_id - OF1.3".
        let body = hex("000050540000000100000100ff0100000000017700000000");
        let f = reparse(&body, SwitchFeatures::parse, SwitchFeatures::emit);
        assert_eq!(
            (f.datapath_id, f.n_buffers, f.n_tables, f.auxiliary_id),
            (0x5054_0000_0001, 256, 255, 1)
        );
        assert_eq!(
            f.to_string(),
            "dpid:0000505400000001\nn_tables:255, n_buffers:256, auxiliary_id:1\n\
             capabilities: FLOW_STATS TABLE_STATS PORT_STATS IP_REASM QUEUE_STATS PORT_BLOCKED 0x10"
        );
    }

    #[test]
    fn switch_config_and_table_mod() {
        let c = reparse(&[0, 2, 0xff, 0xff], SwitchConfig::parse, SwitchConfig::emit);
        assert_eq!(c.to_string(), "frags=reassemble miss_send_len=NO_BUFFER");
        let t = reparse(&[2, 0, 0, 0, 0, 0, 0, 3], TableMod::parse, TableMod::emit);
        assert_eq!(t.to_string(), "table_id=2 config=0x3");
    }

    #[test]
    fn role_keeps_unknown_roles() {
        let r = reparse(
            &hex("00000002000000000000000000000010"),
            RoleMsg::parse,
            RoleMsg::emit,
        );
        assert_eq!(r.to_string(), "role=primary generation_id=16");
        let r = reparse(
            &hex("0000000900000000ffffffffffffffff"),
            RoleMsg::parse,
            RoleMsg::emit,
        );
        assert_eq!(r.role, ControllerRole::Unknown(9));
        assert_eq!(r.to_string(), "role=0x9");
    }

    #[test]
    fn async_config_matches_ovs_reading() {
        // From OVS's "OFPT_SET_ASYNC - OF1.3".
        let body = hex("000010050000100700000003000000070000000000000003");
        let a = reparse(&body, AsyncConfig::parse, AsyncConfig::emit);
        assert_eq!(a.packet_in_mask, [0x1005, 0x1007]);
        let text = a.to_string();
        assert!(
            text.contains("PACKET_IN: no_match invalid_ttl 0x1000"),
            "{text}"
        );
        assert!(text.contains("FLOW_REMOVED: (off)"), "{text}");
        assert!(text.contains("PORT_STATUS: add delete modify"), "{text}");
    }
}
