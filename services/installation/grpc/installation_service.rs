//! `promotion.v1.InstallationService`: pre-runs, installations and rollbacks.
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

use super::{bad_field, check_request_id, forwarded_token, page_error, require_uuid};
use crate::installation::apply::EntryStatus;
use crate::installation::installer::{self, InstallError, InstallRequest, PreRunRequest};
use crate::installation::plan::{Action, Collision, Entry, MatchKind, Override, Plan};
use crate::installation::records::{InstallationRecord, InstallationStatus, PreRunRecord};
use crate::installation::state::State;
use crate::proto::v1 as pb;
use crate::shared::auth::Permission;
use crate::shared::convert::{json_to_value, opt_timestamp, timestamp};
use crate::shared::errors::status;
use crate::shared::pagination::{token_after, Page};
use crate::shared::serving::caller;

pub struct InstallationApi {
    state: Arc<State>,
}

impl InstallationApi {
    pub fn new(state: Arc<State>) -> Self {
        InstallationApi { state }
    }
}

impl From<InstallError> for Status {
    fn from(e: InstallError) -> Status {
        let list = |items: &[String]| items.join("; ");
        match e {
            InstallError::Upstream(s) => s,
            InstallError::NotInstallable { status: s, kind } => status(
                Code::FailedPrecondition,
                "PACKAGE_NOT_INSTALLABLE",
                format!("a {s} package cannot be installed into a {kind:?} environment (PREVIEW: sandboxes only; PUBLIC: anywhere)"),
                [("status", s.to_string()), ("kind", format!("{kind:?}").to_uppercase())],
            ),
            InstallError::CrossOrganization => status(
                Code::FailedPrecondition,
                "CROSS_ORGANIZATION",
                "packages never cross organizations",
                [],
            ),
            InstallError::PreRunNotFound(id) => {
                status(Code::NotFound, "PRE_RUN_NOT_FOUND", format!("pre-run {id} not found"), [("pre_run_id", id)])
            }
            InstallError::InstallationNotFound(id) => {
                status(Code::NotFound, "INSTALLATION_NOT_FOUND", format!("installation {id} not found"), [("id", id)])
            }
            InstallError::PreRunMismatch(m) => status(Code::InvalidArgument, "PRE_RUN_MISMATCH", m, [("field", "pre_run_id".into())]),
            InstallError::PreRunExpired(id) => status(
                Code::FailedPrecondition,
                "PRE_RUN_EXPIRED",
                format!("pre-run {id} has expired; run a new one"),
                [("pre_run_id", id)],
            ),
            InstallError::PreRunStale(items) => status(
                Code::Aborted,
                "PRE_RUN_STALE",
                format!("the destination or package changed since the pre-run; nothing was written: {}", list(&items)),
                [("entries", list(&items))],
            ),
            InstallError::InvalidTranslationMap(items) => status(
                Code::FailedPrecondition,
                "INVALID_TRANSLATION_MAP",
                format!("the translation map has invalid entries; nothing was written: {}", list(&items)),
                [("entries", list(&items))],
            ),
            InstallError::ObjectsModified(items) => status(
                Code::FailedPrecondition,
                "OBJECTS_MODIFIED_SINCE_INSTALL",
                format!("objects changed since the installation (roll back with force to discard those changes): {}", list(&items)),
                [("objects", list(&items))],
            ),
            InstallError::InvalidState { reason, message } => status(Code::FailedPrecondition, reason, message, []),
            InstallError::NoPackageService => status(
                Code::FailedPrecondition,
                "NO_PACKAGE_SERVICE",
                "this installation service has no package_service configured",
                [],
            ),
            InstallError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                status(Code::Internal, "STORE_FAILURE", "the store failed; nothing was acknowledged", [])
            }
        }
    }
}

fn action_to_proto(a: Action) -> pb::InstallAction {
    match a {
        Action::Create => pb::InstallAction::Create,
        Action::UseExisting => pb::InstallAction::Useexisting,
        Action::Overwriting => pb::InstallAction::Overwriting,
        Action::Ignore => pb::InstallAction::Ignore,
        Action::CreateWithAltName => pb::InstallAction::Createwithaltname,
    }
}

fn action_from_proto(v: i32) -> Option<Action> {
    match pb::InstallAction::try_from(v).ok()? {
        pb::InstallAction::Unspecified => None,
        pb::InstallAction::Create => Some(Action::Create),
        pb::InstallAction::Useexisting => Some(Action::UseExisting),
        pb::InstallAction::Overwriting => Some(Action::Overwriting),
        pb::InstallAction::Ignore => Some(Action::Ignore),
        pb::InstallAction::Createwithaltname => Some(Action::CreateWithAltName),
    }
}

