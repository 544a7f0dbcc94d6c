//! A snapshot of the in-memory indexes (event ids and where each stream begins, see
//! `memory_index`), so that opening does not scan the whole log.
//!
//! The file `ids.snapshot` in the data directory is, format 3, integers big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 7 | magic `"PAXIDS\n"` |
//! | 1 | [`SNAPSHOT_FORMAT`] (3) |
//! | 8 | position (u64): the snapshot covers positions 1..=position |
//! | 32 | the chain hash of the record at position |
//! | 8 | id count (u64) |
//! | id count × 24 | per event: event id (16 bytes, the UUID's bytes), position (u64) |
//! | 8 | stream count (u64) |
//! | stream count × 16 | per stream: its fingerprint (u64; written big-endian, it is the first 8 bytes of BLAKE3 of the stream name), the position of its first event (u64) |
//! | 8 | collided stream count (u64) |
//! | per collided stream | name length (u16), name, the position of its first event (u64) |
//! | 32 | BLAKE3 digest of every byte before it |
//!
//! (Format 1 had no streams, format 2 fingerprints alone; like any unusable snapshot they are
//! ignored, the log is scanned once, and the next clean stop writes format 3.) It is written at a clean stop
//! (temporary file, fsync, rename, fsync of the directory), and used on open only if its
//! digest is right and the log still holds, at its position, a record with its chain hash: the
//! log is append-only, so the ids and streams up to that position are then exactly the
//! snapshot's (the fingerprints possibly a superset, which is harmless), and only the chunks
//! after it are scanned. A damaged or unreadable snapshot is ignored (the whole log is scanned):
//! as an index it is a cache, never a source of truth. An intact one that the log does not
//! extend is reported (`Recovery::unextended_snapshot`): it was written from durable commits
//! only, so it is evidence that acknowledged events are gone, and the ledger refuses to open.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::memory_index::{IdIndex, MemoryIndex, StreamMap};
use super::{Hash, StoreError};
use crate::domain::{EventId, Position};

const MAGIC: &[u8] = b"PAXIDS\n";
/// The snapshot format this build writes and reads.
pub const SNAPSHOT_FORMAT: u8 = 3;
const HEADER_BYTES: usize = MAGIC.len() + 1 + 8 + 32 + 8;
const ENTRY_BYTES: usize = 16 + 8;
const STREAM_BYTES: usize = 8 + 8;

/// A loaded snapshot: the indexes of positions 1..=`position`.
pub struct IdSnapshot {
    pub position: Position,
    pub hash: Hash,
    pub index: MemoryIndex,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join("ids.snapshot")
}

/// Writes the snapshot of `index` (that of positions 1..=`position`) durably.
#[cfg(test)]
pub fn save(dir: &Path, position: Position, hash: &Hash, index: &MemoryIndex) -> Result<(), StoreError> {
    let file = write(dir, position, hash, index)?;
    publish(dir, file)
}

/// Writes the snapshot of `index` to a temporary file, streamed (nothing of its size is built
/// in memory), without its digest: what needs `index` (and the caller's lock on it) is only
/// this copy into the page cache; [`publish`] then hashes, syncs and installs it.
pub fn write(dir: &Path, position: Position, hash: &Hash, index: &MemoryIndex) -> Result<fs::File, StoreError> {
    let file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(temporary(dir))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(MAGIC)?;
    out.write_all(&[SNAPSHOT_FORMAT])?;
    out.write_all(&position.0.to_be_bytes())?;
    out.write_all(hash)?;
    out.write_all(&(index.ids.len() as u64).to_be_bytes())?;
    for (id, at) in index.ids.iter() {
        out.write_all(id.as_bytes())?;
        out.write_all(&at.0.to_be_bytes())?;
    }
    out.write_all(&(index.streams.len() as u64).to_be_bytes())?;
    for (fingerprint, first) in &index.streams {
        out.write_all(&fingerprint.to_be_bytes())?;
        out.write_all(&first.0.to_be_bytes())?;
    }
    out.write_all(&(index.collided.len() as u64).to_be_bytes())?;
    for (name, first) in &index.collided {
        out.write_all(&u16::try_from(name.len()).expect("stream names are short").to_be_bytes())?;
        out.write_all(name)?;
        out.write_all(&first.0.to_be_bytes())?;
    }
    out.into_inner().map_err(|e| StoreError::Io(e.into_error()))
}

