//! Tamper evidence of a running ledger: the Merkle tree over the log's chain hashes (its large
//! subtrees' roots are kept by the writer, see `store::audit_keys`), proofs, signed checkpoints
//! (issued every N events or T seconds, and on request) and the live verification.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ed25519_dalek::SigningKey;

use super::verify::Stop;
use super::{Ledger, LedgerError, ViewsAt};
use crate::audit::checkpoint::{Checkpoint, SignedCheckpoint, TreeKind, ViewTree};
use crate::audit::merkle::{self, Blake3Tree, MerkleFrontier, NodeSource, node_hash};
use crate::audit::tower::{LeafRun, Piece, SubtreeRoot, SubtreeTower, decomposition, perfect_root};
use crate::audit::{ChainVerifier, Hash, keys};
use crate::domain::{EventId, Position};
use crate::store::{CheckpointSpace, Head, SUBTREE_LEVEL_MIN, Store, StoreError, TREE_FORMAT};

/// Chain hashes read per step when subtree roots are computed after the fact.
const CATCH_UP_STEP: u64 = 1 << 16;
/// Longest a checkpoint waits for the views to reach its position before it is signed without
/// a view digest.
const CHECKPOINT_VIEWS_WAIT: Duration = Duration::from_secs(10);

/// When checkpoints are issued, and with which key.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// The Ed25519 signing key file; default `<data dir>/signing.key`, generated on first start.
    pub signing_key: Option<PathBuf>,
    /// Issue a checkpoint once the log has grown by this many events since the last one…
    pub checkpoint_every_events: u64,
    /// …or once this long has passed since the last one and the log has grown at all.
    pub checkpoint_every: Duration,
    /// The log's origin: the first line of its checkpoints and the name of its key (a
    /// schema-less URL such as `ledger.example.org/pax-silica`, without spaces or '+'). Default
    /// `pax-ledger/<key id>`. Witnesses and auditors know the log by it: keep it once chosen.
    pub origin: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            checkpoint_every_events: 100_000,
            checkpoint_every: Duration::from_secs(300),
            origin: None,
        }
    }
}

/// The log's origin: the configured one, checked, or `pax-ledger/<key id>`.
pub(super) fn origin(config: &AuditConfig, key: &SigningKey) -> Result<String, LedgerError> {
    let origin = config.origin.clone().unwrap_or_else(|| format!("pax-ledger/{}", keys::key_id(&key.verifying_key())));
    crate::audit::note::check_key_name(&origin).map_err(|e| LedgerError::Key(format!("checkpoint_origin: {e}")))?;
    Ok(origin)
}

/// Brings the stored subtree roots to this build's tree ([`TREE_FORMAT`]: RFC 6962 with SHA-256)
/// when they are of an older one: every root recomputed from the log, then the marker written
/// (a crash half-way leaves the old marker, and the next open starts over). Checkpoints signed
/// over the old tree are kept as they are; they still verify against the log.
pub(super) fn upgrade_tree(store: &Store, head: Head) -> Result<(), StoreError> {
    let format = store.tree_format()?;
    if format == TREE_FORMAT {
        // A new store: its format is written down before its first root is.
        if !store.tree_format_marked()? {
            store.set_tree_format(TREE_FORMAT)?;
        }
        return Ok(());
    }
    let size = head.position.0;
    tracing::info!(
        from = format,
        to = TREE_FORMAT,
        leaves = size,
        "upgrading the Merkle tree to RFC 6962 with SHA-256"
    );
    catch_up_subtrees(store, size - size % (1 << SUBTREE_LEVEL_MIN))?;
    store.set_tree_format(TREE_FORMAT)
}

/// The writer's tower after `head`: the stored roots of the large subtrees covering the log and
/// the chain hashes of the incomplete block after them. Roots missing (a store imported from a
/// bundle, or written before they were kept) are computed from the log first, once.
pub(super) fn open_tower(store: &Store, head: Head) -> Result<SubtreeTower, StoreError> {
    let size = head.position.0;
    let full = size - size % (1 << SUBTREE_LEVEL_MIN);
    let large: Vec<(u8, u64)> = decomposition(full);
    let mut upper = Vec::with_capacity(large.len());
    for (level, start) in &large {
        match store.subtree(*level, start >> level)? {
            Some(root) => upper.push((*level, root)),
            None => {
                catch_up_subtrees(store, full)?;
                return open_tower(store, head);
            }
        }
    }
    let tail = store.chain_hashes(Position(full + 1), head.position)?;
    Ok(SubtreeTower::restore(SUBTREE_LEVEL_MIN, size, upper, &tail))
}

