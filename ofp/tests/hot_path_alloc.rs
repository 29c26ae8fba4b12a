//! The hot paths the benchmarks time allocate nothing: decoding a
//! PACKET_IN through its view and parsing the ARP frame it carries, and
//! encoding a FLOW_MOD or a PACKET_OUT into a buffer that already has room.
//!
//! This file holds a single test on purpose: the allocator counts every
//! thread, so a second test running alongside would show up in the counts.

#![allow(clippy::unwrap_used)]

#[path = "fixtures/hot_path.rs"]
mod hot_path;

use ofp::message::{PacketInView, PacketOutRef, NO_BUFFER};
use ofp::packet::ArpRepr;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Runs `f` a few times and returns how many allocations and reallocations
/// it made.
fn allocations(mut f: impl FnMut()) -> (usize, usize) {
    let region = Region::new(GLOBAL);
    for _ in 0..16 {
        f();
    }
    let s = region.change();
    (s.allocations, s.reallocations)
}

#[test]
fn hot_paths_do_not_allocate() {
    let wire = hot_path::packet_in_wire();
    let decode = allocations(|| {
        let v = PacketInView::new_checked(black_box(&wire)).unwrap();
        let arp = ArpRepr::parse_frame(v.data()).unwrap();
        black_box((v.in_port(), arp.tpa, arp.sha));
    });
    assert_eq!(decode, (0, 0), "PACKET_IN view + ARP parse");

    let fm = hot_path::flow_mod();
    let mut buf = Vec::with_capacity(4096);
    let flow_mod = allocations(|| {
        buf.clear();
        black_box(&fm).encode(1, &mut buf);
    });
    assert_eq!(flow_mod, (0, 0), "FLOW_MOD encode");
    assert!(!buf.is_empty());

    let actions = hot_path::packet_out_actions();
    let frame = hot_path::arp_request(hot_path::MIN_FRAME);
    let po = PacketOutRef {
        buffer_id: NO_BUFFER,
        in_port: hot_path::IN_PORT,
        actions: &actions,
        data: &frame,
    };
    let packet_out = allocations(|| {
        buf.clear();
        black_box(&po).encode(1, &mut buf);
    });
    assert_eq!(packet_out, (0, 0), "PACKET_OUT encode");

    // The counter does see allocations: the owned decode makes some.
    let owned = allocations(|| {
        black_box(ofp::OfpMessage::parse(black_box(&wire)).unwrap());
    });
    assert!(owned.0 > 0, "the allocation counter saw nothing at all");
}
