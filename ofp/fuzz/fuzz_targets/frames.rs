//! The zero-copy paths: the stream framer, the PACKET_IN view and the
//! Ethernet / ARP parsers never panic, agree with the owned decoder, and
//! what they accept re-emits to the bytes they read. The Ethernet checks run
//! on the whole input and on every PACKET_IN's frame, so the OpenFlow seeds
//! reach the ARP parser too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ofp::framing::Framer;
use ofp::message::{FrameSummary, Message, PacketInView};
use ofp::packet::{ArpRepr, EthernetFrame, EthernetRepr};
use ofp::OfpMessage;

fuzz_target!(|data: &[u8]| {
    frame_stream(data);
    ethernet(data);
});

/// Feeds `data` to a framer in two pieces split where its first byte says,
/// and checks every message it yields.
fn frame_stream(data: &[u8]) {
    let Some(&cut) = data.first() else { return };
    let (a, b) = data.split_at(usize::from(cut).min(data.len()));
    let mut framer = Framer::default();
    let mut framed = 0;
    for piece in [a, b] {
        framer.extend(piece);
        loop {
            match framer.next_message() {
                Ok(Some(msg)) => {
                    framed += msg.len();
                    packet_in(msg);
                }
                Ok(None) => break,
                // Out of sync: the stream is closed, nothing more to check.
                Err(_) => return,
            }
        }
    }
    assert_eq!(
        framed + framer.pending(),
        data.len(),
        "the framer lost bytes"
    );
}

/// The view accepts every PACKET_IN the owned decoder accepts and reads the
/// same values from it.
fn packet_in(msg: &[u8]) {
    let view = PacketInView::new_checked(msg);
    if let Ok(v) = &view {
        let _ = (
            v.xid(),
            v.buffer_id(),
            v.total_len(),
            v.reason(),
            v.table_id(),
        );
        let _ = (v.cookie(), v.in_port(), v.oxms().count());
        let _ = FrameSummary(v.data()).to_string();
        ethernet(v.data());
    }
    let Ok(OfpMessage {
        xid,
        message: Message::PacketIn(p),
    }) = OfpMessage::parse(msg)
    else {
        return;
    };
    let v = match view {
        Ok(v) => v,
        Err(e) => panic!("the view rejects a PACKET_IN the decoder accepts: {e}"),
    };
    assert_eq!(v.xid(), xid);
    assert_eq!(
        (
            v.buffer_id(),
            v.total_len(),
            v.reason(),
            v.table_id(),
            v.cookie()
        ),
        (p.buffer_id, p.total_len, p.reason, p.table_id, p.cookie)
    );
    assert_eq!(v.in_port(), p.match_.lookup().in_port());
    assert_eq!(v.data(), p.data.as_slice());
    assert_eq!(v.to_packet_in().as_ref(), Ok(&p));
}

/// `data` as an Ethernet frame: the header and an ARP body re-emit to the
/// exact bytes they were read from.
fn ethernet(data: &[u8]) {
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return;
    };
    let _ = (eth.dst(), eth.src(), eth.vlan(), eth.payload().len());
    let repr = EthernetRepr::parse(&eth);
    let mut out = Vec::new();
    repr.emit(&mut out);
    assert_eq!(out.as_slice(), &data[..repr.header_len()]);

    let Ok(arp) = ArpRepr::parse_frame(data) else {
        return;
    };
    let _ = arp.to_string();
    out.clear();
    arp.emit(&mut out);
    assert_eq!(out.len(), arp.frame_len());
    assert_eq!(out.as_slice(), &data[..arp.frame_len()]);
    assert_eq!(ArpRepr::parse_frame(&out).as_ref(), Ok(&arp));
}
