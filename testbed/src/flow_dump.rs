//! Reading `ovs-ofctl -O OpenFlow13 --no-names dump-flows` output, and
//! rendering the codec's flows the same way, so that the two can be compared
//! line by line. [`parse_dump_stats`] keeps each flow's age and counters too,
//! which is how scenarios see that a flow was never replaced (its duration
//! keeps growing) and that a flow did the work (its packet count grew).

use ofp::instruction::{Instruction, InstructionList};
use ofp::message::{FlowMod, DEFAULT_PRIORITY};
use ofp::multipart::FlowStats;
use ofp::oxm::Match;

/// The parts of a dumped flow that identify it and say what it does; the
/// statistics (duration, counters) are left out because they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedFlow {
    pub cookie: u64,
    pub table: u8,
    pub priority: u16,
    /// The match as printed, without `priority=`: `arp,in_port=1,...`.
    pub match_text: String,
    /// The instructions as printed, without `actions=`.
    pub actions_text: String,
}

impl DumpedFlow {
    fn rendered(
        cookie: u64,
        table: u8,
        priority: u16,
        match_: &Match,
        instructions: &[Instruction],
    ) -> Self {
        let actions = InstructionList(instructions).to_string();
        Self {
            cookie,
            table,
            priority,
            match_text: match_.to_string(),
            actions_text: actions
                .strip_prefix("actions=")
                .unwrap_or(&actions)
                .to_owned(),
        }
    }

    /// A flow entry from a FLOW_STATS reply, as the codec prints it.
    pub fn of_stats(s: &FlowStats) -> Self {
        Self::rendered(s.cookie, s.table_id, s.priority, &s.match_, &s.instructions)
    }

    /// A flow as sent in a FLOW_MOD, as the codec prints it.
    pub fn of_flow_mod(f: &FlowMod) -> Self {
        Self::rendered(f.cookie, f.table_id, f.priority, &f.match_, &f.instructions)
    }

    /// Reads one flow line of `dump-flows`:
    /// ` cookie=0x1, duration=1.5s, table=1, n_packets=0, n_bytes=0, priority=200,arp actions=drop`.
    /// `None` for lines that are not flows (OVS prints a reply header in
    /// some versions).
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim();
        if !line.starts_with("cookie=") {
            return None;
        }
        let (head, actions) = line.split_once(" actions=")?;
        let (mut cookie, mut table) = (None, None);
        let mut rule = "";
        for item in head.split(", ") {
            match item.split_once('=') {
                Some(("cookie", v)) => cookie = u64::from_str_radix(v.strip_prefix("0x")?, 16).ok(),
                Some(("table", v)) => table = v.parse().ok(),
                Some((
                    "duration" | "n_packets" | "n_bytes" | "idle_timeout" | "hard_timeout"
                    | "idle_age" | "hard_age" | "importance",
                    _,
                )) => {}
                // The last item: flag words, then the rule itself.
                _ => rule = item.rsplit(' ').next().unwrap_or(item),
            }
        }
        let (priority, match_text) = match rule.strip_prefix("priority=") {
            Some(rest) => {
                let (p, m) = rest.split_once(',').unwrap_or((rest, ""));
                (p.parse().ok()?, m)
            }
            None => (DEFAULT_PRIORITY, rule),
        };
        Some(Self {
            cookie: cookie?,
            table: table?,
            priority,
            match_text: match_text.to_owned(),
            actions_text: actions.to_owned(),
        })
    }
}

impl std::fmt::Display for DumpedFlow {
    /// `table=1 cookie=0x1 priority=200,arp,... actions=...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "table={} cookie={:#x} priority={}",
            self.table, self.cookie, self.priority
        )?;
        if !self.match_text.is_empty() {
            write!(f, ",{}", self.match_text)?;
        }
        write!(f, " actions={}", self.actions_text)
    }
}

/// Every flow line of a `dump-flows` output.
pub fn parse_dump(text: &str) -> Vec<DumpedFlow> {
    text.lines().filter_map(DumpedFlow::parse).collect()
}

