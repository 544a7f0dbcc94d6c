//! Integration tests: one binary, a real server on 127.0.0.1:0 per test (crash tests spawn the
//! real `pax-ledger` binary).

mod access;
mod audit_cli;
mod audit_proofs;
mod audit_server;
mod cli_append;
mod cli_serve;
mod cli_tail;
mod cli_views;
mod concurrency;
mod crash;
mod damage;
mod deadlines;
mod disk_full;
mod durability;
mod errors;
mod fake_server;
mod idempotency;
mod interop;
mod kill_loop;
mod ledger_api;
mod loadgen;
mod model;
mod query;
mod signatures;
mod smoke;
mod standard;
mod subscribe;
mod support;
mod tamper;
mod tls;
mod verify;
mod view_proof;
mod views_model;
mod wire;
mod witness;
