//! The bundle: a self-contained copy of a ledger's log and signed checkpoints, one JSON object
//! per line (docs/AUDIT.md §10 is its specification), and its verifier.
//!
//! 1. a header: `{"format": "pax-ledger bundle v2", "position": N, "head_hash": hex,
//!    "checkpoints": [positions], "format_1_checkpoints": [positions], "exported_at": RFC 3339}`
//!    (`checkpoints` lists the note checkpoints; `format_1_checkpoints` those signed before the
//!    upgrade to notes, over the BLAKE3 tree; a bundle of format v1 has no such field, and every
//!    checkpoint it lists is of format 1);
//! 2. one line per record, in log order: `{"position", "hash" (the chain hash, hex), "body" (the
//!    record body, hex), "event" (the history line of the record, for people)}`;
//! 3. one line per checkpoint, `{"checkpoint": <its JSON form>}`: the format-1 ones in position
//!    order, then the notes in position order.
//!
//! What is verified is `body` and `hash`; `event` must say what the body says, so that a reader
//! of the file is never shown something other than what was signed. The header is not signed:
//! its head and checkpoint list only let a truncated file be told from a whole one.
//!
//! Reading and writing are streams: memory stays constant whatever the size of the log (the
//! verifier keeps a Merkle frontier per tree and the roots at the positions the header lists).

use std::io::{BufRead, Write};

use anyhow::Context;
use chrono::{SecondsFormat, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event_line;
use crate::audit::checkpoint::TreeKind;
use crate::audit::checkpoint::{CheckpointError, SignedCheckpoint};
use crate::audit::merkle::{Blake3Tree, MerkleFrontier, Sha256Tree, TreeHash};
use crate::audit::{ChainBreak, ChainVerifier, Hash, hex, keys};
use crate::domain::RecordedEvent;
use crate::domain::access::AccessReplay;
use crate::service::convert;
use crate::store::record;

/// The `format` of the header of every bundle this build writes.
pub const BUNDLE_FORMAT: &str = "pax-ledger bundle v2";
/// The format of bundles written before checkpoints were notes: still read.
pub const BUNDLE_FORMAT_1: &str = "pax-ledger bundle v1";

/// The first line of a bundle.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    /// The number of records (the position of the last one).
    pub position: u64,
    /// The chain hash of the last record (hex; 64 zeros for an empty log).
    pub head_hash: String,
    /// The positions of the (note) checkpoint lines that follow the records, in order.
    pub checkpoints: Vec<u64>,
    /// The positions of the format-1 checkpoint lines, in order (absent in a bundle of format
    /// v1, whose `checkpoints` are all of format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_1_checkpoints: Option<Vec<u64>>,
    pub exported_at: String,
}

impl Header {
    pub fn new(position: u64, head_hash: &Hash, checkpoints: Vec<u64>, format_1_checkpoints: Vec<u64>) -> Self {
        Self {
            format: BUNDLE_FORMAT.to_owned(),
            position,
            head_hash: hex::encode(head_hash),
            checkpoints,
            format_1_checkpoints: Some(format_1_checkpoints),
            exported_at: Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, true),
        }
    }

    /// The planned positions of each tree: (notes, format 1).
    fn planned(&self) -> (&[u64], &[u64]) {
        match (&self.format_1_checkpoints, self.format.as_str()) {
            (_, BUNDLE_FORMAT_1) => (&[], &self.checkpoints),
            (Some(format_1), _) => (&self.checkpoints, format_1),
            (None, _) => (&self.checkpoints, &[]),
        }
    }
}

/// The roots a bundle's checkpoints of one tree must have: a frontier fed while checkpoints are
/// still planned past it, and the roots at the planned positions it reached.
struct PlannedRoots<T: TreeHash> {
    frontier: MerkleFrontier<T>,
    /// The header's checkpoint positions not reached yet by the records, in order.
    planned: std::collections::VecDeque<u64>,
    /// The Merkle roots at the planned positions the records reached: (position, root).
    roots: std::collections::VecDeque<(u64, Hash)>,
}

