//! What both services share: configuration, identity, catalogs, objects, errors, and the
//! serving plumbing.
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod convert;
pub mod directory;
pub mod errors;
pub mod locks;
pub mod metrics;
pub mod objects;
pub mod pagination;
pub mod serving;
pub mod store_error;
