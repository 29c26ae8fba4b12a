//! Multipart request and reply bodies (§7.3.5), one variant per
//! `ofp_multipart_type`, with the REQ_MORE / REPLY_MORE flag kept beside.
//!
//! Unknown multipart types keep their body raw; a switch answers such a
//! request with OFPBRC_BAD_MULTIPART ([`MultipartRequest::check_supported`]).

mod desc;
mod flow;
mod group;
mod meter;
mod stats;
mod table_features;

pub use desc::Desc;
pub use flow::{
    AggregateStats, FlowStats, FlowStatsEntries, FlowStatsReplyView, FlowStatsRequest,
    FlowStatsView,
};
pub use group::{group_capabilities, GroupDesc, GroupFeatures, GroupStats};
pub use meter::{MeterConfig, MeterFeatures, MeterStats};
pub use stats::{
    Counter, Duration, PortStats, QueueStats, TableStats, PORT_STATS_LEN, QUEUE_STATS_LEN,
    TABLE_STATS_LEN,
};
pub use table_features::{prop_type, FeatureId, OxmId, TableFeatureProp, TableFeatures};

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, ErrorCode, Result};
use crate::header::open_enum;
use crate::message::record::{parse_all, parse_fixed};
use crate::message::{Experimenter, Port, PORT_LEN};

open_enum! {
    /// `ofp_multipart_type`, named as `ovs-ofctl` names the statistics.
    pub enum MultipartType: u16 {
        Desc = 0 => "OFPST_DESC",
        Flow = 1 => "OFPST_FLOW",
        Aggregate = 2 => "OFPST_AGGREGATE",
        Table = 3 => "OFPST_TABLE",
        PortStats = 4 => "OFPST_PORT",
        Queue = 5 => "OFPST_QUEUE",
        Group = 6 => "OFPST_GROUP",
        GroupDesc = 7 => "OFPST_GROUP_DESC",
        GroupFeatures = 8 => "OFPST_GROUP_FEATURES",
        Meter = 9 => "OFPST_METER",
        MeterConfig = 10 => "OFPST_METER_CONFIG",
        MeterFeatures = 11 => "OFPST_METER_FEATURES",
        TableFeatures = 12 => "OFPST_TABLE_FEATURES",
        PortDesc = 13 => "OFPST_PORT_DESC",
        Experimenter = 0xffff => "OFPST_EXPERIMENTER",
    }
}

/// `OFPMPF_REQ_MORE` / `OFPMPF_REPLY_MORE`: more parts of this request or
/// reply follow with the same xid.
pub const MULTIPART_MORE: u16 = 1;

/// The body of OFPMP_QUEUE requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatsRequest {
    /// A port or [`crate::message::port_no::ANY`].
    pub port_no: u32,
    /// A queue or [`crate::message::QUEUE_ALL`].
    pub queue_id: u32,
}

/// A multipart request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartRequestBody {
    Desc,
    Flow(FlowStatsRequest),
    Aggregate(FlowStatsRequest),
    Table,
    /// `ofp_port_stats_request`: a port or [`crate::message::port_no::ANY`].
    PortStats {
        port_no: u32,
    },
    Queue(QueueStatsRequest),
    /// `ofp_group_stats_request`: a group or [`crate::message::group_no::ALL`].
    Group {
        group_id: u32,
    },
    GroupDesc,
    GroupFeatures,
    /// `ofp_meter_multipart_request`: a meter or [`crate::message::meter_no::ALL`].
    Meter {
        meter_id: u32,
    },
    MeterConfig {
        meter_id: u32,
    },
    MeterFeatures,
    /// Empty to query; non-empty to set the switch's tables.
    TableFeatures(Vec<TableFeatures>),
    PortDesc,
    Experimenter(Experimenter),
    Unknown {
        mp_type: u16,
        body: Vec<u8>,
    },
}

/// A multipart reply body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartReplyBody {
    /// Boxed: 1056 bytes of text would make every reply that large.
    Desc(Box<Desc>),
    Flow(Vec<FlowStats>),
    Aggregate(AggregateStats),
    Table(Vec<TableStats>),
    PortStats(Vec<PortStats>),
    Queue(Vec<QueueStats>),
    Group(Vec<GroupStats>),
    GroupDesc(Vec<GroupDesc>),
    GroupFeatures(GroupFeatures),
    Meter(Vec<MeterStats>),
    MeterConfig(Vec<MeterConfig>),
    MeterFeatures(MeterFeatures),
    TableFeatures(Vec<TableFeatures>),
    PortDesc(Vec<Port>),
    Experimenter(Experimenter),
    Unknown {
        mp_type: u16,
        body: Vec<u8>,
    },
}

