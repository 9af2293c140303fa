//! Identity: roles bound per environment, the permissions they grant, and who a
//! verified token says is calling.
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::trace::TraceContext;

/// Roles bound per environment (or "*").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Publisher,
    Deployer,
    Editor,
    Admin,
    /// Installation services' own credentials: only RecordInstallation.
    Internal,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Publisher => "publisher",
            Role::Deployer => "deployer",
            Role::Editor => "editor",
            Role::Admin => "admin",
            Role::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        serde_json::from_value(serde_json::Value::String(s.into())).ok()
    }

    /// What the role grants on the environments it is bound to.
    pub fn grants(self, p: Permission) -> bool {
        use Permission::*;
        let viewer = matches!(p, PackageRead | EnvironmentRead | InstallationRead);
        match self {
            Role::Viewer => viewer,
            Role::Publisher => viewer || matches!(p, PackageWrite | PromotionRequest),
            Role::Deployer => viewer || matches!(p, InstallationWrite | PromotionApprove),
            Role::Editor => viewer || p == EnvironmentWrite,
            Role::Admin => p != RecordInstallation,
            Role::Internal => p == RecordInstallation,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    PackageRead,
    PackageWrite,
    EnvironmentRead,
    EnvironmentWrite,
    InstallationRead,
    InstallationWrite,
    PromotionRequest,
    PromotionApprove,
    AuditRead,
    /// Changing an environment's policy (approvals, windows, freezes): admins only.
    PolicyWrite,
    /// Managing webhook subscriptions and reading their deliveries: admins only.
    NotificationManage,
    RecordInstallation,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        use Permission::*;
        match self {
            PackageRead => "package.read",
            PackageWrite => "package.write",
            EnvironmentRead => "environment.read",
            EnvironmentWrite => "environment.write",
            InstallationRead => "installation.read",
            InstallationWrite => "installation.write",
            PromotionRequest => "promotion.request",
            PromotionApprove => "promotion.approve",
            AuditRead => "audit.read",
            PolicyWrite => "policy.write",
            NotificationManage => "notification.manage",
            RecordInstallation => "installation.record",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub role: Role,
    pub environment: String,
}

/// Who is calling: what a verified token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub subject: String,
    pub organization: String,
    pub bindings: Vec<Binding>,
    pub expires_at: i64,
}

impl Identity {
    /// Whether the caller holds `p` on environment `env` of its own organization. The
    /// caller must already have checked that `env` belongs to that organization.
    pub fn allows(&self, p: Permission, env: &str) -> bool {
        // Packages are readable organization-wide: any binding grants package.read.
        if p == Permission::PackageRead && self.bindings.iter().any(|b| b.role != Role::Internal) {
            return true;
        }
        self.bindings.iter().any(|b| (b.environment == "*" || b.environment == env) && b.role.grants(p))
    }

    /// Whether the caller holds `p` on every environment of the organization.
    pub fn allows_everywhere(&self, p: Permission) -> bool {
        self.bindings.iter().any(|b| b.environment == "*" && b.role.grants(p))
    }

    pub fn expire_time(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.expires_at, 0).single().unwrap_or_default()
    }
}

/// What a service forwards when it calls the other on the caller's behalf: the caller's
/// bearer token as received, so that permissions hold end to end, and the trace the call
/// belongs to, so that the other service's logs continue it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    token: String,
    trace: Option<TraceContext>,
}

impl Credentials {
    pub fn bearer(token: impl Into<String>) -> Self {
        Credentials { token: token.into(), trace: None }
    }

    /// The same credentials, for calls made as part of `trace`.
    pub fn in_trace(self, trace: TraceContext) -> Self {
        Credentials { trace: Some(trace), ..self }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn trace(&self) -> Option<&TraceContext> {
        self.trace.as_ref()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(exp: i64) -> Identity {
        Identity {
            subject: "alice".into(),
            organization: "acme".into(),
            bindings: vec![Binding { role: Role::Publisher, environment: "dev".into() }],
            expires_at: exp,
        }
    }

    #[test]
    fn roles_grant_the_brief_permissions() {
        use Permission::*;
        let id = alice(0);
        assert!(id.allows(PackageWrite, "dev"));
        assert!(!id.allows(PackageWrite, "qa"));
        assert!(id.allows(PackageRead, "qa"), "packages are readable organization-wide");
        assert!(!id.allows(EnvironmentWrite, "dev"));
        assert!(Role::Deployer.grants(PromotionApprove) && !Role::Deployer.grants(EnvironmentWrite));
        assert!(Role::Admin.grants(AuditRead) && !Role::Viewer.grants(AuditRead));
        let others = [Role::Viewer, Role::Publisher, Role::Deployer, Role::Editor, Role::Internal];
        assert!(Role::Admin.grants(PolicyWrite) && others.iter().all(|r| !r.grants(PolicyWrite)), "policies: admins");
        assert!(Role::Internal.grants(RecordInstallation) && !Role::Internal.grants(PackageRead));
    }
}
