//! Every OpenFlow 1.3 message (types 0–29) as an owned representation
//! ([`Message`], framed by [`OfpMessage`]), plus the zero-copy
//! [`PacketInView`] and direct encoders ([`FlowMod::encode`],
//! [`PacketOutRef::encode`]) for the controller's hot paths.
//!
//! Decoding is strict where a switch would be: a length that does not add
//! up, an unknown FLOW_MOD/GROUP_MOD/METER_MOD command or flag is a
//! [`DecodeError`] carrying the OFPT_ERROR code to send back. Codes the peer
//! may legitimately extend (reasons, roles, unknown message or multipart
//! types, properties) are kept as `Unknown` and re-encode byte for byte.

mod config;
mod error_msg;
mod experimenter;
mod flags;
mod flow_mod;
mod group_mod;
mod hello;
mod meter_mod;
mod packet_in;
mod packet_out;
mod port;
mod queue;
pub(crate) mod record;
mod text;

pub use config::{
    capabilities, config_flags, AsyncConfig, ControllerRole, RoleMsg, SwitchConfig, SwitchFeatures,
    TableMod,
};
pub use error_msg::{error_code_name, error_type_name, ErrorCodeName, ErrorMsg, ERROR_DATA_LEN};
pub use experimenter::Experimenter;
pub use flags::FlagNames;
pub use flow_mod::{
    flow_mod_flags, FlowMod, FlowModCommand, FlowRemoved, FlowRemovedReason, PrioritizedMatch,
    DEFAULT_PRIORITY, FLOW_MOD_FLAG_NAMES, TABLE_ALL,
};
pub use group_mod::{group_no, Bucket, GroupMod, GroupModCommand, GroupType};
pub use hello::{Hello, HelloElement, HELLO_ELEM_VERSIONBITMAP};
pub use meter_mod::{band_type, meter_flags, meter_no, MeterBand, MeterMod, MeterModCommand};
pub use packet_in::{FrameSummary, PacketIn, PacketInReason, PacketInView};
pub use packet_out::{PacketOut, PacketOutRef};
pub use port::{port_config, port_state, Port, PortMod, PortReason, PortStatus, PORT_LEN};
pub use queue::{
    queue_prop, PacketQueue, QueueGetConfigReply, QueueGetConfigRequest, QueueProp, QUEUE_ALL,
};

/// Reserved port numbers, shared with the output action.
pub use crate::action::port as port_no;

pub(crate) use group_mod::fmt_group;
pub(crate) use meter_mod::{fmt_meter, METER_FLAG_NAMES};

use crate::codec::Reader;
use crate::error::{DecodeError, EncodeError, Result};
use crate::framing::check_complete;
use crate::header::{Header, MsgType, OFP_VERSION};
use crate::multipart::{MultipartReply, MultipartRequest};
use record::expect_end;

/// `OFP_NO_BUFFER`: the packet is not buffered on the switch.
pub const NO_BUFFER: u32 = 0xffff_ffff;

/// A message body, one variant per `ofp_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Error(ErrorMsg),
    /// Arbitrary data the reply must echo.
    EchoRequest(Vec<u8>),
    EchoReply(Vec<u8>),
    Experimenter(Experimenter),
    FeaturesRequest,
    FeaturesReply(SwitchFeatures),
    GetConfigRequest,
    GetConfigReply(SwitchConfig),
    SetConfig(SwitchConfig),
    PacketIn(PacketIn),
    FlowRemoved(FlowRemoved),
    PortStatus(PortStatus),
    PacketOut(PacketOut),
    FlowMod(FlowMod),
    GroupMod(GroupMod),
    PortMod(PortMod),
    TableMod(TableMod),
    MultipartRequest(MultipartRequest),
    MultipartReply(MultipartReply),
    BarrierRequest,
    BarrierReply,
    QueueGetConfigRequest(QueueGetConfigRequest),
    QueueGetConfigReply(QueueGetConfigReply),
    RoleRequest(RoleMsg),
    RoleReply(RoleMsg),
    GetAsyncRequest,
    GetAsyncReply(AsyncConfig),
    SetAsync(AsyncConfig),
    MeterMod(MeterMod),
    /// A message type this codec does not know, body kept raw. A switch
    /// answers these with OFPBRC_BAD_TYPE.
    Unknown {
        msg_type: u8,
        body: Vec<u8>,
    },
}

