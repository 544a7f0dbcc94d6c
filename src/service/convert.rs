//! Wire (prost) ⇄ domain conversions. Input is parsed once here into domain types; every
//! failure names the request field it concerns.

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::{
    self, CommitmentId, Credential, CredentialKind, EventData, EventId, EventSignature, FieldError, Grant,
    Jurisdiction, MemberCode, MemberKind, MemberRole, Metadata, Pillar, PrincipalName, ProjectId, ProjectStatus,
    ProposedEvent, RecordedEvent, Role, RuleId, StreamName, Treatment,
};
use crate::ledger::{Appended, Expected};
use crate::proto::v1 as pb;
use pb::event_data::Kind;

type Result<T> = std::result::Result<T, FieldError>;

// ------------------------------------------------------------------------------------------
// Scalars

/// A calendar date `YYYY-MM-DD` in the years 1..=9999 (`domain::check_date`), written exactly so:
/// one date, one spelling (chrono's `%Y-%m-%d` also reads a sign and unpadded fields).
pub fn date(field: &str, raw: &str) -> Result<NaiveDate> {
    let parsed = NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok().filter(|date| format_date(date) == raw);
    let date = parsed.ok_or_else(|| {
        FieldError::new(field, format!("must be a calendar date YYYY-MM-DD, got {}", domain::quote(raw)))
    })?;
    domain::check_date(field, &date)?;
    Ok(date)
}

pub fn format_date(date: &NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// A time within protobuf's `Timestamp` range (`domain::check_time`): a time outside it could be
/// stored but not answered.
pub fn timestamp(field: &str, ts: &prost_types::Timestamp) -> Result<DateTime<Utc>> {
    let nanos = u32::try_from(ts.nanos).ok().filter(|n| *n < 1_000_000_000);
    let time = nanos
        .and_then(|n| DateTime::<Utc>::from_timestamp(ts.seconds, n))
        .ok_or_else(|| FieldError::new(field, "must be a valid timestamp (nanos in 0..1e9, a representable date)"))?;
    domain::check_time(field, &time)?;
    Ok(time)
}

pub fn to_timestamp(time: &DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: time.timestamp(), nanos: time.timestamp_subsec_nanos() as i32 }
}

fn codes<T>(field: &str, raw: &[String], parse: fn(&str, &str) -> Result<T>) -> Result<Vec<T>> {
    raw.iter().enumerate().map(|(i, c)| parse(&format!("{field}[{i}]"), c)).collect()
}

macro_rules! wire_enum {
    ($from:ident, $to:ident, $pb:ty, $domain:ty, $name:literal, { $($pbv:ident => $dv:ident),+ $(,)? }) => {
        pub fn $from(field: &str, raw: i32) -> Result<$domain> {
            match <$pb>::try_from(raw) {
                $(Ok(<$pb>::$pbv) => Ok(<$domain>::$dv),)+
                _ => Err(FieldError::new(field, format!(concat!("must be a known ", $name, " (not unspecified), got {}"), raw))),
            }
        }
        pub fn $to(value: $domain) -> i32 {
            match value { $(<$domain>::$dv => <$pb>::$pbv as i32,)+ }
        }
    };
}

wire_enum!(member_kind, member_kind_pb, pb::MemberKind, MemberKind, "member kind", { State => State, Organization => Organization });
wire_enum!(member_role, member_role_pb, pb::MemberRole, MemberRole, "member role", { Member => Member, Guest => Guest });
wire_enum!(pillar, pillar_pb, pb::Pillar, Pillar, "pillar", {
    Semiconductors => Semiconductors, CriticalMinerals => CriticalMinerals, Energy => Energy, AiCompute => AiCompute, Networks => Networks,
});
wire_enum!(project_status, project_status_pb, pb::ProjectStatus, ProjectStatus, "project status", {
    Identified => Identified, Approved => Approved, UnderWay => UnderWay, Completed => Completed, Cancelled => Cancelled,
});
wire_enum!(treatment, treatment_pb, pb::Treatment, Treatment, "treatment", {
    Allowed => Allowed, AllowedWithLevy => AllowedWithLevy, LicenseRequired => LicenseRequired, Prohibited => Prohibited,
});

