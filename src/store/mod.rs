//! The store: the only module that imports sled. One tree, several key spaces (see [`keys`]),
//! one durable atomic write per commit group (a sled `Batch`, then `flush`, then a real
//! `fdatasync` of the database file), reads, and recovery on open. Records are stored in
//! chunks of consecutive positions ([`chunk`]); the event-id index and where each stream
//! began live in memory ([`memory_index`]) and are rebuilt on open from their snapshot and the
//! log after it.

mod audit_keys;
pub mod chunk;
pub mod journal;
use audit_keys::batch_subtree;
mod id_snapshot;
pub mod keys;
mod memory_index;
pub mod record;
mod views;

pub use audit_keys::{CheckpointSpace, SUBTREE_LEVEL_MIN, TREE_FORMAT};
pub use views::{ViewWrite, ViewsMeta};

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chunk::{ChunkLayout, ChunkWriter};
use memory_index::MemoryIndex;

use crate::domain::{EventId, Position, RecordedEvent, Revision, StreamName};

/// The store format this build writes and reads. A database written by a newer format is
/// refused, never misread; an older one is upgraded on open. Format 2 keys the stream index by
/// the position of each stream's first event (format 1 keyed it by stream name): upgrading
/// rewrites the index from the log ([`Store::reindex_streams`]).
pub const STORE_FORMAT: u8 = 2;
/// sled's segment size. sled writes any log message larger than a quarter of a segment to a
/// separate blob file that it never fsyncs, so this, with [`RECORD_BODY_BYTES_MAX`], keeps every
/// acknowledged byte in the one database file that the durable write syncs. sled refuses to open
/// a database with another segment size: this value is part of the store format.
pub const SEGMENT_BYTES: usize = 2 * 1024 * 1024;
/// Largest record body. A leaf page holds at most 17 entries, and a chunk is at most this plus
/// [`chunk::CHUNK_BYTES_TARGET`], so pages stay well below the blob threshold of a quarter
/// segment (512 KiB).
pub const RECORD_BODY_BYTES_MAX: usize = 16 * 1024;
/// The most revisions in one index run written by [`Store::reindex_streams`] (8 KiB of
/// positions: a value like a log chunk, far below sled's blob threshold).
pub const REINDEX_RUN_MAX: usize = 1024;
/// How many records at the tail of the log are read back and decoded on open.
pub const RECOVERY_TAIL_CHECK_MAX: u64 = 1024;

/// A 32-byte digest (the chain hash, computed by `audit`).
pub type Hash = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An error the engine reports (its I/O errors become [`StoreError::Io`], so that their
    /// message is the operating system's own).
    #[error("storage engine: {0}")]
    Sled(sled::Error),
    #[error("storage i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the database in {dir} has store format {found}, newer than this build reads ({supported}); use a newer pax-ledger"
    )]
    NewerFormat { dir: PathBuf, found: u8, supported: u8 },
    #[error("stored data failed its check at {place}: {reason}")]
    Corrupt { place: String, reason: String },
    /// The storage engine panicked: its files hold something it cannot read (a panic while
    /// recovering or reading is how sled meets some damage).
    #[error(
        "the storage engine failed while {during} ({message}): its files hold something it cannot read, i.e. they are \
         damaged. Nothing more is written. Restore the data directory from a backup, or import an export; \
         `pax-ledger verify --data` shows what can still be read"
    )]
    EnginePanic { during: String, message: String },
    /// Another process holds the database.
    #[error(
        "the data directory {} is in use by another process (a running pax-ledger server, or another command on it): stop it first, or use another --data directory",
        dir.display()
    )]
    Locked { dir: PathBuf },
    /// The data directory cannot be used as one.
    #[error("{}: {reason}", dir.display())]
    BadDirectory { dir: PathBuf, reason: String },
}

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        match error {
            sled::Error::Io(e) => Self::Io(os_error_of(e)),
            other => Self::Sled(other),
        }
    }
}

/// sled hands some I/O errors on wrapped in an error of its own whose text is the debug form of
/// the operating system's (`Os { code: 28, kind: StorageFull, message: "No space left on
/// device" }`): the OS error itself again, so that messages read as the OS's own words.
fn os_error_of(error: std::io::Error) -> std::io::Error {
    if error.raw_os_error().is_some() {
        return error;
    }
    let text = error.to_string();
    let code = text
        .strip_prefix("Os { code: ")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok());
    code.map_or(error, std::io::Error::from_raw_os_error)
}

/// What kind of failure a store error is, for the one place that picks a status code and for
/// the fault state: damage is never retried and halts writes; an I/O failure may pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Stored bytes failed a check (ours or the engine's), or the engine failed on them.
    Damage,
    /// The operating system refused a read or write (disk full, I/O error).
    Io,
    /// The store cannot be opened as it is (newer format, in use, not a directory).
    Unusable,
    /// The engine reports a misuse of its API or a bug of its own.
    Engine,
}

impl StoreError {
    /// An equal error, for answering several requests that failed on the same write (the
    /// underlying I/O errors are not `Clone`): same variant, same OS error number.
    pub fn duplicate(&self) -> Self {
        fn same_io(e: &std::io::Error) -> std::io::Error {
            e.raw_os_error()
                .map_or_else(|| std::io::Error::new(e.kind(), e.to_string()), std::io::Error::from_raw_os_error)
        }
        match self {
            Self::Io(e) => Self::Io(same_io(e)),
            Self::Sled(sled::Error::Io(e)) => Self::Sled(sled::Error::Io(same_io(e))),
            Self::Sled(other) => Self::Io(std::io::Error::other(other.to_string())),
            Self::NewerFormat { dir, found, supported } => {
                Self::NewerFormat { dir: dir.clone(), found: *found, supported: *supported }
            }
            Self::Corrupt { place, reason } => Self::Corrupt { place: place.clone(), reason: reason.clone() },
            Self::EnginePanic { during, message } => {
                Self::EnginePanic { during: during.clone(), message: message.clone() }
            }
            Self::Locked { dir } => Self::Locked { dir: dir.clone() },
            Self::BadDirectory { dir, reason } => Self::BadDirectory { dir: dir.clone(), reason: reason.clone() },
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            Self::Corrupt { .. } | Self::EnginePanic { .. } => StoreErrorKind::Damage,
            // sled reports a checksum or framing failure of its own log as corruption.
            Self::Sled(sled::Error::Corruption { .. }) => StoreErrorKind::Damage,
            Self::Sled(sled::Error::Io(_)) | Self::Io(_) => StoreErrorKind::Io,
            Self::Sled(sled::Error::ReportableBug(_)) => StoreErrorKind::Damage,
            Self::Sled(sled::Error::Unsupported(_) | sled::Error::CollectionNotFound(_)) => StoreErrorKind::Engine,
            Self::NewerFormat { .. } | Self::Locked { .. } | Self::BadDirectory { .. } => StoreErrorKind::Unusable,
        }
    }

    pub fn corrupt(place: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Corrupt { place: place.into(), reason: reason.into() }
    }
}

/// Sizes and knobs of the store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// sled's page cache in bytes (its default, 1 GiB, is far more than a ledger server needs).
    pub cache_capacity_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { cache_capacity_bytes: 64 * 1024 * 1024 }
    }
}

/// The log's last committed position and its chain hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub position: Position,
    pub hash: Hash,
}

impl Head {
    pub const EMPTY: Head = Head { position: Position(0), hash: [0; 32] };
}

/// What recovery found and did when the store was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records past the committed head (never acknowledged) that were removed.
    pub removed_tail_records: u64,
    /// Records at the tail that were re-verified.
    pub verified_tail_records: u64,
    /// The position up to which the event-id index came from its snapshot (0: none used).
    pub id_snapshot_position: u64,
    /// Records whose event id was read from the log to rebuild the index.
    pub scanned_id_records: u64,
    /// An intact event-id snapshot that the log does not extend: the position and chain hash
    /// it covers. The snapshot is written only from durable commits, so this is evidence that
    /// acknowledged events are gone (the ledger refuses to open on it); the index was rebuilt
    /// from the log instead.
    pub unextended_snapshot: Option<(Position, Hash)>,
}

