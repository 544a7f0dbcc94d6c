//! The store's in-memory indexes, built together on open (from the id snapshot and the log
//! after it) and extended together on each commit: event id → position, and the fingerprints
//! of the streams that have a record. Neither is in sled: one entry per event or per stream
//! would cost one insert each.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::domain::{EventId, Position};

/// A stream name's fingerprint: the first 8 bytes of `BLAKE3(name bytes)` read as a big-endian
/// `u64` (so the id snapshot, which writes integers big-endian, stores exactly those 8 bytes).
/// It is persisted in the id snapshot: it must never change.
pub fn stream_fingerprint(name: &[u8]) -> u64 {
    let hash = blake3::hash(name);
    u64::from_be_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The hasher of [`StreamSet`]: a fingerprint is already uniform, so it is its own hash.
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

/// Stream fingerprints ([`stream_fingerprint`]).
pub type StreamSet = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

/// The in-memory indexes, under the store's one lock.
#[derive(Debug, Default)]
pub struct MemoryIndex {
    /// Event id → position, for every durably committed event (extended after the sync).
    pub ids: HashMap<EventId, Position>,
    /// Invariant: holds the fingerprint of every stream that has a record visible in sled
    /// (extended *before* a batch is applied). It may hold more — a fingerprint collision, a
    /// batch whose write failed, records past the head removed by recovery — which only costs a
    /// seek that finds nothing; it never misses one, so a fingerprint absent from it is an exact
    /// "no such stream".
    pub streams: StreamSet,
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
    fn a_u64_hashes_to_itself() {
        let build = BuildHasherDefault::<IdentityHasher>::default();
        assert_eq!(build.hash_one(0xDEAD_BEEF_u64), 0xDEAD_BEEF);
    }
}