// ------------------------------------------------------------------------------------------
// Events, wire → domain

/// Parses one event's data; `field` is its path (`events[0].data`).
pub fn event_data(field: &str, data: Option<&pb::EventData>) -> Result<EventData> {
    let kind =
        data.and_then(|d| d.kind.as_ref()).ok_or_else(|| FieldError::new(field, "must hold exactly one event"))?;
    let at = |name: &str, sub: &str| format!("{field}.{name}.{sub}");
    let event = match kind {
        Kind::MemberJoined(e) => EventData::MemberJoined {
            code: MemberCode::parse(&at("member_joined", "code"), &e.code)?,
            name: e.name.clone(),
            kind: member_kind(&at("member_joined", "kind"), e.kind)?,
            role: member_role(&at("member_joined", "role"), e.role)?,
        },
        Kind::MemberRoleChanged(e) => EventData::MemberRoleChanged {
            code: MemberCode::parse(&at("member_role_changed", "code"), &e.code)?,
            role: member_role(&at("member_role_changed", "role"), e.role)?,
        },
        Kind::MemberWithdrew(e) => EventData::MemberWithdrew {
            code: MemberCode::parse(&at("member_withdrew", "code"), &e.code)?,
            reason: e.reason.clone(),
        },
        Kind::ProjectIdentified(e) => EventData::ProjectIdentified {
            project_id: ProjectId::parse(&at("project_identified", "project_id"), &e.project_id)?,
            title: e.title.clone(),
            pillar: pillar(&at("project_identified", "pillar"), e.pillar)?,
            host: MemberCode::parse(&at("project_identified", "host"), &e.host)?,
            partners: codes(&at("project_identified", "partners"), &e.partners, MemberCode::parse)?,
            companies: e.companies.clone(),
            description: e.description.clone(),
        },
        Kind::ProjectStatusChanged(e) => EventData::ProjectStatusChanged {
            project_id: ProjectId::parse(&at("project_status_changed", "project_id"), &e.project_id)?,
            status: project_status(&at("project_status_changed", "status"), e.status)?,
            reason: e.reason.clone(),
        },
        Kind::ExportRuleChanged(e) => EventData::ExportRuleChanged {
            rule_id: RuleId::parse(&at("export_rule_changed", "rule_id"), &e.rule_id)?,
            item: e.item.clone(),
            origin: Jurisdiction::parse(&at("export_rule_changed", "origin"), &e.origin)?,
            destination: Jurisdiction::parse(&at("export_rule_changed", "destination"), &e.destination)?,
            treatment: treatment(&at("export_rule_changed", "treatment"), e.treatment)?,
            levy_bps: e.levy_bps,
            effective_from: date(&at("export_rule_changed", "effective_from"), &e.effective_from)?,
            authority: e.authority.clone(),
        },
        Kind::CommitmentMade(e) => EventData::CommitmentMade {
            commitment_id: CommitmentId::parse(&at("commitment_made", "commitment_id"), &e.commitment_id)?,
            member: MemberCode::parse(&at("commitment_made", "member"), &e.member)?,
            pillar: pillar(&at("commitment_made", "pillar"), e.pillar)?,
            description: e.description.clone(),
            project_id: e
                .project_id
                .as_deref()
                .map(|p| ProjectId::parse(&at("commitment_made", "project_id"), p))
                .transpose()?,
            due_on: date(&at("commitment_made", "due_on"), &e.due_on)?,
        },
        Kind::CommitmentFulfilled(e) => EventData::CommitmentFulfilled {
            commitment_id: CommitmentId::parse(&at("commitment_fulfilled", "commitment_id"), &e.commitment_id)?,
            evidence: e.evidence.clone(),
        },
        Kind::CommitmentWithdrawn(e) => EventData::CommitmentWithdrawn {
            commitment_id: CommitmentId::parse(&at("commitment_withdrawn", "commitment_id"), &e.commitment_id)?,
            reason: e.reason.clone(),
        },
        Kind::SummitConvened(e) => EventData::SummitConvened {
            date: date(&at("summit_convened", "date"), &e.date)?,
            host: MemberCode::parse(&at("summit_convened", "host"), &e.host)?,
            chair: e.chair.clone(),
            participants: codes(&at("summit_convened", "participants"), &e.participants, MemberCode::parse)?,
            location: e.location.clone(),
        },
        Kind::AccessGranted(_) | Kind::AccessRevoked(_) | Kind::CredentialIssued(_) | Kind::CredentialRevoked(_) => {
            return Err(FieldError::new(
                format!("{field}.{}", kind_field_name(kind)),
                "access events are recorded through AccessService (pax-ledger principal …), not Append",
            ));
        }
    };
    domain::validate(&event).map_err(|e| e.within(&format!("{field}.{}", kind_field_name(kind))))?;
    Ok(event)
}

