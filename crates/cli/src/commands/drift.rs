//! `drift ENV` (InstallationService.GetDrift): the objects installations wrote into an
//! environment that were edited or deleted there since, as a table with their field
//! changes. The exit status tells CI and cron jobs whether there is drift (2) or not (0).
use super::install::change_line;
use crate::connect::Session;
use crate::error::CliError;
use crate::output::{cell, emit, or_dash, safe, Out, Style, Table};
use crate::parse::short;
use crate::GlobalArgs;
use promotion_api::v1 as pb;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  promotion drift qa\n  promotion drift prod --all --output json\n\n\
    Lists what installations wrote into the environment (or adopted while it held the\n\
    package's content) and was changed there since: LOCALLY_MODIFIED with its field\n\
    changes (- as installed, + now; references and parents named by the source's ids),\n\
    or DELETED. Exit status: 0 no drift, 2 drift, 1 an error (like decK diff).")]
pub struct DriftArgs {
    /// Environment.
    pub env: String,
    /// List unchanged objects too.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn drift(session: &Session, out: &Out, a: DriftArgs) -> Result<(), CliError> {
    let report = whole_report(session, &a.env).await?;
    let drifted: Vec<&pb::DriftEntry> = report.entries.iter().filter(|e| is_drift(e)).collect();
    let ids: Vec<String> = drifted.iter().map(|e| e.id.clone()).collect();
    emit(out, &report, &ids, || render(out, &report, a.all))?;
    if drifted.is_empty() {
        Ok(())
    } else {
        Err(CliError::Exit(2))
    }
}

/// Every page of the report, from the installation service hosting the environment.
async fn whole_report(session: &Session, env: &str) -> Result<pb::GetDriftResponse, CliError> {
    let mut client = session.installations_for(env).await?;
    let mut report = pb::GetDriftResponse { environment: env.to_string(), ..Default::default() };
    loop {
        let request = pb::GetDriftRequest {
            environment: env.to_string(),
            page_size: 0,
            page_token: std::mem::take(&mut report.next_page_token),
        };
        let page = client.get_drift(session.request(request)).await?.into_inner();
        report.entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return Ok(report);
        }
        report.next_page_token = page.next_page_token;
    }
}

fn is_drift(e: &pb::DriftEntry) -> bool {
    e.state != pb::DriftState::Unchanged as i32
}

fn state_name(e: &pb::DriftEntry) -> String {
    pb::DriftState::try_from(e.state).map_or_else(|_| e.state.to_string(), |s| short(s.as_str_name(), "DRIFT_STATE_"))
}

fn state_style(e: &pb::DriftEntry) -> Style {
    match pb::DriftState::try_from(e.state) {
        Ok(pb::DriftState::Unchanged) => Style::Green,
        Ok(pb::DriftState::Deleted) => Style::Red,
        _ => Style::Yellow,
    }
}

fn render(out: &Out, report: &pb::GetDriftResponse, all: bool) -> String {
    let mut shown: Vec<&pb::DriftEntry> = report.entries.iter().filter(|e| all || is_drift(e)).collect();
    shown.sort_by(|a, b| (&a.obj_code, &a.name, &a.id).cmp(&(&b.obj_code, &b.name, &b.id)));
    let mut text = String::new();
    if !shown.is_empty() {
        let mut table = Table::new(&["TYPE", "NAME", "ID", "STATE", "SOURCE", "INSTALLATION"]);
        for e in &shown {
            table.row(vec![
                e.obj_code.as_str().into(),
                cell(&e.name, Style::Bold),
                cell(&e.id, Style::Dim),
                cell(state_name(e), state_style(e)),
                format!("{}:{}", or_dash(&e.source_environment), e.source_id).into(),
                cell(&e.installation_id, Style::Dim),
            ]);
        }
        text.push_str(&table.render(out, ""));
    }
    for e in shown.iter().filter(|e| !e.changes.is_empty()) {
        let head = format!("{} {} {:?}", e.obj_code, e.id, e.name);
        text.push_str(&format!(
            "  {} {} (- as installed, + now):\n",
            out.paint(Style::Bold, "changes of"),
            safe(&head)
        ));
        for c in &e.changes {
            text.push_str(&change_line(out, c));
        }
    }
    text.push_str(&summary(report));
    text
}

/// One line: how many installed objects drifted, of how many.
fn summary(report: &pb::GetDriftResponse) -> String {
    let count = |s: pb::DriftState| report.entries.iter().filter(|e| e.state == s as i32).count();
    let (modified, deleted) = (count(pb::DriftState::LocallyModified), count(pb::DriftState::Deleted));
    let total = report.entries.len();
    let env = safe(&report.environment);
    if modified + deleted == 0 {
        return format!("No drift in {env}: the {total} object(s) installations wrote are as they left them.\n");
    }
    format!("Drift in {env}: {modified} locally modified, {deleted} deleted, of {total} installed object(s).\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Format;
    use promotion_api::convert::json_to_value;

    fn entry(name: &str, state: pb::DriftState, changes: Vec<pb::FieldChange>) -> pb::DriftEntry {
        pb::DriftEntry {
            obj_code: "TMPL".into(),
            id: format!("{name}-id"),
            name: name.into(),
            state: state as i32,
            source_environment: "dev".into(),
            source_id: format!("{name}-source"),
            changes,
            ..Default::default()
        }
    }

    #[test]
    fn the_table_shows_drift_with_its_changes_and_hides_unchanged_objects() {
        let change = pb::FieldChange {
            path: "fields.planned_duration_days".into(),
            before: Some(json_to_value(&10.into())),
            after: Some(json_to_value(&14.into())),
        };
        let report = pb::GetDriftResponse {
            environment: "qa".into(),
            entries: vec![
                entry("Offboarding", pb::DriftState::LocallyModified, vec![change]),
                entry("Kick-off", pb::DriftState::Deleted, vec![]),
                entry("Steady", pb::DriftState::Unchanged, vec![]),
            ],
            next_page_token: String::new(),
        };
        let text = render(&Out { format: Format::Human, color: false }, &report, false);
        assert!(text.contains("LOCALLY_MODIFIED"), "{text}");
        assert!(text.contains("DELETED"), "{text}");
        assert!(!text.contains("Steady"), "{text}");
        assert!(text.contains("dev:Offboarding-source"), "{text}");
        assert!(
            text.contains(
                "changes of TMPL Offboarding-id \"Offboarding\" (- as installed, + now):\n      \
                 - fields.planned_duration_days: 10\n      + fields.planned_duration_days: 14\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("Drift in qa: 1 locally modified, 1 deleted, of 3 installed object(s).\n"), "{text}");
        let all = render(&Out { format: Format::Human, color: false }, &report, true);
        assert!(all.contains("Steady") && all.contains("UNCHANGED"), "{all}");
    }
}
