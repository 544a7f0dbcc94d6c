//! Bundle verification and import (`archive::bundle::verify`, which `verify --bundle` and `import`
//! run) on mutated valid bundles: bytes changed anywhere; lines removed, repeated and swapped;
//! JSON values replaced; and record bodies changed, alone or by a forger who then makes
//! everything else agree again (the event objects, the hash chain, the header's head, the
//! checkpoints' roots, signed again with the same key).

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

use pax_ledger::archive::bundle::{self, Verified};
use pax_ledger::audit::checkpoint::Checkpoint;
use pax_ledger::audit::merkle::MerkleFrontier;
use pax_ledger::audit::{GENESIS_HASH, hex};
use pax_ledger::store::record;

use crate::alloc::{check_bounded, measure};
use crate::mutate::{Index, JsonMutation, Mutation, apply, apply_json, json_mutation, mutated, mutation};
use crate::seeds::unhex;
use crate::{fuzz, seeds};

/// Verifies `bytes` as a bundle: never a panic or a read error (the input is in memory); a
/// failure names its place and says how many records passed, exactly those the sink received;
/// a success hands over records that are canonical and chained, and counts them right.
fn check_bundle(bytes: &[u8], pinned: bool) -> Result<(), TestCaseError> {
    let key = seeds::signing_key().verifying_key();
    let mut records = Vec::new();
    let mut checkpoints = 0;
    let (verdict, usage) = measure(|| {
        bundle::verify(bytes, pinned.then_some(&key), |item| {
            match item {
                Verified::Record { event, body, hash } => records.push((event, body, hash)),
                Verified::Checkpoint(_) => checkpoints += 1,
            }
            Ok(())
        })
    });
    check_bounded("bundle::verify", bytes.len(), usage)?;
    let verdict = verdict.map_err(|e| TestCaseError::fail(format!("an error other than a verdict: {e:#}")))?;
    match verdict {
        Err(failure) => {
            prop_assert!(!failure.reason.is_empty(), "{:?}", failure);
            prop_assert_eq!(failure.verified_up_to, Some(records.len() as u64), "{:?}", failure);
        }
        Ok(summary) => {
            prop_assert_eq!((summary.records, summary.checkpoints), (records.len() as u64, checkpoints));
            let bodies: Vec<Vec<u8>> = records.iter().map(|(_, body, _)| body.clone()).collect();
            let hashes: Vec<_> = records.iter().map(|(.., hash)| *hash).collect();
            prop_assert_eq!(&seeds::chain(&bodies), &hashes);
            prop_assert_eq!(summary.head_hash, hashes.last().copied().unwrap_or(GENESIS_HASH));
            for (i, (event, body, _)) in records.iter().enumerate() {
                prop_assert_eq!(event.position.0, i as u64 + 1);
                prop_assert_eq!(&record::encode_event(event), body);
            }
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum BundleMutation {
    /// Bytes of the whole file.
    Bytes(Vec<Mutation>),
    /// A value of one line.
    Json(Index, JsonMutation),
    RemoveLine(Index),
    RepeatLine(Index),
    SwapLines(Index, Index),
    /// Bytes of one record's body; with `forge`, everything that depends on it made to agree.
    Body {
        record: Index,
        mutations: Vec<Mutation>,
        forge: bool,
    },
}

fn bundle_mutation() -> impl Strategy<Value = BundleMutation> {
    prop_oneof![
        2 => prop::collection::vec(mutation(), 1..4).prop_map(BundleMutation::Bytes),
        3 => (any::<Index>(), json_mutation()).prop_map(|(line, mutation)| BundleMutation::Json(line, mutation)),
        1 => any::<Index>().prop_map(BundleMutation::RemoveLine),
        1 => any::<Index>().prop_map(BundleMutation::RepeatLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| BundleMutation::SwapLines(a, b)),
        4 => (any::<Index>(), prop::collection::vec(mutation(), 1..4), any::<bool>())
            .prop_map(|(record, mutations, forge)| BundleMutation::Body { record, mutations, forge }),
    ]
}

fn lines_of(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes).lines().map(str::to_owned).collect()
}

fn joined(lines: &[String]) -> Vec<u8> {
    lines.iter().flat_map(|line| [line.as_bytes(), b"\n"].concat()).collect()
}

/// Changes the body of one record line of the seed bundle (lines: header, records,
/// checkpoints) and, with `forge`, recomputes what depends on it.
fn change_body(lines: &mut [String], record: &Index, mutations: &[Mutation], forge: bool) {
    let mut values: Vec<Value> = lines.iter().map(|line| serde_json::from_str(line).expect("seed JSON")).collect();
    let records = values[0]["position"].as_u64().expect("a header") as usize;
    let at = 1 + record.index(records);
    let mut body = unhex(values[at]["body"].as_str().expect("a body"));
    for mutation in mutations {
        apply(&mut body, &[], mutation);
    }
    values[at]["body"] = hex::encode(&body).into();
    if forge {
        if let Ok(event) = record::decode_event(&body) {
            values[at]["event"] = serde_json::from_str(&bundle::event_object(&event)).expect("JSON");
        }
        let bodies: Vec<Vec<u8>> =
            values[1..=records].iter().map(|v| unhex(v["body"].as_str().expect("a body"))).collect();
        let hashes = seeds::chain(&bodies);
        let mut frontier = MerkleFrontier::new();
        let mut roots = vec![frontier.root()];
        for (value, hash) in values[1..=records].iter_mut().zip(&hashes) {
            value["hash"] = hex::encode(hash).into();
            frontier.append(hash);
            roots.push(frontier.root());
        }
        values[0]["head_hash"] = hex::encode(hashes.last().expect("records")).into();
        for value in &mut values[1 + records..] {
            let position = value["checkpoint"]["position"].as_u64().expect("a checkpoint");
            let time = value["checkpoint"]["time"].as_str().expect("a time").parse().expect("RFC 3339");
            let checkpoint =
                Checkpoint { position, root: roots[position as usize], view_digest: None, view_tree: None, time };
            value["checkpoint"] =
                serde_json::to_value(checkpoint.sign(seeds::ORIGIN, &seeds::signing_key())).expect("JSON");
        }
    }
    for (line, value) in lines.iter_mut().zip(values) {
        *line = value.to_string();
    }
}

fn mutate_bundle(seed: &[u8], mutation: &BundleMutation) -> Vec<u8> {
    let mut lines = lines_of(seed);
    let count = lines.len();
    match mutation {
        BundleMutation::Bytes(mutations) => {
            let mut bytes = seed.to_vec();
            for mutation in mutations {
                apply(&mut bytes, &[seed.to_vec()], mutation);
            }
            return bytes;
        }
        BundleMutation::Json(line, mutation) => {
            let line = &mut lines[line.index(count)];
            let mut value: Value = serde_json::from_str(line).expect("seed JSON");
            apply_json(&mut value, mutation);
            *line = value.to_string();
        }
        BundleMutation::RemoveLine(line) => drop(lines.remove(line.index(count))),
        BundleMutation::RepeatLine(line) => {
            let at = line.index(count);
            lines.insert(at, lines[at].clone());
        }
        BundleMutation::SwapLines(a, b) => lines.swap(a.index(count), b.index(count)),
        BundleMutation::Body { record, mutations, forge } => change_body(&mut lines, record, mutations, *forge),
    }
    joined(&lines)
}

fn hostile_bundles() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let seed = seeds::bundle();
    let bundles = prop_oneof![
        8 => (Just(seed.clone()), bundle_mutation()).prop_map(|(seed, mutation)| mutate_bundle(&seed, &mutation)),
        1 => mutated(vec![seed]),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ];
    (bundles, any::<bool>())
}

#[test]
fn fuzz_bundles() {
    fuzz("bundles", 400, hostile_bundles(), |(bytes, pinned)| check_bundle(&bytes, pinned));
}

#[test]
fn the_seed_bundle_verifies_and_a_forged_one_still_does() {
    let seed = seeds::bundle();
    check_bundle(&seed, true).unwrap();
    let verified = bundle::verify(seed.as_slice(), None, |_| Ok(())).unwrap().expect("the seed verifies");
    assert_eq!(verified.records, seeds::recorded().len() as u64);
    // A name changed by one letter ("United States" → "United Statfs"), everything re-made.
    let mut lines = lines_of(&seed);
    let body = unhex(serde_json::from_str::<Value>(&lines[1]).unwrap()["body"].as_str().unwrap());
    let at = body.windows(6).position(|w| w == b"States").unwrap() + 4;
    change_body(&mut lines, &Index(0), &[Mutation::SetByte(Index::of(at, body.len()), b'f')], true);
    let forged = joined(&lines);
    check_bundle(&forged, true).unwrap();
    bundle::verify(forged.as_slice(), None, |_| Ok(())).unwrap().expect("a consistent forgery verifies");
}
