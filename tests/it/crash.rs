//! Crash test against the real binary: clients append while the server is killed with SIGKILL
//! at a random moment, over and over on the same data directory. After every restart the log
//! must hold every acknowledged event where it was acknowledged, be dense and free of
//! duplicates, and hold every unacknowledged request entirely or not at all.
//!
//! The schedule (kill moments, request shapes) comes from a seed printed at the start; rerun
//! with `PAX_CRASH_SEED=N` to repeat it (thread timing still varies) and `PAX_CRASH_ROUNDS=N`
//! to soak longer.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::support::{expect_revision, expect_state, export_rule_changed, member_joined};

/// Kill-and-restart rounds in one run (override with `PAX_CRASH_ROUNDS`).
const ROUNDS_DEFAULT: usize = 20;
/// Concurrent appending clients.
const CLIENTS: usize = 8;
/// Export rules each client owns in a round; only that client writes them, so it always knows
/// their revisions.
const RULES_PER_CLIENT: usize = 3;
/// Bounds of the load before the kill, in milliseconds.
const LOAD_MS_MIN: u64 = 200;
const LOAD_MS_MAX: u64 = 700;
/// Share of rounds in which the restart is itself killed once, during recovery, first.
const STARTUP_KILL_PERCENT: u64 = 30;
/// Unacknowledged requests retried after each restart.
const RETRIES_PER_ROUND: usize = 3;
/// Events checked through GetEvent after each restart besides those of the last round; after
/// the final restart every acknowledged event is.
const GET_EVENT_SAMPLE: usize = 200;
/// Any single RPC.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Starting the binary until it prints its address (a debug build on a loaded CI machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A graceful stop (DESIGN.md §6: SIGTERM finishes in-flight appends and exits 0).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole test: a hang fails rather than blocks.
const TEST_TIMEOUT: Duration = Duration::from_secs(300);

// ------------------------------------------------------------------------------------------
// The binary as a child process

/// A `pax-ledger serve` child process that has printed its address.
pub struct ServerProcess {
    child: Child,
    pub url: String,
    stderr_path: PathBuf,
    _stdout: JoinHandle<()>,
}

impl ServerProcess {
    /// `serve --data DATA --listen 127.0.0.1:0`.
    pub fn serve_args(data: &Path) -> Vec<OsString> {
        vec!["serve".into(), "--data".into(), data.into(), "--listen".into(), "127.0.0.1:0".into()]
    }

    /// `pax-ledger serve` on `data`, with `settings` (`PAX_LEDGER_*` variables) in its
    /// environment.
    pub fn serve_command(data: &Path, settings: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pax-ledger"));
        command.args(Self::serve_args(data)).envs(settings.iter().copied());
        command
    }

    /// The real binary, serving `data`, with its stderr in `stderr_path`.
    pub async fn start(data: &Path, stderr_path: &Path) -> Self {
        Self::start_command(Self::serve_command(data, &[]), stderr_path).await
    }

    /// Runs `command` (the binary, or a wrapper that execs it) and waits for its
    /// `pax-ledger listening on ADDR` line. It logs warnings only, unless `command` sets
    /// `RUST_LOG`.
    pub async fn start_command(mut command: Command, stderr_path: &Path) -> Self {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PAX_LEDGER_") {
                command.env_remove(key);
            }
        }
        let stderr = std::fs::File::create(stderr_path).expect("create the server's stderr file");
        // Quiet unless the caller wants to read the log.
        if !command.as_std().get_envs().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", "warn");
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr).kill_on_drop(true);
        let mut child = command.spawn().expect("spawn pax-ledger");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let addr = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read the server's stdout") {
                if let Some(addr) = line.strip_prefix("pax-ledger listening on ") {
                    return Some(addr.trim().parse::<SocketAddr>().expect("a socket address"));
                }
            }
            None
        })
        .await;
        let addr = match addr {
            Ok(Some(addr)) => addr,
            Ok(None) => panic!("the server exited before listening; stderr:\n{}", tail(stderr_path)),
            Err(_) => panic!("the server did not listen within {START_TIMEOUT:?}; stderr:\n{}", tail(stderr_path)),
        };
        // Keep draining stdout: a closed pipe would fail the server's next write.
        let stdout = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, url: format!("http://{addr}"), stderr_path: stderr_path.to_owned(), _stdout: stdout }
    }

    /// Runs `command` (a [`Self::serve_command`]) and kills it with SIGKILL after `delay`,
    /// whether or not it is listening yet: a crash during recovery must leave the store as good
    /// as before.
    pub async fn kill_during_startup(mut command: Command, stderr_path: &Path, delay: Duration) {
        let stderr = std::fs::File::create(stderr_path).expect("create the server's stderr file");
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn pax-ledger");
        tokio::time::sleep(delay).await;
        child.kill().await.expect("SIGKILL the starting server");
    }

    /// The id of the spawned process (the server, or its wrapper).
    pub fn pid(&self) -> i32 {
        self.child.id().expect("a running child") as i32
    }

    /// SIGKILL, then reap.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL the server");
    }

    /// Sends SIGTERM to `pid` (the server: this child or one of its descendants) and waits for
    /// this child to exit.
    pub async fn terminate(mut self, pid: i32) -> ExitStatus {
        send_signal(pid, libc::SIGTERM);
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => {
                panic!("the server did not exit within {STOP_TIMEOUT:?} of SIGTERM; stderr:\n{}", self.stderr_tail())
            }
        }
    }

    /// Waits (within the stop timeout) for the child to exit on its own.
    pub async fn wait(mut self) -> ExitStatus {
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => panic!("the server did not exit within {STOP_TIMEOUT:?}; stderr:\n{}", self.stderr_tail()),
        }
    }

    /// The end of the server's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr_path)
    }
}

