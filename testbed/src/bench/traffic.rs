//! The frames the emulated switches send up, and the addresses in them.
//!
//! Host `i` of switch `s` has the MAC `02:ss:ss:ii:ii:ii` and the IP
//! `10.0.0.0 + 1 + i`; the addresses a controller knows in advance (the ARP
//! workload's targets) are `06:ss:ss:ii:ii:ii` at `10.128.0.0 + 1 + i`.
//! Both are locally administered unicast, so no controller mistakes them for
//! group addresses.
//!
//! The `seq`-th PacketIn of a switch is about *key* `seq % macs`, and an
//! answer is tied back to its PacketIn by the key it names:
//! - learning frames come from host `key` (a pool of `macs` hosts per
//!   switch, as cbench's); each pass over the pool (an *epoch*) shifts every
//!   host to the next port, so each frame carries news for the controller
//!   (a new host in the first epoch, a move afterwards) and a learning
//!   controller has something to install every time; the answer names the
//!   host's MAC;
//! - ARP requests ask for known address `key`, from one requester per port
//!   (VMs that stay put, as VMs asking for many neighbours do); the answer
//!   names the known IP (as the sender of a reply, or the target of a
//!   request sent on).

use std::net::Ipv4Addr;

use ofp::packet::{ArpRepr, MacAddr, VlanTag};

/// Most hosts a switch can have: the MAC spends 24 bits on the host.
pub const MAX_MACS: u32 = 1 << 23;
/// Most switches: the MAC spends 16 bits on the switch.
pub const MAX_SWITCHES: u32 = 1 << 16;

const HOST_MAC_PREFIX: u8 = 0x02;
const KNOWN_MAC_PREFIX: u8 = 0x06;
const HOST_NET: u32 = 0x0a00_0000;
const KNOWN_NET: u32 = 0x0a80_0000;
/// Every frame the emulated hosts send is at least this long, as on a wire.
const MIN_FRAME: usize = 60;

fn mac(prefix: u8, switch: u16, index: u32) -> MacAddr {
    let [_, i2, i1, i0] = index.to_be_bytes();
    let [s1, s0] = switch.to_be_bytes();
    MacAddr([prefix, s1, s0, i2, i1, i0])
}

/// The MAC of host `index` behind switch `switch`.
pub fn host_mac(switch: u16, index: u32) -> MacAddr {
    mac(HOST_MAC_PREFIX, switch, index)
}

/// The MAC of the `index`-th address the registry is seeded with.
pub fn known_mac(switch: u16, index: u32) -> MacAddr {
    mac(KNOWN_MAC_PREFIX, switch, index)
}

/// The IP of host `index` (the same on every switch: each switch is its own
/// tenant where that matters).
pub fn host_ip(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(HOST_NET + 1 + index)
}

/// The IP of the `index`-th seeded address.
pub fn known_ip(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(KNOWN_NET + 1 + index)
}

/// Which known address this is, if it is one.
pub fn known_index(ip: [u8; 4]) -> Option<u32> {
    u32::from_be_bytes(ip)
        .checked_sub(KNOWN_NET + 1)
        .filter(|&i| i < MAX_MACS)
}

/// Which host of `switch` sent a frame with this MAC, if it is one of ours.
pub fn host_index(switch: u16, mac: &[u8]) -> Option<u32> {
    match *mac {
        [HOST_MAC_PREFIX, s1, s0, i2, i1, i0] if u16::from_be_bytes([s1, s0]) == switch => {
            Some(u32::from_be_bytes([0, i2, i1, i0]))
        }
        _ => None,
    }
}

/// What an emulated host sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A unicast IPv4/UDP frame from a host to the host sent from just
    /// before it: the classic cbench load, which a learning switch answers
    /// with a flow (its destination is known by then).
    Unicast,
    /// A gratuitous ARP announcing the host's IP: how Iris learns a VM.
    Garp,
    /// A broadcast ARP request for one of the known addresses.
    ArpRequest,
}

impl FrameKind {
    /// Whether hosts change port from one pass over the pool to the next.
    fn hosts_move(self) -> bool {
        !matches!(self, Self::ArpRequest)
    }
}

