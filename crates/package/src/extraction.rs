//! Background extraction: asks the object source (the installation service hosting the
//! source environment) for the closure of a package's roots with the caller's
//! credentials, builds the definition, and stores the outcome. Every failure ends as a
//! failure reason: a package never stays EXTRACTING.
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;

use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::{Credentials, Identity};
use promotion_core::objects::ObjectCollection;
use promotion_core::package::{Package, Status};
use promotion_store::package::{LockKey, PackageRecord};

use crate::common::{event, store_definition, INTERRUPTED};
use crate::definitions::{self, Built};
use crate::error::Result;
use crate::state::{State, SERVICE_NAME};

/// The whole export, however large, must finish within this.
pub const EXPORT_DEADLINE: Duration = Duration::from_secs(300);

/// One extraction to run: which package attempt, for whom, from where.
#[derive(Debug, Clone)]
pub struct Job {
    pub package_id: String,
    pub attempt: String,
    pub caller: Identity,
    pub environment: Arc<EnvironmentInfo>,
    pub roots: Vec<ObjectCollection>,
    pub request_id: String,
}

/// A successful extraction: the built definition and the export's warnings.
#[derive(Debug)]
pub struct Extracted {
    pub built: Built,
    pub warnings: Vec<String>,
}

/// Runs `job` in the background with the caller's credentials, logging in the span (and
/// trace) of the call that started it.
pub fn spawn(state: Arc<State>, job: Job, credentials: Option<Credentials>) {
    let task = async move {
        let outcome = extract(&state, &job, credentials).await;
        if let Err(reason) = &outcome {
            tracing::info!(package = %job.package_id, %reason, "extraction failed");
        }
        if let Err(e) = finish_extraction(&state, &job, outcome).await {
            tracing::error!(package = %job.package_id, error = %e, "could not record the end of an extraction");
        }
    };
    tokio::spawn(tracing::Instrument::in_current_span(task));
}

async fn extract(state: &State, job: &Job, credentials: Option<Credentials>) -> std::result::Result<Extracted, String> {
    // Bounds how many packages' objects are in memory at once.
    let _slot = state.extraction_slots.acquire().await.map_err(|_| INTERRUPTED.to_string())?;
    let started = std::time::Instant::now();
    let limits = &state.config.limits;
    let export = state.source.export(&job.environment, &job.roots, credentials.as_ref(), limits.max_package_objects);
    let exported = match tokio::time::timeout(EXPORT_DEADLINE, export).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(format!(
                "the installation service at {} did not finish the export within {} s",
                job.environment.installation_service,
                EXPORT_DEADLINE.as_secs()
            ))
        }
    };
    let catalog = job.environment.catalog.clone();
    let root_types: Vec<String> = job.roots.iter().map(|c| c.obj_code.clone()).collect();
    let (budget, max_bytes) = (limits.stream_chunk_bytes, limits.max_definition_bytes);
    let content = exported.content;
    let built = tokio::task::spawn_blocking(move || {
        definitions::build_bounded(&catalog, &root_types, content, budget, max_bytes)
    })
    .await
    .map_err(|e| format!("building the definition failed: {e}"))??;
    tracing::info!(
        package = %job.package_id,
        objects = built.entity_total,
        seconds = started.elapsed().as_secs_f64(),
        "extraction finished"
    );
    promotion_core::metrics::record_extraction(started.elapsed(), usize::try_from(built.entity_total).unwrap_or(0));
    Ok(Extracted { built, warnings: exported.warnings })
}

/// Applies the end of an extraction: the new definition version and BUILDING, or
/// EXTRACTION_FAILED with the reason. A result for a package that was deleted or has
/// moved on (another attempt) is dropped.
pub async fn finish_extraction(
    state: &State,
    job: &Job,
    outcome: std::result::Result<Extracted, String>,
) -> Result<()> {
    let lock = state.store.lock(LockKey::Package(job.package_id.clone())).await?;
    let Some(mut package) = state.store.package(&job.package_id).await? else { return Ok(()) };
    if !package.awaits(&job.attempt) {
        return Ok(());
    }
    let records = match outcome {
        Ok(extracted) => mark_extracted(job, &mut package, extracted),
        Err(reason) => mark_failed(&job.caller, &job.request_id, &mut package, reason),
    };
    if let Err(e) = state.store.commit(Some(lock), records).await {
        if package.status != Status::Building {
            return Err(e.into());
        }
        // The definition could not be stored: the package must not stay EXTRACTING.
        tracing::error!(package = %package.id, error = %e, "storing an extracted definition failed");
        let lock = state.store.lock(LockKey::Package(job.package_id.clone())).await?;
        let current = state.store.package(&job.package_id).await?;
        let Some(current) = current.filter(|p| p.awaits(&job.attempt)) else { return Ok(()) };
        package = current;
        let reason = format!("the extracted definition could not be stored: {e}");
        let records = mark_failed(&job.caller, &job.request_id, &mut package, reason);
        state.store.commit(Some(lock), records).await?;
    }
    state.watchers.publish(&package);
    Ok(())
}

/// The records making `extracted` the package's next version, in BUILDING.
fn mark_extracted(job: &Job, package: &mut Package, extracted: Extracted) -> Vec<PackageRecord> {
    let mut records = Vec::new();
    package.warnings = extracted.warnings;
    store_definition(&mut records, package, extracted.built);
    package.touch(Utc::now());
    let e = event(&job.caller, package, "PACKAGE_EXTRACTED")
        .request_id(&job.request_id)
        .detail("version", package.version)
        .detail("digest", package.digest.as_str())
        .detail("objects", package.entity_counts.values().sum::<i64>());
    records.push(PackageRecord::audit(e));
    records.push(PackageRecord::Package(Box::new(package.clone())));
    records
}

/// The records moving an extracting package to EXTRACTION_FAILED with `reason`.
fn mark_failed(actor: &Identity, request_id: &str, package: &mut Package, reason: String) -> Vec<PackageRecord> {
    package.status = Status::ExtractionFailed;
    package.failure_reason = reason;
    package.extraction = None;
    package.touch(Utc::now());
    let e = event(actor, package, "PACKAGE_EXTRACTION_FAILED")
        .request_id(request_id)
        .detail("failure_reason", package.failure_reason.as_str());
    vec![PackageRecord::audit(e), PackageRecord::Package(Box::new(package.clone()))]
}

/// Start-up recovery: an extraction found in progress was cut short by a stop of the
/// service, so its package becomes EXTRACTION_FAILED. Returns how many were found.
pub async fn recover(state: &State) -> Result<usize> {
    let mut recovered = 0;
    for id in state.store.extracting().await? {
        let lock = state.store.lock(LockKey::Package(id.clone())).await?;
        let Some(mut package) = state.store.package(&id).await? else { continue };
        if package.status != Status::Extracting {
            continue;
        }
        let service = Identity {
            subject: SERVICE_NAME.into(),
            organization: package.organization.clone(),
            bindings: Vec::new(),
            expires_at: 0,
        };
        recovered += 1;
        let records = mark_failed(&service, "", &mut package, INTERRUPTED.to_string());
        state.store.commit(Some(lock), records).await?;
    }
    Ok(recovered)
}
