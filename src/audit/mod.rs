//! Tamper evidence over records: the hash chain. (Merkle tree, checkpoints and proofs build on
//! it.) No sled: functions take record bytes and return hashes.

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

/// Checks that `records` (in log order, each `(hash, body)`) continue the chain from `prev`,
/// and returns the index of the first record whose hash does not match.
pub fn first_chain_break<'a>(prev: Hash, records: impl IntoIterator<Item = (&'a Hash, &'a [u8])>) -> Option<usize> {
    let mut prev = prev;
    for (i, (hash, body)) in records.into_iter().enumerate() {
        if chain_hash(&prev, body) != *hash {
            return Some(i);
        }
        prev = *hash;
    }
    None
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
        let ok = hashes.iter().zip(bodies);
        assert_eq!(first_chain_break(GENESIS_HASH, ok), None);
        let changed: [&[u8]; 3] = [b"one", b"tw0", b"three"];
        assert_eq!(first_chain_break(GENESIS_HASH, hashes.iter().zip(changed)), Some(1));
        let swapped = [(&hashes[1], bodies[1]), (&hashes[0], bodies[0])];
        assert_eq!(first_chain_break(GENESIS_HASH, swapped), Some(0));
    }
}