pub fn send_signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of this process.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
}

pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A connection to `url`, any call on it bounded by the RPC timeout.
pub async fn channel(url: &str) -> Channel {
    let endpoint =
        Endpoint::from_shared(url.to_owned()).expect("url").connect_timeout(RPC_TIMEOUT).timeout(RPC_TIMEOUT);
    tokio::time::timeout(RPC_TIMEOUT, endpoint.connect())
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

pub async fn connect(url: &str) -> LedgerServiceClient<Channel> {
    LedgerServiceClient::new(channel(url).await).max_decoding_message_size(64 * 1024 * 1024)
}

// ------------------------------------------------------------------------------------------
// A small, seedable PRNG (SplitMix64): the schedule must be reproducible from a printed seed.

#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// A child generator, independent of this one's later draws.
    pub fn fork(&mut self, salt: u64) -> Self {
        Self(self.next_u64() ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }
}

fn seed() -> u64 {
    match std::env::var("PAX_CRASH_SEED") {
        Ok(raw) => raw.parse().expect("PAX_CRASH_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64,
    }
}

/// Runs the `what` of `run(seed, rounds)`: the seed from `PAX_CRASH_SEED` (or the clock), the
/// rounds from the variable `rounds_var` (or `rounds_default`), printed first with how to rerun
/// them. Fails if it takes longer than `timeout` for `rounds_default` rounds, `4 × timeout` for
/// twice as many (each round reads back the whole log, which grows with the rounds): a hang
/// fails rather than blocks.
pub async fn run_seeded<Fut>(
    what: &str,
    rounds_var: &str,
    rounds_default: usize,
    timeout: Duration,
    run: impl FnOnce(u64, usize) -> Fut,
) where
    Fut: std::future::Future<Output = ()>,
{
    let seed = seed();
    let rounds = std::env::var(rounds_var)
        .ok()
        .map_or(rounds_default, |r| r.parse().unwrap_or_else(|_| panic!("{rounds_var} must be a number")));
    eprintln!("{what}: seed {seed} ({rounds} rounds); rerun with PAX_CRASH_SEED={seed}");
    let scale = rounds.div_ceil(rounds_default).max(1) as u32;
    let timeout = timeout * scale * scale;
    tokio::time::timeout(timeout, run(seed, rounds))
        .await
        .unwrap_or_else(|_| panic!("the {what} (seed {seed}) did not finish within {timeout:?}"));
}

/// A run of kills and restarts on one data directory: the schedule, what was sent, and the
/// settings and stderr files of the server's starts.
pub struct KillRun {
    dir: tempfile::TempDir,
    pub data: PathBuf,
    settings: &'static [(&'static str, &'static str)],
    pub rng: Rng,
    pub codes: Arc<Mutex<CodeBook>>,
    pub model: Model,
}

impl KillRun {
    /// A fresh data directory, served with `settings` (`PAX_LEDGER_*` variables).
    pub fn new(seed: u64, settings: &'static [(&'static str, &'static str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        Self {
            dir,
            data,
            settings,
            rng: Rng::new(seed),
            codes: Arc::new(Mutex::new(CodeBook::default())),
            model: Model::default(),
        }
    }

    /// The server's stderr in its `n`th start.
    pub fn stderr_of(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("server-{n}.stderr"))
    }

    pub fn serve_command(&self) -> Command {
        ServerProcess::serve_command(&self.data, self.settings)
    }

    /// Start number `n`.
    pub async fn start(&self, n: usize) -> ServerProcess {
        ServerProcess::start_command(self.serve_command(), &self.stderr_of(n)).await
    }

    /// Starts the server after `round`, but in `startup_kill_percent` of the rounds first starts
    /// it and kills it once during recovery. Returns it, when that kill came, and how long the
    /// restart took.
    pub async fn restart(
        &mut self,
        round: usize,
        startup_kill_percent: u64,
    ) -> (ServerProcess, Option<Duration>, Duration) {
        let restarting = Instant::now();
        let rng = &mut self.rng;
        let startup_kill = rng.chance(startup_kill_percent).then(|| Duration::from_millis(rng.between(0, 150)));
        if let Some(delay) = startup_kill {
            ServerProcess::kill_during_startup(self.serve_command(), &self.stderr_of(round + 1), delay).await;
        }
        let server = self.start(round + 1).await;
        (server, startup_kill, restarting.elapsed())
    }
}

// ------------------------------------------------------------------------------------------
// Requests and what became of them

