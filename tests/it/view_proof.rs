//! Proofs of a view, with the real binary: `prove member-JP` at a checkpoint, `verify
//! --view-proof` offline with nothing but the saved proof (and the ledger's key), refusals of a
//! changed byte of the view record, of a missing event and of another key, a proof at an
//! older checkpoint while the views moved on, and Go's RFC 6962 verifier accepting the record's
//! place in the view tree.

use std::fs;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use pax_ledger::audit::{hex, keys};
use pax_ledger::proto::v1 as pb;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::audit_cli::{pax, s};
use crate::support::*;

fn role_changed(code: &str, role: pb::MemberRole) -> pb::ProposedEvent {
    event(pb::event_data::Kind::MemberRoleChanged(pb::MemberRoleChanged { code: code.into(), role: role as i32 }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_s_view_is_proved_at_a_checkpoint_and_one_changed_byte_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data).await;
    let url = server.url.clone();
    let mut client = server.client().await;
    client
        .append(append(vec![member_joined_as("JP", pb::MemberRole::Guest), member_joined("KR"), member_joined("NL")]))
        .await
        .unwrap();
    client.append(append(vec![role_changed("JP", pb::MemberRole::Member)])).await.unwrap();

    // A checkpoint states the view tree; the proof is against it.
    let checkpoint = pax(&["checkpoint", "--addr", &url, "--output", "json"]).expect_ok();
    let size = checkpoint.last()["position"].as_u64().unwrap();
    assert_eq!(size, 4);
    let note = checkpoint.last()["note"].as_str().unwrap().to_owned();
    assert!(note.contains("\nview-tree 3 "), "{note}");
    let proof_file = tmp.path().join("jp.proof");
    let proved = pax(&["prove", "member-JP", "--addr", &url, "--save", s(&proof_file), "--output", "json"]).expect_ok();
    assert_eq!(proved.last()["revision"], 1, "{}", proved.stdout);
    assert_eq!(proved.last()["events"], 2);
    assert_eq!(proved.last()["view_records"], 3);

    // The views move on; a proof at the earlier checkpoint still says what they said then.
    client.append(append(vec![role_changed("JP", pb::MemberRole::Guest), member_joined("DE")])).await.unwrap();
    pax(&["checkpoint", "--addr", &url]).expect_ok();
    let older = tmp.path().join("jp-older.proof");
    let size_text = size.to_string();
    let then = pax(&[
        "prove",
        "member-JP",
        "--addr",
        &url,
        "--tree-size",
        &size_text,
        "--save",
        s(&older),
        "--output",
        "json",
    ])
    .expect_ok();
    assert_eq!((then.last()["revision"].clone(), then.last()["view_records"].clone()), (json!(1), json!(3)));
    assert_eq!(then.last()["view_record"], proved.last()["view_record"], "the record as it was at size 4");
    let now = pax(&["prove", "member-JP", "--addr", &url, "--output", "json"]).expect_ok();
    assert_eq!(now.last()["revision"], 2);
    assert_eq!(now.last()["view_records"], 4);
    assert!(!pax(&["prove", "member-FR", "--addr", &url]).ok, "no such member");

    // Offline: the saved proof and, pinned, the ledger's key.
    let key = keys::public_key_hex(&keys::load(&data.join("signing.key")).unwrap().verifying_key());
    pax(&["verify", "--view-proof", s(&proof_file), "--public-key", &key]).expect_ok();
    pax(&["verify", "--view-proof", s(&older), "--output", "json"]).expect_ok();
    let other_key = keys::public_key_hex(&ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key());
    pax(&["verify", "--view-proof", s(&proof_file), "--public-key", &other_key, "--output", "json"])
        .expect_failed("view proof of member-JP", "checkpoint: the checkpoint is signed by key");

    let proof: Value = serde_json::from_str(&fs::read_to_string(&proof_file).unwrap()).unwrap();
    let write = |name: &str, value: &Value| {
        let path = tmp.path().join(name);
        fs::write(&path, value.to_string()).unwrap();
        path
    };
    // One byte of the view record changed (in the member's name): no longer under the root.
    let record = proof["view_record"].as_str().unwrap();
    let name_at = record.find(&hex::encode(b"Participant JP")).expect("the name is in the record");
    let mut changed = proof.clone();
    changed["view_record"] =
        Value::from(format!("{}{}{}", &record[..name_at], hex::encode(b"Q"), &record[name_at + 2..]));
    let path = write("changed.proof", &changed);
    pax(&["verify", "--view-proof", s(&path), "--output", "json"])
        .expect_failed("view proof of member-JP", "not in the checkpoint's view tree");
    // An event left out: the record still verifies, but not what made it.
    let mut missing = proof.clone();
    missing["events"].as_array_mut().unwrap().remove(1);
    let path = write("missing.proof", &missing);
    pax(&["verify", "--view-proof", s(&path), "--output", "json"])
        .expect_failed("view proof of member-JP", "not all of the stream's");

    // Go's RFC 6962 verifier, which knows nothing of views, accepts the record's place in the
    // view tree signed by the note.
    let note_text = proof["checkpoint"]["note"].as_str().unwrap();
    let verifier_key = proof["checkpoint"]["verifier_key"].as_str().unwrap();
    let tree = &proof["checkpoint"]["view_tree"];
    let entry = Sha256::digest(hex::decode_vec(record).unwrap());
    let b64_hex = |h: &Value| BASE64.encode(hex::decode_vec(h.as_str().unwrap()).unwrap());
    let input = json!({
        "verifier_key": verifier_key,
        "note": note_text,
        "inclusion": {
            "leaf_index": proof["leaf_index"], "tree_size": tree["records"], "record_hash": BASE64.encode(entry),
            "proof": proof["path"].as_array().unwrap().iter().map(b64_hex).collect::<Vec<_>>(),
            "root": b64_hex(&tree["root"]),
        },
    });
    let (verdict, ok) = crate::interop::go_check(&input).await;
    assert!(ok, "{verdict}");
    server.stop().await;
}
