//! `pax.ledger.v1.AuditService`: signed checkpoints, inclusion and consistency proofs, and the
//! live verification. Convert → call the ledger (off the async threads) → convert.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::audit::checkpoint::SignedCheckpoint;
use crate::audit::hex;
use crate::domain::{EventId, FieldError, Position, StreamName};
use crate::ledger::{Inclusion, Ledger};
use crate::proto::v1 as pb;

/// Records between two progress messages of `VerifyLedger`.
pub const VERIFY_PROGRESS_STEP: u64 = 100_000;
/// Records read from the store per step of `ExportLog`.
pub const EXPORT_READ_RECORDS: usize = 1000;
/// Most record bytes (bodies and hashes) in one `ExportLog` message, far under the 4 MiB that
/// gRPC clients accept by default; a single record larger than this goes alone.
pub const EXPORT_MESSAGE_BYTES_MAX: usize = 1 << 20;

pub struct AuditService {
    ledger: Arc<Ledger>,
}

impl AuditService {
    pub fn new(ledger: Arc<Ledger>) -> Self {
        Self { ledger }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Ledger) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || work(&ledger)).await.map_err(|e| Status::internal(e.to_string()))?
    }
}

pub fn checkpoint_pb(signed: &SignedCheckpoint) -> pb::SignedCheckpoint {
    let checkpoint = &signed.checkpoint;
    pb::SignedCheckpoint {
        position: checkpoint.position,
        root: checkpoint.root.to_vec(),
        view_digest: checkpoint.view_digest.map(|d| d.to_vec()).unwrap_or_default(),
        time: Some(convert::to_timestamp(&checkpoint.time)),
        public_key: signed.public_key.to_bytes().to_vec(),
        key_id: signed.key_id(),
        signature: signed.signature.to_bytes().to_vec(),
        json: signed.to_json(),
        note: signed.to_note().unwrap_or_default(),
        origin: signed.origin().unwrap_or_default().to_owned(),
        verifier_key: signed.verifier_key().unwrap_or_default(),
        view_tree_records: checkpoint.view_tree.map_or(0, |tree| tree.records),
        view_tree_root: checkpoint.view_tree.map(|tree| tree.root.to_vec()).unwrap_or_default(),
    }
}

/// An inclusion proof on the wire; with its checkpoint, unless the caller sends that once.
pub fn inclusion_pb(proof: &Inclusion, with_checkpoint: bool) -> pb::InclusionProof {
    pb::InclusionProof {
        position: proof.position.0,
        leaf_index: proof.position.0 - 1,
        tree_size: proof.tree_size,
        record_hash: proof.record_hash.to_vec(),
        previous_hash: proof.previous_hash.to_vec(),
        record_body: proof.record_body.clone(),
        proof: proof.proof.iter().map(|h| h.to_vec()).collect(),
        root: proof.root.to_vec(),
        checkpoint: with_checkpoint.then(|| checkpoint_pb(&proof.checkpoint)),
    }
}

type VerifyStream = Pin<Box<dyn Stream<Item = Result<pb::VerifyLedgerResponse, Status>> + Send>>;
type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportLogResponse, Status>> + Send>>;

/// The checks of an `ExportLog` request: where it starts, and that the caller's copy is of this
/// history. Returns the durable head the export ends at.
fn export_start(ledger: &Ledger, request: &pb::ExportLogRequest) -> Result<crate::store::Head, Status> {
    let head = ledger.durable_head();
    let after = Position(request.after_position);
    if after > head.position {
        return Err(Status::out_of_range(format!(
            "after_position {after} is past the log's last position {}",
            head.position
        )));
    }
    if request.after_hash.is_empty() {
        return Ok(head);
    }
    let Ok(expected) = <[u8; 32]>::try_from(request.after_hash.as_slice()) else {
        return Err(status::invalid_argument(FieldError::new(
            "after_hash",
            format!("must be 32 bytes, not {}", request.after_hash.len()),
        )));
    };
    let actual = ledger.chain_hash_at(after).map_err(status::from_ledger)?;
    if actual != expected {
        return Err(Status::failed_precondition(format!(
            "the record at position {after} has chain hash {}, not {}: the caller's copy is of another history",
            hex::encode(&actual),
            hex::encode(&expected)
        )));
    }
    Ok(head)
}

