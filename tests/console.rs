//! The console at `/` of development mode's HTTP address: its assets carry a policy that
//! allows nothing inline, and seed 000's story is clicked through it in a real headless
//! Chromium (Debian's `chromium` and `chromium-driver`, driven by selenium from the CI
//! virtual environment; `.ci/run` installs all three). Screenshots of every step are kept
//! under `target/tmp/console-screenshots/`.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{http_call, DevServices};

/// The Python with selenium: `CONSOLE_TEST_PYTHON`, else the virtual environment `.ci/run`
/// installs it into.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("CONSOLE_TEST_PYTHON") {
        return python.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache"));
    cache.join("promotion-ci/venv/bin/python")
}

#[tokio::test]
async fn the_console_is_served_with_a_policy_that_allows_nothing_inline() {
    let dev = DevServices::start().await;
    let page = http_call(dev.http_addr, "GET", "/", &[], "").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    let policy = page.header("content-security-policy").expect("a Content-Security-Policy");
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe"), "{policy}");
    assert!(page.body.contains("<script src=\"/console.js\" defer></script>"), "{}", page.body);
    let script = http_call(dev.http_addr, "GET", "/console.js", &[], "").await;
    assert_eq!(script.status, 200);
    assert!(script.header("content-type").is_some_and(|t| t.starts_with("text/javascript")));
    assert_eq!(script.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn seed_000_is_clicked_through_in_headless_chromium() {
    let python = python();
    assert!(
        python.exists(),
        "the console test needs selenium in {} (.ci/run installs it, with chromium and chromium-driver)",
        python.display()
    );
    let dev = DevServices::start().await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console_e2e.py");
    let base = format!("http://{}", dev.http_addr);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout").arg("300").arg(python).arg(script).arg(base).arg(&shots).output()
    })
    .await
    .unwrap()
    .expect("run the browser story");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stdout.contains("console story: ok"), "{stdout}\n{stderr}");
}
