//! The read side: streams, the whole log, single events and subscriptions. Every read is
//! capped at the durable head, so nothing is shown before it is acknowledgeable.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Ledger, LedgerError};
use crate::audit;
use crate::domain::{EventId, Position, RecordedEvent, Revision, StreamName};
use crate::store::{StoreError, StoredRecord};

/// Most events a subscriber may have in flight before its reader waits for it. A slow
/// subscriber holds at most this many; the rest stay on disk until it asks for them.
pub const SUBSCRIPTION_BUFFER_MAX: usize = 256;
/// Most log records one filtered `ReadAll` page scans, so that a page with a rare filter
/// returns in bounded time (with a token to continue).
pub const READ_ALL_SCAN_MAX: usize = 10_000;

/// Which events a log read or a subscription delivers: all, or those whose stream starts with
/// one of `stream_prefixes` and whose type is one of `event_types` (an empty list admits all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventFilter {
    pub stream_prefixes: Vec<String>,
    pub event_types: Vec<String>,
}

impl EventFilter {
    pub fn admits(&self, event: &RecordedEvent) -> bool {
        (self.stream_prefixes.is_empty()
            || self.stream_prefixes.iter().any(|p| event.stream.as_str().starts_with(p.as_str())))
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event.event.data.type_name()))
    }
}

/// A page of one stream.
#[derive(Clone, Debug)]
pub struct ReadStreamPage {
    pub events: Vec<RecordedEvent>,
    pub stream_revision: Revision,
    pub next_revision: Option<Revision>,
}

/// A page of the log.
#[derive(Clone, Debug)]
pub struct ReadAllPage {
    pub events: Vec<RecordedEvent>,
    /// Where the next page starts; `None` at the end of the log in the read's direction.
    pub next_position: Option<Position>,
    pub head_position: Position,
}

/// What a subscription delivers.
#[derive(Clone, Debug)]
pub enum SubscriptionItem {
    Event(Box<RecordedEvent>),
    /// The catch-up has read the log up to this position (the head it reached, at least every
    /// position delivered before) and delivered every matching event at or below it.
    CaughtUp(Position),
}

impl Ledger {
    /// Reads up to `limit` events of `stream` from `from` (default: its start, or its end when
    /// reading backwards). `NotFound` if the stream has no event.
    pub fn read_stream(
        &self,
        stream: &StreamName,
        from: Option<Revision>,
        forward: bool,
        limit: usize,
    ) -> Result<ReadStreamPage, LedgerError> {
        let head = self.durable_head().position;
        let durable = |records: Vec<StoredRecord>| -> Result<Vec<RecordedEvent>, LedgerError> {
            let records: Vec<_> = records.into_iter().filter(|r| r.event.position <= head).collect();
            self.check_chain(&records)?;
            Ok(records.into_iter().map(|r| r.event).collect())
        };
        let Some(stream_revision) = self.durable_stream_revision(stream, head)? else {
            return Err(LedgerError::NotFound(format!("stream {stream} has no event")));
        };
        let from = from.unwrap_or(if forward { Revision(0) } else { stream_revision });
        let mut events = if forward && from > stream_revision {
            Vec::new()
        } else {
            durable(self.guard(self.store.read_stream(stream, from.min(stream_revision), forward, limit))?)?
        };
        events.truncate(limit);
        let next_revision = match events.last() {
            Some(last) if forward && last.revision < stream_revision && events.len() == limit => {
                Some(Revision(last.revision.0 + 1))
            }
            Some(last) if !forward && last.revision.0 > 0 && events.len() == limit => {
                Some(Revision(last.revision.0 - 1))
            }
            _ => None,
        };
        Ok(ReadStreamPage { events, stream_revision, next_revision })
    }

