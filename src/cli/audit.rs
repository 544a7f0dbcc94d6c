//! The auditor's commands (DESIGN.md §6, docs/AUDIT.md §10): `key public`, `export` and `import`
//! of a bundle, `checkpoint [--save FILE]`, and the modes of `verify` — a stopped ledger's
//! directory (`--data`, optionally against a saved checkpoint), a bundle (`--bundle`), or a
//! running ledger against a saved checkpoint (`--against`).
//!
//! Each prints a table for people or one JSON line per object with `--output json`. A check
//! that fails prints its verdict (`FAILED at PLACE: reason`, or `"verdict": "failed"`) and exits
//! with status 1; a command that cannot run at all prints `error: …` on stderr, also status 1.

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ed25519_dalek::VerifyingKey;
use serde_json::json;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::client::{BearerToken, connect_channel};
use super::{ClientArgs, Output, VerifyArgs};
use crate::archive::bundle::{self, Failure, Place};
use crate::archive::files::{create_staged_file, publish_file};
use crate::archive::offline::log_extends;
use crate::archive::transfer::{export_bundle, import_bundle};
use crate::archive::{BUNDLE_BUFFER_BYTES, proofs};
use crate::audit::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint, TreeKind};
use crate::audit::keys::{self, KeyError};
use crate::audit::merkle;
use crate::audit::note::Note;
use crate::audit::{Hash, hex};
use crate::proto::v1 as pb;
use crate::proto::v1::audit_service_client::AuditServiceClient;
use crate::service::status::code_name;

/// The signing key file in a data directory, unless the server's configuration names another.
const SIGNING_KEY_FILE: &str = "signing.key";

// ------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the public key (hex) and key id of the ledger's checkpoint signing key: what
    /// auditors are given to pin with --public-key.
    Public(KeyPublicArgs),
    /// Create a new Ed25519 key file (mode 0600; refused if FILE exists) and print its public
    /// key: a principal's key for signing its events (append --sign-key FILE), once an admin
    /// has registered the public key (principal register-key), or a witness's key.
    New(KeyNewArgs),
}

#[derive(Debug, Args)]
pub struct KeyNewArgs {
    /// Where to write the secret key.
    pub file: PathBuf,
    /// table for people, json for one JSON line.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct KeyPublicArgs {
    /// The server's data directory; the key is its signing.key [default: ./data]
    #[arg(long, conflicts_with = "key")]
    pub data: Option<PathBuf>,
    /// The signing key file, when the server's configuration names another one.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// table for people, json for one JSON line.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The data directory of a stopped server.
    #[arg(long)]
    pub data: PathBuf,
    /// The bundle file to write (JSON Lines, see docs/AUDIT.md §10).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// table for people, json for one JSON line.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The bundle to import (as `export` writes it); it is verified first.
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,
    /// The data directory to create: absent or empty.
    #[arg(long)]
    pub data: PathBuf,
    /// Require every checkpoint of the bundle to be signed by this key (64 hex digits, or a
    /// file holding them).
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
    /// table for people, json for one JSON line.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Where to save the signed checkpoint (the C2SP signed note, which standard tools read), to
    /// check later with `verify --against FILE` or `verify --data DIR --checkpoint FILE`.
    #[command(flatten)]
    pub evidence: EvidenceArgs,
}

/// Saving what the server signed, and whose signature to accept.
#[derive(Debug, Args)]
pub struct EvidenceArgs {
    /// Save it to FILE, to check later: a checkpoint as its C2SP signed note (which standard
    /// tools read; `verify --against FILE`, `verify --data DIR --checkpoint FILE`), a proof of a
    /// view as JSON (`verify --view-proof FILE`).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Replace FILE if it exists (saved evidence: keep the old ones).
    #[arg(long, requires = "save")]
    pub force: bool,
    /// Refuse it unless this key signed its checkpoint (64 hex digits, or a file holding them).
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct ProveArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The entity's stream, e.g. member-JP, commitment-<uuid>, export-rule-<id>.
    pub stream: String,
    /// The checkpoint's size (its position); default: the latest checkpoint.
    #[arg(long, value_name = "N")]
    pub tree_size: Option<u64>,
    /// Where to save the proof (JSON, docs/AUDIT.md §6), to hand to an auditor.
    #[command(flatten)]
    pub evidence: EvidenceArgs,
}

/// `--public-key`: 64 hexadecimal digits, or the path of a file holding them.
pub(super) fn pinned_key(arg: Option<&str>) -> anyhow::Result<Option<VerifyingKey>> {
    let Some(arg) = arg else { return Ok(None) };
    let trimmed = arg.trim();
    let key = if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        keys::parse_public_key(trimmed).context("--public-key")?
    } else {
        keys::read_public_key(Path::new(arg))
            .with_context(|| format!("--public-key {arg}: neither 64 hexadecimal digits nor a public key file"))?
    };
    Ok(Some(key))
}

