//! AuditService against a real server: checkpoints, inclusion and consistency proofs checked
//! by the independent verifier of `audit_proofs` (written from docs/AUDIT.md, not the
//! production code), the Merkle state across restarts, and the live verification.

use std::time::Duration;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::audit_service_client::AuditServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::audit_proofs::{consistency_holds, inclusion_holds, mth, open_note};
use crate::support::*;

type Hash = [u8; 32];

async fn audit(server: &TestServer) -> AuditServiceClient<Channel> {
    AuditServiceClient::new(server.channel().await)
}

fn hash(bytes: &[u8]) -> Hash {
    bytes.try_into().expect("32 bytes")
}

/// Appends `count` events (the first a join, unless AU has joined) in requests of up to 500,
/// returns the head.
async fn fill(server: &TestServer, count: usize) -> u64 {
    let mut client = server.client().await;
    let joined = client.append(append(vec![member_joined("AU")])).await;
    let mut head = 0;
    let mut left = count;
    if let Ok(joined) = joined {
        head = joined.into_inner().events[0].position;
        left -= 1;
    }
    while left > 0 {
        let n = left.min(500);
        let events = (0..n).map(|_| commitment_made(&id(), "AU")).collect();
        head = client.append(append(events)).await.unwrap().into_inner().events.last().unwrap().position;
        left -= n;
    }
    head
}

/// Checks a checkpoint's note and signature with ed25519 from the documented note form alone.
fn check_signature(checkpoint: &pb::SignedCheckpoint) {
    let key = VerifyingKey::from_bytes(&checkpoint.public_key.clone().try_into().unwrap()).unwrap();
    let (origin, size, root, _, _) = open_note(&checkpoint.note, &key).expect("the checkpoint's note verifies");
    assert_eq!(
        (origin.as_str(), size, root.as_slice()),
        (checkpoint.origin.as_str(), checkpoint.position, &checkpoint.root[..])
    );
    let signature = Signature::from_bytes(&checkpoint.signature.clone().try_into().unwrap());
    let text = &checkpoint.note[..checkpoint.note.find("\n\n").unwrap() + 1];
    key.verify(text.as_bytes(), &signature).expect("the signature field signs the note's text");
}

/// The chain hashes of the whole log, read from the stopped ledger's store.
fn chain_hashes(data: &std::path::Path, head: u64) -> Vec<Hash> {
    let (store, _) = pax_ledger::store::Store::open(data, &Default::default()).unwrap();
    store.chain_hashes(pax_ledger::domain::Position(1), pax_ledger::domain::Position(head)).unwrap()
}

