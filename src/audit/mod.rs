//! Tamper evidence over records: the hash chain, the Merkle tree over record hashes and its
//! proofs ([`merkle`]), signed checkpoints ([`checkpoint`]) and the signing key ([`keys`]). No
//! sled, no store: functions take record bytes or hashes and return hashes, proofs and verdicts.
//! `docs/AUDIT.md` specifies every byte for an independent verifier.

pub mod checkpoint;
pub mod hex;
pub mod keys;
pub mod merkle;
pub mod tower;

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

    /// The test vectors of `docs/AUDIT.md` §9, for implementers of other verifiers.
    #[test]
    fn documented_test_vectors() {
        use chrono::TimeZone;

        use super::checkpoint::Checkpoint;
        use super::merkle::{MemoryNodeSource, consistency_proof, inclusion_proof, tree_root};

        let hex = |bytes: &[u8]| hex::encode(bytes);
        let golden_body = concat!(
            "0100000000000000010000000000000000000000096d656d6265722d4a500000",
            "0000693e6fe8000000000193a5b07c1e7cc39c553f1e2d4c5b6a000000000002",
            "4a50000000054a6170616e000000000000000000000000000000000000000000",
            "00",
        );
        let golden_body = hex::decode::<97>(golden_body).unwrap();
        assert_eq!(
            hex(&chain_hash(&GENESIS_HASH, &golden_body)),
            "cb61110ac3857a798ca732e2c84c824e0bf1badb75f8f644d67f210073cd5e06"
        );

        let records: Vec<Hash> = (0..7u8).map(|i| [i; 32]).collect();
        let source = MemoryNodeSource::new(&records);
        let root = |size| hex(&tree_root(size, &source).unwrap());
        assert_eq!(root(0), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
        assert_eq!(root(1), "232b17a92a13d46fdeeba07519406dcdad6d67b7399159364b5e26af0ab95bcf");
        assert_eq!(root(2), "601ae0d333efaf511cc72652be96836dc134955fc1c681ff185f99b5a12b2ae5");
        assert_eq!(root(3), "3f97043de3a7a8fe71e55454f9f9dead4e44301744481419a20754c5a4f5ee38");
        assert_eq!(root(7), "86e6ed55103cc18ad02044adebbe358f7bbad2c542c086973de8a1813e3bb83e");
        let (h2, h01, h456, h3) = (
            "ada21777220442b46d8e0b3fe5a5099502eca1cb91e919758c33a320bc9f2d88",
            "601ae0d333efaf511cc72652be96836dc134955fc1c681ff185f99b5a12b2ae5",
            "f02ce904154b86be4b9d50197ed65fb6feb317d8ea48141fc54285554c390dfa",
            "7e14f3d3c9ad356fc347f27541758e9af6fa7b71480d1933065abd0b649f3f8d",
        );
        let hexes = |proof: Vec<Hash>| proof.iter().map(|hash| hex(hash)).collect::<Vec<_>>();
        assert_eq!(hexes(inclusion_proof(3, 7, &source).unwrap()), [h2, h01, h456]);
        assert_eq!(hexes(consistency_proof(3, 7, &source).unwrap()), [h2, h3, h01, h456]);

        let checkpoint = Checkpoint {
            position: 7,
            root: tree_root(7, &source).unwrap(),
            view_digest: None,
            time: chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 0).unwrap() + chrono::Duration::milliseconds(250),
        };
        assert_eq!(
            hex(&checkpoint.signing_message()),
            concat!(
                "7061782d6c656467657220636865636b706f696e742076310a0000000000000007",
                "86e6ed55103cc18ad02044adebbe358f7bbad2c542c086973de8a1813e3bb83e",
                "0000000069a43148",
                "0ee6b280",
                "00",
                "0000000000000000000000000000000000000000000000000000000000000000",
            )
        );
        let signed = checkpoint.sign(&ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32]));
        let file: serde_json::Value = serde_json::from_str(&signed.to_json()).unwrap();
        assert_eq!(
            file,
            serde_json::json!({
                "position": 7,
                "root": "86e6ed55103cc18ad02044adebbe358f7bbad2c542c086973de8a1813e3bb83e",
                "view_digest": null,
                "time": "2026-03-01T12:30:00.250Z",
                "key_id": "7bc9f7e9dc1a0621",
                "public_key": "0d7550754e0800a5d237eef5826035766b9b3e5a15868a940ab289958788e3b0",
                "signature": concat!(
                    "65226191a62e310e279e18969af467759d5733dbd078c08e3d3b62226de351c7",
                    "2d02da56ce01d5c3a021a7219ec593383bd98586692d94637dd84409cc23c20c",
                ),
            })
        );
    }
}
