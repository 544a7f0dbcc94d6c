//! Never a shorter history: a single flipped bit anywhere in a stopped ledger's data directory
//! never yields a ledger that serves fewer events than it acknowledged, acknowledges a position
//! twice, or signs a second Merkle root for a size it signed. Each trial copies a ledger, flips
//! one bit, opens it and classifies what happened; every outcome must be one of
//!
//! - `intact`: every acknowledged event reads back identical, the next append lands after them,
//!   and every signed size still has its root (the bit was in space the engine no longer uses);
//! - `refused`: opening failed with one of the ledger's own errors (never a panic), naming the
//!   damage;
//! - `data loss`: opening worked, and a read of the damaged data answered DATA_LOSS, after which
//!   writes and signatures are refused.
//!
//! The same is checked after a SIGKILL under load, where the head journal may lag the
//! acknowledged head by its documented window.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pax_ledger::domain::RecordedEvent;
use pax_ledger::domain::{EventData, EventId, MemberCode, MemberKind, MemberRole, Metadata, Position, ProposedEvent};
use pax_ledger::ledger::{AppendRequest, EventFilter, Ledger, LedgerConfig, LedgerError};
use pax_ledger::proto::v1 as pb;
use pax_ledger::store::journal;

use crate::crash::{Rng, ServerProcess, connect};
use crate::support::*;

/// The text of the one commitment whose every stored copy is damaged in turn.
const DISTINCTIVE: &str = "DISTINCTIVE commitment text: 4242 tonnes of refined gallium, illustrative";
/// Events after the first two, in requests of [`BATCH`].
const FILLER_EVENTS: u64 = 3000;
const BATCH: u64 = 100;
/// Random offsets flipped in each file of the engine, besides the targeted places.
const RANDOM_FLIPS_DB: usize = 48;
const RANDOM_FLIPS_OTHER: usize = 4;
/// Opening and checking one damaged copy (a hang fails the trial).
const TRIAL_TIMEOUT: Duration = Duration::from_secs(60);

/// What the ledger acknowledged before it stopped: its events and the roots it signed.
struct Acknowledged {
    events: Vec<RecordedEvent>,
    head_hash: [u8; 32],
    signed: BTreeMap<u64, [u8; 32]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Intact,
    Refused,
    DataLoss,
    /// SIGKILL trials only: the newest events, acknowledged after the journal's last mark, are
    /// gone while everything up to the mark is there (the documented window).
    LostWithinWindow,
}

fn code(i: u64) -> String {
    let letter = |n: u64| (b'A' + (n % 26) as u8) as char;
    format!("D{}{}{}", letter(i), letter(i / 26), letter(i / 676))
}

fn filler(i: u64, member: &str) -> pb::ProposedEvent {
    if i.is_multiple_of(3) {
        member_joined(&code(i))
    } else {
        let mut event = commitment_made(&id(), member);
        if let Some(pb::event_data::Kind::CommitmentMade(made)) = event.data.as_mut().and_then(|d| d.kind.as_mut()) {
            made.description = format!("filler commitment {i}");
        }
        event
    }
}

/// The member JP and the commitment with the distinctive text.
fn first_events() -> Vec<pb::AppendRequest> {
    let mut commitment = commitment_made(&id(), "JP");
    if let Some(pb::event_data::Kind::CommitmentMade(made)) = commitment.data.as_mut().and_then(|d| d.kind.as_mut()) {
        made.description = DISTINCTIVE.into();
    }
    vec![append(vec![member_joined("JP")]), append(vec![commitment])]
}

