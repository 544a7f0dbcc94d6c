//! The audit key spaces: roots of the Merkle tree's large aligned subtrees, and the signed
//! checkpoints. Opaque to the store (hashes and bytes); `audit` defines what they mean.
//!
//! | key | value |
//! |---|---|
//! | `T` level (u8) index (u64) | the root (32 bytes) of the perfect subtree over leaves `[index·2^level, (index+1)·2^level)`, for levels ≥ [`SUBTREE_LEVEL_MIN`] |
//! | `N` position (u64) | a signed checkpoint (a note) of the log's first `position` records, as its JSON form |
//! | `C` position (u64) | a checkpoint of format 1 (signed before the upgrade to notes), as its JSON form; kept, never written again but by an import |
//! | `Mtree` | the tree format of the `T` roots (one byte, see [`TREE_FORMAT`]); absent in a store written before it: format 1 |
//!
//! Subtree roots are written in the commit batch that completes them (one insert per
//! 2^SUBTREE_LEVEL_MIN events, amortised, whatever the level), so proofs never need more than
//! one block of leaves read from the log. Smaller subtrees are recomputed from the chain hashes
//! stored in the chunks.

use super::{CommitBatch, Hash, LoadedChunk, Store, StoreError, engine, keys};
use crate::domain::Position;

/// The smallest subtree whose root is stored: 2^10 = 1,024 leaves.
pub const SUBTREE_LEVEL_MIN: u8 = 10;

const SUBTREE: u8 = b'T';
const CHECKPOINT: u8 = b'N';
const CHECKPOINT_FORMAT_1: u8 = b'C';
const META_TREE: &[u8] = b"Mtree";

/// The tree format whose subtree roots this build stores: 2, RFC 6962 with SHA-256. (1 was the
/// same layout with BLAKE3; a store of format 1 has its roots recomputed on open, by the ledger,
/// which owns what they mean.)
pub const TREE_FORMAT: u8 = 2;

/// Which checkpoints: the ones signed now (notes), or those of format 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointSpace {
    Notes,
    Format1,
}

impl CheckpointSpace {
    fn tag(self) -> u8 {
        match self {
            Self::Notes => CHECKPOINT,
            Self::Format1 => CHECKPOINT_FORMAT_1,
        }
    }
}

