//! Starting and stopping the installation service: open the store, recover, build the
//! gRPC routes, serve until shutdown, flush.
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;

use crate::grpc::environment_service::EnvironmentApi;
use crate::grpc::package_client::PackageClient;
use crate::package_source::PackageSource;
use crate::state::State;
use promotion_api::v1 as pb;
use promotion_core::config::{Config, ServiceKind};
use promotion_core::directory::Directory;
use promotion_core::tokens::TokenSigner;
use promotion_serving::audit_service::AuditApi;
use promotion_serving::metrics::Admin;
use promotion_serving::{self as serving, auth_interceptor, Health};

/// The gRPC services this server serves (health and reflection report exactly these).
const SERVICES: &[&str] = &[
    "promotion.v1.EnvironmentService",
    "promotion.v1.InstallationService",
    "promotion.v1.PromotionService",
    "promotion.v1.NotificationService",
    "promotion.v1.AuditService",
];

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens the store and builds the shared handler state.
pub fn open(config: Config) -> Result<Arc<State>, BoxError> {
    let catalogs = config.validate(ServiceKind::Installation).map_err(|p| p.join("; "))?;
    let store = match config.database_url() {
        Some(url) => promotion_store::open_installation_store_pg(url)?,
        None => promotion_store::open_installation_store_cached(&config.data_dir, config.limits.store_cache_bytes)?,
    };
    let signer = Arc::new(
        TokenSigner::new(config.auth.signing_key.as_bytes(), &config.auth.issuer)
            .with_max_lifetime(config.auth.max_ttl_seconds),
    );
    let directory = Directory::from_config(&config, &catalogs);
    let packages = match config.package_service.as_deref() {
        Some(address) => Some(Arc::new(PackageClient::new(address)?) as Arc<dyn PackageSource>),
        None => None,
    };
    Ok(Arc::new(State::new(config, directory, store, signer, packages)))
}

/// The `promotion.v1` services of this server, behind the token check: what the gRPC port
/// serves next to health and reflection, and what the HTTP front door calls in process.
pub fn grpc_routes(state: &Arc<State>) -> Routes {
    let limit = state.config.limits.max_message_bytes;
    let authed = auth_interceptor(state.signer.clone());
    let routes = Routes::new(InterceptedService::new(
        pb::environment_service_server::EnvironmentServiceServer::new(EnvironmentApi::new(state.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        authed.clone(),
    ))
    .add_service(InterceptedService::new(
        pb::audit_service_server::AuditServiceServer::new(AuditApi::new(state.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        authed.clone(),
    ));
    crate::grpc::add_installation_services(routes, state.clone(), authed, limit)
}

/// Runs the installation service on `listener` until `shutdown` resolves.
pub async fn run(
    state: Arc<State>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let (health, health_service) = Health::new(SERVICES.to_vec()).await;
    let sized = state.clone();
    let admin =
        Admin::start(state.config.admin_listen, "installation", Arc::new(move || sized.store.size_on_disk())).await?;
    let (reflection_v1, reflection_v1alpha) = serving::reflection(SERVICES);
    let router = serving::server_builder()
        .add_routes(grpc_routes(&state))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let recovered = crate::recovery::recover(&state).await?;
    if recovered > 0 {
        tracing::warn!(count = recovered, "marked interrupted installations FAILED");
    }
    let (stop_outbox, outbox_stopped) = tokio::sync::oneshot::channel::<()>();
    let outbox = tokio::spawn(crate::outbox::run(state.clone(), async move {
        let _ = outbox_stopped.await;
    }));
    let deliveries = tokio::spawn(crate::notifications::deliver_forever(state.clone()));
    health.serving().await;
    admin.set_serving(true);
    tracing::info!(addr = %listener.local_addr()?, environments = ?state.config.hosted_environments, "installation service serving");
    serving::serve(router, listener, health, admin.not_serving_after(shutdown)).await?;
    let _ = stop_outbox.send(());
    let _ = outbox.await;
    // An attempt cut short is retried after the restart: deliveries are at least once.
    deliveries.abort();
    state.store.flush().await?;
    admin.stop();
    tracing::info!("installation service stopped; store flushed");
    Ok(())
}
