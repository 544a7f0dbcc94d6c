//! Witnesses: cosigners that vouch a log only ever grew. A witness keeps, for each log it knows
//! (by origin and public key), the size and root of the latest checkpoint it cosigned; it
//! cosigns a new checkpoint only with a consistency proof from that size
//! (`c2sp.org/tlog-witness`, the `add-checkpoint` exchange), so it never cosigns two
//! inconsistent checkpoints of one log, nor a smaller tree after a larger one.
//!
//! Cosignatures are `c2sp.org/tlog-cosignature` v1 with Ed25519: a note signature line under the
//! witness's name, key id `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]`, signature bytes
//! `timestamp (u64, big-endian) ‖ Ed25519 signature` over
//! `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint's note text.
//!
//! Pure: [`Witness::add_checkpoint`] takes the request and the state and returns the new state
//! and the cosignature; keeping the state durable (before answering) is the server's.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::Hash;
use super::checkpoint::{Checkpoint, SignedCheckpoint};
use super::merkle::{self, VerifyError};
use super::note::{self, Note, NoteError, SignatureLine};

/// The signature type byte of Ed25519 cosignatures.
pub const COSIGNATURE_TYPE: u8 = 0x04;

/// Consistency proof lines past which a request is refused (the protocol's bound).
pub const PROOF_LINES_MAX: usize = 63;

/// The key id of a witness's Ed25519 key under `name`, for cosignatures.
pub fn cosignature_key_id(name: &str, key: &VerifyingKey) -> u32 {
    note::typed_key_id(name, COSIGNATURE_TYPE, key)
}

/// The witness's verifier key text: `<name>+<key id>+<base64(0x04 ‖ public key)>`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    note::typed_verifier_key(name, COSIGNATURE_TYPE, key)
}

/// The bytes a cosignature at `timestamp` signs: the header, the time, the note text.
fn cosigned_message(note_text: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{note_text}").into_bytes()
}

/// The cosignature line of `key` (named `name`) over a note text, at `timestamp` (seconds).
pub fn cosign(note_text: &str, name: &str, key: &SigningKey, timestamp: u64) -> SignatureLine {
    let signature = key.sign(&cosigned_message(note_text, timestamp));
    let mut bytes = timestamp.to_be_bytes().to_vec();
    bytes.extend_from_slice(&signature.to_bytes());
    SignatureLine { name: name.to_owned(), key_id: cosignature_key_id(name, &key.verifying_key()), signature: bytes }
}

/// The timestamp of `line` if it is a valid cosignature of `key` (named `name`) over the note
/// text; `None` if the line is another key's or does not verify.
pub fn verify_cosignature(note_text: &str, line: &SignatureLine, name: &str, key: &VerifyingKey) -> Option<u64> {
    if line.name != name || line.key_id != cosignature_key_id(name, key) || line.signature.len() != 72 {
        return None;
    }
    let timestamp = u64::from_be_bytes(line.signature[..8].try_into().expect("8 bytes"));
    let signature = Signature::from_slice(&line.signature[8..]).ok()?;
    key.verify_strict(&cosigned_message(note_text, timestamp), &signature).ok()?;
    (timestamp < 1 << 63).then_some(timestamp)
}

/// How many of `witnesses` (name, key) validly cosigned `checkpoint`: each counted once.
pub fn count_cosigners(checkpoint: &SignedCheckpoint, witnesses: &[(String, VerifyingKey)]) -> usize {
    let (Some(origin), super::checkpoint::Form::Note { cosignatures, .. }) = (checkpoint.origin(), &checkpoint.form)
    else {
        return 0;
    };
    let text = checkpoint.checkpoint.note_text(origin);
    witnesses
        .iter()
        .filter(|(name, key)| cosignatures.iter().any(|line| verify_cosignature(&text, line, name, key).is_some()))
        .count()
}

/// What a witness last cosigned for one log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cosigned {
    pub size: u64,
    #[serde(with = "hex_hash")]
    pub root: Hash,
}

/// A witness's durable state: per log origin, the latest checkpoint it cosigned.
pub type WitnessState = BTreeMap<String, Cosigned>;

/// Why a witness does not cosign, with the HTTP status the protocol gives it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("unknown log {0:?}")]
    UnknownLog(String),
    #[error("the checkpoint is not signed by the log's key")]
    Forbidden,
    /// The old size is not the size last cosigned (or a second root for that size): the
    /// witness's size is the answer's body.
    #[error("the witness last cosigned size {size} of this log{why}")]
    Conflict { size: u64, why: String },
    #[error("the consistency proof does not verify: {0}")]
    Unprocessable(String),
}

impl WitnessError {
    /// The HTTP status of the refusal (`c2sp.org/tlog-witness`).
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Forbidden => 403,
            Self::UnknownLog(_) => 404,
            Self::Conflict { .. } => 409,
            Self::Unprocessable(_) => 422,
        }
    }
}

/// A witness: its name, its key and the logs it knows (origin → the log's public key).
pub struct Witness {
    pub name: String,
    pub key: SigningKey,
    pub logs: BTreeMap<String, VerifyingKey>,
}

