//! The kill loop: at least 100 SIGKILLs of the real binary under append load, many of them
//! while the server does something else besides appending — folding a views rebuild, or signing
//! a fresh checkpoint — on the same data directory. It reuses the crash test's clients, model
//! and checks (`crash.rs`): after every restart every acknowledged event is where it was
//! acknowledged with the content proposed, every unacknowledged request is whole or absent, and
//! the views have caught up with the log. It adds: every checkpoint the server answered is still
//! the one stored at its size (a size is signed once), a fresh checkpoint is signed right after
//! each restart, and every `FULL_CHECK_EVERY` kills and after the last, `verify --data` passes
//! on the killed directory, the views equal a rebuild and `VerifyLedger` passes.
//!
//! Rerun a schedule with `PAX_CRASH_SEED=N` (thread timing still varies); `PAX_KILL_LOOP_KILLS=N`
//! soaks longer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::audit_service_client::AuditServiceClient;
use pax_ledger::proto::v1::projection_service_client::ProjectionServiceClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::crash::{
    KillRun, RPC_TIMEOUT, Rng, Sample, ServerProcess, channel, check_after_restart, connect, load_then_stop,
    record_attempts, retry_some, run_seeded, tail,
};

/// SIGKILLs under load in one run (override with `PAX_KILL_LOOP_KILLS`).
const KILLS_DEFAULT: usize = 100;
/// Of `KILLS_DEFAULT` kills, at least this many must land during a rebuild, and as many during
/// a checkpoint (scaled with the number of kills): otherwise the loop tested little.
const LANDED_MIN: usize = 10;
/// Concurrent appending clients (half the crash test's: the log grows more slowly, and every
/// round reads all of it back).
const CLIENTS: usize = 4;
/// Bounds of the append load before anything else happens in a round, in milliseconds.
const LOAD_MS_MIN: u64 = 50;
const LOAD_MS_MAX: u64 = 120;
/// Shares of the rounds whose kill is aimed at a views rebuild and at a fresh checkpoint (the
/// rest kill appends alone).
const REBUILD_PERCENT: u64 = 40;
const CHECKPOINT_PERCENT: u64 = 40;
/// How long fresh checkpoints are asked for, one after the other, before the kill.
const CHECKPOINTS_MS_MIN: u64 = 5;
const CHECKPOINTS_MS_MAX: u64 = 60;
/// A fresh checkpoint counts as in flight at the kill once it has waited this long for its
/// answer: long enough to have crossed the loopback connection into the server.
const CHECKPOINT_SEEN_AFTER: Duration = Duration::from_millis(2);
/// The first guess of a rebuild's duration, before one has been seen to finish.
const REBUILD_GUESS: Duration = Duration::from_millis(30);
/// Share of restarts preceded by a start killed during recovery (the crash test covers more).
const STARTUP_KILL_PERCENT: u64 = 10;
/// Every this many kills (and after the last), the killed directory is verified offline, the
/// views are compared with a rebuild and the server verifies the whole ledger.
const FULL_CHECK_EVERY: usize = 20;
/// Events of earlier rounds read back by id after each restart, besides the latest round's (the
/// whole log is read after each one).
const GET_EVENT_SAMPLE: usize = 50;
/// Acknowledged checkpoints read back after each restart besides those of the last round; after
/// a full check's restart every one is.
const CHECKPOINT_SAMPLE: usize = 3;
/// The whole test, for `KILLS_DEFAULT` kills (more get more, `crash::run_seeded`): a hang fails
/// with its seed before nextest stops it (at 5 minutes, `.config/nextest.toml`).
const TEST_TIMEOUT: Duration = Duration::from_secs(280);
/// Every server: its own checkpoint thread signs every 100 events or every second, and the
/// event-id index is snapshotted every 500 events, so that both run in the background of every
/// round too (defaults: 100,000 events or 300 s; 250,000 events).
const SETTINGS: &[(&str, &str)] = &[
    ("PAX_LEDGER_CHECKPOINT_EVERY_EVENTS", "100"),
    ("PAX_LEDGER_CHECKPOINT_EVERY_SECS", "1"),
    ("PAX_LEDGER_ID_SNAPSHOT_EVERY_EVENTS", "500"),
];

// ------------------------------------------------------------------------------------------
// What a round does before its kill

