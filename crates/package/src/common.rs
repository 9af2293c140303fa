//! Helpers every package use case shares: visibility and permission checks, etags, the
//! audit event about a package, and storing a definition as the next version.
use std::sync::Arc;

use promotion_core::audit::AuditEvent;
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::{Identity, Permission};
use promotion_core::package::{Package, Status};
use promotion_core::AccessError;
use promotion_store::package::PackageRecord;

use crate::definitions::Built;
use crate::error::{PackageError, Result};
use crate::state::{State, SERVICE_NAME};

/// The failure reason of an extraction cut short by a stop of the service.
pub const INTERRUPTED: &str = "interrupted: the package service stopped during extraction";

/// An audit event about `package`, in the package's organization.
pub fn event(actor: &Identity, package: &Package, action: &str) -> AuditEvent {
    let mut e = AuditEvent::new(SERVICE_NAME, actor, &package.source_environment, action, ("package", &package.id));
    e.organization = package.organization.clone();
    e
}

/// The package if it exists in the caller's organization; another organization's
/// package is indistinguishable from a missing one.
pub async fn load_visible(state: &State, caller: &Identity, id: &str) -> Result<Package> {
    state
        .store
        .package(id)
        .await?
        .filter(|p| p.organization == caller.organization)
        .ok_or_else(|| PackageError::NotFound(id.to_string()))
}

pub fn visible_environment(state: &State, caller: &Identity, env: &str) -> Result<Arc<EnvironmentInfo>> {
    state.directory.visible(caller, env).ok_or_else(|| PackageError::EnvironmentNotFound(env.to_string()))
}

/// The package's source environment, which a re-extraction reads from.
pub fn source_environment(state: &State, package: &Package) -> Result<Arc<EnvironmentInfo>> {
    state
        .directory
        .get(&package.source_environment)
        .filter(|e| e.organization == package.organization)
        .ok_or_else(|| PackageError::EnvironmentNotFound(package.source_environment.clone()))
}

/// The caller holds `p` on `env`, or the denial is audited and returned.
pub async fn require(state: &State, caller: &Identity, env: &str, p: Permission) -> Result<()> {
    if caller.allows(p, env) {
        return Ok(());
    }
    let denial = AccessError::PermissionDenied { permission: p, environment: env.to_string() };
    state.audit_denied(caller, &denial).await;
    Err(denial.into())
}

pub fn check_etag(package: &Package, etag: &str) -> Result<()> {
    if etag.is_empty() || etag == package.etag() {
        Ok(())
    } else {
        Err(PackageError::EtagMismatch { id: package.id.clone(), given: etag.to_string() })
    }
}

pub fn check_transition(from: Status, to: Status) -> Result<()> {
    if from.can_become(to) {
        Ok(())
    } else {
        Err(PackageError::InvalidTransition { from, to })
    }
}

/// Writes the definition as the package's next version and makes it current.
pub fn store_definition(records: &mut Vec<PackageRecord>, package: &mut Package, built: Built) {
    let version = package.next_version();
    let header = built.header(&package.id, version, &package.organization, &package.source_environment);
    package.version = version;
    package.has_definition = true;
    package.digest = built.digest;
    package.entity_counts = built.entity_counts;
    package.metadata = built.metadata;
    package.status = Status::Building;
    package.failure_reason.clear();
    package.extraction = None;
    records.push(PackageRecord::Definition { header: Box::new(header), chunks: built.chunks });
}
