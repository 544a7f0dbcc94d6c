//! Online backups: a directory of segments, each the records of one backup run and the signed
//! checkpoints among them, taken from a running server (`pax-ledger backup`, over
//! `AuditService.ExportLog`) while appends go on, and restored into a new data directory.
//!
//! ```text
//! DIR/backup.json                                             the manifest: the segments, in order
//! DIR/00000000000000000001-00000000000000003002.segment       the first (full) backup
//! DIR/00000000000000003003-00000000000000004100.segment       an incremental one: only what is new
//! ```
//!
//! A segment is JSON Lines: a header (`{"format": "pax-ledger backup segment v1",
//! "after_position", "after_hash", "position", "head_hash", "taken_at"}`), then the records
//! after `after_position` up to `position` in the bundle's record lines, then the stored
//! checkpoints of that range in the bundle's checkpoint lines (docs/AUDIT.md §10). Each
//! segment starts where the one before ended, on the same chain hash.
//!
//! Read in order, the segments are one bundle: [`Backup::reader`] streams the bundle they make
//! (a header for the whole, every segment's records, then every segment's checkpoints), so
//! verifying a backup is verifying that bundle (the chain from the first record, every
//! checkpoint's Merkle root and signature, authorship, event signatures), and restoring it is
//! importing that bundle. A run writes its segment to a hidden file, syncs it, verifies the
//! whole backup with it, and only then publishes it and the new manifest (each written whole,
//! then renamed): a failed or interrupted run leaves the backup as it was.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{SecondsFormat, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::BUNDLE_BUFFER_BYTES;
use super::bundle::{self, BundleSummary, BundleWriter, Failure, Header};
use super::files::{Staged, create_staged_file, publish_file, write_whole};
use crate::audit::checkpoint::{SignedCheckpoint, TreeKind};
use crate::audit::{GENESIS_HASH, Hash, hex};
use crate::store::record;

/// The manifest's name in a backup directory.
pub const MANIFEST_FILE: &str = "backup.json";
/// The `format` of the manifest this build writes.
pub const MANIFEST_FORMAT: &str = "pax-ledger backup v1";
/// The `format` of a segment's header.
pub const SEGMENT_FORMAT: &str = "pax-ledger backup segment v1";
/// The lock file that keeps two runs off one backup directory.
const LOCK_FILE: &str = ".lock";

/// The manifest: what the backup holds, segment by segment.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub segments: Vec<Segment>,
}

/// One segment, as the manifest lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Its file name in the backup directory.
    pub file: String,
    /// The records it holds follow this position and its chain hash (hex).
    pub after_position: u64,
    pub after_hash: String,
    /// Its last record, and that record's chain hash (hex).
    pub position: u64,
    pub head_hash: String,
    /// The positions of its checkpoints: notes, and format 1 (signed before notes).
    pub checkpoints: Vec<u64>,
    pub format_1_checkpoints: Vec<u64>,
    /// Where its checkpoint lines start, and its size, in bytes.
    pub checkpoints_offset: u64,
    pub bytes: u64,
    pub taken_at: String,
}

/// The first line of a segment.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentHeader {
    format: String,
    after_position: u64,
    after_hash: String,
    position: u64,
    head_hash: String,
    taken_at: String,
}

impl Segment {
    fn header(&self) -> SegmentHeader {
        SegmentHeader {
            format: SEGMENT_FORMAT.to_owned(),
            after_position: self.after_position,
            after_hash: self.after_hash.clone(),
            position: self.position,
            head_hash: self.head_hash.clone(),
            taken_at: self.taken_at.clone(),
        }
    }

    /// How many records it holds.
    pub fn records(&self) -> u64 {
        self.position - self.after_position
    }
}

/// A backup directory, locked for one run.
pub struct Backup {
    dir: PathBuf,
    manifest: Manifest,
    _lock: File,
}

/// What a run added, once the whole backup verified with it.
#[derive(Debug)]
pub struct Added {
    /// The new segment.
    pub segment: Segment,
    /// The verification of the whole backup, the new segment included.
    pub summary: BundleSummary,
}

impl Backup {
    /// Opens the backup in `dir` and locks it against another run (refused at once if one
    /// holds it). `create`: make the directory and an empty backup if there is none (a first
    /// run); else a directory without a backup is an error (restore, verify).
    pub fn open(dir: &Path, create: bool) -> anyhow::Result<Self> {
        if create {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        } else if !dir.join(MANIFEST_FILE).is_file() {
            bail!("no backup in {} (no {MANIFEST_FILE})", dir.display());
        }
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .with_context(|| format!("opening {}", dir.join(LOCK_FILE).display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                bail!("another backup or restore is using {} right now", dir.display())
            }
            Err(fs::TryLockError::Error(e)) => return Err(e).context("locking the backup directory"),
        }
        let manifest = match fs::read(dir.join(MANIFEST_FILE)) {
            Ok(bytes) => {
                let manifest: Manifest = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a backup manifest", dir.join(MANIFEST_FILE).display()))?;
                if manifest.format != MANIFEST_FORMAT {
                    bail!(
                        "{}: format {:?}, not {MANIFEST_FORMAT:?}",
                        dir.join(MANIFEST_FILE).display(),
                        manifest.format
                    );
                }
                manifest
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if fs::read_dir(dir)?.filter_map(Result::ok).any(|entry| entry.file_name() != LOCK_FILE) {
                    bail!("{} holds files but no {MANIFEST_FILE}: it is not a backup directory", dir.display());
                }
                Manifest { format: MANIFEST_FORMAT.to_owned(), segments: Vec::new() }
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.join(MANIFEST_FILE).display())),
        };
        Ok(Self { dir: dir.to_owned(), manifest, _lock: lock })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where the next run starts: the last position the backup holds and its chain hash.
    pub fn head(&self) -> anyhow::Result<(u64, Hash)> {
        match self.manifest.segments.last() {
            Some(last) => Ok((last.position, hash_of(&last.head_hash, "the manifest's head_hash")?)),
            None => Ok((0, GENESIS_HASH)),
        }
    }

