//! The Ed25519 key that signs checkpoints: created once, kept in a file only its owner can read,
//! and its public half in the text form auditors are given.
//!
//! The secret key file holds two lines: [`SECRET_KEY_LABEL`], then the 32-byte Ed25519 secret
//! key (RFC 8032) as 64 lowercase hexadecimal digits. A public key is written as 64 hexadecimal
//! digits of its 32-byte encoding; its key id is the first 8 bytes of BLAKE3 of those 32 bytes,
//! in hexadecimal.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::hex::{self, HexError};

/// The first line of a secret key file: names the format, so that another file is refused rather
/// than misread.
pub const SECRET_KEY_LABEL: &str = "pax-ledger ed25519 signing key v1";

/// Permission bits a secret key file must not have: any access by group or others.
const SECRET_KEY_MODE_FORBIDDEN: u32 = 0o077;

/// Why a key could not be loaded, created or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read signing key file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write signing key file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "signing key file {path} has mode {mode:04o}: it is open to group or others and holds a secret key; \
         restrict it (chmod 600) or move it away"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is not a pax-ledger signing key file: its first line must be {SECRET_KEY_LABEL:?}")]
    Format { path: PathBuf },
    #[error("signing key file {path}: the secret key is not 32 bytes of hexadecimal: {source}")]
    SecretHex { path: PathBuf, source: HexError },
    #[error("cannot gather randomness for a new signing key: {0}")]
    Random(getrandom::Error),
    #[error("not an Ed25519 public key in hexadecimal: {0}")]
    PublicKeyHex(HexError),
    #[error("not a valid Ed25519 public key: the 32 bytes are not a curve point")]
    PublicKeyPoint,
}

/// The signing key at `path`, or, when there is no file there, a new random key written there
/// first (mode 0600, durably: written to a temporary file, synced, renamed, directory synced).
/// An existing file open to group or others is refused, never loaded.
pub fn load_or_generate(path: &Path) -> Result<SigningKey, KeyError> {
    match File::open(path) {
        Ok(file) => read_secret_key(path, file),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let mut secret = [0; 32];
            getrandom::fill(&mut secret).map_err(KeyError::Random)?;
            let key = SigningKey::from_bytes(&secret);
            write_secret_key(path, &key)?;
            Ok(key)
        }
        Err(source) => Err(KeyError::Read { path: path.to_owned(), source }),
    }
}

/// A new random key written at `path` (as [`load_or_generate`] writes one), refused if a file
/// is there already: a key is never replaced by accident.
pub fn generate(path: &Path) -> Result<SigningKey, KeyError> {
    if path.symlink_metadata().is_ok() {
        return Err(KeyError::Write { path: path.to_owned(), source: io::ErrorKind::AlreadyExists.into() });
    }
    load_or_generate(path)
}

/// The signing key at `path`, which must exist and be closed to group and others.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let file = File::open(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
    read_secret_key(path, file)
}

fn read_secret_key(path: &Path, mut file: File) -> Result<SigningKey, KeyError> {
    let read_error = |source| KeyError::Read { path: path.to_owned(), source };
    // The mode of the file opened, not of whatever the path names a moment later.
    let mode = file.metadata().map_err(read_error)?.permissions().mode();
    if mode & SECRET_KEY_MODE_FORBIDDEN != 0 {
        return Err(KeyError::TooOpen { path: path.to_owned(), mode: mode & 0o7777 });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_error)?;
    let mut lines = text.lines();
    if lines.next() != Some(SECRET_KEY_LABEL) {
        return Err(KeyError::Format { path: path.to_owned() });
    }
    let secret = hex::decode::<32>(lines.next().unwrap_or_default().trim())
        .map_err(|source| KeyError::SecretHex { path: path.to_owned(), source })?;
    if lines.any(|line| !line.trim().is_empty()) {
        return Err(KeyError::Format { path: path.to_owned() });
    }
    Ok(SigningKey::from_bytes(&secret))
}

fn write_secret_key(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let text = format!("{SECRET_KEY_LABEL}\n{}\n", hex::encode(&key.to_bytes()));
    crate::durable::replace_with(path, 0o600, |file| file.write_all(text.as_bytes()))
        .map_err(|source| KeyError::Write { path: path.to_owned(), source })
}