/// A ledger of a member, the distinctive commitment and [`FILLER_EVENTS`] more, with two signed
/// checkpoints, stopped cleanly. Returns what it acknowledged.
async fn build_ledger(data: &Path) -> Acknowledged {
    let server = TestServer::start_in(data).await;
    let mut client = server.client().await;
    for request in first_events() {
        client.append(request).await.unwrap();
    }
    let mut audit = pb::audit_service_client::AuditServiceClient::new(server.channel().await);
    for batch in 0..FILLER_EVENTS / BATCH {
        let events = (0..BATCH).map(|i| filler(batch * BATCH + i, "JP")).collect();
        client.append(append(events)).await.unwrap();
        if batch == FILLER_EVENTS / BATCH / 2 {
            audit.get_checkpoint(pb::GetCheckpointRequest { fresh: true, ..Default::default() }).await.unwrap();
        }
    }
    audit.get_checkpoint(pb::GetCheckpointRequest { fresh: true, ..Default::default() }).await.unwrap();
    let acknowledged = acknowledged_of(&server.ledger);
    drop((client, audit));
    server.stop().await;
    acknowledged
}

fn acknowledged_of(ledger: &Ledger) -> Acknowledged {
    let events = read_everything(ledger).expect("the intact ledger reads back");
    let signed = ledger
        .checkpoint_positions()
        .unwrap()
        .into_iter()
        .map(|p| (p.0, ledger.checkpoint_at(p).unwrap().checkpoint.root))
        .collect();
    Acknowledged { events, head_hash: ledger.durable_head().hash, signed }
}

