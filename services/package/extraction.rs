//! Background extraction: asks the installation service hosting the source environment
//! for the closure of a package's roots (`EnvironmentService.ExportObjects`, with the
//! caller's token), builds the definition, and hands the outcome to the package
//! operations. Every failure ends as a failure reason: a package never stays EXTRACTING.
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;
use tonic::{Code, Request, Status};

use super::definitions::{self, Built, Content};
use super::operations;
use super::state::State;
use crate::proto::v1 as pb;
use crate::shared::auth::Identity;
use crate::shared::directory::EnvironmentInfo;
use crate::shared::errors::{metadata_of, reason_of};
use crate::shared::objects::ObjectCollection;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole export, however large, must finish within this.
const EXPORT_DEADLINE: Duration = Duration::from_secs(300);
/// A peer that stops answering pings is given up on, not waited for until the deadline.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// One extraction to run: which package attempt, for whom, from where.
#[derive(Debug, Clone)]
pub struct Job {
    pub package_id: String,
    pub attempt: String,
    pub caller: Identity,
    pub environment: Arc<EnvironmentInfo>,
    pub roots: Vec<ObjectCollection>,
    pub request_id: String,
}

/// A successful extraction: the built definition and the export's warnings.
#[derive(Debug)]
pub struct Extracted {
    pub built: Built,
    pub warnings: Vec<String>,
}

/// Runs `job` in the background with the caller's bearer token.
pub fn spawn(state: Arc<State>, job: Job, token: Option<MetadataValue<Ascii>>) {
    tokio::spawn(async move {
        let outcome = extract(&state, &job, token).await;
        if let Err(reason) = &outcome {
            tracing::info!(package = %job.package_id, %reason, "extraction failed");
        }
        if let Err(e) = operations::finish_extraction(&state, &job, outcome).await {
            tracing::error!(package = %job.package_id, error = %e, "could not record the end of an extraction");
        }
    });
}

async fn extract(state: &State, job: &Job, token: Option<MetadataValue<Ascii>>) -> Result<Extracted, String> {
    // Bounds how many packages' objects are in memory at once.
    let _slot = state.extraction_slots.acquire().await.map_err(|_| operations::INTERRUPTED.to_string())?;
    let started = std::time::Instant::now();
    let limits = &state.config.limits;
    let export = export(job, token, limits.max_message_bytes, limits.max_package_objects);
    let (content, warnings) = match tokio::time::timeout(EXPORT_DEADLINE, export).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(format!(
                "the installation service at {} did not finish the export within {} s",
                job.environment.installation_service,
                EXPORT_DEADLINE.as_secs()
            ))
        }
    };
    let catalog = job.environment.catalog.clone();
    let root_types: Vec<String> = job.roots.iter().map(|c| c.obj_code.clone()).collect();
    let budget = limits.stream_chunk_bytes;
    let built = tokio::task::spawn_blocking(move || definitions::build(&catalog, &root_types, content, budget))
        .await
        .map_err(|e| format!("building the definition failed: {e}"))??;
    crate::shared::metrics::record_extraction(started.elapsed(), usize::try_from(built.entity_total).unwrap_or(0));
    Ok(Extracted { built, warnings })
}

