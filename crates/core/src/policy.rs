//! The governance policy of one environment: how many distinct approvers a promotion into
//! it needs and whether a requester may approve their own request. Admins change it at
//! run time; an environment nobody configured has the defaults (one approval, no
//! self-approval).
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Invalid;

/// More distinct approvers than this is a typo, not a policy.
pub const MAX_REQUIRED_APPROVALS: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentPolicy {
    pub environment: String,
    /// Distinct approvers whose accepts a promotion request needs before it installs.
    pub required_approvals: u32,
    /// Whether the requester may be one of them (whatever roles they hold).
    pub allow_self_approval: bool,
    /// Incremented by every update; 0 for the defaults nobody changed. The etag derives
    /// from it.
    pub revision: u64,
    pub update_time: Option<DateTime<Utc>>,
    pub updated_by: String,
}

impl EnvironmentPolicy {
    /// The policy of an environment nobody configured.
    pub fn defaults(environment: &str) -> Self {
        EnvironmentPolicy {
            environment: environment.to_string(),
            required_approvals: 1,
            allow_self_approval: false,
            revision: 0,
            update_time: None,
            updated_by: String::new(),
        }
    }

    /// Opaque; changes with every update.
    pub fn etag(&self) -> String {
        let digest = Sha256::digest(format!("policy/{}/{}", self.environment, self.revision));
        hex::encode(&digest[..10])
    }

    /// The rules every stored policy obeys.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=MAX_REQUIRED_APPROVALS).contains(&self.required_approvals) {
            return Err(Invalid::new(
                "INVALID_POLICY",
                "required_approvals",
                format!("required_approvals must be between 1 and {MAX_REQUIRED_APPROVALS}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_one_approval_and_forbid_self_approval() {
        let p = EnvironmentPolicy::defaults("qa");
        assert_eq!((p.required_approvals, p.allow_self_approval, p.revision), (1, false, 0));
        assert!(p.validate().is_ok());
    }

    #[test]
    fn the_etag_changes_with_the_revision_and_the_environment() {
        let mut p = EnvironmentPolicy::defaults("qa");
        let first = p.etag();
        p.revision += 1;
        assert_ne!(p.etag(), first);
        assert_ne!(EnvironmentPolicy::defaults("prod").etag(), first);
    }

    #[test]
    fn required_approvals_is_bounded() {
        for (n, ok) in [(0, false), (1, true), (MAX_REQUIRED_APPROVALS, true), (MAX_REQUIRED_APPROVALS + 1, false)] {
            let p = EnvironmentPolicy { required_approvals: n, ..EnvironmentPolicy::defaults("qa") };
            assert_eq!(p.validate().is_ok(), ok, "{n}");
        }
    }
}