/// OFPT_MULTIPART_REQUEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartRequest {
    /// [`MULTIPART_MORE`] or 0.
    pub flags: u16,
    pub body: MultipartRequestBody,
}

/// OFPT_MULTIPART_REPLY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartReply {
    /// [`MULTIPART_MORE`] or 0.
    pub flags: u16,
    pub body: MultipartReplyBody,
}

/// Reads the u32 selector and 4 pad bytes that several request bodies are.
fn selector(r: &mut Reader<'_>) -> Result<u32> {
    let v = r.u32()?;
    r.skip(4)?;
    Ok(v)
}

fn emit_selector(v: u32, buf: &mut Vec<u8>) {
    buf.put_u32(v);
    buf.put_zeros(4);
}

/// Reads the multipart header's type, flags and padding.
fn mp_header(r: &mut Reader<'_>) -> Result<(MultipartType, u16)> {
    let t = MultipartType::from(r.u16()?);
    let flags = r.u16()?;
    r.skip(4)?;
    Ok((t, flags))
}

fn emit_mp_header(t: MultipartType, flags: u16, buf: &mut Vec<u8>) {
    buf.put_u16(t.into());
    buf.put_u16(flags);
    buf.put_zeros(4);
}

impl MultipartRequestBody {
    pub fn mp_type(&self) -> MultipartType {
        match self {
            Self::Desc => MultipartType::Desc,
            Self::Flow(_) => MultipartType::Flow,
            Self::Aggregate(_) => MultipartType::Aggregate,
            Self::Table => MultipartType::Table,
            Self::PortStats { .. } => MultipartType::PortStats,
            Self::Queue(_) => MultipartType::Queue,
            Self::Group { .. } => MultipartType::Group,
            Self::GroupDesc => MultipartType::GroupDesc,
            Self::GroupFeatures => MultipartType::GroupFeatures,
            Self::Meter { .. } => MultipartType::Meter,
            Self::MeterConfig { .. } => MultipartType::MeterConfig,
            Self::MeterFeatures => MultipartType::MeterFeatures,
            Self::TableFeatures(_) => MultipartType::TableFeatures,
            Self::PortDesc => MultipartType::PortDesc,
            Self::Experimenter(_) => MultipartType::Experimenter,
            Self::Unknown { mp_type, .. } => MultipartType::from(*mp_type),
        }
    }
}

impl MultipartReplyBody {
    pub fn mp_type(&self) -> MultipartType {
        match self {
            Self::Desc(_) => MultipartType::Desc,
            Self::Flow(_) => MultipartType::Flow,
            Self::Aggregate(_) => MultipartType::Aggregate,
            Self::Table(_) => MultipartType::Table,
            Self::PortStats(_) => MultipartType::PortStats,
            Self::Queue(_) => MultipartType::Queue,
            Self::Group(_) => MultipartType::Group,
            Self::GroupDesc(_) => MultipartType::GroupDesc,
            Self::GroupFeatures(_) => MultipartType::GroupFeatures,
            Self::Meter(_) => MultipartType::Meter,
            Self::MeterConfig(_) => MultipartType::MeterConfig,
            Self::MeterFeatures(_) => MultipartType::MeterFeatures,
            Self::TableFeatures(_) => MultipartType::TableFeatures,
            Self::PortDesc(_) => MultipartType::PortDesc,
            Self::Experimenter(_) => MultipartType::Experimenter,
            Self::Unknown { mp_type, .. } => MultipartType::from(*mp_type),
        }
    }
}

impl MultipartRequest {
    pub fn new(body: MultipartRequestBody) -> Self {
        Self { flags: 0, body }
    }

