//! The roots of the Merkle tree's large aligned subtrees, as appends complete them: what the
//! ledger persists (one root per 2^`min_level` leaves, amortised) so that any proof needs at
//! most one block of leaves recomputed. Pure: leaves in, completed roots out.

use super::Hash;
use super::merkle::{leaf_hash, node_hash};

/// A completed aligned perfect subtree: (level, index, root) for leaves
/// `[index·2^level, (index+1)·2^level)`.
pub type SubtreeRoot = (u8, u64, Hash);

/// Follows appends and reports each aligned perfect subtree of at least 2^`min_level` leaves
/// when its last leaf arrives.
#[derive(Clone, Debug)]
pub struct SubtreeTower {
    min_level: u8,
    size: u64,
    /// Leaf hashes of the current, incomplete block of 2^`min_level` leaves.
    block: Vec<Hash>,
    /// Completed subtrees not yet merged into a larger one, levels strictly decreasing.
    upper: Vec<(u8, Hash)>,
}

/// The root of a perfect subtree over node hashes (a power-of-two count).
pub fn perfect_root(mut nodes: Vec<Hash>) -> Hash {
    assert!(nodes.len().is_power_of_two(), "a perfect subtree has a power-of-two number of leaves");
    while nodes.len() > 1 {
        nodes = nodes.chunks_exact(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
    }
    nodes[0]
}

/// The aligned perfect subtrees covering leaves `[0, size)`, largest first: (level, start).
pub fn decomposition(size: u64) -> Vec<(u8, u64)> {
    let mut start = 0;
    let mut out = Vec::new();
    for level in (0..64u8).rev() {
        if size & (1 << level) != 0 {
            out.push((level, start));
            start += 1 << level;
        }
    }
    out
}

impl SubtreeTower {
    pub fn new(min_level: u8) -> Self {
        Self { min_level, size: 0, block: Vec::new(), upper: Vec::new() }
    }

    /// A tower after `size` leaves: `upper` the roots of the subtrees of [`decomposition`] of at
    /// least 2^`min_level` leaves (largest first), `tail` the chain hashes of the leaves after
    /// them.
    pub fn restore(min_level: u8, size: u64, upper: Vec<(u8, Hash)>, tail: &[Hash]) -> Self {
        let block_leaves = size % (1 << min_level);
        assert_eq!(tail.len() as u64, block_leaves, "the tail is the incomplete block");
        Self { min_level, size, block: tail.iter().map(leaf_hash).collect(), upper }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf (a record's chain hash); pushes every subtree it completes to `completed`.
    pub fn append(&mut self, record_hash: &Hash, completed: &mut Vec<SubtreeRoot>) {
        self.append_leaf(leaf_hash(record_hash), completed);
    }

    /// Appends a leaf by its leaf hash ([`leaf_hash`] of the record's chain hash).
    pub fn append_leaf(&mut self, leaf: Hash, completed: &mut Vec<SubtreeRoot>) {
        self.block.push(leaf);
        self.size += 1;
        if self.block.len() < 1 << self.min_level {
            return;
        }
        let root = perfect_root(std::mem::take(&mut self.block));
        self.complete_block(root, completed);
    }

    /// Appends a whole aligned block of 2^`min_level` leaves by its root.
    ///
    /// # Panics
    ///
    /// If the tower is not at a block boundary.
    pub fn append_block(&mut self, root: Hash, completed: &mut Vec<SubtreeRoot>) {
        assert!(self.block.is_empty(), "a whole block is appended at a block boundary");
        self.size += 1 << self.min_level;
        self.complete_block(root, completed);
    }

    /// Appends what a [`LeafRun`] made of its leaves.
    pub fn append_piece(&mut self, piece: &Piece, completed: &mut Vec<SubtreeRoot>) {
        match piece {
            Piece::Leaf(leaf) => self.append_leaf(*leaf, completed),
            Piece::Block(root) => self.append_block(*root, completed),
        }
    }

    /// The block of 2^`min_level` leaves ending at the tower's size is complete, with `root`.
    fn complete_block(&mut self, root: Hash, completed: &mut Vec<SubtreeRoot>) {
        let mut level = self.min_level;
        completed.push((level, (self.size >> level) - 1, root));
        self.upper.push((level, root));
        while let [.., (left_level, left), (right_level, right)] = self.upper[..]
            && left_level == right_level
        {
            self.upper.truncate(self.upper.len() - 2);
            level = right_level + 1;
            let parent = node_hash(&left, &right);
            completed.push((level, (self.size >> level) - 1, parent));
            self.upper.push((level, parent));
        }
    }
}

/// A leaf of a [`LeafRun`], or the root of an aligned block of 2^`min_level` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    Leaf(Hash),
    Block(Hash),
}

/// A run of consecutive leaves starting at any leaf index, reduced as it grows to the roots of
/// the aligned blocks of 2^`min_level` leaves it holds whole (the leaves before its first block
/// boundary and after its last are kept as they are). Runs that follow each other, appended in
/// order to one [`SubtreeTower`], give the tower of all their leaves: so the blocks of
/// separate parts of a log can be hashed in parallel.
#[derive(Clone, Debug)]
pub struct LeafRun {
    min_level: u8,
    /// The index of the next leaf.
    next: u64,
    /// Leaves since the last block boundary (or since the start).
    pending: Vec<Hash>,
    pieces: Vec<Piece>,
}

impl LeafRun {
    /// A run whose first leaf will have index `first`.
    pub fn new(min_level: u8, first: u64) -> Self {
        Self { min_level, next: first, pending: Vec::new(), pieces: Vec::new() }
    }

    /// Appends the next leaf, by its leaf hash ([`leaf_hash`] of the record's chain hash).
    pub fn push(&mut self, leaf: Hash) {
        let block = 1u64 << self.min_level;
        if self.next.is_multiple_of(block) {
            // The leaves before the run's first block boundary stay leaves.
            self.pieces.extend(self.pending.drain(..).map(Piece::Leaf));
        }
        self.pending.push(leaf);
        self.next += 1;
        if self.next.is_multiple_of(block) && self.pending.len() as u64 == block {
            self.pieces.push(Piece::Block(perfect_root(std::mem::take(&mut self.pending))));
        }
    }

    /// The run, in order: leaves, block roots, leaves.
    pub fn finish(mut self) -> Vec<Piece> {
        self.pieces.extend(self.pending.drain(..).map(Piece::Leaf));
        self.pieces
    }
}

#[cfg(test)]
mod tests {
    use super::super::merkle::{MemoryNodeSource, NodeSource};
    use super::*;

    fn hashes(n: u64) -> Vec<Hash> {
        (0..n).map(|i| *blake3::hash(&i.to_be_bytes()).as_bytes()).collect()
    }

    #[test]
    fn every_completed_subtree_is_reported_once_with_the_tree_s_hash() {
        let leaves = hashes(64 * 5 + 3);
        let source = MemoryNodeSource::new(&leaves);
        let mut tower = SubtreeTower::new(3);
        let mut completed = Vec::new();
        for leaf in &leaves {
            tower.append(leaf, &mut completed);
        }
        // Level 3 (8 leaves): 40 blocks; level 4: 20; 5: 10; 6: 5; 7: 2; 8: 1.
        let count = |level| completed.iter().filter(|(l, _, _)| *l == level).count();
        assert_eq!([3, 4, 5, 6, 7, 8].map(count), [40, 20, 10, 5, 2, 1]);
        for (level, index, root) in &completed {
            let start = index << level;
            assert_eq!(*root, source.subtree_hash(start, start + (1 << level)).unwrap(), "{level}/{index}");
        }
    }

    #[test]
    fn a_restored_tower_continues_as_if_it_never_stopped() {
        let leaves = hashes(200);
        let mut whole = SubtreeTower::new(3);
        let mut expected = Vec::new();
        for leaf in &leaves {
            whole.append(leaf, &mut expected);
        }
        for stop in [0u64, 1, 7, 8, 9, 64, 100, 199] {
            let mut first = SubtreeTower::new(3);
            let mut completed = Vec::new();
            for leaf in &leaves[..stop as usize] {
                first.append(leaf, &mut completed);
            }
            let source = MemoryNodeSource::new(&leaves[..stop as usize]);
            let upper: Vec<_> = decomposition(stop)
                .into_iter()
                .filter(|(level, _)| *level >= 3)
                .map(|(level, start)| (level, source.subtree_hash(start, start + (1 << level)).unwrap()))
                .collect();
            let tail = &leaves[(stop - stop % 8) as usize..stop as usize];
            let mut restored = SubtreeTower::restore(3, stop, upper, tail);
            for leaf in &leaves[stop as usize..] {
                restored.append(leaf, &mut completed);
            }
            assert_eq!(completed, expected, "stopped after {stop}");
        }
    }

    #[test]
    fn runs_cut_anywhere_give_the_tower_of_all_their_leaves() {
        let leaves = hashes(8 * 9 + 5);
        let mut whole = SubtreeTower::new(3);
        let mut expected = Vec::new();
        for leaf in &leaves {
            whole.append(leaf, &mut expected);
        }
        for cuts in [vec![], vec![1], vec![8], vec![3, 4], vec![5, 30, 31, 64], vec![7, 9, 16, 17, 70, 76]] {
            let mut bounds = vec![0];
            bounds.extend(&cuts);
            bounds.push(leaves.len());
            let mut tower = SubtreeTower::new(3);
            let mut completed = Vec::new();
            let mut blocks = 0;
            for range in bounds.windows(2) {
                let mut run = LeafRun::new(3, range[0] as u64);
                for leaf in &leaves[range[0]..range[1]] {
                    run.push(leaf_hash(leaf));
                }
                for piece in run.finish() {
                    blocks += usize::from(matches!(piece, Piece::Block(_)));
                    tower.append_piece(&piece, &mut completed);
                }
            }
            assert_eq!(completed, expected, "cut at {cuts:?}");
            assert_eq!(tower.size(), leaves.len() as u64);
            // Every block lying whole inside one run was reduced there.
            let whole_blocks = bounds.windows(2).map(|r| (r[1] / 8).saturating_sub(r[0].div_ceil(8))).sum::<usize>();
            assert_eq!(blocks, whole_blocks, "cut at {cuts:?}");
        }
    }

    #[test]
    #[should_panic(expected = "block boundary")]
    fn a_block_is_appended_at_a_boundary_only() {
        let mut tower = SubtreeTower::new(3);
        tower.append(&[1; 32], &mut Vec::new());
        tower.append_block([2; 32], &mut Vec::new());
    }

    #[test]
    fn the_decomposition_covers_the_tree_largest_first() {
        assert_eq!(decomposition(0), []);
        assert_eq!(decomposition(13), [(3, 0), (2, 8), (0, 12)]);
        assert_eq!(decomposition(1024), [(10, 0)]);
    }
}
