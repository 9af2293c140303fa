//! RollbackInstallation: restores the before-images and translation history of an
//! installation in one atomic, durable commit, unless later writes touched its objects
//! (then only with `force`); the promotion request that made it, if any, says so.
use chrono::Utc;
use serde::Serialize;

use promotion_core::audit::AuditEvent;
use promotion_core::identity::Identity;
use promotion_core::records::{InstallationRecord, InstallationStatus};
use promotion_store::installation::Record;

use crate::apply;
use crate::error::InstallError;
use crate::idempotency::{first, RequestUse};
use crate::installations::get_installation;
use crate::policies::check_window;
use crate::promotions;
use crate::state::{State, SERVICE_NAME};

#[derive(Serialize)]
struct RollbackBody<'a> {
    id: &'a str,
    force: bool,
}

pub async fn rollback(
    state: &State,
    caller: &Identity,
    id: &str,
    force: bool,
    request_id: &str,
    window_override: &str,
) -> Result<InstallationRecord, InstallError> {
    let request = RequestUse::new(caller, request_id, "RollbackInstallation", &RollbackBody { id, force });
    let record = get_installation(state, caller, id, false).await?;
    if first(request.as_ref(), state.store.as_ref()).await?.is_none() {
        check_window(state, caller, &record.destination, "RollbackInstallation", window_override).await?;
    }
    let tx = state.store.lock(&record.destination).await?;
    if first(request.as_ref(), state.store.as_ref()).await?.is_some() {
        drop(tx);
        return get_installation(state, caller, id, true).await;
    }
    // Re-read under the lock: a concurrent rollback may have finished first.
    let mut record = get_installation(state, caller, id, false).await?;
    match record.status {
        InstallationStatus::Installed => {}
        InstallationStatus::RolledBack => {
            return Err(InstallError::InvalidState {
                reason: "ALREADY_ROLLED_BACK",
                message: format!("installation {} was already rolled back", record.id),
            })
        }
        InstallationStatus::RollingBack => {
            return Err(InstallError::InvalidState {
                reason: "ROLLBACK_IN_PROGRESS",
                message: format!("installation {} is being rolled back", record.id),
            })
        }
        _ => {
            return Err(InstallError::InvalidState {
                reason: "NOT_INSTALLED",
                message: format!("installation {} did not install anything", record.id),
            })
        }
    }
    let store = state.store.as_ref();
    let undo = store.undo(&record.id).await?;
    let modified = apply::modified_since(store, &record.destination, &undo, record.destination_revision).await?;
    if !modified.is_empty() && !force {
        return Err(InstallError::ObjectsModified(modified));
    }
    let mut write = apply::rollback_changes(&record.destination, &undo);
    drop(undo);
    let catalog = state.directory.get(&record.destination).map(|e| e.catalog.clone());
    let mut invalid = catalog.map(|c| apply::invalid_restores(&c, &write)).unwrap_or_default();
    if invalid.is_empty() {
        invalid = apply::unowned_or_cyclic_restores(store, &record.destination, &write).await?;
    }
    if !invalid.is_empty() {
        return Err(InstallError::InvalidState {
            reason: "RESTORE_INVALID",
            message: format!(
                "{} before-images break today's object rules and cannot be restored: {}",
                invalid.len(),
                invalid.iter().take(20).cloned().collect::<Vec<_>>().join("; ")
            ),
        });
    }
    record.status = InstallationStatus::RolledBack;
    record.rollback_time = Some(Utc::now());
    record.rolled_back_by = caller.subject.clone();
    let event = AuditEvent::new(
        SERVICE_NAME,
        caller,
        &record.destination,
        "INSTALLATION_ROLLED_BACK",
        ("installation", &record.id),
    )
    .request_id(request_id)
    .detail("force", force)
    .detail("modified", modified.len() as u64)
    .detail("promotion_request_id", record.promotion_request_id.clone());
    write.record(Record::audit(event));
    if let Some(r) = &request {
        write.record(r.record(&record.id));
    }
    if let Some(promotion) = promotions::rolled_back(state, &record).await? {
        write.record(Record::Promotion(Box::new(promotion)));
    }
    let (destination, objects) =
        (record.destination.clone(), write.upserts.len() + write.restores.len() + write.deletes.len());
    write.record(Record::Installation { record: Box::new(record), with_plan: false, undo: None });
    tx.commit(write).await?;
    tracing::info!(installation = %id, %destination, force, objects, modified = modified.len(), "installation rolled back");
    get_installation(state, caller, id, true).await
}
