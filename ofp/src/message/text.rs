//! Whole messages printed the way `ovs-ofctl ofp-print` prints them:
//! `OFPT_FLOW_MOD (OF1.3) (xid=0x2): ADD table:1 priority=100,arp actions=output:2`.
//! Bodies that span several lines start on the line after the header.

use super::{Message, OfpMessage};
use crate::codec::Hex;
use crate::multipart::{
    MultipartReply, MultipartReplyBody, MultipartRequest, MultipartRequestBody,
};
use crate::print;
use core::fmt;

/// `(OF1.3)` and friends, for the header line.
fn version_name(version: u8) -> Option<&'static str> {
    Some(match version {
        1 => "OF1.0",
        2 => "OF1.1",
        3 => "OF1.2",
        4 => "OF1.3",
        5 => "OF1.4",
        6 => "OF1.5",
        _ => return None,
    })
}

impl fmt::Display for OfpMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = match &self.message {
            Message::Hello(h) => h.version,
            _ => crate::OFP_VERSION,
        };
        match &self.message {
            Message::MultipartRequest(r) => write!(f, "{} request", r.body.mp_type())?,
            Message::MultipartReply(r) => write!(f, "{} reply", r.body.mp_type())?,
            m => write!(f, "{}", m.msg_type())?,
        }
        match version_name(version) {
            Some(v) => write!(f, " ({v})")?,
            None => write!(f, " (version 0x{version:02x})")?,
        }
        write!(f, " (xid=0x{:x}):", self.xid)?;
        let body = self.message.to_string();
        if !body.is_empty() && !body.starts_with('\n') {
            f.write_str(" ")?;
        }
        f.write_str(&body)
    }
}

impl fmt::Display for Message {
    /// The body alone, without the header line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hello(h) => write!(f, "\n {h}"),
            Self::Error(e) => write!(f, "{e}"),
            Self::EchoRequest(d) | Self::EchoReply(d) if d.is_empty() => Ok(()),
            Self::EchoRequest(d) | Self::EchoReply(d) => write!(f, "{} bytes of payload", d.len()),
            Self::Experimenter(e) => write!(f, "{e}"),
            Self::FeaturesRequest
            | Self::GetConfigRequest
            | Self::BarrierRequest
            | Self::BarrierReply
            | Self::GetAsyncRequest => Ok(()),
            Self::FeaturesReply(x) => write!(f, "{x}"),
            Self::GetConfigReply(x) | Self::SetConfig(x) => write!(f, "{x}"),
            Self::PacketIn(x) => write!(f, "{x}"),
            Self::FlowRemoved(x) => write!(f, "{x}"),
            Self::PortStatus(x) => write!(f, "{x}"),
            Self::PacketOut(x) => write!(f, "{x}"),
            Self::FlowMod(x) => write!(f, "{x}"),
            Self::GroupMod(x) => write!(f, "{x}"),
            Self::PortMod(x) => write!(f, "{x}"),
            Self::TableMod(x) => write!(f, "{x}"),
            Self::MultipartRequest(x) => write!(f, "{x}"),
            Self::MultipartReply(x) => write!(f, "{x}"),
            Self::QueueGetConfigRequest(x) => write!(f, "{x}"),
            Self::QueueGetConfigReply(x) => write!(f, "{x}"),
            Self::RoleRequest(x) | Self::RoleReply(x) => write!(f, "{x}"),
            Self::GetAsyncReply(x) | Self::SetAsync(x) => write!(f, "{x}"),
            Self::MeterMod(x) => write!(f, "{x}"),
            Self::Unknown { body, .. } => write!(f, "{} bytes: {}", body.len(), Hex(body)),
        }
    }
}

/// `flags=[more]` when more parts follow.
fn more(f: &mut fmt::Formatter<'_>, flags: u16) -> fmt::Result {
    match flags {
        0 => Ok(()),
        crate::multipart::MULTIPART_MORE => f.write_str("flags=[more]"),
        other => write!(f, "flags=0x{other:x}"),
    }
}

/// Writes each item on its own line, after `sep` between items.
fn lines<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
    prefix: &str,
    sep: &str,
) -> fmt::Result {
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "\n{prefix}{x}")?;
    }
    Ok(())
}

/// A meter id as OVS prints it in requests.
struct MeterId(u32);

impl fmt::Display for MeterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            super::meter_no::ALL => f.write_str("meter=all"),
            id => write!(f, "meter={id}"),
        }
    }
}

impl fmt::Display for MultipartRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        more(f, self.flags)?;
        let sep = if self.flags != 0 { " " } else { "" };
        use MultipartRequestBody as B;
        match &self.body {
            B::Desc
            | B::Table
            | B::GroupDesc
            | B::GroupFeatures
            | B::MeterFeatures
            | B::PortDesc => Ok(()),
            B::Flow(r) | B::Aggregate(r) => {
                let text = r.to_string();
                if text.is_empty() {
                    Ok(())
                } else {
                    write!(f, "{sep}{text}")
                }
            }
            B::PortStats { port_no } => write!(f, "{sep}port_no={}", print::Port(*port_no)),
            B::Queue(q) => {
                write!(f, "{sep}port={} queue=", print::Port(q.port_no))?;
                match q.queue_id {
                    super::QUEUE_ALL => f.write_str("ALL"),
                    id => write!(f, "{id}"),
                }
            }
            B::Group { group_id } => match *group_id {
                super::group_no::ALL => write!(f, "{sep}group_id=all"),
                id => write!(f, "{sep}group_id={id}"),
            },
            B::Meter { meter_id } | B::MeterConfig { meter_id } => {
                write!(f, "{sep}{}", MeterId(*meter_id))
            }
            B::TableFeatures(t) => lines(f, t, "", "\n"),
            B::Experimenter(e) => write!(f, "{sep}{e}"),
            B::Unknown { body, .. } => write!(f, "{sep}{}", Hex(body)),
        }
    }
}

