//! Fixed-size counter bodies: OFPMP_TABLE (§7.3.5.4), OFPMP_PORT_STATS
//! (§7.3.5.5) and OFPMP_QUEUE (§7.3.5.7) replies, and the packet/byte
//! counter pair of group buckets and meter bands.

use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::print;
use core::fmt;

/// Prints a duration as `ovs-ofctl` does: seconds with milliseconds, `?`
/// for the all-ones "unsupported" value.
#[derive(Debug, Clone, Copy)]
pub struct Duration {
    pub sec: u32,
    pub nsec: u32,
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sec == u32::MAX {
            return f.write_str("?");
        }
        write!(f, "{}", self.sec)?;
        if self.nsec != 0 {
            write!(f, ".{:03}", self.nsec / 1_000_000)?;
        }
        f.write_str("s")
    }
}

/// A packet and byte counter pair: `ofp_bucket_counter` and
/// `ofp_meter_band_stats` (whose fields are `packet_band_count` and
/// `byte_band_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    pub packet_count: u64,
    pub byte_count: u64,
}

/// Length of a [`Counter`] on the wire.
pub(crate) const COUNTER_LEN: usize = 16;

impl Counter {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            packet_count: r.u64()?,
            byte_count: r.u64()?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u64(self.packet_count);
        buf.put_u64(self.byte_count);
    }
}

/// Length of `ofp_table_stats`.
pub const TABLE_STATS_LEN: usize = 24;

/// `ofp_table_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableStats {
    pub table_id: u8,
    pub active_count: u32,
    pub lookup_count: u64,
    pub matched_count: u64,
}

impl TableStats {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let table_id = r.u8()?;
        r.skip(3)?;
        Ok(Self {
            table_id,
            active_count: r.u32()?,
            lookup_count: r.u64()?,
            matched_count: r.u64()?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u8(self.table_id);
        buf.put_zeros(3);
        buf.put_u32(self.active_count);
        buf.put_u64(self.lookup_count);
        buf.put_u64(self.matched_count);
    }
}

impl fmt::Display for TableStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  table {}:\n    active={}, lookup={}, matched={}",
            self.table_id, self.active_count, self.lookup_count, self.matched_count
        )
    }
}

/// Length of `ofp_port_stats`.
pub const PORT_STATS_LEN: usize = 112;

/// `ofp_port_stats`. Counters a switch does not keep are all ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortStats {
    pub port_no: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_frame_err: u64,
    pub rx_over_err: u64,
    pub rx_crc_err: u64,
    pub collisions: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
}

impl PortStats {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let port_no = r.u32()?;
        r.skip(4)?;
        Ok(Self {
            port_no,
            rx_packets: r.u64()?,
            tx_packets: r.u64()?,
            rx_bytes: r.u64()?,
            tx_bytes: r.u64()?,
            rx_dropped: r.u64()?,
            tx_dropped: r.u64()?,
            rx_errors: r.u64()?,
            tx_errors: r.u64()?,
            rx_frame_err: r.u64()?,
            rx_over_err: r.u64()?,
            rx_crc_err: r.u64()?,
            collisions: r.u64()?,
            duration_sec: r.u32()?,
            duration_nsec: r.u32()?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.port_no);
        buf.put_zeros(4);
        for v in [
            self.rx_packets,
            self.tx_packets,
            self.rx_bytes,
            self.tx_bytes,
            self.rx_dropped,
            self.tx_dropped,
            self.rx_errors,
            self.tx_errors,
            self.rx_frame_err,
            self.rx_over_err,
            self.rx_crc_err,
            self.collisions,
        ] {
            buf.put_u64(v);
        }
        buf.put_u32(self.duration_sec);
        buf.put_u32(self.duration_nsec);
    }
}

/// Prints a counter, or `?` when the switch does not keep it.
struct Count(u64);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == u64::MAX {
            f.write_str("?")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Display for PortStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = Count;
        write!(
            f,
            "  port {:>2}: rx pkts={}, bytes={}, drop={}, errs={}, frame={}, over={}, crc={}",
            print::Port(self.port_no).to_string(),
            c(self.rx_packets),
            c(self.rx_bytes),
            c(self.rx_dropped),
            c(self.rx_errors),
            c(self.rx_frame_err),
            c(self.rx_over_err),
            c(self.rx_crc_err)
        )?;
        write!(
            f,
            "\n           tx pkts={}, bytes={}, drop={}, errs={}, coll={}",
            c(self.tx_packets),
            c(self.tx_bytes),
            c(self.tx_dropped),
            c(self.tx_errors),
            c(self.collisions)
        )?;
        if self.duration_sec != u32::MAX {
            let d = Duration {
                sec: self.duration_sec,
                nsec: self.duration_nsec,
            };
            write!(f, "\n           duration={d}")?;
        }
        Ok(())
    }
}

/// Length of `ofp_queue_stats`.
pub const QUEUE_STATS_LEN: usize = 40;

/// `ofp_queue_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub port_no: u32,
    pub queue_id: u32,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
}

impl QueueStats {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            port_no: r.u32()?,
            queue_id: r.u32()?,
            tx_bytes: r.u64()?,
            tx_packets: r.u64()?,
            tx_errors: r.u64()?,
            duration_sec: r.u32()?,
            duration_nsec: r.u32()?,
        })
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.port_no);
        buf.put_u32(self.queue_id);
        buf.put_u64(self.tx_bytes);
        buf.put_u64(self.tx_packets);
        buf.put_u64(self.tx_errors);
        buf.put_u32(self.duration_sec);
        buf.put_u32(self.duration_nsec);
    }
}

impl fmt::Display for QueueStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Duration {
            sec: self.duration_sec,
            nsec: self.duration_nsec,
        };
        write!(
            f,
            "  port {} queue {}: bytes={}, pkts={}, errors={}, duration={d}",
            print::Port(self.port_no),
            self.queue_id,
            Count(self.tx_bytes),
            Count(self.tx_packets),
            Count(self.tx_errors)
        )
    }
}