fn subtree_key(level: u8, index: u64) -> [u8; 10] {
    let mut key = [0; 10];
    key[0] = SUBTREE;
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

fn checkpoint_key(space: CheckpointSpace, position: Position) -> [u8; 9] {
    let mut key = [space.tag(); 9];
    key[1..].copy_from_slice(&position.0.to_be_bytes());
    key
}

impl CommitBatch {
    /// Stores the root of a completed aligned subtree with the records that complete it.
    pub fn put_subtree(&mut self, level: u8, index: u64, root: Hash) {
        debug_assert!(level >= SUBTREE_LEVEL_MIN);
        self.subtrees.push((level, index, root));
    }
}

pub(super) fn batch_subtree(batch: &mut sled::Batch, level: u8, index: u64, root: &Hash) {
    batch.insert(&subtree_key(level, index), root.as_slice());
}

impl Store {
    /// The stored root of an aligned subtree, if written.
    pub fn subtree(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        engine("reading the Merkle tree", || match self.db.get(subtree_key(level, index))? {
            None => Ok(None),
            Some(value) => Ok(Some(value.as_ref().try_into().map_err(|_| {
                StoreError::corrupt(format!("subtree {level}/{index}"), "a subtree root is not 32 bytes")
            })?)),
        })
    }

    /// Writes subtree roots computed after the fact (a store from before they were kept, or
    /// one imported from a bundle). Not synced: they can always be computed again.
    pub fn put_subtrees(&self, roots: &[(u8, u64, Hash)]) -> Result<(), StoreError> {
        engine("writing the Merkle tree", || {
            let mut batch = sled::Batch::default();
            for (level, index, root) in roots {
                batch_subtree(&mut batch, *level, *index, root);
            }
            Ok(self.db.apply_batch(batch)?)
        })
    }

    /// The chain hashes of the records at positions `from..=to` (the Merkle tree's leaves),
    /// read from the chunks without decoding the bodies.
    pub fn chain_hashes(&self, from: Position, to: Position) -> Result<Vec<Hash>, StoreError> {
        engine("reading the log", || {
            let mut hashes = Vec::with_capacity(to.0.saturating_sub(from.0).saturating_add(1).min(1 << 20) as usize);
            if from > to {
                return Ok(hashes);
            }
            let start = match self.db.range(keys::log(Position(0))..=keys::log(from)).next_back().transpose()? {
                Some((key, _)) => key.to_vec(),
                None => keys::log(from).to_vec(),
            };
            let mut next = from.0;
            for entry in self.db.range(start..=keys::log(to).to_vec()) {
                let (key, value) = entry?;
                let chunk = LoadedChunk::load(&key, value)?;
                if chunk.first.0 > next {
                    break;
                }
                for index in (next - chunk.first.0) as usize..chunk.layout.len() {
                    if next > to.0 {
                        break;
                    }
                    hashes.push(chunk.layout.record(&chunk.value, index).0);
                    next += 1;
                }
            }
            if next <= to.0 {
                return Err(StoreError::corrupt(format!("position {next}"), "record missing below the log head"));
            }
            Ok(hashes)
        })
    }

    /// The tree format of the stored subtree roots: [`TREE_FORMAT`], or 1 for a store written
    /// before the marker existed (an empty store is of this build's).
    pub fn tree_format(&self) -> Result<u8, StoreError> {
        engine("reading the Merkle tree", || match self.db.get(META_TREE)? {
            Some(value) if value.len() == 1 => Ok(value[0]),
            Some(_) => Err(StoreError::corrupt("the tree format", "not one byte")),
            None if self.db.scan_prefix([SUBTREE]).next().is_none() && self.head()?.position.0 == 0 => Ok(TREE_FORMAT),
            None => Ok(1),
        })
    }

    /// Whether the tree format is written down (a new store's is implied until it is).
    pub fn tree_format_marked(&self) -> Result<bool, StoreError> {
        engine("reading the Merkle tree", || Ok(self.db.contains_key(META_TREE)?))
    }

    /// Marks the stored subtree roots as of `format`, durably: the last step of recomputing them.
    pub fn set_tree_format(&self, format: u8) -> Result<(), StoreError> {
        engine("writing the Merkle tree", || {
            self.db.insert(META_TREE, &[format])?;
            self.sync().map(drop)
        })
    }

    /// Stores a signed checkpoint (its JSON form) and syncs: a checkpoint handed to an
    /// auditor must still be there after a crash.
    pub fn put_checkpoint(&self, space: CheckpointSpace, position: Position, json: &[u8]) -> Result<(), StoreError> {
        engine("storing a checkpoint", || {
            self.db.insert(checkpoint_key(space, position), json)?;
            self.sync().map(drop)
        })
    }

    /// The stored checkpoint (a note) at exactly `position`.
    pub fn checkpoint(&self, position: Position) -> Result<Option<Vec<u8>>, StoreError> {
        engine("reading checkpoints", || {
            Ok(self.db.get(checkpoint_key(CheckpointSpace::Notes, position))?.map(|v| v.to_vec()))
        })
    }

    /// The stored checkpoints of one space in position order: (position, JSON form).
    pub fn checkpoints(
        &self,
        space: CheckpointSpace,
    ) -> impl DoubleEndedIterator<Item = Result<(Position, Vec<u8>), StoreError>> + '_ {
        super::Guarded::new(
            "reading checkpoints",
            self.db.scan_prefix([space.tag()]).map(|entry| {
                let (key, value) = entry?;
                let position = key
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .filter(|_| key.len() == 9)
                    .ok_or_else(|| StoreError::corrupt("checkpoints", "malformed key"))?;
                Ok((Position(position), value.to_vec()))
            }),
        )
    }

    /// The latest stored checkpoint of one space.
    pub fn latest_checkpoint(&self, space: CheckpointSpace) -> Result<Option<(Position, Vec<u8>)>, StoreError> {
        engine("reading checkpoints", || self.checkpoints(space).next_back().transpose())
    }
}
