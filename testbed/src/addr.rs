//! Address types the testbed configures: IPv4 interface addresses with their
//! prefix length, and Ethernet MAC addresses.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::Error;

/// An IPv4 address together with the length of its subnet prefix, as `ip addr`
/// takes it (`10.0.0.1/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// Fails when `prefix_len` is above 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, Error> {
        if prefix_len > 32 {
            return Err(Error::Usage(format!(
                "prefix length {prefix_len} of {addr} is above 32"
            )));
        }
        Ok(Self { addr, prefix_len })
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    /// The subnet's own address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// Whether `addr` lies in this subnet.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network())
    }

    /// The `n`th host of the subnet (1 is the first usable address), with the
    /// subnet's prefix length. Fails when `n` is the network address, the
    /// broadcast address or beyond.
    pub fn host(&self, n: u32) -> Result<Self, Error> {
        let size = 1u64 << (32 - u32::from(self.prefix_len));
        if n == 0 || u64::from(n) >= size.saturating_sub(1) {
            return Err(Error::Usage(format!(
                "{self} has no host number {n} (usable hosts are 1..{})",
                size.saturating_sub(2)
            )));
        }
        Self::new(
            Ipv4Addr::from(u32::from(self.network()) + n),
            self.prefix_len,
        )
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::Usage(format!(
                "{s:?} is not an IPv4 address with a prefix length, like 10.0.0.1/24"
            ))
        };
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr = addr.parse().map_err(|_| bad())?;
        let len = len.parse().map_err(|_| bad())?;
        Self::new(addr, len)
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A unicast, locally administered address (`02:…`) whose low four bytes are
    /// `n`: distinct, readable addresses for emulated VMs.
    pub fn local(n: u32) -> Self {
        let b = n.to_be_bytes();
        Self([0x02, 0x00, b[0], b[1], b[2], b[3]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Usage(format!("{s:?} is not a MAC address like 02:00:00:00:00:01"));
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_prints() {
        let c: Ipv4Cidr = "10.1.2.3/24".parse().unwrap();
        assert_eq!(c.addr(), Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(c.prefix_len(), 24);
        assert_eq!(c.network(), Ipv4Addr::new(10, 1, 2, 0));
        assert_eq!(c.to_string(), "10.1.2.3/24");
        assert!("10.1.2.3".parse::<Ipv4Cidr>().is_err());
        assert!("10.1.2.3/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.1.2/24".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn cidr_hosts_stay_inside_the_subnet() {
        let c: Ipv4Cidr = "192.168.7.0/30".parse().unwrap();
        assert_eq!(c.host(1).unwrap().to_string(), "192.168.7.1/30");
        assert_eq!(c.host(2).unwrap().to_string(), "192.168.7.2/30");
        assert!(c.host(0).is_err());
        assert!(c.host(3).is_err(), "the broadcast address is no host");
        assert!(c.contains(Ipv4Addr::new(192, 168, 7, 3)));
        assert!(!c.contains(Ipv4Addr::new(192, 168, 7, 4)));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }

    #[test]
    fn mac_round_trips() {
        let m: MacAddr = "02:00:0a:ff:00:01".parse().unwrap();
        assert_eq!(m.0, [2, 0, 10, 255, 0, 1]);
        assert_eq!(m.to_string(), "02:00:0a:ff:00:01");
        assert_eq!(MacAddr::local(258).to_string(), "02:00:00:00:01:02");
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "2:00:00:00:00:01",
            "zz:00:00:00:00:01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
