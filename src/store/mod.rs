//! The store: the only module that imports sled. One tree, several key spaces (see [`keys`]),
//! one durable atomic write per commit group (a sled `Batch`, then `flush`, then a real
//! `fdatasync` of the database file), reads, and recovery on open.

pub mod keys;
pub mod record;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::{EventId, Position, RecordedEvent, Revision, StreamName};

/// The store format this build writes and reads. A database written by a newer format is
/// refused, never misread; an older one would be upgraded on open (there is none yet).
pub const STORE_FORMAT: u8 = 1;
/// The record (log value) format: `[RECORD_FORMAT][chain hash: 32 bytes][body]`, the body
/// being [`record::encode_event`]'s canonical bytes.
pub const RECORD_FORMAT: u8 = 1;
/// sled's segment size. sled writes any log message larger than a quarter of a segment to a
/// separate blob file that it never fsyncs, so this, with [`RECORD_BODY_BYTES_MAX`], keeps every
/// acknowledged byte in the one database file that the durable write syncs. sled refuses to open
/// a database with another segment size: this value is part of the store format.
pub const SEGMENT_BYTES: usize = 2 * 1024 * 1024;
/// Largest record body. A leaf page holds at most 17 entries, so 16 KiB records make pages of
/// at most ≈280 KiB, well below the blob threshold of a quarter segment (512 KiB).
pub const RECORD_BODY_BYTES_MAX: usize = 16 * 1024;
/// How many records at the tail of the log are read back and decoded on open.
pub const RECOVERY_TAIL_CHECK_MAX: u64 = 1024;

/// A 32-byte digest (the chain hash, computed by `audit`).
pub type Hash = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the database in {dir} has store format {found}, newer than this build reads ({supported}); use a newer pax-ledger"
    )]
    NewerFormat { dir: PathBuf, found: u8, supported: u8 },
    #[error("stored data failed its check at {place}: {reason}")]
    Corrupt { place: String, reason: String },
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
        }
    }

    fn corrupt(place: impl Into<String>, reason: impl Into<String>) -> Self {
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
}

/// A committed record: the event, its chain hash and the canonical bytes that were hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub hash: Hash,
    pub body: Vec<u8>,
    pub event: RecordedEvent,
}

/// The writes of one commit group, applied atomically by [`Store::commit`].
#[derive(Default)]
pub struct CommitBatch {
    batch: sled::Batch,
    records: usize,
}

impl CommitBatch {
    /// Adds one record (log entry, stream-index entry, event-id entry). `body` must be
    /// [`record::encode_event`] of `event`, and `hash` its chain hash.
    pub fn put_record(&mut self, event: &RecordedEvent, body: &[u8], hash: &Hash) {
        let position = keys::encode_position(event.position);
        self.batch.insert(&keys::log(event.position), frame_record(hash, body));
        self.batch.insert(keys::stream(&event.stream, event.revision), &position);
        self.batch.insert(&keys::event_id(&event.event.event_id), &position);
        self.records += 1;
    }

    /// Sets the log's head; every commit group ends with it.
    pub fn set_head(&mut self, head: &Head) {
        let mut value = Vec::with_capacity(40);
        value.extend_from_slice(&head.position.0.to_be_bytes());
        value.extend_from_slice(&head.hash);
        self.batch.insert(keys::META_HEAD, value);
    }

    pub fn records(&self) -> usize {
        self.records
    }
}

fn frame_record(hash: &Hash, body: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(1 + 32 + body.len());
    value.push(RECORD_FORMAT);
    value.extend_from_slice(hash);
    value.extend_from_slice(body);
    value
}

