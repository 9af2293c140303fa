//! Development mode: both services in one process on loopback, with demo organizations,
//! environments and clients, and the demo configuration (`demo.json`) seeded through
//! PutObjects on first start.
pub mod mode;
