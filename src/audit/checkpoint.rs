//! Signed checkpoints: the ledger's statement, under its Ed25519 key, that at a given time its log
//! held `position` records whose Merkle root is `root` (and, optionally, that its views hashed to
//! `view_digest`). Whoever holds the public key can check one, and with a consistency proof that
//! a later one extends it.
//!
//! # The signed note (what the ledger signs today)
//!
//! A checkpoint is a C2SP signed note (`c2sp.org/signed-note`) whose text is a
//! `c2sp.org/tlog-checkpoint` over the RFC 6962 SHA-256 tree ([`super::merkle`]):
//!
//! ```text
//! <origin>
//! <position, decimal>
//! <root, base64>
//! time <RFC 3339, UTC, as many fraction digits as the nanoseconds need>
//! view-digest <base64>            (only when the checkpoint states one)
//! view-tree <records> <base64>    (only with a view digest, and not in notes signed before it)
//!
//! — <origin> <base64(key id ‖ Ed25519 signature over the text above the blank line)>
//! ```
//!
//! The key name is the origin, so the key id is `SHA-256(origin ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`
//! ([`note::key_id`]). Lines of other keys after the log's own (a witness's cosignature) are kept
//! as they came. The text must be exactly what [`Checkpoint::note_text`] writes for the values it
//! states: anything else is refused.
//!
//! # Format 1 (checkpoints signed before the upgrade)
//!
//! Checkpoints signed before the ledger spoke notes cover a BLAKE3 tree of the same layout
//! ([`super::merkle::Blake3Tree`]), and their signature covers exactly [`SIGNING_MESSAGE_LEN`]
//! (110) bytes, integers big-endian:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 25 | [`SIGNING_PREFIX`]: the ASCII text `pax-ledger checkpoint v1` and a line feed (0x0a) |
//! | 25 | 8 | `u64` position: the log's size, the last record's position (0 for an empty log) |
//! | 33 | 32 | the Merkle root of the tree of `position` leaves |
//! | 65 | 8 | `i64` time: seconds since 1970-01-01T00:00:00Z |
//! | 73 | 4 | `u32` time: nanoseconds within the second (1_000_000_000 and above only for a leap second) |
//! | 77 | 1 | view digest presence: 0 absent, 1 present |
//! | 78 | 32 | the view digest, or 32 zero bytes when absent |
//!
//! They are kept, and still verify. The two signed forms cannot be taken for each other: a
//! format-1 message holds bytes below 0x20 (the position's high bytes are zero for any log under
//! 2^56 records), which a note never holds.
//!
//! # The JSON form
//!
//! Stored checkpoints, bundle lines and the `json` field of the API use one JSON object: for a
//! note, `note` (its text) and `public_key` (hex); for format 1, `position`, `root` (hex),
//! `view_digest` (hex or `null`), `time` (RFC 3339), `key_id`, `public_key` and `signature`
//! (hex). Hex is lowercase on output; either case is read. Unknown fields are refused.
//! `checkpoint --save FILE` writes the note itself, which standard tools read.

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::Hash;
use super::hex::{self, HexError};
use super::keys::key_id;
use super::note::{self, Note, NoteError, SignatureLine};

/// The first bytes of every format-1 checkpoint signing message: names what is signed, and its
/// version, so that a signature over one thing can never be taken for a signature over another.
pub const SIGNING_PREFIX: &[u8; 25] = b"pax-ledger checkpoint v1\n";

/// The length of a format-1 checkpoint signing message.
pub const SIGNING_MESSAGE_LEN: usize = 110;

/// The extension line that states the checkpoint's time.
const TIME_LINE: &str = "time ";
/// The extension line that states the view digest.
const VIEW_DIGEST_LINE: &str = "view-digest ";
/// The extension line that states the view tree.
const VIEW_TREE_LINE: &str = "view-tree ";

/// What the ledger states at a point of its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The number of records in the log: the position of the last one (0 when empty).
    pub position: u64,
    /// The Merkle root of the tree of the first `position` records.
    pub root: Hash,
    /// The digest of the projections at `position`, when the checkpoint states it.
    pub view_digest: Option<Hash>,
    /// The Merkle tree of the view records at `position` (what a view proof is checked against),
    /// when the checkpoint states it: only beside a view digest, and only in a note.
    pub view_tree: Option<ViewTree>,
    /// When the checkpoint was made, by the server's clock.
    pub time: DateTime<Utc>,
}

