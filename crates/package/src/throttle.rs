//! Failed IssueToken attempts, counted per client id and per caller address in fixed
//! windows: past the limit, further attempts are refused without checking the secret until
//! the window ends, and the refusal says how long to wait. Kept in memory: a restart
//! forgets the counts, which only gives an attacker one more window.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts one client id may see per window.
pub const FAILURES_PER_CLIENT: u32 = 5;
/// Failed attempts one address may make per window, whatever client ids it tries.
pub const FAILURES_PER_ADDRESS: u32 = 20;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked at once; expired windows are dropped first, so memory stays bounded.
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Client(String),
    Address(IpAddr),
}

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: u32,
    /// Whether the refusals of this window were already audited (once per window).
    refusal_audited: bool,
}

/// Why an attempt is refused before its secret is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// `"client"` or `"address"`.
    pub by: &'static str,
    pub retry_after: Duration,
    /// True for the first refusal of the window, which is the one audited.
    pub first: bool,
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    windows: Mutex<HashMap<Key, Window>>,
}

impl LoginThrottle {
    /// Refuses an attempt from `address` for `client` when either has failed too often in
    /// its current window.
    pub fn check(&self, client: &str, address: Option<IpAddr>, now: Instant) -> Result<(), Throttled> {
        let mut windows = self.windows.lock().expect("throttle lock");
        let keys = [(Some(Key::Client(client.to_string())), FAILURES_PER_CLIENT, "client")].into_iter().chain([(
            address.map(Key::Address),
            FAILURES_PER_ADDRESS,
            "address",
        )]);
        for (key, limit, by) in keys {
            let Some(w) = key.and_then(|k| windows.get_mut(&k)) else { continue };
            let age = now.saturating_duration_since(w.started);
            if age < WINDOW && w.failures >= limit {
                let first = !w.refusal_audited;
                w.refusal_audited = true;
                return Err(Throttled { by, retry_after: WINDOW - age, first });
            }
        }
        Ok(())
    }

    /// Counts a failed attempt against the client id and the address.
    pub fn failed(&self, client: &str, address: Option<IpAddr>, now: Instant) {
        let mut windows = self.windows.lock().expect("throttle lock");
        if windows.len() >= MAX_KEYS {
            windows.retain(|_, w| now.saturating_duration_since(w.started) < WINDOW);
        }
        for key in [Some(Key::Client(client.to_string())), address.map(Key::Address)].into_iter().flatten() {
            if windows.len() >= MAX_KEYS && !windows.contains_key(&key) {
                // Full of live windows: an address spraying client ids is still counted
                // under its address, which was tracked first.
                continue;
            }
            let w = windows.entry(key).or_insert(Window { started: now, failures: 0, refusal_audited: false });
            if now.saturating_duration_since(w.started) >= WINDOW {
                *w = Window { started: now, failures: 0, refusal_audited: false };
            }
            w.failures += 1;
        }
    }

    /// A successful login clears its client's count (not its address's).
    pub fn succeeded(&self, client: &str) {
        self.windows.lock().expect("throttle lock").remove(&Key::Client(client.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_and_addresses_are_throttled_for_the_rest_of_the_window() {
        let t = LoginThrottle::default();
        let start = Instant::now();
        let here: Option<IpAddr> = "10.0.0.1".parse().ok();
        for _ in 0..FAILURES_PER_CLIENT {
            assert!(t.check("alice", here, start).is_ok());
            t.failed("alice", here, start);
        }
        let refused = t.check("alice", here, start + Duration::from_secs(10)).unwrap_err();
        assert_eq!((refused.by, refused.retry_after, refused.first), ("client", Duration::from_secs(50), true));
        assert!(!t.check("alice", None, start + Duration::from_secs(11)).unwrap_err().first, "audited once");
        assert!(t.check("alice", here, start + WINDOW).is_ok(), "a new window");
        // One address spraying client ids.
        for n in 0..FAILURES_PER_ADDRESS {
            t.failed(&format!("guess-{n}"), here, start);
        }
        assert_eq!(t.check("someone-else", here, start).unwrap_err().by, "address");
        assert!(t.check("someone-else", "10.0.0.2".parse().ok(), start).is_ok());
        t.succeeded("alice");
        assert!(t.check("alice", None, start).is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_a_spray_of_client_ids() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for n in 0..(MAX_KEYS * 3) {
            t.failed(&format!("id-{n}"), None, now);
        }
        assert!(t.windows.lock().unwrap().len() <= MAX_KEYS);
    }
}
