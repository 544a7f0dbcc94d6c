//! Given a log, when it is folded, then the views say what the events said.

use chrono::{DateTime, NaiveDate, Utc};

use super::codec::{decode_record, decode_summary, encode_record, encode_summary};
use super::*;
use crate::domain::{
    CommitmentId, CommitmentStatus, EventData, EventId, Jurisdiction, MemberCode, MemberKind, MemberRole, Metadata,
    Pillar, ProjectId, ProjectStatus, ProposedEvent, RuleId, Treatment,
};

fn code(raw: &str) -> MemberCode {
    MemberCode::parse("code", raw).unwrap()
}
fn date(raw: &str) -> NaiveDate {
    raw.parse().unwrap()
}
fn time(raw: &str) -> DateTime<Utc> {
    raw.parse().unwrap()
}
const PROJECT: &str = "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a";
const COMMITMENT: &str = "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6b";

/// A log: each event gets the next position, its stream's next revision, and a recorded time
/// one day after the previous one (from 2025-12-01).
fn log(events: Vec<(EventData, Option<&str>)>) -> Vec<RecordedEvent> {
    let mut revisions: HashMap<StreamName, u64> = HashMap::new();
    events
        .into_iter()
        .enumerate()
        .map(|(i, (data, effective))| {
            let stream = data.stream();
            let revision = revisions.entry(stream.clone()).or_insert(0);
            let event = RecordedEvent {
                position: Position(i as u64 + 1),
                stream,
                revision: Revision(*revision),
                recorded_at: time("2025-12-01T00:00:00Z") + chrono::Duration::days(i as i64),
                event: ProposedEvent {
                    event_id: EventId::generate(),
                    data,
                    effective_at: effective.map(time),
                    metadata: Metadata::default(),
                },
            };
            *revision += 1;
            event
        })
        .collect()
}

fn joined(raw: &str, role: MemberRole) -> EventData {
    EventData::MemberJoined { code: code(raw), name: format!("{raw} name"), kind: MemberKind::State, role }
}

fn rule(treatment: Treatment, levy_bps: Option<u32>, effective_from: &str) -> EventData {
    EventData::ExportRuleChanged {
        rule_id: RuleId::parse("rule_id", "us-cn-nvidia-h200").unwrap(),
        item: "Nvidia H200".into(),
        origin: Jurisdiction::parse("origin", "US").unwrap(),
        destination: Jurisdiction::parse("destination", "CN").unwrap(),
        treatment,
        levy_bps,
        effective_from: date(effective_from),
        authority: "US President".into(),
    }
}

/// Folds a log into views, one record per stream, the way the projector does.
fn fold(events: &[RecordedEvent]) -> (Vec<ViewRecord>, Summary) {
    let mut batch = ViewBatch::default();
    let mut summary = Summary::default();
    for event in events {
        batch.apply::<()>(event, |_| Ok(None)).unwrap();
    }
    let records = batch.finish(&mut summary);
    for written in &records {
        assert_eq!(written.bytes, encode_record(&written.record), "the bytes written are the record's");
    }
    (records.into_iter().map(|r| r.record).collect(), summary)
}

#[test]
fn a_member_view_has_its_role_history_and_its_times() {
    let events = log(vec![
        (joined("JP", MemberRole::Guest), Some("2025-12-11T00:00:00Z")),
        (EventData::MemberRoleChanged { code: code("JP"), role: MemberRole::Member }, None),
        (EventData::MemberWithdrew { code: code("JP"), reason: "illustrative".into() }, None),
    ]);
    let (records, summary) = fold(&events);
    let [record] = records.as_slice() else { panic!("one stream, one record: {records:?}") };
    let EntityState::Member(member) = &record.state else { panic!("{record:?}") };
    assert_eq!(member.role_history, [MemberRole::Guest, MemberRole::Member]);
    assert!(member.withdrawn);
    assert_eq!((record.first_position, record.last_position, record.revision), (Position(1), Position(3), Revision(2)));
    assert_eq!(record.effective_at, time("2025-12-11T00:00:00Z"), "joined when it took effect");
    assert_eq!(sole_version(record), None, "three events: the stream holds the history");
    let joined_only = fold(&events[..1]).0.remove(0);
    assert_eq!(sole_version(&joined_only), versions(&events[..1]).pop(), "one event: the record is the history");
    assert_eq!(record.created_at, time("2025-12-01T00:00:00Z"), "recorded when the ledger got it");
    assert_eq!(record.last_effective_at, time("2025-12-03T00:00:00Z"), "no effective time: the recorded one");
    assert_eq!(summary.members_withdrawn, 1);
    assert_eq!(summary.members_by_role, [0, 0], "a withdrawn participant counts in no role");
}