/// The public key as 64 lowercase hexadecimal digits: what auditors are given.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// A public key from its hexadecimal form, surrounding whitespace ignored (the contents of a
/// public key file, or a command-line argument).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = hex::decode::<32>(text.trim()).map_err(KeyError::PublicKeyHex)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::PublicKeyPoint)
}

/// The public key in the file at `path` (its hexadecimal form, as [`public_key_hex`] writes it).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
    parse_public_key(&text)
}

/// A short name for a public key: the first 8 bytes of BLAKE3 of its 32 bytes, in hexadecimal
/// (16 digits). It tells keys apart in messages and files; it does not replace the key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&blake3::hash(key.as_bytes()).as_bytes()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_key_is_written_owner_only_and_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let key = load_or_generate(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left behind");
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{SECRET_KEY_LABEL}\n{}\n", hex::encode(&key.to_bytes())));
        assert_eq!(load_or_generate(&path).unwrap().to_bytes(), key.to_bytes());
        assert_eq!(load(&path).unwrap().to_bytes(), key.to_bytes());
        let other = load_or_generate(&dir.path().join("other.key")).unwrap();
        assert_ne!(other.to_bytes(), key.to_bytes());
    }

    #[test]
    fn a_key_file_open_to_group_or_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        load_or_generate(&path).unwrap();
        for open in [0o640, 0o604, 0o620, 0o602, 0o644, 0o666] {
            fs::set_permissions(&path, fs::Permissions::from_mode(open)).unwrap();
            let error = load_or_generate(&path).unwrap_err();
            assert!(matches!(error, KeyError::TooOpen { mode, .. } if mode == open), "{open:o}: {error}");
            assert!(error.to_string().contains("chmod 600"), "{error}");
            assert!(matches!(load(&path), Err(KeyError::TooOpen { .. })));
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        load(&path).unwrap();
    }

    #[test]
    fn other_files_are_refused_as_keys() {
        let dir = tempfile::tempdir().unwrap();
        let check = |text: &str| {
            let path = dir.path().join("key");
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            load(&path).map(|_| ())
        };
        let secret = "11".repeat(32);
        assert!(check(&format!("{SECRET_KEY_LABEL}\n{secret}\n")).is_ok());
        assert!(check(&format!("{SECRET_KEY_LABEL}\n{secret}")).is_ok());
        assert!(matches!(check(&format!("{secret}\n")), Err(KeyError::Format { .. })));
        assert!(matches!(check(&format!("{SECRET_KEY_LABEL} v2\n{secret}\n")), Err(KeyError::Format { .. })));
        assert!(matches!(check(&format!("{SECRET_KEY_LABEL}\n{secret}\nmore\n")), Err(KeyError::Format { .. })));
        assert!(matches!(check(&format!("{SECRET_KEY_LABEL}\n{}\n", &secret[2..])), Err(KeyError::SecretHex { .. })));
        assert!(matches!(check(&format!("{SECRET_KEY_LABEL}\n")), Err(KeyError::SecretHex { .. })));
        assert!(matches!(load(&dir.path().join("missing")), Err(KeyError::Read { .. })));
    }

    #[test]
    fn public_keys_round_trip_through_hex() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let text = public_key_hex(&key);
        assert_eq!(text.len(), 64);
        assert_eq!(parse_public_key(&text).unwrap(), key);
        assert_eq!(parse_public_key(&format!("  {}\n", text.to_uppercase())).unwrap(), key);
        assert!(matches!(parse_public_key(&text[1..]), Err(KeyError::PublicKeyHex(_))));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.pub");
        fs::write(&path, format!("{text}\n")).unwrap();
        assert_eq!(read_public_key(&path).unwrap(), key);
        let id = key_id(&key);
        assert_eq!(id, hex::encode(&blake3::hash(&key.to_bytes()).as_bytes()[..8]));
        assert_eq!(id.len(), 16);
    }

    #[test]
    fn bytes_off_the_curve_are_not_a_public_key() {
        // y = 2 has no x on edwards25519 (2 is not (y² - 1)/(d·y² + 1) of any square).
        let mut bytes = [0; 32];
        bytes[0] = 2;
        assert!(matches!(parse_public_key(&hex::encode(&bytes)), Err(KeyError::PublicKeyPoint)));
    }
}
