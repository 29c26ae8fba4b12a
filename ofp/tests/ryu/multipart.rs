//! Multipart requests and replies (`OFP*StatsRequest` / `OFP*StatsReply`)
//! and the structures only they carry.

use super::actions::{instruction_len, instructions};
use super::fields::{header_name, match_, match_len};
use super::{base64, bucket, bucket_len, class, merge, meter_band, meter_band_len, port};
use ofp::action::ONF_VENDOR_ID;
use ofp::codec::Reader;
use ofp::message::Experimenter;
use ofp::multipart::{
    FeatureId, FlowStats, GroupStats, MeterStats, MultipartReply, MultipartReplyBody,
    MultipartRequest, MultipartRequestBody, PortStats, QueueStats, TableFeatureProp, TableFeatures,
};
use ofp::oxm::{Match, OxmField, OxmIter};
use ofp::DecodeError;
use serde_json::{json, Value};

/// ONF's flow monitor multipart type (`ONFMP_FLOW_MONITOR`).
const ONFMP_FLOW_MONITOR: u32 = 1870;

fn stats(name: &str, mp_type: u16, flags: u16, fields: Value) -> Value {
    class(
        name,
        merge(json!({"type": mp_type, "flags": flags}), fields),
    )
}

fn flow_request(r: &ofp::multipart::FlowStatsRequest) -> Value {
    json!({
        "table_id": r.table_id,
        "out_port": r.out_port,
        "out_group": r.out_group,
        "cookie": r.cookie,
        "cookie_mask": r.cookie_mask,
        "match": match_(&r.match_),
    })
}

pub fn request(r: &MultipartRequest) -> Value {
    use MultipartRequestBody as B;
    let t = u16::from(r.body.mp_type());
    let s = |name: &str, fields: Value| stats(name, t, r.flags, fields);
    match &r.body {
        B::Desc => s("OFPDescStatsRequest", json!({})),
        B::Flow(f) => s("OFPFlowStatsRequest", flow_request(f)),
        B::Aggregate(f) => s("OFPAggregateStatsRequest", flow_request(f)),
        B::Table => s("OFPTableStatsRequest", json!({})),
        B::PortStats { port_no } => s("OFPPortStatsRequest", json!({"port_no": port_no})),
        B::Queue(q) => s(
            "OFPQueueStatsRequest",
            json!({"port_no": q.port_no, "queue_id": q.queue_id}),
        ),
        B::Group { group_id } => s("OFPGroupStatsRequest", json!({"group_id": group_id})),
        B::GroupDesc => s("OFPGroupDescStatsRequest", json!({})),
        B::GroupFeatures => s("OFPGroupFeaturesStatsRequest", json!({})),
        B::Meter { meter_id } => s("OFPMeterStatsRequest", json!({"meter_id": meter_id})),
        B::MeterConfig { meter_id } => {
            s("OFPMeterConfigStatsRequest", json!({"meter_id": meter_id}))
        }
        B::MeterFeatures => s("OFPMeterFeaturesStatsRequest", json!({})),
        B::TableFeatures(v) => s(
            "OFPTableFeaturesStatsRequest",
            json!({"body": v.iter().map(table_features).collect::<Vec<_>>()}),
        ),
        B::PortDesc => s("OFPPortDescStatsRequest", json!({})),
        B::Experimenter(e)
            if e.experimenter == ONF_VENDOR_ID && e.exp_type == ONFMP_FLOW_MONITOR =>
        {
            let body = flow_monitor_requests(&e.data).unwrap_or_else(|err| {
                vec![class(
                    "ONFFlowMonitorRequestUndecodable",
                    json!({"error": err.to_string()}),
                )]
            });
            s(
                "ONFFlowMonitorStatsRequest",
                json!({"experimenter": e.experimenter, "exp_type": e.exp_type, "body": body}),
            )
        }
        B::Experimenter(e) => s("OFPExperimenterStatsRequest", experimenter(e)),
        B::Unknown { body, .. } => s(
            "OFPUnknownStatsRequest",
            json!({"data": base64::encode(body)}),
        ),
    }
}

fn experimenter(e: &Experimenter) -> Value {
    json!({"experimenter": e.experimenter, "exp_type": e.exp_type, "data": base64::encode(&e.data)})
}

