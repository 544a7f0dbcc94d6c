//! Our transparency evidence checked by an implementation we did not write: Go's
//! `golang.org/x/mod/sumdb/note` (signed notes) and `sumdb/tlog` (RFC 6962 proofs), from
//! Debian's `golang-golang-x-mod-dev`, driven by `tests/interop/tlogcheck.go`. A real server
//! signs a checkpoint and answers proofs; the Go tool accepts them, and refuses each after one
//! bit is flipped.

use std::path::PathBuf;
use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::audit_service_client::AuditServiceClient;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use crate::support::*;

/// Builds the Go tool once per test run (`tests/interop/build.sh`, which installs Debian's Go
/// and x/mod if they are missing, and runs the tool's own Go tests).
async fn tlogcheck() -> &'static PathBuf {
    static TOOL: OnceCell<PathBuf> = OnceCell::const_new();
    TOOL.get_or_init(|| async {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = root.join("target/interop/tlogcheck");
        let built = tokio::process::Command::new("bash")
            .arg(root.join("tests/interop/build.sh"))
            .arg(&out)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run tests/interop/build.sh");
        assert!(built.status.success(), "building the Go verifier failed:\n{}", text(&built.stderr));
        out
    })
    .await
}

/// Runs the Go tool on `input`: its verdict per check, and whether it accepted everything.
pub(crate) async fn go_check(input: &Value) -> (Value, bool) {
    let mut child = tokio::process::Command::new(tlogcheck().await)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tlogcheck");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let verdict: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("tlogcheck printed no verdict ({e}): {}", text(&output.stderr)));
    (verdict, output.status.success())
}

fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// `bytes` with bit `bit` flipped.
fn flipped(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[bit / 8] ^= 1 << (bit % 8);
    bytes
}

