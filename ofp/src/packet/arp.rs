use super::ethernet::{not_arp, EtherType, EthernetFrame, EthernetRepr, MacAddr, VlanTag};
use crate::codec::Writer;
use crate::error::{DecodeError, ErrorCode, Result};
use crate::header::open_enum;
use core::fmt;
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP or RARP body.
pub const ARP_LEN: usize = 28;

open_enum! {
    /// ARP and RARP operation codes (RFC 826, RFC 903).
    pub enum ArpOp: u16 {
        Request = 1 => "request",
        Reply = 2 => "reply",
        RarpRequest = 3 => "rarp-request",
        RarpReply = 4 => "rarp-reply",
    }
}

/// A zero-copy view of an Ethernet/IPv4 ARP or RARP body.
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Checks the length and that hardware/protocol types are Ethernet/IPv4;
    /// other ARP flavours are not Iris's business and are rejected.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < ARP_LEN {
            return Err(DecodeError::Truncated {
                at: "arp",
                needed: ARP_LEN,
                available: b.len(),
            });
        }
        let (htype, ptype) = (
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        );
        if htype != 1 || ptype != 0x0800 || b[4] != 6 || b[5] != 4 {
            return Err(DecodeError::bad_value(
                "arp hardware/protocol type (expected Ethernet/IPv4)",
                (u64::from(htype) << 16) | u64::from(ptype),
                ErrorCode::BAD_PACKET,
            ));
        }
        Ok(Self { buf })
    }
    pub fn op(&self) -> ArpOp {
        let b = self.buf.as_ref();
        ArpOp::from(u16::from_be_bytes([b[6], b[7]]))
    }
    fn mac_at(&self, off: usize) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[off..off + 6]);
        MacAddr(m)
    }
    fn ip_at(&self, off: usize) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[off], b[off + 1], b[off + 2], b[off + 3])
    }
    pub fn sha(&self) -> MacAddr {
        self.mac_at(8)
    }
    pub fn spa(&self) -> Ipv4Addr {
        self.ip_at(14)
    }
    pub fn tha(&self) -> MacAddr {
        self.mac_at(18)
    }
    pub fn tpa(&self) -> Ipv4Addr {
        self.ip_at(24)
    }
}

/// An ARP or RARP frame, Ethernet header included, as Iris reads and writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpRepr {
    pub eth_dst: MacAddr,
    pub eth_src: MacAddr,
    /// VLAN tags carried by the frame, outermost first.
    pub tags: Vec<VlanTag>,
    /// `Arp` or `Rarp`.
    pub ethertype: EtherType,
    pub op: ArpOp,
    pub sha: MacAddr,
    pub spa: Ipv4Addr,
    pub tha: MacAddr,
    pub tpa: Ipv4Addr,
}

impl ArpRepr {
    /// Parses a whole Ethernet frame that must carry ARP or RARP.
    pub fn parse_frame(frame: &[u8]) -> Result<Self> {
        let eth = EthernetFrame::new_checked(frame)?;
        let ethertype = eth.ethertype();
        if ethertype != EtherType::Arp && ethertype != EtherType::Rarp {
            return Err(not_arp(ethertype));
        }
        let arp = ArpPacket::new_checked(eth.payload())?;
        Ok(Self {
            eth_dst: eth.dst(),
            eth_src: eth.src(),
            tags: eth.tags().collect(),
            ethertype,
            op: arp.op(),
            sha: arp.sha(),
            spa: arp.spa(),
            tha: arp.tha(),
            tpa: arp.tpa(),
        })
    }

