//! The Merkle tree over record chain hashes: RFC 6962 §2.1 exactly, with SHA-256, so that
//! off-the-shelf verifiers (Go's `sumdb/tlog`, Trillian's, `tlog-tiles` clients) check its
//! inclusion and consistency proofs (RFC 6962 §2.1.1–2.1.2, verified as in RFC 9162 §2.1.3.2
//! and §2.1.4.2). `docs/AUDIT.md` specifies all of it for other implementers.
//!
//! Leaf `i` (from 0) is the record at log position `i + 1`; the tree of size `n` covers positions
//! `1..=n`. Its hashes:
//!
//! - leaf: `SHA-256(0x00 ‖ record chain hash)` ([`leaf_hash`]): the record's 32-byte chain hash is
//!   the leaf's data, so `tlog.RecordHash(chain hash)` is our leaf hash
//! - node: `SHA-256(0x01 ‖ left ‖ right)` ([`node_hash`])
//! - the tree of `n > 1` leaves is a node over the tree of the first `k` leaves and the tree of
//!   the other `n - k`, `k` being the largest power of two smaller than `n`
//! - the empty tree: `SHA-256("")` ([`empty_root`])
//!
//! Checkpoints of format 1 (before the ledger spoke signed notes) signed the same layout hashed
//! with BLAKE3 ([`Blake3Tree`]); [`MerkleFrontier<Blake3Tree>`] still computes their roots, so that
//! they stay verifiable against the log.
//!
//! Nothing here needs every leaf in memory. [`MerkleFrontier`] keeps the at most 64 roots of the
//! perfect subtrees that cover a log, enough to append and to give the root. Proofs are built
//! from a [`NodeSource`], which answers the hash of an *aligned perfect* subtree (`2^k` leaves
//! starting at a multiple of `2^k`): every other subtree hash a proof needs is put together from
//! those here, so storage need only keep such blocks.

use std::marker::PhantomData;

use sha2::{Digest, Sha256};

use super::Hash;

/// The first byte hashed into a leaf (RFC 6962's domain separation).
pub const LEAF_PREFIX: u8 = 0x00;

/// The first byte hashed into an interior node.
pub const NODE_PREFIX: u8 = 0x01;

/// The version of the byte layout [`MerkleFrontier::encode`] writes; its first byte.
pub const FRONTIER_FORMAT: u8 = 1;

/// The hash function of a tree of the RFC 6962 layout.
pub trait TreeHash {
    /// The hash of the leaf whose data is `record_hash`: `H(0x00 ‖ record_hash)`.
    fn leaf(record_hash: &Hash) -> Hash;
    /// The hash of an interior node: `H(0x01 ‖ left ‖ right)`.
    fn node(left: &Hash, right: &Hash) -> Hash;
    /// The root of the tree of no leaves: `H("")`.
    fn empty() -> Hash;
}

/// The ledger's tree: RFC 6962 with SHA-256.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sha256Tree;

/// The tree that checkpoints of format 1 signed: the same layout with BLAKE3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Blake3Tree;

impl TreeHash for Sha256Tree {
    fn leaf(record_hash: &Hash) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update([LEAF_PREFIX]);
        hasher.update(record_hash);
        hasher.finalize().into()
    }

    fn node(left: &Hash, right: &Hash) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update([NODE_PREFIX]);
        hasher.update(left);
        hasher.update(right);
        hasher.finalize().into()
    }

    fn empty() -> Hash {
        Sha256::digest(b"").into()
    }
}

impl TreeHash for Blake3Tree {
    fn leaf(record_hash: &Hash) -> Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[LEAF_PREFIX]);
        hasher.update(record_hash);
        *hasher.finalize().as_bytes()
    }

    fn node(left: &Hash, right: &Hash) -> Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[NODE_PREFIX]);
        hasher.update(left);
        hasher.update(right);
        *hasher.finalize().as_bytes()
    }

    fn empty() -> Hash {
        *blake3::hash(b"").as_bytes()
    }
}

/// The hash of the leaf that stands for a record: `SHA-256(0x00 ‖ record_hash)`, where
/// `record_hash` is the record's chain hash.
pub fn leaf_hash(record_hash: &Hash) -> Hash {
    Sha256Tree::leaf(record_hash)
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256Tree::node(left, right)
}

/// The root of the tree of no leaves: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256Tree::empty()
}