/// The frames of one switch.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub kind: FrameKind,
    pub switch: u16,
    pub macs: u32,
    pub ports: u16,
    /// The 802.1Q VLAN id the frames carry by the time they reach the
    /// controller (a pipeline that tags untagged ports pushes it before
    /// the packet goes up), if any.
    pub vlan: Option<u16>,
}

/// One frame: where it enters the switch, what it is about, and who sent
/// it to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub in_port: u32,
    pub key: u32,
    /// The host that sent it.
    pub src: u32,
    /// The host it is addressed to, for a unicast frame.
    pub dst: Option<u32>,
}

impl Traffic {
    /// The port host `index` is on during pass `epoch` over the pool.
    pub fn port_of(&self, index: u32, epoch: u64) -> u32 {
        let ports = u64::from(self.ports);
        let shift = if self.kind.hosts_move() { epoch } else { 0 };
        // The remainder is below `ports`, a u16.
        1 + ((u64::from(index) + shift) % ports) as u32
    }

    /// Appends the `seq`-th frame to `buf`.
    pub fn frame(&self, seq: u64, buf: &mut Vec<u8>) -> Sent {
        let macs = u64::from(self.macs);
        // Below `macs`, a u32.
        let key = (seq % macs) as u32;
        let epoch = seq / macs;
        // ARP requests come from the requester on the key's port.
        let host = match self.kind {
            FrameKind::ArpRequest => key % u32::from(self.ports),
            FrameKind::Unicast | FrameKind::Garp => key,
        };
        let src = host_mac(self.switch, host);
        let tag = self.vlan.map(|vid| VlanTag {
            tpid: 0x8100,
            tci: vid,
        });
        let start = buf.len();
        let mut dst = None;
        let arp = match self.kind {
            FrameKind::Unicast => {
                let prev = if host == 0 { self.macs - 1 } else { host - 1 };
                let ips = (host_ip(host), host_ip(prev));
                unicast_udp(src, host_mac(self.switch, prev), tag, ips, buf);
                dst = Some(prev);
                None
            }
            FrameKind::Garp => Some(ArpRepr::gratuitous(src, host_ip(host))),
            FrameKind::ArpRequest => Some(ArpRepr::request(src, host_ip(host), known_ip(key))),
        };
        if let Some(mut arp) = arp {
            arp.tags.extend(tag);
            arp.emit(buf);
        }
        if buf.len() - start < MIN_FRAME {
            buf.resize(start + MIN_FRAME, 0);
        }
        Sent {
            in_port: self.port_of(host, epoch),
            key,
            src: host,
            dst,
        }
    }
}

