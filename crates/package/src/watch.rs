//! Live package changes for WatchPackage: one channel per watched package, created when
//! someone watches and dropped once nobody does.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

use promotion_core::package::Package;

/// The latest news about one package.
#[derive(Debug, Clone)]
pub enum Change {
    /// Nothing published since the channel was created.
    None,
    Updated(Arc<Package>),
    Deleted,
}

#[derive(Default)]
pub struct WatchHub {
    channels: Mutex<HashMap<String, watch::Sender<Change>>>,
}

impl WatchHub {
    /// A receiver of every later change of package `id`. Subscribe before reading the
    /// current state so that no change falls between the two.
    pub fn subscribe(&self, id: &str) -> watch::Receiver<Change> {
        let mut channels = self.channels.lock().expect("watch hub is never poisoned");
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels.entry(id.to_string()).or_insert_with(|| watch::channel(Change::None).0).subscribe()
    }

    /// Tells the package's watchers about its new state.
    pub fn publish(&self, package: &Package) {
        self.send(&package.id, Change::Updated(Arc::new(package.clone())));
    }

    /// Tells the package's watchers it is gone; their streams end.
    pub fn deleted(&self, id: &str) {
        self.send(id, Change::Deleted);
    }

    fn send(&self, id: &str, change: Change) {
        let mut channels = self.channels.lock().expect("watch hub is never poisoned");
        if let Some(tx) = channels.get(id) {
            if tx.receiver_count() == 0 {
                channels.remove(id);
            } else {
                tx.send_replace(change);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.channels.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(id: &str, revision: u64) -> Package {
        let json = serde_json::json!({
            "id": id, "name": "Watched package", "description": "", "status": "BUILDING", "version": 1,
            "organization": "acme", "source_environment": "dev", "object_collections": [],
            "metadata": {"install_order": [], "display_order": []}, "entity_counts": {}, "digest": "",
            "installation_counts": {}, "is_private": false, "create_time": "2024-01-01T00:00:00Z",
            "created_by": "alice", "update_time": "2024-01-01T00:00:00Z", "publish_time": null,
            "retire_time": null, "failure_reason": "", "warnings": [], "revision": revision, "sequence": revision,
            "has_definition": true, "extraction": null
        });
        serde_json::from_value(json).unwrap()
    }

    #[tokio::test]
    async fn watchers_see_updates_then_deletion() {
        let hub = WatchHub::default();
        hub.publish(&package("a", 1));
        assert_eq!(hub.len(), 0, "publishing without watchers keeps nothing");
        let mut rx = hub.subscribe("a");
        hub.publish(&package("a", 2));
        rx.changed().await.unwrap();
        assert!(matches!(&*rx.borrow_and_update(), Change::Updated(p) if p.revision == 2));
        hub.deleted("a");
        rx.changed().await.unwrap();
        assert!(matches!(&*rx.borrow_and_update(), Change::Deleted));
        drop(rx);
        hub.publish(&package("a", 3));
        assert_eq!(hub.len(), 0, "a channel nobody listens to is dropped");
    }
}
