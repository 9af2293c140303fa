//! The installation service's tables: hosted environments' objects and state, translation
//! history, pre-runs, installations with their outcomes and undo data, promotion requests,
//! environment policies, the installation-count outbox, idempotency records and the audit
//! trail. Reads go
//! through the table traits; every write is one atomic, durable [`EnvWrite`] committed
//! under the environment's lock, or records appended on their own.
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use promotion_core::audit::AuditEvent;
use promotion_core::cursor::{Page, PageRequest};
use promotion_core::notify::{Delivery, Subscription};
use promotion_core::objects::{ConfigObject, ObjectKey};
use promotion_core::policy::EnvironmentPolicy;
use promotion_core::promotion::PromotionRecord;
use promotion_core::records::{HistoryEntry, InstallationRecord, OutboxEntry, PreRunRecord, Undo};

use crate::error::Result;
use crate::shared::{AuditTable, IdempotencyRecord, IdempotencyTable, KeyTable};

/// Revision and per-type counts of one environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvState {
    pub revision: u64,
    pub counts: BTreeMap<String, i64>,
}

/// ListObjects filters: objects of one type, optionally by name prefix and owner.
#[derive(Debug, Clone, Default)]
pub struct ObjectQuery {
    pub obj_code: String,
    pub name_prefix: String,
    pub parent_id: String,
}

/// A record written with (or without) an environment's objects.
#[derive(Debug, Clone)]
pub enum Record {
    /// Maps a source object onto its destination object (both directions).
    HistoryPut {
        env: String,
        entry: HistoryEntry,
    },
    HistoryRemove {
        env: String,
        entry: HistoryEntry,
    },
    /// A pre-run: header and every plan entry.
    PreRun(Box<PreRunRecord>),
    /// An installation's header; with `with_plan`, its plan entries and outcomes too; with
    /// `undo`, what a rollback needs.
    Installation {
        record: Box<InstallationRecord>,
        with_plan: bool,
        undo: Option<Box<Undo>>,
    },
    /// A promotion request; the store keeps its pending index in step with its status.
    Promotion(Box<PromotionRecord>),
    /// An environment's policy as it now is (replacing the one stored before).
    Policy(Box<EnvironmentPolicy>),
    Subscription(Box<Subscription>),
    SubscriptionRemoved {
        id: String,
    },
    /// A webhook delivery as it now is; the store keeps its pending index in step.
    Delivery(Box<Delivery>),
    Outbox(OutboxEntry),
    OutboxDelivered {
        installation_id: String,
    },
    Idempotency(IdempotencyRecord),
    Audit(Box<AuditEvent>),
}

impl Record {
    pub fn audit(event: AuditEvent) -> Record {
        Record::Audit(Box::new(event))
    }
}

/// One atomic write into an environment.
#[derive(Debug, Default)]
pub struct EnvWrite {
    /// Full new versions; the store stamps the new revision and write time.
    pub upserts: Vec<ConfigObject>,
    pub deletes: Vec<ObjectKey>,
    /// Earlier versions put back exactly as they were (rollback).
    pub restores: Vec<ConfigObject>,
    pub records: Vec<Record>,
}

impl EnvWrite {
    pub fn touches_objects(&self) -> bool {
        !self.upserts.is_empty() || !self.deletes.is_empty() || !self.restores.is_empty()
    }

    pub fn record(&mut self, r: Record) {
        self.records.push(r);
    }
}

/// What a commit did: the environment's revision after it, and the stored upserts.
#[derive(Debug, Default)]
pub struct Committed {
    pub revision: u64,
    pub objects: Vec<ConfigObject>,
}

#[async_trait]
pub trait ObjectTable: Send + Sync {
    async fn env_state(&self, env: &str) -> Result<EnvState>;
    async fn get(&self, env: &str, key: &ObjectKey) -> Result<Option<ConfigObject>>;
    /// The object with this id, whatever its type.
    async fn get_by_id(&self, env: &str, id: &str) -> Result<Option<ConfigObject>>;
    /// Ids of the objects of `obj_code` named exactly `name`.
    async fn ids_named(&self, env: &str, obj_code: &str, name: &str) -> Result<Vec<String>>;
    /// Owned children of `parent_id`.
    async fn children(&self, env: &str, parent_id: &str) -> Result<Vec<ObjectKey>>;
    /// Objects holding a reference to `target_id`.
    async fn referrers(&self, env: &str, target_id: &str) -> Result<Vec<ObjectKey>>;
    /// One page of a type's objects in id order.
    async fn list_objects(&self, env: &str, query: &ObjectQuery, page: &PageRequest) -> Result<Page<ConfigObject>>;
}

