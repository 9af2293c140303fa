//! The vocabulary both services share and the rules that hold everywhere: configuration
//! objects and their validation, catalogs, identity and permissions, tokens and secrets,
//! configuration, the environment directory, audit events, page cursors, and the stored
//! shapes of packages, plans, installations, promotion requests and environment policies. No transport and no
//! storage engine: every other crate depends on this one.
pub mod audit;
pub mod catalog;
pub mod code;
pub mod config;
pub mod cursor;
pub mod diff;
pub mod directory;
pub mod identity;
pub mod metrics;
pub mod notify;
pub mod objects;
pub mod package;
pub mod plan;
pub mod policy;
pub mod promotion;
pub mod records;
pub mod secrets;
pub mod tokens;
pub mod trace;
pub mod upstream;
pub mod validate;
pub mod wire;

pub use code::Code;

use identity::Permission;

/// Why a caller may not touch an environment: it does not exist for them (another
/// organization's is indistinguishable from a missing one), or they lack a permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    EnvironmentNotFound(String),
    PermissionDenied { permission: Permission, environment: String },
}

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessError::EnvironmentNotFound(id) => write!(f, "environment {id:?} not found"),
            AccessError::PermissionDenied { permission, environment } => {
                write!(f, "the caller lacks {} on environment {environment}", permission.as_str())
            }
        }
    }
}

/// Malformed input, whatever the state (INVALID_ARGUMENT): why, which field, and a
/// message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid { reason, field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
