//! `promotion health-check`, which container health checks run instead of curl: exit 0
//! while the gRPC health service reports SERVING, 1 when it does not or nothing answers.
mod common;

use common::*;

fn health_check(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = promotion_command().arg("health-check").args(args).envs(envs.iter().copied()).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code(), text)
}

#[tokio::test]
async fn serving_services_pass_and_absent_ones_fail() {
    let dev = DevServices::start().await;
    let package = dev.package_addr.to_string();
    let installation = dev.installation_url();

    let (code, text) = health_check(&["--addr", &package], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("SERVING"), "{text}");
    let (code, text) = health_check(&["--addr", &installation, "--service", "promotion.v1.EnvironmentService"], &[]);
    assert_eq!(code, Some(0), "{text}");
    // A service the server does not have is not healthy.
    let (code, text) = health_check(&["--addr", &package, "--service", "promotion.v1.EnvironmentService"], &[]);
    assert_eq!(code, Some(1), "{text}");
    // Without --addr: the port PROMOTION_LISTEN names, as in a container.
    let listen = format!("0.0.0.0:{}", dev.installation_addr.port());
    let (code, text) = health_check(&[], &[("PROMOTION_LISTEN", &listen)]);
    assert_eq!(code, Some(0), "{text}");

    let nothing = free_addr().to_string();
    let (code, text) = health_check(&["--addr", &nothing, "--timeout", "2"], &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
}
