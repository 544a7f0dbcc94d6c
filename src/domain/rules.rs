//! The rules of the initiative, in one place.
//!
//! - [`validate`] and [`validate_metadata`] judge one event on its own (lengths, required text,
//!   list sizes, duplicates, the levy): a failure is a malformed request ([`FieldError`]).
//! - [`decide`] judges an event against the committed state of its stream and of the participants
//!   it names: a failure breaks a rule of the domain ([`DomainError`]).
//! - [`evolve`] applies an event to its stream's state, without judging and without failing.
//!
//! Text lengths are counted in characters (Unicode scalar values), as a person reading the
//! limit would count them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::access::{Credential, GRANTS_MAX, Grant, PrincipalName};
use super::event::{EventData, LEVY_BPS_MAX, MemberRole, Metadata, ProjectStatus, Treatment};
use super::ids::{CommitmentId, Jurisdiction, MemberCode, ProjectId, RuleId, StreamName};
use super::state::{
    CommitmentState, CommitmentStatus, EntityState, ExportRuleState, MemberState, PrincipalState, ProjectState,
    SummitState,
};
use super::{FieldError, quote};

/// Longest name or title (member name, project title, company, item, authority, chair, location):
/// a full official name fits with room to spare; a paragraph does not.
pub const NAME_LEN_MAX: usize = 200;
/// Longest free text (project and commitment descriptions, evidence of fulfilment): a few
/// paragraphs, while one event stays small in the log.
pub const TEXT_LEN_MAX: usize = 4000;
/// Longest reason (withdrawal, status change): a sentence or two and a citation.
pub const REASON_LEN_MAX: usize = 1000;
/// Most partners of one project: several times the initiative's participants, yet bounded.
pub const PARTNERS_MAX: usize = 64;
/// Most companies named by one project: as many as partners, a few per partner on average.
pub const COMPANIES_MAX: usize = 64;
/// Most participants of one summit: every state of the world and then some organisations.
pub const PARTICIPANTS_MAX: usize = 256;
/// Most labels on one event: labels annotate, they are not a document store.
pub const LABELS_MAX: usize = 32;
/// Longest label key: a dotted, namespaced key (`demo.illustrative`) fits.
pub const LABEL_KEY_LEN_MAX: usize = 64;
/// Longest label value: a short value or a URL, not a text.
pub const LABEL_VALUE_LEN_MAX: usize = 256;
/// Longest actor: a person's name and office, or a system's name.
pub const ACTOR_LEN_MAX: usize = 200;
/// Longest source: a long URL or a full bibliographic citation.
pub const SOURCE_LEN_MAX: usize = 1000;
/// Longest correlation or causation id: a UUID, a trace id or a W3C `traceparent` fits.
pub const CORRELATION_ID_LEN_MAX: usize = 128;
/// Earliest year of any date in an event: dates keep the four-digit `YYYY-MM-DD` form used on
/// the wire and in stream names (`summit-YYYY-MM-DD`).
pub const DATE_YEAR_MIN: i32 = 1;
/// Latest year of any date in an event; see [`DATE_YEAR_MIN`].
pub const DATE_YEAR_MAX: i32 = 9999;

/// Looks up a participant's committed state (`member-{code}` stream), for cross-stream rules.
pub trait Participants {
    /// The participant's state, or `None` if it never joined.
    fn participant(&self, code: &MemberCode) -> Option<MemberState>;
}

impl<F: Fn(&MemberCode) -> Option<MemberState>> Participants for F {
    fn participant(&self, code: &MemberCode) -> Option<MemberState> {
        self(code)
    }
}

/// In what capacity an event names a participant; it tells the reader of a [`DomainError`]
/// which field to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capacity {
    ProjectHost,
    ProjectPartner,
    CommitmentMember,
    SummitHost,
    SummitParticipant,
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ProjectHost => "project host",
            Self::ProjectPartner => "project partner",
            Self::CommitmentMember => "committing member",
            Self::SummitHost => "summit host",
            Self::SummitParticipant => "summit participant",
        })
    }
}

/// What an export rule covers: an item on a route. It never changes for a given `rule_id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub item: String,
    pub origin: Jurisdiction,
    pub destination: Jurisdiction,
}

impl Route {
    fn of(rule: &ExportRuleState) -> Self {
        Self { item: rule.item.clone(), origin: rule.origin.clone(), destination: rule.destination.clone() }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {} to {}", quote(&self.item), self.origin, self.destination)
    }
}

/// A broken rule of the domain: the event is well formed but does not fit what the ledger holds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The event was judged against the state of another stream (a caller's bug, not a client's).
    #[error("a {event_type} event of stream {event_stream} cannot be judged against stream {state_stream}")]
    StreamMismatch { event_type: &'static str, event_stream: StreamName, state_stream: StreamName },
    #[error("member {0} has already joined (a withdrawn member cannot rejoin)")]
    AlreadyJoined(MemberCode),
    #[error("member {0} has not joined")]
    NotJoined(MemberCode),
    #[error("member {0} has withdrawn")]
    MemberWithdrawn(MemberCode),
    #[error("member {code} already has the role {}", role_name(*.role))]
    RoleUnchanged { code: MemberCode, role: MemberRole },
    #[error("project {0} has already been identified")]
    ProjectAlreadyIdentified(ProjectId),
    #[error("project {0} has not been identified")]
    ProjectNotIdentified(ProjectId),
    #[error("project {project_id} is already {}", status_name(*.status))]
    StatusUnchanged { project_id: ProjectId, status: ProjectStatus },
    #[error("project {project_id} cannot move back from {} to {}", status_name(*.from), status_name(*.to))]
    StatusBackwards { project_id: ProjectId, from: ProjectStatus, to: ProjectStatus },
    #[error("project {project_id} is {}, which is final; it cannot become {}", status_name(*.status), status_name(*.to))]
    ProjectFinished { project_id: ProjectId, status: ProjectStatus, to: ProjectStatus },
    #[error("export rule {rule_id} covers {route}; a change cannot cover {new_route} (that is another rule_id)")]
    RouteChanged { rule_id: RuleId, route: Box<Route>, new_route: Box<Route> },
    #[error("commitment {0} has already been made")]
    CommitmentAlreadyMade(CommitmentId),
    #[error("commitment {0} has not been made")]
    CommitmentNotMade(CommitmentId),
    #[error("commitment {commitment_id} is already {}", commitment_status_name(*.status))]
    CommitmentClosed { commitment_id: CommitmentId, status: CommitmentStatus },
    #[error("summit of {0} has already been convened")]
    SummitAlreadyConvened(NaiveDate),
    #[error("{capacity} {code} has not joined the initiative")]
    ParticipantNotJoined { code: MemberCode, capacity: Capacity },
    #[error("{capacity} {code} has withdrawn from the initiative")]
    ParticipantWithdrawn { code: MemberCode, capacity: Capacity },
    #[error("{0} is a guest; only members make commitments")]
    GuestCannotCommit(MemberCode),
    #[error("principal {0} does not exist (it is created by its first grant)")]
    PrincipalUnknown(PrincipalName),
    #[error("principal {principal} already holds {grant}")]
    AlreadyGranted { principal: PrincipalName, grant: Grant },
    #[error("principal {principal} does not hold {grant}")]
    NotGranted { principal: PrincipalName, grant: Grant },
    #[error("principal {principal} already holds {credential}")]
    CredentialHeld { principal: PrincipalName, credential: Credential },
    #[error("principal {principal} does not hold {credential}")]
    CredentialNotHeld { principal: PrincipalName, credential: Credential },
}

fn role_name(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Member => "member",
        MemberRole::Guest => "guest",
    }
}

fn status_name(status: ProjectStatus) -> &'static str {
    match status {
        ProjectStatus::Identified => "identified",
        ProjectStatus::Approved => "approved",
        ProjectStatus::UnderWay => "under_way",
        ProjectStatus::Completed => "completed",
        ProjectStatus::Cancelled => "cancelled",
    }
}

