//! The installation store on an ordered key-value engine (sled on disk, memory in tests).
//! Everything lives in one keyspace so that one batch covers an object write, its
//! indexes, the environment state and the records written with it.
//!
//! Keys (`\0` separates parts; ids and codes never contain it):
//! - `E{env}` environment state (revision, counts)
//! - `O{env}\0{code}\0{id}` object; `D{env}\0{id}` id -> code
//! - `N{env}\0{code}\0{name}\0{id}` names; `C{env}\0{parent}\0{code}\0{id}` children
//! - `R{env}\0{target}\0{code}\0{id}` referrers
//! - `Xhist/{dest}\0{source env}\0{source id}`, `Xhistrev/{dest}\0{target id}` history
//! - `Xprerun/{id}`, `Xinst/{id}` headers; `Xplan/{kind}/{id}/x` externals and
//!   `Xplan/{kind}/{id}/e/{n:08}` entry chunks; `Xundo/{id}/o|h/{n:08}` undo chunks
//! - `Xinstpkg/{package}\0{id}`, `Xinstdest/{dest}\0{id}`, `Xinstok/{package}\0{dest}`
//!   installation indexes
//! - `Xpromo/{id}`, `Xpromopending/{target}\0{package}` -> id
//! - `Xpolicy/{env}` environment policy
//! - `Xsub/{id}` webhook subscriptions; `Xdlv/{id}` deliveries, `Xdlvpending/{id}` the
//!   pending ones
//! - `Xoutbox/{installation id}`, `Xreq/{org}\0{subject}\0{request id}`, `Xaudit/{id}`
//! - `J...` the journal of a large commit in progress (see `journal`)
//!
//! Installation, promotion and audit ids are UUID v7: key order is creation order.
use async_trait::async_trait;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::DateTime;
use promotion_core::audit::{AuditEvent, AuditFilter};
use promotion_core::cursor::{Page, PageRequest, Position};
use promotion_core::notify::{Delivery, DeliveryStatus, Subscription};
use promotion_core::objects::{ConfigObject, ObjectKey};
use promotion_core::plan::{Entry, Plan};
use promotion_core::policy::EnvironmentPolicy;
use promotion_core::promotion::{PromotionRecord, PromotionStatus};
use promotion_core::records::{
    EntryStatus, HistoryEntry, InstallationRecord, InstallationStatus, OutboxEntry, PreRunRecord, Undo, UndoObject,
};

use crate::codec::{decode, encode};
use crate::engine::{prefix_end, scan_prefix, Engine, Held, Op, Pairs};
use crate::error::{Result, StoreError};
use crate::installation::*;
use crate::locks::KeyedLocks;
use crate::shared::{AuditTable, IdempotencyRecord, IdempotencyTable, KeyTable, RequestKey};

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 1 {
            out.push(0);
        }
        out.extend_from_slice(p);
    }
    out
}

fn state_key(env: &str) -> Vec<u8> {
    key(&[b"E", env.as_bytes()])
}

fn object_key(env: &str, code: &str, id: &str) -> Vec<u8> {
    key(&[b"O", env.as_bytes(), code.as_bytes(), id.as_bytes()])
}

fn type_prefix(env: &str, code: &str) -> Vec<u8> {
    key(&[b"O", env.as_bytes(), code.as_bytes(), b""])
}

fn id_key(env: &str, id: &str) -> Vec<u8> {
    key(&[b"D", env.as_bytes(), id.as_bytes()])
}

fn name_key(env: &str, o: &ConfigObject) -> Vec<u8> {
    key(&[b"N", env.as_bytes(), o.obj_code.as_bytes(), o.name.as_bytes(), o.id.as_bytes()])
}

fn child_key(env: &str, parent: &str, o: &ConfigObject) -> Vec<u8> {
    key(&[b"C", env.as_bytes(), parent.as_bytes(), o.obj_code.as_bytes(), o.id.as_bytes()])
}

fn referrer_key(env: &str, target: &str, o: &ConfigObject) -> Vec<u8> {
    key(&[b"R", env.as_bytes(), target.as_bytes(), o.obj_code.as_bytes(), o.id.as_bytes()])
}

