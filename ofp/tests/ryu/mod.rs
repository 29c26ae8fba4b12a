//! Our decoded messages in the shape of Ryu/os-ken's `to_jsondict()`: Ryu's
//! class names and attribute names, integers for codes and flags, base64
//! for byte blobs, text for MAC and IP addresses. A corpus `.packet.json` is
//! then compared with this rendering key by key ([`compare`]).
//!
//! Most values are copied from a decoded field. The ones that are not are
//! listed in [`DERIVED`], each computed where it is rendered.

mod actions;
pub mod base64;
mod compare;
mod fields;
mod multipart;
mod nicira;
mod packet;

pub use compare::{compare, Arrays};
pub use fields::match_len;

use actions::{action_len, actions};
use fields::{mac, match_};
use ofp::message::{
    AsyncConfig, Bucket, ErrorMsg, Hello, HelloElement, Message, MeterBand, PacketQueue, Port,
    QueueProp, RoleMsg, SwitchConfig,
};
use serde_json::{json, Map, Value};

/// The JSON values this rendering computes instead of copying them from a
/// decoded field, and why: the test's list of derived fields.
pub const DERIVED: &[(&str, &str)] = &[
    (
        "len, length, actions_len",
        "the codec derives lengths on encode; each is recomputed from the decoded \
         structure (the encoded size of actions, instructions and OXM fields, plus \
         the fixed sizes of the spec's structures; OFPMatch.length unpadded)",
    ),
    (
        "OFPAction*/NXAction* type, experimenter, subtype; OFPInstruction* type",
        "the codec knows them from the decoded variant; read back from its encoding",
    ),
    (
        "OFPMatch.type",
        "always 1: the codec decodes only OFPMT_OXM matches",
    ),
    (
        "OFPHelloElemVersionBitmap.versions",
        "Ryu expands the bitmap words into the version numbers whose bits are set",
    ),
    (
        "OFPErrorMsg.code = null (type 0xffff)",
        "an experimenter error has exp_type where a code would be; Ryu shows code null",
    ),
    (
        "OXMTlv.field, NXActionRegMove.src_field/dst_field, NXActionRegLoad.dst, \
         NXActionStackPush/Pop.field, NXActionCT.zone_src, NXFlowSpec* src/dst, OFPOxmId.type",
        "Ryu's field names for the decoded (class, field); fields Ryu does not know \
         are field_<n> with base64 values, as Ryu writes them",
    ),
    (
        "OFPOxmId.hasmask, OFPOxmId.length",
        "the mask bit and length byte of the decoded OXM header",
    ),
    (
        "NXActionRegLoad.ofs_nbits",
        "the codec splits it into offset and width; put back together as (ofs << 6) | (n_bits - 1)",
    ),
    (
        "NXActionStackPush/Pop.start/end",
        "Ryu shows the subfield as an inclusive bit range: end = ofs + n_bits - 1",
    ),
    (
        "NXActionController2 max_len/controller_id/reason/userdata/pause",
        "read from the decoded properties; pause is whether the PAUSE property is present",
    ),
    (
        "NXActionLearn, NXActionCT, NXActionNAT, NXActionSample, NXActionSample2",
        "the codec keeps these raw; every field is decoded here from the raw bytes \
         (CT's nested actions with the codec's action parser); NAT ranges absent \
         from range_present are Ryu's defaults, \"\" for addresses and null for ports",
    ),
    (
        "NXActionUnknown, OFPActionExperimenterUnknown",
        "Ryu's fallbacks for experimenter actions it cannot parse: the raw bytes after \
         the subtype (Nicira) or the experimenter id, base64",
    ),
    (
        "ONFFlowMonitorStatsRequest.body",
        "the codec keeps the experimenter body raw; each ONFFlowMonitorRequest is decoded \
         here, its match fields with the codec's OXM reader, wrapped as Ryu does in an \
         OFPMatch of type 1 and length match_len + 4",
    ),
    (
        "data as {\"Packet\": ...}",
        "Ryu decoded that frame with its packet library; ours is decoded the same way \
         (Ethernet with the codec's frame view, IPv4 and ICMP echo in the test)",
    ),
    (
        "OFPTruncatedMessage",
        "Ryu's partial decoding of a message cut short; compared with our decoding of \
         the whole message, Ryu's lists being prefixes of ours",
    ),
];

