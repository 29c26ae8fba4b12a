//! The sled store's journal: a commit of many writes appended as one entry
//! to a file beside the database, instead of one sled tree insert per
//! write.
//!
//! A learned MAC costs the sled store a tree insert and a lookup (for the
//! records' counts), most of what the controller spends on it; a burst of
//! learned MACs appended here costs one write and one `fdatasync`. The
//! entries are folded into sled's records once they hold
//! [`Limits::fold_at`] writes: each key once, at its latest value, so a MAC that moved many
//! times in between costs one insert (`docs/controller.md`, Store).
//!
//! An entry is `"IRJ1"`, its number (u64), the payload's length (u32) and a
//! CRC-32 of the three before it and the payload, all little-endian, then
//! the payload: the number of writes (u32), and per write the key's length
//! (u16) and bytes, 0 (delete) or 1 (put), and for a put the value's length
//! (u32) and bytes. Entries are numbered without gaps; the marker records
//! up to which number they are folded, and the witness the number after
//! the last one appended, so a journal that comes back without entries it
//! had is refused as the database is.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The journal's file, beside sled's.
pub const JOURNAL_FILE: &str = "iris-journal";
/// The extension of the file that replaces the journal after a fold (see
/// [`Journal::drop_before`]); one a crash left is removed at opening.
const NEXT_EXTENSION: &str = "next";
const MAGIC: &[u8; 4] = b"IRJ1";
const HEADER: usize = 4 + 8 + 4 + 4;
/// Which commits go to the journal, and when it is folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// A commit of at least this many writes is appended to the journal.
    pub(super) from_ops: usize,
    /// A commit of more writes than this (a seed) goes to sled in pieces,
    /// as before; up to this many it is journaled, in entries of at most
    /// [`ENTRY_OPS`].
    pub(super) up_to_ops: usize,
    /// The journal is folded once it holds this many writes.
    pub(super) fold_at: u64,
    /// Keys a step of the fold writes ([`crate::store::Store::tidy`]): the
    /// longest a commit waits for a fold under way, 94 ms at most at 4,096
    /// where a whole fold of 131,072 keys took 1.5 s (docs/benchmarks.md,
    /// "The fold in steps").
    pub(super) fold_step: usize,
}

impl Default for Limits {
    /// A burst of learned MACs (up to 256 PacketIns, a write or two each),
    /// or the bursts that waited for a commit under way together, are
    /// journaled; 131,072 writes are 29 MB or so of learned MACs, read back
    /// and applied as one sled batch per 256 keys, each key once.
    fn default() -> Self {
        Self {
            from_ops: 32,
            up_to_ops: 1 << 16,
            fold_at: 1 << 17,
            fold_step: 4096,
        }
    }
}

/// The most writes in one entry.
pub(super) const ENTRY_OPS: usize = 4096;

/// Keys, each with its value or `None` for a delete.
pub(super) type Latest = std::collections::BTreeMap<String, Option<Vec<u8>>>;

#[derive(Debug)]
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    /// The number the next entry gets.
    next: u64,
    /// Entries and writes in the file that are not folded yet.
    entries: u64,
    ops: u64,
    /// Bytes of the file that hold whole entries.
    len: u64,
}

