use super::*;
use ofp::packet::VlanTag;
use proptest::prelude::*;

const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 1, 5]);
const IP: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 5);

fn frame(mut arp: ArpRepr, tags: &[(u16, u16)]) -> Vec<u8> {
    arp.tags = tags
        .iter()
        .map(|&(tpid, tci)| VlanTag { tpid, tci })
        .collect();
    let mut buf = Vec::new();
    arp.emit(&mut buf);
    buf
}

#[test]
fn a_tagged_rarp_announces_its_mac_on_its_vlan_without_an_ip() {
    let f = frame(ArpRepr::rarp_announce(MAC), &[(0x8100, 0x2000 | 100)]);
    assert_eq!(
        observe(&f),
        Ok(Observation {
            vlan: Vlan::Tagged(100),
            mac: MAC,
            ip: None,
            kind: Announcement::Rarp
        })
    );
}

#[test]
fn an_untagged_garp_binds_its_ip() {
    let f = frame(ArpRepr::gratuitous(MAC, IP), &[]);
    assert_eq!(
        observe(&f),
        Ok(Observation {
            vlan: Vlan::Untagged,
            mac: MAC,
            ip: Some(IP),
            kind: Announcement::Garp
        })
    );
}

#[test]
fn an_arp_request_binds_its_sender_and_a_probe_binds_nothing() {
    let req = ArpRepr::request(MAC, IP, Ipv4Addr::new(10, 1, 1, 1));
    let o = observe(&frame(req, &[(0x8100, 7)])).unwrap();
    assert_eq!(
        (o.vlan, o.ip, o.kind),
        (Vlan::Tagged(7), Some(IP), Announcement::Arp)
    );
    let probe = ArpRepr::request(MAC, Ipv4Addr::UNSPECIFIED, IP);
    assert_eq!(observe(&frame(probe, &[])).unwrap().ip, None);
    // A reply from the same host says the same.
    let reply = ArpRepr::request(MacAddr([2, 0, 0, 0, 0, 1]), IP, IP).reply_from(MAC);
    let o = observe(&frame(reply, &[])).unwrap();
    assert_eq!((o.mac, o.kind), (MAC, Announcement::Garp));
}

#[test]
fn tagging_iris_does_not_carry_is_refused_by_kind() {
    let rarp = ArpRepr::rarp_announce(MAC);
    let cases = [
        (vec![(0x8100, 100), (0x8100, 200)], SnoopError::DoubleTagged),
        (vec![(0x88a8, 100), (0x8100, 200)], SnoopError::DoubleTagged),
        (
            vec![(0x8100, 1), (0x8100, 2), (0x8100, 3)],
            SnoopError::DoubleTagged,
        ),
        (vec![(0x88a8, 100)], SnoopError::ServiceTag),
        (vec![(0x8100, 0)], SnoopError::ReservedVid(0)),
        (vec![(0x8100, 0xfff)], SnoopError::ReservedVid(4095)),
    ];
    for (tags, want) in cases {
        assert_eq!(
            observe(&frame(rarp.clone(), &tags)),
            Err(want.clone()),
            "{tags:?}"
        );
        assert!(SnoopError::REASONS.contains(&want.reason()));
    }
}

#[test]
fn truncated_and_foreign_frames_are_typed_errors() {
    let f = frame(ArpRepr::gratuitous(MAC, IP), &[(0x8100, 100)]);
    for len in [0, 5, 13, 17, 20, f.len() - 1] {
        let e = observe(&f[..len]).unwrap_err();
        assert_eq!(e.reason(), "truncated", "{len}: {e}");
    }
    let mut ipv4 = f.clone();
    ipv4[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
    assert_eq!(observe(&ipv4), Err(SnoopError::NotArp(0x0800)));
    let mut not_ethernet = f.clone();
    not_ethernet[18..20].copy_from_slice(&6u16.to_be_bytes());
    assert_eq!(observe(&not_ethernet).unwrap_err().reason(), "malformed");
    let mut rarp_reply = frame(ArpRepr::rarp_announce(MAC), &[]);
    rarp_reply[20..22].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(
        observe(&rarp_reply),
        Err(SnoopError::UnsupportedOp(ArpOp::RarpReply))
    );
    let bcast = frame(ArpRepr::gratuitous(MacAddr::BROADCAST, IP), &[]);
    assert_eq!(
        observe(&bcast),
        Err(SnoopError::NotUnicast(MacAddr::BROADCAST))
    );
}

proptest! {
    /// Whatever bytes a packet-in carries, reading them answers.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let _ = observe(&bytes);
    }

    /// Valid frames with bytes flipped or cut never panic either, and a
    /// frame that still reads names a unicast MAC.
    #[test]
    fn damaged_frames_never_panic(
        vid in 1..4095u16, flips in proptest::collection::vec((0..46usize, any::<u8>()), 0..4),
        cut in 0..47usize,
    ) {
        let mut f = frame(ArpRepr::gratuitous(MAC, IP), &[(0x8100, vid)]);
        for (at, b) in flips {
            f[at] ^= b;
        }
        f.truncate(cut.max(1));
        if let Ok(o) = observe(&f) {
            prop_assert!(!o.mac.is_multicast());
        }
    }
}