/// An `add-checkpoint` request body, parsed: the old size, the proof, the signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    pub note: String,
}

impl AddCheckpoint {
    /// The request body: `old N`, one base64 proof hash per line, an empty line, the note.
    pub fn to_body(&self) -> String {
        let mut body = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            body.push_str(&BASE64.encode(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&self.note);
        body
    }

    pub fn parse(body: &str) -> Result<Self, WitnessError> {
        let bad = |reason: &str| WitnessError::BadRequest(reason.to_owned());
        let (head, note) = body.split_once("\n\n").ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old_size = lines
            .next()
            .and_then(|line| line.strip_prefix("old "))
            .filter(|size| size == &"0" || !size.starts_with('0'))
            .and_then(|size| size.parse().ok())
            .ok_or_else(|| bad("the first line is not `old` and a tree size"))?;
        let proof = lines
            .map(|line| note::base64_decode::<32>(line).ok_or_else(|| bad("a proof line is not a base64 hash")))
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > PROOF_LINES_MAX {
            return Err(bad("more than 63 proof lines"));
        }
        Ok(Self { old_size, proof, note: note.to_owned() })
    }
}

impl Witness {
    /// Checks a request against the state; on success, the state to make durable before
    /// answering, and the cosignature to answer with (at `timestamp`, seconds).
    pub fn add_checkpoint(
        &self,
        request: &AddCheckpoint,
        state: &WitnessState,
        timestamp: u64,
    ) -> Result<(WitnessState, SignatureLine), WitnessError> {
        let parsed = Note::parse(&request.note).map_err(|e: NoteError| WitnessError::BadRequest(e.to_string()))?;
        let (origin, checkpoint) =
            Checkpoint::parse_note_text(&parsed.text).map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let log_key = self.logs.get(&origin).ok_or_else(|| WitnessError::UnknownLog(origin.clone()))?;
        let signed = SignedCheckpoint::from_note(&request.note, log_key).map_err(|_| WitnessError::Forbidden)?;
        signed.verify(log_key).map_err(|_| WitnessError::Forbidden)?;
        if request.old_size > checkpoint.position {
            return Err(WitnessError::BadRequest(format!(
                "old size {} is larger than the checkpoint's {}",
                request.old_size, checkpoint.position
            )));
        }
        let last = state.get(&origin).copied();
        let last_size = last.map_or(0, |last| last.size);
        if request.old_size != last_size {
            return Err(WitnessError::Conflict { size: last_size, why: String::new() });
        }
        match last {
            None if !request.proof.is_empty() => {
                return Err(WitnessError::Unprocessable("a proof from size 0 must be empty".into()));
            }
            None => {}
            Some(last) if last.size == checkpoint.position && last.root != checkpoint.root => {
                return Err(WitnessError::Conflict {
                    size: last.size,
                    why: ", with another root: the log shows two histories".into(),
                });
            }
            Some(last) if last.size == checkpoint.position => {}
            Some(last) => {
                merkle::verify_consistency(last.size, checkpoint.position, &last.root, &checkpoint.root, &request.proof)
                    .map_err(|e: VerifyError| WitnessError::Unprocessable(e.to_string()))?
            }
        }
        let mut next = state.clone();
        next.insert(origin.clone(), Cosigned { size: checkpoint.position, root: checkpoint.root });
        Ok((next, cosign(&parsed.text, &self.name, &self.key, timestamp)))
    }
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::audit::{Hash, hex};

