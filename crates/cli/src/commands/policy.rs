//! `env policy get/set`: an environment's governance policy (how many distinct approvers
//! a promotion into it needs, whether requesters may approve their own requests, when
//! changes may land), read from and changed on the installation service hosting it.
use super::objects::new_request_id;
use crate::connect::Session;
use crate::error::CliError;
use crate::output::{details, emit, note, or_dash, time, Out, Table};
use crate::parse::{parse_time, short};
use promotion_api::v1 as pb;

#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Show the policy of an environment: required approvals, self-approval, who changed it.
    Get {
        /// Environment id, e.g. prod.
        environment: String,
    },
    /// Change the policy (admins). Only the options given change; if someone changed the
    /// policy between this command's read and its write, nothing is written (ABORTED
    /// ETAG_MISMATCH).
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)))]
    Set {
        /// Environment id, e.g. prod.
        environment: String,
        /// Distinct approvers a promotion request needs before it installs (1 to 10).
        #[arg(long, group = "change")]
        required_approvals: Option<i32>,
        /// Whether requesters may approve their own requests.
        #[arg(long, group = "change")]
        allow_self_approval: Option<bool>,
        /// An allowed window, "DAYS HH:MM-HH:MM ZONE" (e.g. "mon-fri 09:00-17:00 +01:00",
        /// "sat,sun 10:00-12:00 UTC"); repeat for several. Replaces the windows.
        #[arg(long = "window", value_name = "WINDOW", group = "change", value_parser = parse_window)]
        windows: Vec<pb::PromotionWindow>,
        /// Remove every window (changes may land at any time outside freezes).
        #[arg(long, group = "change", conflicts_with = "windows")]
        no_windows: bool,
        /// A freeze, "START,END,REASON" (RFC 3339 times or dates, e.g.
        /// "2026-12-20,2027-01-04,year-end"); repeat for several. Replaces the freezes.
        #[arg(long = "freeze", value_name = "FREEZE", group = "change", value_parser = parse_freeze)]
        freezes: Vec<pb::PromotionFreeze>,
        /// Lift every freeze.
        #[arg(long, group = "change", conflicts_with = "freezes")]
        no_freezes: bool,
        /// Makes a retried command change the policy once (a UUID; default: a new one).
        #[arg(long)]
        request_id: Option<String>,
    },
}

pub async fn run(session: &Session, out: &Out, command: PolicyCommand) -> Result<(), CliError> {
    match command {
        PolicyCommand::Get { environment } => {
            let policy = get(session, &environment).await?;
            print_policy(out, &policy)
        }
        PolicyCommand::Set {
            environment,
            required_approvals,
            allow_self_approval,
            windows,
            no_windows,
            freezes,
            no_freezes,
            request_id,
        } => {
            let read = get(session, &environment).await?;
            let mut paths = Vec::new();
            let mut policy = pb::EnvironmentPolicy { etag: read.etag, environment: environment.clone(), ..read };
            if let Some(n) = required_approvals {
                policy.required_approvals = n;
                paths.push("required_approvals".to_string());
            }
            if let Some(allow) = allow_self_approval {
                policy.allow_self_approval = allow;
                paths.push("allow_self_approval".to_string());
            }
            if !windows.is_empty() || no_windows {
                policy.windows = windows;
                paths.push("windows".to_string());
            }
            if !freezes.is_empty() || no_freezes {
                policy.freezes = freezes;
                paths.push("freezes".to_string());
            }
            let request = pb::UpdateEnvironmentPolicyRequest {
                policy: Some(policy),
                update_mask: Some(prost_types::FieldMask { paths }),
                request_id: request_id.unwrap_or_else(new_request_id),
            };
            let mut client = session.environments_for(&environment).await?;
            let updated = client.update_environment_policy(session.request(request)).await?.into_inner();
            note(out, format!("Policy of {environment} updated"));
            print_policy(out, &updated)
        }
    }
}

async fn get(session: &Session, environment: &str) -> Result<pb::EnvironmentPolicy, CliError> {
    let request = pb::GetEnvironmentPolicyRequest { environment: environment.to_string() };
    let mut client = session.environments_for(environment).await?;
    Ok(client.get_environment_policy(session.request(request)).await?.into_inner())
}

