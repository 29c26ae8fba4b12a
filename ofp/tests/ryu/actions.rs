//! Actions and instructions in Ryu's classes (`OFPAction*`, `NXAction*`,
//! `OFPInstruction*`).

use super::fields::{header_name, oxm_tlv};
use super::{base64, class, merge, nicira};
use ofp::action::{controller2_prop, Action, ResubmitKind, NX_VENDOR_ID};
use ofp::instruction::Instruction;
use serde_json::{json, Value};

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The action as the codec encodes it. Its `type`, `len`, `experimenter`
/// and `subtype` are read from these bytes: the codec derives them from the
/// variant on encode instead of storing them.
fn encoded(a: &Action) -> Vec<u8> {
    let mut b = Vec::new();
    a.emit(&mut b);
    b
}

/// Size of one action on the wire.
pub fn action_len(a: &Action) -> usize {
    encoded(a).len()
}

/// `{"NXAction<name>": {...}}` with the Nicira header keys Ryu shows.
pub fn nx(name: &str, b: &[u8], fields: Value) -> Value {
    let head = json!({
        "type": u16_at(b, 0),
        "len": b.len(),
        "experimenter": NX_VENDOR_ID,
        "subtype": u16_at(b, 8),
    });
    class(name, merge(head, fields))
}

fn of(name: &str, b: &[u8], fields: Value) -> Value {
    class(
        name,
        merge(json!({"type": u16_at(b, 0), "len": b.len()}), fields),
    )
}

/// Ryu's fallback for an experimenter action it cannot parse: the bytes
/// after the experimenter id, or for Nicira after the subtype.
fn experimenter_unknown(b: &[u8]) -> Value {
    let experimenter = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    if experimenter == NX_VENDOR_ID {
        nx(
            "NXActionUnknown",
            b,
            json!({"data": base64::encode(&b[10..])}),
        )
    } else {
        of(
            "OFPActionExperimenterUnknown",
            b,
            json!({"experimenter": experimenter, "data": base64::encode(&b[8..])}),
        )
    }
}

