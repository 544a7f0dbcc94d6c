//! The offline side of a ledger: what is done with its data outside a running server, or on a
//! copy of it. Bundles (the portable, verifiable copy of a log: `bundle.rs`, docs/AUDIT.md §10),
//! export from and import into a stopped ledger's directory (`transfer.rs`), online backups
//! taken from a running server and their restore (`backup.rs`), the offline checks of a stopped
//! ledger (`offline.rs`), proofs of a view checked offline (`proofs.rs`), the JSON Lines event format of `append` and `history`
//! (`event_line.rs`), and files written whole or not at all (`files.rs`).
//!
//! It sits beside `service`, above `ledger`: the command line parses arguments, calls this and
//! prints; it does not open a store itself. Errors are `anyhow` errors with their context, for
//! people: none of them becomes a gRPC code. A check that fails is not an error but a verdict,
//! [`bundle::Failure`] (where, why, how far it verified).

pub mod backup;
pub mod bundle;
pub mod event_line;
pub mod files;
pub mod offline;
pub mod proofs;
pub mod transfer;

/// Records per commit when importing: the ledger's own largest group of the usual kind, so
/// that the chunks of an imported store look like the ones the ledger writes.
pub const IMPORT_BATCH_RECORDS_MAX: usize = 1000;
/// Buffer of bundle reads and writes.
pub const BUNDLE_BUFFER_BYTES: usize = 1 << 20;
