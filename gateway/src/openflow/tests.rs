#![allow(clippy::unwrap_used)]

use super::*;
use ofp::message::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn the_tap_counts_what_cannot_be_decoded_and_passes_every_byte() {
    let (mut switch, gateway) = tokio::io::duplex(1 << 16);
    let counted = Arc::new(AtomicU64::new(0));
    let mut tap = Tap::new(gateway, counted.clone(), SharedDrops::default());
    let mut wire = OfpMessage::new(1, Message::EchoRequest(b"hi".to_vec())).to_bytes();
    // A FEATURES_REPLY with no body: framed, but not a message.
    wire.extend_from_slice(&[4, 6, 0, 8, 0, 0, 0, 2]);
    wire.extend(OfpMessage::new(3, Message::BarrierReply).to_bytes());
    // Sent in two pieces that cut a message in half.
    switch.write_all(&wire[..5]).await.unwrap();
    switch.write_all(&wire[5..]).await.unwrap();
    let mut got = vec![0; wire.len()];
    tap.read_exact(&mut got).await.unwrap();
    assert_eq!(got, wire);
    assert_eq!(counted.load(Ordering::Relaxed), 1);
    // A length below the header's cannot be framed: counted once, and the
    // stream is left to the session to close.
    switch
        .write_all(&[4, 2, 0, 4, 0, 0, 0, 9, 1, 2])
        .await
        .unwrap();
    let mut rest = [0; 10];
    tap.read_exact(&mut rest).await.unwrap();
    assert_eq!(counted.load(Ordering::Relaxed), 2);
}

fn stats(priority: u16, fields: Vec<OxmField>, cookie: u64, packets: u64) -> FlowStats {
    FlowStats {
        table_id: TABLE,
        duration_sec: 1,
        duration_nsec: 0,
        priority,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        cookie,
        packet_count: packets,
        byte_count: packets * 100,
        match_: ofp::oxm::Match { fields },
        instructions: Vec::new(),
    }
}

fn flow_reply(xid: u32, more: bool, flows: Vec<FlowStats>) -> Vec<u8> {
    let mut reply = ofp::multipart::MultipartReply::new(MultipartReplyBody::Flow(flows));
    if more {
        reply.flags = 1;
    }
    OfpMessage::new(xid, Message::MultipartReply(reply)).to_bytes()
}

#[tokio::test]
async fn the_tap_reads_the_drop_flows_counters_from_whole_dumps() {
    let (mut switch, gateway) = tokio::io::duplex(1 << 16);
    let drops = SharedDrops::default();
    let mut tap = Tap::new(gateway, Arc::default(), drops.clone());
    let ours = iris_controller::switch_state::COOKIE_TAG | 1;
    let mut wire = flow_reply(
        7,
        true,
        vec![
            stats(PRIORITY_PORT_DROP, vec![OxmField::InPort(1)], ours, 3),
            // Forwarding flows and flows of others do not count.
            stats(200, vec![OxmField::InPort(1)], ours, 50),
            stats(PRIORITY_PORT_DROP, vec![OxmField::InPort(5)], 0x1234, 9),
        ],
    );
    let first_part = wire.len();
    wire.extend(flow_reply(
        7,
        false,
        vec![
            stats(PRIORITY_PORT_DROP, vec![OxmField::InPort(2)], ours, 4),
            stats(PRIORITY_DROP, vec![], ours, 2),
        ],
    ));
    switch.write_all(&wire[..first_part]).await.unwrap();
    let mut got = vec![0; first_part];
    tap.read_exact(&mut got).await.unwrap();
    assert_eq!(
        *drops.lock().unwrap(),
        None,
        "not before the dump's last part"
    );
    switch.write_all(&wire[first_part..]).await.unwrap();
    let mut got = vec![0; wire.len() - first_part];
    tap.read_exact(&mut got).await.unwrap();
    assert_eq!(
        drops.lock().unwrap().take(),
        Some(Drops {
            by_port: BTreeMap::from([(1, 3), (2, 4)]),
            other: 2,
        })
    );
}

#[test]
fn the_mgmt_socket_is_in_the_run_directory() {
    assert_eq!(
        mgmt_socket("/var/run/openvswitch", "br-gw"),
        PathBuf::from("/var/run/openvswitch/br-gw.mgmt")
    );
}
