//! `promote`, `tasks`, `requests`, `accept`, `reject` and `cancel` (PromotionService, on
//! the installation service hosting each target), with `promote` chaining the package
//! steps a promotion needs after checking, before it creates anything, that they can work.
use super::env::{kind_name, more};
use super::install::{confirm_production, find_installation, print_installation};
use super::objects::new_request_id;
use super::packages::{self, status_name, wait_extracted, CreateArgs};
use crate::connect::{PromotionClient, Session};
use crate::error::CliError;
use crate::output::{cell, details, emit, note, or_dash, time, Format, Out, Progress, Style, Table};
use crate::parse::{
    collections, parse_override, parse_promotion_status, parse_root, short, translation_map, Override, Root,
};
use crate::{GlobalArgs, PageArgs};
use promotion_api::v1 as pb;
use promotion_core::identity::{Binding, Identity, Permission, Role};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    # new package from the roots, then a request into qa\n  \
    promotion promote --to qa --name \"Agency onboarding\" --source dev \\\n    \
    --root TMPL:6419b8b9001151ee258921a4f7597bb2 --comment \"first cut\"\n  \
    # the same package again, re-extracted with today's content of dev\n  \
    promotion promote --to qa --package PACKAGE_ID --refresh\n\n\
    Steps: check that the target exists, that you may package and request promotions from\n\
    the source, and that the roots exist there; reuse the package (--package, or the newest\n\
    non-retired one of that --name and --source) or create it; re-extract it with --refresh;\n\
    wait for the extraction; take it through the statuses the target needs (BUILDING ->\n\
    PREVIEW for a sandbox, BUILDING -> PREVIEW -> PUBLIC for production); request the\n\
    promotion. A package this command created is deleted again if a later step fails. An\n\
    approver of the target then sees the request in `promotion tasks`.")]
pub struct PromoteArgs {
    /// Target environment.
    #[arg(long)]
    pub to: String,
    /// Reuse this package.
    #[arg(long, conflicts_with_all = ["name", "source"])]
    pub package: Option<String>,
    /// Package name: reuses the newest non-retired package of this name from --source,
    /// else creates one from the --root objects.
    #[arg(long, requires = "source", required_unless_present = "package")]
    pub name: Option<String>,
    /// Source environment of a new package.
    #[arg(long, short = 's')]
    pub source: Option<String>,
    /// Root objects of a new package, TYPE:ID[:NAME] (repeatable); with --refresh, new roots.
    #[arg(long = "root", value_name = "TYPE:ID[:NAME]", value_parser = parse_root)]
    pub roots: Vec<Root>,
    /// Description of a new package.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub description: String,
    /// Re-extract a reused package first (back to BUILDING if needed), picking up the
    /// source's current content as a new version.
    #[arg(long)]
    pub refresh: bool,
    /// Comment for the approvers.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub comment: String,
    /// Idempotency key (UUID) of the promotion request.
    #[arg(long)]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Args, Debug)]
pub struct TasksArgs {
    #[command(flatten)]
    pub page: PageArgs,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Args, Debug)]