fn print_policy(out: &Out, p: &pb::EnvironmentPolicy) -> Result<(), CliError> {
    emit(out, p, std::slice::from_ref(&p.environment), || {
        let self_approval = if p.allow_self_approval { "allowed" } else { "not allowed" };
        let updated = if p.updated_by.is_empty() {
            "never (the defaults)".to_string()
        } else {
            format!("{} by {}", time(&p.update_time), p.updated_by)
        };
        let windows: Vec<String> = p.windows.iter().map(window_text).collect();
        let windows = if windows.is_empty() { "any time".to_string() } else { windows.join("; ") };
        let mut text = details(
            out,
            &[
                ("Environment", p.environment.clone().into()),
                ("Required approvals", p.required_approvals.to_string().into()),
                ("Self-approval", self_approval.into()),
                ("Windows", windows.into()),
                ("Updated", or_dash(&updated).into()),
                ("Etag", p.etag.clone().into()),
            ],
        );
        let mut table = Table::new(&["FREEZE FROM", "UNTIL", "REASON"]);
        for f in &p.freezes {
            table.row(vec![time(&f.start_time).into(), time(&f.end_time).into(), f.reason.as_str().into()]);
        }
        if !table.is_empty() {
            text.push('\n');
            text.push_str(&table.render(out, ""));
        }
        text
    })
}

const DAYS: [(&str, pb::DayOfWeek); 7] = [
    ("mon", pb::DayOfWeek::Monday),
    ("tue", pb::DayOfWeek::Tuesday),
    ("wed", pb::DayOfWeek::Wednesday),
    ("thu", pb::DayOfWeek::Thursday),
    ("fri", pb::DayOfWeek::Friday),
    ("sat", pb::DayOfWeek::Saturday),
    ("sun", pb::DayOfWeek::Sunday),
];

fn window_text(w: &pb::PromotionWindow) -> String {
    let days: Vec<String> = w
        .days
        .iter()
        .map(|d| pb::DayOfWeek::try_from(*d).map_or(d.to_string(), |d| short(d.as_str_name(), "DAY_OF_WEEK_")))
        .collect();
    format!("{} {}-{} {}", days.join(","), w.start_time, w.end_time, w.time_zone)
}

fn day_index(name: &str) -> Result<usize, String> {
    let name = name.to_ascii_lowercase();
    DAYS.iter().position(|(d, _)| name.starts_with(d)).ok_or_else(|| format!("{name:?} is not a day (mon..sun)"))
}

/// "mon-fri 09:00-17:00 +01:00": days (a list and ranges), a time range, a zone (the
/// service checks the times and the zone).
fn parse_window(text: &str) -> Result<pb::PromotionWindow, String> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [days, times, zone] = parts[..] else {
        return Err(format!("{text:?}: give DAYS HH:MM-HH:MM ZONE, e.g. \"mon-fri 09:00-17:00 +01:00\""));
    };
    let mut out = Vec::new();
    for item in days.split(',') {
        let (first, last) = item.split_once('-').unwrap_or((item, item));
        let (first, last) = (day_index(first)?, day_index(last)?);
        if last < first {
            return Err(format!("{item:?}: a day range runs from Monday to Sunday"));
        }
        out.extend(DAYS[first..=last].iter().map(|(_, d)| *d as i32));
    }
    let (start, end) = times.split_once('-').ok_or_else(|| format!("{times:?} is not HH:MM-HH:MM"))?;
    Ok(pb::PromotionWindow { days: out, start_time: start.into(), end_time: end.into(), time_zone: zone.into() })
}

/// "START,END,REASON".
fn parse_freeze(text: &str) -> Result<pb::PromotionFreeze, String> {
    let mut parts = text.splitn(3, ',');
    let (Some(start), Some(end), Some(reason)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{text:?}: give START,END,REASON, e.g. \"2026-12-20,2027-01-04,year-end\""));
    };
    let ts = |t: chrono::DateTime<chrono::Utc>| prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 };
    Ok(pb::PromotionFreeze {
        start_time: Some(ts(parse_time(start)?)),
        end_time: Some(ts(parse_time(end)?)),
        reason: reason.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_as_people_write_them() {
        let w = parse_window("mon-wed,fri 09:00-17:00 +01:00").unwrap();
        let days = [pb::DayOfWeek::Monday, pb::DayOfWeek::Tuesday, pb::DayOfWeek::Wednesday, pb::DayOfWeek::Friday];
        assert_eq!(w.days, days.map(|d| d as i32));
        assert_eq!((w.start_time.as_str(), w.end_time.as_str(), w.time_zone.as_str()), ("09:00", "17:00", "+01:00"));
        assert_eq!(window_text(&w), "MONDAY,TUESDAY,WEDNESDAY,FRIDAY 09:00-17:00 +01:00");
        assert!(parse_window("fri-mon 09:00-17:00 UTC").is_err());
        assert!(parse_window("weekdays 9-5").is_err());
    }

    #[test]
    fn freezes_take_two_times_and_a_reason_with_commas() {
        let f = parse_freeze("2026-12-20,2027-01-04T12:00:00Z,year-end, all teams").unwrap();
        assert_eq!(f.reason, "year-end, all teams");
        assert_eq!(f.end_time.unwrap().seconds - f.start_time.unwrap().seconds, (15 * 24 + 12) * 3600);
        assert!(parse_freeze("2026-12-20,year-end").is_err());
    }
}