/// The index entries an object version owns.
fn index_keys(env: &str, o: &ConfigObject) -> Vec<Vec<u8>> {
    let mut keys = vec![id_key(env, &o.id), name_key(env, o)];
    if let Some(p) = &o.parent {
        keys.push(child_key(env, &p.id, o));
    }
    for r in &o.references {
        keys.push(referrer_key(env, &r.id, o));
    }
    keys
}

/// Splits the last two `\0`-separated parts (code, id) off an index key.
fn tail_key(k: &[u8]) -> Result<ObjectKey> {
    let mut parts = k.rsplit(|b| *b == 0);
    let mut next = || parts.next().and_then(|p| std::str::from_utf8(p).ok());
    match (next(), next()) {
        (Some(id), Some(code)) => Ok(ObjectKey::new(code, id)),
        _ => Err(StoreError::corrupt("an index key does not end with a type and an id")),
    }
}

fn rec(s: String) -> Vec<u8> {
    let mut k = b"X".to_vec();
    k.extend_from_slice(s.as_bytes());
    k
}

/// Where an oldest-first listing under `prefix` starts: right after the key its page
/// position names, or at the prefix.
fn resume_after(prefix: &[u8], page: &PageRequest) -> Result<Vec<u8>> {
    match &page.after {
        Some(p) if p.as_bytes().starts_with(prefix) => {
            let mut s = p.as_bytes().to_vec();
            s.push(0);
            Ok(s)
        }
        Some(_) => Err(StoreError::corrupt("page position does not belong to this listing")),
        None => Ok(prefix.to_vec()),
    }
}

fn history_key(dest: &str, source_env: &str, source_id: &str) -> Vec<u8> {
    rec(format!("hist/{dest}\0{source_env}\0{source_id}"))
}

fn history_rev_key(dest: &str, target_id: &str) -> Vec<u8> {
    rec(format!("histrev/{dest}\0{target_id}"))
}

fn pre_run_key(id: &str) -> Vec<u8> {
    rec(format!("prerun/{id}"))
}

fn installation_key(id: &str) -> Vec<u8> {
    rec(format!("inst/{id}"))
}

const INSTALLATION_PREFIX: &str = "inst/";
const PROMOTION_PREFIX: &str = "promo/";
const AUDIT_PREFIX: &str = "audit/";
const OUTBOX_PREFIX: &str = "outbox/";
const SUBSCRIPTION_PREFIX: &str = "sub/";
const DELIVERY_PREFIX: &str = "dlv/";
const PENDING_DELIVERY_PREFIX: &str = "dlvpending/";

fn promotion_key(id: &str) -> Vec<u8> {
    rec(format!("{PROMOTION_PREFIX}{id}"))
}

fn pending_key(target: &str, package_id: &str) -> Vec<u8> {
    rec(format!("promopending/{target}\0{package_id}"))
}

fn policy_key(env: &str) -> Vec<u8> {
    rec(format!("policy/{env}"))
}

fn request_key(k: &RequestKey) -> Vec<u8> {
    rec(format!("req/{}\0{}\0{}", k.organization, k.subject, k.request_id))
}

/// Plans and undo data are stored in records of [`CHUNK`] entries: one value per plan
/// would be rewritten whole, one record per entry multiplies the keys kept in memory.
const CHUNK: usize = 512;

fn plan_prefix(kind: &str, id: &str) -> String {
    format!("plan/{kind}/{id}/")
}

pub struct KvInstallationStore {
    engine: Arc<dyn Engine>,
    locks: Arc<KeyedLocks>,
    /// Readers of an environment share its view; a commit applied in several batches holds
    /// it exclusively, so nobody sees part of one.
    views: Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

impl KvInstallationStore {
    /// Opens the store on `engine`, first rolling back any commit a crash interrupted.
    pub fn open(engine: Arc<dyn Engine>) -> Result<KvInstallationStore> {
        let rolled_back = crate::journal::recover(engine.as_ref())?;
        if rolled_back > 0 {
            tracing::warn!(commits = rolled_back, "rolled back writes a crash interrupted");
        }
        Ok(KvInstallationStore { engine, locks: Arc::default(), views: Mutex::default() })
    }

