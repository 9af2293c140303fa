//! Delivers installation counts to the package service: each successful installation
//! leaves an outbox record (written with it, atomically), and this task calls
//! RecordInstallation with the service's own credentials until the package service
//! acknowledges, across restarts of either service.
use std::sync::Arc;
use std::time::Duration;

use super::records::{OutboxEntry, OUTBOX_PREFIX};
use super::state::State;
use super::store::Changes;
use crate::proto::v1 as pb;

/// Runs until `stop` resolves.
pub async fn run(state: Arc<State>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut backoff = Duration::from_millis(200);
    loop {
        let delivered_all = match deliver_pending(&state).await {
            Ok(()) => {
                backoff = Duration::from_millis(200);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "installation counts not delivered yet");
                false
            }
        };
        let wait = if delivered_all { Duration::from_secs(30) } else { backoff };
        tokio::select! {
            _ = &mut stop => return,
            _ = state.outbox_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        if !delivered_all {
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

async fn deliver_pending(state: &State) -> Result<(), String> {
    let pending: Vec<OutboxEntry> = state
        .store
        .scan_records(OUTBOX_PREFIX, false)
        .filter_map(|item| item.ok().and_then(|(_, v)| serde_json::from_slice(&v).ok()))
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    let client = state.package_client.as_ref().ok_or("no package service configured")?;
    let creds = state.config.service_credentials.as_ref().ok_or("no service_credentials configured")?;
    let token =
        client.service_token(&creds.client_id, &creds.client_secret).await.map_err(|s| s.message().to_string())?;
    for entry in pending {
        let req = pb::RecordInstallationRequest {
            package_id: entry.package_id.clone(),
            package_version: entry.package_version,
            installation_id: entry.installation_id.clone(),
            destination_environment: entry.destination.clone(),
        };
        match client.record_installation(&token, req).await {
            Ok(()) => {}
            // The package is gone: nothing left to count.
            Err(s) if s.code() == tonic::Code::NotFound => {
                tracing::info!(package = %entry.package_id, "package deleted; dropping its installation count");
            }
            Err(s) => return Err(format!("{}: {}", entry.installation_id, s.message())),
        }
        let mut done = Changes::default();
        done.records.push((entry.key(), None));
        state.store.write(&entry.destination, done, chrono::Utc::now()).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