/// The roots of the perfect subtrees that cover leaves `[0, size)` — RFC 9162's "compact
/// range": one per set bit of `size`, the largest (leftmost) first. Enough to append a leaf in
/// O(log n) and to give the root, in at most 64 hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleFrontier<T: TreeHash = Sha256Tree> {
    size: u64,
    roots: Vec<Hash>,
    tree: PhantomData<T>,
}

impl<T: TreeHash> Default for MerkleFrontier<T> {
    fn default() -> Self {
        Self { size: 0, roots: Vec::new(), tree: PhantomData }
    }
}

/// Why bytes or hashes are not a [`MerkleFrontier`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrontierError {
    #[error("Merkle frontier format {found} is not the one this build reads ({FRONTIER_FORMAT})")]
    UnsupportedFormat { found: u8 },
    #[error("a Merkle frontier of {size} leaves has {expected} subtree roots, found {found}")]
    RootCount { size: u64, expected: usize, found: usize },
    #[error("a Merkle frontier encoding is {expected} bytes long, found {found}")]
    Length { expected: usize, found: usize },
}

impl MerkleFrontier<Sha256Tree> {
    /// The frontier of the ledger's empty tree (another tree's: `MerkleFrontier::<T>::default()`).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: TreeHash> MerkleFrontier<T> {
    /// The frontier of a tree of `size` leaves from the roots of its perfect subtrees, largest
    /// first (as [`MerkleFrontier::subtree_roots`] gives them): one per set bit of `size`.
    pub fn from_subtree_roots(size: u64, roots: Vec<Hash>) -> Result<Self, FrontierError> {
        let expected = size.count_ones() as usize;
        if roots.len() != expected {
            return Err(FrontierError::RootCount { size, expected, found: roots.len() });
        }
        Ok(Self { size, roots, tree: PhantomData })
    }

    /// The frontier of the first `size` leaves of `source`.
    pub fn from_source<S: NodeSource>(size: u64, source: &S) -> Result<Self, S::Error> {
        let roots =
            perfect_subtrees(0, size).map(|(start, end)| source.subtree_hash(start, end)).collect::<Result<_, _>>()?;
        Ok(Self { size, roots, tree: PhantomData })
    }

    /// Appends the leaf of a record whose chain hash is `record_hash`.
    ///
    /// # Panics
    ///
    /// If the tree already holds `u64::MAX` leaves.
    pub fn append(&mut self, record_hash: &Hash) {
        let mut carry = T::leaf(record_hash);
        // Each trailing one bit of the size is a perfect subtree as large as `carry` that it
        // completes: merge them, as in a binary increment.
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.roots.pop().expect("one root per set bit of the size");
            carry = T::node(&left, &carry);
            size >>= 1;
        }
        self.roots.push(carry);
        self.size = self.size.checked_add(1).expect("a Merkle tree holds at most u64::MAX leaves");
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree's root hash (RFC 6962's MTH).
    pub fn root(&self) -> Hash {
        fold_subtree_roots::<T>(&self.roots).unwrap_or_else(T::empty)
    }

    /// The roots of the perfect subtrees covering `[0, size)`, largest first.
    pub fn subtree_roots(&self) -> &[Hash] {
        &self.roots
    }

    /// A deterministic encoding, to persist as one value: `u8` [`FRONTIER_FORMAT`], `u64`
    /// size (big-endian), then the subtree roots largest first, 32 bytes each (as many as `size`
    /// has set bits).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::encoded_len(self.size));
        bytes.push(FRONTIER_FORMAT);
        bytes.extend_from_slice(&self.size.to_be_bytes());
        for root in &self.roots {
            bytes.extend_from_slice(root);
        }
        bytes
    }

    /// Reads back what [`MerkleFrontier::encode`] wrote, and only that.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrontierError> {
        let Some((&format, rest)) = bytes.split_first() else {
            return Err(FrontierError::Length { expected: Self::encoded_len(0), found: 0 });
        };
        if format != FRONTIER_FORMAT {
            return Err(FrontierError::UnsupportedFormat { found: format });
        }
        let Some((size, roots)) = rest.split_first_chunk::<8>() else {
            return Err(FrontierError::Length { expected: Self::encoded_len(0), found: bytes.len() });
        };
        let size = u64::from_be_bytes(*size);
        if bytes.len() != Self::encoded_len(size) {
            return Err(FrontierError::Length { expected: Self::encoded_len(size), found: bytes.len() });
        }
        let roots = roots.chunks_exact(32).map(|root| root.try_into().expect("32-byte chunks")).collect();
        Ok(Self { size, roots, tree: PhantomData })
    }

    fn encoded_len(size: u64) -> usize {
        1 + 8 + 32 * size.count_ones() as usize
    }
}