/// A dumped flow with the statistics [`DumpedFlow`] leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowWithStats {
    pub flow: DumpedFlow,
    /// Seconds since the flow was added (a modification keeps it, a
    /// re-add restarts it).
    pub duration: f64,
    pub n_packets: u64,
}

impl FlowWithStats {
    /// Reads one flow line; `None` for lines that are not flows or lack
    /// their statistics.
    pub fn parse(line: &str) -> Option<Self> {
        let flow = DumpedFlow::parse(line)?;
        let (head, _) = line.trim().split_once(" actions=")?;
        let (mut duration, mut n_packets) = (None, None);
        for item in head.split(", ") {
            match item.split_once('=') {
                Some(("duration", v)) => duration = v.strip_suffix('s')?.parse().ok(),
                Some(("n_packets", v)) => n_packets = v.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            flow,
            duration: duration?,
            n_packets: n_packets?,
        })
    }
}

/// Every flow line of a `dump-flows` output, with its statistics.
pub fn parse_dump_stats(text: &str) -> Vec<FlowWithStats> {
    text.lines().filter_map(FlowWithStats::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ovs_3_1_dump_lines() {
        let out = " cookie=0x1215000000000001, duration=0.123s, table=1, n_packets=0, n_bytes=0, \
                   priority=200,arp,metadata=0x7/0xffff,in_port=1 actions=IN_PORT,goto_table:2\n\
                   OFPST_FLOW reply (OF1.3) (xid=0x2):\n \
                   cookie=0x0, duration=5s, table=0, n_packets=3, n_bytes=180, idle_timeout=60, \
                   send_flow_rem reset_counts in_port=2 actions=drop\n";
        assert_eq!(
            parse_dump(out),
            [
                DumpedFlow {
                    cookie: 0x1215_0000_0000_0001,
                    table: 1,
                    priority: 200,
                    match_text: "arp,metadata=0x7/0xffff,in_port=1".into(),
                    actions_text: "IN_PORT,goto_table:2".into(),
                },
                DumpedFlow {
                    cookie: 0,
                    table: 0,
                    priority: DEFAULT_PRIORITY,
                    match_text: "in_port=2".into(),
                    actions_text: "drop".into(),
                },
            ]
        );
    }

    #[test]
    fn statistics_are_read_beside_the_flow() {
        let out = " cookie=0x4952000000000001, duration=12.345s, table=2, n_packets=7, \
                   n_bytes=294, idle_age=1, priority=100,arp,arp_op=1 actions=IN_PORT\n\
                   OFPST_FLOW reply (OF1.3) (xid=0x2):\n";
        let flows = parse_dump_stats(out);
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].duration, 12.345);
        assert_eq!(flows[0].n_packets, 7);
        assert_eq!(flows[0].flow.table, 2);
        assert_eq!(flows[0].flow.match_text, "arp,arp_op=1");
        assert_eq!(
            FlowWithStats::parse(" cookie=0x1, table=0, priority=1 actions=drop"),
            None,
            "a line without statistics"
        );
    }

    #[test]
    fn lines_that_are_not_flows_are_skipped() {
        assert_eq!(
            DumpedFlow::parse("OFPST_FLOW reply (OF1.3) (xid=0x2):"),
            None
        );
        assert_eq!(DumpedFlow::parse(" cookie=0x1, table=0"), None);
        assert_eq!(
            DumpedFlow::parse(" cookie=zz, table=0, priority=1 actions=drop"),
            None
        );
    }

    #[test]
    fn codec_renderings_use_the_same_shape() {
        use ofp::action::Action;
        let fm = FlowMod {
            table_id: 2,
            priority: 10,
            cookie: 5,
            match_: Match::new().in_port(1),
            instructions: vec![Instruction::ApplyActions(vec![Action::output(2)])],
            ..FlowMod::default()
        };
        let ours = DumpedFlow::of_flow_mod(&fm);
        let line = " cookie=0x5, duration=1.000s, table=2, n_packets=0, n_bytes=0, \
                    priority=10,in_port=1 actions=output:2";
        assert_eq!(Some(ours.clone()), DumpedFlow::parse(line));
        assert_eq!(
            ours.to_string(),
            "table=2 cookie=0x5 priority=10,in_port=1 actions=output:2"
        );
    }
}