fn kind_field_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::MemberJoined(_) => "member_joined",
        Kind::MemberRoleChanged(_) => "member_role_changed",
        Kind::MemberWithdrew(_) => "member_withdrew",
        Kind::ProjectIdentified(_) => "project_identified",
        Kind::ProjectStatusChanged(_) => "project_status_changed",
        Kind::ExportRuleChanged(_) => "export_rule_changed",
        Kind::CommitmentMade(_) => "commitment_made",
        Kind::CommitmentFulfilled(_) => "commitment_fulfilled",
        Kind::CommitmentWithdrawn(_) => "commitment_withdrawn",
        Kind::SummitConvened(_) => "summit_convened",
        Kind::AccessGranted(_) => "access_granted",
        Kind::AccessRevoked(_) => "access_revoked",
        Kind::CredentialIssued(_) => "credential_issued",
        Kind::CredentialRevoked(_) => "credential_revoked",
    }
}

// ------------------------------------------------------------------------------------------
// Access

pub fn role(field: &str, raw: i32) -> Result<Role> {
    Ok(match pb::Role::try_from(raw) {
        Ok(pb::Role::Admin) => Role::Admin,
        Ok(pb::Role::Secretariat) => Role::Secretariat,
        Ok(pb::Role::Delegate) => Role::Delegate,
        Ok(pb::Role::Authority) => Role::Authority,
        Ok(pb::Role::Reader) => Role::Reader,
        Ok(pb::Role::Auditor) => Role::Auditor,
        Ok(pb::Role::Operator) => Role::Operator,
        Ok(pb::Role::SignedOnly) => Role::SignedOnly,
        Ok(pb::Role::Unspecified) | Err(_) => {
            return Err(FieldError::new(field, format!("must be a known role, got {raw}")));
        }
    })
}

pub fn role_pb(role: Role) -> i32 {
    (match role {
        Role::Admin => pb::Role::Admin,
        Role::Secretariat => pb::Role::Secretariat,
        Role::Delegate => pb::Role::Delegate,
        Role::Authority => pb::Role::Authority,
        Role::Reader => pb::Role::Reader,
        Role::Auditor => pb::Role::Auditor,
        Role::Operator => pb::Role::Operator,
        Role::SignedOnly => pb::Role::SignedOnly,
    }) as i32
}

/// Parses a list of grants (`grants[i].role`, `grants[i].scope`).
pub fn grants(field: &str, raw: &[pb::Grant]) -> Result<Vec<Grant>> {
    raw.iter()
        .enumerate()
        .map(|(i, g)| {
            let at = format!("{field}[{i}]");
            Grant::new(&at, role(&format!("{at}.role"), g.role)?, &g.scope)
        })
        .collect()
}

pub fn grant_pb(grant: &Grant) -> pb::Grant {
    pb::Grant { role: role_pb(grant.role()), scope: grant.scope().unwrap_or_default().to_owned() }
}

