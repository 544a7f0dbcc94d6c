//! Signed checkpoints: the ledger's statement, under its Ed25519 key, that at a given time its log
//! held `position` records whose Merkle root is `root` (and, optionally, that its views hashed to
//! `view_digest`). Whoever holds the public key can check one, and with a consistency proof that
//! a later one extends it.
//!
//! # The signed message
//!
//! The signature (Ed25519, RFC 8032, over the message itself) covers exactly
//! [`SIGNING_MESSAGE_LEN`] (110) bytes, all integers big-endian:
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
//! # The file form
//!
//! `checkpoint --save FILE` writes one JSON object (see [`SignedCheckpoint::to_json`]):
//! `position` (a number), `root` (hex), `view_digest` (hex or `null`), `time` (RFC 3339, UTC,
//! with as many fraction digits as the nanoseconds need), `key_id`, `public_key` and `signature`
//! (hex). Hex is lowercase on output; either case is read. Unknown fields are refused.

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::Hash;
use super::hex::{self, HexError};
use super::keys::key_id;

/// The first bytes of every checkpoint signing message: names what is signed, and its version,
/// so that a signature over one thing can never be taken for a signature over another.
pub const SIGNING_PREFIX: &[u8; 25] = b"pax-ledger checkpoint v1\n";

/// The length of a checkpoint signing message.
pub const SIGNING_MESSAGE_LEN: usize = 110;

/// What the ledger states at a point of its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The number of records in the log: the position of the last one (0 when empty).
    pub position: u64,
    /// The Merkle root of the tree of the first `position` records.
    pub root: Hash,
    /// The digest of the projections at `position`, when the checkpoint states it.
    pub view_digest: Option<Hash>,
    /// When the checkpoint was made, by the server's clock.
    pub time: DateTime<Utc>,
}

/// A checkpoint with the public key that signed it and the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "CheckpointFile", try_from = "CheckpointFile")]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
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
}

impl Checkpoint {
    /// The exact bytes the signature covers (layout in the module documentation).
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

    /// Signs the checkpoint with `key`.
    pub fn sign(self, key: &SigningKey) -> SignedCheckpoint {
        let signature = key.sign(&self.signing_message());
        SignedCheckpoint { checkpoint: self, public_key: key.verifying_key(), signature }
    }
}

impl SignedCheckpoint {
    /// The id of the key that signed (see [`key_id`]).
    pub fn key_id(&self) -> String {
        key_id(&self.public_key)
    }

    /// Accepts the checkpoint if it was signed by `trusted` — the ledger's public key as the
    /// auditor obtained it, never the key the checkpoint carries — and its contents are the ones
    /// signed. Strict Ed25519 verification: weak keys and non-canonical signatures are refused.
    pub fn verify(&self, trusted: &VerifyingKey) -> Result<(), CheckpointError> {
        if self.public_key != *trusted {
            return Err(CheckpointError::KeyMismatch { expected: key_id(trusted), found: self.key_id() });
        }
        trusted
            .verify_strict(&self.checkpoint.signing_message(), &self.signature)
            .map_err(|_| CheckpointError::BadSignature)
    }

    /// The file form: one pretty-printed JSON object (module documentation), without a final
    /// line feed. The compact form for JSON Lines is `serde_json::to_string`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a checkpoint always serialises")
    }

    /// Reads the file form back. The signature is not checked here: call
    /// [`SignedCheckpoint::verify`] with the trusted key.
    pub fn from_json(text: &str) -> Result<Self, CheckpointError> {
        Self::try_from(serde_json::from_str::<CheckpointFile>(text)?)
    }
}

/// The JSON form of a [`SignedCheckpoint`], field by field.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    position: u64,
    root: String,
    view_digest: Option<String>,
    time: String,
    key_id: String,
    public_key: String,
    signature: String,
}

impl From<SignedCheckpoint> for CheckpointFile {
    fn from(signed: SignedCheckpoint) -> Self {
        let checkpoint = &signed.checkpoint;
        Self {
            position: checkpoint.position,
            root: hex::encode(&checkpoint.root),
            view_digest: checkpoint.view_digest.map(|digest| hex::encode(&digest)),
            time: checkpoint.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            key_id: signed.key_id(),
            public_key: hex::encode(signed.public_key.as_bytes()),
            signature: hex::encode(&signed.signature.to_bytes()),
        }
    }
}

impl TryFrom<CheckpointFile> for SignedCheckpoint {
    type Error = CheckpointError;

    fn try_from(file: CheckpointFile) -> Result<Self, CheckpointError> {
        let field = |field: &'static str| move |source: HexError| CheckpointError::Hex { field, source };
        let root = hex::decode(&file.root).map_err(field("root"))?;
        let view_digest = file.view_digest.as_deref().map(hex::decode).transpose().map_err(field("view_digest"))?;
        let time = DateTime::parse_from_rfc3339(&file.time)
            .map_err(|_| CheckpointError::Time(file.time.clone()))?
            .with_timezone(&Utc);
        let public_key = hex::decode(&file.public_key).map_err(field("public_key"))?;
        let public_key = VerifyingKey::from_bytes(&public_key).map_err(|_| CheckpointError::PublicKey)?;
        let expected = key_id(&public_key);
        if file.key_id.to_ascii_lowercase() != expected {
            return Err(CheckpointError::KeyId { expected, found: file.key_id });
        }
        let signature = Signature::from_bytes(&hex::decode(&file.signature).map_err(field("signature"))?);
        Ok(Self { checkpoint: Checkpoint { position: file.position, root, view_digest, time }, public_key, signature })
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
            time: Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 0).unwrap() + chrono::Duration::nanoseconds(250_000_001),
        }
    }

    fn flip(bytes: &mut [u8], bit: usize) {
        bytes[bit / 8 % bytes.len()] ^= 1 << (bit % 8);
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
            let signed = checkpoint(view_digest).sign(&key());
            signed.verify(&key().verifying_key()).unwrap();
            let stranger = SigningKey::from_bytes(&[0x11; 32]).verifying_key();
            assert!(matches!(signed.verify(&stranger), Err(CheckpointError::KeyMismatch { .. })));
            // Re-signed by another key that swaps itself in: still not the trusted key.
            let forged = signed.checkpoint.clone().sign(&SigningKey::from_bytes(&[0x11; 32]));
            assert!(matches!(forged.verify(&key().verifying_key()), Err(CheckpointError::KeyMismatch { .. })));
        }
    }

    /// Every bit of every field is in the signed message, so that flipping it changes the message;
    /// and a changed message fails verification. (Checking the signature for every bit would take
    /// seconds in a debug build: one bit per byte is checked against the signature.)
    #[test]
    fn a_flipped_bit_in_any_field_fails() {
        let trusted = key().verifying_key();
        let signed = checkpoint(Some([0xcd; 32])).sign(&key());
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
        let mut absent = checkpoint(None).sign(&key());
        absent.checkpoint.view_digest = Some([0; 32]);
        assert!(matches!(absent.verify(&trusted), Err(CheckpointError::BadSignature)));
    }

    #[test]
    fn the_json_form_round_trips() {
        for view_digest in [None, Some([0xcd; 32])] {
            let signed = checkpoint(view_digest).sign(&key());
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
        let signed = checkpoint(Some([0xcd; 32])).sign(&key());
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
