//! Reading the views: at the live position, at least at a position (read-your-writes), or as
//! of a past position or time. A view record newer than the position asked for is folded again
//! from its stream's events up to that position, with the same fold as the live views, so that
//! every answer reflects exactly one position of the log.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::projector::{Generation, ViewsSnapshot, load, read_checked};
use super::rebuild::{RebuildOutcome, RebuildProgress};
use super::{Ledger, LedgerError, hash_at};
use crate::audit::Hash;
use crate::domain::{Position, RecordedEvent, Revision, StreamName};
use crate::projection::codec::decode_record;
use crate::projection::{Category, Summary, ViewRecord};
use crate::store::StoreError;

/// Most view records one list page looks at, so that a page with a rare filter returns in
/// bounded time (with a token to continue).
pub const LIST_SCAN_MAX: usize = 10_000;

/// Which state of the log a query asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// What the views hold now.
    Latest,
    /// The views after the event at this position (0: before the first event).
    Position(Position),
    /// The views after the last event recorded at or before this time.
    Time(DateTime<Utc>),
}

/// A position of the views to read at, with the generation that holds them.
#[derive(Clone, Debug)]
pub struct ViewsAt {
    pub position: Position,
    generation: Arc<Generation>,
    /// The summary, when reading at the live position (otherwise it is added up).
    summary: Option<Arc<Summary>>,
}

/// A page of a list.
#[derive(Clone, Debug)]
pub struct ViewPage<T> {
    pub items: Vec<T>,
    /// The stream to continue after, if the list may go on.
    pub next_after: Option<String>,
}

/// What `GetProjectionStatus` reports.
#[derive(Clone, Debug)]
pub struct ProjectionStatus {
    pub position: Position,
    pub log_position: Position,
    pub generation: u32,
    pub digest: Hash,
    pub records: u64,
    pub rebuilding: Option<(DateTime<Utc>, RebuildProgress)>,
    pub last_rebuild: Option<RebuildOutcome>,
}

impl Ledger {
    /// The live views: their position, generation and summary.
    pub fn views_snapshot(&self) -> ViewsSnapshot {
        self.views.borrow().clone()
    }

    pub(super) fn views_generation(&self) -> u32 {
        self.views.borrow().generation.id
    }

    pub(super) fn views_at_position(&self, position: Position, generation: Arc<Generation>) -> ViewsAt {
        ViewsAt { position, generation, summary: None }
    }

    /// Resolves what a query reads: waits (at most `wait`) until the views reach `min_position`
    /// and the as-of position, and maps an as-of time to the position of the last event
    /// recorded by then. An as-of position past the durable log is `OutOfRange`; views that do
    /// not get there in time are `ViewsBehind`.
    pub async fn views_at(
        &self,
        as_of: AsOf,
        min_position: Option<Position>,
        wait: Duration,
    ) -> Result<ViewsAt, LedgerError> {
        let head = self.durable_head().position;
        let as_of_position = match as_of {
            AsOf::Latest => None,
            AsOf::Position(position) if position > head => {
                return Err(LedgerError::OutOfRange(format!(
                    "as_of_position {position} is past the log's last position {head}"
                )));
            }
            AsOf::Position(position) => Some(position),
            AsOf::Time(time) => Some(self.position_at_time(time, head)?),
        };
        let wanted = min_position.unwrap_or(Position(0)).max(as_of_position.unwrap_or(Position(0)));
        let mut views = self.views.clone();
        let reached = views.borrow().position;
        if reached < wanted {
            let waited = tokio::time::timeout(wait, views.wait_for(|v| v.position >= wanted)).await;
            if !matches!(waited, Ok(Ok(_))) {
                drop(waited);
                let reached = views.borrow().position;
                return Err(LedgerError::ViewsBehind { reached, wanted, waited: wait });
            }
        }
        let live = views.borrow().clone();
        Ok(match as_of_position {
            Some(position) if position < live.position => {
                ViewsAt { position, generation: live.generation, summary: None }
            }
            _ => ViewsAt { position: live.position, generation: live.generation, summary: Some(live.summary) },
        })
    }

