//! The package service on its own, in-process, with the source environment's
//! installation service unreachable: extraction fails with a reason instead of hanging,
//! and shutdown ends open watches instead of waiting for them.
mod common;

use common::*;
use std::time::Duration;

use promotion_api::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn an_unreachable_installation_service_fails_the_extraction_and_shutdown_ends_watches() {
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let package_addr = listener.local_addr().unwrap();
    // Nothing listens here once the probe is dropped.
    let closed = free_addr();
    let opts = DevAddrs { package_addr, installation_addr: closed };
    let (config, _) = dev_configs(data.path().to_path_buf(), opts.package_addr, opts.installation_addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = promotion_package::server::open(config).unwrap();
    let server = tokio::spawn(promotion_package::server::run(state, listener, async move {
        let _ = stopped.await;
    }));
    while health_status(package_addr).await != Some(1) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = issue_token(package_addr, "alice", "alice-secret").await;
    let bearer = Bearer(Some(format!("Bearer {token}").parse().unwrap()));
    let mut packages =
        pb::package_service_client::PackageServiceClient::with_interceptor(channel(package_addr).await, bearer);

    let body = pb::CreatePackageRequest {
        name: "Onboarding while the source is down".into(),
        source_environment: "dev".into(),
        object_collections: vec![pb::ObjectCollection {
            obj_code: "TMPL".into(),
            entities: vec![pb::EntityRef { id: ONBOARDING_TMPL.into(), name: String::new() }],
        }],
        ..Default::default()
    };
    let created = packages.create_package(body).await.unwrap().into_inner();
    assert_eq!(created.status, pb::PackageStatus::Extracting as i32);
    let mut failed = created.clone();
    for _ in 0..1200 {
        failed = packages.get_package(pb::GetPackageRequest { id: created.id.clone() }).await.unwrap().into_inner();
        if failed.status != pb::PackageStatus::Extracting as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(failed.status, pb::PackageStatus::ExtractionFailed as i32);
    let expected = format!("installation service at http://{closed} unreachable");
    assert!(failed.failure_reason.starts_with(&expected), "{}", failed.failure_reason);

    let mut watch =
        packages.watch_package(pb::WatchPackageRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap(), Some(failed));
    stop.send(()).unwrap();
    let ended =
        tokio::time::timeout(Duration::from_secs(30), watch.message()).await.expect("the watch ends on shutdown");
    assert_eq!(ended.unwrap_err().code(), Code::Unavailable);
    tokio::time::timeout(Duration::from_secs(30), server).await.expect("shutdown drains").unwrap().unwrap();
}
