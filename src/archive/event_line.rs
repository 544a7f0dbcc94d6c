//! The event line of DESIGN.md §6: one JSON object per line, read by `append` and written by
//! `history` and `tail`, converted to and from the wire types.
//!
//! Input keys: `event_id` (optional here; `append` refuses a line without one unless
//! `--allow-new-ids`, see [`require_event_id`]), `type`, `data`, `effective_at`? (RFC 3339), `expected_revision`?
//! (`"any"`, `"no_stream"`, `"exists"` or a number), `source`?, `actor`?, `correlation_id`?,
//! `causation_id`?, `labels`? (an object of strings), `signature`? (`public_key` and `signature`
//! in hexadecimal). Output keys, in this order: `position`,
//! `stream`, `revision`, `event_id`, `type`, `recorded_at`, `effective_at`, `data`, `source`,
//! `actor`, `correlation_id`, `causation_id`, `labels`, and `signature` for a signed event only.
//! `data` has the same shape both ways, so a
//! line of `history` can be appended again: on input, `position`, `revision` and `recorded_at`
//! are accepted and ignored (the ledger assigns them) and `stream`, when present, must be the
//! stream that the data names.
//!
//! `data` holds the fields of DESIGN.md §1 in snake_case; every field is required except the
//! optional `levy_bps` and `project_id` of the wire contract (absent or `null`). Enum values are
//! lower snake_case (`allowed_with_levy`). Unknown keys, types and enum values are errors that
//! name the line and the key; everything else (code formats, lengths, domain rules) is the
//! server's to judge.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use crate::domain::{ACCESS_EVENT_TYPE_NAMES, EVENT_TYPE_NAMES};
use crate::proto::v1 as pb;
use crate::service::convert;
use pb::event_data::Kind;
use pb::stream_expectation::Expected;

/// The input format of `append`, as `append --help` prints it: every key, every event type
/// with its data fields, and how lines are read. A test checks that it names every type, data
/// field and enum value this module reads.
pub const INPUT_FORMAT_HELP: &str = r#"INPUT FORMAT
One event per line, as a JSON object (JSON Lines), in UTF-8. A UTF-8 byte-order mark at the
very start of the input is skipped. Blank lines, and lines whose first non-blank character is
#, are skipped (comments). Line endings may be LF or CRLF. A line that is not UTF-8, not JSON
or not a valid event is reported on stderr with its line number and not sent (with --batch, nor
is the rest of its batch); the other lines still are, and the exit status is non-zero.

  {"event_id": "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a", "type": "member_joined",
   "data": {"code": "JP", "name": "Japan", "kind": "state", "role": "member"},
   "effective_at": "2025-12-11T00:00:00Z", "expected_revision": "no_stream",
   "source": "Benzinga, 2025-12-14", "actor": "secretariat", "labels": {"illustrative": "false"}}

Keys of a line (any other key is an error; null is the same as absent):
  event_id           the event's UUID, chosen by you: its idempotency key. Sending a line whose
                     event is already committed with the same content answers with the original
                     position (counted "already present"); the same id with other content is
                     ALREADY_EXISTS. Required, unless --allow-new-ids (a new UUIDv7 is then
                     generated, and sending the input again appends the event again).
  type               the event type, one of those below.
  data               an object with that type's fields (below); every field is required unless
                     marked optional.
  effective_at       optional: when the event took effect in the world, RFC 3339
                     (2025-12-11T00:00:00Z); it may be earlier than when it is recorded. Default:
                     the time it is recorded.
  expected_revision  optional: what the event's stream (named by its data) must look like for
                     the append to go ahead, checked atomically with it: "any", "no_stream" (the
                     stream must not exist), "exists", or a revision number (the stream's last
                     revision, from 0). Otherwise ABORTED, naming the stream's actual revision,
                     and nothing of the request is written. With --batch, at most one
                     expected_revision per stream in a batch.
  source             optional text: a citation, such as a URL or a document's title.
  actor              optional text: who recorded the event.
  correlation_id     optional text: ties related events together (e.g. a trace id).
  causation_id       optional text: the id of what caused this event.
  labels             optional: an object of string values ({"illustrative": "true"}).
  signature          optional: the recording principal's Ed25519 signature of the event, as
                     `history` prints it: {"public_key": 64 hex digits, "signature": 128 hex
                     digits}. append --sign-key FILE makes it (docs/AUDIT.md §1 says what is
                     signed); a line from `history` keeps its own.
  stream, position, revision, recorded_at
                     accepted so that a line printed by `history --output json` can be appended
                     again (to another ledger): position, revision and recorded_at are ignored
                     (the ledger assigns them), and stream must be the stream the data names.

Event types, their data fields, and the stream each belongs to:
  member_joined           code, name, kind, role                         stream member-{code}
  member_role_changed     code, role                                     stream member-{code}
  member_withdrew         code, reason                                   stream member-{code}
  project_identified      project_id, title, pillar, host, partners, companies, description
                                                                         stream project-{project_id}
  project_status_changed  project_id, status, reason                     stream project-{project_id}
  export_rule_changed     rule_id, item, origin, destination, treatment, levy_bps (optional),
                          effective_from, authority                      stream export-rule-{rule_id}
  commitment_made         commitment_id, member, pillar, description, project_id (optional),
                          due_on                                         stream commitment-{commitment_id}
  commitment_fulfilled    commitment_id, evidence                        stream commitment-{commitment_id}
  commitment_withdrawn    commitment_id, reason                          stream commitment-{commitment_id}
  summit_convened         date, host, chair, participants, location      stream summit-{date}

