//! Signed events, end to end with the real binary: a delegation makes its own key
//! (`key new`), an admin registers it (`principal register-key`) and requires it
//! (`principal grant … signed-only`), the delegation signs what it appends
//! (`append --sign-key`), and an auditor checks every signature offline from a bundle
//! (`export`, `verify --bundle`), including one forged by somebody who rewrote the hash chain.

use std::fs;
use std::path::Path;

use pax_ledger::audit::{Hash, chain_hash, hex};
use pax_ledger::proto::v1 as pb;
use pax_ledger::server::Options;
use serde_json::{Value, json};

use crate::access::{Secured, authed};
use crate::audit_cli::{bundle_lines, pax, s, write_lines};
use crate::support::*;

/// A commitment of Japan as an event line (illustrative: no such commitment is on record).
fn commitment_line(commitment_id: &str) -> String {
    json!({
        "event_id": uuid::Uuid::now_v7().to_string(),
        "type": "commitment_made",
        "data": {
            "commitment_id": commitment_id, "member": "JP", "pillar": "energy",
            "description": "Illustrative commitment, not a fact of the initiative", "due_on": "2027-06-30",
        },
        "labels": {"illustrative": "true"},
    })
    .to_string()
}

/// Runs `append` as the principal of `token` with the event lines given, signing with `key`
/// when one is given.
fn append_lines(url: &str, token: &str, lines: &[String], key: Option<&Path>, dir: &Path) -> crate::audit_cli::Run {
    let input = dir.join(format!("{}.jsonl", uuid::Uuid::now_v7()));
    fs::write(&input, lines.join("\n") + "\n").unwrap();
    let mut args = vec!["append", "--addr", url, "--token", token, "--file", s(&input), "--output", "json"];
    if let Some(key) = key {
        args.extend(["--sign-key", s(key)]);
    }
    pax(&args)
}