/// The `ofp_*` structure name of each message body, for error reports.
fn body_name(t: MsgType) -> &'static str {
    match t {
        MsgType::Hello => "ofp_hello",
        MsgType::Error => "ofp_error_msg",
        MsgType::EchoRequest | MsgType::EchoReply => "ofp_echo",
        MsgType::Experimenter => "ofp_experimenter_header",
        MsgType::FeaturesRequest => "ofp_features_request",
        MsgType::FeaturesReply => "ofp_switch_features",
        MsgType::GetConfigRequest => "ofp_get_config_request",
        MsgType::GetConfigReply | MsgType::SetConfig => "ofp_switch_config",
        MsgType::PacketIn => "ofp_packet_in",
        MsgType::FlowRemoved => "ofp_flow_removed",
        MsgType::PortStatus => "ofp_port_status",
        MsgType::PacketOut => "ofp_packet_out",
        MsgType::FlowMod => "ofp_flow_mod",
        MsgType::GroupMod => "ofp_group_mod",
        MsgType::PortMod => "ofp_port_mod",
        MsgType::TableMod => "ofp_table_mod",
        MsgType::MultipartRequest => "ofp_multipart_request",
        MsgType::MultipartReply => "ofp_multipart_reply",
        MsgType::BarrierRequest => "ofp_barrier_request",
        MsgType::BarrierReply => "ofp_barrier_reply",
        MsgType::QueueGetConfigRequest => "ofp_queue_get_config_request",
        MsgType::QueueGetConfigReply => "ofp_queue_get_config_reply",
        MsgType::RoleRequest | MsgType::RoleReply => "ofp_role_request",
        MsgType::GetAsyncRequest => "ofp_get_async_request",
        MsgType::GetAsyncReply | MsgType::SetAsync => "ofp_async_config",
        MsgType::MeterMod => "ofp_meter_mod",
        MsgType::Unknown(_) => "ofp_message",
    }
}

impl Message {
    pub fn msg_type(&self) -> MsgType {
        match self {
            Self::Hello(_) => MsgType::Hello,
            Self::Error(_) => MsgType::Error,
            Self::EchoRequest(_) => MsgType::EchoRequest,
            Self::EchoReply(_) => MsgType::EchoReply,
            Self::Experimenter(_) => MsgType::Experimenter,
            Self::FeaturesRequest => MsgType::FeaturesRequest,
            Self::FeaturesReply(_) => MsgType::FeaturesReply,
            Self::GetConfigRequest => MsgType::GetConfigRequest,
            Self::GetConfigReply(_) => MsgType::GetConfigReply,
            Self::SetConfig(_) => MsgType::SetConfig,
            Self::PacketIn(_) => MsgType::PacketIn,
            Self::FlowRemoved(_) => MsgType::FlowRemoved,
            Self::PortStatus(_) => MsgType::PortStatus,
            Self::PacketOut(_) => MsgType::PacketOut,
            Self::FlowMod(_) => MsgType::FlowMod,
            Self::GroupMod(_) => MsgType::GroupMod,
            Self::PortMod(_) => MsgType::PortMod,
            Self::TableMod(_) => MsgType::TableMod,
            Self::MultipartRequest(_) => MsgType::MultipartRequest,
            Self::MultipartReply(_) => MsgType::MultipartReply,
            Self::BarrierRequest => MsgType::BarrierRequest,
            Self::BarrierReply => MsgType::BarrierReply,
            Self::QueueGetConfigRequest(_) => MsgType::QueueGetConfigRequest,
            Self::QueueGetConfigReply(_) => MsgType::QueueGetConfigReply,
            Self::RoleRequest(_) => MsgType::RoleRequest,
            Self::RoleReply(_) => MsgType::RoleReply,
            Self::GetAsyncRequest => MsgType::GetAsyncRequest,
            Self::GetAsyncReply(_) => MsgType::GetAsyncReply,
            Self::SetAsync(_) => MsgType::SetAsync,
            Self::MeterMod(_) => MsgType::MeterMod,
            Self::Unknown { msg_type, .. } => MsgType::from(*msg_type),
        }
    }

