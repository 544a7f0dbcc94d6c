//! The ledger: the commit pipeline (the group-commit writer, see [`writer`]) and the read side
//! that the services call. Reads never show an event past the durable head: an event becomes
//! visible only once its commit group has been fsynced.

pub mod access;
mod continuity;
mod evidence;
mod group_stats;
mod projector;
mod reads;
mod rebuild;
mod verify;
mod view_proof;
mod views;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};

use crate::audit;
use crate::domain::{DomainError, EventId, Position, ProposedEvent, Revision, StreamName};
use crate::store::journal::{self, Journal, MarkKind};
use crate::store::{Head, Recovery, Store, StoreConfig, StoreError, StoreErrorKind};

pub use access::{AccessTable, Caller, PrincipalEntry};
pub use continuity::check_offline as check_journal;
pub use evidence::{AuditConfig, Consistency, Inclusion, LiveVerdict, stored_merkle_root};
pub use group_stats::{GroupObserver, GroupSample, ObserverHandle};
pub use projector::{PROJECT_BATCH_EVENTS_MAX, VIEW_CACHE_MAX, ViewsSnapshot};
pub use reads::{EventFilter, ReadAllPage, ReadStreamPage, SubscriptionItem};
pub use rebuild::{RebuildOutcome, RebuildProgress};
pub use verify::{Verdict, verify_store};
pub use view_proof::{ProvenView, ViewProof, verify as verify_view_proof, view_entry};
pub use views::{AsOf, LIST_SCAN_MAX, ProjectionStatus, ViewPage, ViewsAt};

/// Most events in one append request: large enough for any real batch of facts, small enough
/// that one request cannot monopolise a commit group.
pub const APPEND_EVENTS_MAX: usize = 1000;

/// Sizes and knobs of the commit pipeline.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    pub store: StoreConfig,
    /// Append requests waiting for the writer; beyond this, appends get RESOURCE_EXHAUSTED
    /// instead of queueing without bound.
    pub append_queue_max: usize,
    /// Most events one commit group takes from the queue (one sled batch, one fsync).
    pub group_events_max: usize,
    /// Streams whose state the writer keeps in memory for its checks; beyond this, entries are
    /// evicted and re-read from the log when needed.
    pub stream_cache_max: usize,
    /// Commit groups the writer hands to the projector in memory; beyond this (a projector
    /// behind), the projector reads the events from the log instead.
    pub projector_handoff_max: usize,
    /// The signing key and when checkpoints are issued.
    pub audit: AuditConfig,
    /// Save the snapshot of the event-id index every this many events while serving (it is
    /// also saved at a clean stop), so that opening after a crash scans at most about this
    /// many records of the log.
    pub id_snapshot_every_events: u64,
    /// Open to read out what a damaged data directory still holds: a log that does not reach
    /// or extend the head journal is served (reads only) instead of refused, and nothing is
    /// appended, projected, signed or written to the journal.
    pub read_only: bool,
    /// Appends are refused (RESOURCE_EXHAUSTED, DISK_FULL) while the file system holding the
    /// data has less than this many bytes free, plus twice the commit group's size, and the
    /// views wait: the storage engine never meets a full disk in normal operation, so writes
    /// resume by themselves once space is freed. 0: no check.
    pub disk_free_min_bytes: u64,
    /// Told of each durable commit group (the metrics endpoint's).
    pub observer: group_stats::ObserverHandle,
}

/// The default of [`LedgerConfig::disk_free_min_bytes`]: room for the storage engine's own
/// segment writes and a few large commit groups, small beside any real disk.
pub const DISK_FREE_MIN_BYTES: u64 = 256 * 1024 * 1024;
/// How often free space is checked again while it is low.
pub const DISK_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            store: StoreConfig::default(),
            append_queue_max: 4096,
            group_events_max: 10_000,
            stream_cache_max: 16_384,
            projector_handoff_max: projector::COMMITTED_GROUPS_MAX,
            audit: AuditConfig::default(),
            id_snapshot_every_events: 250_000,
            read_only: false,
            disk_free_min_bytes: DISK_FREE_MIN_BYTES,
            observer: group_stats::ObserverHandle::default(),
        }
    }
}

/// What a stream must look like for an append to proceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Any,
    NoStream,
    Exists,
    Exact(Revision),
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no_stream"),
            Self::Exists => f.write_str("exists"),
            Self::Exact(r) => write!(f, "{r}"),
        }
    }
}

