//! The typed events of the initiative and their envelope.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use super::access::{Credential, Grant, PrincipalName};
use super::ids::{
    CommitmentId, EventId, Jurisdiction, MemberCode, Position, ProjectId, Revision, RuleId, StreamKey, StreamName,
};

/// Whether a participant is a state or an organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberKind {
    State,
    Organization,
}

/// A participant's standing in the initiative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberRole {
    Member,
    Guest,
}

/// The initiative's areas of work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pillar {
    Semiconductors,
    CriticalMinerals,
    Energy,
    AiCompute,
    /// Logistics and connectivity.
    Networks,
}

/// A project's status. The path is identified → approved → under_way → completed; a project
/// that is not finished may also be cancelled. Variants are declared in path order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProjectStatus {
    Identified,
    Approved,
    UnderWay,
    Completed,
    Cancelled,
}

/// How an export rule treats the item on its route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Treatment {
    Allowed,
    AllowedWithLevy,
    LicenseRequired,
    Prohibited,
}

/// Largest levy: 100 %, in basis points.
pub const LEVY_BPS_MAX: u32 = 10_000;

/// What happened: one of the initiative's typed facts. The stream an event belongs to follows
/// from its data ([`EventData::stream`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventData {
    MemberJoined {
        code: MemberCode,
        name: String,
        kind: MemberKind,
        role: MemberRole,
    },
    MemberRoleChanged {
        code: MemberCode,
        role: MemberRole,
    },
    MemberWithdrew {
        code: MemberCode,
        reason: String,
    },
    ProjectIdentified {
        project_id: ProjectId,
        title: String,
        pillar: Pillar,
        host: MemberCode,
        partners: Vec<MemberCode>,
        companies: Vec<String>,
        description: String,
    },
    ProjectStatusChanged {
        project_id: ProjectId,
        status: ProjectStatus,
        reason: String,
    },
    ExportRuleChanged {
        rule_id: RuleId,
        item: String,
        origin: Jurisdiction,
        destination: Jurisdiction,
        treatment: Treatment,
        /// Set only for [`Treatment::AllowedWithLevy`], and then required, in 0..=[`LEVY_BPS_MAX`].
        levy_bps: Option<u32>,
        effective_from: NaiveDate,
        authority: String,
    },
    CommitmentMade {
        commitment_id: CommitmentId,
        member: MemberCode,
        pillar: Pillar,
        description: String,
        project_id: Option<ProjectId>,
        due_on: NaiveDate,
    },
    CommitmentFulfilled {
        commitment_id: CommitmentId,
        evidence: String,
    },
    CommitmentWithdrawn {
        commitment_id: CommitmentId,
        reason: String,
    },
    SummitConvened {
        date: NaiveDate,
        host: MemberCode,
        chair: String,
        participants: Vec<MemberCode>,
        location: String,
    },
    /// The principal now also holds `grants` (a principal exists from its first grant).
    AccessGranted {
        principal: PrincipalName,
        grants: Vec<Grant>,
        reason: String,
    },
    /// The principal no longer holds `grants`.
    AccessRevoked {
        principal: PrincipalName,
        grants: Vec<Grant>,
        reason: String,
    },
    /// The principal may now authenticate with `credential` (its digest only: never a secret).
    CredentialIssued {
        principal: PrincipalName,
        credential: Credential,
    },
    /// `credential` no longer authenticates the principal.
    CredentialRevoked {
        principal: PrincipalName,
        credential: Credential,
        reason: String,
    },
}

/// Every event type's name in snake_case, as used on the command line and in `ReadAll` filters.
pub const EVENT_TYPE_NAMES: [&str; 14] = [
    "member_joined",
    "member_role_changed",
    "member_withdrew",
    "project_identified",
    "project_status_changed",
    "export_rule_changed",
    "commitment_made",
    "commitment_fulfilled",
    "commitment_withdrawn",
    "summit_convened",
    "access_granted",
    "access_revoked",
    "credential_issued",
    "credential_revoked",
];

/// The types of the access events: recorded only through the access service (an admin's
/// grants and credentials, or the offline bootstrap), never through `Append`.
pub const ACCESS_EVENT_TYPE_NAMES: [&str; 4] =
    ["access_granted", "access_revoked", "credential_issued", "credential_revoked"];

impl EventData {
    /// The stream this event belongs to.
    pub fn stream(&self) -> StreamName {
        StreamName::of(self.stream_key())
    }

