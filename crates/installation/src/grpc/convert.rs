//! Conversions between installation-service messages and the domain's types: plans and
//! translation maps (paged by bytes), pre-runs, installations, drift reports, promotion requests
//! with their approvals, environment policies, catalogs and export chunks.
use std::collections::HashMap;
use tonic::Status;

use crate::drift::{DriftEntry, DriftState};
use crate::environments::Export;
use crate::plan::{Action, Collision, Entry, FieldChange, MatchKind, Override, Plan};
use chrono::Weekday;
use promotion_api::convert::{opt_timestamp, timestamp};
use promotion_api::status::bad_field;
use promotion_api::v1 as pb;
use promotion_core::config::EnvironmentKind;
use promotion_core::policy::{EnvironmentPolicy, Freeze, Window};
use promotion_core::promotion::{Approval, PromotionRecord, PromotionStatus};
use promotion_core::records::{EntryStatus, InstallationRecord, InstallationStatus, PreRunRecord};

pub fn action_to_proto(a: Action) -> pb::InstallAction {
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

fn changes_to_proto(changes: &[FieldChange]) -> Vec<pb::FieldChange> {
    changes.iter().map(pb::FieldChange::from).collect()
}

pub fn drift_entry_to_proto(e: &DriftEntry) -> pb::DriftEntry {
    let h = &e.history;
    pb::DriftEntry {
        obj_code: h.obj_code.clone(),
        id: h.target_id.clone(),
        name: e.name.clone(),
        state: match e.state {
            DriftState::Unchanged => pb::DriftState::Unchanged,
            DriftState::LocallyModified => pb::DriftState::LocallyModified,
            DriftState::Deleted => pb::DriftState::Deleted,
        } as i32,
        source_environment: h.source_environment.clone(),
        source_id: h.source_id.clone(),
        installation_id: h.installation_id.clone(),
        installed_revision: h.written_revision,
        current_revision: e.current_revision,
        changes: changes_to_proto(&e.changes),
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
        changes: changes_to_proto(&e.changes),
        reason: e.reason.clone(),
        alt_name: e.alt_name.clone(),
        candidate_ids: e.candidate_ids.clone(),
        installation_status: status.map_or(pb::EntryInstallationStatus::Unspecified, |s| match s {
            EntryStatus::Installed => pb::EntryInstallationStatus::Installed,
            EntryStatus::Registered => pb::EntryInstallationStatus::Registered,
            EntryStatus::Skipped => pb::EntryInstallationStatus::Skipped,
            EntryStatus::Failed => pb::EntryInstallationStatus::Failed,
            EntryStatus::RolledBack => pb::EntryInstallationStatus::RolledBack,
        }) as i32,
    }
}

/// Which entries a response carries: a page in display order (invalid first, then the
/// ones that change something, then the rest, each in install order), bounded by count
/// or by about 768 KiB so that no message exceeds 1 MiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryPage {
    pub offset: usize,
    /// At most this many (0: no count limit); a page also ends at the byte budget.
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
        // The byte budget holds whatever page size was asked for: entries carrying field
        // changes of the largest objects would otherwise pass the message cap.
        let full = (page.size > 0 && taken == page.size) || (bytes + len > ENTRY_BYTES_BUDGET && taken > 0);
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
        status: installation_status_to_proto(r.status) as i32,
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
        promotion_request_id: r.promotion_request_id.clone(),
    }
}

fn installation_status_to_proto(s: InstallationStatus) -> pb::InstallationStatus {
    match s {
        InstallationStatus::Installing => pb::InstallationStatus::Installing,
        // Until a large rollback has finished, the installation is still in place.
        InstallationStatus::Installed | InstallationStatus::RollingBack => pb::InstallationStatus::Installed,
        InstallationStatus::Failed => pb::InstallationStatus::Failed,
        InstallationStatus::RolledBack => pb::InstallationStatus::RolledBack,
    }
}

