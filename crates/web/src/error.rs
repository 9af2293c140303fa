//! The one map from a gRPC status (its code and `ErrorInfo`) to an HTTP answer:
//! `{"error": {"code", "reason", "message", "details"}}` with the HTTP status a web client
//! expects. Every error of the JSON API, the gRPC handlers' and the front door's own
//! (a body that is not JSON, an unknown endpoint), goes through here.
use bytes::Bytes;
use http::StatusCode;
use serde_json::json;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use promotion_api::status::{domain_code, status};
use promotion_serving::http::{with_type, Response};

/// The HTTP status of a gRPC outcome. Optimistic-concurrency refusals (a stale `etag`
/// or revision) are 412, the answer to a failed `If-Match`; other conflicts with the
/// current state are 409.
pub fn http_status(code: Code, reason: &str) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Aborted if matches!(reason, "ETAG_MISMATCH" | "REVISION_MISMATCH") => StatusCode::PRECONDITION_FAILED,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON error answer for `status`.
pub fn error_response(status: &Status) -> Response {
    let info = status.get_details_error_info();
    let reason = info.as_ref().map(|i| i.reason.clone()).unwrap_or_default();
    let details = info.map(|i| i.metadata).unwrap_or_default();
    let http = http_status(status.code(), &reason);
    let body = json!({"error": {
        "code": domain_code(status.code()).as_str(),
        "reason": reason,
        "message": status.message(),
        "details": details,
    }});
    let mut response = with_type(http, Bytes::from(body.to_string()), "application/json");
    let headers = response.headers_mut();
    if http == StatusCode::UNAUTHORIZED {
        headers.insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    }
    if let Some(after) = details.get("retry_after_seconds").and_then(|s| http::HeaderValue::from_str(s).ok()) {
        headers.insert(http::header::RETRY_AFTER, after);
    }
    response
}

/// A request the front door cannot turn into a message: 400 `MALFORMED_MESSAGE`, the
/// reason gRPC gives a message that does not decode.
pub fn malformed(message: impl Into<String>) -> Response {
    error_response(&status(Code::InvalidArgument, "MALFORMED_MESSAGE", message, []))
}

/// No endpoint at this path: 404 `ENDPOINT_NOT_FOUND`.
pub fn no_endpoint(path: &str, hint: &str) -> Response {
    let message = format!("no endpoint {path} here; {hint}");
    error_response(&status(Code::NotFound, "ENDPOINT_NOT_FOUND", message, [("path", path.to_string())]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_status_a_web_client_expects() {
        assert_eq!(http_status(Code::InvalidArgument, "INVALID_NAME"), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::Unauthenticated, "TOKEN_MISSING"), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::PermissionDenied, "PERMISSION_DENIED"), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::NotFound, "PACKAGE_NOT_FOUND"), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::AlreadyExists, "PROMOTION_ALREADY_IN_PROGRESS"), StatusCode::CONFLICT);
        assert_eq!(http_status(Code::FailedPrecondition, "INVALID_STATUS_TRANSITION"), StatusCode::CONFLICT);
        assert_eq!(http_status(Code::Aborted, "ETAG_MISMATCH"), StatusCode::PRECONDITION_FAILED);
        assert_eq!(http_status(Code::Aborted, "PRE_RUN_STALE"), StatusCode::CONFLICT);
        assert_eq!(http_status(Code::ResourceExhausted, "TOO_MANY_FAILED_LOGINS"), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http_status(Code::Unavailable, "PACKAGE_SERVICE_UNAVAILABLE"), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn the_body_carries_code_reason_message_and_metadata() {
        let response = error_response(&promotion_api::status::retry_later(
            "TOO_MANY_FAILED_LOGINS",
            "slow down",
            std::time::Duration::from_secs(7),
        ));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "7");
        let unauthenticated = error_response(&status(Code::Unauthenticated, "TOKEN_MISSING", "no token", []));
        assert_eq!(unauthenticated.headers()[http::header::WWW_AUTHENTICATE], "Bearer");
    }
}
