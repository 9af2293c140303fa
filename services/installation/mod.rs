//! The installation service: the configuration registry of its hosted environments,
//! pre-runs, installations and promotion requests.
pub mod environments;
pub mod grpc;
pub mod server;
pub mod state;
pub mod store;
