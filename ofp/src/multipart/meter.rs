//! Meter bodies: OFPMP_METER (§7.3.5.12), OFPMP_METER_CONFIG (§7.3.5.13)
//! and OFPMP_METER_FEATURES (§7.3.5.14) replies.

use super::stats::{Counter, COUNTER_LEN};
use crate::codec::{Reader, Writer};
use crate::error::{ErrorCode, Result};
use crate::message::record::{parse_fixed, split};
use crate::message::{fmt_meter, FlagNames, MeterBand};
use core::fmt;

/// Length of `ofp_meter_stats` without band counters.
const METER_STATS_LEN: usize = 40;

/// `ofp_meter_stats`. Band counters are [`Counter`]s whose fields are the
/// spec's `packet_band_count` and `byte_band_count`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeterStats {
    pub meter_id: u32,
    pub flow_count: u32,
    pub packet_in_count: u64,
    pub byte_in_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub band_stats: Vec<Counter>,
}

impl MeterStats {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut m = split(r, 4, METER_STATS_LEN, "ofp_meter_stats", ErrorCode::BAD_LEN)?;
        let meter_id = m.u32()?;
        m.skip(8)?;
        Ok(Self {
            meter_id,
            flow_count: m.u32()?,
            packet_in_count: m.u64()?,
            byte_in_count: m.u64()?,
            duration_sec: m.u32()?,
            duration_nsec: m.u32()?,
            band_stats: parse_fixed(m, COUNTER_LEN, "ofp_meter_band_stats", Counter::parse)?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        buf.put_u32(self.meter_id);
        let len_at = buf.reserve_len16();
        buf.put_zeros(6);
        buf.put_u32(self.flow_count);
        buf.put_u64(self.packet_in_count);
        buf.put_u64(self.byte_in_count);
        buf.put_u32(self.duration_sec);
        buf.put_u32(self.duration_nsec);
        for c in &self.band_stats {
            c.emit(buf);
        }
        buf.patch_len16(len_at, start);
    }
}

impl fmt::Display for MeterStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "meter:{} flow_count:{} packet_in_count:{} byte_in_count:{} duration:{}.{:09}s bands:",
            self.meter_id,
            self.flow_count,
            self.packet_in_count,
            self.byte_in_count,
            self.duration_sec,
            self.duration_nsec
        )?;
        for (i, c) in self.band_stats.iter().enumerate() {
            write!(
                f,
                "\n{i}: packet_count:{} byte_count:{}",
                c.packet_count, c.byte_count
            )?;
        }
        Ok(())
    }
}

/// Length of `ofp_meter_config` without bands.
const METER_CONFIG_LEN: usize = 8;

/// `ofp_meter_config`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeterConfig {
    /// Bitmap of [`crate::message::meter_flags`].
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}

impl MeterConfig {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut m = split(
            r,
            0,
            METER_CONFIG_LEN,
            "ofp_meter_config",
            ErrorCode::BAD_LEN,
        )?;
        m.skip(2)?;
        let flags = m.u16()?;
        let meter_id = m.u32()?;
        Ok(Self {
            flags,
            meter_id,
            bands: MeterBand::parse_list(m)?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        let len_at = buf.reserve_len16();
        buf.put_u16(self.flags);
        buf.put_u32(self.meter_id);
        for b in &self.bands {
            b.emit(buf);
        }
        buf.patch_len16(len_at, start);
    }
}

impl fmt::Display for MeterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_meter(f, self.meter_id, self.flags, &self.bands)
    }
}

/// `ofp_meter_features`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeterFeatures {
    pub max_meter: u32,
    /// Bitmap of supported band types (bit n: band type n).
    pub band_types: u32,
    /// Bitmap of supported [`crate::message::meter_flags`].
    pub capabilities: u32,
    pub max_bands: u8,
    pub max_color: u8,
}

impl MeterFeatures {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let m = Self {
            max_meter: r.u32()?,
            band_types: r.u32()?,
            capabilities: r.u32()?,
            max_bands: r.u8()?,
            max_color: r.u8()?,
        };
        r.skip(2)?;
        Ok(m)
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.max_meter);
        buf.put_u32(self.band_types);
        buf.put_u32(self.capabilities);
        buf.put_u8(self.max_bands);
        buf.put_u8(self.max_color);
        buf.put_zeros(2);
    }
}

impl fmt::Display for MeterFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const BAND_TYPES: &[(u32, &str)] = &[(1 << 1, "drop"), (1 << 2, "dscp_remark")];
        write!(
            f,
            "max_meter:{} max_bands:{} max_color:{}\nband_types: {}\ncapabilities: {}",
            self.max_meter,
            self.max_bands,
            self.max_color,
            FlagNames::new(self.band_types, BAND_TYPES),
            FlagNames::new(self.capabilities, crate::message::METER_FLAG_NAMES)
        )
    }
}
