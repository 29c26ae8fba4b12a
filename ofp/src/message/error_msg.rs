//! OFPT_ERROR (§7.5.4): the standard form and the experimenter form, with
//! the spec's names for every type and code.

use crate::codec::{Hex, Reader, Writer};
use crate::error::{error_type, DecodeError, ErrorCode, Result};
use crate::header::HeaderView;
use core::fmt;

/// How much of an offending message an error carries back (§7.5.4: "at least
/// the first 64 bytes").
pub const ERROR_DATA_LEN: usize = 64;

/// OFPT_ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorMsg {
    /// A (type, code) from the spec. `data` is ASCII text for HELLO_FAILED
    /// and the start of the offending message otherwise.
    Standard { code: ErrorCode, data: Vec<u8> },
    /// `ofp_error_experimenter_msg`: type OFPET_EXPERIMENTER (0xffff).
    Experimenter {
        exp_type: u16,
        experimenter: u32,
        data: Vec<u8>,
    },
}

impl ErrorMsg {
    /// The error a controller sends back for a message it could not decode:
    /// the error's code and the first [`ERROR_DATA_LEN`] bytes of the message.
    pub fn for_decode_error(err: &DecodeError, offending: &[u8]) -> Self {
        Self::Standard {
            code: err.ofp_error(),
            data: offending[..offending.len().min(ERROR_DATA_LEN)].to_vec(),
        }
    }

    /// OFPET_HELLO_FAILED / OFPHFC_INCOMPATIBLE with an explanation for the
    /// peer's operator.
    pub fn hello_failed(text: &str) -> Self {
        Self::Standard {
            code: ErrorCode::HELLO_INCOMPATIBLE,
            data: text.as_bytes().to_vec(),
        }
    }

    pub fn data(&self) -> &[u8] {
        match self {
            Self::Standard { data, .. } | Self::Experimenter { data, .. } => data,
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let kind = r.u16()?;
        let code = r.u16()?;
        if kind == error_type::EXPERIMENTER {
            let experimenter = r.u32()?;
            Ok(Self::Experimenter {
                exp_type: code,
                experimenter,
                data: r.take_rest().to_vec(),
            })
        } else {
            Ok(Self::Standard {
                code: ErrorCode::new(kind, code),
                data: r.take_rest().to_vec(),
            })
        }
    }

    pub(crate) fn emit(&self, buf: &mut Vec<u8>) {
        match self {
            Self::Standard { code, data } => {
                buf.put_u16(code.kind);
                buf.put_u16(code.code);
                buf.put_slice(data);
            }
            Self::Experimenter {
                exp_type,
                experimenter,
                data,
            } => {
                buf.put_u16(error_type::EXPERIMENTER);
                buf.put_u16(*exp_type);
                buf.put_u32(*experimenter);
                buf.put_slice(data);
            }
        }
    }
}

/// The spec's name for an `ofp_error_type`.
pub fn error_type_name(kind: u16) -> Option<&'static str> {
    Some(match kind {
        0 => "OFPET_HELLO_FAILED",
        1 => "OFPET_BAD_REQUEST",
        2 => "OFPET_BAD_ACTION",
        3 => "OFPET_BAD_INSTRUCTION",
        4 => "OFPET_BAD_MATCH",
        5 => "OFPET_FLOW_MOD_FAILED",
        6 => "OFPET_GROUP_MOD_FAILED",
        7 => "OFPET_PORT_MOD_FAILED",
        8 => "OFPET_TABLE_MOD_FAILED",
        9 => "OFPET_QUEUE_OP_FAILED",
        10 => "OFPET_SWITCH_CONFIG_FAILED",
        11 => "OFPET_ROLE_REQUEST_FAILED",
        12 => "OFPET_METER_MOD_FAILED",
        13 => "OFPET_TABLE_FEATURES_FAILED",
        0xffff => "OFPET_EXPERIMENTER",
        _ => return None,
    })
}