fn commitment_status_name(status: CommitmentStatus) -> &'static str {
    match status {
        CommitmentStatus::Open => "open",
        CommitmentStatus::Fulfilled => "fulfilled",
        CommitmentStatus::Withdrawn => "withdrawn",
    }
}

// ---------------------------------------------------------------------------------------------
// Stateless checks

/// Stateless checks of one event's fields (lengths, required text, list sizes, duplicates, levy
/// rules, date range). Field paths in errors are the wire field names inside the event's data,
/// e.g. `name`, `partners[2]`, `companies[0]`, `levy_bps`, `effective_from`.
pub fn validate(event: &EventData) -> Result<(), FieldError> {
    match event {
        EventData::MemberJoined { name, .. } => required_text("name", name, NAME_LEN_MAX),
        EventData::MemberRoleChanged { .. } => Ok(()),
        EventData::MemberWithdrew { reason, .. } => optional_text("reason", reason, REASON_LEN_MAX),
        EventData::ProjectIdentified { title, host, partners, companies, description, .. } => {
            required_text("title", title, NAME_LEN_MAX)?;
            distinct_codes("partners", partners, PARTNERS_MAX)?;
            if let Some(i) = partners.iter().position(|partner| partner == host) {
                return Err(FieldError::new(
                    format!("partners[{i}]"),
                    format!("{host} is the host; list the host only as host"),
                ));
            }
            check_companies(companies)?;
            optional_text("description", description, TEXT_LEN_MAX)
        }
        EventData::ProjectStatusChanged { reason, .. } => optional_text("reason", reason, REASON_LEN_MAX),
        EventData::ExportRuleChanged {
            item,
            origin,
            destination,
            treatment,
            levy_bps,
            effective_from,
            authority,
            ..
        } => {
            required_text("item", item, NAME_LEN_MAX)?;
            if origin == destination {
                return Err(FieldError::new("destination", format!("must differ from origin ({origin})")));
            }
            check_levy(*treatment, *levy_bps)?;
            check_date("effective_from", effective_from)?;
            required_text("authority", authority, NAME_LEN_MAX)
        }
        EventData::CommitmentMade { description, due_on, .. } => {
            required_text("description", description, TEXT_LEN_MAX)?;
            check_date("due_on", due_on)
        }
        EventData::CommitmentFulfilled { evidence, .. } => required_text("evidence", evidence, TEXT_LEN_MAX),
        EventData::CommitmentWithdrawn { reason, .. } => optional_text("reason", reason, REASON_LEN_MAX),
        EventData::SummitConvened { date, chair, participants, location, .. } => {
            check_date("date", date)?;
            required_text("chair", chair, NAME_LEN_MAX)?;
            distinct_codes("participants", participants, PARTICIPANTS_MAX)?;
            required_text("location", location, NAME_LEN_MAX)
        }
        EventData::AccessGranted { grants, reason, .. } | EventData::AccessRevoked { grants, reason, .. } => {
            check_grants(grants)?;
            optional_text("reason", reason, REASON_LEN_MAX)
        }
        EventData::CredentialIssued { .. } => Ok(()),
        EventData::CredentialRevoked { reason, .. } => optional_text("reason", reason, REASON_LEN_MAX),
    }
}

fn check_grants(grants: &[Grant]) -> Result<(), FieldError> {
    if grants.is_empty() {
        return Err(FieldError::new("grants", "must name at least one grant"));
    }
    if grants.len() > GRANTS_MAX {
        return Err(FieldError::new("grants", format!("must hold at most {GRANTS_MAX} grants, got {}", grants.len())));
    }
    for (i, grant) in grants.iter().enumerate() {
        if grants[..i].contains(grant) {
            return Err(FieldError::new(format!("grants[{i}]"), format!("{grant} is listed twice")));
        }
    }
    Ok(())
}

/// Stateless checks of an event's metadata. All fields are optional; field paths are `actor`,
/// `source`, `correlation_id`, `causation_id`, `labels` and `labels[KEY]`.
pub fn validate_metadata(meta: &Metadata) -> Result<(), FieldError> {
    optional_text("actor", &meta.actor, ACTOR_LEN_MAX)?;
    optional_text("source", &meta.source, SOURCE_LEN_MAX)?;
    optional_text("correlation_id", &meta.correlation_id, CORRELATION_ID_LEN_MAX)?;
    optional_text("causation_id", &meta.causation_id, CORRELATION_ID_LEN_MAX)?;
    if meta.labels.len() > LABELS_MAX {
        return Err(FieldError::new(
            "labels",
            format!("must hold at most {LABELS_MAX} labels, got {}", meta.labels.len()),
        ));
    }
    for (key, value) in &meta.labels {
        // The key goes into the field path: keep a bad key short and printable there.
        let field =
            format!("labels[{}]", key.chars().take(LABEL_KEY_LEN_MAX).flat_map(char::escape_debug).collect::<String>());
        let key_ok = (1..=LABEL_KEY_LEN_MAX).contains(&key.len())
            && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
        if !key_ok {
            return Err(FieldError::new(
                field,
                format!("a label key must be 1 to {LABEL_KEY_LEN_MAX} characters among a-z, 0-9, '_', '.' and '-'"),
            ));
        }
        optional_text(&field, value, LABEL_VALUE_LEN_MAX)?;
    }
    Ok(())
}

fn required_text(field: &str, text: &str, max: usize) -> Result<(), FieldError> {
    if text.trim().is_empty() {
        return Err(FieldError::new(field, "is required and must not be blank"));
    }
    optional_text(field, text, max)
}