    /// The position of the last event recorded at or before `time` (0 if none), found by
    /// bisection: record times never go backwards in log order.
    fn position_at_time(&self, time: DateTime<Utc>, head: Position) -> Result<Position, LedgerError> {
        let recorded_at = |position: u64| -> Result<DateTime<Utc>, LedgerError> {
            let record = self.guard(self.store.read_record(Position(position)))?;
            let record = self.guard(record.ok_or_else(|| {
                StoreError::corrupt(format!("position {position}"), "record missing below the log head")
            }))?;
            self.check_chain(std::slice::from_ref(&record))?;
            Ok(record.event.recorded_at)
        };
        // Invariant: recorded_at(low) <= time (position 0 counts as the beginning of time) and
        // recorded_at(high + 1) > time (past the head counts as the end of time).
        let (mut low, mut high) = (0u64, head.0);
        while low < high {
            let middle = low + (high - low).div_ceil(2);
            if recorded_at(middle)? <= time {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        Ok(Position(low))
    }

    /// One stream's view at `at`, or `None` if the stream had no event by then.
    pub fn view(&self, at: &ViewsAt, stream: &StreamName) -> Result<Option<ViewRecord>, LedgerError> {
        let record = self.guard(load(&self.store, at.generation.id, stream))?;
        self.view_as_of(at, record)
    }

    /// Brings a record read from the views to the position `at` asks about.
    fn view_as_of(&self, at: &ViewsAt, record: Option<ViewRecord>) -> Result<Option<ViewRecord>, LedgerError> {
        match record {
            None => Ok(None),
            Some(record) if record.first_position > at.position => Ok(None),
            Some(record) if record.last_position <= at.position => Ok(Some(record)),
            Some(record) => Ok(ViewRecord::fold_all(&self.stream_events(&record.stream, at.position)?)),
        }
    }

    /// A stream's events up to `until` (its history as known then), checked against the chain.
    pub fn stream_events(&self, stream: &StreamName, until: Position) -> Result<Vec<RecordedEvent>, LedgerError> {
        const PAGE: usize = 1024;
        let mut events = Vec::new();
        let mut from = Revision(0);
        loop {
            let page = self.guard(self.store.read_stream(stream, from, true, PAGE))?;
            let full = page.len() == PAGE;
            let records: Vec<_> = page.into_iter().take_while(|r| r.event.position <= until).collect();
            let complete = records.len() < PAGE || !full;
            self.check_chain(&records)?;
            if let Some(last) = records.last() {
                from = Revision(last.event.revision.0 + 1);
            }
            events.extend(records.into_iter().map(|r| r.event));
            if complete {
                return Ok(events);
            }
        }
    }

    /// A page of one category's views at `at`, in stream-name order, after the stream `after`:
    /// up to `limit` items that `select` makes of the records (`None`: left out), looking at no
    /// more than [`LIST_SCAN_MAX`] records.
    pub fn list_views<T>(
        &self,
        at: &ViewsAt,
        category: Category,
        after: Option<&str>,
        limit: usize,
        mut select: impl FnMut(ViewRecord) -> Result<Option<T>, LedgerError>,
    ) -> Result<ViewPage<T>, LedgerError> {
        let mut items = Vec::new();
        let mut scanned = 0;
        for entry in self.store.views(at.generation.id, category.prefix(), after) {
            let (stream, bytes) = self.guard(entry)?;
            scanned += 1;
            let record = self.guard(
                decode_record(&bytes).map_err(|e| StoreError::corrupt(format!("view of {stream}"), e.to_string())),
            )?;
            if let Some(record) = self.view_as_of(at, Some(record))?
                && let Some(item) = select(record)?
            {
                items.push(item);
            }
            if items.len() == limit || scanned == LIST_SCAN_MAX {
                // There may be more; an empty next page is the price of not looking ahead.
                return Ok(ViewPage { items, next_after: Some(stream) });
            }
        }
        Ok(ViewPage { items, next_after: None })
    }

    /// The summary at `at` (with the hash of its record set, see [`Summary::digest`]): the
    /// live one; or, for a past position of the live generation not too far back, the live one
    /// walked back over the streams changed since (O(the events since), see
    /// [`Self::views_summary_walked_back`]); or else added up from every record as of `at`.
    pub fn views_summary(&self, at: &ViewsAt) -> Result<Summary, LedgerError> {
        if let Some(summary) = &at.summary {
            return Ok((**summary).clone());
        }
        if let Some(summary) = self.views_summary_walked_back(at)? {
            return Ok(summary);
        }
        self.views_summary_added_up(at)
    }

    /// The summary at `at` added up from every record as of `at`: O(all views). What the
    /// summaries moved record by record are checked against in tests.
    pub fn views_summary_added_up(&self, at: &ViewsAt) -> Result<Summary, LedgerError> {
        let mut summary = Summary::default();
        self.for_each_view(at, |record| summary.add(record))?;
        Ok(summary)
    }

    /// The summary at a past position `at` of the live generation, from the live summary: each
    /// stream with an event after `at` has its record at the live position taken out and its
    /// record as of `at` put back. `None` when `at` is not of the live generation or is further
    /// back than the live summary has records (then adding up every record costs less).
    pub fn views_summary_walked_back(&self, at: &ViewsAt) -> Result<Option<Summary>, LedgerError> {
        let live = self.views_snapshot();
        let back = live.position.0.saturating_sub(at.position.0);
        if live.generation.id != at.generation.id
            || at.position > live.position
            || back > live.summary.records.records()
        {
            return Ok(None);
        }
        let mut changed = std::collections::BTreeSet::new();
        let mut chain =
            crate::audit::ChainVerifier::after(at.position.0, self.guard(hash_at(&self.store, at.position))?);
        self.guard(read_checked(&self.store, &mut chain, at.position.0 + 1, live.position.0, |event| {
            changed.insert(event.stream.clone());
            Ok(())
        }))?;
        let now = ViewsAt { position: live.position, generation: live.generation.clone(), summary: None };
        let mut summary = (*live.summary).clone();
        for stream in changed {
            let stored = self.guard(load(&self.store, at.generation.id, &stream))?;
            if let Some(record) = self.view_as_of(&now, stored.clone())? {
                summary.remove(&record);
            }
            if let Some(record) = self.view_as_of(at, stored)? {
                summary.add(&record);
            }
        }
        Ok(Some(summary))
    }

    /// The view digest at `at` and how many records it covers.
    pub fn views_digest(&self, at: &ViewsAt) -> Result<(Hash, u64), LedgerError> {
        let summary = self.views_summary(at)?;
        Ok((summary.digest(at.position), summary.records.records()))
    }

    /// Every view record as of `at`, in stream-name order.
    pub(super) fn for_each_view(&self, at: &ViewsAt, mut visit: impl FnMut(&ViewRecord)) -> Result<(), LedgerError> {
        for entry in self.store.views(at.generation.id, "", None) {
            let (stream, bytes) = self.guard(entry)?;
            let record = self.guard(
                decode_record(&bytes).map_err(|e| StoreError::corrupt(format!("view of {stream}"), e.to_string())),
            )?;
            if let Some(record) = self.view_as_of(at, Some(record))? {
                visit(&record);
            }
        }
        Ok(())
    }

    /// Where the views stand: position, lag, digest, rebuilds.
    pub fn projection_status(&self) -> Result<ProjectionStatus, LedgerError> {
        let live = self.views_snapshot();
        let log_position = self.durable_head().position;
        let (digest, records) = (live.summary.digest(live.position), live.summary.records.records());
        let rebuild = self.rebuild.lock().expect("rebuild lock");
        Ok(ProjectionStatus {
            position: live.position,
            log_position,
            generation: live.generation.id,
            digest,
            records,
            rebuilding: rebuild.running,
            last_rebuild: rebuild.last.clone(),
        })
    }
}
