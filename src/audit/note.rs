//! C2SP signed notes (`c2sp.org/signed-note`): a text ending in a newline, a blank line, and
//! signature lines `— <key name> <base64(key id ‖ signature)>`. Only Ed25519 signatures (type
//! `0x01`) are made or checked here; lines of other keys are kept as they are, so that a note
//! passes through with cosignatures it does not understand.
//!
//! - key id: the first four bytes, big-endian, of `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)`
//! - verifier key (the text form Go's `sumdb/note` and other tools take):
//!   `<name>+<key id as 8 hex digits>+<base64(0x01 ‖ public key)>`

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature type byte of Ed25519 note signatures.
pub const ED25519_TYPE: u8 = 0x01;

/// What starts a signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Notes larger than this are refused unread (the spec asks verifiers for a limit; ours hold a
/// checkpoint and at most a few dozen cosignatures).
pub const NOTE_BYTES_MAX: usize = 64 * 1024;

/// Signature lines past which a note is refused (the spec asks for at least 16).
pub const SIGNATURES_MAX: usize = 64;

/// Why text is not a signed note, or a key name is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("a note key name must be non-empty, without spaces or '+': {0:?}")]
    KeyName(String),
    #[error("the note is {0} bytes, more than {NOTE_BYTES_MAX}")]
    TooLarge(usize),
    #[error("the note holds a control character other than newline")]
    ControlCharacter,
    #[error("the note has no blank line between its text and its signatures")]
    NoSignatures,
    #[error("signature line {line} is malformed: {reason}")]
    SignatureLine { line: usize, reason: &'static str },
    #[error("the note has more than {SIGNATURES_MAX} signature lines")]
    TooManySignatures,
    #[error("not a verifier key (<name>+<8 hex digits>+<base64>): {0}")]
    VerifierKey(&'static str),
}

/// One signature line: the key name, the key id and the signature bytes after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLine {
    pub name: String,
    pub key_id: u32,
    pub signature: Vec<u8>,
}

impl SignatureLine {
    /// The line's text, without its final newline.
    pub fn to_line(&self) -> String {
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}", self.name, BASE64.encode(bytes))
    }
}

/// A note split into its text (final newline included) and its signature lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<SignatureLine>,
}

impl Note {
    /// Splits a signed note; checks its form, not its signatures.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        if note.len() > NOTE_BYTES_MAX {
            return Err(NoteError::TooLarge(note.len()));
        }
        if note.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::ControlCharacter);
        }
        // The text ends at the last blank line (the text itself may hold blank lines).
        let split = note.rfind("\n\n").ok_or(NoteError::NoSignatures)?;
        let (text, rest) = (&note[..split + 1], &note[split + 2..]);
        let Some(rest) = rest.strip_suffix('\n') else {
            return Err(NoteError::SignatureLine { line: 1, reason: "the last line does not end in a newline" });
        };
        let mut signatures = Vec::new();
        for (i, line) in rest.split('\n').enumerate() {
            let bad = |reason| NoteError::SignatureLine { line: i + 1, reason };
            if signatures.len() == SIGNATURES_MAX {
                return Err(NoteError::TooManySignatures);
            }
            let line =
                line.strip_prefix(SIGNATURE_PREFIX).ok_or(bad("it does not start with an em dash and a space"))?;
            let (name, encoded) = line.split_once(' ').ok_or(bad("no space between key name and signature"))?;
            check_key_name(name).map_err(|_| bad("the key name is empty or holds a space or '+'"))?;
            let bytes = BASE64.decode(encoded).map_err(|_| bad("the signature is not base64"))?;
            if bytes.len() < 5 {
                return Err(bad("the signature is shorter than a key id and one byte"));
            }
            let key_id = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
            signatures.push(SignatureLine { name: name.to_owned(), key_id, signature: bytes[4..].to_vec() });
        }
        if signatures.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        Ok(Self { text: text.to_owned(), signatures })
    }

    /// The signed note: the text, a blank line, one line per signature.
    pub fn to_text(&self) -> String {
        let mut note = self.text.clone();
        note.push('\n');
        for signature in &self.signatures {
            note.push_str(&signature.to_line());
            note.push('\n');
        }
        note
    }

    /// The Ed25519 signature of `key` (named `name`) over the text, if the note has its line.
    pub fn ed25519_signature(&self, name: &str, key: &VerifyingKey) -> Option<Signature> {
        let id = key_id(name, key);
        self.signatures
            .iter()
            .find(|line| line.name == name && line.key_id == id)
            .and_then(|line| Signature::from_slice(&line.signature).ok())
    }
}

/// Checks a key name (a note's origin line, for a checkpoint): non-empty, no Unicode space, no '+'.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control()) {
        return Err(NoteError::KeyName(name.to_owned()));
    }
    Ok(())
}

/// The key id of an Ed25519 key under `name`, for note signatures.
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    typed_key_id(name, ED25519_TYPE, key)
}

/// The key id of a key under `name` for signatures of type `signature_type`:
/// `SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4]`, big-endian.
pub fn typed_key_id(name: &str, signature_type: u8, key: &VerifyingKey) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', signature_type]);
    hasher.update(key.as_bytes());
    u32::from_be_bytes(hasher.finalize()[..4].try_into().expect("4 bytes"))
}

