//! OFPT_METER_MOD (§7.3.4.4) and the meter bands shared with meter
//! configuration replies.

use super::flags::FlagNames;
use super::record::{parse_all, split};
use crate::codec::{Hex, Reader, Writer};
use crate::error::{DecodeError, ErrorCode, Result};
use crate::header::open_enum;
use core::fmt;

open_enum! {
    /// `ofp_meter_mod_command`.
    pub enum MeterModCommand: u16 {
        Add = 0 => "ADD",
        Modify = 1 => "MOD",
        Delete = 2 => "DEL",
    }
}

/// `ofp_meter_flags` bits.
pub mod meter_flags {
    pub const KBPS: u16 = 1 << 0;
    pub const PKTPS: u16 = 1 << 1;
    pub const BURST: u16 = 1 << 2;
    pub const STATS: u16 = 1 << 3;
    /// Every bit OpenFlow 1.3 defines.
    pub const ALL: u16 = 0xf;
}

pub(crate) const METER_FLAG_NAMES: &[(u32, &str)] = &[
    (meter_flags::KBPS as u32, "kbps"),
    (meter_flags::PKTPS as u32, "pktps"),
    (meter_flags::BURST as u32, "burst"),
    (meter_flags::STATS as u32, "stats"),
];

/// `ofp_meter`: reserved meter numbers.
pub mod meter_no {
    pub const MAX: u32 = 0xffff_0000;
    pub const SLOWPATH: u32 = 0xffff_fffd;
    pub const CONTROLLER: u32 = 0xffff_fffe;
    /// Every meter, in deletes and stats requests.
    pub const ALL: u32 = 0xffff_ffff;
}

/// `ofp_meter_band_type` codes.
pub mod band_type {
    pub const DROP: u16 = 1;
    pub const DSCP_REMARK: u16 = 2;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// Length of every OpenFlow 1.3 band: type, len, rate, burst_size and four
/// type-specific bytes.
const BAND_LEN: usize = 16;
/// The part all bands share.
const BAND_HEADER_LEN: usize = 12;

/// One `ofp_meter_band_*`. Rates are in kb/s or packets/s per the meter's
/// flags; burst sizes in kilobits or packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterBand {
    Drop {
        rate: u32,
        burst_size: u32,
    },
    /// Raise the drop precedence of the packet's DSCP by `prec_level`.
    DscpRemark {
        rate: u32,
        burst_size: u32,
        prec_level: u8,
    },
    Experimenter {
        rate: u32,
        burst_size: u32,
        experimenter: u32,
        data: Vec<u8>,
    },
    /// A band type this codec does not know; `data` follows the common
    /// header. A METER_MOD carrying one is refused (OFPMMFC_BAD_BAND), a
    /// switch's reply keeps it.
    Unknown {
        band_type: u16,
        rate: u32,
        burst_size: u32,
        data: Vec<u8>,
    },
}