/// What the server is doing, besides appending, when a round kills it.
#[derive(Clone, Copy, Debug)]
enum Plan {
    Appends,
    /// A views rebuild, killed `delay` after the server reports it running.
    Rebuild {
        delay: Duration,
    },
    /// Fresh checkpoints asked for one after the other, killed after `asking`.
    Checkpoints {
        asking: Duration,
    },
}

impl Plan {
    fn draw(rng: &mut Rng, rebuild_estimate: Duration) -> Self {
        match rng.between(0, 99) {
            p if p < REBUILD_PERCENT => {
                let delay = Duration::from_micros(rng.between(0, rebuild_estimate.as_micros() as u64));
                Self::Rebuild { delay }
            }
            p if p < REBUILD_PERCENT + CHECKPOINT_PERCENT => {
                Self::Checkpoints { asking: Duration::from_millis(rng.between(CHECKPOINTS_MS_MIN, CHECKPOINTS_MS_MAX)) }
            }
            _ => Self::Appends,
        }
    }
}

/// What a kill interrupted, as far as the client saw before it struck.
#[derive(Debug)]
enum Interrupted {
    Appends,
    Rebuild {
        /// The live view generation before the rebuild.
        generation: u32,
        /// The server reported the rebuild running.
        seen_running: bool,
        /// The rebuild's result, if it arrived before the kill.
        finished: Option<pb::RebuildResult>,
    },
    Checkpoints {
        /// The fresh checkpoints answered before the kill.
        signed: Vec<pb::SignedCheckpoint>,
        /// How long the one asked for last had waited for its answer, if it had none.
        waiting: Option<Duration>,
    },
}

async fn interrupt_and_kill(server: ServerProcess, plan: Plan) -> Result<Interrupted, String> {
    let interrupted = match plan {
        Plan::Appends => Ok(Interrupted::Appends),
        Plan::Rebuild { delay } => rebuild_until_kill(&server.url, delay).await,
        Plan::Checkpoints { asking } => checkpoints_until_kill(&server.url, asking).await,
    };
    server.kill().await;
    interrupted
}

