//! Never a shorter history: the ledger's own evidence of how far its log reached (the head
//! journal, `store::journal`) is checked when the ledger opens, kept up to date while it serves,
//! and consulted before anything is signed.
//!
//! - **On open**, the log must reach the furthest position the journal recorded and hold there
//!   the chain hash recorded for it; otherwise acknowledged events are gone (the storage
//!   engine recovered damage as a shorter log, or the files were replaced by an older copy) and
//!   the ledger refuses to open, saying what is missing and what to do.
//! - **While serving**, a thread writes the durable head to the journal at most every
//!   [`MARK_INTERVAL`] while the log grows; a clean stop writes the final head.
//! - **Before signing** a checkpoint, its root is written to the journal; a root that differs
//!   from one recorded for the same size is never signed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::{Ledger, LedgerError, hash_at};
use crate::audit::checkpoint::{SignedCheckpoint, TreeKind};
use crate::domain::Position;
use crate::store::journal::{self, Evidence, Journal, MARK_INTERVAL, Mark, MarkKind};
use crate::store::{CheckpointSpace, Hash, Head, Recovery, Store, StoreError};

/// What to do when the log does not reach or extend the journal, said in every refusal.
fn remedy(dir: &Path, position: Position) -> String {
    format!(
        "Nothing was served or written. To see what is left: `pax-ledger verify --data {dir}`. To recover: restore the \
         data directory from a backup, or import an export, that reaches position {position}; to read out what is \
         left meanwhile, start the server with `serve --read-only` (it serves reads only and never writes or signs).",
        dir = dir.display()
    )
}

/// For the offline tools (export): whether the stopped ledger's log in `dir` reaches and extends
/// its head journal. The error says what is missing.
pub fn check_offline(store: &Store, dir: &Path) -> Result<(), LedgerError> {
    let (evidence, _, _) = journal::read(dir)?;
    check(store, dir, store.head()?, &evidence, &Recovery::default())
}

