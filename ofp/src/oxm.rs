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