fn unframe_record(position: Position, value: &[u8]) -> Result<StoredRecord, StoreError> {
    let place = || format!("position {position}");
    let (&format, rest) = value.split_first().ok_or_else(|| StoreError::corrupt(place(), "empty record"))?;
    if format != RECORD_FORMAT {
        return Err(StoreError::corrupt(place(), format!("unknown record format {format}")));
    }
    if rest.len() < 32 {
        return Err(StoreError::corrupt(place(), "record shorter than its hash"));
    }
    let (hash, body) = rest.split_at(32);
    let event = record::decode_event(body).map_err(|e| StoreError::corrupt(place(), e.to_string()))?;
    if event.position != position {
        return Err(StoreError::corrupt(place(), format!("record claims position {}", event.position)));
    }
    Ok(StoredRecord { hash: hash.try_into().expect("split at 32"), body: body.to_vec(), event })
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

/// How long opening waits for another holder of the database's file lock to let go. sled's
/// background flusher keeps a closed database's lock for a moment after the last handle is
/// dropped, so an in-process restart (or a supervisor's quick one) would otherwise fail.
pub const OPEN_LOCK_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

fn open_sled(dir: &Path, config: &StoreConfig) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
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
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

/// The embedded database.
pub struct Store {
    db: sled::Db,
    /// A second handle on sled's database file, for the `fdatasync` that sled's `flush` lacks.
    db_file: File,
    syncs: AtomicU64,
}

impl Store {
    /// Opens (or creates) the store in `dir`, checks its format and recovers its tail.
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<(Self, Recovery), StoreError> {
        std::fs::create_dir_all(dir)?;
        let db = open_sled(dir, config)?;
        let db_file = File::open(dir.join("db"))?;
        // The database file's directory entry must itself be durable once.
        File::open(dir)?.sync_all()?;
        let store = Self { db, db_file, syncs: AtomicU64::new(0) };
        store.check_format(dir)?;
        let recovery = store.recover()?;
        // What a killed process wrote but never synced may sit in the page cache; make it durable
        // (data and metadata) before anything is served, since a retry may be answered from it.
        store.db.flush()?;
        store.db_file.sync_all()?;
        Ok((store, recovery))
    }

    fn check_format(&self, dir: &Path) -> Result<(), StoreError> {
        match self.db.get(keys::META_FORMAT)? {
            Some(v) if v.len() == 1 && v[0] == STORE_FORMAT => Ok(()),
            Some(v) if v.len() == 1 && v[0] > STORE_FORMAT => {
                Err(StoreError::NewerFormat { dir: dir.to_owned(), found: v[0], supported: STORE_FORMAT })
            }
            Some(v) => Err(StoreError::corrupt("store format", format!("unreadable format marker {:?}", &*v))),
            None if self.db.is_empty() => {
                self.db.insert(keys::META_FORMAT, &[STORE_FORMAT])?;
                self.sync()?;
                Ok(())
            }
            None => Err(StoreError::corrupt("store format", "a non-empty database without a format marker")),
        }
    }

    /// Makes the tail consistent with the committed head: records past it (never acknowledged,
    /// since the head is written in the same atomic batch) are removed; the last records are
    /// read back and decoded, so that a torn tail is found before it is served. (Their chain
    /// hashes are re-checked by the ledger, which owns the hash function through `audit`.)
    fn recover(&self) -> Result<Recovery, StoreError> {
        let head = self.head()?;
        let mut recovery = Recovery::default();
        let beyond: Vec<_> = self
            .db
            .range(keys::log(Position(head.position.0 + 1))..keys::log(Position(u64::MAX)))
            .collect::<Result<_, _>>()?;
        if !beyond.is_empty() {
            let mut batch = sled::Batch::default();
            for (key, value) in &beyond {
                batch.remove(key);
                let position = keys::log_position(key).ok_or_else(|| StoreError::corrupt("log", "malformed key"))?;
                // Index entries of a half-written record are removed too, if it decodes at all.
                if let Ok(record) = unframe_record(position, value) {
                    batch.remove(keys::stream(&record.event.stream, record.event.revision));
                    batch.remove(&keys::event_id(&record.event.event.event_id));
                }
            }
            self.db.apply_batch(batch)?;
            self.sync()?;
            recovery.removed_tail_records = beyond.len() as u64;
            tracing::warn!(
                removed = beyond.len(),
                head = head.position.0,
                "removed unacknowledged records past the log head"
            );
        }
        if head.position.0 == 0 {
            return Ok(recovery);
        }
        let first = head.position.0.saturating_sub(RECOVERY_TAIL_CHECK_MAX - 1).max(1);
        for p in first..=head.position.0 {
            self.read_record(Position(p))?
                .ok_or_else(|| StoreError::corrupt(format!("position {p}"), "record missing below the log head"))?;
            recovery.verified_tail_records += 1;
        }
        Ok(recovery)
    }

    /// The log's last committed position and hash.
    pub fn head(&self) -> Result<Head, StoreError> {
        match self.db.get(keys::META_HEAD)? {
            Some(v) => decode_head(&v),
            None => Ok(Head::EMPTY),
        }
    }

    /// Applies `batch` atomically and returns only once it is durable: sled's `flush` writes
    /// the log out, then `fdatasync` on the database file makes it survive power loss.
    pub fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        self.db.apply_batch(batch.batch)?;
        self.sync()
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.db_file.sync_data()?;
        self.syncs.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// How many durable syncs (`flush` + `fdatasync`) completed since open: the seam through
    /// which tests prove that acknowledgements wait for one.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Acquire)
    }

    /// The position of a committed event, by its id.
    pub fn event_position(&self, id: &EventId) -> Result<Option<Position>, StoreError> {
        self.db
            .get(keys::event_id(id))?
            .map(|v| {
                keys::decode_position(&v)
                    .ok_or_else(|| StoreError::corrupt(format!("event id {id}"), "malformed index entry"))
            })
            .transpose()
    }

    /// A stream's current revision (of its last event), or `None` if it has no event.
    pub fn stream_revision(&self, stream: &StreamName) -> Result<Option<Revision>, StoreError> {
        match self.db.scan_prefix(keys::stream_prefix(stream)).next_back().transpose()? {
            Some((key, _)) => Ok(keys::stream_revision(&key)),
            None => Ok(None),
        }
    }

    /// One record by position.
    pub fn read_record(&self, position: Position) -> Result<Option<StoredRecord>, StoreError> {
        self.db.get(keys::log(position))?.map(|v| unframe_record(position, &v)).transpose()
    }

    /// Up to `limit` records of a stream from revision `from` (inclusive) in the given direction.
    pub fn read_stream(
        &self,
        stream: &StreamName,
        from: Revision,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let range = if forward {
            keys::stream(stream, from)..keys::stream(stream, Revision(u64::MAX))
        } else {
            keys::stream(stream, Revision(0))..keys::stream(stream, Revision(from.0.saturating_add(1)))
        };
        let iter = self.db.range(range);
        let entries: Box<dyn Iterator<Item = _>> = if forward { Box::new(iter) } else { Box::new(iter.rev()) };
        let mut out = Vec::new();
        for entry in entries.take(limit) {
            let (key, value) = entry?;
            let position = keys::decode_position(&value)
                .ok_or_else(|| StoreError::corrupt(format!("stream {stream}"), "malformed index entry"))?;
            let record = self
                .read_record(position)?
                .ok_or_else(|| StoreError::corrupt(format!("position {position}"), "indexed record is missing"))?;
            if record.event.stream != *stream || Some(record.event.revision) != keys::stream_revision(&key) {
                return Err(StoreError::corrupt(
                    format!("position {position}"),
                    "stream index disagrees with the record",
                ));
            }
            out.push(record);
        }
        Ok(out)
    }

    /// Records in log order from `from` (inclusive), forwards or backwards, lazily.
    pub fn scan_log(
        &self,
        from: Position,
        forward: bool,
    ) -> impl Iterator<Item = Result<StoredRecord, StoreError>> + '_ {
        let iter = if forward {
            self.db.range(keys::log(from)..=keys::log(Position(u64::MAX)))
        } else {
            self.db.range(keys::log(Position(0))..=keys::log(from))
        };
        let iter: Box<dyn Iterator<Item = _>> = if forward { Box::new(iter) } else { Box::new(iter.rev()) };
        iter.map(|entry| {
            let (key, value) = entry?;
            let position = keys::log_position(&key).ok_or_else(|| StoreError::corrupt("log", "malformed key"))?;
            unframe_record(position, &value)
        })
    }
}
