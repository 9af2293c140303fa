//! `package ...`: creating, inspecting, changing and watching packages (PackageService),
//! with a progress display while a package is extracted.
use serde_json::{json, Value as Json};
use tokio_stream::StreamExt;

use super::env::more;
use super::objects::new_request_id;
use crate::connect::Session;
use crate::error::CliError;
use crate::output::{
    cell, confirm, counts, details, emit, note, or_dash, safe, time, to_json, Format, Out, Progress, Style, Table,
};
use crate::parse::{collections, parse_package_status, parse_root, short, Root};
use crate::{GlobalArgs, PageArgs};
use promotion_api::v1 as pb;

#[derive(clap::Args, Debug)]
pub struct PackageArgs {
    #[command(subcommand)]
    pub command: PackageCommand,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum PackageCommand {
    /// Create a package from root objects of a source environment; extraction adds every
    /// sub-object they include.
    #[command(after_help = "Example:\n  promotion package create --name \"Agency onboarding\" --source dev \\\n    \
        --root TMPL:6419b8b9001151ee258921a4f7597bb2 --wait")]
    Create(CreateArgs),
    /// List packages, newest first (retired ones only with --retired or --status retired).
    List {
        /// Only packages in this status: building, preview, public, retired, extracting, extraction_failed.
        #[arg(long, value_parser = parse_package_status)]
        status: Option<pb::PackageStatus>,
        /// Only packages extracted from this environment.
        #[arg(long, short = 's')]
        source: Option<String>,
        /// Include retired packages.
        #[arg(long)]
        retired: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a package: status, version, roots, object counts, installations.
    Show {
        /// Package id.
        id: String,
    },
    /// Print the objects of a package version (streamed from the service).
    Definition {
        /// Package id.
        id: String,
        /// Version to read (0: the current one).
        #[arg(long, default_value_t = 0)]
        version: i64,
    },
    /// What changed between two versions: objects added, removed and changed, with each
    /// changed field (before, after).
    #[command(after_help = "Example:\n  promotion package diff PKG --from 1 --to 2")]
    Diff {
        /// Package id.
        id: String,
        /// The earlier version (0: the current one).
        #[arg(long)]
        from: i64,
        /// The later version (0: the current one).
        #[arg(long, default_value_t = 0)]
        to: i64,
    },
    /// Change name, description, privacy or status, or re-extract (new version).
    #[command(after_help = "Re-extracting (--root or --reextract) is allowed in BUILDING or EXTRACTION_FAILED\n\
        only; move a published package back first:\n  \
        promotion package update PKG --status building\n  \
        promotion package update PKG --reextract --wait")]
    Update(UpdateArgs),
    /// Make the package installable into sandbox environments only (PREVIEW).
    Preview(StatusArgs),
    /// Make the package installable anywhere (PUBLIC).
    Publish(StatusArgs),
    /// Retire the package: installable nowhere, kept with its history.
    Retire(StatusArgs),
    /// Delete the package for good (installations keep their records); retiring is the
    /// reversible alternative.
    Delete {
        /// Package id.
        id: String,
        /// Only if the package still has this etag.
        #[arg(long, default_value = "", hide_default_value = true)]
        etag: String,
        /// Do not ask for confirmation (required when standard input is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Print the package now and after every change until interrupted (Ctrl-C).
    Watch {
        /// Package id.
        id: String,
        /// Stop once the package is no longer EXTRACTING.
        #[arg(long)]
        until_extracted: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Package name (5 to 255 characters).
    #[arg(long)]
    pub name: String,
    /// Source environment the objects are extracted from.
    #[arg(long, short = 's')]
    pub source: String,
    /// A root object, TYPE:ID or TYPE:ID:EXPECTED_NAME (repeatable). Without any root the
    /// package starts empty, in BUILDING.
    #[arg(long = "root", value_name = "TYPE:ID[:NAME]", value_parser = parse_root)]
    pub roots: Vec<Root>,
    /// Description (up to 4,000 characters).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub description: String,
    /// Hide the package from other users of the organization.
    #[arg(long)]
    pub private: bool,
    /// Wait (with a progress display) until extraction has finished; fail if it failed.
    #[arg(long)]
    pub wait: bool,
    /// Idempotency key (UUID): repeating the call returns the first response.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// Package id.
    pub id: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
    /// Make the package private (true) or visible to the organization (false).
    #[arg(long, value_name = "BOOL")]
    pub private: Option<bool>,
    /// New status: building, preview, public or retired.
    #[arg(long, value_parser = parse_package_status)]
    pub status: Option<pb::PackageStatus>,
    /// New roots, TYPE:ID[:NAME] (repeatable): re-extracts as a new version.
    #[arg(long = "root", value_name = "TYPE:ID[:NAME]", value_parser = parse_root, conflicts_with = "reextract")]
    pub roots: Vec<Root>,
    /// Re-extract the current roots (picks up changes made in the source environment).
    #[arg(long)]
    pub reextract: bool,
    /// After a re-extraction, wait until it has finished.
    #[arg(long)]
    pub wait: bool,
    /// Only if the package still has this etag.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub etag: String,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Package id.
    pub id: String,
    /// Only if the package still has this etag.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub etag: String,
}

pub async fn run(session: &Session, out: &Out, command: PackageCommand) -> Result<(), CliError> {
    match command {
        PackageCommand::Create(args) => create(session, out, args).await,
        PackageCommand::List { status, source, retired, page } => {
            let request = pb::ListPackagesRequest {
                status: status.map_or(0, |s| s as i32),
                source_environment: source.unwrap_or_default(),
                show_retired: retired,
                ..Default::default()
            };
            list(session, out, request, page).await
        }
        PackageCommand::Show { id } => {
            let p = get(session, &id).await?;
            print_package(out, &p)
        }
        PackageCommand::Definition { id, version } => definition(session, out, id, version).await,
        PackageCommand::Diff { id, from, to } => super::package_diff::diff(session, out, id, from, to).await,
        PackageCommand::Update(args) => update(session, out, args).await,
        PackageCommand::Preview(a) => change_status(session, out, a, pb::PackageStatus::Preview).await,
        PackageCommand::Publish(a) => change_status(session, out, a, pb::PackageStatus::Public).await,
        PackageCommand::Retire(a) => change_status(session, out, a, pb::PackageStatus::Retired).await,
        PackageCommand::Delete { id, etag, yes } => delete(session, out, id, etag, yes).await,
        PackageCommand::Watch { id, until_extracted } => watch(session, out, id, until_extracted).await,
    }
}

pub fn status_name(status: i32) -> String {
    pb::PackageStatus::try_from(status)
        .map_or_else(|_| status.to_string(), |s| short(s.as_str_name(), "PACKAGE_STATUS_"))
}

pub fn status_style(status: i32) -> Style {
    match pb::PackageStatus::try_from(status) {
        Ok(pb::PackageStatus::Public) => Style::Green,
        Ok(pb::PackageStatus::Preview) => Style::Cyan,
        Ok(pb::PackageStatus::Building | pb::PackageStatus::Extracting) => Style::Yellow,
        Ok(pb::PackageStatus::ExtractionFailed) => Style::Red,
        _ => Style::Dim,
    }
}

pub async fn get(session: &Session, id: &str) -> Result<pb::Package, CliError> {
    let request = pb::GetPackageRequest { id: id.to_string() };
    Ok(session.packages().await?.get_package(session.request(request)).await?.into_inner())
}

pub async fn create_package(session: &Session, args: &CreateArgs) -> Result<pb::Package, CliError> {
    let request = pb::CreatePackageRequest {
        name: args.name.clone(),
        description: args.description.clone(),
        source_environment: args.source.clone(),
        object_collections: collections(&args.roots),
        is_private: args.private,
        request_id: args.request_id.clone().unwrap_or_else(new_request_id),
    };
    Ok(session.packages().await?.create_package(session.request(request)).await?.into_inner())
}

async fn create(session: &Session, out: &Out, args: CreateArgs) -> Result<(), CliError> {
    let mut package = create_package(session, &args).await?;
    note(out, format!("Created package {} ({})", package.id, status_name(package.status)));
    if args.wait {
        package = wait_extracted(session, out, package).await?;
    }
    print_package(out, &package)?;
    fail_if_extraction_failed(&package)
}

pub fn fail_if_extraction_failed(p: &pb::Package) -> Result<(), CliError> {
    if p.status == pb::PackageStatus::ExtractionFailed as i32 {
        return Err(CliError::failed(format!("extraction of package {} failed: {}", p.id, or_dash(&p.failure_reason))));
    }
    Ok(())
}

/// Follows the package (WatchPackage) while it is EXTRACTING, with a spinner on a
/// terminal; returns it as it is once extraction has finished either way.
pub async fn wait_extracted(session: &Session, out: &Out, package: pb::Package) -> Result<pb::Package, CliError> {
    if package.status != pb::PackageStatus::Extracting as i32 {
        return Ok(package);
    }
    let progress = Progress::start(format!("Extracting {:?} from {}…", package.name, package.source_environment));
    let result = follow_extraction(session, &package.id, &progress).await;
    progress.finish().await;
    let package = result?;
    let objects: i64 = package.entity_counts.values().sum();
    if package.status != pb::PackageStatus::ExtractionFailed as i32 {
        note(out, format!("Extracted {objects} object(s) into version {}", package.version));
    }
    Ok(package)
}

async fn follow_extraction(session: &Session, id: &str, progress: &Progress) -> Result<pb::Package, CliError> {
    let request = pb::WatchPackageRequest { id: id.to_string() };
    let mut stream = session.packages().await?.watch_package(request).await?.into_inner();
    while let Some(update) = stream.next().await {
        let p = update?;
        if p.status != pb::PackageStatus::Extracting as i32 {
            return Ok(p);
        }
        progress.set(format!("Extracting {:?} from {}…", p.name, p.source_environment));
    }
    // The service ended the stream (shutting down, say): report the latest state.
    get(session, id).await
}

async fn list(
    session: &Session,
    out: &Out,
    mut request: pb::ListPackagesRequest,
    page: PageArgs,
) -> Result<(), CliError> {
    let mut client = session.packages().await?;
    let mut response = pb::ListPackagesResponse { packages: vec![], next_page_token: page.page_token };
    request.page_size = page.page_size;
    loop {
        request.page_token = std::mem::take(&mut response.next_page_token);
        let next = client.list_packages(session.request(request.clone())).await?.into_inner();
        response.packages.extend(next.packages);
        response.next_page_token = next.next_page_token;
        if !page.all || response.next_page_token.is_empty() {
            break;
        }
    }
    let ids: Vec<String> = response.packages.iter().map(|p| p.id.clone()).collect();
    emit(out, &response, &ids, || {
        let mut table = Table::new(&["ID", "NAME", "STATUS", "VERSION", "SOURCE", "OBJECTS", "CREATED", "BY"]);
        for p in &response.packages {
            table.row(vec![
                cell(&p.id, Style::Dim),
                cell(&p.name, Style::Bold),
                cell(status_name(p.status), status_style(p.status)),
                p.version.to_string().into(),
                p.source_environment.as_str().into(),
                p.entity_counts.values().sum::<i64>().to_string().into(),
                time(&p.create_time).into(),
                p.created_by.as_str().into(),
            ]);
        }
        table.render(out, "") + &more(out, &response.next_page_token)
    })
}

pub fn print_package(out: &Out, p: &pb::Package) -> Result<(), CliError> {
    emit(out, p, std::slice::from_ref(&p.id), || render_package(out, p))
}

fn render_package(out: &Out, p: &pb::Package) -> String {
    let roots = p
        .object_collections
        .iter()
        .flat_map(|c| {
            c.entities.iter().map(move |e| {
                if e.name.is_empty() {
                    format!("{}:{}", c.obj_code, e.id)
                } else {
                    format!("{}:{} {:?}", c.obj_code, e.id, e.name)
                }
            })
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut pairs = vec![
        ("Package", p.id.clone().into()),
        ("Name", p.name.clone().into()),
        ("Status", cell(status_name(p.status), status_style(p.status))),
        ("Version", p.version.to_string().into()),
        ("Source", p.source_environment.clone().into()),
        ("Roots", or_dash(&roots).into()),
        ("Objects", format!("{} ({})", p.entity_counts.values().sum::<i64>(), counts(&p.entity_counts)).into()),
        ("Installed", counts(&p.installation_counts).into()),
        ("Digest", or_dash(&p.digest).into()),
        ("Private", (if p.is_private { "yes" } else { "no" }).into()),
        ("Created", format!("{} by {}", time(&p.create_time), or_dash(&p.created_by)).into()),
        ("Updated", time(&p.update_time).into()),
        ("Etag", or_dash(&p.etag).into()),
    ];
    if !p.description.is_empty() {
        pairs.insert(2, ("Description", p.description.clone().into()));
    }
    if p.publish_time.is_some() {
        pairs.push(("Published", time(&p.publish_time).into()));
    }
    if p.retire_time.is_some() {
        pairs.push(("Retired", time(&p.retire_time).into()));
    }
    if !p.failure_reason.is_empty() {
        pairs.push(("Failure", cell(p.failure_reason.clone(), Style::Red)));
    }
    for w in &p.warnings {
        pairs.push(("Warning", cell(w.clone(), Style::Yellow)));
    }
    details(out, &pairs)
}

/// UpdatePackage with a mask of the named fields.
pub async fn update_package(session: &Session, package: pb::Package, paths: &[&str]) -> Result<pb::Package, CliError> {
    let request = pb::UpdatePackageRequest {
        package: Some(package),
        update_mask: Some(prost_types::FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() }),
        request_id: super::objects::new_request_id(),
    };
    Ok(session.packages().await?.update_package(session.request(request)).await?.into_inner())
}

pub async fn set_status(
    session: &Session,
    id: &str,
    etag: &str,
    status: pb::PackageStatus,
) -> Result<pb::Package, CliError> {
    let package =
        pb::Package { id: id.to_string(), etag: etag.to_string(), status: status as i32, ..Default::default() };
    update_package(session, package, &["status"]).await
}

async fn change_status(session: &Session, out: &Out, a: StatusArgs, status: pb::PackageStatus) -> Result<(), CliError> {
    let p = set_status(session, &a.id, &a.etag, status).await?;
    note(out, format!("Package {} is now {} (version {})", p.id, status_name(p.status), p.version));
    print_package(out, &p)
}

async fn update(session: &Session, out: &Out, a: UpdateArgs) -> Result<(), CliError> {
    let mut package = pb::Package { id: a.id.clone(), etag: a.etag.clone(), ..Default::default() };
    let mut paths = Vec::new();
    if let Some(name) = a.name {
        package.name = name;
        paths.push("name");
    }
    if let Some(description) = a.description {
        package.description = description;
        paths.push("description");
    }
    if let Some(private) = a.private {
        package.is_private = private;
        paths.push("is_private");
    }
    if let Some(status) = a.status {
        package.status = status as i32;
        paths.push("status");
    }
    if !a.roots.is_empty() {
        package.object_collections = collections(&a.roots);
        paths.push("object_collections");
    } else if a.reextract {
        package.object_collections = get(session, &a.id).await?.object_collections;
        paths.push("object_collections");
    }
    if paths.is_empty() {
        return Err(CliError::usage(
            "nothing to change: give --name, --description, --private, --status, --root or --reextract",
        ));
    }
    let mut p = update_package(session, package, &paths).await?;
    if a.wait {
        p = wait_extracted(session, out, p).await?;
    }
    print_package(out, &p)?;
    fail_if_extraction_failed(&p)
}

async fn delete(session: &Session, out: &Out, id: String, etag: String, yes: bool) -> Result<(), CliError> {
    if !yes {
        confirm(
            &format!("Delete package {} for good? Installations keep their records.", safe(&id)),
            &format!("delete package {id}"),
        )?;
    }
    let request = pb::DeletePackageRequest { id: id.clone(), etag, request_id: super::objects::new_request_id() };
    session.packages().await?.delete_package(session.request(request)).await?;
    match out.format {
        Format::Json | Format::Yaml => out.print_json(&json!({ "deleted": id })),
        Format::Id => println!("{}", safe(&id)),
        Format::Human => println!("Deleted package {}", safe(&id)),
    }
    Ok(())
}

async fn watch(session: &Session, out: &Out, id: String, until_extracted: bool) -> Result<(), CliError> {
    let request = pb::WatchPackageRequest { id };
    let mut stream = session.packages().await?.watch_package(request).await?.into_inner();
    while let Some(update) = stream.next().await {
        let p = update?;
        match out.format {
            Format::Json => println!("{}", to_json(&p)?),
            Format::Yaml => print!("---\n{}", crate::output::document(Format::Yaml, &to_json(&p)?)),
            Format::Id => println!("{}", safe(&p.id)),
            Format::Human => println!(
                "{}  {}  v{}  {}  objects: {}{}",
                time(&p.update_time),
                out.paint(status_style(p.status), &format!("{:<17}", status_name(p.status))),
                p.version,
                safe(&p.name),
                safe(&counts(&p.entity_counts)),
                if p.failure_reason.is_empty() { String::new() } else { format!("  ({})", safe(&p.failure_reason)) }
            ),
        }
        if until_extracted && p.status != pb::PackageStatus::Extracting as i32 {
            break;
        }
    }
    Ok(())
}

async fn definition(session: &Session, out: &Out, id: String, version: i64) -> Result<(), CliError> {
    let request = pb::GetPackageDefinitionRequest { id, version };
    let mut stream = session.packages().await?.get_package_definition(session.request(request)).await?.into_inner();
    let mut header = pb::PackageDefinitionHeader::default();
    let mut entities = pb::PackageEntities::default();
    while let Some(chunk) = stream.next().await {
        match chunk?.part {
            Some(pb::get_package_definition_response::Part::Header(h)) => header = h,
            Some(pb::get_package_definition_response::Part::Entities(e)) => {
                entities.objects.extend(e.objects);
                entities.external_references.extend(e.external_references);
            }
            None => {}
        }
    }
    match out.format {
        Format::Json | Format::Yaml => {
            let mut doc = json!({ "header": to_json(&header)? });
            if let Json::Object(parts) = to_json(&entities)? {
                doc.as_object_mut().into_iter().for_each(|d| d.extend(parts.clone()));
            }
            out.print_json(&doc);
        }
        Format::Id => entities.objects.iter().for_each(|o| println!("{}", safe(&format!("{}:{}", o.obj_code, o.id)))),
        Format::Human => print!("{}", render_definition(out, &header, &entities)),
    }
    Ok(())
}

fn render_definition(out: &Out, h: &pb::PackageDefinitionHeader, e: &pb::PackageEntities) -> String {
    let metadata = h.metadata.clone().unwrap_or_default();
    let mut text = details(
        out,
        &[
            ("Package", h.package_id.clone().into()),
            ("Version", h.version.to_string().into()),
            ("Source", h.source_environment.clone().into()),
            ("Digest", or_dash(&h.digest).into()),
            ("Objects", format!("{} ({})", h.entity_total, counts(&h.entity_counts)).into()),
            ("Install order", or_dash(&metadata.install_order.join(" ")).into()),
        ],
    );
    let mut order = metadata.display_order.clone();
    for o in &e.objects {
        if !order.contains(&o.obj_code) {
            order.push(o.obj_code.clone());
        }
    }
    for code in order {
        let mut table = Table::new(&["ID", "NAME", "PARENT", "REFERENCES"]);
        for o in e.objects.iter().filter(|o| o.obj_code == code) {
            let refs = o.references.iter().map(|r| format!("{}→{}:{}", r.field, r.obj_code, r.id)).collect::<Vec<_>>();
            table.row(vec![
                cell(&o.id, Style::Dim),
                cell(&o.name, Style::Bold),
                o.parent.as_ref().map_or("-".into(), |p| format!("{}:{}", p.obj_code, p.id)).into(),
                or_dash(&refs.join(" ")).into(),
            ]);
        }
        if !table.is_empty() {
            text.push_str(&format!("\n{}\n", out.paint(Style::Bold, &safe(&code))));
            text.push_str(&table.render(out, "  "));
        }
    }
    if !e.external_references.is_empty() {
        text.push_str(&format!("\n{}\n", out.paint(Style::Bold, "External references (resolved at install time)")));
        let mut table = Table::new(&["TYPE", "ID", "NAME"]);
        for r in &e.external_references {
            table.row(vec![r.obj_code.as_str().into(), cell(&r.id, Style::Dim), r.name.as_str().into()]);
        }
        text.push_str(&table.render(out, "  "));
    }
    text
}
