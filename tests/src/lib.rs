//! The end-to-end harness: a Postgres cluster per test process with a fresh database per test,
//! the mock upstream, and whole Weir stacks (control plane + data plane) over loopback.

pub mod mock_upstream;
pub mod otlp_receiver;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use weir_control_plane::embedded_pg::{Durability, EmbeddedPostgres};
use weir_proto::admin::admin_client::AdminClient;

/// Connection details of the process-wide test cluster.
struct Cluster {
    url_template: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// Starts (once per process) a throwaway cluster and returns the URL of a new, empty database.
pub async fn fresh_database() -> String {
    let cluster = CLUSTER.get_or_init(|| {
        // The cluster is started from a thread that never ends: its parent-death signal is tied
        // to the starting thread, and test threads come and go.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("weir-test-postgres".into())
            .spawn(move || {
                sweep_dead_clusters();
                let dir = tempfile::Builder::new()
                    .prefix("weir-test-pg-")
                    .tempdir()
                    .expect("temp dir");
                // The server may run as another user, which must reach the folder.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                    .expect("chmod temp dir");
                let pg = EmbeddedPostgres::start(dir.path(), Durability::Throwaway)
                    .unwrap_or_else(|e| panic!("starting the test Postgres cluster: {e}"));
                tx.send(pg.url("DBNAME")).expect("send url");
                let _keep = (pg, dir);
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn postgres thread");
        Cluster {
            url_template: rx.recv().expect("cluster started"),
        }
    });
    let name = format!("weir_test_{}", uuid::Uuid::new_v4().simple());
    weir_control_plane::database::create_database_if_missing(
        &cluster.url_template.replace("DBNAME", "postgres"),
        &name,
    )
    .await
    .expect("create test database");
    cluster.url_template.replace("DBNAME", &name)
}

/// Removes the folders of earlier test processes' clusters whose postmaster is gone.
///
/// The cluster lives in a static that is never dropped (a test binary exits without running
/// destructors), so each run would otherwise leave ~500 MB behind in the temp folder.
fn sweep_dead_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("weir-test-pg-")
        {
            continue;
        }
        let path = entry.path();
        let alive = match std::fs::read_to_string(path.join("pgdata/postmaster.pid")) {
            Ok(pid) => pid
                .lines()
                .next()
                .is_some_and(|pid| PathBuf::from(format!("/proc/{}", pid.trim())).exists()),
            // A cluster still being initialised has no pid file yet: leave young folders alone.
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < Duration::from_secs(600)),
        };
        if !alive {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A provider-backed record for `user` at `at`, of `model`, with `input` tokens.
pub fn record(
    at: chrono::DateTime<chrono::Utc>,
    user: uuid::Uuid,
    model: &str,
    input: u64,
) -> weir_proto::logs::RequestLog {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        at.timestamp() as u64,
        at.timestamp_subsec_nanos(),
    );
    // A random tail, so records at the same instant differ.
    let mut bytes = *uuid::Uuid::new_v7(ts).as_bytes();
    bytes[8..].copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[8..]);
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    use weir_proto::logs::{Attempt, Caller, RequestLog, Usage};
    RequestLog {
        log_id: bytes.to_vec(),
        request_id: format!("r-{}", uuid::Uuid::new_v4()),
        operation: "chat_completions".into(),
        model_key: model.into(),
        provider_key: "mock".into(),
        upstream_model: "up".into(),
        status_code: 200,
        outcome: "success".into(),
        duration_us: 1000,
        usage: Some(Usage {
            input_tokens: Some(input),
            output_tokens: Some(0),
            ..Default::default()
        }),
        caller: Some(Caller {
            user_id: user.to_string(),
            ..Default::default()
        }),
        attempts: vec![Attempt {
            number: 1,
            provider_key: "mock".into(),
            upstream_model: "up".into(),
            status_code: 200,
            produced_response: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A loopback port nothing listens on, for a process the test starts that must be told its
/// port up front. Taken below the kernel's ephemeral range (32768+ on Linux), so no `:0` bind
/// and no outgoing connection of a parallel test can take it between this check and the
/// process's own bind, and never the same twice in one test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Start somewhere per process, so concurrent test binaries rarely probe the same ports.
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 600) as u16 * 20,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let n = u32::from(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = (20_000 + n.wrapping_sub(20_000) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A random secret for tokens.
pub fn random_token() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// Polls `f` until it returns `Some` or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits (up to 15 s) until a node's config satisfies `pred`; panics naming `what` otherwise.
pub async fn until_config(
    config: &std::sync::Arc<weir_data_plane::config_stream::ConfigState>,
    what: &str,
    pred: impl Fn(&weir_data_plane::snapshot::Snapshot) -> bool,
) {
    let start = Instant::now();
    while !pred(&config.current.load()) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: not within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The folder holding the workspace's binaries (next to this test executable's `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A workspace binary, which `scripts/test` builds before running tests.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace binaries first (scripts/test does: cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// The Python interpreter that has the OpenAI SDK (set up by `scripts/test`).
pub fn python() -> PathBuf {
    let p = std::env::var_os("WEIR_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        panic!("WEIR_TEST_PYTHON is not set: run scripts/test, which installs the OpenAI and Anthropic SDKs into a venv and points this at it")
    });
    assert!(
        p.exists(),
        "WEIR_TEST_PYTHON={} does not exist",
        p.display()
    );
    p
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a command to completion off the async runtime.
pub async fn run(mut cmd: Command) -> Output {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("spawn command");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a command with `input` on its standard input, to completion, off the async runtime.
pub async fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let input = input.to_string();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        // A command that exits without reading (a usage error) closes the pipe first: that is
        // its answer, not a failure of the test harness.
        match child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
        {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
        child.wait_with_output()
    })
    .await
    .expect("join")
    .expect("run command");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A throwaway CA and a `localhost` leaf certificate it signed (P-256, one day), made with the
/// `openssl` CLI in `dir`.
pub struct TestCerts {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The leaf certificate (PEM), for `DNS:localhost`.
    pub cert: PathBuf,
    /// The leaf's private key (PEM).
    pub key: PathBuf,
}

/// Makes [`TestCerts`] in `dir`.
pub async fn throwaway_certs(dir: &std::path::Path) -> TestCerts {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let csr = dir.join("leaf.csr");
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("writing the extension file");
    let sh = format!(
        "set -e; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
           -subj /CN=weir-test-ca -keyout {ca_key} -out {ca} 2>/dev/null; \
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
           -subj /CN=localhost -keyout {key} -out {csr} 2>/dev/null; \
         openssl x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -days 1 \
           -extfile {ext} -out {cert} 2>/dev/null",
        ca = ca.display(),
        ca_key = ca_key.display(),
        key = key.display(),
        csr = csr.display(),
        cert = cert.display(),
        ext = ext.display(),
    );
    let out = run({
        let mut c = Command::new("bash");
        c.args(["-c", &sh]);
        c
    })
    .await;
    assert_eq!(out.code, 0, "openssl: {}", out.stderr);
    TestCerts { ca, cert, key }
}

/// A model to create: key, `(provider, upstream model)` targets in fallback order, operations
/// (empty: all) and route policy.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Model key.
    pub key: String,
    /// Targets in order.
    pub targets: Vec<(String, String)>,
    /// Operations served.
    pub operations: Vec<String>,
    /// Route policy.
    pub policy: Option<weir_proto::admin::RoutePolicy>,
}

impl ModelSpec {
    /// A model with default operations and policy.
    pub fn new(key: &str, targets: &[(&str, &str)]) -> Self {
        ModelSpec {
            key: key.into(),
            targets: targets
                .iter()
                .map(|(p, u)| (p.to_string(), u.to_string()))
                .collect(),
            operations: Vec::new(),
            policy: None,
        }
    }

    /// Restricts the operations served.
    pub fn operations(mut self, ops: &[&str]) -> Self {
        self.operations = ops.iter().map(|o| o.to_string()).collect();
        self
    }
}

/// One small chat completion through the data plane at `addr` with gateway key `key` and
/// request id `rid`; returns the status.
pub async fn chat_at(addr: std::net::SocketAddr, key: &str, model: &str, rid: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-request-id", rid)
        .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("gateway answers")
        .status()
        .as_u16()
}

/// A whole Weir: mock upstream, control plane on a fresh database, one data plane.
pub struct Stack {
    /// The mock upstream.
    pub upstream: mock_upstream::MockUpstream,
    /// The control plane.
    pub control_plane: weir_control_plane::ControlPlane,
    /// The data plane.
    pub data_plane: weir_data_plane::DataPlane,
    /// Admin token accepted by the control plane.
    pub admin_token: String,
    /// Data-plane token.
    pub dataplane_token: String,
}

impl Stack {
    /// Starts everything and waits until the data plane holds its config.
    pub async fn start() -> Stack {
        Self::start_with(|_| {}).await
    }

    /// Like [`Stack::start`], with the control plane's settings adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut weir_control_plane::Settings)) -> Stack {
        let upstream = mock_upstream::MockUpstream::start(([127, 0, 0, 1], 0).into())
            .await
            .expect("mock upstream");
        let admin_token = random_token();
        let dataplane_token = random_token();
        let settings = weir_control_plane::Settings {
            database_url: Some(fresh_database().await),
            data_dir: std::env::temp_dir(),
            grpc_listen: ([127, 0, 0, 1], 0).into(),
            http_listen: ([127, 0, 0, 1], 0).into(),
            purge: Default::default(),
            reconcile: Default::default(),
            admin_token: Some(admin_token.clone()),
            dataplane_token: dataplane_token.clone(),
            replica_id: "test-cp".into(),
            group_tokens: Default::default(),
            tls: None,
            // The test database is "external", so stored provider secrets need a given key.
            secrets_key: Some(weir_control_plane::settings::Hidden(format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ))),
        };
        let mut settings = settings;
        tweak(&mut settings);
        let control_plane = weir_control_plane::ControlPlane::start(settings)
            .await
            .expect("control plane starts");
        let data_plane = Self::start_data_plane(&control_plane, &dataplane_token, "test-dp").await;
        Stack {
            upstream,
            control_plane,
            data_plane,
            admin_token,
            dataplane_token,
        }
    }

    /// Starts a data plane against `cp` and waits for its config.
    pub async fn start_data_plane(
        cp: &weir_control_plane::ControlPlane,
        token: &str,
        node_id: &str,
    ) -> weir_data_plane::DataPlane {
        Self::start_data_plane_with(cp, token, node_id, |_| {}).await
    }

    /// Like [`Stack::start_data_plane`], with settings adjusted by `tweak`.
    pub async fn start_data_plane_with(
        cp: &weir_control_plane::ControlPlane,
        token: &str,
        node_id: &str,
        tweak: impl FnOnce(&mut weir_data_plane::Settings),
    ) -> weir_data_plane::DataPlane {
        let mut s = weir_data_plane::Settings::new(format!("http://{}", cp.grpc_addr), token);
        s.listen = ([127, 0, 0, 1], 0).into();
        s.node_id = node_id.into();
        s.log_batch_delay = Duration::from_millis(20);
        s.max_body_bytes = 8 * 1024 * 1024;
        tweak(&mut s);
        let dp = weir_data_plane::DataPlane::start(s)
            .await
            .expect("data plane starts");
        let ready = eventually(Duration::from_secs(10), || async {
            dp.is_ready().then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "data plane did not receive its config in 10 s"
        );
        dp
    }

    /// The control plane's gRPC URL.
    pub fn control_plane_url(&self) -> String {
        format!("http://{}", self.control_plane.grpc_addr)
    }

    /// The data plane's base URL for OpenAI clients, e.g. `http://127.0.0.1:1234/v1`.
    pub fn gateway_url(&self) -> String {
        format!("http://{}/v1", self.data_plane.addr)
    }

    /// An admin gRPC client with the admin token.
    pub async fn admin(
        &self,
    ) -> AdminClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone,
        >,
    > {
        let channel = tonic::transport::Channel::from_shared(self.control_plane_url())
            .expect("url")
            .connect()
            .await
            .expect("connect admin");
        let value: tonic::metadata::MetadataValue<_> = format!("Bearer {}", self.admin_token)
            .parse()
            .expect("token");
        AdminClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", value.clone());
            Ok(req)
        })
    }

    /// One small chat completion through the stack's data plane with gateway key `key` and
    /// request id `rid`; returns the status.
    pub async fn chat(&self, key: &str, model: &str, rid: &str) -> u16 {
        chat_at(self.data_plane.addr, key, model, rid).await
    }

    /// Sends `batches` over the real log-ingest stream as a data plane would, and waits until
    /// every batch is acked.
    pub async fn ingest(&self, batches: Vec<Vec<weir_proto::logs::RequestLog>>) {
        use weir_proto::logs::log_ingest_client::LogIngestClient;
        use weir_proto::logs::LogBatch;
        let stack = self;
        let channel = tonic::transport::Endpoint::from_shared(stack.control_plane_url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let value: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", stack.dataplane_token).parse().unwrap();
        let mut client =
            LogIngestClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", value.clone());
                Ok(r)
            });
        let n = batches.len();
        let (tx, rx) = tokio::sync::mpsc::channel(n.max(1));
        for (i, records) in batches.into_iter().enumerate() {
            tx.send(LogBatch {
                sequence: i as u64 + 1,
                records,
            })
            .await
            .unwrap();
        }
        drop(tx);
        let mut acks = client
            .ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let mut last = 0;
        while let Some(a) = acks.message().await.unwrap() {
            last = a.sequence;
        }
        assert_eq!(last, n as u64, "every batch acked");
    }

    /// The URL of this stack's database, for a second control-plane replica on it.
    pub async fn database_url(&self) -> String {
        let (db, port): (String, i32) =
            sqlx::query_as("SELECT current_database(), inet_server_port()")
                .fetch_one(&self.control_plane.pool)
                .await
                .expect("database name");
        let template = fresh_database().await;
        // Same cluster (same credentials and port), the stack's database name.
        let base = template.rsplit_once('/').expect("url").0.to_string();
        assert!(base.ends_with(&format!(":{port}")), "{base} vs {port}");
        format!("{base}/{db}")
    }

    /// A `weirctl` command pointed at this stack.
    pub fn weirctl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("weirctl"));
        c.args(args)
            .env("WEIR_CONTROL_PLANE", self.control_plane_url())
            .env("WEIR_ADMIN_TOKEN", &self.admin_token);
        c
    }

    /// Creates providers `mock` (OpenAI-compatible) and `mock-anthropic` (Anthropic), both on the
    /// mock upstream, a model per `(model key, upstream model)` on `mock`, user `alice` and a
    /// key for her; returns the key's secret.
    pub async fn seed(&self, models: &[(&str, &str)]) -> String {
        let specs: Vec<ModelSpec> = models
            .iter()
            .map(|(key, upstream)| ModelSpec::new(key, &[("mock", upstream)]))
            .collect();
        self.seed_models(&specs).await
    }

    /// Like [`Stack::seed`] with full model specs.
    pub async fn seed_models(&self, models: &[ModelSpec]) -> String {
        use weir_proto::admin::*;
        let mut admin = self.admin().await;
        for (key, kind) in [("mock", "openai"), ("mock-anthropic", "anthropic")] {
            admin
                .create_provider(CreateProviderRequest {
                    key: key.into(),
                    kind: kind.into(),
                    base_url: self.upstream.base_url(),
                    api_key_env: String::new(),
                    extra_headers: Default::default(),
                    auth_header: String::new(),
                    api_key: String::new(),
                })
                .await
                .expect("create provider");
        }
        for m in models {
            admin
                .create_model(CreateModelRequest {
                    key: m.key.clone(),
                    targets: m
                        .targets
                        .iter()
                        .map(|(p, u)| Target {
                            provider_key: p.clone(),
                            upstream_model: u.clone(),
                            weight: 1,
                        })
                        .collect(),
                    operations: m.operations.clone(),
                    policy: m.policy.clone(),
                    fleet_groups: Vec::new(),
                })
                .await
                .expect("create model");
        }
        admin
            .create_user(CreateUserRequest {
                name: "alice".into(),
                email: "alice@example.com".into(),
                request_logging_enabled: None,
            })
            .await
            .expect("create user");
        let key = admin
            .create_api_key(CreateApiKeyRequest {
                name: "alice-key".into(),
                owner_user: "alice".into(),
                allowed_models: vec![],
                expires_at: String::new(),
                fleet_groups: vec![],
                ..Default::default()
            })
            .await
            .expect("create key")
            .into_inner();
        let secret = key.secret;
        self.wait_for_key(&secret).await;
        let want = models.len();
        let cfg = self.data_plane.config.clone();
        let ok = eventually(Duration::from_secs(10), || {
            let cfg = cfg.clone();
            async move { (cfg.current.load().routes.len() >= want).then_some(()) }
        })
        .await;
        assert!(ok.is_some(), "the data plane never received every route");
        secret
    }

    /// Waits until the data plane accepts `secret` (config propagation).
    pub async fn wait_for_key(&self, secret: &str) {
        let hash = weir_proto::api_key::hash(secret);
        let cfg = self.data_plane.config.clone();
        let ok = eventually(Duration::from_secs(10), || {
            let cfg = cfg.clone();
            async move {
                let s = cfg.current.load();
                (s.keys.contains_key(&hash) && !s.routes.is_empty()).then_some(())
            }
        })
        .await;
        assert!(ok.is_some(), "the data plane never received the new key");
    }

    /// Stops everything.
    pub async fn shutdown(self) {
        self.data_plane.shutdown().await;
        self.control_plane.shutdown().await;
    }
}
