//! The flows the interop run installs, and the field-by-field comparison of
//! a flow as sent with the same flow as Open vSwitch reports it back.
//!
//! The pipeline is a small version of what the Iris controller will install:
//! table 0 classifies a VM's port into its VI (metadata), table 1 answers ARP
//! requests in the datapath (Nicira move actions swap the addresses, as
//! Neutron's ARP responder does) and goes on to table 2, which forwards
//! within the VI by destination MAC.

use std::net::Ipv4Addr;

use ofp::action::{port, Action, FieldMove, FieldRef};
use ofp::instruction::Instruction;
use ofp::message::FlowMod;
use ofp::multipart::FlowStats;
use ofp::oxm::{FieldId, Match, OxmField, SubfieldName};

/// The VI (virtual infrastructure) the VMs and flows belong to, carried in
/// the low 16 bits of the metadata register between tables.
pub const VI: u32 = 7;
/// The bits of metadata that hold the VI.
pub const VI_MASK: u64 = 0xffff;
/// The VLAN the ARP responder answers on.
pub const VLAN: u16 = 10;
/// Every cookie of the run's flows carries this in its upper half, and the
/// table number in its lower half.
pub const COOKIE_BASE: u64 = 0x1215_0000_0000_0000;

/// One VM the flows refer to: its OpenFlow port, MAC and IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub port: u32,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
}

fn move_field(src: FieldId, dst: FieldId) -> Action {
    Action::move_field(src, dst).expect("the codec knows the widths of address fields")
}

/// The three flows, in table order: table 0 classifies `asker`'s port into
/// [`VI`]; table 1 answers `asker`'s ARP requests for `owner`'s address on
/// [`VLAN`] and continues in table 2; table 2 delivers frames for `owner`'s
/// MAC to its port.
pub fn pipeline(asker: Endpoint, owner: Endpoint) -> Vec<FlowMod> {
    let classify = FlowMod {
        cookie: COOKIE_BASE,
        table_id: 0,
        priority: 100,
        match_: Match::new().in_port(asker.port),
        instructions: vec![
            Instruction::WriteMetadata {
                metadata: VI.into(),
                mask: VI_MASK,
            },
            Instruction::GotoTable(1),
        ],
        ..FlowMod::default()
    };
    let arp_responder = FlowMod {
        cookie: COOKIE_BASE | 1,
        table_id: 1,
        priority: 200,
        match_: Match::new()
            .in_port(asker.port)
            .eth_type(0x0806)
            .vlan_vid(VLAN)
            .arp_op(1)
            .arp_tpa(owner.ip)
            .metadata_masked(VI.into(), VI_MASK),
        instructions: vec![
            Instruction::ApplyActions(vec![
                move_field(FieldId::ETH_SRC, FieldId::ETH_DST),
                Action::SetField(OxmField::EthSrc(owner.mac, None)),
                Action::SetField(OxmField::ArpOp(2)),
                move_field(FieldId::ARP_SHA, FieldId::ARP_THA),
                move_field(FieldId::ARP_SPA, FieldId::ARP_TPA),
                Action::SetField(OxmField::ArpSha(owner.mac, None)),
                Action::SetField(OxmField::ArpSpa(owner.ip, None)),
                Action::output(port::IN_PORT),
            ]),
            Instruction::GotoTable(2),
        ],
        ..FlowMod::default()
    };
    let deliver = FlowMod {
        cookie: COOKIE_BASE | 2,
        table_id: 2,
        priority: 10,
        match_: Match::new()
            .metadata_masked(VI.into(), VI_MASK)
            .eth_dst(owner.mac),
        instructions: vec![Instruction::ApplyActions(vec![Action::output(owner.port)])],
        ..FlowMod::default()
    };
    vec![classify, arp_responder, deliver]
}

/// How a flow came back: equal to what was sent, up to the listed
/// normalisations, each explained in words.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Normalised {
    pub notes: Vec<String>,
}

/// Compares a flow as sent with the flow entry the switch reports.
///
/// Header fields, every match field (value and mask) and every instruction
/// (each action of apply-actions, in order) must be equal. Two differences
/// are accepted and noted, because OpenFlow gives them no meaning: the order
/// of the match's OXM fields (OVS re-emits them in its own order) and the
/// order of instructions (OVS emits them in the order the pipeline executes
/// them). Anything else is returned as a list of differences.
pub fn compare(sent: &FlowMod, got: &FlowStats) -> Result<Normalised, Vec<String>> {
    let mut diffs = Vec::new();
    let mut notes = Vec::new();
    let mut header = |what: &str, sent: u64, got: u64| {
        if sent != got {
            diffs.push(format!("{what}: sent {sent:#x}, reported {got:#x}"));
        }
    };
    header("table_id", sent.table_id.into(), got.table_id.into());
    header("priority", sent.priority.into(), got.priority.into());
    header("cookie", sent.cookie, got.cookie);
    header(
        "idle_timeout",
        sent.idle_timeout.into(),
        got.idle_timeout.into(),
    );
    header(
        "hard_timeout",
        sent.hard_timeout.into(),
        got.hard_timeout.into(),
    );
    header("flags", sent.flags.into(), got.flags.into());

    compare_match(&sent.match_, &got.match_, &mut diffs, &mut notes);
    compare_instructions(
        &sent.instructions,
        &got.instructions,
        &mut diffs,
        &mut notes,
    );
    if diffs.is_empty() {
        Ok(Normalised { notes })
    } else {
        Err(diffs)
    }
}

