//! Test harness: starts the real server on a real listener (port 0), with
//! either store; the MongoDB one talks to a real MongoDB-wire server
//! (SecantusDB, started here once per test binary) or to `MONGODB_URI`.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use webinar::config::{Settings, StoreKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Mongo,
}

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const JWT_SECRET: &str = "test-secret-known-to-the-tests";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .expect("binding an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

fn secantusd() -> PathBuf {
    if let Some(p) = std::env::var_os("SECANTUSD") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv-db/bin/secantusd-py");
    if venv.exists() {
        return venv;
    }
    panic!(
        "no MongoDB-wire server: set MONGODB_URI, or install SecantusDB with \
         `python3 -m venv .venv-db && .venv-db/bin/pip install SecantusDB==0.7.0b3` (scripts/install-deps does this)"
    );
}

/// The base URI of the MongoDB server for this test process.
pub fn mongo_base_uri() -> &'static str {
    static URI: OnceLock<String> = OnceLock::new();
    URI.get_or_init(|| {
        if let Ok(uri) = std::env::var("MONGODB_URI") {
            return uri;
        }
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("webinar-test-mongo-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the MongoDB data directory");
        // The server must not outlive this test process: a watchdog shell
        // stops it (and removes its data) when the process is gone.
        let script = format!(
            "{bin} --port {port} --storage-path {dir} >{dir}.log 2>&1 & s=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $s 2>/dev/null; do sleep 0.5; done; \
             kill $s 2>/dev/null; wait $s; rm -rf {dir} {dir}.log",
            bin = secantusd().display(),
            dir = dir.display(),
            parent = std::process::id(),
        );
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the MongoDB-wire server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "MongoDB-wire server did not start; see {}.log",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("mongodb://127.0.0.1:{port}")
    })
}

/// Settings for a fresh, isolated server: its own data directory and (for
/// MongoDB) its own database.
pub fn test_settings(backend: Backend, data_dir: &std::path::Path) -> Settings {
    let mut s = Settings::default();
    s.server.http_addr = "127.0.0.1:0".parse().unwrap();
    s.server.data_dir = data_dir.to_path_buf();
    s.auth.admin_email = Some(ADMIN_EMAIL.into());
    s.auth.admin_password = Some(ADMIN_PASSWORD.into());
    s.auth.jwt_secret = Some(JWT_SECRET.into());
    s.limits.login_per_minute = 1000;
    s.limits.register_per_minute = 1000;
    // Tests run side by side: media workers take any free port.
    s.media.rtc_port = 0;
    s.media.workers = Some(1);
    if backend == Backend::Mongo {
        s.store.kind = StoreKind::Mongodb;
        s.store.mongodb_uri = Some(mongo_base_uri().to_string());
        s.store.mongodb_database = format!("test_{}", uuid::Uuid::new_v4().simple());
    }
    s
}

pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub settings: Settings,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = test_settings(backend, dir.path());
        let mut server = Self::start_with(settings).await;
        server._dir = Some(dir);
        server
    }

    pub async fn start_with(settings: Settings) -> Self {
        let listener = tokio::net::TcpListener::bind(settings.server.http_addr)
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(webinar::serve(settings.clone(), listener, async {
            let _ = rx.await;
        }));
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(!handle.is_finished(), "server exited during start-up");
            assert!(Instant::now() < deadline, "server did not become healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            base,
            http,
            settings,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: None,
        }
    }

    /// Graceful stop; returns the data directory (if this server owns it) so
    /// that a restart can reuse it.
    pub async fn stop(mut self) -> (Settings, Option<tempfile::TempDir>) {
        self.shutdown.take().unwrap().send(()).ok();
        self.handle.take().unwrap().await.unwrap().unwrap();
        (self.settings.clone(), self._dir.take())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "login failed: {body}");
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    pub async fn create_webinar(&self, token: &str, requires_approval: bool) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/webinars",
                Some(token),
                Some(json!({"title": "Launch", "capacity": 100, "requiresApproval": requires_approval})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Registers `email`; returns (registration id, access key, status).
    pub async fn register(&self, webinar: &str, email: &str) -> (String, String, String) {
        let (status, body) = self
            .call(
                "POST",
                &format!("/api/v1/webinars/{webinar}/registrations"),
                None,
                Some(json!({"name": "Ann Attendee", "email": email})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_str().unwrap().to_string(),
            body["accessKey"].as_str().unwrap().to_string(),
            body["status"].as_str().unwrap().to_string(),
        )
    }

    /// `POST /webinars/{id}/join` as a host or co-host, with a login token.
    pub async fn join_as_host(&self, webinar: &str, login_token: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/webinars/{webinar}/join"),
            Some(login_token),
            None,
        )
        .await
    }

    pub async fn join_as(&self, webinar: &str, rid: &str, key: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/webinars/{webinar}/join"),
            None,
            Some(json!({"registrationId": rid, "accessKey": key})),
        )
        .await
    }
}

pub fn unique_email(tag: &str) -> String {
    format!(
        "{tag}-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}
