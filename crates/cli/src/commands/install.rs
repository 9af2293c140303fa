//! `prerun`, `install`, `installations list/show` and `rollback` (InstallationService),
//! with the per-type translation tables and coloured field diffs, each call sent to the
//! installation service hosting the environment; installing into a PRODUCTION
//! environment and a forced rollback ask first.
use std::collections::HashMap;

use prost_types::Value;
use serde_json::Value as Json;

use super::env::more;
use super::objects::new_request_id;
use super::packages;
use crate::connect::{InstallationClient, Session};
use crate::error::CliError;
use crate::output::{
    cell, confirm, counts, details, emit, note, or_dash, painted, safe, time, Out, Progress, Style, Table,
};
use crate::parse::{parse_override, short, translation_map, Override};
use crate::{GlobalArgs, PageArgs};
use promotion_api::convert::value_to_json;
use promotion_api::v1 as pb;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  promotion prerun PACKAGE_ID --env qa\n  promotion prerun --request PROMOTION_REQUEST_ID   # the plan accepting it installs\n  \
    promotion prerun --request PROMOTION_REQUEST_ID --attach   # plan again, for accepting to install\n  \
    promotion prerun --get PRE_RUN_ID\n\n\
    Each type gets a table: the action planned for every object of the package (CREATE,\n\
    USEEXISTING, OVERWRITING, IGNORE, CREATEWITHALTNAME), how it matched a destination\n\
    object (HISTORY, ID, NAME), any collision, the target id; then the field changes of\n\
    matched objects (- before, + after). Changes the plan will not apply (an object kept\n\
    as USEEXISTING or IGNORE, such as one edited in the destination since the last\n\
    promotion) are marked \"not applied\"; the summary counts them and the collisions.\n\n\
    With --detailed-exitcode the exit status tells scripts what the plan does: 0 nothing\n\
    would change, 2 something would change, 1 an error (as terraform plan does)."
)]
pub struct PrerunArgs {
    /// Package id.
    #[arg(required_unless_present_any = ["get", "request"])]
    pub package: Option<String>,
    /// Destination environment.
    #[arg(long, short = 'e', required_unless_present_any = ["get", "request"])]
    pub env: Option<String>,
    /// Package version (0: the current one).
    #[arg(long, default_value_t = 0)]
    pub version: i64,
    /// Show an existing pre-run instead of making a new one.
    #[arg(long, value_name = "PRE_RUN_ID", conflicts_with_all = ["package", "env", "request"])]
    pub get: Option<String>,
    /// Show the plan this promotion request carries: exactly what accepting it installs.
    #[arg(long, value_name = "PROMOTION_REQUEST_ID", conflicts_with_all = ["package", "env", "version"])]
    pub request: Option<String>,
    /// With --request: plan the request's package version into its target again, as it is
    /// now, and attach that plan to the request (promotion.approve on the target).
    #[arg(long, requires = "request")]
    pub attach: bool,
    /// Leave out the field changes.
    #[arg(long)]
    pub no_changes: bool,
    /// Exit 0 when the plan changes nothing, 2 when it changes something, 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Idempotency key (UUID).
    #[arg(long)]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    promotion install PACKAGE_ID --env qa                 # plan and install the defaults\n  \
    promotion install --pre-run PRE_RUN_ID                # exactly that plan\n  \
    promotion install --pre-run PRE_RUN_ID \\\n    \
    --override GROUP:SOURCE_ID=USEEXISTING:TARGET_ID \\\n    \
    --override TMPL:SOURCE_ID=CREATEWITHALTNAME:\"Onboarding (v2)\" \\\n    \
    --override ROLE:SOURCE_ID=IGNORE")]
