//! Proofs of a view: one entity's state at a checkpoint, checkable with the checkpoint alone.
//!
//! A note checkpoint states the **view tree** of its position beside the view digest
//! ([`ViewTree`]): an RFC 6962 SHA-256 tree whose leaves' entries are the SHA-256 of each view
//! record's canonical bytes, in the byte order of the records' streams (the order the store
//! keeps them). A proof of stream S at a checkpoint of size N is S's view record, its audit
//! path in that tree, and every event of S up to N with its inclusion proof in the log's tree
//! of size N. [`verify`] checks all of it: the checkpoint's signature, the record's place under
//! the view-tree root, each event's chain hash and place under the log root, that the events
//! are all of S's up to the record (revisions 0 to its revision, ending at its last position),
//! and that folding them gives the record byte for byte. The proof is O(log n) hashes plus the
//! stream's own events, whatever the size of the log or of the views.

use sha2::{Digest, Sha256};

use super::{Inclusion, Ledger, LedgerError, ViewsAt};
use crate::audit::checkpoint::{SignedCheckpoint, ViewTree};
use crate::audit::merkle::{self, MemoryNodeSource, MerkleFrontier};
use crate::audit::{Hash, chain_hash};
use crate::domain::{Position, RecordedEvent, StreamName};
use crate::projection::ViewRecord;
use crate::projection::codec::{decode_record, encode_record};
use crate::store::record;

/// The entry of a view record in the view tree: the SHA-256 of its canonical bytes.
pub fn view_entry(record_bytes: &[u8]) -> Hash {
    Sha256::digest(record_bytes).into()
}

/// One entity's state at a checkpoint, and what proves it (module documentation).
#[derive(Clone, Debug)]
pub struct ViewProof {
    pub checkpoint: SignedCheckpoint,
    pub stream: StreamName,
    /// The view record's canonical bytes.
    pub view_record: Vec<u8>,
    pub leaf_index: u64,
    pub path: Vec<Hash>,
    /// Every event of the stream up to the checkpoint, in order, proved in the log's tree of the
    /// checkpoint's size.
    pub events: Vec<Inclusion>,
}

impl Ledger {
    /// The view tree of the views at `at`: one pass over the view records, in stream order.
    pub(super) fn view_tree(&self, at: &ViewsAt) -> Result<ViewTree, LedgerError> {
        let mut frontier = MerkleFrontier::new();
        self.for_each_view(at, |record| frontier.append(&view_entry(&encode_record(record))))?;
        Ok(ViewTree { records: frontier.size(), root: frontier.root() })
    }

    /// The proof of `stream`'s view at the checkpoint of `tree_size` (default: the latest).
    /// The checkpoint must state a view tree, which the views rebuilt at its position must give
    /// again (otherwise the stored views or the checkpoint are damaged: DATA_LOSS).
    pub fn view_proof(&self, stream: &StreamName, tree_size: Option<u64>) -> Result<ViewProof, LedgerError> {
        let checkpoint = match tree_size {
            Some(size) => self.checkpoint_at(Position(size))?,
            None => self.latest_checkpoint()?,
        };
        let position = Position(checkpoint.checkpoint.position);
        let Some(stated) = checkpoint.checkpoint.view_tree else {
            return Err(LedgerError::Precondition(format!(
                "the checkpoint at size {position} states no view tree (format 1, signed before view trees, or \
                 signed while the views were behind); ask for a newer one"
            )));
        };
        let at = self.views_at_blocking(position)?;
        let mut entries = Vec::with_capacity(usize::try_from(stated.records).unwrap_or(0));
        let mut found = None;
        self.for_each_view(&at, |record| {
            let bytes = encode_record(record);
            if record.stream == *stream {
                found = Some((entries.len() as u64, bytes.clone()));
            }
            entries.push(view_entry(&bytes));
        })?;
        let source = MemoryNodeSource::new(&entries);
        let root = merkle::tree_root(entries.len() as u64, &source).expect("an in-memory tree");
        if (entries.len() as u64, root) != (stated.records, stated.root) {
            return Err(crate::store::StoreError::corrupt(
                format!("views at position {position}"),
                format!(
                    "their tree ({} records) is not the one the checkpoint states ({} records)",
                    entries.len(),
                    stated.records
                ),
            )
            .into());
        }
        let Some((leaf_index, view_record)) = found else {
            return Err(LedgerError::NotFound(format!("stream {stream} has no view at position {position}")));
        };
        let path = merkle::inclusion_proof(leaf_index, entries.len() as u64, &source).expect("an index in the tree");
        let events = self
            .stream_events(stream, position)?
            .iter()
            .map(|event| self.inclusion_proof(Ok(event.position), Some(position.0)))
            .collect::<Result<_, _>>()?;
        Ok(ViewProof { checkpoint, stream: stream.clone(), view_record, leaf_index, path, events })
    }
}

