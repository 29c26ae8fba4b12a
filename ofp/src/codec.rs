//! Bounds-checked reading and length-patching writing shared by every
//! structure in the codec.
//!
//! A [`Reader`] never panics: every accessor checks the remaining length once
//! and returns [`DecodeError::Truncated`] naming the structure being read.

use crate::error::{DecodeError, ErrorCode, Result};

/// A cursor over a borrowed byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    at: &'static str,
}

impl<'a> Reader<'a> {
    /// `at` names the structure for error messages.
    pub fn new(buf: &'a [u8], at: &'static str) -> Self {
        Self { buf, pos: 0, at }
    }

    /// Offset of the cursor from the start of this reader's slice.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The bytes not read yet, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Renames the structure reported in errors.
    pub fn set_context(&mut self, at: &'static str) {
        self.at = at;
    }

    pub fn context(&self) -> &'static str {
        self.at
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(DecodeError::truncated(self.at, n, self.remaining()));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Splits off the next `n` bytes as a reader of their own, named `at`.
    pub fn sub(&mut self, n: usize, at: &'static str) -> Result<Reader<'a>> {
        Ok(Reader::new(self.take(n)?, at))
    }

    pub fn take_rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.take(n).map(|_| ())
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Peeks a big-endian u16 at `offset` from the cursor without consuming.
    pub fn peek_u16(&self, offset: usize) -> Result<u16> {
        let start = self.pos + offset;
        match self.buf.get(start..start + 2) {
            Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
            None => Err(DecodeError::truncated(
                self.at,
                offset + 2,
                self.remaining(),
            )),
        }
    }

    /// Peeks a big-endian u32 at `offset` from the cursor without consuming.
    pub fn peek_u32(&self, offset: usize) -> Result<u32> {
        let start = self.pos + offset;
        match self.buf.get(start..start + 4) {
            Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            None => Err(DecodeError::truncated(
                self.at,
                offset + 4,
                self.remaining(),
            )),
        }
    }

    /// Splits off the next element framed as `type: u16, len: u16, ...` in
    /// which `len` counts the 4-byte header and must be a multiple of 8
    /// (actions, instructions). Returns the type, the length and a reader,
    /// named `at`, over the element after its header. A length that is too
    /// short, not a multiple of 8 or past the end is `BadLength` with `code`.
    pub fn tlv8(&mut self, at: &'static str, code: ErrorCode) -> Result<(u16, usize, Reader<'a>)> {
        let bad = |len: usize| DecodeError::bad_len_code(at, len, code);
        let kind = self.peek_u16(0).map_err(|_| bad(self.remaining()))?;
        let len = usize::from(self.peek_u16(2).map_err(|_| bad(self.remaining()))?);
        if len < 8 || len % 8 != 0 || len > self.remaining() {
            return Err(bad(len));
        }
        let mut body = self.sub(len, at)?;
        body.skip(4)?;
        Ok((kind, len, body))
    }

    /// A fixed-width, NUL-padded name field (port names, table names).
    pub fn name<const N: usize>(&mut self) -> Result<Name<N>> {
        Ok(Name(self.array::<N>()?))
    }
}

/// Appends big-endian values to a byte vector; the codec's only writer.
pub trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_slice(&mut self, v: &[u8]);
    fn put_zeros(&mut self, n: usize);
    /// Reserves a u16 length field and returns its offset for [`Writer::patch_len16`].
    fn reserve_len16(&mut self) -> usize;
    /// Writes `len() - start` into the u16 field at `field`.
    fn patch_len16(&mut self, field: usize, start: usize);
    /// Pads with zeros up to the next multiple of 8 counted from `start`.
    fn pad_to_8(&mut self, start: usize);
}

impl Writer for Vec<u8> {
    #[inline]
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    #[inline]
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    #[inline]
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    #[inline]
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    #[inline]
    fn put_slice(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
    #[inline]
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
    #[inline]
    fn reserve_len16(&mut self) -> usize {
        let at = self.len();
        self.extend_from_slice(&[0, 0]);
        at
    }
    #[inline]
    fn patch_len16(&mut self, field: usize, start: usize) {
        // A structure this long lies in a message longer still, which
        // `OfpMessage::try_emit` refuses whole; saturating only keeps a
        // structure encoded on its own from wrapping.
        let len = u16::try_from(self.len() - start).unwrap_or(u16::MAX);
        self[field..field + 2].copy_from_slice(&len.to_be_bytes());
    }
    #[inline]
    fn pad_to_8(&mut self, start: usize) {
        let used = self.len() - start;
        self.put_zeros((8 - used % 8) % 8);
    }
}

/// A fixed-width NUL-padded name. Keeps the exact bytes so re-encoding is
/// byte-identical even when the padding is not all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name<const N: usize>(pub [u8; N]);

impl<const N: usize> Name<N> {
    /// Builds a name from text, truncating to leave room for the terminating NUL.
    pub fn new(s: &str) -> Self {
        let mut a = [0u8; N];
        let b = s.as_bytes();
        let n = b.len().min(N.saturating_sub(1));
        a[..n].copy_from_slice(&b[..n]);
        Self(a)
    }

    /// The bytes up to the first NUL.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(N);
        &self.0[..end]
    }

    /// The name as text; invalid UTF-8 is replaced, never rejected.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

impl<const N: usize> Default for Name<N> {
    fn default() -> Self {
        Self([0; N])
    }
}

impl<const N: usize> core::fmt::Debug for Name<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

impl<const N: usize> core::fmt::Display for Name<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

/// Prints bytes as lowercase hex, the way unknown content is shown.
pub struct Hex<'a>(pub &'a [u8]);

impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl core::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "0x{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_with_context() {
        let mut r = Reader::new(&[1, 2, 3], "ofp_thing");
        assert_eq!(r.u16().ok(), Some(0x0102));
        assert_eq!(
            r.u32(),
            Err(DecodeError::Truncated {
                at: "ofp_thing",
                needed: 4,
                available: 1
            })
        );
        // A failed read consumes nothing.
        assert_eq!(r.u8().ok(), Some(3));
    }

    #[test]
    fn writer_patches_lengths_and_pads() {
        let mut v = Vec::new();
        v.put_u16(7);
        let f = v.reserve_len16();
        v.put_u8(1);
        v.pad_to_8(0);
        v.patch_len16(f, 0);
        assert_eq!(v, [0, 7, 0, 8, 1, 0, 0, 0]);
    }

    #[test]
    fn names_keep_exact_bytes_and_print_lossily() {
        let n = Name::<16>::new("br-int");
        assert_eq!(n.as_bytes(), b"br-int");
        assert_eq!(n.to_string(), "br-int");
        let raw = Name::<4>([b'a', 0, b'z', 0]);
        assert_eq!(raw.as_bytes(), b"a");
        assert_eq!(raw.0, [b'a', 0, b'z', 0]);
    }
}
