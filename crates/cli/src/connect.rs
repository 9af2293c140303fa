//! Where the client connects and as whom: server addresses, the cached token file, and
//! typed gRPC clients that carry the bearer token and a deadline on every call.
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::error::CliError;
use super::GlobalArgs;
use promotion_api::status::status;
use promotion_api::v1 as pb;

pub const DEFAULT_PACKAGE_ADDR: &str = "http://127.0.0.1:50051";
pub const DEFAULT_INSTALLATION_ADDR: &str = "http://127.0.0.1:50052";
const TOKEN_FILE: &str = "token.json";
/// Responses can be large (a pre-run of a big package); the services bound them anyway.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// What `promotion login` leaves behind for the other commands. Never holds the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedToken {
    pub access_token: String,
    pub expire_time: Option<DateTime<Utc>>,
    pub subject: String,
    pub organization: String,
    pub package_server: String,
    pub installation_server: String,
}

/// The directory holding the token file: `--config-dir` / PROMOTION_CONFIG_DIR, else
/// `$XDG_CONFIG_HOME/promotion`, else `~/.config/promotion`.
pub fn config_dir(explicit: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(xdg) = non_empty("XDG_CONFIG_HOME") {
        return Ok(xdg.join("promotion"));
    }
    non_empty("HOME").map(|home| home.join(".config").join("promotion")).ok_or_else(|| {
        CliError::usage("cannot tell where to keep the token: set PROMOTION_CONFIG_DIR, XDG_CONFIG_HOME or HOME")
    })
}

pub fn token_path(dir: &Path) -> PathBuf {
    dir.join(TOKEN_FILE)
}