Data fields:
  code, host, member     a participant's code: ISO 3166-1 alpha-2 (JP) or an organisation's
                         code (EU, OECD), 2 to 8 upper-case letters.
  origin, destination    jurisdiction codes, written the same way.
  partners, participants arrays of participant codes; companies: an array of names.
  project_id, commitment_id
                         UUIDs.
  rule_id                a slug of lower-case letters and digits in groups joined by "-"
                         (us-cn-nvidia-h200).
  effective_from, due_on, date
                         dates, YYYY-MM-DD.
  levy_bps               a whole number of basis points, 0 to 10000, only with the treatment
                         allowed_with_levy (absent or null otherwise).
  name, title, item, authority, chair, location, description, evidence, reason
                         texts (reason may be "").
  kind                   state | organization
  role                   member | guest
  pillar                 semiconductors | critical_minerals | energy | ai_compute | networks
  status                 identified | approved | under_way | completed | cancelled (only forwards,
                         or to cancelled)
  treatment              allowed | allowed_with_levy | license_required | prohibited

This client checks the keys, their JSON types and the enum values; the server checks the
rest (codes, UUIDs, dates, lengths, and the rules: a member joins once, a project's host and
partners are participants, …) and names the field it refuses."#;

/// An input line that cannot become an event: its number (from 1), the key at fault (a path
/// such as `data.partners[1]`; empty when the line is not a JSON object at all) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key.as_str() {
            "" => write!(f, "line {}: {}", self.line, self.message),
            key => write!(f, "line {}: {key}: {}", self.line, self.message),
        }
    }
}

impl std::error::Error for LineError {}

/// A key and what is wrong with it, before the line number is known.
struct KeyError {
    key: String,
    message: String,
}

type Result<T> = std::result::Result<T, KeyError>;

fn key_error(key: impl Into<String>, message: impl Into<String>) -> KeyError {
    KeyError { key: key.into(), message: message.into() }
}

/// One parsed input line: the event to propose, the stream its data names, and the
/// expectation the line sets on that stream, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct EventLine {
    pub stream: String,
    pub event: pb::ProposedEvent,
    pub expected: Option<Expected>,
}

impl EventLine {
    /// The line's `expected_revision` as a wire expectation on its stream.
    pub fn expectation(&self) -> Option<pb::StreamExpectation> {
        self.expected.map(|expected| pb::StreamExpectation { stream: self.stream.clone(), expected: Some(expected) })
    }
}

