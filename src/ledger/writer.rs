//! The group-commit writer: one thread takes every queued append (up to a bound), checks each
//! request on its own against committed state plus the requests accepted before it in the same
//! group, writes the accepted ones in one atomic store batch, syncs once, then answers all.
//!
//! Because one writer checks every rule, including those that span streams, two racing
//! requests cannot both pass a rule that only one may pass.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use super::access::{AccessTable, Caller};
use super::group_stats::{GroupSample, GroupStats, SLOW_GROUP};
use super::{AppendJob, AppendOutcome, AppendRequest, Appended, Expected, LedgerConfig, LedgerError};
use crate::audit;
use crate::domain::{
    self, DomainError, EntityState, EventData, EventId, Grant, MemberCode, MemberState, Position, PrincipalName,
    PrincipalState, RecordedEvent, Revision, StreamName,
};
use crate::store::{self, CommitBatch, Head, Store, StoreError};

/// A stream's committed revision and folded state.
#[derive(Clone, Debug, Default)]
struct StreamHead {
    revision: Option<Revision>,
    state: EntityState,
}

/// What a request writes, pending the group's commit.
struct Written {
    records: Vec<(RecordedEvent, Vec<u8>, store::Hash)>,
    heads: HashMap<StreamName, StreamHead>,
}

/// The events the requests before this one in the group wrote, by id (for idempotent retries
/// that land in the same group as their original).
#[derive(Default)]
struct Staged {
    records: Vec<RecordedEvent>,
    ids: HashMap<EventId, usize>,
}

impl Staged {
    fn get(&self, id: &EventId) -> Option<&RecordedEvent> {
        self.ids.get(id).map(|&i| &self.records[i])
    }
}

enum Verdict {
    Write(Written),
    Replay(Vec<Appended>),
}

pub(super) struct Writer {
    store: Arc<Store>,
    head: Head,
    last_recorded_at: DateTime<Utc>,
    durable: watch::Sender<Head>,
    fault: Arc<watch::Sender<Option<String>>>,
    /// Least recently used streams are evicted first: hot streams (a long-lived export rule, the
    /// members that commitments name) stay, one-off streams (each commitment) pass through.
    cache: lru::LruCache<StreamName, StreamHead>,
    group_events_max: usize,
    /// Each durable group's events and hashes, for the projector (which reads the log instead
    /// when it falls behind and this channel is full).
    committed: mpsc::Sender<super::projector::Committed>,
    /// The Merkle tree's large subtrees: their roots go into the batch that completes them.
    tower: crate::audit::tower::SubtreeTower,
    /// Every group's size and phases, logged when the writer stops.
    stats: GroupStats,
    /// Who may record what: read to authorize, updated after each durable group that changed it.
    access: Arc<RwLock<AccessTable>>,
    /// Set while groups are refused for want of disk space; see `LedgerConfig::disk_free_min_bytes`.
    low_disk: Arc<watch::Sender<Option<String>>>,
    /// What the last refused group needed free.
    disk_needed: Arc<std::sync::atomic::AtomicU64>,
    disk_free_min_bytes: u64,
    /// Told of each durable group (metrics).
    observer: super::group_stats::ObserverHandle,
}

impl Writer {
    #[allow(clippy::too_many_arguments)] // each is one of the writer's channels or shared tables
    pub(super) fn new(
        store: Arc<Store>,
        head: Head,
        durable: watch::Sender<Head>,
        fault: Arc<watch::Sender<Option<String>>>,
        committed: mpsc::Sender<super::projector::Committed>,
        tower: crate::audit::tower::SubtreeTower,
        access: Arc<RwLock<AccessTable>>,
        (low_disk, disk_needed): (Arc<watch::Sender<Option<String>>>, Arc<std::sync::atomic::AtomicU64>),
        config: &LedgerConfig,
    ) -> Result<Self, LedgerError> {
        let last_recorded_at = match head.position.0 {
            0 => DateTime::<Utc>::MIN_UTC,
            p => store.read_record(Position(p))?.map_or(DateTime::<Utc>::MIN_UTC, |r| r.event.recorded_at),
        };
        Ok(Self {
            store,
            head,
            last_recorded_at,
            durable,
            fault,
            cache: lru::LruCache::new(NonZeroUsize::new(config.stream_cache_max.max(1)).expect("at least 1")),
            group_events_max: config.group_events_max,
            committed,
            tower,
            stats: GroupStats::default(),
            access,
            low_disk,
            disk_needed,
            disk_free_min_bytes: config.disk_free_min_bytes,
            observer: config.observer.clone(),
        })
    }