/// Member codes handed out so far (2–4 upper-case letters), unique over the whole run, so that
/// every `MemberJoined` passes the domain's rules whatever happened to earlier requests.
#[derive(Default)]
pub struct CodeBook {
    used: HashSet<String>,
}

impl CodeBook {
    fn fresh(&mut self, rng: &mut Rng) -> String {
        loop {
            let len = rng.between(2, 4) as usize;
            let code: String = (0..len).map(|_| (b'A' + rng.between(0, 25) as u8) as char).collect();
            if self.used.insert(code.clone()) {
                return code;
            }
        }
    }
}

/// Where one event of a request landed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placed {
    stream: String,
    revision: u64,
    position: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Fate {
    /// The server acknowledged it at these places.
    Acked(Vec<Placed>),
    /// Sent, never acknowledged, not yet looked for.
    Unknown,
    /// Never acknowledged, but found whole in the log after a restart.
    Present(Vec<Placed>),
    /// Never acknowledged and not in the log.
    Absent,
}

struct Sent {
    round: usize,
    client: usize,
    request: pb::AppendRequest,
    fate: Fate,
    /// The round after whose restart it was sent again, if it was.
    retried_after: Option<usize>,
}

/// What one client saw of one request.
pub struct Attempt {
    request: pb::AppendRequest,
    result: Result<pb::AppendResponse, tonic::Status>,
    /// When the answer (or the error) arrived.
    at: Instant,
}

/// Everything sent over the whole run, and where each event was last seen.
#[derive(Default)]
pub struct Model {
    sent: Vec<Sent>,
    /// event id → (index in `sent`, index in its request)
    by_id: HashMap<String, (usize, usize)>,
}

impl Model {
    fn add(&mut self, round: usize, client: usize, request: pb::AppendRequest, fate: Fate) -> usize {
        let index = self.sent.len();
        for (i, event) in request.events.iter().enumerate() {
            let previous = self.by_id.insert(event.event_id.clone(), (index, i));
            assert!(previous.is_none(), "the test generated event id {} twice", event.event_id);
        }
        self.sent.push(Sent { round, client, request, fate, retried_after: None });
        index
    }

    pub fn acked_events(&self) -> usize {
        self.sent.iter().map(|s| if let Fate::Acked(p) = &s.fate { p.len() } else { 0 }).sum()
    }
}

fn stream_of(event: &pb::ProposedEvent) -> String {
    match event.data.as_ref().and_then(|d| d.kind.as_ref()) {
        Some(pb::event_data::Kind::MemberJoined(m)) => format!("member-{}", m.code),
        Some(pb::event_data::Kind::ExportRuleChanged(r)) => format!("export-rule-{}", r.rule_id),
        other => panic!("the crash test does not generate {other:?}"),
    }
}

/// The places an acknowledgement names, checked against the request it answers.
fn placed_of(request: &pb::AppendRequest, response: &pb::AppendResponse) -> Result<Vec<Placed>, String> {
    if response.events.len() != request.events.len() {
        return Err(format!("{} events acknowledged for a request of {}", response.events.len(), request.events.len()));
    }
    let mut placed = Vec::with_capacity(response.events.len());
    for (proposed, appended) in request.events.iter().zip(&response.events) {
        if appended.event_id != proposed.event_id || appended.stream != stream_of(proposed) {
            return Err(format!(
                "acknowledgement {appended:?} does not match the proposed event {}",
                proposed.event_id
            ));
        }
        placed.push(Placed {
            stream: appended.stream.clone(),
            revision: appended.revision,
            position: appended.position,
        });
    }
    Ok(placed)
}

fn same_content(recorded: &pb::RecordedEvent, proposed: &pb::ProposedEvent) -> bool {
    recorded.event_id == proposed.event_id
        && recorded.data == proposed.data
        && recorded.effective_time == proposed.effective_time
        && recorded.metadata == proposed.metadata
}

// ------------------------------------------------------------------------------------------
// Load

/// One client's work in one round: it owns `RULES_PER_CLIENT` export rules (fresh each round)
/// and appends until the server dies or `stop` is set, one request at a time.
struct LoadClient {
    round: usize,
    client: usize,
    rng: Rng,
    /// (rule id, its last revision as this client knows it)
    rules: Vec<(String, Option<u64>)>,
    codes: Arc<Mutex<CodeBook>>,
}

