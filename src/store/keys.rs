//! The key spaces of the one sled tree. Every key starts with a one-byte space tag; integers
//! are fixed-width big-endian, so that sled's byte order is numeric order.
//!
//! | space | key | value |
//! |---|---|---|
//! | meta | `M` name | see [`META_FORMAT`], [`META_HEAD`] |
//! | log | `L` first position of a chunk (u64) | a chunk of consecutive records (see `chunk`) |
//! | stream index | `S` position of the stream's first event (u64), first revision of a run (u64, ≥ 1) | the positions of the run's consecutive revisions (u64 each) |
//! | views (first layout, removed on open) | `V` … | — (views now live in a tree per generation, see `views`) |
//! | access index | `A` position (u64) | empty: the position holds an event of a `principal-` stream |
//!
//! A stream is keyed by where it began, not by its name (store format 1 did that): the store
//! finds the position of a stream's first event from its name in memory (`memory_index`) and
//! confirms it by reading that record, whose stream and revision 0 it checks (so a fingerprint
//! shared by two streams never mixes them up). Revision 0 is that record, so a stream of one
//! event — each commitment, each project — costs no index insert at all; its later revisions
//! are runs under its first position. Several records share one log value and one commit
//! group's events of a stream share one index value: sled's cost is per insert, so fewer
//! inserts than events is what makes batched appends fast.

use crate::domain::{Position, Revision};

pub const META: u8 = b'M';
pub const LOG: u8 = b'L';
pub const STREAM: u8 = b'S';
pub const VIEWS: u8 = b'V';
pub const ACCESS: u8 = b'A';

/// The prefix of the streams whose events the access index lists.
pub const ACCESS_STREAM_PREFIX: &str = "principal-";

/// The access index's key of the event at `position`.
pub fn access(position: Position) -> [u8; 9] {
    let mut key = [ACCESS; 9];
    key[1..].copy_from_slice(&position.0.to_be_bytes());
    key
}

/// The store format version of the database (one byte).
pub const META_FORMAT: &[u8] = b"Mformat";
/// The log's head: last position (u64) and its chain hash (32 bytes), written in the same
/// atomic batch as the records it covers.
pub const META_HEAD: &[u8] = b"Mhead";

pub fn log(position: Position) -> [u8; 9] {
    let mut key = [LOG; 9];
    key[1..].copy_from_slice(&position.0.to_be_bytes());
    key
}

pub fn log_position(key: &[u8]) -> Option<Position> {
    match key {
        [LOG, rest @ ..] => Some(Position(u64::from_be_bytes(rest.try_into().ok()?))),
        _ => None,
    }
}

/// The prefix of every index run of the stream whose first event is at `first`.
pub fn stream_prefix(first: Position) -> [u8; 9] {
    let mut key = [STREAM; 9];
    key[1..].copy_from_slice(&first.0.to_be_bytes());
    key
}

/// The key of the index run starting at `revision` of the stream whose first event is at `first`.
pub fn stream(first: Position, revision: Revision) -> [u8; 17] {
    let mut key = [STREAM; 17];
    key[1..9].copy_from_slice(&first.0.to_be_bytes());
    key[9..].copy_from_slice(&revision.0.to_be_bytes());
    key
}

/// The first position and revision of a stream-index key.
pub fn stream_key_parts(key: &[u8]) -> Option<(Position, Revision)> {
    match key {
        [STREAM, rest @ ..] if rest.len() == 16 => Some((
            Position(u64::from_be_bytes(rest[..8].try_into().ok()?)),
            Revision(u64::from_be_bytes(rest[8..].try_into().ok()?)),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_position() {
        let keys: Vec<_> = [1u64, 2, 255, 256, 65_536, u64::MAX].map(|p| log(Position(p))).into();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(log_position(&log(Position(65_536))), Some(Position(65_536)));
    }

    #[test]
    fn stream_keys_sort_by_first_position_then_revision() {
        let keys: Vec<_> = [(1u64, 0u64), (1, 1), (1, 256), (2, 0), (256, 0), (256, 9)]
            .map(|(p, r)| stream(Position(p), Revision(r)))
            .into();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(stream(Position(256), Revision(u64::MAX)).starts_with(&stream_prefix(Position(256))));
        assert!(!stream(Position(257), Revision(0)).starts_with(&stream_prefix(Position(256))));
        assert_eq!(stream_key_parts(&stream(Position(9), Revision(7))), Some((Position(9), Revision(7))));
        assert_eq!(stream_key_parts(&log(Position(9))), None);
    }
}
