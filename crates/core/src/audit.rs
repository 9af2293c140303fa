//! Audit events: the append-only record of every mutating and every denied call, stored
//! by each service in the same atomic write as the change it records.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::code::Code;
use crate::directory::Directory;
use crate::identity::{Identity, Permission};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub organization: String,
    pub environment: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub outcome: String,
    pub request_id: String,
    #[serde(default)]
    pub details: Map<String, Value>,
    pub service: String,
}

impl AuditEvent {
    pub fn new(service: &str, caller: &Identity, environment: &str, action: &str, resource: (&str, &str)) -> Self {
        AuditEvent {
            id: uuid::Uuid::now_v7().to_string(),
            time: Utc::now(),
            actor: caller.subject.clone(),
            organization: caller.organization.clone(),
            environment: environment.into(),
            action: action.into(),
            resource_type: resource.0.into(),
            resource_id: resource.1.into(),
            outcome: "OK".into(),
            request_id: String::new(),
            details: Map::new(),
            service: service.into(),
        }
    }

    /// The ACCESS_DENIED event of a refused call (none for a resource that does not exist
    /// for the caller, which is not a denial).
    pub fn access_denied(service: &str, caller: &Identity, denial: &crate::AccessError) -> Option<AuditEvent> {
        let crate::AccessError::PermissionDenied { permission, environment } = denial else { return None };
        let event = AuditEvent::new(service, caller, environment, "ACCESS_DENIED", ("environment", environment))
            .outcome(Code::PermissionDenied)
            .detail("permission", permission.as_str());
        Some(event)
    }

    pub fn outcome(mut self, code: Code) -> Self {
        self.outcome = code.as_str().into();
        self
    }

    pub fn request_id(mut self, id: &str) -> Self {
        self.request_id = id.into();
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// Filters of ListAuditEvents.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub organization: String,
    pub environment: String,
    pub action: String,
    pub actor: String,
    pub resource_type: String,
    pub resource_id: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl AuditFilter {
    pub fn matches(&self, e: &AuditEvent) -> bool {
        let eq = |want: &str, have: &str| want.is_empty() || want == have;
        e.organization == self.organization
            && eq(&self.environment, &e.environment)
            && eq(&self.action, &e.action)
            && eq(&self.actor, &e.actor)
            && eq(&self.resource_type, &e.resource_type)
            && eq(&self.resource_id, &e.resource_id)
            && self.start.is_none_or(|s| e.time >= s)
            && self.end.is_none_or(|end| e.time < end)
    }
}

/// Where a ListAuditEvents call may read: audit.read on the named environment, or on
/// every environment of the organization when none is named.
pub fn authorize_read(caller: &Identity, environment: &str, directory: &Directory) -> Result<(), crate::AccessError> {
    use crate::AccessError;
    use Permission::AuditRead;
    if environment.is_empty() {
        return if caller.allows_everywhere(AuditRead) {
            Ok(())
        } else {
            Err(AccessError::PermissionDenied { permission: AuditRead, environment: "*".into() })
        };
    }
    if directory.visible(caller, environment).is_none() {
        return Err(AccessError::EnvironmentNotFound(environment.into()));
    }
    if caller.allows(AuditRead, environment) {
        Ok(())
    } else {
        Err(AccessError::PermissionDenied { permission: AuditRead, environment: environment.into() })
    }
}