/// A committed record: the event, its chain hash and the canonical bytes that were hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub hash: Hash,
    pub body: Vec<u8>,
    pub event: RecordedEvent,
}

struct PendingRecord {
    position: Position,
    stream: StreamName,
    revision: Revision,
    event_id: EventId,
    hash: Hash,
    body: Vec<u8>,
}

/// The writes of one commit group, applied atomically by [`Store::commit`].
#[derive(Default)]
pub struct CommitBatch {
    records: Vec<PendingRecord>,
    head: Option<Head>,
    /// Roots of aligned Merkle subtrees the batch completes (see `audit_keys`).
    subtrees: Vec<(u8, u64, Hash)>,
}

impl CommitBatch {
    /// Adds one record. Records must come in position order, continuing the head; `body` must
    /// be [`record::encode_event`] of `event`, and `hash` its chain hash.
    pub fn put_record(&mut self, event: &RecordedEvent, body: Vec<u8>, hash: &Hash) {
        self.records.push(PendingRecord {
            position: event.position,
            stream: event.stream.clone(),
            revision: event.revision,
            event_id: event.event.event_id,
            hash: *hash,
            body,
        });
    }

    /// Sets the log's head; every commit group ends with it.
    pub fn set_head(&mut self, head: &Head) {
        self.head = Some(*head);
    }

    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// The bytes of the records' bodies: about what the batch adds to the database.
    pub fn body_bytes(&self) -> u64 {
        self.records.iter().map(|r| r.body.len() as u64).sum()
    }
}

fn encode_head(head: &Head) -> Vec<u8> {
    let mut value = Vec::with_capacity(40);
    value.extend_from_slice(&head.position.0.to_be_bytes());
    value.extend_from_slice(&head.hash);
    value
}

fn decode_head(value: &[u8]) -> Result<Head, StoreError> {
    if value.len() != 40 {
        return Err(StoreError::corrupt("log head", format!("{} bytes instead of 40", value.len())));
    }
    Ok(Head {
        position: Position(u64::from_be_bytes(value[..8].try_into().expect("8 bytes"))),
        hash: value[8..].try_into().expect("32 bytes"),
    })
}

/// A stream-index run: the first revision it holds (from its key) and the positions of its
/// consecutive revisions.
fn decode_run(key: &[u8], value: &[u8]) -> Result<(Revision, Vec<Position>), StoreError> {
    let malformed = || StoreError::corrupt(format!("stream index key {key:02x?}"), "malformed index run");
    let (_, first) = keys::stream_key_parts(key).ok_or_else(malformed)?;
    if value.is_empty() || !value.len().is_multiple_of(8) {
        return Err(malformed());
    }
    Ok((first, value.chunks_exact(8).map(|p| Position(u64::from_be_bytes(p.try_into().expect("8 bytes")))).collect()))
}

/// A chunk fetched from the log, with its records located.
struct LoadedChunk {
    first: Position,
    value: sled::IVec,
    layout: ChunkLayout,
}

impl LoadedChunk {
    fn load(key: &[u8], value: sled::IVec) -> Result<Self, StoreError> {
        let first = keys::log_position(key).ok_or_else(|| StoreError::corrupt("log", "malformed key"))?;
        let layout =
            ChunkLayout::parse(&value).map_err(|reason| StoreError::corrupt(format!("chunk at {first}"), reason))?;
        Ok(Self { first, value, layout })
    }

    fn last(&self) -> Position {
        Position(self.first.0 + self.layout.len() as u64 - 1)
    }

    fn contains(&self, position: Position) -> bool {
        self.first <= position && position <= self.last()
    }

    /// The record at `position`, checked as every read checks a record (its body's whole format,
    /// and the position it claims), without building its event: its chain hash and body.
    fn check(&self, position: Position) -> Result<(Hash, &[u8], record::BodyRef<'_>), StoreError> {
        let place = || format!("position {position}");
        let (hash, bytes) = self.layout.record(&self.value, (position.0 - self.first.0) as usize);
        let body = record::read_body(bytes).map_err(|e| StoreError::corrupt(place(), e.to_string()))?;
        if body.position != position {
            return Err(StoreError::corrupt(place(), format!("record claims position {}", body.position)));
        }
        Ok((hash, bytes, body))
    }

    /// The stream name (as stored), revision and event id of the record at `position`, read
    /// without decoding the rest (`record::peek_stream_and_id`): what the in-memory indexes are
    /// built from.
    fn peek(&self, position: Position) -> Result<(&[u8], Revision, EventId), StoreError> {
        let (_, body) = self.layout.record(&self.value, (position.0 - self.first.0) as usize);
        record::peek_stream_and_id(body).map_err(|e| StoreError::corrupt(format!("position {position}"), e.to_string()))
    }

    fn record(&self, position: Position) -> Result<StoredRecord, StoreError> {
        let (hash, bytes, body) = self.check(position)?;
        let event = body.to_event().map_err(|e| StoreError::corrupt(format!("position {position}"), e.to_string()))?;
        Ok(StoredRecord { hash, body: bytes.to_vec(), event })
    }
}

/// Runs `f`, which calls the storage engine: a panic inside the engine (how sled meets some
/// damage, e.g. a page it cannot deserialize) becomes [`StoreError::EnginePanic`], answered and
/// recorded like any damage, instead of unwinding through the ledger's threads and handlers.
fn engine<T, E: From<StoreError>>(during: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|m| (*m).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        tracing::error!(during, %message, "the storage engine panicked");
        Err(StoreError::EnginePanic { during: during.to_owned(), message }.into())
    })
}

/// An iterator over the engine's data whose steps run in [`engine`]: a panic ends it with
/// [`StoreError::EnginePanic`].
struct Guarded<I> {
    inner: Option<I>,
    during: &'static str,
}

impl<I> Guarded<I> {
    fn new(during: &'static str, inner: I) -> Self {
        Self { inner: Some(inner), during }
    }

    fn step<T>(&mut self, next: impl FnOnce(&mut I) -> Option<Result<T, StoreError>>) -> Option<Result<T, StoreError>> {
        let inner = self.inner.as_mut()?;
        match engine(self.during, || Ok::<_, StoreError>(next(inner))) {
            Ok(item) => item,
            Err(error) => {
                self.inner = None;
                Some(Err(error))
            }
        }
    }
}

impl<T, I: Iterator<Item = Result<T, StoreError>>> Iterator for Guarded<I> {
    type Item = Result<T, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(Iterator::next)
    }
}

impl<T, I: DoubleEndedIterator<Item = Result<T, StoreError>>> DoubleEndedIterator for Guarded<I> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(DoubleEndedIterator::next_back)
    }
}

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// To serve: everything, commits included.
    Full,
    /// The log and what is stored about it, without the event-id index (offline verification).
    LogOnly,
    /// Everything but writes (a damaged directory served read-only).
    ReadOnly,
}

/// How long opening waits for another holder of the database's file lock to let go. sled's
/// background flusher keeps a closed database's lock for a moment after the last handle is
/// dropped, so an in-process restart (or a supervisor's quick one) would otherwise fail.
pub const OPEN_LOCK_WAIT_MAX: Duration = Duration::from_secs(5);

fn open_sled(dir: &Path, config: &StoreConfig) -> Result<sled::Db, StoreError> {
    let started = Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(config.cache_capacity_bytes)
            .segment_size(SEGMENT_BYTES)
            .mode(sled::Mode::HighThroughput)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && started.elapsed() < OPEN_LOCK_WAIT_MAX =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                return Err(StoreError::Locked { dir: dir.to_owned() });
            }
            other => return Ok(other?),
        }
    }
}

/// Where a durable commit's time went: sled's `apply_batch` (which waits for sled's write
/// lock, held by any other batch, e.g. the projector's), its `flush` (serialising the dirty
/// pages), and the `fdatasync` of the database file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitTimings {
    pub apply: Duration,
    pub flush: Duration,
    pub sync: Duration,
}

