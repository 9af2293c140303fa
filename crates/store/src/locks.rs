//! Named async locks (per environment, per package, per request) whose map does not grow
//! without bound: entries nobody holds are dropped once the map gets large.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const PRUNE_AT: usize = 1024;

#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().expect("lock map is never poisoned");
            if locks.len() >= PRUNE_AT {
                // Only the map holds these: nobody is waiting on or holding them.
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(key.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    pub fn len(&self) -> usize {
        self.locks.lock().expect("lock map is never poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_locks_are_pruned_and_held_ones_kept() {
        let locks = KeyedLocks::default();
        let held = locks.lock("held").await;
        for i in 0..PRUNE_AT + 10 {
            drop(locks.lock(&format!("k{i}")).await);
        }
        assert!(locks.len() < PRUNE_AT, "idle entries were pruned");
        assert!(locks.locks.lock().unwrap().contains_key("held"), "a held lock survives pruning");
        drop(held);
    }
}
