//! An independent verifier, written from `docs/AUDIT.md` alone, checks what the production code
//! in `pax_ledger::audit` makes: inclusion and consistency proofs, Merkle roots, and checkpoint
//! signatures. It has its own hashing, its own proof loops and its own reading of the checkpoint
//! file; from production it takes only the proofs and the signed checkpoints under test. If the
//! two disagree, either the code or the document is wrong.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{TimeZone, Utc};
use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};
use pax_ledger::audit::checkpoint::Checkpoint;
use pax_ledger::audit::hex;
use pax_ledger::audit::merkle::{MemoryNodeSource, consistency_proof, inclusion_proof};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

type Hash = [u8; 32];

// ---------------------------------------------------------------------------------------------
// The verifier, from docs/AUDIT.md §3–5

fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// §3: `leaf_hash(h) = SHA-256(0x00 ‖ h)`.
pub(crate) fn leaf(record_hash: &Hash) -> Hash {
    sha256(&[&[0x00][..], record_hash].concat())
}

/// §3: `node_hash(l, r) = SHA-256(0x01 ‖ l ‖ r)`.
pub(crate) fn node(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01][..], left, right].concat())
}

/// §3: MTH, as the definition reads.
pub(crate) fn mth(records: &[Hash]) -> Hash {
    match records.len() {
        0 => sha256(b""),
        1 => leaf(&records[0]),
        n => {
            let mut k = 1;
            while 2 * k < n {
                k *= 2;
            }
            node(&mth(&records[..k]), &mth(&records[k..]))
        }
    }
}

