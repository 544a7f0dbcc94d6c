//! The offline checks of a stopped ledger's directory: `verify --data` (every record, the
//! chain, the Merkle subtree roots, the stored checkpoints, authorship and event signatures,
//! and that the log reaches what its head journal says was acknowledged), and whether its log
//! still extends a checkpoint saved earlier.

use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::bundle::{self, Failure, Place};
use super::transfer::open_store;
use crate::audit::checkpoint::{SignedCheckpoint, TreeKind};
use crate::audit::merkle::{Blake3Tree, MerkleFrontier, TreeHash};
use crate::audit::{Hash, hex};
use crate::domain::Position;
use crate::ledger::Verdict;
use crate::store::{Store, StoreConfig};

/// Chain hashes read from the store per step when a Merkle root is recomputed offline: memory
/// stays at 2 MiB whatever the log's size.
const ROOT_STEP_RECORDS: u64 = 1 << 16;

/// `verify --data DIR`: the whole check of a stopped ledger. A failure of the data is a
/// verdict; only a failure to read at all is an error.
pub fn verify_data(dir: &Path) -> anyhow::Result<Verdict> {
    Ok(crate::ledger::verify_store(dir, &StoreConfig::default(), None)?)
}

/// Whether the stopped ledger in `data` still extends `saved`: its signature holds, the log
/// holds at least its records, and their Merkle root is the one it signed.
pub fn log_extends(
    data: &Path,
    saved: &SignedCheckpoint,
    pinned: Option<&VerifyingKey>,
) -> anyhow::Result<Result<(), Failure>> {
    let position = saved.checkpoint.position;
    let at = Place::Checkpoint(position);
    if let Err(reason) = bundle::check_signature(saved, pinned) {
        let reason = format!("the checkpoint file does not verify: {reason}");
        return Ok(Err(Failure { at, reason, verified_up_to: None }));
    }
    let failure = |reason: String| Failure {
        at,
        reason: format!("the log no longer extends the checkpoint at position {position}: {reason}"),
        verified_up_to: None,
    };
    let store = open_store(data)?;
    let head = store.head()?.position.0;
    if head < position {
        return Ok(Err(failure(format!(
            "records were removed: the checkpoint covers {position} records, the log now holds only {head}"
        ))));
    }
    let root = match saved.tree() {
        // The stored roots of the log's large subtrees, which `verify --data` checks against
        // the records: O(log n) reads rather than every chain hash.
        TreeKind::Sha256 => crate::ledger::stored_merkle_root(&store, position)?,
        // Old checkpoints signed the format-1 tree, whose subtree roots are no longer kept.
        TreeKind::Blake3 => merkle_root::<Blake3Tree>(&store, position)?,
    };
    if root != saved.checkpoint.root {
        return Ok(Err(failure(format!(
            "the history up to position {position} was rewritten: the Merkle root of the log's first \
                 {position} records is {}, the checkpoint signed {}",
            hex::encode(&root),
            hex::encode(&saved.checkpoint.root)
        ))));
    }
    Ok(Ok(()))
}

/// The Merkle root of the first `size` records of a store, in constant memory.
fn merkle_root<T: TreeHash>(store: &Store, size: u64) -> anyhow::Result<Hash> {
    let mut frontier = MerkleFrontier::<T>::default();
    let mut from = 1;
    while from <= size {
        let to = (from + ROOT_STEP_RECORDS - 1).min(size);
        for hash in store.chain_hashes(Position(from), Position(to))? {
            frontier.append(&hash);
        }
        from = to + 1;
    }
    Ok(frontier.root())
}
