//! Views (projection) → wire.

use chrono::{DateTime, Utc};

use super::convert::{
    format_date, member_kind_pb, member_role_pb, pillar_pb, project_status_pb, to_timestamp, treatment_pb,
};
use crate::domain::{CommitmentStatus, EntityState, ExportRuleState};
use crate::projection::{
    COMMITMENT_STATUS_NAMES, PILLAR_NAMES, PROJECT_STATUS_NAMES, ROLE_NAMES, Summary, TREATMENT_NAMES, Version,
    ViewRecord,
};
use crate::proto::v1 as pb;

/// Most history steps one answer carries (the latest); a stream changed more often than this is
/// read in full with `ReadStream`.
pub const HISTORY_MAX: usize = 1000;

/// The latest [`HISTORY_MAX`] versions, and how many earlier ones are left out.
fn latest(versions: &[Version]) -> (&[Version], u64) {
    let omitted = versions.len().saturating_sub(HISTORY_MAX);
    (&versions[omitted..], omitted as u64)
}

fn time(t: &DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(to_timestamp(t))
}

pub fn provenance(record: &ViewRecord) -> pb::Provenance {
    pb::Provenance {
        stream: record.stream.to_string(),
        revision: record.revision.0,
        first_position: record.first_position.0,
        last_position: record.last_position.0,
        created_time: time(&record.created_at),
        updated_time: time(&record.updated_at),
        effective_time: time(&record.effective_at),
        last_effective_time: time(&record.last_effective_at),
        created_by: record.created_by.clone(),
        updated_by: record.updated_by.clone(),
    }
}

/// The step of a history that a version's event made.
pub fn change(version: &Version) -> pb::Change {
    let record = &version.record;
    pb::Change {
        position: record.last_position.0,
        revision: record.revision.0,
        event_type: version.event_type.to_owned(),
        record_time: time(&record.updated_at),
        effective_time: time(&record.last_effective_at),
        actor: record.updated_by.clone(),
    }
}

/// A member; `versions` (its history) fills `changes` when given.
pub fn member(record: &ViewRecord, versions: &[Version]) -> Option<pb::Member> {
    let EntityState::Member(m) = &record.state else { return None };
    let (versions, changes_omitted) = latest(versions);
    Some(pb::Member {
        code: m.code.to_string(),
        name: m.name.clone(),
        kind: member_kind_pb(m.kind),
        role: member_role_pb(m.role),
        withdrawn: m.withdrawn,
        joined_time: time(&record.effective_at),
        // Nothing follows a withdrawal, so it is the member's last event.
        withdrawn_time: if m.withdrawn { time(&record.last_effective_at) } else { None },
        role_history: m.role_history.iter().map(|r| member_role_pb(*r)).collect(),
        changes: versions.iter().map(change).collect(),
        provenance: Some(provenance(record)),
        changes_omitted,
    })
}

pub fn project(record: &ViewRecord, versions: &[Version]) -> Option<pb::Project> {
    let EntityState::Project(p) = &record.state else { return None };
    let (versions, changes_omitted) = latest(versions);
    Some(pb::Project {
        project_id: p.project_id.to_string(),
        title: p.title.clone(),
        pillar: pillar_pb(p.pillar),
        host: p.host.to_string(),
        partners: p.partners.iter().map(ToString::to_string).collect(),
        companies: p.companies.clone(),
        description: p.description.clone(),
        status: project_status_pb(p.status),
        status_history: p.status_history.iter().map(|s| project_status_pb(*s)).collect(),
        changes: versions.iter().map(change).collect(),
        provenance: Some(provenance(record)),
        changes_omitted,
    })
}

pub fn export_rule_terms(rule: &ExportRuleState) -> pb::ExportRuleTerms {
    pb::ExportRuleTerms {
        item: rule.item.clone(),
        origin: rule.origin.to_string(),
        destination: rule.destination.to_string(),
        treatment: treatment_pb(rule.treatment),
        levy_bps: rule.levy_bps,
        effective_from: format_date(&rule.effective_from),
        authority: rule.authority.clone(),
    }
}

/// An export rule: its record, the terms to show (those in force on a date, or the latest),
/// and its timeline when given.
pub fn export_rule(record: &ViewRecord, terms: &ExportRuleState, timeline: &[Version]) -> Option<pb::ExportRule> {
    let EntityState::ExportRule(rule) = &record.state else { return None };
    let (timeline, timeline_omitted) = latest(timeline);
    Some(pb::ExportRule {
        rule_id: rule.rule_id.to_string(),
        terms: Some(export_rule_terms(terms)),
        changes: rule.changes,
        timeline: timeline
            .iter()
            .filter_map(|version| match &version.record.state {
                EntityState::ExportRule(terms) => {
                    Some(pb::ExportRuleChange { terms: Some(export_rule_terms(terms)), change: Some(change(version)) })
                }
                _ => None,
            })
            .collect(),
        provenance: Some(provenance(record)),
        timeline_omitted,
    })
}

pub fn commitment_status_pb(status: CommitmentStatus) -> i32 {
    match status {
        CommitmentStatus::Open => pb::CommitmentStatus::Open as i32,
        CommitmentStatus::Fulfilled => pb::CommitmentStatus::Fulfilled as i32,
        CommitmentStatus::Withdrawn => pb::CommitmentStatus::Withdrawn as i32,
    }
}

pub fn commitment(record: &ViewRecord, on: chrono::NaiveDate) -> Option<pb::Commitment> {
    let EntityState::Commitment(c) = &record.state else { return None };
    Some(pb::Commitment {
        commitment_id: c.commitment_id.to_string(),
        member: c.member.to_string(),
        pillar: pillar_pb(c.pillar),
        description: c.description.clone(),
        project_id: c.project_id.map(|p| p.to_string()).unwrap_or_default(),
        due_on: format_date(&c.due_on),
        status: commitment_status_pb(c.status),
        overdue: c.status == CommitmentStatus::Open && c.due_on < on,
        resolution: c.resolution.clone().unwrap_or_default(),
        provenance: Some(provenance(record)),
    })
}

pub fn summit(record: &ViewRecord) -> Option<pb::Summit> {
    let EntityState::Summit(s) = &record.state else { return None };
    Some(pb::Summit {
        date: format_date(&s.date),
        host: s.host.to_string(),
        chair: s.chair.clone(),
        participants: s.participants.iter().map(ToString::to_string).collect(),
        location: s.location.clone(),
        provenance: Some(provenance(record)),
    })
}

fn counts(names: &[&str], values: &[u64]) -> Vec<pb::Count> {
    names.iter().zip(values).map(|(key, count)| pb::Count { key: (*key).to_owned(), count: *count }).collect()
}

pub fn summary(summary: &Summary, on: chrono::NaiveDate, position: u64) -> pb::GetSummaryResponse {
    pb::GetSummaryResponse {
        members_by_role: counts(&ROLE_NAMES, &summary.members_by_role),
        members_withdrawn: summary.members_withdrawn,
        projects_by_pillar: counts(&PILLAR_NAMES, &summary.projects_by_pillar),
        projects_by_status: counts(&PROJECT_STATUS_NAMES, &summary.projects_by_status),
        commitments_by_status: counts(&COMMITMENT_STATUS_NAMES, &summary.commitments_by_status),
        commitments_by_pillar: counts(&PILLAR_NAMES, &summary.commitments_by_pillar),
        commitments_overdue: summary.overdue_on(on),
        export_rules_by_treatment: counts(&TREATMENT_NAMES, &summary.export_rules_by_treatment),
        summits: summary.summits,
        position,
    }
}