    /// Runs until every sender is gone and the queue is drained.
    pub(super) fn run(mut self, mut jobs: mpsc::Receiver<AppendJob>) {
        while let Some(first) = jobs.blocking_recv() {
            let mut events = first.request.events.len();
            let mut group = vec![first];
            while events < self.group_events_max {
                match jobs.try_recv() {
                    Ok(job) => {
                        events += job.request.events.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
        tracing::info!(groups = %self.stats, "ledger writer stopped");
    }

    fn commit_group(&mut self, group: Vec<AppendJob>) {
        if let Some(reason) = self.fault.borrow().clone() {
            for job in group {
                let _ = job.reply.send(Err(LedgerError::Halted(reason.clone())));
            }
            return;
        }
        let started = Instant::now();
        let requests = group.len() as u64;
        let recorded_at = Utc::now().max(self.last_recorded_at);
        let mut overlay: HashMap<StreamName, StreamHead> = HashMap::new();
        let mut staged = Staged::default();
        let mut hashes = Vec::new();
        let mut batch = CommitBatch::default();
        let mut head = self.head;
        let mut answers = Vec::with_capacity(group.len());
        for AppendJob { request, caller, reply } in group {
            let verdict = self.check(request, &caller, &overlay, &staged, head, recorded_at);
            let answer = match verdict {
                Ok(Verdict::Write(written)) => {
                    let mut appended = Vec::with_capacity(written.records.len());
                    for (event, body, hash) in written.records {
                        batch.put_record(&event, body, &hash);
                        appended.push(appended_of(&event));
                        head = Head { position: event.position, hash };
                        hashes.push(hash);
                        staged.ids.insert(event.event.event_id, staged.records.len());
                        staged.records.push(event);
                    }
                    overlay.extend(written.heads);
                    Ok((appended, false))
                }
                Ok(Verdict::Replay(appended)) => Ok((appended, true)),
                Err(e) => {
                    if e.is_data_loss() {
                        // Checking read stored data that failed its check: this request gets
                        // DATA_LOSS, and nothing more is written on top of that data.
                        super::raise_fault(&self.fault, &e.to_string());
                    }
                    Err(e)
                }
            };
            answers.push((reply, answer));
        }
        if batch.records() > 0
            && let Some((free, needed)) = self.disk_full(&batch)
        {
            // Nothing of the group is written: every request it would have acknowledged is
            // refused, with the same answer.
            for (reply, answer) in answers {
                let _ = reply.send(match answer {
                    Ok(_) => Err(LedgerError::DiskFull { free, needed }),
                    Err(e) => Err(e),
                });
            }
            return;
        }
        let result = if batch.records() > 0 {
            batch.set_head(&head);
            let mut completed = Vec::new();
            for hash in &hashes {
                self.tower.append(hash, &mut completed);
            }
            for (level, index, root) in completed {
                batch.put_subtree(level, index, root);
            }
            let check = started.elapsed();
            self.store.commit(batch).map(|commit| {
                let sample = GroupSample { requests, events: hashes.len() as u64, check, commit };
                self.observe(&sample);
            })
        } else {
            Ok(())
        };
        match result {
            Ok(()) => {
                if self.low_disk.borrow().is_some() {
                    tracing::info!("disk space is back; appends resume");
                    self.low_disk.send_replace(None);
                }
                self.head = head;
                self.last_recorded_at = recorded_at;
                self.remember(overlay);
                if staged.records.iter().any(|r| r.event.data.is_access()) {
                    // Before any request of the group is answered: the next request sees it.
                    let mut access = self.access.write().expect("access table lock");
                    staged.records.iter().for_each(|record| access.apply(record));
                }
                if !hashes.is_empty() {
                    // Before the head moves, so the projector finds the events when it wakes.
                    let _ = self.committed.try_send(staged.records.into_iter().zip(hashes).collect());
                }
                self.durable.send_replace(head);
                for (reply, answer) in answers {
                    let outcome = answer.map(|(events, already_committed)| AppendOutcome {
                        recorded_at: if already_committed {
                            recorded_at_of_replay(&self.store, &events)
                        } else {
                            recorded_at
                        },
                        events,
                        already_committed,
                    });
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                // After a failed write or fsync the state of the file is unknown: stop writing
                // rather than acknowledge anything on top of it.
                tracing::error!(%error, "durable write failed; refusing writes");
                self.fault.send_replace(Some(format!("a durable write failed: {error}")));
                // The tower has taken this group's leaves too; it is not rolled back because
                // nothing is written from here on (a restart restores it from the store).
                self.cache.clear();
                for (reply, answer) in answers {
                    let _ = reply.send(match answer {
                        Ok(_) => Err(LedgerError::Store(error.duplicate())),
                        Err(e) => Err(e),
                    });
                }
            }
        }
    }

    /// `Some((free, needed))` if the disk has too little room for `batch` (see
    /// `LedgerConfig::disk_free_min_bytes`); sets the low-disk state, which health reports.
    fn disk_full(&self, batch: &CommitBatch) -> Option<(u64, u64)> {
        if self.disk_free_min_bytes == 0 {
            return None;
        }
        let needed = self.disk_free_min_bytes.saturating_add(2 * batch.body_bytes());
        // A failure to ask is no reason to refuse: the write itself will say what is wrong.
        let free = self.store.free_bytes().ok()?;
        if free >= needed {
            return None;
        }
        if self.low_disk.borrow().is_none() {
            tracing::warn!(free, needed, "disk space is low: appends are refused until it is freed");
        }
        self.disk_needed.store(needed, std::sync::atomic::Ordering::Relaxed);
        self.low_disk.send_replace(Some(LedgerError::DiskFull { free, needed }.to_string()));
        Some((free, needed))
    }

    fn observe(&mut self, sample: &GroupSample) {
        self.stats.record(sample);
        if let Some(observer) = &self.observer.0 {
            observer.group_committed(sample);
        }
        let total = sample.total();
        if total > SLOW_GROUP {
            tracing::info!(
                total_us = total.as_micros(),
                requests = sample.requests,
                events = sample.events,
                check_us = sample.check.as_micros(),
                apply_us = sample.commit.apply.as_micros(),
                flush_us = sample.commit.flush.as_micros(),
                fdatasync_us = sample.commit.sync.as_micros(),
                "slow commit group"
            );
        }
    }

    /// Checks one request against committed state plus `overlay` (what earlier requests of this
    /// group staged). Writes nothing.
    fn check(
        &mut self,
        request: AppendRequest,
        caller: &Caller,
        overlay: &HashMap<StreamName, StreamHead>,
        staged: &Staged,
        head: Head,
        recorded_at: DateTime<Utc>,
    ) -> Result<Verdict, LedgerError> {
        if let Some(replay) = self.check_idempotency(&request, staged)? {
            return Ok(Verdict::Replay(replay));
        }
        let mut local: HashMap<StreamName, StreamHead> = HashMap::new();
        // What the caller holds just before each event: as of the group's earlier requests and
        // this request's earlier events (so that a replay of the log in order judges each event
        // exactly as here; see `domain::access::AccessReplay`).
        let caller_stream = match caller {
            Caller::Principal(name) => Some(StreamName::principal(name)),
            _ => None,
        };
        let mut principal = match (caller, &caller_stream) {
            (Caller::Principal(name), Some(stream)) => Some(self.caller_state(name, stream, &local, overlay)?),
            (Caller::Anonymous, _) if self.access.read().expect("access table lock").is_closed() => {
                return Err(LedgerError::Unauthenticated(
                    "principals exist: every request must be authenticated".to_owned(),
                ));
            }
            (Caller::Bootstrap, _) if self.access.read().expect("access table lock").has_usable_admin() => {
                return Err(LedgerError::Denied {
                    index: 0,
                    principal: "bootstrap".to_owned(),
                    reason: "an admin with a credential exists; it grants access (principal grant, token new)"
                        .to_owned(),
                });
            }
            _ => None,
        };
        for (stream, expected) in &request.expectations {
            let current = self.stream_head(stream, &local, overlay)?.revision;
            let ok = match expected {
                Expected::Any => true,
                Expected::NoStream => current.is_none(),
                Expected::Exists => current.is_some(),
                Expected::Exact(r) => current == Some(*r),
            };
            if !ok {
                return Err(LedgerError::WrongRevision {
                    stream: stream.clone(),
                    expected: *expected,
                    actual: current,
                });
            }
        }
        let mut records = Vec::with_capacity(request.events.len());
        let mut prev_hash = head.hash;
        for (index, proposed) in request.events.into_iter().enumerate() {
            let stream = proposed.data.stream();
            for code in domain::referenced_participants(&proposed.data) {
                let member_stream = StreamName::member(&code);
                let loaded = self.stream_head(&member_stream, &local, overlay)?;
                local.entry(member_stream).or_insert(loaded);
            }
            let current = self.stream_head(&stream, &local, overlay)?;
            let grants = principal.as_ref().map(|p| &p.grants);
            self.authorize(index, caller, grants, &proposed.data, &current.state, staged, &records)?;
            if let Some(principal) = &principal {
                domain::access::check_signature(principal, proposed.metadata.signature.as_ref())
                    .map_err(|refused| LedgerError::Signature { index, reason: refused.to_string() })?;
            }
            let changes_caller = caller_stream.as_ref() == Some(&stream);
            let participants = |code: &MemberCode| match local.get(&StreamName::member(code)).map(|h| &h.state) {
                Some(EntityState::Member(m)) => Some::<MemberState>(m.clone()),
                _ => None,
            };
            domain::decide(&current.state, &proposed.data, &participants)
                .map_err(|error| LedgerError::Rule { index, error })?;
            let revision = Revision(current.revision.map_or(0, |r| r.0 + 1));
            let position = Position(head.position.0 + 1 + index as u64);
            let state = domain::evolve(current.state, &proposed.data);
            let event = RecordedEvent { position, stream: stream.clone(), revision, recorded_at, event: proposed };
            let body = store::record::encode_event(&event);
            if body.len() > store::RECORD_BODY_BYTES_MAX {
                return Err(LedgerError::EventTooLarge { index, bytes: body.len(), max: store::RECORD_BODY_BYTES_MAX });
            }
            let hash = audit::chain_hash(&prev_hash, &body);
            prev_hash = hash;
            local.insert(stream, StreamHead { revision: Some(revision), state });
            records.push((event, body, hash));
            if changes_caller && let (Caller::Principal(name), Some(stream)) = (caller, &caller_stream) {
                principal = Some(self.caller_state(name, stream, &local, overlay)?);
            }
        }
        Ok(Verdict::Write(Written { records, heads: local }))
    }

    /// What the calling principal `name` (of stream `stream`) holds as this request sees it
    /// (nothing, if it no longer exists).
    fn caller_state(
        &mut self,
        name: &PrincipalName,
        stream: &StreamName,
        local: &HashMap<StreamName, StreamHead>,
        overlay: &HashMap<StreamName, StreamHead>,
    ) -> Result<PrincipalState, LedgerError> {
        Ok(match self.stream_head(stream, local, overlay)?.state {
            EntityState::Principal(principal) => principal,
            _ => PrincipalState { name: name.clone(), grants: BTreeSet::new(), credentials: BTreeSet::new() },
        })
    }

    /// Whether `caller` may record `data` onto a stream whose state is `state`; for a new
    /// credential, also that no other principal holds it (committed, staged in this group, or
    /// earlier in this request).
    #[allow(clippy::too_many_arguments)]
    fn authorize(
        &self,
        index: usize,
        caller: &Caller,
        grants: Option<&BTreeSet<Grant>>,
        data: &EventData,
        state: &EntityState,
        staged: &Staged,
        earlier: &[(RecordedEvent, Vec<u8>, store::Hash)],
    ) -> Result<(), LedgerError> {
        let denied =
            |principal: &str, reason: String| LedgerError::Denied { index, principal: principal.to_owned(), reason };
        match (caller, grants) {
            (Caller::Principal(name), Some(grants)) => {
                domain::access::authorize(grants, data, domain::access::Owner::of(state))
                    .map_err(|d| denied(name.as_str(), d.to_string()))?;
            }
            (Caller::Anonymous, _) if data.is_access() => {
                return Err(denied(
                    "anonymous",
                    "access events are recorded by an admin; create the first one offline with `pax-ledger principal bootstrap --data DIR`".to_owned(),
                ));
            }
            (Caller::Bootstrap, _) if !data.is_access() => {
                return Err(denied(
                    "bootstrap",
                    format!("the bootstrap records access events only, not {}", data.type_name()),
                ));
            }
            _ => {}
        }
        if let EventData::CredentialIssued { credential, .. } = data {
            let committed = self.access.read().expect("access table lock").holder(credential).cloned();
            let issued = |event: &RecordedEvent| match &event.event.data {
                EventData::CredentialIssued { principal, credential: c } if c == credential => Some(principal.clone()),
                _ => None,
            };
            let holder = committed
                .or_else(|| staged.records.iter().find_map(issued))
                .or_else(|| earlier.iter().find_map(|(event, _, _)| issued(event)));
            if let Some(principal) = holder {
                return Err(LedgerError::Rule {
                    index,
                    error: DomainError::CredentialHeld { principal, credential: *credential },
                });
            }
        }
        Ok(())
    }

    /// `Some(positions)` when every event of the request is already committed (or staged in
    /// this group) with identical content; an error when only some are, or with other content.
    fn check_idempotency(
        &self,
        request: &AppendRequest,
        staged: &Staged,
    ) -> Result<Option<Vec<Appended>>, LedgerError> {
        let mut seen = HashSet::with_capacity(request.events.len());
        let mut found = Vec::new();
        let mut first_new = None;
        for (index, proposed) in request.events.iter().enumerate() {
            let event_id = proposed.event_id;
            if !seen.insert(event_id) {
                return Err(LedgerError::DuplicateInRequest { index, event_id });
            }
            let existing = match staged.get(&event_id) {
                Some(record) => Some(record.clone()),
                None => match self.store.event_position(&event_id)? {
                    Some(position) => Some(
                        self.store
                            .read_record(position)?
                            .ok_or_else(|| StoreError::Corrupt {
                                place: format!("position {position}"),
                                reason: format!("indexed by event id {event_id} but missing"),
                            })?
                            .event,
                    ),
                    None => None,
                },
            };
            match existing {
                Some(record) if record.event != *proposed => {
                    return Err(LedgerError::DifferentContent { index, event_id, position: record.position });
                }
                Some(record) => found.push((index, record)),
                None => first_new = first_new.or(Some(index)),
            }
        }
        match (found.first(), first_new) {
            (None, _) => Ok(None),
            (Some((index, record)), Some(_)) => Err(LedgerError::PartlyCommitted {
                index: *index,
                event_id: record.event.event_id,
                position: record.position,
            }),
            (Some(_), None) => Ok(Some(found.iter().map(|(_, record)| appended_of(record)).collect())),
        }
    }

    /// The stream's head as this request sees it: its own staged events, then the group's,
    /// then committed state (cached, or folded from the log).
    fn stream_head(
        &mut self,
        stream: &StreamName,
        local: &HashMap<StreamName, StreamHead>,
        overlay: &HashMap<StreamName, StreamHead>,
    ) -> Result<StreamHead, LedgerError> {
        if let Some(h) = local.get(stream).or_else(|| overlay.get(stream)) {
            return Ok(h.clone());
        }
        if let Some(h) = self.cache.get(stream) {
            return Ok(h.clone());
        }
        let mut head = StreamHead::default();
        // Most misses are streams that do not exist yet (each commitment is a new stream): for
        // those the store's in-memory map of where streams began answers the first read, empty,
        // without a seek.
        let mut from = Revision(0);
        loop {
            let page = self.store.read_stream(stream, from, true, 1024)?;
            let Some(last) = page.last() else { break };
            from = Revision(last.event.revision.0 + 1);
            for record in &page {
                head.state = domain::evolve(std::mem::take(&mut head.state), &record.event.event.data);
                head.revision = Some(record.event.revision);
            }
        }
        self.cache_insert(stream.clone(), head.clone());
        Ok(head)
    }

    fn remember(&mut self, overlay: HashMap<StreamName, StreamHead>) {
        for (stream, head) in overlay {
            self.cache_insert(stream, head);
        }
    }

    fn cache_insert(&mut self, stream: StreamName, head: StreamHead) {
        self.cache.put(stream, head);
    }
}

fn appended_of(event: &RecordedEvent) -> Appended {
    Appended {
        event_id: event.event.event_id,
        stream: event.stream.clone(),
        revision: event.revision,
        position: event.position,
    }
}

fn recorded_at_of_replay(store: &Store, events: &[Appended]) -> DateTime<Utc> {
    events
        .first()
        .and_then(|a| store.read_record(a.position).ok().flatten())
        .map_or_else(Utc::now, |r| r.event.recorded_at)
}
