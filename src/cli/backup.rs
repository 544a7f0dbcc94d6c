//! `backup --to DIR` (from a running server, over `AuditService.ExportLog`) and
//! `restore --from DIR --data NEW` (see `archive::backup` for the directory's layout).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use ed25519_dalek::VerifyingKey;
use serde_json::json;

use super::audit::{
    Headline, Unpinned, count, pinned_key, print_authorship, print_failure, print_imported, print_line,
    print_signatures, signer_text,
};
use super::client::{connect_channel, status_error};
use super::{ClientArgs, Output};
use crate::archive::backup::{Added, Backup, SegmentWriter};
use crate::archive::transfer;
use crate::audit::Hash;
use crate::audit::checkpoint::SignedCheckpoint;
use crate::proto::v1 as pb;
use crate::proto::v1::audit_service_client::AuditServiceClient;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The backup directory: created with the first backup; later runs add to it.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Require every checkpoint in the backup to be signed by this key (64 hex digits, or a
    /// file holding them).
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory, as `backup` writes it.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The data directory to create: absent or empty.
    #[arg(long)]
    pub data: PathBuf,
    /// Require every checkpoint of the backup to be signed by this key (64 hex digits, or a
    /// file holding them).
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
    /// table for people, json for one JSON line.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// The 32 bytes of a hash the server sent.
fn wire_hash(bytes: &[u8], what: &str) -> anyhow::Result<Hash> {
    <Hash>::try_from(bytes).map_err(|_| anyhow::anyhow!("the server sent a {what} of {} bytes, not 32", bytes.len()))
}

/// `backup --to DIR`: exports what is new since the backup's last position, writes it as a
/// segment, verifies the whole backup with it, and publishes it.
pub async fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    use pb::export_log_response::Item;
    let pinned = pinned_key(args.public_key.as_deref())?;
    let dir = args.to.clone();
    let mut backup = tokio::task::spawn_blocking(move || Backup::open(&dir, true)).await??;
    let (after_position, after_hash) = backup.head()?;
    let mut client = AuditServiceClient::new(connect_channel(&args.client).await?)
        .max_decoding_message_size(crate::server::REQUEST_BYTES_MAX);
    let request = pb::ExportLogRequest {
        after_position,
        after_hash: if after_position == 0 { Vec::new() } else { after_hash.to_vec() },
    };
    let mut stream = client.export_log(request).await.map_err(status_error)?.into_inner();
    let Some(Item::Head(head)) = stream.message().await.map_err(status_error)?.and_then(|m| m.item) else {
        bail!("the server's export did not start with its head");
    };
    let output = args.client.output;
    if head.position == after_position {
        match output {
            Output::Json => print_line(
                &json!({"backup": args.to, "added_records": 0, "position": after_position, "segments": backup.manifest().segments.len()})
                    .to_string(),
            )?,
            Output::Table => print_line(&format!(
                "nothing new since position {after_position}: {} left as it was",
                args.to.display()
            ))?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let head_hash = wire_hash(&head.head_hash, "head hash")?;
    let mut segment = backup.begin(head.position, &head_hash)?;
    // Records arrive faster than a segment is written: the writing runs off the async threads,
    // a message at a time.
    while let Some(message) = stream.message().await.map_err(status_error)? {
        segment = tokio::task::spawn_blocking(move || add(segment, message.item)).await??;
    }
    let pinned_copy = pinned;
    let (backup, outcome) = tokio::task::spawn_blocking(move || {
        let outcome = backup.commit(segment, pinned_copy.as_ref());
        (backup, outcome)
    })
    .await?;
    let added = match outcome? {
        Ok(added) => added,
        Err(failure) => {
            let code = print_failure(output, &failure, Headline::AtPlace, json!({"backup": args.to, "added": false}))?;
            eprintln!(
                "error: the backup does not verify with the new records: nothing was added to {}",
                args.to.display()
            );
            return Ok(code);
        }
    };
    print_added(&args, &backup, &added, pinned.is_some())?;
    Ok(ExitCode::SUCCESS)
}

/// Writes one message of the export into the segment.
fn add(mut segment: SegmentWriter, item: Option<pb::export_log_response::Item>) -> anyhow::Result<SegmentWriter> {
    use pb::export_log_response::Item;
    match item {
        Some(Item::Records(records)) => {
            for record in records.records {
                segment.record(record.position, &wire_hash(&record.hash, "chain hash")?, &record.body)?;
            }
        }
        Some(Item::Checkpoint(checkpoint)) => {
            let signed = SignedCheckpoint::from_json(&checkpoint.json)
                .with_context(|| format!("the server's checkpoint at position {}", checkpoint.position))?;
            segment.checkpoint(signed)?;
        }
        Some(Item::Head(_)) => bail!("the server sent a second head in one export"),
        None => bail!("the server sent an empty export message"),
    }
    Ok(segment)
}

fn print_added(args: &BackupArgs, backup: &Backup, added: &Added, pinned: bool) -> anyhow::Result<()> {
    let (segment, summary) = (&added.segment, &added.summary);
    let segments = backup.manifest().segments.len();
    match args.client.output {
        Output::Json => print_line(
            &json!({
                "backup": args.to, "segment": segment.file, "added_records": segment.records(),
                "added_checkpoints": segment.checkpoints.len() + segment.format_1_checkpoints.len(),
                "added_bytes": segment.bytes, "position": segment.position, "head_hash": segment.head_hash,
                "segments": segments, "records": summary.records, "checkpoints": summary.checkpoints,
                "key_ids": summary.key_ids, "signer_pinned": pinned,
                "authorship_checked": summary.authorship_checked, "signatures_checked": summary.signatures_checked,
            })
            .to_string(),
        ),
        Output::Table => {
            print_line(&format!(
                "backed up {} and {} after position {} up to position {} (head hash {}) into {} ({} bytes)",
                count(segment.records(), "record"),
                count((segment.checkpoints.len() + segment.format_1_checkpoints.len()) as u64, "checkpoint"),
                segment.after_position,
                segment.position,
                segment.head_hash,
                args.to.join(&segment.file).display(),
                segment.bytes
            ))?;
            print_line(&format!(
                "ok: the backup verifies: {} in {}, {} (Merkle roots and signatures)",
                count(summary.records, "record"),
                count(segments as u64, "segment"),
                count(summary.checkpoints, "checkpoint"),
            ))?;
            print_authorship(summary.authorship_checked)?;
            print_signatures(summary.signatures_checked)?;
            if summary.checkpoints > 0 {
                print_line(&format!("checkpoints {}", signer_text(&summary.key_ids, pinned, Unpinned::Carried)))?;
            }
            Ok(())
        }
    }
}

/// `restore --from DIR --data NEW`: the backup's segments, read in order as one bundle,
/// verified into a new data directory (as `import` does a bundle).
pub async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let pinned: Option<VerifyingKey> = pinned_key(args.public_key.as_deref())?;
    let (from, data) = (args.from.clone(), args.data.clone());
    let outcome = tokio::task::spawn_blocking(move || {
        let backup = Backup::open(&from, false)?;
        transfer::import(backup.reader()?, &data, pinned.as_ref())
    })
    .await??;
    match outcome {
        Ok(summary) => {
            print_imported("restored", args.output, &summary, &args.data, args.public_key.is_some())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            let code = print_failure(
                args.output,
                &failure,
                Headline::AtPlace,
                json!({"backup": args.from, "restored": false}),
            )?;
            eprintln!("error: the backup does not verify: nothing was restored into {}", args.data.display());
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_of_another_length_is_refused() {
        assert!(wire_hash(&[0; 31], "chain hash").is_err());
        assert_eq!(wire_hash(&[7; 32], "chain hash").unwrap(), [7; 32]);
    }
}