/// The signature line of `key` over `text` under `name`.
pub fn sign(text: &str, name: &str, key: &SigningKey) -> SignatureLine {
    SignatureLine {
        name: name.to_owned(),
        key_id: key_id(name, &key.verifying_key()),
        signature: key.sign(text.as_bytes()).to_bytes().to_vec(),
    }
}

/// The verifier key text of an Ed25519 key under `name`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    typed_verifier_key(name, ED25519_TYPE, key)
}

/// The verifier key text of a key under `name` for signatures of type `signature_type`:
/// `<name>+<key id, 8 hex digits>+<base64(type ‖ public key)>`.
pub fn typed_verifier_key(name: &str, signature_type: u8, key: &VerifyingKey) -> String {
    let mut encoded = vec![signature_type];
    encoded.extend_from_slice(key.as_bytes());
    format!("{name}+{:08x}+{}", typed_key_id(name, signature_type, key), BASE64.encode(encoded))
}

/// Reads a verifier key text back: the name and the key, its key id checked.
pub fn parse_verifier_key(text: &str) -> Result<(String, VerifyingKey), NoteError> {
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::VerifierKey("it has fewer than three '+'-separated parts"));
    };
    check_key_name(name).map_err(|_| NoteError::VerifierKey("the name is empty or holds a space"))?;
    if id.len() != 8 {
        return Err(NoteError::VerifierKey("the key id is not 8 hexadecimal digits"));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| NoteError::VerifierKey("the key id is not hexadecimal"))?;
    let bytes = BASE64.decode(encoded).map_err(|_| NoteError::VerifierKey("the key is not base64"))?;
    let [ED25519_TYPE, rest @ ..] = bytes.as_slice() else {
        return Err(NoteError::VerifierKey("not an Ed25519 key (type byte 0x01)"));
    };
    let key = <[u8; 32]>::try_from(rest)
        .ok()
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or(NoteError::VerifierKey("the Ed25519 key is not 32 bytes of a curve point"))?;
    if key_id(name, &key) != id {
        return Err(NoteError::VerifierKey("the key id is not the one of its name and key"));
    }
    Ok((name.to_owned(), key))
}

/// Base64 (RFC 4648 §4, padded), as notes write hashes and signatures.
pub fn base64_encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Reads base64 back; `None` unless it is exactly `N` bytes in canonical padded form.
pub fn base64_decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = BASE64.decode(text).ok()?;
    let array = <[u8; N]>::try_from(bytes).ok()?;
    (BASE64.encode(array) == text).then_some(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[0x5a; 32])
    }

    #[test]
    fn a_note_round_trips_and_keeps_unknown_signature_lines() {
        let text = "example.org/log\n7\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n";
        let mut note = Note { text: text.to_owned(), signatures: vec![sign(text, "example.org/log", &key())] };
        note.signatures.push(SignatureLine { name: "witness.example".into(), key_id: 7, signature: vec![1, 2, 3] });
        let back = Note::parse(&note.to_text()).unwrap();
        assert_eq!(back, note);
        let signature = back.ed25519_signature("example.org/log", &key().verifying_key()).unwrap();
        key().verifying_key().verify_strict(text.as_bytes(), &signature).unwrap();
        assert!(back.ed25519_signature("other.name", &key().verifying_key()).is_none());
    }

    #[test]
    fn malformed_notes_are_refused() {
        let good = Note { text: "a\n1\n".into(), signatures: vec![sign("a\n1\n", "a", &key())] }.to_text();
        assert!(Note::parse(&good).is_ok());
        for (what, bad) in [
            ("no blank line", good.replacen("\n\n", "\n", 1)),
            ("no final newline", good.trim_end().to_owned()),
            ("a tab", good.replacen('a', "a\t", 1)),
            ("not an em dash", good.replace('\u{2014}', "-")),
            ("bad base64", good.replace(" a ", " a !!!")),
            ("no signature", "a\n1\n\n".to_owned()),
        ] {
            assert!(Note::parse(&bad).is_err(), "{what}: {bad:?}");
        }
        assert!(Note::parse(&"x".repeat(NOTE_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn verifier_keys_round_trip_and_check_their_id() {
        let public = key().verifying_key();
        let text = verifier_key("pax-ledger.example/test", &public);
        assert_eq!(parse_verifier_key(&text), Ok(("pax-ledger.example/test".to_owned(), public)));
        let other_name = text.replacen("pax-ledger.example/test", "pax-ledger.example/other", 1);
        assert!(parse_verifier_key(&other_name).is_err());
        assert!(parse_verifier_key("name+1234").is_err());
        for name in ["", "a b", "a+b", "a\u{a0}b"] {
            assert!(check_key_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn base64_is_canonical() {
        let bytes = [0xab; 32];
        let text = base64_encode(&bytes);
        assert_eq!(base64_decode::<32>(&text), Some(bytes));
        assert_eq!(base64_decode::<31>(&text), None);
        assert_eq!(base64_decode::<32>(text.trim_end_matches('=')), None);
    }
}