/// The view records at a checkpoint as a tree (docs/AUDIT.md §6, "The view tree"): RFC 6962
/// over SHA-256, each leaf's entry the SHA-256 of a view record's canonical bytes, in the
/// byte order of the records' streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewTree {
    /// How many view records (leaves).
    pub records: u64,
    pub root: Hash,
}
/// Which tree a checkpoint's root is the root of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeKind {
    /// RFC 6962 with SHA-256 ([`super::merkle::Sha256Tree`]): notes.
    Sha256,
    /// The same layout with BLAKE3 ([`super::merkle::Blake3Tree`]): format 1.
    Blake3,
}

/// How a checkpoint was signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Form {
    /// A signed note under `origin`; `cosignatures` are its other signature lines, as they came.
    Note { origin: String, cosignatures: Vec<SignatureLine> },
    /// The 110-byte message of format 1.
    Format1,
}

/// A checkpoint with the public key that signed it and the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "serde_json::Value", try_from = "serde_json::Value")]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub form: Form,
    pub public_key: VerifyingKey,
    pub signature: Signature,
}

/// Why a signed checkpoint is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint is signed by key {found}, not by the trusted key {expected}")]
    KeyMismatch { expected: String, found: String },
    #[error("the checkpoint's signature does not match its contents and public key")]
    BadSignature,
    #[error("checkpoint field {field} is not valid hexadecimal: {source}")]
    Hex { field: &'static str, source: HexError },
    #[error("checkpoint field public_key is not a valid Ed25519 public key")]
    PublicKey,
    #[error("checkpoint field time {0:?} is not an RFC 3339 time")]
    Time(String),
    #[error("checkpoint field key_id {found} is not the id of its public key ({expected})")]
    KeyId { expected: String, found: String },
    #[error("not a checkpoint file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a signed note: {0}")]
    Note(#[from] NoteError),
    #[error("the note is not a pax-ledger checkpoint: {0}")]
    NoteText(String),
    #[error("the note carries no signature of key {key_id} under the name {origin:?}")]
    NoLogSignature { origin: String, key_id: String },
}

impl Checkpoint {
    /// The note text of this checkpoint under `origin` (module documentation).
    pub fn note_text(&self, origin: &str) -> String {
        let mut text = format!(
            "{origin}\n{}\n{}\n{TIME_LINE}{}\n",
            self.position,
            note::base64_encode(&self.root),
            self.time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        );
        if let Some(digest) = &self.view_digest {
            text.push_str(&format!("{VIEW_DIGEST_LINE}{}\n", note::base64_encode(digest)));
            if let Some(tree) = &self.view_tree {
                text.push_str(&format!("{VIEW_TREE_LINE}{} {}\n", tree.records, note::base64_encode(&tree.root)));
            }
        }
        text
    }

    /// Reads a note text back: its origin and the checkpoint. Only the exact text
    /// [`Checkpoint::note_text`] writes is accepted.
    pub fn parse_note_text(text: &str) -> Result<(String, Self), CheckpointError> {
        let bad = |reason: &str| CheckpointError::NoteText(reason.to_owned());
        let mut lines = text.strip_suffix('\n').ok_or_else(|| bad("the text does not end in a newline"))?.split('\n');
        let origin = lines.next().unwrap_or_default();
        note::check_key_name(origin).map_err(|_| bad("the origin line is empty or holds a space or '+'"))?;
        let position = lines
            .next()
            .and_then(|line| line.parse::<u64>().ok())
            .ok_or_else(|| bad("the second line is not a tree size"))?;
        let root = lines
            .next()
            .and_then(note::base64_decode::<32>)
            .ok_or_else(|| bad("the third line is not a base64 root hash of 32 bytes"))?;
        let time = lines
            .next()
            .and_then(|line| line.strip_prefix(TIME_LINE))
            .and_then(|time| DateTime::parse_from_rfc3339(time).ok())
            .ok_or_else(|| bad("the fourth line is not `time` and an RFC 3339 time"))?
            .with_timezone(&Utc);
        let view_digest = match lines.next() {
            None => None,
            Some(line) => Some(
                line.strip_prefix(VIEW_DIGEST_LINE)
                    .and_then(note::base64_decode::<32>)
                    .ok_or_else(|| bad("the fifth line is not `view-digest` and a base64 digest of 32 bytes"))?,
            ),
        };
        let view_tree = match lines.next() {
            None => None,
            Some(line) => Some(
                line.strip_prefix(VIEW_TREE_LINE)
                    .and_then(|rest| rest.split_once(' '))
                    .and_then(|(records, root)| {
                        Some(ViewTree { records: records.parse().ok()?, root: note::base64_decode::<32>(root)? })
                    })
                    .ok_or_else(|| {
                        bad("the sixth line is not `view-tree`, a record count and a base64 root of 32 bytes")
                    })?,
            ),
        };
        if lines.next().is_some() {
            return Err(bad("the text has lines after the view tree"));
        }
        let checkpoint = Self { position, root, view_digest, view_tree, time };
        if checkpoint.note_text(origin) != text {
            return Err(bad("the text is not in canonical form (number, base64 or time written otherwise)"));
        }
        Ok((origin.to_owned(), checkpoint))
    }

    /// Signs the checkpoint as a note under `origin` with `key`.
    ///
    /// # Panics
    ///
    /// If `origin` is not a key name ([`note::check_key_name`]): the configuration is checked first.
    pub fn sign(self, origin: &str, key: &SigningKey) -> SignedCheckpoint {
        note::check_key_name(origin).expect("a checked origin");
        let line = note::sign(&self.note_text(origin), origin, key);
        let signature = Signature::from_slice(&line.signature).expect("64 bytes");
        SignedCheckpoint {
            checkpoint: self,
            form: Form::Note { origin: origin.to_owned(), cosignatures: Vec::new() },
            public_key: key.verifying_key(),
            signature,
        }
    }

    /// The exact bytes a format-1 signature covers (layout in the module documentation).
    pub fn signing_message(&self) -> [u8; SIGNING_MESSAGE_LEN] {
        let mut message = [0; SIGNING_MESSAGE_LEN];
        let (view_present, view_digest) = match &self.view_digest {
            Some(digest) => (1, *digest),
            None => (0, [0; 32]),
        };
        let fields: [&[u8]; 7] = [
            SIGNING_PREFIX,
            &self.position.to_be_bytes(),
            &self.root,
            &self.time.timestamp().to_be_bytes(),
            &self.time.timestamp_subsec_nanos().to_be_bytes(),
            &[view_present],
            &view_digest,
        ];
        let mut at = 0;
        for field in fields {
            message[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        debug_assert_eq!(at, SIGNING_MESSAGE_LEN);
        message
    }

    /// Signs the checkpoint in format 1 (over a BLAKE3 tree's root): what the ledger did before
    /// notes, kept for tests of old ledgers and bundles. Format 1 states no view tree.
    pub fn sign_format_1(mut self, key: &SigningKey) -> SignedCheckpoint {
        self.view_tree = None;
        let signature = key.sign(&self.signing_message());
        SignedCheckpoint { checkpoint: self, form: Form::Format1, public_key: key.verifying_key(), signature }
    }
}

impl SignedCheckpoint {
    /// The id of the key that signed (see [`key_id`]).
    pub fn key_id(&self) -> String {
        key_id(&self.public_key)
    }

    /// The tree whose root the checkpoint states.
    pub fn tree(&self) -> TreeKind {
        match self.form {
            Form::Note { .. } => TreeKind::Sha256,
            Form::Format1 => TreeKind::Blake3,
        }
    }

    /// The log's origin line, for a note.
    pub fn origin(&self) -> Option<&str> {
        match &self.form {
            Form::Note { origin, .. } => Some(origin),
            Form::Format1 => None,
        }
    }

    /// The bytes the signature covers: the note text, or the format-1 message.
    pub fn signed_bytes(&self) -> Vec<u8> {
        match &self.form {
            Form::Note { origin, .. } => self.checkpoint.note_text(origin).into_bytes(),
            Form::Format1 => self.checkpoint.signing_message().to_vec(),
        }
    }

    /// Accepts the checkpoint if it was signed by `trusted` — the ledger's public key as the
    /// auditor obtained it, never the key the checkpoint carries — and its contents are the ones
    /// signed. Strict Ed25519 verification: weak keys and non-canonical signatures are refused.
    pub fn verify(&self, trusted: &VerifyingKey) -> Result<(), CheckpointError> {
        if self.public_key != *trusted {
            return Err(CheckpointError::KeyMismatch { expected: key_id(trusted), found: self.key_id() });
        }
        trusted.verify_strict(&self.signed_bytes(), &self.signature).map_err(|_| CheckpointError::BadSignature)
    }

    /// The signed note (text, blank line, the log's signature line, then any cosignatures), for
    /// a note; `None` for format 1.
    pub fn to_note(&self) -> Option<String> {
        let Form::Note { origin, cosignatures } = &self.form else { return None };
        let text = self.checkpoint.note_text(origin);
        let own = SignatureLine {
            name: origin.clone(),
            key_id: note::key_id(origin, &self.public_key),
            signature: self.signature.to_bytes().to_vec(),
        };
        let signatures = std::iter::once(own).chain(cosignatures.iter().cloned()).collect();
        Some(Note { text, signatures }.to_text())
    }

    /// The verifier key text of the signer (`<origin>+<key id>+<base64 key>`), for a note.
    pub fn verifier_key(&self) -> Option<String> {
        self.origin().map(|origin| note::verifier_key(origin, &self.public_key))
    }

    /// Reads a signed note back, as signed by `key`: the note must carry a line of `key` under
    /// its origin (any others are kept as cosignatures). The signature itself is checked by
    /// [`SignedCheckpoint::verify`].
    pub fn from_note(text: &str, key: &VerifyingKey) -> Result<Self, CheckpointError> {
        let note = Note::parse(text)?;
        let (origin, checkpoint) = Checkpoint::parse_note_text(&note.text)?;
        let id = note::key_id(&origin, key);
        let mut signature = None;
        let mut cosignatures = Vec::new();
        for line in note.signatures {
            if signature.is_none() && line.name == origin && line.key_id == id {
                signature = Some(Signature::from_slice(&line.signature).map_err(|_| CheckpointError::BadSignature)?);
            } else {
                cosignatures.push(line);
            }
        }
        let signature = signature.ok_or_else(|| CheckpointError::NoLogSignature {
            origin: origin.clone(),
            key_id: format!("{id:08x} ({})", key_id(key)),
        })?;
        Ok(Self { checkpoint, form: Form::Note { origin, cosignatures }, public_key: *key, signature })
    }

    /// What `checkpoint --save` writes: the signed note; for format 1, the JSON form.
    pub fn file_text(&self) -> String {
        self.to_note().unwrap_or_else(|| format!("{}\n", self.to_json()))
    }

    /// Reads what [`SignedCheckpoint::file_text`] wrote (or the JSON form): a JSON object carries
    /// its key; a note is read as signed by `key`, which is needed then.
    pub fn from_file_text(text: &str, key: Option<&VerifyingKey>) -> Result<Self, CheckpointError> {
        if text.trim_start().starts_with('{') {
            return Self::from_json(text);
        }
        let key = key.ok_or_else(|| {
            CheckpointError::NoteText("a signed note names no public key: give the ledger's key to read it".into())
        })?;
        Self::from_note(text, key)
    }

    /// The JSON form (module documentation), pretty-printed, without a final line feed. The
    /// compact form for JSON Lines is `serde_json::to_string`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a checkpoint always serialises")
    }

    /// Reads the JSON form back. The signature is not checked here: call
    /// [`SignedCheckpoint::verify`] with the trusted key.
    pub fn from_json(text: &str) -> Result<Self, CheckpointError> {
        Self::try_from(serde_json::from_str::<serde_json::Value>(text)?)
    }
}

/// The JSON form of a format-1 checkpoint, field by field.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Format1File {
    position: u64,
    root: String,
    view_digest: Option<String>,
    time: String,
    key_id: String,
    public_key: String,
    signature: String,
}

/// The JSON form of a note checkpoint: the note and its key, and what the note states spelled
/// out (the fields of format 1, the origin and the verifier key), which must agree with it.
// No `deny_unknown_fields` (serde does not combine it with `flatten`): the stated fields are
// checked one by one on reading.
#[derive(Serialize, Deserialize)]
struct NoteFile {
    note: String,
    public_key: String,
    #[serde(flatten)]
    stated: serde_json::Map<String, serde_json::Value>,
}

/// The fields a note's JSON form states besides the note and its key.
const NOTE_STATED_FIELDS: [&str; 9] =
    ["position", "root", "view_digest", "view_tree", "time", "key_id", "signature", "origin", "verifier_key"];

impl From<SignedCheckpoint> for serde_json::Value {
    fn from(signed: SignedCheckpoint) -> Self {
        let public_key = hex::encode(signed.public_key.as_bytes());
        let value = match signed.to_note() {
            Some(note) => {
                let checkpoint = &signed.checkpoint;
                let stated = serde_json::json!({
                    "position": checkpoint.position,
                    "root": hex::encode(&checkpoint.root),
                    "view_digest": checkpoint.view_digest.map(|digest| hex::encode(&digest)),
                    "view_tree": checkpoint.view_tree.map(|tree| serde_json::json!({
                        "records": tree.records, "root": hex::encode(&tree.root),
                    })),
                    "time": checkpoint.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    "key_id": signed.key_id(),
                    "signature": hex::encode(&signed.signature.to_bytes()),
                    "origin": signed.origin(),
                    "verifier_key": signed.verifier_key(),
                });
                let serde_json::Value::Object(stated) = stated else { unreachable!("an object") };
                serde_json::to_value(NoteFile { note, public_key, stated })
            }
            None => {
                let checkpoint = &signed.checkpoint;
                serde_json::to_value(Format1File {
                    position: checkpoint.position,
                    root: hex::encode(&checkpoint.root),
                    view_digest: checkpoint.view_digest.map(|digest| hex::encode(&digest)),
                    time: checkpoint.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    key_id: signed.key_id(),
                    public_key,
                    signature: hex::encode(&signed.signature.to_bytes()),
                })
            }
        };
        value.expect("plain fields serialise")
    }
}

impl TryFrom<serde_json::Value> for SignedCheckpoint {
    type Error = CheckpointError;

    fn try_from(value: serde_json::Value) -> Result<Self, CheckpointError> {
        let field = |field: &'static str| move |source: HexError| CheckpointError::Hex { field, source };
        let public_key = |text: &str| {
            let bytes = hex::decode(text).map_err(field("public_key"))?;
            VerifyingKey::from_bytes(&bytes).map_err(|_| CheckpointError::PublicKey)
        };
        if value.get("note").is_some() {
            let file: NoteFile = serde_json::from_value(value)?;
            let signed = Self::from_note(&file.note, &public_key(&file.public_key)?)?;
            // What the form states beside the note must be what the note says: a reader of the
            // plain fields is never shown something other than what was signed.
            let spelled = serde_json::Value::from(signed.clone());
            for (name, value) in &file.stated {
                if !NOTE_STATED_FIELDS.contains(&name.as_str()) {
                    return Err(CheckpointError::NoteText(format!("unknown field {name:?}")));
                }
                let matches = match (value, &spelled[name]) {
                    // Hex is read in either case.
                    (serde_json::Value::String(given), serde_json::Value::String(own))
                        if ["root", "view_digest", "key_id", "signature"].contains(&name.as_str()) =>
                    {
                        given.eq_ignore_ascii_case(own)
                    }
                    (given, own) => given == own,
                };
                if !matches {
                    return Err(CheckpointError::NoteText(format!("field {name} does not say what the note says")));
                }
            }
            return Ok(signed);
        }
        let file: Format1File = serde_json::from_value(value)?;
        let root = hex::decode(&file.root).map_err(field("root"))?;
        let view_digest = file.view_digest.as_deref().map(hex::decode).transpose().map_err(field("view_digest"))?;
        let time = DateTime::parse_from_rfc3339(&file.time)
            .map_err(|_| CheckpointError::Time(file.time.clone()))?
            .with_timezone(&Utc);
        let public_key = public_key(&file.public_key)?;
        let expected = key_id(&public_key);
        if file.key_id.to_ascii_lowercase() != expected {
            return Err(CheckpointError::KeyId { expected, found: file.key_id });
        }
        let signature = Signature::from_bytes(&hex::decode(&file.signature).map_err(field("signature"))?);
        Ok(Self {
            checkpoint: Checkpoint { position: file.position, root, view_digest, view_tree: None, time },
            form: Form::Format1,
            public_key,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[0x5a; 32])
    }

    fn checkpoint(view_digest: Option<Hash>) -> Checkpoint {
        Checkpoint {
            position: 1_234,
            root: [0xab; 32],
            view_digest,
            view_tree: None,
            time: Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 0).unwrap() + chrono::Duration::nanoseconds(250_000_001),
        }
    }

    fn flip(bytes: &mut [u8], bit: usize) {
        bytes[bit / 8 % bytes.len()] ^= 1 << (bit % 8);
    }

    const ORIGIN: &str = "pax-ledger.example/test";

    #[test]
    fn the_note_is_laid_out_as_documented() {
        let signed = checkpoint(Some([0xcd; 32])).sign(ORIGIN, &key());
        let note = signed.to_note().unwrap();
        let (text, signature_line) = note.split_once("\n\n").unwrap();
        assert_eq!(
            text,
            "pax-ledger.example/test\n1234\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\
             time 2026-03-01T12:30:00.250000001Z\nview-digest zc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc0="
        );
        assert!(signature_line.starts_with("\u{2014} pax-ledger.example/test "));
        assert!(signature_line.ends_with('\n'));
        assert_eq!(signed.signed_bytes(), format!("{text}\n").into_bytes());
        assert_eq!(signed.tree(), TreeKind::Sha256);
        let without = checkpoint(None).sign(ORIGIN, &key());
        assert!(!without.to_note().unwrap().contains("view-digest"));
    }

    #[test]
    fn the_view_tree_is_a_sixth_line_after_the_view_digest_and_reads_back() {
        let trusted = key().verifying_key();
        let mut with_tree = checkpoint(Some([0xcd; 32]));
        with_tree.view_tree = Some(ViewTree { records: 3, root: [0xef; 32] });
        let signed = with_tree.clone().sign(ORIGIN, &key());
        let note = signed.to_note().unwrap();
        assert!(
            note.contains("view-digest zc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc0=\nview-tree 3 7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+8=\n\n"),
            "{note}"
        );
        assert_eq!(SignedCheckpoint::from_note(&note, &trusted).unwrap(), signed);
        assert_eq!(SignedCheckpoint::from_json(&signed.to_json()).unwrap(), signed);
        // The tree is signed: a changed count or root no longer verifies.
        let changed = note.replace("view-tree 3 ", "view-tree 4 ");
        assert!(SignedCheckpoint::from_note(&changed, &trusted).unwrap().verify(&trusted).is_err());
        // Malformed or out of place: refused as text.
        for bad in [
            note.replace("view-tree 3 ", "view-tree three "),
            note.replace("view-tree 3 ", "view-tree  3 "),
            note.replace("view-tree 3 7", "view-trees 3 7"),
        ] {
            assert!(SignedCheckpoint::from_note(&bad, &trusted).is_err(), "{bad}");
        }
        // Format 1 states no view tree.
        assert_eq!(with_tree.sign_format_1(&key()).checkpoint.view_tree, None);
    }

    #[test]
    fn a_note_reads_back_with_its_key_only_and_keeps_cosignatures() {
        let trusted = key().verifying_key();
        for view_digest in [None, Some([0xcd; 32])] {
            let mut signed = checkpoint(view_digest).sign(ORIGIN, &key());
            let Form::Note { cosignatures, .. } = &mut signed.form else { unreachable!() };
            cosignatures.push(note::sign("anything\n", "witness.example/w1", &SigningKey::from_bytes(&[1; 32])));
            let text = signed.to_note().unwrap();
            let back = SignedCheckpoint::from_note(&text, &trusted).unwrap();
            assert_eq!(back, signed);
            back.verify(&trusted).unwrap();
            assert_eq!(back.to_note().unwrap(), text);
            assert_eq!(SignedCheckpoint::from_json(&signed.to_json()).unwrap(), signed);
            assert_eq!(SignedCheckpoint::from_file_text(&signed.file_text(), Some(&trusted)).unwrap(), signed);
            let stranger = SigningKey::from_bytes(&[0x11; 32]).verifying_key();
            assert!(matches!(
                SignedCheckpoint::from_note(&text, &stranger),
                Err(CheckpointError::NoLogSignature { .. })
            ));
        }
    }

    #[test]
    fn a_changed_note_fails() {
        let trusted = key().verifying_key();
        let text = checkpoint(Some([0xcd; 32])).sign(ORIGIN, &key()).to_note().unwrap();
        let signature_at = text.find("\n\n").unwrap() + 2;
        for at in 0..text.len() {
            if !text.is_char_boundary(at) || !text.is_char_boundary(at + 1) || text.as_bytes()[at] == b'\n' {
                continue;
            }
            let mut bytes = text.clone().into_bytes();
            bytes[at] ^= 0x01;
            let Ok(changed) = String::from_utf8(bytes) else { continue };
            let verdict = SignedCheckpoint::from_note(&changed, &trusted).and_then(|signed| signed.verify(&trusted));
            assert!(
                verdict.is_err(),
                "byte {at} ({}) changed and still verifies",
                if at < signature_at { "text" } else { "signature" }
            );
        }
    }

    #[test]
    fn a_note_text_not_in_canonical_form_is_refused() {
        let good = checkpoint(None).note_text(ORIGIN);
        assert_eq!(Checkpoint::parse_note_text(&good).unwrap(), (ORIGIN.to_owned(), checkpoint(None)));
        for bad in [
            good.replace("\n1234\n", "\n01234\n"),
            good.replace("time 2026-03-01T12:30:00.250000001Z", "time 2026-03-01T13:30:00.250000001+01:00"),
            good.replace(ORIGIN, "has space"),
            format!("{good}extra line\n"),
            good.trim_end().to_owned(),
            good.replace("q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s"),
        ] {
            assert!(Checkpoint::parse_note_text(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_signing_message_is_laid_out_as_documented() {
        let message = checkpoint(Some([0xcd; 32])).signing_message();
        assert_eq!(&message[..25], b"pax-ledger checkpoint v1\n");
        assert_eq!(&message[25..33], &1_234u64.to_be_bytes());
        assert_eq!(&message[33..65], &[0xab; 32]);
        assert_eq!(&message[65..73], &1_772_368_200i64.to_be_bytes());
        assert_eq!(&message[73..77], &250_000_001u32.to_be_bytes());
        assert_eq!(message[77], 1);
        assert_eq!(&message[78..], &[0xcd; 32]);
        let message = checkpoint(None).signing_message();
        assert_eq!(message[77], 0);
        assert_eq!(&message[78..], &[0; 32]);
    }

    #[test]
    fn a_signed_checkpoint_verifies_with_its_key_only() {
        for view_digest in [None, Some([0xcd; 32])] {
            let signed = checkpoint(view_digest).sign_format_1(&key());
            signed.verify(&key().verifying_key()).unwrap();
            let stranger = SigningKey::from_bytes(&[0x11; 32]).verifying_key();
            assert!(matches!(signed.verify(&stranger), Err(CheckpointError::KeyMismatch { .. })));
            // Re-signed by another key that swaps itself in: still not the trusted key.
            let forged = signed.checkpoint.clone().sign_format_1(&SigningKey::from_bytes(&[0x11; 32]));
            assert!(matches!(forged.verify(&key().verifying_key()), Err(CheckpointError::KeyMismatch { .. })));
        }
    }

    /// Every bit of every field is in the signed message, so that flipping it changes the message;
    /// and a changed message fails verification. (Checking the signature for every bit would take
    /// seconds in a debug build: one bit per byte is checked against the signature.)
    #[test]
    fn a_flipped_bit_in_any_field_fails() {
        let trusted = key().verifying_key();
        let signed = checkpoint(Some([0xcd; 32])).sign_format_1(&key());
        let check = |what: &str, bit: usize, change: &dyn Fn(&mut SignedCheckpoint)| {
            let mut tampered = signed.clone();
            change(&mut tampered);
            assert_ne!(tampered.checkpoint.signing_message(), signed.checkpoint.signing_message(), "{what} bit {bit}");
            if bit % 8 == bit / 8 % 8 {
                let verdict = tampered.verify(&trusted);
                assert!(matches!(verdict, Err(CheckpointError::BadSignature)), "{what} bit {bit}: {verdict:?}");
            }
        };
        for bit in 0..64 {
            check("position", bit, &|s| s.checkpoint.position ^= 1 << bit);
        }
        for bit in 0..256 {
            check("root", bit, &|s| flip(&mut s.checkpoint.root, bit));
            check("view digest", bit, &|s| flip(s.checkpoint.view_digest.as_mut().unwrap(), bit));
        }
        check("view digest presence", 0, &|s| s.checkpoint.view_digest = None);
        check("view digest presence", 0, &|s| s.checkpoint.view_digest = Some([0; 32]));
        for bit in 0..40 {
            check("time seconds", bit, &|s| s.checkpoint.time += chrono::Duration::seconds(1 << bit));
        }
        for bit in 0..29 {
            check("time nanoseconds", bit, &|s| s.checkpoint.time += chrono::Duration::nanoseconds(1 << bit));
        }
        for byte in 0..64 {
            let mut tampered = signed.clone();
            let mut bytes = tampered.signature.to_bytes();
            flip(&mut bytes, byte * 8 + byte % 8);
            tampered.signature = Signature::from_bytes(&bytes);
            assert!(matches!(tampered.verify(&trusted), Err(CheckpointError::BadSignature)), "signature byte {byte}");
        }
        let mut absent = checkpoint(None).sign_format_1(&key());
        absent.checkpoint.view_digest = Some([0; 32]);
        assert!(matches!(absent.verify(&trusted), Err(CheckpointError::BadSignature)));
    }

    #[test]
    fn the_json_form_round_trips() {
        for view_digest in [None, Some([0xcd; 32])] {
            let signed = checkpoint(view_digest).sign_format_1(&key());
            let text = signed.to_json();
            let back = SignedCheckpoint::from_json(&text).unwrap();
            assert_eq!(back, signed);
            back.verify(&key().verifying_key()).unwrap();
            let compact = serde_json::to_string(&signed).unwrap();
            assert!(!compact.contains('\n'));
            assert_eq!(SignedCheckpoint::from_json(&compact).unwrap(), signed);

            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            let object = value.as_object().unwrap();
            let names: Vec<_> = object.keys().map(String::as_str).collect();
            let mut expected = ["key_id", "position", "public_key", "root", "signature", "time", "view_digest"];
            expected.sort();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(sorted, expected);
            assert_eq!(object["position"], 1_234);
            assert_eq!(object["root"], "ab".repeat(32));
            assert_eq!(object["time"], "2026-03-01T12:30:00.250000001Z");
            assert_eq!(object["view_digest"], view_digest.map_or(serde_json::Value::Null, |_| "cd".repeat(32).into()));
            assert_eq!(object["key_id"], signed.key_id());
            assert_eq!(object["public_key"], hex::encode(key().verifying_key().as_bytes()));
            assert_eq!(object["signature"], hex::encode(&signed.signature.to_bytes()));
        }
    }

    #[test]
    fn a_checkpoint_file_with_bad_fields_is_refused() {
        let signed = checkpoint(Some([0xcd; 32])).sign_format_1(&key());
        let good: serde_json::Value = serde_json::from_str(&signed.to_json()).unwrap();
        let check = |field: &str, value: serde_json::Value| {
            let mut changed = good.clone();
            changed[field] = value;
            SignedCheckpoint::from_json(&changed.to_string()).unwrap_err().to_string()
        };
        assert!(check("root", "ab".into()).contains("root"));
        assert!(check("view_digest", "zz".repeat(32).into()).contains("view_digest"));
        assert!(check("time", "1 March 2026".into()).contains("RFC 3339"));
        assert!(check("key_id", "0000000000000000".into()).contains("key_id"));
        assert!(check("signature", "00".into()).contains("signature"));
        assert!(check("position", (-1).into()).contains("not a checkpoint file"));
        assert!(check("extra", 1.into()).contains("extra"));
        // A time in another offset names the same instant: the signature still holds.
        let shifted = {
            let mut changed = good.clone();
            changed["time"] = "2026-03-01T13:30:00.250000001+01:00".into();
            SignedCheckpoint::from_json(&changed.to_string()).unwrap()
        };
        shifted.verify(&key().verifying_key()).unwrap();
    }
}
