//! The command line (DESIGN.md §6 is its contract: extend it, never rename). `serve` runs the
//! server; the client subcommands talk to one over gRPC and print tables or JSON Lines.

mod append;
mod audit;
mod backup;
mod client;
mod demo;
mod endpoint;
mod loadgen;
mod principal;
mod query;
mod witness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::archive::event_line;
use crate::config::{FlagOverrides, ServeConfig};
use crate::ledger::{Ledger, LedgerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "pax-ledger",
    version,
    about = "An event-sourced, tamper-evident ledger of a multilateral initiative's commitments"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written on stderr: text for people, json for one JSON object per line
    /// (timestamp, level, target, fields, spans) for a log collector. `RUST_LOG` filters them.
    #[arg(long, global = true, value_enum, env = "PAX_LEDGER_LOG_FORMAT", default_value_t = crate::telemetry::LogFormat::Text)]
    pub log_format: crate::telemetry::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (embedded sled at ./data, listening on 127.0.0.1:50051 by default).
    Serve(ServeArgs),
    /// Append events, one JSON object per input line (from --file or stdin).
    ///
    /// Each line is its own request, or --batch N lines make one atomic request; requests are
    /// sent one after the other, in input order. Each acknowledged event is printed on stdout
    /// (with --output json: {"event_id", "stream", "revision", "position"}, one line each). A
    /// refused line or request is reported on stderr with its input lines and, from the server,
    /// its gRPC code and message; the rest is still sent.
    ///
    /// Retries: a request that finds the server unavailable (UNAVAILABLE: it is stopping or has
    /// halted its writes; or the connection failed under it) is sent again, --retries times,
    /// after waits of 0.25 s doubling up to 4 s. This is safe because every event carries its
    /// id: a request that was committed before its answer was lost is answered as already
    /// committed, never appended twice. If the server is still unavailable, append stops
    /// rather than send every remaining line into it; send the same input again later. (A
    /// server that cannot be reached at the start is reported at once, and nothing is sent.)
    ///
    /// The last line on stderr is always the summary, counted in events: "appended N, already
    /// present K, rejected M, not sent S" (rejected: by the server or by this client; not sent:
    /// in a batch with a rejected line, or after the server became unavailable). The exit
    /// status is non-zero when anything was rejected or not sent.
    #[command(after_long_help = event_line::INPUT_FORMAT_HELP)]
    Append(AppendArgs),
    /// Print events in log order (of one stream, or of the whole log).
    History(HistoryArgs),
    /// Like history, then keep following new events.
    ///
    /// Follows until Ctrl-C, which ends it with exit status 0. A subscription has no other end:
    /// if the server ends it (it is stopping: UNAVAILABLE; or even with OK), or the connection
    /// breaks, tail prints the gRPC code and message and the position to resume from
    /// (--from) on stderr, and exits 1.
    Tail(HistoryArgs),
    /// Drive a server with N concurrent appending clients and report throughput and latency.
    Loadgen(loadgen::LoadgenArgs),
    /// Verify a stopped server's directory (--data), a bundle (--bundle), or a running server
    /// against a saved checkpoint (--against).
    ///
    /// --data: every record decodes, positions are dense and the hash chain holds up to the
    /// head; with --checkpoint FILE, the log also still extends that saved checkpoint. --bundle:
    /// the same over a bundle, and each checkpoint's Merkle root and signature. --against: the
    /// running server proves, under the saved checkpoint's key, that its log extends it. Exits
    /// non-zero on a failed verification.
    Verify(VerifyArgs),
    /// Have the server sign a checkpoint at its head now; print it, and save it with --save.
    Checkpoint(audit::CheckpointArgs),
    /// Prove one entity's state at a checkpoint (e.g. member-JP): its view record, its place in
    /// the checkpoint's view tree, and the events that made it, each proved in the log. Checked
    /// here before it is printed or saved; `verify --view-proof FILE` checks it again offline.
    Prove(audit::ProveArgs),
    /// Write a stopped server's log and checkpoints to a self-contained bundle (JSON Lines).
    Export(audit::ExportArgs),
    /// Create a data directory from a bundle, after verifying it.
    Import(audit::ImportArgs),
    /// Back up a running server into DIR: a consistent copy of its log and signed checkpoints
    /// up to its head, taken while appends go on; later runs add only what is new.
    ///
    /// The first run writes every record; each later run into the same DIR adds a segment with
    /// the records after the backup's last position (the server must still hold the same
    /// history there, else FAILED_PRECONDITION). A run's segment is synced and the whole backup
    /// verified with it (the chain from the first record, every checkpoint's Merkle root and
    /// signature, authorship, event signatures) before it is published: a failed or
    /// interrupted run leaves DIR as it was. Needs the operator, auditor or admin role.
    Backup(backup::BackupArgs),
    /// Restore a backup (as `backup` writes it) into a new data directory, verified first.
    ///
    /// A server started on the directory serves the same log, Merkle roots and views as the
    /// original did at the backup's last position (the views are rebuilt from the log when it
    /// starts). No signing key is copied: the new server signs with its own.
    Restore(backup::RestoreArgs),
    /// Ed25519 keys: the ledger's checkpoint key, and new keys for signing events.
    #[command(subcommand)]
    Key(audit::KeyCommand),
    /// The server's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a completion script for a shell (e.g. `pax-ledger completions bash >
    /// /etc/bash_completion.d/pax-ledger`).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff; e.g. `pax-ledger man | man -l -`).
    Man,
    /// A witness that cosigns a ledger's checkpoints only while its log grows consistently.
    #[command(subcommand)]
    Witness(witness::WitnessCommand),
    /// List the participants (members and guests), or show one with its role history.
    Members(query::MembersArgs),
    /// List the projects, or show one with its status timeline.
    Projects(query::ProjectsArgs),
    /// List the export rules and the terms in force, or show one rule with its full timeline.
    ExportRules(query::ExportRulesArgs),
    /// List the commitments (open, fulfilled, withdrawn, overdue).
    Commitments(query::CommitmentsArgs),
    /// Count the participants, projects, commitments, export rules and summits.
    Summary(query::SummaryArgs),
    /// Where the views stand: their position, their lag behind the log, their digest, rebuilds.
    Status(ClientArgs),
    /// Rebuild the views from the whole log, switch to them, and print their view digest.
    Rebuild(ClientArgs),
    /// Load the Pax Silica facts of the article (and four illustrative projects); idempotent.
    Demo(demo::DemoArgs),
    /// Who may do what: create the first admin offline, grant and revoke roles, list principals.
    #[command(subcommand)]
    Principal(principal::PrincipalCommand),
    /// Bearer tokens: issue a new one for a principal, revoke one.
    #[command(subcommand)]
    Token(principal::TokenCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory [default: ./data]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051]
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// A TOML configuration file (flags > PAX_LEDGER_* environment > file > defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Allow a non-loopback listen address without authentication.
    #[arg(long)]
    pub insecure: bool,
    /// Serve TLS with this certificate chain (PEM, leaf first); needs --tls-key. Clients then
    /// connect with an https:// address. [config: tls_cert, PAX_LEDGER_TLS_CERT]
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1). [config: tls_key,
    /// PAX_LEDGER_TLS_KEY]
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: require every client to present a certificate signed by one of these CA
    /// certificates (PEM); a client without one is refused during the handshake. Needs
    /// --tls-cert. [config: tls_client_ca, PAX_LEDGER_TLS_CLIENT_CA]
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics, on a port of their
    /// own, unauthenticated: positions, counts and latencies, no event data.
    /// [config: metrics_listen, PAX_LEDGER_METRICS_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Ask this witness to cosign every checkpoint: `<witness verifier key>@<URL>`, as
    /// `pax-ledger witness serve` prints its key (repeatable). [config: witnesses]
    #[arg(long = "witness", value_name = "KEY@URL")]
    pub witnesses: Vec<String>,
    /// Export the server's tracing spans (each request's `rpc` span and those inside it) to
    /// this OpenTelemetry collector over OTLP/gRPC, e.g. http://localhost:4317, in batches:
    /// an unreachable collector never slows a request. [config: otlp_endpoint,
    /// PAX_LEDGER_OTLP_ENDPOINT]
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Serve reads only, to get evidence out of a data directory that failed its checks at
    /// start (a log shorter than what was acknowledged, a rewritten record): nothing is
    /// appended, projected, signed or written to the head journal, and health is NOT_SERVING.
    #[arg(long)]
    pub read_only: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration `serve` would run with — defaults, then --config FILE, then the
    /// PAX_LEDGER_* environment — each key with its value and where it came from (serve's own
    /// flags override these). It is checked as `serve` checks it: an unknown key or a value
    /// out of range is an error naming it. The configuration holds no secret (key files are
    /// named by path), so nothing is redacted.
    Print(ConfigPrintArgs),
}