    /// What the event's stream is named after.
    pub fn stream_key(&self) -> StreamKey<'_> {
        match self {
            Self::MemberJoined { code, .. }
            | Self::MemberRoleChanged { code, .. }
            | Self::MemberWithdrew { code, .. } => StreamKey::Member(code.as_str()),
            Self::ProjectIdentified { project_id, .. } | Self::ProjectStatusChanged { project_id, .. } => {
                StreamKey::Project(*project_id)
            }
            Self::ExportRuleChanged { rule_id, .. } => StreamKey::ExportRule(rule_id.as_str()),
            Self::CommitmentMade { commitment_id, .. }
            | Self::CommitmentFulfilled { commitment_id, .. }
            | Self::CommitmentWithdrawn { commitment_id, .. } => StreamKey::Commitment(*commitment_id),
            Self::SummitConvened { date, .. } => StreamKey::Summit(*date),
            Self::AccessGranted { principal, .. }
            | Self::AccessRevoked { principal, .. }
            | Self::CredentialIssued { principal, .. }
            | Self::CredentialRevoked { principal, .. } => StreamKey::Principal(principal.as_str()),
        }
    }

    /// The event's type name in snake_case (one of [`EVENT_TYPE_NAMES`]).
    pub fn type_name(&self) -> &'static str {
        EVENT_TYPE_NAMES[self.type_index()]
    }

    /// The index of this event's type in [`EVENT_TYPE_NAMES`].
    pub fn type_index(&self) -> usize {
        match self {
            Self::MemberJoined { .. } => 0,
            Self::MemberRoleChanged { .. } => 1,
            Self::MemberWithdrew { .. } => 2,
            Self::ProjectIdentified { .. } => 3,
            Self::ProjectStatusChanged { .. } => 4,
            Self::ExportRuleChanged { .. } => 5,
            Self::CommitmentMade { .. } => 6,
            Self::CommitmentFulfilled { .. } => 7,
            Self::CommitmentWithdrawn { .. } => 8,
            Self::SummitConvened { .. } => 9,
            Self::AccessGranted { .. } => 10,
            Self::AccessRevoked { .. } => 11,
            Self::CredentialIssued { .. } => 12,
            Self::CredentialRevoked { .. } => 13,
        }
    }

    /// Whether this is an access event (of a `principal-{name}` stream).
    pub fn is_access(&self) -> bool {
        self.type_index() >= 10
    }
}

/// Who recorded an event, on what authority, and how it relates to other events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Who recorded it (a person, an office, a system).
    pub actor: String,
    /// A citation: a URL or a document title.
    pub source: String,
    pub correlation_id: String,
    pub causation_id: String,
    /// Free labels, e.g. `illustrative = true`. Ordered, so that encoding is deterministic.
    pub labels: BTreeMap<String, String>,
    /// The recording principal's own Ed25519 signature of the event, when it signed it.
    pub signature: Option<EventSignature>,
}

/// A principal's Ed25519 signature of an event's signed bytes (`store::record::signed_message`:
/// stream, type and data, effective time, event id), with the public key that makes it: the
/// key must be one the principal registered (a [`super::CredentialKind::SigningKey`] credential,
/// the SHA-256 of these 32 bytes) when the event is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSignature {
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
}

impl EventSignature {
    /// Whether the signature is the key's over `message`. Strict (RFC 8032 with the checks of
    /// `verify_strict`: no small-order key, no non-canonical encoding), so that one message has
    /// no second valid signature under one key that a forger could swap in.
    pub fn verifies(&self, message: &[u8]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.public_key) else {
            return false;
        };
        key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&self.signature)).is_ok()
    }

    /// The credential under which the key is registered.
    pub fn credential(&self) -> super::Credential {
        super::Credential::of_signing_key(&self.public_key)
    }
}

/// An event as a client proposes it: what is compared when the same `event_id` is appended again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposedEvent {
    pub event_id: EventId,
    pub data: EventData,
    /// When it took effect in the world; `None` means "when it is recorded".
    pub effective_at: Option<DateTime<Utc>>,
    pub metadata: Metadata,
}

impl ProposedEvent {
    /// `data` under a fresh, time-ordered event id (so not idempotent across retries), effective
    /// when recorded, without metadata: the events the ledger itself proposes (access changes).
    pub fn new(data: EventData) -> Self {
        Self { event_id: EventId::generate(), data, effective_at: None, metadata: Metadata::default() }
    }
}

/// An event as the log holds it, with the place and time the ledger gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream: StreamName,
    pub revision: Revision,
    pub recorded_at: DateTime<Utc>,
    pub event: ProposedEvent,
}

impl RecordedEvent {
    /// When the event took effect: as given by the client, or else when it was recorded.
    pub fn effective_at(&self) -> DateTime<Utc> {
        self.event.effective_at.unwrap_or(self.recorded_at)
    }
}
