//! The canonical bytes of a view record and of a summary: what the store keeps and what the
//! view digest hashes. Built from the blocks of `crate::codec` (same integers, texts, times,
//! dates, options, lists and enum tags as the record body).
//!
//! # View record, view format 3
//!
//! 1. `u8` view format, [`VIEW_FORMAT`]
//! 2. `str` stream, `u64` revision, `u64` first_position, `u64` last_position, `time` created_at,
//!    `time` updated_at, `time` effective_at, `time` last_effective_at, `str` created_by, `str`
//!    updated_by (the actors of the first and the last event)
//! 3. `u8` state tag, then the state's fields in declared order (`domain::state`):
//!    - 0 member: `str` code, `str` name, kind, role, `u8` withdrawn (0/1), `list<role>` role_history
//!    - 1 project: `uuid` project_id, `str` title, pillar, `str` host, `list<str>` partners,
//!      `list<str>` companies, `str` description, status, `list<status>` status_history
//!    - 2 export rule: `str` rule_id, `str` item, `str` origin, `str` destination, treatment,
//!      `option<u32>` levy_bps, `date` effective_from, `str` authority, `u64` changes
//!    - 3 commitment: `uuid` commitment_id, `str` member, pillar, `str` description,
//!      `option<uuid>` project_id, `date` due_on, commitment status (0 open, 1 fulfilled,
//!      2 withdrawn), `option<str>` resolution
//!    - 4 summit: `date` date, `str` host, `str` chair, `list<str>` participants, `str` location
//!
//! # Summary, view format 3
//!
//! `u8` view format, then `u64` counts: members by role (member, guest), withdrawn members,
//! projects by pillar (5) and by status (5), commitments by status (3) and by pillar (5), export
//! rules by treatment (4), summits; then open commitments per due date as a `list` of (`date`,
//! `u64`) in increasing date order; then the hash of the set of records (`set_hash`): `u64`
//! record count and its 2,048 lane bytes.

use std::collections::BTreeMap;

use super::set_hash::{LANE_BYTES, RecordSetHash};
use super::{Summary, ViewRecord};
use crate::codec::{
    DecodeError, Reader, Writer, read_member_kind, read_member_role, read_pillar, read_project_status, read_treatment,
    write_member_kind, write_member_role, write_pillar, write_project_status, write_treatment,
};
use crate::domain::{
    CommitmentId, CommitmentState, CommitmentStatus, EntityState, ExportRuleState, Jurisdiction, MemberCode,
    MemberState, Position, ProjectId, ProjectState, Revision, RuleId, StreamName, SummitState,
};

/// The version of the view layout; a store whose views have another is rebuilt on open.
/// Format 2 added the hash of the record set to the summary (format 1 had none); format 3 the
/// actors of each record's first and last event.
pub const VIEW_FORMAT: u8 = 3;

pub fn encode_record(record: &ViewRecord) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(VIEW_FORMAT);
    w.str(record.stream.as_str());
    w.u64(record.revision.0);
    w.u64(record.first_position.0);
    w.u64(record.last_position.0);
    for time in [&record.created_at, &record.updated_at, &record.effective_at, &record.last_effective_at] {
        w.time(time);
    }
    w.str(&record.created_by);
    w.str(&record.updated_by);
    match &record.state {
        EntityState::Empty => unreachable!("a view record's state is never empty"),
        EntityState::Principal(_) => unreachable!("views hold no principals (ViewRecord::fold)"),
        EntityState::Member(m) => {
            w.u8(0);
            w.str(m.code.as_str());
            w.str(&m.name);
            write_member_kind(&mut w, m.kind);
            write_member_role(&mut w, m.role);
            w.u8(u8::from(m.withdrawn));
            w.list(&m.role_history, |w, role| write_member_role(w, *role));
        }
        EntityState::Project(p) => {
            w.u8(1);
            w.uuid(p.project_id.as_uuid());
            w.str(&p.title);
            write_pillar(&mut w, p.pillar);
            w.str(p.host.as_str());
            w.list(&p.partners, |w, code| w.str(code.as_str()));
            w.list(&p.companies, |w, company| w.str(company));
            w.str(&p.description);
            write_project_status(&mut w, p.status);
            w.list(&p.status_history, |w, status| write_project_status(w, *status));
        }
        EntityState::ExportRule(r) => {
            w.u8(2);
            w.str(r.rule_id.as_str());
            w.str(&r.item);
            w.str(r.origin.as_str());
            w.str(r.destination.as_str());
            write_treatment(&mut w, r.treatment);
            w.option(r.levy_bps.as_ref(), |w, levy| w.u32(*levy));
            w.date(&r.effective_from);
            w.str(&r.authority);
            w.u64(r.changes);
        }
        EntityState::Commitment(c) => {
            w.u8(3);
            w.uuid(c.commitment_id.as_uuid());
            w.str(c.member.as_str());
            write_pillar(&mut w, c.pillar);
            w.str(&c.description);
            w.option(c.project_id.as_ref(), |w, id| w.uuid(id.as_uuid()));
            w.date(&c.due_on);
            w.u8(match c.status {
                CommitmentStatus::Open => 0,
                CommitmentStatus::Fulfilled => 1,
                CommitmentStatus::Withdrawn => 2,
            });
            w.option(c.resolution.as_ref(), |w, text| w.str(text));
        }
        EntityState::Summit(s) => {
            w.u8(4);
            w.date(&s.date);
            w.str(s.host.as_str());
            w.str(&s.chair);
            w.list(&s.participants, |w, code| w.str(code.as_str()));
            w.str(&s.location);
        }
    }
    w.bytes
}

