//! The deterministic on-disk encoding of a [`RecordedEvent`]: the record body, the bytes that
//! are hashed into the chain. Written by hand so that it never changes by accident with a
//! dependency; every byte is specified here.
//!
//! # Format, body formats 1 and 2
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
//! 1. `u8` body format: [`BODY_FORMAT`] (1) for an unsigned event, [`BODY_FORMAT_SIGNED`] (2)
//!    for an event its principal signed
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
//!    - 10 `access_granted`, 11 `access_revoked`: `str` principal, `list<str>` grants (each in
//!      its written form, `admin` or `delegate:JP`), `str` reason
//!    - 12 `credential_issued`: `str` principal, credential
//!    - 13 `credential_revoked`: `str` principal, credential, `str` reason
//! 5. metadata: `str` actor, `str` source, `str` correlation_id, `str` causation_id, then labels as
//!    a `u32` count and that many (`str` key, `str` value) pairs in strictly increasing byte order
//!    of the keys.
//! 6. in body format 2 only, the signature: the 32 bytes of the Ed25519 public key, then the 64
//!    bytes of the signature of [`signed_message`].
//!
//! An unsigned event is encoded in format 1, byte for byte as before signatures existed: format
//! 2 adds, it changes no earlier record or hash.
//!
//! # The signed message
//!
//! What a principal signs ([`signed_message`]): the 30 ASCII bytes
//! `pax-ledger event signature v1` and a line feed, then `str` stream, the event type tag and
//! fields exactly as in item 4, `option<time>` effective_at, `uuid` event_id. Neither the
//! position nor the record time (the server chooses them after the signature is made) nor the
//! metadata (the actor is the authenticated principal, whose key it is) is signed.
//!
//! Enum tags: kind — 0 state, 1 organization; role — 0 member, 1 guest; pillar — 0 semiconductors,
//! 1 critical_minerals, 2 energy, 3 ai_compute, 4 networks; status — 0 identified, 1 approved,
//! 2 under_way, 3 completed, 4 cancelled; treatment — 0 allowed, 1 allowed_with_levy,
//! 2 license_required, 3 prohibited; a credential is its kind (0 token, 1 certificate, 2 signing key) then the
//! 32 bytes of its SHA-256 digest.
//!
//! # Decoding
//!
//! Decoding accepts exactly the bytes that encoding produces, so that one event has one
//! encoding and one hash. [`read_body`] is the one reader of the format: it checks a body in
//! place, allocating nothing, and [`decode_event`] builds the owned event from what it read. It
//! refuses another body format, truncation, trailing bytes, unknown
//! tags, invalid UTF-8, impossible times and dates, and labels out of order or repeated. Every
//! identifier is re-parsed with its newtype's `parse` (corrupt bytes never construct an invalid
//! value; UUIDs must not be nil), and the stored stream must be the stream the event data
//! belongs to. Policy limits (text lengths, list sizes) are not re-checked: they may change,
//! while a committed record must stay readable.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::{
    CommitmentId, Credential, CredentialKind, EventData, EventId, EventSignature, FieldError, Grant, Jurisdiction,
    MemberCode, MemberKind, MemberRole, Metadata, Pillar, Position, PrincipalName, ProjectId, ProjectStatus,
    ProposedEvent, RecordedEvent, Revision, RuleId, StreamKey, Treatment,
};

/// The version of the body layout that [`encode_event`] writes for an unsigned event, and the
/// body's first byte.
pub const BODY_FORMAT: u8 = 1;
/// The body format of a signed event: [`BODY_FORMAT`]'s layout and the signature after it.
pub const BODY_FORMAT_SIGNED: u8 = 2;

/// The first bytes of every [`signed_message`]: a signature of an event can be mistaken for
/// no other signed thing.
pub const SIGNED_MESSAGE_PREFIX: &[u8] = b"pax-ledger event signature v1\n";

/// Why bytes are not a record body this build can read.
pub use crate::codec::DecodeError as RecordError;
pub use crate::codec::Texts;
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
    let signature = event.event.metadata.signature.as_ref();
    w.u8(if signature.is_some() { BODY_FORMAT_SIGNED } else { BODY_FORMAT });
    w.u64(event.position.0);
    w.u64(event.revision.0);
    w.str(event.stream.as_str());
    w.time(&event.recorded_at);
    let proposed = &event.event;
    w.uuid(proposed.event_id.as_uuid());
    w.option(proposed.effective_at.as_ref(), Writer::time);
    write_data(&mut w, &proposed.data);
    write_metadata(&mut w, &proposed.metadata);
    if let Some(signature) = signature {
        w.bytes.extend_from_slice(&signature.public_key);
        w.bytes.extend_from_slice(&signature.signature);
    }
    w.bytes
}

/// The bytes a principal signs for `event` (see the module documentation): deterministic, and
/// the same whether the event is proposed or read back from the log.
pub fn signed_message(event: &ProposedEvent) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes.extend_from_slice(SIGNED_MESSAGE_PREFIX);
    w.str(event.data.stream().as_str());
    write_data(&mut w, &event.data);
    w.option(event.effective_at.as_ref(), Writer::time);
    w.uuid(event.event_id.as_uuid());
    w.bytes
}

