//! The installation service: the configuration registry of its hosted environments,
//! pre-runs, installations and promotion requests.
pub mod apply;
pub mod environments;
#[cfg(test)]
mod export_tests;
pub mod grpc;
pub mod history;
pub mod installer;
pub mod outbox;
pub mod package_client;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod promotions;
pub mod records;
pub mod server;
pub mod state;
pub mod store;