/// Hashes of aligned perfect subtrees of one log's Merkle tree: what proofs are built from.
pub trait NodeSource {
    /// Why a hash could not be had (a storage error, a range beyond the log).
    type Error;

    /// The Merkle hash of leaves `[start, end)`, where `end - start` is a power of two and
    /// `start` a multiple of it. For a single leaf that is its [`leaf_hash`], not the record's
    /// chain hash.
    fn subtree_hash(&self, start: u64, end: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofRequestError<E> {
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a tree of {old_size} leaves is not a prefix of one of {new_size}: sizes out of order")]
    SizesOutOfOrder { old_size: u64, new_size: u64 },
    #[error("the node source failed: {0}")]
    Source(E),
}

/// The root of the tree of the first `size` leaves of `source`.
pub fn tree_root<S: NodeSource>(size: u64, source: &S) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(0, size, source)
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1 `PATH`): the
/// sibling hashes from the leaf up to the root.
pub fn inclusion_proof<S: NodeSource>(
    index: u64,
    size: u64,
    source: &S,
) -> Result<Vec<Hash>, ProofRequestError<S::Error>> {
    if index >= size {
        return Err(ProofRequestError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(index, 0, size, source, &mut proof).map_err(ProofRequestError::Source)?;
    Ok(proof)
}

/// The proof that the tree of `old_size` leaves is a prefix of the tree of `new_size` leaves
/// (RFC 6962 §2.1.2 `PROOF`). Empty when `old_size` is 0 or equals `new_size`: there is nothing
/// to prove beyond comparing roots.
pub fn consistency_proof<S: NodeSource>(
    old_size: u64,
    new_size: u64,
    source: &S,
) -> Result<Vec<Hash>, ProofRequestError<S::Error>> {
    if old_size > new_size {
        return Err(ProofRequestError::SizesOutOfOrder { old_size, new_size });
    }
    let mut proof = Vec::new();
    if old_size > 0 && old_size < new_size {
        subproof(old_size, 0, new_size, true, source, &mut proof).map_err(ProofRequestError::Source)?;
    }
    Ok(proof)
}

/// `PATH(m, D[start:end])`, appending to `proof`.
fn path<S: NodeSource>(m: u64, start: u64, end: u64, source: &S, proof: &mut Vec<Hash>) -> Result<(), S::Error> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(m, start, start + k, source, proof)?;
        proof.push(range_hash(start + k, end, source)?);
    } else {
        path(m - k, start + k, end, source, proof)?;
        proof.push(range_hash(start, start + k, source)?);
    }
    Ok(())
}

/// `SUBPROOF(m, D[start:end], b)`, appending to `proof`.
fn subproof<S: NodeSource>(
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    source: &S,
    proof: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == n {
        if !complete {
            proof.push(range_hash(start, end, source)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, start, start + k, complete, source, proof)?;
        proof.push(range_hash(start + k, end, source)?);
    } else {
        subproof(m - k, start + k, end, false, source, proof)?;
        proof.push(range_hash(start, start + k, source)?);
    }
    Ok(())
}

/// The largest power of two smaller than `n` (`n > 1`): where the tree of `n` leaves splits.
fn split(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[start:end])` for a non-empty range whose start is aligned to the largest perfect
/// subtree it holds — every range `PATH` and `SUBPROOF` ask for is — put together from the
/// aligned perfect subtrees that cover it.
fn range_hash<S: NodeSource>(start: u64, end: u64, source: &S) -> Result<Hash, S::Error> {
    let roots = perfect_subtrees(start, end).map(|(s, e)| source.subtree_hash(s, e)).collect::<Result<Vec<_>, _>>()?;
    Ok(fold_subtree_roots::<Sha256Tree>(&roots).expect("a non-empty range has at least one subtree"))
}

/// The perfect subtrees covering `[start, end)`, largest first: one per set bit of the range's
/// length. They are aligned when `start` is a multiple of the largest.
fn perfect_subtrees(start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut at = start;
    let mut rest = end - start;
    std::iter::from_fn(move || {
        if rest == 0 {
            return None;
        }
        let size = 1u64 << (63 - rest.leading_zeros());
        debug_assert!(at.is_multiple_of(size), "perfect subtree [{at}, {}) is not aligned", at + size);
        let range = (at, at + size);
        at += size;
        rest -= size;
        Some(range)
    })
}

/// The root of the tree whose perfect subtrees, largest first, have these roots: each is the
/// left child of a node over the rest.
fn fold_subtree_roots<T: TreeHash>(roots: &[Hash]) -> Option<Hash> {
    let (last, rest) = roots.split_last()?;
    Some(rest.iter().rev().fold(*last, |right, left| T::node(left, &right)))
}

/// A [`NodeSource`] over record chain hashes held in memory, with every aligned perfect subtree
/// hash precomputed (about two hashes per leaf): for tests and offline tools.
#[derive(Clone, Debug, Default)]
pub struct MemoryNodeSource {
    /// `levels[j][i]` is the hash of leaves `[i·2^j, (i+1)·2^j)`.
    levels: Vec<Vec<Hash>>,
}

/// A subtree a [`MemoryNodeSource`] was asked for that it does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("leaves [{start}, {end}) are not an aligned perfect subtree of the {leaves} leaves held")]
pub struct NodeRangeError {
    pub start: u64,
    pub end: u64,
    pub leaves: u64,
}

impl MemoryNodeSource {
    /// A source over the records whose chain hashes are given, in log order.
    pub fn new<'a>(record_hashes: impl IntoIterator<Item = &'a Hash>) -> Self {
        let mut source = Self::default();
        for record_hash in record_hashes {
            source.push(record_hash);
        }
        source
    }

    /// Appends the leaf of the next record.
    pub fn push(&mut self, record_hash: &Hash) {
        let mut hash = leaf_hash(record_hash);
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let nodes = &self.levels[level];
            if nodes.len() % 2 == 1 {
                return;
            }
            hash = node_hash(&nodes[nodes.len() - 2], &nodes[nodes.len() - 1]);
            level += 1;
        }
    }

    /// The number of leaves held.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Whether no leaf is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NodeSource for MemoryNodeSource {
    type Error = NodeRangeError;

    fn subtree_hash(&self, start: u64, end: u64) -> Result<Hash, NodeRangeError> {
        end.checked_sub(start)
            .filter(|width| width.is_power_of_two() && start.is_multiple_of(*width))
            .and_then(|width| self.levels.get(width.trailing_zeros() as usize)?.get((start / width) as usize))
            .copied()
            .ok_or(NodeRangeError { start, end, leaves: self.len() })
    }
}

/// Why a proof does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a tree of {old_size} leaves cannot be a prefix of one of {new_size}")]
    SizesOutOfOrder { old_size: u64, new_size: u64 },
    #[error("the proof has {found} hashes where these sizes need {expected}")]
    ProofLength { expected: usize, found: usize },
    #[error("the proof leads to another root than the one given")]
    RootMismatch,
    #[error("the proof does not lead to the old root given")]
    OldRootMismatch,
    #[error("the proof does not lead to the new root given")]
    NewRootMismatch,
}

/// Checks that the record with chain hash `record_hash` is leaf `index` of the tree of `size`
/// leaves whose root is `root`, given its audit path (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    record_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(VerifyError::ProofLength { expected, found: proof.len() });
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = leaf_hash(record_hash);
    for p in proof {
        if s_n == 0 {
            return Err(VerifyError::ProofLength { expected, found: proof.len() });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(VerifyError::ProofLength { expected, found: proof.len() });
    }
    if r != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`, given a consistency proof (RFC 9162 §2.1.4.2).
/// Equal sizes need an empty proof and equal roots; an old size of 0 needs an empty proof and
/// the empty tree's root as the old root (every tree extends the empty one).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if old_size > new_size {
        return Err(VerifyError::SizesOutOfOrder { old_size, new_size });
    }
    let expected = consistency_proof_len(old_size, new_size);
    if proof.len() != expected {
        return Err(VerifyError::ProofLength { expected, found: proof.len() });
    }
    if old_size == 0 {
        return if *old_root == empty_root() { Ok(()) } else { Err(VerifyError::OldRootMismatch) };
    }
    if old_size == new_size {
        return if old_root == new_root { Ok(()) } else { Err(VerifyError::RootMismatch) };
    }
    // When the old tree is perfect, its root is the first hash of the walk and the proof omits it.
    let (&first, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        proof.split_first().expect("a proof between different non-zero sizes is not empty")
    };
    let mut f_n = old_size - 1;
    let mut s_n = new_size - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut f_r = first;
    let mut s_r = first;
    for c in rest {
        if s_n == 0 {
            return Err(VerifyError::ProofLength { expected, found: proof.len() });
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(VerifyError::ProofLength { expected, found: proof.len() });
    }
    if f_r != *old_root {
        return Err(VerifyError::OldRootMismatch);
    }
    if s_r != *new_root {
        return Err(VerifyError::NewRootMismatch);
    }
    Ok(())
}

/// How many hashes the audit path of leaf `index` in a tree of `size` leaves has (`index <
/// size`): one per level where the paths to the leaf and to the last leaf part ("inner"), plus
/// one per left sibling above that ("border").
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    (inner + border) as usize
}

