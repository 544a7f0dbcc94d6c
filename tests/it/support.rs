//! The test harness: a real server on 127.0.0.1:0 over a data directory, and event builders.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pax_ledger::ledger::{Ledger, LedgerConfig};
use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use pax_ledger::server::Options;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running server. Stop it with [`TestServer::stop`] to restart on the same directory.
pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    pub ledger: Arc<Ledger>,
    pub data: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server over a fresh temporary directory.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Self::start_in(dir.path()).await;
        server._dir = Some(dir);
        server
    }

    /// A server over `data` (which outlives it: use it to restart).
    pub async fn start_in(data: &Path) -> Self {
        Self::start_with(data, LedgerConfig::default()).await
    }

    pub async fn start_with(data: &Path, config: LedgerConfig) -> Self {
        Self::start_with_options(data, config, Options::default()).await
    }

    /// A server over a fresh temporary directory, reached as `options` say; with TLS, its
    /// `url` is `https://localhost:PORT`.
    pub async fn start_tls(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Self::start_with_options(dir.path(), LedgerConfig::default(), options).await;
        server._dir = Some(dir);
        server
    }

    pub async fn start_with_options(data: &Path, config: LedgerConfig, options: Options) -> Self {
        pax_ledger::telemetry::init("warn");
        let path = data.to_owned();
        let ledger =
            tokio::task::spawn_blocking(move || Ledger::open(&path, config)).await.unwrap().expect("open ledger");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = ledger.clone();
        let url = match options.tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let task = tokio::spawn(async move {
            pax_ledger::server::run_with(listener, served, options, async {
                let _ = stopped.await;
            })
            .await
            .expect("server run");
        });
        Self { addr, url, ledger, data: data.to_owned(), stop: Some(stop), task: Some(task), _dir: None }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone()).unwrap().connect().await.expect("connect")
    }

    pub async fn client(&self) -> LedgerServiceClient<Channel> {
        LedgerServiceClient::new(self.channel().await)
    }

    /// Stops the server gracefully (within 10 s) and returns its temporary directory, if any,
    /// so that a test can restart on it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("server stops within 10 s")
            .expect("server task");
        self._dir.take()
    }

    /// Stops and starts again on the same directory.
    pub async fn restart(self) -> Self {
        let data = self.data.clone();
        let dir = self.stop().await;
        let mut server = Self::start_in(&data).await;
        server._dir = dir;
        server
    }
}

// ------------------------------------------------------------------------------------------
// Event builders

pub fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn event(data: pb::event_data::Kind) -> pb::ProposedEvent {
    pb::ProposedEvent {
        event_id: id(),
        data: Some(pb::EventData { kind: Some(data) }),
        effective_time: None,
        metadata: Some(pb::EventMetadata {
            actor: "test".into(),
            source: "integration test".into(),
            ..Default::default()
        }),
    }
}

pub fn member_joined(code: &str) -> pb::ProposedEvent {
    member_joined_as(code, pb::MemberRole::Member)
}

pub fn member_joined_as(code: &str, role: pb::MemberRole) -> pb::ProposedEvent {
    event(pb::event_data::Kind::MemberJoined(pb::MemberJoined {
        code: code.into(),
        name: format!("Participant {code}"),
        kind: pb::MemberKind::State as i32,
        role: role as i32,
    }))
}

pub fn member_withdrew(code: &str) -> pb::ProposedEvent {
    event(pb::event_data::Kind::MemberWithdrew(pb::MemberWithdrew { code: code.into(), reason: "test".into() }))
}

pub fn project_identified(project_id: &str, host: &str, partners: &[&str]) -> pb::ProposedEvent {
    event(pb::event_data::Kind::ProjectIdentified(pb::ProjectIdentified {
        project_id: project_id.into(),
        title: "Illustrative project".into(),
        pillar: pb::Pillar::Semiconductors as i32,
        host: host.into(),
        partners: partners.iter().map(|p| p.to_string()).collect(),
        companies: vec![],
        description: "illustrative".into(),
    }))
}