/// A saved checkpoint: a signed note (read as signed by `key`, which a note does not name) or a
/// JSON form (which carries its key).
fn read_checkpoint_file(path: &Path, key: Option<&VerifyingKey>) -> anyhow::Result<SignedCheckpoint> {
    let text = fs::read_to_string(path).with_context(|| format!("reading the checkpoint file {}", path.display()))?;
    SignedCheckpoint::from_file_text(&text, key).with_context(|| path.display().to_string())
}

/// Whether a saved checkpoint file is a signed note (which names no key), not a JSON form.
fn is_note_file(path: &Path) -> anyhow::Result<bool> {
    let text = fs::read_to_string(path).with_context(|| format!("reading the checkpoint file {}", path.display()))?;
    Ok(!text.trim_start().starts_with('{'))
}

// ------------------------------------------------------------------------------------------
// Printing

/// Writes one line to stdout and flushes it; a reader that went away is not an error.
pub(super) fn print_line(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing to stdout"),
    }
}

/// The authorship line of a verification that replayed access events (nothing if none).
pub(super) fn print_authorship(checked: u64) -> anyhow::Result<()> {
    if checked == 0 {
        return Ok(());
    }
    print_line(&format!(
        "authorship: {} recorded by a principal allowed to, as the access events before each say",
        count(checked, "record")
    ))
}

/// `key  value` lines with the values aligned.
/// The line saying how many signed events were checked, if any were.
pub(super) fn print_signatures(checked: u64) -> anyhow::Result<()> {
    if checked == 0 {
        return Ok(());
    }
    print_line(&format!(
        "signatures: {}, each signed by its recording principal under a key it had registered then",
        count(checked, "event")
    ))
}

fn print_block(pairs: &[(&str, String)]) -> anyhow::Result<()> {
    let width = pairs.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    pairs.iter().try_for_each(|(key, value)| print_line(format!("{key:<width$}  {value}").trim_end()))
}

/// How a failure reads in a table: where it was found, or (for the comparison with a saved
/// checkpoint, whose reason is a whole sentence) the reason alone.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Headline {
    AtPlace,
    Reason,
}

/// Prints a failed check and returns the exit status for it.
pub(super) fn print_failure(
    output: Output,
    failure: &Failure,
    headline: Headline,
    extra: serde_json::Value,
) -> anyhow::Result<ExitCode> {
    match output {
        Output::Json => {
            let mut line = json!({"verdict": "failed", "at": failure.at.to_string(), "reason": failure.reason});
            if let (Some(line), Some(verified)) = (line.as_object_mut(), failure.verified_up_to) {
                line.insert("verified_up_to".into(), verified.into());
            }
            if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
                line.extend(extra);
            }
            print_line(&line.to_string())?;
        }
        Output::Table if headline == Headline::Reason => print_line(&format!("FAILED: {}", failure.reason))?,
        Output::Table => print_line(&format!("FAILED at {}: {}", failure.at, failure.reason))?,
    }
    Ok(ExitCode::FAILURE)
}

/// Whose key a checkpoint was checked against when none was pinned.
#[derive(Clone, Copy)]
pub(super) enum Unpinned {
    /// Each checkpoint's own.
    Carried,
    /// The saved checkpoint's, for the ledger's newer one.
    Saved,
    /// The one the server (or the data directory) names: a signed note names none; it must
    /// still carry that key's signature, so a ledger that changed its key cannot vouch for it.
    Ledger,
}

pub(super) fn signer_text(key_ids: &[String], pinned: bool, unpinned: Unpinned) -> String {
    let keys = match key_ids {
        [] => return String::new(),
        [one] => format!("signed by key {one}"),
        many => format!("signed by keys {}", many.join(", ")),
    };
    let against = match unpinned {
        Unpinned::Carried => "the key in the checkpoint itself",
        Unpinned::Saved => "the key of the saved checkpoint",
        Unpinned::Ledger => "the ledger's current key, which also signed the saved note",
    };
    match pinned {
        true => format!("{keys} (pinned)"),
        false => format!("{keys} (not pinned: checked against {against}; pass --public-key KEY to pin the ledger's)"),
    }
}

/// `--witness` values: a witness verifier key (`<name>+<id>+<base64>`), or `NAME=KEY` with KEY
/// in hex.
fn witness_keys(args: &[String]) -> anyhow::Result<Vec<(String, VerifyingKey)>> {
    args.iter()
        .map(|text| {
            if let Ok(parsed) = crate::witness::parse_witness_key(text) {
                return Ok(parsed);
            }
            let (name, key) = text
                .split_once('=')
                .with_context(|| format!("--witness {text}: neither a witness verifier key nor NAME=KEY"))?;
            Ok((name.to_owned(), keys::parse_public_key(key).with_context(|| format!("--witness {text}"))?))
        })
        .collect()
}