#[derive(Debug, Args)]
pub struct ConfigPrintArgs {
    /// The configuration file (TOML), as given to `serve --config`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// table for people, json for one JSON line per key: {"key", "value", "source"}.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server's URL. https:// always means TLS (verified with the system's CA certificates,
    /// or --ca-cert); http:// is plaintext.
    #[arg(long, env = "PAX_LEDGER_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// A bearer token, sent as `authorization: Bearer T`. Never sent in plaintext to another
    /// machine: with an http:// address, only to localhost or a loopback IP.
    #[arg(long, env = "PAX_LEDGER_TOKEN")]
    pub token: Option<String>,
    /// Trust only this CA certificate (PEM) for the server's certificate, instead of the
    /// system's CA certificates; needs an https:// address.
    #[arg(long, env = "PAX_LEDGER_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Present this client certificate (PEM) to a server that requires mutual TLS; needs
    /// --client-key and an https:// address.
    #[arg(long, env = "PAX_LEDGER_CLIENT_CERT", value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, env = "PAX_LEDGER_CLIENT_KEY", value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// table for people, json for JSON Lines (one object per line, flushed line by line).
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

impl ClientArgs {
    /// Whether the client presents a credential (a token or a client certificate): the server
    /// then records the authenticated principal as each event's actor, and refuses another
    /// name, so commands that fill in an actor of their own leave it empty instead.
    pub fn presents_credential(&self) -> bool {
        self.token.is_some() || self.client_cert.is_some()
    }
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Read event lines from this file instead of stdin.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Group this many lines into one atomic request.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch: u32,
    /// Accept lines without an event_id: each gets a new UUIDv7, kept for this run's retries.
    /// Sending the same input again then appends those events again, under other ids.
    #[arg(long)]
    pub allow_new_ids: bool,
    /// Retry a request this many times (waiting 0.25 s, then twice as long each time, up to
    /// 4 s) while the server is unavailable, then stop sending.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: u32,
    /// Sign each event with this Ed25519 key file (`pax-ledger key new FILE` makes one; its
    /// public key must be registered to your principal: `principal register-key`). The
    /// signature covers the stream, type, data, effective time and event id (docs/AUDIT.md §1)
    /// and is kept in the record: proof that your principal recorded it, which the server
    /// cannot forge. Replaces a signature the line carries.
    #[arg(long, value_name = "FILE", env = "PAX_LEDGER_SIGN_KEY")]
    pub sign_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only this stream (e.g. member-JP); default: the whole log.
    pub stream: Option<String>,
    /// Start at this log position (inclusive).
    #[arg(long)]
    pub from: Option<u64>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["data", "bundle", "backup", "against", "view_proof"])))]