/// Computes and stores every large subtree root of the first `full` leaves.
fn catch_up_subtrees(store: &Store, full: u64) -> Result<(), StoreError> {
    tracing::info!(leaves = full, "computing the Merkle tree's subtree roots from the log");
    let started = Instant::now();
    let mut tower = SubtreeTower::new(SUBTREE_LEVEL_MIN);
    let mut completed: Vec<SubtreeRoot> = Vec::new();
    let mut next = 1;
    while next <= full {
        let to = full.min(next + CATCH_UP_STEP - 1);
        for hash in store.chain_hashes(Position(next), Position(to))? {
            tower.append(&hash, &mut completed);
        }
        store.put_subtrees(&completed)?;
        completed.clear();
        next = to + 1;
    }
    tracing::info!(leaves = full, elapsed = ?started.elapsed(), "subtree roots computed");
    Ok(())
}

/// Subtree hashes of the log's tree of `size` leaves, from the stored roots of large subtrees
/// (or from the roots of its blocks as a verification recomputed them) and, below them, from
/// the chain hashes of one block (read once, then kept).
struct StoreNodes<'s> {
    store: &'s Store,
    size: u64,
    /// Whether the stored roots of large subtrees are of this build's tree (a read-only open of
    /// a store not upgraded yet computes every subtree from the log instead).
    stored: bool,
    block: RefCell<Option<(u64, Vec<Hash>)>>,
    /// The roots of the tree's blocks of 2^SUBTREE_LEVEL_MIN leaves, recomputed: used instead
    /// of the stored roots when set.
    recomputed: Option<&'s [Hash]>,
}

/// The Merkle root (RFC 6962, SHA-256) of the first `size` records of a store, from its stored
/// roots of large subtrees and the chain hashes of the rest: what a stopped ledger's checks use
/// once `verify_store` has checked those roots against the records.
pub fn stored_merkle_root(store: &Store, size: u64) -> Result<Hash, StoreError> {
    merkle::tree_root(size, &StoreNodes::new(store, size))
}

impl<'s> StoreNodes<'s> {
    fn new(store: &'s Store, size: u64) -> Self {
        let stored = store.tree_format().is_ok_and(|format| format == TREE_FORMAT);
        Self { store, size, stored, block: RefCell::new(None), recomputed: None }
    }

    /// Subtrees of at least a block made from recomputed block roots, not from stored roots.
    fn recomputed(store: &'s Store, size: u64, blocks: &'s [Hash]) -> Self {
        Self { recomputed: Some(blocks), ..Self::new(store, size) }
    }
}

impl NodeSource for StoreNodes<'_> {
    type Error = StoreError;

    fn subtree_hash(&self, start: u64, end: u64) -> Result<Hash, StoreError> {
        let width = end - start;
        let level = width.trailing_zeros() as u8;
        if level >= SUBTREE_LEVEL_MIN
            && let Some(blocks) = self.recomputed
        {
            let blocks = blocks.get((start >> SUBTREE_LEVEL_MIN) as usize..(end >> SUBTREE_LEVEL_MIN) as usize);
            let blocks = blocks.ok_or_else(|| {
                StoreError::corrupt(format!("position {}", start + 1), "a Merkle block beyond the log")
            })?;
            return Ok(perfect_root(blocks.to_vec()));
        }
        if level >= SUBTREE_LEVEL_MIN {
            if self.stored
                && let Some(root) = self.store.subtree(level, start >> level)?
            {
                return Ok(root);
            }
            let middle = start + width / 2;
            return Ok(node_hash(&self.subtree_hash(start, middle)?, &self.subtree_hash(middle, end)?));
        }
        let block_start = start - start % (1 << SUBTREE_LEVEL_MIN);
        let mut block = self.block.borrow_mut();
        if block.as_ref().is_none_or(|(cached, _)| *cached != block_start) {
            let last = self.size.min(block_start + (1 << SUBTREE_LEVEL_MIN));
            let hashes = self.store.chain_hashes(Position(block_start + 1), Position(last))?;
            *block = Some((block_start, hashes.iter().map(merkle::leaf_hash).collect()));
        }
        let (_, leaves) = block.as_ref().expect("loaded above");
        let from = (start - block_start) as usize;
        let leaves = leaves
            .get(from..from + width as usize)
            .ok_or_else(|| StoreError::corrupt(format!("position {}", start + 1), "a Merkle leaf beyond the log"))?;
        Ok(perfect_root(leaves.to_vec()))
    }
}

