//! Per-entity state: what one stream's events fold into (see [`super::evolve`]), and what
//! [`super::decide`] judges a new event against.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use super::access::{Credential, Grant, PrincipalName};
use super::event::{MemberKind, MemberRole, Pillar, ProjectStatus, Treatment};
use super::ids::{CommitmentId, Jurisdiction, MemberCode, ProjectId, RuleId, StreamName};

/// A participant (`member-{code}` stream) as its events describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    pub code: MemberCode,
    pub name: String,
    pub kind: MemberKind,
    /// The current role; always the last entry of `role_history`.
    pub role: MemberRole,
    /// Once true, stays true: a withdrawn participant cannot rejoin under the same code.
    pub withdrawn: bool,
    /// Every role in order, starting with the role it joined with.
    pub role_history: Vec<MemberRole>,
}

/// A project (`project-{id}` stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectState {
    pub project_id: ProjectId,
    pub title: String,
    pub pillar: Pillar,
    pub host: MemberCode,
    pub partners: Vec<MemberCode>,
    pub companies: Vec<String>,
    pub description: String,
    /// The current status; always the last entry of `status_history`.
    pub status: ProjectStatus,
    /// Every status in order, starting with [`ProjectStatus::Identified`].
    pub status_history: Vec<ProjectStatus>,
}

/// An export rule (`export-rule-{rule_id}` stream): the terms of its latest change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRuleState {
    pub rule_id: RuleId,
    pub item: String,
    pub origin: Jurisdiction,
    pub destination: Jurisdiction,
    pub treatment: Treatment,
    pub levy_bps: Option<u32>,
    pub effective_from: NaiveDate,
    pub authority: String,
    /// How many `ExportRuleChanged` events the rule has had (at least 1).
    pub changes: u64,
}

/// Where a commitment stands. A commitment leaves `Open` once, and for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommitmentStatus {
    Open,
    Fulfilled,
    Withdrawn,
}

/// A commitment (`commitment-{id}` stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitmentState {
    pub commitment_id: CommitmentId,
    pub member: MemberCode,
    pub pillar: Pillar,
    pub description: String,
    pub project_id: Option<ProjectId>,
    pub due_on: NaiveDate,
    pub status: CommitmentStatus,
    /// Why the commitment is closed: the evidence when `Fulfilled`, the reason when `Withdrawn`;
    /// `None` while `Open`.
    pub resolution: Option<String>,
}

/// A summit (`summit-{date}` stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummitState {
    pub date: NaiveDate,
    pub host: MemberCode,
    pub chair: String,
    pub participants: Vec<MemberCode>,
    pub location: String,
}

/// The state of one stream. `Empty` is a stream with no events yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EntityState {
    #[default]
    Empty,
    Member(MemberState),
    Project(ProjectState),
    ExportRule(ExportRuleState),
    Commitment(CommitmentState),
    Summit(SummitState),
    Principal(PrincipalState),
}

/// A principal (`principal-{name}` stream): what it holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalState {
    pub name: PrincipalName,
    pub grants: BTreeSet<Grant>,
    pub credentials: BTreeSet<Credential>,
}

impl PrincipalState {
    /// Whether the principal holds a credential that lets it in (a token or a certificate; a
    /// signing key does not).
    pub fn can_authenticate(&self) -> bool {
        self.credentials.iter().any(|c| c.kind.authenticates())
    }
}

impl EntityState {
    /// The stream this state was folded from; `None` for `Empty`, which belongs to any stream.
    pub fn stream(&self) -> Option<StreamName> {
        match self {
            Self::Empty => None,
            Self::Member(member) => Some(StreamName::member(&member.code)),
            Self::Project(project) => Some(StreamName::project(&project.project_id)),
            Self::ExportRule(rule) => Some(StreamName::export_rule(&rule.rule_id)),
            Self::Commitment(commitment) => Some(StreamName::commitment(&commitment.commitment_id)),
            Self::Summit(summit) => Some(StreamName::summit(&summit.date)),
            Self::Principal(principal) => Some(StreamName::principal(&principal.name)),
        }
    }
}
