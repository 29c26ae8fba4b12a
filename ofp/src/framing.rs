//! Splitting a TCP byte stream into whole OpenFlow messages.

use crate::error::{DecodeError, Result};
use crate::header::HEADER_LEN;

/// Largest message the framer accepts: the header's u16 length caps it.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;

/// Returns the length of the first complete message in `buf`.
///
/// `Ok(None)` means more bytes are needed (including when fewer than 8 are
/// present). A header whose length field is below 8 can never become valid and
/// is a [`DecodeError::BadLength`]: the stream is out of sync and must be closed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if len < HEADER_LEN {
        return Err(DecodeError::bad_len("ofp_header", len));
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Checks that `msg` is one whole message: at least a header, and exactly as
/// long as its length field says. The typed error tells a truncated message
/// (length field beyond what arrived) from trailing garbage.
pub fn check_complete(msg: &[u8]) -> Result<usize> {
    if msg.len() < HEADER_LEN {
        return Err(DecodeError::truncated("ofp_header", HEADER_LEN, msg.len()));
    }
    let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    if len < HEADER_LEN {
        return Err(DecodeError::bad_len("ofp_header", len));
    }
    if len > msg.len() {
        return Err(DecodeError::truncated("ofp_message", len, msg.len()));
    }
    if len < msg.len() {
        return Err(DecodeError::bad_len("ofp_message", len));
    }
    Ok(len)
}

/// Accumulates stream bytes and yields whole messages, reusing one buffer.
///
/// ```
/// let mut f = ofp::framing::Framer::default();
/// f.extend(&[4, 2, 0, 8]);
/// assert!(f.next_message().unwrap().is_none()); // waits for more
/// f.extend(&[0, 0, 0, 1, 4]);
/// assert_eq!(f.next_message().unwrap().unwrap(), &[4, 2, 0, 8, 0, 0, 0, 1]);
/// assert!(f.next_message().unwrap().is_none());
/// ```
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
}

impl Framer {
    pub fn extend(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a message.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>> {
        let avail = &self.buf[self.start..];
        match frame_len(avail)? {
            Some(n) => {
                let s = self.start;
                self.start += n;
                Ok(Some(&self.buf[s..s + n]))
            }
            None => Ok(None),
        }
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_length_field_is_a_typed_error() {
        assert!(matches!(
            frame_len(&[4, 0, 0, 4, 0, 0, 0, 0]),
            Err(DecodeError::BadLength { length: 4, .. })
        ));
    }

    #[test]
    fn length_beyond_arrival_waits_or_is_truncation() {
        let m = [4, 0, 0, 16, 0, 0, 0, 0, 1];
        assert_eq!(frame_len(&m), Ok(None));
        assert!(matches!(
            check_complete(&m),
            Err(DecodeError::Truncated {
                needed: 16,
                available: 9,
                ..
            })
        ));
    }

    #[test]
    fn framer_splits_back_to_back_messages_byte_by_byte() {
        let stream = [4u8, 2, 0, 9, 0, 0, 0, 1, 0xaa, 4, 3, 0, 8, 0, 0, 0, 2];
        let mut f = Framer::default();
        let mut out = Vec::new();
        for b in stream {
            f.extend(&[b]);
            while let Some(m) = f.next_message().unwrap() {
                out.push(m.to_vec());
            }
        }
        assert_eq!(out, vec![stream[..9].to_vec(), stream[9..].to_vec()]);
        assert_eq!(f.pending(), 0);
    }
}
