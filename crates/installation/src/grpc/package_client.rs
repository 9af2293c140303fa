//! The package source over gRPC: reads packages from the package service on a caller's
//! behalf (their token and trace are forwarded), and reports installations with the
//! service's own credentials.
use async_trait::async_trait;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::package_source::{PackageInfo, PackageSource};
use crate::plan::PackageContent;
use promotion_api::convert::objects_from_proto;
use promotion_api::status::{domain_code, metadata_of, reason_of};
use promotion_api::v1 as pb;
use promotion_core::identity::Credentials;
use promotion_core::records::OutboxEntry;
use promotion_core::upstream::UpstreamError;

#[derive(Clone)]
pub struct PackageClient {
    channel: Channel,
    address: String,
}

impl PackageClient {
    pub fn new(address: &str) -> Result<PackageClient, String> {
        let channel = Endpoint::from_shared(address.to_string())
            .map_err(|e| format!("package_service {address:?}: {e}"))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(120))
            .connect_lazy();
        Ok(PackageClient { channel, address: address.to_string() })
    }

    fn client(&self) -> pb::package_service_client::PackageServiceClient<Channel> {
        pb::package_service_client::PackageServiceClient::new(self.channel.clone())
            .max_decoding_message_size(8 * 1024 * 1024)
    }

    fn request<T>(&self, msg: T, credentials: &Credentials) -> Result<Request<T>, UpstreamError> {
        let mut req = Request::new(msg);
        promotion_serving::forward(req.metadata_mut(), credentials).map_err(|_| {
            UpstreamError::new(
                promotion_core::Code::Unauthenticated,
                "TOKEN_MALFORMED",
                "the token cannot be forwarded",
            )
        })?;
        Ok(req)
    }

    /// An upstream failure as this service reports it: the package service being down is
    /// UNAVAILABLE (nothing was written); its own answers pass through.
    fn upstream(&self, s: Status) -> UpstreamError {
        match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
                let mut e = UpstreamError::new(
                    promotion_core::Code::Unavailable,
                    "PACKAGE_SERVICE_UNAVAILABLE",
                    format!(
                        "the package service at {} is unavailable: {}; nothing was written",
                        self.address,
                        s.message()
                    ),
                );
                e.metadata.insert("package_service".into(), self.address.clone());
                e
            }
            _ => UpstreamError {
                code: domain_code(s.code()),
                reason: reason_of(&s).unwrap_or_default(),
                message: s.message().to_string(),
                metadata: metadata_of(&s),
            },
        }
    }
}

fn status_from_proto(v: i32) -> promotion_core::package::Status {
    use promotion_core::package::Status as S;
    match pb::PackageStatus::try_from(v).unwrap_or(pb::PackageStatus::Unspecified) {
        pb::PackageStatus::Preview => S::Preview,
        pb::PackageStatus::Public => S::Public,
        pb::PackageStatus::Retired => S::Retired,
        pb::PackageStatus::Extracting => S::Extracting,
        pb::PackageStatus::ExtractionFailed => S::ExtractionFailed,
        pb::PackageStatus::Building | pb::PackageStatus::Unspecified => S::Building,
    }
}

#[async_trait]
impl PackageSource for PackageClient {
    async fn info(&self, package_id: &str, credentials: &Credentials) -> Result<PackageInfo, UpstreamError> {
        let req = self.request(pb::GetPackageRequest { id: package_id.to_string() }, credentials)?;
        let p = self.client().get_package(req).await.map_err(|s| self.upstream(s))?.into_inner();
        Ok(PackageInfo {
            status: status_from_proto(p.status),
            id: p.id,
            name: p.name,
            version: p.version,
            organization: p.organization,
            source_environment: p.source_environment,
            digest: p.digest,
        })
    }

    async fn content(
        &self,
        package_id: &str,
        version: i64,
        credentials: &Credentials,
    ) -> Result<PackageContent, UpstreamError> {
        let req = self.request(pb::GetPackageDefinitionRequest { id: package_id.to_string(), version }, credentials)?;
        let mut stream = self.client().get_package_definition(req).await.map_err(|s| self.upstream(s))?.into_inner();
        let mut content = PackageContent { package_id: package_id.to_string(), ..Default::default() };
        while let Some(msg) = stream.message().await.map_err(|s| self.upstream(s))? {
            match msg.part {
                Some(pb::get_package_definition_response::Part::Header(h)) => {
                    content.version = h.version;
                    content.digest = h.digest;
                    content.source_environment = h.source_environment;
                }
                Some(pb::get_package_definition_response::Part::Entities(e)) => {
                    let objects = objects_from_proto(e.objects, "objects").map_err(|e| {
                        UpstreamError::new(
                            promotion_core::Code::DataLoss,
                            "DEFINITION_CORRUPT",
                            format!("the package definition holds {e}"),
                        )
                    })?;
                    content.objects.extend(objects);
                    content.external_references.extend(e.external_references.into_iter().map(Into::into));
                }
                None => {}
            }
        }
        Ok(content)
    }

    async fn record_installation(&self, credentials: &Credentials, entry: &OutboxEntry) -> Result<(), UpstreamError> {
        let req = pb::RecordInstallationRequest {
            // Idempotent by installation id already; every delivery is a fresh call.
            request_id: String::new(),
            package_id: entry.package_id.clone(),
            package_version: entry.package_version,
            installation_id: entry.installation_id.clone(),
            destination_environment: entry.destination.clone(),
        };
        let req = self.request(req, credentials)?;
        self.client().record_installation(req).await.map(|_| ()).map_err(|s| self.upstream(s))
    }

    async fn service_credentials(&self, client_id: &str, secret: &str) -> Result<Credentials, UpstreamError> {
        let mut auth = pb::auth_service_client::AuthServiceClient::new(self.channel.clone());
        let token = auth
            .issue_token(pb::IssueTokenRequest {
                client_id: client_id.into(),
                client_secret: secret.into(),
                ttl_seconds: 3600,
            })
            .await
            .map_err(|s| self.upstream(s))?
            .into_inner()
            .access_token;
        Ok(Credentials::bearer(token))
    }
}