#[async_trait]
pub trait HistoryTable: Send + Sync {
    async fn history(&self, dest: &str, source_env: &str, source_id: &str) -> Result<Option<HistoryEntry>>;
    /// The history entry whose target is `target_id`, if a promotion mapped one onto it,
    /// without its `installed` image (`history` has it).
    async fn history_by_target(&self, dest: &str, target_id: &str) -> Result<Option<HistoryEntry>>;
    /// One page of `dest`'s history entries, images included, in (source environment,
    /// source id) order.
    async fn list_history(&self, dest: &str, page: &PageRequest) -> Result<Page<HistoryEntry>>;
}

#[async_trait]
pub trait PreRunTable: Send + Sync {
    async fn pre_run(&self, id: &str) -> Result<Option<PreRunRecord>>;
}

/// ListInstallations filters.
#[derive(Debug, Clone, Default)]
pub struct InstallationFilter {
    pub organization: String,
    pub package_id: String,
    pub destination: String,
}

/// Which records of a listing the caller may see.
pub type Visible<'a, T> = &'a (dyn Fn(&T) -> bool + Send + Sync);

#[async_trait]
pub trait InstallationTable: Send + Sync {
    /// The header, with the plan and per-entry outcomes when `with_plan`.
    async fn installation(&self, id: &str, with_plan: bool) -> Result<Option<InstallationRecord>>;
    /// What a rollback of the installation needs.
    async fn undo(&self, id: &str) -> Result<Undo>;
    /// Headers matching `filter` that `visible` keeps, newest first.
    async fn list_installations(
        &self,
        filter: &InstallationFilter,
        visible: Visible<'_, InstallationRecord>,
        page: &PageRequest,
    ) -> Result<Page<InstallationRecord>>;
    /// Headers still INSTALLING or ROLLING_BACK (start-up recovery).
    async fn unfinished_installations(&self) -> Result<Vec<InstallationRecord>>;
    /// Whether `package_id` was ever installed into `destination` successfully.
    async fn installed_before(&self, package_id: &str, destination: &str) -> Result<bool>;
}

#[async_trait]
pub trait PromotionTable: Send + Sync {
    async fn promotion(&self, id: &str) -> Result<Option<PromotionRecord>>;
    /// The id of the pending request for this package and target, if any.
    async fn pending_promotion(&self, target: &str, package_id: &str) -> Result<Option<String>>;
    /// Requests of `organization` that `visible` keeps, newest first.
    async fn list_promotions(
        &self,
        organization: &str,
        visible: Visible<'_, PromotionRecord>,
        page: &PageRequest,
    ) -> Result<Page<PromotionRecord>>;
}

#[async_trait]
pub trait PolicyTable: Send + Sync {
    /// The policy last stored for `env`; None if nobody ever set one (the defaults apply).
    async fn policy(&self, env: &str) -> Result<Option<EnvironmentPolicy>>;
}

#[async_trait]
pub trait NotificationTable: Send + Sync {
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>>;
    /// The subscriptions of `organization`, oldest first.
    async fn subscriptions(&self, organization: &str) -> Result<Vec<Subscription>>;
    /// Pending deliveries whose next attempt is due at `now`, oldest first, at most `limit`.
    async fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>>;
    /// Deliveries of `organization` that `visible` keeps, newest first.
    async fn list_deliveries(
        &self,
        organization: &str,
        visible: Visible<'_, Delivery>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>>;
}

#[async_trait]
pub trait OutboxTable: Send + Sync {
    /// Installation counts not yet delivered, oldest first.
    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>>;
}

/// Held while reading and then writing one environment: writers of an environment are
/// serialised by the store (across processes where the backend allows).
#[async_trait]
pub trait EnvTransaction: Send + Sync {
    fn env(&self) -> &str;
    /// Applies `write` atomically and durably (flushed or committed before returning),
    /// then releases the lock.
    async fn commit(self: Box<Self>, write: EnvWrite) -> Result<Committed>;
}

#[async_trait]
pub trait InstallationStore:
    ObjectTable
    + HistoryTable
    + PreRunTable
    + InstallationTable
    + PromotionTable
    + PolicyTable
    + NotificationTable
    + OutboxTable
    + IdempotencyTable
    + AuditTable
    + KeyTable
{
    /// Takes the write lock of `env`; reads made while holding it see every earlier write
    /// and no concurrent one.
    async fn lock(&self, env: &str) -> Result<Box<dyn EnvTransaction>>;
    /// Writes records that change no object, atomically and durably.
    async fn append(&self, records: Vec<Record>) -> Result<()>;
    async fn flush(&self) -> Result<()>;
    fn size_on_disk(&self) -> u64;
}