/// Checks that the log whose head is `head` reaches and extends what the journal recorded, and
/// the event-id snapshot (written only from durable commits) too.
pub(super) fn check(
    store: &Store,
    dir: &Path,
    head: Head,
    evidence: &Evidence,
    recovery: &Recovery,
) -> Result<(), LedgerError> {
    if let Some((position, hash)) = recovery.unextended_snapshot {
        return Err(LedgerError::Shortened(format!(
            "the event-id snapshot {file} covers the log up to position {position} (chain hash {hash}), but the log \
             {found}: acknowledged events are missing or were rewritten. The storage engine's files are damaged (the \
             engine recovers a damaged log as a shorter one) or were replaced by an older copy. {remedy}",
            file = dir.join("ids.snapshot").display(),
            hash = crate::audit::hex::encode(&hash),
            found = if head.position < position {
                format!("ends at position {}", head.position)
            } else {
                format!("holds another record at position {position}")
            },
            remedy = remedy(dir, position),
        )));
    }
    let latest = [CheckpointSpace::Notes, CheckpointSpace::Format1]
        .into_iter()
        .map(|space| store.latest_checkpoint(space).map(|latest| latest.map(|(position, _)| position)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(position) = latest.into_iter().flatten().max()
        && position > head.position
    {
        return Err(LedgerError::Shortened(format!(
            "a checkpoint was signed at position {position}, but the log ends at position {found}: positions \
             {first}..={position} are missing. {remedy}",
            found = head.position,
            first = head.position.0 + 1,
            remedy = remedy(dir, position),
        )));
    }
    let Some(furthest) = evidence.furthest else { return Ok(()) };
    let journal_file = journal::path(dir);
    let what = match furthest.kind {
        MarkKind::Acknowledged => "acknowledged events up to",
        MarkKind::CleanStop => "stopped cleanly at",
        MarkKind::Signed | MarkKind::SignedFormat1 => "signed a checkpoint at",
    };
    if head.position < furthest.position {
        return Err(LedgerError::Shortened(format!(
            "the log ends at position {found}, but this ledger {what} position {reached} (its head journal {file} \
             recorded it at {at}): positions {first}..={reached} are missing. The storage engine's files are damaged \
             (the engine recovers a damaged log as a shorter one) or were replaced by an older copy. {remedy}",
            found = head.position,
            reached = furthest.position,
            first = head.position.0 + 1,
            file = journal_file.display(),
            at = furthest.written_at(),
            remedy = remedy(dir, furthest.position),
        )));
    }
    let found = hash_at(store, furthest.position).map_err(|e| {
        LedgerError::Shortened(format!(
            "the record at position {reached}, which this ledger {what} (its head journal {file} recorded it at {at}), \
             cannot be read: {e}. {remedy}",
            reached = furthest.position,
            file = journal_file.display(),
            at = furthest.written_at(),
            remedy = remedy(dir, furthest.position),
        ))
    })?;
    if found != furthest.hash {
        return Err(LedgerError::Shortened(format!(
            "the record at position {reached} has chain hash {found}, but this ledger {what} that position with chain \
             hash {recorded} (its head journal {file} recorded it at {at}): the log was rewritten at or before \
             position {reached}. {remedy}",
            reached = furthest.position,
            found = crate::audit::hex::encode(&found),
            recorded = crate::audit::hex::encode(&furthest.hash),
            file = journal_file.display(),
            at = furthest.written_at(),
            remedy = remedy(dir, furthest.position),
        )));
    }
    Ok(())
}

/// The journal of a serving ledger, shared by the thread that marks the head, the signer and
/// the clean stop.
pub(super) struct Keeper {
    journal: Mutex<Journal>,
}

impl Keeper {
    pub(super) fn new(journal: Journal) -> Self {
        Self { journal: Mutex::new(journal) }
    }

    pub(super) fn evidence(&self) -> Evidence {
        self.journal.lock().expect("journal lock").evidence().clone()
    }

    /// Starts the journal of a ledger that had none (one written before the journal existed):
    /// the stored checkpoints' roots, then the head, so that what was signed before is never
    /// signed otherwise.
    pub(super) fn seed(&self, store: &Store, head: Head) -> Result<(), LedgerError> {
        let mut marks = Vec::new();
        for space in [CheckpointSpace::Format1, CheckpointSpace::Notes] {
            for entry in store.checkpoints(space) {
                let (position, bytes) = entry?;
                let signed =
                    std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|text| SignedCheckpoint::from_json(text).ok())
                        .ok_or_else(|| StoreError::corrupt(format!("the checkpoint at {position}"), "unreadable"))?;
                let (hash, root) = (hash_at(store, position)?, signed.checkpoint.root);
                marks.push(match signed.tree() {
                    TreeKind::Sha256 => Mark::signed(position, hash, root),
                    TreeKind::Blake3 => Mark::signed_format_1(position, hash, root),
                });
            }
        }
        if head.position.0 > 0 {
            marks.push(Mark::head(MarkKind::Acknowledged, head.position, head.hash));
        }
        if !marks.is_empty() {
            self.journal.lock().expect("journal lock").append_all(&marks)?;
            tracing::info!(checkpoints = marks.len() - 1, head = head.position.0, "head journal started");
        }
        Ok(())
    }

    /// Records `head` as durable (kind [`MarkKind::Acknowledged`] or [`MarkKind::CleanStop`]).
    pub(super) fn mark(&self, kind: MarkKind, head: Head) -> Result<(), StoreError> {
        self.journal.lock().expect("journal lock").append(Mark::head(kind, head.position, head.hash))
    }

    /// Records that the root `root` (of the first `position` records, whose last has chain
    /// hash `hash`) is about to be signed, unless another root was recorded for that size: then
    /// the log was rewritten since, and nothing may be signed there ([`LedgerError::Equivocation`]).
    pub(super) fn before_signing(&self, position: Position, hash: Hash, root: Hash) -> Result<(), LedgerError> {
        let mut journal = self.journal.lock().expect("journal lock");
        if let Some(signed) = journal.evidence().signed.get(&position.0) {
            if signed.root != root || signed.hash != hash {
                return Err(LedgerError::Equivocation(format!(
                    "a checkpoint at size {position} was signed with Merkle root {signed_root} (recorded in the head \
                     journal at {at}); the log now gives root {root}: the log was rewritten, and a second root is \
                     never signed for one size",
                    signed_root = crate::audit::hex::encode(&signed.root),
                    at = signed.written_at(),
                    root = crate::audit::hex::encode(&root),
                )));
            }
            return Ok(());
        }
        // A smaller signed size must still be a prefix of this log: its recorded chain hash is
        // checked by the caller against the log (see `Ledger::checkpoint_at`).
        journal.append(Mark::signed(position, hash, root)).map_err(LedgerError::Store)
    }

    /// The latest signed entry below `position`, whose chain hash the log must still hold.
    pub(super) fn signed_before(&self, position: Position) -> Option<Mark> {
        let journal = self.journal.lock().expect("journal lock");
        let evidence = journal.evidence();
        let latest = |signed: &std::collections::BTreeMap<u64, Mark>| {
            signed.range(..position.0).next_back().map(|(_, mark)| *mark)
        };
        latest(&evidence.signed).into_iter().chain(latest(&evidence.signed_format_1)).max_by_key(|mark| mark.position)
    }
}

/// The thread that writes the durable head to the journal while the log grows, at most every
/// [`MARK_INTERVAL`], until `stop`.
pub(super) fn run_marker(ledger: Weak<Ledger>, keeper: Arc<Keeper>, stop: Arc<AtomicBool>) {
    let mut marked = keeper.evidence().furthest.map(|m| m.position);
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(MARK_INTERVAL);
        let Some(ledger) = ledger.upgrade() else { return };
        let head = ledger.durable_head();
        if marked.is_some_and(|m| m >= head.position) || head.position.0 == 0 {
            continue;
        }
        match keeper.mark(MarkKind::Acknowledged, head) {
            Ok(()) => marked = Some(head.position),
            Err(error) => tracing::warn!(%error, "could not write the durable head to the head journal; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_is_recorded_once_and_another_root_for_its_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keeper = Keeper::new(Journal::open(dir.path()).unwrap());
        keeper.before_signing(Position(5), [1; 32], [2; 32]).unwrap();
        let entries = || std::fs::metadata(journal::path(dir.path())).unwrap().len();
        let after_first = entries();
        // The same root again (a retry after a crash between the journal and the store): fine,
        // and not recorded twice.
        keeper.before_signing(Position(5), [1; 32], [2; 32]).unwrap();
        assert_eq!(entries(), after_first);
        let refused = keeper.before_signing(Position(5), [1; 32], [3; 32]).unwrap_err();
        assert!(matches!(refused, LedgerError::Equivocation(ref m) if m.contains("size 5")), "{refused}");
        assert_eq!(entries(), after_first, "a refused root is not recorded");
        assert_eq!(keeper.signed_before(Position(6)).map(|m| m.position), Some(Position(5)));
        assert_eq!(keeper.signed_before(Position(5)), None);
    }
}