/// Whether `checkpoint` carries valid cosignatures of at least `quorum` of `witnesses`: how
/// many it does, or why not.
fn check_quorum(
    checkpoint: &SignedCheckpoint,
    witnesses: &[(String, VerifyingKey)],
    quorum: usize,
) -> Result<usize, String> {
    let cosigned = crate::audit::witness::count_cosigners(checkpoint, witnesses);
    if cosigned < quorum {
        return Err(format!(
            "the checkpoint at position {} is cosigned by {cosigned} of the {} witnesses given, fewer than the \
             quorum of {quorum}: no quorum of witnesses saw this history",
            checkpoint.checkpoint.position,
            witnesses.len()
        ));
    }
    Ok(cosigned)
}

/// `1 record`, `2 records`.
pub(super) fn count(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

// ------------------------------------------------------------------------------------------
// key public

/// `key public`: the public half of the signing key, and its id.
pub fn key_public(args: KeyPublicArgs) -> anyhow::Result<ExitCode> {
    let path = match (&args.key, &args.data) {
        (Some(key), _) => key.clone(),
        (None, data) => data.clone().unwrap_or_else(|| PathBuf::from("data")).join(SIGNING_KEY_FILE),
    };
    let key = keys::load(&path).map_err(|error| match error {
        KeyError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound => anyhow::anyhow!(
            "no signing key at {}: the server creates it when it first starts on its data directory \
             (pass --data DIR, or --key FILE if its configuration names another file)",
            path.display()
        ),
        other => other.into(),
    })?;
    let public = key.verifying_key();
    let (public_key, key_id) = (keys::public_key_hex(&public), keys::key_id(&public));
    match args.output {
        Output::Json => print_line(&json!({"public_key": public_key, "key_id": key_id}).to_string())?,
        Output::Table => print_block(&[("public_key", public_key), ("key_id", key_id)])?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn key_new(args: KeyNewArgs) -> anyhow::Result<ExitCode> {
    let public = keys::generate(&args.file)?.verifying_key();
    let credential = crate::domain::Credential::of_signing_key(public.as_bytes());
    let fields = [
        ("public_key", keys::public_key_hex(&public)),
        ("key_id", keys::key_id(&public)),
        ("credential_id", credential.id()),
    ];
    match args.output {
        Output::Json => {
            print_line(&json!(fields.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()).to_string())?
        }
        Output::Table => print_block(&fields)?,
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------------------
// export

/// `export --data DIR --to FILE`: the whole log and the stored checkpoints as a bundle, streamed
/// to a hidden file beside FILE, synced, then published under its name.
pub async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let (data, to, force) = (args.data.clone(), args.to.clone(), args.force);
    let exported = tokio::task::spawn_blocking(move || export_bundle(&data, &to, force)).await??;
    let head_hash = hex::encode(&exported.head.hash);
    match args.output {
        Output::Json => print_line(
            &json!({
                "records": exported.records, "checkpoints": exported.checkpoints,
                "position": exported.head.position.0, "head_hash": head_hash,
                "bundle": args.to, "bytes": exported.bytes,
            })
            .to_string(),
        )?,
        Output::Table => print_line(&format!(
            "exported {} and {} up to position {} (head hash {head_hash}) to {} ({} bytes)",
            count(exported.records, "record"),
            count(exported.checkpoints, "checkpoint"),
            exported.head.position,
            args.to.display(),
            exported.bytes
        ))?,
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------------------
// import

/// `import --bundle FILE --data DIR`: verifies the bundle while writing it into a hidden
/// directory beside DIR, and renames that to DIR only once all of it verified: DIR never holds a
/// partial or unverified import.
pub async fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let pinned = pinned_key(args.public_key.as_deref())?;
    let (bundle_path, data) = (args.bundle.clone(), args.data.clone());
    let outcome = tokio::task::spawn_blocking(move || import_bundle(&bundle_path, &data, pinned.as_ref())).await??;
    let summary = match outcome {
        Ok(summary) => summary,
        Err(failure) => {
            let code = print_failure(
                args.output,
                &failure,
                Headline::AtPlace,
                json!({"bundle": args.bundle, "imported": false}),
            )?;
            eprintln!("error: the bundle does not verify: nothing was imported into {}", args.data.display());
            return Ok(code);
        }
    };
    print_imported("imported", args.output, &summary, &args.data, args.public_key.is_some())?;
    Ok(ExitCode::SUCCESS)
}

/// What `import` and `restore` print once a copy verified into `data` ("imported",
/// "restored").
pub(super) fn print_imported(
    verb: &str,
    output: Output,
    summary: &bundle::BundleSummary,
    data: &Path,
    pinned: bool,
) -> anyhow::Result<()> {
    let head_hash = hex::encode(&summary.head_hash);
    match output {
        Output::Json => print_line(
            &json!({
                "records": summary.records, "checkpoints": summary.checkpoints, "position": summary.records,
                "head_hash": head_hash, "data": data, "key_ids": summary.key_ids, "signer_pinned": pinned,
            })
            .to_string(),
        )?,
        Output::Table => {
            print_line(&format!(
                "{verb} {} and {} up to position {} (head hash {head_hash}) into {}",
                count(summary.records, "record"),
                count(summary.checkpoints, "checkpoint"),
                summary.records,
                data.display()
            ))?;
            if !summary.key_ids.is_empty() {
                print_line(&format!("checkpoints {}", signer_text(&summary.key_ids, pinned, Unpinned::Carried)))?;
            }
            print_line(
                "no signing key was copied: a server started on this directory creates its own, \
                 and signs its checkpoints with another key id",
            )?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// checkpoint

type Connection = InterceptedService<Channel, BearerToken>;

async fn audit_client(args: &ClientArgs) -> anyhow::Result<AuditServiceClient<Connection>> {
    Ok(AuditServiceClient::new(connect_channel(args).await?))
}

use super::client::status_error;

/// A checkpoint as the server sent it, from its JSON form.
fn server_checkpoint(checkpoint: Option<&pb::SignedCheckpoint>) -> Result<SignedCheckpoint, String> {
    let checkpoint = checkpoint.ok_or("the server sent no checkpoint")?;
    SignedCheckpoint::from_json(&checkpoint.json).map_err(|e| format!("the server's checkpoint is not valid: {e}"))
}

/// `checkpoint [--save FILE]`: has the server sign a checkpoint at its head now, checks it,
/// prints it and saves it.
pub async fn checkpoint(args: CheckpointArgs) -> anyhow::Result<ExitCode> {
    let pinned = pinned_key(args.evidence.public_key.as_deref())?;
    let staged = args.evidence.save.as_deref().map(|path| create_staged_file(path, args.evidence.force)).transpose()?;
    let mut client = audit_client(&args.client).await?;
    let request = pb::GetCheckpointRequest { position: None, fresh: true };
    let response = client.get_checkpoint(request).await.map_err(status_error)?.into_inner();
    let signed = server_checkpoint(Some(&response)).map_err(anyhow::Error::msg)?;
    bundle::check_signature(&signed, pinned.as_ref())
        .map_err(|reason| anyhow::anyhow!("the server's checkpoint does not verify: {reason}"))?;
    if let (Some(path), Some((mut file, staged))) = (&args.evidence.save, staged) {
        let text = signed.file_text();
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).context("writing the checkpoint")?;
        publish_file(staged, path, args.evidence.force)?;
    }
    let checkpoint = &signed.checkpoint;
    match args.client.output {
        // The compact JSON form: a line that is itself a checkpoint file.
        Output::Json => print_line(&serde_json::to_string(&signed)?)?,
        Output::Table => {
            let mut block = vec![
                ("position", checkpoint.position.to_string()),
                ("root", hex::encode(&checkpoint.root)),
                ("view_digest", checkpoint.view_digest.map_or_else(|| "none".to_owned(), |d| hex::encode(&d))),
                (
                    "view_tree",
                    checkpoint.view_tree.map_or_else(
                        || "none".to_owned(),
                        |tree| format!("{} records, root {}", tree.records, hex::encode(&tree.root)),
                    ),
                ),
                ("time", checkpoint.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                ("key_id", signed.key_id()),
            ];
            if let (Some(origin), Some(verifier_key)) = (signed.origin(), signed.verifier_key()) {
                block.push(("origin", origin.to_owned()));
                block.push(("verifier_key", verifier_key));
            }
            if let Some(path) = &args.evidence.save {
                block.push(("saved_to", path.display().to_string()));
            }
            print_block(&block)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------------------
// verify

/// `verify`: one of `--data`, `--bundle`, `--against`.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let pinned = pinned_key(args.public_key.as_deref())?;
    match (&args.data, &args.bundle, &args.against, &args.backup) {
        (Some(data), None, None, None) => verify_data(data.clone(), &args, pinned).await,
        (None, Some(bundle), None, None) => {
            let file = File::open(bundle).with_context(|| format!("opening {}", bundle.display()))?;
            let input = BufReader::with_capacity(BUNDLE_BUFFER_BYTES, file);
            verify_bundle(input, ("bundle", bundle.clone()), &args, pinned).await
        }
        (None, None, None, Some(dir)) => {
            let dir = dir.clone();
            let input = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || crate::archive::backup::Backup::open(&dir, false).and_then(|backup| backup.reader())
            })
            .await??;
            verify_bundle(input, ("backup", dir), &args, pinned).await
        }
        (None, None, Some(file), None) => verify_against(file, &args, pinned).await,
        (None, None, None, None) if args.view_proof.is_some() => verify_view_proof(&args, pinned),
        _ => bail!("give exactly one of --data, --bundle, --backup, --against and --view-proof"),
    }
}

/// `prove STREAM`: asks the server for the proof of a view, checks it, prints it, saves it.
pub async fn prove(args: ProveArgs) -> anyhow::Result<ExitCode> {
    let pinned = pinned_key(args.evidence.public_key.as_deref())?;
    let staged = args.evidence.save.as_deref().map(|path| create_staged_file(path, args.evidence.force)).transpose()?;
    let mut client = audit_client(&args.client).await?;
    let request = pb::GetViewProofRequest { stream: args.stream.clone(), tree_size: args.tree_size.unwrap_or(0) };
    let response = client.get_view_proof(request).await.map_err(status_error)?.into_inner();
    let proof = proofs::view_proof_from_wire(response).map_err(anyhow::Error::msg)?;
    let proven = proofs::verify_view_proof(&proof, pinned.as_ref())
        .map_err(|reason| anyhow::anyhow!("the server's view proof does not verify: {reason}"))?;
    if let (Some(path), Some((mut file, staged))) = (&args.evidence.save, staged) {
        let text = format!("{}\n", serde_json::to_string_pretty(&proof.to_json())?);
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).context("writing the proof")?;
        publish_file(staged, path, args.evidence.force)?;
    }
    print_proven(&proof, &proven, args.client.output)?;
    Ok(ExitCode::SUCCESS)
}

/// What a verified view proof says, for people or as one JSON line.
fn print_proven(proof: &proofs::ViewProof, proven: &proofs::ProvenView, output: Output) -> anyhow::Result<()> {
    let record = &proven.record;
    let tree = proof.checkpoint.checkpoint.view_tree.expect("a verified proof's checkpoint states a view tree");
    match output {
        Output::Json => print_line(
            &json!({
                "verdict": "ok", "stream": record.stream.as_str(), "checkpoint_position": proven.position,
                "key_id": proof.checkpoint.key_id(), "revision": record.revision.0,
                "last_position": record.last_position.0, "events": proof.events.len(),
                "view_records": tree.records, "view_record": hex::encode(&proof.view_record),
            })
            .to_string(),
        ),
        Output::Table => print_block(&[
            ("verdict", "ok: the view record is in the checkpoint's view tree, and its events fold to it".to_owned()),
            ("stream", record.stream.to_string()),
            ("checkpoint", format!("position {} (key {})", proven.position, proof.checkpoint.key_id())),
            ("state", state_text(&record.state)),
            ("revision", format!("{} (last event at position {})", record.revision, record.last_position)),
            ("updated_by", record.updated_by.clone()),
            ("events", format!("{}, each proved in the log's tree of {}", proof.events.len(), proven.position)),
            ("view_tree", format!("{} records, root {}", tree.records, hex::encode(&tree.root))),
        ]),
    }
}

/// A view's state in one line, for people.
fn state_text(state: &crate::domain::EntityState) -> String {
    use crate::domain::EntityState;
    let name = |value: &dyn std::fmt::Debug| format!("{value:?}").to_lowercase();
    match state {
        EntityState::Member(m) => format!(
            "member {} ({}), {}, role {}{}",
            m.code.as_str(),
            m.name,
            name(&m.kind),
            name(&m.role),
            if m.withdrawn { ", withdrawn" } else { "" }
        ),
        EntityState::Project(p) => format!("project {:?}, hosted by {}, {}", p.title, p.host.as_str(), name(&p.status)),
        EntityState::ExportRule(r) => format!(
            "export rule {}: {} from {} to {}, {} from {}",
            r.rule_id.as_str(),
            r.item,
            r.origin.as_str(),
            r.destination.as_str(),
            name(&r.treatment),
            r.effective_from
        ),
        EntityState::Commitment(c) => {
            format!("commitment of {}, {}, due {}: {:?}", c.member.as_str(), name(&c.status), c.due_on, c.description)
        }
        EntityState::Summit(s) => format!("summit of {} in {}, hosted by {}", s.date, s.location, s.host.as_str()),
        other => format!("{other:?}"),
    }
}

/// `verify --view-proof FILE`: a saved view proof, offline.
fn verify_view_proof(args: &VerifyArgs, pinned: Option<VerifyingKey>) -> anyhow::Result<ExitCode> {
    let path = args.view_proof.as_ref().expect("checked by the caller");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not a view proof (JSON)", path.display()))?;
    let proof = proofs::ViewProof::from_json(&value)
        .map_err(|reason| anyhow::anyhow!("{} is not a view proof: {reason}", path.display()))?;
    match proofs::verify_view_proof(&proof, pinned.as_ref()) {
        Ok(proven) => {
            print_proven(&proof, &proven, args.client.output)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            match args.client.output {
                Output::Json => print_line(
                    &json!({"verdict": "failed", "at": format!("view proof of {}", proof.stream), "reason": reason})
                        .to_string(),
                )?,
                Output::Table => print_line(&format!("FAILED: the view proof of {}: {reason}", proof.stream))?,
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `verify --data DIR [--checkpoint FILE]`: the chain of a stopped ledger, and that its log
/// still extends a saved checkpoint.
async fn verify_data(data: PathBuf, args: &VerifyArgs, pinned: Option<VerifyingKey>) -> anyhow::Result<ExitCode> {
    // A saved note names no key: the pinned one, or the one in the data directory.
    let note_key = match (&args.checkpoint, &pinned) {
        (Some(file), None) if is_note_file(file)? => {
            Some(keys::load(&data.join("signing.key")).map(|key| key.verifying_key()).with_context(|| {
                format!("{} is a signed note, which names no key: pass --public-key", file.display())
            })?)
        }
        _ => pinned,
    };
    let saved = args.checkpoint.as_deref().map(|file| read_checkpoint_file(file, note_key.as_ref())).transpose()?;
    let output = args.client.output;
    let dir = data.clone();
    let verdict = tokio::task::spawn_blocking(move || crate::archive::offline::verify_data(&dir))
        .await?
        .with_context(|| format!("verifying {}", data.display()))?;
    let hash = hex::encode(&verdict.head.1);
    let rate = verdict.verified as f64 / verdict.seconds.max(1e-9);
    match (&verdict.failure, output) {
        (None, Output::Json) => print_line(
            &json!({
                "verdict": "ok", "position": verdict.head.0, "head_hash": hash,
                "seconds": verdict.seconds, "events_per_sec": rate.round(),
                "checkpoints_verified": verdict.checkpoints_verified,
                "authorship_checked": verdict.authorship_checked,
                "signatures_checked": verdict.signatures_checked,
            })
            .to_string(),
        )?,
        (None, Output::Table) => {
            print_line(&format!(
                "ok: {} events verified up to position {} (head hash {hash}) in {:.2} s; the Merkle subtree roots and {} stored checkpoint(s) hold",
                verdict.verified, verdict.head.0, verdict.seconds, verdict.checkpoints_verified
            ))?;
            print_authorship(verdict.authorship_checked)?;
            print_signatures(verdict.signatures_checked)?;
        }
        (Some((place, reason)), Output::Json) => print_line(
            &json!({"verdict": "failed", "at": place, "reason": reason, "verified_up_to": verdict.head.0}).to_string(),
        )?,
        (Some((place, reason)), Output::Table) => {
            print_line(&format!("FAILED at {place}: {reason} ({} events verified before it)", verdict.verified))?
        }
    }
    let (Some(saved), Some(file)) = (saved, args.checkpoint.clone()) else {
        return Ok(if verdict.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    };
    if !verdict.is_ok() {
        // The log itself is broken: a comparison with the checkpoint would prove nothing more.
        return Ok(ExitCode::FAILURE);
    }
    let checked = saved.clone();
    let extends = tokio::task::spawn_blocking(move || log_extends(&data, &checked, pinned.as_ref())).await??;
    let about = json!({"checkpoint": file, "checkpoint_position": saved.checkpoint.position});
    if let Err(failure) = extends {
        return print_failure(output, &failure, Headline::Reason, about);
    }
    let pinned = args.public_key.is_some();
    let root = hex::encode(&saved.checkpoint.root);
    match output {
        Output::Json => print_line(
            &json!({
                "verdict": "ok", "checkpoint": file, "checkpoint_position": saved.checkpoint.position,
                "root": root, "key_id": saved.key_id(), "signer_pinned": pinned,
            })
            .to_string(),
        )?,
        Output::Table => print_line(&format!(
            "ok: the log extends the checkpoint at position {} of {} (root {root}), {}",
            saved.checkpoint.position,
            file.display(),
            signer_text(&[saved.key_id()], pinned, Unpinned::Carried)
        ))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify --bundle FILE`: the records, their chain, the head, and each checkpoint's root and
/// signature.
/// The same for a backup (`--backup DIR`), whose segments read in order are one bundle.
/// `source`: what was verified, named in JSON output (`"bundle": FILE` or `"backup": DIR`).
async fn verify_bundle(
    input: impl io::BufRead + Send + 'static,
    source: (&str, PathBuf),
    args: &VerifyArgs,
    pinned: Option<VerifyingKey>,
) -> anyhow::Result<ExitCode> {
    let output = args.client.output;
    let witnesses = witness_keys(&args.witnesses)?;
    let is_pinned = pinned.is_some();
    let verdict = tokio::task::spawn_blocking(move || bundle::verify(input, pinned.as_ref(), |_| Ok(()))).await??;
    let (source_key, path) = source;
    let source = json!({ (source_key): path });
    let summary = match verdict {
        Ok(summary) => summary,
        Err(failure) => return print_failure(output, &failure, Headline::AtPlace, source.clone()),
    };
    let mut cosigned = None;
    if let Some(quorum) = args.quorum {
        let verdict = match &summary.latest_note {
            Some(latest) => {
                check_quorum(latest, &witnesses, quorum).map_err(|reason| (latest.checkpoint.position, reason))
            }
            None => Err((0, "the bundle holds no note checkpoint to count cosignatures on".to_owned())),
        };
        match verdict {
            Ok(count) => cosigned = Some(count),
            Err((position, reason)) => {
                let failure = Failure { at: Place::Checkpoint(position), reason, verified_up_to: None };
                return print_failure(output, &failure, Headline::Reason, source.clone());
            }
        }
    }
    let head_hash = hex::encode(&summary.head_hash);
    match output {
        Output::Json => print_line(
            &json!({
                "verdict": "ok", (source_key): path, "position": summary.records, "head_hash": head_hash,
                "records": summary.records, "checkpoints": summary.checkpoints, "key_ids": summary.key_ids,
                "signer_pinned": is_pinned, "exported_at": summary.exported_at,
                "authorship_checked": summary.authorship_checked, "witnesses_cosigned": cosigned,
                "signatures_checked": summary.signatures_checked,
            })
            .to_string(),
        )?,
        Output::Table => {
            print_line(&format!(
                "ok: {} verified up to position {} (head hash {head_hash}), {} verified (Merkle roots and \
                 signatures)",
                count(summary.records, "record"),
                summary.records,
                count(summary.checkpoints, "checkpoint")
            ))?;
            print_authorship(summary.authorship_checked)?;
            print_signatures(summary.signatures_checked)?;
            if summary.checkpoints > 0 {
                print_line(&format!("checkpoints {}", signer_text(&summary.key_ids, is_pinned, Unpinned::Carried)))?;
            } else {
                print_line(
                    "note: the bundle holds no checkpoint, so nothing ties its history to a signature: \
                     anyone could have written a consistent chain",
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify --against FILE`: has the running ledger sign a checkpoint at its head, asks for the
/// proof that its log extends the saved one, and checks both with the saved checkpoint's key
/// (or the pinned one).
async fn verify_against(file: &Path, args: &VerifyArgs, pinned: Option<VerifyingKey>) -> anyhow::Result<ExitCode> {
    let client_args = &args.client;
    let witnesses = witness_keys(&args.witnesses)?;
    let mut client = audit_client(client_args).await?;
    // A checkpoint at the head now, rather than the latest issued: the proof then covers every
    // record the ledger holds, not only those up to a checkpoint that may be the saved one.
    let current = client
        .get_checkpoint(pb::GetCheckpointRequest { position: None, fresh: true })
        .await
        .map_err(status_error)?
        .into_inner();
    // A saved note names no key: the pinned one, or the ledger's (the note must carry its
    // signature, so a ledger that changed keys cannot vouch for it).
    let (note_key, unpinned) = match pinned {
        Some(key) => (Some(key), Unpinned::Saved),
        None if is_note_file(file)? => {
            let key = server_checkpoint(Some(&current)).map_err(anyhow::Error::msg)?.public_key;
            (Some(key), Unpinned::Ledger)
        }
        None => (None, Unpinned::Saved),
    };
    let output = client_args.output;
    let saved = match read_checkpoint_file(file, note_key.as_ref()) {
        Ok(saved) => saved,
        Err(error) if matches!(error.downcast_ref(), Some(CheckpointError::NoLogSignature { .. })) => {
            // A note the ledger's key never signed: it cannot vouch for it.
            let text = fs::read_to_string(file)?;
            let position = Note::parse(&text)
                .ok()
                .and_then(|note| Checkpoint::parse_note_text(&note.text).ok())
                .map_or(Place::UnreadableCheckpoint, |(_, checkpoint)| Place::Checkpoint(checkpoint.position));
            let failure = Failure {
                at: position,
                reason: format!(
                    "the saved note is not signed by the ledger's current key {}: nothing it signs can vouch for \
                     the saved checkpoint ({error:#})",
                    note_key.as_ref().map(keys::key_id).unwrap_or_default()
                ),
                verified_up_to: None,
            };
            return print_failure(output, &failure, Headline::Reason, json!({"checkpoint": file}));
        }
        Err(error) => return Err(error),
    };
    let old_size = saved.checkpoint.position;
    let about = json!({"checkpoint": file, "checkpoint_position": old_size});
    let fail = |reason: String| Failure {
        at: Place::Checkpoint(old_size),
        reason: format!("the ledger no longer extends the checkpoint at position {old_size}: {reason}"),
        verified_up_to: None,
    };
    if let Err(reason) = bundle::check_signature(&saved, pinned.as_ref()) {
        let failure = Failure {
            at: Place::Checkpoint(old_size),
            reason: format!("the checkpoint file does not verify: {reason}"),
            verified_up_to: None,
        };
        return print_failure(output, &failure, Headline::Reason, about);
    }
    let trusted = pinned.unwrap_or(saved.public_key);
    if saved.tree() == TreeKind::Blake3 {
        let reason = format!(
            "the saved checkpoint is of format 1 (a BLAKE3 tree, signed before the ledger's checkpoints became \
             signed notes over an RFC 6962 SHA-256 tree), and the server proves consistency in the new tree only. \
             Check it against a copy of the whole log instead: `pax-ledger export --data DIR --to FILE` on the \
             stopped ledger and `pax-ledger verify --bundle FILE`, or `pax-ledger verify --data DIR --checkpoint {}`",
            file.display()
        );
        let failure = Failure { at: Place::Checkpoint(old_size), reason, verified_up_to: None };
        return print_failure(output, &failure, Headline::Reason, about);
    }
    if current.position < old_size {
        let reason = format!(
            "records were removed: the checkpoint covers {old_size} records, the ledger now holds only {}",
            current.position
        );
        return print_failure(output, &fail(reason), Headline::Reason, about);
    }
    let request = pb::GetConsistencyProofRequest { old_size, new_size: current.position };
    let response = match client.get_consistency_proof(request).await {
        Ok(response) => response.into_inner(),
        // The server's own answer that it cannot show its log extends the checkpoint.
        Err(status)
            if matches!(
                status.code(),
                Code::OutOfRange | Code::InvalidArgument | Code::FailedPrecondition | Code::DataLoss | Code::NotFound
            ) =>
        {
            let reason = format!("the server cannot prove it: {}: {}", code_name(status.code()), status.message());
            return print_failure(output, &fail(reason), Headline::Reason, about);
        }
        Err(status) => return Err(status_error(status).context("asking for a consistency proof")),
    };
    match check_consistency(&saved, &trusted, &response) {
        Err(reason) => {
            let failure = Failure { at: Place::Checkpoint(old_size), reason, verified_up_to: None };
            print_failure(output, &failure, Headline::Reason, about)
        }
        Ok(newer) => {
            // The checkpoint just signed is sent to the witnesses at once: wait for their
            // cosignatures (the same checkpoint, as stored, re-read) up to a bound.
            let mut cosigned = None;
            if let Some(quorum) = args.quorum {
                let position = newer.checkpoint.position;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                loop {
                    let stored = client
                        .get_checkpoint(pb::GetCheckpointRequest { position: Some(position), fresh: false })
                        .await
                        .map_err(status_error)?
                        .into_inner();
                    let stored = server_checkpoint(Some(&stored)).map_err(anyhow::Error::msg)?;
                    if stored.checkpoint != newer.checkpoint || stored.public_key != newer.public_key {
                        bail!("the server answered another checkpoint at position {position}");
                    }
                    match check_quorum(&stored, &witnesses, quorum) {
                        Ok(count) => {
                            cosigned = Some(count);
                            break;
                        }
                        Err(_) if std::time::Instant::now() < deadline => {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        Err(reason) => {
                            let failure = Failure { at: Place::Checkpoint(position), reason, verified_up_to: None };
                            return print_failure(output, &failure, Headline::Reason, about);
                        }
                    }
                }
            }
            let is_pinned = pinned.is_some();
            let root = hex::encode(&newer.checkpoint.root);
            match output {
                Output::Json => print_line(
                    &json!({
                        "verdict": "ok", "checkpoint": file, "checkpoint_position": old_size,
                        "position": newer.checkpoint.position, "root": root, "key_id": newer.key_id(),
                        "signer_pinned": is_pinned, "witnesses_cosigned": cosigned,
                    })
                    .to_string(),
                )?,
                Output::Table => print_line(&format!(
                    "ok: the ledger extends the checkpoint at position {old_size} of {}: its checkpoint at \
                     position {} (root {root}) is consistent with it, {}",
                    file.display(),
                    newer.checkpoint.position,
                    signer_text(&[newer.key_id()], is_pinned, unpinned)
                ))?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Checks a consistency proof from `saved` to the checkpoint the server sent with it; returns
/// that checkpoint.
fn check_consistency(
    saved: &SignedCheckpoint,
    trusted: &VerifyingKey,
    response: &pb::ConsistencyProof,
) -> Result<SignedCheckpoint, String> {
    let old_size = saved.checkpoint.position;
    let newer = server_checkpoint(response.checkpoint.as_ref())?;
    if newer.public_key != *trusted {
        let whose = if *trusted == saved.public_key { "the saved checkpoint's key" } else { "the pinned key" };
        return Err(format!(
            "the ledger's checkpoint at position {} is signed by key {}, not by {whose} {}: nothing it \
             signs can vouch for the saved checkpoint",
            newer.checkpoint.position,
            newer.key_id(),
            keys::key_id(trusted),
        ));
    }
    bundle::check_signature(&newer, Some(trusted))
        .map_err(|reason| format!("the ledger's current checkpoint does not verify: {reason}"))?;
    let no_longer =
        |reason: String| format!("the ledger no longer extends the checkpoint at position {old_size}: {reason}");
    let new_size = newer.checkpoint.position;
    if response.old_size != old_size || response.new_size != new_size || response.new_root != newer.checkpoint.root {
        return Err(format!(
            "the server answered a proof from {} to {} that does not go with its checkpoint at {new_size}",
            response.old_size, response.new_size
        ));
    }
    if response.old_root != saved.checkpoint.root {
        return Err(no_longer(format!(
            "the history up to position {old_size} was rewritten: the ledger's Merkle root of its first \
             {old_size} records is now {}, the checkpoint signed {}",
            hex::encode(&response.old_root),
            hex::encode(&saved.checkpoint.root)
        )));
    }
    let proof = response
        .proof
        .iter()
        .map(|hash| Hash::try_from(hash.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "a hash of the consistency proof is not 32 bytes".to_owned())?;
    merkle::verify_consistency(old_size, new_size, &saved.checkpoint.root, &newer.checkpoint.root, &proof)
        .map_err(|e| no_longer(format!("the consistency proof from {old_size} to {new_size} does not verify: {e}")))?;
    Ok(newer)
}