impl LoadClient {
    fn next_request(&mut self) -> pb::AppendRequest {
        let rng = &mut self.rng;
        let count = if rng.chance(50) { 1 } else { rng.between(2, 10) as usize };
        let mut events = Vec::with_capacity(count);
        let mut rules_touched = Vec::new();
        for _ in 0..count {
            let mut event = if rng.chance(60) {
                let rule = rng.between(0, RULES_PER_CLIENT as u64 - 1) as usize;
                if !rules_touched.contains(&rule) {
                    rules_touched.push(rule);
                }
                let (treatment, levy) = match rng.between(0, 3) {
                    0 => (pb::Treatment::Allowed, None),
                    1 => (pb::Treatment::AllowedWithLevy, Some(rng.between(0, 10_000) as u32)),
                    2 => (pb::Treatment::LicenseRequired, None),
                    _ => (pb::Treatment::Prohibited, None),
                };
                export_rule_changed(&self.rules[rule].0, treatment, levy)
            } else {
                member_joined(&self.codes.lock().expect("code book").fresh(rng))
            };
            event.effective_time = Some(prost_types::Timestamp {
                seconds: 1_700_000_000 + rng.between(0, 1 << 26) as i64,
                nanos: rng.between(0, 999_999_999) as i32,
            });
            if let Some(metadata) = event.metadata.as_mut() {
                metadata.correlation_id = format!("r{}-c{}", self.round, self.client);
                metadata.labels.insert("crash.round".into(), self.round.to_string());
            }
            events.push(event);
        }
        let mut expectations = Vec::new();
        for (rule, (rule_id, revision)) in self.rules.iter().enumerate() {
            let touched = rules_touched.contains(&rule);
            // Mostly on the streams the request writes; now and then a pure precondition.
            if (touched && rng.chance(50)) || (!touched && rng.chance(5)) {
                let stream = format!("export-rule-{rule_id}");
                expectations.push(match revision {
                    Some(r) => expect_revision(&stream, *r),
                    None => expect_state(&stream, pb::ExpectedState::NoStream),
                });
            }
        }
        pb::AppendRequest { events, expectations }
    }

    /// Appends until the server dies or `stop` is set. Returns every attempt, in order.
    async fn run(mut self, url: String, stop: Arc<AtomicBool>, in_flight: Arc<AtomicUsize>) -> Vec<Attempt> {
        let mut client = connect(&url).await;
        let mut attempts = Vec::new();
        while !stop.load(Ordering::Acquire) {
            let request = self.next_request();
            in_flight.fetch_add(1, Ordering::AcqRel);
            let result = match tokio::time::timeout(RPC_TIMEOUT, client.append(request.clone())).await {
                Ok(result) => result.map(tonic::Response::into_inner),
                Err(_) => Err(tonic::Status::deadline_exceeded("the test's RPC timeout")),
            };
            in_flight.fetch_sub(1, Ordering::AcqRel);
            let failed = result.is_err();
            if let Ok(response) = &result {
                for placed in placed_of(&request, response).unwrap_or_default() {
                    if let Some(rule) =
                        self.rules.iter_mut().find(|(id, _)| placed.stream == format!("export-rule-{id}"))
                    {
                        rule.1 = Some(placed.revision);
                    }
                }
            }
            attempts.push(Attempt { request, result, at: Instant::now() });
            if failed {
                break;
            }
        }
        attempts
    }
}

/// Runs `clients` clients against `server` for `load`, then stops it with `stop_server`
/// (SIGKILL or SIGTERM, perhaps after starting something else to interrupt) while they append,
/// and returns their attempts, when the stop began, how many appends were in flight then, and
/// what `stop_server` returned.
pub async fn load_then_stop<F, Fut, T>(
    server: ServerProcess,
    round: usize,
    rng: &mut Rng,
    codes: &Arc<Mutex<CodeBook>>,
    clients: usize,
    load: Duration,
    stop_server: F,
) -> (Vec<(usize, Vec<Attempt>)>, Instant, usize, T)
where
    F: FnOnce(ServerProcess) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let rules = (0..RULES_PER_CLIENT).map(|k| (format!("crash-r{round}-c{client}-{k}"), None)).collect();
        let load_client = LoadClient { round, client, rng: rng.fork(client as u64), rules, codes: codes.clone() };
        let task = tokio::spawn(load_client.run(server.url.clone(), stop.clone(), in_flight.clone()));
        tasks.push((client, task));
    }
    tokio::time::sleep(load).await;
    let stopped_at = Instant::now();
    let in_flight_at_stop = in_flight.load(Ordering::Acquire);
    let stopped = stop_server(server).await;
    stop.store(true, Ordering::Release);
    let mut results = Vec::new();
    for (client, task) in tasks {
        let attempts = tokio::time::timeout(RPC_TIMEOUT + Duration::from_secs(5), task)
            .await
            .unwrap_or_else(|_| panic!("client {client} of round {round} did not stop"))
            .unwrap_or_else(|e| panic!("client {client} of round {round} panicked: {e}"));
        results.push((client, attempts));
    }
    (results, stopped_at, in_flight_at_stop, stopped)
}