#[command(group(ArgGroup::new("signed").args(["checkpoint", "bundle", "backup", "against", "view_proof"])))]
pub struct VerifyArgs {
    /// The data directory of a stopped server.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A bundle written by `export`.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// A backup directory written by `backup`: its segments, read in order, verified as one
    /// bundle (with --quorum: its latest note).
    #[arg(long, value_name = "DIR")]
    pub backup: Option<PathBuf>,
    /// A checkpoint file saved by `checkpoint --save`: prove that the running server at --addr
    /// still extends it.
    #[arg(long, value_name = "FILE")]
    pub against: Option<PathBuf>,
    /// A view proof saved by `prove --save`: check it offline, with the checkpoint it carries
    /// (its key pinned with --public-key).
    #[arg(long, value_name = "FILE")]
    pub view_proof: Option<PathBuf>,
    /// With --data: a checkpoint file that the log must still extend.
    #[arg(long, value_name = "FILE", requires = "data")]
    pub checkpoint: Option<PathBuf>,
    /// The ledger's public key (64 hex digits, or a file holding them): every checkpoint must be
    /// signed by it. Without it, a checkpoint is checked against the key it carries.
    #[arg(long, value_name = "KEY", requires = "signed")]
    pub public_key: Option<String>,
    /// A witness whose cosignature counts towards --quorum: its verifier key as `witness serve`
    /// prints it, or NAME=KEY (KEY: 64 hex digits); repeatable.
    #[arg(long = "witness", value_name = "NAME=KEY")]
    pub witnesses: Vec<String>,
    /// With --against: the ledger's checkpoint must carry valid cosignatures of at least N of
    /// the --witness witnesses (waiting up to 10 s for them); with --bundle: its latest note.
    #[arg(long, value_name = "N", requires = "witnesses")]
    pub quorum: Option<usize>,
    /// --addr and --token are used with --against only.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// An error and its causes on one line, each cause once (many errors already repeat their
/// source's text), with the `Display` text of each: what the user reads after `error: `.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    message
}