/// What an inclusion proof answers.
#[derive(Clone, Debug)]
pub struct Inclusion {
    pub position: Position,
    pub tree_size: u64,
    pub record_hash: Hash,
    pub previous_hash: Hash,
    pub record_body: Vec<u8>,
    pub proof: Vec<Hash>,
    pub root: Hash,
    pub checkpoint: SignedCheckpoint,
}

/// What a consistency proof answers.
#[derive(Clone, Debug)]
pub struct Consistency {
    pub old_size: u64,
    pub new_size: u64,
    pub old_root: Hash,
    pub new_root: Hash,
    pub proof: Vec<Hash>,
    pub checkpoint: SignedCheckpoint,
}

/// The outcome of a live verification.
#[derive(Clone, Debug, Default)]
pub struct LiveVerdict {
    pub position: u64,
    pub head_hash: Hash,
    pub root: Hash,
    /// `(first bad position or 0, reason)`.
    pub failure: Option<(u64, String)>,
    pub checkpoints_verified: u64,
    /// Of those, checkpoints signed by another key than the server's (e.g. imported).
    pub checkpoints_by_other_keys: u64,
    /// Signed events whose signature verified over their signed bytes.
    pub signatures_checked: u64,
    pub seconds: f64,
}

fn proof_error(error: merkle::ProofRequestError<StoreError>) -> LedgerError {
    match error {
        merkle::ProofRequestError::Source(e) => LedgerError::Store(e),
        other => LedgerError::OutOfRange(other.to_string()),
    }
}

impl Ledger {
    /// The public half of the signing key.
    pub fn public_key(&self) -> ed25519_dalek::VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// The Merkle root of the first `size` records.
    pub fn merkle_root(&self, size: u64) -> Result<Hash, LedgerError> {
        self.check_size(size)?;
        self.guard(merkle::tree_root(size, &StoreNodes::new(&self.store, size)))
    }

    fn check_size(&self, size: u64) -> Result<(), LedgerError> {
        let head = self.durable_head().position.0;
        if size > head {
            return Err(LedgerError::OutOfRange(format!("tree size {size} is past the log's last position {head}")));
        }
        Ok(())
    }

    /// The checkpoint stored at `position`, or a new one signed there (with the root of the
    /// first `position` records and, when the views reach it in time, their digest).
    ///
    /// Nothing is signed while writes are halted (the log failed a check, or the ledger is
    /// read-only), and a root is signed only once the head journal holds it: a size the journal
    /// says was signed with another root, or an earlier signed size whose record the log no
    /// longer holds, is [`LedgerError::Equivocation`] — a fault, never a second signature.
    pub fn checkpoint_at(&self, position: Position) -> Result<SignedCheckpoint, LedgerError> {
        self.check_size(position.0)?;
        let root = self.merkle_root(position.0)?;
        if let Some(bytes) = self.guard(self.store.checkpoint(position))? {
            return self.stored_checkpoint(position, &bytes, &root);
        }
        if let Some(reason) = self.fault.borrow().clone() {
            return Err(LedgerError::Halted(reason));
        }
        let Some(keeper) = &self.keeper else {
            return Err(LedgerError::Halted("the ledger is read-only: nothing is signed".into()));
        };
        let (view_digest, view_tree) = self.view_digest_at(position)?.unzip();
        let _signing = self.signing.lock().expect("signing lock");
        // Signed by another caller while this one waited for the views or the lock.
        if let Some(bytes) = self.guard(self.store.checkpoint(position))? {
            return self.stored_checkpoint(position, &bytes, &root);
        }
        let hash = self.guard(super::hash_at(&self.store, position))?;
        if let Some(earlier) = keeper.signed_before(position) {
            let now = self.guard(super::hash_at(&self.store, earlier.position))?;
            if now != earlier.hash {
                return Err(self.equivocation(LedgerError::Equivocation(format!(
                    "a checkpoint at size {} was signed when its last record had chain hash {} (head journal, {}); \
                     the log now holds {} there: it was rewritten, and no later size is signed over it",
                    earlier.position,
                    crate::audit::hex::encode(&earlier.hash),
                    earlier.written_at(),
                    crate::audit::hex::encode(&now),
                ))));
            }
        }
        keeper.before_signing(position, hash, root).map_err(|e| self.equivocation(e))?;
        let checkpoint = Checkpoint { position: position.0, root, view_digest, view_tree, time: Utc::now() };
        let signed = checkpoint.sign(&self.origin, &self.signing_key);
        self.guard(self.store.put_checkpoint(CheckpointSpace::Notes, position, signed.to_json().as_bytes()))?;
        tracing::info!(position = position.0, "checkpoint signed");
        self.signed.send_replace(position);
        Ok(signed)
    }

