//! Ports: `ofp_port` (§7.2.1), OFPT_PORT_STATUS (§7.4.3) and OFPT_PORT_MOD
//! (§7.3.4), with the reserved port numbers.

use super::flags::FlagNames;
use crate::codec::{Name, Reader, Writer};
use crate::error::Result;
use crate::header::open_enum;
use crate::packet::MacAddr;
use crate::print;
use core::fmt;

/// `ofp_port_config` bits.
pub mod port_config {
    pub const PORT_DOWN: u32 = 1 << 0;
    pub const NO_RECV: u32 = 1 << 2;
    pub const NO_FWD: u32 = 1 << 5;
    pub const NO_PACKET_IN: u32 = 1 << 6;
}

/// `ofp_port_state` bits.
pub mod port_state {
    pub const LINK_DOWN: u32 = 1 << 0;
    pub const BLOCKED: u32 = 1 << 1;
    pub const LIVE: u32 = 1 << 2;
}

const CONFIG_NAMES: &[(u32, &str)] = &[
    (port_config::PORT_DOWN, "PORT_DOWN"),
    (port_config::NO_RECV, "NO_RECV"),
    (port_config::NO_FWD, "NO_FWD"),
    (port_config::NO_PACKET_IN, "NO_PACKET_IN"),
];

const STATE_NAMES: &[(u32, &str)] = &[
    (port_state::LINK_DOWN, "LINK_DOWN"),
    (port_state::BLOCKED, "BLOCKED"),
    (port_state::LIVE, "LIVE"),
];

/// `ofp_port_features` bit names, as `ovs-ofctl` prints them.
const FEATURE_NAMES: &[(u32, &str)] = &[
    (1 << 0, "10MB-HD"),
    (1 << 1, "10MB-FD"),
    (1 << 2, "100MB-HD"),
    (1 << 3, "100MB-FD"),
    (1 << 4, "1GB-HD"),
    (1 << 5, "1GB-FD"),
    (1 << 6, "10GB-FD"),
    (1 << 7, "40GB-FD"),
    (1 << 8, "100GB-FD"),
    (1 << 9, "1TB-FD"),
    (1 << 10, "OTHER"),
    (1 << 11, "COPPER"),
    (1 << 12, "FIBER"),
    (1 << 13, "AUTO_NEG"),
    (1 << 14, "AUTO_PAUSE"),
    (1 << 15, "AUTO_PAUSE_ASYM"),
];

/// Length of `ofp_port`.
pub const PORT_LEN: usize = 64;

/// `ofp_port`: one port's description, in OFPT_PORT_STATUS and
/// OFPMP_PORT_DESC replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Port {
    pub port_no: u32,
    pub hw_addr: MacAddr,
    /// The exact 16 bytes from the wire; may hold UTF-8 or junk after the NUL.
    pub name: Name<16>,
    /// Bitmap of [`port_config`].
    pub config: u32,
    /// Bitmap of [`port_state`].
    pub state: u32,
    /// `ofp_port_features` bitmaps.
    pub curr: u32,
    pub advertised: u32,
    pub supported: u32,
    pub peer: u32,
    /// kbit/s.
    pub curr_speed: u32,
    pub max_speed: u32,
}

impl Port {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let port_no = r.u32()?;
        r.skip(4)?;
        let hw_addr = MacAddr(r.array()?);
        r.skip(2)?;
        Ok(Self {
            port_no,
            hw_addr,
            name: r.name()?,
            config: r.u32()?,
            state: r.u32()?,
            curr: r.u32()?,
            advertised: r.u32()?,
            supported: r.u32()?,
            peer: r.u32()?,
            curr_speed: r.u32()?,
            max_speed: r.u32()?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.port_no);
        buf.put_zeros(4);
        buf.put_slice(&self.hw_addr.0);
        buf.put_zeros(2);
        buf.put_slice(&self.name.0);
        for v in [
            self.config,
            self.state,
            self.curr,
            self.advertised,
            self.supported,
            self.peer,
            self.curr_speed,
            self.max_speed,
        ] {
            buf.put_u32(v);
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            " {}({}): addr:{}",
            print::Port(self.port_no),
            self.name,
            self.hw_addr
        )?;
        write!(
            f,
            "\n     config:     {}",
            FlagNames::new(self.config, CONFIG_NAMES)
        )?;
        write!(
            f,
            "\n     state:      {}",
            FlagNames::new(self.state, STATE_NAMES)
        )?;
        for (label, bits) in [
            ("current:   ", self.curr),
            ("advertised:", self.advertised),
            ("supported: ", self.supported),
            ("peer:      ", self.peer),
        ] {
            if bits != 0 {
                write!(f, "\n     {label} {}", FlagNames::new(bits, FEATURE_NAMES))?;
            }
        }
        write!(
            f,
            "\n     speed: {} Mbps now, {} Mbps max",
            self.curr_speed / 1000,
            self.max_speed / 1000
        )
    }
}

