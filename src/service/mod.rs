//! The gRPC services: thin handlers that convert, call the ledger, and convert back.

mod access_service;
mod audit_service;
pub mod auth;
pub mod convert;
mod ledger_service;
mod page_token;
pub mod peer;
mod query_service;
mod request_codec;
mod request_size;
pub mod status;
mod views_convert;

pub use access_service::AccessService;
pub use audit_service::AuditService;
pub use auth::{AccessLimits, AuthLayer};
pub use ledger_service::LedgerService;
pub use query_service::{ProjectionService, QueryService};
pub use request_codec::RequestCodec;
pub use request_size::RequestSizeLayer;

/// Who made a request, as [`AuthLayer`] authenticated it (anonymous where no layer ran).
pub fn caller_of<T>(request: &tonic::Request<T>) -> crate::ledger::Caller {
    request.extensions().get::<crate::ledger::Caller>().cloned().unwrap_or(crate::ledger::Caller::Anonymous)
}