#[test]
fn a_project_view_follows_its_status_and_the_summary_moves_with_it() {
    let project_id = ProjectId::parse("project_id", PROJECT).unwrap();
    let status = |status| (EventData::ProjectStatusChanged { project_id, status, reason: String::new() }, None);
    let events = log(vec![
        (joined("US", MemberRole::Member), None),
        (
            EventData::ProjectIdentified {
                project_id,
                title: "Illustrative fab".into(),
                pillar: Pillar::Semiconductors,
                host: code("US"),
                partners: vec![],
                companies: vec![],
                description: String::new(),
            },
            None,
        ),
        status(ProjectStatus::Approved),
        status(ProjectStatus::Completed),
    ]);
    let (records, summary) = fold(&events);
    let project = records.iter().find(|r| r.stream.as_str().starts_with("project-")).unwrap();
    let EntityState::Project(state) = &project.state else { panic!() };
    assert_eq!(state.status_history, [ProjectStatus::Identified, ProjectStatus::Approved, ProjectStatus::Completed]);
    assert_eq!(summary.projects_by_status, [0, 0, 0, 1, 0], "only the current status counts");
    assert_eq!(summary.projects_by_pillar, [1, 0, 0, 0, 0]);
    assert_eq!(summary.members_by_role, [1, 0]);
}

#[test]
fn commitments_count_by_status_and_overdue_by_due_date() {
    let commitment_id = CommitmentId::parse("commitment_id", COMMITMENT).unwrap();
    let other = CommitmentId::parse("commitment_id", PROJECT).unwrap();
    let made = |commitment_id, due: &str| {
        (
            EventData::CommitmentMade {
                commitment_id,
                member: code("US"),
                pillar: Pillar::Energy,
                description: "illustrative".into(),
                project_id: None,
                due_on: date(due),
            },
            None,
        )
    };
    let events = log(vec![
        (joined("US", MemberRole::Member), None),
        made(commitment_id, "2026-01-31"),
        made(other, "2026-06-30"),
        (EventData::CommitmentFulfilled { commitment_id, evidence: "report".into() }, None),
    ]);
    let (records, summary) = fold(&events);
    let fulfilled = records.iter().find(|r| r.stream == StreamName::commitment(&commitment_id)).unwrap();
    let EntityState::Commitment(state) = &fulfilled.state else { panic!() };
    assert_eq!((state.status, state.resolution.as_deref()), (CommitmentStatus::Fulfilled, Some("report")));
    assert_eq!(summary.commitments_by_status, [1, 1, 0]);
    assert_eq!(summary.overdue_on(date("2026-02-01")), 0, "the one due then is fulfilled");
    assert_eq!(summary.overdue_on(date("2026-06-30")), 0, "due that day is not yet overdue");
    assert_eq!(summary.overdue_on(date("2026-07-01")), 1);
}