/// Records a round's attempts in the model. An error is expected only once the server is being
/// stopped, and only of the kinds a dying connection gives.
pub fn record_attempts(
    model: &mut Model,
    round: usize,
    results: Vec<(usize, Vec<Attempt>)>,
    stopped_at: Instant,
) -> Result<(usize, usize), String> {
    let (mut acked, mut unacked) = (0, 0);
    for (client, attempts) in results {
        for attempt in attempts {
            let fate = match &attempt.result {
                Ok(response) => {
                    if response.already_committed {
                        return Err(format!(
                            "client {client}: a fresh request was answered already_committed: {response:?}"
                        ));
                    }
                    acked += 1;
                    Fate::Acked(placed_of(&attempt.request, response).map_err(|e| format!("client {client}: {e}"))?)
                }
                Err(status) => {
                    // A request the client starts as the server's GOAWAY arrives fails in the
                    // client's transport, which tonic reports as INTERNAL: its fate is unknown
                    // like any other request cut off by the stop.
                    let goaway =
                        status.code() == tonic::Code::Internal && status.message().contains("h2 protocol error");
                    let dying = goaway
                        || matches!(
                            status.code(),
                            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                        );
                    if !dying || attempt.at < stopped_at {
                        return Err(format!(
                            "client {client}: append failed {} the server was stopped: {status:?}",
                            if attempt.at < stopped_at { "before" } else { "while" }
                        ));
                    }
                    unacked += 1;
                    Fate::Unknown
                }
            };
            model.add(round, client, attempt.request, fate);
        }
    }
    Ok((acked, unacked))
}

// ------------------------------------------------------------------------------------------
// Checks after a restart

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

async fn read_whole_log(client: &mut LedgerServiceClient<Channel>) -> Result<(Vec<pb::RecordedEvent>, u64), String> {
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ReadAllRequest { page_size: 1000, page_token: token.clone(), ..Default::default() };
        let page = tokio::time::timeout(RPC_TIMEOUT, client.read_all(request))
            .await
            .map_err(|_| "ReadAll timed out".to_owned())?
            .map_err(|e| format!("ReadAll: {e:?}"))?
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return Ok((events, page.head_position));
        }
        token = page.next_page_token;
    }
}

/// What one check after a restart found: the head, and what became of the requests whose fate
/// was unknown (whole in the log, or absent).
#[derive(Debug, Default)]
pub struct Found {
    pub head: u64,
    pub present: usize,
    pub absent: usize,
}

/// Checks the whole log against the model and settles the fate of unacknowledged requests.
fn check_log(model: &mut Model, events: &[pb::RecordedEvent], head: u64) -> Result<Found, String> {
    ensure!(head == events.len() as u64, "ReadAll returned {} events but head_position {head}", events.len());
    let mut position_of: HashMap<&str, u64> = HashMap::with_capacity(events.len());
    let mut stream_positions: HashMap<&str, Vec<u64>> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        ensure!(event.position == i as u64 + 1, "ReadAll is not dense: entry {i} has position {}", event.position);
        ensure!(
            position_of.insert(&event.event_id, event.position).is_none(),
            "event id {} appears twice in the log (second at position {})",
            event.event_id,
            event.position
        );
        let positions = stream_positions.entry(&event.stream).or_default();
        ensure!(
            event.revision == positions.len() as u64,
            "stream {} is not dense: position {} has revision {}, expected {}",
            event.stream,
            event.position,
            event.revision,
            positions.len()
        );
        positions.push(event.position);
        let Some(&(sent, index)) = model.by_id.get(&event.event_id) else {
            return Err(format!(
                "position {} holds event {}, which no client ever sent",
                event.position, event.event_id
            ));
        };
        let proposed = &model.sent[sent].request.events[index];
        ensure!(
            same_content(event, proposed) && event.stream == stream_of(proposed),
            "position {} differs from what was proposed:\n  log:      {event:?}\n  proposed: {proposed:?}",
            event.position
        );
    }
    // The revision a stream had just before `position`: None when it had no event yet.
    let revision_before = |stream: &str, position: u64| -> Option<u64> {
        let count = stream_positions.get(stream).map_or(0, |p| p.partition_point(|&q| q < position));
        count.checked_sub(1).map(|c| c as u64)
    };
    let mut found = Found { head, ..Found::default() };
    for (i, sent) in model.sent.iter_mut().enumerate() {
        let at: Vec<Option<&pb::RecordedEvent>> = sent
            .request
            .events
            .iter()
            .map(|e| position_of.get(e.event_id.as_str()).map(|&p| &events[p as usize - 1]))
            .collect();
        let present = at.iter().filter(|e| e.is_some()).count();
        let what = format!("request #{i} (round {}, client {}, {} events)", sent.round, sent.client, at.len());
        if present == 0 {
            match &sent.fate {
                Fate::Unknown => {
                    sent.fate = Fate::Absent;
                    found.absent += 1;
                    continue;
                }
                Fate::Absent => continue,
                Fate::Acked(placed) => {
                    return Err(format!("{what}: acknowledged at {placed:?}, but none of its events is in the log"));
                }
                Fate::Present(placed) => {
                    return Err(format!(
                        "{what}: was in the log at {placed:?} after an earlier restart, now it is gone"
                    ));
                }
            }
        }
        ensure!(
            present == at.len(),
            "{what}: only {present} of its events are in the log (a torn request): {:?} ({:?})",
            at.iter().map(|e| e.map(|e| e.position)).collect::<Vec<_>>(),
            sent.fate
        );
        let placed: Vec<Placed> = at
            .iter()
            .flatten()
            .map(|e| Placed { stream: e.stream.clone(), revision: e.revision, position: e.position })
            .collect();
        let first = placed[0].position;
        ensure!(
            placed.iter().enumerate().all(|(k, p)| p.position == first + k as u64),
            "{what}: its events are not at consecutive positions: {placed:?}"
        );
        for expectation in &sent.request.expectations {
            let before = revision_before(&expectation.stream, first);
            let holds = match expectation.expected {
                Some(pb::stream_expectation::Expected::Revision(r)) => before == Some(r),
                Some(pb::stream_expectation::Expected::State(s)) if s == pb::ExpectedState::NoStream as i32 => {
                    before.is_none()
                }
                Some(pb::stream_expectation::Expected::State(s)) if s == pb::ExpectedState::Exists as i32 => {
                    before.is_some()
                }
                _ => true,
            };
            ensure!(
                holds,
                "{what}: committed at {first} although {expectation:?} did not hold (the stream was at {before:?})"
            );
        }
        match &sent.fate {
            Fate::Acked(acked) => {
                ensure!(*acked == placed, "{what}: acknowledged at {acked:?}, but the log has it at {placed:?}")
            }
            Fate::Present(seen) => {
                ensure!(*seen == placed, "{what}: was at {seen:?} after an earlier restart, now at {placed:?}")
            }
            Fate::Absent => {
                return Err(format!(
                    "{what}: was absent after an earlier restart and never retried, now it is at {placed:?}"
                ));
            }
            Fate::Unknown => {
                sent.fate = Fate::Present(placed);
                found.present += 1;
            }
        }
    }
    Ok(found)
}