    /// Decodes a body of type `h.msg_type`; every byte must be accounted for.
    fn parse_body(h: &Header, body: &[u8]) -> Result<Self> {
        let t = h.msg_type;
        let r = &mut Reader::new(body, body_name(t));
        let m = match t {
            MsgType::Hello => Self::Hello(Hello::parse(h.version, r)?),
            MsgType::Error => Self::Error(ErrorMsg::parse(r)?),
            MsgType::EchoRequest => Self::EchoRequest(r.take_rest().to_vec()),
            MsgType::EchoReply => Self::EchoReply(r.take_rest().to_vec()),
            MsgType::Experimenter => Self::Experimenter(Experimenter::parse(r)?),
            MsgType::FeaturesRequest => Self::FeaturesRequest,
            MsgType::FeaturesReply => Self::FeaturesReply(SwitchFeatures::parse(r)?),
            MsgType::GetConfigRequest => Self::GetConfigRequest,
            MsgType::GetConfigReply => Self::GetConfigReply(SwitchConfig::parse(r)?),
            MsgType::SetConfig => Self::SetConfig(SwitchConfig::parse(r)?),
            MsgType::PacketIn => Self::PacketIn(PacketIn::parse(r)?),
            MsgType::FlowRemoved => Self::FlowRemoved(FlowRemoved::parse(r)?),
            MsgType::PortStatus => Self::PortStatus(PortStatus::parse(r)?),
            MsgType::PacketOut => Self::PacketOut(PacketOut::parse(r)?),
            MsgType::FlowMod => Self::FlowMod(FlowMod::parse(r)?),
            MsgType::GroupMod => Self::GroupMod(GroupMod::parse(r)?),
            MsgType::PortMod => Self::PortMod(PortMod::parse(r)?),
            MsgType::TableMod => Self::TableMod(TableMod::parse(r)?),
            MsgType::MultipartRequest => Self::MultipartRequest(MultipartRequest::parse(r)?),
            MsgType::MultipartReply => Self::MultipartReply(MultipartReply::parse(r)?),
            MsgType::BarrierRequest => Self::BarrierRequest,
            MsgType::BarrierReply => Self::BarrierReply,
            MsgType::QueueGetConfigRequest => {
                Self::QueueGetConfigRequest(QueueGetConfigRequest::parse(r)?)
            }
            MsgType::QueueGetConfigReply => {
                Self::QueueGetConfigReply(QueueGetConfigReply::parse(r)?)
            }
            MsgType::RoleRequest => Self::RoleRequest(RoleMsg::parse(r)?),
            MsgType::RoleReply => Self::RoleReply(RoleMsg::parse(r)?),
            MsgType::GetAsyncRequest => Self::GetAsyncRequest,
            MsgType::GetAsyncReply => Self::GetAsyncReply(AsyncConfig::parse(r)?),
            MsgType::SetAsync => Self::SetAsync(AsyncConfig::parse(r)?),
            MsgType::MeterMod => Self::MeterMod(MeterMod::parse(r)?),
            MsgType::Unknown(msg_type) => Self::Unknown {
                msg_type,
                body: r.take_rest().to_vec(),
            },
        };
        expect_end(r, usize::from(h.length))?;
        Ok(m)
    }

    /// Appends the body (everything after the header).
    fn emit_body(&self, buf: &mut Vec<u8>) {
        match self {
            Self::Hello(m) => m.emit(buf),
            Self::Error(m) => m.emit(buf),
            Self::EchoRequest(data) | Self::EchoReply(data) => buf.extend_from_slice(data),
            Self::Experimenter(m) => m.emit(buf),
            Self::FeaturesRequest
            | Self::GetConfigRequest
            | Self::BarrierRequest
            | Self::BarrierReply
            | Self::GetAsyncRequest => {}
            Self::FeaturesReply(m) => m.emit(buf),
            Self::GetConfigReply(m) | Self::SetConfig(m) => m.emit(buf),
            Self::PacketIn(m) => m.emit(buf),
            Self::FlowRemoved(m) => m.emit(buf),
            Self::PortStatus(m) => m.emit(buf),
            Self::PacketOut(m) => m.borrowed().emit_body(buf),
            Self::FlowMod(m) => m.emit(buf),
            Self::GroupMod(m) => m.emit(buf),
            Self::PortMod(m) => m.emit(buf),
            Self::TableMod(m) => m.emit(buf),
            Self::MultipartRequest(m) => m.emit(buf),
            Self::MultipartReply(m) => m.emit(buf),
            Self::QueueGetConfigRequest(m) => m.emit(buf),
            Self::QueueGetConfigReply(m) => m.emit(buf),
            Self::RoleRequest(m) | Self::RoleReply(m) => m.emit(buf),
            Self::GetAsyncReply(m) | Self::SetAsync(m) => m.emit(buf),
            Self::MeterMod(m) => m.emit(buf),
            Self::Unknown { body, .. } => buf.extend_from_slice(body),
        }
    }
}