/// An append: events in order, and optional expectations per stream.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub events: Vec<ProposedEvent>,
    pub expectations: Vec<(StreamName, Expected)>,
}

/// Where one appended event landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub event_id: EventId,
    pub stream: StreamName,
    pub revision: Revision,
    pub position: Position,
}

/// The answer to a durable append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    pub events: Vec<Appended>,
    pub recorded_at: DateTime<Utc>,
    /// Every event was already committed with identical content: nothing was written.
    pub already_committed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("stream {stream} is at revision {}, expected {expected}", actual.map_or("none (no stream)".to_owned(), |r| r.to_string()))]
    WrongRevision { stream: StreamName, expected: Expected, actual: Option<Revision> },
    #[error("events[{index}]: {error}")]
    Rule { index: usize, error: DomainError },
    #[error("events[{index}]: event {event_id} was already committed at position {position} with different content")]
    DifferentContent { index: usize, event_id: EventId, position: Position },
    #[error(
        "events[{index}]: event {event_id} was already committed at position {position}, but not all events of this request were; a retry must repeat the original request"
    )]
    PartlyCommitted { index: usize, event_id: EventId, position: Position },
    #[error("events[{index}]: event id {event_id} appears more than once in the request")]
    DuplicateInRequest { index: usize, event_id: EventId },
    #[error("events[{index}]: the encoded event is {bytes} bytes, more than the {max} allowed")]
    EventTooLarge { index: usize, bytes: usize, max: usize },
    #[error("{0}")]
    NotFound(String),
    #[error("the append queue is full ({0} requests waiting); retry with backoff")]
    Overloaded(usize),
    #[error("the ledger is shutting down")]
    ShuttingDown,
    #[error("writes are halted until an operator acts: {0}")]
    Halted(String),
    #[error("a rebuild of the views is already running (since {since}, {done} of {total} events); wait for it")]
    RebuildRunning { since: DateTime<Utc>, done: u64, total: u64 },
    #[error("{0}")]
    OutOfRange(String),
    #[error("the views reached position {reached}, not {wanted}, within {waited:?}")]
    ViewsBehind { reached: Position, wanted: Position, waited: std::time::Duration },
    #[error("signing key {0}")]
    Key(String),
    /// The log does not reach or extend the ledger's own evidence of what it acknowledged or
    /// signed (refused at open).
    #[error("{0}")]
    Shortened(String),
    /// The request needs the ledger in another state (e.g. a checkpoint stating a view tree).
    #[error("{0}")]
    Precondition(String),
    /// A second, different Merkle root for a size already signed: never signed.
    #[error("refusing to sign: {0}")]
    Equivocation(String),
    /// The caller may not record one of the events (its grants do not cover it).
    #[error("events[{index}]: principal {principal} may not do this: {reason}")]
    Denied { index: usize, principal: String, reason: String },
    /// A principal proposed an event under another actor's name.
    #[error(
        "events[{index}]: metadata.actor {actor} is not the authenticated principal {principal}; leave it empty (the server records {principal})"
    )]
    ActorMismatch { index: usize, actor: String, principal: String },
    /// An event's signature does not verify, is made with a key that is not the principal's,
    /// or is missing where the principal must sign.
    #[error("events[{index}].metadata.signature: {reason}")]
    Signature { index: usize, reason: String },
    /// Nobody authenticated, on a ledger where principals exist.
    #[error("{0}")]
    Unauthenticated(String),
    /// Too little disk space for the append: nothing was written.
    #[error(
        "the file system holding the ledger has {free} bytes free, less than the {needed} this append needs (disk_free_min_mib plus twice the commit group); nothing was written, and appends resume once space is freed"
    )]
    DiskFull { free: u64, needed: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LedgerError {
    /// Whether the error means stored data failed a check, or is less than the ledger's own
    /// evidence says it was: the read that found it answers DATA_LOSS and writes halt.
    pub fn is_data_loss(&self) -> bool {
        match self {
            Self::Store(e) => e.kind() == StoreErrorKind::Damage,
            Self::Shortened(_) | Self::Equivocation(_) => true,
            _ => false,
        }
    }
}

struct AppendJob {
    request: AppendRequest,
    caller: Caller,
    reply: oneshot::Sender<Result<AppendOutcome, LedgerError>>,
}

/// The ledger: one writer thread, any number of readers.
pub struct Ledger {
    store: Arc<Store>,
    jobs: Mutex<Option<mpsc::Sender<AppendJob>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    projector: Mutex<Option<std::thread::JoinHandle<()>>>,
    durable: watch::Receiver<Head>,
    views: watch::Receiver<ViewsSnapshot>,
    swaps: mpsc::UnboundedSender<projector::Swap>,
    rebuild: Mutex<rebuild::RebuildState>,
    signing_key: ed25519_dalek::SigningKey,
    /// The log's origin: its checkpoints' first line and its key's name.
    origin: String,
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer_stop: Arc<AtomicBool>,
    /// The head journal (none when read-only), and the thread that marks the durable head in it.
    keeper: Option<Arc<continuity::Keeper>>,
    marker: Mutex<Option<std::thread::JoinHandle<()>>>,
    marker_stop: Arc<AtomicBool>,
    /// The durable head's sender when there is no writer (read-only): dropped at the stop,
    /// which ends subscriptions as the writer's stop does.
    still_head: Mutex<Option<watch::Sender<Head>>>,
    /// Held while a checkpoint is signed and stored: one signature per size.
    signing: Mutex<()>,
    /// The position of the latest checkpoint signed by this process (0 before the first): what
    /// the witnesses are asked to cosign.
    signed: watch::Sender<Position>,
    /// Set once the clean stop is in the journal (`shutdown` runs again on drop).
    stopped_cleanly: AtomicBool,
    dir: PathBuf,
    fault: Arc<watch::Sender<Option<String>>>,
    /// `Some(why)` while appends are refused for want of disk space (they resume by themselves).
    low_disk: Arc<watch::Sender<Option<String>>>,
    /// The free bytes the last refused group needed: space is back once that much is free.
    disk_needed: Arc<std::sync::atomic::AtomicU64>,
    /// True once [`Ledger::shutdown`] has stopped everything: subscriptions stop waiting for
    /// subscribers that do not read.
    shutdown: watch::Sender<bool>,
    append_queue_max: usize,
    recovery: Recovery,
    /// Every principal and credential, as of the durable head (kept by the writer).
    access: Arc<RwLock<AccessTable>>,
}

impl Ledger {
    /// Opens the store in `dir`, recovers it, re-checks the chain of its tail, and starts the
    /// writer thread.
    ///
    /// The log must reach and extend the ledger's own evidence of what it acknowledged and
    /// signed (the head journal, and the event-id snapshot): otherwise acknowledged events are
    /// gone and opening is refused ([`LedgerError::Shortened`]) — unless `read_only`, which
    /// opens anyway to serve reads of what is left, with writes halted.
    pub fn open(dir: &Path, config: LedgerConfig) -> Result<Arc<Self>, LedgerError> {
        let read_only = config.read_only;
        let (store, recovery) =
            if read_only { Store::open_read_only(dir, &config.store)? } else { Store::open(dir, &config.store)? };
        let store = Arc::new(store);
        let head = store.head()?;
        let fault = Arc::new(watch::Sender::new(None));
        let low_disk = Arc::new(watch::Sender::new(None));
        let disk_needed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (keeper, evidence) = if read_only {
            (None, journal::read(dir)?.0)
        } else {
            let journal = Journal::open(dir)?;
            let evidence = journal.evidence().clone();
            (Some(Arc::new(continuity::Keeper::new(journal))), evidence)
        };
        let checked = verify_tail_chain(&store, head, recovery.verified_tail_records)
            .and_then(|()| continuity::check(&store, dir, head, &evidence, &recovery));
        match checked {
            Err(error) if read_only => {
                tracing::error!(%error, "serving read-only what is left");
                fault.send_replace(Some(format!("started read-only on data that failed its checks: {error}")));
            }
            Err(error) => return Err(error),
            Ok(()) if read_only => {
                fault.send_replace(Some("started read-only (serve --read-only)".to_owned()));
            }
            Ok(()) => {}
        }
        if let Some(keeper) = &keeper
            && evidence.furthest.is_none()
        {
            keeper.seed(&store, head)?;
        }
        let access = match AccessTable::load(&store, head.position) {
            Ok(table) => table,
            Err(error) if read_only => {
                // Never open a ledger with principals to anonymous callers: nobody gets in.
                tracing::error!(%error, "the access table could not be read; refusing every call");
                AccessTable::locked()
            }
            Err(error) => return Err(error.into()),
        };
        let access = Arc::new(RwLock::new(access));
        let signing_key = evidence::signing_key(dir, &config.audit)?;
        let origin = evidence::origin(&config.audit, &signing_key)?;
        let (durable_tx, durable) = watch::channel(head);
        let (jobs_tx, jobs_rx) = mpsc::channel(config.append_queue_max);
        let (committed_tx, committed) = mpsc::channel(config.projector_handoff_max.max(1));
        let (live, retired) = projector::open_views(&store, head, !read_only)?;
        let (views_tx, views) = watch::channel(live.clone());
        let (swaps, swaps_rx) = mpsc::unbounded_channel();
        let (mut handle, mut projector_handle, mut still_head) = (None, None, None);
        if read_only {
            // No writer: the head never moves, and subscriptions wait on it until the stop.
            still_head = Some(durable_tx);
        } else {
            evidence::upgrade_tree(&store, head)?;
            let tower = evidence::open_tower(&store, head)?;
            let writer = writer::Writer::new(
                store.clone(),
                head,
                durable_tx,
                fault.clone(),
                committed_tx,
                tower,
                access.clone(),
                (low_disk.clone(), disk_needed.clone()),
                &config,
            )?;
            handle = Some(
                std::thread::Builder::new()
                    .name("ledger-writer".into())
                    .spawn(move || writer.run(jobs_rx))
                    .map_err(StoreError::Io)?,
            );
            let mut projector =
                projector::Projector::new(store.clone(), live, retired, views_tx, fault.clone(), committed)?;
            projector.disk_free_min_bytes = config.disk_free_min_bytes;
            let heads = durable.clone();
            projector_handle = Some(
                std::thread::Builder::new()
                    .name("ledger-projector".into())
                    .spawn(move || projector.run(heads, swaps_rx))
                    .map_err(StoreError::Io)?,
            );
        }
        tracing::info!(head = head.position.0, read_only, ?recovery, "ledger opened");
        let ledger = Arc::new(Self {
            store,
            jobs: Mutex::new((!read_only).then_some(jobs_tx)),
            writer: Mutex::new(handle),
            still_head: Mutex::new(still_head),
            projector: Mutex::new(projector_handle),
            durable,
            views,
            swaps,
            rebuild: Mutex::default(),
            signing_key,
            origin,
            checkpointer: Mutex::new(None),
            checkpointer_stop: Arc::default(),
            keeper,
            marker: Mutex::new(None),
            marker_stop: Arc::default(),
            signing: Mutex::new(()),
            signed: watch::Sender::new(Position(0)),
            stopped_cleanly: AtomicBool::new(false),
            dir: dir.to_owned(),
            fault,
            shutdown: watch::Sender::new(false),
            append_queue_max: config.append_queue_max,
            recovery,
            access,
            low_disk,
            disk_needed,
        });
        if let Some(keeper) = &ledger.keeper {
            let (weak, keeper, stop) = (Arc::downgrade(&ledger), keeper.clone(), ledger.marker_stop.clone());
            let marker = std::thread::Builder::new()
                .name("ledger-journal".into())
                .spawn(move || continuity::run_marker(weak, keeper, stop))
                .map_err(StoreError::Io)?;
            *ledger.marker.lock().expect("marker lock") = Some(marker);
            let (weak, stop, audit_config) =
                (Arc::downgrade(&ledger), ledger.checkpointer_stop.clone(), config.audit.clone());
            let id_snapshot_every = config.id_snapshot_every_events.max(1);
            let checkpointer = std::thread::Builder::new()
                .name("ledger-checkpoints".into())
                .spawn(move || evidence::run_checkpointer(weak, audit_config, id_snapshot_every, stop))
                .map_err(StoreError::Io)?;
            *ledger.checkpointer.lock().expect("checkpointer lock") = Some(checkpointer);
        }
        Ok(ledger)
    }

    /// Appends atomically and durably; see [`writer`] for the checks.
    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, LedgerError> {
        self.append_as(Caller::Anonymous, request).await
    }

    /// [`Ledger::append`] on behalf of `caller`: the writer checks that the caller may record
    /// each event of the request (`domain::access::authorize`, against what the caller holds
    /// just before that event, as of the commit), and a principal is stamped as each event's
    /// actor (an empty actor is filled in; another name is refused), the bootstrap as
    /// `domain::access::BOOTSTRAP_ACTOR`.
    pub async fn append_as(&self, caller: Caller, mut request: AppendRequest) -> Result<AppendOutcome, LedgerError> {
        if let Some(reason) = self.fault.borrow().clone() {
            return Err(LedgerError::Halted(reason));
        }
        let stamp = match &caller {
            Caller::Principal(principal) => Some(principal.as_str()),
            Caller::Bootstrap => Some(crate::domain::access::BOOTSTRAP_ACTOR),
            Caller::Anonymous => None,
        };
        // The signatures' own check, here on the caller's task rather than on the writer's
        // thread (the writer checks that each key is the principal's, as of the commit).
        for (index, event) in request.events.iter().enumerate() {
            if event.metadata.signature.is_some() {
                if !matches!(caller, Caller::Principal(_)) {
                    let reason = "a signature is checked against the recording principal's registered keys, and \
                                  no principal is recording this event (none is authenticated)";
                    return Err(LedgerError::Signature { index, reason: reason.to_owned() });
                }
                crate::store::record::check_event_signature(event)
                    .map_err(|reason| LedgerError::Signature { index, reason })?;
            }
        }
        if let Some(stamp) = stamp {
            for (index, event) in request.events.iter_mut().enumerate() {
                let actor = &mut event.metadata.actor;
                if actor.is_empty() {
                    actor.push_str(stamp);
                } else if actor != stamp {
                    return Err(LedgerError::ActorMismatch {
                        index,
                        actor: crate::domain::quote(actor).to_string(),
                        principal: stamp.to_owned(),
                    });
                }
            }
        }
        let jobs = self.jobs.lock().expect("jobs lock").clone().ok_or(LedgerError::ShuttingDown)?;
        let (reply, answer) = oneshot::channel();
        jobs.try_send(AppendJob { request, caller, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LedgerError::Overloaded(self.append_queue_max),
            mpsc::error::TrySendError::Closed(_) => LedgerError::ShuttingDown,
        })?;
        answer.await.map_err(|_| LedgerError::ShuttingDown)?
    }

    /// Watches the disk: `Some(why)` while appends are refused for want of free space.
    pub fn watch_disk(&self) -> watch::Receiver<Option<String>> {
        self.low_disk.subscribe()
    }

    /// While appends are refused for want of space, checks the free space again and lifts the
    /// refusal once as much is free as the refused group needed (a group that fits would too;
    /// this lets health recover without one). Returns whether space is still low.
    pub fn recheck_disk(&self) -> bool {
        if self.low_disk.borrow().is_none() {
            return false;
        }
        match self.store.free_bytes() {
            Ok(free) if free >= self.disk_needed.load(Ordering::Relaxed) => {
                tracing::info!(free, "disk space is back; appends resume");
                self.low_disk.send_replace(None);
                false
            }
            _ => true,
        }
    }

    /// The access table as of the durable head: who may call, and with which credential.
    pub fn access(&self) -> std::sync::RwLockReadGuard<'_, AccessTable> {
        self.access.read().expect("access table lock")
    }

    /// Gives `name` the admin role (unless it holds it) and a new bearer token, as the operator
    /// at the data directory (`principal bootstrap`): allowed while no admin holds a
    /// credential. Returns the token (the ledger keeps only its SHA-256) and where the access
    /// events were recorded.
    pub async fn bootstrap(&self, name: &crate::domain::PrincipalName) -> Result<(String, AppendOutcome), LedgerError> {
        use crate::domain::access::{TOKEN_RANDOM_BYTES, token_of};
        use crate::domain::{Credential, EventData, Grant};
        let mut random = [0u8; TOKEN_RANDOM_BYTES];
        getrandom::fill(&mut random).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        let token = token_of(&random);
        let holds_admin = self.access().get(name).is_some_and(|p| p.state.grants.contains(&Grant::Admin));
        let mut events = Vec::new();
        if !holds_admin {
            events.push(EventData::AccessGranted {
                principal: name.clone(),
                grants: vec![Grant::Admin],
                reason: "bootstrap: an admin created offline by the operator".to_owned(),
            });
        }
        events.push(EventData::CredentialIssued { principal: name.clone(), credential: Credential::of_token(&token) });
        let events = events.into_iter().map(ProposedEvent::new).collect();
        let outcome = self.append_as(Caller::Bootstrap, AppendRequest { events, expectations: Vec::new() }).await?;
        Ok((token, outcome))
    }

    /// The last durable (acknowledgeable) head.
    pub fn durable_head(&self) -> Head {
        *self.durable.borrow()
    }

    /// Watches the durable head.
    pub fn watch_head(&self) -> watch::Receiver<Head> {
        self.durable.clone()
    }

    /// Watches the fault state: `Some(reason)` once stored data failed a check or a durable write
    /// failed; writes are refused from then on.
    pub fn watch_fault(&self) -> watch::Receiver<Option<String>> {
        self.fault.subscribe()
    }

    /// How many durable syncs the store has completed.
    pub fn sync_count(&self) -> u64 {
        self.store.sync_count()
    }

    /// What recovery found on open.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Stops taking appends; appends already queued are still written and answered after their
    /// fsync, and subscriptions end (with `ShuttingDown`) once they have delivered those too.
    /// Does not block.
    pub fn close(&self) {
        self.checkpointer_stop.store(true, Ordering::Release);
        self.marker_stop.store(true, Ordering::Release);
        self.jobs.lock().expect("jobs lock").take();
        self.still_head.lock().expect("head lock").take();
    }

    /// [`close`](Self::close), then waits for the writer to drain the queue and stop, then gives
    /// up on subscribers that are not reading. Blocks.
    pub fn shutdown(&self) {
        self.close();
        if let Some(checkpointer) = self.checkpointer.lock().expect("checkpointer lock").take() {
            // The checkpointer may hold the last reference for a moment, and then stop the
            // ledger from its own thread: it must not wait for itself.
            if checkpointer.thread().id() != std::thread::current().id() {
                checkpointer.thread().unpark();
                let _ = checkpointer.join();
            }
        }
        if let Some(handle) = self.writer.lock().expect("writer lock").take() {
            let _ = handle.join();
            // The writer's head channel is closed: the projector folds what is left and stops.
            if let Some(projector) = self.projector.lock().expect("projector lock").take() {
                let _ = projector.join();
            }
            // Nothing is written any more: a snapshot of the event-id index spares the next
            // open a scan of the whole log. (Skipped while faulted: the tree may hold writes
            // that never became durable.)
            if self.fault.borrow().is_none()
                && let Err(error) = self.store.save_id_snapshot()
            {
                tracing::warn!(%error, "could not save the event-id snapshot; the next start scans the log");
            }
        }
        if let Some(marker) = self.marker.lock().expect("marker lock").take()
            && marker.thread().id() != std::thread::current().id()
        {
            marker.thread().unpark();
            let _ = marker.join();
        }
        // The last word of a clean stop: the log must end exactly here at the next open. (Also
        // when writes halted: what was acknowledged stays acknowledged.)
        if let Some(keeper) = self.keeper.as_ref()
            && !self.stopped_cleanly.swap(true, Ordering::AcqRel)
        {
            let head = self.durable_head();
            match keeper.mark(MarkKind::CleanStop, head) {
                Ok(()) => tracing::info!(head = head.position.0, "clean stop recorded in the head journal"),
                Err(error) => tracing::warn!(%error, "could not record the clean stop in the head journal"),
            }
        }
        self.shutdown.send_replace(true);
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn record_fault(&self, error: &LedgerError) {
        if error.is_data_loss() {
            raise_fault(&self.fault, &error.to_string());
        }
    }
}

/// Enters the fault state (writes refused, health NOT_SERVING) with the first reason given.
fn raise_fault(fault: &watch::Sender<Option<String>>, reason: &str) {
    tracing::error!(%reason, "stored data failed its check; refusing writes");
    fault.send_if_modified(|f| {
        if f.is_none() {
            *f = Some(reason.to_owned());
            true
        } else {
            false
        }
    });
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Re-checks the chain hashes of the last `count` records against the head.
fn verify_tail_chain(store: &Store, head: Head, count: u64) -> Result<(), LedgerError> {
    if count == 0 {
        return Ok(());
    }
    let first = head.position.0 - count + 1;
    let prev = hash_at(store, Position(first - 1))?;
    let mut chain = audit::ChainVerifier::after(first - 1, prev);
    for record in store.scan_log(Position(first), true).take(count as usize) {
        let record = record?;
        chain.check(record.event.position.0, &record.hash, &record.body).map_err(|e| StoreError::Corrupt {
            place: format!("position {}", record.event.position),
            reason: e.to_string(),
        })?;
    }
    if chain.head() != (head.position.0, head.hash) {
        return Err(StoreError::Corrupt {
            place: "log head".into(),
            reason: "the head differs from the last record".into(),
        }
        .into());
    }
    Ok(())
}

/// The chain hash of the record at `position` (the genesis hash at 0).
pub(super) fn hash_at(store: &Store, position: Position) -> Result<audit::Hash, StoreError> {
    match position.0 {
        0 => Ok(audit::GENESIS_HASH),
        _ => store
            .read_record(position)?
            .map(|r| r.hash)
            .ok_or_else(|| StoreError::corrupt(format!("position {position}"), "record missing below the log head")),
    }
}