impl MeterBand {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut b = split(r, 2, BAND_HEADER_LEN, "ofp_meter_band", ErrorCode::BAD_LEN)?;
        let band_type = b.u16()?;
        let len = b.u16()?;
        let rate = b.u32()?;
        let burst_size = b.u32()?;
        let fixed = || {
            if usize::from(len) == BAND_LEN {
                Ok(())
            } else {
                Err(DecodeError::bad_len("ofp_meter_band", usize::from(len)))
            }
        };
        Ok(match band_type {
            band_type::DROP => {
                fixed()?;
                Self::Drop { rate, burst_size }
            }
            band_type::DSCP_REMARK => {
                fixed()?;
                let prec_level = b.u8()?;
                Self::DscpRemark {
                    rate,
                    burst_size,
                    prec_level,
                }
            }
            band_type::EXPERIMENTER => Self::Experimenter {
                rate,
                burst_size,
                experimenter: b.u32()?,
                data: b.take_rest().to_vec(),
            },
            band_type => Self::Unknown {
                band_type,
                rate,
                burst_size,
                data: b.take_rest().to_vec(),
            },
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        let (kind, rate, burst_size) = self.header();
        buf.put_u16(kind);
        let len_at = buf.reserve_len16();
        buf.put_u32(rate);
        buf.put_u32(burst_size);
        match self {
            Self::Drop { .. } => buf.put_zeros(4),
            Self::DscpRemark { prec_level, .. } => {
                buf.put_u8(*prec_level);
                buf.put_zeros(3);
            }
            Self::Experimenter {
                experimenter, data, ..
            } => {
                buf.put_u32(*experimenter);
                buf.put_slice(data);
            }
            Self::Unknown { data, .. } => buf.put_slice(data),
        }
        buf.patch_len16(len_at, start);
    }

    /// (type, rate, burst_size).
    pub fn header(&self) -> (u16, u32, u32) {
        match *self {
            Self::Drop { rate, burst_size } => (band_type::DROP, rate, burst_size),
            Self::DscpRemark {
                rate, burst_size, ..
            } => (band_type::DSCP_REMARK, rate, burst_size),
            Self::Experimenter {
                rate, burst_size, ..
            } => (band_type::EXPERIMENTER, rate, burst_size),
            Self::Unknown {
                band_type,
                rate,
                burst_size,
                ..
            } => (band_type, rate, burst_size),
        }
    }

    /// Reads bands until `r` is exhausted.
    pub(crate) fn parse_list(r: Reader<'_>) -> Result<Vec<Self>> {
        parse_all(r, Self::parse)
    }
}

impl fmt::Display for MeterBand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, rate, burst_size) = self.header();
        match self {
            Self::Drop { .. } => write!(f, "type=drop rate={rate}")?,
            Self::DscpRemark { .. } => write!(f, "type=dscp_remark rate={rate}")?,
            Self::Experimenter { experimenter, .. } => write!(
                f,
                "type=experimenter experimenter=0x{experimenter:x} rate={rate}"
            )?,
            Self::Unknown { band_type, .. } => write!(f, "type={band_type} rate={rate}")?,
        }
        if burst_size != 0 {
            write!(f, " burst_size={burst_size}")?;
        }
        match self {
            Self::DscpRemark { prec_level, .. } => write!(f, " prec_level={prec_level}"),
            Self::Experimenter { data, .. } | Self::Unknown { data, .. } if !data.is_empty() => {
                write!(f, " data={}", Hex(data))
            }
            _ => Ok(()),
        }
    }
}

/// Prints `kbps burst stats bands=` and one band per line, as OVS does for
/// meter mods and meter configs.
pub(crate) fn fmt_meter(
    f: &mut fmt::Formatter<'_>,
    meter_id: u32,
    flags: u16,
    bands: &[MeterBand],
) -> fmt::Result {
    match meter_id {
        meter_no::ALL => f.write_str("meter=all")?,
        meter_no::CONTROLLER => f.write_str("meter=controller")?,
        meter_no::SLOWPATH => f.write_str("meter=slowpath")?,
        id => write!(f, "meter={id}")?,
    }
    if flags != 0 {
        write!(f, " {}", FlagNames::new(u32::from(flags), METER_FLAG_NAMES))?;
    }
    f.write_str(" bands=")?;
    for b in bands {
        write!(f, "\n{b}")?;
    }
    Ok(())
}

/// `ofp_meter_mod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterMod {
    pub command: MeterModCommand,
    /// Bitmap of [`meter_flags`].
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}

