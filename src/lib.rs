//! pax-ledger: an event-sourced, tamper-evident ledger of the commitments of a multilateral
//! initiative. See `ARCHITECTURE.md` for the map and the invariants.
#![forbid(unsafe_code)]

pub mod archive;
pub mod audit;
pub mod cli;
pub mod codec;
pub mod config;
pub mod domain;
pub mod durable;
pub mod ledger;
pub mod metrics;
pub mod projection;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod witness;

/// The generated wire types (`pax.ledger.v1`).
pub mod proto {
    #[allow(clippy::large_enum_variant)]
    pub mod v1 {
        tonic::include_proto!("pax.ledger.v1");
        // The servers, generated apart with the server's codec (see build.rs).
        include!(concat!(env!("OUT_DIR"), "/server/pax.ledger.v1.rs"));
    }

    /// The encoded file descriptor set of `proto/`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pax_ledger_descriptor.bin"));
}
