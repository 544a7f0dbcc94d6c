//! The store's in-memory indexes, built together on open (from the id snapshot and the log
//! after it) and extended together on each commit: event id → position, and stream
//! fingerprint → the position of the stream's first event (where its index runs are keyed in
//! sled). Neither is a sled key space: one entry per event would cost one insert each, and a
//! key per stream name would be an insert at a random place of the tree for every new stream.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};

use crate::domain::{EventId, Position};

/// A stream name's fingerprint: the first 8 bytes of `BLAKE3(name bytes)` read as a big-endian
/// `u64` (so the id snapshot, which writes integers big-endian, stores exactly those 8 bytes).
/// It is persisted in the id snapshot: it must never change.
pub fn stream_fingerprint(name: &[u8]) -> u64 {
    let hash = blake3::hash(name);
    u64::from_be_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The hasher of [`StreamMap`]: a fingerprint is already uniform, so it is its own hash.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    /// Only `u64` keys are hashed here (through `write_u64`); anything else is folded in
    /// (FNV-1a) rather than silently collapsing to one bucket.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Stream fingerprint ([`stream_fingerprint`]) → the position of the stream's first event.
pub type StreamMap = HashMap<u64, Position, BuildHasherDefault<IdentityHasher>>;

/// The in-memory indexes, under the store's one lock.
#[derive(Debug)]
pub struct MemoryIndex {
    /// Event id → position, for every durably committed event (extended after the sync).
    pub ids: HashMap<EventId, Position>,
    /// The last position whose event id is in `ids`: what a snapshot of this index covers.
    pub covered: Position,
    /// Invariant: holds, for every stream with a record visible in sled, the position of its
    /// first event under its fingerprint (extended *before* a batch is applied) — or, when
    /// another stream already held that fingerprint, in [`MemoryIndex::collided`]. It may hold
    /// more (a batch whose write failed, records past the head removed by recovery): the record
    /// at a candidate position must be the stream's revision 0, so a wrong candidate costs a
    /// read that finds another stream or nothing, never a wrong answer. It never misses one, so a fingerprint
    /// absent from it is an exact "no such stream".
    pub streams: StreamMap,
    /// Streams whose fingerprint was already taken when their first event was written: name →
    /// the position of that event. Almost always empty (two of n streams share a 64-bit
    /// fingerprint with probability ≈ n²/2⁶⁵).
    pub collided: HashMap<Vec<u8>, Position>,
}

impl Default for MemoryIndex {
    fn default() -> Self {
        Self { ids: HashMap::new(), covered: Position(0), streams: StreamMap::default(), collided: HashMap::new() }
    }
}

impl MemoryIndex {
    /// Records that the stream `name`'s first event is at `first`.
    pub fn add_stream(&mut self, name: &[u8], first: Position) {
        match self.streams.entry(stream_fingerprint(name)) {
            Entry::Vacant(entry) => {
                entry.insert(first);
            }
            Entry::Occupied(entry) if *entry.get() == first => {}
            // Another stream's (or a stale entry of a write that failed): keep both exact.
            Entry::Occupied(_) => {
                self.collided.insert(name.to_vec(), first);
            }
        }
    }

    /// Where the stream `name` began, if it may have a record: the position of its first event,
    /// for the caller to confirm by reading that record (this stream, revision 0). `None` is
    /// exact.
    pub fn stream_start(&self, name: &[u8]) -> Option<Position> {
        if !self.collided.is_empty()
            && let Some(first) = self.collided.get(name)
        {
            return Some(*first);
        }
        self.streams.get(&stream_fingerprint(name)).copied()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn the_fingerprint_is_the_first_eight_bytes_of_blake3() {
        let hash = blake3::hash(b"member-JP");
        assert_eq!(stream_fingerprint(b"member-JP").to_be_bytes(), hash.as_bytes()[..8]);
        assert_ne!(stream_fingerprint(b"member-JP"), stream_fingerprint(b"member-J"));
    }

    #[test]
    fn streams_sharing_a_fingerprint_are_kept_apart() {
        let mut index = MemoryIndex::default();
        index.add_stream(b"member-JP", Position(3));
        index.add_stream(b"member-JP", Position(3));
        assert!(index.collided.is_empty(), "the same stream again is no collision");
        assert_eq!(index.stream_start(b"member-JP"), Some(Position(3)));
        assert_eq!(index.stream_start(b"member-KR"), None);
        // Force a collision: another name under member-JP's fingerprint.
        let fingerprint = stream_fingerprint(b"member-JP");
        index.streams.insert(fingerprint, Position(3));
        index.collided.insert(b"member-XX".to_vec(), Position(9));
        assert_eq!(index.stream_start(b"member-XX"), Some(Position(9)));
        assert_eq!(index.stream_start(b"member-JP"), Some(Position(3)));
        // A first event of a stream whose fingerprint is taken goes to `collided`.
        index.streams.insert(stream_fingerprint(b"member-KR"), Position(4));
        index.add_stream(b"member-KR", Position(12));
        assert_eq!(index.collided.get(b"member-KR".as_slice()), Some(&Position(12)));
        assert_eq!(index.stream_start(b"member-KR"), Some(Position(12)));
    }

    #[test]
    fn a_u64_hashes_to_itself() {
        let build = BuildHasherDefault::<IdentityHasher>::default();
        assert_eq!(build.hash_one(0xDEAD_BEEF_u64), 0xDEAD_BEEF);
    }
}