/// Every event of the log, in order.
fn read_everything(ledger: &Ledger) -> Result<Vec<RecordedEvent>, LedgerError> {
    let mut events = Vec::new();
    let mut from = Position(1);
    loop {
        let page = ledger.read_all(from, true, 1000, &EventFilter::default())?;
        events.extend(page.events);
        match page.next_position {
            Some(next) => from = next,
            None => return Ok(events),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every offset at which `needle` occurs in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

/// One place to flip: a file of the data directory, a byte and a bit, and why it was chosen.
#[derive(Clone, Debug)]
struct Flip {
    file: String,
    offset: usize,
    bit: u8,
    what: String,
}

/// The places a trial damages: every stored copy of the distinctive commitment's text, of the
/// head's value and of the last checkpoint's signature; the journal's last and first entries;
/// the event-id snapshot's header; and random offsets in every file.
fn places(data: &Path, acknowledged: &Acknowledged, rng: &mut Rng) -> Vec<Flip> {
    let mut flips = Vec::new();
    let db = std::fs::read(data.join("db")).unwrap();
    let mut targeted = |needle: &[u8], what: &str| {
        let found = occurrences(&db, needle);
        for (copy, at) in found.iter().enumerate() {
            flips.push(Flip {
                file: "db".into(),
                offset: at + needle.len() / 2,
                bit: (copy % 8) as u8,
                what: format!("{what}, copy {} of {}", copy + 1, found.len()),
            });
        }
        found.len()
    };
    let copies = targeted(DISTINCTIVE.as_bytes(), "the distinctive commitment's text");
    assert!(copies >= 1, "the commitment's text is in the database file");
    let last = acknowledged.events.last().unwrap();
    let mut head_value = last.position.0.to_be_bytes().to_vec();
    head_value.extend_from_slice(&acknowledged.head_hash);
    targeted(&head_value, "the log head");
    let (signed_at, _) = acknowledged.signed.iter().next_back().unwrap();
    let checkpoints = targeted(format!("\"position\": {signed_at},").as_bytes(), "the last checkpoint");
    assert!(checkpoints >= 1, "the last checkpoint is in the database file");
    let journal_len = std::fs::metadata(journal::path(data)).unwrap().len() as usize;
    for (offset, what) in [(journal_len - 50, "the journal's last entry"), (20, "the journal's first entry")] {
        flips.push(Flip { file: "head.journal".into(), offset, bit: 3, what: what.into() });
    }
    if data.join("ids.snapshot").exists() {
        for offset in [10, 20, 50] {
            let what = "the event-id snapshot's header".into();
            flips.push(Flip { file: "ids.snapshot".into(), offset, bit: 0, what });
        }
    }
    for entry in std::fs::read_dir(data).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        // The signing key is a secret the operator provides, not data: a changed key shows in
        // every checkpoint (each names its key).
        if !entry.file_type().unwrap().is_file() || name == "signing.key" {
            continue;
        }
        let len = entry.metadata().unwrap().len();
        if len == 0 {
            continue;
        }
        let count = if name == "db" { RANDOM_FLIPS_DB } else { RANDOM_FLIPS_OTHER };
        for _ in 0..count {
            let offset = rng.between(0, len - 1) as usize;
            flips.push(Flip {
                file: name.clone(),
                offset,
                bit: rng.between(0, 7) as u8,
                what: "a random offset".into(),
            });
        }
    }
    flips
}

fn flip(data: &Path, flip: &Flip) {
    let path = data.join(&flip.file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[flip.offset] ^= 1 << flip.bit;
    std::fs::write(&path, bytes).unwrap();
}

fn member_joined_event(code: &str) -> ProposedEvent {
    ProposedEvent {
        event_id: EventId::generate(),
        data: EventData::MemberJoined {
            code: MemberCode::parse("code", code).unwrap(),
            name: format!("Participant {code}"),
            kind: MemberKind::State,
            role: MemberRole::Member,
        },
        effective_at: None,
        metadata: Metadata::default(),
    }
}

/// Opens the damaged copy in `data` and classifies what it serves, or says how it failed the
/// promise. `window_from`: with a SIGKILL, the first position past the journal's last mark
/// (events from there on may be lost undetected; none before).
async fn trial(data: PathBuf, acknowledged: Arc<Acknowledged>, window_from: Option<u64>) -> Result<Outcome, String> {
    let opened = tokio::task::spawn_blocking({
        let data = data.clone();
        move || Ledger::open(&data, LedgerConfig::default())
    })
    .await
    .map_err(|e| format!("opening panicked: {e}"))?;
    let ledger = match opened {
        Err(error @ (LedgerError::Shortened(_) | LedgerError::Store(_))) => {
            let message = error.to_string();
            if message.len() < 40 {
                return Err(format!("refused without saying what is wrong: {message}"));
            }
            return Ok(Outcome::Refused);
        }
        Err(other) => return Err(format!("refused with an unexpected error: {other}")),
        Ok(ledger) => ledger,
    };
    tokio::task::spawn_blocking(move || check_served(&ledger, &acknowledged, window_from))
        .await
        .map_err(|e| format!("checking panicked: {e}"))?
}

fn check_served(
    ledger: &Arc<Ledger>,
    acknowledged: &Acknowledged,
    window_from: Option<u64>,
) -> Result<Outcome, String> {
    let expected = &acknowledged.events;
    let acknowledged_head = expected.last().map_or(0, |e| e.position.0);
    let head = ledger.durable_head().position.0;
    let data_loss = |ledger: &Ledger, what: &str| -> Result<Outcome, String> {
        if ledger.watch_fault().borrow().is_none() {
            return Err(format!("{what} answered DATA_LOSS but writes were not halted"));
        }
        let appended = futures::executor::block_on(
            ledger.append(AppendRequest { events: vec![member_joined_event("ZZ")], expectations: vec![] }),
        );
        match appended {
            Err(LedgerError::Halted(_)) => Ok(Outcome::DataLoss),
            other => Err(format!("{what} answered DATA_LOSS, then an append got {other:?}")),
        }
    };
    let served = match read_everything(ledger) {
        Ok(events) => events,
        Err(error) if error.is_data_loss() => return data_loss(ledger, "reading the log"),
        Err(error) => return Err(format!("reading the log failed with a non-damage error: {error}")),
    };
    let mut outcome = Outcome::Intact;
    if head < acknowledged_head || served.len() < expected.len() {
        match window_from {
            Some(first) if head + 1 >= first => outcome = Outcome::LostWithinWindow,
            _ => {
                return Err(format!(
                    "served a shorter history: head {head}, {} events, {} acknowledged up to {acknowledged_head}",
                    served.len(),
                    expected.len()
                ));
            }
        }
    }
    for (got, want) in served.iter().zip(expected) {
        if got != want {
            return Err(format!("position {} serves another event than it acknowledged", want.position));
        }
    }
    // Every signed size keeps its root, or is refused: never a second root.
    for (&size, root) in &acknowledged.signed {
        if size > head {
            continue;
        }
        match ledger.checkpoint_at(Position(size)) {
            Ok(checkpoint) if checkpoint.checkpoint.root == *root => {}
            Ok(_) => return Err(format!("signed a second root for size {size}")),
            Err(error) if error.is_data_loss() => return data_loss(ledger, "a signed checkpoint"),
            Err(error) => return Err(format!("the checkpoint at {size}: {error}")),
        }
    }
    let appended = futures::executor::block_on(
        ledger.append(AppendRequest { events: vec![member_joined_event("ZY")], expectations: vec![] }),
    );
    match appended {
        Ok(outcome_of_append) => {
            let position = outcome_of_append.events[0].position.0;
            if position != head + 1 || position <= acknowledged_head && outcome != Outcome::LostWithinWindow {
                return Err(format!("acknowledged position {position} again (acknowledged up to {acknowledged_head})"));
            }
        }
        Err(error) if error.is_data_loss() => return data_loss(ledger, "an append"),
        Err(error) => return Err(format!("an append after the checks failed: {error}")),
    }
    if outcome == Outcome::Intact
        && let Some(checkpoint) = ledger.checkpoint_at(Position(head + 1)).err()
    {
        return Err(format!("a fresh checkpoint on an intact copy failed: {checkpoint}"));
    }
    Ok(outcome)
}

/// Runs every flip of `places` on a fresh copy of `pristine`, and returns the outcome counts.
async fn run_trials(
    pristine: &Path,
    scratch: &Path,
    acknowledged: Acknowledged,
    flips: Vec<Flip>,
    window_from: Option<u64>,
) -> BTreeMap<Outcome, usize> {
    let acknowledged = Arc::new(acknowledged);
    let mut counts = BTreeMap::new();
    let mut failures = Vec::new();
    for (n, place) in flips.iter().enumerate() {
        let copy = scratch.join(format!("trial-{n}"));
        copy_dir(pristine, &copy);
        flip(&copy, place);
        let result = tokio::time::timeout(TRIAL_TIMEOUT, trial(copy.clone(), acknowledged.clone(), window_from)).await;
        match result {
            Ok(Ok(outcome)) => {
                eprintln!("{:<50} {}:{} bit {} -> {outcome:?}", place.what, place.file, place.offset, place.bit);
                *counts.entry(outcome).or_insert(0) += 1
            }
            Ok(Err(failure)) => failures.push(format!("{place:?}: {failure}")),
            Err(_) => failures.push(format!("{place:?}: no answer within {TRIAL_TIMEOUT:?}")),
        }
        let _ = std::fs::remove_dir_all(&copy);
    }
    eprintln!("outcomes of {} single-bit flips: {counts:?}", flips.len());
    assert!(
        failures.is_empty(),
        "{} of {} flips broke the promise:\n{}",
        failures.len(),
        flips.len(),
        failures.join("\n")
    );
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_a_cleanly_stopped_ledger_is_never_served_as_a_shorter_history() {
    pax_ledger::telemetry::init("error");
    let scratch = tempfile::tempdir().unwrap();
    let pristine = scratch.path().join("pristine");
    let acknowledged = build_ledger(&pristine).await;
    assert_eq!(acknowledged.events.len() as u64, FILLER_EVENTS + 2);
    assert_eq!(acknowledged.signed.len(), 2);
    let mut rng = Rng::new(0x5eed_da7a);
    let flips = places(&pristine, &acknowledged, &mut rng);
    // A control trial with nothing flipped is intact.
    let control = trial(
        {
            let copy = scratch.path().join("control");
            copy_dir(&pristine, &copy);
            copy
        },
        Arc::new(Acknowledged {
            events: acknowledged.events.clone(),
            head_hash: acknowledged.head_hash,
            signed: acknowledged.signed.clone(),
        }),
        None,
    )
    .await;
    assert_eq!(control, Ok(Outcome::Intact));
    let counts = run_trials(&pristine, scratch.path(), acknowledged, flips, None).await;
    assert!(
        counts.get(&Outcome::Refused).copied().unwrap_or(0) + counts.get(&Outcome::DataLoss).copied().unwrap_or(0) > 0,
        "no flip was detected at all: the test damages nothing that matters ({counts:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_after_a_sigkill_under_load_loses_nothing_outside_the_documented_window() {
    pax_ledger::telemetry::init("error");
    let scratch = tempfile::tempdir().unwrap();
    let pristine = scratch.path().join("pristine");
    let stderr = scratch.path().join("server.stderr");
    let server = ServerProcess::start(&pristine, &stderr).await;
    let mut client = connect(&server.url).await;
    for request in first_events() {
        client.append(request).await.unwrap();
    }
    // Four writers append until the kill; each remembers what was acknowledged.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (url, stop) = (server.url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut client = connect(&url).await;
                let mut acked = 0u64;
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let events = (0..20).map(|k| filler(w * 1_000_000 + i * 20 + k, "JP")).collect();
                    i += 1;
                    match client.append(append(events)).await {
                        Ok(_) => acked += 20,
                        Err(_) => break,
                    }
                }
                acked
            })
        })
        .collect();
    // A checkpoint signed under load, then more appends before the kill.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let channel = tonic::transport::Channel::from_shared(server.url.clone()).unwrap().connect().await.unwrap();
    let mut audit = pb::audit_service_client::AuditServiceClient::new(channel);
    audit.get_checkpoint(pb::GetCheckpointRequest { fresh: true, ..Default::default() }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.kill().await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let mut acked_events = 2;
    for writer in writers {
        acked_events += writer.await.unwrap();
    }
    // The window: past the journal's last mark that the killed server left.
    let (evidence, _, _) = journal::read(&pristine).unwrap();
    let window_from = evidence.furthest.map_or(1, |m| m.position.0 + 1);
    // What survived the crash (no damage yet, read from a copy: the trials start from the
    // directory as the kill left it) is what was acknowledged, or more.
    let probe = scratch.path().join("probe");
    copy_dir(&pristine, &probe);
    let ledger =
        tokio::task::spawn_blocking(move || Ledger::open(&probe, LedgerConfig::default()).unwrap()).await.unwrap();
    let acknowledged = acknowledged_of(&ledger);
    assert!(acknowledged.events.len() as u64 >= acked_events, "a crash lost acknowledged events");
    eprintln!(
        "{acked_events} events acknowledged before the kill, {} durable, the journal's last mark at {}",
        acknowledged.events.len(),
        window_from - 1
    );
    drop(ledger);
    let mut rng = Rng::new(0xdead_5eed);
    let flips = places(&pristine, &acknowledged, &mut rng);
    run_trials(&pristine, scratch.path(), acknowledged, flips, Some(window_from)).await;
}

/// Appends `count` joins of fresh members through the ledger API.
async fn join_members(ledger: &Ledger, prefix: &str, count: u64) {
    for i in 0..count {
        let code =
            format!("{prefix}{}", (b'A' + (i % 26) as u8) as char) + &((b'A' + (i / 26) as u8) as char).to_string();
        ledger.append(AppendRequest { events: vec![member_joined_event(&code)], expectations: vec![] }).await.unwrap();
    }
}

async fn open_ledger(data: &Path, config: LedgerConfig) -> Result<Arc<Ledger>, LedgerError> {
    let data = data.to_owned();
    tokio::task::spawn_blocking(move || Ledger::open(&data, config)).await.unwrap()
}

/// An older copy of the files under the journal of a longer log (what a restore of the wrong
/// backup, or an engine that recovered damage as a shorter log, looks like): refused at open,
/// naming the missing positions; `read_only` serves what is left and writes and signs nothing.
async fn shorter_than_its_journal(scratch: &Path) -> PathBuf {
    let (data, older) = (scratch.join("data"), scratch.join("older"));
    let ledger = open_ledger(&data, LedgerConfig::default()).await.unwrap();
    join_members(&ledger, "A", 20).await;
    ledger.shutdown();
    drop(ledger);
    copy_dir(&data, &older);
    let ledger = open_ledger(&data, LedgerConfig::default()).await.unwrap();
    join_members(&ledger, "B", 15).await;
    ledger.shutdown();
    drop(ledger);
    std::fs::copy(journal::path(&data), journal::path(&older)).unwrap();
    older
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_shorter_than_its_journal_is_refused_and_served_read_only_on_request() {
    pax_ledger::telemetry::init("error");
    let scratch = tempfile::tempdir().unwrap();
    let older = shorter_than_its_journal(scratch.path()).await;

    let refused = open_ledger(&older, LedgerConfig::default()).await.err().expect("a shorter log is refused");
    let message = refused.to_string();
    assert!(matches!(refused, LedgerError::Shortened(_)), "{message}");
    for needle in ["ends at position 20", "positions 21..=35 are missing", "verify --data", "--read-only"] {
        assert!(message.contains(needle), "the refusal does not say {needle:?}: {message}");
    }

    // The offline verification says the same.
    let verdict = pax_ledger::ledger::verify_store(&older, &Default::default(), None).unwrap();
    let (place, reason) = verdict.failure.expect("verify --data fails a shorter log");
    assert!(place == "log head" && reason.contains("positions 21..=35 are missing"), "{place}: {reason}");
    assert_eq!(verdict.verified, 20, "what is left verifies");

    let config = LedgerConfig { read_only: true, ..LedgerConfig::default() };
    let ledger = open_ledger(&older, config).await.expect("read-only opens what is left");
    assert_eq!(read_everything(&ledger).unwrap().len(), 20, "what is left is served");
    let reason = ledger.watch_fault().borrow().clone().expect("writes are halted");
    assert!(reason.contains("read-only") && reason.contains("positions 21..=35"), "{reason}");
    let append = ledger.append(AppendRequest { events: vec![member_joined_event("ZZ")], expectations: vec![] }).await;
    assert!(matches!(append, Err(LedgerError::Halted(_))), "{append:?}");
    let signed = ledger.checkpoint_at(Position(20));
    assert!(matches!(signed, Err(LedgerError::Halted(_))), "nothing is signed read-only: {signed:?}");
    let journal_before = std::fs::read(journal::path(&older)).unwrap();
    ledger.shutdown();
    drop(ledger);
    assert_eq!(std::fs::read(journal::path(&older)).unwrap(), journal_before, "read-only writes no journal entry");
    // Still refused afterwards: read-only changed nothing.
    assert!(matches!(open_ledger(&older, LedgerConfig::default()).await, Err(LedgerError::Shortened(_))));
}

/// A size the journal says was signed with another root is never signed again: the request is
/// refused and the ledger faults (writes halt, health NOT_SERVING).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_root_for_a_signed_size_is_refused_and_faults_the_ledger() {
    pax_ledger::telemetry::init("error");
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let ledger = open_ledger(&data, LedgerConfig::default()).await.unwrap();
    join_members(&ledger, "C", 12).await;
    let first = ledger.checkpoint_at(Position(10)).unwrap();
    ledger.shutdown();
    drop(ledger);
    // The journal says size 12 (this very record) was signed with a root the log does not have.
    let mut journal = journal::Journal::open(&data).unwrap();
    let head = journal.evidence().clean_stop.expect("a clean stop");
    assert_eq!(head.position, Position(12));
    journal.append(journal::Mark::signed(Position(12), head.hash, [9; 32])).unwrap();
    drop(journal);

    let ledger = open_ledger(&data, LedgerConfig::default()).await.unwrap();
    assert_eq!(ledger.checkpoint_at(Position(10)).unwrap().checkpoint.root, first.checkpoint.root);
    let refused = ledger.checkpoint_at(Position(12)).expect_err("a second root for size 12");
    assert!(matches!(refused, LedgerError::Equivocation(_)), "{refused}");
    assert!(refused.to_string().contains("size 12"), "{refused}");
    assert!(ledger.watch_fault().borrow().is_some(), "the ledger faults");
    assert!(ledger.checkpoint_positions().unwrap().iter().all(|p| p.0 != 12), "nothing was signed at 12");
    let append = ledger.append(AppendRequest { events: vec![member_joined_event("ZZ")], expectations: vec![] }).await;
    assert!(matches!(append, Err(LedgerError::Halted(_))), "{append:?}");
}

/// A ledger written before the journal existed starts one from its log and its checkpoints, so
/// what it signed before is never signed otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_without_a_journal_starts_one_from_its_checkpoints() {
    pax_ledger::telemetry::init("error");
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let ledger = open_ledger(&data, LedgerConfig::default()).await.unwrap();
    join_members(&ledger, "E", 8).await;
    let signed = ledger.checkpoint_at(Position(5)).unwrap();
    ledger.shutdown();
    drop(ledger);
    std::fs::remove_file(journal::path(&data)).unwrap();
    let ledger = open_ledger(&data, LedgerConfig::default()).await.unwrap();
    ledger.shutdown();
    drop(ledger);
    let (evidence, _, _) = journal::read(&data).unwrap();
    assert_eq!(evidence.signed[&5].root, signed.checkpoint.root);
    assert_eq!(evidence.furthest.map(|m| m.position), Some(Position(8)));
    assert_eq!(evidence.clean_stop.map(|m| m.position), Some(Position(8)));
}

