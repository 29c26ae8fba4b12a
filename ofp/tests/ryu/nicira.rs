//! The Nicira actions the codec keeps as raw experimenter bytes (learn, ct,
//! nat, sample, sample2), decoded here from those bytes so that every
//! field Ryu shows for them is compared too. The layouts are OVS's
//! `nx_action_learn`, `nx_action_conntrack`, `nx_action_nat`,
//! `nx_action_sample` and `nx_action_sample2`.

use super::actions::{actions, nx};
use super::class;
use super::fields::{header_name, u128_value};
use ofp::action::parse_actions;
use ofp::codec::Reader;
use ofp::error::ErrorCode;
use ofp::DecodeError;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, Ipv6Addr};

type Result<T> = core::result::Result<T, DecodeError>;

mod subtype {
    pub const LEARN: u16 = 16;
    pub const SAMPLE: u16 = 29;
    pub const CT: u16 = 35;
    pub const NAT: u16 = 36;
    pub const SAMPLE2: u16 = 38;
}

/// A Nicira action from its encoded bytes `b` (header included) and the
/// codec's raw `data` (everything after the experimenter id). `None` for a
/// subtype decoded nowhere, which Ryu shows as `NXActionUnknown` too.
pub fn raw(b: &[u8], data: &[u8]) -> Option<Value> {
    let mut r = Reader::new(data, "nx_action");
    let subtype = r.u16().ok()?;
    let decoded = match subtype {
        subtype::LEARN => learn(&mut r).map(|f| ("NXActionLearn", f)),
        subtype::CT => ct(&mut r).map(|f| ("NXActionCT", f)),
        subtype::NAT => nat(&mut r).map(|f| ("NXActionNAT", f)),
        subtype::SAMPLE => sample(&mut r).map(|f| ("NXActionSample", f)),
        subtype::SAMPLE2 => sample2(&mut r).map(|f| ("NXActionSample2", f)),
        _ => return None,
    };
    // A layout this reading gets wrong shows up as a mismatch, not a panic.
    Some(match decoded {
        Ok((name, fields)) => nx(name, b, fields),
        Err(e) => class(
            "NXActionUndecodable",
            json!({"subtype": subtype, "error": e.to_string()}),
        ),
    })
}

fn bad(at: &'static str, value: u64) -> DecodeError {
    DecodeError::BadValue {
        at,
        value,
        code: ErrorCode::ACTION_BAD_ARGUMENT,
    }
}

/// What follows the fields must be the zero padding to 8 bytes.
fn padding(r: &mut Reader<'_>, at: &'static str) -> Result<()> {
    let rest = r.take_rest();
    if rest.len() >= 8 || rest.iter().any(|&b| b != 0) {
        return Err(bad(at, rest.len() as u64));
    }
    Ok(())
}

/// `[field name, bit offset]`, Ryu's form of an NXM subfield.
fn subfield(r: &mut Reader<'_>) -> Result<Value> {
    let header = r.u32()?;
    Ok(json!([header_name(header), r.u16()?]))
}

fn learn(r: &mut Reader<'_>) -> Result<Value> {
    let idle_timeout = r.u16()?;
    let hard_timeout = r.u16()?;
    let priority = r.u16()?;
    let cookie = r.u64()?;
    let flags = r.u16()?;
    let table_id = r.u8()?;
    r.skip(1)?;
    let fin_idle_timeout = r.u16()?;
    let fin_hard_timeout = r.u16()?;
    let mut specs = Vec::new();
    // Flow specs run until a zero header; the rest pads to 8 bytes.
    while r.remaining() >= 2 && r.peek_u16(0)? != 0 {
        let header = r.u16()?;
        let n_bits = header & 0x3ff;
        let src = if header & (1 << 13) != 0 {
            // An immediate source: n_bits rounded up to 16-bit units.
            let bytes = r.take(2 * usize::from(n_bits).div_ceil(16))?;
            if bytes.len() > 16 {
                return Err(bad("nx_flow_mod_spec.src", u64::from(n_bits)));
            }
            u128_value(bytes.iter().fold(0, |a, &x| (a << 8) | u128::from(x)))
        } else {
            subfield(r)?
        };
        let (name, dst) = match (header >> 11) & 3 {
            0 => ("NXFlowSpecMatch", subfield(r)?),
            1 => ("NXFlowSpecLoad", subfield(r)?),
            // Output has no destination; Ryu leaves it empty.
            2 => ("NXFlowSpecOutput", json!("")),
            _ => return Err(bad("nx_flow_mod_spec.dst", u64::from(header))),
        };
        specs.push(class(
            name,
            json!({"src": src, "dst": dst, "n_bits": n_bits}),
        ));
    }
    padding(r, "nx_action_learn")?;
    Ok(json!({
        "idle_timeout": idle_timeout,
        "hard_timeout": hard_timeout,
        "priority": priority,
        "cookie": cookie,
        "flags": flags,
        "table_id": table_id,
        "fin_idle_timeout": fin_idle_timeout,
        "fin_hard_timeout": fin_hard_timeout,
        "specs": specs,
    }))
}

