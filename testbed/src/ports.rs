//! Ports for the services the testbed starts (controllers' APIs and
//! OpenFlow listeners, etcd members, gateways' APIs), chosen before the
//! service binds them.
//!
//! A port is free when a probe binds it, but once the probe is closed the
//! kernel may hand the same port to the next probe: two services of one
//! run were then told the same port (a controller dialled its own
//! listener). Every port handed out is remembered for the life of the
//! process and never handed out again. Another process can still take a
//! port before the service binds it; the service then fails to start and
//! says so.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};

use crate::error::Error;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Probes in a row that may find ports already handed out before giving
/// up: far more than a run hands out.
const MAX_PROBES: usize = 4096;

/// A TCP port free on `ip` now and not handed out before by this process.
pub fn free_port(ip: IpAddr) -> Result<u16, Error> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    // Probes are held until one succeeds, so the kernel offers another
    // port each time.
    let mut held = Vec::new();
    while held.len() < MAX_PROBES {
        let probe = TcpListener::bind((ip, 0))
            .map_err(|e| Error::io(format!("finding a free port on {ip}"), e))?;
        let port = probe
            .local_addr()
            .map_err(|e| Error::io("reading a bound address", e))?
            .port();
        if handed_out.insert(port) {
            return Ok(port);
        }
        held.push(probe);
    }
    Err(Error::io(
        format!("finding a free port on {ip}"),
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{MAX_PROBES} probes in a row found ports already handed out"),
        ),
    ))
}

/// `n` distinct ports, as [`free_port`].
pub fn free_ports(ip: IpAddr, n: usize) -> Result<Vec<u16>, Error> {
    (0..n).map(|_| free_port(ip)).collect()
}

/// A loopback address whose port is free, as [`free_port`].
pub fn free_loopback() -> Result<SocketAddr, Error> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Ok(SocketAddr::new(ip, free_port(ip)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_port_is_handed_out_twice_though_each_probe_is_let_go() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let ports = free_ports(ip, 500).unwrap();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(!distinct.contains(&free_port(ip).unwrap()));
        // Each is free for the service that is told it.
        for p in ports.iter().take(20) {
            TcpListener::bind((ip, *p)).unwrap();
        }
    }
}