/// Whether `event`'s signature, if it carries one, is its key's over [`signed_message`]; the
/// error says which key's does not verify. (Whether the key was the recording principal's is
/// the access rule's question: `domain::access::check_signature`.)
pub fn check_event_signature(event: &ProposedEvent) -> Result<(), String> {
    match &event.metadata.signature {
        Some(signature) if !signature.verifies(&signed_message(event)) => Err(format!(
            "the signature by key {} does not verify over the event's signed bytes (stream, type and data, \
             effective time, event id)",
            signature.credential().id()
        )),
        _ => Ok(()),
    }
}

/// Reads back what [`encode_event`] wrote, and only that (see the module documentation):
/// [`read_body`], then the owned event built from what it read.
pub fn decode_event(bytes: &[u8]) -> Result<RecordedEvent, RecordError> {
    read_body(bytes)?.to_event()
}

/// A record body read in place: every field of the format, checked as the module
/// documentation says (the same checks, in the same order, whatever the caller does next),
/// with texts and lists borrowed from the bytes. [`read_body`] builds it without allocating;
/// [`decode_event`] builds the owned event from it.
#[derive(Clone, Debug, PartialEq)]
pub struct BodyRef<'a> {
    pub position: Position,
    pub revision: Revision,
    /// The stream the body is filed under; it is the stream its data belongs to.
    pub stream: &'a str,
    pub recorded_at: DateTime<Utc>,
    pub event_id: EventId,
    pub effective_at: Option<DateTime<Utc>>,
    pub data: DataRef<'a>,
    pub metadata: MetadataRef<'a>,
}

/// [`EventData`] read in place: codes, slugs and texts as checked `&str`, lists as [`Texts`].
#[derive(Clone, Debug, PartialEq)]
pub enum DataRef<'a> {
    MemberJoined {
        code: &'a str,
        name: &'a str,
        kind: MemberKind,
        role: MemberRole,
    },
    MemberRoleChanged {
        code: &'a str,
        role: MemberRole,
    },
    MemberWithdrew {
        code: &'a str,
        reason: &'a str,
    },
    ProjectIdentified {
        project_id: ProjectId,
        title: &'a str,
        pillar: Pillar,
        host: &'a str,
        partners: Texts<'a>,
        companies: Texts<'a>,
        description: &'a str,
    },
    ProjectStatusChanged {
        project_id: ProjectId,
        status: ProjectStatus,
        reason: &'a str,
    },
    ExportRuleChanged {
        rule_id: &'a str,
        item: &'a str,
        origin: &'a str,
        destination: &'a str,
        treatment: Treatment,
        levy_bps: Option<u32>,
        effective_from: NaiveDate,
        authority: &'a str,
    },
    CommitmentMade {
        commitment_id: CommitmentId,
        member: &'a str,
        pillar: Pillar,
        description: &'a str,
        project_id: Option<ProjectId>,
        due_on: NaiveDate,
    },
    CommitmentFulfilled {
        commitment_id: CommitmentId,
        evidence: &'a str,
    },
    CommitmentWithdrawn {
        commitment_id: CommitmentId,
        reason: &'a str,
    },
    SummitConvened {
        date: NaiveDate,
        host: &'a str,
        chair: &'a str,
        participants: Texts<'a>,
        location: &'a str,
    },
    AccessGranted {
        principal: &'a str,
        grants: Texts<'a>,
        reason: &'a str,
    },
    AccessRevoked {
        principal: &'a str,
        grants: Texts<'a>,
        reason: &'a str,
    },
    CredentialIssued {
        principal: &'a str,
        credential: Credential,
    },
    CredentialRevoked {
        principal: &'a str,
        credential: Credential,
        reason: &'a str,
    },
}

/// [`Metadata`] read in place.
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataRef<'a> {
    pub actor: &'a str,
    pub source: &'a str,
    pub correlation_id: &'a str,
    pub causation_id: &'a str,
    /// The labels' (key, value) texts, in their (checked) strictly increasing key order.
    pub labels: Texts<'a>,
    /// Body format 2's signature (not checked against the message here: see
    /// [`EventSignature::verifies`]).
    pub signature: Option<EventSignature>,
}

/// Reads a record body in place, checking all of it (see [`BodyRef`]). Nothing is copied: the
/// only allocations are an error's, and the text of a summit's date, formatted to be compared
/// with its stream's name.
pub fn read_body(bytes: &[u8]) -> Result<BodyRef<'_>, RecordError> {
    let mut r = Reader::new(bytes);
    let signed = read_body_format(&mut r)?;
    let position = Position(r.u64("position")?);
    let revision = Revision(r.u64("revision")?);
    let stream = r.str("stream")?;
    let recorded_at = r.time("recorded_at")?;
    let event_id = EventId::checked("event_id", r.uuid("event_id")?).map_err(RecordError::Invalid)?;
    let effective_at = r.option("effective_at", |r| r.time("effective_at"))?;
    let data = read_data(&mut r)?;
    let mut metadata = read_metadata(&mut r)?;
    if signed {
        metadata.signature = Some(EventSignature {
            public_key: r.array("signature.public_key")?,
            signature: r.array("signature.signature")?,
        });
    }
    r.finish()?;
    let derived = data.stream_key();
    if !derived.names(stream) {
        return Err(RecordError::StreamMismatch { stored: stream.to_owned(), derived: derived.to_string() });
    }
    Ok(BodyRef { position, revision, stream, recorded_at, event_id, effective_at, data, metadata })
}

