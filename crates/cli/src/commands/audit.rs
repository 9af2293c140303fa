//! `audit`: the audit trails of the package service and of every installation service
//! (AuditService), filtered and merged by time.
use super::env::more;
use crate::connect::Session;
use crate::error::CliError;
use crate::output::{cell, emit, time, Out, Style, Table};
use crate::parse::parse_time;
use crate::{GlobalArgs, PageArgs};
use promotion_api::convert::timestamp;
use promotion_api::v1 as pb;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Both services, merged by time.
    Both,
    /// The package service (packages, tokens).
    Package,
    /// The installation service (objects, pre-runs, installations, promotions).
    Installation,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Needs audit.read (the admin role). Examples:\n  \
    promotion audit --env qa --action INSTALLATION_COMPLETED\n  \
    promotion audit --actor bob --since 2026-11-01 --output json")]
pub struct AuditArgs {
    /// Which service's trail to read.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    pub service: Which,
    /// Only events of this environment.
    #[arg(long, short = 'e', default_value = "", hide_default_value = true)]
    pub env: String,
    /// Only this action, e.g. PACKAGE_CREATED, OBJECTS_PUT, PROMOTION_ACCEPTED, ACCESS_DENIED.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub action: String,
    /// Only events by this client.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub actor: String,
    /// Only events about this resource type (package, installation, ...).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub resource_type: String,
    /// Only events about this resource id.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub resource_id: String,
    /// Only events at or after this time (RFC 3339 or a date).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events before this time (RFC 3339 or a date).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    pub page: PageArgs,
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(session: &Session, out: &Out, a: AuditArgs) -> Result<(), CliError> {
    let request = pb::ListAuditEventsRequest {
        environment: a.env.clone(),
        action: a.action.clone(),
        actor: a.actor.clone(),
        resource_type: a.resource_type.clone(),
        resource_id: a.resource_id.clone(),
        start_time: a.since.map(timestamp),
        end_time: a.until.map(timestamp),
        page_size: a.page.page_size,
        page_token: a.page.page_token.clone(),
    };
    let mut response = pb::ListAuditEventsResponse::default();
    let mut trails = Vec::new();
    if a.service != Which::Installation {
        trails.push(session.package_addr.clone());
    }
    if a.service != Which::Package {
        // Each installation service keeps the trail of the environments it hosts.
        if a.env.is_empty() {
            trails.extend(session.installation_services().await?);
        } else {
            trails.push(session.host_of(&a.env).await?);
        }
    }
    let merged = trails.len() > 1;
    if merged && !a.page.page_token.is_empty() {
        return Err(CliError::usage(
            "a page token belongs to one service's trail: add --service package, or --service installation --env ENV",
        ));
    }
    for address in trails {
        let (events, token) = read_trail(session, &address, request.clone(), a.page.all).await?;
        response.events.extend(events);
        response.next_page_token = token;
    }
    if merged {
        // Each trail is oldest first; interleave them into one.
        response.events.sort_by(|x, y| {
            let key = |e: &pb::AuditEvent| e.time.as_ref().map(|t| (t.seconds, t.nanos)).unwrap_or_default();
            key(x).cmp(&key(y))
        });
        response.next_page_token.clear();
    }
    let ids: Vec<String> = response.events.iter().map(|e| e.id.clone()).collect();
    emit(out, &response, &ids, || {
        let mut table = Table::new(&["TIME", "SERVICE", "ACTOR", "ENVIRONMENT", "ACTION", "RESOURCE", "OUTCOME"]);
        for e in &response.events {
            let outcome_style = if e.outcome == "OK" { Style::Green } else { Style::Red };
            let resource = if e.resource_id.is_empty() {
                e.resource_type.clone()
            } else {
                format!("{} {}", e.resource_type, e.resource_id)
            };
            table.row(vec![
                time(&e.time).into(),
                e.service.as_str().into(),
                cell(&e.actor, Style::Bold),
                e.environment.as_str().into(),
                e.action.as_str().into(),
                resource.into(),
                cell(&e.outcome, outcome_style),
            ]);
        }
        table.render(out, "") + &more(out, &response.next_page_token)
    })
}

async fn read_trail(
    session: &Session,
    address: &str,
    mut request: pb::ListAuditEventsRequest,
    all: bool,
) -> Result<(Vec<pb::AuditEvent>, String), CliError> {
    let mut client = session.audit_at(address).await?;
    let mut events = Vec::new();
    loop {
        let page = client.list_audit_events(session.request(request.clone())).await?.into_inner();
        events.extend(page.events);
        if !all || page.next_page_token.is_empty() {
            return Ok((events, page.next_page_token));
        }
        request.page_token = page.next_page_token;
    }
}