pub fn decode_record(bytes: &[u8]) -> Result<ViewRecord, DecodeError> {
    let mut r = Reader::new(bytes);
    format(&mut r)?;
    let stream = r.string("stream")?;
    let stream = StreamName::parse("stream", &stream).map_err(DecodeError::Invalid)?;
    let revision = Revision(r.u64("revision")?);
    let first_position = Position(r.u64("first_position")?);
    let last_position = Position(r.u64("last_position")?);
    let created_at = r.time("created_at")?;
    let updated_at = r.time("updated_at")?;
    let effective_at = r.time("effective_at")?;
    let last_effective_at = r.time("last_effective_at")?;
    let created_by = r.string("created_by")?;
    let updated_by = r.string("updated_by")?;
    let state = match r.u8("state")? {
        0 => EntityState::Member(MemberState {
            code: code(&mut r, "code")?,
            name: r.string("name")?,
            kind: read_member_kind(&mut r)?,
            role: read_member_role(&mut r)?,
            withdrawn: flag(&mut r, "withdrawn")?,
            role_history: r.list("role_history", read_member_role)?,
        }),
        1 => EntityState::Project(ProjectState {
            project_id: ProjectId::parse("project_id", &r.uuid("project_id")?.to_string())
                .map_err(DecodeError::Invalid)?,
            title: r.string("title")?,
            pillar: read_pillar(&mut r)?,
            host: code(&mut r, "host")?,
            partners: r.list("partners", |r| code(r, "partners"))?,
            companies: r.list("companies", |r| r.string("companies"))?,
            description: r.string("description")?,
            status: read_project_status(&mut r)?,
            status_history: r.list("status_history", read_project_status)?,
        }),
        2 => EntityState::ExportRule(ExportRuleState {
            rule_id: RuleId::parse("rule_id", &r.string("rule_id")?).map_err(DecodeError::Invalid)?,
            item: r.string("item")?,
            origin: jurisdiction(&mut r, "origin")?,
            destination: jurisdiction(&mut r, "destination")?,
            treatment: read_treatment(&mut r)?,
            levy_bps: r.option("levy_bps", |r| r.u32("levy_bps"))?,
            effective_from: r.date("effective_from")?,
            authority: r.string("authority")?,
            changes: r.u64("changes")?,
        }),
        3 => EntityState::Commitment(CommitmentState {
            commitment_id: CommitmentId::parse("commitment_id", &r.uuid("commitment_id")?.to_string())
                .map_err(DecodeError::Invalid)?,
            member: code(&mut r, "member")?,
            pillar: read_pillar(&mut r)?,
            description: r.string("description")?,
            project_id: r.option("project_id", |r| {
                ProjectId::parse("project_id", &r.uuid("project_id")?.to_string()).map_err(DecodeError::Invalid)
            })?,
            due_on: r.date("due_on")?,
            status: match r.u8("commitment status")? {
                0 => CommitmentStatus::Open,
                1 => CommitmentStatus::Fulfilled,
                2 => CommitmentStatus::Withdrawn,
                tag => return Err(DecodeError::UnknownTag { what: "commitment status", tag }),
            },
            resolution: r.option("resolution", |r| r.string("resolution"))?,
        }),
        4 => EntityState::Summit(SummitState {
            date: r.date("date")?,
            host: code(&mut r, "host")?,
            chair: r.string("chair")?,
            participants: r.list("participants", |r| code(r, "participants"))?,
            location: r.string("location")?,
        }),
        tag => return Err(DecodeError::UnknownTag { what: "state", tag }),
    };
    r.finish()?;
    let derived = state.stream().expect("a decoded state is never empty");
    if derived != stream {
        return Err(DecodeError::StreamMismatch { stored: stream.to_string(), derived: derived.to_string() });
    }
    Ok(ViewRecord {
        stream,
        state,
        revision,
        first_position,
        last_position,
        created_at,
        updated_at,
        effective_at,
        last_effective_at,
        created_by,
        updated_by,
    })
}