/// Streams the export into memory: objects, external references and warnings.
async fn export(
    job: &Job,
    token: Option<MetadataValue<Ascii>>,
    max_message_bytes: usize,
    max_objects: usize,
) -> Result<(Content, Vec<String>), String> {
    let address = &job.environment.installation_service;
    let endpoint = Endpoint::from_shared(address.clone())
        .map_err(|e| format!("installation service address {address:?} is not valid: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("installation service at {address} unreachable: {}", chain(&e)))?;
    let mut client = pb::environment_service_client::EnvironmentServiceClient::new(channel)
        .max_decoding_message_size(max_message_bytes);
    let mut request = Request::new(pb::ExportObjectsRequest {
        environment: job.environment.id.clone(),
        roots: job.roots.iter().map(Into::into).collect(),
    });
    request.set_timeout(EXPORT_DEADLINE);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", token);
    }
    let mut stream = client.export_objects(request).await.map_err(|s| explain(&s, job))?.into_inner();
    let mut content = Content::default();
    let mut warnings = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(|s| explain(&s, job))? {
        warnings.extend(chunk.warnings);
        content.objects.extend(chunk.objects);
        content.external_references.extend(chunk.external_references);
        if content.objects.len() > max_objects {
            return Err(format!(
                "the requested roots reach more than {max_objects} objects, the most a package may hold \
                 (limits.max_package_objects)"
            ));
        }
    }
    Ok((content, warnings))
}

/// A failure reason a person can act on, naming what was missing or unreachable.
fn explain(status: &Status, job: &Job) -> String {
    let address = &job.environment.installation_service;
    let env = &job.environment.id;
    let message = status.message();
    match (status.code(), reason_of(status).as_deref()) {
        (Code::NotFound, Some("OBJECT_NOT_FOUND")) => {
            let metadata = metadata_of(status);
            let code = metadata.get("obj_code").map_or("object", String::as_str);
            let id = metadata.get("id").map_or("", String::as_str);
            let requested = job
                .roots
                .iter()
                .flat_map(|c| c.entities.iter())
                .find(|e| e.id == id && !e.name.is_empty())
                .map(|e| format!(" ({:?})", e.name))
                .unwrap_or_default();
            format!("requested {code} {id}{requested} does not exist in environment {env}")
        }
        (Code::NotFound, _) => {
            format!("the installation service at {address} does not know environment {env}: {message}")
        }
        (Code::Unavailable, _) => format!("installation service at {address} unreachable: {message}"),
        (Code::DeadlineExceeded, _) => {
            format!("the installation service at {address} did not finish the export in time: {message}")
        }
        (Code::PermissionDenied | Code::Unauthenticated, _) => {
            format!("the installation service at {address} refused to export environment {env}: {message}")
        }
        (code, _) => format!(
            "exporting environment {env} from the installation service at {address} failed ({code:?}): {message}"
        ),
    }
}

/// An error and its causes, for messages about transport failures.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::catalog::workfront;
    use crate::shared::config::EnvironmentKind;
    use crate::shared::errors::status;
    use crate::shared::objects::EntityRef;

    fn job() -> Job {
        Job {
            package_id: "p".into(),
            attempt: "a".into(),
            caller: Identity { subject: "alice".into(), organization: "acme".into(), bindings: vec![], expires_at: 0 },
            environment: Arc::new(EnvironmentInfo {
                id: "dev".into(),
                display_name: "dev".into(),
                organization: "acme".into(),
                kind: EnvironmentKind::Sandbox,
                catalog: Arc::new(workfront()),
                installation_service: "http://127.0.0.1:9".into(),
            }),
            roots: vec![ObjectCollection {
                obj_code: "TMPL".into(),
                entities: vec![EntityRef { id: "0".repeat(32), name: "Ghost".into() }],
            }],
            request_id: String::new(),
        }
    }

    #[test]
    fn failure_reasons_name_the_missing_object_or_the_unreachable_service() {
        let missing = status(
            Code::NotFound,
            "OBJECT_NOT_FOUND",
            "object not found",
            [("obj_code", "TMPL".into()), ("id", "0".repeat(32))],
        );
        let reason = explain(&missing, &job());
        assert_eq!(reason, format!("requested TMPL {} (\"Ghost\") does not exist in environment dev", "0".repeat(32)));
        let down = Status::unavailable("connection refused");
        assert!(explain(&down, &job()).starts_with("installation service at http://127.0.0.1:9 unreachable"));
    }

    #[tokio::test]
    async fn an_unreachable_service_fails_fast_with_its_address() {
        // A port just released: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let mut job = job();
        Arc::make_mut(&mut job.environment).installation_service = address.clone();
        let err = export(&job, None, 1 << 20, 10).await.unwrap_err();
        assert!(err.starts_with(&format!("installation service at {address} unreachable")), "{err}");
    }
}