/// A message with its transaction id: one whole OpenFlow message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfpMessage {
    pub xid: u32,
    pub message: Message,
}

impl OfpMessage {
    pub fn new(xid: u32, message: Message) -> Self {
        Self { xid, message }
    }

    /// Decodes exactly one complete message (as [`crate::framing::Framer`]
    /// yields them).
    ///
    /// The version must be 0x04 ([`DecodeError::BadVersion`] otherwise),
    /// except for HELLO, whose version is kept in [`Hello::version`] for
    /// negotiation.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        check_complete(bytes)?;
        let mut r = Reader::new(bytes, "ofp_header");
        let h = Header::parse(&mut r)?;
        if h.version != OFP_VERSION && h.msg_type != MsgType::Hello {
            return Err(DecodeError::BadVersion { version: h.version });
        }
        Ok(Self {
            xid: h.xid,
            message: Message::parse_body(&h, r.rest())?,
        })
    }

    /// Appends the encoded message to `buf` (a connection's reusable send
    /// buffer) with its length patched in. A message longer than its
    /// header can say is refused and `buf` is left as it was, so a stream
    /// never carries a length that lies.
    pub fn try_emit(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = buf.len();
        let len_at = Header::emit_start(self.message.msg_type(), self.xid, buf);
        if let Message::Hello(h) = &self.message {
            buf[start] = h.version;
        }
        self.message.emit_body(buf);
        // Every nested length field (a bucket's, a match's, an action's)
        // lies within the message, so this one check covers them all.
        let len = buf.len() - start;
        if len > usize::from(u16::MAX) {
            buf.truncate(start);
            return Err(EncodeError::TooLong {
                msg_type: self.message.msg_type(),
                len,
            });
        }
        crate::codec::Writer::patch_len16(buf, len_at, start);
        Ok(())
    }

    /// [`Self::try_emit`] for a message known to fit.
    ///
    /// # Panics
    ///
    /// When the message is longer than 65 535 bytes. Use `try_emit` where
    /// the size depends on input (groups with many buckets, PacketOuts with
    /// large frames).
    pub fn emit(&self, buf: &mut Vec<u8>) {
        if let Err(e) = self.try_emit(buf) {
            panic!("{e}");
        }
    }

    /// The encoded message in a fresh buffer; panics like [`Self::emit`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.emit(&mut buf);
        buf
    }
}

