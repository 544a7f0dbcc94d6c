//! A property test of the ledger against a tiny model: random valid and invalid append
//! requests, with expectations and idempotent retries, interleaved with restarts, are driven
//! into the real ledger (store + writer) and into an in-memory model with its own, independent
//! statement of the rules. After every step both must agree on the verdict and on the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use pax_ledger::domain::{
    EventData, EventId, Jurisdiction, MemberCode, MemberKind, MemberRole, Metadata, Position, ProposedEvent, Revision,
    RuleId, StreamName, Treatment,
};
use pax_ledger::ledger::{AppendRequest, EventFilter, Expected, Ledger, LedgerConfig, LedgerError};
use proptest::prelude::*;

const CODES: [&str; 4] = ["JP", "KR", "SG", "NL"];
const RULES: [&str; 2] = ["us-cn-chips", "us-ae-chips"];

#[derive(Clone, Debug)]
enum Fact {
    Join(usize, bool),
    Withdraw(usize),
    RoleChange(usize, bool),
    Rule(usize, u32),
}

#[derive(Clone, Debug)]
enum Step {
    Append {
        facts: Vec<Fact>,
        expect: Option<(usize, Option<u64>)>,
    },
    /// Re-send the n-th accepted request (modulo their count).
    Retry(usize),
    Restart,
}