    /// The position of each checkpoint this process signs, as it is signed: what witnesses are
    /// asked to cosign.
    pub fn watch_signed(&self) -> tokio::sync::watch::Receiver<Position> {
        self.signed.subscribe()
    }

    /// The log's origin: its checkpoints' first line and its key's name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Adds witness cosignature lines to the stored checkpoint at `position` (lines already
    /// there are kept once), durably; returns it as stored. The caller has verified each line
    /// against its witness's key: a cosignature is only ever added, never a log signature.
    pub fn add_cosignatures(
        &self,
        position: Position,
        lines: Vec<crate::audit::note::SignatureLine>,
    ) -> Result<SignedCheckpoint, LedgerError> {
        let _signing = self.signing.lock().expect("signing lock");
        let root = self.merkle_root(position.0)?;
        let bytes = self
            .guard(self.store.checkpoint(position))?
            .ok_or_else(|| LedgerError::OutOfRange(format!("no checkpoint is stored at position {position}")))?;
        let mut signed = self.stored_checkpoint(position, &bytes, &root)?;
        let crate::audit::checkpoint::Form::Note { cosignatures, .. } = &mut signed.form else {
            return Err(LedgerError::OutOfRange(format!("the checkpoint at {position} is not a note")));
        };
        let before = cosignatures.len();
        for line in lines {
            if !cosignatures.iter().any(|known| known.name == line.name && known.key_id == line.key_id) {
                cosignatures.push(line);
            }
        }
        if cosignatures.len() > before {
            self.guard(self.store.put_checkpoint(CheckpointSpace::Notes, position, signed.to_json().as_bytes()))?;
        }
        Ok(signed)
    }

    /// The consistency proof from `old_size` to `new_size`, without a checkpoint (what a
    /// witness is sent with the checkpoint it is asked to cosign).
    pub fn consistency_hashes(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(new_size)?;
        merkle::consistency_proof(old_size, new_size, &StoreNodes::new(&self.store, new_size)).map_err(proof_error)
    }

    /// Records a refusal to sign as a fault (writes halt, health NOT_SERVING) and returns it.
    fn equivocation(&self, error: LedgerError) -> LedgerError {
        self.record_fault(&error);
        error
    }

    /// The positions of the stored checkpoints, in order.
    pub fn checkpoint_positions(&self) -> Result<Vec<Position>, LedgerError> {
        self.store
            .checkpoints(CheckpointSpace::Notes)
            .map(|entry| self.guard(entry.map(|(position, _)| position)))
            .collect()
    }

    /// The latest stored checkpoint, or one signed at the durable head if there is none.
    pub fn latest_checkpoint(&self) -> Result<SignedCheckpoint, LedgerError> {
        match self.latest_stored_checkpoint()? {
            Some(checkpoint) => Ok(checkpoint),
            None => self.checkpoint_at(self.durable_head().position),
        }
    }

    /// The latest stored note checkpoint, if any; nothing is signed.
    pub fn latest_stored_checkpoint(&self) -> Result<Option<SignedCheckpoint>, LedgerError> {
        match self.guard(self.store.latest_checkpoint(CheckpointSpace::Notes))? {
            Some((position, bytes)) => {
                let root = self.merkle_root(position.0)?;
                Ok(Some(self.stored_checkpoint(position, &bytes, &root)?))
            }
            None => Ok(None),
        }
    }

