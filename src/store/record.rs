//! The deterministic on-disk encoding of a [`RecordedEvent`]: the record body, the bytes that
//! are hashed into the chain. Written by hand so that it never changes by accident with a
//! dependency; every byte is specified here.
//!
//! # Format, body format 1
//!
//! All integers are big-endian and fixed-width. Building blocks:
//!
//! | name | bytes |
//! |---|---|
//! | `u8`, `u32`, `u64`, `i32`, `i64` | 1, 4, 8, 4, 8 bytes, big-endian (two's complement for signed) |
//! | `str` | `u32` byte length, then that many bytes of UTF-8 |
//! | `uuid` | the 16 bytes of the UUID, in RFC 9562 order (as `Uuid::as_bytes`) |
//! | `time` | `i64` seconds since 1970-01-01T00:00:00Z, then `u32` nanoseconds (1_000_000_000 and above only for a leap second, as chrono represents it) |
//! | `date` | `i32` days from the common era, 0001-01-01 being day 1 (chrono's `num_days_from_ce`) |
//! | `option<T>` | `u8` 0 (absent), or `u8` 1 then `T`; any other tag is refused |
//! | `list<T>` | `u32` item count, then the items |
//! | enum | `u8` tag, the variant's index in declaration order (tables below) |
//!
//! A body is, in order:
//!
//! 1. `u8` body format, [`BODY_FORMAT`] (1)
//! 2. `u64` position, `u64` revision, `str` stream, `time` recorded_at
//! 3. `uuid` event_id, `option<time>` effective_at
//! 4. `u8` event type tag: the index of the type in `EVENT_TYPE_NAMES`, then the event's fields in
//!    declared order:
//!    - 0 `member_joined`: `str` code, `str` name, kind, role
//!    - 1 `member_role_changed`: `str` code, role
//!    - 2 `member_withdrew`: `str` code, `str` reason
//!    - 3 `project_identified`: `uuid` project_id, `str` title, pillar, `str` host, `list<str>` partners,
//!      `list<str>` companies, `str` description
//!    - 4 `project_status_changed`: `uuid` project_id, status, `str` reason
//!    - 5 `export_rule_changed`: `str` rule_id, `str` item, `str` origin, `str` destination, treatment,
//!      `option<u32>` levy_bps, `date` effective_from, `str` authority
//!    - 6 `commitment_made`: `uuid` commitment_id, `str` member, pillar, `str` description,
//!      `option<uuid>` project_id, `date` due_on
//!    - 7 `commitment_fulfilled`: `uuid` commitment_id, `str` evidence
//!    - 8 `commitment_withdrawn`: `uuid` commitment_id, `str` reason
//!    - 9 `summit_convened`: `date` date, `str` host, `str` chair, `list<str>` participants, `str` location
//! 5. metadata: `str` actor, `str` source, `str` correlation_id, `str` causation_id, then labels as
//!    a `u32` count and that many (`str` key, `str` value) pairs in strictly increasing byte order
//!    of the keys.
//!
//! Enum tags: kind — 0 state, 1 organization; role — 0 member, 1 guest; pillar — 0 semiconductors,
//! 1 critical_minerals, 2 energy, 3 ai_compute, 4 networks; status — 0 identified, 1 approved,
//! 2 under_way, 3 completed, 4 cancelled; treatment — 0 allowed, 1 allowed_with_levy,
//! 2 license_required, 3 prohibited.
//!
//! # Decoding
//!
//! Decoding accepts exactly the bytes that encoding produces, so that one event has one
//! encoding and one hash: it refuses another body format, truncation, trailing bytes, unknown
//! tags, invalid UTF-8, impossible times and dates, and labels out of order or repeated. Every
//! identifier is re-parsed with its newtype's `parse` (corrupt bytes never construct an invalid
//! value; UUIDs must not be nil), and the stored stream must be the stream the event data
//! belongs to. Policy limits (text lengths, list sizes) are not re-checked: they may change,
//! while a committed record must stay readable.

use std::collections::BTreeMap;

use crate::domain::{
    CommitmentId, EventData, EventId, Jurisdiction, MemberCode, Metadata, Position, ProjectId, ProposedEvent,
    RecordedEvent, Revision, RuleId,
};

