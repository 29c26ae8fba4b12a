//! The experimenter shape shared by OFPT_EXPERIMENTER (§7.5.5) and the
//! OFPMP_EXPERIMENTER multipart bodies: an experimenter id, a type the
//! experimenter defines, and bytes only it interprets.

use crate::action::{NX_VENDOR_ID, ONF_VENDOR_ID};
use crate::codec::{Hex, Reader, Writer};
use crate::error::Result;
use core::fmt;

/// `ofp_experimenter_header` / `ofp_experimenter_multipart_header` and the
/// data after it, kept raw so vendor messages round-trip byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experimenter {
    pub experimenter: u32,
    pub exp_type: u32,
    pub data: Vec<u8>,
}

impl Experimenter {
    /// Reads the header and takes the rest of `r` as data.
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            experimenter: r.u32()?,
            exp_type: r.u32()?,
            data: r.take_rest().to_vec(),
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.experimenter);
        buf.put_u32(self.exp_type);
        buf.put_slice(&self.data);
    }
}

impl fmt::Display for Experimenter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.experimenter {
            ONF_VENDOR_ID => f.write_str("experimenter=ONF")?,
            NX_VENDOR_ID => f.write_str("experimenter=NX")?,
            e => write!(f, "experimenter=0x{e:08x}")?,
        }
        write!(f, " exp_type={}", self.exp_type)?;
        if !self.data.is_empty() {
            write!(f, " data={}", Hex(&self.data))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_prints() {
        let body = [0x4f, 0x4e, 0x46, 0, 0, 0, 0x07, 0x4e, 1, 2, 0x30, 0x40];
        let e = Experimenter::parse(&mut Reader::new(&body, "ofp_experimenter_header")).unwrap();
        assert_eq!(
            (e.experimenter, e.exp_type, e.data.as_slice()),
            (ONF_VENDOR_ID, 1870, &body[8..])
        );
        assert_eq!(
            e.to_string(),
            "experimenter=ONF exp_type=1870 data=01023040"
        );
        let mut out = Vec::new();
        e.emit(&mut out);
        assert_eq!(out, body);
        assert!(Experimenter::parse(&mut Reader::new(&body[..7], "x")).is_err());
    }
}
