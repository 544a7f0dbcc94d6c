//! `pax-ledger loadgen`: N concurrent gRPC clients in one process append realistic domain
//! events in batches for a duration (closed loop, as fast as acknowledgements come back) or
//! at a fixed total rate (open loop, latency measured from each request's scheduled time when
//! the previous answer was late for it, so that a stall is not hidden), then print one summary. `--ack-log` writes every
//! acknowledged event id and position, so that a later check can prove none is missing.
//! `--query` mixes in (or, at 100 %, runs only) queries of the views, with their own latency
//! histogram.
//!
//! It connects like every client command (`--addr https://…`, `--token`, `--ca-cert`,
//! `--client-cert`, `--client-key`). Its events name `loadgen` as their actor, unless it
//! presents a credential: the actor is then left empty and the server records the
//! authenticated principal (which refuses any other name).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

use super::{ClientArgs, Output};
use crate::proto::v1 as pb;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StreamMode {
    /// Each client appends to its own streams: no contention between clients.
    PerClient,
    /// Every client appends to one export rule's stream: maximal contention on one stream.
    Shared,
    /// Each event goes to one of the clients' streams at random.
    Random,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum QueryMode {
    /// `GetMember` of one of the prepared participants, at random (with its history).
    GetMember,
    /// `ListExportRules`: the first page (50) of the export rules.
    ListExportRules,
}

#[derive(Debug, Args)]
pub struct LoadgenArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Concurrent clients (each with its own connection).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Events per append request.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch: u32,
    /// How long to append, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop early once this many events are acknowledged (e.g. to fill a ledger to a size).
    #[arg(long)]
    pub events: Option<u64>,
    /// Which streams the events go to.
    #[arg(long, value_enum, default_value_t = StreamMode::PerClient)]
    pub streams: StreamMode,
    /// Approximate size of each event's data and metadata, in bytes.
    #[arg(long, default_value_t = 200)]
    pub event_bytes: usize,
    /// A fixed total rate in events per second (open loop; a query counts as --batch events);
    /// default: as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Write one JSON line {"event_id", "stream", "revision", "position"} per acknowledged event.
    #[arg(long)]
    pub ack_log: Option<PathBuf>,
    /// Query the views too: this share (--query-percent) of the requests are this query.
    #[arg(long, value_enum)]
    pub query: Option<QueryMode>,
    /// With --query, the share of requests that are queries, in percent; the rest append.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub query_percent: u8,
    /// Sign every event with this key file, as `append --sign-key` does (its public key must be
    /// registered to the principal of --token): the cost of signed events, on both sides.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub events_per_sec: f64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub acked: u64,
    pub errors: u64,
    pub clients: usize,
    pub batch: u32,
    pub seconds: f64,
    /// With --query: queries answered, and their latencies.
    pub queries: u64,
    pub queries_per_sec: f64,
    pub query_p50_ms: f64,
    pub query_p99_ms: f64,
    pub query_p999_ms: f64,
}

struct Totals {
    latencies_us: Histogram<u64>,
    query_latencies_us: Histogram<u64>,
    acked: u64,
    requests: u64,
    queries: u64,
    errors: u64,
    first_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// The streams and the facts one client appends: it joins as a member first, then makes
/// commitments and changes export rules.
struct Workload {
    run: String,
    client: usize,
    clients: usize,
    mode: StreamMode,
    padding: String,
    /// `loadgen`, or empty when a credential is presented (the server fills in the principal).
    actor: String,
    sequence: u64,
    /// With --sign-key: each event is signed by the client that sends it.
    sign_key: Option<Arc<ed25519_dalek::SigningKey>>,
}

impl Workload {
    fn member_code(run: &str, client: usize) -> String {
        // Codes are upper-case letters only: encode the client number in base 26.
        let mut code = run.to_owned();
        let mut n = client;
        for _ in 0..3 {
            code.push((b'A' + (n % 26) as u8) as char);
            n /= 26;
        }
        code
    }

    fn rule_id(&self, client: usize) -> String {
        match self.mode {
            StreamMode::Shared => format!("loadgen-{}-shared", self.run.to_lowercase()),
            _ => format!("loadgen-{}-{client}", self.run.to_lowercase()),
        }
    }

