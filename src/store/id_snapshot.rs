//! A snapshot of the event-id index, so that opening does not scan the whole log.
//!
//! The file `ids.snapshot` in the data directory is
//! `[magic "PAXIDS\n"][SNAPSHOT_FORMAT u8][position u64][chain hash at position: 32 bytes]
//! [count u64]` then `count` × `[event id: 16 bytes][position u64]`, then a BLAKE3 digest of
//! everything before it (32 bytes); integers big-endian. It is written at a clean stop
//! (temporary file, fsync, rename, fsync of the directory), and used on open only if its
//! digest is right and the log still holds, at its position, a record with its chain hash: the
//! log is append-only, so the ids up to that position are then exactly the snapshot's, and
//! only the chunks after it are scanned. Anything else, and the snapshot is ignored (the whole
//! log is scanned): it is a cache, never a source of truth.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Hash, StoreError};
use crate::domain::{EventId, Position};

const MAGIC: &[u8] = b"PAXIDS\n";
/// The snapshot format this build writes and reads.
pub const SNAPSHOT_FORMAT: u8 = 1;
const HEADER_BYTES: usize = MAGIC.len() + 1 + 8 + 32 + 8;
const ENTRY_BYTES: usize = 16 + 8;

/// A loaded snapshot: the ids of positions 1..=`position`.
pub struct IdSnapshot {
    pub position: Position,
    pub hash: Hash,
    pub ids: HashMap<EventId, Position>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join("ids.snapshot")
}

/// Writes the snapshot of `ids` (the ids of positions 1..=`position`) durably.
pub fn save(dir: &Path, position: Position, hash: &Hash, ids: &HashMap<EventId, Position>) -> Result<(), StoreError> {
    let mut bytes = Vec::with_capacity(HEADER_BYTES + ids.len() * ENTRY_BYTES + 32);
    bytes.extend_from_slice(MAGIC);
    bytes.push(SNAPSHOT_FORMAT);
    bytes.extend_from_slice(&position.0.to_be_bytes());
    bytes.extend_from_slice(hash);
    bytes.extend_from_slice(&(ids.len() as u64).to_be_bytes());
    for (id, at) in ids {
        bytes.extend_from_slice(id.as_bytes());
        bytes.extend_from_slice(&at.0.to_be_bytes());
    }
    let digest = blake3::hash(&bytes);
    bytes.extend_from_slice(digest.as_bytes());
    let temporary = dir.join("ids.snapshot.tmp");
    let mut file = fs::File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path(dir))?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
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
    let position = Position(u64::from_be_bytes(header[1..9].try_into().ok()?));
    let hash: Hash = header[9..41].try_into().ok()?;
    let count = usize::try_from(u64::from_be_bytes(header[41..49].try_into().ok()?)).ok()?;
    let entries = &body[HEADER_BYTES..];
    if entries.len() != count.checked_mul(ENTRY_BYTES)? {
        return None;
    }
    let mut ids = HashMap::with_capacity(count);
    for entry in entries.chunks_exact(ENTRY_BYTES) {
        let id = EventId::from_uuid(uuid::Uuid::from_bytes(entry[..16].try_into().ok()?));
        ids.insert(id, Position(u64::from_be_bytes(entry[16..].try_into().ok()?)));
    }
    Some(IdSnapshot { position, hash, ids })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_a_damaged_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let ids: HashMap<_, _> = (1..=100u64).map(|p| (EventId::generate(), Position(p))).collect();
        save(dir.path(), Position(100), &[7; 32], &ids).unwrap();
        let loaded = load(dir.path()).expect("a snapshot");
        assert_eq!((loaded.position, loaded.hash), (Position(100), [7; 32]));
        assert_eq!(loaded.ids, ids);

        let mut bytes = fs::read(path(dir.path())).unwrap();
        bytes[HEADER_BYTES + 3] ^= 1;
        fs::write(path(dir.path()), &bytes).unwrap();
        assert!(load(dir.path()).is_none());
        fs::write(path(dir.path()), b"short").unwrap();
        assert!(load(dir.path()).is_none());
    }
}
