//! Field values of the Open vSwitch `ofp-print` corpus checked by hand
//! against OVS's expected text, and our `Display` output compared with the
//! lines `ovs-ofctl` prints where Iris renders them the same way.

#![allow(clippy::unwrap_used)]

mod common;
use common::ovs_case;
use ofp::message::*;
use ofp::multipart::*;

fn decode(title: &str) -> (OfpMessage, String) {
    let c = ovs_case(title);
    (OfpMessage::parse(&c.wire).unwrap(), c.stdout)
}

fn reply(title: &str) -> (MultipartReply, String) {
    match decode(title) {
        (
            OfpMessage {
                message: Message::MultipartReply(r),
                ..
            },
            out,
        ) => (r, out),
        (m, _) => panic!("{title}: not a multipart reply: {m:?}"),
    }
}

fn request(title: &str) -> (MultipartRequestBody, String) {
    match decode(title) {
        (
            OfpMessage {
                message: Message::MultipartRequest(r),
                ..
            },
            out,
        ) => (r.body, out),
        (m, _) => panic!("{title}: not a multipart request: {m:?}"),
    }
}

/// Asserts that OVS's expected output contains `ours`, line for line.
fn ovs_prints(ovs: &str, ours: impl std::fmt::Display) {
    let ours = ours.to_string();
    assert!(
        ovs.contains(&ours),
        "OVS printed:\n{ovs}\nwe printed:\n{ours}"
    );
}

#[test]
fn features_reply() {
    let (m, ovs) = decode("OFPT_FEATURES_REPLY - with auxiliary_id - OF1.3");
    let Message::FeaturesReply(f) = m.message else {
        panic!()
    };
    assert_eq!(m.xid, 1);
    assert_eq!(
        (f.datapath_id, f.n_tables, f.n_buffers, f.auxiliary_id),
        (0x5054_0000_0001, 255, 256, 1)
    );
    let caps = capabilities::FLOW_STATS
        | capabilities::TABLE_STATS
        | capabilities::PORT_STATS
        | capabilities::IP_REASM
        | capabilities::QUEUE_STATS
        | capabilities::PORT_BLOCKED;
    assert_eq!(f.capabilities & caps, caps);
    ovs_prints(
        &ovs,
        "dpid:0000505400000001\nn_tables:255, n_buffers:256, auxiliary_id:1",
    );
}

#[test]
fn port_mod_and_table_mod() {
    let (m, ovs) = decode("OFPT_PORT_MOD - OF1.3");
    let Message::PortMod(p) = m.message else {
        panic!()
    };
    assert_eq!(
        (m.xid, p.port_no, p.config, p.mask),
        (3, 3, port_config::PORT_DOWN, port_config::PORT_DOWN)
    );
    assert_eq!(p.hw_addr.to_string(), "50:54:00:00:00:01");
    ovs_prints(&ovs, p);
    let (m, ovs) = decode("OFPT_TABLE_MOD - OF1.3");
    let Message::TableMod(t) = m.message else {
        panic!()
    };
    assert_eq!(t.table_id, 2);
    ovs_prints(&ovs, t);
}

#[test]
fn aggregate_and_table_stats() {
    let (r, ovs) = reply("OFPST_AGGREGATE reply - OF1.3");
    let MultipartReplyBody::Aggregate(a) = r.body else {
        panic!()
    };
    assert_eq!(
        (a.packet_count, a.byte_count, a.flow_count),
        (121, 19279, 3)
    );
    ovs_prints(&ovs, a);

    let (r, ovs) = reply("OFPST_TABLE reply - OF1.3");
    let MultipartReplyBody::Table(t) = r.body else {
        panic!()
    };
    assert_eq!(t.len(), 2);
    assert_eq!(
        (
            t[0].table_id,
            t[0].active_count,
            t[0].lookup_count,
            t[0].matched_count
        ),
        (0, 11, 512, 256)
    );
    assert_eq!(
        (
            t[1].table_id,
            t[1].active_count,
            t[1].lookup_count,
            t[1].matched_count
        ),
        (1, 12, 513, 257)
    );
    for s in &t {
        ovs_prints(&ovs, s);
    }
    let (body, _) = request("OFPST_TABLE request - OF1.3");
    assert_eq!(body, MultipartRequestBody::Table);
}