/// The caller's overrides, checked for shape (entries that name no package object are
/// reported by the installer).
pub fn overrides_from_proto(map: HashMap<String, pb::TypeTranslation>) -> Result<Vec<Override>, Status> {
    let mut out = Vec::new();
    for (obj_code, t) in map {
        for (source_id, e) in t.entries {
            if !promotion_core::objects::is_valid_object_id(&source_id) {
                return Err(bad_field(
                    "INVALID_ID",
                    "translation_map",
                    format!("{obj_code}:{source_id} is not a valid object id"),
                ));
            }
            if !e.target_id.is_empty() && !promotion_core::objects::is_valid_object_id(&e.target_id) {
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

pub fn kind_to_proto(kind: EnvironmentKind) -> pb::EnvironmentKind {
    match kind {
        EnvironmentKind::Sandbox => pb::EnvironmentKind::Sandbox,
        EnvironmentKind::Production => pb::EnvironmentKind::Production,
    }
}

pub fn catalog_to_proto(c: &promotion_core::catalog::Catalog) -> pb::Catalog {
    pb::Catalog {
        name: c.name.clone(),
        description: c.description.clone(),
        types: c
            .types
            .iter()
            .map(|t| pb::ObjectType {
                obj_code: t.obj_code.clone(),
                display_name: t.display_name.clone(),
                root: t.root,
                includes: t.includes.clone(),
                parent_types: t.parent_types.clone(),
                unique_names: t.unique_names,
                excluded_fields: t.excluded_fields.clone(),
                install_rank: t.install_rank,
                never_carried: t.never_carried,
            })
            .collect(),
    }
}

/// Splits an export into messages of at most `budget` bytes of objects each; the first
/// carries the warnings, revision and install order.
pub fn export_chunks(export: Export, budget: usize) -> Vec<pb::ExportObjectsResponse> {
    use prost::Message;
    let mut chunks = vec![pb::ExportObjectsResponse {
        warnings: export.warnings,
        revision: export.revision,
        install_order: export.install_order,
        ..Default::default()
    }];
    let mut size = 0;
    for o in &export.objects {
        let o: pb::ConfigObject = o.into();
        let len = o.encoded_len() + 8;
        if size + len > budget && size > 0 {
            chunks.push(pb::ExportObjectsResponse::default());
            size = 0;
        }
        size += len;
        chunks.last_mut().expect("one chunk exists").objects.push(o);
    }
    for r in &export.external_references {
        let r: pb::ExternalReference = r.into();
        let len = r.encoded_len() + 8;
        if size + len > budget && size > 0 {
            chunks.push(pb::ExportObjectsResponse::default());
            size = 0;
        }
        size += len;
        chunks.last_mut().expect("one chunk exists").external_references.push(r);
    }
    chunks
}

pub fn promotion_status_to_proto(s: PromotionStatus) -> pb::PromotionStatus {
    match s {
        PromotionStatus::ToBeValidated => pb::PromotionStatus::ToBeValidated,
        PromotionStatus::Accepted => pb::PromotionStatus::Accepted,
        PromotionStatus::Rejected => pb::PromotionStatus::Rejected,
        PromotionStatus::Cancelled => pb::PromotionStatus::Cancelled,
    }
}

pub fn promotion_to_proto(r: &PromotionRecord) -> pb::PromotionRequest {
    pb::PromotionRequest {
        id: r.id.clone(),
        package_id: r.package_id.clone(),
        package_version: r.package_version,
        package_name: r.package_name.clone(),
        source_environment: r.source_environment.clone(),
        target_environment: r.target_environment.clone(),
        organization: r.organization.clone(),
        status: promotion_status_to_proto(r.status) as i32,
        comment: r.comment.clone(),
        requested_by: r.requested_by.clone(),
        create_time: Some(timestamp(r.create_time)),
        update_time: Some(timestamp(r.update_time)),
        is_update: r.is_update,
        decided_by: r.decided_by.clone(),
        decision_comment: r.decision_comment.clone(),
        installation_id: r.installation_id.clone(),
        last_error: r.last_error.clone(),
        pre_run_id: r.pre_run_id.clone(),
        installation_status: r
            .installation_status
            .map_or(pb::InstallationStatus::Unspecified, installation_status_to_proto)
            as i32,
        approvals: r.approvals.iter().map(approval_to_proto).collect(),
        required_approvals: i32::try_from(r.required_approvals).unwrap_or(i32::MAX),
    }
}

fn approval_to_proto(a: &Approval) -> pb::Approval {
    pb::Approval { approver: a.approver.clone(), time: Some(timestamp(a.time)), comment: a.comment.clone() }
}

pub fn policy_to_proto(p: &EnvironmentPolicy) -> pb::EnvironmentPolicy {
    pb::EnvironmentPolicy {
        environment: p.environment.clone(),
        required_approvals: i32::try_from(p.required_approvals).unwrap_or(i32::MAX),
        allow_self_approval: p.allow_self_approval,
        etag: p.etag(),
        update_time: opt_timestamp(p.update_time),
        updated_by: p.updated_by.clone(),
        windows: p.windows.iter().map(window_to_proto).collect(),
        freezes: p.freezes.iter().map(freeze_to_proto).collect(),
    }
}

const WEEKDAYS: [(Weekday, pb::DayOfWeek); 7] = [
    (Weekday::Mon, pb::DayOfWeek::Monday),
    (Weekday::Tue, pb::DayOfWeek::Tuesday),
    (Weekday::Wed, pb::DayOfWeek::Wednesday),
    (Weekday::Thu, pb::DayOfWeek::Thursday),
    (Weekday::Fri, pb::DayOfWeek::Friday),
    (Weekday::Sat, pb::DayOfWeek::Saturday),
    (Weekday::Sun, pb::DayOfWeek::Sunday),
];

pub fn weekday_from_proto(v: i32) -> Option<Weekday> {
    WEEKDAYS.iter().find(|(_, d)| *d as i32 == v).map(|(w, _)| *w)
}

fn weekday_to_proto(w: Weekday) -> pb::DayOfWeek {
    WEEKDAYS.iter().find(|(day, _)| *day == w).map_or(pb::DayOfWeek::Unspecified, |(_, d)| *d)
}

fn clock(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// "UTC", or the fixed offset as "+HH:MM" / "-HH:MM".
fn offset_name(minutes: i32) -> String {
    if minutes == 0 {
        return "UTC".into();
    }
    let sign = if minutes < 0 { '-' } else { '+' };
    format!("{sign}{}", clock(minutes.unsigned_abs()))
}

fn window_to_proto(w: &Window) -> pb::PromotionWindow {
    pb::PromotionWindow {
        days: w.days.iter().map(|d| weekday_to_proto(*d) as i32).collect(),
        start_time: clock(w.start_minute),
        end_time: clock(w.end_minute),
        time_zone: offset_name(w.utc_offset_minutes),
    }
}

fn freeze_to_proto(f: &Freeze) -> pb::PromotionFreeze {
    pb::PromotionFreeze {
        start_time: Some(timestamp(f.start)),
        end_time: Some(timestamp(f.end)),
        reason: f.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// An entry whose field changes are as large as an object's fields may be.
    fn heavy(n: usize) -> Entry {
        let big = serde_json::Value::String("x".repeat(250 * 1024));
        Entry {
            obj_code: "GROUP".into(),
            source_id: format!("{n:032x}"),
            name: format!("Heavy {n}"),
            action: Action::Overwriting,
            is_valid: true,
            target_id: format!("{n:032x}"),
            matched_by: MatchKind::Id,
            collision: Collision::None,
            changes: vec![FieldChange { path: "notes".into(), before: big.clone(), after: big }],
            reason: String::new(),
            alt_name: String::new(),
            candidate_ids: vec![],
            observed_revision: Some(1),
        }
    }

    #[test]
    fn an_entries_page_stays_within_its_byte_budget_whatever_size_is_asked_for() {
        let plan = Plan { entries: (0..40).map(heavy).collect(), externals: Default::default() };
        let mut offset = 0;
        let mut seen = 0;
        loop {
            let page = EntryPage::parse(5000, &offset.to_string()).unwrap();
            let (map, next) = translation_map(&plan, &[], page);
            let bytes: usize = map.values().map(|t| t.encoded_len()).sum();
            assert!(bytes <= ENTRY_BYTES_BUDGET + 600 * 1024, "a page of {bytes} bytes");
            seen += map.values().map(|t| t.entries.len()).sum::<usize>();
            if next.is_empty() {
                break;
            }
            offset = next.parse().unwrap();
        }
        assert_eq!(seen, 40, "every entry is on some page");
    }
}
