//! Development mode: both services in one process on loopback, with demo organizations,
//! environments, clients and configuration seeded on first start.
pub mod mode;
pub mod seed;