/// Appends the digest of what [`write`] wrote (read back from the file), syncs it and renames
/// it over the current snapshot (then syncs the directory): a crash leaves the old snapshot
/// or the new one, whole.
pub fn publish(dir: &Path, mut file: fs::File) -> Result<(), StoreError> {
    use std::io::Seek;
    file.rewind()?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::io::BufReader::with_capacity(1 << 20, &file))?;
    file.seek(std::io::SeekFrom::End(0))?;
    file.write_all(hasher.finalize().as_bytes())?;
    file.sync_all()?;
    crate::durable::rename_into_place(&temporary(dir), &path(dir))?;
    Ok(())
}

fn temporary(dir: &Path) -> PathBuf {
    dir.join("ids.snapshot.tmp")
}

/// Reads the snapshot, if there is one and it is intact; `None` otherwise (the caller scans).
pub fn load(dir: &Path) -> Option<IdSnapshot> {
    let bytes = fs::read(path(dir)).ok()?;
    let (body, digest) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != digest || body.len() < HEADER_BYTES || !body.starts_with(MAGIC) {
        tracing::warn!("ignoring a damaged event-id snapshot");
        return None;
    }
    let header = &body[MAGIC.len()..HEADER_BYTES];
    if header[0] != SNAPSHOT_FORMAT {
        tracing::warn!(format = header[0], "ignoring an event-id snapshot of another format");
        return None;
    }
    let malformed = || tracing::warn!("ignoring a malformed event-id snapshot");
    let position = Position(u64::from_be_bytes(header[1..9].try_into().ok()?));
    let hash: Hash = header[9..41].try_into().ok()?;
    let count = usize::try_from(u64::from_be_bytes(header[41..49].try_into().ok()?)).ok()?;
    let Some((entries, rest)) = count.checked_mul(ENTRY_BYTES).and_then(|n| body[HEADER_BYTES..].split_at_checked(n))
    else {
        malformed();
        return None;
    };
    let Some((streams, collided)) = split_counted(rest, STREAM_BYTES) else {
        malformed();
        return None;
    };
    let Some(collided) = read_collided(collided) else {
        malformed();
        return None;
    };
    let entries: Vec<(EventId, Position)> = entries
        .chunks_exact(ENTRY_BYTES)
        .map(|entry| {
            let id = EventId::from_uuid(uuid::Uuid::from_bytes(entry[..16].try_into().expect("16 bytes")));
            (id, Position(u64_at(&entry[16..])))
        })
        .collect();
    let Ok(ids) = IdIndex::from_entries(entries) else {
        malformed();
        return None;
    };
    let streams: StreamMap =
        streams.chunks_exact(STREAM_BYTES).map(|entry| (u64_at(entry), Position(u64_at(&entry[8..])))).collect();
    Some(IdSnapshot { position, hash, index: MemoryIndex { ids, covered: position, streams, collided } })
}