/// The spec's name for a code within an `ofp_error_type`.
pub fn error_code_name(code: ErrorCode) -> Option<&'static str> {
    let names: &[&str] = match code.kind {
        0 => &["OFPHFC_INCOMPATIBLE", "OFPHFC_EPERM"],
        1 => &[
            "OFPBRC_BAD_VERSION",
            "OFPBRC_BAD_TYPE",
            "OFPBRC_BAD_MULTIPART",
            "OFPBRC_BAD_EXPERIMENTER",
            "OFPBRC_BAD_EXP_TYPE",
            "OFPBRC_EPERM",
            "OFPBRC_BAD_LEN",
            "OFPBRC_BUFFER_EMPTY",
            "OFPBRC_BUFFER_UNKNOWN",
            "OFPBRC_BAD_TABLE_ID",
            "OFPBRC_IS_SLAVE",
            "OFPBRC_BAD_PORT",
            "OFPBRC_BAD_PACKET",
            "OFPBRC_MULTIPART_BUFFER_OVERFLOW",
        ],
        2 => &[
            "OFPBAC_BAD_TYPE",
            "OFPBAC_BAD_LEN",
            "OFPBAC_BAD_EXPERIMENTER",
            "OFPBAC_BAD_EXP_TYPE",
            "OFPBAC_BAD_OUT_PORT",
            "OFPBAC_BAD_ARGUMENT",
            "OFPBAC_EPERM",
            "OFPBAC_TOO_MANY",
            "OFPBAC_BAD_QUEUE",
            "OFPBAC_BAD_OUT_GROUP",
            "OFPBAC_MATCH_INCONSISTENT",
            "OFPBAC_UNSUPPORTED_ORDER",
            "OFPBAC_BAD_TAG",
            "OFPBAC_BAD_SET_TYPE",
            "OFPBAC_BAD_SET_LEN",
            "OFPBAC_BAD_SET_ARGUMENT",
        ],
        3 => &[
            "OFPBIC_UNKNOWN_INST",
            "OFPBIC_UNSUP_INST",
            "OFPBIC_BAD_TABLE_ID",
            "OFPBIC_UNSUP_METADATA",
            "OFPBIC_UNSUP_METADATA_MASK",
            "OFPBIC_BAD_EXPERIMENTER",
            "OFPBIC_BAD_EXP_TYPE",
            "OFPBIC_BAD_LEN",
            "OFPBIC_EPERM",
        ],
        4 => &[
            "OFPBMC_BAD_TYPE",
            "OFPBMC_BAD_LEN",
            "OFPBMC_BAD_TAG",
            "OFPBMC_BAD_DL_ADDR_MASK",
            "OFPBMC_BAD_NW_ADDR_MASK",
            "OFPBMC_BAD_WILDCARDS",
            "OFPBMC_BAD_FIELD",
            "OFPBMC_BAD_VALUE",
            "OFPBMC_BAD_MASK",
            "OFPBMC_BAD_PREREQ",
            "OFPBMC_DUP_FIELD",
            "OFPBMC_EPERM",
        ],
        5 => &[
            "OFPFMFC_UNKNOWN",
            "OFPFMFC_TABLE_FULL",
            "OFPFMFC_BAD_TABLE_ID",
            "OFPFMFC_OVERLAP",
            "OFPFMFC_EPERM",
            "OFPFMFC_BAD_TIMEOUT",
            "OFPFMFC_BAD_COMMAND",
            "OFPFMFC_BAD_FLAGS",
        ],
        6 => &[
            "OFPGMFC_GROUP_EXISTS",
            "OFPGMFC_INVALID_GROUP",
            "OFPGMFC_WEIGHT_UNSUPPORTED",
            "OFPGMFC_OUT_OF_GROUPS",
            "OFPGMFC_OUT_OF_BUCKETS",
            "OFPGMFC_CHAINING_UNSUPPORTED",
            "OFPGMFC_WATCH_UNSUPPORTED",
            "OFPGMFC_LOOP",
            "OFPGMFC_UNKNOWN_GROUP",
            "OFPGMFC_CHAINED_GROUP",
            "OFPGMFC_BAD_TYPE",
            "OFPGMFC_BAD_COMMAND",
            "OFPGMFC_BAD_BUCKET",
            "OFPGMFC_BAD_WATCH",
            "OFPGMFC_EPERM",
        ],
        7 => &[
            "OFPPMFC_BAD_PORT",
            "OFPPMFC_BAD_HW_ADDR",
            "OFPPMFC_BAD_CONFIG",
            "OFPPMFC_BAD_ADVERTISE",
            "OFPPMFC_EPERM",
        ],
        8 => &["OFPTMFC_BAD_TABLE", "OFPTMFC_BAD_CONFIG", "OFPTMFC_EPERM"],
        9 => &["OFPQOFC_BAD_PORT", "OFPQOFC_BAD_QUEUE", "OFPQOFC_EPERM"],
        10 => &["OFPSCFC_BAD_FLAGS", "OFPSCFC_BAD_LEN", "OFPSCFC_EPERM"],
        11 => &["OFPRRFC_STALE", "OFPRRFC_UNSUP", "OFPRRFC_BAD_ROLE"],
        12 => &[
            "OFPMMFC_UNKNOWN",
            "OFPMMFC_METER_EXISTS",
            "OFPMMFC_INVALID_METER",
            "OFPMMFC_UNKNOWN_METER",
            "OFPMMFC_BAD_COMMAND",
            "OFPMMFC_BAD_FLAGS",
            "OFPMMFC_BAD_RATE",
            "OFPMMFC_BAD_BURST",
            "OFPMMFC_BAD_BAND",
            "OFPMMFC_BAD_BAND_VALUE",
            "OFPMMFC_OUT_OF_METERS",
            "OFPMMFC_OUT_OF_BANDS",
        ],
        13 => &[
            "OFPTFFC_BAD_TABLE",
            "OFPTFFC_BAD_METADATA",
            "OFPTFFC_BAD_TYPE",
            "OFPTFFC_BAD_LEN",
            "OFPTFFC_BAD_ARGUMENT",
            "OFPTFFC_EPERM",
        ],
        _ => &[],
    };
    names.get(usize::from(code.code)).copied()
}