    fn view(&self, env: &str) -> Arc<tokio::sync::RwLock<()>> {
        let mut views = self.views.lock().expect("view map is never poisoned");
        views.entry(env.to_string()).or_default().clone()
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>> {
        self.engine.get(k)?.map(|v| decode(&v)).transpose()
    }

    fn state_now(&self, env: &str) -> Result<EnvState> {
        Ok(self.get_json(&state_key(env))?.unwrap_or_default())
    }

    fn object_now(&self, env: &str, code: &str, id: &str) -> Result<Option<ConfigObject>> {
        self.get_json(&object_key(env, code, id))
    }

    fn index_scan(&self, prefix: Vec<u8>) -> Result<Vec<ObjectKey>> {
        scan_prefix(self.engine.as_ref(), &prefix, false).map(|item| tail_key(&item?.0)).collect()
    }

    fn load_plan(&self, kind: &str, id: &str) -> Result<(Plan, Vec<EntryStatus>)> {
        let prefix = plan_prefix(kind, id);
        let externals = self.get_json(&rec(format!("{prefix}x")))?.unwrap_or_default();
        let mut plan = Plan { externals, ..Default::default() };
        let mut statuses = Vec::new();
        for item in scan_prefix(self.engine.as_ref(), &rec(format!("{prefix}e/")), false) {
            let chunk: Vec<(Entry, Option<EntryStatus>)> = decode(&item?.1)?;
            for (entry, status) in chunk {
                plan.entries.push(entry);
                statuses.extend(status);
            }
        }
        Ok((plan, statuses))
    }

    /// Newest-first pairs under `prefix`, strictly before the page's position.
    fn newest_first(&self, prefix: &str, page: &PageRequest) -> Result<Pairs<'_>> {
        let start = rec(prefix.to_string());
        let end = match &page.after {
            Some(p) if p.as_bytes().starts_with(&start) && p.as_bytes().len() > start.len() => p.as_bytes().to_vec(),
            Some(_) => return Err(StoreError::corrupt("page position does not belong to this listing")),
            None => prefix_end(&start).expect("record prefixes end below 0xff"),
        };
        Ok(self.engine.range(&start, Some(&end), true))
    }

    /// The stored versions of every object `write` touches, read at once (one round trip
    /// on a database rather than one per object).
    fn objects_before(&self, env: &str, write: &EnvWrite) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        let deleted = write.deletes.iter().map(|k| object_key(env, &k.obj_code, &k.id));
        let written = write.upserts.iter().chain(&write.restores).map(|o| object_key(env, &o.obj_code, &o.id));
        self.engine.get_many(deleted.chain(written).collect())
    }

    /// One page of the records under `prefix` that `keep` keeps, newest first.
    fn newest_page<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
        page: &PageRequest,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Page<T>> {
        let mut items = Vec::new();
        let mut last = None;
        for item in self.newest_first(prefix, page)? {
            let (k, v) = item?;
            let r: T = decode(&v)?;
            if !keep(&r) {
                continue;
            }
            if items.len() == page.size {
                return Ok(Page { items, next: last.map(Position::from_bytes) });
            }
            last = Some(k);
            items.push(r);
        }
        Ok(Page { items, next: None })
    }