#[test]
fn port_stats() {
    let (body, _) = request("OFPST_PORT request - 1.3");
    assert_eq!(
        body,
        MultipartRequestBody::PortStats {
            port_no: port_no::ANY
        }
    );
    let (r, ovs) = reply("OFPST_PORT reply - OF1.3");
    let MultipartReplyBody::PortStats(p) = r.body else {
        panic!()
    };
    assert_eq!(p.len(), 3);
    assert_eq!(
        (p[0].port_no, p[0].rx_packets, p[0].rx_bytes),
        (2, 103_766, 39_651_480)
    );
    assert_eq!((p[0].tx_packets, p[0].tx_bytes), (136, 11512));
    assert_eq!((p[0].duration_sec, p[0].duration_nsec), (1, 1_000_000));
    assert_eq!(
        (p[1].port_no, p[1].tx_packets, p[1].tx_bytes),
        (port_no::LOCAL, 40236, 18_757_188)
    );
    assert_eq!(p[1].duration_sec, u32::MAX);
    for s in &p {
        ovs_prints(&ovs, s);
    }
}

#[test]
fn queue_stats() {
    let (body, _) = request("OFPST_QUEUE request - OF1.3");
    assert_eq!(
        body,
        MultipartRequestBody::Queue(QueueStatsRequest {
            port_no: port_no::ANY,
            queue_id: QUEUE_ALL
        })
    );
    let (r, ovs) = reply("OFPST_QUEUE reply - OF1.3");
    let MultipartReplyBody::Queue(q) = r.body else {
        panic!()
    };
    assert_eq!(q.len(), 6);
    assert_eq!(
        (q[0].port_no, q[0].queue_id, q[0].tx_bytes, q[0].tx_packets),
        (3, 1, 302, 1)
    );
    assert_eq!(
        (q[2].port_no, q[2].tx_bytes, q[2].tx_packets),
        (2, 2100, 20)
    );
    for s in &q {
        ovs_prints(&ovs, s);
    }
}

#[test]
fn group_stats() {
    let (r, ovs) = reply("OFPST_GROUP reply - OF1.3");
    let MultipartReplyBody::Group(g) = r.body else {
        panic!()
    };
    assert_eq!(g.len(), 2);
    assert_eq!(
        (
            g[0].group_id,
            g[0].ref_count,
            g[0].packet_count,
            g[0].byte_count
        ),
        (2_271_560_481, 4, 34952, 7_829_367)
    );
    assert_eq!(g[0].bucket_stats.len(), 3);
    assert_eq!(
        g[0].bucket_stats[2],
        Counter {
            packet_count: 26214,
            byte_count: 3_355_443
        }
    );
    assert_eq!((g[1].group_id, g[1].bucket_stats.len()), (5, 2));
    for s in &g {
        ovs_prints(&ovs, s);
    }
}