#[tokio::test]
async fn proofs_for_random_positions_and_sizes_pass_the_independent_verifier() {
    let server = TestServer::start().await;
    let head = fill(&server, 2600).await as usize;
    let mut client = audit(&server).await;
    // Checkpoints at a few sizes: below, at and above the 1,024-leaf blocks whose roots are stored.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        1 + rng % bound
    };
    let mut sizes = vec![1, 1023, 1024, 1025, 2048, head as u64];
    sizes.extend((0..6).map(|_| next(head as u64)));
    let mut roots = std::collections::HashMap::new();
    for &size in &sizes {
        let checkpoint =
            client.get_checkpoint(pb::GetCheckpointRequest { position: Some(size), fresh: false }).await.unwrap();
        let checkpoint = checkpoint.into_inner();
        assert_eq!(checkpoint.position, size);
        check_signature(&checkpoint);
        roots.insert(size, hash(&checkpoint.root));
        for _ in 0..4 {
            let position = next(size);
            let request = pb::GetInclusionProofRequest {
                target: Some(pb::get_inclusion_proof_request::Target::Position(position)),
                tree_size: size,
            };
            let proof = client.get_inclusion_proof(request).await.unwrap().into_inner();
            let path: Vec<Hash> = proof.proof.iter().map(|h| hash(h)).collect();
            // The leaf is the chain hash of the body the proof carries.
            let mut hasher = blake3::Hasher::new();
            hasher.update(&proof.previous_hash);
            hasher.update(&proof.record_body);
            let record_hash = *hasher.finalize().as_bytes();
            assert_eq!(record_hash.as_slice(), proof.record_hash.as_slice());
            assert!(
                inclusion_holds(position - 1, size, &record_hash, &path, &hash(&proof.root)),
                "{position} in {size}"
            );
            assert_eq!(hash(&proof.root), roots[&size]);
            // A proof for a modified record fails.
            let mut body = proof.record_body.clone();
            let at = body.len() - 1;
            body[at] ^= 1;
            let mut hasher = blake3::Hasher::new();
            hasher.update(&proof.previous_hash);
            hasher.update(&body);
            assert!(!inclusion_holds(position - 1, size, hasher.finalize().as_bytes(), &path, &roots[&size]));
        }
    }
    for _ in 0..12 {
        let (a, b) = (next(head as u64), next(head as u64));
        let (old, new) = (a.min(b), a.max(b));
        let proof = client
            .get_consistency_proof(pb::GetConsistencyProofRequest { old_size: old, new_size: new })
            .await
            .unwrap()
            .into_inner();
        let path: Vec<Hash> = proof.proof.iter().map(|h| hash(h)).collect();
        let (old_root, new_root) = (hash(&proof.old_root), hash(&proof.new_root));
        assert!(consistency_holds(old, new, &old_root, &new_root, &path), "{old} → {new}");
        check_signature(proof.checkpoint.as_ref().unwrap());
        if old != new {
            let mut other = old_root;
            other[0] ^= 1;
            assert!(!consistency_holds(old, new, &other, &new_root, &path), "a rewritten prefix fails");
        }
    }
    // The roots equal the definition over the stored chain hashes, after a restart too.
    let data = server.data.clone();
    let dir = server.stop().await;
    let hashes = chain_hashes(&data, head as u64);
    for (&size, root) in &roots {
        assert_eq!(mth(&hashes[..size as usize]), *root, "root of {size}");
    }
    let server = TestServer::start_in(&data).await;
    let mut client = audit(&server).await;
    for (&size, root) in &roots {
        let request = pb::GetConsistencyProofRequest { old_size: size, new_size: head as u64 };
        let proof = client.get_consistency_proof(request).await.unwrap().into_inner();
        assert_eq!(hash(&proof.old_root), *root);
    }
    drop(dir);
}

