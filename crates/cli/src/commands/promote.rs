//! `promote`, `tasks`, `requests`, `accept`, `reject` and `cancel` (PromotionService),
//! with `promote` chaining the package steps a promotion needs.
use super::env::{kind_name, more};
use super::install::{get_installation, print_installation};
use super::objects::new_request_id;
use super::packages::{self, status_name, wait_extracted, CreateArgs};
use crate::connect::Session;
use crate::error::CliError;
use crate::output::{cell, details, emit, note, or_dash, time, Format, Out, Progress, Style, Table};
use crate::parse::{
    collections, parse_override, parse_promotion_status, parse_root, short, translation_map, Override, Root,
};
use crate::{GlobalArgs, PageArgs};
use promotion_api::v1 as pb;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    # new package from the roots, then a request into qa\n  \
    promotion promote --to qa --name \"Agency onboarding\" --source dev \\\n    \
    --root TMPL:6419b8b9001151ee258921a4f7597bb2 --comment \"first cut\"\n  \
    # the same package again, re-extracted with today's content of dev\n  \
    promotion promote --to qa --package PACKAGE_ID --refresh\n\n\
    Steps: reuse the package (--package, or the newest non-retired one of that --name and\n\
    --source) or create it; re-extract it with --refresh; wait for the extraction; make it\n\
    PREVIEW (sandbox target) or PUBLIC (production target) unless it already is; request\n\
    the promotion. An approver of the target then sees it in `promotion tasks`.")]
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
#[command(after_help = "Review first with `promotion prerun --request REQUEST_ID`. Example:\n  \
    promotion accept REQUEST_ID --comment \"looks good\" \\\n    \
    --override GROUP:SOURCE_ID=USEEXISTING:TARGET_ID\n\n\
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
    /// Comment recorded with the decision.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub comment: String,
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

/// The status a package needs to be installable into an environment of `kind`; None when
/// its current status already allows it.
pub fn needed_status(current: pb::PackageStatus, kind: pb::EnvironmentKind) -> Option<pb::PackageStatus> {
    match (current, kind) {
        (pb::PackageStatus::Public, _) => None,
        (pb::PackageStatus::Preview, pb::EnvironmentKind::Sandbox) => None,
        (_, pb::EnvironmentKind::Sandbox) => Some(pb::PackageStatus::Preview),
        _ => Some(pb::PackageStatus::Public),
    }
}