/// Gives a line without `event_id` a new UUIDv7 when `allow_new_ids`, or refuses it. The id is
/// what makes an append idempotent: a line without one would be appended again, under another
/// id, each time the same input is sent, so it is refused unless asked for. An id given here
/// stays the event's for every retry of this run.
pub fn require_event_id(event: &mut EventLine, line: usize, allow_new_ids: bool) -> std::result::Result<(), LineError> {
    if !event.event.event_id.is_empty() {
        return Ok(());
    }
    if !allow_new_ids {
        return Err(LineError {
            line,
            key: "event_id".to_owned(),
            message: "is missing: without a fixed id the event would be appended again, under a new id, each time \
                      this input is sent; give the line an \"event_id\" (a UUID), or pass --allow-new-ids to have one \
                      generated"
                .to_owned(),
        });
    }
    event.event.event_id = uuid::Uuid::now_v7().to_string();
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Enumerations: lower snake_case names ⇄ wire values.

const MEMBER_KINDS: &[(&str, i32)] =
    &[("state", pb::MemberKind::State as i32), ("organization", pb::MemberKind::Organization as i32)];
const MEMBER_ROLES: &[(&str, i32)] =
    &[("member", pb::MemberRole::Member as i32), ("guest", pb::MemberRole::Guest as i32)];
const PILLARS: &[(&str, i32)] = &[
    ("semiconductors", pb::Pillar::Semiconductors as i32),
    ("critical_minerals", pb::Pillar::CriticalMinerals as i32),
    ("energy", pb::Pillar::Energy as i32),
    ("ai_compute", pb::Pillar::AiCompute as i32),
    ("networks", pb::Pillar::Networks as i32),
];
const PROJECT_STATUSES: &[(&str, i32)] = &[
    ("identified", pb::ProjectStatus::Identified as i32),
    ("approved", pb::ProjectStatus::Approved as i32),
    ("under_way", pb::ProjectStatus::UnderWay as i32),
    ("completed", pb::ProjectStatus::Completed as i32),
    ("cancelled", pb::ProjectStatus::Cancelled as i32),
];
const TREATMENTS: &[(&str, i32)] = &[
    ("allowed", pb::Treatment::Allowed as i32),
    ("allowed_with_levy", pb::Treatment::AllowedWithLevy as i32),
    ("license_required", pb::Treatment::LicenseRequired as i32),
    ("prohibited", pb::Treatment::Prohibited as i32),
];

fn names(table: &[(&str, i32)]) -> String {
    table.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// The name of a wire enum value; a value this client does not know (from a newer server) is
/// written as its number rather than hidden.
fn enum_name(table: &[(&str, i32)], value: i32) -> Value {
    table.iter().find(|(_, v)| *v == value).map_or_else(|| Value::from(value), |(name, _)| Value::from(*name))
}

// ------------------------------------------------------------------------------------------
// Input

/// A JSON object being read: remembers which keys were read, so that the rest can be refused.
struct Object<'a> {
    path: &'static str,
    fields: &'a Map<String, Value>,
    read: Vec<&'static str>,
}

impl<'a> Object<'a> {
    fn new(path: &'static str, value: &'a Value) -> Result<Self> {
        match value {
            Value::Object(fields) => Ok(Self { path, fields, read: Vec::new() }),
            other => Err(key_error(path, format!("must be a JSON object, got {}", kind_of(other)))),
        }
    }

    fn key(&self, name: &str) -> String {
        if self.path.is_empty() { name.to_owned() } else { format!("{}.{name}", self.path) }
    }

    /// The value of `name`; `None` when it is absent or `null`.
    fn optional(&mut self, name: &'static str) -> Option<&'a Value> {
        self.read.push(name);
        self.fields.get(name).filter(|v| !v.is_null())
    }

    fn required(&mut self, name: &'static str) -> Result<&'a Value> {
        self.optional(name).ok_or_else(|| key_error(self.key(name), "is required"))
    }

    fn string(&mut self, name: &'static str) -> Result<String> {
        let value = self.required(name)?;
        as_string(&self.key(name), value)
    }

    fn optional_string(&mut self, name: &'static str) -> Result<Option<String>> {
        self.optional(name).map(|v| as_string(&self.key(name), v)).transpose()
    }

    fn strings(&mut self, name: &'static str) -> Result<Vec<String>> {
        let key = self.key(name);
        match self.required(name)? {
            Value::Array(items) => {
                items.iter().enumerate().map(|(i, v)| as_string(&format!("{key}[{i}]"), v)).collect()
            }
            other => Err(key_error(key, format!("must be an array of strings, got {}", kind_of(other)))),
        }
    }

    fn enumeration(&mut self, name: &'static str, table: &[(&str, i32)]) -> Result<i32> {
        let key = self.key(name);
        let raw = as_string(&key, self.required(name)?)?;
        table
            .iter()
            .find(|(n, _)| *n == raw)
            .map(|(_, v)| *v)
            .ok_or_else(|| key_error(key, format!("unknown value {raw:?}; expected one of {}", names(table))))
    }

    fn optional_u32(&mut self, name: &'static str) -> Result<Option<u32>> {
        let Some(value) = self.optional(name) else { return Ok(None) };
        let number = value.as_u64().and_then(|n| u32::try_from(n).ok());
        number
            .map(Some)
            .ok_or_else(|| key_error(self.key(name), format!("must be a whole number in 0..=4294967295, got {value}")))
    }

    /// Refuses the keys that were not read (the first in alphabetical order).
    fn finish(self) -> Result<()> {
        match self.fields.keys().find(|k| !self.read.contains(&k.as_str())) {
            None => Ok(()),
            Some(unknown) => Err(key_error(self.key(unknown), "unknown key")),
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_string(key: &str, value: &Value) -> Result<String> {
    value.as_str().map(str::to_owned).ok_or_else(|| key_error(key, format!("must be a string, got {}", kind_of(value))))
}

/// Parses one input line (already known not to be blank or a comment); `line` is its number.
pub fn parse(line: usize, text: &str) -> std::result::Result<EventLine, LineError> {
    let value: Value = serde_json::from_str(text).map_err(|e| LineError {
        line,
        key: String::new(),
        message: format!("not valid JSON: {e}"),
    })?;
    parse_value(&value).map_err(|e| LineError { line, key: e.key, message: e.message })
}

fn parse_value(value: &Value) -> Result<EventLine> {
    let mut line = Object::new("", value)?;
    let event_type = line.string("type")?;
    let kind = data(&event_type, line.required("data")?)?;
    let stream = stream_of(&kind);
    if let Some(given) = line.optional_string("stream")?
        && given != stream
    {
        return Err(key_error("stream", format!("is {given:?}, but the data names the stream {stream:?}")));
    }
    let event_id = line.optional_string("event_id")?.unwrap_or_default();
    if !event_id.is_empty() && uuid::Uuid::try_parse(&event_id).is_err() {
        return Err(key_error("event_id", format!("must be a UUID, got {event_id:?}")));
    }
    let effective_time = line.optional_string("effective_at")?.map(|raw| rfc3339("effective_at", &raw)).transpose()?;
    let expected = line.optional("expected_revision").map(expected_revision).transpose()?;
    let metadata = pb::EventMetadata {
        source: line.optional_string("source")?.unwrap_or_default(),
        actor: line.optional_string("actor")?.unwrap_or_default(),
        correlation_id: line.optional_string("correlation_id")?.unwrap_or_default(),
        causation_id: line.optional_string("causation_id")?.unwrap_or_default(),
        labels: line.optional("labels").map(labels).transpose()?.unwrap_or_default(),
        signature: line.optional("signature").map(signature).transpose()?,
    };
    // Assigned by the ledger: accepted so that `history` output can be appended again.
    for assigned in ["position", "revision", "recorded_at"] {
        line.optional(assigned);
    }
    line.finish()?;
    let event = pb::ProposedEvent {
        event_id,
        data: Some(pb::EventData { kind: Some(kind) }),
        effective_time,
        metadata: Some(metadata),
    };
    Ok(EventLine { stream, event, expected })
}

fn rfc3339(key: &str, raw: &str) -> Result<prost_types::Timestamp> {
    let time = DateTime::parse_from_rfc3339(raw).map_err(|e| {
        key_error(key, format!("must be an RFC 3339 time such as 2025-12-11T00:00:00Z, got {raw:?} ({e})"))
    })?;
    Ok(convert::to_timestamp(&time.with_timezone(&Utc)))
}

fn expected_revision(value: &Value) -> Result<Expected> {
    let key = "expected_revision";
    match value {
        Value::String(s) if s == "any" => Ok(Expected::State(pb::ExpectedState::Any as i32)),
        Value::String(s) if s == "no_stream" => Ok(Expected::State(pb::ExpectedState::NoStream as i32)),
        Value::String(s) if s == "exists" => Ok(Expected::State(pb::ExpectedState::Exists as i32)),
        Value::Number(n) if n.as_u64().is_some() => Ok(Expected::Revision(n.as_u64().unwrap_or_default())),
        other => Err(key_error(
            key,
            format!("must be \"any\", \"no_stream\", \"exists\" or a revision (a whole number), got {other}"),
        )),
    }
}

fn signature(value: &Value) -> Result<pb::EventSignature> {
    let mut object = Object::new("signature", value)?;
    fn hex_field<const N: usize>(object: &mut Object<'_>, name: &'static str) -> Result<Vec<u8>> {
        let raw = object.string(name)?;
        let bytes: [u8; N] = crate::audit::hex::decode(&raw)
            .map_err(|_| key_error(format!("signature.{name}"), format!("must be {} hexadecimal digits", 2 * N)))?;
        Ok(bytes.to_vec())
    }
    let signature = pb::EventSignature {
        public_key: hex_field::<32>(&mut object, "public_key")?,
        signature: hex_field::<64>(&mut object, "signature")?,
    };
    object.finish()?;
    Ok(signature)
}

fn labels(value: &Value) -> Result<std::collections::HashMap<String, String>> {
    let Value::Object(fields) = value else {
        return Err(key_error("labels", format!("must be an object of strings, got {}", kind_of(value))));
    };
    fields.iter().map(|(k, v)| Ok((k.clone(), as_string(&format!("labels.{k}"), v)?))).collect()
}

/// Reads `data` as the fields of `event_type`.
fn data(event_type: &str, value: &Value) -> Result<Kind> {
    if !EVENT_TYPE_NAMES.contains(&event_type) {
        return Err(key_error(
            "type",
            format!("unknown event type {event_type:?}; expected one of {}", EVENT_TYPE_NAMES.join(", ")),
        ));
    }
    if ACCESS_EVENT_TYPE_NAMES.contains(&event_type) {
        return Err(key_error(
            "type",
            format!(
                "{event_type} is an access event: it is recorded by `pax-ledger principal` and `pax-ledger token`, not appended"
            ),
        ));
    }
    let mut d = Object::new("data", value)?;
    let kind = match event_type {
        "member_joined" => Kind::MemberJoined(pb::MemberJoined {
            code: d.string("code")?,
            name: d.string("name")?,
            kind: d.enumeration("kind", MEMBER_KINDS)?,
            role: d.enumeration("role", MEMBER_ROLES)?,
        }),
        "member_role_changed" => Kind::MemberRoleChanged(pb::MemberRoleChanged {
            code: d.string("code")?,
            role: d.enumeration("role", MEMBER_ROLES)?,
        }),
        "member_withdrew" => {
            Kind::MemberWithdrew(pb::MemberWithdrew { code: d.string("code")?, reason: d.string("reason")? })
        }
        "project_identified" => Kind::ProjectIdentified(pb::ProjectIdentified {
            project_id: d.string("project_id")?,
            title: d.string("title")?,
            pillar: d.enumeration("pillar", PILLARS)?,
            host: d.string("host")?,
            partners: d.strings("partners")?,
            companies: d.strings("companies")?,
            description: d.string("description")?,
        }),
        "project_status_changed" => Kind::ProjectStatusChanged(pb::ProjectStatusChanged {
            project_id: d.string("project_id")?,
            status: d.enumeration("status", PROJECT_STATUSES)?,
            reason: d.string("reason")?,
        }),
        "export_rule_changed" => Kind::ExportRuleChanged(pb::ExportRuleChanged {
            rule_id: d.string("rule_id")?,
            item: d.string("item")?,
            origin: d.string("origin")?,
            destination: d.string("destination")?,
            treatment: d.enumeration("treatment", TREATMENTS)?,
            levy_bps: d.optional_u32("levy_bps")?,
            effective_from: d.string("effective_from")?,
            authority: d.string("authority")?,
        }),
        "commitment_made" => Kind::CommitmentMade(pb::CommitmentMade {
            commitment_id: d.string("commitment_id")?,
            member: d.string("member")?,
            pillar: d.enumeration("pillar", PILLARS)?,
            description: d.string("description")?,
            project_id: d.optional_string("project_id")?,
            due_on: d.string("due_on")?,
        }),
        "commitment_fulfilled" => Kind::CommitmentFulfilled(pb::CommitmentFulfilled {
            commitment_id: d.string("commitment_id")?,
            evidence: d.string("evidence")?,
        }),
        "commitment_withdrawn" => Kind::CommitmentWithdrawn(pb::CommitmentWithdrawn {
            commitment_id: d.string("commitment_id")?,
            reason: d.string("reason")?,
        }),
        "summit_convened" => Kind::SummitConvened(pb::SummitConvened {
            date: d.string("date")?,
            host: d.string("host")?,
            chair: d.string("chair")?,
            participants: d.strings("participants")?,
            location: d.string("location")?,
        }),
        other => unreachable!("{other} is in EVENT_TYPE_NAMES but has no data reader"),
    };
    d.finish()?;
    Ok(kind)
}

/// The stream an event's data names (DESIGN.md §1): `member-JP`, `project-{project_id}`,
/// `export-rule-{rule_id}`, `commitment-{commitment_id}`, `summit-{date}`.
pub fn stream_of(kind: &Kind) -> String {
    match kind {
        Kind::MemberJoined(e) => format!("member-{}", e.code),
        Kind::MemberRoleChanged(e) => format!("member-{}", e.code),
        Kind::MemberWithdrew(e) => format!("member-{}", e.code),
        Kind::ProjectIdentified(e) => format!("project-{}", e.project_id),
        Kind::ProjectStatusChanged(e) => format!("project-{}", e.project_id),
        Kind::ExportRuleChanged(e) => format!("export-rule-{}", e.rule_id),
        Kind::CommitmentMade(e) => format!("commitment-{}", e.commitment_id),
        Kind::CommitmentFulfilled(e) => format!("commitment-{}", e.commitment_id),
        Kind::CommitmentWithdrawn(e) => format!("commitment-{}", e.commitment_id),
        Kind::SummitConvened(e) => format!("summit-{}", e.date),
        Kind::AccessGranted(e) => format!("principal-{}", e.principal),
        Kind::AccessRevoked(e) => format!("principal-{}", e.principal),
        Kind::CredentialIssued(e) => format!("principal-{}", e.principal),
        Kind::CredentialRevoked(e) => format!("principal-{}", e.principal),
    }
}

// ------------------------------------------------------------------------------------------
// Output

/// A JSON object that keeps its keys in the order given (serde_json's own map sorts them), so
/// that lines read in the order of DESIGN.md.
struct OrderedObject(Vec<(&'static str, Value)>);

impl Serialize for OrderedObject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// One line of `history` and `tail`.
#[derive(Serialize)]
struct HistoryLine<'a> {
    position: u64,
    stream: &'a str,
    revision: u64,
    event_id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    recorded_at: Option<String>,
    effective_at: Option<String>,
    /// `null` when the event is of a type this client does not know.
    data: Option<OrderedObject>,
    source: &'a str,
    actor: &'a str,
    correlation_id: &'a str,
    causation_id: &'a str,
    labels: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<SignatureObject>,
}

/// An event's signature in a history line.
#[derive(Serialize)]
struct SignatureObject {
    public_key: String,
    signature: String,
}

/// A wire time as RFC 3339 in UTC, with as many fractional digits as it needs (0, 3, 6 or 9).
pub fn format_time(time: Option<&prost_types::Timestamp>) -> Option<String> {
    let time = convert::timestamp("time", time?).ok()?;
    Some(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn strings(list: &[String]) -> Value {
    Value::from(list.to_vec())
}

fn data_object(kind: &Kind) -> OrderedObject {
    let fields = match kind {
        Kind::MemberJoined(e) => vec![
            ("code", Value::from(e.code.as_str())),
            ("name", Value::from(e.name.as_str())),
            ("kind", enum_name(MEMBER_KINDS, e.kind)),
            ("role", enum_name(MEMBER_ROLES, e.role)),
        ],
        Kind::MemberRoleChanged(e) => {
            vec![("code", Value::from(e.code.as_str())), ("role", enum_name(MEMBER_ROLES, e.role))]
        }
        Kind::MemberWithdrew(e) => {
            vec![("code", Value::from(e.code.as_str())), ("reason", Value::from(e.reason.as_str()))]
        }
        Kind::ProjectIdentified(e) => vec![
            ("project_id", Value::from(e.project_id.as_str())),
            ("title", Value::from(e.title.as_str())),
            ("pillar", enum_name(PILLARS, e.pillar)),
            ("host", Value::from(e.host.as_str())),
            ("partners", strings(&e.partners)),
            ("companies", strings(&e.companies)),
            ("description", Value::from(e.description.as_str())),
        ],
        Kind::ProjectStatusChanged(e) => vec![
            ("project_id", Value::from(e.project_id.as_str())),
            ("status", enum_name(PROJECT_STATUSES, e.status)),
            ("reason", Value::from(e.reason.as_str())),
        ],
        Kind::ExportRuleChanged(e) => vec![
            ("rule_id", Value::from(e.rule_id.as_str())),
            ("item", Value::from(e.item.as_str())),
            ("origin", Value::from(e.origin.as_str())),
            ("destination", Value::from(e.destination.as_str())),
            ("treatment", enum_name(TREATMENTS, e.treatment)),
            ("levy_bps", Value::from(e.levy_bps)),
            ("effective_from", Value::from(e.effective_from.as_str())),
            ("authority", Value::from(e.authority.as_str())),
        ],
        Kind::CommitmentMade(e) => vec![
            ("commitment_id", Value::from(e.commitment_id.as_str())),
            ("member", Value::from(e.member.as_str())),
            ("pillar", enum_name(PILLARS, e.pillar)),
            ("description", Value::from(e.description.as_str())),
            ("project_id", Value::from(e.project_id.as_deref())),
            ("due_on", Value::from(e.due_on.as_str())),
        ],
        Kind::CommitmentFulfilled(e) => {
            vec![
                ("commitment_id", Value::from(e.commitment_id.as_str())),
                ("evidence", Value::from(e.evidence.as_str())),
            ]
        }
        Kind::CommitmentWithdrawn(e) => {
            vec![("commitment_id", Value::from(e.commitment_id.as_str())), ("reason", Value::from(e.reason.as_str()))]
        }
        Kind::SummitConvened(e) => vec![
            ("date", Value::from(e.date.as_str())),
            ("host", Value::from(e.host.as_str())),
            ("chair", Value::from(e.chair.as_str())),
            ("participants", strings(&e.participants)),
            ("location", Value::from(e.location.as_str())),
        ],
        Kind::AccessGranted(pb::AccessGranted { principal, grants, reason })
        | Kind::AccessRevoked(pb::AccessRevoked { principal, grants, reason }) => vec![
            ("principal", Value::from(principal.as_str())),
            ("grants", Value::from(grants.iter().map(grant_text).collect::<Vec<_>>())),
            ("reason", Value::from(reason.as_str())),
        ],
        Kind::CredentialIssued(e) => {
            vec![
                ("principal", Value::from(e.principal.as_str())),
                ("credential", credential_value(e.credential.as_ref())),
            ]
        }
        Kind::CredentialRevoked(e) => vec![
            ("principal", Value::from(e.principal.as_str())),
            ("credential", credential_value(e.credential.as_ref())),
            ("reason", Value::from(e.reason.as_str())),
        ],
    };
    OrderedObject(fields)
}

/// A grant in its written form (`admin`, `delegate:JP`).
pub fn grant_text(grant: &pb::Grant) -> String {
    let role = convert::role("role", grant.role).map_or_else(|_| format!("role {}", grant.role), |r| r.to_string());
    if grant.scope.is_empty() { role } else { format!("{role}:{}", grant.scope) }
}

/// A credential kind's name (`token`, `certificate`, `signing_key`; `unknown` for a value
/// this client does not know).
pub fn credential_kind_name(kind: i32) -> &'static str {
    match pb::CredentialKind::try_from(kind) {
        Ok(pb::CredentialKind::Token) => "token",
        Ok(pb::CredentialKind::Certificate) => "certificate",
        Ok(pb::CredentialKind::SigningKey) => "signing_key",
        _ => "unknown",
    }
}

fn credential_value(credential: Option<&pb::Credential>) -> Value {
    let credential = credential.cloned().unwrap_or_default();
    let kind = credential_kind_name(credential.kind);
    serde_json::json!({ "kind": kind, "id": credential.id, "digest": credential.digest })
}

/// A recorded event as one JSON line (without the newline), keys in the order of DESIGN.md §6.
pub fn to_json(event: &pb::RecordedEvent) -> String {
    let metadata = event.metadata.clone().unwrap_or_default();
    let line = HistoryLine {
        position: event.position,
        stream: &event.stream,
        revision: event.revision,
        event_id: &event.event_id,
        event_type: &event.event_type,
        recorded_at: format_time(event.record_time.as_ref()),
        effective_at: format_time(event.effective_time.as_ref()),
        data: event.data.as_ref().and_then(|d| d.kind.as_ref()).map(data_object),
        source: &metadata.source,
        actor: &metadata.actor,
        correlation_id: &metadata.correlation_id,
        causation_id: &metadata.causation_id,
        labels: metadata.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        signature: metadata.signature.as_ref().map(|s| SignatureObject {
            public_key: crate::audit::hex::encode(&s.public_key),
            signature: crate::audit::hex::encode(&s.signature),
        }),
    };
    serde_json::to_string(&line).expect("a history line always serializes")
}

/// Signs `event` with `key` (see `store::record::signed_message`). An event this client cannot
/// read as the server will is sent unsigned: the server names what is wrong with it.
pub fn sign(event: &mut pb::ProposedEvent, key: &ed25519_dalek::SigningKey) {
    use ed25519_dalek::Signer;
    let Ok(proposed) = crate::service::convert::proposed_event("event", event) else { return };
    let signature = key.sign(&crate::store::record::signed_message(&proposed));
    event.metadata.get_or_insert_default().signature = Some(pb::EventSignature {
        public_key: key.verifying_key().to_bytes().to_vec(),
        signature: signature.to_bytes().to_vec(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a";

    /// Parses `input` as line 1, records it as the server would (position 7, revision 0), writes
    /// it back as a history line, and parses that line again: the event must survive unchanged.
    fn check_round_trip(input: &str, stream: &str) {
        let parsed = parse(1, input).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.stream, stream);
        let recorded = pb::RecordedEvent {
            position: 7,
            stream: parsed.stream.clone(),
            revision: 0,
            event_id: parsed.event.event_id.clone(),
            event_type: input_type(input),
            record_time: Some(prost_types::Timestamp { seconds: 1_765_700_000, nanos: 123_000_000 }),
            effective_time: parsed.event.effective_time,
            data: parsed.event.data.clone(),
            metadata: parsed.event.metadata.clone(),
        };
        let line = to_json(&recorded);
        let again = parse(2, &line).unwrap_or_else(|e| panic!("{e}\n{line}"));
        assert_eq!(again.event, parsed.event, "{line}");
        assert_eq!(again.stream, parsed.stream);
        assert_eq!(again.expected, None);
        let input_data: Value = serde_json::from_str::<Value>(input).unwrap()["data"].clone();
        let output_data: Value = serde_json::from_str::<Value>(&line).unwrap()["data"].clone();
        for (key, value) in input_data.as_object().unwrap() {
            assert_eq!(&output_data[key], value, "data.{key} in {line}");
        }
    }

    fn input_type(input: &str) -> String {
        serde_json::from_str::<Value>(input).unwrap()["type"].as_str().unwrap().to_owned()
    }

    fn check_error(input: &str, key: &str, message_part: &str) {
        let error = parse(4, input).expect_err(input);
        assert_eq!(error.line, 4);
        assert_eq!(error.key, key, "{error}");
        assert!(error.message.contains(message_part), "{error}");
    }

    #[test]
    fn every_event_type_round_trips() {
        let meta = r#""source": "Benzinga, 2025-12-14", "actor": "secretariat", "correlation_id": "c-1", "causation_id": "c-0", "labels": {"illustrative": "true"}"#;
        let cases = [
            (
                format!(
                    r#"{{"event_id": "{ID}", "type": "member_joined", "data": {{"code": "JP", "name": "Japan", "kind": "state", "role": "member"}}, "effective_at": "2025-12-11T00:00:00Z", {meta}}}"#
                ),
                "member-JP",
            ),
            (r#"{"type": "member_joined", "data": {"code": "EU", "name": "European Union", "kind": "organization", "role": "guest"}}"#.to_owned(), "member-EU"),
            (r#"{"type": "member_role_changed", "data": {"code": "TW", "role": "member"}}"#.to_owned(), "member-TW"),
            (r#"{"type": "member_withdrew", "data": {"code": "GB", "reason": "illustrative"}}"#.to_owned(), "member-GB"),
            (
                format!(
                    r#"{{"type": "project_identified", "data": {{"project_id": "{ID}", "title": "Fab", "pillar": "semiconductors", "host": "JP", "partners": ["KR", "NL"], "companies": ["ASML"], "description": "d"}}, {meta}}}"#
                ),
                "project-0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a",
            ),
            (
                format!(r#"{{"type": "project_status_changed", "data": {{"project_id": "{ID}", "status": "under_way", "reason": "r"}}}}"#),
                "project-0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a",
            ),
            (
                r#"{"type": "export_rule_changed", "data": {"rule_id": "us-cn-nvidia-h200", "item": "Nvidia H200", "origin": "US", "destination": "CN", "treatment": "allowed_with_levy", "levy_bps": 2500, "effective_from": "2025-12-14", "authority": "President of the United States"}, "effective_at": "2025-12-14T08:06:00.5+01:00"}"#.to_owned(),
                "export-rule-us-cn-nvidia-h200",
            ),
            (
                r#"{"type": "export_rule_changed", "data": {"rule_id": "x-y", "item": "i", "origin": "US", "destination": "CN", "treatment": "prohibited", "levy_bps": null, "effective_from": "2025-12-14", "authority": "a"}}"#.to_owned(),
                "export-rule-x-y",
            ),
            (
                format!(
                    r#"{{"type": "commitment_made", "data": {{"commitment_id": "{ID}", "member": "AU", "pillar": "critical_minerals", "description": "d", "project_id": "{ID}", "due_on": "2026-06-30"}}}}"#
                ),
                "commitment-0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a",
            ),
            (
                format!(
                    r#"{{"type": "commitment_made", "data": {{"commitment_id": "{ID}", "member": "AU", "pillar": "ai_compute", "description": "d", "due_on": "2026-06-30"}}}}"#
                ),
                "commitment-0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a",
            ),
            (
                format!(r#"{{"type": "commitment_fulfilled", "data": {{"commitment_id": "{ID}", "evidence": "e"}}}}"#),
                "commitment-0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a",
            ),
            (
                format!(r#"{{"type": "commitment_withdrawn", "data": {{"commitment_id": "{ID}", "reason": "r"}}}}"#),
                "commitment-0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a",
            ),
            (
                r#"{"type": "summit_convened", "data": {"date": "2025-12-11", "host": "US", "chair": "Jacob Helberg", "participants": ["US", "JP"], "location": "United States"}}"#.to_owned(),
                "summit-2025-12-11",
            ),
        ];
        for (input, stream) in &cases {
            check_round_trip(input, stream);
        }
        let covered: std::collections::BTreeSet<String> = cases.iter().map(|(input, _)| input_type(input)).collect();
        assert_eq!(covered.len(), EVENT_TYPE_NAMES.len() - ACCESS_EVENT_TYPE_NAMES.len());
    }

    #[test]
    fn access_events_are_not_appended_from_lines() {
        for event_type in ACCESS_EVENT_TYPE_NAMES {
            let error = parse(1, &format!(r#"{{"type": "{event_type}", "data": {{"principal": "x"}}}}"#)).unwrap_err();
            assert!(error.to_string().contains("pax-ledger principal"), "{error}");
        }
    }

    #[test]
    fn a_history_line_is_written_in_contract_order() {
        let parsed = parse(1, r#"{"type": "member_role_changed", "data": {"code": "TW", "role": "member"}}"#).unwrap();
        let recorded = pb::RecordedEvent {
            position: 3,
            stream: parsed.stream,
            revision: 1,
            event_id: ID.to_owned(),
            event_type: "member_role_changed".to_owned(),
            record_time: Some(prost_types::Timestamp { seconds: 1_765_411_200, nanos: 0 }),
            effective_time: Some(prost_types::Timestamp { seconds: 1_765_411_200, nanos: 1_000 }),
            data: parsed.event.data,
            metadata: parsed.event.metadata,
        };
        assert_eq!(
            to_json(&recorded),
            format!(
                r#"{{"position":3,"stream":"member-TW","revision":1,"event_id":"{ID}","type":"member_role_changed","recorded_at":"2025-12-11T00:00:00Z","effective_at":"2025-12-11T00:00:00.000001Z","data":{{"code":"TW","role":"member"}},"source":"","actor":"","correlation_id":"","causation_id":"","labels":{{}}}}"#
            )
        );
    }

    #[test]
    fn expected_revision_becomes_an_expectation_on_the_data_stream() {
        let line = |expected: &str| {
            parse(1, &format!(r#"{{"type": "member_withdrew", "data": {{"code": "JP", "reason": "r"}}, "expected_revision": {expected}}}"#))
                .unwrap()
                .expectation()
                .unwrap()
        };
        let state = |s: pb::ExpectedState| Some(Expected::State(s as i32));
        assert_eq!(line(r#""any""#).expected, state(pb::ExpectedState::Any));
        assert_eq!(line(r#""no_stream""#).expected, state(pb::ExpectedState::NoStream));
        assert_eq!(line(r#""exists""#).expected, state(pb::ExpectedState::Exists));
        assert_eq!(line("12").expected, Some(Expected::Revision(12)));
        assert_eq!(line("12").stream, "member-JP");
        let none = parse(1, r#"{"type": "member_withdrew", "data": {"code": "JP", "reason": "r"}}"#).unwrap();
        assert_eq!(none.expectation(), None);
    }

    #[test]
    fn bad_lines_name_the_key() {
        let joined = |data: &str| format!(r#"{{"type": "member_joined", "data": {data}}}"#);
        check_error("not json", "", "not valid JSON");
        check_error("[1, 2]", "", "must be a JSON object");
        check_error(r#"{"data": {}}"#, "type", "is required");
        check_error(r#"{"type": "member_left", "data": {}}"#, "type", "unknown event type \"member_left\"");
        check_error(r#"{"type": "member_joined"}"#, "data", "is required");
        check_error(r#"{"type": "member_joined", "data": []}"#, "data", "must be a JSON object");
        check_error(
            &joined(r#"{"code": "JP", "name": "Japan", "kind": "country", "role": "member"}"#),
            "data.kind",
            "unknown value \"country\"",
        );
        check_error(
            &joined(r#"{"code": "JP", "name": "Japan", "kind": "state", "role": "MEMBER"}"#),
            "data.role",
            "unknown value",
        );
        check_error(&joined(r#"{"code": "JP", "name": "Japan", "kind": "state"}"#), "data.role", "is required");
        check_error(
            &joined(r#"{"code": 81, "name": "Japan", "kind": "state", "role": "member"}"#),
            "data.code",
            "must be a string",
        );
        check_error(
            &joined(r#"{"code": "JP", "name": "Japan", "kind": "state", "role": "member", "capital": "Tokyo"}"#),
            "data.capital",
            "unknown key",
        );
        let member = r#""type": "member_role_changed", "data": {"code": "JP", "role": "guest"}"#;
        check_error(&format!(r#"{{{member}, "colour": "red"}}"#), "colour", "unknown key");
        check_error(&format!(r#"{{{member}, "event_id": "not-a-uuid"}}"#), "event_id", "must be a UUID");
        check_error(&format!(r#"{{{member}, "effective_at": "2025-12-11"}}"#), "effective_at", "RFC 3339");
        check_error(&format!(r#"{{{member}, "expected_revision": "latest"}}"#), "expected_revision", "\"no_stream\"");
        check_error(&format!(r#"{{{member}, "expected_revision": -1}}"#), "expected_revision", "whole number");
        check_error(
            &format!(r#"{{{member}, "labels": {{"illustrative": true}}}}"#),
            "labels.illustrative",
            "must be a string",
        );
        check_error(&format!(r#"{{{member}, "labels": ["x"]}}"#), "labels", "object of strings");
        check_error(&format!(r#"{{{member}, "stream": "member-KR"}}"#), "stream", "names the stream \"member-JP\"");
        check_error(
            r#"{"type": "summit_convened", "data": {"date": "2025-12-11", "host": "US", "chair": "c", "participants": ["US", 2], "location": "l"}}"#,
            "data.participants[1]",
            "must be a string",
        );
        check_error(
            r#"{"type": "export_rule_changed", "data": {"rule_id": "r", "item": "i", "origin": "US", "destination": "CN", "treatment": "allowed_with_levy", "levy_bps": 25.5, "effective_from": "2025-12-14", "authority": "a"}}"#,
            "data.levy_bps",
            "whole number",
        );
        check_error(
            r#"{"type": "project_status_changed", "data": {"project_id": "p", "status": "started", "reason": "r"}}"#,
            "data.status",
            "identified, approved, under_way, completed, cancelled",
        );
    }

    /// One value of every data kind, so that the help can be checked against what is read.
    fn every_kind() -> Vec<(&'static str, Kind)> {
        vec![
            ("member_joined", Kind::MemberJoined(Default::default())),
            ("member_role_changed", Kind::MemberRoleChanged(Default::default())),
            ("member_withdrew", Kind::MemberWithdrew(Default::default())),
            ("project_identified", Kind::ProjectIdentified(Default::default())),
            ("project_status_changed", Kind::ProjectStatusChanged(Default::default())),
            ("export_rule_changed", Kind::ExportRuleChanged(Default::default())),
            ("commitment_made", Kind::CommitmentMade(Default::default())),
            ("commitment_fulfilled", Kind::CommitmentFulfilled(Default::default())),
            ("commitment_withdrawn", Kind::CommitmentWithdrawn(Default::default())),
            ("summit_convened", Kind::SummitConvened(Default::default())),
        ]
    }

    /// Whether `text` has `word` as a whole word (letters, digits and `_`).
    fn mentions(text: &str, word: &str) -> bool {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| w == word)
    }

    #[test]
    fn the_input_format_help_names_every_type_field_and_value() {
        let (reading, rest) = INPUT_FORMAT_HELP.split_once("Keys of a line").unwrap();
        let (keys, rest) = rest.split_once("Event types").unwrap();
        let (types, fields) = rest.split_once("Data fields:").unwrap();
        assert!(reading.contains("byte-order mark") && reading.contains("#") && reading.contains("Blank lines"));
        let kinds = every_kind();
        assert_eq!(kinds.len(), EVENT_TYPE_NAMES.len() - ACCESS_EVENT_TYPE_NAMES.len());
        for (event_type, kind) in &kinds {
            // A type's row, and its continuation line when it has one.
            let row: String = types
                .lines()
                .skip_while(|line| !line.trim_start().starts_with(&format!("{event_type} ")))
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(!row.is_empty(), "{event_type} is not in the help");
            for (field, _) in &data_object(kind).0 {
                assert!(mentions(&row, field), "{event_type}: data field {field} is not in its row: {row}");
                assert!(mentions(fields, field), "data field {field} is not described");
            }
            let stream_kind = stream_of(kind).rsplit_once('-').map(|(kind, _)| kind.to_owned()).unwrap();
            assert!(row.contains(&format!("stream {stream_kind}-{{")), "{row}");
        }
        for key in [
            "event_id",
            "type",
            "data",
            "effective_at",
            "expected_revision",
            "source",
            "actor",
            "correlation_id",
            "causation_id",
            "labels",
            "stream",
            "position",
            "revision",
            "recorded_at",
        ] {
            assert!(mentions(keys, key), "key {key} is not described");
        }
        for state in ["\"any\"", "\"no_stream\"", "\"exists\""] {
            assert!(keys.contains(state), "{state}");
        }
        for table in [MEMBER_KINDS, MEMBER_ROLES, PILLARS, PROJECT_STATUSES, TREATMENTS] {
            assert!(fields.contains(&names(table).replace(", ", " | ")), "{}", names(table));
        }
    }

    #[test]
    fn a_line_without_event_id_is_refused_unless_new_ids_are_allowed() {
        let line = r#"{"type": "member_role_changed", "data": {"code": "JP", "role": "guest"}}"#;
        let mut event = parse(1, line).unwrap();
        let error = require_event_id(&mut event, 5, false).unwrap_err();
        assert_eq!((error.line, error.key.as_str()), (5, "event_id"));
        assert!(error.message.contains("--allow-new-ids"), "{error}");
        assert_eq!(event.event.event_id, "");

        require_event_id(&mut event, 5, true).unwrap();
        let id = uuid::Uuid::try_parse(&event.event.event_id).unwrap();
        assert_eq!(id.get_version_num(), 7);
        require_event_id(&mut event, 5, true).unwrap();
        assert_eq!(event.event.event_id, id.to_string(), "an id once given is kept");

        let mut with_id = parse(1, &format!(r#"{{"event_id": "{ID}", {}"#, &line[1..])).unwrap();
        require_event_id(&mut with_id, 1, false).unwrap();
        assert_eq!(with_id.event.event_id, ID);
    }

    #[test]
    fn assigned_keys_of_a_history_line_are_accepted_and_ignored() {
        let line = r#"{"position": 9, "stream": "member-JP", "revision": 0, "recorded_at": "2025-12-14T10:00:00Z", "type": "member_role_changed", "data": {"code": "JP", "role": "guest"}}"#;
        let parsed = parse(1, line).unwrap();
        assert_eq!(parsed.stream, "member-JP");
        assert_eq!(parsed.event.effective_time, None);
    }
}
