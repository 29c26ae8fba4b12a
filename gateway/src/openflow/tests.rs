#![allow(clippy::unwrap_used)]

use super::*;
use ofp::message::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn the_tap_counts_what_cannot_be_decoded_and_passes_every_byte() {
    let (mut switch, gateway) = tokio::io::duplex(1 << 16);
    let counted = Arc::new(AtomicU64::new(0));
    let mut tap = Tap::new(gateway, counted.clone());
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

#[test]
fn the_mgmt_socket_is_in_the_run_directory() {
    assert_eq!(
        mgmt_socket("/var/run/openvswitch", "br-gw"),
        PathBuf::from("/var/run/openvswitch/br-gw.mgmt")
    );
}