fn optional_text(field: &str, text: &str, max: usize) -> Result<(), FieldError> {
    // Counting stops past `max`, so that an oversized value costs no more than a valid one.
    if text.len() > max && text.chars().nth(max).is_some() {
        return Err(FieldError::new(field, format!("must be at most {max} characters")));
    }
    if let Some((i, c)) = text.chars().enumerate().find(|&(_, c)| c.is_control() && c != '\n' && c != '\t') {
        return Err(FieldError::new(
            field,
            format!(
                "must not contain control characters other than newline and tab; found U+{:04X} at character {i}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

fn distinct_codes(field: &str, codes: &[MemberCode], max: usize) -> Result<(), FieldError> {
    if codes.len() > max {
        return Err(FieldError::new(field, format!("must list at most {max} participants, got {}", codes.len())));
    }
    let mut first_seen = BTreeMap::new();
    for (i, code) in codes.iter().enumerate() {
        if let Some(first) = first_seen.insert(code, i) {
            return Err(FieldError::new(format!("{field}[{i}]"), format!("repeats {code}, already {field}[{first}]")));
        }
    }
    Ok(())
}

fn check_companies(companies: &[String]) -> Result<(), FieldError> {
    if companies.len() > COMPANIES_MAX {
        return Err(FieldError::new(
            "companies",
            format!("must list at most {COMPANIES_MAX} companies, got {}", companies.len()),
        ));
    }
    let mut first_seen = BTreeMap::new();
    for (i, company) in companies.iter().enumerate() {
        let field = format!("companies[{i}]");
        required_text(&field, company, NAME_LEN_MAX)?;
        if let Some(first) = first_seen.insert(company.as_str(), i) {
            return Err(FieldError::new(field, format!("repeats {}, already companies[{first}]", quote(company))));
        }
    }
    Ok(())
}

fn check_levy(treatment: Treatment, levy_bps: Option<u32>) -> Result<(), FieldError> {
    match (treatment, levy_bps) {
        (Treatment::AllowedWithLevy, None) => {
            Err(FieldError::new("levy_bps", "is required when the treatment is allowed_with_levy"))
        }
        (Treatment::AllowedWithLevy, Some(bps)) if bps > LEVY_BPS_MAX => {
            Err(FieldError::new("levy_bps", format!("must lie in 0..={LEVY_BPS_MAX} basis points, got {bps}")))
        }
        (Treatment::AllowedWithLevy, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(FieldError::new("levy_bps", "must be unset unless the treatment is allowed_with_levy")),
    }
}

/// Whether `date` lies in the years [`DATE_YEAR_MIN`]..=[`DATE_YEAR_MAX`]: every date an event or
/// a request carries.
pub fn check_date(field: &str, date: &NaiveDate) -> Result<(), FieldError> {
    if (DATE_YEAR_MIN..=DATE_YEAR_MAX).contains(&date.year()) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must lie between the years {DATE_YEAR_MIN} and {DATE_YEAR_MAX}, got {date}"),
        ))
    }
}

/// Whether `time` lies in the same years as a date, from 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999999999Z: the range of protobuf's `Timestamp` (and of RFC 3339's
/// four-digit years), so that every time the ledger accepts can be answered on the wire.
pub fn check_time(field: &str, time: &DateTime<Utc>) -> Result<(), FieldError> {
    if (DATE_YEAR_MIN..=DATE_YEAR_MAX).contains(&time.year()) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "must lie between {DATE_YEAR_MIN:04}-01-01T00:00:00Z and {DATE_YEAR_MAX}-12-31T23:59:59.999999999Z (the range of a protobuf Timestamp), got {}",
                time.to_rfc3339()
            ),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Stateful rules

/// Member codes the event's rules need to look up (project host and partners, committing member,
/// summit host and participants), in the order the event names them, without duplicates.
pub fn referenced_participants(event: &EventData) -> Vec<MemberCode> {
    let named: Vec<&MemberCode> = match event {
        EventData::ProjectIdentified { host, partners, .. } => std::iter::once(host).chain(partners).collect(),
        EventData::CommitmentMade { member, .. } => vec![member],
        EventData::SummitConvened { host, participants, .. } => std::iter::once(host).chain(participants).collect(),
        EventData::MemberJoined { .. }
        | EventData::MemberRoleChanged { .. }
        | EventData::MemberWithdrew { .. }
        | EventData::ProjectStatusChanged { .. }
        | EventData::ExportRuleChanged { .. }
        | EventData::CommitmentFulfilled { .. }
        | EventData::CommitmentWithdrawn { .. }
        | EventData::AccessGranted { .. }
        | EventData::AccessRevoked { .. }
        | EventData::CredentialIssued { .. }
        | EventData::CredentialRevoked { .. } => Vec::new(),
    };
    let mut codes: Vec<MemberCode> = Vec::with_capacity(named.len());
    for code in named {
        if !codes.contains(code) {
            codes.push(code.clone());
        }
    }
    codes
}

/// Every stateful rule of the domain: `Err` if appending `event` to a stream whose committed
/// state is `state` breaks a rule, given the participants' committed states. Pure.
pub fn decide(state: &EntityState, event: &EventData, participants: &dyn Participants) -> Result<(), DomainError> {
    if !belongs_to(state, event)
        && let Some(state_stream) = state.stream()
    {
        return Err(DomainError::StreamMismatch {
            event_type: event.type_name(),
            event_stream: event.stream(),
            state_stream,
        });
    }
    match event {
        EventData::MemberJoined { code, .. } => match state {
            EntityState::Empty => Ok(()),
            _ => Err(DomainError::AlreadyJoined(code.clone())),
        },
        EventData::MemberRoleChanged { code, role } => {
            let member = current_member(state, code)?;
            if member.role == *role {
                return Err(DomainError::RoleUnchanged { code: code.clone(), role: *role });
            }
            Ok(())
        }
        EventData::MemberWithdrew { code, .. } => current_member(state, code).map(drop),
        EventData::ProjectIdentified { project_id, host, partners, .. } => {
            if !matches!(state, EntityState::Empty) {
                return Err(DomainError::ProjectAlreadyIdentified(*project_id));
            }
            current_participant(participants, host, Capacity::ProjectHost)?;
            for partner in partners {
                current_participant(participants, partner, Capacity::ProjectPartner)?;
            }
            Ok(())
        }
        EventData::ProjectStatusChanged { project_id, status, .. } => {
            let EntityState::Project(project) = state else {
                return Err(DomainError::ProjectNotIdentified(*project_id));
            };
            check_status_move(project, *status)
        }
        EventData::ExportRuleChanged { rule_id, item, origin, destination, .. } => match state {
            EntityState::ExportRule(rule) => {
                let route = Route::of(rule);
                let new_route = Route { item: item.clone(), origin: origin.clone(), destination: destination.clone() };
                if route == new_route {
                    Ok(())
                } else {
                    Err(DomainError::RouteChanged {
                        rule_id: rule_id.clone(),
                        route: route.into(),
                        new_route: new_route.into(),
                    })
                }
            }
            _ => Ok(()),
        },
        EventData::CommitmentMade { commitment_id, member, .. } => {
            if !matches!(state, EntityState::Empty) {
                return Err(DomainError::CommitmentAlreadyMade(*commitment_id));
            }
            let participant = current_participant(participants, member, Capacity::CommitmentMember)?;
            if participant.role != MemberRole::Member {
                return Err(DomainError::GuestCannotCommit(member.clone()));
            }
            Ok(())
        }
        EventData::CommitmentFulfilled { commitment_id, .. } | EventData::CommitmentWithdrawn { commitment_id, .. } => {
            let EntityState::Commitment(commitment) = state else {
                return Err(DomainError::CommitmentNotMade(*commitment_id));
            };
            if commitment.status != CommitmentStatus::Open {
                return Err(DomainError::CommitmentClosed { commitment_id: *commitment_id, status: commitment.status });
            }
            Ok(())
        }
        EventData::SummitConvened { date, host, participants: attendees, .. } => {
            if !matches!(state, EntityState::Empty) {
                return Err(DomainError::SummitAlreadyConvened(*date));
            }
            current_participant(participants, host, Capacity::SummitHost)?;
            for attendee in attendees {
                current_participant(participants, attendee, Capacity::SummitParticipant)?;
            }
            Ok(())
        }
        EventData::AccessGranted { principal, grants, .. } => {
            if let EntityState::Principal(held) = state
                && let Some(grant) = grants.iter().find(|g| held.grants.contains(g))
            {
                return Err(DomainError::AlreadyGranted { principal: principal.clone(), grant: grant.clone() });
            }
            Ok(())
        }
        EventData::AccessRevoked { principal, grants, .. } => {
            let held = existing_principal(state, principal)?;
            match grants.iter().find(|g| !held.grants.contains(g)) {
                Some(grant) => Err(DomainError::NotGranted { principal: principal.clone(), grant: grant.clone() }),
                None => Ok(()),
            }
        }
        EventData::CredentialIssued { principal, credential } => {
            if existing_principal(state, principal)?.credentials.contains(credential) {
                return Err(DomainError::CredentialHeld { principal: principal.clone(), credential: *credential });
            }
            Ok(())
        }
        EventData::CredentialRevoked { principal, credential, .. } => {
            if !existing_principal(state, principal)?.credentials.contains(credential) {
                return Err(DomainError::CredentialNotHeld { principal: principal.clone(), credential: *credential });
            }
            Ok(())
        }
    }
}

fn existing_principal<'s>(state: &'s EntityState, name: &PrincipalName) -> Result<&'s PrincipalState, DomainError> {
    match state {
        EntityState::Principal(principal) => Ok(principal),
        _ => Err(DomainError::PrincipalUnknown(name.clone())),
    }
}

/// Whether `event` belongs to the stream `state` was folded from (`Empty` belongs to any).
fn belongs_to(state: &EntityState, event: &EventData) -> bool {
    match (state, event) {
        (EntityState::Empty, _) => true,
        (
            EntityState::Member(member),
            EventData::MemberJoined { code, .. }
            | EventData::MemberRoleChanged { code, .. }
            | EventData::MemberWithdrew { code, .. },
        ) => member.code == *code,
        (
            EntityState::Project(project),
            EventData::ProjectIdentified { project_id, .. } | EventData::ProjectStatusChanged { project_id, .. },
        ) => project.project_id == *project_id,
        (EntityState::ExportRule(rule), EventData::ExportRuleChanged { rule_id, .. }) => rule.rule_id == *rule_id,
        (
            EntityState::Commitment(commitment),
            EventData::CommitmentMade { commitment_id, .. }
            | EventData::CommitmentFulfilled { commitment_id, .. }
            | EventData::CommitmentWithdrawn { commitment_id, .. },
        ) => commitment.commitment_id == *commitment_id,
        (EntityState::Summit(summit), EventData::SummitConvened { date, .. }) => summit.date == *date,
        (
            EntityState::Principal(held),
            EventData::AccessGranted { principal, .. }
            | EventData::AccessRevoked { principal, .. }
            | EventData::CredentialIssued { principal, .. }
            | EventData::CredentialRevoked { principal, .. },
        ) => held.name == *principal,
        _ => false,
    }
}

/// The stream's own member, if it has joined and not withdrawn.
fn current_member<'s>(state: &'s EntityState, code: &MemberCode) -> Result<&'s MemberState, DomainError> {
    match state {
        EntityState::Member(member) if member.withdrawn => Err(DomainError::MemberWithdrawn(code.clone())),
        EntityState::Member(member) => Ok(member),
        _ => Err(DomainError::NotJoined(code.clone())),
    }
}