fn u64_at(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// `bytes` split after a count (u64) and that many entries of `entry_bytes`.
fn split_counted(bytes: &[u8], entry_bytes: usize) -> Option<(&[u8], &[u8])> {
    let (count, rest) = bytes.split_at_checked(8)?;
    let length = usize::try_from(u64_at(count)).ok()?.checked_mul(entry_bytes)?;
    rest.split_at_checked(length)
}

/// The collided streams: a count, then each name (length u16) and first position; nothing after.
fn read_collided(mut bytes: &[u8]) -> Option<std::collections::HashMap<Vec<u8>, Position>> {
    let (count, rest) = bytes.split_at_checked(8)?;
    bytes = rest;
    let mut collided = HashMap::new();
    for _ in 0..u64_at(count) {
        let (length, rest) = bytes.split_first_chunk::<2>()?;
        let (name, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*length)))?;
        let (first, rest) = rest.split_at_checked(8)?;
        collided.insert(name.to_vec(), Position(u64_at(first)));
        bytes = rest;
    }
    bytes.is_empty().then_some(collided)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> MemoryIndex {
        let ids = IdIndex::from_entries((1..=100u64).map(|p| (EventId::generate(), Position(p))).collect()).unwrap();
        let streams = (0..37u64)
            .map(|i| (super::super::memory_index::stream_fingerprint(&i.to_be_bytes()), Position(2 * i + 1)))
            .collect();
        let collided = [(b"member-JP".to_vec(), Position(90))].into();
        MemoryIndex { ids, covered: Position(100), streams, collided }
    }

    /// Where the stream entries begin and the length of the collided part.
    const COLLIDED_BYTES: usize = 8 + 2 + 9 + 8;

    #[test]
    fn a_snapshot_round_trips_and_a_damaged_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let index = index();
        save(dir.path(), Position(100), &[7; 32], &index).unwrap();
        let loaded = load(dir.path()).expect("a snapshot");
        assert_eq!((loaded.position, loaded.hash), (Position(100), [7; 32]));
        let map = |ids: &IdIndex| ids.iter().map(|(id, p)| (*id, *p)).collect::<HashMap<_, _>>();
        assert_eq!(map(&loaded.index.ids), map(&index.ids));
        assert_eq!(loaded.index.streams, index.streams);
        assert_eq!(loaded.index.collided, index.collided);

        let good = fs::read(path(dir.path())).unwrap();
        assert_eq!(good.len(), HEADER_BYTES + 100 * ENTRY_BYTES + 8 + 37 * STREAM_BYTES + COLLIDED_BYTES + 32);
        // A flipped bit in an id, in a stream's first position, in a collided name, or in the digest.
        for at in [HEADER_BYTES + 3, good.len() - 32 - COLLIDED_BYTES - 5, good.len() - 32 - 12, good.len() - 1] {
            let mut bytes = good.clone();
            bytes[at] ^= 1;
            fs::write(path(dir.path()), &bytes).unwrap();
            assert!(load(dir.path()).is_none(), "a flipped bit at {at} went unnoticed");
        }
        fs::write(path(dir.path()), b"short").unwrap();
        assert!(load(dir.path()).is_none());
    }

    #[test]
    fn counts_that_disagree_with_the_length_are_ignored_even_under_a_right_digest() {
        let dir = tempfile::tempdir().unwrap();
        let index = index();
        save(dir.path(), Position(100), &[7; 32], &index).unwrap();
        let good = fs::read(path(dir.path())).unwrap();
        let stream_count_at = HEADER_BYTES + 100 * ENTRY_BYTES;
        let collided_count_at = stream_count_at + 8 + 37 * STREAM_BYTES;
        for (at, value) in [
            (HEADER_BYTES - 8, 101u64),
            (HEADER_BYTES - 8, u64::MAX),
            (stream_count_at, 36),
            (stream_count_at, u64::MAX),
            (collided_count_at, 0),
            (collided_count_at, 2),
        ] {
            let mut bytes = good[..good.len() - 32].to_vec();
            bytes[at..at + 8].copy_from_slice(&value.to_be_bytes());
            let digest = blake3::hash(&bytes);
            bytes.extend_from_slice(digest.as_bytes());
            fs::write(path(dir.path()), &bytes).unwrap();
            assert!(load(dir.path()).is_none(), "a count of {value} at {at} was accepted");
        }
    }

    #[test]
    fn a_snapshot_of_an_earlier_format_is_ignored() {
        // What the previous build wrote: the header, the ids, the digest, no fingerprints.
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.push(1);
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&[7; 32]);
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(EventId::generate().as_bytes());
        bytes.extend_from_slice(&1u64.to_be_bytes());
        let digest = blake3::hash(&bytes);
        bytes.extend_from_slice(digest.as_bytes());
        fs::write(path(dir.path()), &bytes).unwrap();
        assert!(load(dir.path()).is_none());
        // Format 2: the same with a stream count and fingerprints, no first positions.
        save(dir.path(), Position(100), &[7; 32], &index()).unwrap();
        let mut bytes = fs::read(path(dir.path())).unwrap();
        bytes.truncate(bytes.len() - 32);
        bytes[MAGIC.len()] = 2;
        let digest = blake3::hash(&bytes);
        bytes.extend_from_slice(digest.as_bytes());
        fs::write(path(dir.path()), &bytes).unwrap();
        assert!(load(dir.path()).is_none());
    }
}
