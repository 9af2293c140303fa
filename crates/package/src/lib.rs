//! The package service: immutable, versioned packages extracted from source environments,
//! and the token issuer (AuthService). Domain modules, one per use case, know no
//! transport; `grpc` holds the handlers, their conversions and the one error map.
pub mod common;
pub mod create;
pub mod definitions;
pub mod delete;
pub mod diff;
pub mod error;
pub mod extraction;
pub mod grpc;
pub mod idempotency;
pub mod installation_check;
pub mod read;
pub mod record_installation;
pub mod replace;
pub mod server;
pub mod source;
pub mod state;
pub mod throttle;
pub mod update;
pub mod validate;
pub mod watch;

pub use error::PackageError;
pub use state::State;

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod testing;