/// What a verified view proof says: the entity's view record at the checkpoint.
#[derive(Clone, Debug)]
pub struct ProvenView {
    pub position: u64,
    pub record: ViewRecord,
}

/// Checks a view proof (module documentation) against the checkpoint's own key, or `trusted`
/// when the auditor pins one. The error says which check failed.
pub fn verify(proof: &ViewProof, trusted: Option<&ed25519_dalek::VerifyingKey>) -> Result<ProvenView, String> {
    let signed = &proof.checkpoint;
    signed.verify(trusted.unwrap_or(&signed.public_key)).map_err(|e| format!("checkpoint: {e}"))?;
    let checkpoint = &signed.checkpoint;
    let tree = checkpoint.view_tree.ok_or("the checkpoint states no view tree")?;
    merkle::verify_inclusion(&view_entry(&proof.view_record), proof.leaf_index, tree.records, &proof.path, &tree.root)
        .map_err(|e| format!("the view record is not in the checkpoint's view tree: {e}"))?;
    let record = decode_record(&proof.view_record).map_err(|e| format!("the view record does not decode: {e}"))?;
    if record.stream != proof.stream {
        return Err(format!("the view record is of stream {}, not {}", record.stream, proof.stream));
    }
    let mut events: Vec<RecordedEvent> = Vec::with_capacity(proof.events.len());
    for (revision, inclusion) in proof.events.iter().enumerate() {
        let at = format!("event {revision} of {}", proof.stream);
        if inclusion.tree_size != checkpoint.position || inclusion.root != checkpoint.root {
            return Err(format!("{at}: proved in another tree than the checkpoint's"));
        }
        if chain_hash(&inclusion.previous_hash, &inclusion.record_body) != inclusion.record_hash {
            return Err(format!("{at}: its chain hash is not BLAKE3(previous hash ‖ body)"));
        }
        merkle::verify_inclusion(
            &inclusion.record_hash,
            inclusion.position.0 - 1,
            checkpoint.position,
            &inclusion.proof,
            &checkpoint.root,
        )
        .map_err(|e| format!("{at}: not in the log's tree: {e}"))?;
        let event = record::decode_event(&inclusion.record_body).map_err(|e| format!("{at}: {e}"))?;
        if event.stream != proof.stream || event.revision.0 != revision as u64 || event.position != inclusion.position {
            return Err(format!(
                "{at}: the record is revision {} of {} at position {}",
                event.revision, event.stream, event.position
            ));
        }
        record::check_event_signature(&event.event).map_err(|e| format!("{at}: {e}"))?;
        events.push(event);
    }
    if events.len() as u64 != record.revision.0 + 1 || events.last().map(|e| e.position) != Some(record.last_position) {
        return Err(format!(
            "the events given are not all of the stream's up to its view (revision {}, last position {})",
            record.revision, record.last_position
        ));
    }
    if ViewRecord::fold_all(&events).map(|folded| encode_record(&folded)) != Some(proof.view_record.clone()) {
        return Err("folding the stream's events does not give the view record".to_owned());
    }
    Ok(ProvenView { position: checkpoint.position, record })
}

