//! The one table from errors to gRPC status codes (DESIGN.md §4). Nothing else in the crate
//! picks a status code.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::FieldError;
use crate::ledger::LedgerError;
use crate::store::StoreErrorKind;

/// The `ErrorInfo.domain` of every error this service details.
pub const ERROR_DOMAIN: &str = "pax-ledger";

/// A malformed request: INVALID_ARGUMENT with a field violation naming the field.
pub fn invalid_argument(error: FieldError) -> Status {
    let message = error.to_string();
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request_violation(error.field, error.description),
    )
}

/// A request over a size limit: RESOURCE_EXHAUSTED.
pub fn too_large(message: impl Into<String>) -> Status {
    Status::resource_exhausted(message)
}

/// Maps a ledger error to its status, with machine-readable details where a client acts on them.
pub fn from_ledger(error: LedgerError) -> Status {
    let message = error.to_string();
    match error {
        LedgerError::WrongRevision { stream, expected, actual } => {
            let actual = actual.map_or_else(|| "none".to_owned(), |r| r.to_string());
            let metadata = HashMap::from([
                ("stream".to_owned(), stream.to_string()),
                ("expected_revision".to_owned(), expected.to_string()),
                ("actual_revision".to_owned(), actual),
            ]);
            Status::with_error_details(
                Code::Aborted,
                message,
                ErrorDetails::with_error_info("WRONG_EXPECTED_REVISION", ERROR_DOMAIN, metadata),
            )
        }
        LedgerError::Rule { index, error } => Status::with_error_details(
            Code::FailedPrecondition,
            message,
            ErrorDetails::with_precondition_failure_violation(
                "DOMAIN_RULE",
                format!("events[{index}]"),
                error.to_string(),
            ),
        ),
        LedgerError::DifferentContent { position, .. } | LedgerError::PartlyCommitted { position, .. } => {
            let metadata = HashMap::from([("position".to_owned(), position.to_string())]);
            Status::with_error_details(
                Code::AlreadyExists,
                message,
                ErrorDetails::with_error_info("EVENT_ID_ALREADY_COMMITTED", ERROR_DOMAIN, metadata),
            )
        }
        LedgerError::DuplicateInRequest { index, .. } => {
            invalid_argument(FieldError::new(format!("events[{index}].event_id"), message))
        }
        LedgerError::EventTooLarge { .. } | LedgerError::Overloaded(_) => Status::resource_exhausted(message),
        LedgerError::NotFound(_) => Status::not_found(message),
        LedgerError::RebuildRunning { .. } => Status::with_error_details(
            Code::FailedPrecondition,
            message,
            ErrorDetails::with_precondition_failure_violation(
                "REBUILD_RUNNING",
                "projections",
                "a rebuild of the views is running",
            ),
        ),
        // The position may exist later: OUT_OF_RANGE, not INVALID_ARGUMENT (gRPC's guidance).
        LedgerError::OutOfRange(_) => Status::out_of_range(message),
        LedgerError::ViewsBehind { reached, wanted, .. } => {
            let metadata = HashMap::from([
                ("views_position".to_owned(), reached.to_string()),
                ("min_position".to_owned(), wanted.to_string()),
            ]);
            Status::with_error_details(
                Code::DeadlineExceeded,
                message,
                ErrorDetails::with_error_info("VIEWS_BEHIND", ERROR_DOMAIN, metadata),
            )
        }
        LedgerError::ShuttingDown => Status::unavailable(message),
        LedgerError::Halted(reason) => {
            let metadata = HashMap::from([("reason".to_owned(), reason)]);
            Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_error_info("WRITES_HALTED", ERROR_DOMAIN, metadata),
            )
        }
        // Stored data failed a check, the engine failed on it, or the log is less than the
        // ledger's own evidence of what it acknowledged or signed.
        LedgerError::Shortened(_) | LedgerError::Equivocation(_) => Status::data_loss(message),
        LedgerError::Store(error) => match error.kind() {
            StoreErrorKind::Damage => Status::data_loss(message),
            // The disk refused (full, I/O error): the server is not able to serve this now,
            // and may be again once an operator has acted; nothing half-written is served.
            StoreErrorKind::Io => {
                tracing::error!(error = %message, "storage i/o failure");
                Status::with_error_details(
                    Code::Unavailable,
                    message,
                    ErrorDetails::with_error_info("STORAGE_IO", ERROR_DOMAIN, HashMap::new()),
                )
            }
            StoreErrorKind::Unusable => Status::failed_precondition(message),
            // sled reports a misuse of its API (a tree dropped under a reader): ours, a bug.
            StoreErrorKind::Engine => {
                tracing::error!(error = %message, "storage engine misuse");
                Status::internal(message)
            }
        },
        // The server's signing key cannot be used: an operator must fix it.
        LedgerError::Key(_) => Status::failed_precondition(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Revision, StreamName};
    use crate::ledger::Expected;

    #[test]
    fn wrong_revision_carries_the_actual_revision() {
        let stream = StreamName::parse("stream", "member-JP").unwrap();
        let status = from_ledger(LedgerError::WrongRevision {
            stream,
            expected: Expected::Exact(Revision(3)),
            actual: Some(Revision(5)),
        });
        assert_eq!(status.code(), Code::Aborted);
        assert!(status.message().contains("revision 5"), "{}", status.message());
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.metadata["actual_revision"], "5");
        assert_eq!(info.metadata["expected_revision"], "3");
    }

    #[test]
    fn a_field_error_names_the_field() {
        let status = invalid_argument(FieldError::new("events[2].member_joined.code", "bad"));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "events[2].member_joined.code");
    }

    #[test]
    fn storage_errors_map_to_deliberate_codes() {
        use crate::store::StoreError;
        let check = |error: StoreError, code: Code| {
            let status = from_ledger(LedgerError::Store(error));
            assert_eq!(status.code(), code, "{status:?}");
        };
        check(StoreError::Sled(sled::Error::Corruption { at: None, bt: () }), Code::DataLoss);
        check(StoreError::EnginePanic { during: "reading".into(), message: "x".into() }, Code::DataLoss);
        check(StoreError::corrupt("position 3", "chain hash"), Code::DataLoss);
        check(StoreError::Io(std::io::Error::from_raw_os_error(28)), Code::Unavailable);
        check(StoreError::Sled(sled::Error::Io(std::io::Error::from_raw_os_error(5))), Code::Unavailable);
        check(StoreError::Locked { dir: "d".into() }, Code::FailedPrecondition);
        let halted = from_ledger(LedgerError::Halted("the log failed a check".into()));
        assert_eq!(halted.code(), Code::Unavailable);
        assert_eq!(halted.get_details_error_info().expect("error info").reason, "WRITES_HALTED");
        assert_eq!(from_ledger(LedgerError::Shortened("x".into())).code(), Code::DataLoss);
        assert_eq!(from_ledger(LedgerError::Equivocation("x".into())).code(), Code::DataLoss);
    }
}
