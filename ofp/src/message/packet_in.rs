//! OFPT_PACKET_IN (§7.4.1): the owned form and the zero-copy view the
//! controller's hot path uses.

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, ErrorCode, Result};
use crate::framing::check_complete;
use crate::header::{open_enum, MsgType, HEADER_LEN, OFP_VERSION};
use crate::oxm::{Match, OxmIter};
use crate::packet::{ArpRepr, EthernetFrame};
use core::fmt;

open_enum! {
    /// `ofp_packet_in_reason`.
    pub enum PacketInReason: u8 {
        NoMatch = 0 => "no_match",
        Action = 1 => "action",
        InvalidTtl = 2 => "invalid_ttl",
    }
}

/// `ofp_packet_in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    /// Where the switch buffered the packet, or [`super::NO_BUFFER`].
    pub buffer_id: u32,
    /// Length of the frame on the wire; `data` may be shorter.
    pub total_len: u16,
    pub reason: PacketInReason,
    pub table_id: u8,
    /// Cookie of the flow that sent the packet up.
    pub cookie: u64,
    /// The packet's pipeline fields (in_port, tunnel metadata, ...).
    pub match_: Match,
    /// The frame, or its first `miss_send_len` / `max_len` bytes.
    pub data: Vec<u8>,
}

impl PacketIn {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let buffer_id = r.u32()?;
        let total_len = r.u16()?;
        let reason = PacketInReason::from(r.u8()?);
        let table_id = r.u8()?;
        let cookie = r.u64()?;
        let match_ = Match::parse(r)?;
        r.skip(2)?;
        Ok(Self {
            buffer_id,
            total_len,
            reason,
            table_id,
            cookie,
            match_,
            data: r.take_rest().to_vec(),
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.buffer_id);
        buf.put_u16(self.total_len);
        buf.put_u8(self.reason.into());
        buf.put_u8(self.table_id);
        buf.put_u64(self.cookie);
        self.match_.emit(buf);
        buf.put_zeros(2);
        buf.put_slice(&self.data);
    }
}

/// Offset of `ofp_match` in an OFPT_PACKET_IN message.
const MATCH_AT: usize = HEADER_LEN + 16;
/// `OFPMT_OXM`.
const MATCH_TYPE_OXM: u16 = 1;
/// `ofp_match`'s type and length.
const MATCH_HEADER_LEN: usize = 4;
/// (class << 7 | field) of OXM_OF_IN_PORT.
const OXM_IN_PORT: u32 = 0x8000 << 7;

/// A zero-copy view of a whole OFPT_PACKET_IN message.
///
/// [`PacketInView::new_checked`] validates the header and every length once;
/// after that no accessor can panic. The OXM fields are not validated up
/// front: [`PacketInView::oxms`] yields an error for a malformed TLV.
#[derive(Debug, Clone, Copy)]
pub struct PacketInView<'a> {
    buf: &'a [u8],
    /// End of the OXM TLVs (the match without its padding).
    oxm_end: usize,
    data_at: usize,
}

impl<'a> PacketInView<'a> {
    /// Checks that `msg` is one complete OpenFlow 1.3 PACKET_IN whose match
    /// and data fit the header's length.
    pub fn new_checked(msg: &'a [u8]) -> Result<Self> {
        let len = check_complete(msg)?;
        if msg[0] != OFP_VERSION {
            return Err(DecodeError::BadVersion { version: msg[0] });
        }
        if MsgType::from(msg[1]) != MsgType::PacketIn {
            return Err(DecodeError::bad_value(
                "ofp_packet_in",
                u64::from(msg[1]),
                ErrorCode::BAD_TYPE,
            ));
        }
        let mut r = Reader::new(msg, "ofp_packet_in");
        r.skip(MATCH_AT)?;
        let match_type = r.u16()?;
        if match_type != MATCH_TYPE_OXM {
            return Err(DecodeError::bad_value(
                "ofp_match",
                u64::from(match_type),
                ErrorCode::MATCH_BAD_TYPE,
            ));
        }
        let match_len = usize::from(r.u16()?);
        let padded = match_len.div_ceil(8) * 8;
        if match_len < MATCH_HEADER_LEN || MATCH_AT + padded + 2 > len {
            return Err(DecodeError::bad_len_code(
                "ofp_match",
                match_len,
                ErrorCode::MATCH_BAD_LEN,
            ));
        }
        Ok(Self {
            buf: msg,
            oxm_end: MATCH_AT + match_len,
            data_at: MATCH_AT + padded + 2,
        })
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.buf[at], self.buf[at + 1]])
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.buf[at],
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
        ])
    }

    pub fn xid(&self) -> u32 {
        self.u32_at(4)
    }

    pub fn buffer_id(&self) -> u32 {
        self.u32_at(8)
    }

    pub fn total_len(&self) -> u16 {
        self.u16_at(12)
    }

    pub fn reason(&self) -> PacketInReason {
        PacketInReason::from(self.buf[14])
    }

    pub fn table_id(&self) -> u8 {
        self.buf[15]
    }

    pub fn cookie(&self) -> u64 {
        (u64::from(self.u32_at(16)) << 32) | u64::from(self.u32_at(20))
    }

    /// The OXM TLVs of the match, without its type, length and padding.
    pub fn match_bytes(&self) -> &'a [u8] {
        &self.buf[MATCH_AT + MATCH_HEADER_LEN..self.oxm_end]
    }

    pub fn oxms(&self) -> OxmIter<'a> {
        OxmIter::new(self.match_bytes())
    }

    /// The ingress port from the match's OXM_OF_IN_PORT, if present and
    /// well formed.
    pub fn in_port(&self) -> Option<u32> {
        for tlv in self.oxms() {
            let tlv = tlv.ok()?;
            if tlv.header >> 9 == OXM_IN_PORT && tlv.mask.is_none() {
                let v: [u8; 4] = tlv.value.try_into().ok()?;
                return Some(u32::from_be_bytes(v));
            }
        }
        None
    }

    /// The frame (or its first bytes, see [`PacketIn::data`]).
    pub fn data(&self) -> &'a [u8] {
        &self.buf[self.data_at..]
    }

    /// The owned form, for when the packet must outlive the receive buffer.
    pub fn to_packet_in(&self) -> Result<PacketIn> {
        PacketIn::parse(&mut Reader::new(&self.buf[HEADER_LEN..], "ofp_packet_in"))
    }
}

