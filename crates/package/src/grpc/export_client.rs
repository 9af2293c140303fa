//! The object source extraction reads from, over gRPC: `EnvironmentService.ExportObjects`
//! on the installation service hosting the source environment, with the caller's token
//! and trace.
use async_trait::async_trait;
use tonic::{Code, Request, Status};

use crate::extraction::EXPORT_DEADLINE;
use crate::source::{Exported, ObjectSource};
use promotion_api::convert::objects_from_proto;
use promotion_api::status::{metadata_of, reason_of};
use promotion_api::v1 as pb;
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::Credentials;
use promotion_core::objects::ObjectCollection;

/// Exports through the installation service named in the environment directory.
pub struct GrpcObjectSource {
    pub max_message_bytes: usize,
}

#[async_trait]
impl ObjectSource for GrpcObjectSource {
    async fn export(
        &self,
        environment: &EnvironmentInfo,
        roots: &[ObjectCollection],
        credentials: Option<&Credentials>,
        max_objects: usize,
    ) -> Result<Exported, String> {
        export(environment, roots, credentials, self.max_message_bytes, max_objects).await
    }
}

/// Streams the export into memory: objects, external references and warnings.
async fn export(
    environment: &EnvironmentInfo,
    roots: &[ObjectCollection],
    credentials: Option<&Credentials>,
    max_message_bytes: usize,
    max_objects: usize,
) -> Result<Exported, String> {
    let channel = super::connect(&environment.installation_service).await?;
    let mut client = pb::environment_service_client::EnvironmentServiceClient::new(channel)
        .max_decoding_message_size(max_message_bytes);
    let mut request = Request::new(pb::ExportObjectsRequest {
        environment: environment.id.clone(),
        roots: roots.iter().map(Into::into).collect(),
    });
    request.set_timeout(EXPORT_DEADLINE);
    if let Some(c) = credentials {
        promotion_serving::forward(request.metadata_mut(), c)
            .map_err(|_| "the caller's token cannot be forwarded".to_string())?;
    }
    let mut stream = client.export_objects(request).await.map_err(|s| explain(&s, environment, roots))?.into_inner();
    let mut exported = Exported::default();
    while let Some(chunk) = stream.message().await.map_err(|s| explain(&s, environment, roots))? {
        exported.warnings.extend(chunk.warnings);
        let content = &mut exported.content;
        let objects = objects_from_proto(chunk.objects, "objects").map_err(|e| format!("the export holds {e}"))?;
        content.objects.extend(objects);
        content.external_references.extend(chunk.external_references.into_iter().map(Into::into));
        if content.objects.len() > max_objects {
            return Err(format!(
                "the requested roots reach more than {max_objects} objects, the most a package may hold \
                 (limits.max_package_objects)"
            ));
        }
    }
    Ok(exported)
}

/// A failure reason a person can act on, naming what was missing or unreachable.
fn explain(status: &Status, environment: &EnvironmentInfo, roots: &[ObjectCollection]) -> String {
    let address = &environment.installation_service;
    let env = &environment.id;
    let message = status.message();
    match (status.code(), reason_of(status).as_deref()) {
        (Code::NotFound, Some("OBJECT_NOT_FOUND")) => {
            let metadata = metadata_of(status);
            let code = metadata.get("obj_code").map_or("object", String::as_str);
            let id = metadata.get("id").map_or("", String::as_str);
            let requested = roots
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

#[cfg(test)]
mod tests {
    use super::*;
    use promotion_api::status::status;
    use promotion_core::catalog::workfront;
    use promotion_core::config::EnvironmentKind;
    use promotion_core::objects::EntityRef;
    use std::sync::Arc;

    fn environment(address: &str) -> EnvironmentInfo {
        EnvironmentInfo {
            id: "dev".into(),
            display_name: "dev".into(),
            organization: "acme".into(),
            kind: EnvironmentKind::Sandbox,
            catalog: Arc::new(workfront()),
            installation_service: address.into(),
        }
    }

    fn roots() -> Vec<ObjectCollection> {
        vec![ObjectCollection {
            obj_code: "TMPL".into(),
            entities: vec![EntityRef { id: "0".repeat(32), name: "Ghost".into() }],
        }]
    }

    #[test]
    fn failure_reasons_name_the_missing_object_or_the_unreachable_service() {
        let missing = status(
            Code::NotFound,
            "OBJECT_NOT_FOUND",
            "object not found",
            [("obj_code", "TMPL".into()), ("id", "0".repeat(32))],
        );
        let reason = explain(&missing, &environment("http://127.0.0.1:9"), &roots());
        assert_eq!(reason, format!("requested TMPL {} (\"Ghost\") does not exist in environment dev", "0".repeat(32)));
        let down = Status::unavailable("connection refused");
        assert!(explain(&down, &environment("http://127.0.0.1:9"), &roots())
            .starts_with("installation service at http://127.0.0.1:9 unreachable"));
    }

    #[tokio::test]
    async fn an_unreachable_service_fails_fast_with_its_address() {
        // A port just released: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = export(&environment(&address), &roots(), None, 1 << 20, 10).await.unwrap_err();
        assert!(err.starts_with(&format!("installation service at {address} unreachable")), "{err}");
    }
}