    /// The ordered key operations of a write: index removals before insertions (an index
    /// entry both removed and re-added must survive), then the environment state, then
    /// records.
    fn prepare(&self, env: &str, write: EnvWrite) -> Result<(Vec<Op>, Committed)> {
        let now = Utc::now();
        let mut state = self.state_now(env)?;
        let mut removed: Vec<Vec<u8>> = Vec::new();
        let mut inserted: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let touches_objects = write.touches_objects();
        if touches_objects {
            state.revision += 1;
        }
        let mut count_delta: HashMap<String, i64> = HashMap::new();
        let before = self.objects_before(env, &write)?;
        let old_version = |code: &str, id: &str| -> Result<Option<ConfigObject>> {
            before.get(&object_key(env, code, id)).map(|v| decode(v)).transpose()
        };
        for k in &write.deletes {
            if let Some(old) = old_version(&k.obj_code, &k.id)? {
                removed.push(object_key(env, &old.obj_code, &old.id));
                removed.extend(index_keys(env, &old));
                *count_delta.entry(old.obj_code.clone()).or_default() -= 1;
            }
        }
        let mut written = Vec::with_capacity(write.upserts.len());
        let restores = write.restores.into_iter().map(|o| (o, false));
        for (mut o, stamp) in write.upserts.into_iter().map(|o| (o, true)).chain(restores) {
            match old_version(&o.obj_code, &o.id)? {
                Some(old) => removed.extend(index_keys(env, &old)),
                None => *count_delta.entry(o.obj_code.clone()).or_default() += 1,
            }
            if stamp {
                o.revision = state.revision;
                o.update_time = Some(now);
            }
            inserted.push((object_key(env, &o.obj_code, &o.id), encode(&o)));
            for ik in index_keys(env, &o) {
                let value = if ik[0] == b'D' { o.obj_code.as_bytes().to_vec() } else { Vec::new() };
                inserted.push((ik, value));
            }
            if stamp {
                written.push(o);
            }
        }
        for (code, delta) in count_delta {
            let c = state.counts.entry(code.clone()).or_default();
            *c += delta;
            if *c <= 0 {
                state.counts.remove(&code);
            }
        }
        let mut ops: Vec<Op> = Vec::with_capacity(removed.len() + inserted.len() + write.records.len() + 1);
        ops.extend(removed.into_iter().map(|k| (k, None)));
        ops.extend(inserted.into_iter().map(|(k, v)| (k, Some(v))));
        if touches_objects {
            ops.push((state_key(env), Some(encode(&state))));
        }
        for r in write.records {
            self.record_ops(r, &mut ops)?;
        }
        Ok((ops, Committed { revision: state.revision, objects: written }))
    }

    fn record_ops(&self, r: Record, ops: &mut Vec<Op>) -> Result<()> {
        match r {
            Record::HistoryPut { env, entry } => {
                ops.push((history_key(&env, &entry.source_environment, &entry.source_id), Some(encode(&entry))));
                // The target index finds the entry; only the entry itself keeps the image.
                ops.push((history_rev_key(&env, &entry.target_id), Some(encode(&entry.without_image()))));
            }
            Record::HistoryRemove { env, entry } => {
                ops.push((history_key(&env, &entry.source_environment, &entry.source_id), None));
                ops.push((history_rev_key(&env, &entry.target_id), None));
            }
            Record::PreRun(p) => {
                let mut p = *p;
                p.summarise();
                ops.push((pre_run_key(&p.id), Some(encode(&p))));
                plan_ops(ops, "prerun", &p.id, &p.plan, &[]);
            }
            Record::Installation { record, with_plan, undo } => {
                let mut r = *record;
                r.summarise();
                ops.push((installation_key(&r.id), Some(encode(&r))));
                ops.push((rec(format!("instpkg/{}\0{}", r.package_id, r.id)), Some(Vec::new())));
                ops.push((rec(format!("instdest/{}\0{}", r.destination, r.id)), Some(Vec::new())));
                if r.status == InstallationStatus::Installed {
                    ops.push((rec(format!("instok/{}\0{}", r.package_id, r.destination)), Some(Vec::new())));
                }
                if with_plan {
                    plan_ops(ops, "installation", &r.id, &r.plan, &r.statuses);
                }
                if let Some(undo) = undo {
                    for (n, objects) in undo.objects.chunks(CHUNK).enumerate() {
                        ops.push((rec(format!("undo/{}/o/{n:08}", r.id)), Some(encode(objects))));
                    }
                    for (n, history) in undo.history.chunks(CHUNK).enumerate() {
                        ops.push((rec(format!("undo/{}/h/{n:08}", r.id)), Some(encode(history))));
                    }
                }
            }
            Record::Promotion(p) => {
                let pending = pending_key(&p.target_environment, &p.package_id);
                if p.status == PromotionStatus::ToBeValidated {
                    ops.push((pending, Some(encode(&p.id))));
                } else if self.get_json::<String>(&pending)?.as_deref() == Some(p.id.as_str()) {
                    ops.push((pending, None));
                }
                ops.push((promotion_key(&p.id), Some(encode(&*p))));
            }
            Record::Policy(p) => ops.push((policy_key(&p.environment), Some(encode(&*p)))),
            Record::Subscription(s) => ops.push((rec(format!("{SUBSCRIPTION_PREFIX}{}", s.id)), Some(encode(&*s)))),
            Record::SubscriptionRemoved { id } => ops.push((rec(format!("{SUBSCRIPTION_PREFIX}{id}")), None)),
            Record::Delivery(d) => {
                let pending = (d.status == DeliveryStatus::Pending).then(Vec::new);
                ops.push((rec(format!("{PENDING_DELIVERY_PREFIX}{}", d.id)), pending));
                ops.push((rec(format!("{DELIVERY_PREFIX}{}", d.id)), Some(encode(&*d))));
            }
            Record::Outbox(e) => ops.push((rec(format!("{OUTBOX_PREFIX}{}", e.installation_id)), Some(encode(&e)))),
            Record::OutboxDelivered { installation_id } => {
                ops.push((rec(format!("{OUTBOX_PREFIX}{installation_id}")), None))
            }
            Record::Idempotency(i) => ops.push((request_key(&i.key), Some(encode(&i)))),
            Record::Audit(e) => ops.push((rec(format!("{AUDIT_PREFIX}{}", e.id)), Some(encode(&*e)))),
        }
        Ok(())
    }

    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        crate::journal::apply(self.engine.as_ref(), ops)
    }
}