/// `{name: body}`, Ryu's wrapping of every structure.
pub fn class(name: &str, body: Value) -> Value {
    let mut m = Map::new();
    m.insert(name.to_owned(), body);
    Value::Object(m)
}

/// The keys of `a` and `b` in one object.
pub fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn b64(bytes: &[u8]) -> Value {
    json!(base64::encode(bytes))
}

fn hello(h: &Hello) -> Value {
    let elements: Vec<Value> = h
        .elements
        .iter()
        .map(|e| match e {
            HelloElement::VersionBitmap(words) => {
                let versions: Vec<u32> = (0..words.len() as u32 * 32)
                    .filter(|&v| words[(v / 32) as usize] & (1 << (v % 32)) != 0)
                    .collect();
                class(
                    "OFPHelloElemVersionBitmap",
                    json!({
                        "type": ofp::message::HELLO_ELEM_VERSIONBITMAP,
                        "length": 4 + 4 * words.len(),
                        "versions": versions,
                    }),
                )
            }
            HelloElement::Unknown { elem_type, data } => class(
                "OFPHelloElemUnknown",
                json!({"type": elem_type, "length": 4 + data.len(), "data": b64(data)}),
            ),
        })
        .collect();
    class("OFPHello", json!({"elements": elements}))
}

fn error(e: &ErrorMsg) -> Value {
    let body = match e {
        ErrorMsg::Standard { code, data } => {
            json!({"type": code.kind, "code": code.code, "data": b64(data)})
        }
        ErrorMsg::Experimenter {
            exp_type,
            experimenter,
            data,
        } => json!({
            "type": ofp::error::error_type::EXPERIMENTER,
            "code": null,
            "exp_type": exp_type,
            "experimenter": experimenter,
            "data": b64(data),
        }),
    };
    class("OFPErrorMsg", body)
}

pub fn port(p: &Port) -> Value {
    class(
        "OFPPort",
        json!({
            "port_no": p.port_no,
            "hw_addr": p.hw_addr.to_string(),
            "name": p.name.to_string_lossy(),
            "config": p.config,
            "state": p.state,
            "curr": p.curr,
            "advertised": p.advertised,
            "supported": p.supported,
            "peer": p.peer,
            "curr_speed": p.curr_speed,
            "max_speed": p.max_speed,
        }),
    )
}

/// ofp_bucket: 16 fixed bytes, then the actions.
pub fn bucket_len(b: &Bucket) -> usize {
    16 + b.actions.iter().map(action_len).sum::<usize>()
}

pub fn bucket(b: &Bucket) -> Value {
    class(
        "OFPBucket",
        json!({
            "len": bucket_len(b),
            "weight": b.weight,
            "watch_port": b.watch_port,
            "watch_group": b.watch_group,
            "actions": actions(&b.actions),
        }),
    )
}

/// ofp_meter_band_*: 16 bytes, experimenter and unknown bands 12 plus their
/// own content.
pub fn meter_band_len(b: &MeterBand) -> usize {
    match b {
        MeterBand::Drop { .. } | MeterBand::DscpRemark { .. } => 16,
        MeterBand::Experimenter { data, .. } => 16 + data.len(),
        MeterBand::Unknown { data, .. } => 12 + data.len(),
    }
}

pub fn meter_band(b: &MeterBand) -> Value {
    let (band_type, rate, burst_size) = b.header();
    let head = json!({
        "type": band_type,
        "len": meter_band_len(b),
        "rate": rate,
        "burst_size": burst_size,
    });
    match b {
        MeterBand::Drop { .. } => class("OFPMeterBandDrop", head),
        MeterBand::DscpRemark { prec_level, .. } => class(
            "OFPMeterBandDscpRemark",
            merge(head, json!({"prec_level": prec_level})),
        ),
        // Ryu shows no experimenter data; the re-encoding covers it.
        MeterBand::Experimenter { experimenter, .. } => class(
            "OFPMeterBandExperimenter",
            merge(head, json!({"experimenter": experimenter})),
        ),
        MeterBand::Unknown { data, .. } => class(
            "OFPMeterBandUnknown",
            merge(head, json!({"data": b64(data)})),
        ),
    }
}

