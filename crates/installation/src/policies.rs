//! Environment policies: reading one (its viewers) and changing it at run time (admins),
//! with an etag so that two admins never overwrite each other unseen; every change is
//! audited with the values before and after. Decisions read the policy under the
//! environment's lock, so a change applies to every decision after it.
use chrono::Utc;
use serde::Serialize;

use promotion_core::audit::AuditEvent;
use promotion_core::identity::{Identity, Permission};
use promotion_core::policy::{EnvironmentPolicy, Freeze, Window};
use promotion_core::Invalid;
use promotion_store::installation::{EnvWrite, Record};
use promotion_store::StoreError;

use crate::error::InstallError;
use crate::idempotency::{first, RequestUse};
use crate::refusal::Refusal;
use crate::state::{State, SERVICE_NAME};

#[derive(Debug)]
pub enum PolicyError {
    Refused(Refusal),
    Invalid(Invalid),
    /// The policy changed since the caller read it.
    EtagMismatch {
        environment: String,
    },
    /// The request id was used for another call.
    Install(InstallError),
    Store(StoreError),
}

impl From<Refusal> for PolicyError {
    fn from(r: Refusal) -> Self {
        PolicyError::Refused(r)
    }
}

impl From<StoreError> for PolicyError {
    fn from(e: StoreError) -> Self {
        PolicyError::Store(e)
    }
}

impl From<InstallError> for PolicyError {
    fn from(e: InstallError) -> Self {
        PolicyError::Install(e)
    }
}

/// The policy in force for `env`: the stored one, else the defaults.
pub async fn current(state: &State, env: &str) -> Result<EnvironmentPolicy, StoreError> {
    Ok(state.store.policy(env).await?.unwrap_or_else(|| EnvironmentPolicy::defaults(env)))
}

/// The policy of a hosted environment the caller may read.
pub async fn get(state: &State, caller: &Identity, env: &str) -> Result<EnvironmentPolicy, PolicyError> {
    state.authorize(caller, env, Permission::EnvironmentRead).await?;
    Ok(current(state, env).await?)
}

/// What an update changes: the fields given, checked against the etag read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyChange {
    pub required_approvals: Option<u32>,
    pub allow_self_approval: Option<bool>,
    pub windows: Option<Vec<Window>>,
    pub freezes: Option<Vec<Freeze>>,
    /// Empty: no check.
    pub etag: String,
    #[serde(skip)]
    pub request_id: String,
}

impl PolicyChange {
    fn applied_to(&self, mut policy: EnvironmentPolicy) -> EnvironmentPolicy {
        if let Some(n) = self.required_approvals {
            policy.required_approvals = n;
        }
        if let Some(allow) = self.allow_self_approval {
            policy.allow_self_approval = allow;
        }
        if let Some(windows) = &self.windows {
            policy.windows = windows.clone();
        }
        if let Some(freezes) = &self.freezes {
            policy.freezes = freezes.clone();
        }
        policy
    }
}

/// Changes the policy of `env` under its lock; a replay of the same request id answers
/// the policy as it now is and writes nothing.
pub async fn update(
    state: &State,
    caller: &Identity,
    env: &str,
    change: PolicyChange,
) -> Result<EnvironmentPolicy, PolicyError> {
    state.authorize(caller, env, Permission::PolicyWrite).await?;
    let use_ = RequestUse::new(caller, &change.request_id, "UpdateEnvironmentPolicy", &(env, &change));
    let tx = state.store.lock(env).await?;
    if first(use_.as_ref(), state.store.as_ref()).await?.is_some() {
        drop(tx);
        return Ok(current(state, env).await?);
    }
    let before = current(state, env).await?;
    if !change.etag.is_empty() && change.etag != before.etag() {
        return Err(PolicyError::EtagMismatch { environment: env.to_string() });
    }
    let mut after = change.applied_to(before.clone());
    after.validate().map_err(PolicyError::Invalid)?;
    after.revision = before.revision + 1;
    after.update_time = Some(Utc::now());
    after.updated_by = caller.subject.clone();
    let mut write = EnvWrite::default();
    if let Some(u) = &use_ {
        write.record(u.record(env));
    }
    write.record(Record::audit(updated_event(caller, &before, &after, &change.request_id)));
    write.record(Record::Policy(Box::new(after.clone())));
    tx.commit(write).await?;
    tracing::info!(environment = %env, required_approvals = after.required_approvals, allow_self_approval = after.allow_self_approval, "environment policy updated");
    Ok(after)
}

