//! What a client command can fail with, and how a failure is shown to a person or a script.
use std::collections::BTreeMap;
use std::fmt;

use serde_json::json;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A failed client command. Every variant ends the process with a non-zero exit code.
#[derive(Debug)]
pub enum CliError {
    /// The service answered with an error status.
    Status(Status),
    /// The service could not be reached at all.
    Connect { service: &'static str, address: String, detail: String },
    /// A flag, file or value given on the command line is not usable; nothing was sent.
    Usage(String),
    /// The call succeeded but the outcome is a failure (an extraction that failed, say).
    Failed(String),
    /// Nothing went wrong, but the exit status says something (`prerun
    /// --detailed-exitcode` exits 2 when the plan changes something); nothing is printed.
    Exit(u8),
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    pub fn failed(message: impl Into<String>) -> Self {
        CliError::Failed(message.into())
    }

    /// UPPER_SNAKE gRPC code name, or the kind of local failure.
    pub fn code(&self) -> &'static str {
        match self {
            CliError::Status(s) => code_name(s.code()),
            CliError::Connect { .. } => code_name(Code::Unavailable),
            CliError::Usage(_) => "USAGE",
            CliError::Failed(_) => "FAILED",
            CliError::Exit(_) => "OK",
        }
    }

    /// The process exit status for this outcome.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Exit(code) => *code,
            _ => 1,
        }
    }

    /// The ErrorInfo reason of a service error.
    pub fn reason(&self) -> Option<String> {
        match self {
            CliError::Status(s) => promotion_api::status::reason_of(s),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            CliError::Status(s) => in_cli_terms(self.reason().as_deref(), s.message()),
            CliError::Connect { service, address, detail } => {
                format!("cannot reach the {service} at {address} ({detail}); is it running? (development mode: `promotion dev`)")
            }
            CliError::Usage(m) | CliError::Failed(m) => m.clone(),
            CliError::Exit(_) => String::new(),
        }
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        match self {
            CliError::Status(s) => {
                s.get_details_error_info().map(|i| i.metadata.into_iter().collect()).unwrap_or_default()
            }
            _ => BTreeMap::new(),
        }
    }

    /// The error for `--output json`: code, reason, message and ErrorInfo metadata.
    pub fn to_json(&self) -> serde_json::Value {
        json!({ "error": {
            "code": self.code(),
            "reason": self.reason(),
            "message": self.message(),
            "metadata": self.metadata(),
        }})
    }
}

/// The service's wording of a hint, and how this client says it: the flag that does it.
const CLI_TERMS: &[(&str, &str, &str)] = &[
    ("OBJECTS_MODIFIED_SINCE_INSTALL", "roll back with force", "roll back with --force"),
    ("HAS_CHILDREN", "or set cascade", "or add --cascade"),
    ("REFERENCED", "set cascade to", "add --cascade to"),
    ("PRE_RUN_EXPIRED", "run a new one", "run `promotion prerun` again"),
    ("PRE_RUN_STALE", "nothing was written:", "nothing was written (run `promotion prerun` again):"),
    ("INVALID_PAGE_TOKEN", "page_token", "--page-token"),
    ("INVALID_REQUEST_ID", "request_id", "--request-id"),
    ("REQUEST_ID_REUSED", "request_id", "--request-id"),
    ("ETAG_MISMATCH", "etag", "--etag"),
    (
        "REVISION_MISMATCH",
        "read them again and re-apply the change",
        "read them again and re-apply the change (`promotion objects patch` and `objects edit` read the current revision)",
    ),
];

/// A service message in the client's terms: hints that name request fields name the
/// flags instead.
fn in_cli_terms(reason: Option<&str>, message: &str) -> String {
    let mut text = message.to_string();
    for (r, from, to) in CLI_TERMS {
        if reason == Some(*r) {
            text = text.replace(from, to);
        }
    }
    text
}

/// `CODE REASON: message`, e.g. `FAILED_PRECONDITION INVALID_STATUS_TRANSITION: ...`; the
/// code once when the reason repeats it (`PERMISSION_DENIED: ...`).
impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Status(_) | CliError::Connect { .. } => {
                write!(f, "{}", self.code())?;
                if let Some(reason) = self.reason().filter(|r| r != self.code()) {
                    write!(f, " {reason}")?;
                }
                write!(f, ": {}", self.message())
            }
            CliError::Usage(m) | CliError::Failed(m) => f.write_str(m),
            CliError::Exit(_) => Ok(()),
        }
    }
}

impl From<Status> for CliError {
    fn from(s: Status) -> Self {
        // tonic reports its own client-side deadline as CANCELLED "Timeout expired".
        if s.code() == Code::Cancelled && s.message() == "Timeout expired" {
            return CliError::Status(Status::deadline_exceeded(
                "no answer within the deadline; give the call more time with --timeout SECONDS",
            ));
        }
        CliError::Status(s)
    }
}

/// The canonical name of a gRPC code, as errors print it.
pub fn code_name(code: Code) -> &'static str {
    promotion_api::status::domain_code(code).as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_error_shows_code_reason_and_message() {
        let status = promotion_api::status::status(
            Code::FailedPrecondition,
            "INVALID_STATUS_TRANSITION",
            "RETIRED cannot become PUBLIC",
            [("status", "PUBLIC".to_string())],
        );
        let e = CliError::from(status);
        assert_eq!(e.to_string(), "FAILED_PRECONDITION INVALID_STATUS_TRANSITION: RETIRED cannot become PUBLIC");
        let j = e.to_json();
        assert_eq!(j["error"]["reason"], "INVALID_STATUS_TRANSITION");
        assert_eq!(j["error"]["metadata"]["status"], "PUBLIC");
    }

    #[test]
    fn errors_name_flags_and_never_double_the_code() {
        let denied = promotion_api::status::status(
            Code::PermissionDenied,
            "PERMISSION_DENIED",
            "the caller lacks environment.write on environment dev",
            [],
        );
        assert_eq!(
            CliError::from(denied).to_string(),
            "PERMISSION_DENIED: the caller lacks environment.write on environment dev"
        );
        let modified = promotion_api::status::status(
            Code::FailedPrecondition,
            "OBJECTS_MODIFIED_SINCE_INSTALL",
            "objects changed since the installation (roll back with force to discard those changes): TMPL:x",
            [],
        );
        assert!(CliError::from(modified).to_string().contains("roll back with --force to discard"));
        let children = promotion_api::status::status(
            Code::FailedPrecondition,
            "HAS_CHILDREN",
            "TMPL:x still owns 3 objects; delete them first or set cascade",
            [],
        );
        assert!(CliError::from(children).to_string().ends_with("delete them first or add --cascade"));
    }

    #[test]
    fn a_status_without_error_info_shows_the_code() {
        let e = CliError::from(Status::new(Code::Unimplemented, "not yet"));
        assert_eq!(e.to_string(), "UNIMPLEMENTED: not yet");
        assert!(e.to_json()["error"]["reason"].is_null());
    }

    #[test]
    fn a_client_side_timeout_reads_as_deadline_exceeded() {
        let e = CliError::from(Status::cancelled("Timeout expired"));
        assert!(e.to_string().starts_with("DEADLINE_EXCEEDED: no answer within the deadline"), "{e}");
    }
}