#[tokio::test]
async fn subtree_roots_lost_or_never_written_are_computed_again_on_open() {
    let server = TestServer::start().await;
    let head = fill(&server, 3100).await;
    let root = audit(&server)
        .await
        .get_checkpoint(pb::GetCheckpointRequest { position: Some(head), fresh: false })
        .await
        .unwrap()
        .into_inner()
        .root;
    let data = server.data.clone();
    let dir = server.stop().await;
    {
        // A store from before the tree was kept (or imported from a bundle) has no `T` keys.
        let db = open_sled(&data);
        let keys: Vec<_> = db.scan_prefix(b"T").keys().map(Result::unwrap).collect();
        assert_eq!(keys.len(), 3 + 1, "three 1,024-leaf blocks and the 2,048 one above two of them");
        for key in keys {
            db.remove(key).unwrap();
        }
        db.remove(b"N".iter().copied().chain(head.to_be_bytes()).collect::<Vec<_>>()).unwrap();
        db.flush().unwrap();
    }
    let server = TestServer::start_in(&data).await;
    let again = audit(&server)
        .await
        .get_checkpoint(pb::GetCheckpointRequest { position: Some(head), fresh: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.root, root);
    let more = fill(&server, 1000).await;
    let stopped = server.stop().await;
    let hashes = chain_hashes(&data, more);
    let server = TestServer::start_in(&data).await;
    let checkpoint = audit(&server)
        .await
        .get_checkpoint(pb::GetCheckpointRequest { position: Some(more), fresh: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hash(&checkpoint.root), mth(&hashes), "the writer continued the tree it restored");
    drop((dir, stopped));
}

#[tokio::test]
async fn checkpoints_are_issued_every_n_events_and_the_live_verification_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = pax_ledger::ledger::LedgerConfig::default();
    config.audit.checkpoint_every_events = 100;
    let server = TestServer::start_with(dir.path(), config.clone()).await;
    // Three steps of 150 events, each given time to be noticed: three checkpoints, each at the
    // head of its step, before anyone asks for one.
    let mut heads = Vec::new();
    for _ in 0..3 {
        heads.push(fill(&server, 150).await);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline && issued(&server).last() != heads.last() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let head = *heads.last().unwrap();
    assert_eq!(issued(&server), heads);
    let mut client = audit(&server).await;
    let latest = client.get_checkpoint(pb::GetCheckpointRequest::default()).await.unwrap().into_inner();
    assert_eq!(latest.position, head, "the latest issued");
    check_signature(&latest);
    assert_eq!(latest.view_digest.len(), 32, "with the views' digest");
    let status = pax_ledger::proto::v1::projection_service_client::ProjectionServiceClient::new(server.channel().await)
        .get_projection_status(pb::GetProjectionStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pax_ledger::audit::hex::encode(&latest.view_digest), status.view_digest);

    // The signing key is the data directory's, readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("signing.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let verdict = verify(&mut client).await;
    assert!(verdict.ok, "{verdict:?}");
    assert_eq!((verdict.position, verdict.first_bad_position), (head, 0));
    assert!(verdict.checkpoints_verified >= 1);
    assert_eq!(verdict.root, pax_ledger::audit::hex::encode(&latest.root));

    // A checkpoint whose root was rewritten in the store no longer verifies.
    let data = server.data.clone();
    let dir2 = server.stop().await;
    {
        let db = open_sled(&data);
        let key: Vec<u8> = b"N".iter().copied().chain(head.to_be_bytes()).collect();
        let forged = forge_note_root(&db.get(&key).unwrap().unwrap());
        db.insert(key, forged).unwrap();
        db.flush().unwrap();
    }
    let server = TestServer::start_in(&data).await;
    let verdict = verify(&mut audit(&server).await).await;
    assert!(!verdict.ok);
    assert_eq!(verdict.first_bad_position, head);
    assert!(verdict.reason.contains("checkpoint"), "{}", verdict.reason);
    // Nor is it served as good.
    let request = pb::GetCheckpointRequest { position: Some(head), fresh: false };
    let status = audit(&server).await.get_checkpoint(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    drop(dir2);
}

fn issued(server: &TestServer) -> Vec<u64> {
    server.ledger.checkpoint_positions().unwrap().into_iter().map(|p| p.0).collect()
}

pub async fn verify(client: &mut AuditServiceClient<Channel>) -> pb::VerifyVerdict {
    let mut stream = client.verify_ledger(pb::VerifyLedgerRequest {}).await.unwrap().into_inner();
    let mut verdict = None;
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(pb::verify_ledger_response::Update::Verdict(v)) = message.update {
            verdict = Some(v);
        }
    }
    verdict.expect("a verdict")
}

#[tokio::test]
async fn proof_requests_outside_the_log_get_the_codes_of_the_error_table() {
    let server = TestServer::start().await;
    let head = fill(&server, 10).await;
    let mut client = audit(&server).await;
    let signed_before = server.ledger.checkpoint_positions().unwrap();
    let request = pb::GetCheckpointRequest { position: Some(head + 1), fresh: false };
    assert_eq!(client.get_checkpoint(request).await.unwrap_err().code(), Code::OutOfRange);
    let request = pb::GetInclusionProofRequest {
        target: Some(pb::get_inclusion_proof_request::Target::Position(head)),
        tree_size: head - 1,
    };
    assert_eq!(client.get_inclusion_proof(request).await.unwrap_err().code(), Code::OutOfRange);
    let request = pb::GetInclusionProofRequest { target: None, tree_size: 0 };
    assert_eq!(client.get_inclusion_proof(request).await.unwrap_err().code(), Code::InvalidArgument);
    let request = pb::GetInclusionProofRequest {
        target: Some(pb::get_inclusion_proof_request::Target::EventId(id())),
        tree_size: 0,
    };
    assert_eq!(client.get_inclusion_proof(request).await.unwrap_err().code(), Code::NotFound);
    let request = pb::GetConsistencyProofRequest { old_size: head + 1, new_size: head };
    assert_eq!(client.get_consistency_proof(request).await.unwrap_err().code(), Code::OutOfRange);
    let request = pb::GetConsistencyProofRequest { old_size: head, new_size: head - 2 };
    assert_eq!(client.get_consistency_proof(request).await.unwrap_err().code(), Code::OutOfRange);
    // A refused request wrote nothing: no checkpoint was signed for the sizes they named.
    assert_eq!(server.ledger.checkpoint_positions().unwrap(), signed_before);
    // By event id, against the latest checkpoint.
    let event = read_all(&mut server.client().await).await.pop().unwrap();
    let request = pb::GetInclusionProofRequest {
        target: Some(pb::get_inclusion_proof_request::Target::EventId(event.event_id)),
        tree_size: 0,
    };
    let proof = client.get_inclusion_proof(request).await.unwrap().into_inner();
    assert_eq!((proof.position, proof.tree_size), (event.position, head));
}