fn plan_ops(ops: &mut Vec<Op>, kind: &str, id: &str, plan: &Plan, statuses: &[EntryStatus]) {
    let prefix = plan_prefix(kind, id);
    ops.push((rec(format!("{prefix}x")), Some(encode(&plan.externals))));
    for (n, entries) in plan.entries.chunks(CHUNK).enumerate() {
        let chunk: Vec<(&Entry, Option<&EntryStatus>)> =
            entries.iter().enumerate().map(|(i, e)| (e, statuses.get(n * CHUNK + i))).collect();
        ops.push((rec(format!("{prefix}e/{n:08}")), Some(encode(&chunk))));
    }
}

struct KvEnvTransaction {
    env: String,
    store: Arc<KvInstallationStore>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
    /// The environment's lock across processes, where the engine is shared.
    held: Option<Box<dyn Held>>,
}

#[async_trait]
impl EnvTransaction for KvEnvTransaction {
    fn env(&self) -> &str {
        &self.env
    }

    async fn commit(self: Box<Self>, write: EnvWrite) -> Result<Committed> {
        let store = self.store.clone();
        let env = self.env.clone();
        let objects = write.upserts.len() + write.restores.len() + write.deletes.len();
        let large = objects * 4 + write.records.len() > crate::journal::SINGLE_BATCH_MAX_OPS;
        // Readers wait rather than see part of a commit applied in several batches.
        let _view = if large { Some(store.view(&env).write_owned().await) } else { None };
        let held = self.held;
        tokio::task::spawn_blocking(move || {
            let (ops, committed) = store.prepare(&env, write)?;
            match held {
                Some(held) => held.apply(ops)?,
                None => store.apply(ops)?,
            }
            Ok(committed)
        })
        .await
        .map_err(|e| StoreError::engine(format!("commit task failed: {e}")))?
    }
}

/// Wraps a [`KvInstallationStore`] shared behind an `Arc`, so that transactions can hold it.
#[derive(Clone)]
pub struct SharedKvInstallationStore(pub Arc<KvInstallationStore>);

macro_rules! read_view {
    ($s:expr, $env:expr) => {
        let _view = $s.0.view($env).read_owned().await;
    };
}

#[async_trait]
impl ObjectTable for SharedKvInstallationStore {
    async fn env_state(&self, env: &str) -> Result<EnvState> {
        read_view!(self, env);
        self.0.state_now(env)
    }

    async fn get(&self, env: &str, k: &ObjectKey) -> Result<Option<ConfigObject>> {
        read_view!(self, env);
        self.0.object_now(env, &k.obj_code, &k.id)
    }

