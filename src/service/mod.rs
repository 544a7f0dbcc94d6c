//! The gRPC services: thin handlers that convert, call the ledger, and convert back.

pub mod convert;
mod ledger_service;
mod page_token;
pub mod status;

pub use ledger_service::LedgerService;
