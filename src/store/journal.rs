//! The head journal: the ledger's own evidence, outside the storage engine, of how far its log
//! reached. sled recovers a damaged entry of its own log as if it were a torn write at the end:
//! it stops there, zeroes what follows and opens a shorter, self-consistent database whose head
//! key is an older one. Nothing inside sled can then tell that acknowledged events are gone, so
//! the journal keeps that knowledge in a file sled never touches, and opening compares the two.
//!
//! The file `head.journal` in the data directory is a sequence of fixed-size entries (no
//! header), integers big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `"PXJ1"` |
//! | 1 | kind: 1 acknowledged (the durable head while serving), 2 clean stop (the head when the ledger stopped cleanly), 3 signed in format 1 (a checkpoint about to be signed over the BLAKE3 tree, before the upgrade to notes), 4 signed (a note checkpoint about to be signed, over the SHA-256 tree) |
//! | 3 | zero |
//! | 8 | position (u64) |
//! | 32 | the chain hash of the record at that position (zeros at position 0) |
//! | 32 | kinds 3 and 4: the Merkle root signed at that position; zeros otherwise |
//! | 8 | when the entry was written, milliseconds since the Unix epoch (i64) |
//! | 8 | the first 8 bytes of BLAKE3 of the 88 bytes before |
//!
//! Every entry is written with one `write` at the end of the file and made durable with
//! `fdatasync` before the journal is relied on. Only heads that are already durable in sled are
//! written (kinds 1 and 2), and a checkpoint's root before it is signed (kind 3), so the journal
//! never runs ahead of the log in a crash: a log that does not reach or does not extend it lost
//! acknowledged events. A partial entry at the end (a crash while appending) is cut off; a last
//! whole entry that fails its checksum is taken for a torn write too (it held at most one head
//! mark, the newest). A damaged entry anywhere else is damage, and refused.
//!
//! The journal grows by at most one entry per [`MARK_INTERVAL`] while the log grows, plus one
//! per checkpoint and per clean stop; past [`JOURNAL_ENTRIES_MAX`] it is rewritten (temporary
//! file, fsync, rename, fsync of the directory) with every signed entry and the newest head.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Hash, StoreError};
use crate::domain::Position;

/// How often, at most, the durable head is written to the journal while the log grows: the
/// window of acknowledged events that a crash followed by damage to the newest records could
/// lose without the journal noticing (a clean stop closes it).
pub const MARK_INTERVAL: Duration = Duration::from_millis(100);
/// Entries past which the journal is compacted to its signed entries and its newest head.
pub const JOURNAL_ENTRIES_MAX: usize = 65_536;

const MAGIC: &[u8; 4] = b"PXJ1";
const ENTRY_BYTES: usize = 96;
const FILE_NAME: &str = "head.journal";

/// What an entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    /// The durable head while serving.
    Acknowledged = 1,
    /// The head when the ledger stopped cleanly.
    CleanStop = 2,
    /// A format-1 checkpoint (over the BLAKE3 tree) about to be signed, with its root: written
    /// by builds before notes, still read.
    SignedFormat1 = 3,
    /// A checkpoint about to be signed, with its root (of the SHA-256 tree).
    Signed = 4,
}

/// One journal entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub kind: MarkKind,
    pub position: Position,
    /// The chain hash of the record at `position`.
    pub hash: Hash,
    /// The Merkle root of the first `position` records (signed kinds only).
    pub root: Hash,
    /// When it was written (milliseconds since the Unix epoch).
    pub written_ms: i64,
}

impl Mark {
    pub fn head(kind: MarkKind, position: Position, hash: Hash) -> Self {
        Self { kind, position, hash, root: [0; 32], written_ms: now_ms() }
    }

    pub fn signed(position: Position, hash: Hash, root: Hash) -> Self {
        Self { kind: MarkKind::Signed, position, hash, root, written_ms: now_ms() }
    }

    /// What a format-1 checkpoint found without a journal entry is recorded as.
    pub fn signed_format_1(position: Position, hash: Hash, root: Hash) -> Self {
        Self { kind: MarkKind::SignedFormat1, position, hash, root, written_ms: now_ms() }
    }

