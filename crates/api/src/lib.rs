//! The `promotion.v1` contracts as Rust: the generated messages, clients and servers, the
//! descriptor set reflection serves, conversions between shared domain types and their
//! messages, and the one way domain errors become gRPC statuses (with `ErrorInfo`).
#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("promotion.v1");
}

pub mod codec;
pub mod convert;
pub mod status;

/// Encoded `FileDescriptorSet` of the `promotion.v1` contracts.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/promotion_v1_descriptor.bin"));
