//! Decode errors, split by who is at fault, each mapped to the OFPT_ERROR a
//! controller sends back to the peer that produced the bytes.

use core::fmt;

/// `ofp_error_type` values (OpenFlow 1.3.5 §7.4.4).
pub mod error_type {
    pub const HELLO_FAILED: u16 = 0;
    pub const BAD_REQUEST: u16 = 1;
    pub const BAD_ACTION: u16 = 2;
    pub const BAD_INSTRUCTION: u16 = 3;
    pub const BAD_MATCH: u16 = 4;
    pub const FLOW_MOD_FAILED: u16 = 5;
    pub const GROUP_MOD_FAILED: u16 = 6;
    pub const PORT_MOD_FAILED: u16 = 7;
    pub const TABLE_MOD_FAILED: u16 = 8;
    pub const QUEUE_OP_FAILED: u16 = 9;
    pub const SWITCH_CONFIG_FAILED: u16 = 10;
    pub const ROLE_REQUEST_FAILED: u16 = 11;
    pub const METER_MOD_FAILED: u16 = 12;
    pub const TABLE_FEATURES_FAILED: u16 = 13;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// An OFPT_ERROR (type, code) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode {
    pub kind: u16,
    pub code: u16,
}

impl ErrorCode {
    pub const fn new(kind: u16, code: u16) -> Self {
        Self { kind, code }
    }
    pub const HELLO_INCOMPATIBLE: Self = Self::new(error_type::HELLO_FAILED, 0);
    pub const BAD_VERSION: Self = Self::new(error_type::BAD_REQUEST, 0);
    pub const BAD_TYPE: Self = Self::new(error_type::BAD_REQUEST, 1);
    pub const BAD_MULTIPART: Self = Self::new(error_type::BAD_REQUEST, 2);
    pub const BAD_EXPERIMENTER: Self = Self::new(error_type::BAD_REQUEST, 3);
    pub const BAD_EXP_TYPE: Self = Self::new(error_type::BAD_REQUEST, 4);
    pub const BAD_LEN: Self = Self::new(error_type::BAD_REQUEST, 6);
    pub const BAD_PORT: Self = Self::new(error_type::BAD_REQUEST, 11);
    pub const BAD_PACKET: Self = Self::new(error_type::BAD_REQUEST, 12);
    pub const MULTIPART_BUFFER_OVERFLOW: Self = Self::new(error_type::BAD_REQUEST, 13);
    pub const ACTION_BAD_TYPE: Self = Self::new(error_type::BAD_ACTION, 0);
    pub const ACTION_BAD_LEN: Self = Self::new(error_type::BAD_ACTION, 1);
    pub const ACTION_BAD_ARGUMENT: Self = Self::new(error_type::BAD_ACTION, 5);
    pub const ACTION_BAD_SET_LEN: Self = Self::new(error_type::BAD_ACTION, 14);
    pub const ACTION_BAD_SET_ARGUMENT: Self = Self::new(error_type::BAD_ACTION, 15);
    pub const INSTRUCTION_UNKNOWN: Self = Self::new(error_type::BAD_INSTRUCTION, 0);
    pub const INSTRUCTION_BAD_LEN: Self = Self::new(error_type::BAD_INSTRUCTION, 7);
    pub const MATCH_BAD_TYPE: Self = Self::new(error_type::BAD_MATCH, 0);
    pub const MATCH_BAD_LEN: Self = Self::new(error_type::BAD_MATCH, 1);
    pub const MATCH_BAD_FIELD: Self = Self::new(error_type::BAD_MATCH, 6);
    pub const MATCH_BAD_VALUE: Self = Self::new(error_type::BAD_MATCH, 7);
    pub const MATCH_BAD_MASK: Self = Self::new(error_type::BAD_MATCH, 8);
    pub const MATCH_BAD_PREREQ: Self = Self::new(error_type::BAD_MATCH, 9);
    pub const MATCH_DUP_FIELD: Self = Self::new(error_type::BAD_MATCH, 10);
    pub const FLOW_MOD_BAD_COMMAND: Self = Self::new(error_type::FLOW_MOD_FAILED, 6);
    pub const FLOW_MOD_BAD_FLAGS: Self = Self::new(error_type::FLOW_MOD_FAILED, 7);
    pub const GROUP_MOD_BAD_COMMAND: Self = Self::new(error_type::GROUP_MOD_FAILED, 11);
    pub const GROUP_MOD_BAD_TYPE: Self = Self::new(error_type::GROUP_MOD_FAILED, 10);
    pub const METER_MOD_BAD_COMMAND: Self = Self::new(error_type::METER_MOD_FAILED, 4);
    pub const METER_MOD_BAD_FLAGS: Self = Self::new(error_type::METER_MOD_FAILED, 5);
    pub const METER_MOD_BAD_RATE: Self = Self::new(error_type::METER_MOD_FAILED, 6);
    pub const METER_MOD_BAD_BURST: Self = Self::new(error_type::METER_MOD_FAILED, 7);
    pub const METER_MOD_BAD_BAND: Self = Self::new(error_type::METER_MOD_FAILED, 8);
    pub const METER_MOD_BAD_BAND_VALUE: Self = Self::new(error_type::METER_MOD_FAILED, 9);
    pub const TABLE_FEATURES_BAD_LEN: Self = Self::new(error_type::TABLE_FEATURES_FAILED, 3);
    pub const TABLE_FEATURES_BAD_TYPE: Self = Self::new(error_type::TABLE_FEATURES_FAILED, 2);
}