/// Reads each of `ids` back with GetEvent and compares it with the model.
async fn check_get_event(client: &LedgerServiceClient<Channel>, model: &Model, ids: Vec<String>) -> Result<(), String> {
    let mut answers = futures::stream::iter(ids.into_iter().map(|id| {
        let mut client = client.clone();
        async move {
            let request = pb::GetEventRequest { event_id: id.clone() };
            let answer = tokio::time::timeout(RPC_TIMEOUT, client.get_event(request)).await;
            (id, answer)
        }
    }))
    .buffer_unordered(32);
    while let Some((id, answer)) = answers.next().await {
        let event = answer
            .map_err(|_| format!("GetEvent {id} timed out"))?
            .map_err(|e| format!("GetEvent {id}: {e:?}"))?
            .into_inner();
        let (sent, index) = model.by_id[&id];
        let sent = &model.sent[sent];
        let (Fate::Acked(placed) | Fate::Present(placed)) = &sent.fate else {
            return Err(format!("GetEvent {id}: found an event whose request is {:?}", sent.fate));
        };
        let expected = &placed[index];
        ensure!(
            event.position == expected.position
                && event.stream == expected.stream
                && event.revision == expected.revision,
            "GetEvent {id}: at {}/{}@{}, acknowledged at {expected:?}",
            event.stream,
            event.revision,
            event.position
        );
        ensure!(
            same_content(&event, &sent.request.events[index]),
            "GetEvent {id}: content differs from what was proposed: {event:?}"
        );
    }
    Ok(())
}

/// The ids GetEvent checks: those of requests from `recent_round` on and of those retried since
/// the last restart, plus `sample` others at random (or every event in the log).
fn get_event_ids(model: &Model, rng: &mut Rng, sample: Sample, recent_round: usize) -> Vec<String> {
    let (all, sample) = match sample {
        Sample::All => (true, 0),
        Sample::Some(n) => (false, n),
    };
    let mut recent = Vec::new();
    let mut older = Vec::new();
    for sent in &model.sent {
        if matches!(sent.fate, Fate::Acked(_) | Fate::Present(_)) {
            let ids = sent.request.events.iter().map(|e| e.event_id.clone());
            if all || sent.round >= recent_round || sent.retried_after.is_some_and(|r| r + 1 >= recent_round) {
                recent.extend(ids);
            } else {
                older.extend(ids);
            }
        }
    }
    for _ in 0..sample.min(older.len()) {
        let pick = rng.between(0, older.len() as u64 - 1) as usize;
        recent.push(older.swap_remove(pick));
    }
    recent
}

/// Re-sends a few unacknowledged requests (same ids, same content) after the restart that
/// followed `round`: each must succeed, as a fresh append when it was absent, or as
/// `already_committed` with the places found when it was present.
pub async fn retry_some(
    client: &mut LedgerServiceClient<Channel>,
    model: &mut Model,
    rng: &mut Rng,
    round: usize,
    head: u64,
) -> Result<usize, String> {
    let mut candidates: Vec<usize> = (0..model.sent.len())
        .filter(|&i| {
            model.sent[i].retried_after.is_none() && matches!(model.sent[i].fate, Fate::Present(_) | Fate::Absent)
        })
        .collect();
    let mut retried = 0;
    let mut head = head;
    while retried < RETRIES_PER_ROUND && !candidates.is_empty() {
        let i = candidates.swap_remove(rng.between(0, candidates.len() as u64 - 1) as usize);
        let sent = &mut model.sent[i];
        let response = tokio::time::timeout(RPC_TIMEOUT, client.append(sent.request.clone()))
            .await
            .map_err(|_| format!("retry of request #{i} timed out"))?
            .map_err(|e| format!("retry of request #{i} ({:?}) failed: {e:?}", sent.fate))?
            .into_inner();
        let placed = placed_of(&sent.request, &response).map_err(|e| format!("retry of request #{i}: {e}"))?;
        match &sent.fate {
            Fate::Present(found) => ensure!(
                response.already_committed && *found == placed,
                "retry of request #{i}, found at {found:?}: answered already_committed={} at {placed:?}",
                response.already_committed
            ),
            _ => {
                ensure!(
                    !response.already_committed,
                    "retry of absent request #{i} answered already_committed at {placed:?}"
                );
                ensure!(
                    placed[0].position == head + 1,
                    "retry of absent request #{i} landed at {placed:?} with the head at {head}"
                );
                head = placed.last().expect("non-empty").position;
            }
        }
        sent.fate = Fate::Acked(placed);
        sent.retried_after = Some(round);
        retried += 1;
    }
    Ok(retried)
}

