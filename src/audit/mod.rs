//! Tamper evidence over records: the hash chain, the Merkle tree over record hashes and its
//! proofs ([`merkle`]), signed checkpoints ([`checkpoint`]) and the signing key ([`keys`]). No
//! sled, no store: functions take record bytes or hashes and return hashes, proofs and verdicts.
//! `docs/AUDIT.md` specifies every byte for an independent verifier.

pub mod checkpoint;
pub mod hex;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod tower;
pub mod witness;

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

    /// The test vectors of `docs/AUDIT.md` §9, for implementers of other verifiers. The tree's
    /// roots and proofs were computed independently (Python's hashlib, RFC 6962 as written); the
    /// note signature is the one Go's `golang.org/x/mod/sumdb/note` makes with the same key.
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
        assert_eq!(root(0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(root(1), "7f9c9e31ac8256ca2f258583df262dbc7d6f68f2a03043d5c99a4ae5a7396ce9");
        assert_eq!(root(2), "28fb81e496897e0ce886f08602392e9239b65c659041e5202163e58ad898f444");
        assert_eq!(root(3), "ba8d94b7fbcecae7b81c4c80574fe24734a6917bf9c1ecd66ff3e0c34ead4620");
        assert_eq!(root(7), "7318881c41fce3c1de3640df8e8c110c93f43f686b74204a9d1ad5b8c71c2047");
        let (h2, h01, h456, h3) = (
            "cba8c596120bdb69debbd923d92cba948bde7c7d06a465a1bb7d98d3116038fa",
            "28fb81e496897e0ce886f08602392e9239b65c659041e5202163e58ad898f444",
            "1f3f95843413191fe7521996b6b1e4147d703b1702c475a478ad25a6f6b415b4",
            "acaa04663a8547a2f70c60cc18f9378796b13c4f9a08f70d6adae662365b30c6",
        );
        let hexes = |proof: Vec<Hash>| proof.iter().map(|hash| hex(hash)).collect::<Vec<_>>();
        assert_eq!(hexes(inclusion_proof(3, 7, &source).unwrap()), [h2, h01, h456]);
        assert_eq!(hexes(consistency_proof(3, 7, &source).unwrap()), [h2, h3, h01, h456]);

        // A note signed with the key of seed 0x5a…: Go's sumdb/note signs the same text with
        // the same signature line (Ed25519 is deterministic).
        let key = ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32]);
        assert_eq!(
            note::verifier_key("pax-ledger.example/test", &key.verifying_key()),
            "pax-ledger.example/test+8e7a1513+AQ11UHVOCACl0jfu9YJgNXZrmz5aFYaKlAqyiZWHiOOw"
        );
        let checkpoint = Checkpoint {
            position: 7,
            root: [0xab; 32],
            view_digest: None,
            view_tree: None,
            time: chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 0).unwrap()
                + chrono::Duration::nanoseconds(250_000_001),
        };
        assert_eq!(
            checkpoint.sign("pax-ledger.example/test", &key).to_note().unwrap(),
            "pax-ledger.example/test\n7\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\
             time 2026-03-01T12:30:00.250000001Z\n\n\
             \u{2014} pax-ledger.example/test \
             jnoVE4fGdE986AKMEEFmxJ1xU0n8k7pIM8zAaziIIMpIK4HwV9qogF/TEF6VG/3boAHs1FVOzsmvayrQKf2RKwC+4gM=\n"
        );
    }

    /// The vectors format-1 checkpoints were documented with: a BLAKE3 tree and the 110-byte
    /// message. Checkpoints of that format are kept and still verify.
    #[test]
    fn format_1_test_vectors() {
        use chrono::TimeZone;

        use super::checkpoint::Checkpoint;
        use super::merkle::{Blake3Tree, MerkleFrontier};

        let hex = |bytes: &[u8]| hex::encode(bytes);
        let mut frontier = MerkleFrontier::<Blake3Tree>::default();
        (0..7u8).for_each(|i| frontier.append(&[i; 32]));
        assert_eq!(hex(&frontier.root()), "86e6ed55103cc18ad02044adebbe358f7bbad2c542c086973de8a1813e3bb83e");
        let checkpoint = Checkpoint {
            position: 7,
            root: frontier.root(),
            view_digest: None,
            view_tree: None,
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
        let signed = checkpoint.sign_format_1(&ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32]));
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
        signed.verify(&ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32]).verifying_key()).unwrap();
    }
}