/// ofp_queue_prop_*: an 8-byte header, 8 more for the rates, experimenter
/// properties 8 plus their data.
fn queue_prop_len(p: &QueueProp) -> usize {
    match p {
        QueueProp::MinRate(_) | QueueProp::MaxRate(_) => 16,
        QueueProp::Experimenter { data, .. } => 16 + data.len(),
        QueueProp::Unknown { data, .. } => 8 + data.len(),
    }
}

fn queue_prop(p: &QueueProp) -> Value {
    let len = queue_prop_len(p);
    match p {
        QueueProp::MinRate(rate) => class(
            "OFPQueuePropMinRate",
            json!({"property": 1, "len": len, "rate": rate}),
        ),
        QueueProp::MaxRate(rate) => class(
            "OFPQueuePropMaxRate",
            json!({"property": 2, "len": len, "rate": rate}),
        ),
        QueueProp::Experimenter { experimenter, data } => class(
            "OFPQueuePropExperimenter",
            json!({"property": 0xffff, "len": len, "experimenter": experimenter, "data": data}),
        ),
        QueueProp::Unknown { property, data } => class(
            "OFPQueuePropUnknown",
            json!({"property": property, "len": len, "data": data}),
        ),
    }
}

fn packet_queue(q: &PacketQueue) -> Value {
    class(
        "OFPPacketQueue",
        json!({
            // ofp_packet_queue: 16 fixed bytes, then the properties.
            "len": 16 + q.properties.iter().map(queue_prop_len).sum::<usize>(),
            "queue_id": q.queue_id,
            "port": q.port,
            "properties": q.properties.iter().map(queue_prop).collect::<Vec<_>>(),
        }),
    )
}

fn switch_config(name: &str, c: &SwitchConfig) -> Value {
    class(
        name,
        json!({"flags": c.flags, "miss_send_len": c.miss_send_len}),
    )
}

fn role(name: &str, r: &RoleMsg) -> Value {
    class(
        name,
        json!({"role": u32::from(r.role), "generation_id": r.generation_id}),
    )
}

fn async_config(name: &str, a: &AsyncConfig) -> Value {
    class(
        name,
        json!({
            "packet_in_mask": a.packet_in_mask,
            "port_status_mask": a.port_status_mask,
            "flow_removed_mask": a.flow_removed_mask,
        }),
    )
}