#[test]
fn meters() {
    let (m, ovs) = decode("OFPT_METER_MOD request - OF1.3");
    let Message::MeterMod(mm) = m.message else {
        panic!()
    };
    assert_eq!((mm.command, mm.meter_id), (MeterModCommand::Add, 5));
    assert_eq!(
        mm.flags,
        meter_flags::KBPS | meter_flags::BURST | meter_flags::STATS
    );
    assert_eq!(
        mm.bands,
        vec![MeterBand::Drop {
            rate: 1024,
            burst_size: 128
        }]
    );
    ovs_prints(&ovs, &mm);

    assert_eq!(
        request("OFPST_METER request - OF1.3").0,
        MultipartRequestBody::Meter { meter_id: 1 }
    );
    assert_eq!(
        request("OFPST_METER_CONFIG request - OF1.3").0,
        MultipartRequestBody::MeterConfig { meter_id: 1 }
    );
    assert_eq!(
        request("OFPST_METER_FEATURES request - OF1.3").0,
        MultipartRequestBody::MeterFeatures
    );

    let (r, ovs) = reply("OFPST_METER_FEATURES reply - OF1.3");
    let MultipartReplyBody::MeterFeatures(f) = r.body else {
        panic!()
    };
    assert_eq!((f.max_meter, f.max_bands, f.max_color), (65536, 16, 2));
    ovs_prints(&ovs, f);

    let (r, ovs) = reply("OFPST_METER_CONFIG reply - OF1.3");
    let MultipartReplyBody::MeterConfig(c) = r.body else {
        panic!()
    };
    assert_eq!(c.len(), 2);
    assert_eq!(
        c[0].bands,
        vec![
            MeterBand::Drop {
                rate: 65536,
                burst_size: 1280
            },
            MeterBand::DscpRemark {
                rate: 1_048_576,
                burst_size: 61440,
                prec_level: 0
            }
        ]
    );
    assert_eq!(
        (c[1].meter_id, c[1].flags),
        (2, meter_flags::KBPS | meter_flags::STATS)
    );
    for s in &c {
        ovs_prints(&ovs, s);
    }

    let (r, ovs) = reply("OFPST_METER reply - OF1.3");
    let MultipartReplyBody::Meter(s) = r.body else {
        panic!()
    };
    assert_eq!(
        (
            s[0].meter_id,
            s[0].flow_count,
            s[0].packet_in_count,
            s[0].byte_in_count
        ),
        (1, 5, 4096, 143_360)
    );
    assert_eq!((s[0].duration_sec, s[0].duration_nsec), (394, 174_990_148));
    assert_eq!(
        s[0].band_stats[1],
        Counter {
            packet_count: 231,
            byte_count: 37934
        }
    );
    for m in &s {
        ovs_prints(&ovs, m);
    }
}

#[test]
fn table_features() {
    // OVS titles this a request, but the header type is a reply.
    let (r, ovs) = reply("OFPST_TABLE_FEATURES request - OF1.3");
    assert!(r.more());
    assert!(ovs.contains("flags=[more]"));
    let MultipartReplyBody::TableFeatures(t) = r.body else {
        panic!()
    };
    assert_eq!(t.len(), 1);
    let t = &t[0];
    assert_eq!(
        (t.table_id, t.name.to_string().as_str(), t.max_entries),
        (0, "table0", 1_000_000)
    );
    assert_eq!((t.metadata_match, t.metadata_write), (u64::MAX, u64::MAX));
    let next: Vec<u8> = (1..=253).collect();
    assert!(t.properties.contains(&TableFeatureProp::NextTables {
        miss: false,
        tables: next
    }));
    let instructions = t.properties.iter().find_map(|p| match p {
        TableFeatureProp::Instructions { miss: false, ids } => Some(ids),
        _ => None,
    });
    // apply_actions clear_actions write_actions write_metadata goto_table
    let types: Vec<u16> = instructions.unwrap().iter().map(|i| i.id_type).collect();
    assert_eq!(types, [1, 2, 3, 4, 5]);
    let matchable = t.properties.iter().find_map(|p| match p {
        TableFeatureProp::Match(ids) => Some(ids),
        _ => None,
    });
    // tun_id (NXM_NX_TUN_ID, 8 bytes) leads OVS's list.
    assert_eq!(
        matchable.unwrap()[0],
        OxmId {
            header: 0x8000_4c08,
            experimenter: None
        }
    );
    assert!(ovs.contains("next tables: 1-253"));
    assert!(t.to_string().contains("next tables: 1-253"));
}

