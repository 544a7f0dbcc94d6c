//! The key spaces of the one sled tree. Every key starts with a one-byte space tag; integers
//! are fixed-width big-endian, so that sled's byte order is numeric order.
//!
//! | space | key | value |
//! |---|---|---|
//! | meta | `M` name | see [`META_FORMAT`], [`META_HEAD`] |
//! | log | `L` first position of a chunk (u64) | a chunk of consecutive records (see `chunk`) |
//! | stream index | `S` stream name, `0x00`, first revision of a run (u64) | the positions of the run's consecutive revisions (u64 each) |
//! | views (first layout, removed on open) | `V` … | — (views now live in a tree per generation, see `views`) |
//!
//! Stream names are ASCII without `0x00`, so the separator keeps `member-J` and `member-JP`
//! apart in prefix scans. Several records share one log value and one commit group's events of
//! a stream share one index value: sled's cost is per insert, so fewer inserts than events is
//! what makes batched appends fast.

use crate::domain::{Position, Revision, StreamName};

pub const META: u8 = b'M';
pub const LOG: u8 = b'L';
pub const STREAM: u8 = b'S';
pub const VIEWS: u8 = b'V';

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

pub fn stream_prefix(stream: &StreamName) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.as_str().len() + 10);
    key.push(STREAM);
    key.extend_from_slice(stream.as_str().as_bytes());
    key.push(0);
    key
}

pub fn stream(stream: &StreamName, revision: Revision) -> Vec<u8> {
    let mut key = stream_prefix(stream);
    key.extend_from_slice(&revision.0.to_be_bytes());
    key
}

/// The revision at the end of a stream-index key.
pub fn stream_revision(key: &[u8]) -> Option<Revision> {
    let tail = key.len().checked_sub(8)?;
    Some(Revision(u64::from_be_bytes(key[tail..].try_into().ok()?)))
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
    fn stream_keys_do_not_mix_prefixes() {
        let short = StreamName::parse("s", "member-EU").unwrap();
        let long = StreamName::parse("s", "member-EUR").unwrap();
        let short_key = stream(&short, Revision(u64::MAX));
        assert!(short_key.starts_with(&stream_prefix(&short)));
        assert!(!stream(&long, Revision(0)).starts_with(&stream_prefix(&short)));
        assert_eq!(stream_revision(&stream(&long, Revision(7))), Some(Revision(7)));
    }
}