    fn join(&self) -> pb::ProposedEvent {
        let code = Self::member_code(&self.run, self.client);
        self.event(pb::event_data::Kind::MemberJoined(pb::MemberJoined {
            code: code.clone(),
            name: format!("Load-test participant {code}"),
            kind: pb::MemberKind::Organization as i32,
            role: pb::MemberRole::Member as i32,
        }))
    }

    fn next(&mut self, rng: &mut u64) -> pb::ProposedEvent {
        self.sequence += 1;
        let target = match self.mode {
            StreamMode::Random => (xorshift(rng) % self.clients as u64) as usize,
            _ => self.client,
        };
        if self.mode != StreamMode::Shared && self.sequence.is_multiple_of(2) {
            self.event(pb::event_data::Kind::CommitmentMade(pb::CommitmentMade {
                commitment_id: uuid::Uuid::new_v4().to_string(),
                member: Self::member_code(&self.run, target),
                pillar: pb::Pillar::AiCompute as i32,
                description: format!("Load-test commitment {} of client {}", self.sequence, self.client),
                project_id: None,
                due_on: "2027-06-30".into(),
            }))
        } else {
            self.event(pb::event_data::Kind::ExportRuleChanged(pb::ExportRuleChanged {
                rule_id: self.rule_id(target),
                item: "Load-test accelerator".into(),
                origin: "US".into(),
                destination: "CN".into(),
                treatment: pb::Treatment::AllowedWithLevy as i32,
                levy_bps: Some((self.sequence % 10_001) as u32),
                effective_from: "2026-01-01".into(),
                authority: "Load test".into(),
            }))
        }
    }

    fn event(&self, kind: pb::event_data::Kind) -> pb::ProposedEvent {
        let mut event = self.unsigned_event(kind);
        if let Some(key) = &self.sign_key {
            crate::archive::event_line::sign(&mut event, key);
        }
        event
    }

    fn unsigned_event(&self, kind: pb::event_data::Kind) -> pb::ProposedEvent {
        pb::ProposedEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            data: Some(pb::EventData { kind: Some(kind) }),
            effective_time: None,
            metadata: Some(pb::EventMetadata {
                actor: self.actor.clone(),
                source: self.padding.clone(),
                labels: [("illustrative".to_owned(), "true".to_owned())].into(),
                ..Default::default()
            }),
        }
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A run tag of four letters, so that runs against the same ledger do not collide.
fn run_tag() -> String {
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64 | 1;
    (0..4).map(|_| (b'A' + (xorshift(&mut seed) % 26) as u8) as char).collect()
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(args.duration > 0.0, "--duration must be positive");
    let run = run_tag();
    // The ledger is append-only: what a load test writes stays in it for good.
    eprintln!(
        "warning: loadgen appends load-test participants, commitments and export rules (labelled illustrative, \
         codes starting with {run}) to the ledger at {}: they stay in its append-only log for good; point it at \
         a ledger kept for load tests",
        args.client.addr
    );
    // The event's fixed fields take about 120 bytes; the source pads it to the requested size.
    let padding = "x".repeat(args.event_bytes.saturating_sub(120).clamp(1, 1000));
    // An authenticated principal is the only actor its events may name: leave it to the server.
    let actor = if args.client.presents_credential() { "" } else { "loadgen" };
    let sign_key = match &args.sign_key {
        Some(path) => Some(Arc::new(crate::audit::keys::load(path)?)),
        None => None,
    };
    let totals = Arc::new(Mutex::new(Totals {
        latencies_us: histogram(),
        query_latencies_us: histogram(),
        acked: 0,
        requests: 0,
        queries: 0,
        errors: 0,
        first_error: None,
    }));
    let ack_log = match &args.ack_log {
        Some(path) => Some(Arc::new(std::sync::Mutex::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )))),
        None => None,
    };