fn fact() -> impl Strategy<Value = Fact> {
    prop_oneof![
        (0..CODES.len(), any::<bool>()).prop_map(|(c, guest)| Fact::Join(c, guest)),
        (0..CODES.len()).prop_map(Fact::Withdraw),
        (0..CODES.len(), any::<bool>()).prop_map(|(c, guest)| Fact::RoleChange(c, guest)),
        (0..RULES.len(), 0..=10_000u32).prop_map(|(r, levy)| Fact::Rule(r, levy)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (prop::collection::vec(fact(), 1..4), prop::option::of((0..CODES.len(), prop::option::of(0..3u64))))
            .prop_map(|(facts, expect)| Step::Append { facts, expect }),
        1 => (0..100usize).prop_map(Step::Retry),
        1 => Just(Step::Restart),
    ]
}

fn role(guest: bool) -> MemberRole {
    if guest { MemberRole::Guest } else { MemberRole::Member }
}

fn code(i: usize) -> MemberCode {
    MemberCode::parse("code", CODES[i]).unwrap()
}

fn data(fact: &Fact) -> EventData {
    match *fact {
        Fact::Join(c, guest) => EventData::MemberJoined {
            code: code(c),
            name: format!("Participant {}", CODES[c]),
            kind: MemberKind::State,
            role: role(guest),
        },
        Fact::Withdraw(c) => EventData::MemberWithdrew { code: code(c), reason: "model".into() },
        Fact::RoleChange(c, guest) => EventData::MemberRoleChanged { code: code(c), role: role(guest) },
        Fact::Rule(r, levy) => EventData::ExportRuleChanged {
            rule_id: RuleId::parse("rule", RULES[r]).unwrap(),
            item: "chips".into(),
            origin: Jurisdiction::parse("o", "US").unwrap(),
            destination: Jurisdiction::parse("d", if r == 0 { "CN" } else { "AE" }).unwrap(),
            treatment: Treatment::AllowedWithLevy,
            levy_bps: Some(levy),
            effective_from: NaiveDate::from_ymd_opt(2025, 12, 8).unwrap(),
            authority: "model".into(),
        },
    }
}

/// The model: the log, and per member (joined role, withdrawn) — its own statement of the rules.
#[derive(Default)]
struct Model {
    log: Vec<(StreamName, Revision, ProposedEvent)>,
    members: HashMap<usize, (MemberRole, bool)>,
    revisions: BTreeMap<StreamName, u64>,
}

impl Model {
    /// The verdict the ledger must give: the new records, or that the request is refused.
    fn apply(
        &mut self,
        events: &[(Fact, ProposedEvent)],
        expect: Option<(StreamName, Expected)>,
    ) -> Option<Vec<(StreamName, Revision)>> {
        if let Some((stream, expected)) = &expect {
            let current = self.revisions.get(stream).copied();
            let ok = match expected {
                Expected::Any => true,
                Expected::NoStream => current.is_none(),
                Expected::Exists => current.is_some(),
                Expected::Exact(r) => current == Some(r.0),
            };
            if !ok {
                return None;
            }
        }
        let mut members = self.members.clone();
        for (fact, _) in events {
            let ok = match *fact {
                Fact::Join(c, guest) => members.insert(c, (role(guest), false)).is_none(),
                Fact::Withdraw(c) => match members.get_mut(&c) {
                    Some((_, withdrawn @ false)) => {
                        *withdrawn = true;
                        true
                    }
                    _ => false,
                },
                Fact::RoleChange(c, guest) => match members.get_mut(&c) {
                    Some((current, false)) if *current != role(guest) => {
                        *current = role(guest);
                        true
                    }
                    _ => false,
                },
                Fact::Rule(..) => true,
            };
            if !ok {
                return None;
            }
        }
        self.members = members;
        let mut placed = Vec::new();
        for (_, event) in events {
            let stream = event.data.stream();
            let next = self.revisions.get(&stream).map_or(0, |r| r + 1);
            self.revisions.insert(stream.clone(), next);
            self.log.push((stream.clone(), Revision(next), event.clone()));
            placed.push((stream, Revision(next)));
        }
        Some(placed)
    }
}

fn open(dir: &std::path::Path) -> Arc<Ledger> {
    Ledger::open(dir, LedgerConfig { stream_cache_max: 3, ..LedgerConfig::default() }).expect("open")
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = open(dir.path());
    let mut model = Model::default();
    let mut accepted: Vec<AppendRequest> = Vec::new();
    for step in steps {
        match step {
            Step::Restart => {
                ledger.shutdown();
                drop(ledger);
                ledger = open(dir.path());
            }
            Step::Retry(n) if !accepted.is_empty() => {
                let request = accepted[n % accepted.len()].clone();
                let outcome =
                    runtime.block_on(ledger.append(request.clone())).expect("a retry of an accepted request succeeds");
                prop_assert!(outcome.already_committed);
                for (appended, proposed) in outcome.events.iter().zip(&request.events) {
                    let (stream, revision, event) = &model.log[appended.position.0 as usize - 1];
                    prop_assert_eq!((stream, revision, event), (&appended.stream, &appended.revision, proposed));
                }
            }
            Step::Retry(_) => {}
            Step::Append { facts, expect } => {
                let events: Vec<_> = facts
                    .iter()
                    .map(|f| {
                        (
                            f.clone(),
                            ProposedEvent {
                                event_id: EventId::generate(),
                                data: data(f),
                                effective_at: None,
                                metadata: Metadata::default(),
                            },
                        )
                    })
                    .collect();
                let expect = expect.map(|(c, r)| {
                    (StreamName::member(&code(c)), r.map_or(Expected::NoStream, |r| Expected::Exact(Revision(r))))
                });
                let request = AppendRequest {
                    events: events.iter().map(|(_, e)| e.clone()).collect(),
                    expectations: expect.clone().into_iter().collect(),
                };
                let first = model.log.len() as u64 + 1;
                let verdict = model.apply(&events, expect);
                let result = runtime.block_on(ledger.append(request.clone()));
                match (verdict, result) {
                    (Some(placed), Ok(outcome)) => {
                        prop_assert!(!outcome.already_committed);
                        for (i, (appended, (stream, revision))) in outcome.events.iter().zip(placed).enumerate() {
                            prop_assert_eq!(appended.position, Position(first + i as u64));
                            prop_assert_eq!((&appended.stream, appended.revision), (&stream, revision));
                        }
                        accepted.push(request);
                    }
                    (None, Err(LedgerError::Rule { .. } | LedgerError::WrongRevision { .. })) => {}
                    (verdict, result) => prop_assert!(false, "model says {verdict:?}, ledger says {result:?}"),
                }
            }
        }
        // The ledger's log is the model's log, exactly.
        let page = ledger.read_all(Position(1), true, 1000, &EventFilter::default()).expect("read_all");
        prop_assert_eq!(page.events.len(), model.log.len());
        for (i, (event, (stream, revision, proposed))) in page.events.iter().zip(&model.log).enumerate() {
            prop_assert_eq!(event.position, Position(i as u64 + 1));
            prop_assert_eq!((&event.stream, &event.revision, &event.event), (stream, revision, proposed));
        }
        // Every stream reads back as the model's, forwards and backwards, in pages of 2 (through
        // the stream index: a stream's first record, then its runs).
        let mut streams: BTreeMap<&StreamName, Vec<Position>> = BTreeMap::new();
        for (i, (stream, _, _)) in model.log.iter().enumerate() {
            streams.entry(stream).or_default().push(Position(i as u64 + 1));
        }
        for (stream, positions) in &streams {
            for forward in [true, false] {
                let mut read = Vec::new();
                let mut from = None;
                loop {
                    let page = ledger.read_stream(stream, from, forward, 2).expect("read_stream");
                    prop_assert_eq!(page.stream_revision, Revision(positions.len() as u64 - 1));
                    read.extend(page.events.iter().map(|e| (e.revision, e.position)));
                    match page.next_revision {
                        Some(next) => from = Some(next),
                        None => break,
                    }
                }
                let mut expected: Vec<_> =
                    positions.iter().enumerate().map(|(r, p)| (Revision(r as u64), *p)).collect();
                if !forward {
                    expected.reverse();
                }
                prop_assert_eq!(read, expected, "{} read {}", stream, if forward { "forwards" } else { "backwards" });
            }
        }
        let unknown = StreamName::member(&code(0)).as_str().replace("JP", "ZZ");
        let unknown = StreamName::parse("stream", &unknown).expect("a stream name");
        prop_assert!(matches!(ledger.read_stream(&unknown, None, true, 2), Err(LedgerError::NotFound(_))));
    }
    ledger.shutdown();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_agrees_with_the_model_across_restarts(steps in prop::collection::vec(step(), 1..40)) {
        run(steps)?;
    }
}