    /// Starts the segment of a run whose export ends at `position` with `head_hash`.
    pub fn begin(&self, position: u64, head_hash: &Hash) -> anyhow::Result<SegmentWriter> {
        let (after_position, after_hash) = self.head()?;
        if position <= after_position {
            bail!("the export ends at position {position}, not after the backup's {after_position}");
        }
        let file = format!("{:020}-{:020}.segment", after_position + 1, position);
        let path = self.dir.join(&file);
        // A segment of this name outside the manifest was left by a run interrupted between
        // publishing it and its manifest: it is replaced.
        let (out, staged) = create_staged_file(&path, true)?;
        let segment = Segment {
            file,
            after_position,
            after_hash: hex::encode(&after_hash),
            position,
            head_hash: hex::encode(head_hash),
            checkpoints: Vec::new(),
            format_1_checkpoints: Vec::new(),
            checkpoints_offset: 0,
            bytes: 0,
            taken_at: Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, true),
        };
        let mut writer = BundleWriter::new(Counting::new(BufWriter::with_capacity(BUNDLE_BUFFER_BYTES, out)));
        serde_json::to_writer(writer.get_mut(), &segment.header())?;
        writer.get_mut().write_all(b"\n")?;
        Ok(SegmentWriter { writer, staged, path, segment, next: after_position + 1, checkpoints: Vec::new() })
    }

    /// Finishes a run: syncs its segment, verifies the whole backup with it (every checkpoint
    /// signed by `pinned` when given), and only if that holds publishes the segment and the
    /// new manifest. A failure leaves the backup as it was.
    pub fn commit(
        &mut self,
        segment: SegmentWriter,
        pinned: Option<&VerifyingKey>,
    ) -> anyhow::Result<Result<Added, Failure>> {
        let (staged, path, segment) = segment.finish()?;
        let mut segments = self.manifest.segments.clone();
        segments.push(segment.clone());
        let reader = segments_reader(&self.dir, &segments, Some(&staged.path))?;
        let summary = match bundle::verify(reader, pinned, |_| Ok(()))? {
            Ok(summary) => summary,
            Err(failure) => return Ok(Err(failure)),
        };
        publish_file(staged, &path, true)?;
        let manifest = Manifest { format: MANIFEST_FORMAT.to_owned(), segments };
        write_whole(&self.dir.join(MANIFEST_FILE), &serde_json::to_vec_pretty(&manifest)?)?;
        self.manifest = manifest;
        Ok(Ok(Added { segment, summary }))
    }

    /// The bundle the backup's segments make, read in order.
    pub fn reader(&self) -> anyhow::Result<impl BufRead + use<>> {
        segments_reader(&self.dir, &self.manifest.segments, None)
    }
}

/// Writes one run's segment: records in position order, then checkpoints.
pub struct SegmentWriter {
    writer: BundleWriter<Counting<BufWriter<File>>>,
    staged: Staged,
    path: PathBuf,
    segment: Segment,
    /// The position the next record must have.
    next: u64,
    checkpoints: Vec<SignedCheckpoint>,
}

impl SegmentWriter {
    /// Adds the next record, as the server sent it.
    pub fn record(&mut self, position: u64, hash: &Hash, body: &[u8]) -> anyhow::Result<()> {
        if !self.checkpoints.is_empty() {
            bail!("the server sent record {position} after the checkpoints");
        }
        if position != self.next || position > self.segment.position {
            bail!("the server sent record {position} where record {} was due", self.next);
        }
        let event = record::decode_event(body).with_context(|| format!("the server's record {position}"))?;
        if event.position.0 != position {
            bail!("the server's record {position} says position {}", event.position);
        }
        self.writer.record(&event, hash, body)?;
        self.next += 1;
        Ok(())
    }

    /// Adds a checkpoint of the segment's range, as the server sent it.
    pub fn checkpoint(&mut self, checkpoint: SignedCheckpoint) -> anyhow::Result<()> {
        let position = checkpoint.checkpoint.position;
        if position <= self.segment.after_position || position > self.segment.position {
            bail!(
                "the server sent a checkpoint at position {position}, outside the export's range {}..={}",
                self.segment.after_position + 1,
                self.segment.position
            );
        }
        self.checkpoints.push(checkpoint);
        Ok(())
    }

