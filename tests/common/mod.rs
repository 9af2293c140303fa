//! Shared harness for integration tests: starts the real `promotion` binary in
//! development mode on ephemeral loopback ports with a temporary data directory, and
//! gives typed gRPC clients that carry a demo client's token.
#![allow(dead_code, unused_imports)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promotion_api::v1 as pb;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub use promotion_api::status::{metadata_of, reason_of};
pub use promotion_store::pg_scratch::ScratchSchema;

/// A free loopback port. The tiny window between closing it and the service binding it
/// is acceptable for tests.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// `N` distinct free loopback ports: all are held until all are chosen, since a port just
/// closed may be handed out again at once.
pub fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let held: Vec<TcpListener> = (0..N).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap())
}

/// `promotion` with none of the tester's own `PROMOTION_*` variables: a configuration
/// override or a client setting in the shell that runs the tests must not change them.
pub fn promotion_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_promotion"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PROMOTION_") {
            command.env_remove(name);
        }
    }
    command
}

/// `promotion dev` running as a child process; killed on drop (and then its PostgreSQL
/// schema, if it has one, dropped).
pub struct DevServices {
    pub child: Child,
    pub package_addr: SocketAddr,
    pub installation_addr: SocketAddr,
    /// The one HTTP address of both services' JSON API.
    pub http_addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    pub schema: Option<ScratchSchema>,
}

impl DevServices {
    pub async fn start() -> DevServices {
        Self::start_in(tempfile::tempdir().unwrap()).await
    }

    /// Starts on an existing data directory (to test restarts).
    pub async fn start_in(data_dir: tempfile::TempDir) -> DevServices {
        Self::spawn(data_dir, None, "warn", Stdio::inherit()).await
    }

    /// Starts with both stores in a new PostgreSQL schema (`promotion dev --database-url`);
    /// None where no server answers outside CI (`ScratchSchema` says so).
    pub async fn start_on_postgres() -> Option<DevServices> {
        let schema = ScratchSchema::create()?;
        Some(Self::spawn(tempfile::tempdir().unwrap(), Some(schema), "warn", Stdio::inherit()).await)
    }

    /// Starts on the PostgreSQL database at `url`, which other processes may share: a
    /// replica of both services (the caller owns the schema).
    pub async fn start_replica(url: &str) -> DevServices {
        Self::spawn_on(tempfile::tempdir().unwrap(), None, Some(url), "warn", Stdio::inherit()).await
    }

    /// Starts with its log, filtered by `rust_log`, written to the file `log`.
    pub async fn start_logging(log: &std::path::Path, rust_log: &str) -> DevServices {
        let file = std::fs::File::create(log).expect("create the log file");
        Self::spawn(tempfile::tempdir().unwrap(), None, rust_log, Stdio::from(file)).await
    }

    async fn spawn(
        data_dir: tempfile::TempDir,
        schema: Option<ScratchSchema>,
        rust_log: &str,
        stderr: Stdio,
    ) -> DevServices {
        let url = schema.as_ref().map(ScratchSchema::url);
        Self::spawn_on(data_dir, schema, url.as_deref(), rust_log, stderr).await
    }

    async fn spawn_on(
        data_dir: tempfile::TempDir,
        schema: Option<ScratchSchema>,
        database_url: Option<&str>,
        rust_log: &str,
        stderr: Stdio,
    ) -> DevServices {
        let [package_addr, installation_addr, http_addr] = free_addrs();
        let mut command = promotion_command();
        command
            .args(["dev", "--data-dir"])
            .arg(data_dir.path())
            .args(["--package-addr", &package_addr.to_string(), "--installation-addr", &installation_addr.to_string()])
            .args(["--http-addr", &http_addr.to_string()]);
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        let child = command
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start promotion dev");
        let mut services = DevServices { child, package_addr, installation_addr, http_addr, data_dir, schema };
        services.wait_serving().await;
        services
    }

