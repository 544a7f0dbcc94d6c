//! A hash of the set of view records that moves with the set, so that the view digest costs
//! O(1) per record change instead of a scan of every view.
//!
//! It is LtHash16 (Bellare and Micciancio's additive hash over a lattice, with the parameters of
//! Lewi et al., "Securing Update Propagation with Homomorphic Hashing", 2019): each record is
//! mapped to a vector of 1,024 16-bit lanes — the first 2,048 bytes of BLAKE3's extendable
//! output, in key-derivation mode with the context [`RECORD_CONTEXT`], over the record's
//! canonical bytes, read as little-endian `u16`s — and the set's hash is the lane-wise sum of
//! its records' vectors modulo 2^16. Adding a record adds its vector, removing it subtracts it:
//! the same set gives the same hash whatever the order of the changes. Finding two sets with
//! the same hash is as hard as a short-vector problem in a lattice of dimension 1,024 (≈ 200
//! bits of security for these parameters); a plain sum or XOR of 256-bit hashes would not be.

use crate::domain::Position;

/// Lanes per vector.
pub const LANES: usize = 1024;
/// The bytes of a set hash's lanes.
pub const LANE_BYTES: usize = LANES * 2;
/// BLAKE3's key-derivation context for a record's vector.
pub const RECORD_CONTEXT: &str = "pax-ledger 2026-11-25 view record LtHash16";
/// The first bytes hashed into a view digest.
pub const VIEW_DIGEST_PREFIX: &[u8] = b"pax-ledger views v2\n";

/// The LtHash16 of a set of view records, and how many records the set holds.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordSetHash {
    lanes: Box<[u16; LANES]>,
    records: u64,
}

impl Default for RecordSetHash {
    fn default() -> Self {
        Self { lanes: Box::new([0; LANES]), records: 0 }
    }
}

impl std::fmt::Debug for RecordSetHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lanes = blake3::hash(&self.lane_bytes());
        f.debug_struct("RecordSetHash").field("records", &self.records).field("lanes", &lanes.to_hex()).finish()
    }
}

impl RecordSetHash {
    /// Adds a record by its canonical bytes.
    pub fn add(&mut self, record_bytes: &[u8]) {
        let vector = vector(record_bytes);
        for (lane, v) in self.lanes.iter_mut().zip(vector.iter()) {
            *lane = lane.wrapping_add(*v);
        }
        self.records += 1;
    }

    /// Removes a record the set holds, by its canonical bytes.
    pub fn remove(&mut self, record_bytes: &[u8]) {
        let vector = vector(record_bytes);
        for (lane, v) in self.lanes.iter_mut().zip(vector.iter()) {
            *lane = lane.wrapping_sub(*v);
        }
        self.records = self.records.checked_sub(1).expect("a record removed from a set that holds none");
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// The lanes, little-endian: what the store keeps and what the digest hashes.
    pub fn lane_bytes(&self) -> Vec<u8> {
        self.lanes.iter().flat_map(|lane| lane.to_le_bytes()).collect()
    }

    /// The hash of `records` records with the given lanes; `None` unless `lane_bytes` holds
    /// exactly [`LANE_BYTES`] bytes.
    pub fn from_parts(records: u64, lane_bytes: &[u8]) -> Option<Self> {
        if lane_bytes.len() != LANE_BYTES {
            return None;
        }
        let mut lanes = Box::new([0; LANES]);
        for (lane, bytes) in lanes.iter_mut().zip(lane_bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([bytes[0], bytes[1]]);
        }
        Some(Self { lanes, records })
    }

    /// The view digest of this set at `position`: BLAKE3 over [`VIEW_DIGEST_PREFIX`], the
    /// position and the record count (`u64` big-endian each), then the 2,048 lane bytes.
    pub fn digest(&self, position: Position) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(VIEW_DIGEST_PREFIX);
        hasher.update(&position.0.to_be_bytes());
        hasher.update(&self.records.to_be_bytes());
        hasher.update(&self.lane_bytes());
        *hasher.finalize().as_bytes()
    }
}

/// A record's vector.
fn vector(record_bytes: &[u8]) -> [u16; LANES] {
    let mut bytes = [0u8; LANE_BYTES];
    let mut hasher = blake3::Hasher::new_derive_key(RECORD_CONTEXT);
    hasher.update(record_bytes);
    hasher.finalize_xof().fill(&mut bytes);
    let mut vector = [0u16; LANES];
    for (lane, pair) in vector.iter_mut().zip(bytes.chunks_exact(2)) {
        *lane = u16::from_le_bytes([pair[0], pair[1]]);
    }
    vector
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(records: &[&[u8]]) -> RecordSetHash {
        let mut set = RecordSetHash::default();
        for record in records {
            set.add(record);
        }
        set
    }

    #[test]
    fn the_same_set_gives_the_same_hash_whatever_the_order_of_changes() {
        let direct = set(&[b"a", b"b", b"c"]);
        let mut moved = set(&[b"c", b"x", b"a"]);
        moved.remove(b"x");
        moved.add(b"b");
        assert_eq!(moved, direct);
        assert_eq!(moved.digest(Position(7)), direct.digest(Position(7)));
        let mut emptied = direct.clone();
        for record in [b"b", b"a", b"c"] {
            emptied.remove(record);
        }
        assert_eq!(emptied, RecordSetHash::default());
    }

    #[test]
    fn the_digest_depends_on_the_records_the_count_and_the_position() {
        let base = set(&[b"a", b"b"]);
        assert_ne!(base.digest(Position(1)), base.digest(Position(2)));
        assert_ne!(base.digest(Position(1)), set(&[b"a", b"c"]).digest(Position(1)));
        assert_ne!(base.digest(Position(1)), set(&[b"a"]).digest(Position(1)));
        // A record twice is not the same set as once, and the count alone does not decide.
        assert_ne!(set(&[b"a", b"a"]).digest(Position(1)), set(&[b"a", b"b"]).digest(Position(1)));
    }

    #[test]
    fn it_round_trips_through_its_parts_and_refuses_a_wrong_length() {
        let hash = set(&[b"a", b"b", b"c"]);
        let back = RecordSetHash::from_parts(hash.records(), &hash.lane_bytes()).unwrap();
        assert_eq!(back, hash);
        assert!(RecordSetHash::from_parts(3, &hash.lane_bytes()[1..]).is_none());
    }

    #[test]
    fn the_test_vectors_of_docs_audit_hold() {
        // Checked against an independent implementation (Python's `blake3` package), as
        // docs/AUDIT.md gives them.
        let mut set = set(&[b"a", b"b"]);
        assert_eq!((set.lanes[0], set.lanes[LANES - 1]), (0x0e0a, 0x988c));
        assert_eq!(
            crate::audit::hex::encode(&set.digest(Position(7))),
            "f5c12a6f508fa727b097faf359d3cdb4ed96f40fa371c4403126ce9750beadfb"
        );
        set.remove(b"a");
        set.remove(b"b");
        assert_eq!(
            crate::audit::hex::encode(&set.digest(Position(0))),
            "d91e72e30f7d792ebdd4c8219732f93e24a45ba79946c1b92d2a020e24a6bde7"
        );
    }
}