fn entry_to_proto(e: &Entry, status: Option<EntryStatus>) -> pb::TranslationEntry {
    pb::TranslationEntry {
        name: e.name.clone(),
        action: action_to_proto(e.action) as i32,
        is_valid: e.is_valid,
        target_id: e.target_id.clone(),
        matched_by: match e.matched_by {
            MatchKind::None => pb::MatchKind::Unspecified,
            MatchKind::History => pb::MatchKind::History,
            MatchKind::Id => pb::MatchKind::Id,
            MatchKind::Name => pb::MatchKind::Name,
        } as i32,
        collision: match e.collision {
            Collision::None => pb::Collision::Unspecified,
            Collision::LocallyModified => pb::Collision::LocallyModified,
            Collision::IdMatch => pb::Collision::IdMatch,
            Collision::NameMatch => pb::Collision::NameMatch,
        } as i32,
        changes: e
            .changes
            .iter()
            .map(|c| pb::FieldChange {
                path: c.path.clone(),
                before: Some(json_to_value(&c.before)),
                after: Some(json_to_value(&c.after)),
            })
            .collect(),
        reason: e.reason.clone(),
        alt_name: e.alt_name.clone(),
        candidate_ids: e.candidate_ids.clone(),
        installation_status: status.map_or(pb::EntryInstallationStatus::Unspecified, |s| match s {
            EntryStatus::Installed => pb::EntryInstallationStatus::Installed,
            EntryStatus::Registered => pb::EntryInstallationStatus::Registered,
            EntryStatus::Skipped => pb::EntryInstallationStatus::Skipped,
            EntryStatus::Failed => pb::EntryInstallationStatus::Failed,
        }) as i32,
    }
}

/// Which entries a response carries: a page in display order (invalid first, then the
/// ones that change something, then the rest, each in install order), bounded by count
/// or by about 768 KiB so that no message exceeds 1 MiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryPage {
    pub offset: usize,
    /// 0: as many as fit the byte budget.
    pub size: usize,
}

const ENTRY_BYTES_BUDGET: usize = 768 * 1024;
const MAX_ENTRIES_PAGE: usize = 5000;

impl EntryPage {
    /// No entries at all (list views).
    pub const NONE: EntryPage = EntryPage { offset: usize::MAX, size: 0 };

    pub fn parse(size: i32, token: &str) -> Result<EntryPage, Status> {
        if size < 0 {
            return Err(bad_field("INVALID_PAGE_SIZE", "entries_page_size", "entries_page_size must not be negative"));
        }
        let offset = if token.is_empty() {
            0
        } else {
            token.parse::<usize>().map_err(|_| {
                bad_field(
                    "INVALID_PAGE_TOKEN",
                    "entries_page_token",
                    "entries_page_token was not returned by this call",
                )
            })?
        };
        Ok(EntryPage { offset, size: (size as usize).min(MAX_ENTRIES_PAGE) })
    }
}

fn display_order(plan: &Plan) -> Vec<usize> {
    let rank = |e: &Entry| {
        if !e.is_valid {
            0
        } else if e.action != Action::UseExisting || !e.changes.is_empty() || e.collision != Collision::None {
            1
        } else {
            2
        }
    };
    let mut order: Vec<usize> = (0..plan.entries.len()).collect();
    order.sort_by_key(|&i| rank(&plan.entries[i]));
    order
}

fn translation_map(
    plan: &Plan,
    statuses: &[EntryStatus],
    page: EntryPage,
) -> (HashMap<String, pb::TypeTranslation>, String) {
    use prost::Message;
    let mut map: HashMap<String, pb::TypeTranslation> = HashMap::new();
    let order = display_order(plan);
    let mut bytes = 0;
    let mut next = String::new();
    for (n, &i) in order.iter().enumerate().skip(page.offset) {
        let taken = n - page.offset;
        let e = &plan.entries[i];
        let entry = entry_to_proto(e, statuses.get(i).copied());
        let len = entry.encoded_len() + e.source_id.len() + e.obj_code.len() + 16;
        let full = if page.size > 0 { taken == page.size } else { bytes + len > ENTRY_BYTES_BUDGET && taken > 0 };
        if full {
            next = n.to_string();
            break;
        }
        bytes += len;
        map.entry(e.obj_code.clone()).or_default().entries.insert(e.source_id.clone(), entry);
    }
    (map, next)
}

