//! Flow-level conformance against third-party encodings: every FLOW_MOD in
//! the Ryu/os-ken corpus (LINC of_protocol, OVS libofproto and ovs-ofctl
//! output) and the OVS `ofp-print` corpus must decode with every byte used,
//! re-encode byte for byte, and print as `ovs-ofctl` prints it. The
//! field-by-field comparison with Ryu's decodings is `tests/conformance.rs`.

// Helpers outside #[test] functions read the corpus; a missing or broken
// corpus file should stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    corpus_dir, decode, encode, ovs_actions_token, ovs_match_token, unhex, FLOW_MOD_FIXED,
};
use ofp::action::{Action, FieldMove, FieldRef};
use ofp::codec::Reader;
use ofp::instruction::{Instruction, InstructionList};
use ofp::oxm::{FieldId, Match, OxmField};
use std::net::Ipv4Addr;

/// `ovs-ofctl ofp-print` (Open vSwitch 3.1) of the Ryu corpus's FLOW_MODs.
const OVS_RENDERINGS: &str = include_str!("data/ovs-ofctl-print.tsv");

fn read_corpus(name: &str) -> Vec<u8> {
    let path = corpus_dir().join("ryu/of13").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every OFPT_FLOW_MOD (header type 14) in the Ryu corpus, by file name.
fn ryu_flow_mods() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(corpus_dir().join("ryu/of13")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "packet") {
            let wire = std::fs::read(&path).unwrap();
            if wire.len() >= FLOW_MOD_FIXED && wire[0] == 4 && wire[1] == 14 {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                out.push((name, wire));
            }
        }
    }
    out.sort();
    assert_eq!(out.len(), 25, "the corpus holds 25 OF1.3 FLOW_MODs");
    out
}

/// The FLOW_MODs in OVS's ofp-print corpus: (title, wire, expected stdout).
fn ovs_flow_mods() -> Vec<(String, Vec<u8>, String)> {
    let text = std::fs::read_to_string(corpus_dir().join("ovs/ofp-print-of13.txt")).unwrap();
    let mut out = Vec::new();
    for rec in text.split("\n%%\n") {
        let title = rec
            .lines()
            .find_map(|l| l.strip_prefix("=== "))
            .unwrap_or("");
        let Some(hex) = rec.lines().find_map(|l| l.strip_prefix("hex: ")) else {
            continue;
        };
        let wire = unhex(hex);
        if wire.get(1) == Some(&14) {
            let stdout = rec.split("--- stdout\n").nth(1).unwrap_or("").to_owned();
            out.push((title.to_owned(), wire, stdout));
        }
    }
    assert_eq!(out.len(), 2, "the OVS corpus has two OF1.3 FLOW_MODs");
    out
}

fn decode_file(name: &str) -> (Match, Vec<Instruction>) {
    decode(&read_corpus(name)[FLOW_MOD_FIXED..]).unwrap()
}

#[test]
fn every_ryu_flow_mod_round_trips_byte_for_byte() {
    for (name, wire) in ryu_flow_mods() {
        let body = &wire[FLOW_MOD_FIXED..];
        let (m, ins) = decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(encode(&m, &ins), body, "{name}: re-encoding differs");
    }
}

#[test]
fn every_ovs_flow_mod_round_trips_and_prints_as_ovs_expects() {
    for (title, wire, stdout) in ovs_flow_mods() {
        let body = &wire[FLOW_MOD_FIXED..];
        let (m, ins) = decode(body).unwrap_or_else(|e| panic!("{title}: {e}"));
        assert_eq!(encode(&m, &ins), body, "{title}: re-encoding differs");
        let ours = format!(" {}", InstructionList(&ins));
        assert!(stdout.contains(&ours), "{title}: {ours} not in {stdout}");
        let m = m.to_string();
        assert!(
            m.is_empty() || stdout.contains(&format!(",{m} ")),
            "{title}: {m}"
        );
    }
    let (_, wire, _) = &ovs_flow_mods()[0];
    let (m, _) = decode(&wire[FLOW_MOD_FIXED..]).unwrap();
    assert_eq!(
        m.to_string(),
        "arp,in_port=1,vlan_tci=0x0000/0x1fff,dl_src=50:54:00:00:00:06,\
         dl_dst=50:54:00:00:00:05,arp_spa=192.168.0.2,arp_tpa=192.168.0.1,arp_op=2"
    );
}

#[test]
fn printing_matches_ovs_ofctl_on_the_ryu_corpus() {
    let mut compared_actions = 0;
    for line in OVS_RENDERINGS.lines().filter(|l| !l.starts_with('#')) {
        let (file, ovs) = line.split_once('\t').unwrap();
        let (m, ins) = decode_file(file);
        assert_eq!(m.to_string(), ovs_match_token(ovs), "{file}: match");
        let ours = InstructionList(&ins).to_string();
        let theirs = ovs_actions_token(ovs);
        // learn, ct, nat and sample stay raw here; OVS decodes them.
        if !ours.contains("experimenter(") {
            assert_eq!(ours, theirs, "{file}: actions");
            compared_actions += 1;
        }
    }
    assert!(
        compared_actions >= 15,
        "only {compared_actions} action lists compared"
    );
}

