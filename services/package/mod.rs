//! The package service: immutable, versioned packages extracted from source environments,
//! plus the token issuer (AuthService).
pub mod definitions;
pub mod extraction;
pub mod grpc;
pub mod operations;
pub mod packages;
pub mod server;
pub mod state;
pub mod store;
pub mod watch;
