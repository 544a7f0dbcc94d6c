//! Export and import of a stopped ledger: its whole log and stored checkpoints as a bundle
//! (docs/AUDIT.md §10), and a bundle verified into a new data directory.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter};
use std::path::Path;

use anyhow::{Context, bail};
use ed25519_dalek::VerifyingKey;

use super::bundle::{self, BundleWriter, Failure, Header, Verified};
use super::files::{Staged, create_staged_file, parent_dir, publish_file, sibling, sync_dir};
use super::{BUNDLE_BUFFER_BYTES, IMPORT_BATCH_RECORDS_MAX};
use crate::audit::checkpoint::{SignedCheckpoint, TreeKind};
use crate::domain::Position;
use crate::store::{CheckpointSpace, CommitBatch, Head, Store, StoreConfig};

/// Opens a stopped ledger's store without creating one where there is none.
pub fn open_store(data: &Path) -> anyhow::Result<Store> {
    if !data.join("db").is_file() {
        bail!("no ledger in {}", data.display());
    }
    let (store, _) = Store::open(data, &StoreConfig::default()).with_context(|| {
        format!("opening the ledger in {} (this needs a stopped server: is one running on it?)", data.display())
    })?;
    Ok(store)
}

pub struct Exported {
    pub records: u64,
    pub checkpoints: u64,
    pub head: Head,
    pub bytes: u64,
}

pub fn export_bundle(data: &Path, to: &Path, force: bool) -> anyhow::Result<Exported> {
    let (file, staged) = create_staged_file(to, force)?;
    let store = open_store(data)?;
    // What is left of a damaged directory can still be exported (that is how evidence gets
    // out), but never passed off as the whole log.
    if let Err(error) = crate::ledger::check_journal(&store, data) {
        eprintln!("warning: exporting less than this ledger acknowledged: {error}");
    }
    let head = store.head()?;
    let mut checkpoints = Vec::new();
    let spaces = [CheckpointSpace::Format1, CheckpointSpace::Notes];
    for entry in spaces.into_iter().flat_map(|space| store.checkpoints(space)) {
        let (position, bytes) = entry?;
        let checkpoint = std::str::from_utf8(&bytes)
            .map_err(anyhow::Error::from)
            .and_then(|text| Ok(SignedCheckpoint::from_json(text)?))
            .with_context(|| format!("the stored checkpoint at position {position}"))?;
        if checkpoint.checkpoint.position != position.0 {
            bail!("the checkpoint stored at position {position} says position {}", checkpoint.checkpoint.position);
        }
        checkpoints.push(checkpoint);
    }
    let mut writer = BundleWriter::new(BufWriter::with_capacity(BUNDLE_BUFFER_BYTES, file));
    let positions = |tree| checkpoints.iter().filter(|c| c.tree() == tree).map(|c| c.checkpoint.position).collect();
    writer.header(&Header::new(
        head.position.0,
        &head.hash,
        positions(TreeKind::Sha256),
        positions(TreeKind::Blake3),
    ))?;
    let mut records = 0;
    for record in store.scan_log(Position(1), true) {
        let record = record?;
        if record.event.position > head.position {
            break;
        }
        if record.event.position.0 != records + 1 {
            bail!(
                "the log has no record at position {} below its head {}: run `verify --data {}`",
                records + 1,
                head.position,
                data.display()
            );
        }
        writer.record(&record.event, &record.hash, &record.body)?;
        records += 1;
    }
    if records != head.position.0 {
        bail!(
            "the log ends at position {records} but its head says {}: run `verify --data {}`",
            head.position,
            data.display()
        );
    }
    for checkpoint in &checkpoints {
        writer.checkpoint(checkpoint)?;
    }
    let file = writer.into_inner().into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    publish_file(staged, to, force)?;
    Ok(Exported { records, checkpoints: checkpoints.len() as u64, head, bytes })
}

pub fn import_bundle(
    bundle_path: &Path,
    data: &Path,
    pinned: Option<&VerifyingKey>,
) -> anyhow::Result<Result<bundle::BundleSummary, Failure>> {
    let input = File::open(bundle_path).with_context(|| format!("opening {}", bundle_path.display()))?;
    import(BufReader::with_capacity(BUNDLE_BUFFER_BYTES, input), data, pinned)
}

/// Verifies the bundle read from `input` while writing it into a hidden directory beside
/// `data` (absent or empty), and renames that to `data` only once all of it verified and the
/// store it makes opens: `data` never holds a partial or unverified import.
pub fn import(
    input: impl BufRead,
    data: &Path,
    pinned: Option<&VerifyingKey>,
) -> anyhow::Result<Result<bundle::BundleSummary, Failure>> {
    match fs::read_dir(data) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{} is not empty: import writes only into an empty or absent directory", data.display());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", data.display())),
    }
    fs::create_dir_all(parent_dir(data)).with_context(|| format!("creating {}", parent_dir(data).display()))?;
    let staging = sibling(data, "importing")?;
    fs::create_dir(&staging)
        .with_context(|| format!("creating {} (if an interrupted import left it, remove it)", staging.display()))?;
    let staged = Staged { path: staging.clone(), is_dir: true, armed: true };
    let (store, _) = Store::open(&staging, &StoreConfig::default())?;
    let mut batch = CommitBatch::default();
    let mut head = Head::EMPTY;
    let commit = |batch: &mut CommitBatch, head: &Head| -> anyhow::Result<()> {
        if batch.records() > 0 {
            batch.set_head(head);
            store.commit(std::mem::take(batch))?;
        }
        Ok(())
    };
    let verdict = bundle::verify(input, pinned, |item| {
        match item {
            Verified::Record { event, body, hash } => {
                head = Head { position: event.position, hash };
                batch.put_record(&event, body, &hash);
                if batch.records() == IMPORT_BATCH_RECORDS_MAX {
                    commit(&mut batch, &head)?;
                }
            }
            Verified::Checkpoint(checkpoint) => {
                commit(&mut batch, &head)?;
                let position = Position(checkpoint.checkpoint.position);
                let space = match checkpoint.tree() {
                    TreeKind::Sha256 => CheckpointSpace::Notes,
                    TreeKind::Blake3 => CheckpointSpace::Format1,
                };
                store.put_checkpoint(space, position, checkpoint.to_json().as_bytes())?;
            }
        }
        Ok(())
    })?;
    let summary = match verdict {
        Ok(summary) => summary,
        Err(failure) => return Ok(Err(failure)),
    };
    commit(&mut batch, &head)?;
    store.save_id_snapshot()?;
    drop(store);
    // Opening checks what the chain does not: each event id once in the whole log.
    drop(Store::open(&staging, &StoreConfig::default()).context("the imported store does not open")?);
    fs::rename(&staging, data).with_context(|| format!("renaming {} to {}", staging.display(), data.display()))?;
    staged.disarm();
    sync_dir(parent_dir(data))?;
    Ok(Ok(summary))
}