    // Prepare: every client's member joins first (commitments name them), and its export rule
    // gets a first change (so that queries find rules even when no client appends).
    let mut clients = Vec::with_capacity(args.clients);
    let mut prepared = 0;
    for client in 0..args.clients {
        let channel = super::client::connect_channel(&args.client).await?;
        let mut grpc = pb::ledger_service_client::LedgerServiceClient::new(channel.clone());
        let mut workload = Workload {
            run: run.clone(),
            client,
            clients: args.clients,
            mode: args.streams,
            padding: padding.clone(),
            actor: actor.to_owned(),
            sequence: 0,
            sign_key: sign_key.clone(),
        };
        // The first event after the join is an export-rule change (odd sequence numbers are).
        let events = vec![workload.join(), workload.next(&mut 1)];
        let response = grpc
            .append(pb::AppendRequest { events, expectations: vec![] })
            .await
            .with_context(|| format!("preparing client {client}"))?;
        prepared = response.into_inner().events.iter().map(|e| e.position).max().unwrap_or(prepared).max(prepared);
        let query = args.query.filter(|_| args.query_percent > 0).map(|mode| Queries {
            client: pb::query_service_client::QueryServiceClient::new(channel),
            mode,
            percent: args.query_percent,
            min_position: 0,
            run: run.clone(),
            clients: args.clients,
        });
        clients.push((grpc, workload, query));
    }
    for (_, _, query) in &mut clients {
        if let Some(query) = query {
            query.min_position = prepared;
        }
    }