fn updated_event(
    caller: &Identity,
    before: &EnvironmentPolicy,
    after: &EnvironmentPolicy,
    request_id: &str,
) -> AuditEvent {
    let values = |p: &EnvironmentPolicy| {
        serde_json::json!({
            "required_approvals": p.required_approvals,
            "allow_self_approval": p.allow_self_approval,
            "windows": p.windows,
            "freezes": p.freezes,
        })
    };
    AuditEvent::new(
        SERVICE_NAME,
        caller,
        &after.environment,
        "POLICY_UPDATED",
        ("environment_policy", &after.environment),
    )
    .request_id(request_id)
    .detail("before", values(before))
    .detail("after", values(after))
}

/// Refuses `action` (an install, accept or rollback) on `env` while its policy closes it,
/// unless an admin gives an override reason; a used override is audited with the reason.
/// Only admins may give one at all, open or closed, so that whether a call is refused does
/// not depend on the clock.
pub async fn check_window(
    state: &State,
    caller: &Identity,
    env: &str,
    action: &str,
    override_reason: &str,
) -> Result<(), InstallError> {
    let overriding = !override_reason.trim().is_empty();
    if overriding {
        state.require(caller, env, Permission::PolicyWrite).await.map_err(|e| InstallError::Refused(e.into()))?;
    }
    let Some(closed) = current(state, env).await?.closed_at(Utc::now()) else { return Ok(()) };
    if !overriding {
        return Err(InstallError::OutsideWindow {
            environment: env.to_string(),
            reason: closed.reason,
            opens: closed.opens,
        });
    }
    let event = AuditEvent::new(SERVICE_NAME, caller, env, "PROMOTION_WINDOW_OVERRIDDEN", ("environment_policy", env))
        .detail("action", action)
        .detail("override_reason", override_reason)
        .detail("closed", closed.reason);
    state.store.append(vec![Record::audit(event)]).await?;
    tracing::info!(environment = %env, action, reason = %override_reason, "promotion window overridden");
    Ok(())
}

/// Stores `policy` for its environment unless one is stored already (development mode's
/// demo), audited as the `seeder`'s.
pub async fn seed(state: &State, seeder: &Identity, policy: EnvironmentPolicy) -> Result<(), PolicyError> {
    policy.validate().map_err(PolicyError::Invalid)?;
    let tx = state.store.lock(&policy.environment).await?;
    if state.store.policy(&policy.environment).await?.is_some() {
        return Ok(());
    }
    let defaults = EnvironmentPolicy::defaults(&policy.environment);
    let seeded =
        EnvironmentPolicy { revision: 1, update_time: Some(Utc::now()), updated_by: seeder.subject.clone(), ..policy };
    let mut write = EnvWrite::default();
    write.record(Record::audit(updated_event(seeder, &defaults, &seeded, "")));
    write.record(Record::Policy(Box::new(seeded)));
    tx.commit(write).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{state_on, stores};
    use promotion_core::identity::{Binding, Role};

    fn admin() -> Identity {
        Identity {
            subject: "admin".into(),
            organization: "acme".into(),
            bindings: vec![Binding { role: Role::Admin, environment: "*".into() }],
            expires_at: 0,
        }
    }

    fn deployer() -> Identity {
        Identity {
            subject: "bob".into(),
            organization: "acme".into(),
            bindings: vec![Binding { role: Role::Deployer, environment: "qa".into() }],
            expires_at: 0,
        }
    }

    #[tokio::test]
    async fn an_admin_changes_the_policy_with_the_etag_read_and_a_stale_etag_is_refused() {
        for fixture in stores() {
            let state = state_on(&fixture);
            let read = get(&state, &deployer(), "qa").await.unwrap();
            assert_eq!((read.required_approvals, read.allow_self_approval), (1, false));
            let change = PolicyChange { required_approvals: Some(2), etag: read.etag(), ..Default::default() };
            let updated = update(&state, &admin(), "qa", change.clone()).await.unwrap();
            assert_eq!((updated.required_approvals, updated.updated_by.as_str()), (2, "admin"));
            assert_eq!(get(&state, &deployer(), "qa").await.unwrap(), updated);
            let stale = update(&state, &admin(), "qa", change).await;
            assert!(matches!(stale, Err(PolicyError::EtagMismatch { .. })), "{stale:?}");
        }
    }

    #[tokio::test]
    async fn only_admins_change_it_and_nonsense_is_refused() {
        for fixture in stores() {
            let state = state_on(&fixture);
            let change = PolicyChange { required_approvals: Some(2), ..Default::default() };
            let denied = update(&state, &deployer(), "qa", change).await;
            assert!(matches!(denied, Err(PolicyError::Refused(_))), "{denied:?}");
            let zero = PolicyChange { required_approvals: Some(0), ..Default::default() };
            let invalid = update(&state, &admin(), "qa", zero).await;
            assert!(matches!(invalid, Err(PolicyError::Invalid(_))), "{invalid:?}");
            assert_eq!(current(&state, "qa").await.unwrap().revision, 0, "nothing was stored");
        }
    }
}
