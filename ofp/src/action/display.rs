//! Actions printed as `ovs-ofctl` prints them (see `man ovs-actions`).

use super::{port, Action, Controller2Prop, FieldMove, FieldRef, ResubmitKind, Subfield};
use crate::codec::Hex;
use crate::oxm::{OxmField, SubfieldName};
use crate::print::{write_comma_list, CHex, DottedHex, Port};
use core::fmt;

/// `NAME[]`, `NAME[3]` or `NAME[ofs..end]`.
fn fmt_subfield(f: &mut fmt::Formatter<'_>, field: FieldRef, ofs: u16, n_bits: u16) -> fmt::Result {
    write!(f, "{}", SubfieldName(field.id()))?;
    if ofs == 0 && u32::from(n_bits) == field.bits() {
        f.write_str("[]")
    } else if n_bits == 1 {
        write!(f, "[{ofs}]")
    } else {
        // Signed so that a zero-width range from the wire prints instead of
        // underflowing; OVS would reject such an action when executing it.
        write!(f, "[{}..{}]", ofs, i64::from(ofs) + i64::from(n_bits) - 1)
    }
}

impl fmt::Display for Subfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_subfield(f, self.field, self.ofs, self.n_bits)
    }
}

/// `set_field:VALUE->NAME`.
fn fmt_set_field(f: &mut fmt::Formatter<'_>, field: &OxmField) -> fmt::Result {
    f.write_str("set_field:")?;
    field.fmt_value(f)?;
    write!(f, "->{}", field.name())
}

/// OVS's packet-in reason names, as `controller(reason=...)` uses them.
fn reason_name(reason: u8) -> Option<&'static str> {
    Some(match reason {
        0 => "no_match",
        1 => "action",
        2 => "invalid_ttl",
        3 => "action_set",
        4 => "group",
        5 => "packet_out",
        _ => return None,
    })
}

impl fmt::Display for FieldMove {
    /// `move:SRC[..]->DST[..]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("move:")?;
        fmt_subfield(f, self.src, self.src_ofs, self.n_bits)?;
        f.write_str("->")?;
        fmt_subfield(f, self.dst, self.dst_ofs, self.n_bits)
    }
}

/// What a controller action asks for, whichever encoding carried it.
struct ControllerSettings<'a> {
    max_len: u16,
    id: u16,
    reason: u8,
    userdata: &'a [u8],
    pause: bool,
    meter_id: Option<u32>,
}

impl Default for ControllerSettings<'_> {
    /// NXAST_CONTROLLER2's defaults for absent properties.
    fn default() -> Self {
        Self {
            max_len: u16::MAX,
            id: 0,
            reason: 1,
            userdata: &[],
            pause: false,
            meter_id: None,
        }
    }
}

impl<'a> ControllerSettings<'a> {
    fn from_props(props: &'a [Controller2Prop]) -> Self {
        use super::controller2_prop as p;
        let u16_of = |v: &[u8]| v.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let mut s = Self::default();
        for prop in props {
            let v = prop.value.as_slice();
            match prop.kind {
                p::MAX_LEN => s.max_len = u16_of(v).unwrap_or(s.max_len),
                p::CONTROLLER_ID => s.id = u16_of(v).unwrap_or(s.id),
                p::REASON => s.reason = v.first().copied().unwrap_or(s.reason),
                p::USERDATA => s.userdata = v,
                p::PAUSE => s.pause = true,
                p::METER_ID => {
                    s.meter_id = v
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                }
                _ => {}
            }
        }
        s
    }

    /// `CONTROLLER:max_len` when only the length differs from the defaults,
    /// `controller(reason=..,max_len=..,id=..,userdata=..,pause,meter_id=..)`
    /// otherwise, listing only what is not a default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = self.reason == 1 && self.id == 0 && self.userdata.is_empty();
        if plain && !self.pause && self.meter_id.is_none() {
            return write!(f, "CONTROLLER:{}", self.max_len);
        }
        let mut parts = Vec::with_capacity(6);
        if self.reason != 1 {
            match reason_name(self.reason) {
                Some(n) => parts.push(format!("reason={n}")),
                None => parts.push(format!("reason={}", self.reason)),
            }
        }
        if self.max_len != u16::MAX {
            parts.push(format!("max_len={}", self.max_len));
        }
        if self.id != 0 {
            parts.push(format!("id={}", self.id));
        }
        if !self.userdata.is_empty() {
            parts.push(format!("userdata={}", DottedHex(self.userdata)));
        }
        if self.pause {
            parts.push("pause".to_owned());
        }
        if let Some(m) = self.meter_id {
            parts.push(format!("meter_id={m}"));
        }
        write!(f, "controller({})", parts.join(","))
    }
}