/// Recomputes a bundle's chain hashes from the first record on, and its header's head hash: what
/// somebody who rewrote a record would do so that the chain still holds.
fn rechain(lines: &mut [Value]) {
    let mut previous: Hash = [0; 32];
    for line in lines.iter_mut().skip(1).filter(|line| line.get("body").is_some()) {
        let body: Vec<u8> = hex::decode_vec(line["body"].as_str().unwrap()).unwrap();
        previous = chain_hash(&previous, &body);
        line["hash"] = Value::from(hex::encode(&previous));
    }
    lines[0]["head_hash"] = Value::from(hex::encode(&previous));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_signs_its_events_and_an_auditor_checks_every_signature_offline() {
    let secured = Secured::start(Options::default()).await;
    let url = secured.server.url.clone();
    let tmp = tempfile::tempdir().unwrap();
    let mut admin = secured.admin().await;
    let secretariat = admin.principal("secretariat", &["secretariat"]).await;
    let jp = admin.principal("jp-delegation", &["delegate:JP"]).await;
    let mut ledger = secured.server.client().await;
    let mut joined = member_joined("JP");
    joined.metadata = None;
    ledger.append(authed(append(vec![joined]), &secretariat)).await.expect("the secretariat records Japan");

    // The delegation makes its key; the file is its own, and another `key new` never replaces it.
    let key = tmp.path().join("jp.key");
    let made = pax(&["key", "new", s(&key), "--output", "json"]).expect_ok();
    let public_key = made.last()["public_key"].as_str().unwrap().to_owned();
    let credential_id = made.last()["credential_id"].as_str().unwrap().to_owned();
    assert!(!pax(&["key", "new", s(&key)]).ok, "an existing key file is never replaced");

    // Signed before the key is registered: refused, naming the field, and nothing is written.
    let head = secured.head();
    let early = append_lines(&url, &jp, &[commitment_line(&id())], Some(&key), tmp.path());
    assert!(!early.ok && early.stderr.contains("INVALID_ARGUMENT"), "{}", early.stderr);
    assert!(early.stderr.contains("events[0].metadata.signature"), "{}", early.stderr);
    assert!(early.stderr.contains("not a signing key of principal jp-delegation"), "{}", early.stderr);
    assert_eq!(secured.head(), head);

    // The admin registers the key (from its hex form, as the delegation handed it over) and
    // requires the delegation to sign.
    let admin_args = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--addr", &url, "--token", &secured.admin]);
        pax(&all).expect_ok()
    };
    admin_args(&["principal", "register-key", "jp-delegation", "--public-key", &public_key]);
    admin_args(&["principal", "grant", "jp-delegation", "signed-only", "--reason", "commitments are signed"]);
    let listed = admin_args(&["principal", "list", "--output", "json"]);
    let delegation = listed.lines.iter().find(|p| p["name"] == "jp-delegation").unwrap();
    assert!(delegation["credentials"].as_array().unwrap().contains(&json!(format!("signing_key {credential_id}"))));
    assert!(delegation["grants"].as_array().unwrap().contains(&json!("signed-only")));

    // Unsigned, from a principal that must sign: refused, and nothing is written.
    let head = secured.head();
    let unsigned = append_lines(&url, &jp, &[commitment_line(&id())], None, tmp.path());
    assert!(!unsigned.ok && unsigned.stderr.contains("holds signed-only"), "{}", unsigned.stderr);
    assert_eq!(secured.head(), head);

    // Signed: recorded, with the signature, which `history` shows and a line of it can carry.
    let commitments = [id(), id()];
    let lines: Vec<String> = commitments.iter().map(|c| commitment_line(c)).collect();
    append_lines(&url, &jp, &lines, Some(&key), tmp.path()).expect_ok();
    let history = pax(&["history", "--addr", &url, "--token", &jp, "--output", "json"]).expect_ok();
    let signed: Vec<&Value> = history.lines.iter().filter(|e| e.get("signature").is_some()).collect();
    assert_eq!(signed.len(), 2, "{}", history.stdout);
    assert!(
        signed.iter().all(|e| e["signature"]["public_key"] == public_key.as_str() && e["actor"] == "jp-delegation")
    );
    let unsigned_lines = history.lines.iter().filter(|e| e.get("signature").is_none()).count();
    assert_eq!(unsigned_lines, history.lines.len() - 2, "an unsigned event's line has no signature key");

    // A signature the server did not see made: the signed bytes of another event.
    let mut forged: Value = serde_json::from_str(&commitment_line(&id())).unwrap();
    forged["signature"] = signed[0]["signature"].clone();
    let refused = append_lines(&url, &jp, &[forged.to_string()], None, tmp.path());
    assert!(refused.stderr.contains("does not verify"), "{}", refused.stderr);

    // The retired key signs nothing more.
    admin_args(&["token", "revoke", "jp-delegation", &credential_id, "--reason", "key rotated"]);
    let retired = append_lines(&url, &jp, &[commitment_line(&id())], Some(&key), tmp.path());
    assert!(retired.stderr.contains("not a signing key of principal jp-delegation"), "{}", retired.stderr);

    // Online: the server's own verification checks the signatures' bytes too.
    let mut audit = pb::audit_service_client::AuditServiceClient::new(secured.server.channel().await);
    let mut updates =
        audit.verify_ledger(authed(pb::VerifyLedgerRequest {}, &secured.admin)).await.unwrap().into_inner();
    let mut verdict = None;
    while let Some(update) = updates.message().await.unwrap() {
        if let Some(pb::verify_ledger_response::Update::Verdict(v)) = update.update {
            verdict = Some(v);
        }
    }
    let verdict = verdict.expect("a verdict");
    assert!(verdict.ok && verdict.signatures_checked == 2, "{verdict:?}");

    // Offline, from a bundle: every signature checks.
    let dir = secured.stop().await;
    pax(&["verify", "--data", s(dir.path()), "--output", "json"]).expect_ok();
    let bundle = tmp.path().join("ledger.jsonl");
    pax(&["export", "--data", s(dir.path()), "--to", s(&bundle)]).expect_ok();
    let verified = pax(&["verify", "--bundle", s(&bundle), "--output", "json"]).expect_ok();
    assert_eq!(verified.last()["signatures_checked"], 2, "{}", verified.stdout);
    let table = pax(&["verify", "--bundle", s(&bundle)]).expect_ok();
    assert!(table.stdout.contains("signatures: 2 events, each signed by its recording principal"), "{}", table.stdout);

    // One signature byte changed, and the chain recomputed over it (so that only the signature
    // can tell): refused, at that record's position.
    let mut lines = bundle_lines(&bundle);
    let at = lines.iter().position(|l| l["event"].get("signature").is_some()).unwrap();
    let position = lines[at]["position"].as_u64().unwrap();
    let mut body = hex::decode_vec(lines[at]["body"].as_str().unwrap()).unwrap();
    *body.last_mut().unwrap() ^= 0x01;
    lines[at]["body"] = Value::from(hex::encode(&body));
    let signature = lines[at]["event"]["signature"]["signature"].as_str().unwrap().to_owned();
    lines[at]["event"]["signature"]["signature"] = Value::from(hex::encode(&body[body.len() - 64..]));
    assert_ne!(signature, lines[at]["event"]["signature"]["signature"]);
    rechain(&mut lines);
    let tampered = tmp.path().join("tampered.jsonl");
    write_lines(&tampered, &lines);
    pax(&["verify", "--bundle", s(&tampered), "--output", "json"])
        .expect_failed(&format!("position {position}"), "does not verify over the event's signed bytes");
}
