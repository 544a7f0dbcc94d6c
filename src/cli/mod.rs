//! The command line (DESIGN.md §6 is its contract: extend it, never rename). `serve` runs the
//! server; the client subcommands talk to one over gRPC and print tables or JSON Lines.

mod audit;
pub mod bundle;
mod client;
mod demo;
pub mod event_line;
mod loadgen;
mod query;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::config::{FlagOverrides, ServeConfig};
use crate::ledger::Ledger;

#[derive(Debug, Parser)]
#[command(
    name = "pax-ledger",
    version,
    about = "An event-sourced, tamper-evident ledger of a multilateral initiative's commitments"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (embedded sled at ./data, listening on 127.0.0.1:50051 by default).
    Serve(ServeArgs),
    /// Append events, one JSON object per input line (from --file or stdin).
    Append(AppendArgs),
    /// Print events in log order (of one stream, or of the whole log).
    History(HistoryArgs),
    /// Like history, then keep following new events.
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
    /// Write a stopped server's log and checkpoints to a self-contained bundle (JSON Lines).
    Export(audit::ExportArgs),
    /// Create a data directory from a bundle, after verifying it.
    Import(audit::ImportArgs),
    /// The checkpoint signing key.
    #[command(subcommand)]
    Key(audit::KeyCommand),
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
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server's URL.
    #[arg(long, env = "PAX_LEDGER_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// A bearer token, sent as `authorization: Bearer T`.
    #[arg(long, env = "PAX_LEDGER_TOKEN")]
    pub token: Option<String>,
    /// table for people, json for JSON Lines (one object per line, flushed line by line).
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
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
#[command(group(ArgGroup::new("source").required(true).args(["data", "bundle", "against"])))]
#[command(group(ArgGroup::new("signed").args(["checkpoint", "bundle", "against"])))]
pub struct VerifyArgs {
    /// The data directory of a stopped server.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A bundle written by `export`.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// A checkpoint file saved by `checkpoint --save`: prove that the running server at --addr
    /// still extends it.
    #[arg(long, value_name = "FILE")]
    pub against: Option<PathBuf>,
    /// With --data: a checkpoint file that the log must still extend.
    #[arg(long, value_name = "FILE", requires = "data")]
    pub checkpoint: Option<PathBuf>,
    /// The ledger's public key (64 hex digits, or a file holding them): every checkpoint must be
    /// signed by it. Without it, a checkpoint is checked against the key it carries.
    #[arg(long, value_name = "KEY", requires = "signed")]
    pub public_key: Option<String>,
    /// --addr and --token are used with --against only.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs a parsed command line; the exit code is non-zero when anything was rejected.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Append(args) => client::append(args).await,
        Command::History(args) => client::history(args, false).await,
        Command::Tail(args) => client::history(args, true).await,
        Command::Loadgen(args) => loadgen::run(args).await,
        Command::Verify(args) => audit::verify(args).await,
        Command::Checkpoint(args) => audit::checkpoint(args).await,
        Command::Export(args) => audit::export(args).await,
        Command::Import(args) => audit::import(args).await,
        Command::Key(audit::KeyCommand::Public(args)) => audit::key_public(args),
        Command::Members(args) => query::members(args).await,
        Command::Projects(args) => query::projects(args).await,
        Command::ExportRules(args) => query::export_rules(args).await,
        Command::Commitments(args) => query::commitments(args).await,
        Command::Summary(args) => query::summary(args).await,
        Command::Status(args) => query::status(args).await,
        Command::Rebuild(args) => query::rebuild(args).await,
        Command::Demo(args) => demo::run(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let flags = FlagOverrides { data: args.data, listen: args.listen, insecure: args.insecure.then_some(true) };
    let config = ServeConfig::load(args.config.as_deref(), &flags)?;
    let data = config.data.clone();
    let ledger_config = config.ledger();
    let ledger = tokio::task::spawn_blocking(move || Ledger::open(&data, ledger_config))
        .await?
        .with_context(|| format!("opening the ledger in {}", config.data.display()))?;
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    // One machine-readable line on stdout, so that scripts (and crash tests) can use port 0.
    println!("pax-ledger listening on {addr}");
    if addr.ip().is_loopback() {
        tracing::info!(%addr, data = %config.data.display(), "serving; no token is configured, so only this loopback address is open");
    } else {
        tracing::warn!(%addr, data = %config.data.display(), "serving WITHOUT authentication on a non-loopback address (--insecure)");
    }
    crate::server::run(listener, ledger, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