    async fn get_by_id(&self, env: &str, id: &str) -> Result<Option<ConfigObject>> {
        read_view!(self, env);
        match self.0.engine.get(&id_key(env, id))? {
            Some(code) => {
                let code = std::str::from_utf8(&code).map_err(|_| StoreError::corrupt("a type code is not UTF-8"))?;
                self.0.object_now(env, code, id)
            }
            None => Ok(None),
        }
    }

    async fn ids_named(&self, env: &str, obj_code: &str, name: &str) -> Result<Vec<String>> {
        read_view!(self, env);
        let prefix = key(&[b"N", env.as_bytes(), obj_code.as_bytes(), name.as_bytes(), b""]);
        Ok(self.0.index_scan(prefix)?.into_iter().map(|k| k.id).collect())
    }

    async fn children(&self, env: &str, parent_id: &str) -> Result<Vec<ObjectKey>> {
        read_view!(self, env);
        self.0.index_scan(key(&[b"C", env.as_bytes(), parent_id.as_bytes(), b""]))
    }

    async fn referrers(&self, env: &str, target_id: &str) -> Result<Vec<ObjectKey>> {
        read_view!(self, env);
        self.0.index_scan(key(&[b"R", env.as_bytes(), target_id.as_bytes(), b""]))
    }

    async fn list_objects(&self, env: &str, query: &ObjectQuery, page: &PageRequest) -> Result<Page<ConfigObject>> {
        read_view!(self, env);
        let prefix = type_prefix(env, &query.obj_code);
        let start = resume_after(&prefix, page)?;
        let end = prefix_end(&prefix);
        let mut items = Vec::new();
        for item in self.0.engine.range(&start, end.as_deref(), false) {
            let (k, v) = item?;
            let o: ConfigObject = decode(&v)?;
            let keep = o.name.starts_with(&query.name_prefix)
                && (query.parent_id.is_empty() || o.parent.as_ref().is_some_and(|p| p.id == query.parent_id));
            if keep {
                items.push(o);
                if items.len() == page.size {
                    return Ok(Page { items, next: Some(Position::from_bytes(k)) });
                }
            }
        }
        Ok(Page { items, next: None })
    }
}

#[async_trait]
impl HistoryTable for SharedKvInstallationStore {
    async fn history(&self, dest: &str, source_env: &str, source_id: &str) -> Result<Option<HistoryEntry>> {
        read_view!(self, dest);
        self.0.get_json(&history_key(dest, source_env, source_id))
    }

    async fn history_by_target(&self, dest: &str, target_id: &str) -> Result<Option<HistoryEntry>> {
        read_view!(self, dest);
        self.0.get_json(&history_rev_key(dest, target_id))
    }

    async fn list_history(&self, dest: &str, page: &PageRequest) -> Result<Page<HistoryEntry>> {
        read_view!(self, dest);
        let prefix = rec(format!("hist/{dest}\0"));
        let start = resume_after(&prefix, page)?;
        let end = prefix_end(&prefix);
        let mut items = Vec::new();
        for item in self.0.engine.range(&start, end.as_deref(), false) {
            let (k, v) = item?;
            items.push(decode(&v)?);
            if items.len() == page.size {
                return Ok(Page { items, next: Some(Position::from_bytes(k)) });
            }
        }
        Ok(Page { items, next: None })
    }
}

#[async_trait]
impl PreRunTable for SharedKvInstallationStore {
    async fn pre_run(&self, id: &str) -> Result<Option<PreRunRecord>> {
        let Some(mut r) = self.0.get_json::<PreRunRecord>(&pre_run_key(id))? else { return Ok(None) };
        r.plan = self.0.load_plan("prerun", id)?.0;
        Ok(Some(r))
    }
}

#[async_trait]
impl InstallationTable for SharedKvInstallationStore {
    async fn installation(&self, id: &str, with_plan: bool) -> Result<Option<InstallationRecord>> {
        let Some(mut r) = self.0.get_json::<InstallationRecord>(&installation_key(id))? else { return Ok(None) };
        if with_plan {
            (r.plan, r.statuses) = self.0.load_plan("installation", id)?;
        }
        Ok(Some(r))
    }