pub fn action(a: &Action) -> Value {
    use Action as A;
    let b = encoded(a);
    let b = b.as_slice();
    match a {
        A::Output { port, max_len } => of(
            "OFPActionOutput",
            b,
            json!({"port": port, "max_len": max_len}),
        ),
        A::CopyTtlOut => of("OFPActionCopyTtlOut", b, json!({})),
        A::CopyTtlIn => of("OFPActionCopyTtlIn", b, json!({})),
        A::SetMplsTtl(t) => of("OFPActionSetMplsTtl", b, json!({"mpls_ttl": t})),
        A::DecMplsTtl => of("OFPActionDecMplsTtl", b, json!({})),
        A::PushVlan(e) => of("OFPActionPushVlan", b, json!({"ethertype": e})),
        A::PopVlan => of("OFPActionPopVlan", b, json!({})),
        A::PushMpls(e) => of("OFPActionPushMpls", b, json!({"ethertype": e})),
        A::PopMpls(e) => of("OFPActionPopMpls", b, json!({"ethertype": e})),
        A::SetQueue(q) => of("OFPActionSetQueue", b, json!({"queue_id": q})),
        A::Group(g) => of("OFPActionGroup", b, json!({"group_id": g})),
        A::SetNwTtl(t) => of("OFPActionSetNwTtl", b, json!({"nw_ttl": t})),
        A::DecNwTtl => of("OFPActionDecNwTtl", b, json!({})),
        A::SetField(f) => of("OFPActionSetField", b, json!({"field": oxm_tlv(f)})),
        A::PushPbb(e) => of("OFPActionPushPbb", b, json!({"ethertype": e})),
        A::PopPbb => of("OFPActionPopPbb", b, json!({})),
        A::RegMove(m) => nx(
            "NXActionRegMove",
            b,
            json!({
                "n_bits": m.n_bits,
                "src_ofs": m.src_ofs,
                "dst_ofs": m.dst_ofs,
                "src_field": header_name(m.src.0),
                "dst_field": header_name(m.dst.0),
            }),
        ),
        A::RegLoad { dst, value } => nx(
            "NXActionRegLoad",
            b,
            json!({
                // The codec splits ofs_nbits into a subfield; Ryu keeps the
                // wire word, so it is put back together here.
                "ofs_nbits": (dst.ofs << 6) | (dst.n_bits.wrapping_sub(1) & 0x3f),
                "dst": header_name(dst.field.0),
                "value": value,
            }),
        ),
        A::RegLoad2(f) => {
            let tlv = oxm_tlv(f);
            let t = &tlv["OXMTlv"];
            nx(
                "NXActionRegLoad2",
                b,
                json!({"dst": t["field"], "value": t["value"], "mask": t["mask"]}),
            )
        }
        A::Resubmit {
            in_port,
            kind: ResubmitKind::Port,
            ..
        } => nx("NXActionResubmit", b, json!({"in_port": in_port})),
        A::Resubmit {
            in_port,
            table,
            kind: ResubmitKind::Table,
        } => nx(
            "NXActionResubmitTable",
            b,
            json!({"in_port": in_port, "table_id": table}),
        ),
        A::SetTunnel(id) => nx("NXActionSetTunnel", b, json!({"tun_id": id})),
        A::SetTunnel64(id) => nx("NXActionSetTunnel64", b, json!({"tun_id": id})),
        A::PopQueue => nx("NXActionPopQueue", b, json!({})),
        A::Note(note) => nx("NXActionNote", b, json!({"note": note})),
        A::Exit => nx("NXActionExit", b, json!({})),
        A::NxDecTtl => nx("NXActionDecTtl", b, json!({})),
        A::DecTtlCntIds(ids) => nx("NXActionDecTtlCntIds", b, json!({"cnt_ids": ids})),
        A::FinTimeout {
            idle_timeout,
            hard_timeout,
        } => nx(
            "NXActionFinTimeout",
            b,
            json!({"fin_idle_timeout": idle_timeout, "fin_hard_timeout": hard_timeout}),
        ),
        A::Controller {
            max_len,
            controller_id,
            reason,
        } => nx(
            "NXActionController",
            b,
            json!({"max_len": max_len, "controller_id": controller_id, "reason": reason}),
        ),
        A::Controller2(props) => {
            // Ryu shows the properties as attributes; `pause` is whether the
            // PAUSE property is present at all.
            let prop = |k: u16| {
                props
                    .iter()
                    .find(|p| p.kind == k)
                    .map(|p| p.value.as_slice())
            };
            let u16_of = |k| prop(k).filter(|v| v.len() >= 2).map(|v| u16_at(v, 0));
            nx(
                "NXActionController2",
                b,
                json!({
                    "max_len": u16_of(controller2_prop::MAX_LEN),
                    "controller_id": u16_of(controller2_prop::CONTROLLER_ID),
                    "reason": prop(controller2_prop::REASON).and_then(|v| v.first()),
                    "userdata": prop(controller2_prop::USERDATA),
                    "pause": prop(controller2_prop::PAUSE).is_some(),
                }),
            )
        }
        A::Conjunction {
            id,
            clause,
            n_clauses,
        } => nx(
            "NXActionConjunction",
            b,
            json!({"id": id, "clause": clause, "n_clauses": n_clauses}),
        ),
        A::OutputTrunc { port, max_len } => nx(
            "NXActionOutputTrunc",
            b,
            json!({"port": port, "max_len": max_len}),
        ),
        A::StackPush(s) | A::StackPop(s) => {
            let name = if matches!(a, A::StackPush(_)) {
                "NXActionStackPush"
            } else {
                "NXActionStackPop"
            };
            // Ryu shows the subfield as an inclusive bit range.
            nx(
                name,
                b,
                json!({
                    "field": header_name(s.field.0),
                    "start": s.ofs,
                    "end": u32::from(s.ofs) + u32::from(s.n_bits) - 1,
                }),
            )
        }
        A::CtClear => nx("NXActionCTClear", b, json!({})),
        A::Experimenter {
            experimenter: NX_VENDOR_ID,
            data,
        } => nicira::raw(b, data).unwrap_or_else(|| experimenter_unknown(b)),
        // Ryu has no class for these: resubmit(,table,ct), ONF copy-field in
        // OpenFlow 1.3, other experimenters.
        A::Resubmit { .. } | A::CopyField(_) | A::Experimenter { .. } => experimenter_unknown(b),
        A::Unknown { action_type, data } => class(
            "OFPActionUnknown",
            json!({"type": action_type, "len": b.len(), "data": base64::encode(data)}),
        ),
    }
}

pub fn actions(list: &[Action]) -> Value {
    Value::Array(list.iter().map(action).collect())
}

/// Size of one instruction on the wire.
pub fn instruction_len(i: &Instruction) -> usize {
    let mut b = Vec::new();
    i.emit(&mut b);
    b.len()
}

pub fn instruction(i: &Instruction) -> Value {
    let mut b = Vec::new();
    i.emit(&mut b);
    let head = |fields: Value| merge(json!({"type": u16_at(&b, 0), "len": b.len()}), fields);
    match i {
        Instruction::GotoTable(t) => class("OFPInstructionGotoTable", head(json!({"table_id": t}))),
        Instruction::WriteMetadata { metadata, mask } => class(
            "OFPInstructionWriteMetadata",
            head(json!({"metadata": metadata, "metadata_mask": mask})),
        ),
        Instruction::WriteActions(a) | Instruction::ApplyActions(a) => class(
            "OFPInstructionActions",
            head(json!({"actions": actions(a)})),
        ),
        Instruction::ClearActions => class("OFPInstructionActions", head(json!({"actions": []}))),
        Instruction::Meter(id) => class("OFPInstructionMeter", head(json!({"meter_id": id}))),
        Instruction::Experimenter { experimenter, data } => class(
            "OFPInstructionExperimenter",
            head(json!({"experimenter": experimenter, "data": base64::encode(data)})),
        ),
        Instruction::Unknown { data, .. } => class(
            "OFPInstructionUnknown",
            head(json!({"data": base64::encode(data)})),
        ),
    }
}

pub fn instructions(list: &[Instruction]) -> Value {
    Value::Array(list.iter().map(instruction).collect())
}
