//! Delivers installation counts to the package service: each successful installation
//! leaves an outbox record (written with it, atomically), and this task calls
//! RecordInstallation with the service's own credentials until the package service
//! acknowledges, across restarts of either service.
use std::sync::Arc;
use std::time::Duration;

use crate::state::State;
use promotion_store::installation::Record;

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
    let pending = state.store.outbox(1000).await.map_err(|e| e.to_string())?;
    if pending.is_empty() {
        return Ok(());
    }
    let source = state.packages.as_ref().ok_or("no package service configured")?;
    let creds = state.config.service_credentials.as_ref().ok_or("no service_credentials configured")?;
    let credentials =
        source.service_credentials(&creds.client_id, &creds.client_secret).await.map_err(|e| e.message)?;
    for entry in pending {
        match source.record_installation(&credentials, &entry).await {
            Ok(()) => {}
            // The package is gone: nothing left to count.
            Err(e) if e.code == promotion_core::Code::NotFound => {
                tracing::info!(package = %entry.package_id, "package deleted; dropping its installation count");
            }
            Err(e) => return Err(format!("{}: {}", entry.installation_id, e.message)),
        }
        let done = Record::OutboxDelivered { installation_id: entry.installation_id.clone() };
        state.store.append(vec![done]).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
