//! Compiles the `promotion.v1` contracts with protox (no system `protoc` needed) and writes
//! the encoded descriptor set that the reflection service serves.
use prost::Message;
use std::{env, error::Error, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "../../proto/promotion/v1/objects.proto",
    "../../proto/promotion/v1/auth_service.proto",
    "../../proto/promotion/v1/audit_service.proto",
    "../../proto/promotion/v1/environment_service.proto",
    "../../proto/promotion/v1/package_service.proto",
    "../../proto/promotion/v1/installation_service.proto",
    "../../proto/promotion/v1/promotion_service.proto",
    "../../proto/promotion/v1/notification_service.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["../../proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("promotion_v1_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Default bodies let the benchmark's minimal baseline server implement only
        // GetPackage. Every RPC of the real services is implemented: the authorization
        // matrix test calls each one the descriptor set lists and would see UNIMPLEMENTED.
        .generate_default_stubs(true)
        // Decoding failures become INVALID_ARGUMENT with a reason, not INTERNAL.
        .codec_path("crate::codec::Codec")
        .compile_fds(descriptors)?;
    Ok(())
}