#[test]
fn barrier_queue_config_async() {
    assert_eq!(
        decode("OFPT_BARRIER_REQUEST - OF1.3").0,
        OfpMessage::new(1, Message::BarrierRequest)
    );
    assert_eq!(
        decode("OFPT_BARRIER_REPLY - OF1.3").0,
        OfpMessage::new(1, Message::BarrierReply)
    );

    let (m, ovs) = decode("OFPT_QUEUE_GET_CONFIG_REPLY - OF1.3");
    let Message::QueueGetConfigReply(q) = m.message else {
        panic!()
    };
    assert_eq!(q.port, 1);
    assert_eq!(q.queues[0].queue_id, 21845);
    assert_eq!(
        q.queues[0].properties,
        vec![QueueProp::MinRate(500), QueueProp::MaxRate(750)]
    );
    assert_eq!(
        (q.queues[1].queue_id, q.queues[1].properties.len()),
        (17476, 0)
    );
    for queue in &q.queues {
        ovs_prints(&ovs, queue);
    }

    let (m, _) = decode("OFPT_SET_ASYNC - OF1.3");
    let Message::SetAsync(a) = m.message else {
        panic!()
    };
    // primary: PACKET_IN no_match invalid_ttl, PORT_STATUS add delete,
    // FLOW_REMOVED off; secondary adds action, modify, idle and hard.
    assert_eq!(a.packet_in_mask[0] & 0x7, 0b101);
    assert_eq!(a.packet_in_mask[1] & 0x7, 0b111);
    assert_eq!(a.port_status_mask, [0b011, 0b111]);
    assert_eq!(a.flow_removed_mask, [0, 0b011]);
}

#[test]
fn onf_experimenter_messages_stay_raw() {
    for (title, exp_type) in [
        ("OFP_ROLE_STATUS - primary, experimenter - OF1.3", 1911),
        ("ONFT_REQUESTFORWARD - inner OFPT_METER_MOD - OF1.3", 2350),
        ("FLOW_MONITOR_CANCEL", 1870),
        ("FLOW_MONITOR_PAUSED", 1871),
        ("FLOW_MONITOR_RESUMED", 1872),
    ] {
        let Message::Experimenter(e) = decode(title).0.message else {
            panic!("{title}")
        };
        assert_eq!(
            (e.experimenter, e.exp_type),
            (ofp::action::ONF_VENDOR_ID, exp_type),
            "{title}"
        );
    }
    // The request-forward carries the OVS METER_MOD case whole.
    let Message::Experimenter(e) = decode("ONFT_REQUESTFORWARD - inner OFPT_METER_MOD - OF1.3")
        .0
        .message
    else {
        panic!()
    };
    let inner = OfpMessage::parse(&e.data).unwrap();
    assert_eq!(inner, decode("OFPT_METER_MOD request - OF1.3").0);

    let (r, _) = reply("FLOW_MONITOR reply");
    let MultipartReplyBody::Experimenter(e) = r.body else {
        panic!()
    };
    assert_eq!(
        (e.experimenter, e.exp_type),
        (ofp::action::ONF_VENDOR_ID, 1870)
    );
}

