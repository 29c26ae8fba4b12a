//! OXM match fields (OpenFlow 1.3 §7.2.3) and the NXM fields OVS needs.
//! INTERFACE STUB: filled in by the match/action work.

use crate::codec::Reader;
use crate::error::Result;

/// One OXM TLV. (Stub: the real type enumerates every field.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OxmField;

/// `ofp_match` of type OFPMT_OXM, with its padding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Match {
    pub fields: Vec<OxmField>,
}

impl Match {
    /// Reads `ofp_match` (type, length, OXM TLVs) and its padding to 8 bytes.
    pub fn parse(_r: &mut Reader<'_>) -> Result<Self> {
        unimplemented!()
    }
    /// Writes `ofp_match` including padding to a multiple of 8.
    pub fn emit(&self, _buf: &mut Vec<u8>) {
        unimplemented!()
    }
}

/// A zero-copy view of one OXM TLV inside a match's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OxmTlv<'a> {
    /// The 32-bit OXM header: class (16) | field (7) | hasmask (1) | length (8).
    pub header: u32,
    /// For experimenter-class OXMs, the experimenter id that follows the header.
    pub experimenter: Option<u32>,
    pub value: &'a [u8],
    pub mask: Option<&'a [u8]>,
}

/// Iterates the OXM TLVs of a match body (the bytes after `ofp_match`'s type
/// and length, without padding) without allocating.
#[derive(Debug, Clone)]
pub struct OxmIter<'a> {
    _r: Reader<'a>,
}

impl<'a> OxmIter<'a> {
    pub fn new(oxm_bytes: &'a [u8]) -> Self {
        Self {
            _r: Reader::new(oxm_bytes, "oxm"),
        }
    }
}

impl<'a> Iterator for OxmIter<'a> {
    type Item = Result<OxmTlv<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        unimplemented!()
    }
}