/// The embedded database.
pub struct Store {
    db: sled::Db,
    /// A second handle on sled's database file, for the `fdatasync` that sled's `flush` lacks.
    db_file: File,
    syncs: AtomicU64,
    /// Event id → position, for every committed event (extended after each durable commit),
    /// and the fingerprints of every stream with a record visible in sled (extended before each
    /// batch is applied): see [`MemoryIndex`] for the invariant. Rebuilt on open.
    index: RwLock<MemoryIndex>,
    dir: PathBuf,
    /// Opened by [`Store::open_log_only`]: no event-id index, and no commit.
    log_only: bool,
}

impl Store {
    /// Opens (or creates) the store in `dir`, checks its format, recovers its tail and rebuilds
    /// the event-id index.
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<(Self, Recovery), StoreError> {
        Self::open_with(dir, config, Access::Full)
    }

    /// Opens the store to read its log and what is stored about it, nothing else (the offline
    /// verification): as [`Store::open`], format check and recovery included, but without the
    /// event-id index, which is most of the time an open of a large log takes (its snapshot
    /// loaded, or the log scanned). Such a store answers no event id and takes no commit.
    pub fn open_log_only(dir: &Path, config: &StoreConfig) -> Result<(Self, Recovery), StoreError> {
        Self::open_with(dir, config, Access::LogOnly)
    }

    /// Opens the store to read it as it is, for a server that only serves reads of a damaged
    /// directory: as [`Store::open`], event-id index included, but nothing of ours is written —
    /// no tail removed (reads stop at the head anyway), no format upgrade (refused), no sync.
    /// (The storage engine's own recovery on open is out of our hands.) Takes no commit.
    pub fn open_read_only(dir: &Path, config: &StoreConfig) -> Result<(Self, Recovery), StoreError> {
        Self::open_with(dir, config, Access::ReadOnly)
    }

