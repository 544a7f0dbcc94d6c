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
        self.block.push(leaf_hash(record_hash));
        self.size += 1;
        if self.block.len() < 1 << self.min_level {
            return;
        }
        let root = perfect_root(std::mem::take(&mut self.block));
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
    fn the_decomposition_covers_the_tree_largest_first() {
        assert_eq!(decomposition(0), []);
        assert_eq!(decomposition(13), [(3, 0), (2, 8), (0, 12)]);
        assert_eq!(decomposition(1024), [(10, 0)]);
    }
}
