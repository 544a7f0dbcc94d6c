//! Tamper evidence at scale: a ledger of `PAX_BENCH_EVENTS` events (default 1,000,000) is
//! built once through `Ledger::append` (1,000-event batches), then criterion measures inclusion
//! and consistency proofs (and reports their size), a checkpoint's Merkle root, and the live
//! verification of the whole log (`verify_live`: every record's format and chain hash, every
//! stored subtree root, every checkpoint).
//!   cargo bench --bench proofs

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pax_ledger::domain::{
    CommitmentId, EventData, EventId, MemberCode, MemberKind, MemberRole, Metadata, Pillar, Position, ProposedEvent,
};
use pax_ledger::ledger::{AppendRequest, Ledger, LedgerConfig};

fn proposed(data: EventData) -> ProposedEvent {
    ProposedEvent { event_id: EventId::generate(), data, effective_at: None, metadata: Metadata::default() }
}

fn build(events: u64) -> (tempfile::TempDir, Arc<Ledger>) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let code = MemberCode::parse("code", "AU").unwrap();
        let join = EventData::MemberJoined {
            code: code.clone(),
            name: "Australia".into(),
            kind: MemberKind::State,
            role: MemberRole::Member,
        };
        ledger.append(AppendRequest { events: vec![proposed(join)], expectations: vec![] }).await.unwrap();
        let mut written = 1;
        while written < events {
            let n = (events - written).min(1000);
            let batch = (0..n)
                .map(|i| {
                    proposed(EventData::CommitmentMade {
                        commitment_id: CommitmentId::from_uuid(uuid::Uuid::new_v4()),
                        member: code.clone(),
                        pillar: Pillar::Energy,
                        description: format!("benchmark commitment {}", written + i),
                        project_id: None,
                        due_on: "2027-06-30".parse().unwrap(),
                    })
                })
                .collect();
            ledger.append(AppendRequest { events: batch, expectations: vec![] }).await.unwrap();
            written += n;
        }
    });
    eprintln!("built a ledger of {events} events in {:?}", started.elapsed());
    (dir, ledger)
}

fn proofs(c: &mut Criterion) {
    let events = std::env::var("PAX_BENCH_EVENTS").ok().map_or(1_000_000, |n| n.parse().expect("PAX_BENCH_EVENTS"));
    let (_dir, ledger) = build(events);
    let head = ledger.durable_head().position.0;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        1 + rng % bound
    };
    let checkpoint = ledger.checkpoint_at(Position(head)).unwrap();
    let inclusion = ledger.inclusion_proof(Ok(Position(head / 3)), Some(head)).unwrap();
    let consistency = ledger.consistency_proof(head / 3, Some(head)).unwrap();
    eprintln!(
        "proof sizes at {head} events: inclusion {} hashes ({} bytes), consistency {} hashes ({} bytes)",
        inclusion.proof.len(),
        32 * inclusion.proof.len(),
        consistency.proof.len(),
        32 * consistency.proof.len(),
    );
    // A checkpoint is a signed note (what `checkpoint --save` writes); its JSON form carries the
    // note, the key and the fields the note states.
    eprintln!(
        "checkpoint at {head}: signed note {} bytes, JSON form {} bytes pretty ({} compact)",
        checkpoint.to_note().map_or(0, |note| note.len()),
        checkpoint.to_json().len(),
        serde_json::to_string(&checkpoint).unwrap().len(),
    );
    eprintln!("signed note:\n{}", checkpoint.file_text());

    let mut group = c.benchmark_group("proofs");
    group.bench_function("inclusion_random_position", |b| {
        b.iter(|| ledger.inclusion_proof(Ok(Position(next(head))), Some(head)).unwrap())
    });
    group.bench_function("consistency_random_old_size", |b| {
        b.iter(|| ledger.consistency_proof(next(head), Some(head)).unwrap())
    });
    group.bench_function("merkle_root_random_size", |b| b.iter(|| ledger.merkle_root(black_box(next(head))).unwrap()));
    group.finish();

    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    group.throughput(Throughput::Elements(head));
    group.bench_function(format!("live_{head}_events"), |b| {
        b.iter(|| {
            let verdict = ledger.verify_live(u64::MAX, |_, _| {}).unwrap();
            assert!(verdict.failure.is_none(), "{verdict:?}");
        })
    });
    group.finish();
    ledger.shutdown();
}

criterion_group!(benches, proofs);
criterion_main!(benches);