/// The whole message in Ryu's JSON form. Ryu leaves the header (version,
/// type, length, xid) out, and so does this.
pub fn message(m: &Message) -> Value {
    use Message as M;
    let empty = |name: &str| class(name, json!({}));
    match m {
        M::Hello(h) => hello(h),
        M::Error(e) => error(e),
        M::EchoRequest(d) => class("OFPEchoRequest", json!({"data": b64(d)})),
        M::EchoReply(d) => class("OFPEchoReply", json!({"data": b64(d)})),
        M::Experimenter(e) => class(
            "OFPExperimenter",
            json!({"experimenter": e.experimenter, "exp_type": e.exp_type, "data": b64(&e.data)}),
        ),
        M::FeaturesRequest => empty("OFPFeaturesRequest"),
        // Ryu shows no `reserved`; the re-encoding covers it.
        M::FeaturesReply(f) => class(
            "OFPSwitchFeatures",
            json!({
                "datapath_id": f.datapath_id,
                "n_buffers": f.n_buffers,
                "n_tables": f.n_tables,
                "auxiliary_id": f.auxiliary_id,
                "capabilities": f.capabilities,
            }),
        ),
        M::GetConfigRequest => empty("OFPGetConfigRequest"),
        M::GetConfigReply(c) => switch_config("OFPGetConfigReply", c),
        M::SetConfig(c) => switch_config("OFPSetConfig", c),
        M::PacketIn(p) => class(
            "OFPPacketIn",
            json!({
                "buffer_id": p.buffer_id,
                "total_len": p.total_len,
                "reason": u8::from(p.reason),
                "table_id": p.table_id,
                "cookie": p.cookie,
                "match": match_(&p.match_),
                "data": b64(&p.data),
            }),
        ),
        M::FlowRemoved(f) => class(
            "OFPFlowRemoved",
            json!({
                "cookie": f.cookie,
                "priority": f.priority,
                "reason": u8::from(f.reason),
                "table_id": f.table_id,
                "duration_sec": f.duration_sec,
                "duration_nsec": f.duration_nsec,
                "idle_timeout": f.idle_timeout,
                "hard_timeout": f.hard_timeout,
                "packet_count": f.packet_count,
                "byte_count": f.byte_count,
                "match": match_(&f.match_),
            }),
        ),
        M::PortStatus(s) => class(
            "OFPPortStatus",
            json!({"reason": u8::from(s.reason), "desc": port(&s.desc)}),
        ),
        M::PacketOut(p) => class(
            "OFPPacketOut",
            json!({
                "buffer_id": p.buffer_id,
                "in_port": p.in_port,
                "actions_len": p.actions.iter().map(action_len).sum::<usize>(),
                "actions": actions(&p.actions),
                "data": b64(&p.data),
            }),
        ),
        M::FlowMod(f) => class(
            "OFPFlowMod",
            json!({
                "cookie": f.cookie,
                "cookie_mask": f.cookie_mask,
                "table_id": f.table_id,
                "command": u8::from(f.command),
                "idle_timeout": f.idle_timeout,
                "hard_timeout": f.hard_timeout,
                "priority": f.priority,
                "buffer_id": f.buffer_id,
                "out_port": f.out_port,
                "out_group": f.out_group,
                "flags": f.flags,
                "match": match_(&f.match_),
                "instructions": actions::instructions(&f.instructions),
            }),
        ),
        M::GroupMod(g) => class(
            "OFPGroupMod",
            json!({
                "command": u16::from(g.command),
                "type": u8::from(g.group_type),
                "group_id": g.group_id,
                "buckets": g.buckets.iter().map(bucket).collect::<Vec<_>>(),
            }),
        ),
        M::PortMod(p) => class(
            "OFPPortMod",
            json!({
                "port_no": p.port_no,
                "hw_addr": mac(&p.hw_addr.0),
                "config": p.config,
                "mask": p.mask,
                "advertise": p.advertise,
            }),
        ),
        M::TableMod(t) => class(
            "OFPTableMod",
            json!({"table_id": t.table_id, "config": t.config}),
        ),
        M::MultipartRequest(r) => multipart::request(r),
        M::MultipartReply(r) => multipart::reply(r),
        M::BarrierRequest => empty("OFPBarrierRequest"),
        M::BarrierReply => empty("OFPBarrierReply"),
        M::QueueGetConfigRequest(q) => class("OFPQueueGetConfigRequest", json!({"port": q.port})),
        M::QueueGetConfigReply(q) => class(
            "OFPQueueGetConfigReply",
            json!({
                "port": q.port,
                "queues": q.queues.iter().map(packet_queue).collect::<Vec<_>>(),
            }),
        ),
        M::RoleRequest(r) => role("OFPRoleRequest", r),
        M::RoleReply(r) => role("OFPRoleReply", r),
        M::GetAsyncRequest => empty("OFPGetAsyncRequest"),
        M::GetAsyncReply(a) => async_config("OFPGetAsyncReply", a),
        M::SetAsync(a) => async_config("OFPSetAsync", a),
        M::MeterMod(mm) => class(
            "OFPMeterMod",
            json!({
                "command": u16::from(mm.command),
                "flags": mm.flags,
                "meter_id": mm.meter_id,
                "bands": mm.bands.iter().map(meter_band).collect::<Vec<_>>(),
            }),
        ),
        M::Unknown { msg_type, body } => class(
            "OFPUnknownMessage",
            json!({"msg_type": msg_type, "data": b64(body)}),
        ),
    }
}