impl BodyRef<'_> {
    /// The owned event. Every field was checked by [`read_body`]; identifiers are parsed into
    /// their types again here (by the same functions: they cannot disagree).
    pub fn to_event(&self) -> Result<RecordedEvent, RecordError> {
        let data = self.data.to_data()?;
        Ok(RecordedEvent {
            position: self.position,
            stream: data.stream(),
            revision: self.revision,
            recorded_at: self.recorded_at,
            event: ProposedEvent {
                event_id: self.event_id,
                data,
                effective_at: self.effective_at,
                metadata: self.metadata.to_metadata()?,
            },
        })
    }
}

/// The stream name (its bytes, as stored: not checked as UTF-8 or as a name), the revision and
/// the event id of an encoded body, read without decoding the rest: what rebuilding the store's
/// in-memory indexes on open needs (item 2 and the first field of item 3 of the layout above).
pub fn peek_stream_and_id(bytes: &[u8]) -> Result<(&[u8], Revision, EventId), RecordError> {
    let mut r = Reader::new(bytes);
    read_body_format(&mut r)?;
    r.take(8, "position")?;
    let revision = Revision(r.u64("revision")?);
    let stream_len = r.count("stream")?;
    let stream = r.take(stream_len, "stream")?;
    r.take(12, "recorded_at")?;
    Ok((stream, revision, EventId::from_uuid(r.uuid("event_id")?)))
}

/// Reads the body format byte: whether the body is of a signed event.
fn read_body_format(r: &mut Reader<'_>) -> Result<bool, RecordError> {
    match r.u8("body format")? {
        BODY_FORMAT => Ok(false),
        BODY_FORMAT_SIGNED => Ok(true),
        found => Err(RecordError::UnsupportedFormat { what: "record body", found, supported: BODY_FORMAT_SIGNED }),
    }
}

// ---------------------------------------------------------------------------------------------
// Event data and metadata

fn write_data(w: &mut Writer, data: &EventData) {
    w.u8(u8::try_from(data.type_index()).expect("the event types fit a u8"));
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
        EventData::AccessGranted { principal, grants, reason }
        | EventData::AccessRevoked { principal, grants, reason } => {
            w.str(principal.as_str());
            w.list(grants, |w, grant| w.str(&grant.to_string()));
            w.str(reason);
        }
        EventData::CredentialIssued { principal, credential } => {
            w.str(principal.as_str());
            write_credential(w, credential);
        }
        EventData::CredentialRevoked { principal, credential, reason } => {
            w.str(principal.as_str());
            write_credential(w, credential);
            w.str(reason);
        }
    }
}

fn write_credential(w: &mut Writer, credential: &Credential) {
    w.u8(match credential.kind {
        CredentialKind::Token => 0,
        CredentialKind::Certificate => 1,
        CredentialKind::SigningKey => 2,
    });
    w.bytes.extend_from_slice(&credential.digest);
}

fn read_credential(r: &mut Reader<'_>) -> Result<Credential, RecordError> {
    let kind = match r.u8("data.credential.kind")? {
        0 => CredentialKind::Token,
        1 => CredentialKind::Certificate,
        2 => CredentialKind::SigningKey,
        tag => return Err(RecordError::UnknownTag { what: "credential kind", tag }),
    };
    let digest = r.array("data.credential.digest")?;
    Ok(Credential { kind, digest })
}

fn read_principal<'a>(r: &mut Reader<'a>) -> Result<&'a str, RecordError> {
    checked(r.str("data.principal")?, |raw| PrincipalName::parse("data.principal", raw).map(drop))
}

fn read_grants<'a>(r: &mut Reader<'a>) -> Result<Texts<'a>, RecordError> {
    r.texts("data.grants", |raw| Grant::parse("data.grants", raw).map(drop).map_err(RecordError::Invalid))
}

fn grants_of(texts: &Texts<'_>) -> Result<Vec<Grant>, RecordError> {
    texts.iter().map(|raw| Grant::parse("data.grants", raw?).map_err(RecordError::Invalid)).collect()
}

fn principal_name(raw: &str) -> Result<PrincipalName, RecordError> {
    PrincipalName::parse("data.principal", raw).map_err(RecordError::Invalid)
}