/// How many hashes a consistency proof between these sizes has (`old_size <= new_size`).
fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    if old_size == 0 || old_size == new_size {
        return 0;
    }
    // The walk starts at the old tree's rightmost perfect subtree; its root is in the proof
    // unless that subtree is the whole old tree.
    let shift = old_size.trailing_zeros();
    let seed = usize::from(!old_size.is_power_of_two());
    seed + inclusion_proof_len((old_size - 1) >> shift, ((new_size - 1) >> shift) + 1)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;

    /// Record hashes 0, 1, 2, …: distinct and easy to reproduce.
    fn record_hashes(n: u64) -> Vec<Hash> {
        (0..n).map(|i| *blake3::hash(&i.to_be_bytes()).as_bytes()).collect()
    }

    /// RFC 6962's MTH, written as the definition reads.
    fn naive_root(records: &[Hash]) -> Hash {
        match records.len() {
            0 => empty_root(),
            1 => leaf_hash(&records[0]),
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&naive_root(&records[..k]), &naive_root(&records[k..]))
            }
        }
    }

    /// One shared source of 100,000 leaves for the property tests: a tree of any smaller size is
    /// a prefix of it.
    fn big_source() -> &'static (Vec<Hash>, MemoryNodeSource) {
        static SOURCE: OnceLock<(Vec<Hash>, MemoryNodeSource)> = OnceLock::new();
        SOURCE.get_or_init(|| {
            let records = record_hashes(100_000);
            let source = MemoryNodeSource::new(&records);
            (records, source)
        })
    }

    fn flip(hash: &Hash, bit: usize) -> Hash {
        let mut flipped = *hash;
        flipped[bit / 8 % 32] ^= 1 << (bit % 8);
        flipped
    }

    #[test]
    fn the_split_is_the_largest_power_of_two_below_n() {
        for (n, k) in [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1 << 40, 1 << 39), (u64::MAX, 1 << 63)] {
            assert_eq!(split(n), k, "n = {n}");
        }
    }

    #[test]
    fn the_hashes_are_sha_256_with_rfc_6962_prefixes() {
        let record = [7; 32];
        let sha = |bytes: &[u8]| -> Hash { Sha256::digest(bytes).into() };
        assert_eq!(leaf_hash(&record), sha(&[&[0u8][..], &record].concat()));
        assert_eq!(node_hash(&[1; 32], &[2; 32]), sha(&[&[1u8][..], &[1; 32], &[2; 32]].concat()));
        assert_eq!(MerkleFrontier::<Sha256Tree>::new().root(), sha(&[]));
        // RFC 6962's empty tree is SHA-256 of the empty string.
        assert_eq!(
            crate::audit::hex::encode(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// The tree of format-1 checkpoints: the same layout with BLAKE3, and the roots `docs/AUDIT.md`
    /// gave for it.
    #[test]
    fn the_format_1_tree_is_the_same_layout_with_blake3() {
        let record = [7; 32];
        assert_eq!(Blake3Tree::leaf(&record), *blake3::hash(&[&[0u8][..], &record].concat()).as_bytes());
        assert_eq!(
            Blake3Tree::node(&[1; 32], &[2; 32]),
            *blake3::hash(&[&[1u8][..], &[1; 32], &[2; 32]].concat()).as_bytes()
        );
        let mut frontier = MerkleFrontier::<Blake3Tree>::default();
        assert_eq!(frontier.root(), *blake3::hash(&[]).as_bytes());
        let roots: Vec<String> = (0..7u8)
            .map(|i| {
                frontier.append(&[i; 32]);
                crate::audit::hex::encode(&frontier.root())
            })
            .collect();
        assert_eq!(roots[0], "232b17a92a13d46fdeeba07519406dcdad6d67b7399159364b5e26af0ab95bcf");
        assert_eq!(roots[2], "3f97043de3a7a8fe71e55454f9f9dead4e44301744481419a20754c5a4f5ee38");
        assert_eq!(roots[6], "86e6ed55103cc18ad02044adebbe358f7bbad2c542c086973de8a1813e3bb83e");
    }

    #[test]
    fn roots_up_to_70_leaves_match_the_definition() {
        let records = record_hashes(70);
        let mut frontier = MerkleFrontier::<Sha256Tree>::new();
        let mut incremental = MemoryNodeSource::default();
        for n in 0..=70usize {
            let expected = naive_root(&records[..n]);
            assert_eq!(frontier.root(), expected, "frontier, n = {n}");
            assert_eq!(frontier.size(), n as u64);
            assert_eq!(frontier.subtree_roots().len(), n.count_ones() as usize);
            let source = MemoryNodeSource::new(&records[..n]);
            assert_eq!(tree_root(n as u64, &source), Ok(expected), "source, n = {n}");
            assert_eq!(tree_root(n as u64, &big_source().1), Ok(naive_root(&big_source().0[..n])), "prefix, n = {n}");
            assert_eq!(tree_root(n as u64, &incremental), Ok(expected), "pushed, n = {n}");
            assert_eq!(MerkleFrontier::from_source(n as u64, &source).as_ref(), Ok(&frontier));
            if n < 70 {
                frontier.append(&records[n]);
                incremental.push(&records[n]);
            }
        }
    }

    #[test]
    fn the_frontier_matches_the_source_at_large_sizes() {
        let (records, source) = big_source();
        let mut frontier = MerkleFrontier::<Sha256Tree>::new();
        for (i, record) in records.iter().enumerate() {
            frontier.append(record);
            let n = i as u64 + 1;
            if n.is_power_of_two() || (n + 1).is_power_of_two() || n.is_multiple_of(9_973) || n == records.len() as u64
            {
                assert_eq!(Ok(frontier.root()), tree_root(n, source), "n = {n}");
            }
        }
    }

    #[test]
    fn every_inclusion_proof_up_to_64_leaves_verifies() {
        let records = record_hashes(64);
        let source = MemoryNodeSource::new(&records);
        for size in 1..=64u64 {
            let root = naive_root(&records[..size as usize]);
            for index in 0..size {
                let proof = inclusion_proof(index, size, &source).unwrap();
                assert_eq!(proof.len(), inclusion_proof_len(index, size));
                assert_eq!(verify_inclusion(&records[index as usize], index, size, &proof, &root), Ok(()));
            }
        }
    }

    #[test]
    fn every_consistency_proof_up_to_64_leaves_verifies() {
        let records = record_hashes(64);
        let source = MemoryNodeSource::new(&records);
        for new_size in 0..=64u64 {
            let new_root = naive_root(&records[..new_size as usize]);
            for old_size in 0..=new_size {
                let old_root = naive_root(&records[..old_size as usize]);
                let proof = consistency_proof(old_size, new_size, &source).unwrap();
                assert_eq!(proof.len(), consistency_proof_len(old_size, new_size), "{old_size} → {new_size}");
                assert_eq!(verify_consistency(old_size, new_size, &old_root, &new_root, &proof), Ok(()));
            }
        }
    }

    #[test]
    fn rfc_6962_example_proofs_have_the_documented_shape() {
        // RFC 6962 §2.1.3: the tree of seven leaves d0..d6.
        let records = record_hashes(7);
        let source = MemoryNodeSource::new(&records);
        let leaf = |i: usize| leaf_hash(&records[i]);
        let node = |range: std::ops::Range<usize>| naive_root(&records[range]);
        assert_eq!(inclusion_proof(0, 7, &source), Ok(vec![leaf(1), node(2..4), node(4..7)]));
        assert_eq!(inclusion_proof(3, 7, &source), Ok(vec![leaf(2), node(0..2), node(4..7)]));
        assert_eq!(inclusion_proof(4, 7, &source), Ok(vec![leaf(5), leaf(6), node(0..4)]));
        assert_eq!(inclusion_proof(6, 7, &source), Ok(vec![node(4..6), node(0..4)]));
        assert_eq!(consistency_proof(3, 7, &source), Ok(vec![leaf(2), leaf(3), node(0..2), node(4..7)]));
        assert_eq!(consistency_proof(4, 7, &source), Ok(vec![node(4..7)]));
        assert_eq!(consistency_proof(6, 7, &source), Ok(vec![node(4..6), leaf(6), node(0..4)]));
    }

    #[test]
    fn tampered_inclusion_proofs_fail() {
        let records_20 = record_hashes(20);
        let records = &records_20[..13];
        let source = MemoryNodeSource::new(records);
        let root = naive_root(records);
        let check = |record: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash| {
            verify_inclusion(record, index, size, proof, root)
        };
        for index in 0..13u64 {
            let record = &records[index as usize];
            let proof = inclusion_proof(index, 13, &source).unwrap();
            assert_eq!(check(record, index, 13, &proof, &root), Ok(()));
            assert_eq!(check(&flip(record, 3), index, 13, &proof, &root), Err(VerifyError::RootMismatch));
            assert_eq!(check(record, index, 13, &proof, &flip(&root, 200)), Err(VerifyError::RootMismatch));
            for i in 0..proof.len() {
                let mut tampered = proof.clone();
                tampered[i] = flip(&tampered[i], 77);
                assert_eq!(check(record, index, 13, &tampered, &root), Err(VerifyError::RootMismatch));
            }
            let mut longer = proof.clone();
            longer.push(root);
            assert!(matches!(check(record, index, 13, &longer, &root), Err(VerifyError::ProofLength { .. })));
            assert!(check(record, index, 13, &proof[..proof.len() - 1], &root).is_err());
            for other in (0..13).filter(|&other| other != index) {
                assert!(check(record, other, 13, &proof, &root).is_err(), "index {index} claimed as {other}");
            }
            // The size is bound to the root by the signed checkpoint: a proof for one size does not
            // verify against another size's root.
            for size in (index + 1..=20).filter(|&size| size != 13) {
                let other_root = naive_root(&records_20[..size as usize]);
                assert!(check(record, index, size, &proof, &other_root).is_err(), "size {size}");
            }
        }
        assert_eq!(check(&records[0], 13, 13, &[], &root), Err(VerifyError::IndexOutOfRange { index: 13, size: 13 }));
        assert_eq!(inclusion_proof(13, 13, &source), Err(ProofRequestError::IndexOutOfRange { index: 13, size: 13 }));
    }

    #[test]
    fn tampered_consistency_proofs_fail() {
        let records_22 = record_hashes(22);
        let records = &records_22[..21];
        let source = MemoryNodeSource::new(records);
        let new_root = naive_root(records);
        for old_size in 1..21u64 {
            let old_root = naive_root(&records[..old_size as usize]);
            let proof = consistency_proof(old_size, 21, &source).unwrap();
            let check = |old_size, new_size, old_root: &Hash, new_root: &Hash, proof: &[Hash]| {
                verify_consistency(old_size, new_size, old_root, new_root, proof)
            };
            assert_eq!(check(old_size, 21, &old_root, &new_root, &proof), Ok(()));
            assert!(check(old_size, 21, &flip(&old_root, 1), &new_root, &proof).is_err());
            assert!(check(old_size, 21, &old_root, &flip(&new_root, 9), &proof).is_err());
            for i in 0..proof.len() {
                let mut tampered = proof.clone();
                tampered[i] = flip(&tampered[i], 130);
                assert!(check(old_size, 21, &old_root, &new_root, &tampered).is_err(), "{old_size}: hash {i}");
            }
            let mut longer = proof.clone();
            longer.push(new_root);
            assert!(check(old_size, 21, &old_root, &new_root, &longer).is_err());
            assert!(check(old_size, 21, &old_root, &new_root, &proof[1..]).is_err());
            // The sizes are bound to the roots by the signed checkpoints: a proof between two sizes
            // does not verify between the roots of two others.
            for (old, new) in [(old_size + 1, 21), (old_size - 1, 21), (old_size, 20), (old_size, 22)] {
                let (old_root, new_root) =
                    (naive_root(&records_22[..old as usize]), naive_root(&records_22[..new as usize]));
                assert!(check(old, new, &old_root, &new_root, &proof).is_err(), "{old} → {new} for {old_size} → 21");
            }
        }
        let empty = empty_root();
        assert_eq!(verify_consistency(0, 21, &empty, &new_root, &[]), Ok(()));
        assert_eq!(verify_consistency(0, 21, &new_root, &new_root, &[]), Err(VerifyError::OldRootMismatch));
        assert_eq!(verify_consistency(21, 21, &new_root, &new_root, &[]), Ok(()));
        assert_eq!(verify_consistency(21, 21, &new_root, &empty, &[]), Err(VerifyError::RootMismatch));
        assert_eq!(
            verify_consistency(21, 21, &new_root, &new_root, &[empty]),
            Err(VerifyError::ProofLength { expected: 0, found: 1 })
        );
        assert_eq!(
            verify_consistency(22, 21, &new_root, &new_root, &[]),
            Err(VerifyError::SizesOutOfOrder { old_size: 22, new_size: 21 })
        );
        assert_eq!(
            consistency_proof(22, 21, &source),
            Err(ProofRequestError::SizesOutOfOrder { old_size: 22, new_size: 21 })
        );
    }

    #[test]
    fn a_history_rewritten_before_the_old_size_is_not_consistent() {
        let records = record_hashes(40);
        let mut rewritten = records.clone();
        rewritten[5] = flip(&rewritten[5], 0);
        let honest = MemoryNodeSource::new(&records);
        let forged = MemoryNodeSource::new(&rewritten);
        for old_size in 1..40u64 {
            let old_root = tree_root(old_size, &honest).unwrap();
            let new_root = tree_root(40, &forged).unwrap();
            let proof = consistency_proof(old_size, 40, &forged).unwrap();
            let verdict = verify_consistency(old_size, 40, &old_root, &new_root, &proof);
            assert_eq!(verdict.is_ok(), old_size <= 5, "old size {old_size}");
        }
    }

    #[test]
    fn the_source_refuses_subtrees_it_does_not_hold() {
        let source = MemoryNodeSource::new(&record_hashes(10));
        assert_eq!(source.len(), 10);
        assert!(source.subtree_hash(8, 10).is_ok());
        for (start, end) in [(8, 12), (10, 11), (1, 3), (0, 3), (4, 3), (0, 0), (0, 16)] {
            assert_eq!(source.subtree_hash(start, end), Err(NodeRangeError { start, end, leaves: 10 }));
        }
        assert_eq!(
            inclusion_proof(3, 11, &source),
            Err(ProofRequestError::Source(NodeRangeError { start: 10, end: 11, leaves: 10 }))
        );
    }

    #[test]
    fn the_frontier_encoding_round_trips_and_refuses_other_bytes() {
        let records = record_hashes(70);
        let mut frontier = MerkleFrontier::<Sha256Tree>::new();
        for record in &records {
            let bytes = frontier.encode();
            assert_eq!(bytes.len(), 9 + 32 * frontier.size().count_ones() as usize);
            assert_eq!(MerkleFrontier::<Sha256Tree>::decode(&bytes), Ok(frontier.clone()));
            frontier.append(record);
        }
        let bytes = frontier.encode();
        assert_eq!(&bytes[..9], &[1, 0, 0, 0, 0, 0, 0, 0, 70]);
        assert_eq!(
            MerkleFrontier::<Sha256Tree>::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrontierError::UnsupportedFormat { found: 2 })
        );
        assert_eq!(MerkleFrontier::<Sha256Tree>::decode(&[]), Err(FrontierError::Length { expected: 9, found: 0 }));
        assert_eq!(
            MerkleFrontier::<Sha256Tree>::decode(&bytes[..8]),
            Err(FrontierError::Length { expected: 9, found: 8 })
        );
        assert_eq!(
            MerkleFrontier::<Sha256Tree>::decode(&bytes[..40]),
            Err(FrontierError::Length { expected: 105, found: 40 })
        );
        assert_eq!(
            MerkleFrontier::<Sha256Tree>::decode(&[bytes.as_slice(), &[0]].concat()),
            Err(FrontierError::Length { expected: 105, found: 106 })
        );
        let restored = MerkleFrontier::<Sha256Tree>::from_subtree_roots(70, frontier.subtree_roots().to_vec()).unwrap();
        assert_eq!(restored.root(), naive_root(&records));
        assert_eq!(
            MerkleFrontier::<Sha256Tree>::from_subtree_roots(71, frontier.subtree_roots().to_vec()),
            Err(FrontierError::RootCount { size: 71, expected: 4, found: 3 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_proofs_in_large_trees_verify(size in 1u64..=100_000, index_seed: u64, old_seed: u64, bit in 0usize..256) {
            let (records, source) = big_source();
            let index = index_seed % size;
            let old_size = old_seed % (size + 1);
            let root = tree_root(size, source).unwrap();
            let old_root = tree_root(old_size, source).unwrap();
            let record = &records[index as usize];

            let proof = inclusion_proof(index, size, source).unwrap();
            prop_assert_eq!(verify_inclusion(record, index, size, &proof, &root), Ok(()));
            prop_assert_eq!(verify_inclusion(&flip(record, bit), index, size, &proof, &root), Err(VerifyError::RootMismatch));

            let proof = consistency_proof(old_size, size, source).unwrap();
            prop_assert_eq!(verify_consistency(old_size, size, &old_root, &root, &proof), Ok(()));
            if old_size > 0 && old_size < size {
                prop_assert!(verify_consistency(old_size, size, &flip(&old_root, bit), &root, &proof).is_err());
                prop_assert!(verify_consistency(old_size, size, &old_root, &flip(&root, bit), &proof).is_err());
            }
        }
    }
}