/// The same through the binary: `serve` exits non-zero with the refusal (no panic), and
/// `serve --read-only` serves what is left over gRPC with writes refused and health NOT_SERVING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_a_shorter_log_and_serves_it_read_only_on_request() {
    pax_ledger::telemetry::init("error");
    let scratch = tempfile::tempdir().unwrap();
    let older = shorter_than_its_journal(scratch.path()).await;
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pax-ledger"))
            .args(ServerProcess::serve_args(&older))
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("the refusal is prompt")
    .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a shorter log is served: {stderr}");
    assert!(stderr.contains("positions 21..=35 are missing") && !stderr.contains("panicked"), "{stderr}");

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pax-ledger"));
    command.args(ServerProcess::serve_args(&older)).arg("--read-only");
    let server = ServerProcess::start_command(command, &scratch.path().join("read-only.stderr")).await;
    let mut client = connect(&server.url).await;
    let events = read_all(&mut client).await;
    assert_eq!(events.len(), 20);
    let refused = client.append(append(vec![member_joined("ZZ")])).await.expect_err("read-only");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let channel = tonic::transport::Channel::from_shared(server.url.clone()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let status = health.check(request).await.unwrap().into_inner().status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
    let pid = server.pid();
    assert!(server.terminate(pid).await.success());
}

/// `export` of a directory whose log is shorter than its journal still writes what is left
/// (that is how evidence gets out), and warns that it is less than was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_a_shorter_log_warns_that_it_is_less_than_was_acknowledged() {
    pax_ledger::telemetry::init("error");
    let scratch = tempfile::tempdir().unwrap();
    let older = shorter_than_its_journal(scratch.path()).await;
    let bundle = scratch.path().join("left.bundle");
    let exported = tokio::process::Command::new(env!("CARGO_BIN_EXE_pax-ledger"))
        .arg("export")
        .arg("--data")
        .arg(&older)
        .arg("--to")
        .arg(&bundle)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&exported.stderr);
    assert!(exported.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: exporting less than this ledger acknowledged") && stderr.contains("21..=35"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&exported.stdout).contains("up to position 20"));
}