pub struct RequestsArgs {
    #[command(subcommand)]
    pub command: RequestsCommand,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum RequestsCommand {
    /// List promotion requests, newest first.
    List {
        /// Only requests into (or from) this environment.
        #[arg(long, short = 'e')]
        env: Option<String>,
        /// Only requests in this status: pending (to_be_validated), accepted, rejected, cancelled.
        #[arg(long, value_parser = parse_promotion_status)]
        status: Option<pb::PromotionStatus>,
        /// Only requests for this package.
        #[arg(long)]
        package: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one promotion request.
    Show {
        /// Promotion request id.
        id: String,
    },
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Review first with `promotion prerun --request REQUEST_ID`: accepting installs exactly\n\
    that plan (plus --override). Example:\n  \
    promotion accept REQUEST_ID --comment \"looks good\" \\\n    \
    --override GROUP:SOURCE_ID=USEEXISTING:TARGET_ID\n\n\
    If the target changed since the plan was made, accepting is refused (PRE_RUN_STALE) and\n\
    nothing is written: review a fresh plan with `promotion prerun --request REQUEST_ID --attach`,\n\
    or accept with --replan.\n\n\
    With --output id, prints the id of the installation it made.")]
pub struct AcceptArgs {
    /// Promotion request id.
    pub id: String,
    /// Change one entry of the plan (repeatable): TYPE:SOURCE_ID=ACTION[:TARGET_OR_ALT_NAME].
    #[arg(long = "override", value_name = "TYPE:ID=ACTION[:TARGET_OR_ALT_NAME]", value_parser = parse_override)]
    pub overrides: Vec<Override>,
    /// Delete children an earlier promotion created that the package no longer has.
    #[arg(long)]
    pub prune_children: bool,
    /// Accept into a PRODUCTION environment without asking (required there when standard
    /// input is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Plan again against the target as it is now and install that, instead of the plan
    /// the request carries (which you may not have reviewed).
    #[arg(long)]
    pub replan: bool,
    /// Comment recorded with the decision.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub comment: String,
    /// Admins: proceed although the environment's policy closes it now (outside its
    /// promotion windows or in a freeze); the reason is audited.
    #[arg(long, value_name = "REASON", default_value = "", hide_default_value = true)]
    pub override_window: String,
    /// Idempotency key (UUID).
    #[arg(long)]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Args, Debug)]
pub struct DecideArgs {
    /// Promotion request id.
    pub id: String,
    /// Comment recorded with the decision.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub comment: String,
    /// Idempotency key (UUID).
    #[arg(long)]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// The statuses a package goes through, in order, to be installable into an environment of
/// `kind` (the lifecycle allows BUILDING -> PREVIEW -> PUBLIC only step by step); empty when
/// its current status already allows it.
pub fn lifecycle_steps(current: pb::PackageStatus, kind: pb::EnvironmentKind) -> Vec<pb::PackageStatus> {
    use pb::PackageStatus::{Building, Preview, Public};
    match (current, kind) {
        (Public, _) | (Preview, pb::EnvironmentKind::Sandbox) => vec![],
        (Preview, _) => vec![Public],
        (Building, pb::EnvironmentKind::Sandbox) => vec![Preview],
        (Building, _) => vec![Preview, Public],
        // RETIRED must go back to BUILDING first; EXTRACTING / EXTRACTION_FAILED cannot move.
        _ => vec![],
    }
}

/// The caller's identity as the package service sees it, for checks made before anything
/// is written.
async fn identity(session: &Session) -> Result<Identity, CliError> {
    let who = session.auth().await?.who_am_i(session.request(pb::WhoAmIRequest {})).await?.into_inner();
    let bindings = who
        .bindings
        .iter()
        .filter_map(|b| Some(Binding { role: Role::parse(&b.role)?, environment: b.environment.clone() }))
        .collect();
    Ok(Identity { subject: who.subject, organization: who.organization, bindings, expires_at: 0 })
}

fn denied(permission: Permission, environment: &str, what: &str) -> CliError {
    promotion_api::status::status(
        tonic::Code::PermissionDenied,
        "PERMISSION_DENIED",
        format!("you lack {} on environment {environment}, which {what}; nothing was created", permission.as_str()),
        [("permission", permission.as_str().to_string()), ("environment", environment.to_string())],
    )
    .into()
}

pub async fn promote(session: &Session, out: &Out, a: PromoteArgs) -> Result<(), CliError> {
    // Everything that can be checked is checked before anything is created.
    let target = super::env::get_environment(session, &a.to).await?;
    let kind = pb::EnvironmentKind::try_from(target.kind).unwrap_or(pb::EnvironmentKind::Production);
    let existing = match (&a.package, &a.name, &a.source) {
        (Some(id), _, _) => Some(packages::get(session, id).await?),
        (None, Some(name), Some(source)) => find_by_name(session, name, source).await?,
        _ => return Err(CliError::usage("name the package: --package ID, or --name and --source")),
    };
    let source = existing.as_ref().map(|p| p.source_environment.clone()).or(a.source.clone()).unwrap_or_default();
    if source == a.to {
        return Err(CliError::usage(format!("the package comes from {source}: promote it into another environment")));
    }
    let me = identity(session).await?;
    let creating = existing.is_none();
    let changes_package = creating
        || a.refresh
        || existing.as_ref().is_some_and(|p| {
            let current = pb::PackageStatus::try_from(p.status).unwrap_or(pb::PackageStatus::Unspecified);
            !lifecycle_steps(current, kind).is_empty()
        });
    if changes_package && !me.allows(Permission::PackageWrite, &source) {
        return Err(denied(Permission::PackageWrite, &source, "creating or moving the package needs"));
    }
    if !me.allows(Permission::PromotionRequest, &source) {
        return Err(denied(Permission::PromotionRequest, &source, "requesting the promotion needs"));
    }
    if let Some(p) = &existing {
        let retired = p.status == pb::PackageStatus::Retired as i32;
        if retired && !a.refresh {
            return Err(CliError::failed(format!(
                "package {} is RETIRED; move it back first (`promotion package update {} --status building`) or use --refresh",
                p.id, p.id
            )));
        }
        if !a.refresh && !a.roots.is_empty() {
            return Err(CliError::usage(
                "the package exists: add --refresh to re-extract it with the given --root objects",
            ));
        }
        let pending = pb::ListPromotionRequestsRequest {
            environment: a.to.clone(),
            status: pb::PromotionStatus::ToBeValidated as i32,
            package_id: p.id.clone(),
            ..Default::default()
        };
        let mut promotions = session.promotions_for(&a.to).await?;
        let pending = promotions.list_promotion_requests(session.request(pending)).await?.into_inner();
        if let Some(r) = pending.promotion_requests.iter().find(|r| r.target_environment == a.to) {
            return Err(promotion_api::status::status(
                tonic::Code::AlreadyExists,
                "PROMOTION_ALREADY_IN_PROGRESS",
                format!(
                    "promotion request {} of this package into {} is still pending; nothing was changed: \
                     wait until it is accepted, rejected or cancelled (`promotion cancel {}`)",
                    r.id, a.to, r.id
                ),
                [("existing_request", r.id.clone())],
            )
            .into());
        }
    } else if a.roots.is_empty() {
        return Err(CliError::usage("no package of that name yet: give its roots with --root TYPE:ID[:NAME]"));
    }
    // The roots must exist in the source, or the extraction would fail after creating.
    if creating || a.refresh {
        let mut objects = session.environments_for(&source).await?;
        for root in &a.roots {
            let get = pb::GetObjectRequest {
                environment: source.clone(),
                obj_code: root.obj_code.clone(),
                id: root.id.clone(),
            };
            objects.get_object(session.request(get)).await.map_err(|e| {
                let e = CliError::from(e);
                match e.code() {
                    "NOT_FOUND" => CliError::failed(format!(
                        "root {}:{} does not exist in {source} ({e}); nothing was created",
                        root.obj_code, root.id
                    )),
                    _ => e,
                }
            })?;
        }
    }

    let (package, created) = match existing {
        Some(p) => {
            note(
                out,
                format!("Using package {} {:?} ({}, version {})", p.id, p.name, status_name(p.status), p.version),
            );
            let p = if a.refresh { refresh(session, out, p, &a.roots).await? } else { p };
            (p, false)
        }
        None => {
            let args = CreateArgs {
                name: a.name.clone().unwrap_or_default(),
                source: source.clone(),
                roots: a.roots.clone(),
                description: a.description.clone(),
                private: false,
                wait: true,
                request_id: None,
            };
            let p = packages::create_package(session, &args).await?;
            note(out, format!("Created package {} from {}", p.id, p.source_environment));
            (p, true)
        }
    };
    let result = finish_promotion(session, out, &a, package.clone(), kind).await;
    if result.is_err() && created {
        // No package left behind half-way: this command made it, and nobody asked for it.
        let request =
            pb::DeletePackageRequest { id: package.id.clone(), etag: String::new(), request_id: new_request_id() };
        match session.packages().await?.delete_package(session.request(request)).await {
            Ok(_) => note(out, format!("Deleted package {} again: the promotion did not go through", package.id)),
            Err(e) => note(out, format!("Could not delete package {} again: {}", package.id, CliError::from(e))),
        }
    }
    let promotion = result?;
    note(
        out,
        format!(
            "Requested promotion of {:?} version {} into {}; an approver of {} accepts it with `promotion accept {}`",
            promotion.package_name,
            promotion.package_version,
            promotion.target_environment,
            promotion.target_environment,
            promotion.id
        ),
    );
    print_request(out, &promotion)
}

/// Waits for the extraction, takes the package through the statuses the target needs and
/// requests the promotion.
async fn finish_promotion(
    session: &Session,
    out: &Out,
    a: &PromoteArgs,
    package: pb::Package,
    kind: pb::EnvironmentKind,
) -> Result<pb::PromotionRequest, CliError> {
    let mut package = wait_extracted(session, out, package).await?;
    packages::fail_if_extraction_failed(&package)?;
    let current = pb::PackageStatus::try_from(package.status).unwrap_or(pb::PackageStatus::Unspecified);
    for status in lifecycle_steps(current, kind) {
        package = packages::set_status(session, &package.id, &package.etag, status).await?;
        note(
            out,
            format!(
                "Package {} is now {} (installable into {} environments)",
                package.id,
                status_name(package.status),
                if status == pb::PackageStatus::Public {
                    "all".to_string()
                } else {
                    kind_name(pb::EnvironmentKind::Sandbox as i32)
                }
            ),
        );
    }
    let request = pb::RequestPromotionRequest {
        package_id: package.id.clone(),
        package_version: package.version,
        target_environment: a.to.clone(),
        comment: a.comment.clone(),
        request_id: a.request_id.clone().unwrap_or_else(new_request_id),
        // The service plans the package into the target now: the plan approvers review.
        pre_run_id: String::new(),
    };
    Ok(session.promotions_for(&a.to).await?.request_promotion(session.request(request)).await?.into_inner())
}

/// A promotion request and a client of the installation service that has it (the one
/// hosting its target).
pub async fn find_request(session: &Session, id: &str) -> Result<(PromotionClient, pb::PromotionRequest), CliError> {
    let (address, request) = session
        .find(|address| async move {
            let get = pb::GetPromotionRequestRequest { id: id.to_string() };
            Ok(session.promotions_at(&address).await?.get_promotion_request(session.request(get)).await?.into_inner())
        })
        .await?;
    Ok((session.promotions_at(&address).await?, request))
}

async fn find_by_name(session: &Session, name: &str, source: &str) -> Result<Option<pb::Package>, CliError> {
    let mut client = session.packages().await?;
    let mut request = pb::ListPackagesRequest { source_environment: source.to_string(), ..Default::default() };
    loop {
        let page = client.list_packages(session.request(request.clone())).await?.into_inner();
        // Newest first: the first match is the most recent package of that name.
        if let Some(p) = page.packages.into_iter().find(|p| p.name == name) {
            return Ok(Some(p));
        }
        if page.next_page_token.is_empty() {
            return Ok(None);
        }
        request.page_token = page.next_page_token;
    }
}

/// Back to BUILDING when needed, then re-extraction with the given or current roots.
async fn refresh(
    session: &Session,
    out: &Out,
    mut package: pb::Package,
    roots: &[Root],
) -> Result<pb::Package, CliError> {
    let editable = [pb::PackageStatus::Building as i32, pb::PackageStatus::ExtractionFailed as i32];
    if !editable.contains(&package.status) {
        package = packages::set_status(session, &package.id, &package.etag, pb::PackageStatus::Building).await?;
    }
    let collections = if roots.is_empty() { package.object_collections.clone() } else { collections(roots) };
    let update = pb::Package {
        id: package.id.clone(),
        etag: package.etag.clone(),
        object_collections: collections,
        ..Default::default()
    };
    let package = packages::update_package(session, update, &["object_collections"]).await?;
    note(out, format!("Re-extracting package {} from {}", package.id, package.source_environment));
    Ok(package)
}

pub fn promotion_status(status: i32) -> String {
    pb::PromotionStatus::try_from(status)
        .map_or_else(|_| status.to_string(), |s| short(s.as_str_name(), "PROMOTION_STATUS_"))
}

fn promotion_style(status: i32) -> Style {
    match pb::PromotionStatus::try_from(status) {
        Ok(pb::PromotionStatus::ToBeValidated) => Style::Yellow,
        Ok(pb::PromotionStatus::Accepted) => Style::Green,
        Ok(pb::PromotionStatus::Rejected) => Style::Red,
        _ => Style::Dim,
    }
}

fn print_request(out: &Out, r: &pb::PromotionRequest) -> Result<(), CliError> {
    emit(out, r, std::slice::from_ref(&r.id), || render_request(out, r))
}

fn render_request(out: &Out, r: &pb::PromotionRequest) -> String {
    let mut pairs = vec![
        ("Promotion request", r.id.clone().into()),
        ("Status", cell(promotion_status(r.status), promotion_style(r.status))),
        ("Package", format!("{} {:?} version {}", r.package_id, r.package_name, r.package_version).into()),
        ("From → to", format!("{} → {}", r.source_environment, r.target_environment).into()),
        (
            "Update",
            (if r.is_update {
                "yes: installed there before, accepting updates it"
            } else {
                "no: first promotion there"
            })
            .into(),
        ),
        ("Requested", format!("{} by {}", time(&r.create_time), or_dash(&r.requested_by)).into()),
        ("Comment", or_dash(&r.comment).into()),
        ("Updated", time(&r.update_time).into()),
    ];
    let approvers: Vec<String> = r.approvals.iter().map(|a| format!("{} ({})", a.approver, time(&a.time))).collect();
    let approvals = format!("{} of {} required", r.approvals.len(), r.required_approvals.max(1));
    let approvals = if approvers.is_empty() { approvals } else { format!("{approvals}: {}", approvers.join(", ")) };
    pairs.push(("Approvals", approvals.into()));
    if !r.decided_by.is_empty() {
        pairs.push(("Decided by", r.decided_by.clone().into()));
        pairs.push(("Decision comment", or_dash(&r.decision_comment).into()));
    }
    if !r.pre_run_id.is_empty() {
        pairs.push(("Plan (pre-run)", r.pre_run_id.clone().into()));
    }
    if !r.installation_id.is_empty() {
        let status = match pb::InstallationStatus::try_from(r.installation_status) {
            Ok(pb::InstallationStatus::Unspecified) | Err(_) => String::new(),
            Ok(s) => format!(" ({})", short(s.as_str_name(), "INSTALLATION_STATUS_")),
        };
        pairs.push(("Installation", format!("{}{status}", r.installation_id).into()));
    }
    if !r.last_error.is_empty() {
        pairs.push(("Last error", cell(r.last_error.clone(), Style::Red)));
    }
    details(out, &pairs)
}

fn requests_table(out: &Out, requests: &[pb::PromotionRequest]) -> String {
    let mut table = Table::new(&["ID", "PACKAGE", "VERSION", "FROM", "TO", "STATUS", "UPDATE", "REQUESTED", "BY"]);
    for r in requests {
        table.row(vec![
            cell(&r.id, Style::Dim),
            cell(&r.package_name, Style::Bold),
            r.package_version.to_string().into(),
            r.source_environment.as_str().into(),
            r.target_environment.as_str().into(),
            cell(promotion_status(r.status), promotion_style(r.status)),
            (if r.is_update { "yes" } else { "-" }).into(),
            time(&r.create_time).into(),
            r.requested_by.as_str().into(),
        ]);
    }
    table.render(out, "")
}

/// Runs `list` on every installation service (each knows the requests into the
/// environments it hosts) and merges the answers, newest first. A service that cannot be
/// reached is reported and skipped.
async fn on_every_service<F, Fut>(
    session: &Session,
    out: &Out,
    mut list: F,
) -> Result<Vec<pb::PromotionRequest>, CliError>
where
    F: FnMut(PromotionClient) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<pb::PromotionRequest>, CliError>>,
{
    let mut all = Vec::new();
    let mut reached = 0;
    let addresses = session.installation_services().await?;
    let count = addresses.len();
    let mut last_error = None;
    for address in addresses {
        let result = match session.promotions_at(&address).await {
            Ok(client) => list(client).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(found) => {
                reached += 1;
                all.extend(found);
            }
            Err(e @ CliError::Connect { .. }) if count > 1 => {
                note(out, format!("skipped: {e}"));
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    if reached == 0 {
        return Err(last_error.unwrap_or_else(|| CliError::failed("no installation service answered")));
    }
    let key = |r: &pb::PromotionRequest| r.create_time.as_ref().map(|t| (t.seconds, t.nanos)).unwrap_or_default();
    all.sort_by_key(|r| std::cmp::Reverse(key(r)));
    all.dedup_by(|a, b| a.id == b.id);
    Ok(all)
}

pub async fn tasks(session: &Session, out: &Out, a: TasksArgs) -> Result<(), CliError> {
    let page = a.page;
    if !page.page_token.is_empty() {
        return Err(CliError::usage("tasks gathers every installation service's tasks: --page-token does not apply"));
    }
    let requests = on_every_service(session, out, |mut client| async move {
        let mut found = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListPromotionTasksRequest { page_size: page.page_size, page_token };
            let next = client.list_promotion_tasks(session.request(request)).await?.into_inner();
            found.extend(next.promotion_requests);
            if next.next_page_token.is_empty() {
                return Ok(found);
            }
            page_token = next.next_page_token;
        }
    })
    .await?;
    let response = pb::ListPromotionTasksResponse { promotion_requests: requests, next_page_token: String::new() };
    let ids: Vec<String> = response.promotion_requests.iter().map(|r| r.id.clone()).collect();
    emit(out, &response, &ids, || {
        if response.promotion_requests.is_empty() {
            return "No pending promotion requests for you.\n".into();
        }
        requests_table(out, &response.promotion_requests)
            + &out.paint(
                Style::Dim,
                "\nAccept with `promotion accept ID`, reject with `promotion reject ID --comment WHY`.\n",
            )
    })
}

pub async fn requests(session: &Session, out: &Out, command: RequestsCommand) -> Result<(), CliError> {
    match command {
        RequestsCommand::Show { id } => {
            let (_, r) = find_request(session, &id).await?;
            print_request(out, &r)
        }
        RequestsCommand::List { env, status, package, page } => {
            if !page.page_token.is_empty() {
                return Err(CliError::usage(
                    "requests gathers every installation service's requests: --page-token does not apply",
                ));
            }
            let request = pb::ListPromotionRequestsRequest {
                environment: env.unwrap_or_default(),
                status: status.map_or(0, |s| s as i32),
                package_id: package.unwrap_or_default(),
                page_size: page.page_size,
                page_token: String::new(),
            };
            let requests = on_every_service(session, out, |mut client| {
                let mut request = request.clone();
                async move {
                    let mut found = Vec::new();
                    loop {
                        let next = client.list_promotion_requests(session.request(request.clone())).await?.into_inner();
                        found.extend(next.promotion_requests);
                        if next.next_page_token.is_empty() {
                            return Ok(found);
                        }
                        request.page_token = next.next_page_token;
                    }
                }
            })
            .await?;
            let response =
                pb::ListPromotionRequestsResponse { promotion_requests: requests, next_page_token: String::new() };
            let ids: Vec<String> = response.promotion_requests.iter().map(|r| r.id.clone()).collect();
            emit(out, &response, &ids, || requests_table(out, &response.promotion_requests) + &more(out, ""))
        }
    }
}

pub async fn accept(session: &Session, out: &Out, a: AcceptArgs) -> Result<(), CliError> {
    let (mut client, found) = find_request(session, &a.id).await?;
    let what = format!("Accept promotion request {} (installs package {:?})", a.id, found.package_name);
    confirm_production(session, &found.target_environment, a.yes, &what).await?;
    let request = pb::AcceptPromotionRequestRequest {
        id: a.id,
        translation_map: translation_map(&a.overrides),
        comment: a.comment,
        request_id: a.request_id.unwrap_or_else(new_request_id),
        prune_children: a.prune_children,
        replan: a.replan,
        window_override_reason: a.override_window,
    };
    let progress =
        Progress::start(if a.replan { "Planning again and installing…" } else { "Installing the reviewed plan…" });
    let result = client.accept_promotion_request(session.request(request)).await;
    progress.finish().await;
    let r = result?.into_inner();
    if r.installation_id.is_empty() {
        // An approval short of the count: nothing was installed yet.
        note(
            out,
            format!(
                "Approved: {} of {} approvals; the request stays pending until another approver accepts it",
                r.approvals.len(),
                r.required_approvals
            ),
        );
    }
    if out.format == Format::Id {
        println!("{}", r.installation_id);
        return Ok(());
    }
    print_request(out, &r)?;
    if out.format == Format::Human && !r.installation_id.is_empty() {
        let (mut installations, installation) = find_installation(session, &r.installation_id).await?;
        println!();
        print_installation(session, &mut installations, out, installation).await?;
    }
    Ok(())
}

pub async fn close(session: &Session, out: &Out, a: DecideArgs, cancel: bool) -> Result<(), CliError> {
    let (mut client, _) = find_request(session, &a.id).await?;
    let request_id = a.request_id.unwrap_or_else(new_request_id);
    let r = if cancel {
        let request = pb::CancelPromotionRequestRequest { id: a.id, comment: a.comment, request_id };
        client.cancel_promotion_request(session.request(request)).await?.into_inner()
    } else {
        let request = pb::RejectPromotionRequestRequest { id: a.id, comment: a.comment, request_id };
        client.reject_promotion_request(session.request(request)).await?.into_inner()
    };
    note(out, format!("Promotion request {} is now {}", r.id, promotion_status(r.status)));
    print_request(out, &r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::EnvironmentKind::{Production, Sandbox};
    use pb::PackageStatus::*;

    #[test]
    fn sandboxes_need_preview_and_production_needs_public_one_step_at_a_time() {
        assert_eq!(lifecycle_steps(Building, Sandbox), [Preview]);
        assert!(lifecycle_steps(Preview, Sandbox).is_empty());
        assert!(lifecycle_steps(Public, Sandbox).is_empty());
        assert_eq!(lifecycle_steps(Building, Production), [Preview, Public]);
        assert_eq!(lifecycle_steps(Preview, Production), [Public]);
        assert!(lifecycle_steps(Public, Production).is_empty());
    }
}