fn fmt_resubmit(
    f: &mut fmt::Formatter<'_>,
    in_port: u16,
    table: u8,
    kind: ResubmitKind,
) -> fmt::Result {
    let port = Port::from_ofp10(in_port);
    let keeps_port = port.0 == port::IN_PORT;
    if !keeps_port && table == 255 && kind != ResubmitKind::TableCt {
        return write!(f, "resubmit:{port}");
    }
    f.write_str("resubmit(")?;
    if !keeps_port {
        write!(f, "{port}")?;
    }
    f.write_str(",")?;
    if table != 255 {
        write!(f, "{table}")?;
    }
    if kind == ResubmitKind::TableCt {
        f.write_str(",ct")?;
    }
    f.write_str(")")
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Output { port: p, max_len } => match *p {
                port::CONTROLLER => write!(f, "CONTROLLER:{max_len}"),
                p if p < port::MAX => write!(f, "output:{p}"),
                p => write!(f, "{}", Port(p)),
            },
            Self::CopyTtlOut => f.write_str("copy_ttl_out"),
            Self::CopyTtlIn => f.write_str("copy_ttl_in"),
            Self::SetMplsTtl(t) => write!(f, "set_mpls_ttl({t})"),
            Self::DecMplsTtl => f.write_str("dec_mpls_ttl"),
            Self::PushVlan(e) => write!(f, "push_vlan:{e:#x}"),
            Self::PopVlan => f.write_str("pop_vlan"),
            Self::PushMpls(e) => write!(f, "push_mpls:{e:#06x}"),
            Self::PopMpls(e) => write!(f, "pop_mpls:{e:#06x}"),
            Self::SetQueue(q) => write!(f, "set_queue:{q}"),
            Self::Group(g) => write!(f, "group:{g}"),
            Self::SetNwTtl(t) => write!(f, "mod_nw_ttl:{t}"),
            Self::DecNwTtl | Self::NxDecTtl => f.write_str("dec_ttl"),
            Self::SetField(field) | Self::RegLoad2(field) => fmt_set_field(f, field),
            Self::PushPbb(e) => write!(f, "push_pbb:{e:#06x}"),
            Self::PopPbb => f.write_str("pop_pbb"),
            Self::RegMove(m) | Self::CopyField(m) => write!(f, "{m}"),
            Self::RegLoad { dst, value } => write!(f, "load:{}->{dst}", CHex(u128::from(*value))),
            Self::Resubmit {
                in_port,
                table,
                kind,
            } => fmt_resubmit(f, *in_port, *table, *kind),
            Self::SetTunnel(id) => write!(f, "set_tunnel:{id:#x}"),
            Self::SetTunnel64(id) => write!(f, "set_tunnel64:{id:#x}"),
            Self::PopQueue => f.write_str("pop_queue"),
            Self::Note(data) => write!(f, "note:{}", DottedHex(data)),
            Self::Exit => f.write_str("exit"),
            Self::DecTtlCntIds(ids) => {
                f.write_str("dec_ttl(")?;
                write_comma_list(f, ids)?;
                f.write_str(")")
            }
            Self::FinTimeout {
                idle_timeout,
                hard_timeout,
            } => {
                let mut parts = Vec::with_capacity(2);
                if *idle_timeout != 0 {
                    parts.push(format!("idle_timeout={idle_timeout}"));
                }
                if *hard_timeout != 0 {
                    parts.push(format!("hard_timeout={hard_timeout}"));
                }
                write!(f, "fin_timeout({})", parts.join(","))
            }
            Self::Controller {
                max_len,
                controller_id,
                reason,
            } => ControllerSettings {
                max_len: *max_len,
                id: *controller_id,
                reason: *reason,
                ..ControllerSettings::default()
            }
            .fmt(f),
            Self::Controller2(props) => ControllerSettings::from_props(props).fmt(f),
            Self::Conjunction {
                id,
                clause,
                n_clauses,
            } => {
                write!(
                    f,
                    "conjunction({id},{}/{n_clauses})",
                    u16::from(*clause) + 1
                )
            }
            Self::OutputTrunc { port, max_len } => {
                write!(
                    f,
                    "output(port={},max_len={max_len})",
                    Port::from_ofp10(*port)
                )
            }
            Self::StackPush(s) => write!(f, "push:{s}"),
            Self::StackPop(s) => write!(f, "pop:{s}"),
            Self::CtClear => f.write_str("ct_clear"),
            Self::Experimenter { experimenter, data } => {
                write!(f, "experimenter({experimenter:#x},0x{})", Hex(data))
            }
            Self::Unknown { action_type, data } => {
                write!(f, "action({action_type:#x},0x{})", Hex(data))
            }
        }
    }
}

/// An action list as OVS prints it: `actions=a,b,c`, or `actions=drop` when
/// there are none.
#[derive(Debug, Clone, Copy)]
pub struct ActionList<'a>(pub &'a [Action]);

impl fmt::Display for ActionList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("actions=")?;
        write_actions(f, self.0)
    }
}

/// `a,b,c`, or `drop` when empty.
pub(crate) fn write_actions(f: &mut fmt::Formatter<'_>, actions: &[Action]) -> fmt::Result {
    if actions.is_empty() {
        return f.write_str("drop");
    }
    write_comma_list(f, actions)
}