pub fn pre_run_to_proto(r: &PreRunRecord, page: EntryPage) -> pb::PreRun {
    let ready = r.is_ready();
    let (translation_map, next_entries_page_token) = translation_map(&r.plan, &[], page);
    pb::PreRun {
        id: r.id.clone(),
        status: if ready { pb::PreRunStatus::Ready } else { pb::PreRunStatus::Failed } as i32,
        package_id: r.package_id.clone(),
        package_version: r.package_version,
        destination_environment: r.destination.clone(),
        destination_revision: r.destination_revision,
        create_time: Some(timestamp(r.create_time)),
        expire_time: Some(timestamp(r.expire_time)),
        summary: r.summary.clone().into_iter().collect(),
        translation_map,
        created_by: r.created_by.clone(),
        source_environment: r.source_environment.clone(),
        failure_reason: if ready {
            String::new()
        } else {
            format!("invalid entries need overrides: {}", r.plan.invalid_entries().join("; "))
        },
        package_digest: r.package_digest.clone(),
        entry_count: r.entry_count as i64,
        next_entries_page_token,
    }
}

pub fn installation_to_proto(r: &InstallationRecord, page: EntryPage) -> pb::Installation {
    let (translation_map, next_entries_page_token) = translation_map(&r.plan, &r.statuses, page);
    pb::Installation {
        id: r.id.clone(),
        package_id: r.package_id.clone(),
        package_version: r.package_version,
        destination_environment: r.destination.clone(),
        pre_run_id: r.pre_run_id.clone(),
        status: match r.status {
            InstallationStatus::Installing => pb::InstallationStatus::Installing,
            // Until a large rollback has finished, the installation is still in place.
            InstallationStatus::Installed | InstallationStatus::RollingBack => pb::InstallationStatus::Installed,
            InstallationStatus::Failed => pb::InstallationStatus::Failed,
            InstallationStatus::RolledBack => pb::InstallationStatus::RolledBack,
        } as i32,
        translation_map,
        summary: r.summary.clone().into_iter().collect(),
        create_time: Some(timestamp(r.create_time)),
        finish_time: opt_timestamp(r.finish_time),
        created_by: r.created_by.clone(),
        failure_reason: r.failure_reason.clone(),
        source_environment: r.source_environment.clone(),
        prune_children: r.prune_children,
        destination_revision: r.destination_revision,
        rollback_time: opt_timestamp(r.rollback_time),
        rolled_back_by: r.rolled_back_by.clone(),
        entry_count: r.entry_count as i64,
        next_entries_page_token,
    }
}

/// The caller's overrides, checked for shape (entries that name no package object are
/// reported by the installer).
pub fn overrides_from_proto(map: HashMap<String, pb::TypeTranslation>) -> Result<Vec<Override>, Status> {
    let mut out = Vec::new();
    for (obj_code, t) in map {
        for (source_id, e) in t.entries {
            if !crate::shared::objects::is_valid_object_id(&source_id) {
                return Err(bad_field(
                    "INVALID_ID",
                    "translation_map",
                    format!("{obj_code}:{source_id} is not a valid object id"),
                ));
            }
            if !e.target_id.is_empty() && !crate::shared::objects::is_valid_object_id(&e.target_id) {
                return Err(bad_field(
                    "INVALID_ID",
                    "translation_map",
                    format!("target id {:?} of {obj_code}:{source_id} is not valid", e.target_id),
                ));
            }
            if pb::InstallAction::try_from(e.action).is_err() {
                return Err(bad_field(
                    "INVALID_ACTION",
                    "translation_map",
                    format!("unknown action {} for {obj_code}:{source_id}", e.action),
                ));
            }
            out.push(Override {
                obj_code: obj_code.clone(),
                source_id,
                action: action_from_proto(e.action),
                target_id: e.target_id,
                alt_name: e.alt_name,
            });
        }
    }
    Ok(out)
}