/// §4, step by step.
pub(crate) fn inclusion_holds(index: u64, size: u64, record_hash: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf(record_hash);
    for p in proof {
        if s == 0 {
            return false;
        }
        if f % 2 == 1 || f == s {
            r = node(p, &r);
            if f % 2 == 0 {
                while f % 2 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// §5, step by step.
pub(crate) fn consistency_holds(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty() && *old_root == sha256(b"");
    }
    if proof.is_empty() {
        return false;
    }
    let mut path = proof.to_vec();
    if old_size & (old_size - 1) == 0 {
        path.insert(0, *old_root);
    }
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f % 2 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f % 2 == 1 || f == s {
            fr = node(c, &fr);
            sr = node(c, &sr);
            if f % 2 == 0 {
                while f % 2 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

// ---------------------------------------------------------------------------------------------
// Logs to prove things about

/// Chain hashes of a log of `n` records, as §2 builds them (bodies are arbitrary bytes here).
fn chain(n: usize, seed: u8) -> Vec<Hash> {
    let mut prev = [0; 32];
    (0..n)
        .map(|i| {
            let body = [&[seed][..], &(i as u64).to_be_bytes()].concat();
            prev = *blake3::hash(&[&prev[..], &body].concat()).as_bytes();
            prev
        })
        .collect()
}

/// One log of 8,192 records, its production node source, and the independent roots of every
/// prefix (computed incrementally with the frontier fold of §3, checked against MTH below).
struct Log {
    records: Vec<Hash>,
    source: MemoryNodeSource,
    roots: Vec<Hash>,
}

const LOG_LEN: usize = 8_192;

fn log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let records = chain(LOG_LEN, 0);
        let source = MemoryNodeSource::new(&records);
        // §3's frontier: roots of the perfect subtrees, largest first, with their sizes.
        let mut frontier: Vec<(u64, Hash)> = Vec::new();
        let mut roots = vec![mth(&[])];
        for record in &records {
            let mut carry = (1, leaf(record));
            while let Some(&(size, left)) = frontier.last().filter(|(size, _)| *size == carry.0) {
                frontier.pop();
                carry = (2 * size, node(&left, &carry.1));
            }
            frontier.push(carry);
            let (last, rest) = frontier.split_last().unwrap();
            roots.push(rest.iter().rev().fold(last.1, |right, (_, left)| node(left, &right)));
        }
        Log { records, source, roots }
    })
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut flipped = *hash;
    flipped[bit / 8 % 32] ^= 1 << (bit % 8);
    flipped
}

// ---------------------------------------------------------------------------------------------
// Proofs

#[test]
fn the_independent_roots_follow_the_definition() {
    let log = log();
    for n in (0..=70).chain([127, 128, 129, 1_000, 4_095, 4_096, 4_097, LOG_LEN]) {
        assert_eq!(log.roots[n], mth(&log.records[..n]), "size {n}");
    }
}

#[test]
fn every_small_proof_passes_the_independent_verifier() {
    let log = log();
    for size in 0..=40u64 {
        let root = log.roots[size as usize];
        for index in 0..size {
            let proof = inclusion_proof(index, size, &log.source).unwrap();
            assert!(inclusion_holds(index, size, &log.records[index as usize], &proof, &root), "{index} in {size}");
        }
        for old_size in 0..=size {
            let proof = consistency_proof(old_size, size, &log.source).unwrap();
            let old_root = log.roots[old_size as usize];
            assert!(consistency_holds(old_size, size, &old_root, &root, &proof), "{old_size} → {size}");
        }
    }
}

#[test]
fn a_rewritten_log_fails_the_independent_verifier() {
    let honest = log();
    let mut rewritten = honest.records[..100].to_vec();
    rewritten[41] = flip(&rewritten[41], 5);
    let forged = MemoryNodeSource::new(&rewritten);
    let forged_root = mth(&rewritten);
    // The rewritten record's inclusion, against the honest checkpoint: refused.
    let proof = inclusion_proof(41, 100, &forged).unwrap();
    assert!(inclusion_holds(41, 100, &rewritten[41], &proof, &mth(&rewritten)));
    assert!(!inclusion_holds(41, 100, &rewritten[41], &proof, &honest.roots[100]));
    // Consistency from an honest checkpoint to the rewritten log: refused once it covers record 41.
    for old_size in 1..100u64 {
        let proof = consistency_proof(old_size, 100, &forged).unwrap();
        let holds = consistency_holds(old_size, 100, &honest.roots[old_size as usize], &forged_root, &proof);
        assert_eq!(holds, old_size <= 41, "old size {old_size}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn production_inclusion_proofs_pass_the_independent_verifier(
        size in 1..=LOG_LEN as u64,
        index_seed: u64,
        bit in 0usize..256,
        hash_seed: usize,
    ) {
        let log = log();
        let index = index_seed % size;
        let root = log.roots[size as usize];
        let record = &log.records[index as usize];
        let proof = inclusion_proof(index, size, &log.source).unwrap();
        prop_assert!(inclusion_holds(index, size, record, &proof, &root));
        // A modified record, a modified proof hash or another root: refused.
        prop_assert!(!inclusion_holds(index, size, &flip(record, bit), &proof, &root));
        prop_assert!(!inclusion_holds(index, size, record, &proof, &flip(&root, bit)));
        if !proof.is_empty() {
            let mut tampered = proof.clone();
            let at = hash_seed % tampered.len();
            tampered[at] = flip(&tampered[at], bit);
            prop_assert!(!inclusion_holds(index, size, record, &tampered, &root));
        }
        // Another record of the log at this index: refused.
        let other = (index + 1 + index_seed % 7) % size;
        if other != index {
            prop_assert!(!inclusion_holds(index, size, &log.records[other as usize], &proof, &root));
        }
    }

    #[test]
    fn production_consistency_proofs_pass_the_independent_verifier(
        new_size in 0..=LOG_LEN as u64,
        old_seed: u64,
        bit in 0usize..256,
        hash_seed: usize,
    ) {
        let log = log();
        let old_size = old_seed % (new_size + 1);
        let (old_root, new_root) = (log.roots[old_size as usize], log.roots[new_size as usize]);
        let proof = consistency_proof(old_size, new_size, &log.source).unwrap();
        prop_assert!(consistency_holds(old_size, new_size, &old_root, &new_root, &proof));
        if old_size > 0 && old_size < new_size {
            prop_assert!(!consistency_holds(old_size, new_size, &flip(&old_root, bit), &new_root, &proof));
            prop_assert!(!consistency_holds(old_size, new_size, &old_root, &flip(&new_root, bit), &proof));
            let mut tampered = proof.clone();
            let at = hash_seed % tampered.len();
            tampered[at] = flip(&tampered[at], bit);
            prop_assert!(!consistency_holds(old_size, new_size, &old_root, &new_root, &tampered));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints, from docs/AUDIT.md §6: C2SP signed notes

pub(crate) fn unhex<const N: usize>(text: &str) -> [u8; N] {
    assert_eq!(text.len(), 2 * N, "{text}");
    let mut bytes = [0; N];
    ::hex::decode_to_slice(text, &mut bytes).unwrap();
    bytes
}

/// What a checkpoint note states, read as §6 says, after its signature by `trusted` verified:
/// (origin, size, root, time, view digest). `None` if the note does not verify.
pub(crate) fn open_note(note: &str, trusted: &VerifyingKey) -> Option<(String, u64, Hash, String, Option<Hash>)> {
    let (text, signatures) = note.split_once("\n\n")?;
    let text = format!("{text}\n");
    let mut lines = text.lines();
    let origin = lines.next()?.to_owned();
    let size = lines.next()?.parse().ok()?;
    let root: Hash = BASE64.decode(lines.next()?).ok()?.try_into().ok()?;
    let time = lines.next()?.strip_prefix("time ")?.to_owned();
    let view_digest = match lines.next() {
        Some(line) => Some(BASE64.decode(line.strip_prefix("view-digest ")?).ok()?.try_into().ok()?),
        None => None,
    };
    // The key id: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key), first four bytes.
    let key_id = &sha256(&[origin.as_bytes(), b"\n\x01", trusted.as_bytes()].concat())[..4];
    let verified = signatures.lines().any(|line| {
        let Some((name, encoded)) = line.strip_prefix("\u{2014} ").and_then(|rest| rest.split_once(' ')) else {
            return false;
        };
        let Ok(bytes) = BASE64.decode(encoded) else { return false };
        name == origin
            && bytes.len() == 68
            && &bytes[..4] == key_id
            && Signature::from_slice(&bytes[4..])
                .is_ok_and(|signature| trusted.verify(text.as_bytes(), &signature).is_ok())
    });
    verified.then_some((origin, size, root, time, view_digest))
}

#[test]
fn a_production_checkpoint_verifies_from_the_documented_note() {
    let log = log();
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let trusted = VerifyingKey::from_bytes(&key.verifying_key().to_bytes()).unwrap();
    for (position, view_digest) in [(0u64, None), (1_000, Some([0x77; 32])), (LOG_LEN as u64, None)] {
        let checkpoint = Checkpoint {
            position,
            root: log.roots[position as usize],
            view_digest,
            view_tree: None,
            time: Utc.with_ymd_and_hms(2026, 6, 30, 23, 59, 59).unwrap() + chrono::Duration::nanoseconds(123_456_789),
        };
        let signed = checkpoint.sign("ledger.example/pax", &key);
        let file: serde_json::Value = serde_json::from_str(&signed.to_json()).unwrap();
        let note = file["note"].as_str().unwrap();
        let public_key = unhex::<32>(file["public_key"].as_str().unwrap());
        assert_eq!(public_key, trusted.to_bytes(), "the file names the trusted key");
        assert_eq!(file["key_id"], hex::encode(&blake3::hash(&public_key).as_bytes()[..8]));
        let opened = open_note(note, &trusted).expect("the note verifies as documented");
        assert_eq!(opened.0, "ledger.example/pax");
        assert_eq!((opened.1, opened.2), (position, log.roots[position as usize]));
        assert_eq!(opened.3, "2026-06-30T23:59:59.123456789Z");
        assert_eq!(opened.4, view_digest);
        assert_eq!(file["root"].as_str().map(unhex::<32>), Some(log.roots[position as usize]));

        // The note with one bit of its text changed no longer verifies.
        let text_len = note.find("\n\n").unwrap();
        for at in (0..text_len).step_by(7) {
            let mut bytes = note.as_bytes().to_vec();
            bytes[at] ^= 0x01;
            let Ok(changed) = String::from_utf8(bytes) else { continue };
            assert!(open_note(&changed, &trusted).is_none(), "byte {at} of the text changed");
        }
        let stranger = SigningKey::from_bytes(&[0x43; 32]).verifying_key();
        assert!(open_note(note, &stranger).is_none(), "another key");
    }
}
