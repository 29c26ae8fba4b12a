//! Every OpenFlow 1.3 message. INTERFACE STUB: filled in by the message work.

/// A message body. (Stub.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {}

/// A message with its transaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfpMessage {
    pub xid: u32,
    pub message: Message,
}