    pub fn serialize<S: Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(deserializer)?;
        hex::decode(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::audit::merkle::{MemoryNodeSource, consistency_proof, tree_root};

    const ORIGIN: &str = "pax-ledger.example/log";

    fn log_key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn witness() -> Witness {
        Witness {
            name: "witness.example/w1".into(),
            key: SigningKey::from_bytes(&[9; 32]),
            logs: [(ORIGIN.to_owned(), log_key().verifying_key())].into(),
        }
    }

    /// A log of `n` records with the given seed (another seed: another history).
    fn source(n: u8, seed: u8) -> MemoryNodeSource {
        let hashes: Vec<Hash> = (0..n).map(|i| [i ^ seed; 32]).collect();
        MemoryNodeSource::new(&hashes)
    }

    fn note(source: &MemoryNodeSource, size: u64) -> String {
        let checkpoint = Checkpoint {
            position: size,
            root: tree_root(size, source).unwrap(),
            view_digest: None,
            view_tree: None,
            time: Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap(),
        };
        checkpoint.sign(ORIGIN, &log_key()).to_note().unwrap()
    }

    fn request(source: &MemoryNodeSource, old: u64, size: u64) -> AddCheckpoint {
        let proof = if old == 0 { Vec::new() } else { consistency_proof(old, size, source).unwrap() };
        AddCheckpoint { old_size: old, proof, note: note(source, size) }
    }

    #[test]
    fn a_witness_cosigns_a_growing_log_and_its_cosignature_verifies() {
        let witness = witness();
        let log = source(40, 0);
        let (state, line) = witness.add_checkpoint(&request(&log, 0, 10), &WitnessState::new(), 1_800_000_000).unwrap();
        assert_eq!(state[ORIGIN].size, 10);
        let text = Note::parse(&note(&log, 10)).unwrap().text;
        let public = witness.key.verifying_key();
        assert_eq!(verify_cosignature(&text, &line, &witness.name, &public), Some(1_800_000_000));
        assert_eq!(
            verify_cosignature(&note::Note::parse(&note(&log, 11)).unwrap().text, &line, &witness.name, &public),
            None
        );
        let (state, _) = witness.add_checkpoint(&request(&log, 10, 25), &state, 1_800_000_001).unwrap();
        assert_eq!(state[ORIGIN].size, 25);
        // The same checkpoint again: cosigned again (nothing changes).
        let (again, _) = witness.add_checkpoint(&request(&log, 25, 25), &state, 1_800_000_002).unwrap();
        assert_eq!(again, state);
        // A checkpoint with the cosignature appended counts one cosigner.
        let mut signed = SignedCheckpoint::from_note(&note(&log, 25), &log_key().verifying_key()).unwrap();
        let (_, line) = witness.add_checkpoint(&request(&log, 25, 25), &state, 5).unwrap();
        if let crate::audit::checkpoint::Form::Note { cosignatures, .. } = &mut signed.form {
            cosignatures.push(line);
        }
        let witnesses = [(witness.name.clone(), public)];
        assert_eq!(count_cosigners(&signed, &witnesses), 1);
        let stranger = [(witness.name.clone(), SigningKey::from_bytes(&[3; 32]).verifying_key())];
        assert_eq!(count_cosigners(&signed, &stranger), 0);
    }

    #[test]
    fn a_witness_refuses_forks_smaller_trees_and_strangers() {
        let witness = witness();
        let log = source(40, 0);
        let (state, _) = witness.add_checkpoint(&request(&log, 0, 20), &WitnessState::new(), 1).unwrap();
        let fork = source(40, 0xff);
        // Another history, proven from the size the witness holds: the proof cannot verify.
        let forked =
            AddCheckpoint { old_size: 20, proof: consistency_proof(20, 30, &fork).unwrap(), note: note(&fork, 30) };
        assert_eq!(witness.add_checkpoint(&forked, &state, 2).unwrap_err().status(), 422);
        // Another root at the same size: a conflict.
        let same_size = AddCheckpoint { old_size: 20, proof: Vec::new(), note: note(&fork, 20) };
        assert_eq!(witness.add_checkpoint(&same_size, &state, 2).unwrap_err().status(), 409);
        // A smaller tree after a larger one: the old size is not the witness's (409, its size).
        let smaller = request(&log, 0, 10);
        assert_eq!(
            witness.add_checkpoint(&smaller, &state, 2).unwrap_err(),
            WitnessError::Conflict { size: 20, why: String::new() }
        );
        let smaller = AddCheckpoint { old_size: 20, proof: Vec::new(), note: note(&log, 10) };
        assert_eq!(witness.add_checkpoint(&smaller, &state, 2).unwrap_err().status(), 400);
        // A note signed by another key, or of an unknown log.
        let mut stranger = request(&log, 20, 30);
        stranger.note = Checkpoint::parse_note_text(&Note::parse(&stranger.note).unwrap().text)
            .unwrap()
            .1
            .sign(ORIGIN, &SigningKey::from_bytes(&[8; 32]))
            .to_note()
            .unwrap();
        assert_eq!(witness.add_checkpoint(&stranger, &state, 2).unwrap_err().status(), 403);
        let mut unknown = request(&log, 20, 30);
        unknown.note = unknown.note.replace(ORIGIN, "other.example/log");
        assert_eq!(witness.add_checkpoint(&unknown, &state, 2).unwrap_err().status(), 404);
        // A flipped bit in a proof hash.
        let mut flipped = request(&log, 20, 30);
        flipped.proof[0][0] ^= 1;
        assert_eq!(witness.add_checkpoint(&flipped, &state, 2).unwrap_err().status(), 422);
    }

    #[test]
    fn request_bodies_round_trip_and_malformed_ones_are_refused() {
        let log = source(40, 0);
        let request = request(&log, 13, 30);
        assert_eq!(AddCheckpoint::parse(&request.to_body()), Ok(request.clone()));
        for bad in ["old 1\n", "old 01\n\nx", "new 1\n\nx", "old 1\n!!!\n\nx"] {
            assert_eq!(AddCheckpoint::parse(bad).unwrap_err().status(), 400, "{bad:?}");
        }
    }

    #[test]
    fn the_witness_verifier_key_names_type_4() {
        let key = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let text = verifier_key("witness.example/w1", &key);
        let parts: Vec<&str> = text.split('+').collect();
        assert_eq!(
            parts[..2],
            ["witness.example/w1", &format!("{:08x}", cosignature_key_id("witness.example/w1", &key))]
        );
        let encoded = BASE64.decode(parts[2]).unwrap();
        assert_eq!((encoded[0], &encoded[1..]), (COSIGNATURE_TYPE, key.as_bytes().as_slice()));
    }
}
