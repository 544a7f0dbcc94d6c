//! `pax-ledger verify --data DIR` on a stopped server's directory: an intact ledger verifies up
//! to its head; a record rewritten on disk (without re-hashing) or a removed tail is reported
//! at its position.

use std::path::Path;
use std::process::Command;

use crate::support::*;

pub fn verify(data: &Path) -> (bool, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_pax-ledger"))
        .args(["verify", "--output", "json", "--data"])
        .arg(data)
        .output()
        .expect("run verify");
    let line = String::from_utf8(output.stdout).unwrap();
    let verdict = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        panic!("verify printed {line:?} ({e}); stderr: {}", String::from_utf8_lossy(&output.stderr))
    });
    (output.status.success(), verdict)
}

/// A ledger of 30 member joins (in 3 requests), stopped; returns its directory.
async fn stopped_ledger() -> tempfile::TempDir {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for batch in 0..3 {
        let events =
            (0..10).map(|i| member_joined(&format!("V{}{}", (b'A' + batch) as char, (b'A' + i) as char))).collect();
        client.append(append(events)).await.unwrap();
    }
    drop(client);
    server.stop().await.expect("a temporary directory")
}

/// The records of a chunk value: (body start, body end) for each, in order.
fn record_bodies(chunk: &[u8]) -> Vec<(usize, usize)> {
    let count = u32::from_be_bytes(chunk[1..5].try_into().unwrap()) as usize;
    let mut offset = 5;
    (0..count)
        .map(|_| {
            let len = u32::from_be_bytes(chunk[offset..offset + 4].try_into().unwrap()) as usize;
            let body = (offset + 36, offset + 36 + len);
            offset = body.1;
            body
        })
        .collect()
}