    async fn undo(&self, id: &str) -> Result<Undo> {
        let mut undo = Undo::default();
        for item in scan_prefix(self.0.engine.as_ref(), &rec(format!("undo/{id}/o/")), false) {
            undo.objects.extend(decode::<Vec<UndoObject>>(&item?.1)?);
        }
        for item in scan_prefix(self.0.engine.as_ref(), &rec(format!("undo/{id}/h/")), false) {
            undo.history.extend(decode::<Vec<(Option<HistoryEntry>, HistoryEntry)>>(&item?.1)?);
        }
        Ok(undo)
    }

    async fn list_installations(
        &self,
        filter: &InstallationFilter,
        visible: Visible<'_, InstallationRecord>,
        page: &PageRequest,
    ) -> Result<Page<InstallationRecord>> {
        // A filter on package or destination walks that index instead of every record.
        let index = if !filter.package_id.is_empty() {
            Some(format!("instpkg/{}\0", filter.package_id))
        } else if !filter.destination.is_empty() {
            Some(format!("instdest/{}\0", filter.destination))
        } else {
            None
        };
        let prefix = index.clone().unwrap_or_else(|| INSTALLATION_PREFIX.to_string());
        let mut items = Vec::new();
        let mut last = None;
        for item in self.0.newest_first(&prefix, page)? {
            let (k, v) = item?;
            let r: InstallationRecord = match &index {
                Some(_) => {
                    let id = std::str::from_utf8(&k[1 + prefix.len()..])
                        .map_err(|_| StoreError::corrupt("an installation index key is not UTF-8"))?;
                    match self.0.get_json(&installation_key(id))? {
                        Some(r) => r,
                        None => continue,
                    }
                }
                None => decode(&v)?,
            };
            let matches = r.organization == filter.organization
                && (filter.package_id.is_empty() || r.package_id == filter.package_id)
                && (filter.destination.is_empty() || r.destination == filter.destination);
            if !matches || !visible(&r) {
                continue;
            }
            if items.len() == page.size {
                return Ok(Page { items, next: last.map(Position::from_bytes) });
            }
            last = Some(k);
            items.push(r);
        }
        Ok(Page { items, next: None })
    }