#[test]
fn the_rule_in_force_is_the_latest_effective_one_as_far_as_the_timeline_goes() {
    // Recorded in this order; the third change is retroactive (effective before the second).
    let events = log(vec![
        (rule(Treatment::Prohibited, None, "2025-01-01"), None),
        (rule(Treatment::AllowedWithLevy, Some(2500), "2025-12-08"), None),
        (rule(Treatment::LicenseRequired, None, "2025-06-01"), None),
    ]);
    let timeline = versions(&events);
    let treatment_on = |timeline: &[Version], day: &str| {
        in_force_on(timeline, date(day)).map(|v| match &v.record.state {
            EntityState::ExportRule(rule) => rule.treatment,
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(treatment_on(&timeline, "2024-12-31"), None);
    assert_eq!(treatment_on(&timeline, "2025-03-01"), Some(Treatment::Prohibited));
    assert_eq!(treatment_on(&timeline, "2025-07-01"), Some(Treatment::LicenseRequired));
    assert_eq!(treatment_on(&timeline, "2025-12-10"), Some(Treatment::AllowedWithLevy));
    // As known after the first two changes, July was still under the first one.
    assert_eq!(treatment_on(&timeline[..2], "2025-07-01"), Some(Treatment::Prohibited));
    // A same-day correction wins over what it corrects.
    let corrected = log(vec![
        (rule(Treatment::Prohibited, None, "2025-01-01"), None),
        (rule(Treatment::Allowed, None, "2025-01-01"), None),
    ]);
    assert_eq!(treatment_on(&versions(&corrected), "2025-01-01"), Some(Treatment::Allowed));
    let EntityState::ExportRule(current) = &timeline[2].record.state else { panic!() };
    assert_eq!(current.changes, 3);
    assert_eq!(current_in_force(current, date("2025-07-01")), None, "changed more than once: needs the timeline");
}

#[test]
fn records_and_summaries_round_trip_through_their_bytes() {
    let project_id = ProjectId::parse("project_id", PROJECT).unwrap();
    let commitment_id = CommitmentId::parse("commitment_id", COMMITMENT).unwrap();
    let events = log(vec![
        (joined("US", MemberRole::Member), Some("2025-12-11T00:00:00Z")),
        (joined("TW", MemberRole::Guest), None),
        (
            EventData::ProjectIdentified {
                project_id,
                title: "Illustrative".into(),
                pillar: Pillar::AiCompute,
                host: code("US"),
                partners: vec![code("TW")],
                companies: vec!["ASML".into()],
                description: "d".into(),
            },
            None,
        ),
        (rule(Treatment::AllowedWithLevy, Some(2500), "2025-12-08"), None),
        (
            EventData::CommitmentMade {
                commitment_id,
                member: code("US"),
                pillar: Pillar::Energy,
                description: "illustrative".into(),
                project_id: Some(project_id),
                due_on: date("2026-01-31"),
            },
            None,
        ),
        (EventData::CommitmentWithdrawn { commitment_id, reason: "r".into() }, None),
        (
            EventData::SummitConvened {
                date: date("2025-12-11"),
                host: code("US"),
                chair: "Jacob Helberg".into(),
                participants: vec![code("US"), code("TW")],
                location: "Washington".into(),
            },
            None,
        ),
    ]);
    let (records, summary) = fold(&events);
    assert_eq!(records.len(), 6);
    for record in &records {
        assert_eq!(&decode_record(&encode_record(record)).unwrap(), record);
    }
    assert_eq!(decode_summary(&encode_summary(&summary)).unwrap(), summary);
    assert_eq!(Summary::of(&records), summary, "moved record by record = added up");

    let mut bytes = encode_record(&records[0]);
    bytes[0] = 9;
    assert!(matches!(decode_record(&bytes), Err(crate::codec::DecodeError::UnsupportedFormat { found: 9, .. })));
    let mut bytes = encode_record(&records[0]);
    bytes.push(0);
    assert!(decode_record(&bytes).is_err(), "trailing bytes");
}

#[test]
fn the_digest_depends_on_every_record_and_on_the_position() {
    let events = log(vec![(joined("US", MemberRole::Member), None), (joined("JP", MemberRole::Member), None)]);
    let (records, _) = fold(&events);
    let digest = |position: u64, records: &[ViewRecord]| Summary::of(records).digest(Position(position));
    let base = digest(2, &records);
    assert_eq!(base, digest(2, &records), "deterministic");
    assert_ne!(base, digest(3, &records));
    assert_ne!(base, digest(2, &records[..1]));
    let (rebuilt, _) = fold(&events);
    assert_eq!(base, digest(2, &rebuilt), "another fold of the same log gives the same digest");
    let mut changed = records.clone();
    changed[0].updated_at += chrono::Duration::seconds(1);
    assert_ne!(base, digest(2, &changed));
}

#[test]
fn a_batch_loads_each_stream_once_and_folds_onto_what_it_loaded() {
    let events = log(vec![(joined("US", MemberRole::Guest), None)]);
    let (first, mut summary) = fold(&events);
    let later = log(vec![
        (joined("US", MemberRole::Guest), None),
        (EventData::MemberRoleChanged { code: code("US"), role: MemberRole::Member }, None),
        (EventData::MemberRoleChanged { code: code("US"), role: MemberRole::Guest }, None),
    ]);
    let mut batch = ViewBatch::default();
    let mut loads = 0;
    for event in &later[1..] {
        batch
            .apply::<()>(event, |_| {
                loads += 1;
                Ok(Some(first[0].clone()))
            })
            .unwrap();
    }
    // A stream's first event has nothing before it to load.
    let other = log(vec![(joined("JP", MemberRole::Member), None)]);
    batch.apply::<()>(&other[0], |_| panic!("a first event loads nothing")).unwrap();
    let records: Vec<ViewRecord> = batch.finish(&mut summary).into_iter().map(|r| r.record).collect();
    assert_eq!(loads, 1);
    assert_eq!(records[1].revision, Revision(2));
    assert_eq!(summary.members_by_role, [1, 1], "guest → member → guest counts once, as a guest");
    assert_eq!(summary, Summary::of(&records));
}