/// Another stream's participant named by the event, if it has joined and not withdrawn.
fn current_participant(
    participants: &dyn Participants,
    code: &MemberCode,
    capacity: Capacity,
) -> Result<MemberState, DomainError> {
    match participants.participant(code) {
        None => Err(DomainError::ParticipantNotJoined { code: code.clone(), capacity }),
        Some(member) if member.withdrawn => Err(DomainError::ParticipantWithdrawn { code: code.clone(), capacity }),
        Some(member) => Ok(member),
    }
}

/// A status moves forward along identified → approved → under_way → completed (skipping is
/// allowed), or to cancelled from any status that is not final.
fn check_status_move(project: &ProjectState, to: ProjectStatus) -> Result<(), DomainError> {
    let (project_id, from) = (project.project_id, project.status);
    if matches!(from, ProjectStatus::Completed | ProjectStatus::Cancelled) {
        Err(DomainError::ProjectFinished { project_id, status: from, to })
    } else if to == from {
        Err(DomainError::StatusUnchanged { project_id, status: from })
    } else if to == ProjectStatus::Cancelled || to > from {
        // `ProjectStatus` is declared in path order.
        Ok(())
    } else {
        Err(DomainError::StatusBackwards { project_id, from, to })
    }
}

// ---------------------------------------------------------------------------------------------
// Application

