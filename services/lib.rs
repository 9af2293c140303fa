//! The environment promotion service pair: a package service that extracts versioned
//! packages, and an installation service that plans and applies them.
pub mod cli;
pub mod dev;
pub mod installation;
pub mod package;
pub mod proto;
pub mod shared;
