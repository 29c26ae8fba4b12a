//! OFPT_QUEUE_GET_CONFIG_REQUEST/REPLY (§7.3.6) and queue properties (§7.2.2).

use super::record::{parse_all, split};
use crate::codec::{Hex, Reader, Writer};
use crate::error::{ErrorCode, Result};
use crate::print;
use core::fmt;

/// `ofp_queue_properties` codes.
pub mod queue_prop {
    pub const MIN_RATE: u16 = 1;
    pub const MAX_RATE: u16 = 2;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// `OFPQ_ALL`: every queue, in stats requests.
pub const QUEUE_ALL: u32 = 0xffff_ffff;

/// Length of `ofp_queue_prop_header`.
const PROP_HEADER_LEN: usize = 8;

/// One queue property. Rates are in tenths of a percent of the port's
/// speed; above 1000 means "not configured".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueProp {
    MinRate(u16),
    MaxRate(u16),
    Experimenter {
        experimenter: u32,
        data: Vec<u8>,
    },
    /// A property this codec does not know; `data` follows the 8-byte header.
    Unknown {
        property: u16,
        data: Vec<u8>,
    },
}

impl QueueProp {
    fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut p = split(r, 2, PROP_HEADER_LEN, "ofp_queue_prop", ErrorCode::BAD_LEN)?;
        let property = p.u16()?;
        p.skip(6)?;
        Ok(match property {
            queue_prop::MIN_RATE | queue_prop::MAX_RATE => {
                let rate = p.u16()?;
                p.skip(6)?;
                if property == queue_prop::MIN_RATE {
                    Self::MinRate(rate)
                } else {
                    Self::MaxRate(rate)
                }
            }
            queue_prop::EXPERIMENTER => {
                let experimenter = p.u32()?;
                p.skip(4)?;
                Self::Experimenter {
                    experimenter,
                    data: p.take_rest().to_vec(),
                }
            }
            property => Self::Unknown {
                property,
                data: p.take_rest().to_vec(),
            },
        })
    }

    fn emit(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        let property = match self {
            Self::MinRate(_) => queue_prop::MIN_RATE,
            Self::MaxRate(_) => queue_prop::MAX_RATE,
            Self::Experimenter { .. } => queue_prop::EXPERIMENTER,
            Self::Unknown { property, .. } => *property,
        };
        buf.put_u16(property);
        let len_at = buf.reserve_len16();
        buf.put_zeros(4);
        match self {
            Self::MinRate(rate) | Self::MaxRate(rate) => {
                buf.put_u16(*rate);
                buf.put_zeros(6);
            }
            Self::Experimenter { experimenter, data } => {
                buf.put_u32(*experimenter);
                buf.put_zeros(4);
                buf.put_slice(data);
            }
            Self::Unknown { data, .. } => buf.put_slice(data),
        }
        // Properties are not padded: the Ryu corpus carries experimenter data
        // of odd length back to back.
        buf.patch_len16(len_at, start);
    }
}

/// Prints a rate in tenths of a percent as `50.0%`.
struct Rate(u16);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 > 1000 {
            f.write_str("disabled")
        } else {
            write!(f, "{}.{}%", self.0 / 10, self.0 % 10)
        }
    }
}

impl fmt::Display for QueueProp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MinRate(r) => write!(f, "min_rate:{}", Rate(*r)),
            Self::MaxRate(r) => write!(f, "max_rate:{}", Rate(*r)),
            Self::Experimenter { experimenter, data } => {
                write!(f, "experimenter:0x{experimenter:x} data:{}", Hex(data))
            }
            Self::Unknown { property, data } => write!(f, "property{property}:{}", Hex(data)),
        }
    }
}

/// Length of `ofp_packet_queue` without properties.
const PACKET_QUEUE_LEN: usize = 16;

/// `ofp_packet_queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketQueue {
    pub queue_id: u32,
    pub port: u32,
    pub properties: Vec<QueueProp>,
}

impl PacketQueue {
    fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let mut q = split(
            r,
            8,
            PACKET_QUEUE_LEN,
            "ofp_packet_queue",
            ErrorCode::BAD_LEN,
        )?;
        let queue_id = q.u32()?;
        let port = q.u32()?;
        q.skip(8)?;
        Ok(Self {
            queue_id,
            port,
            properties: parse_all(q, QueueProp::parse)?,
        })
    }

    fn emit(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        buf.put_u32(self.queue_id);
        buf.put_u32(self.port);
        let len_at = buf.reserve_len16();
        buf.put_zeros(6);
        for p in &self.properties {
            p.emit(buf);
        }
        buf.patch_len16(len_at, start);
    }
}

impl fmt::Display for PacketQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue {}:", self.queue_id)?;
        for p in &self.properties {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

/// `ofp_queue_get_config_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueGetConfigRequest {
    /// A port, or [`super::port_no::ANY`] for all.
    pub port: u32,
}

impl QueueGetConfigRequest {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let port = r.u32()?;
        r.skip(4)?;
        Ok(Self { port })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.port);
        buf.put_zeros(4);
    }
}

impl fmt::Display for QueueGetConfigRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port={}", print::Port(self.port))
    }
}

/// `ofp_queue_get_config_reply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueGetConfigReply {
    pub port: u32,
    pub queues: Vec<PacketQueue>,
}

impl QueueGetConfigReply {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let port = r.u32()?;
        r.skip(4)?;
        let queues = parse_all(
            r.sub(r.remaining(), "ofp_packet_queue")?,
            PacketQueue::parse,
        )?;
        Ok(Self { port, queues })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.port);
        buf.put_zeros(4);
        for q in &self.queues {
            q.emit(buf);
        }
    }
}

impl fmt::Display for QueueGetConfigReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port={}", print::Port(self.port))?;
        for q in &self.queues {
            write!(f, "\n{q}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::hex;

    #[test]
    fn ovs_queue_config_reads_rates() {
        // From OVS's "OFPT_QUEUE_GET_CONFIG_REPLY - OF1.3".
        let body = hex(
            "000000010000000000005555000000010030000000000000000100100000000001f4000000000000
             000200100000000002ee00000000000000004444000800010010000000000000",
        );
        let q = QueueGetConfigReply::parse(&mut Reader::new(&body, "q")).unwrap();
        assert_eq!(q.port, 1);
        assert_eq!(q.queues[0].queue_id, 0x5555);
        assert_eq!(
            q.queues[0].properties,
            vec![QueueProp::MinRate(500), QueueProp::MaxRate(750)]
        );
        assert!(q.queues[1].properties.is_empty());
        assert_eq!(
            q.to_string(),
            "port=1\nqueue 21845: min_rate:50.0% max_rate:75.0%\nqueue 17476:"
        );
        let mut out = Vec::new();
        q.emit(&mut out);
        assert_eq!(out, body);
    }
}