    /// A broadcast who-has request.
    pub fn request(sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Self {
        Self {
            eth_dst: MacAddr::BROADCAST,
            eth_src: sha,
            tags: Vec::new(),
            ethertype: EtherType::Arp,
            op: ArpOp::Request,
            sha,
            spa,
            tha: MacAddr::ZERO,
            tpa,
        }
    }

    /// A gratuitous ARP announcing `ip` at `mac` (a request with spa = tpa).
    pub fn gratuitous(mac: MacAddr, ip: Ipv4Addr) -> Self {
        Self::request(mac, ip, ip)
    }

    /// The RARP announcement QEMU broadcasts after a live migration:
    /// op 3, sender and target hardware both the guest's MAC, no IPs.
    pub fn rarp_announce(mac: MacAddr) -> Self {
        Self {
            eth_dst: MacAddr::BROADCAST,
            eth_src: mac,
            tags: Vec::new(),
            ethertype: EtherType::Rarp,
            op: ArpOp::RarpRequest,
            sha: mac,
            spa: Ipv4Addr::UNSPECIFIED,
            tha: mac,
            tpa: Ipv4Addr::UNSPECIFIED,
        }
    }

    /// The reply to this request, as if from `mac`, keeping the request's VLAN tags.
    pub fn reply_from(&self, mac: MacAddr) -> Self {
        Self {
            eth_dst: self.sha,
            eth_src: mac,
            tags: self.tags.clone(),
            ethertype: EtherType::Arp,
            op: ArpOp::Reply,
            sha: mac,
            spa: self.tpa,
            tha: self.sha,
            tpa: self.spa,
        }
    }

    /// True for a GARP: an ARP request or reply whose sender announces its own address.
    pub fn is_gratuitous(&self) -> bool {
        self.ethertype == EtherType::Arp
            && self.spa == self.tpa
            && !self.spa.is_unspecified()
            && matches!(self.op, ArpOp::Request | ArpOp::Reply)
    }

    pub fn frame_len(&self) -> usize {
        14 + 4 * self.tags.len() + ARP_LEN
    }

    /// Appends the frame (no padding to the Ethernet minimum: switches pad).
    pub fn emit(&self, buf: &mut Vec<u8>) {
        EthernetRepr {
            dst: self.eth_dst,
            src: self.eth_src,
            tags: self.tags.clone(),
            ethertype: self.ethertype,
        }
        .emit(buf);
        buf.put_u16(1);
        buf.put_u16(0x0800);
        buf.put_u8(6);
        buf.put_u8(4);
        buf.put_u16(self.op.into());
        buf.put_slice(&self.sha.0);
        buf.put_slice(&self.spa.octets());
        buf.put_slice(&self.tha.0);
        buf.put_slice(&self.tpa.octets());
    }
}

impl fmt::Display for ArpRepr {
    /// Prints like OVS flow text: `arp,dl_vlan=10,dl_src=..,arp_op=1,arp_spa=..`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.ethertype == EtherType::Rarp {
            "rarp"
        } else {
            "arp"
        })?;
        if let Some(t) = self.tags.first() {
            write!(f, ",dl_vlan={}", t.vid())?;
        }
        write!(
            f,
            ",dl_src={},dl_dst={},arp_spa={},arp_tpa={},arp_op={},arp_sha={},arp_tha={}",
            self.eth_src,
            self.eth_dst,
            self.spa,
            self.tpa,
            u16::from(self.op),
            self.sha,
            self.tha
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RARP frame from OVS's PacketIn test in the conformance corpus.
    const OVS_RARP: &str = "ffffffffffff00232083c15f80350001080006040003\
                            00232083c15f0000000000232083c15f00000000";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_the_ovs_rarp_capture_and_rebuilds_it() {
        let bytes = unhex(OVS_RARP);
        let r = ArpRepr::parse_frame(&bytes).unwrap();
        let mac: MacAddr = "00:23:20:83:c1:5f".parse().unwrap();
        assert_eq!(r, ArpRepr::rarp_announce(mac));
        assert_eq!(
            r.to_string(),
            "rarp,dl_src=00:23:20:83:c1:5f,dl_dst=ff:ff:ff:ff:ff:ff,arp_spa=0.0.0.0,\
             arp_tpa=0.0.0.0,arp_op=3,arp_sha=00:23:20:83:c1:5f,arp_tha=00:23:20:83:c1:5f"
        );
        let mut out = Vec::new();
        r.emit(&mut out);
        assert_eq!(out, bytes);
        assert!(!r.is_gratuitous());
    }

    #[test]
    fn reply_swaps_addresses_and_keeps_vlan() {
        let a: MacAddr = "52:54:00:00:00:01".parse().unwrap();
        let b: MacAddr = "52:54:00:00:00:02".parse().unwrap();
        let mut req = ArpRepr::request(a, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        req.tags.push(VlanTag {
            tpid: 0x8100,
            tci: 10,
        });
        let mut wire = Vec::new();
        req.emit(&mut wire);
        assert_eq!(wire.len(), req.frame_len());
        let parsed = ArpRepr::parse_frame(&wire).unwrap();
        assert_eq!(parsed, req);
        let rep = parsed.reply_from(b);
        assert_eq!((rep.eth_dst, rep.sha, rep.tha), (a, b, a));
        assert_eq!(
            (rep.spa, rep.tpa),
            (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(rep.tags, req.tags);
        assert!(ArpRepr::gratuitous(a, Ipv4Addr::new(10, 0, 0, 9)).is_gratuitous());
    }

    #[test]
    fn rejects_non_arp_and_short_frames() {
        let mut ip = vec![0u8; 12];
        ip.extend([0x08, 0x00]);
        ip.extend([0u8; 28]);
        assert!(matches!(
            ArpRepr::parse_frame(&ip),
            Err(DecodeError::BadValue { .. })
        ));
        let rarp = unhex(OVS_RARP);
        for n in 0..rarp.len() {
            assert!(ArpRepr::parse_frame(&rarp[..n]).is_err(), "prefix {n}");
        }
    }
}
