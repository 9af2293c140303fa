//! Compiles the `promotion.v1` contracts with protox (no system `protoc` needed) and writes
//! the encoded descriptor set that the reflection service serves; embeds the git commit for
//! `promotion --version`.
use prost::Message;
use std::{env, error::Error, fs, path::PathBuf, process::Command};

const PROTOS: &[&str] = &[
    "proto/promotion/v1/objects.proto",
    "proto/promotion/v1/auth_service.proto",
    "proto/promotion/v1/audit_service.proto",
    "proto/promotion/v1/environment_service.proto",
    "proto/promotion/v1/package_service.proto",
    "proto/promotion/v1/installation_service.proto",
    "proto/promotion/v1/promotion_service.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    embed_git_commit();
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("promotion_v1_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Default bodies let the benchmark's minimal baseline server implement only
        // GetPackage. Every RPC of the real services is implemented: the authorization
        // matrix test calls each one the descriptor set lists and would see UNIMPLEMENTED.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}

/// `PROMOTION_GIT_COMMIT`: the commit being built, or "unknown" outside a git checkout (a
/// source tarball, a container build whose context has no .git, no git installed). Never
/// fails the build.
fn embed_git_commit() {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git").args(args).current_dir(env::var_os("CARGO_MANIFEST_DIR")?).output().ok()?;
        let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
        (output.status.success() && !text.is_empty()).then_some(text)
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PROMOTION_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it names (a commit),
    // packed refs. Only paths that exist: a missing one would rerun this script every build.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default()).join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
