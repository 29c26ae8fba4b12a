//! What the kernel counts for the relay's packet sockets
//! (`PACKET_STATISTICS`, packet(7)): the one reading of a socket option no
//! safe wrapper offers, and the testbed's only unsafe code.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Frames the kernel dropped since the last call because the socket's
/// receive buffer was full. The kernel resets its count on every read.
pub(crate) fn take_drops(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut stats = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `stats` and `len` are valid for writes and `len` holds the
    // size of `stats`, so the kernel writes within it; `fd` is open for
    // the borrow.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            std::ptr::from_mut(&mut stats).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(u64::from(stats.tp_drops))
    } else {
        Err(io::Error::last_os_error())
    }
}
