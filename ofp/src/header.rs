//! The 8-byte `ofp_header` and the message type codes.

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, Result};
use core::fmt;

/// Wire version of OpenFlow 1.3.
pub const OFP_VERSION: u8 = 0x04;
/// Length of `ofp_header`.
pub const HEADER_LEN: usize = 8;

macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr => $text:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A code this codec does not know; kept so it round-trips.
            Unknown($repr),
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                match v {
                    $( $value => Self::$variant, )*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> $repr {
                match v {
                    $( $name::$variant => $value, )*
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $name {
            /// The spec's name for this code, if known.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( Self::$variant => Some($text), )*
                    Self::Unknown(_) => None,
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "0x{:x}", <$repr>::from(*self)),
                }
            }
        }
    };
}
pub(crate) use open_enum;

open_enum! {
    /// `ofp_type`.
    pub enum MsgType: u8 {
        Hello = 0 => "OFPT_HELLO",
        Error = 1 => "OFPT_ERROR",
        EchoRequest = 2 => "OFPT_ECHO_REQUEST",
        EchoReply = 3 => "OFPT_ECHO_REPLY",
        Experimenter = 4 => "OFPT_EXPERIMENTER",
        FeaturesRequest = 5 => "OFPT_FEATURES_REQUEST",
        FeaturesReply = 6 => "OFPT_FEATURES_REPLY",
        GetConfigRequest = 7 => "OFPT_GET_CONFIG_REQUEST",
        GetConfigReply = 8 => "OFPT_GET_CONFIG_REPLY",
        SetConfig = 9 => "OFPT_SET_CONFIG",
        PacketIn = 10 => "OFPT_PACKET_IN",
        FlowRemoved = 11 => "OFPT_FLOW_REMOVED",
        PortStatus = 12 => "OFPT_PORT_STATUS",
        PacketOut = 13 => "OFPT_PACKET_OUT",
        FlowMod = 14 => "OFPT_FLOW_MOD",
        GroupMod = 15 => "OFPT_GROUP_MOD",
        PortMod = 16 => "OFPT_PORT_MOD",
        TableMod = 17 => "OFPT_TABLE_MOD",
        MultipartRequest = 18 => "OFPT_MULTIPART_REQUEST",
        MultipartReply = 19 => "OFPT_MULTIPART_REPLY",
        BarrierRequest = 20 => "OFPT_BARRIER_REQUEST",
        BarrierReply = 21 => "OFPT_BARRIER_REPLY",
        QueueGetConfigRequest = 22 => "OFPT_QUEUE_GET_CONFIG_REQUEST",
        QueueGetConfigReply = 23 => "OFPT_QUEUE_GET_CONFIG_REPLY",
        RoleRequest = 24 => "OFPT_ROLE_REQUEST",
        RoleReply = 25 => "OFPT_ROLE_REPLY",
        GetAsyncRequest = 26 => "OFPT_GET_ASYNC_REQUEST",
        GetAsyncReply = 27 => "OFPT_GET_ASYNC_REPLY",
        SetAsync = 28 => "OFPT_SET_ASYNC",
        MeterMod = 29 => "OFPT_METER_MOD",
    }
}

/// A zero-copy view of an `ofp_header` at the start of a buffer.
///
/// [`HeaderView::new_checked`] verifies the buffer holds 8 bytes; after that
/// no accessor can panic.
#[derive(Debug, Clone, Copy)]
pub struct HeaderView<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> HeaderView<T> {
    pub fn new_checked(buf: T) -> Result<Self> {
        let n = buf.as_ref().len();
        if n < HEADER_LEN {
            return Err(DecodeError::truncated("ofp_header", HEADER_LEN, n));
        }
        Ok(Self { buf })
    }
    pub fn version(&self) -> u8 {
        self.buf.as_ref()[0]
    }
    pub fn msg_type(&self) -> MsgType {
        MsgType::from(self.buf.as_ref()[1])
    }
    pub fn length(&self) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }
    pub fn xid(&self) -> u32 {
        let b = self.buf.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }
    /// The bytes after the header, up to the header's length (or the end of
    /// the buffer if it is shorter).
    pub fn body(&self) -> &[u8] {
        let b = self.buf.as_ref();
        let end = usize::from(self.length()).clamp(HEADER_LEN, b.len());
        &b[HEADER_LEN..end]
    }
}

/// The decoded `ofp_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub msg_type: MsgType,
    pub length: u16,
    pub xid: u32,
}

impl Header {
    pub fn parse(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            version: r.u8()?,
            msg_type: MsgType::from(r.u8()?),
            length: r.u16()?,
            xid: r.u32()?,
        })
    }

    /// Writes a header with a zero length and returns the offset of the length
    /// field, to be patched once the body is written.
    pub fn emit_start(msg_type: MsgType, xid: u32, buf: &mut Vec<u8>) -> usize {
        buf.put_u8(OFP_VERSION);
        buf.put_u8(msg_type.into());
        let len_at = buf.reserve_len16();
        buf.put_u32(xid);
        len_at
    }
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (OF1.3) (xid=0x{:x})", self.msg_type, self.xid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_round_trip_and_print_in_hex() {
        let t = MsgType::from(0x42);
        assert_eq!(t, MsgType::Unknown(0x42));
        assert_eq!(u8::from(t), 0x42);
        assert_eq!(t.to_string(), "0x42");
        assert_eq!(MsgType::from(14).to_string(), "OFPT_FLOW_MOD");
    }

    #[test]
    fn header_view_reads_fields() {
        let h = HeaderView::new_checked([4u8, 10, 0, 12, 0, 0, 0, 7, 1, 2, 3, 4]).unwrap();
        assert_eq!(
            (h.version(), h.msg_type(), h.length(), h.xid()),
            (4, MsgType::PacketIn, 12, 7)
        );
        assert_eq!(h.body(), &[1, 2, 3, 4]);
        assert!(HeaderView::new_checked([4u8, 0, 0]).is_err());
    }
}