impl MeterMod {
    /// Reads the body and applies the checks Open vSwitch applies, with its
    /// codes: an unknown command is OFPMMFC_BAD_COMMAND; for ADD and MODIFY,
    /// KBPS together with PKTPS or an undefined flag is OFPMMFC_BAD_FLAGS and
    /// a band of unknown type is OFPMMFC_BAD_BAND. DELETE ignores both.
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let command = MeterModCommand::from(r.u16()?);
        if let MeterModCommand::Unknown(c) = command {
            return Err(DecodeError::bad_value(
                "ofp_meter_mod.command",
                u64::from(c),
                ErrorCode::METER_MOD_BAD_COMMAND,
            ));
        }
        let flags = r.u16()?;
        let meter_id = r.u32()?;
        let bands = MeterBand::parse_list(r.sub(r.remaining(), "ofp_meter_band")?)?;
        if command != MeterModCommand::Delete {
            let both = meter_flags::KBPS | meter_flags::PKTPS;
            if flags & both == both || flags & !meter_flags::ALL != 0 {
                return Err(DecodeError::bad_value(
                    "ofp_meter_mod.flags",
                    u64::from(flags),
                    ErrorCode::METER_MOD_BAD_FLAGS,
                ));
            }
            if let Some(MeterBand::Unknown { band_type, .. }) = bands
                .iter()
                .find(|b| matches!(b, MeterBand::Unknown { .. }))
            {
                return Err(DecodeError::bad_value(
                    "ofp_meter_band.type",
                    u64::from(*band_type),
                    ErrorCode::METER_MOD_BAD_BAND,
                ));
            }
        }
        Ok(Self {
            command,
            flags,
            meter_id,
            bands,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u16(self.command.into());
        buf.put_u16(self.flags);
        buf.put_u32(self.meter_id);
        for b in &self.bands {
            b.emit(buf);
        }
    }
}

impl fmt::Display for MeterMod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.command)?;
        fmt_meter(f, self.meter_id, self.flags, &self.bands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::hex;

    fn parse(body: &[u8]) -> Result<MeterMod> {
        MeterMod::parse(&mut Reader::new(body, "ofp_meter_mod"))
    }

    #[test]
    fn all_three_band_types_round_trip() {
        // 4-45-ofp_meter_mod from the Ryu corpus.
        let body = hex(
            "0000000e00000064 00010010000003e80000000a00000000 00020010000003e80000000a01000000
             ffff0010000003e80000000a000003e7",
        );
        let m = parse(&body).unwrap();
        assert_eq!(
            m.flags,
            meter_flags::PKTPS | meter_flags::BURST | meter_flags::STATS
        );
        assert_eq!(
            m.bands,
            vec![
                MeterBand::Drop {
                    rate: 1000,
                    burst_size: 10
                },
                MeterBand::DscpRemark {
                    rate: 1000,
                    burst_size: 10,
                    prec_level: 1
                },
                MeterBand::Experimenter {
                    rate: 1000,
                    burst_size: 10,
                    experimenter: 999,
                    data: vec![]
                },
            ]
        );
        let mut out = Vec::new();
        m.emit(&mut out);
        assert_eq!(out, body);
        assert_eq!(
            m.to_string(),
            "ADD meter=100 pktps burst stats bands=\ntype=drop rate=1000 burst_size=10\n\
             type=dscp_remark rate=1000 burst_size=10 prec_level=1\n\
             type=experimenter experimenter=0x3e7 rate=1000 burst_size=10"
        );
    }

    #[test]
    fn ovs_rejections_carry_ovs_codes() {
        let code = |body: &str| parse(&hex(body)).unwrap_err().ofp_error();
        assert_eq!(code("0008000000000001"), ErrorCode::METER_MOD_BAD_COMMAND);
        assert_eq!(
            code("0000000300000001 00010010000000020000000200000000"),
            ErrorCode::METER_MOD_BAD_FLAGS
        );
        assert_eq!(
            code("0000001000000001 00010010000000020000000200000000"),
            ErrorCode::METER_MOD_BAD_FLAGS
        );
        assert_eq!(
            code("0000000000000001 00050010000000020000000200000000"),
            ErrorCode::METER_MOD_BAD_BAND
        );
        // DELETE ignores flags and bands, as OVS does.
        assert!(parse(&hex("0002000300000001 00050010000000020000000200000000")).is_ok());
    }

    #[test]
    fn band_lengths_are_checked() {
        let short = hex("0000000100000001 0001000c0000000200000002");
        assert_eq!(parse(&short).unwrap_err().ofp_error(), ErrorCode::BAD_LEN);
        let overlong = hex("0000000100000001 0001001800000002000000020000000000000000");
        assert!(parse(&overlong).is_err());
        let past_end = hex("0000000100000001 0001002000000002000000020000000000000000");
        assert!(parse(&past_end).is_err());
    }
}
