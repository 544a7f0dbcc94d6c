//! Integration tests: one binary, a real server on 127.0.0.1:0 per test (crash tests spawn the
//! real `pax-ledger` binary).

mod model;
mod smoke;
mod standard;
mod support;