/// ONF flow monitor requests (`onf_flow_monitor_request`), which the codec
/// keeps as the experimenter body's raw bytes. Ryu wraps each request's
/// NXM-format match in an `OFPMatch` (type 1, length = match_len + 4).
fn flow_monitor_requests(data: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let mut r = Reader::new(data, "onf_flow_monitor_request");
    let mut out = Vec::new();
    while !r.is_empty() {
        let id = r.u32()?;
        let flags = r.u16()?;
        let match_len = r.u16()?;
        let out_port = r.u32()?;
        let table_id = r.u8()?;
        r.skip(3)?;
        let oxms = r.take(usize::from(match_len))?;
        r.skip((8 - usize::from(match_len) % 8) % 8)?;
        // The codec's OXM reader decodes the match fields.
        let fields = OxmIter::new(oxms)
            .map(|t| OxmField::from_tlv(&t?))
            .collect::<Result<Vec<_>, _>>()?;
        let m = match_(&Match { fields });
        out.push(class(
            "ONFFlowMonitorRequest",
            json!({
                "id": id,
                "flags": flags,
                "match_len": match_len,
                "out_port": out_port,
                "table_id": table_id,
                "match": m,
            }),
        ));
    }
    Ok(out)
}

/// Ryu's list of records, each wrapped in the class `name`.
fn records<T>(name: &str, items: &[T], fields: impl Fn(&T) -> Value) -> Value {
    items.iter().map(|x| class(name, fields(x))).collect()
}

fn flow_stats(f: &FlowStats) -> Value {
    // ofp_flow_stats: 48 fixed bytes, the padded match, the instructions.
    let length = 48
        + match_len(&f.match_).div_ceil(8) * 8
        + f.instructions.iter().map(instruction_len).sum::<usize>();
    json!({
        "length": length,
        "table_id": f.table_id,
        "duration_sec": f.duration_sec,
        "duration_nsec": f.duration_nsec,
        "priority": f.priority,
        "idle_timeout": f.idle_timeout,
        "hard_timeout": f.hard_timeout,
        "flags": f.flags,
        "cookie": f.cookie,
        "packet_count": f.packet_count,
        "byte_count": f.byte_count,
        "match": match_(&f.match_),
        "instructions": instructions(&f.instructions),
    })
}

fn port_stats(p: &PortStats) -> Value {
    json!({
        "port_no": p.port_no,
        "rx_packets": p.rx_packets,
        "tx_packets": p.tx_packets,
        "rx_bytes": p.rx_bytes,
        "tx_bytes": p.tx_bytes,
        "rx_dropped": p.rx_dropped,
        "tx_dropped": p.tx_dropped,
        "rx_errors": p.rx_errors,
        "tx_errors": p.tx_errors,
        "rx_frame_err": p.rx_frame_err,
        "rx_over_err": p.rx_over_err,
        "rx_crc_err": p.rx_crc_err,
        "collisions": p.collisions,
        "duration_sec": p.duration_sec,
        "duration_nsec": p.duration_nsec,
    })
}

fn queue_stats(q: &QueueStats) -> Value {
    json!({
        "port_no": q.port_no,
        "queue_id": q.queue_id,
        "tx_bytes": q.tx_bytes,
        "tx_packets": q.tx_packets,
        "tx_errors": q.tx_errors,
        "duration_sec": q.duration_sec,
        "duration_nsec": q.duration_nsec,
    })
}

fn group_stats(g: &GroupStats) -> Value {
    json!({
        // ofp_group_stats: 40 fixed bytes, 16 per bucket counter.
        "length": 40 + 16 * g.bucket_stats.len(),
        "group_id": g.group_id,
        "ref_count": g.ref_count,
        "packet_count": g.packet_count,
        "byte_count": g.byte_count,
        "duration_sec": g.duration_sec,
        "duration_nsec": g.duration_nsec,
        "bucket_stats": records("OFPBucketCounter", &g.bucket_stats, |c| json!({
            "packet_count": c.packet_count,
            "byte_count": c.byte_count,
        })),
    })
}