    async fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for addr in [self.package_addr, self.installation_addr] {
            loop {
                if health_status(addr).await == Some(1) {
                    break;
                }
                // A port taken in the moment between probing and binding ends the process.
                if let Ok(Some(exit)) = self.child.try_wait() {
                    panic!("promotion dev exited ({exit}) before serving at {addr}");
                }
                assert!(Instant::now() < deadline, "service at {addr} did not become SERVING");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Stops the process (SIGTERM, so that it flushes its log) and returns the log it wrote.
    pub fn stop_and_read(self, log: &std::path::Path) -> String {
        let _ = self.terminate();
        std::fs::read_to_string(log).expect("read the log")
    }

    /// Stops the process with SIGKILL and returns the data directory for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data_dir, dir)
    }

    /// Stops the process with SIGTERM (graceful) and waits for it.
    pub fn terminate(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        unsafe_sigterm(self.child.id());
        let status = self.child.wait().unwrap();
        let dir = tempfile::tempdir().unwrap();
        (status, std::mem::replace(&mut self.data_dir, dir))
    }

    pub fn package_url(&self) -> String {
        format!("http://{}", self.package_addr)
    }

    /// The JSON API's base URL (`http://host:port/environment-promotion/v1`).
    pub fn api_url(&self) -> String {
        format!("http://{}/environment-promotion/v1", self.http_addr)
    }

    pub fn installation_url(&self) -> String {
        format!("http://{}", self.installation_addr)
    }

    pub async fn token(&self, client: &str) -> String {
        issue_token(self.package_addr, client, &format!("{client}-secret")).await
    }

    /// Clients of both services carrying `client`'s token.
    pub async fn clients(&self, client: &str) -> Clients {
        Clients::connect(self.package_addr, self.installation_addr, Some(self.token(client).await)).await
    }

    /// Clients without any token.
    pub async fn anonymous(&self) -> Clients {
        Clients::connect(self.package_addr, self.installation_addr, None).await
    }
}

impl Drop for DevServices {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
}

/// Health of the whole server: Some(1) = SERVING, Some(2) = NOT_SERVING, None = down.
pub async fn health_status(addr: SocketAddr) -> Option<i32> {
    let channel = Channel::from_shared(format!("http://{addr}")).ok()?.connect().await.ok()?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let resp = client.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.ok()?;
    Some(resp.into_inner().status)
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

pub async fn issue_token(package_addr: SocketAddr, client_id: &str, secret: &str) -> String {
    let mut auth = pb::auth_service_client::AuthServiceClient::new(channel(package_addr).await);
    auth.issue_token(pb::IssueTokenRequest {
        client_id: client_id.into(),
        client_secret: secret.into(),
        ttl_seconds: 0,
    })
    .await
    .unwrap_or_else(|e| panic!("token for {client_id}: {e}"))
    .into_inner()
    .access_token
}

/// Adds `authorization: Bearer <token>` to every call (nothing when there is no token).
#[derive(Clone)]
pub struct Bearer(pub Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
pub struct Clients {
    pub auth: pb::auth_service_client::AuthServiceClient<Authed>,
    pub packages: pb::package_service_client::PackageServiceClient<Authed>,
    pub package_audit: pb::audit_service_client::AuditServiceClient<Authed>,
    pub environments: pb::environment_service_client::EnvironmentServiceClient<Authed>,
    pub installations: pb::installation_service_client::InstallationServiceClient<Authed>,
    pub promotions: pb::promotion_service_client::PromotionServiceClient<Authed>,
    pub notifications: pb::notification_service_client::NotificationServiceClient<Authed>,
    pub installation_audit: pb::audit_service_client::AuditServiceClient<Authed>,
}

impl Clients {
    pub async fn connect(package_addr: SocketAddr, installation_addr: SocketAddr, token: Option<String>) -> Clients {
        let bearer = Bearer(token.map(|t| format!("Bearer {t}").parse().unwrap()));
        let p = channel(package_addr).await;
        let i = channel(installation_addr).await;
        let limit = 64 * 1024 * 1024;
        Clients {
            auth: pb::auth_service_client::AuthServiceClient::with_interceptor(p.clone(), bearer.clone()),
            packages: pb::package_service_client::PackageServiceClient::with_interceptor(p.clone(), bearer.clone())
                .max_decoding_message_size(limit),
            package_audit: pb::audit_service_client::AuditServiceClient::with_interceptor(p, bearer.clone()),
            environments: pb::environment_service_client::EnvironmentServiceClient::with_interceptor(
                i.clone(),
                bearer.clone(),
            )
            .max_decoding_message_size(limit),
            installations: pb::installation_service_client::InstallationServiceClient::with_interceptor(
                i.clone(),
                bearer.clone(),
            )
            .max_decoding_message_size(limit),
            promotions: pb::promotion_service_client::PromotionServiceClient::with_interceptor(
                i.clone(),
                bearer.clone(),
            ),
            notifications: pb::notification_service_client::NotificationServiceClient::with_interceptor(
                i.clone(),
                bearer.clone(),
            ),
            installation_audit: pb::audit_service_client::AuditServiceClient::with_interceptor(i, bearer),
        }
    }
}

/// The seed's example ids.
pub const AGENCY_REQUEST_PROJ: &str = "6419b8b9001151ee258921a4f7597ba1";
pub const ONBOARDING_TMPL: &str = "6419b8b9001151ee258921a4f7597bb2";
pub const OFFBOARDING_TMPL: &str = "6419b8b9001151ee258921a4f7597bc3";
pub const READINESS_PTLTAB: &str = "645e6435000b4aaebe4776f4a42ed5ad";

/// Asserts a call failed with `code` and ErrorInfo `reason`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: tonic::Code, reason: &str) -> Status {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "unexpected code: {status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some(reason), "unexpected reason: {status:?}");
    status
}

/// The package service and the installation service as two separate processes (the
/// production layout), configured like development mode but without demo data.
pub struct SplitServices {
    pub package: Option<Child>,
    pub installation: Option<Child>,
    pub package_addr: SocketAddr,
    pub installation_addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl SplitServices {
    pub async fn start() -> SplitServices {
        let dir = tempfile::tempdir().unwrap();
        let opts = DevAddrs { package_addr: free_addr(), installation_addr: free_addr() };
        let (package, installation) = dev_configs(dir.path().to_path_buf(), opts.package_addr, opts.installation_addr);
        std::fs::write(dir.path().join("package.toml"), toml::to_string(&package).unwrap()).unwrap();
        std::fs::write(dir.path().join("installation.toml"), toml::to_string(&installation).unwrap()).unwrap();
        let mut s = SplitServices {
            package: None,
            installation: None,
            package_addr: opts.package_addr,
            installation_addr: opts.installation_addr,
            dir,
        };
        s.start_package().await;
        s.start_installation().await;
        s
    }

    fn spawn(&self, sub: &str, config: &str) -> Child {
        promotion_command()
            .args([sub, "--config"])
            .arg(self.dir.path().join(config))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start service")
    }

    async fn wait(addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while health_status(addr).await != Some(1) {
            assert!(Instant::now() < deadline, "service at {addr} did not become SERVING");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn start_package(&mut self) {
        self.package = Some(self.spawn("package-service", "package.toml"));
        Self::wait(self.package_addr).await;
    }

    pub async fn start_installation(&mut self) {
        self.installation = Some(self.spawn("installation-service", "installation.toml"));
        Self::wait(self.installation_addr).await;
    }

    /// SIGKILL, no chance to flush or clean up.
    pub fn kill_package(&mut self) {
        if let Some(mut c) = self.package.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill_installation(&mut self) {
        if let Some(mut c) = self.installation.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn clients(&self, client: &str) -> Clients {
        let token = issue_token(self.package_addr, client, &format!("{client}-secret")).await;
        Clients::connect(self.package_addr, self.installation_addr, Some(token)).await
    }
}

impl Drop for SplitServices {
    fn drop(&mut self) {
        self.kill_package();
        self.kill_installation();
    }
}

/// Where a pair of services listens.
pub struct DevAddrs {
    pub package_addr: SocketAddr,
    pub installation_addr: SocketAddr,
}

/// The configurations development mode runs with for these addresses and data directory,
/// as the binary writes them (`promotion dev --write-config`).
pub fn dev_configs(
    data_dir: std::path::PathBuf,
    package_addr: SocketAddr,
    installation_addr: SocketAddr,
) -> (promotion_core::config::Config, promotion_core::config::Config) {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_promotion"))
        .args(["dev", "--data-dir"])
        .arg(&data_dir)
        .args(["--package-addr", &package_addr.to_string(), "--installation-addr", &installation_addr.to_string()])
        .arg("--write-config")
        .arg(out.path())
        .status()
        .expect("run promotion dev --write-config");
    assert!(status.success(), "promotion dev --write-config failed");
    let read = |name: &str| -> promotion_core::config::Config {
        toml::from_str(&std::fs::read_to_string(out.path().join(name)).unwrap()).unwrap()
    };
    (read("package-service.toml"), read("installation-service.toml"))
}

/// Development mode's demo objects of one environment, from the demo data file.
pub fn demo_objects(environment: &str) -> Vec<promotion_core::objects::ConfigObject> {
    let demo: serde_json::Value =
        serde_json::from_str(include_str!("../../crates/dev/demo.json")).expect("demo.json is JSON");
    serde_json::from_value(demo[environment].clone()).unwrap_or_default()
}

/// Waits until a package has left EXTRACTING (whatever it became).
pub async fn extracted(c: &mut Clients, id: &str) -> pb::Package {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = c.packages.get_package(pb::GetPackageRequest { id: id.into() }).await.unwrap().into_inner();
        if p.status != pb::PackageStatus::Extracting as i32 {
            return p;
        }
        assert!(Instant::now() < deadline, "package {id} is still EXTRACTING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves a package to `status` (UpdatePackage with the status mask, no etag).
pub async fn set_package_status(c: &mut Clients, id: &str, status: pb::PackageStatus) -> pb::Package {
    let package = pb::Package { id: id.into(), status: status as i32, ..Default::default() };
    let mask = Some(prost_types::FieldMask { paths: vec!["status".into()] });
    let req = pb::UpdatePackageRequest { package: Some(package), update_mask: mask, ..Default::default() };
    c.packages.update_package(req).await.unwrap().into_inner()
}

/// A package of one `dev` group, extracted and then moved through `statuses`.
pub async fn group_package(c: &mut Clients, name: &str, statuses: &[pb::PackageStatus]) -> pb::Package {
    let groups = pb::ListObjectsRequest {
        environment: "dev".into(),
        obj_code: "GROUP".into(),
        page_size: 1,
        ..Default::default()
    };
    let group = c.environments.list_objects(groups).await.unwrap().into_inner().objects.remove(0);
    let req = pb::CreatePackageRequest {
        name: name.into(),
        source_environment: "dev".into(),
        object_collections: vec![pb::ObjectCollection {
            obj_code: "GROUP".into(),
            entities: vec![pb::EntityRef { id: group.id, name: String::new() }],
        }],
        ..Default::default()
    };
    let p = c.packages.create_package(req).await.unwrap().into_inner();
    let mut p = extracted(c, &p.id).await;
    for s in statuses {
        p = set_package_status(c, &p.id, *s).await;
    }
    p
}

/// An answer of the JSON API.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over its own connection, as curl sends it: `target` is a path,
/// `headers` are `Name: value` lines.
pub async fn http_call(addr: SocketAddr, method: &str, target: &str, headers: &[&str], body: &str) -> HttpAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the HTTP port");
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(&format!("{header}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpAnswer { status, headers, body: body.to_string() }
}