    /// When it was written, for messages.
    pub fn written_at(&self) -> String {
        chrono::DateTime::from_timestamp_millis(self.written_ms)
            .map_or_else(|| format!("{} ms after the epoch", self.written_ms), |t| t.to_rfc3339())
    }

    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut entry = [0; ENTRY_BYTES];
        entry[..4].copy_from_slice(MAGIC);
        entry[4] = self.kind as u8;
        entry[8..16].copy_from_slice(&self.position.0.to_be_bytes());
        entry[16..48].copy_from_slice(&self.hash);
        entry[48..80].copy_from_slice(&self.root);
        entry[80..88].copy_from_slice(&self.written_ms.to_be_bytes());
        let sum = checksum(&entry[..88]);
        entry[88..].copy_from_slice(&sum);
        entry
    }

    fn decode(entry: &[u8]) -> Result<Self, &'static str> {
        debug_assert_eq!(entry.len(), ENTRY_BYTES);
        if entry[88..] != checksum(&entry[..88]) {
            return Err("fails its checksum");
        }
        if &entry[..4] != MAGIC || entry[5..8] != [0; 3] {
            return Err("is not a journal entry");
        }
        let kind = match entry[4] {
            1 => MarkKind::Acknowledged,
            2 => MarkKind::CleanStop,
            3 => MarkKind::SignedFormat1,
            4 => MarkKind::Signed,
            _ => return Err("has an unknown kind"),
        };
        Ok(Self {
            kind,
            position: Position(u64::from_be_bytes(entry[8..16].try_into().expect("8 bytes"))),
            hash: entry[16..48].try_into().expect("32 bytes"),
            root: entry[48..80].try_into().expect("32 bytes"),
            written_ms: i64::from_be_bytes(entry[80..88].try_into().expect("8 bytes")),
        })
    }
}

fn checksum(bytes: &[u8]) -> [u8; 8] {
    blake3::hash(bytes).as_bytes()[..8].try_into().expect("8 bytes")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What the journal holds: the newest head it saw, and every root it recorded before signing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The entry with the highest position (any kind): the log must reach and extend it.
    pub furthest: Option<Mark>,
    /// The last entry, if it is a clean stop: the log must end exactly there.
    pub clean_stop: Option<Mark>,
    /// Signed entries by position (the first root recorded for each).
    pub signed: BTreeMap<u64, Mark>,
    /// Signed entries of format 1 by position: their roots are of the BLAKE3 tree, never
    /// compared with today's; their chain hashes still bind the log.
    pub signed_format_1: BTreeMap<u64, Mark>,
    /// A damaged last entry was taken for a torn write and ignored.
    pub torn_tail: bool,
}

impl Evidence {
    fn add(&mut self, mark: Mark) {
        if self.furthest.is_none_or(|f| mark.position >= f.position) {
            self.furthest = Some(mark);
        }
        self.clean_stop = (mark.kind == MarkKind::CleanStop).then_some(mark);
        match mark.kind {
            MarkKind::Signed => {
                self.signed.entry(mark.position.0).or_insert(mark);
            }
            MarkKind::SignedFormat1 => {
                self.signed_format_1.entry(mark.position.0).or_insert(mark);
            }
            MarkKind::Acknowledged | MarkKind::CleanStop => {}
        }
    }

    /// The entries a compacted journal keeps: every signed one, then the furthest head.
    fn compacted(&self) -> Vec<Mark> {
        let mut marks: Vec<Mark> = self.signed_format_1.values().chain(self.signed.values()).copied().collect();
        if let Some(last) = self.clean_stop.or(self.furthest) {
            marks.push(last);
        }
        marks
    }
}

/// The journal file, open for appending.
pub struct Journal {
    dir: PathBuf,
    file: File,
    evidence: Evidence,
    entries: usize,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Reads the journal in `dir` without changing it: its evidence (empty when there is none),
/// and how many whole bytes of it are good (a torn tail after them).
pub fn read(dir: &Path) -> Result<(Evidence, usize, u64), StoreError> {
    let mut bytes = Vec::new();
    match File::open(path(dir)) {
        Ok(mut file) => {
            file.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Evidence::default(), 0, 0)),
        Err(e) => return Err(e.into()),
    }
    let whole = bytes.len() / ENTRY_BYTES;
    let mut evidence = Evidence::default();
    let mut good = whole;
    for (index, entry) in bytes.chunks_exact(ENTRY_BYTES).enumerate() {
        match Mark::decode(entry) {
            Ok(mark) => evidence.add(mark),
            Err(_) if index + 1 == whole => {
                evidence.torn_tail = true;
                good = index;
            }
            Err(reason) => {
                return Err(StoreError::corrupt(
                    format!("{} entry {} (byte {})", path(dir).display(), index + 1, index * ENTRY_BYTES),
                    format!(
                        "the journal entry {reason}: the ledger's own record of what it acknowledged and signed is \
                         damaged. If `pax-ledger verify --data {dir}` reports nothing but this, the log itself is whole: move {file} \
                         aside, and the next start begins a new journal from the log and its checkpoints",
                        dir = dir.display(),
                        file = path(dir).display(),
                    ),
                ));
            }
        }
    }
    evidence.torn_tail |= !bytes.len().is_multiple_of(ENTRY_BYTES);
    Ok((evidence, good, (good * ENTRY_BYTES) as u64))
}