impl<T: TreeHash> PlannedRoots<T> {
    fn new(planned: &[u64]) -> Self {
        let mut this = Self {
            frontier: MerkleFrontier::default(),
            planned: planned.iter().copied().collect(),
            roots: Default::default(),
        };
        this.take_planned_root();
        this
    }

    fn append(&mut self, hash: &Hash) {
        if self.planned.is_empty() {
            return;
        }
        self.frontier.append(hash);
        self.take_planned_root();
    }

    /// Keeps the root of the tree as it stands if a checkpoint is planned at its size.
    fn take_planned_root(&mut self) {
        while self.planned.front() == Some(&self.frontier.size()) {
            self.planned.pop_front();
            self.roots.push_back((self.frontier.size(), self.frontier.root()));
        }
    }

    fn first_missing(&self) -> Option<u64> {
        self.roots.front().map(|(p, _)| *p).or(self.planned.front().copied())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordLine {
    position: u64,
    hash: String,
    body: String,
    event: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    checkpoint: Value,
}

/// The history line of a record (DESIGN.md §6): the `event` object of its bundle line.
pub fn event_object(event: &RecordedEvent) -> String {
    event_line::to_json(&convert::recorded_event_pb(event))
}

// ------------------------------------------------------------------------------------------
// Writing

/// Writes a bundle line by line. The caller writes the header, every record in log order, then
/// every checkpoint the header lists, in order.
pub struct BundleWriter<W: Write> {
    out: W,
}

impl<W: Write> BundleWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    pub fn header(&mut self, header: &Header) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, header)?;
        Ok(self.out.write_all(b"\n")?)
    }

    pub fn record(&mut self, event: &RecordedEvent, hash: &Hash, body: &[u8]) -> anyhow::Result<()> {
        // Written by hand so that the event object keeps the key order of a history line.
        writeln!(
            self.out,
            "{{\"position\":{},\"hash\":\"{}\",\"body\":\"{}\",\"event\":{}}}",
            event.position.0,
            hex::encode(hash),
            hex::encode(body),
            event_object(event),
        )?;
        Ok(())
    }

    pub fn checkpoint(&mut self, checkpoint: &SignedCheckpoint) -> anyhow::Result<()> {
        writeln!(self.out, "{{\"checkpoint\":{}}}", serde_json::to_string(checkpoint)?)?;
        Ok(())
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

// ------------------------------------------------------------------------------------------
// Reading and verifying

/// Where a check failed: what a program matches on (the position of a record or checkpoint),
/// and what people read (its `Display`: `header`, `line N`, `position N`, `log head`,
/// `checkpoint at position N`, the `at` of the JSON verdicts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The bundle's first line.
    Header,
    /// A line of the bundle that is not yet a record or checkpoint (not JSON, not UTF-8, …).
    Line(u64),
    /// The record at this position.
    Position(u64),
    /// The end of the records, against the head the header states.
    LogHead,
    /// The checkpoint at this position (a checkpoint file's, or one inside the bundle).
    Checkpoint(u64),
    /// A saved checkpoint whose position could not be read.
    UnreadableCheckpoint,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Header => f.write_str("header"),
            Place::Line(n) => write!(f, "line {n}"),
            Place::Position(n) => write!(f, "position {n}"),
            Place::LogHead => f.write_str("log head"),
            Place::Checkpoint(n) => write!(f, "checkpoint at position {n}"),
            Place::UnreadableCheckpoint => f.write_str("checkpoint at position ?"),
        }
    }
}

/// Where and why a bundle (or a log against a checkpoint) failed verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Where it failed.
    pub at: Place,
    pub reason: String,
    /// The records that passed before it, when records were checked one by one.
    pub verified_up_to: Option<u64>,
}