/// Prints an error code as `OFPET_BAD_REQUEST OFPBRC_BAD_LEN`, falling back
/// to numbers for codes the spec does not name.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCodeName(pub ErrorCode);

impl fmt::Display for ErrorCodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match error_type_name(self.0.kind) {
            Some(t) => f.write_str(t)?,
            None => write!(f, "type={}", self.0.kind)?,
        }
        match error_code_name(self.0) {
            Some(c) => write!(f, " {c}"),
            None => write!(f, " code={}", self.0.code),
        }
    }
}

impl fmt::Display for ErrorMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Standard { code, data } => {
                write!(f, "{}", ErrorCodeName(*code))?;
                if code.kind == error_type::HELLO_FAILED {
                    return write!(f, "\n{}", String::from_utf8_lossy(data));
                }
                // Most errors echo the start of the offending message; naming
                // it tells the reader which request failed.
                match HeaderView::new_checked(data.as_slice()) {
                    Ok(h) => write!(
                        f,
                        "\n(offending {} xid=0x{:x}, {} of {} bytes)",
                        h.msg_type(),
                        h.xid(),
                        data.len(),
                        h.length()
                    ),
                    Err(_) if data.is_empty() => Ok(()),
                    Err(_) => write!(f, "\ndata: {}", Hex(data)),
                }
            }
            Self::Experimenter {
                exp_type,
                experimenter,
                data,
            } => {
                write!(
                    f,
                    "OFPET_EXPERIMENTER experimenter=0x{experimenter:08x} exp_type={exp_type}"
                )?;
                if !data.is_empty() {
                    write!(f, " data: {}", Hex(data))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &[u8]) -> ErrorMsg {
        ErrorMsg::parse(&mut Reader::new(body, "ofp_error_msg")).unwrap()
    }

    fn emit(e: &ErrorMsg) -> Vec<u8> {
        let mut v = Vec::new();
        e.emit(&mut v);
        v
    }

    #[test]
    fn standard_error_names_its_code_and_the_offending_message() {
        let body = [0, 4, 0, 6, 4, 14, 0, 8, 0, 0, 0, 0x2a];
        let e = parse(&body);
        assert_eq!(
            e,
            ErrorMsg::Standard {
                code: ErrorCode::MATCH_BAD_FIELD,
                data: body[4..].to_vec()
            }
        );
        assert_eq!(
            e.to_string(),
            "OFPET_BAD_MATCH OFPBMC_BAD_FIELD\n(offending OFPT_FLOW_MOD xid=0x2a, 8 of 8 bytes)"
        );
        assert_eq!(emit(&e), body);
    }

    #[test]
    fn experimenter_form_keeps_exp_type_and_id() {
        let body = [0xff, 0xff, 0xea, 0x60, 0, 0x0f, 0x42, 0x3f, b'h', b'i'];
        let e = parse(&body);
        assert_eq!(
            e,
            ErrorMsg::Experimenter {
                exp_type: 60000,
                experimenter: 999_999,
                data: b"hi".to_vec()
            }
        );
        assert_eq!(emit(&e), body);
        assert_eq!(
            e.to_string(),
            "OFPET_EXPERIMENTER experimenter=0x000f423f exp_type=60000 data: 6869"
        );
    }

    #[test]
    fn hello_failed_carries_text() {
        let e = ErrorMsg::hello_failed("need OpenFlow13");
        assert_eq!(
            e.to_string(),
            "OFPET_HELLO_FAILED OFPHFC_INCOMPATIBLE\nneed OpenFlow13"
        );
        assert_eq!(parse(&emit(&e)), e);
    }

    #[test]
    fn decode_errors_become_bad_request_with_64_bytes() {
        let err = DecodeError::BadVersion { version: 1 };
        let e = ErrorMsg::for_decode_error(&err, &[7; 100]);
        assert_eq!(
            e,
            ErrorMsg::Standard {
                code: ErrorCode::BAD_VERSION,
                data: vec![7; 64]
            }
        );
        assert_eq!(
            ErrorCodeName(ErrorCode::new(12, 8)).to_string(),
            "OFPET_METER_MOD_FAILED OFPMMFC_BAD_BAND"
        );
        assert_eq!(
            ErrorCodeName(ErrorCode::new(99, 1)).to_string(),
            "type=99 code=1"
        );
    }
}
