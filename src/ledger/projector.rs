//! The projector: one thread that folds every durable event into the live views, in batches,
//! after the writer has acknowledged it. It records the position its views reflect in the same
//! store batch as the views, so a restart catches up from there and never replays the log.
//! It is also the only writer of views: a rebuild hands it a finished generation to bring up to
//! the live position and switch to, in one batch.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::{LedgerError, hash_at, raise_fault};
use crate::audit::{self, ChainVerifier};
use crate::domain::{Position, RecordedEvent, StreamName};
use crate::projection::codec::{VIEW_FORMAT, decode_record, encode_summary};
use crate::projection::{EncodedRecord, Summary, ViewBatch, ViewRecord};
use crate::store::{Head, Store, StoreError, ViewWrite, ViewsMeta};

/// Most events folded into one view batch. sled applies a batch under an exclusive lock that
/// the writer's commits wait for, so batches stay small enough (≈ 1,000 events, a few ms) to
/// interleave with commits; measured, 10,000 was no faster and its stalls showed in the p99.
pub const PROJECT_BATCH_EVENTS_MAX: usize = 1_000;
/// View records the projector keeps in memory (least recently used evicted first).
pub const VIEW_CACHE_MAX: usize = 16_384;
/// Keys of the views' first layout removed per idle step (one batch: small, so that commits do
/// not wait long for sled's lock).
const CLEAR_STEP_KEYS: usize = 2_000;

/// Groups the writer has made durable, handed over with its hashes so that the projector need
/// not read them back from the log. At most this many wait; beyond, the writer drops them and
/// the projector reads those events from the log.
pub const COMMITTED_GROUPS_MAX: usize = 16;

/// One durable commit group: its events in log order, each with its chain hash.
pub type Committed = Vec<(RecordedEvent, audit::Hash)>;

/// One complete set of views in the store. Readers hold an `Arc` while they read it; a retired
/// generation's keys are removed only once no reader holds it.
#[derive(Debug)]
pub struct Generation {
    pub id: u32,
}

/// What the live views are: the generation, the position it reflects, and its summary.
#[derive(Clone, Debug)]
pub struct ViewsSnapshot {
    pub position: Position,
    pub generation: Arc<Generation>,
    pub summary: Arc<Summary>,
}

/// A rebuilt generation, complete up to `position`, to bring up to the live position and switch to.
pub(super) struct Swap {
    pub generation: Arc<Generation>,
    pub position: Position,
    pub summary: Summary,
    pub reply: oneshot::Sender<Result<ViewsSnapshot, LedgerError>>,
}

pub(super) struct Projector {
    store: Arc<Store>,
    live: ViewsSnapshot,
    summary: Summary,
    chain: ChainVerifier,
    cache: lru::LruCache<StreamName, ViewRecord>,
    published: watch::Sender<ViewsSnapshot>,
    retired: Vec<Arc<Generation>>,
    fault: Arc<watch::Sender<Option<String>>>,
    committed: mpsc::Receiver<Committed>,
    /// Events handed over by the writer and not yet folded, in log order.
    fed: VecDeque<(RecordedEvent, audit::Hash)>,
    /// Whether no key of the views' first layout (in the default tree) is left.
    legacy_cleared: bool,
    /// The views wait while the disk has less free (`LedgerConfig::disk_free_min_bytes`; 0: no
    /// check), so that the storage engine does not meet a full disk on their account.
    pub(super) disk_free_min_bytes: u64,
}

/// Reads (or starts) the live generation; returns it with the generations to clear. Unless
/// `writable`, a generation that would have to be started is not written: the views then
/// answer as of position 0 (a ledger opened read-only serves the log, not views it cannot trust).
pub(super) fn open_views(
    store: &Store,
    head: Head,
    writable: bool,
) -> Result<(ViewsSnapshot, Vec<Arc<Generation>>), StoreError> {
    let existing = store.view_generations()?;
    let meta = store.views_meta()?;
    let current = match meta {
        Some(meta) if meta.format == VIEW_FORMAT => match store.views_position(meta.generation)? {
            Some((position, summary)) if position <= head.position => {
                let summary = crate::projection::codec::decode_summary(&summary)
                    .map_err(|e| StoreError::corrupt(format!("views generation {}", meta.generation), e.to_string()))?;
                Some((meta.generation, position, summary))
            }
            Some((position, _)) => {
                tracing::warn!(
                    views = position.0,
                    head = head.position.0,
                    "views are ahead of the log; rebuilding them"
                );
                None
            }
            None => None,
        },
        Some(meta) => {
            tracing::info!(found = meta.format, current = VIEW_FORMAT, "views have another format; rebuilding them");
            None
        }
        None => None,
    };
    let (generation, position, summary) = match current {
        Some(current) => current,
        None => {
            // A fresh generation at position 0: the projector folds the whole log into it.
            let generation = existing.iter().chain(meta.as_ref().map(|m| &m.generation)).max().map_or(0, |g| g + 1);
            if writable {
                store.write_views(view_write(generation, &[], Position(0), &Summary::default(), true))?;
            } else {
                tracing::warn!(
                    "the views do not fit the log and are not rebuilt read-only: queries answer as of position 0"
                );
            }
            (generation, Position(0), Summary::default())
        }
    };
    let retired = existing.into_iter().filter(|g| *g != generation).map(|id| Arc::new(Generation { id })).collect();
    let live =
        ViewsSnapshot { position, generation: Arc::new(Generation { id: generation }), summary: Arc::new(summary) };
    Ok((live, retired))
}