/// The version of the body layout that [`encode_event`] writes and [`decode_event`] reads; the
/// body's first byte.
pub const BODY_FORMAT: u8 = 1;

/// Why bytes are not a record body this build can read.
pub use crate::codec::DecodeError as RecordError;
use crate::codec::{
    Reader, Writer, read_member_kind, read_member_role, read_pillar, read_project_status, read_treatment,
    write_member_kind, write_member_role, write_pillar, write_project_status, write_treatment,
};

/// Canonical bytes of an event record: deterministic (the same event gives the same bytes, always,
/// on every machine), the bytes that are hashed. Layout in the module documentation.
///
/// # Panics
///
/// If a text or list is longer than `u32::MAX` bytes or items: validated events are far below.
pub fn encode_event(event: &RecordedEvent) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(BODY_FORMAT);
    w.u64(event.position.0);
    w.u64(event.revision.0);
    w.str(event.stream.as_str());
    w.time(&event.recorded_at);
    let proposed = &event.event;
    w.uuid(proposed.event_id.as_uuid());
    w.option(proposed.effective_at.as_ref(), Writer::time);
    write_data(&mut w, &proposed.data);
    write_metadata(&mut w, &proposed.metadata);
    w.bytes
}

/// Reads back what [`encode_event`] wrote, and only that (see the module documentation).
pub fn decode_event(bytes: &[u8]) -> Result<RecordedEvent, RecordError> {
    let mut r = Reader::new(bytes);
    let format = r.u8("body format")?;
    if format != BODY_FORMAT {
        return Err(RecordError::UnsupportedFormat { what: "record body", found: format, supported: BODY_FORMAT });
    }
    let position = Position(r.u64("position")?);
    let revision = Revision(r.u64("revision")?);
    let stream = r.string("stream")?;
    let recorded_at = r.time("recorded_at")?;
    let event_id = EventId::parse("event_id", &r.uuid("event_id")?.to_string()).map_err(RecordError::Invalid)?;
    let effective_at = r.option("effective_at", |r| r.time("effective_at"))?;
    let data = read_data(&mut r)?;
    let metadata = read_metadata(&mut r)?;
    r.finish()?;
    let derived = data.stream();
    if derived.as_str() != stream {
        return Err(RecordError::StreamMismatch { stored: stream, derived: derived.to_string() });
    }
    Ok(RecordedEvent {
        position,
        stream: derived,
        revision,
        recorded_at,
        event: ProposedEvent { event_id, data, effective_at, metadata },
    })
}

/// The stream name (its bytes, as stored: not checked as UTF-8 or as a name) and the event id
/// of an encoded body, read without decoding the rest: what rebuilding the store's in-memory
/// indexes on open needs (item 2 and the first field of item 3 of the layout above).
pub fn peek_stream_and_id(bytes: &[u8]) -> Result<(&[u8], EventId), RecordError> {
    let mut r = Reader::new(bytes);
    let format = r.u8("body format")?;
    if format != BODY_FORMAT {
        return Err(RecordError::UnsupportedFormat { what: "record body", found: format, supported: BODY_FORMAT });
    }
    r.take(16, "position and revision")?;
    let stream_len = r.count("stream")?;
    let stream = r.take(stream_len, "stream")?;
    r.take(12, "recorded_at")?;
    Ok((stream, EventId::from_uuid(r.uuid("event_id")?)))
}

// ---------------------------------------------------------------------------------------------
// Event data and metadata

