//! `env list/show/catalog/policy`: the environment directory and catalogs
//! (EnvironmentService), each environment's figures and policy from the installation
//! service that hosts it.
use crate::connect::Session;
use crate::error::CliError;
use crate::output::{cell, details, emit, note, or_dash, Out, Style, Table};
use crate::parse::short;
use crate::{GlobalArgs, PageArgs};
use promotion_api::v1 as pb;

#[derive(clap::Args, Debug)]
pub struct EnvArgs {
    #[command(subcommand)]
    pub command: EnvCommand,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum EnvCommand {
    /// List the environments of your organization: kind, catalog, revision, object count.
    List(PageArgs),
    /// Show one environment with its object counts per type.
    Show {
        /// Environment id, e.g. dev.
        id: String,
    },
    /// Show the catalog of an environment: object types, which can be package roots, what
    /// a root includes, unique names, excluded fields.
    Catalog {
        /// Environment whose catalog to show.
        #[arg(required_unless_present = "name")]
        environment: Option<String>,
        /// Catalog name instead of an environment, e.g. workfront or apim.
        #[arg(long, conflicts_with = "environment")]
        name: Option<String>,
    },
    /// Show or change an environment's policy: how many distinct approvers a promotion
    /// into it needs, and whether requesters may approve their own requests.
    #[command(subcommand)]
    Policy(super::policy::PolicyCommand),
}

pub async fn run(session: &Session, out: &Out, command: EnvCommand) -> Result<(), CliError> {
    match command {
        EnvCommand::List(page) => list(session, out, page).await,
        EnvCommand::Show { id } => show(session, out, id).await,
        EnvCommand::Catalog { environment, name } => catalog(session, out, environment, name).await,
        EnvCommand::Policy(command) => super::policy::run(session, out, command).await,
    }
}

pub fn kind_name(kind: i32) -> String {
    pb::EnvironmentKind::try_from(kind)
        .map_or_else(|_| kind.to_string(), |k| short(k.as_str_name(), "ENVIRONMENT_KIND_"))
}

async fn list(session: &Session, out: &Out, page: PageArgs) -> Result<(), CliError> {
    let mut client = session.environments().await?;
    let mut response = pb::ListEnvironmentsResponse { environments: vec![], next_page_token: page.page_token };
    loop {
        let request = pb::ListEnvironmentsRequest {
            page_size: page.page_size,
            page_token: std::mem::take(&mut response.next_page_token),
        };
        let next = client.list_environments(session.request(request)).await?.into_inner();
        response.environments.extend(next.environments);
        response.next_page_token = next.next_page_token;
        if !page.all || response.next_page_token.is_empty() {
            break;
        }
    }
    // Only the hosting service knows an environment's revision and objects: ask the
    // others for theirs.
    let directory = crate::connect::normalize_address(&session.installation_addr);
    for e in response.environments.iter_mut() {
        let host = crate::connect::normalize_address(&e.installation_service);
        if e.installation_service.is_empty() || host == directory {
            continue;
        }
        let request = pb::GetEnvironmentRequest { id: e.id.clone() };
        match session.environments_at(&host).await {
            Ok(mut c) => match c.get_environment(session.request(request)).await {
                Ok(hosted) => *e = hosted.into_inner(),
                Err(err) => note(out, format!("{}: {}", e.id, CliError::from(err))),
            },
            Err(err) => note(out, format!("{}: {err}", e.id)),
        }
    }
    let ids: Vec<String> = response.environments.iter().map(|e| e.id.clone()).collect();
    emit(out, &response, &ids, || {
        let mut table = Table::new(&["ID", "NAME", "KIND", "CATALOG", "REVISION", "OBJECTS"]);
        for e in &response.environments {
            let kind_style = if e.kind == pb::EnvironmentKind::Production as i32 { Style::Yellow } else { Style::Cyan };
            table.row(vec![
                cell(&e.id, Style::Bold),
                e.display_name.as_str().into(),
                cell(kind_name(e.kind), kind_style),
                e.catalog.as_str().into(),
                e.revision.to_string().into(),
                e.object_counts.values().sum::<i64>().to_string().into(),
            ]);
        }
        table.render(out, "") + &more(out, &response.next_page_token)
    })
}

/// The hint printed under a page that is not the last one.
pub fn more(out: &Out, token: &str) -> String {
    if token.is_empty() {
        return String::new();
    }
    out.paint(Style::Dim, &format!("(more: add --page-token {}, or --all)\n", crate::output::safe(token)))
}

/// The environment as its host describes it (revision and object counts included).
pub async fn get_environment(session: &Session, id: &str) -> Result<pb::Environment, CliError> {
    let request = pb::GetEnvironmentRequest { id: id.to_string() };
    Ok(session.environments_for(id).await?.get_environment(session.request(request)).await?.into_inner())
}

async fn show(session: &Session, out: &Out, id: String) -> Result<(), CliError> {
    let e = get_environment(session, &id).await?;
    emit(out, &e, std::slice::from_ref(&e.id), || {
        let mut text = details(
            out,
            &[
                ("Environment", e.id.clone().into()),
                ("Name", or_dash(&e.display_name).into()),
                ("Organization", e.organization.clone().into()),
                ("Kind", kind_name(e.kind).into()),
                ("Catalog", e.catalog.clone().into()),
                ("Revision", e.revision.to_string().into()),
                ("Hosted by", or_dash(&e.installation_service).into()),
                ("Objects", e.object_counts.values().sum::<i64>().to_string().into()),
            ],
        );
        let mut types: Vec<_> = e.object_counts.iter().collect();
        types.sort();
        let mut table = Table::new(&["TYPE", "OBJECTS"]);
        for (t, n) in types {
            table.row(vec![t.as_str().into(), n.to_string().into()]);
        }
        if !table.is_empty() {
            text.push('\n');
            text.push_str(&table.render(out, ""));
        }
        text
    })
}

async fn catalog(
    session: &Session,
    out: &Out,
    environment: Option<String>,
    name: Option<String>,
) -> Result<(), CliError> {
    let mut client = match &environment {
        Some(env) => session.environments_for(env).await?,
        None => session.environments().await?,
    };
    let request =
        pb::GetCatalogRequest { name: name.unwrap_or_default(), environment: environment.unwrap_or_default() };
    let c = client.get_catalog(session.request(request)).await?.into_inner();
    let ids: Vec<String> = c.types.iter().map(|t| t.obj_code.clone()).collect();
    emit(out, &c, &ids, || {
        let mut text =
            details(out, &[("Catalog", c.name.clone().into()), ("Description", or_dash(&c.description).into())]);
        let mut types: Vec<&pb::ObjectType> = c.types.iter().collect();
        types.sort_by_key(|t| (!t.root, t.install_rank, t.obj_code.clone()));
        let mut table = Table::new(&["TYPE", "NAME", "ROOT", "UNIQUE NAMES", "PARENTS", "INCLUDES", "EXCLUDED FIELDS"]);
        for t in types {
            let root = if t.root { cell("yes", Style::Green) } else { cell("-", Style::Dim) };
            let unique = if t.unique_names { "yes" } else { "-" };
            let excluded = if t.never_carried { "(never carried)".to_string() } else { t.excluded_fields.join(",") };
            table.row(vec![
                cell(&t.obj_code, Style::Bold),
                t.display_name.as_str().into(),
                root,
                unique.into(),
                or_dash(&t.parent_types.join(",")).into(),
                or_dash(&t.includes.join(",")).into(),
                or_dash(&excluded).into(),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render(out, ""));
        text
    })
}