open_enum! {
    /// `ofp_port_reason`.
    pub enum PortReason: u8 {
        Add = 0 => "ADD",
        Delete = 1 => "DELETE",
        Modify = 2 => "MODIFY",
    }
}

/// `ofp_port_status`: the body of OFPT_PORT_STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortStatus {
    pub reason: PortReason,
    pub desc: Port,
}

impl PortStatus {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let reason = PortReason::from(r.u8()?);
        r.skip(7)?;
        Ok(Self {
            reason,
            desc: Port::parse(r)?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u8(self.reason.into());
        buf.put_zeros(7);
        self.desc.emit(buf);
    }
}

impl fmt::Display for PortStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.reason, self.desc)
    }
}

/// `ofp_port_mod`: the body of OFPT_PORT_MOD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortMod {
    pub port_no: u32,
    /// Must match the port's address; guards against renumbered ports.
    pub hw_addr: MacAddr,
    pub config: u32,
    /// Which [`PortMod::config`] bits to change.
    pub mask: u32,
    /// Features to advertise; zero leaves them unchanged.
    pub advertise: u32,
}

impl PortMod {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let port_no = r.u32()?;
        r.skip(4)?;
        let hw_addr = MacAddr(r.array()?);
        r.skip(2)?;
        let (config, mask, advertise) = (r.u32()?, r.u32()?, r.u32()?);
        r.skip(4)?;
        Ok(Self {
            port_no,
            hw_addr,
            config,
            mask,
            advertise,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.port_no);
        buf.put_zeros(4);
        buf.put_slice(&self.hw_addr.0);
        buf.put_zeros(2);
        buf.put_u32(self.config);
        buf.put_u32(self.mask);
        buf.put_u32(self.advertise);
        buf.put_zeros(4);
    }
}

impl fmt::Display for PortMod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "port: {}: addr:{}",
            print::Port(self.port_no),
            self.hw_addr
        )?;
        write!(
            f,
            "\n     config: {}",
            FlagNames::new(self.config, CONFIG_NAMES)
        )?;
        write!(
            f,
            "\n     mask:   {}",
            FlagNames::new(self.mask, CONFIG_NAMES)
        )?;
        if self.advertise == 0 {
            f.write_str("\n     advertise: UNCHANGED")
        } else {
            write!(
                f,
                "\n     advertise: {}",
                FlagNames::new(self.advertise, FEATURE_NAMES)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::hex;

    #[test]
    fn port_status_keeps_the_name_bytes_exactly() {
        // 4-39-ofp_port_status: a UTF-8 name that fills 15 of 16 bytes.
        let body = hex(
            "0000000000000000 0000000700000000f20ba4d03f700000 e7a781e381aee3839de383bce3838800
             00000000000000040000280800002800000028080000280800001388 00001388",
        );
        let s = PortStatus::parse(&mut Reader::new(&body, "ofp_port_status")).unwrap();
        assert_eq!(s.reason, PortReason::Add);
        assert_eq!(s.desc.port_no, 7);
        assert_eq!(s.desc.name.to_string(), "私のポート");
        assert_eq!(s.desc.state, port_state::LIVE);
        assert_eq!((s.desc.curr_speed, s.desc.max_speed), (5000, 5000));
        let mut out = Vec::new();
        s.emit(&mut out);
        assert_eq!(out, body);
        let text = s.to_string();
        assert!(
            text.starts_with("ADD: 7(私のポート): addr:f2:0b:a4:d0:3f:70"),
            "{text}"
        );
        assert!(text.contains("state:      LIVE"), "{text}");
    }

    #[test]
    fn port_mod_reads_like_ovs() {
        // From OVS's "OFPT_PORT_MOD - OF1.3".
        let body = hex("0000000300000000505400000001000000000001000000010000000000000000");
        let m = PortMod::parse(&mut Reader::new(&body, "ofp_port_mod")).unwrap();
        assert_eq!((m.port_no, m.config, m.mask, m.advertise), (3, 1, 1, 0));
        assert_eq!(
            m.to_string(),
            "port: 3: addr:50:54:00:00:00:01\n     config: PORT_DOWN\n     mask:   PORT_DOWN\n     \
             advertise: UNCHANGED"
        );
        let mut out = Vec::new();
        m.emit(&mut out);
        assert_eq!(out, body);
    }
}