#[tokio::test]
async fn go_sumdb_verifies_our_checkpoint_and_proofs_and_refuses_each_flipped_bit() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for batch in 0..5 {
        let events = (0..3).map(|i| member_joined(&format!("Q{}", (b'A' + batch * 3 + i) as char))).collect();
        client.append(append(events)).await.unwrap();
    }
    let mut audit = AuditServiceClient::new(server.channel().await);
    let old = audit.get_checkpoint(pb::GetCheckpointRequest { position: Some(6), fresh: false }).await.unwrap();
    let old = old.into_inner();
    let current = audit.get_checkpoint(pb::GetCheckpointRequest { position: None, fresh: true }).await.unwrap();
    let current = current.into_inner();
    assert_eq!(current.position, 15);
    assert!(current.note.starts_with(&format!("{}\n15\n", current.origin)), "{}", current.note);
    let inclusion = audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            target: Some(pb::get_inclusion_proof_request::Target::Position(5)),
            tree_size: 15,
        })
        .await
        .unwrap()
        .into_inner();
    let consistency = audit
        .get_consistency_proof(pb::GetConsistencyProofRequest { old_size: 6, new_size: 15 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(consistency.old_root, old.root);

    let input = |note: &str, record_hash: &[u8], inclusion_proof: &[Vec<u8>], old_root: &[u8], proof: &[Vec<u8>]| {
        json!({
            "verifier_key": current.verifier_key,
            "note": note,
            "inclusion": {
                "leaf_index": inclusion.leaf_index, "tree_size": inclusion.tree_size,
                "record_hash": b64(record_hash), "root": b64(&inclusion.root),
                "proof": inclusion_proof.iter().map(|hash| b64(hash)).collect::<Vec<_>>(),
            },
            "consistency": {
                "old_size": consistency.old_size, "new_size": consistency.new_size,
                "old_root": b64(old_root), "new_root": b64(&consistency.new_root),
                "proof": proof.iter().map(|hash| b64(hash)).collect::<Vec<_>>(),
            },
        })
    };
    let honest =
        input(&current.note, &inclusion.record_hash, &inclusion.proof, &consistency.old_root, &consistency.proof);
    let (verdict, ok) = go_check(&honest).await;
    assert!(ok, "Go's sumdb refuses our evidence: {verdict}");
    assert_eq!(verdict, json!({"note": "ok", "inclusion": "ok", "consistency": "ok"}));
    assert!(!inclusion.proof.is_empty() && !consistency.proof.is_empty());

    // One bit of the note's text (in its size, its root, its time), then of its signature.
    let note = current.note.as_bytes();
    let text_end = current.note.find("\n\n").unwrap();
    let signature_start = current.note.rfind(' ').unwrap() + 1;
    let lines: Vec<usize> = current.note.match_indices('\n').map(|(at, _)| at + 1).collect();
    for (what, at) in [
        ("tree size", lines[0]),
        ("root", lines[1] + 5),
        ("time", lines[2] + 8),
        ("signature", signature_start + 10),
        ("signature", signature_start + 40),
    ] {
        assert!(at < text_end || at >= signature_start, "{what}");
        let changed = String::from_utf8(flipped(note, at * 8)).unwrap();
        let (verdict, ok) = go_check(&input(
            &changed,
            &inclusion.record_hash,
            &inclusion.proof,
            &consistency.old_root,
            &consistency.proof,
        ))
        .await;
        assert!(!ok && verdict["note"] != "ok", "a flipped bit in the note's {what} passed: {verdict}");
    }
    // One bit of the leaf, of each inclusion proof hash, of the old root, of each consistency hash.
    for bit in [0, 77, 255] {
        let (verdict, ok) = go_check(&input(
            &current.note,
            &flipped(&inclusion.record_hash, bit),
            &inclusion.proof,
            &consistency.old_root,
            &consistency.proof,
        ))
        .await;
        assert!(!ok && verdict["inclusion"] != "ok", "record hash bit {bit}: {verdict}");
        assert_eq!(verdict["consistency"], "ok", "{verdict}");
        let (verdict, ok) = go_check(&input(
            &current.note,
            &inclusion.record_hash,
            &inclusion.proof,
            &flipped(&consistency.old_root, bit),
            &consistency.proof,
        ))
        .await;
        assert!(!ok && verdict["consistency"] != "ok", "old root bit {bit}: {verdict}");
    }
    for index in 0..inclusion.proof.len() {
        let mut proof = inclusion.proof.clone();
        proof[index] = flipped(&proof[index], 3 + index * 31);
        let (verdict, ok) =
            go_check(&input(&current.note, &inclusion.record_hash, &proof, &consistency.old_root, &consistency.proof))
                .await;
        assert!(!ok && verdict["inclusion"] != "ok", "inclusion proof hash {index}: {verdict}");
    }
    for index in 0..consistency.proof.len() {
        let mut proof = consistency.proof.clone();
        proof[index] = flipped(&proof[index], 5 + index * 29);
        let (verdict, ok) =
            go_check(&input(&current.note, &inclusion.record_hash, &inclusion.proof, &consistency.old_root, &proof))
                .await;
        assert!(!ok && verdict["consistency"] != "ok", "consistency proof hash {index}: {verdict}");
    }
    server.stop().await;
}

/// What `checkpoint --save` writes is the note itself, which the Go tool reads as it is.
#[tokio::test]
async fn the_saved_checkpoint_file_is_a_note_that_go_reads() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP"), member_joined("KR")])).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("checkpoint.note");
    let output = run_to_end(
        pax_ledger(&["checkpoint", "--addr", &server.url, "--save", file.to_str().unwrap(), "--output", "json"]),
        b"",
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let note = std::fs::read_to_string(&file).unwrap();
    assert_eq!(printed["note"], note.as_str());
    assert_eq!(printed["position"], 2);
    let (verdict, ok) = go_check(&json!({"verifier_key": printed["verifier_key"], "note": note})).await;
    assert!(ok, "{verdict}");
    server.stop().await;
}
