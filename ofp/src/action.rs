//! Actions (OpenFlow 1.3 §7.2.5) and the Nicira extension actions.
//! INTERFACE STUB: filled in by the match/action work.

use crate::codec::Reader;
use crate::error::Result;

/// One action. (Stub: the real type enumerates every action.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {}

impl Action {
    /// Reads one action, consuming exactly its length field's bytes.
    pub fn parse(_r: &mut Reader<'_>) -> Result<Self> {
        unimplemented!()
    }
    pub fn emit(&self, _buf: &mut Vec<u8>) {
        unimplemented!()
    }
}

/// Reads actions until the reader is exhausted.
pub fn parse_actions(_r: Reader<'_>) -> Result<Vec<Action>> {
    unimplemented!()
}

pub fn emit_actions(actions: &[Action], buf: &mut Vec<u8>) {
    for a in actions {
        a.emit(buf);
    }
}