pub fn credential_pb(credential: &Credential) -> pb::Credential {
    pb::Credential {
        kind: match credential.kind {
            CredentialKind::Token => pb::CredentialKind::Token,
            CredentialKind::Certificate => pb::CredentialKind::Certificate,
            CredentialKind::SigningKey => pb::CredentialKind::SigningKey,
        } as i32,
        digest: credential.digest_hex(),
        id: credential.id(),
    }
}

pub fn principal_name(field: &str, raw: &str) -> Result<PrincipalName> {
    PrincipalName::parse(field, raw)
}

pub fn metadata(field: &str, meta: Option<&pb::EventMetadata>) -> Result<Metadata> {
    let Some(meta) = meta else { return Ok(Metadata::default()) };
    let metadata = Metadata {
        actor: meta.actor.clone(),
        source: meta.source.clone(),
        correlation_id: meta.correlation_id.clone(),
        causation_id: meta.causation_id.clone(),
        labels: meta.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        signature: meta.signature.as_ref().map(|s| signature(&format!("{field}.signature"), s)).transpose()?,
    };
    domain::validate_metadata(&metadata).map_err(|e| e.within(field))?;
    Ok(metadata)
}

/// An event signature's two byte strings, of the lengths Ed25519 gives them (whether the
/// signature verifies is the ledger's question: it knows the signed bytes).
pub fn signature(field: &str, raw: &pb::EventSignature) -> Result<EventSignature> {
    fn exactly<const N: usize>(field: &str, name: &str, raw: &[u8]) -> Result<[u8; N]> {
        raw.try_into().map_err(|_| {
            FieldError::new(format!("{field}.{name}"), format!("must be {N} bytes (Ed25519), got {}", raw.len()))
        })
    }
    Ok(EventSignature {
        public_key: exactly(field, "public_key", &raw.public_key)?,
        signature: exactly(field, "signature", &raw.signature)?,
    })
}

pub fn signature_pb(signature: &EventSignature) -> pb::EventSignature {
    pb::EventSignature { public_key: signature.public_key.to_vec(), signature: signature.signature.to_vec() }
}

/// Parses one proposed event; `field` is its path (`events[3]`).
pub fn proposed_event(field: &str, event: &pb::ProposedEvent) -> Result<ProposedEvent> {
    let event_id = match event.event_id.as_str() {
        "" => EventId::generate(),
        raw => EventId::parse(&format!("{field}.event_id"), raw)?,
    };
    Ok(ProposedEvent {
        event_id,
        data: event_data(&format!("{field}.data"), event.data.as_ref())?,
        effective_at: event
            .effective_time
            .as_ref()
            .map(|t| timestamp(&format!("{field}.effective_time"), t))
            .transpose()?,
        metadata: metadata(&format!("{field}.metadata"), event.metadata.as_ref())?,
    })
}

pub fn expectation(field: &str, raw: &pb::StreamExpectation) -> Result<(StreamName, Expected)> {
    let stream = StreamName::parse(&format!("{field}.stream"), &raw.stream)?;
    let expected = match raw.expected {
        None => Expected::Any,
        Some(pb::stream_expectation::Expected::Revision(r)) => Expected::Exact(domain::Revision(r)),
        Some(pb::stream_expectation::Expected::State(s)) => match pb::ExpectedState::try_from(s) {
            Ok(pb::ExpectedState::Any) => Expected::Any,
            Ok(pb::ExpectedState::NoStream) => Expected::NoStream,
            Ok(pb::ExpectedState::Exists) => Expected::Exists,
            Err(_) => {
                return Err(FieldError::new(
                    format!("{field}.state"),
                    format!("must be a known expected state, got {s}"),
                ));
            }
        },
    };
    Ok((stream, expected))
}

// ------------------------------------------------------------------------------------------
// Domain → wire

