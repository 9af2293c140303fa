//! Reading packages from the package service on a caller's behalf (their token is
//! forwarded), and reporting installations with the service's own credentials.
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::plan::PackageContent;
use crate::proto::v1 as pb;
use crate::shared::errors::status;

/// Package status as installability rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageStatus {
    Extracting,
    Building,
    Preview,
    Public,
    Retired,
    ExtractionFailed,
}

impl PackageStatus {
    fn from_proto(v: i32) -> PackageStatus {
        match pb::PackageStatus::try_from(v).unwrap_or(pb::PackageStatus::Unspecified) {
            pb::PackageStatus::Preview => PackageStatus::Preview,
            pb::PackageStatus::Public => PackageStatus::Public,
            pb::PackageStatus::Retired => PackageStatus::Retired,
            pb::PackageStatus::Extracting => PackageStatus::Extracting,
            pb::PackageStatus::ExtractionFailed => PackageStatus::ExtractionFailed,
            pb::PackageStatus::Building | pb::PackageStatus::Unspecified => PackageStatus::Building,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PackageStatus::Extracting => "EXTRACTING",
            PackageStatus::Building => "BUILDING",
            PackageStatus::Preview => "PREVIEW",
            PackageStatus::Public => "PUBLIC",
            PackageStatus::Retired => "RETIRED",
            PackageStatus::ExtractionFailed => "EXTRACTION_FAILED",
        }
    }
}

/// What the installation service needs to know about a package.
#[derive(Debug, Clone)]
pub struct PackageInfo {
    pub id: String,
    pub name: String,
    pub version: i64,
    pub status: PackageStatus,
    pub organization: String,
    pub source_environment: String,
    pub digest: String,
}

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

    fn request<T>(&self, msg: T, token: &MetadataValue<Ascii>) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut().insert("authorization", token.clone());
        req
    }

    /// An upstream failure as this service reports it: the package service being down is
    /// UNAVAILABLE (nothing was written); its own answers pass through.
    fn upstream(&self, s: Status) -> Status {
        match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => status(
                Code::Unavailable,
                "PACKAGE_SERVICE_UNAVAILABLE",
                format!("the package service at {} is unavailable: {}; nothing was written", self.address, s.message()),
                [("package_service", self.address.clone())],
            ),
            _ => s,
        }
    }

    pub async fn info(&self, package_id: &str, token: &MetadataValue<Ascii>) -> Result<PackageInfo, Status> {
        let req = self.request(pb::GetPackageRequest { id: package_id.to_string() }, token);
        let p = self.client().get_package(req).await.map_err(|s| self.upstream(s))?.into_inner();
        Ok(PackageInfo {
            status: PackageStatus::from_proto(p.status),
            id: p.id,
            name: p.name,
            version: p.version,
            organization: p.organization,
            source_environment: p.source_environment,
            digest: p.digest,
        })
    }

    /// The full definition of one version, streamed.
    pub async fn content(
        &self,
        package_id: &str,
        version: i64,
        token: &MetadataValue<Ascii>,
    ) -> Result<PackageContent, Status> {
        let req = self.request(pb::GetPackageDefinitionRequest { id: package_id.to_string(), version }, token);
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
                    content.objects.extend(e.objects.into_iter().map(Into::into));
                    content.external_references.extend(e.external_references.into_iter().map(Into::into));
                }
                None => {}
            }
        }
        Ok(content)
    }

    /// Reports a successful installation (the outbox's delivery).
    pub async fn record_installation(
        &self,
        token: &MetadataValue<Ascii>,
        req: pb::RecordInstallationRequest,
    ) -> Result<(), Status> {
        let req = self.request(req, token);
        self.client().record_installation(req).await.map(|_| ())
    }

    /// A token for the service's own identity.
    pub async fn service_token(&self, client_id: &str, secret: &str) -> Result<MetadataValue<Ascii>, Status> {
        let mut auth = pb::auth_service_client::AuthServiceClient::new(self.channel.clone());
        let token = auth
            .issue_token(pb::IssueTokenRequest {
                client_id: client_id.into(),
                client_secret: secret.into(),
                ttl_seconds: 3600,
            })
            .await?
            .into_inner()
            .access_token;
        format!("Bearer {token}").parse().map_err(|_| Status::internal("the issued token is not a valid header"))
    }
}
