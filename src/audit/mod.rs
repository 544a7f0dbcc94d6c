//! Tamper evidence over records: the hash chain, the Merkle tree over record hashes and its
//! proofs ([`merkle`]), signed checkpoints ([`checkpoint`]) and the signing key ([`keys`]). No
//! sled, no store: functions take record bytes or hashes and return hashes, proofs and verdicts.
//! `docs/AUDIT.md` specifies every byte for an independent verifier.

pub mod checkpoint;
pub mod hex;
pub mod keys;
pub mod merkle;

/// A 32-byte BLAKE3 digest.
pub type Hash = [u8; 32];

/// The chain hash before the first record.
pub const GENESIS_HASH: Hash = [0; 32];

/// The chain hash of a record: BLAKE3 over the previous record's hash followed by the record's
/// canonical bytes (`store::record::encode_event`).
pub fn chain_hash(prev: &Hash, body: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev);
    hasher.update(body);
    *hasher.finalize().as_bytes()
}

/// Checks records one by one, in log order, against the chain: each must sit at the next
/// position and carry `chain_hash(previous hash, body)`.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    prev: Hash,
    next: u64,
}

/// Why a record does not continue the chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("expected position {expected}, found {found}: the log has a gap or is out of order")]
    Position { expected: u64, found: u64 },
    #[error("the chain hash does not match the record's bytes and the previous hash")]
    Hash,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self { prev: GENESIS_HASH, next: 1 }
    }
}

impl ChainVerifier {
    /// A verifier that continues a chain whose record at `position` has hash `hash`.
    pub fn after(position: u64, hash: Hash) -> Self {
        Self { prev: hash, next: position + 1 }
    }

    /// Accepts the record at `position` if it continues the chain.
    pub fn check(&mut self, position: u64, hash: &Hash, body: &[u8]) -> Result<(), ChainBreak> {
        if position != self.next {
            return Err(ChainBreak::Position { expected: self.next, found: position });
        }
        if chain_hash(&self.prev, body) != *hash {
            return Err(ChainBreak::Hash);
        }
        self.prev = *hash;
        self.next += 1;
        Ok(())
    }

    /// The last accepted position (0 before the first) and its hash.
    pub fn head(&self) -> (u64, Hash) {
        (self.next - 1, self.prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_detects_a_changed_body_and_a_reorder() {
        let bodies: [&[u8]; 3] = [b"one", b"two", b"three"];
        let mut hashes = Vec::new();
        let mut prev = GENESIS_HASH;
        for body in bodies {
            prev = chain_hash(&prev, body);
            hashes.push(prev);
        }
        let verify = |records: &[(&Hash, &[u8])]| {
            let mut verifier = ChainVerifier::default();
            records.iter().enumerate().position(|(i, (hash, body))| verifier.check(i as u64 + 1, hash, body).is_err())
        };
        assert_eq!(verify(&[(&hashes[0], bodies[0]), (&hashes[1], bodies[1]), (&hashes[2], bodies[2])]), None);
        assert_eq!(verify(&[(&hashes[0], bodies[0]), (&hashes[1], b"tw0"), (&hashes[2], bodies[2])]), Some(1));
        assert_eq!(verify(&[(&hashes[1], bodies[1]), (&hashes[0], bodies[0])]), Some(0));
    }

    #[test]
    fn the_verifier_follows_the_chain_and_names_the_break() {
        let mut verifier = ChainVerifier::default();
        let first = chain_hash(&GENESIS_HASH, b"one");
        verifier.check(1, &first, b"one").unwrap();
        assert_eq!(verifier.check(3, &[0; 32], b"two"), Err(ChainBreak::Position { expected: 2, found: 3 }));
        let second = chain_hash(&first, b"two");
        assert_eq!(verifier.check(2, &second, b"tw0"), Err(ChainBreak::Hash));
        verifier.check(2, &second, b"two").unwrap();
        assert_eq!(verifier.head(), (2, second));
    }
}