pub fn read_token(dir: &Path) -> Result<Option<CachedToken>, CliError> {
    let path = token_path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CliError::failed(format!("{} is not a token file ({e}); run `promotion login` again", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::failed(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Writes the token readable by its owner only (0600, directory 0700), replacing any
/// earlier one in a single rename so a reader never sees half a file.
pub fn write_token(dir: &Path, token: &CachedToken) -> Result<PathBuf, CliError> {
    let io = |what: &str, p: &Path, e: std::io::Error| CliError::failed(format!("cannot {what} {}: {e}", p.display()));
    create_private_dir(dir).map_err(|e| io("create", dir, e))?;
    let path = token_path(dir);
    let tmp = dir.join(format!(".{TOKEN_FILE}.{}", std::process::id()));
    let body = serde_json::to_vec_pretty(token).map_err(|e| CliError::failed(e.to_string()))?;
    write_private_file(&tmp, &body).map_err(|e| io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("replace", &path, e))?;
    Ok(path)
}

/// Removes the cached token; true when there was one.
pub fn remove_token(dir: &Path) -> Result<bool, CliError> {
    let path = token_path(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CliError::failed(format!("cannot remove {}: {e}", path.display()))),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private_file(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(body)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, body: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, body)
}

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

/// Where the token of this invocation comes from, for a helpful message when it is missing.
enum TokenState {
    Ready(String),
    Missing,
    Expired(DateTime<Utc>),
}

/// Resolved addresses and token of one invocation, with lazily opened channels.
pub struct Session {
    pub package_addr: String,
    pub installation_addr: String,
    pub config_dir: Option<PathBuf>,
    token: TokenState,
    timeout: Duration,
    package: OnceCell<Channel>,
    installation: OnceCell<Channel>,
}

impl Session {
    /// Flags and environment variables win over what `login` cached, which wins over the
    /// development-mode defaults.
    pub fn new(global: &GlobalArgs) -> Result<Session, CliError> {
        let config_dir = config_dir(global.config_dir.as_deref()).ok();
        let cached = match &config_dir {
            Some(dir) => read_token(dir)?,
            None => None,
        };
        let pick = |flag: &Option<String>, cached: Option<&String>, default: &str| {
            normalize_address(flag.as_deref().or(cached.map(String::as_str)).unwrap_or(default))
        };
        let package_addr =
            pick(&global.package_server, cached.as_ref().map(|c| &c.package_server), DEFAULT_PACKAGE_ADDR);
        let installation_addr = pick(
            &global.installation_server,
            cached.as_ref().map(|c| &c.installation_server),
            DEFAULT_INSTALLATION_ADDR,
        );
        let token = match (&global.token, cached) {
            (Some(t), _) => TokenState::Ready(t.trim().to_string()),
            (None, Some(c)) => match c.expire_time {
                Some(t) if t <= Utc::now() => TokenState::Expired(t),
                _ => TokenState::Ready(c.access_token),
            },
            (None, None) => TokenState::Missing,
        };
        Ok(Session {
            package_addr,
            installation_addr,
            config_dir,
            token,
            timeout: Duration::from_secs(global.timeout.max(1)),
            package: OnceCell::new(),
            installation: OnceCell::new(),
        })
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
                return Err(status(
                    Code::Unauthenticated,
                    "NOT_LOGGED_IN",
                    "not logged in: run `promotion login` first (or pass --token / set PROMOTION_TOKEN)",
                    [],
                )
                .into())
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

    async fn package_channel(&self) -> Result<Channel, CliError> {
        self.package.get_or_try_init(|| connect("package service", &self.package_addr)).await.cloned()
    }

    async fn installation_channel(&self) -> Result<Channel, CliError> {
        self.installation.get_or_try_init(|| connect("installation service", &self.installation_addr)).await.cloned()
    }

    /// AuthService without a token (IssueToken needs none).
    pub async fn anonymous_auth(&self) -> Result<pb::auth_service_client::AuthServiceClient<Authed>, CliError> {
        Ok(pb::auth_service_client::AuthServiceClient::with_interceptor(self.package_channel().await?, Bearer(None)))
    }

    pub async fn auth(&self) -> Result<pb::auth_service_client::AuthServiceClient<Authed>, CliError> {
        let bearer = self.bearer()?;
        Ok(pb::auth_service_client::AuthServiceClient::with_interceptor(self.package_channel().await?, bearer))
    }

    pub async fn packages(&self) -> Result<pb::package_service_client::PackageServiceClient<Authed>, CliError> {
        let bearer = self.bearer()?;
        Ok(pb::package_service_client::PackageServiceClient::with_interceptor(self.package_channel().await?, bearer)
            .max_decoding_message_size(MAX_MESSAGE))
    }

    pub async fn environments(
        &self,
    ) -> Result<pb::environment_service_client::EnvironmentServiceClient<Authed>, CliError> {
        let bearer = self.bearer()?;
        let channel = self.installation_channel().await?;
        Ok(pb::environment_service_client::EnvironmentServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    pub async fn installations(
        &self,
    ) -> Result<pb::installation_service_client::InstallationServiceClient<Authed>, CliError> {
        let bearer = self.bearer()?;
        let channel = self.installation_channel().await?;
        Ok(pb::installation_service_client::InstallationServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    pub async fn promotions(&self) -> Result<pb::promotion_service_client::PromotionServiceClient<Authed>, CliError> {
        let bearer = self.bearer()?;
        let channel = self.installation_channel().await?;
        Ok(pb::promotion_service_client::PromotionServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE))
    }

    /// The audit trail of the package service (`package == true`) or the installation service.
    pub async fn audit(&self, package: bool) -> Result<pb::audit_service_client::AuditServiceClient<Authed>, CliError> {
        let bearer = self.bearer()?;
        let channel = if package { self.package_channel().await? } else { self.installation_channel().await? };
        Ok(pb::audit_service_client::AuditServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE))
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

    #[test]
    fn the_token_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        assert!(read_token(&nested).unwrap().is_none());
        let token = CachedToken {
            access_token: "t".into(),
            expire_time: None,
            subject: "alice".into(),
            organization: "acme".into(),
            package_server: DEFAULT_PACKAGE_ADDR.into(),
            installation_server: DEFAULT_INSTALLATION_ADDR.into(),
        };
        let path = write_token(&nested, &token).unwrap();
        assert_eq!(read_token(&nested).unwrap().unwrap().subject, "alice");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(&nested).unwrap().permissions().mode() & 0o777, 0o700);
        }
        assert!(remove_token(&nested).unwrap());
        assert!(!remove_token(&nested).unwrap());
    }
}
