//! The installation service: the configuration registry of its hosted environments,
//! pre-runs, installations, rollbacks, drift reports, promotion requests and environment
//! policies. Domain modules know no transport; `grpc` holds the handlers, their
//! conversions, the one error map and the package service client behind the
//! `PackageSource` port.
pub mod apply;
pub mod drift;
pub mod environments;
pub mod error;
pub mod fetch;
pub mod grpc;
pub mod idempotency;
pub mod install;
pub mod installations;
pub mod notifications;
pub mod outbox;
pub mod package_source;
pub mod plan;
pub mod policies;
pub mod pre_run;
pub mod promotions;
pub mod recovery;
pub mod refusal;
pub mod rollback;
pub mod server;
pub mod stale_promotions;
pub mod state;
pub mod webhook;

#[cfg(test)]
mod drift_tests;
#[cfg(test)]
mod export_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod promotion_tests;
#[cfg(test)]
mod testing;

pub use state::State;
