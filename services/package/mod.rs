//! The package service: immutable, versioned packages extracted from source environments,
//! plus the token issuer (AuthService).
pub mod grpc;
pub mod server;
pub mod state;
pub mod store;
