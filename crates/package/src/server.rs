//! Starting and stopping the package service: open the store, recover interrupted
//! extractions, build the gRPC routes, serve until shutdown, flush.
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;

use crate::grpc::auth_service::AuthApi;
use crate::grpc::export_client::GrpcObjectSource;
use crate::grpc::installation_client::GrpcInstallationCheck;
use crate::state::State;
use promotion_api::v1 as pb;
use promotion_core::config::{Config, ServiceKind};
use promotion_core::directory::Directory;
use promotion_core::tokens::TokenSigner;
use promotion_serving::audit_service::AuditApi;
use promotion_serving::metrics::Admin;
use promotion_serving::{self as serving, auth_interceptor, Health};

/// The gRPC services this server serves (health and reflection report exactly these).
const SERVICES: &[&str] = &["promotion.v1.PackageService", "promotion.v1.AuthService", "promotion.v1.AuditService"];

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Validates the configuration, opens the store and builds the shared handler state.
pub fn open(config: Config) -> Result<Arc<State>, BoxError> {
    let catalogs = config.validate(ServiceKind::Package).map_err(|p| p.join("; "))?;
    let store = match config.database_url() {
        Some(url) => promotion_store::open_package_store_pg(url)?,
        None => promotion_store::open_package_store_cached(&config.data_dir, config.limits.store_cache_bytes)?,
    };
    let signer = Arc::new(
        TokenSigner::new(config.auth.signing_key.as_bytes(), &config.auth.issuer)
            .with_max_lifetime(config.auth.max_ttl_seconds),
    );
    let directory = Directory::from_config(&config, &catalogs);
    let source = Arc::new(GrpcObjectSource { max_message_bytes: config.limits.max_message_bytes });
    let installations = Arc::new(GrpcInstallationCheck);
    Ok(Arc::new(State::new(config, directory, store, signer, source, installations)))
}

/// The `promotion.v1` services of this server (behind the token check where they need a
/// token): what the gRPC port serves next to health and reflection, and what the HTTP
/// front door calls in process.
pub fn grpc_routes(state: &Arc<State>) -> Routes {
    let limit = state.config.limits.max_message_bytes;
    let authed = auth_interceptor(state.signer.clone());
    let routes = Routes::new(
        pb::auth_service_server::AuthServiceServer::new(AuthApi::new(state.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    )
    .add_service(InterceptedService::new(
        pb::audit_service_server::AuditServiceServer::new(AuditApi::new(state.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        authed.clone(),
    ));
    crate::grpc::add_package_service(routes, state.clone(), authed, limit)
}

/// Runs the package service on `listener` until `shutdown` resolves.
pub async fn run(
    state: Arc<State>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let (health, health_service) = Health::new(SERVICES.to_vec()).await;
    let sized = state.store.clone();
    let admin = Admin::start(state.config.admin_listen, "package", Arc::new(move || sized.size_on_disk())).await?;
    let interrupted = crate::extraction::recover(&state).await.map_err(|e| e.to_string())?;
    if interrupted > 0 {
        tracing::warn!(packages = interrupted, "extractions interrupted by the last stop are now EXTRACTION_FAILED");
    }
    let (reflection_v1, reflection_v1alpha) = serving::reflection(SERVICES);
    let router = serving::server_builder()
        .add_routes(grpc_routes(&state))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    health.serving().await;
    admin.set_serving(true);
    tracing::info!(addr = %listener.local_addr()?, "package service serving");
    let stopping = state.clone();
    let shutdown = async move {
        shutdown.await;
        // Watch streams never end by themselves; they must let the drain finish.
        stopping.stop();
    };
    serving::serve(router, listener, health, admin.not_serving_after(shutdown)).await?;
    state.store.flush().await?;
    admin.stop();
    tracing::info!("package service stopped; store flushed");
    Ok(())
}