fn field_names(m: &Match) -> String {
    m.fields
        .iter()
        .map(OxmField::name)
        .collect::<Vec<_>>()
        .join(",")
}

fn compare_match(sent: &Match, got: &Match, diffs: &mut Vec<String>, notes: &mut Vec<String>) {
    for field in &sent.fields {
        match got.get(field.id()) {
            Some(g) if g == field => {}
            Some(g) => diffs.push(format!("match field {field} came back as {g}")),
            None => diffs.push(format!("match field {field} is missing")),
        }
    }
    for field in &got.fields {
        if sent.get(field.id()).is_none() {
            diffs.push(format!("match field {field} was added"));
        }
    }
    let same_set = sent.fields.len() == got.fields.len()
        && sent.fields.iter().all(|f| got.get(f.id()) == Some(f));
    if same_set && sent.fields != got.fields {
        notes.push(format!(
            "match fields in OVS's order ({}) instead of the order sent ({})",
            field_names(got),
            field_names(sent)
        ));
    }
}

fn compare_instructions(
    sent: &[Instruction],
    got: &[Instruction],
    diffs: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    // A flow holds each kind of instruction at most once.
    let kind = std::mem::discriminant::<Instruction>;
    for instruction in sent {
        match got.iter().find(|g| kind(g) == kind(instruction)) {
            Some(g) if g == instruction => {}
            Some(Instruction::ApplyActions(got_actions)) => {
                if let Instruction::ApplyActions(sent_actions) = instruction {
                    compare_actions(sent_actions, got_actions, diffs, notes);
                }
            }
            Some(g) => diffs.push(format!("instruction {instruction} came back as {g}")),
            None => diffs.push(format!("instruction {instruction} is missing")),
        }
    }
    let mut added = false;
    for instruction in got {
        if !sent.iter().any(|s| kind(s) == kind(instruction)) {
            diffs.push(format!("instruction {instruction} was added"));
            added = true;
        }
    }
    let same_kinds = sent.len() == got.len() && !added;
    if same_kinds && !sent.iter().map(kind).eq(got.iter().map(kind)) {
        notes.push("instructions in the order the pipeline executes them".to_owned());
    }
}

fn compare_actions(
    sent: &[Action],
    got: &[Action],
    diffs: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    if sent.len() != got.len() {
        diffs.push(format!(
            "apply-actions: {} actions sent, {} reported",
            sent.len(),
            got.len()
        ));
    }
    let mut renamed = Vec::new();
    for (i, (s, g)) in sent.iter().zip(got).enumerate() {
        match (s, g) {
            _ if s == g => {}
            (Action::RegMove(a), Action::RegMove(b)) if same_move(a, b) => {
                for (x, y) in [(a.src, b.src), (a.dst, b.dst)] {
                    if x != y {
                        renamed.push(format!("{:#010x} as {:#010x}", x.0, y.0));
                    }
                }
            }
            _ => diffs.push(format!("action {}: sent {s}, reported {g}", i + 1)),
        }
    }
    if !renamed.is_empty() {
        notes.push(format!(
            "move operands named by their Nicira (NXM) headers instead of the OXM headers sent \
             ({}): the same fields, OVS encodes NXAST_REG_MOVE operands in NXM form when one exists",
            renamed.join(", ")
        ));
    }
}

/// Whether two field names denote the same field: the same name in OVS's
/// vocabulary (which prefers the NXM name of a field that has both an NXM
/// and an OXM header) and the same width.
fn same_field(a: FieldRef, b: FieldRef) -> bool {
    a.bits() == b.bits() && SubfieldName(a.id()).to_string() == SubfieldName(b.id()).to_string()
}

