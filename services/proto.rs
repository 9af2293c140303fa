//! Generated `promotion.v1` types and the descriptor set served by reflection.
#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("promotion.v1");
}

/// Encoded `FileDescriptorSet` of the `promotion.v1` contracts.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/promotion_v1_descriptor.bin"));