/// Applies an event to its stream's state. Never fails and never judges: an event that does not
/// fit the state is folded as best it can, deterministically — a later change overwrites, an
/// event that needs an entity leaves `Empty` as it is, and an event of another stream or a second
/// creation event leaves the state unchanged.
pub fn evolve(state: EntityState, event: &EventData) -> EntityState {
    if !belongs_to(&state, event) {
        return state;
    }
    match (state, event) {
        (EntityState::Empty, EventData::MemberJoined { code, name, kind, role }) => EntityState::Member(MemberState {
            code: code.clone(),
            name: name.clone(),
            kind: *kind,
            role: *role,
            withdrawn: false,
            role_history: vec![*role],
        }),
        (EntityState::Member(mut member), EventData::MemberRoleChanged { role, .. }) => {
            member.role = *role;
            member.role_history.push(*role);
            EntityState::Member(member)
        }
        (EntityState::Member(mut member), EventData::MemberWithdrew { .. }) => {
            member.withdrawn = true;
            EntityState::Member(member)
        }
        (
            EntityState::Empty,
            EventData::ProjectIdentified { project_id, title, pillar, host, partners, companies, description },
        ) => EntityState::Project(ProjectState {
            project_id: *project_id,
            title: title.clone(),
            pillar: *pillar,
            host: host.clone(),
            partners: partners.clone(),
            companies: companies.clone(),
            description: description.clone(),
            status: ProjectStatus::Identified,
            status_history: vec![ProjectStatus::Identified],
        }),
        (EntityState::Project(mut project), EventData::ProjectStatusChanged { status, .. }) => {
            project.status = *status;
            project.status_history.push(*status);
            EntityState::Project(project)
        }
        (
            state @ (EntityState::Empty | EntityState::ExportRule(_)),
            EventData::ExportRuleChanged {
                rule_id,
                item,
                origin,
                destination,
                treatment,
                levy_bps,
                effective_from,
                authority,
            },
        ) => {
            let changes = match state {
                EntityState::ExportRule(rule) => rule.changes + 1,
                _ => 1,
            };
            EntityState::ExportRule(ExportRuleState {
                rule_id: rule_id.clone(),
                item: item.clone(),
                origin: origin.clone(),
                destination: destination.clone(),
                treatment: *treatment,
                levy_bps: *levy_bps,
                effective_from: *effective_from,
                authority: authority.clone(),
                changes,
            })
        }
        (
            EntityState::Empty,
            EventData::CommitmentMade { commitment_id, member, pillar, description, project_id, due_on },
        ) => EntityState::Commitment(CommitmentState {
            commitment_id: *commitment_id,
            member: member.clone(),
            pillar: *pillar,
            description: description.clone(),
            project_id: *project_id,
            due_on: *due_on,
            status: CommitmentStatus::Open,
            resolution: None,
        }),
        (EntityState::Commitment(mut commitment), EventData::CommitmentFulfilled { evidence, .. }) => {
            commitment.status = CommitmentStatus::Fulfilled;
            commitment.resolution = Some(evidence.clone());
            EntityState::Commitment(commitment)
        }
        (EntityState::Commitment(mut commitment), EventData::CommitmentWithdrawn { reason, .. }) => {
            commitment.status = CommitmentStatus::Withdrawn;
            commitment.resolution = Some(reason.clone());
            EntityState::Commitment(commitment)
        }
        (EntityState::Empty, EventData::SummitConvened { date, host, chair, participants, location }) => {
            EntityState::Summit(SummitState {
                date: *date,
                host: host.clone(),
                chair: chair.clone(),
                participants: participants.clone(),
                location: location.clone(),
            })
        }
        (EntityState::Empty, EventData::AccessGranted { principal, grants, .. }) => {
            EntityState::Principal(PrincipalState {
                name: principal.clone(),
                grants: grants.iter().cloned().collect(),
                credentials: BTreeSet::new(),
            })
        }
        (EntityState::Principal(mut held), EventData::AccessGranted { grants, .. }) => {
            held.grants.extend(grants.iter().cloned());
            EntityState::Principal(held)
        }
        (EntityState::Principal(mut held), EventData::AccessRevoked { grants, .. }) => {
            held.grants.retain(|g| !grants.contains(g));
            EntityState::Principal(held)
        }
        (EntityState::Principal(mut held), EventData::CredentialIssued { credential, .. }) => {
            held.credentials.insert(*credential);
            EntityState::Principal(held)
        }
        (EntityState::Principal(mut held), EventData::CredentialRevoked { credential, .. }) => {
            held.credentials.remove(credential);
            EntityState::Principal(held)
        }
        (state, _) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MemberKind, Pillar};

    // --- given / when / then -------------------------------------------------------------------

    /// Committed history: every stream folded with `evolve`.
    struct Given {
        streams: BTreeMap<StreamName, EntityState>,
    }

    fn given(events: &[EventData]) -> Given {
        let mut streams: BTreeMap<StreamName, EntityState> = BTreeMap::new();
        for event in events {
            let state = streams.remove(&event.stream()).unwrap_or_default();
            streams.insert(event.stream(), evolve(state, event));
        }
        Given { streams }
    }

    struct Then {
        state: EntityState,
        event: EventData,
        result: Result<(), DomainError>,
    }

    impl Given {
        fn when(self, event: EventData) -> Then {
            let state = self.streams.get(&event.stream()).cloned().unwrap_or_default();
            let participants = |code: &MemberCode| match self.streams.get(&StreamName::member(code)) {
                Some(EntityState::Member(member)) => Some(member.clone()),
                _ => None,
            };
            let result = decide(&state, &event, &participants);
            Then { state, event, result }
        }
    }

    impl Then {
        /// Asserts acceptance and returns the state after the event.
        #[track_caller]
        fn then_ok(self) -> EntityState {
            assert_eq!(self.result, Ok(()), "{:?} on {:?}", self.event, self.state);
            evolve(self.state, &self.event)
        }

        #[track_caller]
        fn then_err(self, expected: DomainError) {
            assert_eq!(self.result, Err(expected));
        }
    }

    // --- event builders ------------------------------------------------------------------------

    fn code(raw: &str) -> MemberCode {
        MemberCode::parse("code", raw).unwrap()
    }
    fn jurisdiction(raw: &str) -> Jurisdiction {
        Jurisdiction::parse("jurisdiction", raw).unwrap()
    }
    fn date(raw: &str) -> NaiveDate {
        raw.parse().unwrap()
    }
    const PROJECT: &str = "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6a";
    const COMMITMENT: &str = "0193a5b0-7c1e-7cc3-9c55-3f1e2d4c5b6b";
    fn project_id() -> ProjectId {
        ProjectId::parse("project_id", PROJECT).unwrap()
    }
    fn commitment_id() -> CommitmentId {
        CommitmentId::parse("commitment_id", COMMITMENT).unwrap()
    }

    fn joined(raw: &str, role: MemberRole) -> EventData {
        EventData::MemberJoined { code: code(raw), name: format!("{raw} name"), kind: MemberKind::State, role }
    }
    fn member(raw: &str) -> EventData {
        joined(raw, MemberRole::Member)
    }
    fn guest(raw: &str) -> EventData {
        joined(raw, MemberRole::Guest)
    }
    fn role_changed(raw: &str, role: MemberRole) -> EventData {
        EventData::MemberRoleChanged { code: code(raw), role }
    }
    fn withdrew(raw: &str) -> EventData {
        EventData::MemberWithdrew { code: code(raw), reason: "left".into() }
    }
    fn project(host: &str, partners: &[&str]) -> EventData {
        EventData::ProjectIdentified {
            project_id: project_id(),
            title: "Fab".into(),
            pillar: Pillar::Semiconductors,
            host: code(host),
            partners: partners.iter().map(|p| code(p)).collect(),
            companies: vec!["ASML".into()],
            description: String::new(),
        }
    }
    fn status(status: ProjectStatus) -> EventData {
        EventData::ProjectStatusChanged { project_id: project_id(), status, reason: String::new() }
    }
    fn rule(item: &str, origin: &str, destination: &str, treatment: Treatment, levy_bps: Option<u32>) -> EventData {
        EventData::ExportRuleChanged {
            rule_id: RuleId::parse("rule_id", "us-cn-nvidia-h200").unwrap(),
            item: item.into(),
            origin: jurisdiction(origin),
            destination: jurisdiction(destination),
            treatment,
            levy_bps,
            effective_from: date("2025-12-08"),
            authority: "US President".into(),
        }
    }
    fn h200(treatment: Treatment, levy_bps: Option<u32>) -> EventData {
        rule("Nvidia H200", "US", "CN", treatment, levy_bps)
    }
    fn commitment(raw: &str) -> EventData {
        EventData::CommitmentMade {
            commitment_id: commitment_id(),
            member: code(raw),
            pillar: Pillar::Energy,
            description: "Build a grid".into(),
            project_id: Some(project_id()),
            due_on: date("2027-01-01"),
        }
    }
    fn fulfilled() -> EventData {
        EventData::CommitmentFulfilled { commitment_id: commitment_id(), evidence: "Report".into() }
    }
    fn commitment_withdrawn() -> EventData {
        EventData::CommitmentWithdrawn { commitment_id: commitment_id(), reason: "Budget".into() }
    }
    fn summit(host: &str, participants: &[&str]) -> EventData {
        EventData::SummitConvened {
            date: date("2025-12-11"),
            host: code(host),
            chair: "Jacob Helberg".into(),
            participants: participants.iter().map(|p| code(p)).collect(),
            location: "Washington".into(),
        }
    }

    fn not_joined(raw: &str, capacity: Capacity) -> DomainError {
        DomainError::ParticipantNotJoined { code: code(raw), capacity }
    }
    fn withdrawn(raw: &str, capacity: Capacity) -> DomainError {
        DomainError::ParticipantWithdrawn { code: code(raw), capacity }
    }

    // --- members -------------------------------------------------------------------------------

    #[test]
    fn a_member_joins_once() {
        let state = given(&[]).when(member("JP")).then_ok();
        let EntityState::Member(jp) = state else { panic!("{state:?}") };
        assert_eq!((jp.role, jp.withdrawn, jp.role_history), (MemberRole::Member, false, vec![MemberRole::Member]));
        given(&[member("JP")]).when(guest("JP")).then_err(DomainError::AlreadyJoined(code("JP")));
    }

    #[test]
    fn a_withdrawn_member_cannot_rejoin() {
        given(&[member("JP"), withdrew("JP")]).when(member("JP")).then_err(DomainError::AlreadyJoined(code("JP")));
    }

    #[test]
    fn a_joined_member_changes_role_and_keeps_its_history() {
        let state = given(&[guest("TW"), role_changed("TW", MemberRole::Member)])
            .when(role_changed("TW", MemberRole::Guest))
            .then_ok();
        let EntityState::Member(tw) = state else { panic!("{state:?}") };
        assert_eq!(tw.role, MemberRole::Guest);
        assert_eq!(tw.role_history, [MemberRole::Guest, MemberRole::Member, MemberRole::Guest]);
    }

    #[test]
    fn a_role_change_needs_a_current_member_and_a_new_role() {
        given(&[]).when(role_changed("JP", MemberRole::Guest)).then_err(DomainError::NotJoined(code("JP")));
        given(&[member("JP"), withdrew("JP")])
            .when(role_changed("JP", MemberRole::Guest))
            .then_err(DomainError::MemberWithdrawn(code("JP")));
        given(&[member("JP")])
            .when(role_changed("JP", MemberRole::Member))
            .then_err(DomainError::RoleUnchanged { code: code("JP"), role: MemberRole::Member });
    }

    #[test]
    fn a_current_member_withdraws_once() {
        let state = given(&[member("JP")]).when(withdrew("JP")).then_ok();
        assert!(matches!(state, EntityState::Member(MemberState { withdrawn: true, .. })));
        given(&[]).when(withdrew("JP")).then_err(DomainError::NotJoined(code("JP")));
        given(&[member("JP"), withdrew("JP")]).when(withdrew("JP")).then_err(DomainError::MemberWithdrawn(code("JP")));
    }

    // --- projects ------------------------------------------------------------------------------

    #[test]
    fn a_project_is_identified_once_by_current_participants() {
        let members = [member("US"), member("JP"), guest("TW")];
        let state = given(&members).when(project("US", &["JP", "TW"])).then_ok();
        let EntityState::Project(fab) = state else { panic!("{state:?}") };
        assert_eq!(fab.status_history, [ProjectStatus::Identified]);
        given(&[member("US"), project("US", &[])])
            .when(project("US", &[]))
            .then_err(DomainError::ProjectAlreadyIdentified(project_id()));
    }

    #[test]
    fn a_project_host_and_partners_must_be_current_participants() {
        given(&[member("JP")]).when(project("US", &["JP"])).then_err(not_joined("US", Capacity::ProjectHost));
        given(&[member("US"), withdrew("US")])
            .when(project("US", &[]))
            .then_err(withdrawn("US", Capacity::ProjectHost));
        given(&[member("US"), member("JP")])
            .when(project("US", &["JP", "KR"]))
            .then_err(not_joined("KR", Capacity::ProjectPartner));
        given(&[member("US"), member("JP"), withdrew("JP")])
            .when(project("US", &["JP"]))
            .then_err(withdrawn("JP", Capacity::ProjectPartner));
    }

    #[test]
    fn a_status_moves_forward_skipping_allowed() {
        use ProjectStatus::*;
        let history = [member("US"), project("US", &[])];
        given(&history).when(status(Approved)).then_ok();
        given(&history).when(status(Completed)).then_ok();
        given(&history).when(status(Cancelled)).then_ok();
        let state = given(&[member("US"), project("US", &[]), status(Approved)]).when(status(UnderWay)).then_ok();
        let EntityState::Project(fab) = state else { panic!("{state:?}") };
        assert_eq!((fab.status, fab.status_history), (UnderWay, vec![Identified, Approved, UnderWay]));
    }

    #[test]
    fn a_status_change_needs_an_identified_project() {
        given(&[]).when(status(ProjectStatus::Approved)).then_err(DomainError::ProjectNotIdentified(project_id()));
    }

    #[test]
    fn a_status_never_repeats_nor_moves_back() {
        use ProjectStatus::*;
        let project_id = project_id();
        given(&[member("US"), project("US", &[])])
            .when(status(Identified))
            .then_err(DomainError::StatusUnchanged { project_id, status: Identified });
        given(&[member("US"), project("US", &[]), status(UnderWay)])
            .when(status(UnderWay))
            .then_err(DomainError::StatusUnchanged { project_id, status: UnderWay });
        given(&[member("US"), project("US", &[]), status(UnderWay)])
            .when(status(Approved))
            .then_err(DomainError::StatusBackwards { project_id, from: UnderWay, to: Approved });
    }

    #[test]
    fn completed_and_cancelled_are_final() {
        use ProjectStatus::*;
        let project_id = project_id();
        for end in [Completed, Cancelled] {
            for to in [Identified, Approved, UnderWay, Completed, Cancelled] {
                given(&[member("US"), project("US", &[]), status(end)])
                    .when(status(to))
                    .then_err(DomainError::ProjectFinished { project_id, status: end, to });
            }
        }
    }

    // --- export rules --------------------------------------------------------------------------

    #[test]
    fn an_export_rule_changes_any_number_of_times_on_one_route() {
        let first = h200(Treatment::Prohibited, None);
        let state = given(&[first.clone(), h200(Treatment::LicenseRequired, None)])
            .when(h200(Treatment::AllowedWithLevy, Some(2500)))
            .then_ok();
        let EntityState::ExportRule(rule) = state else { panic!("{state:?}") };
        assert_eq!((rule.changes, rule.treatment, rule.levy_bps), (3, Treatment::AllowedWithLevy, Some(2500)));
        given(&[]).when(first).then_ok();
    }

    #[test]
    fn an_export_rule_keeps_its_route() {
        let route = |item: &str, origin: &str, destination: &str| Route {
            item: item.into(),
            origin: jurisdiction(origin),
            destination: jurisdiction(destination),
        };
        let rule_id = RuleId::parse("rule_id", "us-cn-nvidia-h200").unwrap();
        for (item, origin, destination) in
            [("Nvidia H20", "US", "CN"), ("Nvidia H200", "NL", "CN"), ("Nvidia H200", "US", "HK")]
        {
            given(&[h200(Treatment::Prohibited, None)])
                .when(rule(item, origin, destination, Treatment::Prohibited, None))
                .then_err(DomainError::RouteChanged {
                    rule_id: rule_id.clone(),
                    route: route("Nvidia H200", "US", "CN").into(),
                    new_route: route(item, origin, destination).into(),
                });
        }
    }

    // --- commitments ---------------------------------------------------------------------------

    #[test]
    fn a_current_member_makes_a_commitment_once() {
        let state = given(&[member("JP")]).when(commitment("JP")).then_ok();
        assert!(matches!(state, EntityState::Commitment(CommitmentState { status: CommitmentStatus::Open, .. })));
        given(&[member("JP"), commitment("JP")])
            .when(commitment("JP"))
            .then_err(DomainError::CommitmentAlreadyMade(commitment_id()));
    }

    #[test]
    fn only_a_current_member_commits() {
        given(&[]).when(commitment("JP")).then_err(not_joined("JP", Capacity::CommitmentMember));
        given(&[member("JP"), withdrew("JP")])
            .when(commitment("JP"))
            .then_err(withdrawn("JP", Capacity::CommitmentMember));
        given(&[guest("TW")]).when(commitment("TW")).then_err(DomainError::GuestCannotCommit(code("TW")));
        given(&[guest("TW"), role_changed("TW", MemberRole::Member)]).when(commitment("TW")).then_ok();
    }

    #[test]
    fn an_open_commitment_is_fulfilled_or_withdrawn_once() {
        let made = [member("JP"), commitment("JP")];
        let state = given(&made).when(fulfilled()).then_ok();
        let EntityState::Commitment(done) = state else { panic!("{state:?}") };
        assert_eq!((done.status, done.resolution.as_deref()), (CommitmentStatus::Fulfilled, Some("Report")));
        let state = given(&made).when(commitment_withdrawn()).then_ok();
        let EntityState::Commitment(dropped) = state else { panic!("{state:?}") };
        assert_eq!((dropped.status, dropped.resolution.as_deref()), (CommitmentStatus::Withdrawn, Some("Budget")));

        let commitment_id = commitment_id();
        for (close, status) in
            [(fulfilled(), CommitmentStatus::Fulfilled), (commitment_withdrawn(), CommitmentStatus::Withdrawn)]
        {
            let closed = [member("JP"), commitment("JP"), close];
            for then in [fulfilled(), commitment_withdrawn()] {
                given(&closed).when(then).then_err(DomainError::CommitmentClosed { commitment_id, status });
            }
        }
        for event in [fulfilled(), commitment_withdrawn()] {
            given(&[]).when(event).then_err(DomainError::CommitmentNotMade(commitment_id));
        }
    }

    // --- summits -------------------------------------------------------------------------------

    #[test]
    fn a_summit_is_convened_once_by_current_participants() {
        let members = [member("US"), member("JP"), guest("EU")];
        let state = given(&members).when(summit("US", &["US", "JP", "EU"])).then_ok();
        assert!(matches!(state, EntityState::Summit(SummitState { ref participants, .. }) if participants.len() == 3));
        given(&[member("US"), summit("US", &[])])
            .when(summit("US", &[]))
            .then_err(DomainError::SummitAlreadyConvened(date("2025-12-11")));
        given(&[]).when(summit("US", &[])).then_err(not_joined("US", Capacity::SummitHost));
        given(&[member("US"), withdrew("US")]).when(summit("US", &[])).then_err(withdrawn("US", Capacity::SummitHost));
        given(&[member("US")]).when(summit("US", &["JP"])).then_err(not_joined("JP", Capacity::SummitParticipant));
        given(&[member("US"), member("JP"), withdrew("JP")])
            .when(summit("US", &["JP"]))
            .then_err(withdrawn("JP", Capacity::SummitParticipant));
    }

    // --- cross-cutting -------------------------------------------------------------------------

    #[test]
    fn an_event_is_judged_only_against_its_own_stream() {
        let jp = evolve(EntityState::Empty, &member("JP"));
        assert_eq!(
            decide(&jp, &withdrew("KR"), &|_: &MemberCode| None),
            Err(DomainError::StreamMismatch {
                event_type: "member_withdrew",
                event_stream: StreamName::member(&code("KR")),
                state_stream: StreamName::member(&code("JP")),
            })
        );
        assert!(matches!(
            decide(&jp, &status(ProjectStatus::Approved), &|_: &MemberCode| None),
            Err(DomainError::StreamMismatch { .. })
        ));
        assert_eq!(evolve(jp.clone(), &withdrew("KR")), jp);
        assert_eq!(evolve(jp.clone(), &fulfilled()), jp);
    }

    #[test]
    fn evolve_folds_what_does_not_fit_without_judging() {
        assert_eq!(evolve(EntityState::Empty, &role_changed("JP", MemberRole::Guest)), EntityState::Empty);
        assert_eq!(evolve(EntityState::Empty, &status(ProjectStatus::Approved)), EntityState::Empty);
        assert_eq!(evolve(EntityState::Empty, &fulfilled()), EntityState::Empty);
        let jp = evolve(EntityState::Empty, &member("JP"));
        assert_eq!(evolve(jp.clone(), &guest("JP")), jp, "a second join changes nothing");
    }

    #[test]
    fn referenced_participants_are_listed_once_in_order() {
        assert_eq!(referenced_participants(&project("US", &["JP", "KR"])), [code("US"), code("JP"), code("KR")]);
        assert_eq!(referenced_participants(&summit("US", &["US", "JP", "US"])), [code("US"), code("JP")]);
        assert_eq!(referenced_participants(&commitment("JP")), [code("JP")]);
        assert!(referenced_participants(&member("JP")).is_empty());
        assert!(referenced_participants(&h200(Treatment::Prohibited, None)).is_empty());
    }

    #[test]
    fn errors_name_the_entity() {
        assert_eq!(
            DomainError::AlreadyJoined(code("JP")).to_string(),
            "member JP has already joined (a withdrawn member cannot rejoin)"
        );
        assert_eq!(
            DomainError::StatusBackwards {
                project_id: project_id(),
                from: ProjectStatus::UnderWay,
                to: ProjectStatus::Approved
            }
            .to_string(),
            format!("project {PROJECT} cannot move back from under_way to approved")
        );
        assert_eq!(
            not_joined("KR", Capacity::ProjectPartner).to_string(),
            "project partner KR has not joined the initiative"
        );
    }

    // --- validate ------------------------------------------------------------------------------

    #[track_caller]
    fn check_invalid(event: EventData, field: &str) {
        match validate(&event) {
            Err(error) => assert_eq!(error.field, field, "{error}"),
            Ok(()) => panic!("{event:?} passed validation; expected an error at {field}"),
        }
    }

    fn with_project(edit: impl FnOnce(&mut Vec<MemberCode>, &mut Vec<String>, &mut String, &mut String)) -> EventData {
        let mut event = project("US", &["JP", "KR"]);
        if let EventData::ProjectIdentified { partners, companies, title, description, .. } = &mut event {
            edit(partners, companies, title, description);
        }
        event
    }

    #[test]
    fn valid_events_pass() {
        for event in [
            member("JP"),
            role_changed("JP", MemberRole::Guest),
            withdrew("JP"),
            project("US", &["JP", "KR"]),
            status(ProjectStatus::Approved),
            h200(Treatment::AllowedWithLevy, Some(2500)),
            h200(Treatment::AllowedWithLevy, Some(0)),
            h200(Treatment::AllowedWithLevy, Some(LEVY_BPS_MAX)),
            h200(Treatment::Prohibited, None),
            commitment("JP"),
            fulfilled(),
            commitment_withdrawn(),
            summit("US", &["US", "JP"]),
        ] {
            assert_eq!(validate(&event), Ok(()), "{event:?}");
        }
    }

    #[test]
    fn required_text_must_not_be_blank() {
        check_invalid(
            EventData::MemberJoined {
                code: code("JP"),
                name: " ".into(),
                kind: MemberKind::State,
                role: MemberRole::Member,
            },
            "name",
        );
        check_invalid(with_project(|_, _, title, _| title.clear()), "title");
        check_invalid(rule("", "US", "CN", Treatment::Allowed, None), "item");
        let mut no_authority = h200(Treatment::Allowed, None);
        if let EventData::ExportRuleChanged { authority, .. } = &mut no_authority {
            authority.clear();
        }
        check_invalid(no_authority, "authority");
        check_invalid(
            EventData::CommitmentFulfilled { commitment_id: commitment_id(), evidence: "\n".into() },
            "evidence",
        );
        let mut no_description = commitment("JP");
        if let EventData::CommitmentMade { description, .. } = &mut no_description {
            description.clear();
        }
        check_invalid(no_description, "description");
        for (blank_chair, blank_location, field) in [(true, false, "chair"), (false, true, "location")] {
            let mut event = summit("US", &[]);
            if let EventData::SummitConvened { chair, location, .. } = &mut event {
                if blank_chair {
                    chair.clear();
                }
                if blank_location {
                    location.clear();
                }
            }
            check_invalid(event, field);
        }
        check_invalid(with_project(|_, companies, _, _| companies.push(String::new())), "companies[1]");
    }

    #[test]
    fn optional_text_may_be_empty() {
        assert_eq!(validate(&EventData::MemberWithdrew { code: code("JP"), reason: String::new() }), Ok(()));
        assert_eq!(
            validate(&with_project(|_, companies, _, description| {
                companies.clear();
                description.clear();
            })),
            Ok(())
        );
    }

    #[test]
    fn text_lengths_are_bounded_in_characters() {
        let name = |len: usize| EventData::MemberJoined {
            code: code("JP"),
            name: "é".repeat(len),
            kind: MemberKind::State,
            role: MemberRole::Member,
        };
        assert_eq!(validate(&name(NAME_LEN_MAX)), Ok(()), "{NAME_LEN_MAX} two-byte characters fit");
        check_invalid(name(NAME_LEN_MAX + 1), "name");
        check_invalid(EventData::MemberWithdrew { code: code("JP"), reason: "x".repeat(REASON_LEN_MAX + 1) }, "reason");
        check_invalid(with_project(|_, _, _, description| *description = "x".repeat(TEXT_LEN_MAX + 1)), "description");
        check_invalid(with_project(|_, companies, _, _| companies.push("x".repeat(NAME_LEN_MAX + 1))), "companies[1]");
        check_invalid(
            EventData::ProjectStatusChanged {
                project_id: project_id(),
                status: ProjectStatus::Approved,
                reason: "x".repeat(REASON_LEN_MAX + 1),
            },
            "reason",
        );
        check_invalid(
            EventData::CommitmentWithdrawn { commitment_id: commitment_id(), reason: "x".repeat(REASON_LEN_MAX + 1) },
            "reason",
        );
    }

    #[test]
    fn text_refuses_control_characters_but_newline_and_tab() {
        assert_eq!(validate(&EventData::MemberWithdrew { code: code("JP"), reason: "a\n\tb".into() }), Ok(()));
        for bad in ["a\rb", "a\u{0}b", "a\u{7f}b", "a\u{85}b"] {
            check_invalid(EventData::MemberWithdrew { code: code("JP"), reason: bad.into() }, "reason");
        }
    }

    #[test]
    fn lists_are_bounded_and_without_repeats() {
        check_invalid(with_project(|partners, _, _, _| partners.push(code("JP"))), "partners[2]");
        check_invalid(with_project(|partners, _, _, _| partners.push(code("US"))), "partners[2]");
        check_invalid(with_project(|_, companies, _, _| companies.push("ASML".into())), "companies[1]");
        let many_codes: Vec<MemberCode> = ('A'..='Z')
            .flat_map(|a| ('A'..='Z').map(move |b| code(&format!("{a}{b}"))))
            .take(PARTICIPANTS_MAX + 1)
            .collect();
        check_invalid(with_project(|partners, _, _, _| *partners = many_codes[..=PARTNERS_MAX].to_vec()), "partners");
        check_invalid(
            with_project(|_, companies, _, _| *companies = (0..=COMPANIES_MAX).map(|i| format!("C{i}")).collect()),
            "companies",
        );
        let mut crowded = summit("US", &[]);
        if let EventData::SummitConvened { participants, .. } = &mut crowded {
            *participants = many_codes.clone();
        }
        check_invalid(crowded, "participants");
        check_invalid(summit("US", &["JP", "KR", "JP"]), "participants[2]");
    }

    #[test]
    fn a_levy_is_set_only_for_allowed_with_levy_and_bounded() {
        check_invalid(h200(Treatment::AllowedWithLevy, None), "levy_bps");
        check_invalid(h200(Treatment::AllowedWithLevy, Some(LEVY_BPS_MAX + 1)), "levy_bps");
        for treatment in [Treatment::Allowed, Treatment::LicenseRequired, Treatment::Prohibited] {
            check_invalid(h200(treatment, Some(0)), "levy_bps");
        }
    }

    #[test]
    fn an_export_rule_crosses_a_border() {
        check_invalid(rule("Nvidia H200", "US", "US", Treatment::Allowed, None), "destination");
    }

    #[test]
    fn dates_keep_four_digit_years() {
        let mut rule = h200(Treatment::Allowed, None);
        if let EventData::ExportRuleChanged { effective_from, .. } = &mut rule {
            *effective_from = NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap();
        }
        check_invalid(rule, "effective_from");
        let mut promise = commitment("JP");
        if let EventData::CommitmentMade { due_on, .. } = &mut promise {
            *due_on = NaiveDate::from_ymd_opt(0, 12, 31).unwrap();
        }
        check_invalid(promise, "due_on");
        let mut meeting = summit("US", &[]);
        if let EventData::SummitConvened { date, .. } = &mut meeting {
            *date = NaiveDate::from_ymd_opt(-1, 1, 1).unwrap();
        }
        check_invalid(meeting, "date");
    }

    // --- validate_metadata ---------------------------------------------------------------------

    #[track_caller]
    fn check_metadata(edit: impl FnOnce(&mut Metadata), field: Option<&str>) {
        let mut meta = Metadata {
            actor: "secretariat".into(),
            source: "Benzinga, 2025-12-14".into(),
            labels: [("illustrative".to_owned(), "false".to_owned())].into(),
            ..Metadata::default()
        };
        edit(&mut meta);
        assert_eq!(validate_metadata(&meta).map_err(|e| e.field).err().as_deref(), field);
    }

    #[test]
    fn metadata_fields_are_bounded() {
        check_metadata(|_| {}, None);
        check_metadata(|m| *m = Metadata::default(), None);
        check_metadata(|m| m.actor = "x".repeat(ACTOR_LEN_MAX + 1), Some("actor"));
        check_metadata(|m| m.source = "x".repeat(SOURCE_LEN_MAX + 1), Some("source"));
        check_metadata(|m| m.correlation_id = "x".repeat(CORRELATION_ID_LEN_MAX + 1), Some("correlation_id"));
        check_metadata(|m| m.causation_id = "a\u{1b}b".into(), Some("causation_id"));
        check_metadata(
            |m| m.labels = (0..=LABELS_MAX).map(|i| (format!("k{i}"), String::new())).collect(),
            Some("labels"),
        );
    }

    #[test]
    fn label_keys_are_short_lower_case_ascii() {
        check_metadata(|m| _ = m.labels.insert("demo.run_1-a".into(), "x".into()), None);
        check_metadata(|m| _ = m.labels.insert(String::new(), "x".into()), Some("labels[]"));
        check_metadata(|m| _ = m.labels.insert("Illustrative".into(), "x".into()), Some("labels[Illustrative]"));
        check_metadata(|m| _ = m.labels.insert("a b".into(), "x".into()), Some("labels[a b]"));
        check_metadata(
            |m| _ = m.labels.insert("k".repeat(LABEL_KEY_LEN_MAX + 1), "x".into()),
            Some(&format!("labels[{}]", "k".repeat(LABEL_KEY_LEN_MAX))),
        );
        check_metadata(|m| _ = m.labels.insert("k".into(), "v".repeat(LABEL_VALUE_LEN_MAX + 1)), Some("labels[k]"));
        check_metadata(|m| _ = m.labels.insert("k".into(), "a\u{0}".into()), Some("labels[k]"));
    }

    #[test]
    fn access_events_follow_what_the_principal_holds() {
        let nobody = |_: &MemberCode| None;
        let name = PrincipalName::parse("p", "jp-delegation").unwrap();
        let jp = Grant::parse("g", "delegate:JP").unwrap();
        let token = Credential::of_token("t");
        let granted =
            EventData::AccessGranted { principal: name.clone(), grants: vec![jp.clone()], reason: String::new() };
        let issued = EventData::CredentialIssued { principal: name.clone(), credential: token };
        let revoked =
            EventData::CredentialRevoked { principal: name.clone(), credential: token, reason: String::new() };
        let taken =
            EventData::AccessRevoked { principal: name.clone(), grants: vec![jp.clone()], reason: String::new() };
        // Nothing before the first grant.
        for event in [&issued, &revoked, &taken] {
            assert_eq!(
                decide(&EntityState::Empty, event, &nobody),
                Err(DomainError::PrincipalUnknown(name.clone())),
                "{event:?}"
            );
        }
        assert_eq!(decide(&EntityState::Empty, &granted, &nobody), Ok(()));
        let state = evolve(EntityState::Empty, &granted);
        assert_eq!(
            decide(&state, &granted, &nobody),
            Err(DomainError::AlreadyGranted { principal: name.clone(), grant: jp.clone() })
        );
        assert_eq!(
            decide(&state, &revoked, &nobody),
            Err(DomainError::CredentialNotHeld { principal: name.clone(), credential: token })
        );
        let state = evolve(state, &issued);
        assert_eq!(
            decide(&state, &issued, &nobody),
            Err(DomainError::CredentialHeld { principal: name.clone(), credential: token })
        );
        let state = evolve(evolve(state, &revoked), &taken);
        let EntityState::Principal(held) = &state else { panic!("{state:?}") };
        assert!(held.grants.is_empty() && held.credentials.is_empty(), "{held:?}");
        assert_eq!(
            decide(&state, &taken, &nobody),
            Err(DomainError::NotGranted { principal: name.clone(), grant: jp.clone() })
        );
        // Another principal's stream is not this one's.
        let other = EventData::AccessGranted {
            principal: PrincipalName::parse("p", "kr-delegation").unwrap(),
            grants: vec![Grant::Reader],
            reason: String::new(),
        };
        assert!(matches!(decide(&state, &other, &nobody), Err(DomainError::StreamMismatch { .. })));
    }

    #[test]
    fn grants_in_an_access_event_are_one_to_sixty_four_and_distinct() {
        let name = PrincipalName::parse("p", "x").unwrap();
        let with =
            |grants: Vec<Grant>| EventData::AccessGranted { principal: name.clone(), grants, reason: String::new() };
        check_invalid(with(vec![]), "grants");
        check_invalid(with(vec![Grant::Reader, Grant::Auditor, Grant::Reader]), "grants[2]");
        let many: Vec<Grant> = (0..=GRANTS_MAX)
            .map(|i| {
                Grant::Delegate(
                    MemberCode::parse("c", &format!("A{}", char::from(b'A' + (i % 26) as u8)).repeat(1 + i / 26))
                        .unwrap(),
                )
            })
            .collect();
        check_invalid(with(many), "grants");
        assert_eq!(validate(&with(vec![Grant::Admin])), Ok(()));
    }
}
