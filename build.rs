//! Embeds the commit being built, for `promotion --version`.
use std::path::PathBuf;
use std::{env, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    embed_git_commit();
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
