//! A frame as Ryu's packet library shows it (`{"Packet": {"protocols":
//! [...]}}`). Where a corpus JSON carries a frame decoded that way instead of
//! base64, the comparison decodes our bytes the same way: Ethernet with the
//! codec's own frame view, IPv4 and ICMP echo here. Anything else is shown as
//! unsupported, which can only mismatch.

use super::base64;
use ofp::packet::EthernetFrame;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_ICMP: u8 = 1;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

fn unsupported(what: &str, bytes: &[u8]) -> Value {
    json!({"unsupported": {"what": what, "data": base64::encode(bytes)}})
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub fn render(frame: &[u8]) -> Value {
    let mut protocols = Vec::new();
    match EthernetFrame::new_checked(frame) {
        Ok(eth) if eth.tags().next().is_none() => {
            let ethertype = u16::from(eth.ethertype());
            protocols.push(json!({"ethernet": {
                "dst": eth.dst().to_string(),
                "src": eth.src().to_string(),
                "ethertype": ethertype,
            }}));
            if ethertype == ETHERTYPE_IPV4 {
                ipv4(eth.payload(), &mut protocols);
            } else {
                protocols.push(unsupported("ethertype", eth.payload()));
            }
        }
        _ => protocols.push(unsupported("frame", frame)),
    }
    json!({"Packet": {"protocols": protocols}})
}

fn ipv4(b: &[u8], protocols: &mut Vec<Value>) {
    let header_length = usize::from(b.first().map_or(0, |v| v & 0x0f)) * 4;
    if header_length != 20 || b.len() < header_length {
        protocols.push(unsupported("ipv4 header", b));
        return;
    }
    let total_length = usize::from(u16_at(b, 2));
    let frag = u16_at(b, 6);
    protocols.push(json!({"ipv4": {
        "version": b[0] >> 4,
        "header_length": b[0] & 0x0f,
        "tos": b[1],
        "total_length": total_length,
        "identification": u16_at(b, 4),
        "flags": frag >> 13,
        "offset": frag & 0x1fff,
        "ttl": b[8],
        "proto": b[9],
        "csum": u16_at(b, 10),
        "src": Ipv4Addr::new(b[12], b[13], b[14], b[15]).to_string(),
        "dst": Ipv4Addr::new(b[16], b[17], b[18], b[19]).to_string(),
        // Options are rejected above, so there are none.
        "option": null,
    }}));
    let Some(payload) = b.get(header_length..total_length) else {
        protocols.push(unsupported("ipv4 total_length", b));
        return;
    };
    if b[9] == IPPROTO_ICMP {
        icmp(payload, protocols);
    } else {
        protocols.push(unsupported("ip proto", payload));
    }
    if b.len() > total_length {
        protocols.push(unsupported("trailer", &b[total_length..]));
    }
}

fn icmp(b: &[u8], protocols: &mut Vec<Value>) {
    if b.len() < 8 || (b[0] != ICMP_ECHO_REQUEST && b[0] != ICMP_ECHO_REPLY) {
        protocols.push(unsupported("icmp", b));
        return;
    }
    protocols.push(json!({"icmp": {
        "type": b[0],
        "code": b[1],
        "csum": u16_at(b, 2),
        "data": {"echo": {
            "id": u16_at(b, 4),
            "seq": u16_at(b, 6),
            "data": base64::encode(&b[8..]),
        }},
    }}));
}