/// How many events of earlier rounds a check after a restart reads back by id.
#[derive(Clone, Copy, Debug)]
pub enum Sample {
    All,
    Some(usize),
}

/// Everything checked after the restart that follows `round`: the whole log, the events of the
/// latest round and a `sample` of the others read back by id, and the views, compared with a
/// rebuild when `rebuild`. Returns what was found.
pub async fn check_after_restart(
    server: &ServerProcess,
    model: &mut Model,
    rng: &mut Rng,
    round: usize,
    sample: Sample,
    rebuild: bool,
) -> Result<Found, String> {
    let mut client = connect(&server.url).await;
    let (events, head) = read_whole_log(&mut client).await?;
    let found = check_log(model, &events, head)?;
    check_get_event(&client, model, get_event_ids(model, rng, sample, round)).await?;
    check_views(&server.url, &events, head, rebuild).await?;
    Ok(found)
}

/// The views caught up with the log the kill left (a crash between a commit and its views is
/// repaired on start), count what the log holds, and, when `rebuild`, equal a rebuild's.
async fn check_views(url: &str, events: &[pb::RecordedEvent], head: u64, rebuild: bool) -> Result<(), String> {
    use pax_ledger::proto::v1::projection_service_client::ProjectionServiceClient;
    use pax_ledger::proto::v1::query_service_client::QueryServiceClient;
    let channel = Channel::from_shared(url.to_owned()).unwrap().connect().await.map_err(|e| e.to_string())?;
    let consistency = Some(pb::Consistency { min_position: head, ..Default::default() });
    let summary = QueryServiceClient::new(channel.clone())
        .get_summary(pb::GetSummaryRequest { consistency, ..Default::default() })
        .await
        .map_err(|e| format!("views after restart: {e}"))?
        .into_inner();
    let members: std::collections::HashSet<_> =
        events.iter().filter(|e| e.stream.starts_with("member-")).map(|e| e.stream.as_str()).collect();
    let counted = summary.members_by_role.iter().map(|c| c.count).sum::<u64>() + summary.members_withdrawn;
    if (summary.position, counted) != (head, members.len() as u64) {
        return Err(format!(
            "views at {} count {counted} participants; the log holds {} at {head}",
            summary.position,
            members.len()
        ));
    }
    if rebuild {
        let mut projections = ProjectionServiceClient::new(channel);
        let live =
            projections.get_projection_status(pb::GetProjectionStatusRequest {}).await.map_err(|e| e.to_string())?;
        let mut stream = projections
            .rebuild_projections(pb::RebuildProjectionsRequest {})
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let mut digest = None;
        while let Some(message) = stream.message().await.map_err(|e| e.to_string())? {
            if let Some(pb::rebuild_projections_response::Update::Result(result)) = message.update {
                digest = Some((result.position, result.view_digest));
            }
        }
        let live = live.into_inner();
        if digest != Some((live.position, live.view_digest.clone())) {
            return Err(format!("a rebuild gave {digest:?}, the live views {} at {}", live.view_digest, live.position));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_appends_survive_sigkill_and_unacknowledged_ones_are_all_or_nothing() {
    run_seeded("crash test", "PAX_CRASH_ROUNDS", ROUNDS_DEFAULT, TEST_TIMEOUT, crash_rounds).await;
}

async fn crash_rounds(seed: u64, rounds: usize) {
    let started = Instant::now();
    let mut run = KillRun::new(seed, &[]);
    let mut server = run.start(0).await;
    let mut rounds_with_requests_in_flight = 0;

    for round in 0..rounds {
        let load = Duration::from_millis(run.rng.between(LOAD_MS_MIN, LOAD_MS_MAX));
        let (results, killed_at, in_flight, ()) =
            load_then_stop(server, round, &mut run.rng, &run.codes, CLIENTS, load, |server| server.kill()).await;
        rounds_with_requests_in_flight += usize::from(in_flight > 0);
        let (acked, unacked) = record_attempts(&mut run.model, round, results, killed_at)
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}): {e}\nstderr:\n{}", tail(&run.stderr_of(round))));

        let (restarted, startup_kill, restart_took) = run.restart(round, STARTUP_KILL_PERCENT).await;
        server = restarted;
        let last = round + 1 == rounds;
        let sample = if last { Sample::All } else { Sample::Some(GET_EVENT_SAMPLE) };
        let checking = Instant::now();
        let found = match check_after_restart(&server, &mut run.model, &mut run.rng, round, sample, last).await {
            Ok(found) => found,
            Err(e) => panic!("after the kill of round {round} (seed {seed}): {e}\nstderr:\n{}", server.stderr_tail()),
        };
        let mut client = connect(&server.url).await;
        let retried =
            retry_some(&mut client, &mut run.model, &mut run.rng, round, found.head).await.unwrap_or_else(|e| {
                panic!("after the kill of round {round} (seed {seed}): {e}\nstderr:\n{}", server.stderr_tail())
            });
        eprintln!(
            "round {round:2}: load {load:?}, {acked} requests acknowledged, {unacked} not ({in_flight} in flight at \
             the kill): {} of these whole in the log, {} absent; head {}; restart {restart_took:?}{}, checks {:?}, \
             {retried} retried",
            found.present,
            found.absent,
            found.head,
            startup_kill.map_or_else(String::new, |d| format!(" (killed once {d:?} into it)")),
            checking.elapsed()
        );
    }
    assert!(
        rounds_with_requests_in_flight * 2 >= rounds,
        "only {rounds_with_requests_in_flight} of {rounds} kills hit appends in flight: the test does not test much"
    );

    // A graceful stop under load: in-flight appends finish, the server exits 0, and whatever
    // it acknowledged is there after the next start.
    let round = rounds;
    let load = Duration::from_millis(run.rng.between(LOAD_MS_MIN, LOAD_MS_MAX));
    let (results, stopped_at, _, status) =
        load_then_stop(server, round, &mut run.rng, &run.codes, CLIENTS, load, |server| async move {
            let pid = server.pid();
            server.terminate(pid).await
        })
        .await;
    assert!(
        status.success(),
        "SIGTERM under load: the server exited with {status}; stderr:\n{}",
        tail(&run.stderr_of(round))
    );
    record_attempts(&mut run.model, round, results, stopped_at)
        .unwrap_or_else(|e| panic!("graceful stop (seed {seed}): {e}"));
    let server = run.start(round + 1).await;
    let found = check_after_restart(&server, &mut run.model, &mut run.rng, round, Sample::All, true)
        .await
        .unwrap_or_else(|e| panic!("after the graceful stop (seed {seed}): {e}\nstderr:\n{}", server.stderr_tail()));
    let pid = server.pid();
    let status = server.terminate(pid).await;
    assert!(status.success(), "the last server exited with {status} after SIGTERM");
    eprintln!(
        "crash test: {rounds} kills and a graceful stop in {:?}; {} events acknowledged, head {}",
        started.elapsed(),
        run.model.acked_events(),
        found.head
    );
}

/// The position an `ids.snapshot` covers (docs: `store/id_snapshot.rs`; 7-byte magic, the
/// format byte, then the position).
fn snapshot_position(data: &Path) -> Option<u64> {
    let bytes = std::fs::read(data.join("ids.snapshot")).ok()?;
    Some(u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?))
}