#[test]
fn libofproto_flow_mod_decodes_to_the_expected_values() {
    let (m, ins) = decode_file("libofproto-OFP13-flow_mod.packet");
    let l = m.lookup();
    assert_eq!(l.in_port(), Some(0xabcd));
    assert_eq!(
        l.eth_dst(),
        Some(([0xaa, 0xbb, 0xcc, 0x99, 0x88, 0x77], None))
    );
    assert_eq!(l.eth_type(), Some(0x0800));
    assert_eq!(l.vlan_vid(), Some(999));
    assert_eq!(l.ipv4_dst(), Some((Ipv4Addr::new(192, 168, 2, 1), None)));
    assert_eq!(l.tun_id(), Some((50000, None)));
    assert_eq!(
        l.tun_ipv4_src(),
        Some((Ipv4Addr::new(192, 168, 2, 3), None))
    );
    assert_eq!(
        l.tun_ipv4_dst(),
        Some((Ipv4Addr::new(192, 168, 2, 4), None))
    );
    let Instruction::ApplyActions(actions) = &ins[0] else {
        panic!("{ins:?}")
    };
    assert_eq!(actions[0], Action::PopVlan);
    assert_eq!(
        actions[1],
        Action::SetField(OxmField::Ipv4Dst(Ipv4Addr::new(192, 168, 2, 9), None))
    );
    // NXAST_LEARN (subtype 16) is kept raw, 96 bytes in all.
    let Action::Experimenter {
        experimenter: 0x2320,
        data,
    } = &actions[2]
    else {
        panic!()
    };
    assert_eq!((&data[..2], data.len()), (&[0u8, 16][..], 96 - 8));
    assert_eq!(ins[1], Instruction::GotoTable(100));
}

#[test]
fn nicira_register_flow_mods_decode_to_the_expected_values() {
    let (m, ins) = decode_file("ovs-ofctl-of13-match_move_nx_register.packet");
    assert_eq!(
        m.fields,
        [
            OxmField::Reg(0, 0x1234, None),
            OxmField::Reg(5, 0xabcd, Some(0xffff))
        ]
    );
    let reg = |n| FieldRef::new(FieldId::reg(n)).unwrap();
    assert_eq!(
        ins,
        [Instruction::ApplyActions(vec![Action::RegMove(
            FieldMove {
                n_bits: 6,
                src_ofs: 10,
                dst_ofs: 0,
                src: reg(0),
                dst: reg(1),
            }
        )])]
    );
    let (_, ins) = decode_file("4-2-ofp_flow_mod.packet");
    let Instruction::WriteActions(a) = &ins[0] else {
        panic!("{ins:?}")
    };
    assert_eq!(a.len(), 18);
    assert_eq!(a[0], Action::SetField(OxmField::VlanVid(258, None)));
    assert_eq!(
        a[17],
        Action::Output {
            port: 6,
            max_len: 0xffff
        }
    );
}

/// The wire bytes of every single match, action and instruction in the corpus.
#[derive(Default)]
struct Pieces {
    matches: Vec<Vec<u8>>,
    actions: Vec<Vec<u8>>,
    instructions: Vec<Vec<u8>>,
}

fn corpus_pieces() -> Pieces {
    let Pieces {
        mut matches,
        mut actions,
        mut instructions,
    } = Pieces::default();
    let bodies = ryu_flow_mods()
        .into_iter()
        .map(|(_, w)| w)
        .chain(ovs_flow_mods().into_iter().map(|(_, w, _)| w));
    for wire in bodies {
        let (m, ins) = decode(&wire[FLOW_MOD_FIXED..]).unwrap();
        let mut b = Vec::new();
        m.emit(&mut b);
        matches.push(b);
        for i in &ins {
            let mut b = Vec::new();
            i.emit(&mut b);
            instructions.push(b);
            if let Instruction::ApplyActions(acts) | Instruction::WriteActions(acts) = i {
                for a in acts {
                    let mut b = Vec::new();
                    a.emit(&mut b);
                    actions.push(b);
                }
            }
        }
    }
    Pieces {
        matches,
        actions,
        instructions,
    }
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let Pieces {
        matches,
        actions,
        instructions,
    } = corpus_pieces();
    assert!(actions.len() > 40 && instructions.len() > 25);
    for bytes in &matches {
        for n in 0..bytes.len() {
            assert!(
                Match::parse(&mut Reader::new(&bytes[..n], "t")).is_err(),
                "{n} of {bytes:02x?}"
            );
        }
    }
    for bytes in &actions {
        for n in 0..bytes.len() {
            assert!(
                Action::parse(&mut Reader::new(&bytes[..n], "t")).is_err(),
                "{n} of {bytes:02x?}"
            );
        }
    }
    for bytes in &instructions {
        for n in 0..bytes.len() {
            let r = Instruction::parse(&mut Reader::new(&bytes[..n], "t"));
            assert!(r.is_err(), "{n} of {bytes:02x?}");
        }
    }
}

