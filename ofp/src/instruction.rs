//! Instructions (OpenFlow 1.3 §7.2.4).
//! INTERFACE STUB: filled in by the match/action work.

use crate::codec::Reader;
use crate::error::Result;

/// One instruction. (Stub: the real type enumerates every instruction.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {}

impl Instruction {
    pub fn parse(_r: &mut Reader<'_>) -> Result<Self> {
        unimplemented!()
    }
    pub fn emit(&self, _buf: &mut Vec<u8>) {
        unimplemented!()
    }
}

/// Reads instructions until the reader is exhausted.
pub fn parse_instructions(_r: Reader<'_>) -> Result<Vec<Instruction>> {
    unimplemented!()
}

pub fn emit_instructions(instructions: &[Instruction], buf: &mut Vec<u8>) {
    for i in instructions {
        i.emit(buf);
    }
}