/// Runs a parsed command line; the exit code is non-zero when anything was rejected.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args, cli.log_format).await,
        Command::Append(args) => append::append(args).await,
        Command::History(args) => client::history(args, false).await,
        Command::Tail(args) => client::history(args, true).await,
        Command::Loadgen(args) => loadgen::run(args).await,
        Command::Verify(args) => audit::verify(args).await,
        Command::Checkpoint(args) => audit::checkpoint(args).await,
        Command::Prove(args) => audit::prove(args).await,
        Command::Config(ConfigCommand::Print(args)) => config_print(&args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pax-ledger", &mut text);
            print_all(&text)
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut text)?;
            print_all(&text)
        }
        Command::Export(args) => audit::export(args).await,
        Command::Import(args) => audit::import(args).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(args).await,
        Command::Key(audit::KeyCommand::Public(args)) => audit::key_public(args),
        Command::Key(audit::KeyCommand::New(args)) => audit::key_new(args),
        Command::Witness(witness::WitnessCommand::Serve(args)) => witness::serve(args).await,
        Command::Members(args) => query::members(args).await,
        Command::Projects(args) => query::projects(args).await,
        Command::ExportRules(args) => query::export_rules(args).await,
        Command::Commitments(args) => query::commitments(args).await,
        Command::Summary(args) => query::summary(args).await,
        Command::Status(args) => query::status(args).await,
        Command::Rebuild(args) => query::rebuild(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Principal(command) => principal::run(command).await,
        Command::Token(command) => principal::token(command).await,
    }
}