/// What a bundle that verified holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSummary {
    pub records: u64,
    pub head_hash: Hash,
    pub checkpoints: u64,
    /// The ids of the keys that signed the checkpoints, each once, in order of appearance.
    pub key_ids: Vec<String>,
    pub exported_at: String,
    /// Records whose actor was checked against the access events before them (every record
    /// from the first access event on; none while the ledger was open).
    pub authorship_checked: u64,
    /// Signed events whose signature verified (with a key their principal held then).
    pub signatures_checked: u64,
    /// The note checkpoint of the largest position, with its cosignatures.
    pub latest_note: Option<SignedCheckpoint>,
}

/// What a verified bundle yields, in order: each record once it continues the chain, then each
/// checkpoint once its root and signature hold.
// Each item is moved into the sink once, never stored: boxing the record would only add an
// allocation per record.
#[allow(clippy::large_enum_variant)]
pub enum Verified<'a> {
    Record { event: RecordedEvent, body: Vec<u8>, hash: Hash },
    Checkpoint(&'a SignedCheckpoint),
}

/// The signature of a checkpoint, against `pinned` or else the key the checkpoint carries.
pub fn check_signature(checkpoint: &SignedCheckpoint, pinned: Option<&VerifyingKey>) -> Result<(), String> {
    match checkpoint.verify(pinned.unwrap_or(&checkpoint.public_key)) {
        Ok(()) => Ok(()),
        Err(CheckpointError::KeyMismatch { expected, found }) => {
            Err(format!("signed by key {found}, not by the pinned key {expected}"))
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Reads and verifies a bundle, handing each verified item to `sink` as it goes (an import
/// writes them; a verification ignores them). `Ok(Err(failure))` is a bundle that does not
/// verify: the first failure, nothing after it is read. `Err` is a failure to read the file or
/// of the sink. With `pinned`, every checkpoint must be signed by that key; without it, each is
/// checked against the key it carries.
pub fn verify<R: BufRead>(
    input: R,
    pinned: Option<&VerifyingKey>,
    sink: impl FnMut(Verified<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<Result<BundleSummary, Failure>> {
    BundleVerifier::new(pinned, sink).run(input)
}

struct BundleVerifier<'k, S> {
    pinned: Option<&'k VerifyingKey>,
    sink: S,
    chain: ChainVerifier,
    notes: PlannedRoots<Sha256Tree>,
    format_1: PlannedRoots<Blake3Tree>,
    checkpoints: u64,
    key_ids: Vec<String>,
    /// Set once the first checkpoint line (or the end) closes the records.
    records_closed: bool,
    /// Who could record what, as the access events so far say.
    access: AccessReplay,
    /// Signed events whose signature and key held.
    signatures_checked: u64,
    latest_note: Option<SignedCheckpoint>,
}

type Verdict<T> = Result<T, Failure>;

impl<'k, S: FnMut(Verified<'_>) -> anyhow::Result<()>> BundleVerifier<'k, S> {
    fn new(pinned: Option<&'k VerifyingKey>, sink: S) -> Self {
        Self {
            pinned,
            sink,
            chain: ChainVerifier::default(),
            notes: PlannedRoots::new(&[]),
            format_1: PlannedRoots::new(&[]),
            checkpoints: 0,
            key_ids: Vec::new(),
            records_closed: false,
            access: AccessReplay::default(),
            signatures_checked: 0,
            latest_note: None,
        }
    }

    fn failure(&self, at: Place, reason: impl Into<String>) -> Failure {
        Failure { at, reason: reason.into(), verified_up_to: Some(self.chain.head().0) }
    }

    fn run<R: BufRead>(mut self, mut input: R) -> anyhow::Result<Verdict<BundleSummary>> {
        let mut line = String::new();
        let mut number = 0u64;
        let mut header: Option<(Header, Hash)> = None;
        loop {
            line.clear();
            let read = match input.read_line(&mut line) {
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                    return Ok(Err(self.failure(Place::Line(number + 1), "not UTF-8 text")));
                }
                Err(error) => return Err(error).context(format!("reading line {}", number + 1)),
            };
            if read == 0 {
                break;
            }
            number += 1;
            let text = line.trim_end_matches(['\n', '\r']);
            let verdict = match &header {
                None => self.header(text).map(|parsed| header = Some(parsed)),
                Some((header, head_hash)) => self.line(number, text, header, head_hash)?,
            };
            if let Err(failure) = verdict {
                return Ok(Err(failure));
            }
        }
        let Some((header, head_hash)) = header else {
            return Ok(Err(self.failure(Place::Header, "the file is empty: not a pax-ledger bundle")));
        };
        if let Err(failure) = self.close_records(&header, &head_hash) {
            return Ok(Err(failure));
        }
        if let Some(missing) = self.format_1.first_missing().or(self.notes.first_missing()) {
            return Ok(Err(self.failure(
                Place::Checkpoint(missing),
                "listed in the header but missing from the bundle: the file is truncated",
            )));
        }
        Ok(Ok(BundleSummary {
            records: self.chain.head().0,
            head_hash,
            checkpoints: self.checkpoints,
            key_ids: self.key_ids,
            exported_at: header.exported_at,
            authorship_checked: self.access.checked,
            signatures_checked: self.signatures_checked,
            latest_note: self.latest_note,
        }))
    }

    fn header(&mut self, text: &str) -> Verdict<(Header, Hash)> {
        let not_a_bundle = |reason: String| self.failure(Place::Header, format!("not a pax-ledger bundle: {reason}"));
        let value: Value = serde_json::from_str(text).map_err(|e| not_a_bundle(e.to_string()))?;
        match value.get("format").and_then(Value::as_str) {
            Some(BUNDLE_FORMAT | BUNDLE_FORMAT_1) => {}
            Some(other) => {
                return Err(self.failure(
                    Place::Header,
                    format!("bundle format {other:?} is not the one this build reads ({BUNDLE_FORMAT:?})"),
                ));
            }
            None => return Err(not_a_bundle("the first line has no \"format\"".to_owned())),
        }
        let header: Header = serde_json::from_value(value).map_err(|e| not_a_bundle(e.to_string()))?;
        let head_hash =
            hex::decode::<32>(&header.head_hash).map_err(|e| self.failure(Place::Header, format!("head_hash: {e}")))?;
        let (notes, format_1) = header.planned();
        for (field, positions) in [("checkpoints", notes), ("format_1_checkpoints", format_1)] {
            let mut previous = None;
            for &position in positions {
                // A checkpoint past the head is the verdict of the checkpoint, once the records are read.
                if previous.is_some_and(|p| p >= position) {
                    return Err(self.failure(Place::Header, format!("{field}: {position} is out of order")));
                }
                previous = Some(position);
            }
        }
        self.notes = PlannedRoots::new(notes);
        self.format_1 = PlannedRoots::new(format_1);
        Ok((header, head_hash))
    }

    fn line(&mut self, number: u64, text: &str, header: &Header, head_hash: &Hash) -> anyhow::Result<Verdict<()>> {
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => return Ok(Err(self.failure(Place::Line(number), format!("not a JSON object: {e}")))),
        };
        if value.get("checkpoint").is_some() {
            if let Err(failure) = self.close_records(header, head_hash) {
                return Ok(Err(failure));
            }
            return self.checkpoint(number, value);
        }
        if self.records_closed {
            return Ok(Err(self.failure(Place::Line(number), "a record line after the checkpoint lines")));
        }
        self.record(number, value, header)
    }

    fn record(&mut self, number: u64, value: Value, header: &Header) -> anyhow::Result<Verdict<()>> {
        let expected = self.chain.head().0 + 1;
        let line: RecordLine = match serde_json::from_value(value) {
            Ok(line) => line,
            Err(e) => {
                return Ok(Err(self.failure(Place::Line(number), format!("not a record line: {e}"))));
            }
        };
        let at = Place::Position(line.position);
        if line.position != expected {
            return Ok(Err(self.failure(
                Place::Position(expected),
                format!("found position {} on line {number}: the log has a gap or is out of order", line.position),
            )));
        }
        if line.position > header.position {
            return Ok(Err(self.failure(
                at,
                format!("the header says the log ends at position {}, but records go on", header.position),
            )));
        }
        let hash = match hex::decode::<32>(&line.hash) {
            Ok(hash) => hash,
            Err(e) => return Ok(Err(self.failure(at, format!("hash: {e}")))),
        };
        let body = match hex::decode_vec(&line.body) {
            Ok(body) => body,
            Err(reason) => return Ok(Err(self.failure(at, format!("body: {reason}")))),
        };
        let event = match record::decode_event(&body) {
            Ok(event) => event,
            Err(e) => return Ok(Err(self.failure(at, format!("the record body does not decode: {e}")))),
        };
        if event.position.0 != line.position {
            return Ok(Err(self.failure(at, format!("the record body says position {}", event.position))));
        }
        match self.chain.check(line.position, &hash, &body) {
            Ok(()) => {}
            Err(ChainBreak::Hash) => {
                return Ok(Err(self.failure(
                    at,
                    "the chain hash does not match BLAKE3(previous chain hash ‖ body): the record's bytes \
                     or its hash were changed",
                )));
            }
            Err(other) => return Ok(Err(self.failure(at, other.to_string()))),
        }
        let said: Value = serde_json::from_str(&event_object(&event)).expect("a history line is JSON");
        if said != line.event {
            return Ok(Err(Failure {
                at,
                reason: "the event object does not say what the record body says (the body and hash \
                         verify; the readable copy was changed)"
                    .into(),
                verified_up_to: Some(line.position - 1),
            }));
        }
        let metadata = &event.event.metadata;
        let authorship = record::check_event_signature(&event.event)
            .and_then(|()| self.access.next(&metadata.actor, &event.event.data, metadata.signature.as_ref()));
        self.signatures_checked += u64::from(authorship.is_ok() && metadata.signature.is_some());
        if let Err(reason) = authorship {
            return Ok(Err(Failure {
                at,
                reason: format!("{} {reason}", event.event.data.type_name()),
                verified_up_to: Some(line.position - 1),
            }));
        }
        self.notes.append(&hash);
        self.format_1.append(&hash);
        (self.sink)(Verified::Record { event, body, hash })?;
        Ok(Ok(()))
    }

    /// The records are over (a checkpoint line or the end of the file): they must be all the
    /// header announced, ending on its head hash.
    fn close_records(&mut self, header: &Header, head_hash: &Hash) -> Verdict<()> {
        if self.records_closed {
            return Ok(());
        }
        self.records_closed = true;
        let (position, hash) = self.chain.head();
        if position != header.position {
            return Err(self.failure(
                Place::Position(position + 1),
                format!(
                    "missing: the records end at position {position}, the header says {}: the file is truncated",
                    header.position
                ),
            ));
        }
        if hash != *head_hash {
            return Err(self.failure(
                Place::LogHead,
                format!(
                    "the header's head hash {} is not the chain hash of position {position} ({})",
                    hex::encode(head_hash),
                    hex::encode(&hash)
                ),
            ));
        }
        if let Some(beyond) = self.format_1.planned.front().or(self.notes.planned.front()) {
            return Err(self.failure(
                Place::Checkpoint(*beyond),
                format!(
                    "records were removed: the checkpoint covers {beyond} records, the bundle holds only {position}"
                ),
            ));
        }
        Ok(())
    }

    fn checkpoint(&mut self, number: u64, value: Value) -> anyhow::Result<Verdict<()>> {
        let parsed = serde_json::from_value::<CheckpointLine>(value)
            .map_err(|e| e.to_string())
            .and_then(|line| serde_json::from_value::<SignedCheckpoint>(line.checkpoint).map_err(|e| e.to_string()));
        let checkpoint = match parsed {
            Ok(checkpoint) => checkpoint,
            Err(reason) => {
                return Ok(Err(self.failure(Place::Line(number), format!("not a checkpoint: {reason}"))));
            }
        };
        let position = checkpoint.checkpoint.position;
        let at = Place::Checkpoint(position);
        let roots = match checkpoint.tree() {
            TreeKind::Blake3 => &mut self.format_1.roots,
            TreeKind::Sha256 if !self.format_1.roots.is_empty() => {
                return Ok(Err(self.failure(at, "a note checkpoint before the format-1 ones the header lists")));
            }
            TreeKind::Sha256 => &mut self.notes.roots,
        };
        let Some((_, root)) = roots.pop_front().filter(|(planned, _)| *planned == position) else {
            return Ok(Err(self.failure(at, "not listed in the header at this place")));
        };
        if checkpoint.checkpoint.root != root {
            return Ok(Err(self.failure(
                at,
                format!(
                    "its root {} is not the Merkle root of the bundle's first {position} records ({}): \
                     the history up to position {position} is not the one that was signed",
                    hex::encode(&checkpoint.checkpoint.root),
                    hex::encode(&root)
                ),
            )));
        }
        if let Err(reason) = check_signature(&checkpoint, self.pinned) {
            return Ok(Err(self.failure(at, reason)));
        }
        let key_id = keys::key_id(&checkpoint.public_key);
        if !self.key_ids.contains(&key_id) {
            self.key_ids.push(key_id);
        }
        self.checkpoints += 1;
        (self.sink)(Verified::Checkpoint(&checkpoint))?;
        if checkpoint.tree() == TreeKind::Sha256 {
            self.latest_note = Some(checkpoint);
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::audit::checkpoint::Checkpoint;
    use crate::audit::merkle::{MemoryNodeSource, tree_root};
    use crate::audit::{GENESIS_HASH, chain_hash};
    use crate::domain::{EventData, MemberCode, MemberKind, MemberRole, Position, ProposedEvent, Revision};

    const RECORDS: u64 = 6;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    const ORIGIN: &str = "pax-ledger.example/test";

    /// The lines of a bundle of `RECORDS` member joins with note checkpoints at 0, 3 and 6,
    /// signed by `key(1)`.
    fn bundle_lines() -> Vec<String> {
        bundle_lines_of(false)
    }

    /// The same, written before notes: format-1 checkpoints over the BLAKE3 tree, a header of
    /// bundle format v1.
    fn bundle_lines_of(format_1: bool) -> Vec<String> {
        let mut out = BundleWriter::new(Vec::new());
        let mut hashes = Vec::new();
        let mut records = Vec::new();
        let mut prev = GENESIS_HASH;
        for position in 1..=RECORDS {
            let data = EventData::MemberJoined {
                code: MemberCode::parse("code", &format!("Q{}", (b'A' + position as u8) as char)).unwrap(),
                name: format!("Participant {position}"),
                kind: MemberKind::State,
                role: MemberRole::Member,
            };
            let event = RecordedEvent {
                position: Position(position),
                stream: data.stream(),
                revision: Revision(0),
                recorded_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, position as u32).unwrap(),
                event: ProposedEvent::new(data),
            };
            let body = record::encode_event(&event);
            prev = chain_hash(&prev, &body);
            hashes.push(prev);
            records.push((event, body, prev));
        }
        let source = MemoryNodeSource::new(&hashes);
        let checkpoints: Vec<SignedCheckpoint> = [0, 3, RECORDS]
            .map(|size| {
                if format_1 {
                    let mut frontier = MerkleFrontier::<Blake3Tree>::default();
                    hashes[..size as usize].iter().for_each(|hash| frontier.append(hash));
                    let checkpoint = Checkpoint {
                        position: size,
                        root: frontier.root(),
                        view_digest: None,
                        view_tree: None,
                        time: Utc::now(),
                    };
                    return checkpoint.sign_format_1(&key(1));
                }
                let root = tree_root(size, &source).unwrap();
                Checkpoint { position: size, root, view_digest: None, view_tree: None, time: Utc::now() }
                    .sign(ORIGIN, &key(1))
            })
            .into();
        let positions: Vec<u64> = checkpoints.iter().map(|c| c.checkpoint.position).collect();
        let mut header = Header::new(RECORDS, &prev, positions, Vec::new());
        if format_1 {
            header.format = BUNDLE_FORMAT_1.to_owned();
            header.format_1_checkpoints = None;
        }
        out.header(&header).unwrap();
        for (event, body, hash) in &records {
            out.record(event, hash, body).unwrap();
        }
        for checkpoint in &checkpoints {
            out.checkpoint(checkpoint).unwrap();
        }
        String::from_utf8(out.into_inner()).unwrap().lines().map(str::to_owned).collect()
    }

    fn run(lines: &[String], pinned: Option<&VerifyingKey>) -> Result<BundleSummary, Failure> {
        let text = lines.join("\n") + "\n";
        let mut records = 0;
        let verdict = verify(text.as_bytes(), pinned, |item| {
            if let Verified::Record { .. } = item {
                records += 1;
            }
            Ok(())
        })
        .unwrap();
        if let Err(failure) = &verdict {
            assert_eq!(Some(records), failure.verified_up_to, "only verified records reach the sink");
        }
        verdict
    }

    /// Changes the bundle with `tamper`, and expects verification to fail at `at` with a reason
    /// that contains `reason`.
    fn check(tamper: impl FnOnce(&mut Vec<String>), at: &str, reason: &str) {
        let mut lines = bundle_lines();
        tamper(&mut lines);
        let failure = run(&lines, None).unwrap_err();
        assert_eq!(failure.at.to_string(), at, "{failure:?}");
        assert!(failure.reason.contains(reason), "{failure:?}");
    }

    fn edit(line: &mut String, change: impl FnOnce(&mut Value)) {
        let mut value: Value = serde_json::from_str(line).unwrap();
        change(&mut value);
        *line = value.to_string();
    }

    /// Changes the note of a checkpoint line, keeping only the note and the key in its JSON form
    /// (the fields that spell the note out would no longer agree with it).
    fn edit_note(line: &mut String, change: impl FnOnce(&str) -> String) {
        edit(line, |v| {
            let note = change(v["checkpoint"]["note"].as_str().unwrap());
            let key = v["checkpoint"]["public_key"].clone();
            v["checkpoint"] = serde_json::json!({"note": note, "public_key": key});
        })
    }

    #[test]
    fn a_written_bundle_verifies() {
        let lines = bundle_lines();
        assert_eq!(lines.len() as u64, 1 + RECORDS + 3);
        let summary = run(&lines, Some(&key(1).verifying_key())).unwrap();
        assert_eq!((summary.records, summary.checkpoints), (RECORDS, 3));
        assert_eq!(summary.key_ids, [keys::key_id(&key(1).verifying_key())]);
    }

    #[test]
    fn what_was_changed_is_named() {
        // One byte of the body of position 4 (the name "Participant 4" → "Qarticipant 4").
        check(
            |lines| {
                edit(&mut lines[4], |v| {
                    let body = v["body"].as_str().unwrap().replace("5061727469", "5161727469");
                    v["body"] = body.into();
                })
            },
            "position 4",
            "chain hash",
        );
        check(|lines| edit(&mut lines[2], |v| v["event"]["data"]["name"] = "Someone".into()), "position 2", "event");
        check(|lines| edit(&mut lines[3], |v| v["hash"] = "00".repeat(32).into()), "position 3", "chain hash");
        check(|lines| lines.swap(2, 3), "position 2", "gap or is out of order");
        check(|lines| drop(lines.remove(RECORDS as usize)), "position 6", "truncated");
        check(|lines| lines.truncate(lines.len() - 1), "checkpoint at position 6", "missing");
        check(|lines| edit(&mut lines[0], |v| v["head_hash"] = "11".repeat(32).into()), "log head", "head hash");
        check(|lines| edit(&mut lines[0], |v| v["format"] = "pax-ledger bundle v3".into()), "header", "v3");
        check(|lines| lines[0].clear(), "header", "not a pax-ledger bundle");
        check(
            |lines| {
                let last = lines.len() - 1;
                edit_note(&mut lines[last], |note| {
                    let root = note.lines().nth(2).unwrap();
                    note.replacen(root, &crate::audit::note::base64_encode(&[0x22; 32]), 1)
                })
            },
            "checkpoint at position 6",
            "not the Merkle root",
        );
        check(
            |lines| {
                let last = lines.len() - 1;
                // One bit of the signature (base64 'A' is 0b000000, 'B' 0b000001).
                edit_note(&mut lines[last], |note| {
                    let at = note.rfind(' ').unwrap() + 20;
                    let mut bytes = note.as_bytes().to_vec();
                    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
                    String::from_utf8(bytes).unwrap()
                })
            },
            "checkpoint at position 6",
            "signature",
        );
        // The plain fields beside the note must say what it says.
        check(
            |lines| {
                let last = lines.len() - 1;
                edit(&mut lines[last], |v| v["checkpoint"]["root"] = "22".repeat(32).into())
            },
            &format!("line {}", RECORDS + 4),
            "does not say what the note says",
        );
    }

    #[test]
    fn a_bundle_written_before_notes_still_verifies() {
        let lines = bundle_lines_of(true);
        let summary = run(&lines, Some(&key(1).verifying_key())).unwrap();
        assert_eq!((summary.records, summary.checkpoints), (RECORDS, 3));
        let mut tampered = lines.clone();
        let last = tampered.len() - 1;
        edit(&mut tampered[last], |v| v["checkpoint"]["root"] = "22".repeat(32).into());
        let failure = run(&tampered, None).unwrap_err();
        assert_eq!(failure.at, Place::Checkpoint(6));
        assert!(failure.reason.contains("not the Merkle root"), "{failure:?}");
        // Format-1 checkpoints listed as notes: their roots are of another tree.
        let mut relabelled = lines;
        edit(&mut relabelled[0], |v| v["format"] = BUNDLE_FORMAT.into());
        assert!(run(&relabelled, None).is_err());
    }

    #[test]
    fn a_bundle_cut_below_a_checkpoint_says_records_were_removed() {
        check(
            |lines| {
                let kept = lines[RECORDS as usize - 1].clone();
                let hash: Value = serde_json::from_str::<Value>(&kept).unwrap()["hash"].clone();
                lines.remove(RECORDS as usize);
                edit(&mut lines[0], |v| {
                    v["position"] = (RECORDS - 1).into();
                    v["head_hash"] = hash;
                });
            },
            "checkpoint at position 6",
            "records were removed",
        );
    }

    #[test]
    fn a_pinned_key_must_have_signed_every_checkpoint() {
        let failure = run(&bundle_lines(), Some(&key(2).verifying_key())).unwrap_err();
        assert_eq!(failure.at, Place::Checkpoint(0));
        assert!(failure.reason.contains("not by the pinned key"), "{failure:?}");
        assert_eq!(failure.verified_up_to, Some(RECORDS));
    }

    #[test]
    fn hex_bodies_decode_in_either_case_and_nothing_else() {
        assert_eq!(hex::decode_vec("00ffA5"), Ok(vec![0x00, 0xff, 0xa5]));
        assert_eq!(hex::decode_vec(""), Ok(vec![]));
        assert!(hex::decode_vec("abc").unwrap_err().contains("odd"));
        assert!(hex::decode_vec("00+1").unwrap_err().contains("offset 2"));
        assert!(hex::decode_vec("0é").is_err());
    }
}