    /// Reads a page of the log from `from` (inclusive), scanning at most [`READ_ALL_SCAN_MAX`]
    /// records and returning at most `limit` that pass `filter`.
    pub fn read_all(
        &self,
        from: Position,
        forward: bool,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<ReadAllPage, LedgerError> {
        let head = self.durable_head().position;
        let start = if forward { from.max(Position(1)) } else { from.min(head) };
        let mut events = Vec::new();
        let mut next_position = None;
        if (forward && start <= head) || (!forward && start.0 >= 1) {
            let mut scanned = Vec::new();
            let mut admitted = 0;
            for record in self.store.scan_log(start, forward) {
                let record = self.guard(record)?;
                let position = record.event.position;
                if position > head {
                    break;
                }
                admitted += usize::from(filter.admits(&record.event));
                scanned.push(record);
                let more = if forward { position < head } else { position.0 > 1 };
                if (admitted == limit || scanned.len() == READ_ALL_SCAN_MAX) && more {
                    next_position = Some(Position(if forward { position.0 + 1 } else { position.0 - 1 }));
                    break;
                }
            }
            // The engine's scan must yield every position from the start, in order, up to the
            // head or the page's end: a scan that skips or stops short (a damaged tree can make
            // it do either without an error) would otherwise be served as a shorter log.
            let step = |p: Position| if forward { Position(p.0 + 1) } else { Position(p.0 - 1) };
            let end = match next_position {
                Some(next) => next,
                None if forward => Position(head.0 + 1),
                None => Position(0),
            };
            let mut expected = start;
            for record in &scanned {
                if record.event.position != expected {
                    break;
                }
                expected = step(expected);
            }
            if expected != end {
                return self.guard(Err(StoreError::corrupt(
                    format!("position {expected}"),
                    "record missing below the log head: the storage engine's scan skipped or stopped short",
                )));
            }
            // Every scanned record is checked, not only those served: the scan is in order, so
            // the chain costs one hash per record and one look-up before the first.
            self.check_chain(&scanned)?;
            events.extend(scanned.into_iter().map(|r| r.event).filter(|e| filter.admits(e)));
        }
        Ok(ReadAllPage { events, next_position, head_position: head })
    }

    /// The records from `from` to `to` (inclusive; `to` is capped at the durable head), at most
    /// `limit`, as stored: body bytes and chain hash, what bundles and backups copy. Each is
    /// checked against the chain, and a position the engine's scan skips is DATA_LOSS, as in
    /// [`Ledger::read_all`].
    pub fn read_records(&self, from: Position, to: Position, limit: usize) -> Result<Vec<StoredRecord>, LedgerError> {
        let from = from.max(Position(1));
        let to = to.min(self.durable_head().position);
        if from > to || limit == 0 {
            return Ok(Vec::new());
        }
        let end = Position(to.0.min(from.0.saturating_add(limit as u64 - 1)));
        let mut records: Vec<StoredRecord> = Vec::new();
        for record in self.store.scan_log(from, true) {
            let record = self.guard(record)?;
            let position = record.event.position;
            if position > end || position.0 != from.0 + records.len() as u64 {
                break;
            }
            records.push(record);
            if position == end {
                break;
            }
        }
        let reached = from.0 + records.len() as u64;
        if reached != end.0 + 1 {
            return self.guard(Err(StoreError::corrupt(
                format!("position {reached}"),
                "record missing below the log head: the storage engine's scan skipped or stopped short",
            )));
        }
        self.check_chain(&records)?;
        Ok(records)
    }

    /// The chain hash of the record at `position` (the genesis hash at 0), at most the durable
    /// head (else OutOfRange).
    pub fn chain_hash_at(&self, position: Position) -> Result<audit::Hash, LedgerError> {
        let head = self.durable_head().position;
        if position > head {
            return Err(LedgerError::OutOfRange(format!("position {position} is past the log's last position {head}")));
        }
        self.guard(super::hash_at(&self.store, position))
    }

    /// One committed event by id.
    pub fn get_event(&self, id: &EventId) -> Result<RecordedEvent, LedgerError> {
        let head = self.durable_head().position;
        let not_found = || LedgerError::NotFound(format!("event {id} not found"));
        let position = self.guard(self.store.event_position(id))?.filter(|p| *p <= head).ok_or_else(not_found)?;
        let record = self.guard(self.store.read_record(position))?;
        let record = self.guard(record.ok_or_else(|| StoreError::Corrupt {
            place: format!("position {position}"),
            reason: format!("indexed by event id {id} but missing"),
        }))?;
        self.check_chain(std::slice::from_ref(&record))?;
        Ok(record.event)
    }

    /// Delivers every event from `from` (inclusive) that passes `filter`, then
    /// [`SubscriptionItem::CaughtUp`], then live events, until the receiver is dropped or the
    /// ledger shuts down. The reader task reads from the store, never from a shared buffer, so
    /// a slow subscriber costs writers nothing and holds at most [`SUBSCRIPTION_BUFFER_MAX`].
    ///
    /// At shutdown, a subscription ends once the writer has stopped (every queued append
    /// written and answered): it delivers every event up to the final durable head — each one
    /// acknowledged before the end — and then [`LedgerError::ShuttingDown`]. A subscriber that
    /// stops reading is given up when [`Ledger::shutdown`] completes; its channel then closes
    /// without that last item.
    pub fn subscribe(
        self: &Arc<Self>,
        from: Position,
        filter: EventFilter,
    ) -> mpsc::Receiver<Result<SubscriptionItem, LedgerError>> {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER_MAX);
        let ledger = self.clone();
        tokio::spawn(async move {
            let mut heads = ledger.watch_head();
            let mut stopped = ledger.shutdown.subscribe();
            let mut next = from.max(Position(1));
            let mut caught_up = false;
            loop {
                let head = heads.borrow_and_update().position;
                // A page reads up to the head of its own moment, which may be past `head`: what
                // the catch-up delivered is below `next`, and CaughtUp must cover all of it.
                let mut reached = head;
                while next <= head {
                    let page = ledger.read_all(next, true, SUBSCRIPTION_BUFFER_MAX, &filter);
                    let page = match page {
                        Ok(page) => page,
                        Err(e) => {
                            let _ = deliver(&tx, Err(e), &mut stopped).await;
                            return;
                        }
                    };
                    next = page.next_position.unwrap_or(Position(page.head_position.0 + 1));
                    reached = reached.max(Position(next.0 - 1));
                    for event in page.events {
                        if !deliver(&tx, Ok(SubscriptionItem::Event(Box::new(event))), &mut stopped).await {
                            return;
                        }
                    }
                }
                if !caught_up {
                    caught_up = true;
                    if !deliver(&tx, Ok(SubscriptionItem::CaughtUp(reached)), &mut stopped).await {
                        return;
                    }
                }
                tokio::select! {
                    changed = heads.changed() => if changed.is_err() {
                        // The writer has stopped, and the last head it published (seen above:
                        // `changed` reports a head not yet seen before it reports the end) has
                        // been delivered.
                        let _ = deliver(&tx, Err(LedgerError::ShuttingDown), &mut stopped).await;
                        return;
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        rx
    }

    /// The stream's last revision at or below the durable head (events of a group being
    /// committed are already in the tree but not yet acknowledgeable).
    fn durable_stream_revision(&self, stream: &StreamName, head: Position) -> Result<Option<Revision>, LedgerError> {
        let mut from = Revision(u64::MAX - 1);
        loop {
            let page = self.guard(self.store.read_stream(stream, from, false, 64))?;
            if let Some(record) = page.iter().find(|r| r.event.position <= head) {
                return Ok(Some(record.event.revision));
            }
            match page.last() {
                Some(last) if last.event.revision.0 > 0 && page.len() == 64 => {
                    from = Revision(last.event.revision.0 - 1)
                }
                _ => return Ok(None),
            }
        }
    }

    /// Checks that each record continues the hash chain from the record before it (a neighbour
    /// in `records`, or read from the store), so that bytes rewritten on disk are never served
    /// as good: they answer DATA_LOSS and halt writes.
    pub(super) fn check_chain(&self, records: &[StoredRecord]) -> Result<(), LedgerError> {
        let mut order: Vec<&StoredRecord> = records.iter().collect();
        order.sort_unstable_by_key(|r| r.event.position);
        let mut previous: Option<&StoredRecord> = None;
        for record in order {
            let position = record.event.position;
            let prev_hash = match previous {
                Some(prev) if prev.event.position.0 + 1 == position.0 => prev.hash,
                _ => self.guard(super::hash_at(&self.store, Position(position.0 - 1)))?,
            };
            let mut chain = audit::ChainVerifier::after(position.0 - 1, prev_hash);
            if let Err(e) = chain.check(position.0, &record.hash, &record.body) {
                return self
                    .guard(Err(StoreError::Corrupt { place: format!("position {position}"), reason: e.to_string() }));
            }
            previous = Some(record);
        }
        Ok(())
    }

    /// Passes a store result through, recording a fault when stored data failed its check.
    pub(super) fn guard<T>(&self, result: Result<T, StoreError>) -> Result<T, LedgerError> {
        result.map_err(|e| {
            let error = LedgerError::Store(e);
            self.record_fault(&error);
            error
        })
    }
}

/// Sends one item to a subscriber, waiting for room in its channel unless the ledger has
/// stopped first (a subscriber that stopped reading is not waited for past that); false when the
/// subscription is over.
async fn deliver(
    tx: &mpsc::Sender<Result<SubscriptionItem, LedgerError>>,
    item: Result<SubscriptionItem, LedgerError>,
    stopped: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        biased;
        sent = tx.send(item) => sent.is_ok(),
        _ = stopped.wait_for(|stopped| *stopped) => false,
    }
}