    async fn unfinished_installations(&self) -> Result<Vec<InstallationRecord>> {
        let mut out = Vec::new();
        for item in scan_prefix(self.0.engine.as_ref(), &rec(INSTALLATION_PREFIX.to_string()), false) {
            let r: InstallationRecord = decode(&item?.1)?;
            if matches!(r.status, InstallationStatus::Installing | InstallationStatus::RollingBack) {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn installed_before(&self, package_id: &str, destination: &str) -> Result<bool> {
        Ok(self.0.engine.get(&rec(format!("instok/{package_id}\0{destination}")))?.is_some())
    }
}

#[async_trait]
impl PromotionTable for SharedKvInstallationStore {
    async fn promotion(&self, id: &str) -> Result<Option<PromotionRecord>> {
        self.0.get_json(&promotion_key(id))
    }

    async fn pending_promotion(&self, target: &str, package_id: &str) -> Result<Option<String>> {
        self.0.get_json(&pending_key(target, package_id))
    }

    async fn list_promotions(
        &self,
        organization: &str,
        visible: Visible<'_, PromotionRecord>,
        page: &PageRequest,
    ) -> Result<Page<PromotionRecord>> {
        self.0.newest_page(PROMOTION_PREFIX, page, |r: &PromotionRecord| r.organization == organization && visible(r))
    }
}

#[async_trait]
impl PolicyTable for SharedKvInstallationStore {
    async fn policy(&self, env: &str) -> Result<Option<EnvironmentPolicy>> {
        self.0.get_json(&policy_key(env))
    }
}

#[async_trait]
impl NotificationTable for SharedKvInstallationStore {
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        self.0.get_json(&rec(format!("{SUBSCRIPTION_PREFIX}{id}")))
    }

    async fn subscriptions(&self, organization: &str) -> Result<Vec<Subscription>> {
        let mut out = Vec::new();
        for item in scan_prefix(self.0.engine.as_ref(), &rec(SUBSCRIPTION_PREFIX.to_string()), false) {
            let s: Subscription = decode(&item?.1)?;
            if s.organization == organization {
                out.push(s);
            }
        }
        Ok(out)
    }

    async fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>> {
        let prefix = rec(PENDING_DELIVERY_PREFIX.to_string());
        let mut out = Vec::new();
        for item in scan_prefix(self.0.engine.as_ref(), &prefix, false) {
            let (k, _) = item?;
            let id = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|_| StoreError::corrupt("a delivery index key is not UTF-8"))?;
            let Some(d) = self.0.get_json::<Delivery>(&rec(format!("{DELIVERY_PREFIX}{id}")))? else { continue };
            if d.next_attempt <= now {
                out.push(d);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn list_deliveries(
        &self,
        organization: &str,
        visible: Visible<'_, Delivery>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>> {
        self.0.newest_page(DELIVERY_PREFIX, page, |d: &Delivery| d.organization == organization && visible(d))
    }
}

#[async_trait]
impl OutboxTable for SharedKvInstallationStore {
    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        scan_prefix(self.0.engine.as_ref(), &rec(OUTBOX_PREFIX.to_string()), false)
            .take(limit)
            .map(|item| decode(&item?.1))
            .collect()
    }
}

#[async_trait]
impl KeyTable for SharedKvInstallationStore {
    async fn secret_key(&self, name: &str) -> Result<Vec<u8>> {
        crate::kv_keys::secret_key(self.0.engine.as_ref(), name).await
    }
}

#[async_trait]
impl IdempotencyTable for SharedKvInstallationStore {
    async fn request(&self, k: &RequestKey) -> Result<Option<IdempotencyRecord>> {
        self.0.get_json(&request_key(k))
    }
}

#[async_trait]
impl AuditTable for SharedKvInstallationStore {
    async fn list_audit(&self, filter: &AuditFilter, page: &PageRequest) -> Result<Page<AuditEvent>> {
        list_audit(self.0.engine.as_ref(), &rec(AUDIT_PREFIX.to_string()), filter, page)
    }
}

/// Oldest-first audit events under `prefix`, seeking past the page's position.
pub(crate) fn list_audit(
    engine: &dyn Engine,
    prefix: &[u8],
    filter: &AuditFilter,
    page: &PageRequest,
) -> Result<Page<AuditEvent>> {
    let start = resume_after(prefix, page)?;
    let end = prefix_end(prefix);
    let mut items = Vec::new();
    for item in engine.range(&start, end.as_deref(), false) {
        let (k, v) = item?;
        let event: AuditEvent = decode(&v)?;
        if !filter.matches(&event) {
            continue;
        }
        items.push(event);
        if items.len() == page.size {
            return Ok(Page { items, next: Some(Position::from_bytes(k)) });
        }
    }
    Ok(Page { items, next: None })
}

#[async_trait]
impl InstallationStore for SharedKvInstallationStore {
    async fn lock(&self, env: &str) -> Result<Box<dyn EnvTransaction>> {
        // In-process first, so that one process holds at most one database lock per environment.
        let guard = self.0.locks.lock(env).await;
        let held = self.0.engine.hold(&key(&[b"E", env.as_bytes()])).await?;
        Ok(Box::new(KvEnvTransaction { env: env.to_string(), store: self.0.clone(), _guard: guard, held }))
    }

    async fn append(&self, records: Vec<Record>) -> Result<()> {
        let mut ops = Vec::new();
        for r in records {
            self.0.record_ops(r, &mut ops)?;
        }
        if ops.is_empty() {
            return Ok(());
        }
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || store.apply(ops))
            .await
            .map_err(|e| StoreError::engine(format!("write task failed: {e}")))?
    }

    async fn flush(&self) -> Result<()> {
        let engine = self.0.engine.clone();
        tokio::task::spawn_blocking(move || engine.flush())
            .await
            .map_err(|e| StoreError::engine(format!("flush task failed: {e}")))?
    }

    fn size_on_disk(&self) -> u64 {
        self.0.engine.size_on_disk()
    }
}