/// Who is at fault for a decode failure.
///
/// Every variant names the structure being read (`at`) so that a log line
/// tells the reader which part of which message was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes ended before a structure whose length was already known.
    /// On a stream this means "wait for more"; on a complete message it is
    /// a peer that sent a short message.
    Truncated {
        at: &'static str,
        needed: usize,
        available: usize,
    },
    /// A length field is below the structure's minimum, not the multiple it
    /// must be, or points past the enclosing structure.
    BadLength {
        at: &'static str,
        length: usize,
        code: ErrorCode,
    },
    /// The message is not OpenFlow 1.3 (wire version 0x04).
    BadVersion { version: u8 },
    /// A field holds a value the spec forbids (for example a meter band of
    /// type 0); `code` is what the peer is told.
    BadValue {
        at: &'static str,
        value: u64,
        code: ErrorCode,
    },
}

impl DecodeError {
    pub(crate) fn truncated(at: &'static str, needed: usize, available: usize) -> Self {
        Self::Truncated {
            at,
            needed,
            available,
        }
    }

    pub(crate) fn bad_len(at: &'static str, length: usize) -> Self {
        Self::BadLength {
            at,
            length,
            code: ErrorCode::BAD_LEN,
        }
    }

    pub(crate) fn bad_len_code(at: &'static str, length: usize, code: ErrorCode) -> Self {
        Self::BadLength { at, length, code }
    }

    pub(crate) fn bad_value(at: &'static str, value: u64, code: ErrorCode) -> Self {
        Self::BadValue { at, value, code }
    }

    /// The OFPT_ERROR (type, code) a controller sends back for this failure.
    pub fn ofp_error(&self) -> ErrorCode {
        match self {
            Self::Truncated { .. } => ErrorCode::BAD_LEN,
            Self::BadLength { code, .. } | Self::BadValue { code, .. } => *code,
            Self::BadVersion { .. } => ErrorCode::BAD_VERSION,
        }
    }

    /// The structure that failed to decode.
    pub fn at(&self) -> &'static str {
        match self {
            Self::Truncated { at, .. } | Self::BadLength { at, .. } | Self::BadValue { at, .. } => {
                at
            }
            Self::BadVersion { .. } => "ofp_header",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated {
                at,
                needed,
                available,
            } => write!(
                f,
                "{at}: truncated, needs {needed} bytes but only {available} are present"
            ),
            Self::BadLength { at, length, .. } => {
                write!(f, "{at}: length {length} is invalid for this structure")
            }
            Self::BadVersion { version } => write!(
                f,
                "OpenFlow version 0x{version:02x} is not supported; configure the switch for \
                 OpenFlow13 (protocols=OpenFlow13)"
            ),
            Self::BadValue { at, value, .. } => {
                write!(f, "{at}: value {value} (0x{value:x}) is not allowed here")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a message could not be encoded: the caller asked for something the
/// wire cannot carry (the API-misuse side of errors by fault; decode errors
/// are the peer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The message would be `len` bytes, more than the 65 535 its header's
    /// 16-bit length can say. Nothing was appended.
    TooLong {
        msg_type: crate::MsgType,
        len: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { msg_type, len } => write!(
                f,
                "{msg_type} of {len} bytes exceeds OpenFlow's 65535-byte message limit; \
                 split it into smaller messages"
            ),
        }
    }
}

impl std::error::Error for EncodeError {}

pub type Result<T, E = DecodeError> = core::result::Result<T, E>;
