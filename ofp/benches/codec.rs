//! The codec's hot paths, as the controller drives them: decoding a
//! PACKET_IN that carries an ARP request, and encoding a FLOW_MOD and a
//! PACKET_OUT into one reused send buffer. `docs/benchmarks.md` records the
//! figures and the targets (decode ≤ 100 ns, each encode ≤ 150 ns).

// Benchmark fixtures are built from constants; a failure is a bug in the bench.
#![allow(clippy::unwrap_used)]

#[path = "../tests/fixtures/hot_path.rs"]
mod hot_path;

use criterion::{criterion_group, criterion_main, Criterion};
use hot_path::{ARP_TARGET, IN_PORT, MIN_FRAME};
use ofp::message::{Message, PacketInView, PacketOutRef, NO_BUFFER};
use ofp::packet::ArpRepr;
use ofp::OfpMessage;
use std::hint::black_box;

fn decode_packet_in(c: &mut Criterion) {
    let wire = hot_path::packet_in_wire();
    // What is timed must be right: the view sees the port and the ARP target.
    let v = PacketInView::new_checked(&wire).unwrap();
    assert_eq!(v.in_port(), Some(IN_PORT));
    assert_eq!(v.data().len(), MIN_FRAME);
    assert_eq!(ArpRepr::parse_frame(v.data()).unwrap().tpa, ARP_TARGET);

    let mut g = c.benchmark_group("decode_packet_in_arp60");
    g.bench_function("view", |b| {
        b.iter(|| {
            let v = PacketInView::new_checked(black_box(&wire)).unwrap();
            let arp = ArpRepr::parse_frame(v.data()).unwrap();
            (v.in_port(), arp.tpa, arp.sha)
        })
    });
    g.bench_function("owned", |b| {
        b.iter(|| {
            let m = OfpMessage::parse(black_box(&wire)).unwrap();
            let Message::PacketIn(p) = m.message else {
                unreachable!("the fixture is a PACKET_IN")
            };
            let arp = ArpRepr::parse_frame(&p.data).unwrap();
            (p.match_.lookup().in_port(), arp.tpa, arp.sha)
        })
    });
    g.finish();
}

fn encode_flow_mod(c: &mut Criterion) {
    let fm = hot_path::flow_mod();
    let mut buf = Vec::with_capacity(256);
    fm.encode(1, &mut buf);
    assert_eq!(
        OfpMessage::parse(&buf).unwrap(),
        OfpMessage::new(1, Message::FlowMod(fm.clone()))
    );
    c.bench_function("encode_flow_mod_4oxm_2inst", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&fm).encode(1, &mut buf);
            black_box(buf.len())
        })
    });
}

fn encode_packet_out(c: &mut Criterion) {
    let actions = hot_path::packet_out_actions();
    let mut g = c.benchmark_group("encode_packet_out");
    for len in [42, MIN_FRAME] {
        let frame = hot_path::arp_request(len);
        let po = PacketOutRef {
            buffer_id: NO_BUFFER,
            in_port: IN_PORT,
            actions: &actions,
            data: &frame,
        };
        let mut buf = Vec::with_capacity(256);
        po.encode(1, &mut buf);
        let Message::PacketOut(back) = OfpMessage::parse(&buf).unwrap().message else {
            panic!("a PACKET_OUT must decode as one")
        };
        assert_eq!(
            (back.in_port, back.data.as_slice()),
            (IN_PORT, frame.as_slice())
        );
        g.bench_function(format!("frame{len}"), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&po).encode(1, &mut buf);
                black_box(buf.len())
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    decode_packet_in,
    encode_flow_mod,
    encode_packet_out
);
criterion_main!(benches);
