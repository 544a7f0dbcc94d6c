//! Valid inputs of every layer, the material the mutators start from: event lines (the demo's,
//! and one line of each type it lacks), the wire events and append requests they parse to, the
//! recorded events, record bodies and chunks a ledger of them would store, and the bundle it
//! would export.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::SigningKey;
use prost::Message;

use pax_ledger::archive::bundle::{BundleWriter, Header};
use pax_ledger::archive::event_line;
use pax_ledger::audit::checkpoint::{Checkpoint, SignedCheckpoint};
use pax_ledger::audit::merkle::MerkleFrontier;
use pax_ledger::audit::{GENESIS_HASH, Hash, chain_hash};
use pax_ledger::domain::{
    Credential, EventData, EventId, Grant, Metadata, Position, PrincipalName, ProposedEvent, RecordedEvent, Revision,
};
use pax_ledger::proto::v1 as pb;
use pax_ledger::service::convert;
use pax_ledger::store::chunk::ChunkWriter;
use pax_ledger::store::record;

/// The types the demo files leave out, with texts a parser might trip on: control characters,
/// a right-to-left override, characters outside the BMP, escapes.
const MORE_LINES: &str = r#"
{"event_id": "f0220000-0000-4000-8000-000000000001", "type": "member_role_changed", "data": {"code": "TW", "role": "member"}, "expected_revision": 0}
{"event_id": "f0220000-0000-4000-8000-000000000002", "type": "member_withdrew", "data": {"code": "GB", "reason": "tab\there, rlo \u202e, crab 🦀, quote \" and \\"}, "effective_at": "2026-01-31T23:59:59.999999999+14:00", "expected_revision": "exists"}
{"event_id": "f0220000-0000-4000-8000-000000000003", "type": "project_status_changed", "data": {"project_id": "5a1c0001-0000-4000-8000-000000000001", "status": "approved", "reason": ""}, "labels": {"a.b-c_d": "", "z": "\u00ff"}}
{"event_id": "f0220000-0000-4000-8000-000000000004", "type": "commitment_made", "data": {"commitment_id": "f0220000-0000-4000-8000-0000000000c1", "member": "JP", "pillar": "energy", "description": "Grid", "project_id": "5a1c0001-0000-4000-8000-000000000001", "due_on": "9999-12-31"}, "expected_revision": "no_stream", "actor": "a", "source": "s", "correlation_id": "c", "causation_id": "d"}
{"event_id": "f0220000-0000-4000-8000-000000000005", "type": "commitment_made", "data": {"commitment_id": "f0220000-0000-4000-8000-0000000000c2", "member": "SG", "pillar": "networks", "description": "Cables", "project_id": null, "due_on": "0001-01-01"}}
{"event_id": "f0220000-0000-4000-8000-000000000006", "type": "commitment_fulfilled", "data": {"commitment_id": "f0220000-0000-4000-8000-0000000000c1", "evidence": "https://example.org/r?a=1&b=2"}}
{"event_id": "f0220000-0000-4000-8000-000000000007", "type": "commitment_withdrawn", "data": {"commitment_id": "f0220000-0000-4000-8000-0000000000c2", "reason": "withdrawn"}, "expected_revision": 0}
{"event_id": "f0220000-0000-4000-8000-000000000008", "type": "export_rule_changed", "data": {"rule_id": "nl-cn-duv", "item": "DUV", "origin": "NL", "destination": "CN", "treatment": "license_required", "levy_bps": null, "effective_from": "2024-09-07", "authority": "Dutch government"}}
"#;

/// Every seed event line, in the order a ledger would hold them.
pub fn event_lines() -> Vec<String> {
    let files = [
        include_str!("../../examples/pax-silica.jsonl"),
        include_str!("../../examples/pax-silica-demo.jsonl"),
        MORE_LINES,
    ];
    let lines = files.into_iter().flat_map(str::lines).map(str::trim);
    lines.filter(|line| !line.is_empty() && !line.starts_with('#')).map(str::to_owned).collect()
}

/// The parsed seed lines.
pub fn parsed_lines() -> Vec<event_line::EventLine> {
    event_lines().iter().map(|line| event_line::parse(1, line).expect("a seed line parses")).collect()
}

/// The append requests of the seed lines: one per line, then one of every line.
pub fn append_requests() -> Vec<pb::AppendRequest> {
    let lines = parsed_lines();
    let single = lines.iter().map(|line| pb::AppendRequest {
        events: vec![line.event.clone()],
        expectations: line.expectation().into_iter().collect(),
    });
    let all = pb::AppendRequest { events: lines.iter().map(|line| line.event.clone()).collect(), expectations: vec![] };
    single.chain([all]).collect()
}

/// The wire encoding of [`append_requests`].
pub fn append_request_bytes() -> Vec<Vec<u8>> {
    append_requests().iter().map(Message::encode_to_vec).collect()
}

/// The seed events as a ledger records them: positions from 1, revisions per stream from 0, one
/// second apart.
pub fn recorded() -> Vec<RecordedEvent> {
    let start: DateTime<Utc> = "2025-12-14T08:06:00.123456789Z".parse().expect("a time");
    let mut revisions: HashMap<String, u64> = HashMap::new();
    let lines = parsed_lines();
    let events = lines
        .iter()
        .map(|line| convert::proposed_event("event", &line.event).expect("a seed event converts"))
        .chain(access_events());
    events
        .zip(1..)
        .map(|(event, position)| {
            let stream = event.data.stream();
            let revision = revisions.entry(stream.to_string()).or_default();
            let recorded = RecordedEvent {
                position: Position(position),
                stream,
                revision: Revision(*revision),
                recorded_at: start + TimeDelta::seconds(position as i64),
                event,
            };
            *revision += 1;
            recorded
        })
        .collect()
}