/// Prints a frame the way OVS prints a flow extracted from it, for the
/// frames Iris handles (ARP and RARP), and the Ethernet header otherwise.
#[derive(Debug, Clone, Copy)]
pub struct FrameSummary<'a>(pub &'a [u8]);

impl fmt::Display for FrameSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Ok(arp) = ArpRepr::parse_frame(self.0) {
            return write!(f, "{arp}");
        }
        match EthernetFrame::new_checked(self.0) {
            Ok(eth) => {
                write!(f, "dl_type={}", eth.ethertype())?;
                if let Some(vid) = eth.vlan() {
                    write!(f, ",dl_vlan={vid}")?;
                }
                write!(f, ",dl_src={},dl_dst={}", eth.src(), eth.dst())
            }
            Err(_) => write!(f, "({} bytes, not an Ethernet frame)", self.0.len()),
        }
    }
}

impl fmt::Display for PacketIn {
    /// Like `ovs-ofctl`: table and cookie when set, the pipeline fields, the
    /// reason and buffer, then the frame on its own line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.table_id != 0 {
            write!(f, "table_id={} ", self.table_id)?;
        }
        if self.cookie != u64::MAX {
            write!(f, "cookie=0x{:x} ", self.cookie)?;
        }
        write!(
            f,
            "total_len={} {} (via {})",
            self.total_len, self.match_, self.reason
        )?;
        write!(f, " data_len={}", self.data.len())?;
        if self.buffer_id == super::NO_BUFFER {
            f.write_str(" (unbuffered)")?;
        } else {
            write!(f, " buffer=0x{:08x}", self.buffer_id)?;
        }
        write!(f, "\n{}", FrameSummary(&self.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::hex;

    /// OVS's "OFPT_PACKET_IN - OF1.3": a RARP frame sent up on table miss.
    fn ovs_packet_in() -> Vec<u8> {
        hex(
            "040a005400000000ffffff00002a000001020304050607080001000c80000004fffffffe00000000
             0000ffffffffffff00232083c15f8035000108000604000300232083c15f0000000000232083c15f
             00000000",
        )
    }

    #[test]
    fn view_reads_fixed_fields_after_one_check() {
        let wire = ovs_packet_in();
        let v = PacketInView::new_checked(&wire).unwrap();
        assert_eq!(
            (v.xid(), v.buffer_id(), v.total_len(), v.table_id()),
            (0, 0xffff_ff00, 42, 0)
        );
        assert_eq!(v.reason(), PacketInReason::NoMatch);
        assert_eq!(v.cookie(), 0x0102_0304_0506_0708);
        assert_eq!(v.match_bytes(), hex("80000004fffffffe"));
        assert_eq!(v.data().len(), 42);
        assert_eq!(
            FrameSummary(v.data()).to_string(),
            ArpRepr::parse_frame(v.data()).unwrap().to_string()
        );
    }

    #[test]
    fn view_rejects_what_does_not_fit() {
        let wire = ovs_packet_in();
        // Cut messages, wrong types and versions.
        for n in 0..wire.len() {
            assert!(PacketInView::new_checked(&wire[..n]).is_err());
        }
        let mut other = wire.clone();
        other[1] = 14;
        assert_eq!(
            PacketInView::new_checked(&other).unwrap_err().ofp_error(),
            ErrorCode::BAD_TYPE
        );
        other = wire.clone();
        other[0] = 1;
        assert!(matches!(
            PacketInView::new_checked(&other),
            Err(DecodeError::BadVersion { version: 1 })
        ));
        // A match longer than the message, or shorter than its own header.
        for bad_len in [0x0003u16, 0x0050, 0xffff] {
            let mut m = wire.clone();
            m[26..28].copy_from_slice(&bad_len.to_be_bytes());
            assert_eq!(
                PacketInView::new_checked(&m).unwrap_err().ofp_error(),
                ErrorCode::MATCH_BAD_LEN
            );
        }
        // Only OXM matches exist in 1.3.
        let mut m = wire;
        m[25] = 0;
        assert_eq!(
            PacketInView::new_checked(&m).unwrap_err().ofp_error(),
            ErrorCode::MATCH_BAD_TYPE
        );
    }

    #[test]
    fn view_shortest_valid_packet_in_has_empty_data() {
        // Empty match (4 bytes + 4 padding), the 2 pad bytes, no data.
        let wire =
            hex("040a0022000000ff ffffffff0000 0100 0000000000000000 00010004 00000000 0000");
        let v = PacketInView::new_checked(&wire).unwrap();
        assert!(v.data().is_empty() && v.match_bytes().is_empty());
        assert_eq!(v.reason(), PacketInReason::Action);
    }
}
