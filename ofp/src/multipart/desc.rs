//! OFPMP_DESC reply body (§7.3.5.1).

use crate::codec::{Name, Reader, Writer};
use crate::error::Result;
use core::fmt;

/// `ofp_desc`: NUL-padded text fields, kept byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Desc {
    pub mfr_desc: Name<256>,
    pub hw_desc: Name<256>,
    pub sw_desc: Name<256>,
    pub serial_num: Name<32>,
    pub dp_desc: Name<256>,
}

impl Desc {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            mfr_desc: r.name()?,
            hw_desc: r.name()?,
            sw_desc: r.name()?,
            serial_num: r.name()?,
            dp_desc: r.name()?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_slice(&self.mfr_desc.0);
        buf.put_slice(&self.hw_desc.0);
        buf.put_slice(&self.sw_desc.0);
        buf.put_slice(&self.serial_num.0);
        buf.put_slice(&self.dp_desc.0);
    }
}

impl fmt::Display for Desc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Manufacturer: {}\nHardware: {}\nSoftware: {}\nSerial Num: {}\nDP Description: {}",
            self.mfr_desc, self.hw_desc, self.sw_desc, self.serial_num, self.dp_desc
        )
    }
}