    /// The stored checkpoints with positions in `(after, up_to]`: those of format 1, then the
    /// notes, each in position order (what a bundle or a backup holds). A note is checked as
    /// [`Ledger::latest_stored_checkpoint`] checks it; one of format 1 signed the BLAKE3 tree,
    /// whose root is not kept, so only its position and signature are checked here (a copy's
    /// verifier recomputes that tree).
    pub fn stored_checkpoints(&self, after: Position, up_to: Position) -> Result<Vec<SignedCheckpoint>, LedgerError> {
        let mut checkpoints = Vec::new();
        for space in [CheckpointSpace::Format1, CheckpointSpace::Notes] {
            for entry in self.store.checkpoints(space) {
                let (position, bytes) = self.guard(entry)?;
                if position <= after || position > up_to {
                    continue;
                }
                let signed = match space {
                    CheckpointSpace::Notes => {
                        let root = self.merkle_root(position.0)?;
                        self.stored_checkpoint(position, &bytes, &root)?
                    }
                    CheckpointSpace::Format1 => self.guard(
                        format_1_checkpoint(position, &bytes)
                            .map_err(|reason| StoreError::corrupt("checkpoints", reason)),
                    )?,
                };
                checkpoints.push(signed);
            }
        }
        Ok(checkpoints)
    }

    /// A stored checkpoint, served only if it still holds for the log: its root must be the
    /// root of the first `position` records as they are now (else the log, or the checkpoint,
    /// was rewritten on disk: DATA_LOSS, and writes halt) and its signature must verify with
    /// the key it names (a checkpoint may predate a change of key, e.g. an imported bundle's).
    fn stored_checkpoint(
        &self,
        position: Position,
        bytes: &[u8],
        root: &Hash,
    ) -> Result<SignedCheckpoint, LedgerError> {
        self.guard(
            check_checkpoint(position, bytes, TreeKind::Sha256, root)
                .map_err(|reason| StoreError::corrupt("checkpoints", reason)),
        )
    }

    /// The view digest and the view tree at `position`, if the views get there within
    /// [`CHECKPOINT_VIEWS_WAIT`].
    fn view_digest_at(&self, position: Position) -> Result<Option<(Hash, ViewTree)>, LedgerError> {
        let at = match self.views_at_blocking(position) {
            Ok(at) => at,
            Err(LedgerError::ViewsBehind { .. }) => {
                tracing::warn!(
                    position = position.0,
                    "the views did not reach the checkpoint in time; signing without a view digest"
                );
                return Ok(None);
            }
            Err(other) => return Err(other),
        };
        Ok(Some((self.views_digest(&at)?.0, self.view_tree(&at)?)))
    }

    /// The views at `position`, once they get there (within [`CHECKPOINT_VIEWS_WAIT`], or
    /// `ViewsBehind`). For callers off the async runtime (the checkpointer, blocking handlers):
    /// a bounded poll.
    pub(super) fn views_at_blocking(&self, position: Position) -> Result<ViewsAt, LedgerError> {
        let deadline = Instant::now() + CHECKPOINT_VIEWS_WAIT;
        while self.views.borrow().position < position && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let reached = self.views.borrow().position;
        if reached < position {
            return Err(LedgerError::ViewsBehind { reached, wanted: position, waited: CHECKPOINT_VIEWS_WAIT });
        }
        let generation = self.views.borrow().generation.clone();
        Ok(self.views_at_position(position, generation))
    }

    /// The proof that the record at `position` (or with `event_id`) is in the tree of
    /// `tree_size` records (default: the latest checkpoint's).
    pub fn inclusion_proof(
        &self,
        target: Result<Position, EventId>,
        tree_size: Option<u64>,
    ) -> Result<Inclusion, LedgerError> {
        let position = match target {
            Ok(position) => position,
            Err(id) => self.get_event(&id)?.position,
        };
        // Refused before anything is signed: a request that fails writes nothing.
        if let Some(size) = tree_size
            && (position.0 == 0 || position.0 > size)
        {
            return Err(LedgerError::OutOfRange(format!("position {position} is not in the tree of {size} records")));
        }
        let checkpoint = match tree_size {
            Some(size) => self.checkpoint_at(Position(size))?,
            None => self.latest_checkpoint()?,
        };
        let size = checkpoint.checkpoint.position;
        if position.0 == 0 || position.0 > size {
            return Err(LedgerError::OutOfRange(format!("position {position} is not in the tree of {size} records")));
        }
        let nodes = StoreNodes::new(&self.store, size);
        let proof = merkle::inclusion_proof(position.0 - 1, size, &nodes).map_err(proof_error)?;
        let record = self.guard(self.store.read_record(position))?;
        let record =
            self.guard(record.ok_or_else(|| StoreError::corrupt(format!("position {position}"), "missing")))?;
        self.check_chain(std::slice::from_ref(&record))?;
        let previous_hash = self.guard(super::hash_at(&self.store, Position(position.0 - 1)))?;
        Ok(Inclusion {
            position,
            tree_size: size,
            record_hash: record.hash,
            previous_hash,
            record_body: record.body,
            proof,
            root: checkpoint.checkpoint.root,
            checkpoint,
        })
    }