/// Starts a rebuild, waits until the server reports it running and `delay` more (or until it
/// ended), and returns what it saw, just before the kill.
async fn rebuild_until_kill(url: &str, delay: Duration) -> Result<Interrupted, String> {
    let mut projections = ProjectionServiceClient::new(channel(url).await);
    let status = |mut client: ProjectionServiceClient<Channel>| async move {
        client
            .get_projection_status(pb::GetProjectionStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|e| format!("GetProjectionStatus: {e:?}"))
    };
    let generation = status(projections.clone()).await?.generation;
    let finished = Arc::new(Mutex::new(None));
    let result = finished.clone();
    let rebuild: JoinHandle<Result<(), String>> = tokio::spawn(async move {
        let mut stream = projections
            .rebuild_projections(pb::RebuildProjectionsRequest {})
            .await
            .map_err(|e| format!("RebuildProjections: {e:?}"))?
            .into_inner();
        while let Some(message) = stream.message().await.map_err(|e| format!("RebuildProjections: {e:?}"))? {
            if let Some(pb::rebuild_projections_response::Update::Result(outcome)) = message.update {
                *result.lock().expect("rebuild result") = Some(outcome);
            }
        }
        Ok(())
    });
    let client = ProjectionServiceClient::new(channel(url).await);
    let deadline = Instant::now() + RPC_TIMEOUT;
    let mut seen_running = false;
    while !rebuild.is_finished() && Instant::now() < deadline {
        if status(client.clone()).await?.rebuilding {
            seen_running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(delay).await;
    let finished = finished.lock().expect("rebuild result").clone();
    // A rebuild still running ends with the server; one that ended must have ended well.
    if rebuild.is_finished() {
        rebuild.await.map_err(|e| format!("the rebuild task: {e}"))??;
    }
    Ok(Interrupted::Rebuild { generation, seen_running, finished })
}

/// Asks for fresh checkpoints one after the other for `asking`, and returns those answered and
/// whether one was waiting just before the kill.
async fn checkpoints_until_kill(url: &str, asking: Duration) -> Result<Interrupted, String> {
    #[derive(Default)]
    struct Asked {
        signed: Vec<pb::SignedCheckpoint>,
        waiting_since: Option<Instant>,
        failed: Option<String>,
    }
    let asked = Arc::new(Mutex::new(Asked::default()));
    let mut audit = AuditServiceClient::new(channel(url).await);
    let seen = asked.clone();
    // The loop ends when the kill fails its next request.
    tokio::spawn(async move {
        loop {
            seen.lock().expect("checkpoints").waiting_since = Some(Instant::now());
            let answer = audit.get_checkpoint(pb::GetCheckpointRequest { position: None, fresh: true }).await;
            let mut seen = seen.lock().expect("checkpoints");
            seen.waiting_since = None;
            match answer {
                Ok(signed) => seen.signed.push(signed.into_inner()),
                Err(e) => {
                    seen.failed = Some(format!("a fresh checkpoint failed before the kill: {e:?}"));
                    return;
                }
            }
        }
    });
    tokio::time::sleep(asking).await;
    let mut asked = asked.lock().expect("checkpoints");
    if let Some(failed) = asked.failed.take() {
        return Err(failed);
    }
    Ok(Interrupted::Checkpoints {
        signed: std::mem::take(&mut asked.signed),
        waiting: asked.waiting_since.map(|since| since.elapsed()),
    })
}

// ------------------------------------------------------------------------------------------
// Checkpoints: a model and its checks

/// Every checkpoint the server answered, by size: a size is signed once, so every later answer
/// for it must be the very same bytes.
#[derive(Default)]
struct Signed {
    by_position: BTreeMap<u64, String>,
    /// The sizes answered in the latest round (checked after every restart).
    latest: Vec<u64>,
}

impl Signed {
    fn add(&mut self, checkpoint: pb::SignedCheckpoint) -> Result<(), String> {
        let position = checkpoint.position;
        if let Some(earlier) = self.by_position.get(&position)
            && *earlier != checkpoint.json
        {
            return Err(format!(
                "two checkpoints at size {position}:\n  earlier: {earlier}\n  now:     {}",
                checkpoint.json
            ));
        }
        self.by_position.insert(position, checkpoint.json);
        self.latest.push(position);
        Ok(())
    }

    /// The sizes to read back: the latest round's and a sample of the others, or all.
    fn sizes_to_read_back(&mut self, rng: &mut Rng, all: bool) -> Vec<u64> {
        let mut sizes = std::mem::take(&mut self.latest);
        if all {
            return self.by_position.keys().copied().collect();
        }
        let older: Vec<u64> = self.by_position.keys().copied().collect();
        for _ in 0..CHECKPOINT_SAMPLE.min(older.len()) {
            sizes.push(older[rng.between(0, older.len() as u64 - 1) as usize]);
        }
        sizes
    }
}

/// Every size in `sizes` still answers the checkpoint acknowledged there, byte for byte.
async fn check_signed(url: &str, signed: &Signed, sizes: Vec<u64>) -> Result<(), String> {
    let audit = AuditServiceClient::new(channel(url).await);
    let mut answers = futures::stream::iter(sizes.into_iter().map(|position| {
        let mut audit = audit.clone();
        async move {
            let request = pb::GetCheckpointRequest { position: Some(position), fresh: false };
            (position, audit.get_checkpoint(request).await)
        }
    }))
    .buffer_unordered(8);
    while let Some((position, answer)) = answers.next().await {
        let stored = answer.map_err(|e| format!("GetCheckpoint at {position}: {e:?}"))?.into_inner();
        if stored.json != signed.by_position[&position] {
            return Err(format!(
                "the checkpoint acknowledged at size {position} is gone or changed:\n  acknowledged: {}\n  now: {}",
                signed.by_position[&position], stored.json
            ));
        }
    }
    Ok(())
}

/// The killed (or stopped) directory verifies offline; returns the position it verified to.
fn verify_offline(data: &Path) -> Result<u64, String> {
    let (ok, verdict) = crate::verify::verify(data);
    match verdict["position"].as_u64() {
        Some(position) if ok && verdict["verdict"] == "ok" => Ok(position),
        _ => Err(format!("verify --data: {verdict}")),
    }
}

/// What the kill of a round landed during, counted in `tally`, as a few words for its line. A
/// rebuild counts when the server reported it running, its result had not come back before the
/// kill, and the restarted server still serves the generation from before it (so its switch
/// had not happened); `estimate`, the delay drawn for the next rebuild's kill, follows the
/// rebuilds that finished first.
async fn landed(
    interrupted: &Interrupted,
    url: &str,
    tally: &mut Tally,
    estimate: &mut Duration,
) -> Result<&'static str, String> {
    Ok(match interrupted {
        Interrupted::Appends => "appends",
        Interrupted::Rebuild { generation, seen_running, finished } => {
            let live = ProjectionServiceClient::new(channel(url).await)
                .get_projection_status(pb::GetProjectionStatusRequest {})
                .await
                .map_err(|e| format!("GetProjectionStatus: {e:?}"))?
                .into_inner();
            if let Some(outcome) = finished {
                *estimate = Duration::from_secs_f64(outcome.seconds);
            }
            if *seen_running && finished.is_none() && live.generation == *generation {
                tally.during_rebuild += 1;
                "a rebuild"
            } else {
                tally.rebuilds_over += 1;
                "appends (the rebuild was over)"
            }
        }
        Interrupted::Checkpoints { waiting, .. } => {
            if waiting.is_some_and(|w| w >= CHECKPOINT_SEEN_AFTER) {
                tally.during_checkpoint += 1;
                "a checkpoint"
            } else {
                tally.checkpoints_not_waiting += 1;
                "appends (no checkpoint waiting)"
            }
        }
    })
}

/// After a restart at `head`: acknowledged checkpoints are still stored as they were answered,
/// a fresh one is signed at the head (the size the kill may have left recorded in the head
/// journal but not stored), and, when `full`, `VerifyLedger` passes, over every stored
/// checkpoint.
async fn check_checkpoints(url: &str, signed: &mut Signed, rng: &mut Rng, head: u64, full: bool) -> Result<(), String> {
    let sizes = signed.sizes_to_read_back(rng, full);
    check_signed(url, signed, sizes).await?;
    let mut audit = AuditServiceClient::new(channel(url).await);
    let fresh = audit
        .get_checkpoint(pb::GetCheckpointRequest { position: None, fresh: true })
        .await
        .map_err(|e| format!("a fresh checkpoint after the restart: {e:?}"))?
        .into_inner();
    if fresh.position != head {
        return Err(format!(
            "a fresh checkpoint after the restart was signed at {}, the head is {head}",
            fresh.position
        ));
    }
    signed.add(fresh)?;
    if full {
        let verdict = crate::audit_server::verify(&mut audit).await;
        let acknowledged = signed.by_position.len() as u64;
        if !verdict.ok || verdict.position != head || verdict.checkpoints_verified < acknowledged {
            return Err(format!("VerifyLedger at head {head}, {acknowledged} checkpoints acknowledged: {verdict:?}"));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The test

/// What the loop counted.
#[derive(Debug, Default)]
struct Tally {
    kills: usize,
    during_rebuild: usize,
    /// Rounds aimed at a rebuild whose rebuild had finished (or was never seen running).
    rebuilds_over: usize,
    during_checkpoint: usize,
    /// Rounds aimed at a checkpoint in which none was waiting for its answer at the kill.
    checkpoints_not_waiting: usize,
    startup_kills: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_kills_during_appends_rebuilds_and_checkpoints() {
    run_seeded("kill loop", "PAX_KILL_LOOP_KILLS", KILLS_DEFAULT, TEST_TIMEOUT, kill_loop).await;
}

async fn kill_loop(seed: u64, kills: usize) {
    let started = Instant::now();
    let mut run = KillRun::new(seed, SETTINGS);
    let mut signed = Signed::default();
    let mut tally = Tally::default();
    let mut rebuild_estimate = REBUILD_GUESS;
    let mut server = run.start(0).await;

    for round in 0..kills {
        let fail = |what: String, stderr: &Path| -> ! {
            panic!("round {round} (seed {seed}): {what}\nstderr:\n{}", tail(stderr))
        };
        let killed_stderr = run.stderr_of(round);
        let load = Duration::from_millis(run.rng.between(LOAD_MS_MIN, LOAD_MS_MAX));
        let plan = Plan::draw(&mut run.rng, rebuild_estimate);
        let (results, killed_at, _, interrupted) =
            load_then_stop(server, round, &mut run.rng, &run.codes, CLIENTS, load, |server| {
                interrupt_and_kill(server, plan)
            })
            .await;
        tally.kills += 1;
        let interrupted = interrupted.unwrap_or_else(|e| fail(e, &killed_stderr));
        let (acked, unacked) =
            record_attempts(&mut run.model, round, results, killed_at).unwrap_or_else(|e| fail(e, &killed_stderr));
        if let Interrupted::Checkpoints { signed: answered, .. } = &interrupted {
            for checkpoint in answered {
                signed.add(checkpoint.clone()).unwrap_or_else(|e| fail(e, &killed_stderr));
            }
        }

        let full = (round + 1) % FULL_CHECK_EVERY == 0 || round + 1 == kills;
        let verified = full.then(|| verify_offline(&run.data).unwrap_or_else(|e| fail(e, &killed_stderr)));
        let (restarted, startup_kill, restart_took) = run.restart(round, STARTUP_KILL_PERCENT).await;
        server = restarted;
        tally.startup_kills += usize::from(startup_kill.is_some());
        let checking = Instant::now();
        let stderr = run.stderr_of(round + 1);
        let found =
            check_after_restart(&server, &mut run.model, &mut run.rng, round, Sample::Some(GET_EVENT_SAMPLE), full)
                .await
                .unwrap_or_else(|e| fail(format!("after the kill: {e}"), &stderr));
        let head = found.head;
        if let Some(verified) = verified
            && verified != head
        {
            fail(
                format!("verify --data verified the killed directory to {verified}, the restart serves {head}"),
                &stderr,
            );
        }

        let landed = landed(&interrupted, &server.url, &mut tally, &mut rebuild_estimate)
            .await
            .unwrap_or_else(|e| fail(e, &stderr));
        check_checkpoints(&server.url, &mut signed, &mut run.rng, head, full)
            .await
            .unwrap_or_else(|e| fail(e, &stderr));
        let checked = checking.elapsed();
        let mut client = connect(&server.url).await;
        let retried = retry_some(&mut client, &mut run.model, &mut run.rng, round, head)
            .await
            .unwrap_or_else(|e| fail(format!("after the kill: {e}"), &stderr));
        eprintln!(
            "kill {round:3}: during {landed}; load {load:?}, {acked} requests acknowledged, {unacked} not: {} whole \
             in the log, {} absent; head {head}; restart {restart_took:.0?}{}, checks {checked:.0?}{}; {retried} retried",
            found.present,
            found.absent,
            startup_kill.map_or_else(String::new, |d| format!(" (killed once {d:?} into it)")),
            if full { " (verified offline and online, views equal a rebuild)" } else { "" },
        );
    }

    let head = crate::support::head_position(&mut connect(&server.url).await).await;
    let pid = server.pid();
    let status = server.terminate(pid).await;
    assert!(status.success(), "the last server exited with {status} after SIGTERM");
    let verified = verify_offline(&run.data).unwrap_or_else(|e| panic!("the stopped ledger (seed {seed}): {e}"));
    assert_eq!(verified, head, "verify --data on the stopped ledger (seed {seed})");
    // Each kill during a rebuild left a half-built generation; each start drops those it finds.
    // Left: the live one, and perhaps the one the last full check's rebuild retired.
    let generations: Vec<_> = crate::support::open_sled(&run.data)
        .tree_names()
        .into_iter()
        .filter(|name| name.starts_with(b"views-"))
        .map(|name| String::from_utf8_lossy(&name).into_owned())
        .collect();
    assert!(generations.len() <= 2, "view generations left behind (seed {seed}): {generations:?}");
    eprintln!(
        "kill loop: {} SIGKILLs under load in {:.1?} ({} during a views rebuild, {} during a fresh checkpoint; {} more \
         during startup); {} events and {} checkpoints acknowledged, none lost; head {verified}; seed {seed}",
        tally.kills,
        started.elapsed(),
        tally.during_rebuild,
        tally.during_checkpoint,
        tally.startup_kills,
        run.model.acked_events(),
        signed.by_position.len(),
    );
    let landed_min = LANDED_MIN * kills / KILLS_DEFAULT;
    assert!(
        tally.during_rebuild >= landed_min && tally.during_checkpoint >= landed_min,
        "only {} kills landed during a rebuild and {} during a checkpoint (at least {landed_min} each wanted): the \
         loop tested little ({tally:?})",
        tally.during_rebuild,
        tally.during_checkpoint,
    );
}