impl fmt::Display for MultipartReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        more(f, self.flags)?;
        let sep = if self.flags != 0 { " " } else { "" };
        use MultipartReplyBody as B;
        match &self.body {
            B::Desc(d) => write!(f, "\n{d}"),
            B::Flow(v) => lines(f, v, " ", ""),
            B::Aggregate(a) => write!(f, "{sep}{a}"),
            B::Table(v) => lines(f, v, "", "\n"),
            B::PortStats(v) => {
                write!(f, "{sep}{} ports", v.len())?;
                lines(f, v, "", "")
            }
            B::Queue(v) => {
                write!(f, "{sep}{} queues", v.len())?;
                lines(f, v, "", "")
            }
            B::Group(v) => lines(f, v, "", ""),
            B::GroupDesc(v) => lines(f, v, " ", ""),
            B::GroupFeatures(g) => write!(f, "\n{g}"),
            B::Meter(v) => lines(f, v, "", "\n"),
            B::MeterConfig(v) => lines(f, v, "", "\n"),
            B::MeterFeatures(m) => write!(f, "\n{m}"),
            B::TableFeatures(v) => lines(f, v, "", "\n"),
            B::PortDesc(v) => lines(f, v, "", ""),
            B::Experimenter(e) => write!(f, "{sep}{e}"),
            B::Unknown { body, .. } => write!(f, "{sep}{}", Hex(body)),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::action::Action;
    use crate::error::ErrorCode;
    use crate::instruction::Instruction;
    use crate::message::*;
    use crate::multipart::FlowStats;
    use crate::oxm::Match;
    use std::net::Ipv4Addr;

    fn arp_to(ip: Ipv4Addr) -> Match {
        Match::new().eth_type(0x0806).arp_tpa(ip)
    }

    #[test]
    fn flow_mod_prints_like_ovs_ofctl() {
        let fm = FlowMod {
            table_id: 1,
            priority: 100,
            match_: arp_to(Ipv4Addr::new(10, 0, 0, 1)),
            instructions: vec![Instruction::ApplyActions(vec![Action::output(2)])],
            ..FlowMod::default()
        };
        assert_eq!(
            fm.to_string(),
            "ADD table:1 priority=100,arp,arp_tpa=10.0.0.1 actions=output:2"
        );
        let del = FlowMod {
            command: FlowModCommand::DeleteStrict,
            cookie: 0x1f,
            cookie_mask: u64::MAX,
            out_port: 3,
            ..FlowMod::default()
        };
        assert_eq!(
            del.to_string(),
            "DEL_STRICT cookie:0x1f/0xffffffffffffffff out_port:3 actions=drop"
        );
        let m = OfpMessage::new(0x2a, Message::FlowMod(fm));
        assert_eq!(
            m.to_string(),
            "OFPT_FLOW_MOD (OF1.3) (xid=0x2a): ADD table:1 priority=100,arp,arp_tpa=10.0.0.1 actions=output:2"
        );
    }

    #[test]
    fn flow_stats_print_as_dump_flows_lines() {
        let fs = FlowStats {
            table_id: 0,
            duration_sec: 1,
            duration_nsec: 500_000_000,
            priority: 100,
            idle_timeout: 0,
            hard_timeout: 30,
            flags: flow_mod_flags::SEND_FLOW_REM,
            cookie: 1,
            packet_count: 0,
            byte_count: 0,
            match_: Match::new().eth_type(0x0806),
            instructions: vec![Instruction::ApplyActions(vec![Action::output(2)])],
        };
        assert_eq!(
            fs.to_string(),
            "cookie=0x1, duration=1.500s, table=0, n_packets=0, n_bytes=0, hard_timeout=30, \
             send_flow_rem priority=100,arp actions=output:2"
        );
    }

    #[test]
    fn packet_out_group_mod_and_errors() {
        let po = PacketOut {
            buffer_id: NO_BUFFER,
            in_port: port_no::CONTROLLER,
            actions: vec![Action::output(port_no::FLOOD)],
            data: vec![0; 14],
        };
        assert!(po
            .to_string()
            .starts_with("in_port=CONTROLLER actions=FLOOD data_len=14\n"));
        let gm = GroupMod {
            command: GroupModCommand::Add,
            group_type: GroupType::All,
            group_id: 7,
            buckets: vec![
                Bucket {
                    weight: 0,
                    watch_port: port_no::ANY,
                    watch_group: group_no::ANY,
                    actions: vec![Action::output(1)],
                },
                Bucket {
                    weight: 0,
                    watch_port: port_no::ANY,
                    watch_group: group_no::ANY,
                    actions: vec![Action::output(2)],
                },
            ],
        };
        assert_eq!(
            gm.to_string(),
            "ADD group_id=7,type=all,bucket=actions=output:1,bucket=actions=output:2"
        );
        let err = OfpMessage::new(
            3,
            Message::Error(ErrorMsg::Standard {
                code: ErrorCode::FLOW_MOD_BAD_COMMAND,
                data: vec![],
            }),
        );
        assert_eq!(
            err.to_string(),
            "OFPT_ERROR (OF1.3) (xid=0x3): OFPET_FLOW_MOD_FAILED OFPFMFC_BAD_COMMAND"
        );
        let hello = OfpMessage::new(
            0,
            Message::Hello(Hello {
                version: 1,
                elements: vec![],
            }),
        );
        assert_eq!(
            hello.to_string(),
            "OFPT_HELLO (OF1.0) (xid=0x0):\n version 0x01"
        );
    }
}