fn read_data<'a>(r: &mut Reader<'a>) -> Result<DataRef<'a>, RecordError> {
    let data = match r.u8("event type")? {
        0 => DataRef::MemberJoined {
            code: read_member_code(r, "data.code")?,
            name: r.str("data.name")?,
            kind: read_member_kind(r)?,
            role: read_member_role(r)?,
        },
        1 => DataRef::MemberRoleChanged { code: read_member_code(r, "data.code")?, role: read_member_role(r)? },
        2 => DataRef::MemberWithdrew { code: read_member_code(r, "data.code")?, reason: r.str("data.reason")? },
        3 => DataRef::ProjectIdentified {
            project_id: read_project_id(r, "data.project_id")?,
            title: r.str("data.title")?,
            pillar: read_pillar(r)?,
            host: read_member_code(r, "data.host")?,
            partners: r.texts("data.partners", |code| check_member_code("data.partners", code))?,
            companies: r.texts("data.companies", |_| Ok(()))?,
            description: r.str("data.description")?,
        },
        4 => DataRef::ProjectStatusChanged {
            project_id: read_project_id(r, "data.project_id")?,
            status: read_project_status(r)?,
            reason: r.str("data.reason")?,
        },
        5 => DataRef::ExportRuleChanged {
            rule_id: checked(r.str("data.rule_id")?, |raw| RuleId::check("data.rule_id", raw))?,
            item: r.str("data.item")?,
            origin: read_jurisdiction(r, "data.origin")?,
            destination: read_jurisdiction(r, "data.destination")?,
            treatment: read_treatment(r)?,
            levy_bps: r.option("data.levy_bps", |r| r.u32("data.levy_bps"))?,
            effective_from: r.date("data.effective_from")?,
            authority: r.str("data.authority")?,
        },
        6 => DataRef::CommitmentMade {
            commitment_id: read_commitment_id(r)?,
            member: read_member_code(r, "data.member")?,
            pillar: read_pillar(r)?,
            description: r.str("data.description")?,
            project_id: r.option("data.project_id", |r| read_project_id(r, "data.project_id"))?,
            due_on: r.date("data.due_on")?,
        },
        7 => DataRef::CommitmentFulfilled { commitment_id: read_commitment_id(r)?, evidence: r.str("data.evidence")? },
        8 => DataRef::CommitmentWithdrawn { commitment_id: read_commitment_id(r)?, reason: r.str("data.reason")? },
        9 => DataRef::SummitConvened {
            date: r.date("data.date")?,
            host: read_member_code(r, "data.host")?,
            chair: r.str("data.chair")?,
            participants: r.texts("data.participants", |code| check_member_code("data.participants", code))?,
            location: r.str("data.location")?,
        },
        10 => DataRef::AccessGranted {
            principal: read_principal(r)?,
            grants: read_grants(r)?,
            reason: r.str("data.reason")?,
        },
        11 => DataRef::AccessRevoked {
            principal: read_principal(r)?,
            grants: read_grants(r)?,
            reason: r.str("data.reason")?,
        },
        12 => DataRef::CredentialIssued { principal: read_principal(r)?, credential: read_credential(r)? },
        13 => DataRef::CredentialRevoked {
            principal: read_principal(r)?,
            credential: read_credential(r)?,
            reason: r.str("data.reason")?,
        },
        tag => return Err(RecordError::UnknownTag { what: "event type", tag }),
    };
    Ok(data)
}

impl DataRef<'_> {
    /// What the event's stream is named after (as [`EventData::stream_key`] says for the
    /// owned data).
    pub fn stream_key(&self) -> StreamKey<'_> {
        match self {
            Self::MemberJoined { code, .. }
            | Self::MemberRoleChanged { code, .. }
            | Self::MemberWithdrew { code, .. } => StreamKey::Member(code),
            Self::ProjectIdentified { project_id, .. } | Self::ProjectStatusChanged { project_id, .. } => {
                StreamKey::Project(*project_id)
            }
            Self::ExportRuleChanged { rule_id, .. } => StreamKey::ExportRule(rule_id),
            Self::CommitmentMade { commitment_id, .. }
            | Self::CommitmentFulfilled { commitment_id, .. }
            | Self::CommitmentWithdrawn { commitment_id, .. } => StreamKey::Commitment(*commitment_id),
            Self::SummitConvened { date, .. } => StreamKey::Summit(*date),
            Self::AccessGranted { principal, .. }
            | Self::AccessRevoked { principal, .. }
            | Self::CredentialIssued { principal, .. }
            | Self::CredentialRevoked { principal, .. } => StreamKey::Principal(principal),
        }
    }

    /// The owned event data.
    pub fn to_data(&self) -> Result<EventData, RecordError> {
        let text = |text: &str| text.to_owned();
        let data = match self {
            Self::MemberJoined { code, name, kind, role } => EventData::MemberJoined {
                code: member_code("data.code", code)?,
                name: text(name),
                kind: *kind,
                role: *role,
            },
            Self::MemberRoleChanged { code, role } => {
                EventData::MemberRoleChanged { code: member_code("data.code", code)?, role: *role }
            }
            Self::MemberWithdrew { code, reason } => {
                EventData::MemberWithdrew { code: member_code("data.code", code)?, reason: text(reason) }
            }
            Self::ProjectIdentified { project_id, title, pillar, host, partners, companies, description } => {
                EventData::ProjectIdentified {
                    project_id: *project_id,
                    title: text(title),
                    pillar: *pillar,
                    host: member_code("data.host", host)?,
                    partners: partners
                        .iter()
                        .map(|code| member_code("data.partners", code?))
                        .collect::<Result<_, _>>()?,
                    companies: companies.iter().map(|company| company.map(text)).collect::<Result<_, _>>()?,
                    description: text(description),
                }
            }
            Self::ProjectStatusChanged { project_id, status, reason } => {
                EventData::ProjectStatusChanged { project_id: *project_id, status: *status, reason: text(reason) }
            }
            Self::ExportRuleChanged {
                rule_id,
                item,
                origin,
                destination,
                treatment,
                levy_bps,
                effective_from,
                authority,
            } => EventData::ExportRuleChanged {
                rule_id: RuleId::parse("data.rule_id", rule_id).map_err(RecordError::Invalid)?,
                item: text(item),
                origin: jurisdiction("data.origin", origin)?,
                destination: jurisdiction("data.destination", destination)?,
                treatment: *treatment,
                levy_bps: *levy_bps,
                effective_from: *effective_from,
                authority: text(authority),
            },
            Self::CommitmentMade { commitment_id, member, pillar, description, project_id, due_on } => {
                EventData::CommitmentMade {
                    commitment_id: *commitment_id,
                    member: member_code("data.member", member)?,
                    pillar: *pillar,
                    description: text(description),
                    project_id: *project_id,
                    due_on: *due_on,
                }
            }
            Self::CommitmentFulfilled { commitment_id, evidence } => {
                EventData::CommitmentFulfilled { commitment_id: *commitment_id, evidence: text(evidence) }
            }
            Self::CommitmentWithdrawn { commitment_id, reason } => {
                EventData::CommitmentWithdrawn { commitment_id: *commitment_id, reason: text(reason) }
            }
            Self::SummitConvened { date, host, chair, participants, location } => EventData::SummitConvened {
                date: *date,
                host: member_code("data.host", host)?,
                chair: text(chair),
                participants: participants
                    .iter()
                    .map(|code| member_code("data.participants", code?))
                    .collect::<Result<_, _>>()?,
                location: text(location),
            },
            Self::AccessGranted { principal, grants, reason } => EventData::AccessGranted {
                principal: principal_name(principal)?,
                grants: grants_of(grants)?,
                reason: text(reason),
            },
            Self::AccessRevoked { principal, grants, reason } => EventData::AccessRevoked {
                principal: principal_name(principal)?,
                grants: grants_of(grants)?,
                reason: text(reason),
            },
            Self::CredentialIssued { principal, credential } => {
                EventData::CredentialIssued { principal: principal_name(principal)?, credential: *credential }
            }
            Self::CredentialRevoked { principal, credential, reason } => EventData::CredentialRevoked {
                principal: principal_name(principal)?,
                credential: *credential,
                reason: text(reason),
            },
        };
        Ok(data)
    }
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

