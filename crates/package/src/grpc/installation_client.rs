//! The installation check over gRPC: `InstallationService.CheckInstallation` on the
//! installation service hosting the destination, with the reporter's own token and trace.
use async_trait::async_trait;
use std::time::Duration;
use tonic::{Code, Request, Status};

use crate::installation_check::{InstallationCheck, Installed};
use promotion_api::status::{domain_code, metadata_of, reason_of};
use promotion_api::v1 as pb;
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::Credentials;
use promotion_core::upstream::UpstreamError;

/// One lookup by id; a service that cannot answer in this time is unavailable, and the
/// reporter's outbox retries.
const CHECK_DEADLINE: Duration = Duration::from_secs(10);

/// Asks the installation service named in the environment directory.
pub struct GrpcInstallationCheck;

#[async_trait]
impl InstallationCheck for GrpcInstallationCheck {
    async fn check(
        &self,
        destination: &EnvironmentInfo,
        installed: &Installed,
        credentials: &Credentials,
    ) -> Result<(), UpstreamError> {
        let address = &destination.installation_service;
        let channel = super::connect(address).await.map_err(|reason| unavailable(address, reason))?;
        let mut client = pb::installation_service_client::InstallationServiceClient::new(channel);
        let mut request = Request::new(pb::CheckInstallationRequest {
            installation_id: installed.installation_id.clone(),
            package_id: installed.package_id.clone(),
            package_version: installed.package_version,
            destination_environment: destination.id.clone(),
        });
        request.set_timeout(CHECK_DEADLINE);
        promotion_serving::forward(request.metadata_mut(), credentials).map_err(|_| {
            UpstreamError::new(
                promotion_core::Code::Unauthenticated,
                "TOKEN_MALFORMED",
                "the token cannot be forwarded",
            )
        })?;
        client.check_installation(request).await.map(|_| ()).map_err(|s| upstream(address, s))
    }
}

fn unavailable(address: &str, reason: String) -> UpstreamError {
    let mut e = UpstreamError::new(
        promotion_core::Code::Unavailable,
        "INSTALLATION_SERVICE_UNAVAILABLE",
        format!("{reason}; the installation could not be checked, and nothing was counted"),
    );
    e.metadata.insert("installation_service".into(), address.to_string());
    e
}

/// The installation service's answer as the domain sees it: not answering is
/// UNAVAILABLE; its refusals pass through.
fn upstream(address: &str, s: Status) -> UpstreamError {
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
            unavailable(address, format!("the installation service at {address} did not answer: {}", s.message()))
        }
        _ => UpstreamError {
            code: domain_code(s.code()),
            reason: reason_of(&s).unwrap_or_default(),
            message: s.message().to_string(),
            metadata: metadata_of(&s),
        },
    }
}