    /// Reads the multipart header and body; the caller checks that the
    /// body's reader was used up.
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let (t, flags) = mp_header(r)?;
        use MultipartRequestBody as B;
        let body = match t {
            MultipartType::Desc => B::Desc,
            MultipartType::Flow => B::Flow(FlowStatsRequest::parse(r)?),
            MultipartType::Aggregate => B::Aggregate(FlowStatsRequest::parse(r)?),
            MultipartType::Table => B::Table,
            MultipartType::PortStats => B::PortStats {
                port_no: selector(r)?,
            },
            MultipartType::Queue => B::Queue(QueueStatsRequest {
                port_no: r.u32()?,
                queue_id: r.u32()?,
            }),
            MultipartType::Group => B::Group {
                group_id: selector(r)?,
            },
            MultipartType::GroupDesc => B::GroupDesc,
            MultipartType::GroupFeatures => B::GroupFeatures,
            MultipartType::Meter => B::Meter {
                meter_id: selector(r)?,
            },
            MultipartType::MeterConfig => B::MeterConfig {
                meter_id: selector(r)?,
            },
            MultipartType::MeterFeatures => B::MeterFeatures,
            MultipartType::TableFeatures => B::TableFeatures(parse_all(
                r.sub(r.remaining(), "ofp_table_features")?,
                TableFeatures::parse,
            )?),
            MultipartType::PortDesc => B::PortDesc,
            MultipartType::Experimenter => B::Experimenter(Experimenter::parse(r)?),
            MultipartType::Unknown(mp_type) => B::Unknown {
                mp_type,
                body: r.take_rest().to_vec(),
            },
        };
        Ok(Self { flags, body })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        emit_mp_header(self.body.mp_type(), self.flags, buf);
        use MultipartRequestBody as B;
        match &self.body {
            B::Desc
            | B::Table
            | B::GroupDesc
            | B::GroupFeatures
            | B::MeterFeatures
            | B::PortDesc => {}
            B::Flow(f) | B::Aggregate(f) => f.emit(buf),
            B::PortStats { port_no } => emit_selector(*port_no, buf),
            B::Queue(q) => {
                buf.put_u32(q.port_no);
                buf.put_u32(q.queue_id);
            }
            B::Group { group_id } => emit_selector(*group_id, buf),
            B::Meter { meter_id } | B::MeterConfig { meter_id } => emit_selector(*meter_id, buf),
            B::TableFeatures(tables) => tables.iter().for_each(|t| t.emit(buf)),
            B::Experimenter(e) => e.emit(buf),
            B::Unknown { body, .. } => buf.put_slice(body),
        }
    }

    /// What a switch checks before serving a request: the multipart type
    /// must be one it knows (OFPBRC_BAD_MULTIPART otherwise).
    pub fn check_supported(&self) -> Result<()> {
        match self.body {
            MultipartRequestBody::Unknown { mp_type, .. } => Err(DecodeError::bad_value(
                "ofp_multipart_request.type",
                u64::from(mp_type),
                ErrorCode::BAD_MULTIPART,
            )),
            _ => Ok(()),
        }
    }

    /// Whether more parts with the same xid follow.
    pub fn more(&self) -> bool {
        self.flags & MULTIPART_MORE != 0
    }
}

impl MultipartReply {
    pub fn new(body: MultipartReplyBody) -> Self {
        Self { flags: 0, body }
    }

