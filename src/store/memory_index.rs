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

/// Event id → position, in ≈ 24 bytes per event rather than a hash map's 40–52: the ids known
/// at the last compaction in one array sorted by (bucket, id), where a directory of 2¹⁶ buckets
/// (a hash of the id's bytes, so any kind of UUID spreads) narrows a look-up to a handful of
/// neighbouring entries, plus a hash map of the ids added since. The map is merged into the
/// array when it reaches an eighth of it (at least [`ID_COMPACT_MIN`] ids): amortised O(1)
/// per id, ≈ 15 ms for a million.
#[derive(Debug, Default)]
pub struct IdIndex {
    sorted: Vec<(EventId, Position)>,
    /// `sorted[starts[b]..starts[b + 1]]` holds bucket `b`; empty while `sorted` is.
    starts: Vec<u32>,
    recent: HashMap<EventId, Position>,
}

/// The fewest recent ids merged into the sorted array at once.
pub const ID_COMPACT_MIN: usize = 65_536;
const BUCKET_BITS: u32 = 16;

fn bucket(id: &EventId) -> usize {
    let bytes = id.as_bytes();
    let low = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let high = u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
    ((low ^ high.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BUCKET_BITS)) as usize
}

fn order(entry: &(EventId, Position)) -> (usize, EventId) {
    (bucket(&entry.0), entry.0)
}

impl IdIndex {
    /// The index of `entries`; the first id found twice is the error, with both positions.
    pub fn from_entries(mut entries: Vec<(EventId, Position)>) -> Result<Self, (EventId, Position, Position)> {
        entries.sort_unstable_by_key(order);
        if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err((pair[0].0, pair[0].1, pair[1].1));
        }
        let mut index = Self { sorted: entries, starts: Vec::new(), recent: HashMap::new() };
        index.index_buckets();
        Ok(index)
    }

    pub fn get(&self, id: &EventId) -> Option<Position> {
        self.recent.get(id).copied().or_else(|| self.get_sorted(id))
    }

    fn get_sorted(&self, id: &EventId) -> Option<Position> {
        if self.sorted.is_empty() {
            return None;
        }
        let b = bucket(id);
        let part = &self.sorted[self.starts[b] as usize..self.starts[b + 1] as usize];
        part.binary_search_by(|(k, _)| k.cmp(id)).ok().map(|i| part[i].1)
    }

    /// Adds `id` at `position` unless it is there: then its position, and nothing changes.
    pub fn insert(&mut self, id: EventId, position: Position) -> Option<Position> {
        if let Some(earlier) = self.get_sorted(&id) {
            return Some(earlier);
        }
        match self.recent.entry(id) {
            Entry::Occupied(entry) => Some(*entry.get()),
            Entry::Vacant(entry) => {
                entry.insert(position);
                self.compact_if_due();
                None
            }
        }
    }

    /// Adds ids known to be new (a durable commit's: the writer checked each).
    pub fn extend_new(&mut self, entries: impl IntoIterator<Item = (EventId, Position)>) {
        self.recent.extend(entries);
        self.compact_if_due();
    }

    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Every (id, position), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&EventId, &Position)> {
        self.sorted.iter().map(|(id, position)| (id, position)).chain(self.recent.iter())
    }

    fn compact_if_due(&mut self) {
        if self.recent.len() >= ID_COMPACT_MIN.max(self.sorted.len() / 8) {
            self.compact();
        }
    }

    /// Merges the recent ids into the sorted array.
    pub fn compact(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        let mut fresh: Vec<_> = std::mem::take(&mut self.recent).into_iter().collect();
        fresh.sort_unstable_by_key(order);
        let old = std::mem::take(&mut self.sorted);
        let mut merged = Vec::with_capacity(old.len() + fresh.len());
        let (mut old, mut fresh) = (old.into_iter().peekable(), fresh.into_iter().peekable());
        loop {
            let next = match (old.peek(), fresh.peek()) {
                (Some(a), Some(b)) if order(a) <= order(b) => old.next(),
                (Some(_), Some(_)) => fresh.next(),
                (Some(_), None) => old.next(),
                (None, Some(_)) => fresh.next(),
                (None, None) => break,
            };
            merged.extend(next);
        }
        self.sorted = merged;
        self.index_buckets();
    }

    fn index_buckets(&mut self) {
        let mut starts = vec![0u32; (1 << BUCKET_BITS) + 1];
        for (id, _) in &self.sorted {
            starts[bucket(id) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        self.starts = starts;
    }
}

/// Stream fingerprint ([`stream_fingerprint`]) → the position of the stream's first event.
pub type StreamMap = HashMap<u64, Position, BuildHasherDefault<IdentityHasher>>;

/// The in-memory indexes, under the store's one lock.
#[derive(Debug)]
pub struct MemoryIndex {
    /// Event id → position, for every durably committed event (extended after the sync).
    pub ids: IdIndex,
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
        Self { ids: IdIndex::default(), covered: Position(0), streams: StreamMap::default(), collided: HashMap::new() }
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
    fn the_id_index_answers_like_a_map_across_compactions() {
        let mut index = IdIndex::default();
        let mut model = HashMap::new();
        let ids: Vec<EventId> = (0..3 * ID_COMPACT_MIN as u64 + 17).map(|_| EventId::generate()).collect();
        for (i, id) in ids.iter().enumerate() {
            let position = Position(i as u64 + 1);
            if i % 3 == 0 {
                assert_eq!(index.insert(*id, position), None);
            } else {
                index.extend_new([(*id, position)]);
            }
            model.insert(*id, position);
            // A second insert keeps the first position.
            if i % 1000 == 0 {
                assert_eq!(index.insert(*id, Position(u64::MAX)), Some(position));
            }
        }
        assert!(!index.sorted.is_empty() && index.recent.len() < ID_COMPACT_MIN, "compactions happened");
        assert_eq!(index.len(), model.len());
        for (id, position) in &model {
            assert_eq!(index.get(id), Some(*position));
        }
        assert_eq!(index.get(&EventId::generate()), None);
        let listed: HashMap<EventId, Position> = index.iter().map(|(id, p)| (*id, *p)).collect();
        assert_eq!(listed, model);
        // Built from entries, duplicates refused.
        let entries: Vec<_> = model.iter().map(|(id, p)| (*id, *p)).collect();
        let rebuilt = IdIndex::from_entries(entries.clone()).unwrap();
        assert!(model.iter().all(|(id, p)| rebuilt.get(id) == Some(*p)));
        let mut twice = entries;
        twice.push((twice[5].0, Position(0)));
        let (id, _, _) = IdIndex::from_entries(twice.clone()).unwrap_err();
        assert_eq!(id, twice[5].0);
    }

    #[test]
    fn a_u64_hashes_to_itself() {
        let build = BuildHasherDefault::<IdentityHasher>::default();
        assert_eq!(build.hash_one(0xDEAD_BEEF_u64), 0xDEAD_BEEF);
    }
}
