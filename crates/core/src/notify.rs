//! Notifications: an organization's webhook subscriptions, and each delivery of an event
//! to one of them as stored in the outbox — its signed body, its attempts and when the
//! next one is due (exponential backoff with jitter, so a receiver that is down is not
//! hammered and many deliveries do not retry in step).
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The events a subscription may ask for.
pub const EVENTS: &[&str] = &[
    "PROMOTION_REQUESTED",
    "PROMOTION_APPROVED",
    "PROMOTION_ACCEPTED",
    "PROMOTION_REJECTED",
    "PROMOTION_CANCELLED",
    "INSTALLATION_COMPLETED",
    "INSTALLATION_FAILED",
    "INSTALLATION_ROLLED_BACK",
    "PACKAGE_STATUS_CHANGED",
    "EXTRACTION_FAILED",
];

/// After this many failed attempts a delivery is given up (about a day of retries).
pub const MAX_ATTEMPTS: usize = 15;
/// The longest wait between two attempts.
const MAX_BACKOFF_SECONDS: i64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub organization: String,
    /// Only events of this environment; empty: every environment of the organization.
    pub environment: String,
    pub url: String,
    pub events: Vec<String>,
    /// The HMAC-SHA256 key of the deliveries' signatures; never shown again.
    pub secret: String,
    pub create_time: DateTime<Utc>,
    pub created_by: String,
}

impl Subscription {
    /// Whether an `event` of `environment` goes to this subscription.
    pub fn wants(&self, event: &str, environment: &str) -> bool {
        self.events.iter().any(|e| e == event) && (self.environment.is_empty() || self.environment == environment)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Every attempt failed; nothing more is tried.
    Failed,
}

/// One try at posting a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub time: DateTime<Utc>,
    /// 0 when no HTTP answer came.
    pub status_code: u16,
    pub latency_ms: u64,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unique; sent as `X-Promotion-Delivery` so that receivers can drop repeats.
    pub id: String,
    pub subscription_id: String,
    pub organization: String,
    pub environment: String,
    pub event: String,
    pub url: String,
    /// The exact JSON body posted (and signed).
    pub body: String,
    /// `sha256=<hex HMAC-SHA256 of body with the subscription secret>`.
    pub signature: String,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    pub next_attempt: DateTime<Utc>,
    pub create_time: DateTime<Utc>,
}

/// The signature header value of `body` under `secret`.
pub fn signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Delivery {
    /// A pending delivery of `event` (with `data`) to `subscription`, due now.
    pub fn new(subscription: &Subscription, event: &str, environment: &str, data: serde_json::Value) -> Delivery {
        let now = Utc::now();
        let id = uuid::Uuid::now_v7().to_string();
        let body = serde_json::json!({
            "id": id,
            "event": event,
            "organization": subscription.organization,
            "environment": environment,
            "time": now.to_rfc3339(),
            "data": data,
        })
        .to_string();
        Delivery {
            signature: signature(&subscription.secret, &body),
            id,
            subscription_id: subscription.id.clone(),
            organization: subscription.organization.clone(),
            environment: environment.to_string(),
            event: event.to_string(),
            url: subscription.url.clone(),
            body,
            status: DeliveryStatus::Pending,
            attempts: vec![],
            next_attempt: now,
            create_time: now,
        }
    }

    /// Records an attempt: delivered on a 2xx answer; else the next try after a backoff
    /// (`jitter` in [0, 1) spreads it), or given up after [`MAX_ATTEMPTS`].
    pub fn record(&mut self, attempt: Attempt, jitter: f64) {
        let ok = (200..300).contains(&attempt.status_code);
        let now = attempt.time;
        self.attempts.push(attempt);
        if ok {
            self.status = DeliveryStatus::Delivered;
        } else if self.attempts.len() >= MAX_ATTEMPTS {
            self.status = DeliveryStatus::Failed;
        } else {
            self.next_attempt = now + backoff(self.attempts.len(), jitter);
        }
    }
}

/// 1 s, 2 s, 4 s... doubled per failed attempt up to an hour, plus up to half again.
fn backoff(failures: usize, jitter: f64) -> Duration {
    let exponent = u32::try_from(failures.saturating_sub(1)).unwrap_or(u32::MAX).min(12);
    let base = (1i64 << exponent).min(MAX_BACKOFF_SECONDS);
    Duration::milliseconds((base as f64 * 1000.0 * (1.0 + jitter.clamp(0.0, 1.0) / 2.0)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription() -> Subscription {
        Subscription {
            id: "s1".into(),
            organization: "acme".into(),
            environment: "qa".into(),
            url: "http://127.0.0.1:1/hook".into(),
            events: vec!["PROMOTION_REQUESTED".into()],
            secret: "shh".into(),
            create_time: Utc::now(),
            created_by: "admin".into(),
        }
    }

    #[test]
    fn the_signature_is_the_hex_hmac_of_the_body() {
        // RFC 4231-style check against an independent computation.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"shh").unwrap();
        mac.update(b"{}");
        assert_eq!(signature("shh", "{}"), format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
        assert_ne!(signature("shh", "{}"), signature("other", "{}"));
    }

    #[test]
    fn subscriptions_filter_by_event_and_environment() {
        let s = subscription();
        assert!(s.wants("PROMOTION_REQUESTED", "qa"));
        assert!(!s.wants("PROMOTION_REQUESTED", "prod") && !s.wants("PROMOTION_ACCEPTED", "qa"));
        let everywhere = Subscription { environment: String::new(), ..s };
        assert!(everywhere.wants("PROMOTION_REQUESTED", "prod"));
    }

    #[test]
    fn failures_back_off_and_a_2xx_delivers() {
        let mut d = Delivery::new(&subscription(), "PROMOTION_REQUESTED", "qa", serde_json::json!({"id": "r1"}));
        assert_eq!(d.signature, signature("shh", &d.body));
        let t = Utc::now();
        let failed = |time| Attempt { time, status_code: 0, latency_ms: 1, error: "refused".into() };
        d.record(failed(t), 0.0);
        assert_eq!((d.status, d.next_attempt - t), (DeliveryStatus::Pending, Duration::seconds(1)));
        d.record(failed(t), 0.0);
        d.record(failed(t), 0.99);
        let wait = d.next_attempt - t;
        assert!(wait > Duration::seconds(4) && wait < Duration::seconds(6), "4 s plus jitter: {wait}");
        d.record(Attempt { time: t, status_code: 204, latency_ms: 3, error: String::new() }, 0.0);
        assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Delivered, 4));
    }

    #[test]
    fn a_delivery_is_given_up_after_the_last_attempt() {
        let mut d = Delivery::new(&subscription(), "PROMOTION_REQUESTED", "qa", serde_json::json!({}));
        for _ in 0..MAX_ATTEMPTS {
            d.record(Attempt { time: Utc::now(), status_code: 500, latency_ms: 1, error: String::new() }, 0.5);
        }
        assert_eq!(d.status, DeliveryStatus::Failed);
    }
}
