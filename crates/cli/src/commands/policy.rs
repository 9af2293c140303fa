//! `env policy get/set`: an environment's governance policy (how many distinct approvers
//! a promotion into it needs, whether requesters may approve their own requests), read
//! from and changed on the installation service hosting it.
use super::objects::new_request_id;
use crate::connect::Session;
use crate::error::CliError;
use crate::output::{details, emit, note, or_dash, time, Out};
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
        PolicyCommand::Set { environment, required_approvals, allow_self_approval, request_id } => {
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
        details(
            out,
            &[
                ("Environment", p.environment.clone().into()),
                ("Required approvals", p.required_approvals.to_string().into()),
                ("Self-approval", self_approval.into()),
                ("Updated", or_dash(&updated).into()),
                ("Etag", p.etag.clone().into()),
            ],
        )
    })
}