fn ct(r: &mut Reader<'_>) -> Result<Value> {
    let flags = r.u16()?;
    let zone_src = r.u32()?;
    let zone_ofs_nbits = r.u16()?;
    let recirc_table = r.u8()?;
    r.skip(3)?;
    let alg = r.u16()?;
    // The nested actions are ordinary actions: the codec's own parser reads them.
    let nested = parse_actions(Reader::new(r.take_rest(), "nx_action_conntrack.actions"))?;
    Ok(json!({
        "flags": flags,
        // No zone field: Ryu shows an empty name.
        "zone_src": if zone_src == 0 { String::new() } else { header_name(zone_src) },
        "zone_ofs_nbits": zone_ofs_nbits,
        "recirc_table": recirc_table,
        "alg": alg,
        "actions": actions(&nested),
    }))
}

fn nat(r: &mut Reader<'_>) -> Result<Value> {
    r.skip(2)?;
    let flags = r.u16()?;
    let present = r.u16()?;
    // Each range is on the wire only when its `range_present` bit is set;
    // Ryu shows an absent address as "" and an absent port as null.
    let mut range = |bit: u16, len: usize| -> Result<Option<&[u8]>> {
        Ok(if present & bit != 0 {
            Some(r.take(len)?)
        } else {
            None
        })
    };
    let addr = |b: Option<&[u8]>| match b {
        Some(&[a, b, c, d]) => json!(Ipv4Addr::new(a, b, c, d).to_string()),
        Some(b) => {
            json!(<[u8; 16]>::try_from(b).map_or(String::new(), |a| Ipv6Addr::from(a).to_string()))
        }
        None => json!(""),
    };
    let port =
        |b: Option<&[u8]>| b.map_or(Value::Null, |b| json!(u16::from_be_bytes([b[0], b[1]])));
    let (ipv4_min, ipv4_max) = (addr(range(1, 4)?), addr(range(2, 4)?));
    let (ipv6_min, ipv6_max) = (addr(range(4, 16)?), addr(range(8, 16)?));
    let (proto_min, proto_max) = (port(range(0x10, 2)?), port(range(0x20, 2)?));
    padding(r, "nx_action_nat")?;
    Ok(json!({
        "flags": flags,
        "range_ipv4_min": ipv4_min,
        "range_ipv4_max": ipv4_max,
        "range_ipv6_min": ipv6_min,
        "range_ipv6_max": ipv6_max,
        "range_proto_min": proto_min,
        "range_proto_max": proto_max,
    }))
}

fn sample_fields(r: &mut Reader<'_>) -> Result<Value> {
    Ok(json!({
        "probability": r.u16()?,
        "collector_set_id": r.u32()?,
        "obs_domain_id": r.u32()?,
        "obs_point_id": r.u32()?,
    }))
}

fn sample(r: &mut Reader<'_>) -> Result<Value> {
    let fields = sample_fields(r)?;
    padding(r, "nx_action_sample")?;
    Ok(fields)
}

fn sample2(r: &mut Reader<'_>) -> Result<Value> {
    let mut fields = sample_fields(r)?;
    fields["sampling_port"] = json!(r.u16()?);
    // `direction` follows; Ryu's NXActionSample2 does not show it, and the
    // byte-for-byte re-encoding covers it.
    r.skip(1)?;
    padding(r, "nx_action_sample2")?;
    Ok(fields)
}
