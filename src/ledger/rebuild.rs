//! Rebuilding the views: fold the whole log into a fresh generation while the live views keep
//! answering (and keep following appends), then hand the new generation to the projector,
//! which brings it up to the live position and switches to it in one batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::projector::{Generation, Swap, load, read_checked, view_write};
use super::{Ledger, LedgerError};
use crate::audit::{ChainVerifier, Hash};
use crate::domain::{Position, StreamName};
use crate::projection::{EncodedRecord, Summary, ViewBatch, ViewRecord};

/// Events folded between two writes of the generation being rebuilt (and two progress reports).
/// sled applies a batch under an exclusive lock that commits wait for: small batches keep
/// appends flowing during a rebuild.
pub const REBUILD_BATCH_EVENTS: usize = 10_000;
/// Records a rebuild keeps in memory (least recently used evicted first; every record is
/// written after its batch, and read back when its stream comes up again).
pub const REBUILD_CACHE_MAX: usize = 65_536;

/// How far a rebuild has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RebuildProgress {
    pub done: u64,
    pub total: u64,
    pub elapsed: Duration,
}

/// A finished rebuild.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuildOutcome {
    pub generation: u32,
    /// The position the new views reflect when they went live.
    pub position: Position,
    /// The view digest at `position`.
    pub digest: Hash,
    pub records: u64,
    /// Events folded by the rebuild itself (the projector folds the few after them).
    pub events: u64,
    pub started_at: DateTime<Utc>,
    pub elapsed: Duration,
}

/// The rebuild that is running, if any, and the last one that finished.
#[derive(Debug, Default)]
pub(super) struct RebuildState {
    pub running: Option<(DateTime<Utc>, RebuildProgress)>,
    pub last: Option<RebuildOutcome>,
}

impl Ledger {
    /// Rebuilds the views from the log, calling `progress` after each batch; blocks until the
    /// new views are live. A second rebuild while one runs is refused (`RebuildRunning`):
    /// joining it would hide from its caller that it started before the caller asked.
    pub fn rebuild_views(&self, mut progress: impl FnMut(RebuildProgress)) -> Result<RebuildOutcome, LedgerError> {
        let started_at = Utc::now();
        let total = self.durable_head().position;
        {
            let mut state = self.rebuild.lock().expect("rebuild lock");
            if let Some((since, progress)) = state.running {
                return Err(LedgerError::RebuildRunning { since, done: progress.done, total: progress.total });
            }
            state.running = Some((started_at, RebuildProgress { done: 0, total: total.0, elapsed: Duration::ZERO }));
        }
        let result = self.run_rebuild(total, started_at, &mut progress);
        let mut state = self.rebuild.lock().expect("rebuild lock");
        state.running = None;
        if let Ok(outcome) = &result {
            state.last = Some(outcome.clone());
        }
        result
    }

    fn run_rebuild(
        &self,
        total: Position,
        started_at: DateTime<Utc>,
        progress: &mut impl FnMut(RebuildProgress),
    ) -> Result<RebuildOutcome, LedgerError> {
        let clock = Instant::now();
        let id =
            self.guard(self.store.view_generations())?.into_iter().max().unwrap_or(0).max(self.views_generation()) + 1;
        let generation = Arc::new(Generation { id });
        let mut summary = Summary::default();
        let mut cache: lru::LruCache<StreamName, ViewRecord> =
            lru::LruCache::new(std::num::NonZeroUsize::new(REBUILD_CACHE_MAX).expect("non-zero"));
        let mut chain = ChainVerifier::default();
        let mut done = 0u64;
        while done < total.0 {
            let until = total.0.min(done + REBUILD_BATCH_EVENTS as u64);
            let mut batch = ViewBatch::default();
            let store = &self.store;
            self.guard(read_checked(store, &mut chain, done + 1, until, |event| {
                batch.apply(event, |stream| match cache.pop(stream) {
                    Some(record) => Ok(Some(record)),
                    None => load(store, id, stream),
                })
            }))?;
            done = until;
            let written = batch.finish(&mut summary);
            self.guard(self.store.write_views(view_write(id, &written, Position(done), &summary, false)))?;
            for EncodedRecord { record, .. } in written {
                cache.put(record.stream.clone(), record);
            }
            let step = RebuildProgress { done, total: total.0, elapsed: clock.elapsed() };
            self.rebuild.lock().expect("rebuild lock").running = Some((started_at, step));
            progress(step);
        }
        if total.0 == 0 {
            self.guard(self.store.write_views(view_write(id, &[], Position(0), &summary, false)))?;
        }
        let (reply, answer) = oneshot::channel();
        let swap = Swap { generation: generation.clone(), position: total, summary, reply };
        self.swaps.send(swap).map_err(|_| LedgerError::ShuttingDown)?;
        let live = answer.blocking_recv().map_err(|_| LedgerError::ShuttingDown)??;
        let position = live.position;
        let (digest, records) = (live.summary.digest(position), live.summary.records.records());
        Ok(RebuildOutcome {
            generation: id,
            position,
            digest,
            records,
            events: done,
            started_at,
            elapsed: clock.elapsed(),
        })
    }
}