/// Hex text to bytes, ignoring whitespace, for test vectors.
#[cfg(test)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(core::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn hello_of_any_version_decodes_for_negotiation() {
        // An OpenFlow 1.0 switch's hello: no elements.
        let m = OfpMessage::parse(&hex("0100000800000005")).unwrap();
        let Message::Hello(h) = &m.message else {
            panic!("{m:?}")
        };
        assert_eq!((h.version, m.xid), (1, 5));
        assert!(!h.accepts(OFP_VERSION));
        assert_eq!(m.to_bytes(), hex("0100000800000005"));
        // Every other message must be 1.3.
        assert_eq!(
            OfpMessage::parse(&hex("0102000800000005")),
            Err(DecodeError::BadVersion { version: 1 })
        );
        assert_eq!(
            OfpMessage::parse(&hex("0502000800000005"))
                .unwrap_err()
                .ofp_error(),
            ErrorCode::BAD_VERSION
        );
    }

    #[test]
    fn default_hello_offers_only_1_3() {
        let m = OfpMessage::new(7, Message::Hello(Hello::default()));
        assert_eq!(m.to_bytes(), hex("04000010 00000007 00010008 00000010"));
    }

    #[test]
    fn unknown_types_round_trip_raw() {
        let wire = hex("041e000c0000002a deadbeef");
        let m = OfpMessage::parse(&wire).unwrap();
        assert_eq!(
            m.message,
            Message::Unknown {
                msg_type: 30,
                body: hex("deadbeef")
            }
        );
        assert_eq!(m.message.msg_type(), MsgType::Unknown(30));
        assert_eq!(m.to_bytes(), wire);
    }

    #[test]
    fn bodies_must_be_used_up() {
        for wire in [
            "0414000900000001 00",
            "0405000c00000001 00000000",
            "0409001000000001 0000ffff00000000",
        ] {
            let err = OfpMessage::parse(&hex(wire)).unwrap_err();
            assert!(
                matches!(err, DecodeError::BadLength { .. }),
                "{wire}: {err}"
            );
            assert_eq!(err.ofp_error(), ErrorCode::BAD_LEN);
        }
    }

    #[test]
    fn header_and_body_must_agree() {
        assert!(matches!(
            OfpMessage::parse(&hex("0402000a00000001 aa")),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            OfpMessage::parse(&hex("0402000800000001 aa")),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            OfpMessage::parse(&hex("0402000400000001")),
            Err(DecodeError::BadLength { .. })
        ));
    }

    /// A group with `n` buckets of 48 bytes (a tunnel key and an output).
    fn group_of(n: u32) -> OfpMessage {
        use crate::action::Action;
        use crate::oxm::OxmField;
        OfpMessage::new(
            3,
            Message::GroupMod(GroupMod {
                command: GroupModCommand::Add,
                group_type: GroupType::All,
                group_id: 1,
                buckets: (0..n)
                    .map(|p| Bucket {
                        weight: 0,
                        watch_port: port_no::ANY,
                        watch_group: group_no::ANY,
                        actions: vec![
                            Action::SetField(OxmField::TunnelId(1001, None)),
                            Action::output(100 + p),
                        ],
                    })
                    .collect(),
            }),
        )
    }

    #[test]
    fn a_message_longer_than_its_length_field_can_say_is_refused() {
        let mut buf = vec![0xaa; 5];
        let err = group_of(1400).try_emit(&mut buf).unwrap_err();
        assert_eq!(
            err,
            EncodeError::TooLong {
                msg_type: MsgType::GroupMod,
                len: 16 + 1400 * 48
            }
        );
        assert!(err.to_string().contains("65535"), "{err}");
        assert_eq!(buf, vec![0xaa; 5], "nothing appended");
        // The largest group that fits still goes out whole.
        let fits = group_of(1364);
        fits.try_emit(&mut buf).unwrap();
        assert_eq!(buf.len() - 5, 16 + 1364 * 48);
        assert_eq!(OfpMessage::parse(&buf[5..]).unwrap(), fits);
    }

    #[test]
    #[should_panic(expected = "exceeds OpenFlow's 65535-byte message limit")]
    fn emit_refuses_loudly_what_cannot_be_encoded() {
        group_of(1400).to_bytes();
    }

    #[test]
    fn emit_appends_to_a_reused_buffer() {
        let mut buf = Vec::new();
        OfpMessage::new(1, Message::EchoRequest(b"ping".to_vec())).emit(&mut buf);
        OfpMessage::new(2, Message::BarrierRequest).emit(&mut buf);
        assert_eq!(buf, hex("0402000c00000001 70696e67 0414000800000002"));
        let echo = OfpMessage::parse(&buf[..12]).unwrap();
        assert_eq!(echo.message, Message::EchoRequest(b"ping".to_vec()));
    }

    #[test]
    fn every_body_without_fields_round_trips() {
        for m in [
            Message::FeaturesRequest,
            Message::GetConfigRequest,
            Message::BarrierRequest,
            Message::BarrierReply,
            Message::GetAsyncRequest,
            Message::EchoReply(Vec::new()),
            Message::SetConfig(SwitchConfig {
                flags: 0,
                miss_send_len: crate::action::OFPCML_NO_BUFFER,
            }),
            Message::RoleRequest(RoleMsg {
                role: ControllerRole::Master,
                generation_id: 3,
            }),
            Message::QueueGetConfigRequest(QueueGetConfigRequest { port: port_no::ANY }),
            Message::Error(ErrorMsg::hello_failed("no common version")),
        ] {
            let wire = OfpMessage::new(9, m.clone()).to_bytes();
            assert_eq!(
                usize::from(u16::from_be_bytes([wire[2], wire[3]])),
                wire.len()
            );
            assert_eq!(OfpMessage::parse(&wire).unwrap().message, m);
        }
    }
}