impl Journal {
    /// Opens (or creates) the journal in `dir` for appending; a torn tail is cut off.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let (evidence, entries, good_bytes) = read(dir)?;
        let file = OpenOptions::new().create(true).append(true).open(path(dir))?;
        if file.metadata()?.len() != good_bytes {
            tracing::warn!(file = %path(dir).display(), "cutting a torn entry off the end of the head journal");
            file.set_len(good_bytes)?;
            file.sync_all()?;
        }
        fs::File::open(dir)?.sync_all()?;
        Ok(Self { dir: dir.to_owned(), file, evidence, entries })
    }

    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// Appends `mark` and makes it durable.
    pub fn append(&mut self, mark: Mark) -> Result<(), StoreError> {
        self.append_all(&[mark])
    }

    /// Appends `marks` in one write and makes them durable.
    pub fn append_all(&mut self, marks: &[Mark]) -> Result<(), StoreError> {
        if self.entries >= JOURNAL_ENTRIES_MAX {
            self.compact()?;
        }
        let bytes: Vec<u8> = marks.iter().flat_map(|mark| mark.encode()).collect();
        self.file.write_all(&bytes)?;
        self.file.sync_data()?;
        self.entries += marks.len();
        marks.iter().for_each(|mark| self.evidence.add(*mark));
        Ok(())
    }

    /// Rewrites the journal with what [`Evidence::compacted`] keeps, atomically.
    fn compact(&mut self) -> Result<(), StoreError> {
        let marks = self.evidence.compacted();
        let bytes: Vec<u8> = marks.iter().flat_map(|mark| mark.encode()).collect();
        crate::durable::replace(&path(&self.dir), &bytes)?;
        self.file = OpenOptions::new().append(true).open(path(&self.dir))?;
        self.entries = marks.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> Hash {
        [n; 32]
    }

    #[test]
    fn marks_read_back_and_a_clean_stop_is_the_last_word() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.evidence(), &Evidence::default());
        journal.append(Mark::head(MarkKind::Acknowledged, Position(10), hash(1))).unwrap();
        journal.append(Mark::signed(Position(10), hash(1), hash(9))).unwrap();
        journal.append(Mark::head(MarkKind::CleanStop, Position(12), hash(2))).unwrap();
        drop(journal);
        let (evidence, entries, _) = read(dir.path()).unwrap();
        assert_eq!(entries, 3);
        assert_eq!(evidence.furthest.unwrap().position, Position(12));
        assert_eq!(evidence.clean_stop.unwrap().hash, hash(2));
        assert_eq!(evidence.signed[&10].root, hash(9));
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.append(Mark::head(MarkKind::Acknowledged, Position(13), hash(3))).unwrap();
        assert_eq!(journal.evidence().clean_stop, None, "serving again: the stop is no longer the last word");
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_before_it_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        for p in 1..=3 {
            journal.append(Mark::head(MarkKind::Acknowledged, Position(p), hash(p as u8))).unwrap();
        }
        drop(journal);
        let file = path(dir.path());
        // A partial entry after three whole ones: cut off.
        let mut bytes = fs::read(&file).unwrap();
        bytes.extend_from_slice(&[7; 40]);
        fs::write(&file, &bytes).unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.evidence().furthest.unwrap().position, Position(3));
        assert_eq!(fs::metadata(&file).unwrap().len(), 3 * ENTRY_BYTES as u64);
        drop(journal);
        // The last whole entry damaged: a torn write of the newest mark.
        let mut bytes = fs::read(&file).unwrap();
        bytes[2 * ENTRY_BYTES + 20] ^= 1;
        fs::write(&file, &bytes).unwrap();
        let (evidence, entries, _) = read(dir.path()).unwrap();
        assert!(evidence.torn_tail);
        assert_eq!((entries, evidence.furthest.unwrap().position), (2, Position(2)));
        // A flipped bit in an earlier entry: refused, naming the entry.
        bytes[ENTRY_BYTES + 9] ^= 1;
        fs::write(&file, &bytes).unwrap();
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("entry 2") && error.contains("checksum"), "{error}");
    }

    #[test]
    fn compaction_keeps_every_signed_root_and_the_furthest_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.append(Mark::signed(Position(5), hash(5), hash(50))).unwrap();
        for p in 6..=20 {
            journal.append(Mark::head(MarkKind::Acknowledged, Position(p), hash(p as u8))).unwrap();
        }
        journal.compact().unwrap();
        journal.append(Mark::head(MarkKind::Acknowledged, Position(21), hash(21))).unwrap();
        drop(journal);
        let (evidence, entries, _) = read(dir.path()).unwrap();
        assert_eq!(entries, 3);
        assert_eq!(evidence.signed[&5].root, hash(50));
        assert_eq!(evidence.furthest.unwrap().position, Position(21));
    }
}