/// The first field of a view proof file: names the format, so that another file is refused.
pub const VIEW_PROOF_FORMAT: &str = "pax-ledger view proof v1";

impl ViewProof {
    /// The proof as a JSON document (`prove --save`): `format`, `stream`, `checkpoint` (the
    /// checkpoint's JSON form), `view_record` (hex), `leaf_index`, `path` (hex), and `events`:
    /// each `position`, `record_hash`, `previous_hash`, `body` and `path` (hex).
    pub fn to_json(&self) -> serde_json::Value {
        let hexes = |hashes: &[Hash]| hashes.iter().map(|h| crate::audit::hex::encode(h)).collect::<Vec<_>>();
        serde_json::json!({
            "format": VIEW_PROOF_FORMAT,
            "stream": self.stream.as_str(),
            "checkpoint": serde_json::Value::from(self.checkpoint.clone()),
            "view_record": crate::audit::hex::encode(&self.view_record),
            "leaf_index": self.leaf_index,
            "path": hexes(&self.path),
            "events": self.events.iter().map(|e| serde_json::json!({
                "position": e.position.0,
                "record_hash": crate::audit::hex::encode(&e.record_hash),
                "previous_hash": crate::audit::hex::encode(&e.previous_hash),
                "body": crate::audit::hex::encode(&e.record_body),
                "path": hexes(&e.proof),
            })).collect::<Vec<_>>(),
        })
    }

    /// Reads what [`ViewProof::to_json`] wrote. Nothing is verified here but the shape.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        use crate::audit::hex;
        let text = |v: &serde_json::Value, name: &str| {
            v.get(name)
                .and_then(|x| x.as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("{name}: missing or not text"))
        };
        let number = |v: &serde_json::Value, name: &str| {
            v.get(name).and_then(serde_json::Value::as_u64).ok_or_else(|| format!("{name}: missing or not a number"))
        };
        let bytes =
            |v: &serde_json::Value, name: &str| hex::decode_vec(&text(v, name)?).map_err(|e| format!("{name}: {e}"));
        let hash = |raw: &str, name: &str| hex::decode::<32>(raw).map_err(|e| format!("{name}: {e}"));
        let hashes = |v: &serde_json::Value, name: &str| -> Result<Vec<Hash>, String> {
            v.get(name)
                .and_then(serde_json::Value::as_array)
                .ok_or_else(|| format!("{name}: missing or not a list"))?
                .iter()
                .map(|h| hash(h.as_str().unwrap_or_default(), name))
                .collect()
        };
        if text(value, "format")? != VIEW_PROOF_FORMAT {
            return Err(format!("format: not {VIEW_PROOF_FORMAT:?}"));
        }
        let stream = StreamName::parse("stream", &text(value, "stream")?).map_err(|e| e.to_string())?;
        let checkpoint = SignedCheckpoint::try_from(value.get("checkpoint").cloned().unwrap_or_default())
            .map_err(|e| format!("checkpoint: {e}"))?;
        let events = value
            .get("events")
            .and_then(serde_json::Value::as_array)
            .ok_or("events: missing or not a list")?
            .iter()
            .map(|e| {
                Ok(Inclusion {
                    position: Position(number(e, "position")?),
                    tree_size: checkpoint.checkpoint.position,
                    record_hash: hash(&text(e, "record_hash")?, "record_hash")?,
                    previous_hash: hash(&text(e, "previous_hash")?, "previous_hash")?,
                    record_body: bytes(e, "body")?,
                    proof: hashes(e, "path")?,
                    root: checkpoint.checkpoint.root,
                    checkpoint: checkpoint.clone(),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            stream,
            view_record: bytes(value, "view_record")?,
            leaf_index: number(value, "leaf_index")?,
            path: hashes(value, "path")?,
            events,
            checkpoint,
        })
    }
}