fn read_metadata<'a>(r: &mut Reader<'a>) -> Result<MetadataRef<'a>, RecordError> {
    let actor = r.str("metadata.actor")?;
    let source = r.str("metadata.source")?;
    let correlation_id = r.str("metadata.correlation_id")?;
    let causation_id = r.str("metadata.causation_id")?;
    let pairs = r.count("metadata.labels")?;
    let start = r.offset();
    let mut last: Option<&str> = None;
    for _ in 0..pairs {
        let key = r.str("metadata.labels key")?;
        r.str("metadata.labels value")?;
        // Pairs in increasing key order and no repeated key: the only order encoding produces.
        if last.is_some_and(|last| key <= last) {
            return Err(RecordError::LabelsOutOfOrder { key: key.to_owned() });
        }
        last = Some(key);
    }
    // Each pair is two texts, key then value.
    let labels = Texts::new("metadata.labels", pairs * 2, r.read_since(start));
    Ok(MetadataRef { actor, source, correlation_id, causation_id, labels, signature: None })
}

impl MetadataRef<'_> {
    /// The owned metadata.
    pub fn to_metadata(&self) -> Result<Metadata, RecordError> {
        let mut labels = BTreeMap::new();
        let mut texts = self.labels.iter();
        while let (Some(key), Some(value)) = (texts.next(), texts.next()) {
            labels.insert(key?.to_owned(), value?.to_owned());
        }
        Ok(Metadata {
            actor: self.actor.to_owned(),
            source: self.source.to_owned(),
            correlation_id: self.correlation_id.to_owned(),
            causation_id: self.causation_id.to_owned(),
            labels,
            signature: self.signature,
        })
    }
}

fn checked(raw: &str, check: impl FnOnce(&str) -> Result<(), FieldError>) -> Result<&str, RecordError> {
    check(raw).map_err(RecordError::Invalid)?;
    Ok(raw)
}

fn check_member_code(what: &'static str, raw: &str) -> Result<(), RecordError> {
    MemberCode::check(what, raw).map_err(RecordError::Invalid)
}

fn read_member_code<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a str, RecordError> {
    checked(r.str(what)?, |raw| MemberCode::check(what, raw))
}

fn read_jurisdiction<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a str, RecordError> {
    checked(r.str(what)?, |raw| Jurisdiction::check(what, raw))
}

fn read_project_id(r: &mut Reader<'_>, what: &'static str) -> Result<ProjectId, RecordError> {
    ProjectId::checked(what, r.uuid(what)?).map_err(RecordError::Invalid)
}

fn read_commitment_id(r: &mut Reader<'_>) -> Result<CommitmentId, RecordError> {
    let what = "data.commitment_id";
    CommitmentId::checked(what, r.uuid(what)?).map_err(RecordError::Invalid)
}

fn member_code(what: &'static str, raw: &str) -> Result<MemberCode, RecordError> {
    MemberCode::parse(what, raw).map_err(RecordError::Invalid)
}

