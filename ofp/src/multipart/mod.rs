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
pub use flow::{AggregateStats, FlowStats, FlowStatsRequest};
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
        let whole = |name| -> Result<Reader<'_>> { Ok(Reader::new(rest, name)) };
        let body = match t {
            MultipartType::Desc => B::Desc(Box::new(single(whole("ofp_desc")?, Desc::parse)?)),
            MultipartType::Flow => B::Flow(parse_all(whole("ofp_flow_stats")?, FlowStats::parse)?),
            MultipartType::Aggregate => B::Aggregate(single(
                whole("ofp_aggregate_stats_reply")?,
                AggregateStats::parse,
            )?),
            MultipartType::Table => B::Table(parse_fixed(
                whole("ofp_table_stats")?,
                TABLE_STATS_LEN,
                "ofp_table_stats",
                TableStats::parse,
            )?),
            MultipartType::PortStats => B::PortStats(parse_fixed(
                whole("ofp_port_stats")?,
                PORT_STATS_LEN,
                "ofp_port_stats",
                PortStats::parse,
            )?),
            MultipartType::Queue => B::Queue(parse_fixed(
                whole("ofp_queue_stats")?,
                QUEUE_STATS_LEN,
                "ofp_queue_stats",
                QueueStats::parse,
            )?),
            MultipartType::Group => {
                B::Group(parse_all(whole("ofp_group_stats")?, GroupStats::parse)?)
            }
            MultipartType::GroupDesc => {
                B::GroupDesc(parse_all(whole("ofp_group_desc")?, GroupDesc::parse)?)
            }
            MultipartType::GroupFeatures => {
                B::GroupFeatures(single(whole("ofp_group_features")?, GroupFeatures::parse)?)
            }
            MultipartType::Meter => {
                B::Meter(parse_all(whole("ofp_meter_stats")?, MeterStats::parse)?)
            }
            MultipartType::MeterConfig => {
                B::MeterConfig(parse_all(whole("ofp_meter_config")?, MeterConfig::parse)?)
            }
            MultipartType::MeterFeatures => {
                B::MeterFeatures(single(whole("ofp_meter_features")?, MeterFeatures::parse)?)
            }
            MultipartType::TableFeatures => B::TableFeatures(parse_all(
                whole("ofp_table_features")?,
                TableFeatures::parse,
            )?),
            MultipartType::PortDesc => B::PortDesc(parse_fixed(
                whole("ofp_port")?,
                PORT_LEN,
                "ofp_port",
                Port::parse,
            )?),
            MultipartType::Experimenter => B::Experimenter(single(
                whole("ofp_experimenter_multipart_header")?,
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