fn check_version(v: i64) -> Result<(), Status> {
    if v < 0 {
        return Err(bad_field(
            "INVALID_VERSION",
            "package_version",
            "package_version must be 0 (current) or a version number",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::installation_service_server::InstallationService for InstallationApi {
    async fn create_pre_run(&self, req: Request<pb::CreatePreRunRequest>) -> Result<Response<pb::PreRun>, Status> {
        let caller = caller(&req)?;
        let token = forwarded_token(&req)?;
        let req = req.into_inner();
        require_uuid("package_id", &req.package_id)?;
        check_version(req.package_version)?;
        check_request_id(&req.request_id)?;
        let dest = self.state.authorize(&caller, &req.destination_environment, Permission::InstallationWrite).await?;
        let request = PreRunRequest {
            package_id: req.package_id,
            package_version: req.package_version,
            request_id: req.request_id,
        };
        let record = installer::create_pre_run(&self.state, &caller, &token, &dest, request).await?;
        Ok(Response::new(pre_run_to_proto(&record, EntryPage::default())))
    }

    async fn get_pre_run(&self, req: Request<pb::GetPreRunRequest>) -> Result<Response<pb::PreRun>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        require_uuid("id", &req.id)?;
        let page = EntryPage::parse(req.entries_page_size, &req.entries_page_token)?;
        let record = installer::get_pre_run(&self.state, &caller, &req.id)?;
        self.state.authorize(&caller, &record.destination, Permission::InstallationRead).await?;
        Ok(Response::new(pre_run_to_proto(&record, page)))
    }

    async fn create_installation(
        &self,
        req: Request<pb::CreateInstallationRequest>,
    ) -> Result<Response<pb::Installation>, Status> {
        let caller = caller(&req)?;
        let token = forwarded_token(&req)?;
        let req = req.into_inner();
        require_uuid("package_id", &req.package_id)?;
        check_version(req.package_version)?;
        check_request_id(&req.request_id)?;
        if !req.pre_run_id.is_empty() {
            require_uuid("pre_run_id", &req.pre_run_id)?;
        }
        let overrides = overrides_from_proto(req.translation_map)?;
        let dest = self.state.authorize(&caller, &req.destination_environment, Permission::InstallationWrite).await?;
        let request = InstallRequest {
            package_id: req.package_id,
            package_version: req.package_version,
            pre_run_id: req.pre_run_id,
            overrides,
            prune_children: req.prune_children,
            request_id: req.request_id,
            companion: None,
        };
        let package_id = request.package_id.clone();
        match installer::create_installation(&self.state, &caller, &token, &dest, request).await {
            Ok(record) => Ok(Response::new(installation_to_proto(&record, EntryPage::default()))),
            Err(e) => {
                let failure = Status::from(e);
                self.state
                    .audit_failure(&caller, &dest.id, "INSTALLATION_FAILED", ("package", &package_id), &failure)
                    .await;
                Err(failure)
            }
        }
    }

    async fn list_installations(
        &self,
        req: Request<pb::ListInstallationsRequest>,
    ) -> Result<Response<pb::ListInstallationsResponse>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let l = &self.state.config.limits;
        let page =
            Page::parse(req.page_size, &req.page_token, l.default_page_size, l.max_page_size).map_err(page_error)?;
        if !req.destination_environment.is_empty() {
            self.state.authorize(&caller, &req.destination_environment, Permission::InstallationRead).await?;
        }
        let (records, last) = installer::list_installations(
            &self.state,
            &caller,
            &req.package_id,
            &req.destination_environment,
            page.after.as_deref(),
            page.size,
        )?;
        Ok(Response::new(pb::ListInstallationsResponse {
            installations: records.iter().map(|r| installation_to_proto(r, EntryPage::NONE)).collect(),
            next_page_token: last.map(|k| token_after(&k)).unwrap_or_default(),
        }))
    }

    async fn get_installation(
        &self,
        req: Request<pb::GetInstallationRequest>,
    ) -> Result<Response<pb::Installation>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        require_uuid("id", &req.id)?;
        let page = EntryPage::parse(req.entries_page_size, &req.entries_page_token)?;
        let record = installer::get_installation(&self.state, &caller, &req.id, true)?;
        self.state.authorize(&caller, &record.destination, Permission::InstallationRead).await?;
        Ok(Response::new(installation_to_proto(&record, page)))
    }

    async fn rollback_installation(
        &self,
        req: Request<pb::RollbackInstallationRequest>,
    ) -> Result<Response<pb::Installation>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        require_uuid("id", &req.id)?;
        check_request_id(&req.request_id)?;
        let record = installer::get_installation(&self.state, &caller, &req.id, false)?;
        self.state.authorize(&caller, &record.destination, Permission::InstallationWrite).await?;
        installer::rollback(&self.state, &caller, record, req.force, &req.request_id).await?;
        let record = installer::get_installation(&self.state, &caller, &req.id, true)?;
        Ok(Response::new(installation_to_proto(&record, EntryPage::default())))
    }
}