/// One event of each access type (which event lines cannot hold: they are recorded through
/// the access service), so that their record bodies are fuzzed too.
fn access_events() -> Vec<ProposedEvent> {
    let admin = PrincipalName::parse("principal", "admin").expect("a name");
    let principal = PrincipalName::parse("principal", "jp-delegation").expect("a name");
    let grants = vec![Grant::parse("g", "delegate:JP").expect("a grant"), Grant::Reader];
    let admin_token = Credential::of_token("pxl_admin");
    let token = Credential::of_token("pxl_seed");
    let certificate = Credential::of_certificate([0x5a; 32]);
    let bootstrap = pax_ledger::domain::access::BOOTSTRAP_ACTOR;
    [
        (
            bootstrap,
            EventData::AccessGranted {
                principal: admin.clone(),
                grants: vec![Grant::Admin],
                reason: "bootstrap".into(),
            },
        ),
        (bootstrap, EventData::CredentialIssued { principal: admin, credential: admin_token }),
        (
            "admin",
            EventData::AccessGranted {
                principal: principal.clone(),
                grants: grants.clone(),
                reason: "accredited".into(),
            },
        ),
        ("admin", EventData::CredentialIssued { principal: principal.clone(), credential: token }),
        ("admin", EventData::CredentialIssued { principal: principal.clone(), credential: certificate }),
        (
            "admin",
            EventData::CredentialRevoked { principal: principal.clone(), credential: token, reason: "rotated".into() },
        ),
        ("admin", EventData::AccessRevoked { principal, grants, reason: String::new() }),
    ]
    .into_iter()
    .zip(1u128..)
    .map(|((actor, data), i)| ProposedEvent {
        event_id: EventId::from_uuid(uuid::Uuid::from_u128(0x0193_a5b0_7c1e_7cc3_9c55_3f1e_2d4c_0000 + i)),
        data,
        effective_at: None,
        metadata: Metadata { actor: actor.into(), ..Metadata::default() },
    })
    .collect()
}

/// The record bodies of [`recorded`].
pub fn bodies() -> Vec<Vec<u8>> {
    recorded().iter().map(record::encode_event).collect()
}

/// The chain hashes of `bodies`, from the genesis hash.
pub fn chain(bodies: &[Vec<u8>]) -> Vec<Hash> {
    let mut previous = GENESIS_HASH;
    bodies
        .iter()
        .map(|body| {
            previous = chain_hash(&previous, body);
            previous
        })
        .collect()
}

/// The log chunks of [`bodies`] with their chain hashes: one chunk of all the records, one of a
/// record alone, and one of a record over the chunk target (which gets a chunk of its own).
pub fn chunks() -> Vec<Vec<u8>> {
    let bodies = bodies();
    let hashes = chain(&bodies);
    let mut all = ChunkWriter::default();
    for (hash, body) in hashes.iter().zip(&bodies) {
        all.push(hash, body);
    }
    let mut chunks = all.finish();
    let mut alone = ChunkWriter::default();
    alone.push(&hashes[0], &bodies[0]);
    chunks.extend(alone.finish());
    let mut large = ChunkWriter::default();
    large.push(&[7; 32], &vec![b'x'; pax_ledger::store::chunk::CHUNK_BYTES_TARGET + 1]);
    chunks.extend(large.finish());
    chunks
}

/// The origin the seeds' checkpoints are signed under.
pub const ORIGIN: &str = "pax-ledger.example/fuzz";

/// The key that signs the seed bundle's checkpoints.
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[0x5a; 32])
}

/// The bundle a ledger of [`recorded`] exports, with checkpoints at 0, halfway and the head.
pub fn bundle() -> Vec<u8> {
    let events = recorded();
    let bodies = bodies();
    let hashes = chain(&bodies);
    let sizes = [0, events.len() as u64 / 2, events.len() as u64];
    let mut frontier = MerkleFrontier::new();
    let mut roots = vec![(0, frontier.root())];
    for hash in &hashes {
        frontier.append(hash);
        if sizes.contains(&frontier.size()) {
            roots.push((frontier.size(), frontier.root()));
        }
    }
    let time: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().expect("a time");
    let checkpoints: Vec<SignedCheckpoint> = roots
        .into_iter()
        .map(|(position, root)| {
            Checkpoint { position, root, view_digest: Some([position as u8; 32]), view_tree: None, time }
                .sign(ORIGIN, &signing_key())
        })
        .collect();
    let mut writer = BundleWriter::new(Vec::new());
    let head = *hashes.last().expect("seed records");
    writer.header(&Header::new(events.len() as u64, &head, sizes.to_vec(), Vec::new())).expect("write to memory");
    for ((event, body), hash) in events.iter().zip(&bodies).zip(&hashes) {
        writer.record(event, hash, body).expect("write to memory");
    }
    for checkpoint in &checkpoints {
        writer.checkpoint(checkpoint).expect("write to memory");
    }
    writer.into_inner()
}

/// The bytes of a hexadecimal text written by a test (a bundle's body, a minimal input).
pub fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).expect("hexadecimal")
}