    /// Reads the multipart header and body; the caller checks that the
    /// body's reader was used up.
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let (t, flags) = mp_header(r)?;
        let rest = r.take_rest();
        use MultipartReplyBody as B;
        // Every reply body runs to the end of the message.
        let whole = |name| Reader::new(rest, name);
        let body = match t {
            MultipartType::Desc => B::Desc(Box::new(single(whole("ofp_desc"), Desc::parse)?)),
            MultipartType::Flow => B::Flow(parse_all(whole("ofp_flow_stats"), FlowStats::parse)?),
            MultipartType::Aggregate => B::Aggregate(single(
                whole("ofp_aggregate_stats_reply"),
                AggregateStats::parse,
            )?),
            MultipartType::Table => B::Table(parse_fixed(
                whole("ofp_table_stats"),
                TABLE_STATS_LEN,
                "ofp_table_stats",
                TableStats::parse,
            )?),
            MultipartType::PortStats => B::PortStats(parse_fixed(
                whole("ofp_port_stats"),
                PORT_STATS_LEN,
                "ofp_port_stats",
                PortStats::parse,
            )?),
            MultipartType::Queue => B::Queue(parse_fixed(
                whole("ofp_queue_stats"),
                QUEUE_STATS_LEN,
                "ofp_queue_stats",
                QueueStats::parse,
            )?),
            MultipartType::Group => {
                B::Group(parse_all(whole("ofp_group_stats"), GroupStats::parse)?)
            }
            MultipartType::GroupDesc => {
                B::GroupDesc(parse_all(whole("ofp_group_desc"), GroupDesc::parse)?)
            }
            MultipartType::GroupFeatures => {
                B::GroupFeatures(single(whole("ofp_group_features"), GroupFeatures::parse)?)
            }
            MultipartType::Meter => {
                B::Meter(parse_all(whole("ofp_meter_stats"), MeterStats::parse)?)
            }
            MultipartType::MeterConfig => {
                B::MeterConfig(parse_all(whole("ofp_meter_config"), MeterConfig::parse)?)
            }
            MultipartType::MeterFeatures => {
                B::MeterFeatures(single(whole("ofp_meter_features"), MeterFeatures::parse)?)
            }
            MultipartType::TableFeatures => B::TableFeatures(parse_all(
                whole("ofp_table_features"),
                TableFeatures::parse,
            )?),
            MultipartType::PortDesc => B::PortDesc(parse_fixed(
                whole("ofp_port"),
                PORT_LEN,
                "ofp_port",
                Port::parse,
            )?),
            MultipartType::Experimenter => B::Experimenter(single(
                whole("ofp_experimenter_multipart_header"),
                Experimenter::parse,
            )?),
            MultipartType::Unknown(mp_type) => B::Unknown {
                mp_type,
                body: rest.to_vec(),
            },
        };
        Ok(Self { flags, body })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        emit_mp_header(self.body.mp_type(), self.flags, buf);
        use MultipartReplyBody as B;
        match &self.body {
            B::Desc(d) => d.emit(buf),
            B::Flow(v) => v.iter().for_each(|x| x.emit(buf)),
            B::Aggregate(a) => a.emit(buf),
            B::Table(v) => v.iter().for_each(|x| x.emit(buf)),
            B::PortStats(v) => v.iter().for_each(|x| x.emit(buf)),
            B::Queue(v) => v.iter().for_each(|x| x.emit(buf)),
            B::Group(v) => v.iter().for_each(|x| x.emit(buf)),
            B::GroupDesc(v) => v.iter().for_each(|x| x.emit(buf)),
            B::GroupFeatures(g) => g.emit(buf),
            B::Meter(v) => v.iter().for_each(|x| x.emit(buf)),
            B::MeterConfig(v) => v.iter().for_each(|x| x.emit(buf)),
            B::MeterFeatures(m) => m.emit(buf),
            B::TableFeatures(v) => v.iter().for_each(|x| x.emit(buf)),
            B::PortDesc(v) => v.iter().for_each(|x| x.emit(buf)),
            B::Experimenter(e) => e.emit(buf),
            B::Unknown { body, .. } => buf.put_slice(body),
        }
    }

    /// Whether more parts with the same xid follow.
    pub fn more(&self) -> bool {
        self.flags & MULTIPART_MORE != 0
    }
}