#[tokio::test]
async fn an_intact_ledger_verifies_up_to_its_head() {
    let dir = stopped_ledger().await;
    let (ok, verdict) = verify(dir.path());
    assert!(ok, "{verdict}");
    assert_eq!(verdict["verdict"], "ok");
    assert_eq!(verdict["position"], 30);
    assert_eq!(verdict["head_hash"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn a_record_rewritten_on_disk_is_reported_at_its_position() {
    let dir = stopped_ledger().await;
    {
        // An attacker with write access changes one member's name in place (same length, so the
        // record still decodes) without re-hashing the chain.
        let db = open_sled(dir.path());
        let (key, value) = db.scan_prefix(b"L").next().unwrap().unwrap();
        let first = u64::from_be_bytes(key[1..9].try_into().unwrap());
        let mut chunk = value.to_vec();
        let bodies = record_bodies(&chunk);
        let (index, at) = bodies
            .iter()
            .enumerate()
            .skip(4)
            .find_map(|(i, &(start, end))| {
                chunk[start..end].windows(11).position(|w| w == b"Participant").map(|p| (i, start + p))
            })
            .expect("a member name in the chunk");
        chunk[at] = b'Q';
        db.insert(key, chunk).unwrap();
        db.flush().unwrap();
        let position = first + index as u64;
        drop(db);
        let (ok, verdict) = verify(dir.path());
        assert!(!ok, "{verdict}");
        assert_eq!(verdict["verdict"], "failed");
        assert_eq!(verdict["at"], format!("position {position}"), "{verdict}");
        assert!(verdict["reason"].as_str().unwrap().contains("chain hash"), "{verdict}");
        assert_eq!(verdict["verified_up_to"], position - 1);
    }
}

#[tokio::test]
async fn a_removed_tail_is_reported() {
    let dir = stopped_ledger().await;
    {
        let db = open_sled(dir.path());
        let (last, _) = db.scan_prefix(b"L").next_back().unwrap().unwrap();
        db.remove(last).unwrap();
        db.flush().unwrap();
    }
    let (ok, verdict) = verify(dir.path());
    assert!(!ok, "{verdict}");
    assert_eq!(verdict["verdict"], "failed");
    assert!(verdict["at"].as_str().unwrap().starts_with("position "), "{verdict}");
}

#[test]
fn verifying_a_directory_without_a_ledger_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pax-ledger"))
        .args(["verify", "--data"])
        .arg(dir.path())
        .output()
        .expect("run verify");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no ledger"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!dir.path().join("db").exists(), "verify must not create a ledger");
}

#[tokio::test]
async fn ranges_verified_in_parallel_meet_and_report_a_break_in_a_middle_range() {
    let dir = stopped_ledger().await;
    let config = pax_ledger::store::StoreConfig::default();
    for threads in [1, 2, 3, 7] {
        let verdict = pax_ledger::ledger::verify_store(dir.path(), &config, Some(threads)).unwrap();
        assert!(verdict.is_ok(), "{threads} threads: {verdict:?}");
        assert_eq!(verdict.verified, 30);
    }
    // Rewrite position 15 (in the middle of three ranges of ten).
    {
        let db = open_sled(dir.path());
        let mut key = b"L".to_vec();
        key.extend_from_slice(&15u64.to_be_bytes());
        let (key, value) = db.range(b"L".to_vec()..=key).next_back().unwrap().unwrap();
        let first = u64::from_be_bytes(key[1..9].try_into().unwrap());
        let mut chunk = value.to_vec();
        let (start, end) = record_bodies(&chunk)[(15 - first) as usize];
        let at = start + chunk[start..end].windows(11).position(|w| w == b"Participant").unwrap();
        chunk[at] = b'Q';
        db.insert(key, chunk).unwrap();
        db.flush().unwrap();
    }
    let verdict = pax_ledger::ledger::verify_store(dir.path(), &config, Some(3)).unwrap();
    let (place, reason) = verdict.failure.clone().expect("a failure");
    assert_eq!(place, "position 15", "{verdict:?}");
    assert!(reason.contains("chain hash"), "{verdict:?}");
    assert_eq!(verdict.verified, 14);
}

#[tokio::test]
async fn a_broken_record_where_two_ranges_meet_is_reported_in_log_order() {
    // 3,001 events in three ranges: the second starts from the stored hash of position 1,001
    // (below the tail that opening re-reads). The record there, or its chunk, damaged: the
    // first range reports it, with everything before it verified.
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("VB")])).await.unwrap();
    for _ in 0..30 {
        let events = (0..100).map(|_| commitment_made(&id(), "VB")).collect();
        client.append(append(events)).await.unwrap();
    }
    drop(client);
    let dir = server.stop().await.unwrap();
    let config = pax_ledger::store::StoreConfig::default();
    let db = open_sled(dir.path());
    let key: Vec<u8> = b"L".iter().copied().chain(1001u64.to_be_bytes()).collect();
    let (key, original) = db.range(b"L".to_vec()..=key).next_back().unwrap().unwrap();
    let first = u64::from_be_bytes(key[1..9].try_into().unwrap());
    drop(db);
    let (start, _) = record_bodies(&original)[(1001 - first) as usize];
    // The record's body format byte, or the chunk's framing (a byte after its records).
    for (framing, place, verified) in
        [(false, "position 1001".to_owned(), 1000), (true, format!("chunk at {first}"), first - 1)]
    {
        let db = open_sled(dir.path());
        let mut chunk = original.to_vec();
        if framing {
            chunk.push(0);
        } else {
            chunk[start] = 9;
        }
        db.insert(&key, chunk).unwrap();
        db.flush().unwrap();
        drop(db);
        for threads in [1, 3] {
            let verdict = pax_ledger::ledger::verify_store(dir.path(), &config, Some(threads)).unwrap();
            let (at, _) = verdict.failure.clone().unwrap_or_else(|| panic!("{threads} threads: {verdict:?}"));
            assert_eq!((at, verdict.verified), (place.clone(), verified), "{threads} threads: {verdict:?}");
        }
    }
}

