//! Webhooks against the real binary and a real HTTP receiver this test runs: a
//! subscription gets a signed PROMOTION_REQUESTED delivery whose signature verifies; with
//! the receiver down the call still succeeds, every failed attempt is listed, and the
//! delivery arrives once the receiver is up — also when the service restarted meanwhile.
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use hmac::{Hmac, Mac};
use promotion_api::v1 as pb;
use sha2::Sha256;
use tonic::Code;

const SECRET: &str = "a-webhook-secret-for-tests";

/// One POST the receiver got: lower-cased headers and the body.
struct Received {
    headers: BTreeMap<String, String>,
    body: String,
}

/// An HTTP receiver on `addr` answering 204 to every request, in its own thread.
fn receiver(addr: SocketAddr) -> mpsc::Receiver<Received> {
    let listener = TcpListener::bind(addr).expect("bind the receiver");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if let Some(r) = read_request(&mut stream) {
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                if tx.send(r).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers.get("content-length")?.parse().ok()?;
    while data.len() < head_end + length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
    Some(Received { headers, body: String::from_utf8_lossy(&data[head_end..head_end + length]).into_owned() })
}

async fn subscribe(admin: &mut Clients, url: String) -> pb::Subscription {
    let req = pb::CreateSubscriptionRequest {
        url,
        events: vec!["PROMOTION_REQUESTED".into(), "PROMOTION_ACCEPTED".into()],
        secret: SECRET.into(),
        environment: "qa".into(),
        request_id: String::new(),
    };
    admin.notifications.create_subscription(req).await.expect("admin subscribes").into_inner()
}

/// alice asks for a PREVIEW package of hers to go to qa.
async fn request_into_qa(alice: &mut Clients, name: &str) -> pb::PromotionRequest {
    let package = group_package(alice, name, &[pb::PackageStatus::Preview]).await;
    let req =
        pb::RequestPromotionRequest { package_id: package.id, target_environment: "qa".into(), ..Default::default() };
    alice.promotions.request_promotion(req).await.expect("the request succeeds whatever the receiver").into_inner()
}

fn verify(r: &Received) {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(r.body.as_bytes());
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(r.headers.get("x-promotion-signature"), Some(&expected), "the signature verifies");
}

fn next_delivery(rx: &mpsc::Receiver<Received>, within: Duration) -> Received {
    rx.recv_timeout(within).expect("a delivery arrives")
}

async fn deliveries(admin: &mut Clients, subscription: &str) -> Vec<pb::Delivery> {
    let req = pb::ListDeliveriesRequest { subscription_id: subscription.into(), ..Default::default() };
    admin.notifications.list_deliveries(req).await.unwrap().into_inner().deliveries
}

#[tokio::test]
async fn a_subscription_gets_a_signed_promotion_requested_delivery() {
    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let mut alice = dev.clients("alice").await;
    let mut bob = dev.clients("bob").await;
    let addr = free_addr();
    let rx = receiver(addr);
    let sub = subscribe(&mut admin, format!("http://{addr}/hooks/promotion")).await;
    let r = request_into_qa(&mut alice, "Webhook package").await;

    let got = next_delivery(&rx, Duration::from_secs(30));
    verify(&got);
    assert_eq!(got.headers.get("x-promotion-event").map(String::as_str), Some("PROMOTION_REQUESTED"));
    let body: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["data"]["promotion_request_id"], r.id.as_str());
    assert_eq!((body["event"].as_str(), body["environment"].as_str()), (Some("PROMOTION_REQUESTED"), Some("qa")));
    assert_eq!(got.headers.get("x-promotion-delivery"), body["id"].as_str().map(String::from).as_ref());

    // The requester hears of the decision: bob's accept is delivered too.
    let accept = pb::AcceptPromotionRequestRequest { id: r.id.clone(), comment: "ok".into(), ..Default::default() };
    bob.promotions.accept_promotion_request(accept).await.unwrap();
    let decided = next_delivery(&rx, Duration::from_secs(30));
    verify(&decided);
    let body: serde_json::Value = serde_json::from_str(&decided.body).unwrap();
    assert_eq!(
        (body["event"].as_str(), body["data"]["decided_by"].as_str()),
        (Some("PROMOTION_ACCEPTED"), Some("bob"))
    );
    assert_eq!(body["data"]["requested_by"], "alice");

    // The receiver may see a delivery before the service has recorded the attempt.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = deliveries(&mut admin, &sub.id).await;
        if listed.iter().all(|d| d.status == pb::DeliveryStatus::Delivered as i32) {
            break listed;
        }
        assert!(Instant::now() < deadline, "not all marked delivered: {listed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].attempts[0].status_code, 204);

    // Only admins manage subscriptions; bad ones are refused before anything is stored.
    let bad = pb::CreateSubscriptionRequest {
        url: "http://127.0.0.1:1/".into(),
        events: vec!["NOPE".into()],
        secret: SECRET.into(),
        ..Default::default()
    };
    assert_status(admin.notifications.create_subscription(bad).await, Code::InvalidArgument, "INVALID_EVENT");
    let short = pb::CreateSubscriptionRequest {
        url: "http://127.0.0.1:1/".into(),
        events: vec!["PROMOTION_REQUESTED".into()],
        secret: "short".into(),
        ..Default::default()
    };
    assert_status(admin.notifications.create_subscription(short).await, Code::InvalidArgument, "INVALID_SECRET");
    let listed = bob.notifications.list_deliveries(pb::ListDeliveriesRequest::default()).await;
    assert_status(listed, Code::PermissionDenied, "PERMISSION_DENIED");
}

#[tokio::test]
async fn with_the_receiver_down_the_call_succeeds_and_the_delivery_arrives_once_it_is_back_even_after_a_restart() {
    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let mut alice = dev.clients("alice").await;
    let addr = free_addr();
    let sub = subscribe(&mut admin, format!("http://{addr}/")).await;
    let r = request_into_qa(&mut alice, "Receiver down").await;

    // Attempts fail and are recorded; the request itself was answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = deliveries(&mut admin, &sub.id).await;
        if listed.first().is_some_and(|d| !d.attempts.is_empty()) {
            let d = &listed[0];
            assert_eq!(d.status, pb::DeliveryStatus::Pending as i32);
            assert_eq!(d.attempts[0].status_code, 0);
            assert!(!d.attempts[0].error.is_empty());
            break;
        }
        assert!(Instant::now() < deadline, "no attempt was recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restart the service, then bring the receiver up: the pending delivery arrives.
    let data_dir = dev.kill();
    let dev = DevServices::start_in(data_dir).await;
    let rx = receiver(addr);
    let got = next_delivery(&rx, Duration::from_secs(60));
    verify(&got);
    let body: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["data"]["promotion_request_id"], r.id.as_str());
    let mut admin = dev.clients("admin").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = deliveries(&mut admin, &sub.id).await;
        if listed[0].status == pb::DeliveryStatus::Delivered as i32 {
            assert!(listed[0].attempts.len() >= 2, "failed attempts, then the one that got through");
            break;
        }
        assert!(Instant::now() < deadline, "the delivery was never marked delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
