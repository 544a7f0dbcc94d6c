//! Ceilings and per-event costs, side by side in one run:
//! - `sled_raw/*`: what the disk and sled allow without us — one `Batch` of N inserts of
//!   200-byte values, `flush`, `fdatasync` — the floor under any durable append;
//! - `store_commit/*`: our durable commit of N events (3 inserts per event + head) with
//!   encoding and chain hashing, the path the writer takes;
//! - `event/*`: per-event CPU: record encode and decode, `decide`, `evolve`, chain hash.
//!
//! Run: `cargo bench --bench ceiling`.

use std::fs::File;
use std::hint::black_box;

use chrono::{NaiveDate, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pax_ledger::audit;
use pax_ledger::audit::tower::SubtreeTower;
use pax_ledger::domain::{
    self, EntityState, EventData, EventId, Jurisdiction, MemberCode, Metadata, Position, ProposedEvent, RecordedEvent,
    Revision, RuleId, Treatment,
};
use pax_ledger::store::{self, CommitBatch, Head, Store, StoreConfig};

fn sample_event(position: u64) -> RecordedEvent {
    let data = EventData::ExportRuleChanged {
        rule_id: RuleId::parse("r", "bench-us-cn-accelerators").unwrap(),
        item: "Illustrative accelerator".into(),
        origin: Jurisdiction::parse("o", "US").unwrap(),
        destination: Jurisdiction::parse("d", "CN").unwrap(),
        treatment: Treatment::AllowedWithLevy,
        levy_bps: Some(2500),
        effective_from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        authority: "Benchmark".into(),
    };
    let stream = data.stream();
    RecordedEvent {
        position: Position(position),
        stream,
        revision: Revision(position - 1),
        recorded_at: Utc::now(),
        event: ProposedEvent {
            event_id: EventId::generate(),
            data,
            effective_at: None,
            metadata: Metadata { actor: "bench".into(), source: "x".repeat(40), ..Metadata::default() },
        },
    }
}

fn sled_raw(c: &mut Criterion) {
    let mut group = c.benchmark_group("sled_raw");
    group.sample_size(20);
    for batch in [1u64, 100, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).cache_capacity(64 << 20).open().unwrap();
        let file = File::open(dir.path().join("db")).unwrap();
        let value = vec![7u8; 200];
        let mut key = 0u64;
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("batch_{batch}_flush_fdatasync"), |b| {
            b.iter(|| {
                let mut write = sled::Batch::default();
                for _ in 0..batch {
                    key += 1;
                    write.insert(&key.to_be_bytes(), value.as_slice());
                }
                db.apply_batch(write).unwrap();
                db.flush().unwrap();
                file.sync_data().unwrap();
            })
        });
    }
    group.finish();
}

fn store_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_commit");
    group.sample_size(20);
    // With the tamper evidence the writer adds (chain hash, Merkle tower, subtree roots) and
    // without it (a constant hash), side by side: its cost on the commit path.
    for batch in [1u64, 100, 1000] {
        for evidence in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
            let mut head = Head::EMPTY;
            let mut tower = SubtreeTower::new(store::SUBTREE_LEVEL_MIN);
            let mut completed = Vec::new();
            group.throughput(Throughput::Elements(batch));
            let name =
                if evidence { format!("batch_{batch}") } else { format!("batch_{batch}_without_hash_and_merkle") };
            group.bench_function(name, |b| {
                b.iter(|| {
                    let mut write = CommitBatch::default();
                    for _ in 0..batch {
                        let event = sample_event(head.position.0 + 1);
                        let body = store::record::encode_event(&event);
                        let hash = if evidence { audit::chain_hash(&head.hash, &body) } else { [7; 32] };
                        if evidence {
                            tower.append(&hash, &mut completed);
                        }
                        write.put_record(&event, body, &hash);
                        head = Head { position: event.position, hash };
                    }
                    for (level, index, root) in completed.drain(..) {
                        write.put_subtree(level, index, root);
                    }
                    write.set_head(&head);
                    store.commit(write).unwrap();
                })
            });
        }
    }
    group.finish();
}

fn per_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("event");
    let event = sample_event(1);
    let body = store::record::encode_event(&event);
    group.bench_function("encode", |b| b.iter(|| store::record::encode_event(black_box(&event))));
    group.bench_function("decode", |b| b.iter(|| store::record::decode_event(black_box(&body)).unwrap()));
    group.bench_function("chain_hash", |b| b.iter(|| audit::chain_hash(black_box(&[1; 32]), black_box(&body))));
    let mut tower = SubtreeTower::new(store::SUBTREE_LEVEL_MIN);
    let mut completed = Vec::new();
    group.bench_function("merkle_append", |b| {
        b.iter(|| {
            tower.append(black_box(&[3; 32]), &mut completed);
            completed.clear();
        })
    });
    let state = domain::evolve(EntityState::Empty, &event.event.data);
    let nobody = |_: &MemberCode| None;
    group.bench_function("decide", |b| {
        b.iter(|| domain::decide(black_box(&state), black_box(&event.event.data), &nobody))
    });
    group.bench_function("evolve", |b| {
        b.iter_batched(|| state.clone(), |s| domain::evolve(s, black_box(&event.event.data)), BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, sled_raw, store_commit, per_event);
criterion_main!(benches);
