use crate::codec::Writer;
use crate::error::{DecodeError, ErrorCode, Result};
use crate::header::open_enum;
use core::fmt;
use core::str::FromStr;

/// A 48-bit IEEE MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: Self = Self([0xff; 6]);
    pub const ZERO: Self = Self([0; 6]);

    /// Group (multicast or broadcast) addresses have the I/G bit set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
    /// The address as the low 48 bits of a u64, the form OXM registers use.
    pub fn to_u64(self) -> u64 {
        self.0.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
    }
}

impl fmt::Display for MacAddr {
    /// `aa:bb:cc:dd:ee:ff`, written at once: the controller formats a
    /// MAC for every learned entry (its store key and record, its event),
    /// where six padded hex arguments cost more than the rest of the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b':'; 17];
        for (i, byte) in self.0.iter().enumerate() {
            text[3 * i] = HEX[usize::from(byte >> 4)];
            text[3 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        // Hex digits and colons only.
        f.write_str(core::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error from parsing a MAC address written as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacParseError(pub String);

impl fmt::Display for MacParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a MAC address; write six hex octets like 52:54:00:12:34:56",
            self.0
        )
    }
}

impl std::error::Error for MacParseError {}

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for o in &mut out {
            let p = parts.next().ok_or_else(err)?;
            if p.is_empty() || p.len() > 2 {
                return Err(err());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(out))
    }
}

open_enum! {
    /// EtherType values Iris cares about; anything else is `Unknown` and prints in hex.
    pub enum EtherType: u16 {
        Ipv4 = 0x0800 => "ipv4",
        Arp = 0x0806 => "arp",
        Rarp = 0x8035 => "rarp",
        Vlan = 0x8100 => "802.1q",
        QinQ = 0x88a8 => "802.1ad",
        Ipv6 = 0x86dd => "ipv6",
        Lldp = 0x88cc => "lldp",
    }
}

/// One 802.1Q / 802.1ad tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// The tag protocol identifier (0x8100 or 0x88a8).
    pub tpid: u16,
    /// Priority code point, drop-eligible bit and VLAN id as on the wire.
    pub tci: u16,
}

impl VlanTag {
    pub fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }
    pub fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }
}

/// At most this many stacked tags are parsed (QinQ plus one); deeper stacks
/// are treated as payload so a hostile frame cannot make parsing loop.
const MAX_TAGS: usize = 2;

/// A zero-copy view of an Ethernet II frame, with up to two VLAN tags.
///
/// `new_checked` validates the header and tag lengths once; afterwards no
/// accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
    tags: usize,
}

const ETH_HEADER: usize = 14;

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < ETH_HEADER {
            return Err(DecodeError::Truncated {
                at: "ethernet",
                needed: ETH_HEADER,
                available: b.len(),
            });
        }
        let mut tags = 0;
        while tags < MAX_TAGS {
            let off = 12 + 4 * tags;
            let tpid = u16::from_be_bytes([b[off], b[off + 1]]);
            if tpid != 0x8100 && tpid != 0x88a8 {
                break;
            }
            if b.len() < off + 4 + 2 {
                return Err(DecodeError::Truncated {
                    at: "802.1q tag",
                    needed: off + 6,
                    available: b.len(),
                });
            }
            tags += 1;
        }
        Ok(Self { buf, tags })
    }

    pub fn dst(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[0..6]);
        MacAddr(m)
    }
    pub fn src(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[6..12]);
        MacAddr(m)
    }
    /// The VLAN tags, outermost first.
    pub fn tags(&self) -> impl Iterator<Item = VlanTag> + '_ {
        let b = self.buf.as_ref();
        (0..self.tags).map(move |i| {
            let off = 12 + 4 * i;
            VlanTag {
                tpid: u16::from_be_bytes([b[off], b[off + 1]]),
                tci: u16::from_be_bytes([b[off + 2], b[off + 3]]),
            }
        })
    }
    /// The VLAN id of the outermost tag, if any.
    pub fn vlan(&self) -> Option<u16> {
        self.tags().next().map(|t| t.vid())
    }
    /// The EtherType after the tags.
    pub fn ethertype(&self) -> EtherType {
        let off = 12 + 4 * self.tags;
        let b = self.buf.as_ref();
        EtherType::from(u16::from_be_bytes([b[off], b[off + 1]]))
    }
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[ETH_HEADER + 4 * self.tags..]
    }
}