/// What the journal holds when it is opened.
#[derive(Debug)]
pub(super) struct Opened {
    pub(super) journal: Journal,
    /// Bytes after the last whole entry that were dropped: an append that
    /// a crash cut, never acknowledged.
    pub(super) dropped_tail: u64,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`. Entries numbered below
    /// `folded` are in sled's records already. `acknowledged`, from the
    /// witness, is the number after the last entry a commit returned for:
    /// the journal must hold every entry up to it. What follows the last
    /// whole entry is an append cut by a crash and is dropped, unless an
    /// acknowledged entry is missing, which refuses the store.
    pub(super) fn open(
        dir: &Path,
        folded: u64,
        acknowledged: Option<u64>,
    ) -> Result<Opened, String> {
        let path = dir.join(JOURNAL_FILE);
        // A replacement a crash cut before its rename: the journal it was
        // to replace is whole.
        let fresh = path.with_extension(NEXT_EXTENSION);
        if fresh.exists() {
            std::fs::remove_file(&fresh)
                .map_err(|e| format!("cannot remove {}: {e}", fresh.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut at = 0;
        let (mut first, mut next) = (None, folded);
        let (mut entries, mut ops) = (0, 0);
        while let Some((seq, count, end)) = entry_at(&bytes, at) {
            if let Some(expected) = first.map(|_| next) {
                if seq != expected {
                    return Err(format!(
                        "{} is damaged: entry {seq} follows entry {}",
                        path.display(),
                        expected - 1
                    ));
                }
            }
            first.get_or_insert(seq);
            if seq >= folded {
                entries += 1;
                ops += u64::from(count);
            }
            next = seq + 1;
            at = end;
        }
        if let Some(first) = first.filter(|f| *f > folded) {
            return Err(format!(
                "{} is damaged: it starts at entry {first}, and entries from {folded} on are \
                 not in the records yet: writes are lost",
                path.display()
            ));
        }
        next = next.max(folded);
        if let Some(acked) = acknowledged.filter(|a| *a > next) {
            return Err(format!(
                "{} is damaged: it holds entries up to {}, and entry {} was written: the last \
                 writes are lost",
                path.display(),
                next.saturating_sub(1),
                acked - 1
            ));
        }
        let dropped_tail = (bytes.len() - at) as u64;
        if dropped_tail > 0 {
            file.set_len(at as u64)
                .and_then(|()| file.sync_data())
                .map_err(|e| {
                    format!(
                        "cannot cut {} back to its whole entries: {e}",
                        path.display()
                    )
                })?;
        }
        Ok(Opened {
            journal: Self {
                file,
                path,
                next,
                entries,
                ops,
                len: at as u64,
            },
            dropped_tail,
        })
    }

    /// The number the next entry gets.
    pub(super) fn next(&self) -> u64 {
        self.next
    }

    /// Whether entries are waiting to be folded.
    pub(super) fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Writes waiting to be folded.
    pub(super) fn ops(&self) -> u64 {
        self.ops
    }

    /// Appends `ops` as one entry, durably before it returns. A failed
    /// append is cut off again, so the next one follows whole entries.
    pub(super) fn append<'a>(
        &mut self,
        ops: impl ExactSizeIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Result<(), String> {
        let count = ops.len();
        let mut payload = Vec::with_capacity(count * 200);
        payload.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
        for (k, v) in ops {
            let key_len =
                u16::try_from(k.len()).map_err(|_| format!("a key of {} bytes", k.len()))?;
            payload.extend_from_slice(&key_len.to_le_bytes());
            payload.extend_from_slice(k.as_bytes());
            match v {
                None => payload.push(0),
                Some(v) => {
                    payload.push(1);
                    let len = u32::try_from(v.len())
                        .map_err(|_| format!("a value of {} bytes", v.len()))?;
                    payload.extend_from_slice(&len.to_le_bytes());
                    payload.extend_from_slice(v);
                }
            }
        }
        let len = u32::try_from(payload.len()).map_err(|_| "an entry over 4 GiB".to_owned())?;
        let mut entry = Vec::with_capacity(HEADER + payload.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&self.next.to_le_bytes());
        entry.extend_from_slice(&len.to_le_bytes());
        let crc = checksum(&entry[4..16], &payload);
        entry.extend_from_slice(&crc.to_le_bytes());
        entry.extend_from_slice(&payload);
        let written = self
            .file
            .write_all(&entry)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(self.len);
            return Err(format!("cannot append to {}: {e}", self.path.display()));
        }
        self.len += entry.len() as u64;
        self.next += 1;
        self.entries += 1;
        self.ops += count as u64;
        Ok(())
    }

    /// What the entries from `folded` on write: each key once, at the
    /// value its last write gave it (`None`: deleted). Only the keys are
    /// held, not every write, so a journal of moves of the same MACs reads
    /// into as much memory as those MACs' records.
    pub(super) fn latest(&self, folded: u64) -> Result<Latest, String> {
        let bytes = std::fs::read(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let mut out = Latest::new();
        let mut at = 0;
        while (at as u64) < self.len {
            let Some((seq, _, end)) = entry_at(&bytes, at) else {
                return Err(format!(
                    "{} is damaged: no whole entry at byte {at}",
                    self.path.display()
                ));
            };
            if seq >= folded {
                ops_of(&bytes[at + HEADER..end], &mut out).map_err(|why| {
                    format!("{} is damaged: entry {seq}: {why}", self.path.display())
                })?;
            }
            at = end;
        }
        Ok(out)
    }

    /// Drops the entries numbered below `folded` once they are folded
    /// (the marker says so first, so entries a crash leaves before this
    /// are skipped), keeping those appended since. Those few are copied to
    /// a new file that replaces this one by a rename: a crash leaves one
    /// file or the other, each holding every entry from `folded` on.
    pub(super) fn drop_before(&mut self, folded: u64) -> Result<(), String> {
        let bytes = std::fs::read(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let whole = &bytes[..(self.len as usize).min(bytes.len())];
        let (mut at, mut keep) = (0, None);
        let (mut entries, mut ops) = (0, 0);
        while let Some((seq, count, end)) = entry_at(whole, at) {
            if seq >= folded {
                keep.get_or_insert(at);
                entries += 1;
                ops += u64::from(count);
            }
            at = end;
        }
        let Some(from) = keep else {
            return self.clear();
        };
        if from == 0 {
            return Ok(());
        }
        let tail = &whole[from..];
        let fresh = self.path.with_extension(NEXT_EXTENSION);
        let replaced = (|| -> std::io::Result<File> {
            let mut f = File::create(&fresh)?;
            f.write_all(tail)?;
            f.sync_all()?;
            std::fs::rename(&fresh, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            OpenOptions::new().read(true).append(true).open(&self.path)
        })();
        let file = replaced.map_err(|e| {
            format!(
                "cannot replace {} by its unfolded entries: {e}",
                self.path.display()
            )
        })?;
        self.file = file;
        self.len = tail.len() as u64;
        self.entries = entries;
        self.ops = ops;
        Ok(())
    }

    /// Empties the journal once its entries are folded (the marker says
    /// up to which number, so entries left by a crash before this are
    /// skipped).
    pub(super) fn clear(&mut self) -> Result<(), String> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("cannot empty {}: {e}", self.path.display()))?;
        self.len = 0;
        self.entries = 0;
        self.ops = 0;
        Ok(())
    }
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(payload);
    h.finalize()
}

/// The entry at `at` if a whole one is there: its number, its count of
/// writes and where it ends.
fn entry_at(bytes: &[u8], at: usize) -> Option<(u64, u32, usize)> {
    let header = bytes.get(at..at + HEADER)?;
    if &header[..4] != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(header[12..16].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[16..20].try_into().ok()?);
    let end = at.checked_add(HEADER)?.checked_add(len)?;
    let payload = bytes.get(at + HEADER..end)?;
    if checksum(&header[4..16], payload) != crc || payload.len() < 4 {
        return None;
    }
    let count = u32::from_le_bytes(payload[..4].try_into().ok()?);
    Some((seq, count, end))
}

/// The next `n` bytes of `r`.
fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if r.len() < n {
        return Err("it ends inside a write".to_owned());
    }
    let (a, b) = r.split_at(n);
    *r = b;
    Ok(a)
}

fn le<const N: usize>(r: &mut &[u8]) -> Result<[u8; N], String> {
    let bytes = take(r, N)?;
    bytes
        .try_into()
        .map_err(|_| "it ends inside a write".to_owned())
}

/// Reads the writes of one entry's payload into `out`.
fn ops_of(payload: &[u8], out: &mut Latest) -> Result<(), String> {
    let mut r = payload;
    let count = u32::from_le_bytes(le(&mut r)?);
    for _ in 0..count {
        let key_len = u16::from_le_bytes(le(&mut r)?);
        let key = std::str::from_utf8(take(&mut r, usize::from(key_len))?)
            .map_err(|_| "a key that is not UTF-8".to_owned())?
            .to_owned();
        let value = match take(&mut r, 1)?[0] {
            0 => None,
            1 => {
                let len = u32::from_le_bytes(le(&mut r)?);
                Some(take(&mut r, len as usize)?.to_vec())
            }
            t => return Err(format!("a write of kind {t}")),
        };
        out.insert(key, value);
    }
    if !r.is_empty() {
        return Err(format!("{} bytes after its last write", r.len()));
    }
    Ok(())
}