impl Projector {
    pub(super) fn new(
        store: Arc<Store>,
        live: ViewsSnapshot,
        retired: Vec<Arc<Generation>>,
        published: watch::Sender<ViewsSnapshot>,
        fault: Arc<watch::Sender<Option<String>>>,
        committed: mpsc::Receiver<Committed>,
    ) -> Result<Self, StoreError> {
        let chain = ChainVerifier::after(live.position.0, hash_at(&store, live.position)?);
        Ok(Self {
            store,
            summary: (*live.summary).clone(),
            live,
            chain,
            cache: lru::LruCache::new(NonZeroUsize::new(VIEW_CACHE_MAX).expect("non-zero")),
            published,
            retired,
            fault,
            committed,
            fed: VecDeque::new(),
            legacy_cleared: false,
            disk_free_min_bytes: 0,
        })
    }

    /// Runs until the writer stops (its head channel closes) and every durable event is folded.
    pub(super) fn run(mut self, mut heads: watch::Receiver<Head>, mut swaps: mpsc::UnboundedReceiver<Swap>) {
        let mut writer_running = true;
        loop {
            let head = heads.borrow_and_update().position;
            if self.live.position < head {
                if self.disk_low() {
                    if heads.has_changed().is_err() {
                        // The writer stopped: the views catch up at the next start.
                        break;
                    }
                    std::thread::sleep(super::DISK_RECHECK);
                    continue;
                }
                if let Err(error) = self.project(head) {
                    self.halt(error);
                    return;
                }
                continue;
            }
            if let Ok(swap) = swaps.try_recv() {
                self.swap(swap);
                continue;
            }
            if !writer_running {
                break;
            }
            if self.clear_retired() {
                continue;
            }
            futures::executor::block_on(async {
                tokio::select! {
                    changed = heads.changed() => writer_running = changed.is_ok(),
                    swap = swaps.recv() => if let Some(swap) = swap { self.swap(swap) },
                }
            });
        }
        // A clean stop: the last view batch becomes durable with everything else.
        if let Err(error) = self.store.sync_all() {
            tracing::warn!(%error, "could not sync the views at stop; the next start catches up");
        }
    }

    /// Whether the disk has less free than the views may leave (a failure to ask is not low:
    /// the write itself will say what is wrong).
    fn disk_low(&self) -> bool {
        self.disk_free_min_bytes > 0 && self.store.free_bytes().is_ok_and(|free| free < self.disk_free_min_bytes)
    }

    /// Folds the events after the live position, up to `head` and at most a batch, into the
    /// live generation: those the writer handed over from memory, the others (after a restart,
    /// or when the hand-off overflowed) from the log, checking their hash chain.
    fn project(&mut self, head: Position) -> Result<(), LedgerError> {
        // Take groups from the hand-off only while little is waiting here: a projector that
        // falls behind lets the channel fill, and the writer then drops groups (read back from
        // the log later) instead of this queue growing without bound.
        while self.fed.len() < PROJECT_BATCH_EVENTS_MAX
            && let Ok(group) = self.committed.try_recv()
        {
            self.fed.extend(group);
        }
        let until = Position(head.0.min(self.live.position.0 + PROJECT_BATCH_EVENTS_MAX as u64));
        let generation = self.live.generation.id;
        let mut batch = ViewBatch::default();
        let mut next = self.live.position.0 + 1;
        let (store, cache) = (&self.store, &mut self.cache);
        let mut load = |stream: &StreamName| match cache.pop(stream) {
            Some(record) => Ok::<_, StoreError>(Some(record)),
            None => load(store, generation, stream),
        };
        while next <= until.0 {
            match self.fed.front() {
                Some((event, _)) if event.position.0 < next => {
                    self.fed.pop_front();
                }
                Some((event, _)) if event.position.0 == next => {
                    let (event, hash) = self.fed.pop_front().expect("front exists");
                    batch.apply(&event, &mut load)?;
                    self.chain = ChainVerifier::after(next, hash);
                    next += 1;
                }
                _ => {
                    // Up to the next handed-over event (or `until`), from the log.
                    let gap_end = self.fed.front().map_or(until.0, |(e, _)| (e.position.0 - 1).min(until.0));
                    read_checked(store, &mut self.chain, next, gap_end, |event| batch.apply(event, &mut load))?;
                    next = gap_end + 1;
                }
            }
        }
        let records = batch.finish(&mut self.summary);
        self.store.write_views(view_write(generation, &records, until, &self.summary, false))?;
        for EncodedRecord { record, .. } in records {
            self.cache.put(record.stream.clone(), record);
        }
        self.publish(until);
        Ok(())
    }

