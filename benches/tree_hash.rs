//! The Merkle tree's hash, side by side in one run: RFC 6962 with SHA-256 (the ledger's tree,
//! [`Sha256Tree`]) against the same layout with BLAKE3 (the tree of format-1 checkpoints,
//! [`Blake3Tree`]):
//! - `tree_append/*`: appending 1,000,000 record chain hashes to a [`MerkleFrontier`] of each,
//!   then taking its root; and to the writer's [`SubtreeTower`] (SHA-256 only), which also
//!   reports the completed subtree roots the writer stores;
//! - `tree_node/*`: one node hash, `H(0x01 ‖ left ‖ right)` (65 bytes in);
//! - `tree_leaf/*`: one leaf hash, `H(0x00 ‖ chain hash)` (33 bytes in).
//!
//! Run: `cargo bench --bench tree_hash`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pax_ledger::audit::merkle::{Blake3Tree, MerkleFrontier, Sha256Tree, TreeHash};
use pax_ledger::audit::tower::SubtreeTower;
use pax_ledger::audit::{self, GENESIS_HASH, Hash};
use pax_ledger::store;

const LEAVES: u64 = 1_000_000;

/// The chain hashes of `n` records (BLAKE3 over the previous hash and a small body), as the
/// writer would append them.
fn chain_hashes(n: u64) -> Vec<Hash> {
    let mut prev = GENESIS_HASH;
    (0..n)
        .map(|i| {
            prev = audit::chain_hash(&prev, &i.to_be_bytes());
            prev
        })
        .collect()
}

fn frontier_root<T: TreeHash>(hashes: &[Hash]) -> Hash {
    let mut frontier = MerkleFrontier::<T>::default();
    for hash in hashes {
        frontier.append(hash);
    }
    frontier.root()
}

fn tree_append(c: &mut Criterion) {
    let hashes = chain_hashes(LEAVES);
    let mut group = c.benchmark_group("tree_append");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(LEAVES));
    group.bench_function("frontier_sha256_1000000", |b| b.iter(|| frontier_root::<Sha256Tree>(black_box(&hashes))));
    group.bench_function("frontier_blake3_1000000", |b| b.iter(|| frontier_root::<Blake3Tree>(black_box(&hashes))));
    group.bench_function("tower_sha256_1000000", |b| {
        b.iter(|| {
            let mut tower = SubtreeTower::new(store::SUBTREE_LEVEL_MIN);
            let mut completed = Vec::new();
            let mut stored = 0usize;
            for hash in black_box(&hashes) {
                tower.append(hash, &mut completed);
                stored += completed.len();
                completed.clear();
            }
            stored
        })
    });
    group.finish();
}

fn tree_node_and_leaf(c: &mut Criterion) {
    let (left, right, record): (Hash, Hash, Hash) = ([1; 32], [2; 32], [3; 32]);
    let mut group = c.benchmark_group("tree_node");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sha256_65_bytes", |b| b.iter(|| Sha256Tree::node(black_box(&left), black_box(&right))));
    group.bench_function("blake3_65_bytes", |b| b.iter(|| Blake3Tree::node(black_box(&left), black_box(&right))));
    group.finish();

    let mut group = c.benchmark_group("tree_leaf");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sha256_33_bytes", |b| b.iter(|| Sha256Tree::leaf(black_box(&record))));
    group.bench_function("blake3_33_bytes", |b| b.iter(|| Blake3Tree::leaf(black_box(&record))));
    group.finish();
}

criterion_group!(benches, tree_node_and_leaf, tree_append);
criterion_main!(benches);