/// Streams an export: the head, the records after `after` up to it in messages of at most
/// [`EXPORT_MESSAGE_BYTES_MAX`], then the stored checkpoints. Stops when the caller goes away.
fn export_log(
    ledger: &Ledger,
    after: Position,
    head: crate::store::Head,
    tx: &tokio::sync::mpsc::Sender<Result<pb::ExportLogResponse, Status>>,
) -> Result<(), Status> {
    use pb::export_log_response::Item;
    let send = |item: Item| tx.blocking_send(Ok(pb::ExportLogResponse { item: Some(item) })).is_ok();
    let head_item = pb::ExportLogHead { position: head.position.0, head_hash: head.hash.to_vec() };
    if !send(Item::Head(head_item)) {
        return Ok(());
    }
    let mut next = Position(after.0 + 1);
    while next <= head.position {
        let records = ledger.read_records(next, head.position, EXPORT_READ_RECORDS).map_err(status::from_ledger)?;
        let Some(last) = records.last() else { break };
        next = Position(last.event.position.0 + 1);
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for record in records {
            if !chunk.is_empty() && bytes + record.body.len() + 32 > EXPORT_MESSAGE_BYTES_MAX {
                if !send(Item::Records(pb::LogRecords { records: std::mem::take(&mut chunk) })) {
                    return Ok(());
                }
                bytes = 0;
            }
            bytes += record.body.len() + 32;
            chunk.push(pb::LogRecord {
                position: record.event.position.0,
                hash: record.hash.to_vec(),
                body: record.body,
            });
        }
        if !send(Item::Records(pb::LogRecords { records: chunk })) {
            return Ok(());
        }
    }
    for checkpoint in ledger.stored_checkpoints(after, head.position).map_err(status::from_ledger)? {
        if !send(Item::Checkpoint(checkpoint_pb(&checkpoint))) {
            return Ok(());
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditService {
    #[tracing::instrument(skip_all)]
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let request = request.into_inner();
        if request.fresh && request.position.is_some() {
            return Err(status::invalid_argument(FieldError::new("fresh", "give position or fresh, not both")));
        }
        self.blocking(move |ledger| {
            let signed = match (request.position, request.fresh) {
                (Some(position), _) => ledger.checkpoint_at(Position(position)),
                (None, true) => ledger.checkpoint_at(ledger.durable_head().position),
                (None, false) => ledger.latest_checkpoint(),
            }
            .map_err(status::from_ledger)?;
            Ok(Response::new(checkpoint_pb(&signed)))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let request = request.into_inner();
        let target = match request.target {
            Some(pb::get_inclusion_proof_request::Target::EventId(id)) => {
                Err(EventId::parse("event_id", &id).map_err(status::invalid_argument)?)
            }
            Some(pb::get_inclusion_proof_request::Target::Position(0)) | None => {
                return Err(status::invalid_argument(FieldError::new(
                    "target",
                    "name the record: an event_id or a position (from 1)",
                )));
            }
            Some(pb::get_inclusion_proof_request::Target::Position(position)) => Ok(Position(position)),
        };
        let tree_size = (request.tree_size > 0).then_some(request.tree_size);
        self.blocking(move |ledger| {
            let proof = ledger.inclusion_proof(target, tree_size).map_err(status::from_ledger)?;
            Ok(Response::new(inclusion_pb(&proof, true)))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn get_view_proof(
        &self,
        request: Request<pb::GetViewProofRequest>,
    ) -> Result<Response<pb::ViewProof>, Status> {
        let request = request.into_inner();
        let stream = StreamName::parse("stream", &request.stream).map_err(status::invalid_argument)?;
        let tree_size = (request.tree_size > 0).then_some(request.tree_size);
        self.blocking(move |ledger| {
            let proof = ledger.view_proof(&stream, tree_size).map_err(status::from_ledger)?;
            Ok(Response::new(pb::ViewProof {
                checkpoint: Some(checkpoint_pb(&proof.checkpoint)),
                stream: proof.stream.to_string(),
                view_record: proof.view_record,
                leaf_index: proof.leaf_index,
                path: proof.path.iter().map(|h| h.to_vec()).collect(),
                events: proof.events.iter().map(|e| inclusion_pb(e, false)).collect(),
            }))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let request = request.into_inner();
        let new_size = (request.new_size > 0).then_some(request.new_size);
        self.blocking(move |ledger| {
            let proof = ledger.consistency_proof(request.old_size, new_size).map_err(status::from_ledger)?;
            Ok(Response::new(pb::ConsistencyProof {
                old_size: proof.old_size,
                new_size: proof.new_size,
                old_root: proof.old_root.to_vec(),
                new_root: proof.new_root.to_vec(),
                proof: proof.proof.iter().map(|h| h.to_vec()).collect(),
                checkpoint: Some(checkpoint_pb(&proof.checkpoint)),
            }))
        })
        .await
    }

    type VerifyLedgerStream = VerifyStream;

    #[tracing::instrument(skip_all)]
    async fn verify_ledger(
        &self,
        _request: Request<pb::VerifyLedgerRequest>,
    ) -> Result<Response<Self::VerifyLedgerStream>, Status> {
        use pb::verify_ledger_response::Update;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || {
            let progress = |verified, total| {
                let update = Update::Progress(pb::VerifyProgress { verified, total });
                let _ = tx.try_send(Ok(pb::VerifyLedgerResponse { update: Some(update) }));
            };
            let last = ledger.verify_live(VERIFY_PROGRESS_STEP, progress).map_err(status::from_ledger).map(|v| {
                let (first_bad_position, reason) = v.failure.clone().unwrap_or_default();
                let verdict = pb::VerifyVerdict {
                    ok: v.failure.is_none(),
                    position: v.position,
                    head_hash: hex::encode(&v.head_hash),
                    root: hex::encode(&v.root),
                    first_bad_position,
                    reason,
                    checkpoints_verified: v.checkpoints_verified,
                    seconds: v.seconds,
                    checkpoints_by_other_keys: v.checkpoints_by_other_keys,
                    signatures_checked: v.signatures_checked,
                };
                pb::VerifyLedgerResponse { update: Some(Update::Verdict(verdict)) }
            });
            let _ = tx.blocking_send(last);
        });
        Ok(Response::new(ReceiverStream::new(rx).boxed()))
    }

    type ExportLogStream = ExportStream;

    #[tracing::instrument(skip_all)]
    async fn export_log(
        &self,
        request: Request<pb::ExportLogRequest>,
    ) -> Result<Response<Self::ExportLogStream>, Status> {
        let request = request.into_inner();
        let after = Position(request.after_position);
        let head = self.blocking(move |ledger| export_start(ledger, &request)).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(status) = export_log(&ledger, after, head, &tx) {
                let _ = tx.blocking_send(Err(status));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx).boxed()))
    }
}
