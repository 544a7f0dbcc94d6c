//! The gRPC services: thin handlers that convert, call the ledger, and convert back.

mod audit_service;
pub mod convert;
mod ledger_service;
mod page_token;
pub mod peer;
mod query_service;
mod request_codec;
mod request_size;
pub mod status;
mod views_convert;

pub use audit_service::AuditService;
pub use ledger_service::LedgerService;
pub use query_service::{ProjectionService, QueryService};
pub use request_codec::RequestCodec;
pub use request_size::RequestSizeLayer;