pub fn encode_summary(summary: &Summary) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(VIEW_FORMAT);
    for count in summary_counts(summary) {
        w.u64(*count);
    }
    let due: Vec<_> = summary.open_commitments_due.iter().collect();
    w.list(&due, |w, (date, count)| {
        w.date(date);
        w.u64(**count);
    });
    w.u64(summary.records.records());
    w.bytes.extend_from_slice(&summary.records.lane_bytes());
    w.bytes
}

pub fn decode_summary(bytes: &[u8]) -> Result<Summary, DecodeError> {
    let mut r = Reader::new(bytes);
    format(&mut r)?;
    let mut summary = Summary::default();
    for count in summary_counts_mut(&mut summary) {
        *count = r.u64("summary count")?;
    }
    let due = r.list("open_commitments_due", |r| Ok((r.date("due_on")?, r.u64("count")?)))?;
    let mut open_commitments_due = BTreeMap::new();
    for (date, count) in due {
        if open_commitments_due.last_key_value().is_some_and(|(last, _)| date <= *last) {
            return Err(DecodeError::Invalid(crate::domain::FieldError::new(
                "open_commitments_due",
                "dates are not in increasing order",
            )));
        }
        open_commitments_due.insert(date, count);
    }
    summary.open_commitments_due = open_commitments_due;
    let records = r.u64("record count")?;
    let lanes = r.take(LANE_BYTES, "record set hash")?;
    summary.records = RecordSetHash::from_parts(records, lanes).expect("LANE_BYTES bytes");
    r.finish()?;
    Ok(summary)
}

fn summary_counts(s: &Summary) -> impl Iterator<Item = &u64> {
    s.members_by_role
        .iter()
        .chain([&s.members_withdrawn])
        .chain(&s.projects_by_pillar)
        .chain(&s.projects_by_status)
        .chain(&s.commitments_by_status)
        .chain(&s.commitments_by_pillar)
        .chain(&s.export_rules_by_treatment)
        .chain([&s.summits])
}

fn summary_counts_mut(s: &mut Summary) -> impl Iterator<Item = &mut u64> {
    s.members_by_role
        .iter_mut()
        .chain([&mut s.members_withdrawn])
        .chain(&mut s.projects_by_pillar)
        .chain(&mut s.projects_by_status)
        .chain(&mut s.commitments_by_status)
        .chain(&mut s.commitments_by_pillar)
        .chain(&mut s.export_rules_by_treatment)
        .chain([&mut s.summits])
}

fn format(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    match r.u8("view format")? {
        VIEW_FORMAT => Ok(()),
        found => Err(DecodeError::UnsupportedFormat { what: "view", found, supported: VIEW_FORMAT }),
    }
}

fn flag(r: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        tag => Err(DecodeError::UnknownTag { what, tag }),
    }
}

fn code(r: &mut Reader<'_>, what: &'static str) -> Result<MemberCode, DecodeError> {
    MemberCode::parse(what, &r.string(what)?).map_err(DecodeError::Invalid)
}

fn jurisdiction(r: &mut Reader<'_>, what: &'static str) -> Result<Jurisdiction, DecodeError> {
    Jurisdiction::parse(what, &r.string(what)?).map_err(DecodeError::Invalid)
}