fn meter_stats(m: &MeterStats) -> Value {
    json!({
        // ofp_meter_stats: 40 fixed bytes, 16 per band counter.
        "len": 40 + 16 * m.band_stats.len(),
        "meter_id": m.meter_id,
        "flow_count": m.flow_count,
        "packet_in_count": m.packet_in_count,
        "byte_in_count": m.byte_in_count,
        "duration_sec": m.duration_sec,
        "duration_nsec": m.duration_nsec,
        "band_stats": records("OFPMeterBandStats", &m.band_stats, |c| json!({
            "packet_band_count": c.packet_count,
            "byte_band_count": c.byte_count,
        })),
    })
}

pub fn reply(r: &MultipartReply) -> Value {
    use MultipartReplyBody as B;
    let t = u16::from(r.body.mp_type());
    let s = |name: &str, body: Value| stats(name, t, r.flags, json!({"body": body}));
    match &r.body {
        B::Desc(d) => s(
            "OFPDescStatsReply",
            class(
                "OFPDescStats",
                json!({
                    "mfr_desc": d.mfr_desc.to_string_lossy(),
                    "hw_desc": d.hw_desc.to_string_lossy(),
                    "sw_desc": d.sw_desc.to_string_lossy(),
                    "serial_num": d.serial_num.to_string_lossy(),
                    "dp_desc": d.dp_desc.to_string_lossy(),
                }),
            ),
        ),
        B::Flow(v) => s("OFPFlowStatsReply", records("OFPFlowStats", v, flow_stats)),
        B::Aggregate(a) => s(
            "OFPAggregateStatsReply",
            class(
                "OFPAggregateStats",
                json!({
                    "packet_count": a.packet_count,
                    "byte_count": a.byte_count,
                    "flow_count": a.flow_count,
                }),
            ),
        ),
        B::Table(v) => s(
            "OFPTableStatsReply",
            records("OFPTableStats", v, |t| {
                json!({
                    "table_id": t.table_id,
                    "active_count": t.active_count,
                    "lookup_count": t.lookup_count,
                    "matched_count": t.matched_count,
                })
            }),
        ),
        B::PortStats(v) => s("OFPPortStatsReply", records("OFPPortStats", v, port_stats)),
        B::Queue(v) => s(
            "OFPQueueStatsReply",
            records("OFPQueueStats", v, queue_stats),
        ),
        B::Group(v) => s(
            "OFPGroupStatsReply",
            records("OFPGroupStats", v, group_stats),
        ),
        B::GroupDesc(v) => s(
            "OFPGroupDescStatsReply",
            records("OFPGroupDescStats", v, |g| {
                json!({
                    // ofp_group_desc: 8 fixed bytes, then the buckets.
                    "length": 8 + g.buckets.iter().map(bucket_len).sum::<usize>(),
                    "type": u8::from(g.group_type),
                    "group_id": g.group_id,
                    "buckets": g.buckets.iter().map(bucket).collect::<Vec<_>>(),
                })
            }),
        ),
        B::GroupFeatures(g) => s(
            "OFPGroupFeaturesStatsReply",
            class(
                "OFPGroupFeaturesStats",
                json!({
                    "types": g.types,
                    "capabilities": g.capabilities,
                    "max_groups": g.max_groups,
                    "actions": g.actions,
                }),
            ),
        ),
        B::Meter(v) => s(
            "OFPMeterStatsReply",
            records("OFPMeterStats", v, meter_stats),
        ),
        B::MeterConfig(v) => s(
            "OFPMeterConfigStatsReply",
            records("OFPMeterConfigStats", v, |m| {
                json!({
                    // ofp_meter_config: 8 fixed bytes, then the bands.
                    "length": 8 + m.bands.iter().map(meter_band_len).sum::<usize>(),
                    "flags": m.flags,
                    "meter_id": m.meter_id,
                    "bands": m.bands.iter().map(meter_band).collect::<Vec<_>>(),
                })
            }),
        ),
        // Ryu keeps the single meter features record in a list.
        B::MeterFeatures(m) => s(
            "OFPMeterFeaturesStatsReply",
            records("OFPMeterFeaturesStats", &[*m], |m| {
                json!({
                    "max_meter": m.max_meter,
                    "band_types": m.band_types,
                    "capabilities": m.capabilities,
                    "max_bands": m.max_bands,
                    "max_color": m.max_color,
                })
            }),
        ),
        B::TableFeatures(v) => s(
            "OFPTableFeaturesStatsReply",
            v.iter().map(table_features).collect(),
        ),
        B::PortDesc(v) => s("OFPPortDescStatsReply", v.iter().map(port).collect()),
        B::Experimenter(e) => stats("OFPExperimenterStatsReply", t, r.flags, experimenter(e)),
        B::Unknown { body, .. } => s("OFPUnknownStatsReply", json!(base64::encode(body))),
    }
}