/// Starts the server. The order matters for what a failure leaves behind: the configuration
/// is checked, then the data path (without creating anything), then the address is bound, and
/// only then is the data directory created and the ledger opened, so that a port in use or a
/// bad path leaves no new directory and no database behind.
async fn serve(args: ServeArgs, log_format: crate::telemetry::LogFormat) -> anyhow::Result<ExitCode> {
    let flags = FlagOverrides {
        data: args.data,
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        insecure: args.insecure.then_some(true),
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_client_ca: args.tls_client_ca,
        witnesses: (!args.witnesses.is_empty()).then_some(args.witnesses),
        otlp_endpoint: args.otlp_endpoint,
    };
    let (config, origins) = ServeConfig::load_with_origins(args.config.as_deref(), &flags)?;
    let span_export = match &config.otlp_endpoint {
        Some(endpoint) => Some(
            crate::telemetry::init_exporting("info", log_format, endpoint)
                .map_err(|e| anyhow::anyhow!("cannot export spans to {endpoint}: {e}"))?,
        ),
        None => {
            crate::telemetry::init_with("info", log_format);
            None
        }
    };
    let tls = config.tls()?;
    let data_named = origins.data.spell("data", &config.data.display());
    check_data_path(&config.data).map_err(|why| anyhow::anyhow!("{data_named}: {why}"))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {}", config.listen, bind_error(&e)))?;
    let shutdown = shutdown_signal()?;
    std::fs::create_dir_all(&config.data).map_err(|e| {
        anyhow::anyhow!(
            "{data_named}: cannot create the directory: {}; create it, or choose another with --data",
            crate::config::describe_io_error(&e)
        )
    })?;
    let data = config.data.clone();
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {}", bind_error(&e)))?;
            Some((listener, crate::metrics::Metrics::new(&config.data)))
        }
        None => None,
    };
    let observer = crate::ledger::ObserverHandle(
        metrics.as_ref().map(|(_, m)| m.clone() as std::sync::Arc<dyn crate::ledger::GroupObserver>),
    );
    let ledger_config = LedgerConfig { read_only: args.read_only, observer, ..config.ledger() };
    let ledger = tokio::task::spawn_blocking(move || Ledger::open(&data, ledger_config))
        .await?
        .with_context(|| format!("opening the ledger in {}", config.data.display()))?;
    let addr = listener.local_addr()?;
    let closed = ledger.access().is_closed();
    if !closed && !addr.ip().is_loopback() && !config.insecure {
        ledger.shutdown();
        anyhow::bail!(
            "refusing to serve on {addr}: no principal exists, so anyone who reaches the port could record anything; create the first admin with `pax-ledger principal bootstrap --data {}`, or pass --insecure to open it anyway",
            config.data.display()
        );
    }
    // One machine-readable line on stdout, so that scripts (and crash tests) can use port 0.
    println!("pax-ledger listening on {addr}");
    match (closed, addr.ip().is_loopback()) {
        (true, _) => {
            tracing::info!(%addr, data = %config.data.display(), "serving; every call is authenticated (principals exist)")
        }
        (false, true) => tracing::warn!(
            %addr, data = %config.data.display(),
            "serving WITHOUT authentication: no principal exists, so anyone on this machine may record anything; create one with `pax-ledger principal bootstrap`"
        ),
        (false, false) => {
            tracing::warn!(%addr, data = %config.data.display(), "serving WITHOUT authentication on a non-loopback address (--insecure)")
        }
    }
    match (&tls, &config.tls_cert, &config.tls_client_ca) {
        (Some(_), Some(cert), Some(client_ca)) => tracing::info!(
            cert = %cert.display(),
            client_ca = %client_ca.display(),
            "transport: mutual TLS; clients connect with https:// and must present a certificate signed by the client CA"
        ),
        (Some(_), Some(cert), None) => {
            tracing::info!(cert = %cert.display(), "transport: TLS; clients connect with https://")
        }
        _ => tracing::info!("transport: plaintext (no --tls-cert); clients connect with http://"),
    }
    if args.read_only {
        tracing::warn!("serving READ-ONLY (--read-only): reads only; nothing is appended, projected or signed");
    }
    let witnesses = config.witness_endpoints()?;
    for witness in &witnesses {
        tracing::info!(witness = %witness.name, url = %witness.url, "each checkpoint is sent to this witness to cosign");
    }
    let metrics = match metrics {
        Some((listener, metrics)) => {
            let addr = listener.local_addr()?;
            // Stops with the process; a scrape during the stop may find it gone.
            tokio::spawn(crate::metrics::serve(listener, metrics.clone(), ledger.clone(), std::future::pending()));
            println!("pax-ledger metrics on http://{addr}/metrics");
            Some(metrics)
        }
        None => None,
    };
    let options = crate::server::Options { tls, limits: config.access_limits(), witnesses, metrics };
    let served = crate::server::run_with(listener, ledger, options, shutdown).await;
    if let Some(span_export) = span_export {
        span_export.shutdown().await;
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to stdout; a reader that stops early (`| head`) is not an error.
fn print_all(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `config print`: every key, its value and its source.
fn config_print(args: &ConfigPrintArgs) -> anyhow::Result<ExitCode> {
    let (config, origins) = ServeConfig::load_with_origins(args.config.as_deref(), &FlagOverrides::default())?;
    let values = config.entries();
    let width = values.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    for ((key, value), (_, origin)) in values.iter().zip(&origins.keys) {
        match args.output {
            Output::Json => {
                println!("{}", serde_json::json!({"key": key, "value": value, "source": origin.source(key)}))
            }
            Output::Table => {
                let shown = match value {
                    serde_json::Value::Null => "(none)".to_owned(),
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                println!("{key:<width$}  {shown}  ({})", origin.source(key));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Why `data` cannot be (or become) the data directory, found without creating anything: it
/// is a file, or one of its parents is.
fn check_data_path(data: &Path) -> Result<(), String> {
    for (depth, path) in data.ancestors().enumerate() {
        if path.as_os_str().is_empty() {
            break;
        }
        match std::fs::metadata(path) {
            Ok(found) if found.is_dir() => return Ok(()),
            Ok(found) => {
                let what = if found.is_file() { "a file" } else { "not a directory" };
                let hint = "give the path of a directory (it is created if missing)";
                return Err(if depth == 0 {
                    format!("is {what}, not a directory; {hint}")
                } else {
                    format!("{} is {what}, not a directory; {hint}", path.display())
                });
            }
            // Missing, or under a file (found as such further up).
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => continue,
            Err(e) => {
                return Err(format!("cannot look at {}: {}", path.display(), crate::config::describe_io_error(&e)));
            }
        }
    }
    Ok(())
}

/// Why an address cannot be bound, and what to do.
fn bind_error(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "address in use (is another pax-ledger running? stop it, or choose another address with --listen)"
                .to_owned()
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "this machine has no such address (choose one of its own, such as 127.0.0.1, with --listen)".to_owned()
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (a port below 1024 needs privileges; choose another with --listen)".to_owned()
        }
        _ => error.to_string(),
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed now, before anything is served.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The command line parses, calls and prints: it reaches stored data only through
    /// `archive` (offline work) and a running server (gRPC). Of the ledger it may name only what
    /// opens and serves one (`serve`, and `principal bootstrap` on a stopped ledger); of the store
    /// nothing. Read from the source, so that a new import fails here rather than in review.
    #[test]
    fn the_command_line_imports_neither_the_store_nor_the_ledger_internals() {
        const LEDGER_ALLOWED: [&str; 4] = ["Ledger", "LedgerConfig", "ObserverHandle", "GroupObserver"];
        // Spelled in pieces, so that this test's own source does not match.
        let (store, outer_store, ledger) =
            (concat!("crate", "::store"), concat!("pax_ledger", "::store"), concat!("crate", "::ledger::"));
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
        let mut offending = Vec::new();
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            files += 1;
            for (number, line) in source.lines().enumerate() {
                let code = line.split("//").next().unwrap();
                let place = format!("{}:{}: {}", path.display(), number + 1, line.trim());
                if code.contains(store) || code.contains(outer_store) {
                    offending.push(place.clone());
                }
                for (at, _) in code.match_indices(ledger) {
                    let rest = &code[at + ledger.len()..];
                    let names: Vec<&str> = match rest.strip_prefix('{') {
                        Some(list) => list.split('}').next().unwrap().split(',').map(str::trim).collect(),
                        None => vec![rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap()],
                    };
                    if names.iter().any(|name| !name.is_empty() && !LEDGER_ALLOWED.contains(name)) {
                        offending.push(place.clone());
                    }
                }
            }
        }
        assert!(files > 10, "read {files} files of {}", dir.display());
        assert!(
            offending.is_empty(),
            "the command line reaches past archive and the ledger's front:\n{}",
            offending.join("\n")
        );
    }

    use super::Cli;
    use crate::config::{NOT_SERVER_KEYS, ServeConfig};

    /// Every `PAX_LEDGER_*` variable a command declares is either a key of `serve` or one that
    /// `serve` ignores: a client's variable in the environment never stops the server.
    #[test]
    fn every_declared_variable_is_a_server_key_or_ignored_by_the_server() {
        fn walk(command: &clap::Command, found: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if let Some(env) = arg.get_env() {
                    found.push(env.to_string_lossy().into_owned());
                }
            }
            command.get_subcommands().for_each(|sub| walk(sub, found));
        }
        let mut found = Vec::new();
        walk(&Cli::command(), &mut found);
        let keys = serde_json::to_value(ServeConfig::default()).unwrap();
        for env in found {
            let key = env.strip_prefix("PAX_LEDGER_").expect("the prefix").to_ascii_lowercase();
            assert!(
                keys.get(&key).is_some() || NOT_SERVER_KEYS.contains(&key.as_str()),
                "{env}: neither a key of serve nor in NOT_SERVER_KEYS"
            );
        }
    }
}
