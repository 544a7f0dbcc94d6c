//! `pax-ledger witness serve`: a witness (`c2sp.org/tlog-witness`) that cosigns the checkpoints
//! of the logs it is given, only ever for a log that grew consistently (`crate::witness`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::audit::{keys, note, witness::Witness};

#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Run a witness: POST <URL>/add-checkpoint (c2sp.org/tlog-witness). It prints its verifier
    /// key, which ledgers take with `serve --witness KEY@URL` and auditors with
    /// `verify --witness KEY`.
    Serve(WitnessServeArgs),
}

#[derive(Debug, Args)]
pub struct WitnessServeArgs {
    /// The witness's directory: its key (witness.key, created on first start, mode 0600) and
    /// its state (witness.state: the latest checkpoint cosigned per log).
    #[arg(long, default_value = "witness", env = "PAX_LEDGER_WITNESS_DATA")]
    pub data: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:50052", env = "PAX_LEDGER_WITNESS_LISTEN")]
    pub listen: SocketAddr,
    /// The witness's name: a schema-less URL without spaces or '+' (e.g. witness.example.org/w1).
    #[arg(long)]
    pub name: String,
    /// A log this witness cosigns, by its verifier key as `pax-ledger checkpoint` prints it
    /// (`<origin>+<key id>+<base64 key>`); repeatable.
    #[arg(long = "log", value_name = "VERIFIER_KEY", required = true)]
    pub logs: Vec<String>,
}

pub async fn serve(args: WitnessServeArgs) -> anyhow::Result<ExitCode> {
    note::check_key_name(&args.name).context("--name")?;
    let mut logs = std::collections::BTreeMap::new();
    for text in &args.logs {
        let (origin, key) = note::parse_verifier_key(text).with_context(|| format!("--log {text}"))?;
        logs.insert(origin, key);
    }
    std::fs::create_dir_all(&args.data).with_context(|| format!("creating {}", args.data.display()))?;
    let key = keys::load_or_generate(&args.data.join("witness.key"))?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // One line on stdout for scripts: the address and the verifier key.
    println!("{}", crate::witness::announce(addr, &args.name, &key.verifying_key()));
    for origin in logs.keys() {
        tracing::info!(%origin, "cosigning this log's checkpoints when it only grew");
    }
    let witness = Witness { name: args.name, key, logs };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    crate::witness::serve(listener, witness, &args.data, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