    /// Brings a rebuilt generation from its position up to the live one, and makes it live in
    /// the same batch.
    fn swap(&mut self, swap: Swap) {
        let result = self.bring_up(&swap);
        let _ = swap.reply.send(result);
    }

    fn bring_up(&mut self, swap: &Swap) -> Result<ViewsSnapshot, LedgerError> {
        // The rebuild stopped at a durable position, which the live views have reached or will
        // reach first.
        while self.live.position < swap.position {
            let head = self.live.position.max(swap.position);
            self.project(head)?;
        }
        let generation = swap.generation.id;
        let mut summary = swap.summary.clone();
        let mut batch = ViewBatch::default();
        let mut chain = ChainVerifier::after(swap.position.0, hash_at(&self.store, swap.position)?);
        read_checked(&self.store, &mut chain, swap.position.0 + 1, self.live.position.0, |event| {
            batch.apply(event, |stream| load(&self.store, generation, stream))
        })?;
        let records = batch.finish(&mut summary);
        self.store.write_views(view_write(generation, &records, self.live.position, &summary, true))?;
        let old = std::mem::replace(&mut self.live.generation, swap.generation.clone());
        self.retired.push(old);
        self.summary = summary;
        self.cache.clear();
        self.publish(self.live.position);
        tracing::info!(generation, position = self.live.position.0, "rebuilt views are live");
        Ok(self.live.clone())
    }

    fn publish(&mut self, position: Position) {
        self.live.position = position;
        self.live.summary = Arc::new(self.summary.clone());
        self.published.send_replace(self.live.clone());
    }

    /// Drops a retired generation no reader holds, or removes a step of the views' first layout
    /// (keys in the default tree); true if it did work.
    fn clear_retired(&mut self) -> bool {
        if !self.legacy_cleared {
            match self.store.clear_legacy_views(CLEAR_STEP_KEYS) {
                Ok(done) => self.legacy_cleared = done,
                Err(error) => {
                    tracing::warn!(%error, "could not remove views of the first layout; retrying at next start");
                    self.legacy_cleared = true;
                }
            }
            return true;
        }
        let Some(index) = self.retired.iter().position(|g| Arc::strong_count(g) == 1) else { return false };
        let id = self.retired.swap_remove(index).id;
        match self.store.drop_views(id) {
            Ok(()) => tracing::info!(generation = id, "retired views dropped"),
            Err(error) => {
                tracing::warn!(%error, generation = id, "could not drop retired views; retrying at next start")
            }
        }
        true
    }

    fn halt(&mut self, error: LedgerError) {
        if error.is_data_loss() {
            raise_fault(&self.fault, &error.to_string());
        }
        tracing::error!(%error, position = self.live.position.0, "the projector stopped; views stay where they are");
    }
}

/// The write of a view batch's records, the position they bring a generation to and its
/// summary (and, to switch to it, the live-generation marker).
pub(super) fn view_write(
    generation: u32,
    records: &[EncodedRecord],
    position: Position,
    summary: &Summary,
    activate: bool,
) -> ViewWrite {
    ViewWrite {
        generation,
        records: records.iter().map(|r| (r.record.stream.as_str().to_owned(), r.bytes.clone())).collect(),
        position,
        summary: encode_summary(summary),
        activate: activate.then_some(ViewsMeta { generation, format: VIEW_FORMAT }),
    }
}

/// Reads the records `from..=to` from the log, each checked against `chain` (which ends where
/// they start); a record missing below the head is corruption.
pub(super) fn read_checked(
    store: &Store,
    chain: &mut ChainVerifier,
    from: u64,
    to: u64,
    mut each: impl FnMut(&RecordedEvent) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut next = from;
    for record in store.scan_log(Position(from), true) {
        let record = record?;
        if record.event.position.0 > to {
            break;
        }
        chain
            .check(record.event.position.0, &record.hash, &record.body)
            .map_err(|e| StoreError::corrupt(format!("position {}", record.event.position), e.to_string()))?;
        each(&record.event)?;
        next += 1;
    }
    if next <= to {
        return Err(StoreError::corrupt(format!("position {next}"), "record missing below the log head"));
    }
    Ok(())
}

/// A stream's record in a generation.
pub(super) fn load(store: &Store, generation: u32, stream: &StreamName) -> Result<Option<ViewRecord>, StoreError> {
    store
        .view(generation, stream.as_str())?
        .map(|bytes| decode_record(&bytes).map_err(|e| StoreError::corrupt(format!("view of {stream}"), e.to_string())))
        .transpose()
}