/// While serving, the event-id index is snapshotted every `id_snapshot_every_events`: a crash
/// then leaves a recent snapshot, whose ids still answer idempotent retries after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_periodic_id_snapshot_is_left_by_a_crash_and_serves_the_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pax-ledger"));
    command.args(ServerProcess::serve_args(&data)).env("PAX_LEDGER_ID_SNAPSHOT_EVERY_EVENTS", "40");
    let server = ServerProcess::start_command(command, &dir.path().join("stderr-1")).await;
    let mut client = connect(&server.url).await;
    let code = |r: u8, i: u8| format!("S{}{}", (b'A' + r * 5 + i / 6) as char, (b'A' + i % 6) as char);
    let requests: Vec<pb::AppendRequest> =
        (0..5).map(|r| crate::support::append((0..30).map(|i| member_joined(&code(r, i))).collect())).collect();
    let mut positions = Vec::new();
    for request in &requests {
        let response = client.append(request.clone()).await.expect("append").into_inner();
        positions.push(response.events.iter().map(|e| e.position).collect::<Vec<_>>());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while snapshot_position(&data).is_none_or(|p| p < 120) {
        assert!(Instant::now() < deadline, "no snapshot past 120 of 150 events; stderr:\n{}", server.stderr_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().await;
    let covered = snapshot_position(&data).expect("the snapshot the crash left");
    assert!((120..=150).contains(&covered), "{covered}");

    // The restart uses it (a snapshot the log does not extend would be ignored and logged)
    // and answers retries of requests before and after it as already committed.
    let server = ServerProcess::start(&data, &dir.path().join("stderr-2")).await;
    let mut client = connect(&server.url).await;
    for (request, placed) in requests.iter().zip(&positions) {
        let retry = client.append(request.clone()).await.expect("retry").into_inner();
        assert!(retry.already_committed);
        assert_eq!(&retry.events.iter().map(|e| e.position).collect::<Vec<_>>(), placed);
    }
    assert!(!server.stderr_tail().contains("ignoring"), "{}", server.stderr_tail());
    let pid = server.pid();
    assert!(server.terminate(pid).await.success());
}
