//! One module per area of client commands; each turns parsed arguments into calls and
//! prints the result through `cli::output`.
pub mod audit;
pub mod auth;
pub mod config;
pub mod drift;
pub mod env;
pub mod install;
pub mod objects;
pub mod package_diff;
pub mod packages;
pub mod policy;
pub mod promote;
