//! gRPC statuses with a `google.rpc.ErrorInfo` detail (domain `promotion.v1`): building them
//! from the domain's codes and reasons, reading them back, and the mappings every
//! service's error map shares (access, pages, store failures, upstream failures).
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use promotion_core::cursor::PageError;
use promotion_core::upstream::UpstreamError;
use promotion_core::AccessError;

pub const ERROR_DOMAIN: &str = "promotion.v1";

/// The transport's code for a domain code.
pub fn code(c: promotion_core::Code) -> Code {
    use promotion_core::Code as D;
    match c {
        D::Ok => Code::Ok,
        D::Cancelled => Code::Cancelled,
        D::Unknown => Code::Unknown,
        D::InvalidArgument => Code::InvalidArgument,
        D::DeadlineExceeded => Code::DeadlineExceeded,
        D::NotFound => Code::NotFound,
        D::AlreadyExists => Code::AlreadyExists,
        D::PermissionDenied => Code::PermissionDenied,
        D::ResourceExhausted => Code::ResourceExhausted,
        D::FailedPrecondition => Code::FailedPrecondition,
        D::Aborted => Code::Aborted,
        D::OutOfRange => Code::OutOfRange,
        D::Unimplemented => Code::Unimplemented,
        D::Internal => Code::Internal,
        D::Unavailable => Code::Unavailable,
        D::DataLoss => Code::DataLoss,
        D::Unauthenticated => Code::Unauthenticated,
    }
}

/// The domain's code for a transport code.
pub fn domain_code(c: Code) -> promotion_core::Code {
    use promotion_core::Code as D;
    match c {
        Code::Ok => D::Ok,
        Code::Cancelled => D::Cancelled,
        Code::Unknown => D::Unknown,
        Code::InvalidArgument => D::InvalidArgument,
        Code::DeadlineExceeded => D::DeadlineExceeded,
        Code::NotFound => D::NotFound,
        Code::AlreadyExists => D::AlreadyExists,
        Code::PermissionDenied => D::PermissionDenied,
        Code::ResourceExhausted => D::ResourceExhausted,
        Code::FailedPrecondition => D::FailedPrecondition,
        Code::Aborted => D::Aborted,
        Code::OutOfRange => D::OutOfRange,
        Code::Unimplemented => D::Unimplemented,
        Code::Internal => D::Internal,
        Code::Unavailable => D::Unavailable,
        Code::DataLoss => D::DataLoss,
        Code::Unauthenticated => D::Unauthenticated,
    }
}

/// A status whose ErrorInfo carries `reason` and metadata naming the offending field or
/// object. Every service's `From<Error> for Status` goes through here.
pub fn status(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    metadata: impl IntoIterator<Item = (&'static str, String)>,
) -> Status {
    let metadata: HashMap<String, String> = metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    with_metadata(code, reason, message, metadata)
}

/// Statuses travel in HTTP/2 headers, which clients cap at 8-16 KB: no message or
/// metadata value is longer than this, whatever an error carries.
pub const MAX_DETAIL_CHARS: usize = 1024;
/// How many items an error lists; its metadata says how many there were in all.
pub const MAX_LISTED: usize = 20;

fn with_metadata(code: Code, reason: &str, message: impl Into<String>, metadata: HashMap<String, String>) -> Status {
    let metadata: HashMap<String, String> = metadata.into_iter().map(|(k, v)| (k, bounded(v))).collect();
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(code, bounded(message.into()), details)
}

/// `s`, cut at [`MAX_DETAIL_CHARS`] characters.
pub fn bounded(s: String) -> String {
    if s.chars().count() <= MAX_DETAIL_CHARS {
        return s;
    }
    let mut cut: String = s.chars().take(MAX_DETAIL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The first [`MAX_LISTED`] of `items`, joined, and how many there are: what an error
/// naming many objects or entries carries.
pub fn listed(items: &[String]) -> (String, String) {
    let shown: Vec<&str> = items.iter().take(MAX_LISTED).map(String::as_str).collect();
    let mut joined = shown.join("; ");
    if items.len() > MAX_LISTED {
        joined.push_str(&format!("; and {} more", items.len() - MAX_LISTED));
    }
    (joined, items.len().to_string())
}

/// RESOURCE_EXHAUSTED with `reason`, a `google.rpc.RetryInfo` saying when to try again,
/// and that delay in the ErrorInfo metadata (`retry_after_seconds`) for clients that read
/// only ErrorInfo.
pub fn retry_later(reason: &str, message: impl Into<String>, after: std::time::Duration) -> Status {
    let seconds = after.as_secs().max(1);
    let metadata = HashMap::from([("retry_after_seconds".to_string(), seconds.to_string())]);
    let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    details.set_retry_info(Some(std::time::Duration::from_secs(seconds)));
    Status::with_error_details(Code::ResourceExhausted, bounded(message.into()), details)
}

/// The reason of a status built by [`status`], for tests and clients.
pub fn reason_of(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// The ErrorInfo metadata of a status built by [`status`].
pub fn metadata_of(status: &Status) -> HashMap<String, String> {
    status.get_details_error_info().map(|info| info.metadata).unwrap_or_default()
}

/// INVALID_ARGUMENT naming a missing or malformed request field.
pub fn bad_field(reason: &str, field: &str, message: impl Into<String>) -> Status {
    status(Code::InvalidArgument, reason, message, [("field", field.to_string())])
}

/// INVALID_ARGUMENT `INVALID_FIELD_VALUE` for a number JSON cannot hold.
pub fn non_finite(e: crate::convert::NonFinite) -> Status {
    let message = e.to_string();
    bad_field("INVALID_FIELD_VALUE", &e.path, message)
}

pub fn access(e: AccessError) -> Status {
    let message = e.to_string();
    match e {
        AccessError::EnvironmentNotFound(id) => {
            status(Code::NotFound, "ENVIRONMENT_NOT_FOUND", message, [("environment", id)])
        }
        AccessError::PermissionDenied { permission, environment } => status(
            Code::PermissionDenied,
            "PERMISSION_DENIED",
            message,
            [("permission", permission.as_str().to_string()), ("environment", environment)],
        ),
    }
}

/// INVALID_ARGUMENT for a bad page size or token.
pub fn page(e: PageError) -> Status {
    match e {
        PageError::NegativeSize => bad_field("INVALID_PAGE_SIZE", "page_size", "page_size must not be negative"),
        PageError::BadToken => {
            bad_field("INVALID_PAGE_TOKEN", "page_token", "page_token was not returned by this call")
        }
    }
}

/// What a caller is told when the store failed: UNAVAILABLE when the backend could not be
/// reached (retry), INTERNAL otherwise; in both cases nothing was acknowledged. The
/// engine's own message is logged, never sent.
pub fn store_failure(unavailable: bool, detail: &str) -> Status {
    tracing::error!(error = %detail, "store failure");
    if unavailable {
        status(Code::Unavailable, "STORE_UNAVAILABLE", "the store is unavailable; nothing was written; retry", [])
    } else {
        status(Code::Internal, "STORE_FAILURE", "the store failed; nothing was acknowledged", [])
    }
}

/// The other service's failure as this one reports it.
pub fn upstream(e: UpstreamError) -> Status {
    with_metadata(code(e.code), &e.reason, e.message, e.metadata)
}