    let duration = Duration::from_secs_f64(args.duration);
    let per_client_interval =
        args.rate.map(|rate| Duration::from_secs_f64(args.clients as f64 * f64::from(args.batch) / rate));
    let started = Instant::now();
    let acked_so_far = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let events_max = args.events.unwrap_or(u64::MAX);
    let mut tasks = Vec::new();
    for (client_index, (grpc, workload, query)) in clients.into_iter().enumerate() {
        let totals = totals.clone();
        let ack_log = ack_log.clone();
        let batch = args.batch;
        let stop = Stop { started, duration, acked: acked_so_far.clone(), events_max };
        tasks.push(tokio::spawn(drive(
            grpc,
            workload,
            query,
            client_index,
            batch,
            stop,
            per_client_interval,
            totals,
            ack_log,
        )));
    }
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(log) = &ack_log {
        log.lock().expect("ack log").flush()?;
    }
    let totals = totals.lock().await;
    let ms = |q: f64| totals.latencies_us.value_at_quantile(q) as f64 / 1000.0;
    let query_ms = |q: f64| totals.query_latencies_us.value_at_quantile(q) as f64 / 1000.0;
    let summary = Summary {
        events_per_sec: totals.acked as f64 / seconds,
        requests_per_sec: totals.requests as f64 / seconds,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: totals.latencies_us.max() as f64 / 1000.0,
        acked: totals.acked,
        errors: totals.errors,
        clients: args.clients,
        batch: args.batch,
        seconds,
        queries: totals.queries,
        queries_per_sec: totals.queries as f64 / seconds,
        query_p50_ms: query_ms(0.5),
        query_p99_ms: query_ms(0.99),
        query_p999_ms: query_ms(0.999),
    };
    if let Some(error) = &totals.first_error {
        eprintln!("first error: {error}");
    }
    match args.client.output {
        Output::Json => println!("{}", serde_json::to_string(&summary)?),
        Output::Table => println!(
            "{:.0} events/s  {:.0} requests/s  p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  acked {}  errors {}  ({} clients, batch {}, {:.1} s)",
            summary.events_per_sec,
            summary.requests_per_sec,
            summary.p50_ms,
            summary.p99_ms,
            summary.p999_ms,
            summary.max_ms,
            summary.acked,
            summary.errors,
            summary.clients,
            summary.batch,
            summary.seconds
        ),
    }
    if args.client.output == Output::Table && summary.queries > 0 {
        println!(
            "{:.0} queries/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  ({} queries)",
            summary.queries_per_sec, summary.query_p50_ms, summary.query_p99_ms, summary.query_p999_ms, summary.queries
        );
    }
    Ok(if totals.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What one client asks of the views, and how often.
struct Queries {
    client: pb::query_service_client::QueryServiceClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, super::client::BearerToken>,
    >,
    mode: QueryMode,
    percent: u8,
    /// The position of the preparation: queries read at least there.
    min_position: u64,
    run: String,
    clients: usize,
}

impl Queries {
    async fn ask(&mut self, rng: &mut u64) -> Result<(), tonic::Status> {
        let consistency = Some(pb::Consistency { min_position: self.min_position, ..Default::default() });
        match self.mode {
            QueryMode::GetMember => {
                let code = Workload::member_code(&self.run, (xorshift(rng) % self.clients as u64) as usize);
                self.client.get_member(pb::GetMemberRequest { code, consistency }).await.map(drop)
            }
            QueryMode::ListExportRules => self
                .client
                .list_export_rules(pb::ListExportRulesRequest { consistency, ..Default::default() })
                .await
                .map(drop),
        }
    }
}

/// When a run ends: after its duration, or once enough events are acknowledged.
struct Stop {
    started: Instant,
    duration: Duration,
    acked: Arc<std::sync::atomic::AtomicU64>,
    events_max: u64,
}

impl Stop {
    fn reached(&self) -> bool {
        self.started.elapsed() >= self.duration
            || self.acked.load(std::sync::atomic::Ordering::Relaxed) >= self.events_max
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    mut grpc: pb::ledger_service_client::LedgerServiceClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, super::client::BearerToken>,
    >,
    mut workload: Workload,
    mut queries: Option<Queries>,
    client_index: usize,
    batch: u32,
    stop: Stop,
    interval: Option<Duration>,
    totals: Arc<Mutex<Totals>>,
    ack_log: Option<Arc<std::sync::Mutex<std::io::BufWriter<std::fs::File>>>>,
) {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (client_index as u64 + 1);
    let mut local = histogram();
    let mut local_queries = histogram();
    let (mut acked, mut requests, mut asked, mut errors, mut first_error) = (0u64, 0u64, 0u64, 0u64, None);
    // Open loop: spread the clients' first sends over one interval.
    let started = stop.started;
    let mut last_done = started;
    let mut scheduled =
        started + interval.map_or(Duration::ZERO, |i| i.mul_f64(client_index as f64 / workload.clients as f64));
    while !stop.reached() {
        // Latency counts from the scheduled time when the previous answer came after it (the
        // server held this request back: no coordinated omission), else from the actual send
        // (the timer's millisecond granularity is the client's lateness, not the server's).
        let from = if interval.is_some() {
            tokio::time::sleep_until(scheduled.into()).await;
            if last_done > scheduled { scheduled } else { Instant::now() }
        } else {
            scheduled = Instant::now();
            scheduled
        };
        if let Some(queries) = queries.as_mut().filter(|q| xorshift(&mut rng) % 100 < u64::from(q.percent)) {
            let result = queries.ask(&mut rng).await;
            let latency = from.elapsed();
            last_done = Instant::now();
            match result {
                Ok(()) => {
                    asked += 1;
                    let _ = local_queries.record((latency.as_micros() as u64).max(1));
                }
                Err(status) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
                }
            }
            if let Some(interval) = interval {
                scheduled += interval;
            }
            continue;
        }
        let events: Vec<_> = (0..batch).map(|_| workload.next(&mut rng)).collect();
        let result = grpc.append(pb::AppendRequest { events, expectations: vec![] }).await;
        let latency = from.elapsed();
        last_done = Instant::now();
        requests += 1;
        match result {
            Ok(response) => {
                let response = response.into_inner();
                acked += response.events.len() as u64;
                stop.acked.fetch_add(response.events.len() as u64, std::sync::atomic::Ordering::Relaxed);
                let _ = local.record((latency.as_micros() as u64).max(1));
                if let Some(log) = &ack_log {
                    let mut log = log.lock().expect("ack log");
                    for e in &response.events {
                        let _ = writeln!(
                            log,
                            "{}",
                            serde_json::json!({"event_id": e.event_id, "stream": e.stream, "revision": e.revision, "position": e.position})
                        );
                    }
                }
            }
            Err(status) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
            }
        }
        if let Some(interval) = interval {
            scheduled += interval;
        }
    }
    let mut totals = totals.lock().await;
    let _ = totals.latencies_us.add(&local);
    let _ = totals.query_latencies_us.add(&local_queries);
    totals.queries += asked;
    totals.acked += acked;
    totals.requests += requests;
    totals.errors += errors;
    if totals.first_error.is_none() {
        totals.first_error = first_error;
    }
}