    /// The proof that the tree of `old_size` records is a prefix of the tree of `new_size`
    /// (default: the latest checkpoint's).
    pub fn consistency_proof(&self, old_size: u64, new_size: Option<u64>) -> Result<Consistency, LedgerError> {
        if let Some(new_size) = new_size
            && old_size > new_size
        {
            // Refused before anything is signed: a request that fails writes nothing.
            return Err(LedgerError::OutOfRange(format!(
                "old size {old_size} is past the new size {new_size}: a later checkpoint is needed"
            )));
        }
        let checkpoint = match new_size {
            Some(size) => self.checkpoint_at(Position(size))?,
            None => self.latest_checkpoint()?,
        };
        let new_size = checkpoint.checkpoint.position;
        if old_size > new_size {
            return Err(LedgerError::OutOfRange(format!(
                "old size {old_size} is past the new size {new_size}: a later checkpoint is needed"
            )));
        }
        let nodes = StoreNodes::new(&self.store, new_size);
        let proof = merkle::consistency_proof(old_size, new_size, &nodes).map_err(proof_error)?;
        let old_root = self.guard(merkle::tree_root(old_size, &StoreNodes::new(&self.store, old_size)))?;
        Ok(Consistency { old_size, new_size, old_root, new_root: checkpoint.checkpoint.root, proof, checkpoint })
    }

    /// Re-checks the log up to the durable head: each record is checked in full (read in place,
    /// as the offline verification does) and continues the chain, the stored subtree roots
    /// equal the recomputed ones, and each stored checkpoint's root and signature hold. One pass
    /// over the log. Calls `progress(verified, total)` every `step` records.
    pub fn verify_live(&self, step: u64, mut progress: impl FnMut(u64, u64)) -> Result<LiveVerdict, LedgerError> {
        let started = Instant::now();
        let head = self.durable_head().position.0;
        let mut verdict = LiveVerdict::default();
        let mut chain = ChainVerifier::default();
        // Each record is checked in place, then its chain hash; that hash is a Merkle leaf.
        let mut leaves = LeafRun::new(SUBTREE_LEVEL_MIN, 0);
        let mut signatures = 0;
        let checked = self.store.check_log(Position(1), Position(head), |position, hash, body| {
            chain.check(position.0, hash, body).map_err(|e| Stop::Chain(position, e))?;
            if body.first() == Some(&crate::store::record::BODY_FORMAT_SIGNED) {
                super::verify::check_signature(position, body)?;
                signatures += 1;
            }
            leaves.push(merkle::leaf_hash(hash));
            if position.0 % step == 0 {
                progress(position.0, head);
            }
            Ok(())
        });
        match checked {
            Ok(()) => {}
            Err(Stop::Chain(position, e)) => verdict.failure = Some((position.0, e.to_string())),
            Err(Stop::Store(StoreError::Corrupt { place, reason })) => {
                verdict.failure = Some((chain.head().0 + 1, format!("{place}: {reason}")));
            }
            Err(Stop::Store(e)) => return Err(e.into()),
        }
        let (position, hash) = chain.head();
        verdict.position = position;
        verdict.head_hash = hash;
        verdict.signatures_checked = signatures;
        if verdict.failure.is_none() && position != head {
            verdict.failure = Some((position + 1, format!("the log ends at {position}, its head says {head}")));
        }
        if verdict.failure.is_none() {
            // The chain holds: now the tree over it and the checkpoints that signed it.
            let check = self.guard(check_tree(&self.store, head, Some(&self.public_key()), &leaves.finish()))?;
            verdict.checkpoints_verified = check.verified;
            verdict.checkpoints_by_other_keys = check.by_other_keys;
            verdict.failure = check.failure;
        }
        verdict.root = self.merkle_root(position)?;
        verdict.seconds = started.elapsed().as_secs_f64();
        progress(position, head);
        Ok(verdict)
    }
}

/// What [`check_tree`] found.
#[derive(Clone, Debug, Default)]
pub(super) struct TreeCheck {
    /// Stored checkpoints whose root and signature held…
    pub verified: u64,
    /// …of which this many name another key than the server's.
    pub by_other_keys: u64,
    /// The first failure: `(position, reason)`.
    pub failure: Option<(u64, String)>,
}