/// Cases where Iris prints a whole message exactly as `ovs-ofctl ofp-print`
/// does. The others differ on purpose: unknown bits are shown in hex, ONF
/// experimenter messages stay raw, frames print without OVS's flow fields.
const PRINTED_LIKE_OVS: &[&str] = &[
    "OFPT_FLOW_REMOVED - OF1.3",
    "OFPT_FLOW_MOD - OF1.3 - flags - low verbosity",
    "OFPT_FLOW_MOD - OF1.3 - meter",
    "OFPT_PORT_MOD - OF1.3",
    "OFPT_TABLE_MOD - OF1.3",
    "OFPST_FLOW request - OF1.3",
    "OFPST_AGGREGATE request - OF1.3",
    "OFPST_AGGREGATE reply - OF1.3",
    "OFPST_TABLE request - OF1.3",
    "OFPST_TABLE reply - OF1.3",
    "OFPST_PORT request - 1.3",
    "OFPST_PORT reply - OF1.3",
    "OFPST_QUEUE request - OF1.3",
    "OFPST_QUEUE reply - OF1.3",
    "OFPST_GROUP reply - OF1.3",
    "OFPT_METER_MOD request - OF1.3",
    "OFPST_METER request - OF1.3",
    "OFPST_METER_CONFIG request - OF1.3",
    "OFPST_METER_FEATURES request - OF1.3",
    "OFPST_METER_FEATURES reply - OF1.3",
    "OFPST_METER_CONFIG reply - OF1.3",
    "OFPST_METER reply - OF1.3",
    "OFPT_BARRIER_REQUEST - OF1.3",
    "OFPT_BARRIER_REPLY - OF1.3",
];

#[test]
fn whole_messages_print_as_ovs_prints_them() {
    for title in PRINTED_LIKE_OVS {
        let (m, ovs) = decode(title);
        assert_eq!(m.to_string(), ovs.trim_end(), "{title}");
    }
}

#[test]
fn other_messages_print_their_header_line_like_ovs() {
    for title in [
        "OFPT_FEATURES_REPLY - OF1.3",
        "OFPT_PACKET_IN - OF1.3",
        "OFPST_TABLE_FEATURES request - OF1.3",
        "OFPT_QUEUE_GET_CONFIG_REPLY - OF1.3",
        "OFPT_SET_ASYNC - OF1.3",
    ] {
        let (m, ovs) = decode(title);
        let ours = m.to_string();
        assert_eq!(ours.lines().next(), ovs.lines().next(), "{title}");
    }
}

#[test]
fn packet_in_flow_removed_and_flow_mod_fields() {
    let (m, _) = decode("OFPT_PACKET_IN - OF1.3");
    let Message::PacketIn(p) = &m.message else {
        panic!()
    };
    assert_eq!(
        (p.cookie, p.total_len, p.buffer_id),
        (0x0102_0304_0506_0708, 42, 0xffff_ff00)
    );
    assert_eq!(
        (p.reason, p.table_id, p.data.len()),
        (PacketInReason::NoMatch, 0, 42)
    );
    // The zero-copy view agrees with the owned decoding.
    let wire = ovs_case("OFPT_PACKET_IN - OF1.3").wire;
    let v = PacketInView::new_checked(&wire).unwrap();
    assert_eq!(v.in_port(), Some(port_no::LOCAL));
    assert_eq!(
        (v.cookie(), v.total_len(), v.buffer_id()),
        (p.cookie, p.total_len, p.buffer_id)
    );
    assert_eq!(v.data(), p.data.as_slice());
    assert_eq!(v.to_packet_in().unwrap(), *p);

    let (m, _) = decode("OFPT_FLOW_REMOVED - OF1.3");
    let Message::FlowRemoved(r) = m.message else {
        panic!()
    };
    assert_eq!(
        (r.reason, r.table_id, r.cookie),
        (FlowRemovedReason::HardTimeout, 5, 0xfedc_ba98_7654_3210)
    );
    assert_eq!(
        (
            r.duration_sec,
            r.duration_nsec,
            r.idle_timeout,
            r.hard_timeout
        ),
        (1, 10_000_000, 60, 120)
    );
    assert_eq!((r.packet_count, r.byte_count), (1_234_567, 1_869_134_438));

    let (m, _) = decode("OFPT_FLOW_MOD - OF1.3 - flags - low verbosity");
    let Message::FlowMod(fm) = m.message else {
        panic!()
    };
    assert_eq!(
        (m.xid, fm.command, fm.table_id, fm.priority),
        (2, FlowModCommand::Add, 1, 65535)
    );
    assert_eq!(fm.flags, flow_mod_flags::ALL);
    assert_eq!(fm.instructions.len(), 1);
}
