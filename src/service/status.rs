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

/// Longest text, in bytes, that a status carries in its message or in one part of a detail. A
/// status travels in HTTP/2 trailers — the message percent-encoded in `grpc-message`, and again
/// with the details base64-encoded in `grpc-status-details-bin` — and both peers refuse a header
/// list over 16 KiB: the client then sees INTERNAL ("h2 protocol error") instead of the status.
/// Errors quote at most `domain::QUOTE_CHARS_MAX` characters of a value; this bound holds
/// whatever a message says.
pub const STATUS_TEXT_BYTES_MAX: usize = 1024;

/// `text`, cut at a character boundary to at most [`STATUS_TEXT_BYTES_MAX`] bytes and `…`.
fn bounded(mut text: String) -> String {
    if text.len() > STATUS_TEXT_BYTES_MAX {
        let cut = (0..=STATUS_TEXT_BYTES_MAX).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// A malformed request: INVALID_ARGUMENT with a field violation naming the field.
pub fn invalid_argument(error: FieldError) -> Status {
    let message = bounded(error.to_string());
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request_violation(bounded(error.field), bounded(error.description)),
    )
}

/// A request that is not valid protobuf (a string that is not UTF-8, a truncated field, a wrong
/// wire type): the client's fault, INVALID_ARGUMENT. The field violation names the field as far
/// as the decoder tells it — field names from the request down, without list indices
/// (`events.event_id`) — or is empty when it names none.
pub fn undecodable_request(error: &prost::DecodeError) -> Status {
    let description = error.to_string();
    invalid_argument(FieldError::new(undecodable_field(&description), description))
}

/// The field path in prost's description of a decode error: `failed to decode Protobuf message:
/// Inner.field: Outer.field: what went wrong`, the innermost message first.
fn undecodable_field(description: &str) -> String {
    let is_name = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let Some(stack) = description.strip_prefix("failed to decode Protobuf message: ") else {
        return String::new();
    };
    let mut fields: Vec<&str> = stack
        .split(": ")
        .map_while(|place| place.split_once('.').filter(|(message, field)| is_name(message) && is_name(field)))
        .map(|(_, field)| field)
        .collect();
    fields.reverse();
    fields.join(".")
}

/// A request over a size limit: RESOURCE_EXHAUSTED.
pub fn too_large(message: impl Into<String>) -> Status {
    Status::resource_exhausted(bounded(message.into()))
}

/// A request message of `bytes` bytes, as received, over the `max` a request may have:
/// RESOURCE_EXHAUSTED, whatever its size (tonic's own limit would answer OUT_OF_RANGE).
pub fn request_too_large(bytes: u64, max: usize) -> Status {
    too_large(format!("the request message is {bytes} bytes, more than the {max} allowed"))
}

/// Maps a ledger error to its status, with machine-readable details where a client acts on them.
pub fn from_ledger(error: LedgerError) -> Status {
    let message = bounded(error.to_string());
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
                bounded(error.to_string()),
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
        LedgerError::Signature { index, reason } => {
            invalid_argument(FieldError::new(format!("events[{index}].metadata.signature"), reason))
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
        LedgerError::Key(_) | LedgerError::Precondition(_) => Status::failed_precondition(message),
        LedgerError::Denied { principal, .. } => permission_denied("NOT_ALLOWED", message, &principal),
        LedgerError::ActorMismatch { principal, .. } => permission_denied("ACTOR_MISMATCH", message, &principal),
        LedgerError::Unauthenticated(_) => unauthenticated(message),
        // The file system is out of space (gRPC's own example of RESOURCE_EXHAUSTED); the
        // client may retry once it is freed.
        LedgerError::DiskFull { free, needed } => {
            let metadata = HashMap::from([
                ("free_bytes".to_owned(), free.to_string()),
                ("needed_bytes".to_owned(), needed.to_string()),
            ]);
            Status::with_error_details(
                Code::ResourceExhausted,
                message,
                ErrorDetails::with_error_info("DISK_FULL", ERROR_DOMAIN, metadata),
            )
        }
    }
}

/// PERMISSION_DENIED: the caller is known, and may not do this. `reason` is machine-readable
/// (`NOT_ALLOWED`, `ACTOR_MISMATCH`).
pub fn permission_denied(reason: &str, message: String, principal: &str) -> Status {
    let metadata = HashMap::from([("principal".to_owned(), principal.to_owned())]);
    Status::with_error_details(
        Code::PermissionDenied,
        bounded(message),
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
    )
}

/// UNAUTHENTICATED: no credential, or one that authenticates nobody.
pub fn unauthenticated(message: String) -> Status {
    Status::with_error_details(
        Code::Unauthenticated,
        bounded(message),
        ErrorDetails::with_error_info("UNAUTHENTICATED", ERROR_DOMAIN, HashMap::new()),
    )
}

/// RESOURCE_EXHAUSTED with the time after which a retry may succeed (`google.rpc.RetryInfo`).
pub fn rate_limited(message: String, retry_after: std::time::Duration) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(retry_after));
    details.set_error_info("RATE_LIMITED", ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(Code::ResourceExhausted, bounded(message), details)
}

/// The canonical name of a gRPC status code, as the gRPC specification spells it.
pub fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
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
    fn a_status_carries_bounded_texts_whatever_the_error_says() {
        let huge = "é".repeat(10 * STATUS_TEXT_BYTES_MAX);
        let status = invalid_argument(FieldError::new(format!("labels[{huge}]"), huge.clone()));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().len() <= STATUS_TEXT_BYTES_MAX + '…'.len_utf8());
        assert!(status.message().ends_with('…'));
        let violation = &status.get_details_bad_request().expect("bad request").field_violations[0];
        assert!(violation.field.starts_with("labels[é") && violation.field.len() <= STATUS_TEXT_BYTES_MAX + 3);
        assert!(violation.description.len() <= STATUS_TEXT_BYTES_MAX + 3);
        let status = from_ledger(LedgerError::NotFound(huge));
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().len() <= STATUS_TEXT_BYTES_MAX + 3);
        // Short texts are left alone.
        assert_eq!(bounded("short".into()), "short");
        assert_eq!(bounded("a".repeat(STATUS_TEXT_BYTES_MAX)).len(), STATUS_TEXT_BYTES_MAX);
    }

    #[test]
    fn a_request_that_does_not_decode_is_invalid_argument_naming_the_field() {
        use prost::Message;
        // events[0].event_id holds the byte 0xFF, which is not UTF-8.
        let not_utf8 = [0x0a, 0x03, 0x0a, 0x01, 0xff];
        let error = crate::proto::v1::AppendRequest::decode(&not_utf8[..]).unwrap_err();
        let status = undecodable_request(&error);
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "events.event_id");
        assert!(status.message().contains("not UTF-8"), "{}", status.message());
        // A field number 0, which no field has.
        let error = crate::proto::v1::AppendRequest::decode(&[0x00][..]).unwrap_err();
        let status = undecodable_request(&error);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.get_details_bad_request().expect("bad request").field_violations[0].field, "");
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
