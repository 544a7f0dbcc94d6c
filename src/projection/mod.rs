//! The read side's current-state views: one [`ViewRecord`] per stream (its state folded with
//! `domain::evolve`, plus where and when its events were recorded), and a [`Summary`] of
//! counts that also carries the hash of the set of records the view digest is made of
//! ([`set_hash`]). Folds and bytes only: the ledger's projector decides when to persist them
//! and the store where. No sled, no I/O.
//!
//! There is one fold: [`ViewRecord::fold`] applies an event with `domain::evolve`, and every
//! view — live, rebuilt, or "as of" a past position — is made by it.

pub mod codec;
pub mod set_hash;
mod summary;

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::{EntityState, ExportRuleState, Position, RecordedEvent, Revision, StreamName, evolve};

pub use summary::{COMMITMENT_STATUS_NAMES, PILLAR_NAMES, PROJECT_STATUS_NAMES, ROLE_NAMES, Summary, TREATMENT_NAMES};

/// The kinds of entity, one per stream category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    Member,
    Project,
    ExportRule,
    Commitment,
    Summit,
}

impl Category {
    /// The stream-name prefix of the category; views of one category are contiguous in key order.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Member => "member-",
            Self::Project => "project-",
            Self::ExportRule => "export-rule-",
            Self::Commitment => "commitment-",
            Self::Summit => "summit-",
        }
    }
}

/// The view of one stream: its state (the fold of its events with `domain::evolve`) and where
/// and when those events were recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewRecord {
    pub stream: StreamName,
    /// Never `Empty`: a record exists once its stream has an event.
    pub state: EntityState,
    /// The revision of the stream's last event.
    pub revision: Revision,
    pub first_position: Position,
    pub last_position: Position,
    /// When the first and the last event were recorded.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the first and the last event took effect in the world.
    pub effective_at: DateTime<Utc>,
    pub last_effective_at: DateTime<Utc>,
    /// Who recorded the first and the last event (their `actor`: the authenticated principal
    /// once principals exist).
    pub created_by: String,
    pub updated_by: String,
}

impl ViewRecord {
    /// Applies one event of the record's stream (or the stream's first event to `None`).
    /// `evolve` never fails; an event that does not change the state (which `decide` never lets
    /// into the log) still moves the record's position, so that the record says which events it
    /// has seen. Access events (of `principal-{name}` streams) make no record: the views hold
    /// the initiative's entities, and the ledger's access table holds the principals.
    pub fn fold(previous: Option<ViewRecord>, event: &RecordedEvent) -> Option<ViewRecord> {
        if event.event.data.is_access() {
            return previous;
        }
        match previous {
            None => {
                let state = evolve(EntityState::Empty, &event.event.data);
                (state != EntityState::Empty).then(|| ViewRecord {
                    stream: event.stream.clone(),
                    state,
                    revision: event.revision,
                    first_position: event.position,
                    last_position: event.position,
                    created_at: event.recorded_at,
                    updated_at: event.recorded_at,
                    effective_at: event.effective_at(),
                    last_effective_at: event.effective_at(),
                    created_by: event.event.metadata.actor.clone(),
                    updated_by: event.event.metadata.actor.clone(),
                })
            }
            Some(mut record) => {
                record.state = evolve(std::mem::take(&mut record.state), &event.event.data);
                record.revision = event.revision;
                record.last_position = event.position;
                record.updated_at = event.recorded_at;
                record.last_effective_at = event.effective_at();
                record.updated_by.clone_from(&event.event.metadata.actor);
                Some(record)
            }
        }
    }

    /// The fold of a stream's events, in order.
    pub fn fold_all<'e>(events: impl IntoIterator<Item = &'e RecordedEvent>) -> Option<ViewRecord> {
        events.into_iter().fold(None, ViewRecord::fold)
    }
}

/// One step of an entity's history: the record after one of its events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub event_type: &'static str,
    pub record: ViewRecord,
}

