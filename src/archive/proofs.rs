//! Proofs of a view checked away from the server: a proof as `GetViewProof` sends it, or as
//! `prove --save` wrote it (`ViewProof::from_json`), verified with the checkpoint it carries
//! (docs/AUDIT.md §6). The check itself is the ledger's (`ledger::view_proof`), which also
//! builds the proofs: one implementation of the format on both sides.

use crate::audit::Hash;
use crate::audit::checkpoint::SignedCheckpoint;
use crate::domain::{Position, StreamName};
use crate::ledger::Inclusion;
pub use crate::ledger::{ProvenView, ViewProof, verify_view_proof};
use crate::proto::v1 as pb;

/// A proof of a view as the server sent it.
/// A view proof from the wire: the checkpoint once, each event's inclusion against it.
pub fn view_proof_from_wire(response: pb::ViewProof) -> Result<ViewProof, String> {
    let checkpoint = response.checkpoint.as_ref().ok_or("the server sent no checkpoint")?;
    let checkpoint = SignedCheckpoint::from_json(&checkpoint.json)
        .map_err(|e| format!("the server's checkpoint is not valid: {e}"))?;
    let hash = |bytes: &[u8], what: &str| -> Result<Hash, String> {
        bytes.try_into().map_err(|_| format!("the server sent a {what} of {} bytes, not 32", bytes.len()))
    };
    let hashes = |list: &[Vec<u8>], what: &str| list.iter().map(|h| hash(h, what)).collect::<Result<Vec<_>, _>>();
    let events = response
        .events
        .iter()
        .map(|e| {
            Ok(Inclusion {
                position: Position(e.position),
                tree_size: e.tree_size,
                record_hash: hash(&e.record_hash, "record hash")?,
                previous_hash: hash(&e.previous_hash, "previous hash")?,
                record_body: e.record_body.clone(),
                proof: hashes(&e.proof, "proof hash")?,
                root: hash(&e.root, "root")?,
                checkpoint: checkpoint.clone(),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(ViewProof {
        stream: StreamName::parse("stream", &response.stream).map_err(|e| e.to_string())?,
        view_record: response.view_record,
        leaf_index: response.leaf_index,
        path: hashes(&response.path, "path hash")?,
        events,
        checkpoint,
    })
}