pub struct InstallArgs {
    /// Package id [default with --pre-run: the pre-run's].
    #[arg(required_unless_present = "pre_run")]
    pub package: Option<String>,
    /// Destination environment [default with --pre-run: the pre-run's].
    #[arg(long, short = 'e', required_unless_present = "pre_run")]
    pub env: Option<String>,
    /// Package version (0: the current one, or the pre-run's).
    #[arg(long, default_value_t = 0)]
    pub version: i64,
    /// Install exactly the plan of this pre-run; fails (nothing written) if the destination
    /// or the package changed since.
    #[arg(long, value_name = "PRE_RUN_ID")]
    pub pre_run: Option<String>,
    /// Change one entry of the plan (repeatable): TYPE:SOURCE_ID=ACTION, with :TARGET_ID for
    /// USEEXISTING / OVERWRITING and :NEW_NAME for CREATEWITHALTNAME.
    #[arg(long = "override", value_name = "TYPE:ID=ACTION[:TARGET_OR_ALT_NAME]", value_parser = parse_override)]
    pub overrides: Vec<Override>,
    /// Delete destination children that an earlier promotion from the same source created
    /// and the package no longer has (never children created locally).
    #[arg(long)]
    pub prune_children: bool,
    /// Install into a PRODUCTION environment without asking (required there when standard
    /// input is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
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
pub struct InstallationsArgs {
    #[command(subcommand)]
    pub command: InstallationsCommand,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum InstallationsCommand {
    /// List installations, newest first.
    List {
        /// Only installations of this package.
        #[arg(long)]
        package: Option<String>,
        /// Only installations into this environment.
        #[arg(long, short = 'e')]
        env: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show an installation with the status of every entry.
    Show {
        /// Installation id.
        id: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// Installation id.
    pub id: String,
    /// Roll back even though objects were modified since the installation (those changes
    /// are lost); asks first.
    #[arg(long)]
    pub force: bool,
    /// Do not ask before a forced rollback (required when standard input is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
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

pub async fn prerun(session: &Session, out: &Out, a: PrerunArgs) -> Result<(), CliError> {
    let pre_run = match (a.get, a.request) {
        (Some(id), _) => {
            let (address, _) = session.find(|address| get_pre_run_page(session, address, id.clone())).await?;
            let mut client = session.installations_at(&address).await?;
            get_pre_run(session, &mut client, id).await?
        }
        (None, Some(id)) => request_plan(session, id, a.attach, a.request_id).await?,
        (None, None) => {
            let request = pb::CreatePreRunRequest {
                package_id: a.package.unwrap_or_default(),
                package_version: a.version,
                destination_environment: a.env.unwrap_or_default(),
                request_id: a.request_id.unwrap_or_else(new_request_id),
            };
            create_pre_run(session, request).await?
        }
    };
    let order = type_order(session, &pre_run.package_id).await;
    emit(out, &pre_run, std::slice::from_ref(&pre_run.id), || render_pre_run(out, &pre_run, &order, !a.no_changes))?;
    if pre_run.status == pb::PreRunStatus::Failed as i32 {
        return Err(CliError::failed(format!("pre-run {} failed: {}", pre_run.id, or_dash(&pre_run.failure_reason))));
    }
    if a.detailed_exitcode {
        if pre_run.summary.get("INVALID").copied().unwrap_or(0) > 0 {
            return Err(CliError::failed(format!(
                "pre-run {} has invalid entries: it cannot be installed",
                pre_run.id
            )));
        }
        if plan_changes_something(&pre_run) {
            return Err(CliError::Exit(2));
        }
    }
    Ok(())
}

/// Whether installing the plan would write anything: a create, or an overwrite.
pub fn plan_changes_something(p: &pb::PreRun) -> bool {
    let writes = [
        pb::InstallAction::Create as i32,
        pb::InstallAction::Createwithaltname as i32,
        pb::InstallAction::Overwriting as i32,
    ];
    p.translation_map.values().flat_map(|t| t.entries.values()).any(|e| writes.contains(&e.action))
}

/// The first page of a pre-run (to find which service has it).
async fn get_pre_run_page(session: &Session, address: String, id: String) -> Result<pb::PreRun, CliError> {
    let request = pb::GetPreRunRequest { id, entries_page_size: 1, ..Default::default() };
    Ok(session.installations_at(&address).await?.get_pre_run(session.request(request)).await?.into_inner())
}

async fn create_pre_run(session: &Session, request: pb::CreatePreRunRequest) -> Result<pb::PreRun, CliError> {
    let mut client = session.installations_for(&request.destination_environment).await?;
    let progress = Progress::start(format!("Planning into {}…", request.destination_environment));
    let result = client.create_pre_run(session.request(request)).await;
    progress.finish().await;
    all_pre_run_entries(session, &mut client, result?.into_inner()).await
}

/// The plan a promotion request carries; with `attach`, a fresh one attached to it first.
async fn request_plan(
    session: &Session,
    id: String,
    attach: bool,
    request_id: Option<String>,
) -> Result<pb::PreRun, CliError> {
    let (mut promotions, promotion) = super::promote::find_request(session, &id).await?;
    if !attach && promotion.pre_run_id.is_empty() {
        return Err(CliError::failed(format!(
            "promotion request {id} carries no plan (it predates plans on requests); make one with --attach"
        )));
    }
    if !attach {
        let mut client = session.installations_for(&promotion.target_environment).await?;
        return get_pre_run(session, &mut client, promotion.pre_run_id).await;
    }
    let request = pb::CreatePreRunRequest {
        package_id: promotion.package_id,
        package_version: promotion.package_version,
        destination_environment: promotion.target_environment,
        request_id: request_id.unwrap_or_else(new_request_id),
    };
    let pre_run = create_pre_run(session, request).await?;
    let attach = pb::AttachPreRunRequest { id, pre_run_id: pre_run.id.clone(), request_id: new_request_id() };
    promotions.attach_pre_run(session.request(attach)).await?;
    Ok(pre_run)
}

async fn get_pre_run(session: &Session, client: &mut InstallationClient, id: String) -> Result<pb::PreRun, CliError> {
    let request = pb::GetPreRunRequest { id, ..Default::default() };
    let first = client.get_pre_run(session.request(request)).await?.into_inner();
    all_pre_run_entries(session, client, first).await
}

/// A pre-run's translation map comes a page at a time; this follows the pages.
async fn all_pre_run_entries(
    session: &Session,
    client: &mut InstallationClient,
    mut p: pb::PreRun,
) -> Result<pb::PreRun, CliError> {
    while !p.next_entries_page_token.is_empty() {
        let request = pb::GetPreRunRequest {
            id: p.id.clone(),
            entries_page_size: 0,
            entries_page_token: std::mem::take(&mut p.next_entries_page_token),
        };
        let page = client.get_pre_run(session.request(request)).await?.into_inner();
        merge_entries(&mut p.translation_map, page.translation_map);
        p.next_entries_page_token = page.next_entries_page_token;
    }
    Ok(p)
}

/// An installation's translation map comes a page at a time; this follows the pages.
async fn all_installation_entries(
    session: &Session,
    client: &mut InstallationClient,
    mut i: pb::Installation,
) -> Result<pb::Installation, CliError> {
    while !i.next_entries_page_token.is_empty() {
        let request = pb::GetInstallationRequest {
            id: i.id.clone(),
            entries_page_size: 0,
            entries_page_token: std::mem::take(&mut i.next_entries_page_token),
        };
        let page = client.get_installation(session.request(request)).await?.into_inner();
        merge_entries(&mut i.translation_map, page.translation_map);
        i.next_entries_page_token = page.next_entries_page_token;
    }
    Ok(i)
}

fn merge_entries(into: &mut HashMap<String, pb::TypeTranslation>, page: HashMap<String, pb::TypeTranslation>) {
    for (obj_code, t) in page {
        into.entry(obj_code).or_default().entries.extend(t.entries);
    }
}

/// The package's display order (roots first), so tables follow it; empty when the package
/// cannot be read (deleted since, say): the tables are then alphabetical.
async fn type_order(session: &Session, package_id: &str) -> Vec<String> {
    match packages::get(session, package_id).await {
        Ok(p) => p.metadata.map(|m| m.display_order).unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Asks before installing into a PRODUCTION environment, unless `yes`.
pub async fn confirm_production(session: &Session, environment: &str, yes: bool, what: &str) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    let e = super::env::get_environment(session, environment).await?;
    if e.kind == pb::EnvironmentKind::Production as i32 {
        confirm(
            &format!("{environment} is a PRODUCTION environment. {what}?"),
            &format!("install into the PRODUCTION environment {environment}"),
        )?;
    }
    Ok(())
}

pub async fn install(session: &Session, out: &Out, a: InstallArgs) -> Result<(), CliError> {
    let (mut package_id, mut destination) = (a.package.unwrap_or_default(), a.env.unwrap_or_default());
    if let Some(pre_run_id) = &a.pre_run {
        if package_id.is_empty() || destination.is_empty() {
            let (_, p) = session.find(|address| get_pre_run_page(session, address, pre_run_id.clone())).await?;
            if package_id.is_empty() {
                package_id = p.package_id;
            }
            if destination.is_empty() {
                destination = p.destination_environment;
            }
        }
    }
    confirm_production(session, &destination, a.yes, &format!("Install package {package_id} into it")).await?;
    let request = pb::CreateInstallationRequest {
        package_id,
        package_version: a.version,
        destination_environment: destination,
        pre_run_id: a.pre_run.unwrap_or_default(),
        translation_map: translation_map(&a.overrides),
        prune_children: a.prune_children,
        request_id: a.request_id.unwrap_or_else(new_request_id),
        window_override_reason: a.override_window,
    };
    let mut client = session.installations_for(&request.destination_environment).await?;
    let progress = Progress::start(format!("Installing into {}…", request.destination_environment));
    let result = client.create_installation(session.request(request)).await;
    progress.finish().await;
    let installation = result?.into_inner();
    print_installation(session, &mut client, out, installation).await
}

pub async fn print_installation(
    session: &Session,
    client: &mut InstallationClient,
    out: &Out,
    i: pb::Installation,
) -> Result<(), CliError> {
    let i = &all_installation_entries(session, client, i).await?;
    let order = type_order(session, &i.package_id).await;
    emit(out, i, std::slice::from_ref(&i.id), || render_installation(out, i, &order))?;
    if i.status == pb::InstallationStatus::Failed as i32 {
        return Err(CliError::failed(format!("installation {} failed: {}", i.id, or_dash(&i.failure_reason))));
    }
    Ok(())
}

pub async fn installations(session: &Session, out: &Out, command: InstallationsCommand) -> Result<(), CliError> {
    match command {
        InstallationsCommand::List { package, env, page } => {
            let request = pb::ListInstallationsRequest {
                package_id: package.unwrap_or_default(),
                destination_environment: env.unwrap_or_default(),
                ..Default::default()
            };
            list(session, out, request, page).await
        }
        InstallationsCommand::Show { id } => {
            let (mut client, i) = find_installation(session, &id).await?;
            let i = all_installation_entries(session, &mut client, i).await?;
            let order = type_order(session, &i.package_id).await;
            emit(out, &i, std::slice::from_ref(&i.id), || render_installation(out, &i, &order))
        }
    }
}

/// An installation (first page of its entries) and a client of the service that has it.
pub async fn find_installation(
    session: &Session,
    id: &str,
) -> Result<(InstallationClient, pb::Installation), CliError> {
    let (address, i) = session
        .find(|address| async move {
            let request = pb::GetInstallationRequest { id: id.to_string(), ..Default::default() };
            Ok(session.installations_at(&address).await?.get_installation(session.request(request)).await?.into_inner())
        })
        .await?;
    Ok((session.installations_at(&address).await?, i))
}

pub async fn get_installation(session: &Session, id: String) -> Result<pb::Installation, CliError> {
    let (mut client, first) = find_installation(session, &id).await?;
    all_installation_entries(session, &mut client, first).await
}

async fn list(
    session: &Session,
    out: &Out,
    mut request: pb::ListInstallationsRequest,
    page: PageArgs,
) -> Result<(), CliError> {
    // Into one environment: its host. Else every installation service, newest first.
    let addresses = if request.destination_environment.is_empty() {
        if !page.page_token.is_empty() {
            return Err(CliError::usage("a page token belongs to one environment's service: add --env"));
        }
        session.installation_services().await?
    } else {
        vec![session.host_of(&request.destination_environment).await?]
    };
    let mut response = pb::ListInstallationsResponse { installations: vec![], next_page_token: page.page_token };
    request.page_size = page.page_size;
    let several = addresses.len() > 1;
    for address in addresses {
        let mut client = session.installations_at(&address).await?;
        let mut token = std::mem::take(&mut response.next_page_token);
        loop {
            request.page_token = token;
            let next = client.list_installations(session.request(request.clone())).await?.into_inner();
            response.installations.extend(next.installations);
            token = next.next_page_token;
            if !(page.all || several) || token.is_empty() {
                break;
            }
        }
        response.next_page_token = token;
    }
    if several {
        let key = |i: &pb::Installation| i.create_time.as_ref().map(|t| (t.seconds, t.nanos)).unwrap_or_default();
        response.installations.sort_by_key(|i| std::cmp::Reverse(key(i)));
        response.next_page_token.clear();
    }
    let ids: Vec<String> = response.installations.iter().map(|i| i.id.clone()).collect();
    emit(out, &response, &ids, || {
        let mut table = Table::new(&["ID", "PACKAGE", "VERSION", "DESTINATION", "STATUS", "SUMMARY", "CREATED", "BY"]);
        for i in &response.installations {
            table.row(vec![
                cell(&i.id, Style::Dim),
                i.package_id.as_str().into(),
                i.package_version.to_string().into(),
                i.destination_environment.as_str().into(),
                cell(installation_status(i.status), installation_style(i.status)),
                counts(&i.summary).into(),
                time(&i.create_time).into(),
                i.created_by.as_str().into(),
            ]);
        }
        table.render(out, "") + &more(out, &response.next_page_token)
    })
}

pub async fn rollback(session: &Session, out: &Out, a: RollbackArgs) -> Result<(), CliError> {
    let (mut client, found) = find_installation(session, &a.id).await?;
    if a.force && !a.yes {
        confirm(
            &format!(
                "Roll back installation {} in {} even where objects changed since? Those changes are lost.",
                a.id, found.destination_environment
            ),
            &format!("force the rollback of installation {}", a.id),
        )?;
    }
    let request = pb::RollbackInstallationRequest {
        id: a.id,
        force: a.force,
        request_id: a.request_id.unwrap_or_else(new_request_id),
        window_override_reason: a.override_window,
    };
    let progress = Progress::start("Rolling back…");
    let result = client.rollback_installation(session.request(request)).await;
    progress.finish().await;
    let i = result?.into_inner();
    note(out, format!("Rolled back installation {} in {}", i.id, i.destination_environment));
    print_installation(session, &mut client, out, i).await
}

fn installation_status(status: i32) -> String {
    pb::InstallationStatus::try_from(status)
        .map_or_else(|_| status.to_string(), |s| short(s.as_str_name(), "INSTALLATION_STATUS_"))
}

fn installation_style(status: i32) -> Style {
    match pb::InstallationStatus::try_from(status) {
        Ok(pb::InstallationStatus::Installed) => Style::Green,
        Ok(pb::InstallationStatus::Failed) => Style::Red,
        Ok(pb::InstallationStatus::RolledBack) => Style::Yellow,
        _ => Style::Cyan,
    }
}

fn render_pre_run(out: &Out, p: &pb::PreRun, order: &[String], with_changes: bool) -> String {
    let status = pb::PreRunStatus::try_from(p.status).map_or("?".into(), |s| short(s.as_str_name(), "PRE_RUN_STATUS_"));
    let status_style = if p.status == pb::PreRunStatus::Ready as i32 { Style::Green } else { Style::Red };
    let tally = Tally::of(p.translation_map.values().flat_map(|t| t.entries.values()));
    let mut pairs = vec![
        ("Pre-run", p.id.clone().into()),
        ("Status", cell(status, status_style)),
        ("Package", format!("{} version {}", p.package_id, p.package_version).into()),
        (
            "From → to",
            format!(
                "{} → {} (at revision {})",
                or_dash(&p.source_environment),
                p.destination_environment,
                p.destination_revision
            )
            .into(),
        ),
        ("Created", format!("{} by {}", time(&p.create_time), or_dash(&p.created_by)).into()),
        ("Expires", time(&p.expire_time).into()),
    ];
    pairs.push(("Summary", painted(summary(out, &p.summary))));
    pairs.push(("Collisions", tally.collisions_text().into()));
    pairs.push((
        "Not applied",
        cell(tally.dropped_text(), if tally.dropped_entries > 0 { Style::Yellow } else { Style::Plain }),
    ));
    if !p.failure_reason.is_empty() {
        pairs.push(("Failure", cell(p.failure_reason.clone(), Style::Red)));
    }
    let mut text = details(out, &pairs);
    text.push_str(&render_translation(out, &p.translation_map, order, false, with_changes));
    let invalid = p.summary.get("INVALID").copied().unwrap_or(0);
    if invalid > 0 {
        text.push_str(&out.paint(
            Style::Red,
            &format!(
                "\n{invalid} entr{} invalid: fix with --override before installing.\n",
                if invalid == 1 { "y is" } else { "ies are" }
            ),
        ));
    }
    if p.status == pb::PreRunStatus::Ready as i32 {
        text.push_str(&out.paint(
            Style::Dim,
            &format!(
                "\nInstall this plan: promotion install --pre-run {} [--override TYPE:ID=ACTION[:TARGET]]\n",
                p.id
            ),
        ));
    }
    text
}

/// Counts over a plan's entries: collisions by kind, and the entries whose field changes
/// the plan will not apply (kept as USEEXISTING, or IGNOREd).
#[derive(Default)]
struct Tally {
    collisions: std::collections::BTreeMap<String, usize>,
    dropped_entries: usize,
    dropped_changes: usize,
}

impl Tally {
    fn of<'a>(entries: impl Iterator<Item = &'a pb::TranslationEntry>) -> Tally {
        let mut t = Tally::default();
        for e in entries {
            if e.collision != pb::Collision::Unspecified as i32 {
                let name = pb::Collision::try_from(e.collision)
                    .map_or_else(|_| e.collision.to_string(), |c| short(c.as_str_name(), "COLLISION_"));
                *t.collisions.entry(name).or_default() += 1;
            }
            if not_applied(e) {
                t.dropped_entries += 1;
                t.dropped_changes += e.changes.len();
            }
        }
        t
    }

    fn collisions_text(&self) -> String {
        if self.collisions.is_empty() {
            return "none".into();
        }
        let total: usize = self.collisions.values().sum();
        let each: Vec<String> = self.collisions.iter().map(|(k, n)| format!("{k}={n}")).collect();
        format!("{total} ({})", each.join(" "))
    }

    fn dropped_text(&self) -> String {
        if self.dropped_entries == 0 {
            return "none: every change shown is applied".into();
        }
        format!(
            "{} change(s) of {} object(s) kept as they are in the destination (marked \"not applied\")",
            self.dropped_changes, self.dropped_entries
        )
    }
}

/// An entry whose differences the installation will not write: matched but kept
/// (USEEXISTING) or skipped (IGNORE).
fn not_applied(e: &pb::TranslationEntry) -> bool {
    let kept = [pb::InstallAction::Useexisting as i32, pb::InstallAction::Ignore as i32];
    kept.contains(&e.action) && !e.changes.is_empty()
}

/// Why an entry's changes are not applied, in words.
fn not_applied_why(e: &pb::TranslationEntry) -> String {
    let action = action_name(e.action);
    if e.collision == pb::Collision::LocallyModified as i32 {
        format!("not applied: {action}, edited in the destination since the last promotion")
    } else {
        format!("not applied: {action}")
    }
}

fn render_installation(out: &Out, i: &pb::Installation, order: &[String]) -> String {
    let mut pairs = vec![
        ("Installation", i.id.clone().into()),
        ("Status", cell(installation_status(i.status), installation_style(i.status))),
        ("Package", format!("{} version {}", i.package_id, i.package_version).into()),
        ("From → to", format!("{} → {}", or_dash(&i.source_environment), i.destination_environment).into()),
        ("Revision", format!("{} after the installation", i.destination_revision).into()),
        ("Pre-run", or_dash(&i.pre_run_id).into()),
        ("Created", format!("{} by {}", time(&i.create_time), or_dash(&i.created_by)).into()),
        ("Finished", time(&i.finish_time).into()),
        ("Prune children", (if i.prune_children { "yes" } else { "no" }).into()),
        ("Summary", painted(summary(out, &i.summary))),
    ];
    if i.rollback_time.is_some() {
        pairs.push(("Rolled back", format!("{} by {}", time(&i.rollback_time), or_dash(&i.rolled_back_by)).into()));
    }
    if !i.failure_reason.is_empty() {
        pairs.push(("Failure", cell(i.failure_reason.clone(), Style::Red)));
    }
    details(out, &pairs) + &render_translation(out, &i.translation_map, order, true, false)
}

/// `CREATE=3 OVERWRITING=1 INVALID=1`, each in its action's colour.
fn summary(out: &Out, map: &HashMap<String, i64>) -> String {
    let mut items: Vec<_> = map.iter().filter(|(_, n)| **n != 0).collect();
    items.sort();
    let text: Vec<String> =
        items.iter().map(|(k, n)| out.paint(action_style_name(k), &safe(&format!("{k}={n}")))).collect();
    or_dash(&text.join(" "))
}

fn action_name(action: i32) -> String {
    pb::InstallAction::try_from(action)
        .map_or_else(|_| action.to_string(), |a| short(a.as_str_name(), "INSTALL_ACTION_"))
}

fn action_style_name(name: &str) -> Style {
    match name {
        "CREATE" | "CREATEWITHALTNAME" | "INSTALLED" => Style::Green,
        "OVERWRITING" => Style::Yellow,
        "USEEXISTING" | "REGISTERED" => Style::Cyan,
        "IGNORE" | "SKIPPED" => Style::Dim,
        "INVALID" | "FAILED" => Style::Red,
        _ => Style::Plain,
    }
}

/// One table per object type (in `order`, then alphabetical), then the field changes.
pub fn render_translation(
    out: &Out,
    map: &HashMap<String, pb::TypeTranslation>,
    order: &[String],
    installed: bool,
    with_changes: bool,
) -> String {
    let mut types: Vec<&String> = map.keys().collect();
    types.sort_by_key(|t| (order.iter().position(|o| o == *t).unwrap_or(usize::MAX), t.to_string()));
    let mut text = String::new();
    for obj_code in types {
        let mut entries: Vec<(&String, &pb::TranslationEntry)> = map[obj_code].entries.iter().collect();
        entries.sort_by(|a, b| (&a.1.name, a.0).cmp(&(&b.1.name, b.0)));
        text.push_str(&format!("\n{} ({})\n", out.paint(Style::Bold, &safe(obj_code)), entries.len()));
        let mut header = vec!["SOURCE ID", "NAME", "ACTION", "MATCH", "COLLISION", "TARGET"];
        if installed {
            header.push("STATUS");
        }
        header.push("NOTE");
        let mut table = Table::new(&header);
        for (source_id, e) in &entries {
            table.row(entry_row(out, source_id, e, installed));
        }
        text.push_str(&table.render(out, "  "));
        if with_changes {
            text.push_str(&render_changes(out, obj_code, &entries));
        }
    }
    text
}

fn entry_row(out: &Out, source_id: &str, e: &pb::TranslationEntry, installed: bool) -> Vec<crate::output::Cell> {
    let action = action_name(e.action);
    let matched = pb::MatchKind::try_from(e.matched_by).map_or("?".into(), |m| short(m.as_str_name(), "MATCH_KIND_"));
    let collision = pb::Collision::try_from(e.collision).map_or("?".into(), |c| short(c.as_str_name(), "COLLISION_"));
    let collision_style = match pb::Collision::try_from(e.collision) {
        Ok(pb::Collision::LocallyModified) => Style::Red,
        Ok(pb::Collision::Unspecified) => Style::Plain,
        _ => Style::Yellow,
    };
    let blank = |s: String| if s == "UNSPECIFIED" { "-".to_string() } else { s };
    let mut notes = Vec::new();
    if !e.is_valid {
        notes.push(out.paint(Style::Red, &format!("invalid: {}", or_dash(&e.reason))));
    } else if !e.reason.is_empty() {
        notes.push(e.reason.clone());
    }
    if !e.alt_name.is_empty() {
        notes.push(format!("as {:?}", e.alt_name));
    }
    if !installed && not_applied(e) {
        notes.push(not_applied_why(e));
    }
    if !e.candidate_ids.is_empty() {
        notes.push(format!("candidates: {}", e.candidate_ids.join(", ")));
    }
    let mut row = vec![
        cell(source_id, Style::Dim),
        cell(&e.name, Style::Bold),
        cell(action.clone(), action_style_name(&action)),
        blank(matched).into(),
        cell(blank(collision), collision_style),
        or_dash(&e.target_id).into(),
    ];
    if installed {
        let status = pb::EntryInstallationStatus::try_from(e.installation_status)
            .map_or("?".into(), |s| blank(short(s.as_str_name(), "ENTRY_INSTALLATION_STATUS_")));
        row.push(cell(status.clone(), action_style_name(&status)));
    }
    // Colour codes are added after padding, so a painted note must be the last column.
    row.push(or_dash(&notes.join("; ")).into());
    row
}

fn render_changes(out: &Out, obj_code: &str, entries: &[(&String, &pb::TranslationEntry)]) -> String {
    let mut text = String::new();
    for (source_id, e) in entries.iter().filter(|(_, e)| !e.changes.is_empty()) {
        let head = format!("{obj_code} {source_id} {:?}", e.name);
        if not_applied(e) {
            // Shown so that the reviewer sees what is being kept, never as if it were written.
            let why = format!("({}; the destination keeps its values)", not_applied_why(e));
            text.push_str(&format!(
                "  {} {}:\n",
                out.paint(Style::Bold, "changes of"),
                out.paint(Style::Yellow, &safe(&format!("{head} {why}")))
            ));
            for c in &e.changes {
                text.push_str(&out.paint(Style::Dim, &change_line(&Out { color: false, ..*out }, c)));
            }
            continue;
        }
        text.push_str(&format!("  {} {}:\n", out.paint(Style::Bold, "changes of"), safe(&head)));
        for c in &e.changes {
            text.push_str(&change_line(out, c));
        }
    }
    text
}

/// `- path: before` in red and `+ path: after` in green (one of them for an added or
/// removed field).
pub fn change_line(out: &Out, c: &pb::FieldChange) -> String {
    let before = c.before.as_ref().map(render_value);
    let after = c.after.as_ref().map(render_value);
    let mut text = String::new();
    if let Some(b) = before.filter(|b| b != "null") {
        text.push_str(&format!("      {}\n", out.paint(Style::Red, &safe(&format!("- {}: {b}", c.path)))));
    }
    if let Some(a) = after.filter(|a| a != "null") {
        text.push_str(&format!("      {}\n", out.paint(Style::Green, &safe(&format!("+ {}: {a}", c.path)))));
    }
    text
}

/// A value as compact JSON, shortened to keep diff lines readable.
fn render_value(v: &Value) -> String {
    let json = value_to_json(v);
    let text = match &json {
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    const MAX: usize = 100;
    if text.chars().count() > MAX {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Format;
    use promotion_api::convert::json_to_value;

    fn plain() -> Out {
        Out { format: Format::Human, color: false }
    }

    fn change(path: &str, before: Json, after: Json) -> pb::FieldChange {
        pb::FieldChange { path: path.into(), before: Some(json_to_value(&before)), after: Some(json_to_value(&after)) }
    }

    #[test]
    fn a_changed_field_shows_before_and_after() {
        let line = change_line(&plain(), &change("fields.description", "old".into(), "new".into()));
        assert_eq!(line, "      - fields.description: \"old\"\n      + fields.description: \"new\"\n");
    }

    #[test]
    fn an_added_field_shows_only_after_and_is_green_on_a_terminal() {
        let out = Out { format: Format::Human, color: true };
        let line = change_line(&out, &change("fields.x", Json::Null, serde_json::json!({"a": 1})));
        assert_eq!(line, "      \x1b[32m+ fields.x: {\"a\":1}\x1b[0m\n");
    }

    #[test]
    fn translation_tables_follow_the_display_order_and_show_invalid_entries() {
        let entry = |name: &str, action: pb::InstallAction, valid: bool| pb::TranslationEntry {
            name: name.into(),
            action: action as i32,
            is_valid: valid,
            reason: if valid { String::new() } else { "NAME_CONFLICT".into() },
            changes: vec![change("name", "a".into(), "b".into())],
            ..Default::default()
        };
        let mut map = HashMap::new();
        map.insert(
            "GROUP".to_string(),
            pb::TypeTranslation {
                entries: [("g1".to_string(), entry("Ops", pb::InstallAction::Create, false))].into(),
            },
        );
        map.insert(
            "TMPL".to_string(),
            pb::TypeTranslation {
                entries: [("t1".to_string(), entry("Onboarding", pb::InstallAction::Overwriting, true))].into(),
            },
        );
        let text = render_translation(&plain(), &map, &["TMPL".into()], false, true);
        assert!(text.find("TMPL (1)").unwrap() < text.find("GROUP (1)").unwrap(), "{text}");
        assert!(text.contains("invalid: NAME_CONFLICT"), "{text}");
        assert!(text.contains("OVERWRITING"), "{text}");
        assert!(
            text.contains("changes of TMPL t1 \"Onboarding\":\n      - name: \"a\"\n      + name: \"b\""),
            "{text}"
        );
    }
}