pub async fn promote(session: &Session, out: &Out, a: PromoteArgs) -> Result<(), CliError> {
    let request = pb::GetEnvironmentRequest { id: a.to.clone() };
    let target = session.environments().await?.get_environment(session.request(request)).await?.into_inner();
    let kind = pb::EnvironmentKind::try_from(target.kind).unwrap_or(pb::EnvironmentKind::Production);

    let mut package = find_or_create(session, out, &a).await?;
    package = wait_extracted(session, out, package).await?;
    packages::fail_if_extraction_failed(&package)?;
    let current = pb::PackageStatus::try_from(package.status).unwrap_or(pb::PackageStatus::Unspecified);
    if let Some(status) = needed_status(current, kind) {
        if current == pb::PackageStatus::Retired {
            return Err(CliError::failed(format!(
                "package {} is RETIRED; move it back first (`promotion package update {} --status building`) or use --refresh",
                package.id, package.id
            )));
        }
        package = packages::set_status(session, &package.id, &package.etag, status).await?;
        note(
            out,
            format!(
                "Package {} is now {} (installable into {} environments)",
                package.id,
                status_name(package.status),
                kind_name(target.kind)
            ),
        );
    }

    let request = pb::RequestPromotionRequest {
        package_id: package.id.clone(),
        package_version: package.version,
        target_environment: a.to.clone(),
        comment: a.comment.clone(),
        request_id: a.request_id.clone().unwrap_or_else(new_request_id),
    };
    let promotion = session.promotions().await?.request_promotion(session.request(request)).await?.into_inner();
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

/// The package `promote` works on: given, found by name, or created; re-extracted with --refresh.
async fn find_or_create(session: &Session, out: &Out, a: &PromoteArgs) -> Result<pb::Package, CliError> {
    let existing = match (&a.package, &a.name, &a.source) {
        (Some(id), _, _) => Some(packages::get(session, id).await?),
        (None, Some(name), Some(source)) => find_by_name(session, name, source).await?,
        _ => return Err(CliError::usage("name the package: --package ID, or --name and --source")),
    };
    let Some(package) = existing else {
        if a.roots.is_empty() {
            return Err(CliError::usage("no package of that name yet: give its roots with --root TYPE:ID[:NAME]"));
        }
        let args = CreateArgs {
            name: a.name.clone().unwrap_or_default(),
            source: a.source.clone().unwrap_or_default(),
            roots: a.roots.clone(),
            description: a.description.clone(),
            private: false,
            wait: true,
            request_id: None,
        };
        let created = packages::create_package(session, &args).await?;
        note(out, format!("Created package {} from {}", created.id, created.source_environment));
        return Ok(created);
    };
    note(
        out,
        format!(
            "Using package {} {:?} ({}, version {})",
            package.id,
            package.name,
            status_name(package.status),
            package.version
        ),
    );
    if !a.refresh {
        if !a.roots.is_empty() {
            return Err(CliError::usage(
                "the package exists: add --refresh to re-extract it with the given --root objects",
            ));
        }
        return Ok(package);
    }
    refresh(session, out, package, &a.roots).await
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
        ("Promotion request", r.id.clone()),
        ("Status", out.paint(promotion_style(r.status), &promotion_status(r.status))),
        ("Package", format!("{} {:?} version {}", r.package_id, r.package_name, r.package_version)),
        ("From → to", format!("{} → {}", r.source_environment, r.target_environment)),
        (
            "Update",
            (if r.is_update {
                "yes: installed there before, accepting updates it"
            } else {
                "no: first promotion there"
            })
            .into(),
        ),
        ("Requested", format!("{} by {}", time(&r.create_time), or_dash(&r.requested_by))),
        ("Comment", or_dash(&r.comment)),
        ("Updated", time(&r.update_time)),
    ];
    if !r.decided_by.is_empty() {
        pairs.push(("Decided by", r.decided_by.clone()));
        pairs.push(("Decision comment", or_dash(&r.decision_comment)));
    }
    if !r.installation_id.is_empty() {
        pairs.push(("Installation", r.installation_id.clone()));
    }
    if !r.last_error.is_empty() {
        pairs.push(("Last error", out.paint(Style::Red, &r.last_error)));
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

pub async fn tasks(session: &Session, out: &Out, a: TasksArgs) -> Result<(), CliError> {
    let mut client = session.promotions().await?;
    let page = a.page;
    let mut response = pb::ListPromotionTasksResponse { promotion_requests: vec![], next_page_token: page.page_token };
    loop {
        let request = pb::ListPromotionTasksRequest {
            page_size: page.page_size,
            page_token: std::mem::take(&mut response.next_page_token),
        };
        let next = client.list_promotion_tasks(session.request(request)).await?.into_inner();
        response.promotion_requests.extend(next.promotion_requests);
        response.next_page_token = next.next_page_token;
        if !page.all || response.next_page_token.is_empty() {
            break;
        }
    }
    let ids: Vec<String> = response.promotion_requests.iter().map(|r| r.id.clone()).collect();
    emit(out, &response, &ids, || {
        if response.promotion_requests.is_empty() {
            return "No pending promotion requests for you.\n".into();
        }
        requests_table(out, &response.promotion_requests)
            + &more(out, &response.next_page_token)
            + &out.paint(
                Style::Dim,
                "\nAccept with `promotion accept ID`, reject with `promotion reject ID --comment WHY`.\n",
            )
    })
}

pub async fn requests(session: &Session, out: &Out, command: RequestsCommand) -> Result<(), CliError> {
    let mut client = session.promotions().await?;
    match command {
        RequestsCommand::Show { id } => {
            let request = pb::GetPromotionRequestRequest { id };
            let r = client.get_promotion_request(session.request(request)).await?.into_inner();
            print_request(out, &r)
        }
        RequestsCommand::List { env, status, package, page } => {
            let mut request = pb::ListPromotionRequestsRequest {
                environment: env.unwrap_or_default(),
                status: status.map_or(0, |s| s as i32),
                package_id: package.unwrap_or_default(),
                page_size: page.page_size,
                page_token: String::new(),
            };
            let mut response =
                pb::ListPromotionRequestsResponse { promotion_requests: vec![], next_page_token: page.page_token };
            loop {
                request.page_token = std::mem::take(&mut response.next_page_token);
                let next = client.list_promotion_requests(session.request(request.clone())).await?.into_inner();
                response.promotion_requests.extend(next.promotion_requests);
                response.next_page_token = next.next_page_token;
                if !page.all || response.next_page_token.is_empty() {
                    break;
                }
            }
            let ids: Vec<String> = response.promotion_requests.iter().map(|r| r.id.clone()).collect();
            emit(out, &response, &ids, || {
                requests_table(out, &response.promotion_requests) + &more(out, &response.next_page_token)
            })
        }
    }
}

pub async fn accept(session: &Session, out: &Out, a: AcceptArgs) -> Result<(), CliError> {
    let request = pb::AcceptPromotionRequestRequest {
        id: a.id,
        translation_map: translation_map(&a.overrides),
        comment: a.comment,
        request_id: a.request_id.unwrap_or_else(new_request_id),
        prune_children: a.prune_children,
    };
    let progress = Progress::start("Pre-running and installing…");
    let result = session.promotions().await?.accept_promotion_request(session.request(request)).await;
    progress.finish().await;
    let r = result?.into_inner();
    if out.format == Format::Id {
        println!("{}", r.installation_id);
        return Ok(());
    }
    print_request(out, &r)?;
    if out.format == Format::Human && !r.installation_id.is_empty() {
        let installation = get_installation(session, r.installation_id.clone()).await?;
        println!();
        print_installation(session, out, installation).await?;
    }
    Ok(())
}

pub async fn close(session: &Session, out: &Out, a: DecideArgs, cancel: bool) -> Result<(), CliError> {
    let mut client = session.promotions().await?;
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
    fn sandboxes_need_preview_and_production_needs_public() {
        assert_eq!(needed_status(Building, Sandbox), Some(Preview));
        assert_eq!(needed_status(Preview, Sandbox), None);
        assert_eq!(needed_status(Public, Sandbox), None);
        assert_eq!(needed_status(Building, Production), Some(Public));
        assert_eq!(needed_status(Preview, Production), Some(Public));
        assert_eq!(needed_status(Public, Production), None);
        assert_eq!(needed_status(Retired, Sandbox), Some(Preview));
    }
}