/// Size of a table feature property's content after its 4-byte header.
fn prop_body_len(p: &TableFeatureProp) -> usize {
    use TableFeatureProp as P;
    let ids = |ids: &[FeatureId]| ids.iter().map(|i| 4 + i.data.len()).sum::<usize>();
    let oxm_ids = |ids: &[ofp::multipart::OxmId]| {
        ids.iter()
            .map(|i| if i.experimenter.is_some() { 8 } else { 4 })
            .sum::<usize>()
    };
    match p {
        P::Instructions { ids: v, .. }
        | P::WriteActions { ids: v, .. }
        | P::ApplyActions { ids: v, .. } => ids(v),
        P::NextTables { tables, .. } => tables.len(),
        P::Match(v)
        | P::Wildcards(v)
        | P::WriteSetfield { fields: v, .. }
        | P::ApplySetfield { fields: v, .. } => oxm_ids(v),
        P::Experimenter { data, .. } => 8 + data.len(),
        P::Unknown { data, .. } => data.len(),
    }
}

fn table_feature_prop(p: &TableFeatureProp) -> Value {
    use TableFeatureProp as P;
    // `length` is the property's unpadded length, as on the wire.
    let head = json!({"type": p.prop_type(), "length": 4 + prop_body_len(p)});
    let ids = |key: &str, name: &str, ids: &[FeatureId]| json!({key: ids.iter().map(|i| class(name, json!({"type": i.id_type, "len": 4 + i.data.len()}))).collect::<Vec<_>>()});
    let (name, fields) = match p {
        P::Instructions { ids: v, .. } => (
            "OFPTableFeaturePropInstructions",
            ids("instruction_ids", "OFPInstructionId", v),
        ),
        P::WriteActions { ids: v, .. } | P::ApplyActions { ids: v, .. } => (
            "OFPTableFeaturePropActions",
            ids("action_ids", "OFPActionId", v),
        ),
        P::NextTables { tables, .. } => (
            "OFPTableFeaturePropNextTables",
            json!({"table_ids": tables}),
        ),
        P::Match(v)
        | P::Wildcards(v)
        | P::WriteSetfield { fields: v, .. }
        | P::ApplySetfield { fields: v, .. } => (
            "OFPTableFeaturePropOxm",
            json!({"oxm_ids": v.iter().map(|i| class("OFPOxmId", json!({
                // Ryu spells the header out: field name, mask bit, length byte.
                "type": header_name(i.header),
                "hasmask": u8::from(i.has_mask()),
                "length": i.header & 0xff,
            }))).collect::<Vec<_>>()}),
        ),
        P::Experimenter {
            experimenter,
            exp_type,
            data,
            ..
        } => (
            "OFPTableFeaturePropExperimenter",
            json!({"experimenter": experimenter, "exp_type": exp_type, "data": words(data)}),
        ),
        P::Unknown { data, .. } => ("OFPTableFeaturePropUnknown", json!({"data": data})),
    };
    class(name, merge(head, fields))
}

/// `experimenter_data` is `uint32_t[]` in the spec and Ryu lists the words;
/// a ragged tail (which the spec forbids) is shown as bytes, to mismatch.
fn words(data: &[u8]) -> Value {
    if !data.len().is_multiple_of(4) {
        return json!({"ragged": data});
    }
    data.chunks(4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .collect()
}

fn table_features(t: &TableFeatures) -> Value {
    // ofp_table_features: 64 fixed bytes, then each property padded to 8.
    let length = 64
        + t.properties
            .iter()
            .map(|p| (4 + prop_body_len(p)).div_ceil(8) * 8)
            .sum::<usize>();
    class(
        "OFPTableFeaturesStats",
        json!({
            "length": length,
            "table_id": t.table_id,
            "name": t.name.to_string_lossy(),
            "metadata_match": t.metadata_match,
            "metadata_write": t.metadata_write,
            "config": t.config,
            "max_entries": t.max_entries,
            "properties": t.properties.iter().map(table_feature_prop).collect::<Vec<_>>(),
        }),
    )
}