pub fn project_status_changed(project_id: &str, status: pb::ProjectStatus) -> pb::ProposedEvent {
    event(pb::event_data::Kind::ProjectStatusChanged(pb::ProjectStatusChanged {
        project_id: project_id.into(),
        status: status as i32,
        reason: String::new(),
    }))
}

pub fn export_rule_changed(rule_id: &str, treatment: pb::Treatment, levy_bps: Option<u32>) -> pb::ProposedEvent {
    event(pb::event_data::Kind::ExportRuleChanged(pb::ExportRuleChanged {
        rule_id: rule_id.into(),
        item: "Nvidia H200".into(),
        origin: "US".into(),
        destination: "CN".into(),
        treatment: treatment as i32,
        levy_bps,
        effective_from: "2025-12-08".into(),
        authority: "test authority".into(),
    }))
}

pub fn commitment_made(commitment_id: &str, member: &str) -> pb::ProposedEvent {
    event(pb::event_data::Kind::CommitmentMade(pb::CommitmentMade {
        commitment_id: commitment_id.into(),
        member: member.into(),
        pillar: pb::Pillar::Energy as i32,
        description: "illustrative commitment".into(),
        project_id: None,
        due_on: "2026-12-31".into(),
    }))
}

/// An append request of `events` with no expectations.
pub fn append(events: Vec<pb::ProposedEvent>) -> pb::AppendRequest {
    pb::AppendRequest { events, expectations: vec![] }
}

pub fn expect_revision(stream: &str, revision: u64) -> pb::StreamExpectation {
    pb::StreamExpectation {
        stream: stream.into(),
        expected: Some(pb::stream_expectation::Expected::Revision(revision)),
    }
}

pub fn expect_state(stream: &str, state: pb::ExpectedState) -> pb::StreamExpectation {
    pb::StreamExpectation {
        stream: stream.into(),
        expected: Some(pb::stream_expectation::Expected::State(state as i32)),
    }
}

/// Reads the whole log forwards.
pub async fn read_all(client: &mut LedgerServiceClient<Channel>) -> Vec<pb::RecordedEvent> {
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .read_all(pb::ReadAllRequest { page_size: 1000, page_token: token.clone(), ..Default::default() })
            .await
            .expect("read_all")
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        token = page.next_page_token;
    }
}

// ------------------------------------------------------------------------------------------
// More builders, and helpers for the API tests (ledger_api, errors, concurrency, idempotency,
// subscribe).

pub fn member_role_changed(code: &str, role: pb::MemberRole) -> pb::ProposedEvent {
    event(pb::event_data::Kind::MemberRoleChanged(pb::MemberRoleChanged { code: code.into(), role: role as i32 }))
}

pub fn commitment_fulfilled(commitment_id: &str) -> pb::ProposedEvent {
    event(pb::event_data::Kind::CommitmentFulfilled(pb::CommitmentFulfilled {
        commitment_id: commitment_id.into(),
        evidence: "illustrative evidence".into(),
    }))
}

pub fn commitment_withdrawn(commitment_id: &str) -> pb::ProposedEvent {
    event(pb::event_data::Kind::CommitmentWithdrawn(pb::CommitmentWithdrawn {
        commitment_id: commitment_id.into(),
        reason: "test".into(),
    }))
}

pub fn summit_convened(date: &str, host: &str, participants: &[&str]) -> pb::ProposedEvent {
    event(pb::event_data::Kind::SummitConvened(pb::SummitConvened {
        date: date.into(),
        host: host.into(),
        chair: "Illustrative chair".into(),
        participants: participants.iter().map(|p| p.to_string()).collect(),
        location: "Washington, D.C.".into(),
    }))
}

/// An append request of `events` with `expectations`.
pub fn append_expecting(events: Vec<pb::ProposedEvent>, expectations: Vec<pb::StreamExpectation>) -> pb::AppendRequest {
    pb::AppendRequest { events, expectations }
}