/// The parsed header of an Ethernet frame (tags included), for emitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetRepr {
    pub dst: MacAddr,
    pub src: MacAddr,
    /// Tags outermost first; empty for an untagged frame.
    pub tags: Vec<VlanTag>,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(f: &EthernetFrame<T>) -> Self {
        Self {
            dst: f.dst(),
            src: f.src(),
            tags: f.tags().collect(),
            ethertype: f.ethertype(),
        }
    }

    pub fn header_len(&self) -> usize {
        ETH_HEADER + 4 * self.tags.len()
    }

    pub fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_slice(&self.dst.0);
        buf.put_slice(&self.src.0);
        for t in &self.tags {
            buf.put_u16(t.tpid);
            buf.put_u16(t.tci);
        }
        buf.put_u16(self.ethertype.into());
    }
}

/// Shared by the ARP view when a frame claims a protocol it does not carry.
pub(crate) fn not_arp(ethertype: EtherType) -> DecodeError {
    DecodeError::bad_value(
        "ethernet ethertype (expected ARP or RARP)",
        u64::from(u16::from(ethertype)),
        ErrorCode::BAD_PACKET,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_text_round_trips_and_rejects_typos() {
        let m: MacAddr = "52:54:00:ab:CD:0f".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!(m.to_u64(), 0x525400abcd0f);
        for bad in [
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:11",
            "52:54:00:ab:cd:xyz",
            "",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(MacAddr::BROADCAST.is_multicast() && !m.is_multicast());
    }

    #[test]
    fn mac_text_is_the_padded_lowercase_hex_of_every_byte() {
        for b in 0..=u8::MAX {
            for at in 0..6 {
                let mut bytes = [0x5a; 6];
                bytes[at] = b;
                let m = MacAddr(bytes);
                let text = m.to_string();
                let expected: Vec<String> = bytes.iter().map(|x| format!("{x:02x}")).collect();
                assert_eq!(text, expected.join(":"));
                assert_eq!(text.parse::<MacAddr>().unwrap(), m);
            }
        }
    }

    #[test]
    fn parses_qinq_tags_outermost_first() {
        let mut f = vec![0xff; 6];
        f.extend([2, 0, 0, 0, 0, 1]);
        f.extend([
            0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x20, 0x0a, 0x08, 0x06, 0xaa,
        ]);
        let v = EthernetFrame::new_checked(&f[..]).unwrap();
        let tags: Vec<_> = v.tags().collect();
        assert_eq!(tags.len(), 2);
        assert_eq!((tags[0].vid(), tags[1].vid(), tags[1].pcp()), (100, 10, 1));
        assert_eq!(v.ethertype(), EtherType::Arp);
        assert_eq!(v.payload(), &[0xaa]);
        let mut out = Vec::new();
        EthernetRepr::parse(&v).emit(&mut out);
        out.push(0xaa);
        assert_eq!(out, f);
    }

    #[test]
    fn truncated_tag_is_an_error_not_a_panic() {
        let mut f = vec![0; 12];
        f.extend([0x81, 0x00, 0x00]);
        assert!(matches!(
            EthernetFrame::new_checked(&f[..]),
            Err(DecodeError::Truncated {
                at: "802.1q tag",
                ..
            })
        ));
        for n in 0..14 {
            assert!(EthernetFrame::new_checked(&f[..n.min(f.len())]).is_err());
        }
    }
}
