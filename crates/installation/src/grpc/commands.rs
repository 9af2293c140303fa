//! Requests as domain commands: each `TryFrom<pb::...Request>` checks the request's shape
//! (ids, versions, request ids, comments) and builds what the domain takes, so that every
//! malformed request is INVALID_ARGUMENT before anything is read or written.
use tonic::Status;

use super::convert::{overrides_from_proto, weekday_from_proto};
use super::{check_request_id, require_uuid};
use crate::install::InstallRequest;
use crate::installations::ReportedInstallation;
use crate::policies::PolicyChange;
use crate::pre_run::PreRunRequest;
use crate::promotions::{self, Attach, Decision};
use promotion_api::status::bad_field;
use promotion_api::v1 as pb;
use promotion_core::policy::{Freeze, Window};

/// A command aimed at one environment, which the handler authorises first.
pub struct ForEnvironment<T> {
    pub environment: String,
    pub command: T,
}

/// A decision on one promotion request.
pub struct OnRequest<T> {
    pub id: String,
    pub command: T,
}

const MAX_COMMENT_CHARS: usize = 4000;

pub fn check_comment(comment: &str) -> Result<(), Status> {
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(bad_field(
            "COMMENT_TOO_LONG",
            "comment",
            format!("comments are at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    Ok(())
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

impl TryFrom<pb::CreatePreRunRequest> for ForEnvironment<PreRunRequest> {
    type Error = Status;

    fn try_from(r: pb::CreatePreRunRequest) -> Result<Self, Status> {
        require_uuid("package_id", &r.package_id)?;
        check_version(r.package_version)?;
        check_request_id(&r.request_id)?;
        let command =
            PreRunRequest { package_id: r.package_id, package_version: r.package_version, request_id: r.request_id };
        Ok(ForEnvironment { environment: r.destination_environment, command })
    }
}

impl TryFrom<pb::CreateInstallationRequest> for ForEnvironment<InstallRequest> {
    type Error = Status;

    fn try_from(r: pb::CreateInstallationRequest) -> Result<Self, Status> {
        require_uuid("package_id", &r.package_id)?;
        check_version(r.package_version)?;
        check_request_id(&r.request_id)?;
        if !r.pre_run_id.is_empty() {
            require_uuid("pre_run_id", &r.pre_run_id)?;
        }
        let command = InstallRequest {
            package_id: r.package_id,
            package_version: r.package_version,
            pre_run_id: r.pre_run_id,
            overrides: overrides_from_proto(r.translation_map)?,
            prune_children: r.prune_children,
            request_id: r.request_id,
            companion: None,
            promotion_request_id: String::new(),
            window_override: r.window_override_reason,
        };
        Ok(ForEnvironment { environment: r.destination_environment, command })
    }
}

impl TryFrom<pb::RequestPromotionRequest> for ForEnvironment<promotions::Request> {
    type Error = Status;

    fn try_from(r: pb::RequestPromotionRequest) -> Result<Self, Status> {
        require_uuid("package_id", &r.package_id)?;
        check_request_id(&r.request_id)?;
        check_comment(&r.comment)?;
        check_version(r.package_version)?;
        if r.target_environment.is_empty() {
            return Err(bad_field("MISSING_FIELD", "target_environment", "target_environment is required"));
        }
        if !r.pre_run_id.is_empty() {
            require_uuid("pre_run_id", &r.pre_run_id)?;
        }
        let command = promotions::Request {
            package_id: r.package_id,
            package_version: r.package_version,
            comment: r.comment,
            pre_run_id: r.pre_run_id,
            request_id: r.request_id,
        };
        Ok(ForEnvironment { environment: r.target_environment, command })
    }
}

impl TryFrom<pb::AcceptPromotionRequestRequest> for OnRequest<Decision> {
    type Error = Status;

    fn try_from(r: pb::AcceptPromotionRequestRequest) -> Result<Self, Status> {
        require_uuid("id", &r.id)?;
        check_request_id(&r.request_id)?;
        check_comment(&r.comment)?;
        let command = Decision {
            comment: r.comment,
            request_id: r.request_id,
            overrides: overrides_from_proto(r.translation_map)?,
            prune_children: r.prune_children,
            replan: r.replan,
            window_override: r.window_override_reason,
        };
        Ok(OnRequest { id: r.id, command })
    }
}

impl TryFrom<pb::AttachPreRunRequest> for OnRequest<Attach> {
    type Error = Status;

    fn try_from(r: pb::AttachPreRunRequest) -> Result<Self, Status> {
        require_uuid("id", &r.id)?;
        require_uuid("pre_run_id", &r.pre_run_id)?;
        check_request_id(&r.request_id)?;
        Ok(OnRequest { id: r.id, command: Attach { pre_run_id: r.pre_run_id, request_id: r.request_id } })
    }
}

impl TryFrom<pb::CheckInstallationRequest> for ReportedInstallation {
    type Error = Status;

    fn try_from(r: pb::CheckInstallationRequest) -> Result<Self, Status> {
        require_uuid("installation_id", &r.installation_id)?;
        require_uuid("package_id", &r.package_id)?;
        if r.package_version < 1 {
            return Err(bad_field("INVALID_VERSION", "package_version", "package_version must be 1 or more"));
        }
        if r.destination_environment.is_empty() {
            return Err(bad_field("MISSING_FIELD", "destination_environment", "destination_environment is required"));
        }
        Ok(ReportedInstallation {
            id: r.installation_id,
            package_id: r.package_id,
            package_version: r.package_version,
            destination: r.destination_environment,
        })
    }
}
/// The paths an UpdateEnvironmentPolicy mask may name.
const POLICY_PATHS: &str = "required_approvals, allow_self_approval, windows, freezes";

impl TryFrom<pb::UpdateEnvironmentPolicyRequest> for ForEnvironment<PolicyChange> {
    type Error = Status;

    fn try_from(r: pb::UpdateEnvironmentPolicyRequest) -> Result<Self, Status> {
        check_request_id(&r.request_id)?;
        let policy = r.policy.ok_or_else(|| bad_field("MISSING_FIELD", "policy", "policy is required"))?;
        if policy.environment.is_empty() {
            return Err(bad_field("MISSING_FIELD", "policy.environment", "policy.environment is required"));
        }
        let mut paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            paths = POLICY_PATHS.split(", ").map(String::from).collect();
        }
        let mut change = PolicyChange { etag: policy.etag, request_id: r.request_id, ..Default::default() };
        for path in &paths {
            match path.as_str() {
                "required_approvals" => {
                    change.required_approvals = Some(required_approvals(policy.required_approvals)?)
                }
                "allow_self_approval" => change.allow_self_approval = Some(policy.allow_self_approval),
                "windows" => change.windows = Some(policy.windows.iter().map(window).collect::<Result<_, _>>()?),
                "freezes" => change.freezes = Some(policy.freezes.iter().map(freeze).collect::<Result<_, _>>()?),
                other => {
                    return Err(bad_field(
                        "INVALID_FIELD_MASK",
                        "update_mask",
                        format!("{other:?} cannot be updated; the mask may name {POLICY_PATHS}"),
                    ))
                }
            }
        }
        Ok(ForEnvironment { environment: policy.environment, command: change })
    }
}

fn invalid_policy(field: &str, message: String) -> Status {
    bad_field("INVALID_POLICY", field, message)
}

/// A window's shape: known days, "HH:MM" times, a "UTC" or "±HH:MM" zone (the domain
/// checks the order of the times and the range of the offset).
fn window(w: &pb::PromotionWindow) -> Result<Window, Status> {
    let days =
        w.days.iter().map(|d| weekday_from_proto(*d)).collect::<Option<Vec<_>>>().ok_or_else(|| {
            invalid_policy("policy.windows.days", "days must be DAY_OF_WEEK_MONDAY to _SUNDAY".into())
        })?;
    let minutes = |field: &str, text: &str| {
        minutes_of(text).ok_or_else(|| invalid_policy(field, format!("{field} {text:?} is not HH:MM (00:00 to 24:00)")))
    };
    Ok(Window {
        days,
        start_minute: minutes("policy.windows.start_time", &w.start_time)?,
        end_minute: minutes("policy.windows.end_time", &w.end_time)?,
        utc_offset_minutes: offset_of(&w.time_zone).ok_or_else(|| {
            let message = format!("time_zone {:?} is neither UTC nor a fixed offset such as +01:00", w.time_zone);
            invalid_policy("policy.windows.time_zone", message)
        })?,
    })
}

/// "HH:MM" as minutes after midnight, "24:00" included.
fn minutes_of(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h.min(24) == h && m < 60 && h * 60 + m <= 24 * 60 && text.len() == 5).then_some(h * 60 + m)
}

/// "UTC" / "Z" as 0, "+HH:MM" / "-HH:MM" as signed minutes.
fn offset_of(text: &str) -> Option<i32> {
    if text.eq_ignore_ascii_case("utc") || text == "Z" {
        return Some(0);
    }
    let sign = match text.chars().next()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    Some(sign * i32::try_from(minutes_of(&text[1..])?).ok()?)
}

fn freeze(f: &pb::PromotionFreeze) -> Result<Freeze, Status> {
    let time = |field: &str, t: &Option<_>| {
        t.as_ref()
            .and_then(promotion_api::convert::from_timestamp)
            .ok_or_else(|| invalid_policy(field, format!("{field} is required")))
    };
    Ok(Freeze {
        start: time("policy.freezes.start_time", &f.start_time)?,
        end: time("policy.freezes.end_time", &f.end_time)?,
        reason: f.reason.clone(),
    })
}

/// A count the domain checks against its bounds; negative ones never reach it.
fn required_approvals(n: i32) -> Result<u32, Status> {
    u32::try_from(n).map_err(|_| {
        bad_field("INVALID_POLICY", "policy.required_approvals", "required_approvals must be between 1 and 10")
    })
}