/// Whether two moves copy the same bits between the same fields, whatever
/// headers name the fields.
fn same_move(a: &FieldMove, b: &FieldMove) -> bool {
    (a.n_bits, a.src_ofs, a.dst_ofs) == (b.n_bits, b.src_ofs, b.dst_ofs)
        && same_field(a.src, b.src)
        && same_field(a.dst, b.dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> (Endpoint, Endpoint) {
        let vm = |n: u8| Endpoint {
            port: u32::from(n),
            mac: [2, 0, 0, 0, 0, n],
            ip: Ipv4Addr::new(10, 0, 0, n),
        };
        (vm(1), vm(2))
    }

    fn stats_of(fm: &FlowMod) -> FlowStats {
        FlowStats {
            table_id: fm.table_id,
            duration_sec: 1,
            duration_nsec: 0,
            priority: fm.priority,
            idle_timeout: fm.idle_timeout,
            hard_timeout: fm.hard_timeout,
            flags: fm.flags,
            cookie: fm.cookie,
            packet_count: 0,
            byte_count: 0,
            match_: fm.match_.clone(),
            instructions: fm.instructions.clone(),
        }
    }

    #[test]
    fn the_pipeline_prints_as_ovs_ofctl_would_take_it() {
        let (a, b) = endpoints();
        let lines: Vec<String> = pipeline(a, b).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "ADD cookie:0x1215000000000000 priority=100,in_port=1 \
                 actions=write_metadata:0x7/0xffff,goto_table:1",
                "ADD table:1 cookie:0x1215000000000001 \
                 priority=200,arp,metadata=0x7/0xffff,in_port=1,dl_vlan=10,arp_tpa=10.0.0.2,arp_op=1 \
                 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:02:00:00:00:00:02->eth_src,\
                 set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],\
                 move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:02:00:00:00:00:02->arp_sha,\
                 set_field:10.0.0.2->arp_spa,IN_PORT,goto_table:2",
                "ADD table:2 cookie:0x1215000000000002 \
                 priority=10,metadata=0x7/0xffff,dl_dst=02:00:00:00:00:02 actions=output:2",
            ]
        );
    }

    #[test]
    fn an_identical_flow_needs_no_notes() {
        let (a, b) = endpoints();
        for fm in pipeline(a, b) {
            assert_eq!(compare(&fm, &stats_of(&fm)), Ok(Normalised::default()));
        }
    }

    #[test]
    fn reordered_fields_and_instructions_are_noted_not_failed() {
        let (a, b) = endpoints();
        let fm = pipeline(a, b).remove(1);
        let mut got = stats_of(&fm);
        got.match_.fields.reverse();
        got.instructions.reverse();
        let notes = compare(&fm, &got).unwrap().notes;
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("match fields in OVS's order (metadata,arp_tpa"));
        assert_eq!(
            notes[1],
            "instructions in the order the pipeline executes them"
        );
    }

    #[test]
    fn moves_renamed_to_nxm_headers_are_noted_not_failed() {
        let (a, b) = endpoints();
        let fm = pipeline(a, b).remove(1);
        let mut got = stats_of(&fm);
        // What OVS 3.1 reports: NXM_OF_ETH_SRC/DST (class 0, fields 2 and 1).
        let nxm = |field: u8| FieldRef(ofp::oxm::oxm_header(0, field, false, 6));
        if let Instruction::ApplyActions(actions) = &mut got.instructions[0] {
            let Action::RegMove(m) = &mut actions[0] else {
                panic!("{}", actions[0])
            };
            (m.src, m.dst) = (nxm(2), nxm(1));
        }
        let notes = compare(&fm, &got).unwrap().notes;
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("(0x80000806 as 0x00000406, 0x80000606 as 0x00000206)"),
            "{notes:?}"
        );

        // A move between other fields is a difference, not a renaming.
        if let Instruction::ApplyActions(actions) = &mut got.instructions[0] {
            if let Action::RegMove(m) = &mut actions[0] {
                m.dst = FieldRef::new(FieldId::reg(0)).unwrap();
                m.n_bits = 32;
            }
        }
        assert_eq!(compare(&fm, &got).unwrap_err().len(), 1);
    }

    #[test]
    fn every_real_difference_is_reported() {
        let (a, b) = endpoints();
        let fm = pipeline(a, b).remove(1);
        let mut got = stats_of(&fm);
        got.priority = 201;
        got.match_
            .set(OxmField::ArpTpa(Ipv4Addr::new(10, 0, 0, 3), None));
        got.match_.set(OxmField::EthSrc([2, 0, 0, 0, 0, 9], None));
        got.match_.fields.retain(|f| f.id() != FieldId::ARP_OP);
        if let Instruction::ApplyActions(actions) = &mut got.instructions[0] {
            actions[7] = Action::output(3);
        }
        got.instructions.pop();
        let diffs = compare(&fm, &got).unwrap_err();
        assert_eq!(
            diffs,
            [
                "priority: sent 0xc8, reported 0xc9",
                "match field arp_op=1 is missing",
                "match field arp_tpa=10.0.0.2 came back as arp_tpa=10.0.0.3",
                "match field eth_src=02:00:00:00:00:09 was added",
                "action 8: sent IN_PORT, reported output:3",
                "instruction goto_table:2 is missing",
            ]
        );
    }
}
