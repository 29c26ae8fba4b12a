//! Length-prefixed records, the framing rule most OpenFlow structures share:
//! a u16 length somewhere in a small header counts the whole record, and lists
//! of records run to the end of their enclosing structure.

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, ErrorCode, Result};

/// Splits off one record whose u16 length field sits `len_at` bytes into it.
///
/// The length must cover at least `min` bytes (the fixed part) and fit in
/// what is left of the enclosing structure; otherwise the peer is told `code`.
pub(crate) fn split<'a>(
    r: &mut Reader<'a>,
    len_at: usize,
    min: usize,
    at: &'static str,
    code: ErrorCode,
) -> Result<Reader<'a>> {
    let len = usize::from(r.peek_u16(len_at)?);
    if len < min || len > r.remaining() {
        return Err(DecodeError::bad_len_code(at, len, code));
    }
    r.sub(len, at)
}

/// Like [`split`] for records whose length excludes the zero padding that
/// follows them up to a multiple of 8 (hello elements, table-feature
/// properties). The padding must be present.
pub(crate) fn split_padded<'a>(
    r: &mut Reader<'a>,
    min: usize,
    at: &'static str,
    code: ErrorCode,
) -> Result<Reader<'a>> {
    let rec = split(r, 2, min, at, code)?;
    let pad = (8 - rec.remaining() % 8) % 8;
    r.skip(pad)?;
    Ok(rec)
}

/// Parses records with `f` until `r` is exhausted. `f` must consume at least
/// one byte per call, which every record parser does by reading its header.
pub(crate) fn parse_all<'a, T>(
    mut r: Reader<'a>,
    mut f: impl FnMut(&mut Reader<'a>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(f(&mut r)?);
    }
    Ok(out)
}

/// Parses fixed-size records of `size` bytes filling all of `r`; a remainder
/// that is not a whole record is a length error.
// `is_multiple_of` needs Rust 1.87; the workspace promises 1.85.
#[allow(clippy::manual_is_multiple_of)]
pub(crate) fn parse_fixed<'a, T>(
    r: Reader<'a>,
    size: usize,
    at: &'static str,
    mut f: impl FnMut(&mut Reader<'a>) -> Result<T>,
) -> Result<Vec<T>> {
    if r.remaining() % size != 0 {
        return Err(DecodeError::bad_len(at, r.remaining()));
    }
    parse_all(r, |r| f(r))
}

/// Writes a type-length-value record: `kind`, a u16 length patched to cover
/// the header and what `body` writes, then the body. Returns the record's
/// start so callers that need padding can add it.
pub(crate) fn emit_tlv(buf: &mut Vec<u8>, kind: u16, body: impl FnOnce(&mut Vec<u8>)) -> usize {
    let start = buf.len();
    buf.put_u16(kind);
    let len_at = buf.reserve_len16();
    body(buf);
    buf.patch_len16(len_at, start);
    start
}

/// Requires that a structure's reader was consumed entirely.
pub(crate) fn expect_end(r: &Reader<'_>, length: usize) -> Result<()> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::bad_len(r.context(), length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rejects_short_and_overlong_lengths() {
        let code = ErrorCode::BAD_LEN;
        let mut r = Reader::new(&[0, 1, 0, 3, 9, 9], "rec");
        assert!(matches!(
            split(&mut r, 2, 4, "rec", code),
            Err(DecodeError::BadLength { length: 3, .. })
        ));
        let mut r = Reader::new(&[0, 1, 0, 9, 9, 9], "rec");
        assert!(matches!(
            split(&mut r, 2, 4, "rec", code),
            Err(DecodeError::BadLength { length: 9, .. })
        ));
        let mut r = Reader::new(&[0, 1, 0, 5, 9, 7, 0, 0, 0xaa], "rec");
        let rec = split_padded(&mut r, 4, "rec", code).unwrap();
        assert_eq!(rec.rest(), &[0, 1, 0, 5, 9]);
        assert_eq!(r.rest(), &[0xaa]);
    }

    #[test]
    fn fixed_records_must_tile_the_body() {
        let r = Reader::new(&[1, 2, 3], "fixed");
        assert!(parse_fixed(r, 2, "fixed", |r| r.u16()).is_err());
        let r = Reader::new(&[0, 1, 0, 2], "fixed");
        assert_eq!(parse_fixed(r, 2, "fixed", |r| r.u16()).unwrap(), vec![1, 2]);
    }

    #[test]
    fn tlv_patches_its_length() {
        let mut buf = vec![0xee];
        let start = emit_tlv(&mut buf, 7, |b| b.put_u8(1));
        buf.pad_to_8(start);
        assert_eq!(buf, [0xee, 0, 7, 0, 5, 1, 0, 0, 0]);
    }
}