    /// The records written so far.
    pub fn records(&self) -> u64 {
        self.next - 1 - self.segment.after_position
    }

    fn finish(mut self) -> anyhow::Result<(Staged, PathBuf, Segment)> {
        if self.next != self.segment.position + 1 {
            bail!("the export ended after record {} of the {} it announced", self.next - 1, self.segment.position);
        }
        self.segment.checkpoints_offset = self.writer.get_mut().written;
        for checkpoint in &self.checkpoints {
            let positions = match checkpoint.tree() {
                TreeKind::Sha256 => &mut self.segment.checkpoints,
                TreeKind::Blake3 => &mut self.segment.format_1_checkpoints,
            };
            positions.push(checkpoint.checkpoint.position);
            self.writer.checkpoint(checkpoint)?;
        }
        let counting = self.writer.into_inner();
        self.segment.bytes = counting.written;
        let file = counting.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((self.staged, self.path, self.segment))
    }
}

/// A writer that counts the bytes written through it.
struct Counting<W> {
    out: W,
    written: u64,
}

impl<W> Counting<W> {
    fn new(out: W) -> Self {
        Self { out, written: 0 }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn hash_of(text: &str, what: &str) -> anyhow::Result<Hash> {
    hex::decode_vec(text)
        .ok()
        .and_then(|bytes| <Hash>::try_from(bytes.as_slice()).ok())
        .with_context(|| format!("{what} is not 64 hexadecimal digits"))
}

/// The bundle that `segments` make, in order (the last one read from `last_at` when given: a
/// run's segment before it is published). Each segment's header must be the one the manifest
/// lists, and each must start where the one before ended.
fn segments_reader(
    dir: &Path,
    segments: &[Segment],
    last_at: Option<&Path>,
) -> anyhow::Result<BufReader<Box<dyn Read + Send>>> {
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        bail!("the backup in {} holds no segment yet", dir.display());
    };
    if first.after_position != 0 {
        bail!("the backup's first segment starts after position {}, not at the first record", first.after_position);
    }
    let mut records: Vec<Box<dyn Read + Send>> = Vec::new();
    let mut checkpoints: Vec<Box<dyn Read + Send>> = Vec::new();
    let mut previous: Option<&Segment> = None;
    for (index, segment) in segments.iter().enumerate() {
        if let Some(previous) = previous
            && (segment.after_position != previous.position || segment.after_hash != previous.head_hash)
        {
            bail!(
                "segment {} starts after position {} ({}), where segment {} ended at {} ({})",
                segment.file,
                segment.after_position,
                segment.after_hash,
                previous.file,
                previous.position,
                previous.head_hash
            );
        }
        previous = Some(segment);
        let path = match last_at {
            Some(path) if index + 1 == segments.len() => path.to_owned(),
            _ => dir.join(&segment.file),
        };
        let open = || File::open(&path).with_context(|| format!("opening {}", path.display()));
        let mut file = BufReader::new(open()?);
        let mut line = String::new();
        file.read_line(&mut line).with_context(|| format!("reading {}", path.display()))?;
        let header: SegmentHeader = serde_json::from_str(&line)
            .with_context(|| format!("{}: the first line is not a segment header", segment.file))?;
        let expected = segment.header();
        if header.format != SEGMENT_FORMAT
            || (header.after_position, &header.after_hash, header.position, &header.head_hash)
                != (expected.after_position, &expected.after_hash, expected.position, &expected.head_hash)
        {
            bail!("{}: its header is not the one the manifest lists for it", segment.file);
        }
        let size = fs::metadata(&path)?.len();
        if size != segment.bytes {
            bail!("{}: {size} bytes, where the manifest says {}", segment.file, segment.bytes);
        }
        let header_bytes = line.len() as u64;
        let Some(records_bytes) = segment.checkpoints_offset.checked_sub(header_bytes) else {
            bail!("{}: its checkpoints cannot start inside its header", segment.file);
        };
        records.push(Box::new(file.take(records_bytes)));
        let mut tail = open()?;
        tail.seek(SeekFrom::Start(segment.checkpoints_offset))?;
        checkpoints.push(Box::new(tail));
    }
    let header = Header {
        format: bundle::BUNDLE_FORMAT.to_owned(),
        position: last.position,
        head_hash: last.head_hash.clone(),
        checkpoints: segments.iter().flat_map(|s| s.checkpoints.iter().copied()).collect(),
        format_1_checkpoints: Some(segments.iter().flat_map(|s| s.format_1_checkpoints.iter().copied()).collect()),
        exported_at: last.taken_at.clone(),
    };
    let mut header_line = serde_json::to_vec(&header)?;
    header_line.push(b'\n');
    let mut whole: Box<dyn Read + Send> = Box::new(io::Cursor::new(header_line));
    for part in records.into_iter().chain(checkpoints) {
        whole = Box::new(whole.chain(part));
    }
    Ok(BufReader::with_capacity(BUNDLE_BUFFER_BYTES, whole))
}