pub fn event_data_pb(data: &EventData) -> pb::EventData {
    let kind = match data.clone() {
        EventData::MemberJoined { code, name, kind, role } => Kind::MemberJoined(pb::MemberJoined {
            code: code.to_string(),
            name,
            kind: member_kind_pb(kind),
            role: member_role_pb(role),
        }),
        EventData::MemberRoleChanged { code, role } => {
            Kind::MemberRoleChanged(pb::MemberRoleChanged { code: code.to_string(), role: member_role_pb(role) })
        }
        EventData::MemberWithdrew { code, reason } => {
            Kind::MemberWithdrew(pb::MemberWithdrew { code: code.to_string(), reason })
        }
        EventData::ProjectIdentified { project_id, title, pillar, host, partners, companies, description } => {
            Kind::ProjectIdentified(pb::ProjectIdentified {
                project_id: project_id.to_string(),
                title,
                pillar: pillar_pb(pillar),
                host: host.to_string(),
                partners: partners.iter().map(ToString::to_string).collect(),
                companies,
                description,
            })
        }
        EventData::ProjectStatusChanged { project_id, status, reason } => {
            Kind::ProjectStatusChanged(pb::ProjectStatusChanged {
                project_id: project_id.to_string(),
                status: project_status_pb(status),
                reason,
            })
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
        } => Kind::ExportRuleChanged(pb::ExportRuleChanged {
            rule_id: rule_id.to_string(),
            item,
            origin: origin.to_string(),
            destination: destination.to_string(),
            treatment: treatment_pb(treatment),
            levy_bps,
            effective_from: format_date(&effective_from),
            authority,
        }),
        EventData::CommitmentMade { commitment_id, member, pillar, description, project_id, due_on } => {
            Kind::CommitmentMade(pb::CommitmentMade {
                commitment_id: commitment_id.to_string(),
                member: member.to_string(),
                pillar: pillar_pb(pillar),
                description,
                project_id: project_id.map(|p| p.to_string()),
                due_on: format_date(&due_on),
            })
        }
        EventData::CommitmentFulfilled { commitment_id, evidence } => {
            Kind::CommitmentFulfilled(pb::CommitmentFulfilled { commitment_id: commitment_id.to_string(), evidence })
        }
        EventData::CommitmentWithdrawn { commitment_id, reason } => {
            Kind::CommitmentWithdrawn(pb::CommitmentWithdrawn { commitment_id: commitment_id.to_string(), reason })
        }
        EventData::SummitConvened { date, host, chair, participants, location } => {
            Kind::SummitConvened(pb::SummitConvened {
                date: format_date(&date),
                host: host.to_string(),
                chair,
                participants: participants.iter().map(ToString::to_string).collect(),
                location,
            })
        }
        EventData::AccessGranted { principal, grants, reason } => Kind::AccessGranted(pb::AccessGranted {
            principal: principal.to_string(),
            grants: grants.iter().map(grant_pb).collect(),
            reason,
        }),
        EventData::AccessRevoked { principal, grants, reason } => Kind::AccessRevoked(pb::AccessRevoked {
            principal: principal.to_string(),
            grants: grants.iter().map(grant_pb).collect(),
            reason,
        }),
        EventData::CredentialIssued { principal, credential } => Kind::CredentialIssued(pb::CredentialIssued {
            principal: principal.to_string(),
            credential: Some(credential_pb(&credential)),
        }),
        EventData::CredentialRevoked { principal, credential, reason } => {
            Kind::CredentialRevoked(pb::CredentialRevoked {
                principal: principal.to_string(),
                credential: Some(credential_pb(&credential)),
                reason,
            })
        }
    };
    pb::EventData { kind: Some(kind) }
}

pub fn metadata_pb(meta: &Metadata) -> pb::EventMetadata {
    pb::EventMetadata {
        actor: meta.actor.clone(),
        source: meta.source.clone(),
        correlation_id: meta.correlation_id.clone(),
        causation_id: meta.causation_id.clone(),
        labels: meta.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        signature: meta.signature.as_ref().map(signature_pb),
    }
}