#[test]
fn corrupted_corpus_bytes_never_panic_and_what_decodes_re_encodes_stably() {
    for (name, wire) in ryu_flow_mods() {
        let body = &wire[FLOW_MOD_FIXED..];
        for pos in 0..body.len() {
            for val in [
                0x00,
                0xff,
                body[pos] ^ 0x01,
                body[pos] ^ 0x80,
                body[pos] ^ 0x08,
            ] {
                let mut b = body.to_vec();
                b[pos] = val;
                if let Ok((m, ins)) = decode(&b) {
                    let once = encode(&m, &ins);
                    let (m2, ins2) = decode(&once).unwrap_or_else(|e| panic!("{name}@{pos}: {e}"));
                    assert_eq!((&m2, &ins2), (&m, &ins), "{name}@{pos}={val:#x}");
                    assert_eq!(encode(&m2, &ins2), once);
                    // Printing must not panic on anything that decodes.
                    let _ = format!("{m} {}", InstructionList(&ins));
                }
            }
        }
    }
}

/// An `ofp_flow_stats` entry around a FLOW_MOD's match and instructions
/// (the same bytes in both), with every fixed field set to something
/// recognisable.
fn flow_stats_entry(match_and_instructions: &[u8], n: u8) -> Vec<u8> {
    let len = u16::try_from(48 + match_and_instructions.len()).unwrap();
    let mut e = Vec::new();
    e.extend(len.to_be_bytes());
    e.extend([n, 0]); // table, pad
    e.extend(7u32.to_be_bytes()); // duration_sec
    e.extend(9u32.to_be_bytes()); // duration_nsec
    e.extend((1000 + u16::from(n)).to_be_bytes()); // priority
    e.extend([0, 10, 0, 20, 0, 1, 0, 0, 0, 0]); // timeouts, flags, pad
    e.extend((0x4952_0000_0000_0000 | u64::from(n)).to_be_bytes());
    e.extend(3u64.to_be_bytes());
    e.extend(180u64.to_be_bytes());
    e.extend(match_and_instructions);
    e
}

#[test]
fn a_flow_dump_of_the_corpus_flows_reads_the_same_through_views() {
    use ofp::message::{Message, OfpMessage};
    use ofp::multipart::{FlowStatsReplyView, MultipartReplyBody};
    let bodies: Vec<Vec<u8>> = ryu_flow_mods()
        .into_iter()
        .map(|(_, w)| w)
        .chain(ovs_flow_mods().into_iter().map(|(_, w, _)| w))
        .map(|w| w[FLOW_MOD_FIXED..].to_vec())
        .collect();
    let mut msg = vec![4, 19, 0, 0, 0, 0, 0, 0x2a, 0, 1, 0, 1, 0, 0, 0, 0];
    for (n, b) in bodies.iter().enumerate() {
        msg.extend(flow_stats_entry(b, u8::try_from(n).unwrap()));
    }
    let len = u16::try_from(msg.len()).unwrap();
    msg[2..4].copy_from_slice(&len.to_be_bytes());

    let Message::MultipartReply(owned) = OfpMessage::parse(&msg).unwrap().message else {
        panic!("not a multipart reply");
    };
    let MultipartReplyBody::Flow(owned) = owned.body else {
        panic!("not a flow reply");
    };
    assert_eq!(owned.len(), bodies.len());
    let view = FlowStatsReplyView::new_checked(&msg).unwrap();
    assert!(view.more());
    assert_eq!(view.xid(), 0x2a);
    let views: Vec<_> = view.entries().map(Result::unwrap).collect();
    assert_eq!(views.len(), owned.len());
    for ((v, o), body) in views.iter().zip(&owned).zip(&bodies) {
        assert_eq!(v.to_flow_stats().unwrap(), *o);
        assert_eq!(v.match_().unwrap(), o.match_);
        assert_eq!(
            (v.table_id(), v.priority(), v.cookie(), v.packet_count()),
            (o.table_id, o.priority, o.cookie, o.packet_count)
        );
        assert!(body.ends_with(v.instruction_bytes()));
        assert_eq!(
            ofp::instruction::parse_instructions(Reader::new(v.instruction_bytes(), "i")).unwrap(),
            o.instructions
        );
    }

    // A cut entry is an error where the owned decode errs too, and ends
    // the iteration.
    let mut cut = msg.clone();
    let at = 16 + 48 + 2;
    cut[at..at + 2].copy_from_slice(&0xfff0u16.to_be_bytes());
    assert!(OfpMessage::parse(&cut).is_err());
    let entries: Vec<_> = FlowStatsReplyView::new_checked(&cut)
        .unwrap()
        .entries()
        .collect();
    assert!(matches!(entries.as_slice(), [Err(_)]));
    assert!(FlowStatsReplyView::new_checked(&msg[..msg.len() - 1]).is_err());
}
