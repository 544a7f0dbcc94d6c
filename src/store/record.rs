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

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use uuid::Uuid;

use crate::domain::{
    CommitmentId, EventData, EventId, FieldError, Jurisdiction, MemberCode, MemberKind, MemberRole, Metadata, Pillar,
    Position, ProjectId, ProjectStatus, ProposedEvent, RecordedEvent, Revision, RuleId, Treatment,
};

/// The version of the body layout that [`encode_event`] writes and [`decode_event`] reads; the
/// body's first byte.
pub const BODY_FORMAT: u8 = 1;

/// Why bytes are not a record body this build can read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record body format {found} is not the one this build reads ({BODY_FORMAT}); use a matching pax-ledger")]
    UnsupportedFormat { found: u8 },
    #[error("record truncated: {what} needs {needed} bytes at offset {offset}, {available} left")]
    Truncated { what: &'static str, offset: usize, needed: usize, available: usize },
    #[error("record has {count} bytes after its end")]
    TrailingBytes { count: usize },
    #[error("record holds an unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("record's {what} is not valid UTF-8: {source}")]
    BadText { what: &'static str, source: std::str::Utf8Error },
    #[error("record's {what} is not a valid time ({seconds} s, {nanos} ns)")]
    BadTime { what: &'static str, seconds: i64, nanos: u32 },
    #[error("record's {what} is not a valid date ({days} days from the common era)")]
    BadDate { what: &'static str, days: i32 },
    #[error("record holds an invalid value: {0}")]
    Invalid(FieldError),
    #[error("record's labels are not in strictly increasing key order at {key:?}")]
    LabelsOutOfOrder { key: String },
    #[error("record is filed under stream {stored} but its event belongs to {derived}")]
    StreamMismatch { stored: String, derived: String },
}

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
    let mut r = Reader { bytes, offset: 0 };
    let format = r.u8("body format")?;
    if format != BODY_FORMAT {
        return Err(RecordError::UnsupportedFormat { found: format });
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

/// Defines the writer and the reader of an enum's one-byte tag, side by side so that they
/// cannot drift apart.
macro_rules! enum_tags {
    ($write:ident, $read:ident, $ty:ident, $what:literal, [$($variant:ident = $tag:literal),+ $(,)?]) => {
        fn $write(w: &mut Writer, value: $ty) {
            w.u8(match value {
                $($ty::$variant => $tag,)+
            });
        }

        fn $read(r: &mut Reader<'_>) -> Result<$ty, RecordError> {
            match r.u8($what)? {
                $($tag => Ok($ty::$variant),)+
                tag => Err(RecordError::UnknownTag { what: $what, tag }),
            }
        }
    };
}

enum_tags!(write_member_kind, read_member_kind, MemberKind, "member kind", [State = 0, Organization = 1]);
enum_tags!(write_member_role, read_member_role, MemberRole, "member role", [Member = 0, Guest = 1]);
enum_tags!(
    write_pillar,
    read_pillar,
    Pillar,
    "pillar",
    [Semiconductors = 0, CriticalMinerals = 1, Energy = 2, AiCompute = 3, Networks = 4,]
);
enum_tags!(
    write_project_status,
    read_project_status,
    ProjectStatus,
    "project status",
    [Identified = 0, Approved = 1, UnderWay = 2, Completed = 3, Cancelled = 4,]
);
enum_tags!(
    write_treatment,
    read_treatment,
    Treatment,
    "treatment",
    [Allowed = 0, AllowedWithLevy = 1, LicenseRequired = 2, Prohibited = 3,]
);

// ---------------------------------------------------------------------------------------------
// Building blocks

#[derive(Default)]
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }
    fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    fn i32(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    fn count(&mut self, count: usize) {
        self.u32(u32::try_from(count).expect("a record text or list longer than u32::MAX"));
    }
    fn str(&mut self, text: &str) {
        self.count(text.len());
        self.bytes.extend_from_slice(text.as_bytes());
    }
    fn uuid(&mut self, id: &Uuid) {
        self.bytes.extend_from_slice(id.as_bytes());
    }
    fn time(&mut self, time: &DateTime<Utc>) {
        self.i64(time.timestamp());
        self.u32(time.timestamp_subsec_nanos());
    }
    fn date(&mut self, date: &NaiveDate) {
        self.i32(date.num_days_from_ce());
    }
    fn option<T>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                write(self, value);
            }
        }
    }
    fn list<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        self.count(items.len());
        for item in items {
            write(self, item);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, needed: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        let available = self.bytes.len() - self.offset;
        if needed > available {
            return Err(RecordError::Truncated { what, offset: self.offset, needed, available });
        }
        let taken = &self.bytes[self.offset..self.offset + needed];
        self.offset += needed;
        Ok(taken)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordError> {
        Ok(self.take(N, what)?.try_into().expect("take returns exactly N bytes"))
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, RecordError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }
    fn count(&mut self, what: &'static str) -> Result<usize, RecordError> {
        Ok(usize::try_from(self.u32(what)?).expect("usize holds a u32"))
    }
    fn string(&mut self, what: &'static str) -> Result<String, RecordError> {
        let len = self.count(what)?;
        let bytes = self.take(len, what)?;
        let text = std::str::from_utf8(bytes).map_err(|source| RecordError::BadText { what, source })?;
        Ok(text.to_owned())
    }
    fn uuid(&mut self, what: &'static str) -> Result<Uuid, RecordError> {
        Ok(Uuid::from_bytes(self.array(what)?))
    }
    fn time(&mut self, what: &'static str) -> Result<DateTime<Utc>, RecordError> {
        let seconds = self.i64(what)?;
        let nanos = self.u32(what)?;
        DateTime::from_timestamp(seconds, nanos).ok_or(RecordError::BadTime { what, seconds, nanos })
    }
    fn date(&mut self, what: &'static str) -> Result<NaiveDate, RecordError> {
        let days = self.i32(what)?;
        NaiveDate::from_num_days_from_ce_opt(days).ok_or(RecordError::BadDate { what, days })
    }
    fn option<T>(
        &mut self,
        what: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, RecordError>,
    ) -> Result<Option<T>, RecordError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => read(self).map(Some),
            tag => Err(RecordError::UnknownTag { what, tag }),
        }
    }
    fn list<T>(
        &mut self,
        what: &'static str,
        mut read: impl FnMut(&mut Self) -> Result<T, RecordError>,
    ) -> Result<Vec<T>, RecordError> {
        let count = self.count(what)?;
        // Every item takes at least one byte: a corrupt count cannot make us allocate more than
        // the record's size.
        let mut items = Vec::with_capacity(count.min(self.bytes.len() - self.offset));
        for _ in 0..count {
            items.push(read(self)?);
        }
        Ok(items)
    }
    fn finish(self) -> Result<(), RecordError> {
        match self.bytes.len() - self.offset {
            0 => Ok(()),
            count => Err(RecordError::TrailingBytes { count }),
        }
    }
}