fn write_data(w: &mut Writer, data: &EventData) {
    w.u8(u8::try_from(data.type_index()).expect("ten event types fit a u8"));
    match data {
        EventData::MemberJoined { code, name, kind, role } => {
            w.str(code.as_str());
            w.str(name);
            write_member_kind(w, *kind);
            write_member_role(w, *role);
        }
        EventData::MemberRoleChanged { code, role } => {
            w.str(code.as_str());
            write_member_role(w, *role);
        }
        EventData::MemberWithdrew { code, reason } => {
            w.str(code.as_str());
            w.str(reason);
        }
        EventData::ProjectIdentified { project_id, title, pillar, host, partners, companies, description } => {
            w.uuid(project_id.as_uuid());
            w.str(title);
            write_pillar(w, *pillar);
            w.str(host.as_str());
            w.list(partners, |w, partner| w.str(partner.as_str()));
            w.list(companies, |w, company| w.str(company));
            w.str(description);
        }
        EventData::ProjectStatusChanged { project_id, status, reason } => {
            w.uuid(project_id.as_uuid());
            write_project_status(w, *status);
            w.str(reason);
        }
        EventData::ExportRuleChanged {
            rule_id,
            item,
            origin,
            destination,
            treatment,
            levy_bps,
            effective_from,
            authority,
        } => {
            w.str(rule_id.as_str());
            w.str(item);
            w.str(origin.as_str());
            w.str(destination.as_str());
            write_treatment(w, *treatment);
            w.option(levy_bps.as_ref(), |w, bps| w.u32(*bps));
            w.date(effective_from);
            w.str(authority);
        }
        EventData::CommitmentMade { commitment_id, member, pillar, description, project_id, due_on } => {
            w.uuid(commitment_id.as_uuid());
            w.str(member.as_str());
            write_pillar(w, *pillar);
            w.str(description);
            w.option(project_id.as_ref(), |w, id| w.uuid(id.as_uuid()));
            w.date(due_on);
        }
        EventData::CommitmentFulfilled { commitment_id, evidence } => {
            w.uuid(commitment_id.as_uuid());
            w.str(evidence);
        }
        EventData::CommitmentWithdrawn { commitment_id, reason } => {
            w.uuid(commitment_id.as_uuid());
            w.str(reason);
        }
        EventData::SummitConvened { date, host, chair, participants, location } => {
            w.date(date);
            w.str(host.as_str());
            w.str(chair);
            w.list(participants, |w, participant| w.str(participant.as_str()));
            w.str(location);
        }
    }
}

fn read_data(r: &mut Reader<'_>) -> Result<EventData, RecordError> {
    let data = match r.u8("event type")? {
        0 => EventData::MemberJoined {
            code: read_member_code(r, "data.code")?,
            name: r.string("data.name")?,
            kind: read_member_kind(r)?,
            role: read_member_role(r)?,
        },
        1 => EventData::MemberRoleChanged { code: read_member_code(r, "data.code")?, role: read_member_role(r)? },
        2 => EventData::MemberWithdrew { code: read_member_code(r, "data.code")?, reason: r.string("data.reason")? },
        3 => EventData::ProjectIdentified {
            project_id: read_project_id(r, "data.project_id")?,
            title: r.string("data.title")?,
            pillar: read_pillar(r)?,
            host: read_member_code(r, "data.host")?,
            partners: r.list("data.partners", |r| read_member_code(r, "data.partners"))?,
            companies: r.list("data.companies", |r| r.string("data.companies"))?,
            description: r.string("data.description")?,
        },
        4 => EventData::ProjectStatusChanged {
            project_id: read_project_id(r, "data.project_id")?,
            status: read_project_status(r)?,
            reason: r.string("data.reason")?,
        },
        5 => EventData::ExportRuleChanged {
            rule_id: RuleId::parse("data.rule_id", &r.string("data.rule_id")?).map_err(RecordError::Invalid)?,
            item: r.string("data.item")?,
            origin: read_jurisdiction(r, "data.origin")?,
            destination: read_jurisdiction(r, "data.destination")?,
            treatment: read_treatment(r)?,
            levy_bps: r.option("data.levy_bps", |r| r.u32("data.levy_bps"))?,
            effective_from: r.date("data.effective_from")?,
            authority: r.string("data.authority")?,
        },
        6 => EventData::CommitmentMade {
            commitment_id: read_commitment_id(r)?,
            member: read_member_code(r, "data.member")?,
            pillar: read_pillar(r)?,
            description: r.string("data.description")?,
            project_id: r.option("data.project_id", |r| read_project_id(r, "data.project_id"))?,
            due_on: r.date("data.due_on")?,
        },
        7 => EventData::CommitmentFulfilled {
            commitment_id: read_commitment_id(r)?,
            evidence: r.string("data.evidence")?,
        },
        8 => EventData::CommitmentWithdrawn { commitment_id: read_commitment_id(r)?, reason: r.string("data.reason")? },
        9 => EventData::SummitConvened {
            date: r.date("data.date")?,
            host: read_member_code(r, "data.host")?,
            chair: r.string("data.chair")?,
            participants: r.list("data.participants", |r| read_member_code(r, "data.participants"))?,
            location: r.string("data.location")?,
        },
        tag => return Err(RecordError::UnknownTag { what: "event type", tag }),
    };
    Ok(data)
}