/// Parses a reply body that is one structure and must fill the body exactly.
fn single<'a, T>(mut r: Reader<'a>, f: impl FnOnce(&mut Reader<'a>) -> Result<T>) -> Result<T> {
    let v = f(&mut r)?;
    if !r.is_empty() {
        return Err(DecodeError::bad_len(
            r.context(),
            r.position() + r.remaining(),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{hex, Message, OfpMessage};

    fn round_trip(wire: &[u8]) -> Message {
        let m = OfpMessage::parse(wire).unwrap();
        assert_eq!(m.to_bytes(), wire);
        m.message
    }

    #[test]
    fn unknown_multipart_types_round_trip_and_are_unsupported() {
        let Message::MultipartRequest(r) =
            round_trip(&hex("0412001400000001 0042 0001 00000000 cafe0001"))
        else {
            panic!()
        };
        assert!(r.more());
        assert_eq!(
            r.body,
            MultipartRequestBody::Unknown {
                mp_type: 0x42,
                body: hex("cafe0001")
            }
        );
        assert_eq!(
            r.check_supported().unwrap_err().ofp_error(),
            ErrorCode::BAD_MULTIPART
        );
        assert!(MultipartRequest::new(MultipartRequestBody::PortDesc)
            .check_supported()
            .is_ok());
        let Message::MultipartReply(r) =
            round_trip(&hex("0413001200000001 0042 0000 00000000 cafe"))
        else {
            panic!()
        };
        assert!(!r.more());
        assert_eq!(r.body.mp_type(), MultipartType::Unknown(0x42));
    }

    #[test]
    fn fixed_size_replies_must_tile_the_body() {
        // A table-stats reply one byte short of a second entry.
        let mut wire = hex("0413000000000001 0003 0000 00000000");
        wire.extend([0u8; 24 + 23]);
        let len = wire.len() as u16;
        wire[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            OfpMessage::parse(&wire).unwrap_err().ofp_error(),
            ErrorCode::BAD_LEN
        );
        // Requests whose body is empty refuse trailing bytes.
        assert!(OfpMessage::parse(&hex("0412001400000001 000d 0000 00000000 00000000")).is_err());
    }

    #[test]
    fn desc_reply_keeps_text_fields() {
        let desc = Desc {
            mfr_desc: crate::codec::Name::new("Nicira, Inc."),
            sw_desc: crate::codec::Name::new("3.1.0"),
            dp_desc: crate::codec::Name::new("br-int"),
            ..Desc::default()
        };
        let m = OfpMessage::new(
            3,
            Message::MultipartReply(MultipartReply::new(MultipartReplyBody::Desc(Box::new(
                desc,
            )))),
        );
        let wire = m.to_bytes();
        assert_eq!(wire.len(), 16 + 1056);
        assert_eq!(round_trip(&wire), m.message);
        assert!(desc.to_string().contains("Software: 3.1.0\n"));
        // A desc reply one byte short or long is a length error.
        for delta in [-1i32, 1] {
            let mut w = wire.clone();
            w.resize((w.len() as i32 + delta) as usize, 0);
            let len = w.len() as u16;
            w[2..4].copy_from_slice(&len.to_be_bytes());
            assert_eq!(
                OfpMessage::parse(&w).unwrap_err().ofp_error(),
                ErrorCode::BAD_LEN
            );
        }
    }

    #[test]
    fn table_features_keep_unknown_and_experimenter_properties() {
        let tf = TableFeatures {
            table_id: 3,
            name: crate::codec::Name::new("classify"),
            metadata_match: 0,
            metadata_write: 0,
            config: 0,
            max_entries: 100,
            properties: vec![
                TableFeatureProp::Unknown {
                    prop_type: 0x20,
                    data: vec![1, 2, 3],
                },
                TableFeatureProp::Experimenter {
                    miss: true,
                    experimenter: 0x2320,
                    exp_type: 7,
                    data: vec![9],
                },
                TableFeatureProp::ApplySetfield {
                    miss: false,
                    fields: vec![OxmId {
                        header: 0xffff_0a08,
                        experimenter: Some(0x4f4e_4600),
                    }],
                },
                TableFeatureProp::WriteActions {
                    miss: true,
                    ids: vec![FeatureId::new(0), FeatureId::new(0x19)],
                },
            ],
        };
        let body = MultipartRequestBody::TableFeatures(vec![tf.clone()]);
        let wire =
            OfpMessage::new(1, Message::MultipartRequest(MultipartRequest::new(body))).to_bytes();
        assert_eq!(wire.len() % 8, 0);
        let Message::MultipartRequest(r) = round_trip(&wire) else {
            panic!()
        };
        assert_eq!(
            r.body,
            MultipartRequestBody::TableFeatures(vec![tf.clone()])
        );
        assert_eq!(tf.properties[1].prop_type(), prop_type::EXPERIMENTER_MISS);
        assert_eq!(tf.properties[3].prop_type(), prop_type::WRITE_ACTIONS_MISS);
        // A property whose padding is missing is a table-features length error.
        let short = &wire[..wire.len() - 4];
        let mut w = short.to_vec();
        let len = w.len() as u16;
        w[2..4].copy_from_slice(&len.to_be_bytes());
        w[16..18].copy_from_slice(&(len - 16).to_be_bytes());
        assert!(OfpMessage::parse(&w).is_err());
    }
}