fn jurisdiction(what: &'static str, raw: &str) -> Result<Jurisdiction, RecordError> {
    Jurisdiction::parse(what, raw).map_err(RecordError::Invalid)
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
                    signature: None,
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
            EventData::AccessGranted {
                principal: principal("jp-delegation"),
                grants: vec![Grant::Reader, Grant::parse("g", "delegate:JP").unwrap()],
                reason: "accredited".into(),
            },
            EventData::AccessRevoked {
                principal: principal("jp-delegation"),
                grants: vec![Grant::Reader],
                reason: String::new(),
            },
            EventData::CredentialIssued {
                principal: principal("jp-delegation"),
                credential: Credential::of_token("pxl_example"),
            },
            EventData::CredentialRevoked {
                principal: principal("jp-delegation"),
                credential: Credential::of_certificate([7; 32]),
                reason: "rotated".into(),
            },
        ]
    }

    fn principal(raw: &str) -> PrincipalName {
        PrincipalName::parse("principal", raw).unwrap()
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
        check_bytes_refused(&bytes, expected);
    }

    /// Both the reader in place and the decoder refuse `bytes`, with the same error.
    #[track_caller]
    fn check_bytes_refused(bytes: &[u8], expected: &str) {
        let error = decode_event(bytes).expect_err("corrupt bytes decoded");
        assert!(format!("{error:?}").starts_with(expected), "{error:?} is not {expected}");
        let in_place = read_body(bytes).expect_err("corrupt bytes read in place");
        assert_eq!(format!("{in_place:?}"), format!("{error:?}"));
    }

    /// Where the text `text` is stored, length-prefixed, in `bytes`: the offset of its first byte.
    #[track_caller]
    fn text_at(bytes: &[u8], text: &str) -> usize {
        let needle = [&u32::try_from(text.len()).unwrap().to_be_bytes()[..], text.as_bytes()].concat();
        let found: Vec<usize> =
            bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i + 4).collect();
        assert_eq!(found.len(), 1, "{text:?} is stored once");
        found[0]
    }

    /// A corrupted byte in each kind of field is refused by [`read_body`] (and so by
    /// [`decode_event`]), with the error naming the field.
    #[test]
    fn a_corrupted_byte_in_each_kind_of_field_is_refused_in_place() {
        /// Where a change starts: a fixed offset, after the event type tag, or at a text (the
        /// first byte after its length), plus `offset`.
        enum At {
            Byte(usize),
            Tag(usize),
            Text(&'static str, usize),
        }
        use At::*;
        /// The change: one byte set, bytes written from there, one byte appended.
        enum Change {
            Set(u8),
            Put(&'static [u8]),
            Push,
        }
        use Change::*;
        let events: Vec<RecordedEvent> = one_of_each_type().into_iter().map(recorded).collect();
        const NIL: &[u8] = &[0; 16];
        const MAX_DAYS: &[u8] = &i32::MAX.to_be_bytes();
        const MIN_DAYS: &[u8] = &i32::MIN.to_be_bytes();
        const BAD_NANOS: &[u8] = &[0xff; 4];
        // One record of each type (`one_of_each_type`, in order): what to change and the error.
        let cases: &[(usize, At, Change, &str)] = &[
            // The envelope.
            (0, Byte(0), Set(0), r#"UnsupportedFormat { what: "record body""#),
            (0, Byte(17), Set(0xff), r#"Truncated { what: "stream""#),
            (0, Byte(21), Set(0xff), r#"BadText { what: "stream""#),
            (0, Text("member-OECD", 11 + 8), Put(BAD_NANOS), r#"BadTime { what: "recorded_at""#),
            (0, Text("member-OECD", 11 + 12), Put(NIL), r#"Invalid(FieldError { field: "event_id""#),
            (0, Tag(0), Set(2), r#"UnknownTag { what: "effective_at", tag: 2 }"#),
            (0, Tag(9), Put(BAD_NANOS), r#"BadTime { what: "effective_at""#),
            (0, Tag(13), Set(14), r#"UnknownTag { what: "event type", tag: 14 }"#),
            // Codes, texts, enum tags.
            (0, Text("OECD", 0), Set(b'o'), r#"Invalid(FieldError { field: "data.code""#),
            (0, Text("OECD", 4), Set(0xff), r#"Truncated { what: "data.name""#),
            (
                0,
                Text("Organisation for Economic Co-operation and Development", 0),
                Set(0xff),
                r#"BadText { what: "data.name""#,
            ),
            (
                0,
                Text("Organisation for Economic Co-operation and Development", 54),
                Set(7),
                r#"UnknownTag { what: "member kind", tag: 7 }"#,
            ),
            (1, Text("TW", 2), Set(2), r#"UnknownTag { what: "member role", tag: 2 }"#),
            (2, Text("« raison »\nligne 2", 1), Set(b'x'), r#"BadText { what: "data.reason""#),
            // Identifiers, in the stream name too, and lists.
            (3, Tag(14), Set(0x77), r#"StreamMismatch { stored: "project-"#),
            (3, Tag(14), Put(NIL), r#"Invalid(FieldError { field: "data.project_id""#),
            (3, Text("Fab", 3), Set(5), r#"UnknownTag { what: "pillar", tag: 5 }"#),
            (3, Text("US", 0), Set(b'u'), r#"Invalid(FieldError { field: "data.host""#),
            (3, Text("KR", 1), Set(b'r'), r#"Invalid(FieldError { field: "data.partners""#),
            (3, Text("JP", 0), Set(b'-'), r#"Invalid(FieldError { field: "data.partners""#),
            (3, Text("JP", 2), Set(0xff), r#"Truncated { what: "data.partners""#),
            (3, Text("SK Hynix", 2), Set(0xc3), r#"BadText { what: "data.companies""#),
            (3, Text("ASML", 0), Set(0x80), r#"BadText { what: "data.companies""#),
            (3, Text("KR", 2), Set(9), r#"Truncated { what: "data.companies""#),
            (4, Tag(30), Set(5), r#"UnknownTag { what: "project status", tag: 5 }"#),
            (5, Text("us-cn-nvidia-h200", 3), Set(b'-'), r#"Invalid(FieldError { field: "data.rule_id""#),
            (5, Text("us-cn-nvidia-h200", 1), Set(b't'), r#"StreamMismatch { stored: "export-rule-us-cn-nvidia-h200""#),
            (5, Text("Nvidia H200", 0), Set(0x80), r#"BadText { what: "data.item""#),
            (5, Text("US", 1), Set(b's'), r#"Invalid(FieldError { field: "data.origin""#),
            (5, Text("CN", 0), Set(b'-'), r#"Invalid(FieldError { field: "data.destination""#),
            (5, Text("CN", 2), Set(4), r#"UnknownTag { what: "treatment", tag: 4 }"#),
            (5, Text("CN", 3), Set(2), r#"UnknownTag { what: "data.levy_bps", tag: 2 }"#),
            (5, Text("CN", 8), Put(MAX_DAYS), r#"BadDate { what: "data.effective_from""#),
            (6, Tag(14), Put(NIL), r#"Invalid(FieldError { field: "data.commitment_id""#),
            (6, Text("JP", 0), Set(b'j'), r#"Invalid(FieldError { field: "data.member""#),
            (6, Text("Refine", 6), Set(3), r#"UnknownTag { what: "data.project_id", tag: 3 }"#),
            (6, Text("Refine", 7), Put(NIL), r#"Invalid(FieldError { field: "data.project_id""#),
            (6, Text("Refine", 23), Put(MIN_DAYS), r#"BadDate { what: "data.due_on""#),
            (7, Text("https://example.org/report", 0), Set(0xfe), r#"BadText { what: "data.evidence""#),
            (7, Tag(14), Set(0x77), r#"StreamMismatch { stored: "commitment-"#),
            (8, Tag(30), Set(1), r#"Truncated { what: "data.reason""#),
            (9, Tag(14), Put(MAX_DAYS), r#"BadDate { what: "data.date""#),
            (9, Tag(17), Set(0x15), r#"StreamMismatch { stored: "summit-2025-12-11""#),
            (9, Text("EU", 0), Set(b'e'), r#"Invalid(FieldError { field: "data.participants""#),
            (9, Text("Jacob Helberg", 0), Set(0xff), r#"BadText { what: "data.chair""#),
            (9, Text("Washington", 0), Set(0xff), r#"BadText { what: "data.location""#),
            // The metadata, and the end.
            (9, Text("secretariat", 0), Set(0xff), r#"BadText { what: "metadata.actor""#),
            (9, Text("Benzinga, 2025-12-14", 0), Set(0xff), r#"BadText { what: "metadata.source""#),
            (9, Text("c-1", 0), Set(0xff), r#"BadText { what: "metadata.correlation_id""#),
            (9, Text("c-1", 3), Set(1), r#"Truncated { what: "metadata.causation_id""#),
            (9, Text("illustrative", 0), Set(0xff), r#"BadText { what: "metadata.labels key""#),
            (9, Text("illustrative", 12), Set(1), r#"Truncated { what: "metadata.labels value""#),
            (9, Text("false", 0), Set(0xff), r#"BadText { what: "metadata.labels value""#),
            (9, Text("lang", 0), Set(b'a'), r#"LabelsOutOfOrder { key: "aang" }"#),
            (9, Text("illustrative", 0), Set(b'm'), r#"LabelsOutOfOrder { key: "lang" }"#),
            (9, Text("illustrative", 0), Push, "TrailingBytes { count: 1 }"),
        ];
        for (i, (event, at, change, expected)) in cases.iter().enumerate() {
            let mut bytes = encode_event(&events[*event]);
            let tag = 1 + 8 + 8 + 4 + events[*event].stream.as_str().len() + 12 + 16;
            let at = match at {
                Byte(offset) => *offset,
                Tag(offset) => tag + offset,
                Text(text, offset) => text_at(&bytes, text) + offset,
            };
            let original = bytes.clone();
            match change {
                Set(value) => bytes[at] = *value,
                Put(values) => bytes[at..at + values.len()].copy_from_slice(values),
                Push => bytes.push(0),
            }
            assert_ne!(bytes, original, "case {i} changes nothing");
            check_bytes_refused(&bytes, expected);
        }
    }

    /// Every byte of a record of each type, changed to a few other values: what the reader in
    /// place accepts, the decoder accepts too, and it is the canonical encoding of what it
    /// decodes to (a change to a value that is just as valid, which the chain hash catches).
    #[test]
    fn reading_in_place_accepts_only_canonical_bytes() {
        for data in one_of_each_type() {
            let bytes = encode_event(&recorded(data));
            for at in 0..bytes.len() {
                for value in [bytes[at] ^ 0x01, bytes[at] ^ 0x80, 0x00, 0xff, b'a', b'A', b'-'] {
                    let mut corrupted = bytes.clone();
                    corrupted[at] = value;
                    match read_body(&corrupted) {
                        Ok(body) => {
                            let event = body.to_event().expect("what is read in place decodes");
                            assert_eq!(encode_event(&event), corrupted, "byte {at} = {value:#x}");
                        }
                        Err(error) => {
                            let decoded = decode_event(&corrupted).expect_err("refused in place, decoded");
                            assert_eq!(format!("{error:?}"), format!("{decoded:?}"));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn decoding_refuses_what_encoding_never_writes() {
        check_refused(|b| b[0] = 3, r#"UnsupportedFormat { what: "record body", found: 3, supported: 2 }"#);
        // Format 2 is format 1 and a signature: without one, the body is short.
        check_refused(|b| b[0] = BODY_FORMAT_SIGNED, r#"Truncated { what: "signature.public_key""#);
        check_refused(|b| b.push(0), "TrailingBytes { count: 1 }");
        check_refused(|b| b[58] = 2, r#"UnknownTag { what: "effective_at", tag: 2 }"#);
        check_refused(|b| b[59] = 14, r#"UnknownTag { what: "event type", tag: 14 }"#);
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

    /// RFC 8032 §7.1, TEST 1: its secret key.
    const RFC_8032_TEST_1_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

    /// [`golden_event`]'s signed message (docs/AUDIT.md §9 gives it too).
    fn golden_signed_message() -> Vec<u8> {
        [
            &b"pax-ledger event signature v1\n"[..],
            &9u32.to_be_bytes(),
            b"member-JP", // stream
            &[0],         // event type: member_joined
            &2u32.to_be_bytes(),
            b"JP", // code
            &5u32.to_be_bytes(),
            b"Japan",                                            // name
            &[0, 0],                                             // kind state, role member
            &[0],                                                // effective_at: absent
            uuid::Uuid::parse_str(EVENT_ID).unwrap().as_bytes(), // event_id
        ]
        .concat()
    }

    #[test]
    fn a_signed_event_is_format_2_the_unsigned_bytes_and_the_signature() {
        use ed25519_dalek::Signer;
        let key = ed25519_dalek::SigningKey::from_bytes(&crate::audit::hex::decode(RFC_8032_TEST_1_SECRET).unwrap());
        let mut event = golden_event();
        let message = signed_message(&event.event);
        assert_eq!(message, golden_signed_message());
        let signature =
            EventSignature { public_key: key.verifying_key().to_bytes(), signature: key.sign(&message).to_bytes() };
        // Ed25519 signatures are deterministic: docs/AUDIT.md §9 gives this one.
        assert_eq!(
            crate::audit::hex::encode(&signature.signature),
            "9497a90615ff6863fddf2124fced8a50d2cb427b9027985c0cfaf91a6a617531\
             694378915541d8f27bc6e69ad981cd7c9d7f0a1cc74044b5b3d901721ec66609"
        );
        event.event.metadata.signature = Some(signature);
        let bytes = encode_event(&event);
        assert_eq!(bytes[0], BODY_FORMAT_SIGNED);
        assert_eq!(bytes[1..bytes.len() - 96], golden_bytes()[1..], "format 1's layout, then the signature");
        assert_eq!(bytes[bytes.len() - 96..], [&signature.public_key[..], &signature.signature[..]].concat());
        assert_eq!(decode_event(&bytes).unwrap(), event);
        assert_eq!(check_event_signature(&event.event), Ok(()));
        assert_eq!(read_body(&bytes).unwrap().metadata.signature, Some(signature));

        // Every signed part counts; the metadata is not signed.
        let refused = |edit: &dyn Fn(&mut ProposedEvent)| {
            let mut changed = event.event.clone();
            edit(&mut changed);
            check_event_signature(&changed)
        };
        let id = signature.credential().id();
        let error = refused(&|e| e.data = EventData::MemberWithdrew { code: code("JP"), reason: String::new() });
        assert!(error.unwrap_err().contains(&format!("the signature by key {id} does not verify")));
        assert!(refused(&|e| e.effective_at = Some(time("2025-12-11T00:00:00Z"))).is_err());
        assert!(refused(&|e| e.event_id = EventId::generate()).is_err());
        assert!(refused(&|e| e.metadata.signature.as_mut().unwrap().signature[63] ^= 1).is_err());
        assert!(refused(&|e| e.metadata.signature.as_mut().unwrap().public_key[0] ^= 1).is_err());
        assert_eq!(refused(&|e| e.metadata.source = "another citation".into()), Ok(()));
        check_bytes_refused(&bytes[..bytes.len() - 1], r#"Truncated { what: "signature.signature""#);
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
        // Any bytes: the encoding keeps a signature as it is (whether it verifies is not its
        // question).
        let signature = prop::option::of((any::<[u8; 32]>(), prop::collection::vec(any::<u8>(), 64))).prop_map(|s| {
            s.map(|(public_key, signature)| EventSignature { public_key, signature: signature.try_into().unwrap() })
        });
        (
            arb_text(),
            arb_text(),
            arb_text(),
            arb_text(),
            prop::collection::btree_map(arb_text(), arb_text(), 0..4),
            signature,
        )
            .prop_map(|(actor, source, correlation_id, causation_id, labels, signature)| Metadata {
                actor,
                source,
                correlation_id,
                causation_id,
                labels,
                signature,
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
        fn the_peek_reads_the_stream_the_revision_and_the_event_id(event in arb_recorded_event()) {
            let bytes = encode_event(&event);
            let (stream, revision, id) = peek_stream_and_id(&bytes).unwrap();
            prop_assert_eq!(stream, event.stream.as_str().as_bytes());
            prop_assert_eq!(revision, event.revision);
            prop_assert_eq!(id, event.event.event_id);
        }

        #[test]
        fn every_truncation_is_refused(event in arb_recorded_event()) {
            let bytes = encode_event(&event);
            for len in 0..bytes.len() {
                prop_assert!(decode_event(&bytes[..len]).is_err(), "a prefix of {} bytes decoded", len);
                prop_assert!(read_body(&bytes[..len]).is_err(), "a prefix of {} bytes read in place", len);
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
                prop_assert_eq!(encode_event(&decoded), bytes.clone());
            }
            // Reading in place accepts exactly what decoding accepts.
            match read_body(&bytes) {
                Ok(body) => prop_assert_eq!(encode_event(&body.to_event().unwrap()), bytes),
                Err(error) => prop_assert_eq!(format!("{error:?}"), format!("{:?}", decode_event(&bytes).unwrap_err())),
            }
        }
    }
}