#[tokio::test]
async fn a_forged_checkpoint_or_merkle_subtree_in_the_store_is_reported() {
    // 2,100 events: two 1,024-leaf blocks and the 2,048 above them have stored roots; one
    // checkpoint at the head.
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("VF")])).await.unwrap();
    for _ in 0..7 {
        let events = (0..300).map(|_| commitment_made(&id(), "VF")).collect();
        client.append(append(events)).await.unwrap();
    }
    server.ledger.checkpoint_at(pax_ledger::domain::Position(2101)).unwrap();
    drop(client);
    let dir = server.stop().await.unwrap();
    let (ok, verdict) = verify(dir.path());
    assert!(ok, "{verdict}");
    assert_eq!(verdict["checkpoints_verified"], 1);

    let checkpoint_key: Vec<u8> = b"N".iter().copied().chain(2101u64.to_be_bytes()).collect();
    let subtree_key: Vec<u8> = [b'T', 10].into_iter().chain(1u64.to_be_bytes()).collect();
    for (key, what) in [(checkpoint_key, "checkpoint"), (subtree_key, "subtree")] {
        let db = open_sled(dir.path());
        let original = db.get(&key).unwrap().expect("stored");
        let mut forged = original.to_vec();
        if what == "checkpoint" {
            forged = forge_note_root(&forged);
        } else {
            forged[0] ^= 1;
        }
        db.insert(&key, forged).unwrap();
        db.flush().unwrap();
        drop(db);
        let (ok, verdict) = verify(dir.path());
        assert!(!ok, "a forged {what} passed: {verdict}");
        assert!(verdict["reason"].as_str().unwrap().contains(what), "{verdict}");
        let db = open_sled(dir.path());
        db.insert(&key, original).unwrap();
        db.flush().unwrap();
    }
}

#[tokio::test]
async fn ranges_hash_the_merkle_blocks_and_a_forged_root_is_found_however_the_log_is_cut() {
    // 2,101 events: two 1,024-leaf blocks (the ranges cut them at other places for each thread
    // count), the 2,048 above them, and checkpoints inside the second block and at the head.
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("VM")])).await.unwrap();
    for _ in 0..7 {
        let events = (0..300).map(|_| commitment_made(&id(), "VM")).collect();
        client.append(append(events)).await.unwrap();
    }
    for position in [1500, 2101] {
        server.ledger.checkpoint_at(pax_ledger::domain::Position(position)).unwrap();
    }
    drop(client);
    let dir = server.stop().await.unwrap();
    let config = pax_ledger::store::StoreConfig::default();
    let verify = |threads| pax_ledger::ledger::verify_store(dir.path(), &config, Some(threads)).unwrap();
    for threads in [1, 2, 3, 5, 8] {
        let verdict = verify(threads);
        assert!(verdict.is_ok(), "{threads} threads: {verdict:?}");
        assert_eq!((verdict.verified, verdict.checkpoints_verified), (2101, 2), "{threads} threads");
    }

    let subtree_key =
        |level: u8, index: u64| -> Vec<u8> { [b'T', level].into_iter().chain(index.to_be_bytes()).collect() };
    let checkpoint_key: Vec<u8> = b"N".iter().copied().chain(1500u64.to_be_bytes()).collect();
    // Each forgery (or pair of them), and what is reported: the first in log order.
    let cases: [(&[Vec<u8>], &str, &str); 4] = [
        (&[subtree_key(10, 0)], "position 1024", "subtree 10/0"),
        (&[subtree_key(11, 0)], "position 2048", "subtree 11/0"),
        (std::slice::from_ref(&checkpoint_key), "position 1500", "checkpoint at 1500"),
        (&[subtree_key(11, 0), checkpoint_key.clone()], "position 1500", "checkpoint at 1500"),
    ];
    for (keys, place, reason) in cases {
        let db = open_sled(dir.path());
        let originals: Vec<_> = keys.iter().map(|key| db.get(key).unwrap().expect("stored")).collect();
        for (key, original) in keys.iter().zip(&originals) {
            let mut forged = original.to_vec();
            if key[0] == b'N' {
                forged = forge_note_root(&forged);
            } else {
                forged[0] ^= 1;
            }
            db.insert(key, forged).unwrap();
        }
        db.flush().unwrap();
        drop(db);
        for threads in [1, 2, 3, 8] {
            let verdict = verify(threads);
            let (at, why) = verdict.failure.clone().unwrap_or_else(|| panic!("{threads} threads: {verdict:?}"));
            assert_eq!(at, place, "{threads} threads: {verdict:?}");
            assert!(why.contains(reason), "{threads} threads: {verdict:?}");
            assert_eq!(verdict.verified, 2101, "the chain itself holds");
        }
        let db = open_sled(dir.path());
        for (key, original) in keys.iter().zip(originals) {
            db.insert(key, original).unwrap();
        }
        db.flush().unwrap();
    }
}
