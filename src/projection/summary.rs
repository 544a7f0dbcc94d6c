//! Counts over the views, moved record by record as the views change (so the live summary costs
//! nothing to read) or added up from the records at a past position.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::ViewRecord;
use super::codec::encode_record;
use super::set_hash::RecordSetHash;
use crate::domain::{CommitmentStatus, EntityState, MemberRole, Pillar, ProjectStatus, Treatment};

/// Counts per role, pillar, status and treatment. Withdrawn participants are counted apart
/// from the roles, which count those still taking part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub members_by_role: [u64; 2],
    pub members_withdrawn: u64,
    pub projects_by_pillar: [u64; 5],
    pub projects_by_status: [u64; 5],
    pub commitments_by_status: [u64; 3],
    pub commitments_by_pillar: [u64; 5],
    /// Open commitments per due date: what "overdue on a date" is counted from.
    pub open_commitments_due: BTreeMap<NaiveDate, u64>,
    pub export_rules_by_treatment: [u64; 4],
    pub summits: u64,
    /// The hash of the set of records counted, which the view digest is made from.
    pub records: RecordSetHash,
}

/// The names of the counted values, in index order (lower snake_case, as on the wire).
pub const ROLE_NAMES: [&str; 2] = ["member", "guest"];
pub const PILLAR_NAMES: [&str; 5] = ["semiconductors", "critical_minerals", "energy", "ai_compute", "networks"];
pub const PROJECT_STATUS_NAMES: [&str; 5] = ["identified", "approved", "under_way", "completed", "cancelled"];
pub const COMMITMENT_STATUS_NAMES: [&str; 3] = ["open", "fulfilled", "withdrawn"];
pub const TREATMENT_NAMES: [&str; 4] = ["allowed", "allowed_with_levy", "license_required", "prohibited"];

pub fn role_index(role: MemberRole) -> usize {
    match role {
        MemberRole::Member => 0,
        MemberRole::Guest => 1,
    }
}

pub fn pillar_index(pillar: Pillar) -> usize {
    match pillar {
        Pillar::Semiconductors => 0,
        Pillar::CriticalMinerals => 1,
        Pillar::Energy => 2,
        Pillar::AiCompute => 3,
        Pillar::Networks => 4,
    }
}

pub fn project_status_index(status: ProjectStatus) -> usize {
    match status {
        ProjectStatus::Identified => 0,
        ProjectStatus::Approved => 1,
        ProjectStatus::UnderWay => 2,
        ProjectStatus::Completed => 3,
        ProjectStatus::Cancelled => 4,
    }
}

pub fn commitment_status_index(status: CommitmentStatus) -> usize {
    match status {
        CommitmentStatus::Open => 0,
        CommitmentStatus::Fulfilled => 1,
        CommitmentStatus::Withdrawn => 2,
    }
}

pub fn treatment_index(treatment: Treatment) -> usize {
    match treatment {
        Treatment::Allowed => 0,
        Treatment::AllowedWithLevy => 1,
        Treatment::LicenseRequired => 2,
        Treatment::Prohibited => 3,
    }
}

impl Summary {
    /// The summary of a set of records.
    pub fn of<'r>(records: impl IntoIterator<Item = &'r ViewRecord>) -> Self {
        let mut summary = Self::default();
        for record in records {
            summary.add(record);
        }
        summary
    }

    pub fn add(&mut self, record: &ViewRecord) {
        self.add_encoded(record, &encode_record(record));
    }

    pub fn remove(&mut self, record: &ViewRecord) {
        self.count(record, -1);
        self.records.remove(&encode_record(record));
    }

    /// [`Summary::add`] of a record whose canonical bytes (`encode_record`) are at hand.
    pub fn add_encoded(&mut self, record: &ViewRecord, bytes: &[u8]) {
        self.count(record, 1);
        self.records.add(bytes);
    }

    /// The view digest of the counted records at `position` (see [`RecordSetHash::digest`]).
    pub fn digest(&self, position: crate::domain::Position) -> [u8; 32] {
        self.records.digest(position)
    }

    /// Open commitments due before `date`.
    pub fn overdue_on(&self, date: NaiveDate) -> u64 {
        self.open_commitments_due.range(..date).map(|(_, count)| count).sum()
    }

    fn count(&mut self, record: &ViewRecord, delta: i64) {
        let step = |counter: &mut u64| {
            *counter = counter.checked_add_signed(delta).expect("a summary count never goes below zero");
        };
        match &record.state {
            EntityState::Empty | EntityState::Principal(_) => {}
            EntityState::Member(member) if member.withdrawn => step(&mut self.members_withdrawn),
            EntityState::Member(member) => step(&mut self.members_by_role[role_index(member.role)]),
            EntityState::Project(project) => {
                step(&mut self.projects_by_pillar[pillar_index(project.pillar)]);
                step(&mut self.projects_by_status[project_status_index(project.status)]);
            }
            EntityState::ExportRule(rule) => step(&mut self.export_rules_by_treatment[treatment_index(rule.treatment)]),
            EntityState::Commitment(commitment) => {
                step(&mut self.commitments_by_status[commitment_status_index(commitment.status)]);
                step(&mut self.commitments_by_pillar[pillar_index(commitment.pillar)]);
                if commitment.status == CommitmentStatus::Open {
                    let due = self.open_commitments_due.entry(commitment.due_on).or_default();
                    step(due);
                    if *due == 0 {
                        self.open_commitments_due.remove(&commitment.due_on);
                    }
                }
            }
            EntityState::Summit(_) => step(&mut self.summits),
        }
    }
}