/// Checks the stored Merkle subtree roots and signed checkpoints of a log whose chain is known
/// good up to `head`, from the tree's leaves as the verification of the chain hashed them:
/// `pieces` are leaf runs ([`LeafRun`]) covering positions 1 to `head`, in order. Each subtree
/// of at least 2^SUBTREE_LEVEL_MIN leaves they complete is compared with its stored root, if
/// any; each stored checkpoint's root with the root recomputed from them. The first failure,
/// in log order (at one position, a subtree before a checkpoint), is the one reported.
pub(super) fn check_tree<'p>(
    store: &Store,
    head: u64,
    own_key: Option<&ed25519_dalek::VerifyingKey>,
    pieces: impl IntoIterator<Item = &'p Piece>,
) -> Result<TreeCheck, StoreError> {
    let mut tower = SubtreeTower::new(SUBTREE_LEVEL_MIN);
    let mut completed = Vec::new();
    let mut blocks = Vec::new();
    let mut subtree_failure = None;
    // Roots stored over an older tree (a store not opened for writing since the upgrade) are
    // recomputed on the next open, not compared.
    let compare_stored = store.tree_format()? == TREE_FORMAT;
    for piece in pieces {
        tower.append_piece(piece, &mut completed);
        for (level, index, root) in completed.drain(..) {
            if level == SUBTREE_LEVEL_MIN {
                blocks.push(root);
            }
            // A root not stored yet (an imported store before its first open) is no fault;
            // one that differs is.
            if compare_stored
                && subtree_failure.is_none()
                && store.subtree(level, index)?.is_some_and(|stored| stored != root)
            {
                let reason = format!("the stored Merkle subtree {level}/{index} differs from the log");
                subtree_failure = Some(((index + 1) << level, reason));
            }
        }
    }
    assert_eq!(tower.size(), head, "the pieces cover the log");
    let nodes = StoreNodes::recomputed(store, head, &blocks);
    let mut check = TreeCheck::default();
    let mut failure = subtree_failure;
    // Checkpoints of both forms, each against the root of its own tree; the first failure in log
    // order is the one reported.
    let mut first_failure = |found: (u64, String)| {
        if failure.as_ref().is_none_or(|(at, _)| found.0 < *at) {
            failure = Some(found);
        }
    };
    let stored = |space| -> Result<Vec<(Position, Vec<u8>)>, StoreError> {
        store
            .checkpoints(space)
            .take_while(|entry| entry.as_ref().is_ok_and(|(position, _)| position.0 <= head) || entry.is_err())
            .collect()
    };
    let notes = stored(CheckpointSpace::Notes)?;
    let note_roots =
        notes.iter().map(|(position, _)| merkle::tree_root(position.0, &nodes)).collect::<Result<_, _>>()?;
    let format_1 = stored(CheckpointSpace::Format1)?;
    let format_1_roots = format_1_roots(store, format_1.iter().map(|(position, _)| *position))?;
    for (tree, checkpoints, roots) in
        [(TreeKind::Sha256, notes, note_roots), (TreeKind::Blake3, format_1, format_1_roots)]
    {
        for ((position, bytes), root) in checkpoints.iter().zip(roots) {
            match check_checkpoint(*position, bytes, tree, &root) {
                Ok(signed) => {
                    check.verified += 1;
                    check.by_other_keys += u64::from(own_key.is_some_and(|own| *own != signed.public_key));
                }
                Err(reason) => {
                    first_failure((position.0, reason));
                    break;
                }
            }
        }
    }
    check.failure = failure;
    Ok(check)
}

/// The roots of the format-1 tree (BLAKE3, [`Blake3Tree`]) at `positions` (ascending), in one
/// pass over the chain hashes up to the last: what checkpoints signed before the upgrade to
/// notes are checked against.
pub(super) fn format_1_roots(
    store: &Store,
    positions: impl IntoIterator<Item = Position>,
) -> Result<Vec<Hash>, StoreError> {
    let mut frontier = MerkleFrontier::<Blake3Tree>::default();
    let mut roots = Vec::new();
    for position in positions {
        while frontier.size() < position.0 {
            let from = frontier.size() + 1;
            let to = position.0.min(from + CATCH_UP_STEP - 1);
            for hash in store.chain_hashes(Position(from), Position(to))? {
                frontier.append(&hash);
            }
        }
        roots.push(frontier.root());
    }
    Ok(roots)
}

