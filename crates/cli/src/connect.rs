//! Where the client connects and as whom: the profile's servers and token, and typed gRPC
//! clients that carry the bearer token and a deadline on every call. A call about an
//! environment goes to the installation service that hosts it, as the environment
//! directory says; the addresses are cached in the profile.
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::error::CliError;
use super::profiles::{config_dir, Profile, Store, DEFAULT_PROFILE};
use super::GlobalArgs;
use promotion_api::status::status;
use promotion_api::v1 as pb;

pub use super::profiles::CachedToken;

pub const DEFAULT_PACKAGE_ADDR: &str = "http://127.0.0.1:50051";
pub const DEFAULT_INSTALLATION_ADDR: &str = "http://127.0.0.1:50052";
/// Responses can be large (a pre-run of a big package); the services bound them anyway.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Accepts `host:port` as well as a URL.
pub fn normalize_address(address: &str) -> String {
    let trimmed = address.trim().trim_end_matches('/');
    if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;
pub type EnvironmentClient = pb::environment_service_client::EnvironmentServiceClient<Authed>;
pub type InstallationClient = pb::installation_service_client::InstallationServiceClient<Authed>;
pub type PromotionClient = pb::promotion_service_client::PromotionServiceClient<Authed>;
pub type AuditClient = pb::audit_service_client::AuditServiceClient<Authed>;

/// Where the token of this invocation comes from, for a helpful message when it is missing.
enum TokenState {
    Ready(String),
    Missing,
    Expired(DateTime<Utc>),
}

/// Resolved profile, addresses and token of one invocation, with lazily opened channels.
pub struct Session {
    pub profile_name: String,
    pub package_addr: String,
    /// The installation service that answers for the environment directory and for calls
    /// that name no environment.
    pub installation_addr: String,
    pub store: Option<Store>,
    profile: Mutex<Profile>,
    token: TokenState,
    timeout: Duration,
    channels: tokio::sync::Mutex<HashMap<String, Channel>>,
    /// The directory, read at most once per invocation.
    directory: tokio::sync::OnceCell<Vec<pb::Environment>>,
}

impl Session {
    /// Flags and environment variables win over the profile, which wins over the
    /// development-mode defaults.
    pub fn new(global: &GlobalArgs) -> Result<Session, CliError> {
        let store = config_dir(global.config_dir.as_deref()).ok().map(Store::new);
        let profile_name = match (&global.profile, &store) {
            (Some(p), _) => p.clone(),
            (None, Some(s)) => s.current()?,
            (None, None) => DEFAULT_PROFILE.into(),
        };
        super::profiles::check_name(&profile_name)?;
        let profile = match &store {
            Some(s) => s.load(&profile_name)?.unwrap_or_default(),
            None => Profile::default(),
        };
        let pick = |flag: &Option<String>, saved: &Option<String>, default: &str| {
            normalize_address(flag.as_deref().or(saved.as_deref()).unwrap_or(default))
        };
        let package_addr = pick(&global.package_server, &profile.package_server, DEFAULT_PACKAGE_ADDR);
        let installation_addr =
            pick(&global.installation_server, &profile.installation_server, DEFAULT_INSTALLATION_ADDR);
        let token = match (&global.token, &profile.token) {
            (Some(t), _) => TokenState::Ready(t.trim().to_string()),
            (None, Some(c)) => match c.expire_time {
                Some(t) if t <= Utc::now() => TokenState::Expired(t),
                _ => TokenState::Ready(c.access_token.clone()),
            },
            (None, None) => TokenState::Missing,
        };
        Ok(Session {
            profile_name,
            package_addr,
            installation_addr,
            store,
            profile: Mutex::new(profile),
            token,
            timeout: Duration::from_secs(global.timeout.unwrap_or(120).max(1)),
            channels: tokio::sync::Mutex::new(HashMap::new()),
            directory: tokio::sync::OnceCell::new(),
        })
    }

    /// The store, or why there is none.
    pub fn store(&self) -> Result<&Store, CliError> {
        self.store.as_ref().ok_or_else(|| {
            CliError::usage("cannot tell where to keep profiles: set PROMOTION_CONFIG_DIR, XDG_CONFIG_HOME or HOME")
        })
    }

    /// A copy of this invocation's profile as loaded (plus what it learnt since).
    pub fn profile(&self) -> Profile {
        self.profile.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Saves the profile after `change`.
    pub fn update_profile(&self, change: impl FnOnce(&mut Profile)) -> Result<std::path::PathBuf, CliError> {
        let mut profile = self.profile.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut profile);
        self.store()?.save(&self.profile_name, &profile)
    }

    /// A request carrying this invocation's deadline.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        req.set_timeout(self.timeout);
        req
    }

    fn bearer(&self) -> Result<Bearer, CliError> {
        let token = match &self.token {
            TokenState::Ready(t) => t,
            TokenState::Missing => {
                let profile = if self.profile_name == DEFAULT_PROFILE {
                    String::new()
                } else {
                    format!(" (profile {})", self.profile_name)
                };
                return Err(status(
                    Code::Unauthenticated,
                    "NOT_LOGGED_IN",
                    format!(
                        "not logged in{profile}: run `promotion login` first (or pass --token / set PROMOTION_TOKEN)"
                    ),
                    [],
                )
                .into());
            }
            TokenState::Expired(t) => {
                return Err(status(
                    Code::Unauthenticated,
                    "TOKEN_EXPIRED",
                    format!("the cached token expired at {}; run `promotion login` again", t.to_rfc3339()),
                    [],
                )
                .into())
            }
        };
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| CliError::usage("the token contains characters not allowed in a header"))?;
        Ok(Bearer(Some(value)))
    }

    async fn channel(&self, service: &'static str, address: &str) -> Result<Channel, CliError> {
        let mut channels = self.channels.lock().await;
        if let Some(c) = channels.get(address) {
            return Ok(c.clone());
        }
        let channel = connect(service, address).await?;
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// AuthService without a token (IssueToken needs none).
    pub async fn anonymous_auth(&self) -> Result<pb::auth_service_client::AuthServiceClient<Authed>, CliError> {
        let channel = self.channel("package service", &self.package_addr).await?;
        Ok(pb::auth_service_client::AuthServiceClient::with_interceptor(channel, Bearer(None)))
    }

    pub async fn auth(&self) -> Result<pb::auth_service_client::AuthServiceClient<Authed>, CliError> {
        let bearer = self.bearer()?;
        let channel = self.channel("package service", &self.package_addr).await?;
        Ok(pb::auth_service_client::AuthServiceClient::with_interceptor(channel, bearer))
    }

    pub async fn packages(&self) -> Result<pb::package_service_client::PackageServiceClient<Authed>, CliError> {
        let bearer = self.bearer()?;
        let channel = self.channel("package service", &self.package_addr).await?;
        Ok(pb::package_service_client::PackageServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE))
    }

    pub async fn environments_at(&self, address: &str) -> Result<EnvironmentClient, CliError> {
        let bearer = self.bearer()?;
        let channel = self.channel("installation service", address).await?;
        Ok(pb::environment_service_client::EnvironmentServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    pub async fn installations_at(&self, address: &str) -> Result<InstallationClient, CliError> {
        let bearer = self.bearer()?;
        let channel = self.channel("installation service", address).await?;
        Ok(pb::installation_service_client::InstallationServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    pub async fn promotions_at(&self, address: &str) -> Result<PromotionClient, CliError> {
        let bearer = self.bearer()?;
        let channel = self.channel("installation service", address).await?;
        Ok(pb::promotion_service_client::PromotionServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE))
    }

    pub async fn audit_at(&self, address: &str) -> Result<AuditClient, CliError> {
        let bearer = self.bearer()?;
        let channel = self.channel("service", address).await?;
        Ok(pb::audit_service_client::AuditServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE))
    }

    /// The directory's installation service (calls that name no environment).
    pub async fn environments(&self) -> Result<EnvironmentClient, CliError> {
        self.environments_at(&self.installation_addr.clone()).await
    }

    /// The installation service hosting `environment`.
    pub async fn environments_for(&self, environment: &str) -> Result<EnvironmentClient, CliError> {
        self.environments_at(&self.host_of(environment).await?).await
    }

    pub async fn installations_for(&self, environment: &str) -> Result<InstallationClient, CliError> {
        self.installations_at(&self.host_of(environment).await?).await
    }

    pub async fn promotions_for(&self, environment: &str) -> Result<PromotionClient, CliError> {
        self.promotions_at(&self.host_of(environment).await?).await
    }

    /// The address of the installation service hosting `environment`: from the profile's
    /// cache of the directory, else from the directory (read once per invocation, then
    /// cached); the directory's own service when the environment is not listed (it then
    /// answers NOT_FOUND as it should).
    pub async fn host_of(&self, environment: &str) -> Result<String, CliError> {
        if let Some(address) = self.cached_host(environment) {
            return Ok(address);
        }
        self.read_directory().await?;
        Ok(self.cached_host(environment).unwrap_or_else(|| self.installation_addr.clone()))
    }

    fn cached_host(&self, environment: &str) -> Option<String> {
        let profile = self.profile.lock().unwrap_or_else(|p| p.into_inner());
        // A cache learnt from another deployment's directory says nothing about this one.
        if profile.directory_server != self.installation_addr {
            return None;
        }
        profile.environments.get(environment).map(|a| normalize_address(a))
    }

    /// Every environment of the directory with its host; caches the addresses.
    pub async fn read_directory(&self) -> Result<Vec<pb::Environment>, CliError> {
        self.directory.get_or_try_init(|| self.fetch_directory()).await.cloned()
    }

    async fn fetch_directory(&self) -> Result<Vec<pb::Environment>, CliError> {
        let mut client = self.environments().await?;
        let mut environments = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListEnvironmentsRequest { page_size: 0, page_token };
            let page = client.list_environments(self.request(request)).await?.into_inner();
            environments.extend(page.environments);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let hosts: BTreeMap<String, String> =
            environments.iter().map(|e| (e.id.clone(), e.installation_service.clone())).collect();
        let directory_server = self.installation_addr.clone();
        let changed = {
            let profile = self.profile.lock().unwrap_or_else(|p| p.into_inner());
            profile.environments != hosts || profile.directory_server != directory_server
        };
        if changed {
            let save = self.store.is_some();
            let learn = |p: &mut Profile| {
                p.environments = hosts.clone();
                p.directory_server = directory_server.clone();
            };
            if !save || self.update_profile(learn).is_err() {
                // Without a writable profile the addresses are still known for this run.
                learn(&mut self.profile.lock().unwrap_or_else(|p| p.into_inner()));
            }
        }
        Ok(environments)
    }

    /// Every installation service of the deployment: the directory's first, then each other
    /// host the directory names.
    pub async fn installation_services(&self) -> Result<Vec<String>, CliError> {
        let environments = self.read_directory().await?;
        let mut addresses = vec![self.installation_addr.clone()];
        for e in environments {
            let address = normalize_address(&e.installation_service);
            if !e.installation_service.is_empty() && !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        Ok(addresses)
    }

    /// Asks `lookup` of each installation service in turn until one knows the resource
    /// (installations, pre-runs and promotion requests live where their environment is
    /// hosted, and their ids do not say where): the first answer that is not NOT_FOUND.
    pub async fn find<T, F, Fut>(&self, mut lookup: F) -> Result<(String, T), CliError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T, CliError>>,
    {
        let addresses = match self.installation_services().await {
            Ok(addresses) => addresses,
            // No directory to read (say, not logged in): the lookup's own error says why.
            Err(_) => vec![self.installation_addr.clone()],
        };
        let mut last = None;
        for address in addresses {
            match lookup(address.clone()).await {
                Ok(found) => return Ok((address, found)),
                Err(CliError::Status(s)) if s.code() == Code::NotFound => last = Some(CliError::Status(s)),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| CliError::failed("no installation service to ask")))
    }

    /// Forgets the cached hosts (after ENVIRONMENT_NOT_HOSTED: the directory changed).
    pub fn forget_hosts(&self) {
        let _ = self.update_profile(|p| p.environments.clear());
    }
}

async fn connect(service: &'static str, address: &str) -> Result<Channel, CliError> {
    let failed = |detail: String| CliError::Connect { service, address: address.to_string(), detail };
    let endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|e| CliError::usage(format!("{address:?} is not a valid {service} address: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    endpoint.connect().await.map_err(|e| failed(source_chain(&e)))
}

/// The innermost cause of a transport error ("Connection refused", ...).
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_a_scheme_get_http() {
        assert_eq!(normalize_address("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(normalize_address("https://promo.example.com/"), "https://promo.example.com");
    }
}
