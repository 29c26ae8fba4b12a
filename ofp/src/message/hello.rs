//! OFPT_HELLO (§7.5.1) and version negotiation.

use super::record::{emit_tlv, parse_all, split_padded};
use crate::codec::{Hex, Reader, Writer};
use crate::error::{DecodeError, ErrorCode, Result};
use crate::header::OFP_VERSION;
use core::fmt;

/// `OFPHET_VERSIONBITMAP`.
pub const HELLO_ELEM_VERSIONBITMAP: u16 = 1;

/// OFPT_HELLO. Unlike every other message it may carry any wire version, so
/// the header's version is kept here: a controller needs it to decide between
/// continuing and answering OFPET_HELLO_FAILED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The version in the peer's header: the highest it speaks.
    pub version: u8,
    pub elements: Vec<HelloElement>,
}

/// One `ofp_hello_elem_header` TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloElement {
    /// The supported versions: bit `v % 32` of word `v / 32` is set when
    /// wire version `v` is supported.
    VersionBitmap(Vec<u32>),
    /// An element type this codec does not know; kept so it round-trips.
    Unknown { elem_type: u16, data: Vec<u8> },
}

impl Default for Hello {
    /// The hello Iris sends: version 0x04 and a bitmap naming only 0x04, so a
    /// peer that speaks several versions picks OpenFlow 1.3.
    fn default() -> Self {
        Self {
            version: OFP_VERSION,
            elements: vec![HelloElement::VersionBitmap(vec![1 << OFP_VERSION])],
        }
    }
}

impl Hello {
    pub(crate) fn parse(version: u8, r: &mut Reader<'_>) -> Result<Self> {
        let elements = parse_all(r.sub(r.remaining(), "ofp_hello_elem")?, |r| {
            let mut e = split_padded(r, 4, "ofp_hello_elem", ErrorCode::BAD_LEN)?;
            let elem_type = e.u16()?;
            e.skip(2)?;
            if elem_type == HELLO_ELEM_VERSIONBITMAP {
                if e.remaining() % 4 != 0 {
                    return Err(DecodeError::bad_len(
                        "ofp_hello_elem_versionbitmap",
                        4 + e.remaining(),
                    ));
                }
                let mut words = Vec::with_capacity(e.remaining() / 4);
                while !e.is_empty() {
                    words.push(e.u32()?);
                }
                Ok(HelloElement::VersionBitmap(words))
            } else {
                Ok(HelloElement::Unknown {
                    elem_type,
                    data: e.take_rest().to_vec(),
                })
            }
        })?;
        Ok(Self { version, elements })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        for e in &self.elements {
            let start = match e {
                HelloElement::VersionBitmap(words) => {
                    emit_tlv(buf, HELLO_ELEM_VERSIONBITMAP, |b| {
                        for w in words {
                            b.put_u32(*w);
                        }
                    })
                }
                HelloElement::Unknown { elem_type, data } => {
                    emit_tlv(buf, *elem_type, |b| b.put_slice(data))
                }
            };
            buf.pad_to_8(start);
        }
    }

    /// The version bitmap, if the peer sent one.
    pub fn version_bitmap(&self) -> Option<&[u32]> {
        self.elements.iter().find_map(|e| match e {
            HelloElement::VersionBitmap(w) => Some(w.as_slice()),
            HelloElement::Unknown { .. } => None,
        })
    }

    /// Whether negotiation with this peer can settle on wire version
    /// `version` (§6.3.1): by the bitmap when the peer sent one, otherwise
    /// when the peer's header version is at least `version`.
    pub fn accepts(&self, version: u8) -> bool {
        match self.version_bitmap() {
            Some(words) => words
                .get(usize::from(version / 32))
                .is_some_and(|w| w & (1 << (version % 32)) != 0),
            None => self.version >= version,
        }
    }
}

impl fmt::Display for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version_bitmap() {
            Some(words) => {
                f.write_str("version bitmap:")?;
                for (i, w) in words.iter().enumerate() {
                    for bit in 0..32 {
                        if w & (1 << bit) != 0 {
                            write!(f, " 0x{:02x}", i * 32 + bit)?;
                        }
                    }
                }
            }
            None => write!(f, "version 0x{:02x}", self.version)?,
        }
        for e in &self.elements {
            if let HelloElement::Unknown { elem_type, data } = e {
                write!(f, " element 0x{elem_type:04x}: {}", Hex(data))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_decides_acceptance() {
        let body = [0, 1, 0, 8, 0x40, 0, 0x06, 0x0e];
        let h = Hello::parse(4, &mut Reader::new(&body, "ofp_hello")).unwrap();
        assert_eq!(h.version_bitmap(), Some(&[0x4000_060e][..]));
        assert!(h.accepts(1) && h.accepts(3) && !h.accepts(4) && h.accepts(30));
        assert_eq!(
            h.to_string(),
            "version bitmap: 0x01 0x02 0x03 0x09 0x0a 0x1e"
        );
        let mut out = Vec::new();
        h.emit(&mut out);
        assert_eq!(out, body);
    }

    #[test]
    fn without_bitmap_the_header_version_decides() {
        let h = Hello {
            version: 0x05,
            elements: vec![],
        };
        assert!(h.accepts(4));
        assert!(!Hello {
            version: 0x01,
            elements: vec![]
        }
        .accepts(4));
    }

    #[test]
    fn unknown_elements_round_trip_with_padding() {
        let body = [0, 9, 0, 5, 0xab, 0, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0x10];
        let h = Hello::parse(4, &mut Reader::new(&body, "ofp_hello")).unwrap();
        assert_eq!(
            h.elements[0],
            HelloElement::Unknown {
                elem_type: 9,
                data: vec![0xab]
            }
        );
        assert!(h.accepts(4));
        assert_eq!(h.to_string(), "version bitmap: 0x04 element 0x0009: ab");
        let mut out = Vec::new();
        h.emit(&mut out);
        assert_eq!(out, body);
    }

    #[test]
    fn ragged_bitmap_is_a_length_error() {
        let body = [0, 1, 0, 6, 0, 0, 0, 0];
        assert!(Hello::parse(4, &mut Reader::new(&body, "ofp_hello")).is_err());
    }
}