/// The record after each event of a stream: role histories, status histories and export-rule
/// timelines with their positions and times, made by the same fold as the views.
pub fn versions(events: &[RecordedEvent]) -> Vec<Version> {
    let mut record = None;
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        record = ViewRecord::fold(record, event);
        if let Some(record) = &record {
            out.push(Version { event_type: event.event.data.type_name(), record: record.clone() });
        }
    }
    out
}

/// The history of an entity with one event (revision 0), which its record alone holds: no
/// need to read its stream. `None` when it has more.
pub fn sole_version(record: &ViewRecord) -> Option<Version> {
    if record.revision.0 != 0 {
        return None;
    }
    // Each kind of entity has one event that starts its stream.
    let event_type = match record.state {
        EntityState::Empty | EntityState::Principal(_) => return None,
        EntityState::Member(_) => "member_joined",
        EntityState::Project(_) => "project_identified",
        EntityState::ExportRule(_) => "export_rule_changed",
        EntityState::Commitment(_) => "commitment_made",
        EntityState::Summit(_) => "summit_convened",
    };
    Some(Version { event_type, record: record.clone() })
}

/// The terms of an export rule in force on `date`, as the given timeline (the versions of its
/// stream) knows them: the change with the latest `effective_from` on or before `date`; of two
/// changes effective the same day, the one recorded later. `None` if no change is in force yet.
pub fn in_force_on(timeline: &[Version], date: NaiveDate) -> Option<&Version> {
    let terms = |v: &Version| match &v.record.state {
        EntityState::ExportRule(rule) => Some(rule.effective_from),
        _ => None,
    };
    timeline
        .iter()
        .filter(|v| terms(v).is_some_and(|from| from <= date))
        // `max_by_key` keeps the last of equal keys: the later record wins a tie.
        .max_by_key(|v| terms(v))
}

/// Whether the current terms of a rule answer `in_force_on(date)` without its timeline: a rule
/// changed once, in force from on or before `date`.
pub fn current_in_force(rule: &ExportRuleState, date: NaiveDate) -> Option<bool> {
    (rule.changes == 1).then_some(rule.effective_from <= date)
}

/// The effect of a run of events on the views: each touched stream's record before the run and
/// after it. What the projector writes in one batch, and how the summary moves.
#[derive(Debug, Default)]
pub struct ViewBatch {
    touched: HashMap<StreamName, (Option<ViewRecord>, Option<ViewRecord>)>,
}

impl ViewBatch {
    /// Applies `event`, loading its stream's record with `load` the first time the batch sees
    /// the stream — unless the event is its stream's first (revision 0), which has no record
    /// before it: most streams (each commitment, each project) are new, and a look-up that
    /// finds nothing costs as much as one that finds something.
    pub fn apply<E>(
        &mut self,
        event: &RecordedEvent,
        load: impl FnOnce(&StreamName) -> Result<Option<ViewRecord>, E>,
    ) -> Result<(), E> {
        let entry = match self.touched.entry(event.stream.clone()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let before = if event.revision.0 == 0 { None } else { load(&event.stream)? };
                entry.insert((before.clone(), before))
            }
        };
        entry.1 = ViewRecord::fold(entry.1.take(), event);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.touched.is_empty()
    }

    /// The records to write (in stream order), each with its canonical bytes, with `summary`
    /// moved from before to after. Each record after the batch is encoded once, for both the
    /// summary's set hash and the write.
    pub fn finish(self, summary: &mut Summary) -> Vec<EncodedRecord> {
        let mut records: Vec<EncodedRecord> = self
            .touched
            .into_values()
            .filter_map(|(before, after)| {
                if let Some(before) = &before {
                    summary.remove(before);
                }
                let after = after?;
                let bytes = codec::encode_record(&after);
                summary.add_encoded(&after, &bytes);
                Some(EncodedRecord { record: after, bytes })
            })
            .collect();
        records.sort_by(|a, b| a.record.stream.cmp(&b.record.stream));
        records
    }
}

/// A view record with its canonical bytes (`codec::encode_record`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedRecord {
    pub record: ViewRecord,
    pub bytes: Vec<u8>,
}

#[cfg(test)]
mod tests;