/// A stored checkpoint holds if it decodes, is of the form its key space holds (`tree`),
/// covers `position`, signs `root` (the log's root of that many records, in that tree) and its
/// signature verifies with the key it names.
fn check_checkpoint(position: Position, bytes: &[u8], tree: TreeKind, root: &Hash) -> Result<SignedCheckpoint, String> {
    let place = format!("the checkpoint at {position}");
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{place}: {e}"))?;
    let signed = SignedCheckpoint::from_json(text).map_err(|e| format!("{place}: {e}"))?;
    if signed.tree() != tree {
        return Err(format!("{place} is not of the form its place in the store holds"));
    }
    if signed.checkpoint.position != position.0 || signed.checkpoint.root != *root {
        return Err(format!(
            "{place} signed another Merkle root than the log's: the log or the checkpoint was rewritten"
        ));
    }
    signed.verify(&signed.public_key).map_err(|e| format!("{place}: {e}"))?;
    Ok(signed)
}

/// A stored checkpoint of format 1: its JSON form, at its place, signed by the key it names.
fn format_1_checkpoint(position: Position, bytes: &[u8]) -> Result<SignedCheckpoint, String> {
    let place = format!("the format-1 checkpoint at {position}");
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{place}: {e}"))?;
    let signed = SignedCheckpoint::from_json(text).map_err(|e| format!("{place}: {e}"))?;
    if signed.tree() != TreeKind::Blake3 || signed.checkpoint.position != position.0 {
        return Err(format!("{place} is not of the form or at the place its key says"));
    }
    signed.verify(&signed.public_key).map_err(|e| format!("{place}: {e}"))?;
    Ok(signed)
}

/// Loads the signing key (generated on first start).
pub(super) fn signing_key(dir: &std::path::Path, config: &AuditConfig) -> Result<SigningKey, LedgerError> {
    let path = config.signing_key.clone().unwrap_or_else(|| dir.join("signing.key"));
    keys::load_or_generate(&path).map_err(|e| LedgerError::Key(format!("{}: {e}", path.display())))
}

/// The ledger's background thread, until the ledger stops: issues a checkpoint every
/// `checkpoint_every_events` events or `checkpoint_every` (if the log grew), and saves the
/// snapshot of the event-id index every `id_snapshot_every` events (a crash then leaves one
/// that recent: opening scans only the log after it).
pub(super) fn run_checkpointer(
    ledger: std::sync::Weak<Ledger>,
    config: AuditConfig,
    id_snapshot_every: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut last_at = Instant::now();
    // A ledger just upgraded from format-1 checkpoints gets its first note at once, so that its
    // log's SHA-256 root is signed beside the last BLAKE3 one.
    let (mut last_position, mut last_snapshot, mut overdue) = match ledger.upgrade() {
        Some(ledger) => {
            let latest = |space| ledger.store.latest_checkpoint(space).ok().flatten().map(|(position, _)| position.0);
            let note = latest(CheckpointSpace::Notes);
            let upgraded = note.is_none() && latest(CheckpointSpace::Format1).is_some();
            (note.unwrap_or(0), ledger.durable_head().position.0, upgraded)
        }
        None => return,
    };
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        std::thread::park_timeout(Duration::from_millis(500));
        let Some(ledger) = ledger.upgrade() else { return };
        if ledger.watch_fault().borrow().is_some() {
            continue;
        }
        let head = ledger.durable_head().position.0;
        let due = head > last_position
            && (overdue
                || head - last_position >= config.checkpoint_every_events
                || last_at.elapsed() >= config.checkpoint_every);
        if due {
            match ledger.checkpoint_at(Position(head)) {
                Ok(_) => (last_position, overdue) = (head, false),
                Err(error) => tracing::warn!(%error, "could not issue a checkpoint"),
            }
            last_at = Instant::now();
        }
        if head - last_snapshot >= id_snapshot_every {
            let started = Instant::now();
            match ledger.store.save_id_snapshot() {
                Ok((position, locked)) => {
                    last_snapshot = position.0;
                    tracing::info!(
                        position = position.0,
                        ms = started.elapsed().as_millis(),
                        index_held_ms = locked.as_millis(),
                        "event-id snapshot saved"
                    );
                }
                Err(error) => {
                    last_snapshot = head;
                    tracing::warn!(%error, "could not save the event-id snapshot; retrying later");
                }
            }
        }
    }
}
