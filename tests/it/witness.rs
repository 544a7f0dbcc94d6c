//! Two witnesses (`pax-ledger witness serve`, the real binary) cosign a ledger's checkpoints
//! while its log grows; a ledger that presents a forked history (an older copy of its data
//! directory, with other events appended) gets no cosignature, and `verify --quorum 2` fails
//! on it while it passes on the honest log; a witness killed with SIGKILL and restarted still
//! refuses the fork.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use pax_ledger::audit::checkpoint::SignedCheckpoint;
use pax_ledger::audit::{keys, note, witness};
use pax_ledger::domain::Position;
use pax_ledger::ledger::{AuditConfig, LedgerConfig};
use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::audit_service_client::AuditServiceClient;
use pax_ledger::server::Options;
use pax_ledger::witness::WitnessEndpoint;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::*;

const ORIGIN: &str = "pax-ledger.test/witnessed";

/// A running `witness serve`: its address and its verifier key.
struct WitnessProcess {
    child: tokio::process::Child,
    addr: String,
    verifier_key: String,
    name: String,
    key: VerifyingKey,
}

impl WitnessProcess {
    async fn start(dir: &Path, name: &str, log: &str, listen: &str) -> Self {
        let mut child = pax_ledger(&[
            "witness",
            "serve",
            "--data",
            dir.to_str().unwrap(),
            "--listen",
            listen,
            "--name",
            name,
            "--log",
            log,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a witness");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(BINARY_TIMEOUT, lines.next_line()).await.expect("in time").unwrap().unwrap();
        // "witness NAME listening on ADDR; its verifier key: KEY"
        let addr = line.split(" listening on ").nth(1).unwrap().split(';').next().unwrap().to_owned();
        let verifier_key = line.rsplit(' ').next().unwrap().to_owned();
        let (parsed_name, key) = pax_ledger::witness::parse_witness_key(&verifier_key).unwrap();
        assert_eq!(parsed_name, name);
        Self { child, addr, verifier_key, name: name.to_owned(), key }
    }

    fn endpoint(&self) -> WitnessEndpoint {
        WitnessEndpoint::parse(&format!("{}@http://{}", self.verifier_key, self.addr)).unwrap()
    }

    async fn kill(mut self) -> String {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        self.addr
    }
}

async fn ledger(data: &Path, witnesses: &[&WitnessProcess]) -> TestServer {
    let config = LedgerConfig {
        audit: AuditConfig { origin: Some(ORIGIN.into()), ..AuditConfig::default() },
        ..LedgerConfig::default()
    };
    let options = Options { witnesses: witnesses.iter().map(|w| w.endpoint()).collect(), ..Options::default() };
    TestServer::start_with_options(data, config, options).await
}

/// Signs a checkpoint at the head now; then the stored one, once `want` witnesses cosigned it
/// (or after `wait`, however many did).
async fn checkpoint(
    server: &TestServer,
    witnesses: &[&WitnessProcess],
    want: usize,
    wait: Duration,
) -> SignedCheckpoint {
    let mut audit = AuditServiceClient::new(server.channel().await);
    let fresh = audit.get_checkpoint(pb::GetCheckpointRequest { position: None, fresh: true }).await.unwrap();
    let position = Position(fresh.into_inner().position);
    let keys: Vec<(String, VerifyingKey)> = witnesses.iter().map(|w| (w.name.clone(), w.key)).collect();
    let deadline = Instant::now() + wait;
    loop {
        let stored = server.ledger.checkpoint_at(position).unwrap();
        if witness::count_cosigners(&stored, &keys) >= want || Instant::now() > deadline {
            return stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cosigners(checkpoint: &SignedCheckpoint, witnesses: &[&WitnessProcess]) -> usize {
    let keys: Vec<(String, VerifyingKey)> = witnesses.iter().map(|w| (w.name.clone(), w.key)).collect();
    witness::count_cosigners(checkpoint, &keys)
}

async fn append_joins(server: &TestServer, prefix: char, count: u8) {
    let events = (0..count).map(|i| member_joined(&format!("{prefix}{}", (b'A' + i) as char))).collect();
    server.client().await.append(append(events)).await.unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

async fn verify_against(saved: &Path, server: &TestServer, witnesses: &[&WitnessProcess]) -> (bool, serde_json::Value) {
    let mut args = vec!["verify", "--against", saved.to_str().unwrap(), "--addr", &server.url, "--output", "json"];
    for w in witnesses {
        args.extend(["--witness", &w.verifier_key]);
    }
    args.extend(["--quorum", "2"]);
    let output = run_to_end(pax_ledger(&args), b"").await;
    let verdict = String::from_utf8(output.stdout).unwrap();
    let last = verdict.lines().last().unwrap_or_else(|| panic!("no verdict: {}", text(&output.stderr)));
    (output.status.success(), serde_json::from_str(last).unwrap())
}

/// Exports a stopped ledger and runs `verify --bundle --quorum 2` on it.
async fn verify_bundle(data: &Path, bundle: &Path, witnesses: &[&WitnessProcess]) -> (bool, serde_json::Value) {
    let exported =
        run_to_end(pax_ledger(&["export", "--data", data.to_str().unwrap(), "--to", bundle.to_str().unwrap()]), b"")
            .await;
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let mut args = vec!["verify", "--bundle", bundle.to_str().unwrap(), "--output", "json", "--quorum", "2"];
    for w in witnesses {
        args.extend(["--witness", &w.verifier_key]);
    }
    let output = run_to_end(pax_ledger(&args), b"").await;
    let verdict = String::from_utf8(output.stdout).unwrap();
    let last = verdict.lines().last().unwrap_or_else(|| panic!("no verdict: {}", text(&output.stderr)));
    (output.status.success(), serde_json::from_str(last).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witnesses_cosign_the_honest_log_and_refuse_a_fork_even_after_a_sigkill() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = |name: &str| -> PathBuf { scratch.path().join(name) };
    let data = dir("data");
    std::fs::create_dir_all(&data).unwrap();
    let log_key = keys::load_or_generate(&data.join("signing.key")).unwrap().verifying_key();
    let log = note::verifier_key(ORIGIN, &log_key);
    let w1 = WitnessProcess::start(&dir("w1"), "witness.test/w1", &log, "127.0.0.1:0").await;
    let w2 = WitnessProcess::start(&dir("w2"), "witness.test/w2", &log, "127.0.0.1:0").await;
    let both = [&w1, &w2];

    // The honest log: every checkpoint carries both cosignatures.
    let server = ledger(&data, &both).await;
    append_joins(&server, 'A', 10).await;
    let first = checkpoint(&server, &both, 2, Duration::from_secs(20)).await;
    assert_eq!(cosigners(&first, &both), 2, "{}", first.to_note().unwrap());
    let saved = dir("saved.note");
    std::fs::write(&saved, first.to_note().unwrap()).unwrap();
    server.stop().await;
    let older = dir("older");
    copy_dir(&data, &older);

    let server = ledger(&data, &both).await;
    append_joins(&server, 'B', 10).await;
    let second = checkpoint(&server, &both, 2, Duration::from_secs(20)).await;
    assert_eq!(cosigners(&second, &both), 2);
    assert_eq!(second.checkpoint.position, 20);
    // The note as GetCheckpoint serves it carries the cosignatures too.
    let mut audit = AuditServiceClient::new(server.channel().await);
    let served = audit.get_checkpoint(pb::GetCheckpointRequest { position: Some(20), fresh: false }).await.unwrap();
    let served = served.into_inner();
    assert_eq!(served.note.matches('\u{2014}').count(), 3, "the log's signature and two cosignatures");
    // A signed-note implementation we did not write reads the cosigned note (it ignores the
    // witnesses' lines, unknown to it, and checks the log's).
    let (verdict, ok) =
        crate::interop::go_check(&serde_json::json!({"verifier_key": served.verifier_key, "note": served.note})).await;
    assert!(ok, "{verdict}");
    let (ok, verdict) = verify_against(&saved, &server, &both).await;
    assert!(ok, "{verdict}");
    assert_eq!(verdict["witnesses_cosigned"], 2);
    server.stop().await;
    // Offline, a bundle carries the cosignatures: its latest note has the quorum.
    let (ok, verdict) = verify_bundle(&data, &dir("honest.jsonl"), &both).await;
    assert!(ok, "{verdict}");
    assert_eq!(verdict["witnesses_cosigned"], 2);

    // The fork: the older copy, with other events. It extends the saved checkpoint, but no
    // witness cosigns it, and the quorum check fails.
    let fork = ledger(&older, &both).await;
    append_joins(&fork, 'F', 15).await;
    let forked = checkpoint(&fork, &both, 1, Duration::from_secs(3)).await;
    assert_eq!(forked.checkpoint.position, 25);
    assert_eq!(cosigners(&forked, &both), 0, "a witness cosigned a fork: {}", forked.to_note().unwrap());
    let (ok, verdict) = verify_against(&saved, &fork, &both).await;
    assert!(!ok, "{verdict}");
    assert!(verdict["reason"].as_str().unwrap().contains("quorum"), "{verdict}");
    fork.stop().await;
    let (ok, verdict) = verify_bundle(&older, &dir("fork.jsonl"), &both).await;
    assert!(!ok && verdict["reason"].as_str().unwrap().contains("quorum"), "{verdict}");

    // A witness killed and restarted on its directory still refuses the fork.
    let addr = w1.kill().await;
    let w1 = WitnessProcess::start(&dir("w1"), "witness.test/w1", &log, &addr).await;
    let both = [&w1, &w2];
    let fork = ledger(&older, &both).await;
    append_joins(&fork, 'G', 5).await;
    let forked = checkpoint(&fork, &both, 1, Duration::from_secs(3)).await;
    assert_eq!(cosigners(&forked, &both), 0);
    fork.stop().await;
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir("w1").join("witness.state")).unwrap()).unwrap();
    assert_eq!(state[ORIGIN]["size"], 20, "the witness still holds the honest size: {state}");
}
