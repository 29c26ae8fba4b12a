//! Text rendering shared by matches, actions and instructions, following the
//! conventions `ovs-ofctl` uses so that operators read the same strings in
//! Iris logs as in `ovs-ofctl -O OpenFlow13 dump-flows`.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An OpenFlow 1.3 port number, printed with the names OVS uses for the
/// reserved ports (`IN_PORT`, `CONTROLLER`, `LOCAL`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u32);

impl Port {
    /// A 16-bit OpenFlow 1.0 style port number as carried by Nicira actions
    /// (resubmit, output_trunc): reserved values 0xff00.. map onto the
    /// OpenFlow 1.3 reserved range 0xffffff00.., as OVS maps them.
    pub fn from_ofp10(p: u16) -> Self {
        if p >= 0xff00 {
            Self(0xffff_0000 | u32::from(p))
        } else {
            Self(u32::from(p))
        }
    }

    /// The reserved port's name, if this is one OVS names.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0xffff_fff8 => "IN_PORT",
            0xffff_fff9 => "TABLE",
            0xffff_fffa => "NORMAL",
            0xffff_fffb => "FLOOD",
            0xffff_fffc => "ALL",
            0xffff_fffd => "CONTROLLER",
            0xffff_fffe => "LOCAL",
            0xffff_ffff => "ANY",
            _ => return None,
        })
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            // OVS shows the unnamed part of the reserved range in its 16-bit
            // form; keeping that makes log lines comparable.
            None if self.0 >= 0xffff_ff00 => write!(f, "{}", self.0 & 0xffff),
            None => write!(f, "{}", self.0),
        }
    }
}

/// An unsigned value in C's `%#x` style: `0x1f`, but a bare `0` for zero.
#[derive(Debug, Clone, Copy)]
pub struct CHex(pub u128);

impl fmt::Display for CHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("0")
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

/// An Ethernet address as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy)]
pub struct Mac<'a>(pub &'a [u8; 6]);

impl fmt::Display for Mac<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Bytes joined by dots (`01.02.0a`), the way OVS prints notes and userdata.
#[derive(Debug, Clone, Copy)]
pub struct DottedHex<'a>(pub &'a [u8]);

impl fmt::Display for DottedHex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Writes `items` separated by commas.
pub fn write_comma_list<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: impl IntoIterator<Item = T>,
) -> fmt::Result {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// The prefix length of a CIDR mask, or `None` when the mask has holes.
fn cidr_len(mask: u128, bits: u32) -> Option<u32> {
    let top = mask << (128 - bits);
    let ones = top.leading_ones();
    let expect = if ones == 0 { 0 } else { !0u128 << (128 - ones) };
    (top == expect).then_some(ones)
}

/// `value/mask` for an IPv4 address: nothing after an exact mask, `/n` for a
/// CIDR mask, the dotted mask otherwise (OVS's `format_ip_netmask`).
pub fn fmt_ipv4(f: &mut fmt::Formatter<'_>, v: Ipv4Addr, mask: Option<Ipv4Addr>) -> fmt::Result {
    write!(f, "{v}")?;
    match mask.map(u32::from) {
        None | Some(u32::MAX) => Ok(()),
        Some(m) => match cidr_len(u128::from(m), 32) {
            Some(n) => write!(f, "/{n}"),
            None => write!(f, "/{}", Ipv4Addr::from(m)),
        },
    }
}

/// `value/mask` for an IPv6 address, like [`fmt_ipv4`].
pub fn fmt_ipv6(f: &mut fmt::Formatter<'_>, v: Ipv6Addr, mask: Option<Ipv6Addr>) -> fmt::Result {
    write!(f, "{v}")?;
    match mask.map(u128::from) {
        None | Some(u128::MAX) => Ok(()),
        Some(m) => match cidr_len(m, 128) {
            Some(n) => write!(f, "/{n}"),
            None => write!(f, "/{}", Ipv6Addr::from(m)),
        },
    }
}

/// `value/mask` for an Ethernet address; an all-ones mask is not shown.
pub fn fmt_mac(f: &mut fmt::Formatter<'_>, v: &[u8; 6], mask: Option<&[u8; 6]>) -> fmt::Result {
    write!(f, "{}", Mac(v))?;
    match mask {
        Some(m) if m != &[0xff; 6] => write!(f, "/{}", Mac(m)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ip4(Ipv4Addr, Option<Ipv4Addr>);
    impl fmt::Display for Ip4 {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt_ipv4(f, self.0, self.1)
        }
    }

    #[test]
    fn ports_use_ovs_names() {
        assert_eq!(Port(2).to_string(), "2");
        assert_eq!(Port(0xffff_fffd).to_string(), "CONTROLLER");
        assert_eq!(Port(0xffff_ff00).to_string(), "65280");
        assert_eq!(Port::from_ofp10(0xfff8).to_string(), "IN_PORT");
        assert_eq!(Port::from_ofp10(7).to_string(), "7");
    }

    #[test]
    fn hex_follows_c_conventions() {
        assert_eq!(CHex(0).to_string(), "0");
        assert_eq!(CHex(0x2a).to_string(), "0x2a");
    }

    #[test]
    fn ip_masks_print_as_prefixes_when_contiguous() {
        let ip = Ipv4Addr::new(10, 0, 0, 0);
        assert_eq!(Ip4(ip, None).to_string(), "10.0.0.0");
        assert_eq!(
            Ip4(ip, Some(Ipv4Addr::new(255, 255, 255, 255))).to_string(),
            "10.0.0.0"
        );
        assert_eq!(
            Ip4(ip, Some(Ipv4Addr::new(255, 0, 0, 0))).to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            Ip4(ip, Some(Ipv4Addr::new(0, 0, 0, 0))).to_string(),
            "10.0.0.0/0"
        );
        assert_eq!(
            Ip4(ip, Some(Ipv4Addr::new(255, 0, 255, 0))).to_string(),
            "10.0.0.0/255.0.255.0"
        );
    }
}