    fn open_with(dir: &Path, config: &StoreConfig, access: Access) -> Result<(Self, Recovery), StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::BadDirectory { dir: dir.to_owned(), reason: "is a file, not a directory".into() });
        }
        std::fs::create_dir_all(dir)?;
        engine("opening the database (the engine recovers its log)", || Self::open_in(dir, config, access))
    }

    fn open_in(dir: &Path, config: &StoreConfig, access: Access) -> Result<(Self, Recovery), StoreError> {
        let db = open_sled(dir, config)?;
        let db_file = File::open(dir.join("db"))?;
        // The database file's directory entry must itself be durable once.
        File::open(dir)?.sync_all()?;
        let store = Self {
            db,
            db_file,
            syncs: AtomicU64::new(0),
            index: RwLock::new(MemoryIndex::default()),
            dir: dir.to_owned(),
            log_only: access == Access::LogOnly,
        };
        let writes = access != Access::ReadOnly;
        let format = store.check_format(dir, writes)?;
        let mut recovery = store.recover(writes)?;
        if format < STORE_FORMAT {
            if !writes {
                return Err(StoreError::corrupt(
                    "store format",
                    format!("format {format} must be upgraded to {STORE_FORMAT}, which a read-only open does not do"),
                ));
            }
            let runs = store.reindex_streams()?;
            tracing::info!(from = format, to = STORE_FORMAT, runs, "store format upgraded: stream index rewritten");
        }
        if writes {
            // What a killed process wrote but never synced may sit in the page cache; make it
            // durable (data and metadata) before anything is served, since a retry may be
            // answered from it.
            store.db.flush()?;
            store.db_file.sync_all()?;
        }
        if access != Access::LogOnly {
            store.rebuild_id_index(&mut recovery)?;
        }
        Ok((store, recovery))
    }

    /// The store's format: this build's, or an older one that open upgrades (1: the stream
    /// index keyed by name). A newer one is refused.
    fn check_format(&self, dir: &Path, writes: bool) -> Result<u8, StoreError> {
        match self.db.get(keys::META_FORMAT)? {
            Some(v) if v.len() == 1 && (1..=STORE_FORMAT).contains(&v[0]) => Ok(v[0]),
            Some(v) if v.len() == 1 && v[0] > STORE_FORMAT => {
                Err(StoreError::NewerFormat { dir: dir.to_owned(), found: v[0], supported: STORE_FORMAT })
            }
            Some(v) => Err(StoreError::corrupt("store format", format!("unreadable format marker {:?}", &*v))),
            None if self.db.is_empty() && !writes => Ok(STORE_FORMAT),
            None if self.db.is_empty() => {
                self.db.insert(keys::META_FORMAT, &[STORE_FORMAT])?;
                self.sync()?;
                Ok(STORE_FORMAT)
            }
            None => Err(StoreError::corrupt("store format", "a non-empty database without a format marker")),
        }
    }

    /// Rewrites the stream index from the log, up to the head: removes every index run, then
    /// writes each stream's runs of revisions 1 and later (at most [`REINDEX_RUN_MAX`] each)
    /// under the position of its first event, and marks the store as of this build's format in the last
    /// batch. What upgrading a format-1 store takes; a crash half-way leaves the old format
    /// marker, so the next open starts over. Returns how many runs it wrote.
    fn reindex_streams(&self) -> Result<u64, StoreError> {
        const BATCH_KEYS: usize = 10_000;
        loop {
            let old: Vec<sled::IVec> =
                self.db.scan_prefix([keys::STREAM]).keys().take(BATCH_KEYS).collect::<Result<_, _>>()?;
            if old.is_empty() {
                break;
            }
            let mut batch = sled::Batch::default();
            old.iter().for_each(|key| batch.remove(key));
            self.db.apply_batch(batch)?;
        }
        struct Pending {
            first: Position,
            run_first: Revision,
            positions: Vec<u8>,
        }
        let head = self.head()?;
        let mut pending: HashMap<Vec<u8>, Pending> = HashMap::new();
        let mut batch = sled::Batch::default();
        let (mut in_batch, mut written) = (0usize, 0u64);
        let mut put = |batch: &mut sled::Batch, run: &Pending| -> Result<(), StoreError> {
            batch.insert(&keys::stream(run.first, run.run_first), run.positions.as_slice());
            written += 1;
            in_batch += 1;
            if in_batch == BATCH_KEYS {
                self.db.apply_batch(std::mem::take(batch))?;
                in_batch = 0;
            }
            Ok(())
        };
        for entry in self.db.range(keys::log(Position(0))..=keys::log(head.position)) {
            let (key, value) = entry?;
            let chunk = LoadedChunk::load(&key, value)?;
            for i in 0..chunk.layout.len() {
                let position = Position(chunk.first.0 + i as u64);
                let (stream, revision, _) = chunk.peek(position)?;
                if revision.0 == 0 {
                    // The stream's first event: where its runs go; it is in none of them.
                    let run = Pending { first: position, run_first: Revision(1), positions: Vec::new() };
                    if pending.insert(stream.to_vec(), run).is_some() {
                        return Err(StoreError::corrupt(format!("position {position}"), "a stream begins twice"));
                    }
                    continue;
                }
                let Some(run) = pending.get_mut(stream) else {
                    return Err(StoreError::corrupt(
                        format!("position {position}"),
                        "a stream without its first event",
                    ));
                };
                if revision.0 != run.run_first.0 + (run.positions.len() / 8) as u64 {
                    return Err(StoreError::corrupt(
                        format!("position {position}"),
                        format!("revision {revision} does not follow its stream's previous one"),
                    ));
                }
                run.positions.extend_from_slice(&position.0.to_be_bytes());
                if run.positions.len() / 8 == REINDEX_RUN_MAX {
                    put(&mut batch, run)?;
                    run.run_first = Revision(run.run_first.0 + REINDEX_RUN_MAX as u64);
                    run.positions.clear();
                }
            }
        }
        // The rest in key order: sled appends fastest at the end of a tree.
        let mut rest: Vec<_> = pending.values().filter(|run| !run.positions.is_empty()).collect();
        rest.sort_by_key(|run| run.first);
        for run in rest {
            put(&mut batch, run)?;
        }
        batch.insert(keys::META_FORMAT, &[STORE_FORMAT]);
        self.db.apply_batch(batch)?;
        self.sync()?;
        Ok(written)
    }

    /// Makes the tail consistent with the committed head: chunks past it (never acknowledged,
    /// since the head is written in the same atomic batch) are removed with their index runs;
    /// the last records are read back and decoded, so that a torn tail is found before it is
    /// served. (Their chain hashes are re-checked by the ledger, which owns the hash function
    /// through `audit`.)
    ///
    /// This runs before the in-memory indexes are built, so the streams of the removed records
    /// never reach them from the log; a snapshot may still name some (nothing here depends on
    /// when it was written): such an entry is confirmed by reading its record, which is another
    /// stream's or none, so it costs a read, never a wrong answer.
    fn recover(&self, writes: bool) -> Result<Recovery, StoreError> {
        let head = self.head()?;
        let mut recovery = Recovery::default();
        let beyond: Vec<_> = self
            .db
            .range(keys::log(Position(head.position.0 + 1))..=keys::log(Position(u64::MAX)))
            .collect::<Result<_, _>>()?;
        if !beyond.is_empty() && !writes {
            tracing::warn!(head = head.position.0, "records past the log head are left in place (read-only)");
        } else if !beyond.is_empty() {
            let mut batch = sled::Batch::default();
            for (key, value) in beyond {
                batch.remove(&key);
                if let Ok(chunk) = LoadedChunk::load(&key, value) {
                    recovery.removed_tail_records += chunk.layout.len() as u64;
                }
            }
            // Their index runs go too. A run holds one commit group's events of a stream, so it
            // is past the head as a whole; the runs of streams begun past the head are at the
            // end of the key space, the others anywhere: this path is never expected (the head
            // is in the same atomic batch as its records), so it looks at every run.
            for run in self.db.scan_prefix([keys::STREAM]) {
                let (key, value) = run?;
                if let Ok((_, positions)) = decode_run(&key, &value)
                    && positions[0] > head.position
                {
                    batch.remove(&key);
                }
            }
            self.db.apply_batch(batch)?;
            self.sync()?;
            tracing::warn!(
                removed = recovery.removed_tail_records,
                head = head.position.0,
                "removed unacknowledged records past the log head"
            );
        }
        if head.position.0 == 0 {
            return Ok(recovery);
        }
        let first = head.position.0.saturating_sub(RECOVERY_TAIL_CHECK_MAX - 1).max(1);
        let mut expected = first;
        for record in self.scan_log(Position(first), true) {
            let record = record?;
            if record.event.position.0 != expected {
                return Err(StoreError::corrupt(format!("position {expected}"), "record missing below the log head"));
            }
            expected += 1;
            recovery.verified_tail_records += 1;
        }
        if expected != head.position.0 + 1 {
            return Err(StoreError::corrupt(format!("position {expected}"), "record missing below the log head"));
        }
        Ok(recovery)
    }

    /// Rebuilds the in-memory indexes (event ids, where streams began): from their snapshot
    /// if there is a valid one, then from the chunks after it (from the start of the log
    /// otherwise), checking on the way that positions are dense.
    fn rebuild_id_index(&self, recovery: &mut Recovery) -> Result<(), StoreError> {
        let head = self.head()?;
        let snapshot = id_snapshot::load(&self.dir).filter(|snapshot| {
            let valid = snapshot.position <= head.position
                && (snapshot.position.0 == 0
                    || matches!(self.read_record(snapshot.position), Ok(Some(r)) if r.hash == snapshot.hash));
            if !valid {
                // An intact snapshot covers only durable commits: evidence for the ledger.
                tracing::error!(position = snapshot.position.0, "the log does not extend the event-id snapshot");
                recovery.unextended_snapshot = Some((snapshot.position, snapshot.hash));
            }
            valid
        });
        let (mut index, from) = match snapshot {
            Some(snapshot) => {
                recovery.id_snapshot_position = snapshot.position.0;
                (snapshot.index, Position(snapshot.position.0 + 1))
            }
            None => (MemoryIndex::default(), Position(1)),
        };
        let start = match self.db.range(keys::log(Position(0))..=keys::log(from)).next_back().transpose()? {
            Some((key, _)) => key.to_vec(),
            None => keys::log(Position(0)).to_vec(),
        };
        let mut next = None;
        for entry in self.db.range(start..=keys::log(Position(u64::MAX)).to_vec()) {
            let (key, value) = entry?;
            let chunk = LoadedChunk::load(&key, value)?;
            let expected = next.unwrap_or(if from.0 == 1 { Position(1) } else { chunk.first });
            if chunk.first != expected {
                return Err(StoreError::corrupt(
                    format!("position {expected}"),
                    format!("the log jumps to {}", chunk.first),
                ));
            }
            for i in 0..chunk.layout.len() {
                let position = Position(chunk.first.0 + i as u64);
                if position < from {
                    continue;
                }
                let (stream, revision, id) = chunk.peek(position)?;
                if revision.0 == 0 {
                    index.add_stream(stream, position);
                }
                if let Some(earlier) = index.ids.insert(id, position) {
                    return Err(StoreError::corrupt(
                        format!("position {position}"),
                        format!("event id {id} is also at {earlier}"),
                    ));
                }
                recovery.scanned_id_records += 1;
            }
            next = Some(Position(chunk.last().0 + 1));
        }
        index.covered = head.position;
        *self.index.write().expect("memory index lock") = index;
        Ok(())
    }

    /// Writes the snapshot of the in-memory indexes (event ids, where streams begin) up to the
    /// last position they cover, so that the next open scans only what comes after it: at a
    /// clean stop (the head), and periodically while serving, so that a crash leaves a recent
    /// one. Commits wait while it is written (it holds the index's read lock: ≈ 30 ms per
    /// million events), not while it is hashed and synced. Returns the position it covers and
    /// how long the index was held.
    pub fn save_id_snapshot(&self) -> Result<(Position, Duration), StoreError> {
        engine("saving the event-id snapshot", || {
            assert!(!self.log_only, "a store opened to read its log only has no event-id index to save");
            let index = self.index.read().expect("memory index lock");
            let locked = Instant::now();
            let position = index.covered;
            let hash = match position.0 {
                0 => [0; 32],
                _ => {
                    self.read_record(position)?
                        .ok_or_else(|| {
                            StoreError::corrupt(
                                format!("position {position}"),
                                "covered by the id index, not in the log",
                            )
                        })?
                        .hash
                }
            };
            let file = id_snapshot::write(&self.dir, position, &hash, &index)?;
            drop(index);
            let locked = locked.elapsed();
            id_snapshot::publish(&self.dir, file)?;
            Ok((position, locked))
        })
    }

    /// The log's last committed position and hash.
    pub fn head(&self) -> Result<Head, StoreError> {
        engine("reading the log head", || match self.db.get(keys::META_HEAD)? {
            Some(v) => decode_head(&v),
            None => Ok(Head::EMPTY),
        })
    }

    /// Applies `batch` atomically and returns only once it is durable: sled's `flush` writes
    /// the log out, then `fdatasync` on the database file makes it survive power loss. The
    /// records go into chunks, each stream's records into one index run.
    pub fn commit(&self, batch: CommitBatch) -> Result<CommitTimings, StoreError> {
        engine("committing", || {
            assert!(!self.log_only, "a store opened to read its log only takes no commit");
            let mut write = sled::Batch::default();
            let mut chunks = ChunkWriter::default();
            let mut firsts = Vec::new();
            // The index must know every stream visible in sled, so the new streams (a stream's
            // revisions are dense from 0) go in before the batch is applied; if the write then
            // fails, the index holds streams without records, which costs a read, never a wrong
            // answer (see `MemoryIndex::streams`). A stream's revision 0 is the record at its first
            // position; only the later ones go in runs.
            let mut runs: HashMap<&StreamName, (Revision, Vec<u8>)> = HashMap::new();
            let mut starts: HashMap<&StreamName, Position> = HashMap::new();
            {
                let mut index = self.index.write().expect("memory index lock");
                for record in &batch.records {
                    if record.revision.0 == 0 {
                        index.add_stream(record.stream.as_str().as_bytes(), record.position);
                    }
                }
                for record in batch.records.iter().filter(|r| r.revision.0 > 0) {
                    if let std::collections::hash_map::Entry::Vacant(entry) = starts.entry(&record.stream) {
                        let start = index.stream_start(record.stream.as_str().as_bytes()).ok_or_else(|| {
                            StoreError::corrupt(
                                format!("stream {}", record.stream),
                                "a later revision of an unknown stream",
                            )
                        })?;
                        entry.insert(start);
                    }
                }
            }
            for record in &batch.records {
                if chunks.push(&record.hash, &record.body) {
                    firsts.push(record.position);
                }
                if record.stream.as_str().starts_with(keys::ACCESS_STREAM_PREFIX) {
                    write.insert(&keys::access(record.position), Vec::new());
                }
                if record.revision.0 == 0 {
                    continue;
                }
                let run = runs.entry(&record.stream).or_insert_with(|| (record.revision, Vec::new()));
                debug_assert_eq!(
                    run.0.0 + (run.1.len() / 8) as u64,
                    record.revision.0,
                    "revisions of a stream are consecutive"
                );
                run.1.extend_from_slice(&record.position.0.to_be_bytes());
            }
            for (first, chunk) in firsts.into_iter().zip(chunks.finish()) {
                write.insert(&keys::log(first), chunk);
            }
            for (stream, (first_revision, positions)) in runs {
                write.insert(&keys::stream(starts[stream], first_revision), positions);
            }
            if let Some(head) = &batch.head {
                write.insert(keys::META_HEAD, encode_head(head));
            }
            for (level, index, root) in &batch.subtrees {
                batch_subtree(&mut write, *level, *index, root);
            }
            let started = Instant::now();
            self.db.apply_batch(write)?;
            let apply = started.elapsed();
            let (flush, sync) = self.sync()?;
            let mut index = self.index.write().expect("memory index lock");
            index.ids.extend_new(batch.records.iter().map(|r| (r.event_id, r.position)));
            if let Some(last) = batch.records.last() {
                index.covered = last.position;
            }
            Ok(CommitTimings { apply, flush, sync })
        })
    }

    /// sled's `flush`, then `fdatasync`: how long each took.
    fn sync(&self) -> Result<(Duration, Duration), StoreError> {
        let started = Instant::now();
        self.db.flush()?;
        let flushed = Instant::now();
        self.db_file.sync_data()?;
        self.syncs.fetch_add(1, Ordering::Release);
        Ok((flushed - started, flushed.elapsed()))
    }

    /// How many durable syncs (`flush` + `fdatasync`) completed since open: the seam through
    /// which tests prove that acknowledgements wait for one.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Acquire)
    }

    /// The position of a durably committed event, by its id.
    pub fn event_position(&self, id: &EventId) -> Result<Option<Position>, StoreError> {
        assert!(!self.log_only, "a store opened to read its log only has no event-id index");
        Ok(self.index.read().expect("memory index lock").ids.get(id))
    }

    /// A stream's current revision (of its last event), or `None` if it has no event. A stream
    /// the in-memory index does not know certainly has no record and costs no seek (most
    /// streams asked about by the writer are new ones); otherwise the record at its first
    /// position confirms it and one reverse seek among its runs answers (none: revision 0).
    pub fn stream_revision(&self, stream: &StreamName) -> Result<Option<Revision>, StoreError> {
        engine("reading the stream index", || {
            let Some((start, _)) = self.confirmed_start(stream)? else { return Ok(None) };
            match self.db.scan_prefix(keys::stream_prefix(start)).next_back().transpose()? {
                Some((key, value)) => {
                    let (first, positions) = decode_run(&key, &value)?;
                    Ok(Some(Revision(first.0 + positions.len() as u64 - 1)))
                }
                None => Ok(Some(Revision(0))),
            }
        })
    }

    /// The position of `stream`'s first event and the chunk holding it, if the stream has a
    /// record: the in-memory index's candidate, confirmed by the record there (this stream,
    /// revision 0) — after a fingerprint collision or a write that failed, it is another
    /// stream's record, or none.
    fn confirmed_start(&self, stream: &StreamName) -> Result<Option<(Position, LoadedChunk)>, StoreError> {
        let Some(start) = self.stream_start(stream) else { return Ok(None) };
        let Some(chunk) = self.chunk_at(start)? else { return Ok(None) };
        let (name, revision, _) = chunk.peek(start)?;
        let confirmed = name == stream.as_str().as_bytes() && revision.0 == 0;
        Ok(confirmed.then_some((start, chunk)))
    }

    /// Where `stream` began, if it may have a record (`None` is exact): see [`MemoryIndex`].
    fn stream_start(&self, stream: &StreamName) -> Option<Position> {
        assert!(!self.log_only, "a store opened to read its log only has no stream index in memory");
        self.index.read().expect("memory index lock").stream_start(stream.as_str().as_bytes())
    }

    /// Records `stream` as beginning at `first` in the in-memory index without writing anything:
    /// a stale entry (a write that failed) or, with another stream's name, a collision.
    #[cfg(test)]
    fn add_stream_start(&self, stream: &StreamName, first: Position) {
        self.index.write().expect("memory index lock").add_stream(stream.as_str().as_bytes(), first);
    }

    /// The chunk holding `position`, if any.
    fn chunk_at(&self, position: Position) -> Result<Option<LoadedChunk>, StoreError> {
        match self.db.range(keys::log(Position(0))..=keys::log(position)).next_back().transpose()? {
            Some((key, value)) => {
                let chunk = LoadedChunk::load(&key, value)?;
                Ok(chunk.contains(position).then_some(chunk))
            }
            None => Ok(None),
        }
    }

    /// One record by position.
    /// The bytes free on the file system that holds the store, for an unprivileged writer (the
    /// operating system's own reserve for root is not counted as free).
    pub fn free_bytes(&self) -> Result<u64, StoreError> {
        let stat = rustix::fs::statvfs(&self.dir).map_err(|e| StoreError::Io(e.into()))?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// The positions of every event of a `principal-` stream (the access events), in log
    /// order: the access index, written in the batch of each record it lists. Few (access
    /// changes are rare), so that the access table is folded on open without a scan of the log.
    pub fn access_positions(&self) -> Result<Vec<Position>, StoreError> {
        engine("reading the access index", || {
            let mut positions = Vec::new();
            for entry in self.db.scan_prefix([keys::ACCESS]) {
                let (key, _) = entry?;
                let position = <[u8; 8]>::try_from(&key[1..])
                    .map(|b| Position(u64::from_be_bytes(b)))
                    .map_err(|_| StoreError::corrupt("the access index", format!("a key of {} bytes", key.len())))?;
                positions.push(position);
            }
            Ok(positions)
        })
    }

    pub fn read_record(&self, position: Position) -> Result<Option<StoredRecord>, StoreError> {
        engine("reading the log", || self.chunk_at(position)?.map(|chunk| chunk.record(position)).transpose())
    }

    /// Up to `limit` records of a stream from revision `from` (inclusive) in the given direction.
    pub fn read_stream(
        &self,
        stream: &StreamName,
        from: Revision,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        engine("reading a stream", || {
            let Some((start, first)) = self.confirmed_start(stream)? else { return Ok(Vec::new()) };
            let mut chunk = Some(first);
            let mut out = Vec::new();
            let mut read = |revision: Revision, position: Position, out: &mut Vec<StoredRecord>| {
                if !chunk.as_ref().is_some_and(|c| c.contains(position)) {
                    chunk = Some(self.chunk_at(position)?.ok_or_else(|| {
                        StoreError::corrupt(format!("position {position}"), "indexed record is missing")
                    })?);
                }
                let record = chunk.as_ref().expect("loaded above").record(position)?;
                if record.event.stream != *stream || record.event.revision != revision {
                    return Err(StoreError::corrupt(
                        format!("position {position}"),
                        "stream index disagrees with the record",
                    ));
                }
                out.push(record);
                Ok::<_, StoreError>(())
            };
            // Revision 0 is the record at `start`; the runs hold revisions 1 and later.
            if forward && from.0 == 0 && limit > 0 {
                read(Revision(0), start, &mut out)?;
            }
            let lowest = keys::stream(start, Revision(1)).to_vec();
            let highest = keys::stream(start, Revision(u64::MAX)).to_vec();
            // The run holding `from` starts at or before it.
            let holding =
                self.db.range(lowest.clone()..=keys::stream(start, from.max(Revision(1))).to_vec()).next_back();
            let holding = holding.transpose()?.map(|(key, _)| key.to_vec());
            let runs = match (forward, holding) {
                (true, Some(key)) => Box::new(self.db.range(key..=highest)) as Box<dyn Iterator<Item = _>>,
                (true, None) => Box::new(self.db.range(lowest..=highest)),
                (false, Some(key)) if from.0 > 0 => Box::new(self.db.range(lowest..=key).rev()),
                (false, _) => Box::new(std::iter::empty()),
            };
            for run in runs {
                let (key, value) = run?;
                let (first, positions) = decode_run(&key, &value)?;
                let revisions = (0..positions.len()).map(|i| (Revision(first.0 + i as u64), positions[i]));
                let wanted: Box<dyn Iterator<Item = _>> = if forward {
                    Box::new(revisions.filter(|(r, _)| *r >= from))
                } else {
                    Box::new(revisions.rev().filter(|(r, _)| *r <= from))
                };
                for (revision, position) in wanted {
                    if out.len() == limit {
                        return Ok(out);
                    }
                    read(revision, position, &mut out)?;
                }
            }
            if !forward && out.len() < limit {
                read(Revision(0), start, &mut out)?;
            }
            Ok(out)
        })
    }

    /// Checks the records at positions `from..=to` in log order, as every read checks them
    /// (chunk framing, each body's whole format, the position it claims), without building
    /// their events or copying their bodies, and hands each to `visit`: its position, chain
    /// hash and body. Stops at the first error, the store's or `visit`'s. The positions are
    /// those the chunks hold: a missing chunk is a gap in them, for `visit` to notice.
    pub fn check_log<E: From<StoreError>>(
        &self,
        from: Position,
        to: Position,
        mut visit: impl FnMut(Position, &Hash, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        engine("reading the log", || {
            let start = match self.db.range(keys::log(Position(0))..=keys::log(from)).next_back().transpose() {
                Ok(Some((key, _))) => key.to_vec(),
                Ok(None) => keys::log(from).to_vec(),
                Err(e) => return Err(StoreError::from(e).into()),
            };
            for entry in self.db.range(start..=keys::log(to).to_vec()) {
                let (key, value) = entry.map_err(StoreError::from)?;
                let chunk = LoadedChunk::load(&key, value)?;
                for index in 0..chunk.layout.len() {
                    let position = Position(chunk.first.0 + index as u64);
                    if position < from {
                        continue;
                    }
                    if position > to {
                        return Ok(());
                    }
                    let (hash, body, _) = chunk.check(position)?;
                    visit(position, &hash, body)?;
                }
            }
            Ok(())
        })
    }

    /// Records in log order from `from` (inclusive), forwards or backwards, lazily.
    pub fn scan_log(
        &self,
        from: Position,
        forward: bool,
    ) -> impl Iterator<Item = Result<StoredRecord, StoreError>> + '_ {
        Guarded::new("reading the log", self.scan_log_unguarded(from, forward))
    }

    fn scan_log_unguarded(
        &self,
        from: Position,
        forward: bool,
    ) -> impl Iterator<Item = Result<StoredRecord, StoreError>> + '_ {
        // Start at the chunk holding `from` (its key is at or before `from`).
        let start = match self.db.range(keys::log(Position(0))..=keys::log(from)).next_back() {
            Some(Ok((key, _))) => key.to_vec(),
            _ => keys::log(if forward { Position(0) } else { from }).to_vec(),
        };
        let chunks: Box<dyn Iterator<Item = _>> = if forward {
            Box::new(self.db.range(start..=keys::log(Position(u64::MAX)).to_vec()))
        } else {
            Box::new(self.db.range(keys::log(Position(0)).to_vec()..=start).rev())
        };
        chunks.flat_map(move |entry| {
            let records: Vec<Result<StoredRecord, StoreError>> =
                match entry.map_err(StoreError::from).and_then(|(k, v)| LoadedChunk::load(&k, v)) {
                    Err(e) => vec![Err(e)],
                    Ok(chunk) => {
                        let positions = (chunk.first.0..=chunk.last().0).map(Position);
                        let positions: Vec<_> = if forward {
                            positions.filter(|p| *p >= from).collect()
                        } else {
                            positions.rev().filter(|p| *p <= from).collect()
                        };
                        positions.into_iter().map(|p| chunk.record(p)).collect()
                    }
                };
            records
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::{EventData, MemberCode, MemberKind, MemberRole, ProposedEvent};

    /// A commit group of `events` after `head`, each at the next revision of its stream
    /// (`revisions` holds each stream's last revision and is updated), with chain hashes that
    /// are not the real ones (the store does not compute them). Returns the batch, its head and
    /// the ids.
    fn batch_of(
        head: Head,
        events: Vec<EventData>,
        revisions: &mut HashMap<StreamName, u64>,
    ) -> (CommitBatch, Head, Vec<EventId>) {
        let mut batch = CommitBatch::default();
        let mut ids = Vec::new();
        let mut head = head;
        for data in events {
            let position = Position(head.position.0 + 1);
            let stream = data.stream();
            let revision = revisions.get(&stream).map_or(0, |r| r + 1);
            revisions.insert(stream.clone(), revision);
            let event = RecordedEvent {
                position,
                stream,
                revision: Revision(revision),
                recorded_at: Utc::now(),
                event: ProposedEvent::new(data),
            };
            let hash = [position.0 as u8; 32];
            ids.push(event.event.event_id);
            batch.put_record(&event, record::encode_event(&event), &hash);
            head = Head { position, hash };
        }
        batch.set_head(&head);
        (batch, head, ids)
    }

    /// Commits `events` as one group (see [`batch_of`]) and returns the new head.
    fn commit_events(
        store: &Store,
        head: Head,
        events: Vec<EventData>,
        revisions: &mut HashMap<StreamName, u64>,
    ) -> Head {
        let (batch, head, _) = batch_of(head, events, revisions);
        store.commit(batch).unwrap();
        head
    }

    fn code(raw: &str) -> MemberCode {
        MemberCode::parse("code", raw).unwrap()
    }

    fn join(raw: &str) -> EventData {
        EventData::MemberJoined {
            code: code(raw),
            name: format!("Participant {raw}"),
            kind: MemberKind::State,
            role: MemberRole::Member,
        }
    }

    fn role_change(raw: &str, n: usize) -> EventData {
        EventData::MemberRoleChanged { code: code(raw), role: [MemberRole::Guest, MemberRole::Member][n % 2] }
    }

    /// Commits `count` joins of fresh members after `head`, and returns the new head and the ids.
    fn commit_joins(store: &Store, head: Head, count: u64) -> (Head, Vec<EventId>) {
        let events = (head.position.0 + 1..=head.position.0 + count)
            .map(|position| {
                let code = format!("Z{}", (b'A' + (position % 26) as u8) as char)
                    + &((b'A' + ((position / 26) % 26) as u8) as char).to_string();
                join(&code)
            })
            .collect();
        let (batch, head, ids) = batch_of(head, events, &mut HashMap::new());
        store.commit(batch).unwrap();
        (head, ids)
    }

    /// Every stream of `revisions` answers its last revision and reads back whole, in both
    /// directions; every stream of `absent` answers `None`, and from the in-memory index alone.
    #[track_caller]
    fn check_streams(store: &Store, revisions: &HashMap<StreamName, u64>, absent: &[StreamName]) {
        for (stream, revision) in revisions {
            assert_eq!(store.stream_revision(stream).unwrap(), Some(Revision(*revision)), "{stream}");
            let forward = store.read_stream(stream, Revision(0), true, usize::MAX).unwrap();
            let revisions: Vec<u64> = forward.iter().map(|r| r.event.revision.0).collect();
            assert_eq!(revisions, (0..=*revision).collect::<Vec<_>>(), "{stream}");
            assert!(forward.iter().all(|r| r.event.stream == *stream), "{stream}");
            let backward = store.read_stream(stream, Revision(*revision), false, usize::MAX).unwrap();
            assert_eq!(backward.len(), forward.len(), "{stream}");
        }
        for stream in absent {
            assert_eq!(store.stream_start(stream), None, "{stream} is in the index");
            assert_eq!(store.stream_revision(stream).unwrap(), None, "{stream}");
        }
    }

    fn reopen(dir: &Path) -> (Store, Recovery) {
        Store::open(dir, &StoreConfig::default()).unwrap()
    }

    #[test]
    fn the_id_index_comes_from_its_snapshot_and_the_chunks_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, recovery) = reopen(dir.path());
        assert_eq!((recovery.id_snapshot_position, recovery.scanned_id_records), (0, 0));
        let (head, mut ids) = commit_joins(&store, Head::EMPTY, 40);
        store.save_id_snapshot().unwrap();
        drop(store);

        // A clean stop: nothing to scan.
        let (store, recovery) = reopen(dir.path());
        assert_eq!((recovery.id_snapshot_position, recovery.scanned_id_records), (40, 0));
        // More events, then a crash (no new snapshot): only those are scanned.
        let (_, more) = commit_joins(&store, head, 25);
        ids.extend(more);
        drop(store);
        let (store, recovery) = reopen(dir.path());
        assert_eq!((recovery.id_snapshot_position, recovery.scanned_id_records), (40, 25));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(store.event_position(id).unwrap(), Some(Position(i as u64 + 1)));
        }
    }

    #[test]
    fn a_log_only_open_checks_the_log_without_the_id_index() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = reopen(dir.path());
        let (head, _) = commit_joins(&store, Head::EMPTY, 40);
        store.save_id_snapshot().unwrap();
        drop(store);
        let (store, recovery) = Store::open_log_only(dir.path(), &StoreConfig::default()).unwrap();
        assert_eq!((recovery.id_snapshot_position, recovery.scanned_id_records), (0, 0));
        assert_eq!(recovery.verified_tail_records, 40);
        assert_eq!(store.head().unwrap(), head);
        let mut seen = Vec::new();
        store
            .check_log(Position(3), Position(38), |position, hash, body| {
                assert_eq!(*hash, [position.0 as u8; 32]);
                assert_eq!(record::read_body(body).unwrap().position, position);
                seen.push(position.0);
                Ok::<_, StoreError>(())
            })
            .unwrap();
        assert_eq!(seen, (3..=38).collect::<Vec<_>>());
        drop(store);
        // The snapshot is still the one a server's open uses.
        let (_, recovery) = reopen(dir.path());
        assert_eq!((recovery.id_snapshot_position, recovery.scanned_id_records), (40, 0));
    }

    #[test]
    fn checking_the_log_stops_at_a_corrupt_record_or_the_visitor_s_error() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = reopen(dir.path());
        commit_joins(&store, Head::EMPTY, 20);
        let mut seen = 0;
        let stopped = store.check_log(Position(1), Position(20), |position, _, _| {
            seen += 1;
            if position.0 == 7 { Err(StoreError::corrupt("visitor", "stop")) } else { Ok(()) }
        });
        assert!(matches!(stopped, Err(StoreError::Corrupt { place, .. }) if place == "visitor"));
        assert_eq!(seen, 7);
        // A record claiming another position, rewritten in its chunk.
        let (key, value) =
            store.db.range(keys::log(Position(0))..=keys::log(Position(9))).next_back().unwrap().unwrap();
        let first = keys::log_position(&key).unwrap();
        let layout = ChunkLayout::parse(&value).unwrap();
        let (_, body) = layout.record(&value, (9 - first.0) as usize);
        let at = body.as_ptr() as usize - value.as_ptr() as usize;
        let mut chunk = value.to_vec();
        chunk[at + 8] ^= 1;
        store.db.insert(key, chunk).unwrap();
        let mut seen = Vec::new();
        let stopped = store.check_log(Position(1), Position(20), |position, _, _| {
            seen.push(position.0);
            Ok::<_, StoreError>(())
        });
        assert!(
            matches!(&stopped, Err(StoreError::Corrupt { place, reason }) if place == "position 9" && reason.contains("claims position")),
            "{stopped:?}"
        );
        assert_eq!(seen, (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn a_snapshot_the_log_does_not_extend_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let (store, _) = reopen(dir.path());
        let (_, ids) = commit_joins(&store, Head::EMPTY, 30);
        drop(store);
        // A snapshot of another ledger (same positions, other records) must not be used.
        let (stranger, _) = reopen(other.path());
        commit_joins(&stranger, Head::EMPTY, 30);
        let mut forged = Head::EMPTY;
        forged.position = Position(30);
        forged.hash = [0xEE; 32];
        id_snapshot::save(dir.path(), forged.position, &forged.hash, &stranger.index.read().unwrap()).unwrap();
        let (store, recovery) = reopen(dir.path());
        assert_eq!((recovery.id_snapshot_position, recovery.scanned_id_records), (0, 30));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(store.event_position(id).unwrap(), Some(Position(i as u64 + 1)));
        }
    }

    /// Members named `{prefix}A`, `{prefix}B`, … (`count` of them).
    fn codes(prefix: &str, count: u8) -> Vec<String> {
        (0..count).map(|i| format!("{prefix}{}", (b'A' + i) as char)).collect()
    }

    #[test]
    fn stream_revisions_come_from_the_fingerprints_after_commits_and_every_kind_of_open() {
        let dir = tempfile::tempdir().unwrap();
        // Never written: other members, one whose name extends a written one, a commitment.
        let absent: Vec<StreamName> = ["QQ", "AAB", "CZ"]
            .map(|raw| StreamName::member(&code(raw)))
            .into_iter()
            .chain([StreamName::commitment(
                &crate::domain::CommitmentId::parse("id", &uuid::Uuid::new_v4().to_string()).unwrap(),
            )])
            .collect();
        let mut revisions = HashMap::new();
        let (store, _) = reopen(dir.path());
        check_streams(&store, &revisions, &absent);

        // New streams; then more revisions of some of them, some new streams, and a stream
        // created and changed in the same group.
        let mut head =
            commit_events(&store, Head::EMPTY, codes("A", 20).iter().map(|c| join(c)).collect(), &mut revisions);
        let mut events: Vec<_> =
            codes("A", 10).iter().enumerate().flat_map(|(i, c)| (0..=i).map(move |n| role_change(c, n))).collect();
        events.extend(codes("B", 5).iter().map(|c| join(c)));
        events.extend([role_change("BA", 0), role_change("BA", 1)]);
        head = commit_events(&store, head, events, &mut revisions);
        assert_eq!((revisions[&StreamName::member(&code("AJ"))], revisions[&StreamName::member(&code("BA"))]), (10, 2));
        check_streams(&store, &revisions, &absent);
        store.save_id_snapshot().unwrap();
        drop(store);

        // A clean stop: everything comes from the snapshot.
        let (store, recovery) = reopen(dir.path());
        assert_eq!((recovery.id_snapshot_position, recovery.scanned_id_records), (head.position.0, 0));
        check_streams(&store, &revisions, &absent);

        // More groups, then a crash (no new snapshot): the snapshot and the records after it.
        let snapshot_at = head.position.0;
        let mut events: Vec<_> = codes("C", 6).iter().map(|c| join(c)).collect();
        events.extend([role_change("AA", 1), role_change("BE", 1), role_change("CA", 0)]);
        head = commit_events(&store, head, events, &mut revisions);
        head = commit_events(&store, head, vec![role_change("AT", 1), join("DA")], &mut revisions);
        drop(store);
        let (store, recovery) = reopen(dir.path());
        assert_eq!(
            (recovery.id_snapshot_position, recovery.scanned_id_records),
            (snapshot_at, head.position.0 - snapshot_at)
        );
        check_streams(&store, &revisions, &absent);
        drop(store);

        // No snapshot at all: the whole log.
        std::fs::remove_file(id_snapshot::path(dir.path())).unwrap();
        let (store, recovery) = reopen(dir.path());
        assert_eq!((recovery.id_snapshot_position, recovery.scanned_id_records), (0, head.position.0));
        check_streams(&store, &revisions, &absent);
    }

    #[test]
    fn an_index_entry_of_another_stream_or_of_no_record_still_answers_none() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = reopen(dir.path());
        let mut revisions = HashMap::new();
        let head =
            commit_events(&store, Head::EMPTY, vec![join("JP"), role_change("JP", 0), join("JQA")], &mut revisions);
        // Entries as a fingerprint collision leaves them (pointing at another stream's runs:
        // JP's at 1, JQA's at 3) and as a failed write does (pointing past the head).
        let ghosts = [("JPN", 1), ("JQ", 3), ("ZZ", 4)].map(|(raw, at)| (StreamName::member(&code(raw)), Position(at)));
        let check_ghosts = |store: &Store| {
            for (ghost, at) in &ghosts {
                assert_eq!(store.stream_start(ghost), Some(*at), "{ghost}");
                assert_eq!(store.stream_revision(ghost).unwrap(), None, "{ghost}");
                assert!(store.read_stream(ghost, Revision(0), true, 10).unwrap().is_empty(), "{ghost}");
                assert!(store.read_stream(ghost, Revision(5), false, 10).unwrap().is_empty(), "{ghost}");
            }
        };
        for (ghost, at) in &ghosts {
            store.add_stream_start(ghost, *at);
        }
        check_ghosts(&store);
        check_streams(&store, &revisions, &[]);
        // The snapshot keeps them, still harmless.
        store.save_id_snapshot().unwrap();
        drop(store);
        let (store, recovery) = reopen(dir.path());
        assert_eq!(recovery.id_snapshot_position, head.position.0);
        check_ghosts(&store);
        check_streams(&store, &revisions, &[]);
        // A ghost written for real, its fingerprint taken: it is kept apart by name, and stays
        // so across a snapshot and a scan of the log.
        let head = commit_events(&store, head, vec![join("JPN"), join("ZZ")], &mut revisions);
        let head = commit_events(&store, head, vec![role_change("ZZ", 0)], &mut revisions);
        let collided = |store: &Store| store.index.read().unwrap().collided.len();
        assert_eq!(collided(&store), 2);
        check_streams(&store, &revisions, &[]);
        store.save_id_snapshot().unwrap();
        drop(store);
        let (store, recovery) = reopen(dir.path());
        assert_eq!(recovery.id_snapshot_position, head.position.0);
        assert_eq!(collided(&store), 2);
        check_streams(&store, &revisions, &[]);
        drop(store);
        std::fs::remove_file(id_snapshot::path(dir.path())).unwrap();
        let (store, _) = reopen(dir.path());
        check_streams(&store, &revisions, &[]);
    }

    #[test]
    fn a_format_1_store_is_upgraded_on_open_by_rewriting_its_stream_index() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = reopen(dir.path());
        let mut revisions = HashMap::new();
        // A stream longer than one rewritten run, a stream begun in a later group, and streams
        // of one event.
        let mut head =
            commit_events(&store, Head::EMPTY, codes("A", 5).iter().map(|c| join(c)).collect(), &mut revisions);
        let changes = REINDEX_RUN_MAX + 100;
        head = commit_events(&store, head, (0..changes).map(|n| role_change("AA", n)).collect(), &mut revisions);
        head =
            commit_events(&store, head, vec![join("BA"), role_change("BA", 0), role_change("AB", 0)], &mut revisions);
        // Turn it into what format 1 wrote: runs from revision 0, keyed by stream name.
        let runs: Vec<_> = store.db.scan_prefix([keys::STREAM]).keys().collect::<Result<_, _>>().unwrap();
        runs.iter().for_each(|key| drop(store.db.remove(key).unwrap()));
        let mut streams: HashMap<StreamName, Vec<u8>> = HashMap::new();
        for record in store.scan_log(Position(1), true) {
            let event = record.unwrap().event;
            streams.entry(event.stream).or_default().extend_from_slice(&event.position.0.to_be_bytes());
        }
        for (stream, positions) in streams {
            let mut old_key = vec![keys::STREAM];
            old_key.extend_from_slice(stream.as_str().as_bytes());
            old_key.push(0);
            old_key.extend_from_slice(&0u64.to_be_bytes());
            store.db.insert(old_key, positions).unwrap();
        }
        store.db.insert(keys::META_FORMAT, &[1]).unwrap();
        store.sync().unwrap();
        drop(store);

        let (store, _) = reopen(dir.path());
        assert_eq!(store.check_format(dir.path(), true).unwrap(), STORE_FORMAT);
        check_streams(&store, &revisions, &[StreamName::member(&code("ZZ"))]);
        let runs: Vec<_> = store.db.scan_prefix([keys::STREAM]).collect::<Result<_, _>>().unwrap();
        let run_lengths: Vec<usize> = runs.iter().map(|(k, v)| decode_run(k, v).unwrap().1.len()).collect();
        // AA's revisions 1..=1124 in two runs, AB's and BA's revision 1; the streams of one
        // event have none. Every revision but the 6 streams' first is in a run, once.
        assert_eq!(run_lengths, [REINDEX_RUN_MAX, changes - REINDEX_RUN_MAX, 1, 1]);
        assert_eq!(run_lengths.iter().sum::<usize>() as u64, head.position.0 - 6);
        // The upgrade is done once: the next open finds this build's format.
        drop(store);
        let (store, _) = reopen(dir.path());
        check_streams(&store, &revisions, &[]);
    }

    #[test]
    fn streams_of_records_past_the_head_are_gone_after_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = reopen(dir.path());
        let mut revisions = HashMap::new();
        let head = commit_events(&store, Head::EMPTY, vec![join("FR"), join("DE")], &mut revisions);
        // A group written without its head (as if the process died before the head was part of
        // a durable batch): never acknowledged, removed on open.
        let mut unacknowledged = revisions.clone();
        let (mut batch, _, _) = batch_of(head, vec![join("IT"), role_change("FR", 0), join("ES")], &mut unacknowledged);
        batch.head = None;
        store.commit(batch).unwrap();
        drop(store);
        let (store, recovery) = reopen(dir.path());
        assert_eq!(recovery.removed_tail_records, 3);
        check_streams(&store, &revisions, &["IT", "ES"].map(|raw| StreamName::member(&code(raw))));
    }

    #[test]
    fn a_panic_inside_the_engine_is_damage_not_an_unwind() {
        let error = engine::<(), StoreError>("reading the log", || panic!("tried to serialize Uninitialized"))
            .expect_err("the panic is an error");
        assert!(matches!(&error, StoreError::EnginePanic { during, message }
            if during == "reading the log" && message.contains("Uninitialized")));
        assert_eq!(error.kind(), StoreErrorKind::Damage);
        // An iterator over the engine's data ends with the error at the step that panicked.
        let steps = (0..3).map(|i| if i == 1 { panic!("torn page") } else { Ok::<_, StoreError>(i) });
        let items: Vec<_> = Guarded::new("scanning", steps).collect();
        assert_eq!(items.len(), 2);
        assert!(matches!(items[0], Ok(0)));
        assert!(matches!(&items[1], Err(StoreError::EnginePanic { message, .. }) if message == "torn page"));
    }

    #[test]
    fn engine_errors_are_classified_on_purpose() {
        let corruption = StoreError::Sled(sled::Error::Corruption { at: None, bt: () });
        assert_eq!(corruption.kind(), StoreErrorKind::Damage);
        assert_eq!(StoreError::Sled(sled::Error::ReportableBug("x".into())).kind(), StoreErrorKind::Damage);
        let full = std::io::Error::from_raw_os_error(28);
        assert_eq!(StoreError::Sled(sled::Error::Io(full)).kind(), StoreErrorKind::Io);
        assert_eq!(StoreError::Sled(sled::Error::Unsupported("x".into())).kind(), StoreErrorKind::Engine);
        assert_eq!(StoreError::Locked { dir: "d".into() }.kind(), StoreErrorKind::Unusable);
    }

    #[test]
    fn a_file_given_as_the_data_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-directory");
        std::fs::write(&file, b"x").unwrap();
        let error = Store::open(&file, &StoreConfig::default()).err().expect("refused");
        assert!(error.to_string().contains("is a file, not a directory"), "{error}");
    }
}
