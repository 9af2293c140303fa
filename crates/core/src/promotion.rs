//! Promotion requests (seed 000) as stored: who asked for which package to go where, and
//! how it was decided.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::InstallationStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PromotionStatus {
    ToBeValidated,
    Accepted,
    Rejected,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromotionRecord {
    pub id: String,
    pub organization: String,
    pub package_id: String,
    pub package_version: i64,
    pub package_name: String,
    pub source_environment: String,
    pub target_environment: String,
    pub status: PromotionStatus,
    pub comment: String,
    pub requested_by: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub is_update: bool,
    pub decided_by: String,
    pub decision_comment: String,
    pub installation_id: String,
    pub last_error: String,
    /// The plan accepting installs (the requester's, the service's at creation, or one an
    /// approver attached). Empty only on requests stored before requests carried one.
    #[serde(default)]
    pub pre_run_id: String,
    /// Once accepted: Installed, then RolledBack if the installation is rolled back.
    #[serde(default)]
    pub installation_status: Option<InstallationStatus>,
    /// The distinct approvers' accepts so far, oldest first.
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// How many the target's policy asked for when the request was last read or decided
    /// on; 0 on requests stored before policies (they needed one).
    #[serde(default)]
    pub required_approvals: u32,
}

/// One approver's accept of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: String,
    pub time: DateTime<Utc>,
    pub comment: String,
}

impl PromotionRecord {
    /// Whether `subject` has approved the request already.
    pub fn approved_by(&self, subject: &str) -> bool {
        self.approvals.iter().any(|a| a.approver == subject)
    }
}
