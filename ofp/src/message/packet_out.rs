//! OFPT_PACKET_OUT (§7.3.7), with a borrowed form that encodes without
//! copying the frame or the actions.

use crate::action::{emit_actions, parse_actions, Action, ActionList};
use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, Result};
use crate::header::{Header, MsgType};
use crate::message::FrameSummary;
use crate::print;
use core::fmt;

/// `ofp_packet_out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    /// A buffered packet to send, or [`super::NO_BUFFER`] to send `data`.
    pub buffer_id: u32,
    /// The port the packet is treated as having arrived on
    /// ([`super::port_no::CONTROLLER`] when it did not).
    pub in_port: u32,
    pub actions: Vec<Action>,
    /// The frame; empty when `buffer_id` names a buffered packet.
    pub data: Vec<u8>,
}

/// A PACKET_OUT whose actions and frame are borrowed: what a controller
/// builds when it forwards a PACKET_IN's frame without copying it.
#[derive(Debug, Clone, Copy)]
pub struct PacketOutRef<'a> {
    pub buffer_id: u32,
    pub in_port: u32,
    pub actions: &'a [Action],
    pub data: &'a [u8],
}

impl PacketOut {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let buffer_id = r.u32()?;
        let in_port = r.u32()?;
        let actions_len = usize::from(r.u16()?);
        r.skip(6)?;
        if actions_len > r.remaining() {
            return Err(DecodeError::bad_len(
                "ofp_packet_out.actions_len",
                actions_len,
            ));
        }
        let actions = parse_actions(r.sub(actions_len, "ofp_packet_out.actions")?)?;
        Ok(Self {
            buffer_id,
            in_port,
            actions,
            data: r.take_rest().to_vec(),
        })
    }

    pub fn borrowed(&self) -> PacketOutRef<'_> {
        PacketOutRef {
            buffer_id: self.buffer_id,
            in_port: self.in_port,
            actions: &self.actions,
            data: &self.data,
        }
    }

    /// Appends the whole message (header included) to `buf`.
    pub fn encode(&self, xid: u32, buf: &mut Vec<u8>) {
        self.borrowed().encode(xid, buf);
    }
}

impl PacketOutRef<'_> {
    pub(crate) fn emit_body(&self, buf: &mut Vec<u8>) {
        buf.put_u32(self.buffer_id);
        buf.put_u32(self.in_port);
        let len_at = buf.reserve_len16();
        buf.put_zeros(6);
        let actions_at = buf.len();
        emit_actions(self.actions, buf);
        buf.patch_len16(len_at, actions_at);
        buf.put_slice(self.data);
    }

    /// Appends the whole message (header included) to `buf` without
    /// allocating beyond `buf`'s own growth.
    pub fn encode(&self, xid: u32, buf: &mut Vec<u8>) {
        let start = buf.len();
        let len_at = Header::emit_start(MsgType::PacketOut, xid, buf);
        self.emit_body(buf);
        buf.patch_len16(len_at, start);
    }
}

impl fmt::Display for PacketOutRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "in_port={} {}",
            print::Port(self.in_port),
            ActionList(self.actions)
        )?;
        if self.buffer_id == super::NO_BUFFER {
            write!(
                f,
                " data_len={}\n{}",
                self.data.len(),
                FrameSummary(self.data)
            )
        } else {
            write!(f, " buffer=0x{:08x}", self.buffer_id)
        }
    }
}

impl fmt::Display for PacketOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.borrowed().fmt(f)
    }
}
