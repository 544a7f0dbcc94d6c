//! Offline verification of a stopped ledger's data directory: every record decodes, sits at the
//! next position, and continues the hash chain, and the head names the last one; then the
//! stored Merkle subtree roots are those of the tree over the chain, and every stored
//! checkpoint signs the log's root at its position (with the key it names); and the log reaches
//! and extends what the head journal recorded; and, in a ledger with principals, every record was
//! made by a principal allowed to make it, as the access events before it say.

use std::path::Path;
use std::time::Instant;

use super::LedgerError;
use crate::audit::merkle::leaf_hash;
use crate::audit::tower::{LeafRun, Piece};
use crate::audit::{ChainBreak, ChainVerifier, Hash};
use crate::domain::Position;
use crate::domain::access::AccessReplay;
use crate::store::journal;
use crate::store::record;
use crate::store::{Recovery, SUBTREE_LEVEL_MIN, Store, StoreConfig, StoreError, StoreErrorKind};

/// What a verification found.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Records that passed, from position 1.
    pub verified: u64,
    /// The last verified position and its chain hash.
    pub head: (u64, Hash),
    /// Where and why verification stopped, if it did: `(place, reason)`.
    pub failure: Option<(String, String)>,
    /// Stored checkpoints whose root and signature held.
    pub checkpoints_verified: u64,
    /// Records whose actor was checked against the access events before them (see
    /// `domain::access::AccessReplay`): every record from the first access event on; none in a
    /// ledger that never had a principal.
    pub authorship_checked: u64,
    /// Signed events whose signature verified over their signed bytes (and, by the replay of
    /// access, was made with a key their principal held then).
    pub signatures_checked: u64,
    pub seconds: f64,
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// Verifies the ledger in `dir`, which no server may have open. Opening runs the store's usual
/// recovery (it may remove records past the head that were never acknowledged), but does not
/// build the event-id index: nothing here looks an event up by id. A failure of the data is a
/// verdict; only a failure to read at all is an error. `threads`: how many ranges to verify in
/// parallel (default: one per core for large logs, one below [`PARALLEL_FROM`] events).
pub fn verify_store(dir: &Path, config: &StoreConfig, threads: Option<usize>) -> Result<Verdict, LedgerError> {
    if !dir.join("db").is_file() {
        return Err(LedgerError::NotFound(format!("no ledger in {}", dir.display())));
    }
    let started = Instant::now();
    let failed = |place: String, reason: String, chain: &ChainVerifier| Verdict {
        verified: chain.head().0,
        head: chain.head(),
        failure: Some((place, reason)),
        checkpoints_verified: 0,
        authorship_checked: 0,
        signatures_checked: 0,
        seconds: started.elapsed().as_secs_f64(),
    };
    let store = match Store::open_log_only(dir, config) {
        Ok((store, _)) => store,
        Err(StoreError::Corrupt { place, reason }) => return Ok(failed(place, reason, &ChainVerifier::default())),
        Err(e) if e.kind() == StoreErrorKind::Damage => {
            return Ok(failed("the database".into(), e.to_string(), &ChainVerifier::default()));
        }
        Err(e) => return Err(e.into()),
    };
    let head = store.head()?;
    // The log is cut into one range per core; each range continues the chain from the stored
    // hash of the record before it, and the ranges meet: range i ends on the very record whose
    // hash range i+1 starts from. Where that hash cannot be read (its chunk is damaged, or
    // missing), there is no cut: range i runs on, and finds what is wrong there in log order.
    let threads = match threads {
        Some(n) => n.clamp(1, VERIFY_THREADS_MAX) as u64,
        None if head.position.0 < PARALLEL_FROM => 1,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()).min(VERIFY_THREADS_MAX) as u64,
    };
    let span = head.position.0.div_ceil(threads).max(1);
    let mut ranges: Vec<(ChainVerifier, u64)> = Vec::new();
    let mut first = 1;
    while first <= head.position.0 {
        let last = (first + span - 1).min(head.position.0);
        let before = Position(first - 1);
        let start = match first {
            1 => Some(ChainVerifier::default()),
            _ => match store.chain_hashes(before, before) {
                Ok(hashes) => hashes.first().map(|hash| ChainVerifier::after(before.0, *hash)),
                Err(StoreError::Corrupt { .. }) => None,
                Err(e) => return Err(e.into()),
            },
        };
        match start {
            Some(chain) => ranges.push((chain, last)),
            None => ranges.last_mut().expect("the first range starts at position 1").1 = last,
        }
        first = last + 1;
    }
    let store = &store;
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> =
            ranges.into_iter().map(|(chain, last)| scope.spawn(move || verify_range(store, chain, last))).collect();
        workers.into_iter().map(|w| w.join().expect("a verification thread")).collect()
    });
    let mut chain = ChainVerifier::default();
    let mut leaves = Vec::with_capacity(outcomes.len());
    let mut signatures_checked = 0;
    for outcome in outcomes {
        let range = outcome?;
        chain = range.chain;
        signatures_checked += range.signatures;
        if let Some((place, reason)) = range.failure {
            return Ok(failed(place, reason, &chain));
        }
        leaves.push(range.leaves);
    }
    if chain.head() != (head.position.0, head.hash) {
        let reason = format!("the head names position {} but the chain ends at {}", head.position, chain.head().0);
        return Ok(failed("log head".into(), reason, &chain));
    }
    // The chain holds: the ranges' leaves, in order, are the Merkle tree's.
    let check = match super::evidence::check_tree(store, head.position.0, None, leaves.iter().flatten()) {
        Ok(check) => check,
        Err(StoreError::Corrupt { place, reason }) => return Ok(failed(place, reason, &chain)),
        Err(e) => return Err(e.into()),
    };
    // A whole, self-consistent log may still be shorter than what the ledger acknowledged or
    // signed: the head journal says how far it reached.
    let evidence = match journal::read(dir) {
        Ok((evidence, _, _)) => evidence,
        Err(StoreError::Corrupt { place, reason }) => return Ok(failed(place, reason, &chain)),
        Err(e) => return Err(e.into()),
    };
    match super::continuity::check(store, dir, head, &evidence, &Recovery::default()) {
        Ok(()) => {}
        Err(LedgerError::Shortened(reason)) => return Ok(failed("log head".into(), reason, &chain)),
        Err(other) => return Err(other),
    }
    // Who recorded what: replayed in log order, once the chain holds (a second, sequential pass,
    // only over a ledger that has principals).
    let mut replay = AccessReplay::default();
    if !store.access_positions()?.is_empty() {
        let replayed = store.check_log(Position(1), head.position, |position, _, body| {
            let event = record::decode_event(body)
                .map_err(|e| Stop::Store(StoreError::corrupt(format!("position {position}"), e.to_string())))?;
            let metadata = &event.event.metadata;
            replay.next(&metadata.actor, &event.event.data, metadata.signature.as_ref()).map_err(|reason| {
                Stop::Store(StoreError::corrupt(
                    format!("position {position}"),
                    format!("{} {reason}", event.event.data.type_name()),
                ))
            })
        });
        match replayed {
            Ok(()) => {}
            Err(Stop::Store(StoreError::Corrupt { place, reason })) => return Ok(failed(place, reason, &chain)),
            Err(Stop::Store(e)) => return Err(e.into()),
            Err(Stop::Chain(position, e)) => return Ok(failed(format!("position {position}"), e.to_string(), &chain)),
        }
    }
    Ok(Verdict {
        verified: chain.head().0,
        head: chain.head(),
        failure: check.failure.map(|(position, reason)| (format!("position {position}"), reason)),
        checkpoints_verified: check.verified,
        authorship_checked: replay.checked,
        signatures_checked,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Below this many events, one thread verifies (threads would cost more than they save).
pub const PARALLEL_FROM: u64 = 100_000;
/// Most verification threads.
const VERIFY_THREADS_MAX: usize = 8;

/// What the verification of one range found.
struct RangeOutcome {
    /// Where the chain got to.
    chain: ChainVerifier,
    /// Where and why it stopped early, if it did: `(place, reason)`.
    failure: Option<(String, String)>,
    /// The range's Merkle leaves, reduced to the roots of the aligned blocks it holds whole.
    leaves: Vec<Piece>,
    /// Signed events whose signature verified.
    signatures: u64,
}

/// Verifies the records after `chain`'s head up to `last`: each is read in place and checked in
/// full (`Store::check_log`), then its chain hash; the chain hash, proved by that, is a Merkle
/// leaf, hashed here too so that the tree's blocks are computed in parallel.
fn verify_range(store: &Store, mut chain: ChainVerifier, last: u64) -> Result<RangeOutcome, LedgerError> {
    let first = chain.head().0 + 1;
    let mut leaves = LeafRun::new(SUBTREE_LEVEL_MIN, first - 1);
    let mut signatures = 0;
    let checked = store.check_log(Position(first), Position(last), |position, hash, body| {
        chain.check(position.0, hash, body).map_err(|e| Stop::Chain(position, e))?;
        if body.first() == Some(&record::BODY_FORMAT_SIGNED) {
            check_signature(position, body)?;
            signatures += 1;
        }
        leaves.push(leaf_hash(hash));
        Ok(())
    });
    let failure = match checked {
        Ok(()) => None,
        Err(Stop::Chain(position, e)) => Some((format!("position {position}"), e.to_string())),
        Err(Stop::Store(StoreError::Corrupt { place, reason })) => Some((place, reason)),
        Err(Stop::Store(e)) => return Err(e.into()),
    };
    Ok(RangeOutcome { chain, failure, leaves: leaves.finish(), signatures })
}

/// The signature of a signed event's record verifies (whose key it is, the replay of access
/// checks after the chain).
pub(super) fn check_signature(position: Position, body: &[u8]) -> Result<(), Stop> {
    let corrupt = |reason: String| Stop::Store(StoreError::corrupt(format!("position {position}"), reason));
    let event = record::decode_event(body).map_err(|e| corrupt(e.to_string()))?;
    record::check_event_signature(&event.event).map_err(corrupt)
}

/// Why a verification's pass over the log stopped early.
pub(super) enum Stop {
    /// The store could not be read, or a record failed its check there.
    Store(StoreError),
    /// The record at this position does not continue the chain.
    Chain(Position, ChainBreak),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}