fn write_metadata(w: &mut Writer, metadata: &Metadata) {
    w.str(&metadata.actor);
    w.str(&metadata.source);
    w.str(&metadata.correlation_id);
    w.str(&metadata.causation_id);
    w.count(metadata.labels.len());
    for (key, value) in &metadata.labels {
        w.str(key);
        w.str(value);
    }
}

fn read_metadata(r: &mut Reader<'_>) -> Result<Metadata, RecordError> {
    let actor = r.string("metadata.actor")?;
    let source = r.string("metadata.source")?;
    let correlation_id = r.string("metadata.correlation_id")?;
    let causation_id = r.string("metadata.causation_id")?;
    let mut labels = BTreeMap::new();
    for _ in 0..r.count("metadata.labels")? {
        let key = r.string("metadata.labels key")?;
        let value = r.string("metadata.labels value")?;
        // Pairs in increasing key order and no repeated key: the only order encoding produces.
        if labels.last_key_value().is_some_and(|(last, _)| key <= *last) {
            return Err(RecordError::LabelsOutOfOrder { key });
        }
        labels.insert(key, value);
    }
    Ok(Metadata { actor, source, correlation_id, causation_id, labels })
}

fn read_member_code(r: &mut Reader<'_>, what: &'static str) -> Result<MemberCode, RecordError> {
    MemberCode::parse(what, &r.string(what)?).map_err(RecordError::Invalid)
}

fn read_jurisdiction(r: &mut Reader<'_>, what: &'static str) -> Result<Jurisdiction, RecordError> {
    Jurisdiction::parse(what, &r.string(what)?).map_err(RecordError::Invalid)
}

fn read_project_id(r: &mut Reader<'_>, what: &'static str) -> Result<ProjectId, RecordError> {
    ProjectId::parse(what, &r.uuid(what)?.to_string()).map_err(RecordError::Invalid)
}