/// Ethernet (with `tag`, if any) + IPv4 + UDP (port 9, discard) with an
/// empty payload.
fn unicast_udp(
    src: MacAddr,
    dst: MacAddr,
    tag: Option<VlanTag>,
    (sip, dip): (Ipv4Addr, Ipv4Addr),
    buf: &mut Vec<u8>,
) {
    buf.extend_from_slice(&dst.0);
    buf.extend_from_slice(&src.0);
    if let Some(t) = tag {
        buf.extend_from_slice(&t.tpid.to_be_bytes());
        buf.extend_from_slice(&t.tci.to_be_bytes());
    }
    buf.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = buf.len();
    let total_len: u16 = 20 + 8;
    buf.extend_from_slice(&[0x45, 0]);
    buf.extend_from_slice(&total_len.to_be_bytes());
    // id, flags+fragment, ttl 64, protocol UDP, checksum (patched below)
    buf.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    buf.extend_from_slice(&sip.octets());
    buf.extend_from_slice(&dip.octets());
    let sum = internet_checksum(&buf[ip_start..]);
    buf[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
    // UDP 9 -> 9, length 8, no checksum.
    buf.extend_from_slice(&[0, 9, 0, 9, 0, 8, 0, 0]);
}

fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Folded to 16 bits above.
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ofp::packet::{ArpOp, EtherType, EthernetFrame};

    fn traffic(kind: FrameKind) -> Traffic {
        Traffic {
            kind,
            switch: 0x0102,
            macs: 5,
            ports: 3,
            vlan: None,
        }
    }

    #[test]
    fn host_macs_name_their_switch_and_index() {
        let m = host_mac(0x0102, 0x03_0405);
        assert_eq!(m.0, [0x02, 0x01, 0x02, 0x03, 0x04, 0x05]);
        assert!(!m.is_multicast());
        assert_eq!(host_index(0x0102, &m.0), Some(0x03_0405));
        assert_eq!(host_index(0x0103, &m.0), None);
        assert_eq!(host_index(0x0102, &known_mac(0x0102, 7).0), None);
        assert_eq!(host_ip(0), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(known_ip(255), Ipv4Addr::new(10, 128, 1, 0));
    }

    #[test]
    fn unicast_frames_go_to_the_previous_host_on_another_port() {
        let t = traffic(FrameKind::Unicast);
        let mut buf = Vec::new();
        let sent = t.frame(6, &mut buf);
        assert_eq!((sent.key, sent.src, sent.dst), (1, 1, Some(0)));
        let eth = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(eth.src(), host_mac(0x0102, 1));
        assert_eq!(eth.dst(), host_mac(0x0102, 0));
        assert_eq!(eth.ethertype(), EtherType::Ipv4);
        assert_eq!(buf.len(), 60);
        assert_eq!(internet_checksum(&buf[14..34]), 0, "IPv4 checksum verifies");
        assert_ne!(t.port_of(1, 1), t.port_of(0, 1));
    }

    #[test]
    fn frames_carry_the_vlan_tag_when_asked() {
        for kind in [FrameKind::Unicast, FrameKind::Garp, FrameKind::ArpRequest] {
            let t = Traffic {
                vlan: Some(100),
                ..traffic(kind)
            };
            let mut buf = Vec::new();
            t.frame(0, &mut buf);
            let eth = EthernetFrame::new_checked(&buf[..]).unwrap();
            assert_eq!(eth.vlan(), Some(100), "{kind:?}");
            assert_eq!(eth.src(), host_mac(0x0102, 0));
        }
        let mut buf = Vec::new();
        Traffic {
            vlan: Some(100),
            ..traffic(FrameKind::Unicast)
        }
        .frame(0, &mut buf);
        assert_eq!(internet_checksum(&buf[18..38]), 0);
    }

    #[test]
    fn learning_hosts_move_each_pass_but_arp_requesters_stay() {
        let garp = traffic(FrameKind::Garp);
        let ports: Vec<u32> = (0..3).map(|epoch| garp.port_of(2, epoch)).collect();
        assert_eq!(ports, vec![3, 1, 2]);
        let arp = traffic(FrameKind::ArpRequest);
        assert_eq!(arp.port_of(2, 0), arp.port_of(2, 7));
        let mut buf = Vec::new();
        assert_eq!(
            garp.frame(7, &mut buf),
            Sent {
                in_port: garp.port_of(2, 1),
                key: 2,
                src: 2,
                dst: None,
            }
        );
    }

    #[test]
    fn garp_and_arp_request_parse_as_iris_reads_them() {
        let mut buf = Vec::new();
        traffic(FrameKind::Garp).frame(3, &mut buf);
        let garp = ArpRepr::parse_frame(&buf).unwrap();
        assert!(garp.is_gratuitous());
        assert_eq!(garp.sha, host_mac(0x0102, 3));
        assert_eq!(garp.spa, host_ip(3));

        buf.clear();
        let sent = traffic(FrameKind::ArpRequest).frame(9, &mut buf);
        let req = ArpRepr::parse_frame(&buf).unwrap();
        assert_eq!(req.op, ArpOp::Request);
        assert!(!req.is_gratuitous());
        // Key 4, asked by the requester on port 4 % 3 + 1, every time.
        assert_eq!(
            sent,
            Sent {
                in_port: 2,
                key: 4,
                src: 1,
                dst: None
            }
        );
        assert_eq!(req.sha, host_mac(0x0102, 1));
        assert_eq!((req.spa, req.tpa), (host_ip(1), known_ip(4)));
        assert_eq!(known_index(req.tpa.octets()), Some(4));
        assert_eq!(known_index(req.spa.octets()), None);
        assert_eq!(buf.len(), 60, "padded to the Ethernet minimum");
    }
}