/// The log's head position, as `ReadAll` reports it.
pub async fn head_position(client: &mut LedgerServiceClient<Channel>) -> u64 {
    client
        .read_all(pb::ReadAllRequest {
            direction: pb::ReadDirection::Backward as i32,
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("read_all")
        .into_inner()
        .head_position
}

/// Reads one stream forwards, every page.
pub async fn read_stream_all(
    client: &mut LedgerServiceClient<Channel>,
    stream: &str,
) -> Result<Vec<pb::RecordedEvent>, tonic::Status> {
    let mut events = Vec::new();
    let mut from_revision = None;
    loop {
        let page = client
            .read_stream(pb::ReadStreamRequest {
                stream: stream.into(),
                from_revision,
                limit: 1000,
                ..Default::default()
            })
            .await?
            .into_inner();
        events.extend(page.events);
        match page.next_revision {
            Some(next) => from_revision = Some(next),
            None => return Ok(events),
        }
    }
}

/// The `ErrorInfo` metadata of a status (panics if it carries none).
pub fn error_info_metadata(status: &tonic::Status) -> std::collections::HashMap<String, String> {
    use tonic_types::StatusExt;
    status.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {status:?}")).metadata
}

/// The fields named by a status's `BadRequest` field violations (panics if it carries none).
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    let bad = status.get_details_bad_request().unwrap_or_else(|| panic!("no BadRequest in {status:?}"));
    bad.field_violations.into_iter().map(|v| v.field).collect()
}

/// The next message of a subscription, within 10 s (panics on timeout, error or end).
pub async fn next_message(stream: &mut tonic::Streaming<pb::SubscribeResponse>) -> pb::subscribe_response::Message {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a subscription message within 10 s")
        .expect("subscription status")
        .expect("subscription still open")
        .message
        .expect("a message")
}

/// A stopped ledger's sled database, opened as the store opens it (sled refuses another
/// segment size), for tests that play an attacker with write access to the disk.
/// Like the store, it waits for a just-closed instance to release the file lock.
pub fn open_sled(dir: &Path) -> sled::Db {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new().path(dir).segment_size(pax_ledger::store::SEGMENT_BYTES).open() {
            Err(e)
                if e.to_string().contains("could not acquire lock") && started.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            opened => return opened.expect("open the ledger's sled database"),
        }
    }
}

/// A stored note checkpoint (its JSON form) whose note states another root, as an attacker
/// without the signing key would forge it: the note's root line replaced, the fields that spell
/// the note out dropped (they are optional on reading), the signature kept.
pub fn forge_note_root(stored: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let file: serde_json::Value = serde_json::from_slice(stored).expect("a checkpoint's JSON form");
    let note = file["note"].as_str().expect("a note checkpoint");
    let root_line = note.lines().nth(2).expect("a root line");
    let forged = note.replacen(root_line, &base64::engine::general_purpose::STANDARD.encode([0x11; 32]), 1);
    serde_json::to_vec(&serde_json::json!({"note": forged, "public_key": file["public_key"]})).unwrap()
}

// ------------------------------------------------------------------------------------------
// The real binary

/// The longest a command-line test waits for the binary to end (a debug build on a loaded
/// machine); past it the test fails and the process is killed.
pub const BINARY_TIMEOUT: Duration = Duration::from_secs(60);

/// `pax-ledger` as a child process, with no `PAX_LEDGER_*` variable inherited from the test's
/// environment, killed if it is dropped before it ends.
pub fn pax_ledger(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pax-ledger"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PAX_LEDGER_") {
            command.env_remove(key);
        }
    }
    command.args(args).env("RUST_LOG", "warn").kill_on_drop(true);
    command
}

/// Runs `command` to its end with `stdin` as its input, within [`BINARY_TIMEOUT`].
pub async fn run_to_end(mut command: tokio::process::Command, stdin: &[u8]) -> std::process::Output {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn pax-ledger");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // Written beside the wait: a child that does not read all of it must not block the test.
    let writer = tokio::spawn(async move {
        let _ = input.write_all(&stdin).await;
    });
    let output = tokio::time::timeout(BINARY_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("pax-ledger did not end within {BINARY_TIMEOUT:?}"))
        .expect("wait for pax-ledger");
    writer.abort();
    output
}

/// The text of a child's stdout or stderr.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