fn read_commitment_id(r: &mut Reader<'_>) -> Result<CommitmentId, RecordError> {
    let what = "data.commitment_id";
    CommitmentId::parse(what, &r.uuid(what)?.to_string()).map_err(RecordError::Invalid)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use chrono::{DateTime, Datelike, NaiveDate, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::domain::{EVENT_TYPE_NAMES, MemberKind, MemberRole, Pillar, ProjectStatus, StreamName, Treatment};

    const EVENT_ID: &str = "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a";
    const OTHER_ID: &str = "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6b";

    fn code(raw: &str) -> MemberCode {
        MemberCode::parse("code", raw).unwrap()
    }
    fn date(raw: &str) -> NaiveDate {
        raw.parse().unwrap()
    }
    fn time(raw: &str) -> DateTime<Utc> {
        raw.parse().unwrap()
    }

    /// A record of `data` with a full envelope.
    fn recorded(data: EventData) -> RecordedEvent {
        RecordedEvent {
            position: Position(7),
            stream: data.stream(),
            revision: Revision(3),
            recorded_at: time("2025-12-14T08:06:00.123456789Z"),
            event: ProposedEvent {
                event_id: EventId::parse("event_id", EVENT_ID).unwrap(),
                data,
                effective_at: Some(time("2025-12-11T00:00:00Z")),
                metadata: Metadata {
                    actor: "secretariat".into(),
                    source: "Benzinga, 2025-12-14".into(),
                    correlation_id: "c-1".into(),
                    causation_id: String::new(),
                    labels: [("illustrative".to_owned(), "false".to_owned()), ("lang".to_owned(), "fr".to_owned())]
                        .into(),
                },
            },
        }
    }

    #[track_caller]
    fn check_round_trip(event: &RecordedEvent) {
        let bytes = encode_event(event);
        assert_eq!(decode_event(&bytes).unwrap(), *event);
        assert_eq!(encode_event(event), bytes, "encoding is deterministic");
    }

    fn one_of_each_type() -> Vec<EventData> {
        let project_id = ProjectId::parse("project_id", OTHER_ID).unwrap();
        let commitment_id = CommitmentId::parse("commitment_id", OTHER_ID).unwrap();
        vec![
            EventData::MemberJoined {
                code: code("OECD"),
                name: "Organisation for Economic Co-operation and Development".into(),
                kind: MemberKind::Organization,
                role: MemberRole::Guest,
            },
            EventData::MemberRoleChanged { code: code("TW"), role: MemberRole::Member },
            EventData::MemberWithdrew { code: code("GB"), reason: "« raison »\nligne 2".into() },
            EventData::ProjectIdentified {
                project_id,
                title: "Fab".into(),
                pillar: Pillar::AiCompute,
                host: code("US"),
                partners: vec![code("JP"), code("KR")],
                companies: vec!["ASML".into(), "SK Hynix".into()],
                description: String::new(),
            },
            EventData::ProjectStatusChanged { project_id, status: ProjectStatus::UnderWay, reason: "funded".into() },
            EventData::ExportRuleChanged {
                rule_id: RuleId::parse("rule_id", "us-cn-nvidia-h200").unwrap(),
                item: "Nvidia H200".into(),
                origin: Jurisdiction::parse("origin", "US").unwrap(),
                destination: Jurisdiction::parse("destination", "CN").unwrap(),
                treatment: Treatment::AllowedWithLevy,
                levy_bps: Some(2500),
                effective_from: date("2025-12-08"),
                authority: "US President".into(),
            },
            EventData::CommitmentMade {
                commitment_id,
                member: code("JP"),
                pillar: Pillar::CriticalMinerals,
                description: "Refine".into(),
                project_id: Some(project_id),
                due_on: date("2027-06-30"),
            },
            EventData::CommitmentFulfilled { commitment_id, evidence: "https://example.org/report".into() },
            EventData::CommitmentWithdrawn { commitment_id, reason: String::new() },
            EventData::SummitConvened {
                date: date("2025-12-11"),
                host: code("US"),
                chair: "Jacob Helberg".into(),
                participants: vec![code("US"), code("JP"), code("EU")],
                location: "Washington".into(),
            },
        ]
    }

    #[test]
    fn every_event_type_round_trips() {
        let events = one_of_each_type();
        let types: Vec<&str> = events.iter().map(EventData::type_name).collect();
        assert_eq!(types, EVENT_TYPE_NAMES);
        for data in events {
            check_round_trip(&recorded(data));
        }
    }

    #[test]
    fn envelope_variants_round_trip() {
        let mut event = recorded(one_of_each_type().remove(0));
        event.event.effective_at = None;
        event.event.metadata = Metadata::default();
        check_round_trip(&event);
        // A leap second, as chrono represents it.
        event.recorded_at = DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap();
        event.position = Position(u64::MAX);
        check_round_trip(&event);
        let mut levy_free = one_of_each_type().remove(5);
        if let EventData::ExportRuleChanged { treatment, levy_bps, .. } = &mut levy_free {
            (*treatment, *levy_bps) = (Treatment::Prohibited, None);
        }
        check_round_trip(&recorded(levy_free));
        let mut unattached = one_of_each_type().remove(6);
        if let EventData::CommitmentMade { project_id, .. } = &mut unattached {
            *project_id = None;
        }
        check_round_trip(&recorded(unattached));
    }

    /// The record of `member_joined` JP, with no effective time and empty metadata.
    fn golden_event() -> RecordedEvent {
        let data = EventData::MemberJoined {
            code: code("JP"),
            name: "Japan".into(),
            kind: MemberKind::State,
            role: MemberRole::Member,
        };
        RecordedEvent {
            position: Position(1),
            stream: StreamName::member(&code("JP")),
            revision: Revision(0),
            recorded_at: time("2025-12-14T08:06:00Z"),
            event: ProposedEvent {
                event_id: EventId::parse("event_id", EVENT_ID).unwrap(),
                data,
                effective_at: None,
                metadata: Metadata::default(),
            },
        }
    }

    /// [`golden_event`]'s bytes, spelled out from the format in the module documentation.
    fn golden_bytes() -> Vec<u8> {
        [
            &[BODY_FORMAT][..],
            &1u64.to_be_bytes(),                           // position
            &0u64.to_be_bytes(),                           // revision
            &9u32.to_be_bytes(),                           // stream: length
            b"member-JP",                                  //   bytes (offset 21)
            &1_765_699_560i64.to_be_bytes(),               // recorded_at: seconds (offset 30)
            &0u32.to_be_bytes(),                           //   nanoseconds
            Uuid::parse_str(EVENT_ID).unwrap().as_bytes(), // event_id (offset 42)
            &[0],                                          // effective_at: absent (offset 58)
            &[0],                                          // type: member_joined (offset 59)
            &2u32.to_be_bytes(),                           // code
            b"JP",                                         //   (offset 64)
            &5u32.to_be_bytes(),                           // name
            b"Japan",                                      //   (offset 70)
            &[0],                                          // kind: state (offset 75)
            &[0],                                          // role: member (offset 76)
            &[0; 16],                                      // actor, source, correlation_id, causation_id: empty
            &0u32.to_be_bytes(),                           // labels: none
        ]
        .concat()
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        assert_eq!(encode_event(&golden_event()), golden_bytes());
        assert_eq!(decode_event(&golden_bytes()).unwrap(), golden_event());
    }

    #[track_caller]
    fn check_refused(edit: impl FnOnce(&mut Vec<u8>), expected: &str) {
        let mut bytes = golden_bytes();
        edit(&mut bytes);
        let error = decode_event(&bytes).expect_err("corrupt bytes decoded");
        assert!(format!("{error:?}").starts_with(expected), "{error:?} is not {expected}");
    }

    #[test]
    fn decoding_refuses_what_encoding_never_writes() {
        check_refused(|b| b[0] = 2, r#"UnsupportedFormat { what: "record body", found: 2, supported: 1 }"#);
        check_refused(|b| b.push(0), "TrailingBytes { count: 1 }");
        check_refused(|b| b[58] = 2, r#"UnknownTag { what: "effective_at", tag: 2 }"#);
        check_refused(|b| b[59] = 10, r#"UnknownTag { what: "event type", tag: 10 }"#);
        check_refused(|b| b[75] = 2, r#"UnknownTag { what: "member kind", tag: 2 }"#);
        check_refused(|b| b[76] = 9, r#"UnknownTag { what: "member role", tag: 9 }"#);
        check_refused(|b| b[70] = 0xff, r#"BadText { what: "data.name""#);
        check_refused(|b| b[64] = b'j', "Invalid(FieldError { field: \"data.code\"");
        check_refused(|b| b[42..58].fill(0), "Invalid(FieldError { field: \"event_id\"");
        check_refused(|b| b[38..42].copy_from_slice(&2_000_000_000u32.to_be_bytes()), "BadTime");
        check_refused(|b| b[28] = b'K', r#"StreamMismatch { stored: "member-KP", derived: "member-JP" }"#);
        check_refused(|b| b[17..21].copy_from_slice(&u32::MAX.to_be_bytes()), r#"Truncated { what: "stream""#);
        for (pairs, repeated) in [([("b", "1"), ("a", "2")], "a"), ([("a", "1"), ("a", "2")], "a")] {
            let labels = |b: &mut Vec<u8>| {
                b.truncate(b.len() - 4);
                b.extend(2u32.to_be_bytes());
                for (key, value) in pairs {
                    for text in [key, value] {
                        b.extend(u32::try_from(text.len()).unwrap().to_be_bytes());
                        b.extend(text.as_bytes());
                    }
                }
            };
            check_refused(labels, &format!("LabelsOutOfOrder {{ key: {repeated:?} }}"));
        }
    }

    #[test]
    fn decoding_refuses_an_impossible_date() {
        let event = recorded(one_of_each_type().remove(9));
        let mut bytes = encode_event(&event);
        // The summit's date is the first field after the type tag.
        let tag_at = 1 + 8 + 8 + 4 + event.stream.as_str().len() + 12 + 16 + 1 + 12;
        assert_eq!(bytes[tag_at], 9);
        bytes[tag_at + 1..tag_at + 5].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(decode_event(&bytes), Err(RecordError::BadDate { what: "data.date", days: i32::MAX })));
    }

    // --- properties ----------------------------------------------------------------------------

    fn arb_code() -> impl Strategy<Value = MemberCode> {
        "[A-Z]{2,8}".prop_map(|raw| code(&raw))
    }
    fn arb_jurisdiction() -> impl Strategy<Value = Jurisdiction> {
        "[A-Z]{2,8}".prop_map(|raw| Jurisdiction::parse("jurisdiction", &raw).unwrap())
    }
    fn arb_rule_id() -> impl Strategy<Value = RuleId> {
        "[a-z0-9]{1,6}(-[a-z0-9]{1,6}){0,4}".prop_map(|raw| RuleId::parse("rule_id", &raw).unwrap())
    }
    fn arb_uuid() -> impl Strategy<Value = Uuid> {
        (1..=u128::MAX).prop_map(Uuid::from_u128)
    }
    /// Any text at all, control characters included: encoding does not judge.
    fn arb_text() -> impl Strategy<Value = String> {
        "(?s).{0,12}"
    }
    fn arb_date() -> impl Strategy<Value = NaiveDate> {
        (NaiveDate::MIN.num_days_from_ce()..=NaiveDate::MAX.num_days_from_ce())
            .prop_map(|days| NaiveDate::from_num_days_from_ce_opt(days).unwrap())
    }
    fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
        (DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(), 0..1_000_000_000u32)
            .prop_map(|(seconds, nanos)| DateTime::from_timestamp(seconds, nanos).unwrap())
    }
    fn arb_pillar() -> impl Strategy<Value = Pillar> {
        prop::sample::select(vec![
            Pillar::Semiconductors,
            Pillar::CriticalMinerals,
            Pillar::Energy,
            Pillar::AiCompute,
            Pillar::Networks,
        ])
    }
    fn arb_role() -> impl Strategy<Value = MemberRole> {
        prop::sample::select(vec![MemberRole::Member, MemberRole::Guest])
    }
    fn arb_codes() -> impl Strategy<Value = Vec<MemberCode>> {
        prop::collection::vec(arb_code(), 0..4)
    }

    fn arb_event_data() -> impl Strategy<Value = EventData> {
        let project_id = || arb_uuid().prop_map(ProjectId::from_uuid);
        let commitment_id = || arb_uuid().prop_map(CommitmentId::from_uuid);
        prop_oneof![
            (
                arb_code(),
                arb_text(),
                prop::sample::select(vec![MemberKind::State, MemberKind::Organization]),
                arb_role()
            )
                .prop_map(|(code, name, kind, role)| EventData::MemberJoined { code, name, kind, role }),
            (arb_code(), arb_role()).prop_map(|(code, role)| EventData::MemberRoleChanged { code, role }),
            (arb_code(), arb_text()).prop_map(|(code, reason)| EventData::MemberWithdrew { code, reason }),
            (
                project_id(),
                arb_text(),
                arb_pillar(),
                arb_code(),
                arb_codes(),
                prop::collection::vec(arb_text(), 0..3),
                arb_text()
            )
                .prop_map(|(project_id, title, pillar, host, partners, companies, description)| {
                    EventData::ProjectIdentified { project_id, title, pillar, host, partners, companies, description }
                }),
            (
                project_id(),
                prop::sample::select(vec![
                    ProjectStatus::Identified,
                    ProjectStatus::Approved,
                    ProjectStatus::UnderWay,
                    ProjectStatus::Completed,
                    ProjectStatus::Cancelled,
                ]),
                arb_text()
            )
                .prop_map(|(project_id, status, reason)| EventData::ProjectStatusChanged {
                    project_id,
                    status,
                    reason
                }),
            (
                arb_rule_id(),
                arb_text(),
                arb_jurisdiction(),
                arb_jurisdiction(),
                prop::sample::select(vec![
                    Treatment::Allowed,
                    Treatment::AllowedWithLevy,
                    Treatment::LicenseRequired,
                    Treatment::Prohibited,
                ]),
                prop::option::of(any::<u32>()),
                arb_date(),
                arb_text()
            )
                .prop_map(
                    |(rule_id, item, origin, destination, treatment, levy_bps, effective_from, authority)| {
                        EventData::ExportRuleChanged {
                            rule_id,
                            item,
                            origin,
                            destination,
                            treatment,
                            levy_bps,
                            effective_from,
                            authority,
                        }
                    }
                ),
            (commitment_id(), arb_code(), arb_pillar(), arb_text(), prop::option::of(project_id()), arb_date())
                .prop_map(|(commitment_id, member, pillar, description, project_id, due_on)| {
                    EventData::CommitmentMade { commitment_id, member, pillar, description, project_id, due_on }
                }),
            (commitment_id(), arb_text())
                .prop_map(|(commitment_id, evidence)| EventData::CommitmentFulfilled { commitment_id, evidence }),
            (commitment_id(), arb_text())
                .prop_map(|(commitment_id, reason)| EventData::CommitmentWithdrawn { commitment_id, reason }),
            (arb_date(), arb_code(), arb_text(), arb_codes(), arb_text()).prop_map(
                |(date, host, chair, participants, location)| EventData::SummitConvened {
                    date,
                    host,
                    chair,
                    participants,
                    location
                }
            ),
        ]
    }

    fn arb_metadata() -> impl Strategy<Value = Metadata> {
        (arb_text(), arb_text(), arb_text(), arb_text(), prop::collection::btree_map(arb_text(), arb_text(), 0..4))
            .prop_map(|(actor, source, correlation_id, causation_id, labels)| Metadata {
                actor,
                source,
                correlation_id,
                causation_id,
                labels,
            })
    }

    fn arb_recorded_event() -> impl Strategy<Value = RecordedEvent> {
        (
            any::<u64>(),
            any::<u64>(),
            arb_time(),
            arb_uuid(),
            prop::option::of(arb_time()),
            arb_event_data(),
            arb_metadata(),
        )
            .prop_map(|(position, revision, recorded_at, event_id, effective_at, data, metadata)| {
                RecordedEvent {
                    position: Position(position),
                    stream: data.stream(),
                    revision: Revision(revision),
                    recorded_at,
                    event: ProposedEvent { event_id: EventId::from_uuid(event_id), data, effective_at, metadata },
                }
            })
    }

    proptest! {
        #[test]
        fn decode_inverts_encode_and_encoding_is_deterministic(event in arb_recorded_event()) {
            let bytes = encode_event(&event);
            prop_assert_eq!(decode_event(&bytes).unwrap(), event.clone());
            prop_assert_eq!(encode_event(&event), bytes);
        }

        #[test]
        fn the_peek_reads_the_stream_and_the_event_id(event in arb_recorded_event()) {
            let bytes = encode_event(&event);
            let (stream, id) = peek_stream_and_id(&bytes).unwrap();
            prop_assert_eq!(stream, event.stream.as_str().as_bytes());
            prop_assert_eq!(id, event.event.event_id);
        }

        #[test]
        fn every_truncation_is_refused(event in arb_recorded_event()) {
            let bytes = encode_event(&event);
            for len in 0..bytes.len() {
                prop_assert!(decode_event(&bytes[..len]).is_err(), "a prefix of {} bytes decoded", len);
            }
        }

        /// Decoding accepts only canonical bytes: whatever a corrupted byte turns into, it is
        /// refused or it is the one encoding of what it decodes to. And it never panics.
        #[test]
        fn a_corrupted_byte_is_refused_or_canonical(event in arb_recorded_event(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = encode_event(&event);
            let at = at.index(bytes.len());
            bytes[at] = byte;
            if let Ok(decoded) = decode_event(&bytes) {
                prop_assert_eq!(encode_event(&decoded), bytes);
            }
        }
    }
}
