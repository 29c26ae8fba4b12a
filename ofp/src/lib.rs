//! OpenFlow 1.3 (wire version 0x04) codec for Iris, with the Nicira
//! extensions Open vSwitch needs. No I/O: bytes in, typed values out, and back.
//!
//! Layout:
//! - [`header`] and [`framing`]: the 8-byte header and splitting a stream.
//! - [`oxm`], [`action`], [`instruction`]: flow match fields (OXM and the
//!   NXM/tunnel fields), actions (including Nicira reg move/load and
//!   resubmit), and instructions.
//! - [`message`] and [`multipart`]: every message type 0–29 and every
//!   multipart request/reply body.
//! - [`packet`]: Ethernet / 802.1Q / ARP / RARP frames carried in PacketIn and
//!   PacketOut.
//! - [`error`]: decode errors split by fault, each mapped to the OFPT_ERROR
//!   (type, code) a controller sends back.
//!
//! Decoding either goes through the owned representation ([`message::Message`])
//! or, on hot paths, zero-copy views such as [`header::HeaderView`] and
//! [`message::PacketInView`]. Encoding appends to a caller-owned `Vec<u8>` so a
//! connection reuses one buffer for everything it sends.

pub mod action;
pub mod codec;
pub mod error;
pub mod framing;
pub mod header;
pub mod instruction;
pub mod message;
pub mod multipart;
pub mod oxm;
pub mod packet;
mod print;

pub use error::{DecodeError, EncodeError, ErrorCode};
pub use header::{MsgType, OFP_VERSION};
pub use message::{Message, OfpMessage};