pub fn recorded_event_pb(event: &RecordedEvent) -> pb::RecordedEvent {
    pb::RecordedEvent {
        position: event.position.0,
        stream: event.stream.to_string(),
        revision: event.revision.0,
        event_id: event.event.event_id.to_string(),
        event_type: event.event.data.type_name().to_owned(),
        record_time: Some(to_timestamp(&event.recorded_at)),
        effective_time: Some(to_timestamp(&event.effective_at())),
        data: Some(event_data_pb(&event.event.data)),
        metadata: Some(metadata_pb(&event.event.metadata)),
    }
}

pub fn appended_pb(appended: &Appended) -> pb::AppendedEvent {
    pb::AppendedEvent {
        event_id: appended.event_id.to_string(),
        stream: appended.stream.to_string(),
        revision: appended.revision.0,
        position: appended.position.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(code: &str) -> pb::EventData {
        pb::EventData {
            kind: Some(Kind::MemberJoined(pb::MemberJoined {
                code: code.into(),
                name: "Japan".into(),
                kind: pb::MemberKind::State as i32,
                role: pb::MemberRole::Member as i32,
            })),
        }
    }

    #[test]
    fn data_round_trips() {
        let data = event_data("data", Some(&joined("JP"))).unwrap();
        assert_eq!(event_data_pb(&data), joined("JP"));
    }

    #[test]
    fn errors_name_the_field() {
        let err = event_data("events[1].data", Some(&joined("jp"))).unwrap_err();
        assert_eq!(err.field, "events[1].data.member_joined.code");
        let mut unspecified = joined("JP");
        if let Some(Kind::MemberJoined(e)) = &mut unspecified.kind {
            e.role = 0;
        }
        assert_eq!(event_data("d", Some(&unspecified)).unwrap_err().field, "d.member_joined.role");
        assert_eq!(event_data("d", None).unwrap_err().field, "d");
        assert_eq!(date("f", "2025-1-5").unwrap_err().field, "f");
    }

    /// Every rule of `domain::decide` is part of the wire contract: each event message says which
    /// ledger rules it must keep.
    #[test]
    fn the_wire_contract_states_the_ledger_rules_of_every_event() {
        let proto = include_str!("../../proto/pax/ledger/v1/ledger.proto");
        for type_name in domain::EVENT_TYPE_NAMES {
            let message: String = type_name.split('_').map(|word| word[..1].to_uppercase() + &word[1..]).collect();
            let at = proto.find(&format!("\nmessage {message} {{")).unwrap_or_else(|| panic!("no message {message}"));
            let comment: Vec<&str> = proto[..at].lines().rev().take_while(|line| line.starts_with("//")).collect();
            assert!(comment.iter().any(|line| line.starts_with("// Rules: ")), "{message} states no rules");
        }
    }

    #[test]
    fn times_and_dates_stay_within_the_range_of_a_protobuf_timestamp() {
        let ts = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z: the ends of the range.
        for inside in [ts(-62_135_596_800, 0), ts(253_402_300_799, 999_999_999), ts(0, 0)] {
            assert_eq!(to_timestamp(&timestamp("t", &inside).unwrap()), inside);
        }
        // Just outside each end, and the year -29719 of the report.
        for outside in [ts(-62_135_596_801, 999_999_999), ts(253_402_300_800, 0), ts(-999_999_999_999, 0)] {
            assert_eq!(timestamp("t", &outside).unwrap_err().field, "t", "{outside:?}");
        }
        for inside in ["0001-01-01", "9999-12-31"] {
            assert!(date("d", inside).is_ok(), "{inside}");
        }
        assert_eq!(date("d", "0000-12-31").unwrap_err().field, "d");
        // Found by the fuzz harness: 10 characters, but not the one spelling of the date.
        for other_spelling in ["+0001-1-01", "+2025-1-11", "2025-1-011", "02025-1-11", "2025-01-1 "] {
            assert!(date("d", other_spelling).is_err(), "{other_spelling}");
        }
    }
}
