//! Settings: the one `Settings` struct and how it is assembled.
//!
//! Layers, later ones winning: built-in defaults, `config/default.toml`,
//! `config/local.toml` (optional, not committed), the file named by
//! `WEBINAR_CONFIG` (optional), then `WEBINAR__SECTION__KEY` environment
//! variables. Unknown keys anywhere are an error that names the key, so a
//! misspelt setting never silently falls back to its default.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

const ENV_PREFIX: &str = "WEBINAR__";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub store: StoreSettings,
    pub media: MediaSettings,
    pub geoip: GeoipSettings,
    pub transcription: TranscriptionSettings,
    pub summary: SummarySettings,
    pub limits: LimitSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// REST + Socket.IO + web app listen address.
    pub http_addr: SocketAddr,
    /// The URL browsers use; derived from `http_addr` when unset.
    pub public_url: Option<String>,
    /// Allowed browser origins; empty means same origin only.
    pub cors_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed (IPs or CIDRs).
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Embedded store, JWT secret, recordings and segments live here.
    pub data_dir: PathBuf,
    /// Static files of the browser app, served at `/` when the folder exists.
    pub web_dir: PathBuf,
    /// A host or co-host whose connection drops keeps their media flowing
    /// and their attendance session open this long, in seconds.
    pub presenter_grace_seconds: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            public_url: None,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            data_dir: PathBuf::from("./data"),
            web_dir: PathBuf::from("./web/dist"),
            presenter_grace_seconds: 15,
        }
    }
}

impl ServerSettings {
    /// `public_url`, or one derived from the listen address (an unspecified
    /// bind address is shown as localhost, which is what a local browser uses).
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let host = match bound.ip() {
            ip if ip.is_unspecified() => "localhost".to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        format!("http://{host}:{}", bound.port())
    }
}

/// An IP address or CIDR block; a bare address means that one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustedProxy(pub IpNet);

impl TryFrom<String> for TrustedProxy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Self(net));
        }
        s.parse::<IpAddr>()
            .map(|ip| Self(IpNet::from(ip)))
            .map_err(|_| format!("`{s}` is neither an IP address nor a CIDR block"))
    }
}

impl From<TrustedProxy> for String {
    fn from(p: TrustedProxy) -> String {
        p.0.to_string()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC secret for tokens; generated and persisted in `data_dir` when unset.
    pub jwt_secret: Option<String>,
    /// A host account created (idempotently) at start when both are set.
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    /// Lifetime of login tokens, in minutes (default 12 hours).
    pub login_token_minutes: Option<u32>,
    /// Lifetime of join tokens, in minutes (default 24 hours).
    pub join_token_minutes: Option<u32>,
}

impl AuthSettings {
    pub fn login_token_ttl(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.login_token_minutes.unwrap_or(12 * 60)))
    }
    pub fn join_token_ttl(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.join_token_minutes.unwrap_or(24 * 60)))
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Embedded,
    Mongodb,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    pub kind: StoreKind,
    /// MongoDB connection string (required when `kind = "mongodb"`).
    pub mongodb_uri: Option<String>,
    /// Database used when the URI names none.
    pub mongodb_database: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            mongodb_uri: None,
            mongodb_database: "webinar".to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSettings {
    /// Media bind address.
    pub listen_ip: IpAddr,
    /// Address put in ICE candidates; = `listen_ip` when unset.
    pub announced_ip: Option<String>,
    /// First UDP port of the WebRtcServer; worker i uses `rtc_port + i`
    /// (ICE-TCP listens on the same port numbers). 0: any free ports.
    pub rtc_port: u16,
    /// Media worker threads; the number of cores when unset.
    pub workers: Option<usize>,
    /// How often each viewer's reception (RTT, loss, bitrate, as the
    /// server measures it) is sampled into the analytics, in seconds.
    pub quality_sample_seconds: u64,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            announced_ip: None,
            rtc_port: 40000,
            workers: None,
            quality_sample_seconds: 10,
        }
    }
}

impl MediaSettings {
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GeoipSettings {
    /// Path to a GeoIP2/GeoLite2 City `.mmdb`; no location when unset.
    pub city_db: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TranscriptionProvider {
    Off,
    Browser,
    Azure,
    Openai,
    /// Speech-to-text on this machine, with no external service.
    #[default]
    Offline,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TranscriptionSettings {
    pub provider: TranscriptionProvider,
    /// Service endpoint (Azure AI Foundry resource URL or OpenAI-compatible base URL).
    pub endpoint: Option<String>,
    pub api_key: Option<String>,
    /// Model or Azure deployment name.
    pub model: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SummaryProvider {
    #[default]
    Extractive,
    Openai,
    Azure,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SummarySettings {
    pub provider: SummaryProvider,
    pub endpoint: Option<String>,
    pub api_key: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest accepted request body, in bytes (larger ones get 413).
    pub max_body_bytes: usize,
    /// Login attempts per client address per minute (more get 429).
    pub login_per_minute: u32,
    /// Registrations per client address per minute (more get 429).
    pub register_per_minute: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            login_per_minute: 10,
            register_per_minute: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

impl Settings {
    /// Defaults, then `<dir>/default.toml`, `<dir>/local.toml` and the file
    /// named by `WEBINAR_CONFIG`, then the process environment. `dir` is
    /// `WEBINAR_CONFIG_DIR` or `./config`.
    pub fn load() -> Result<Self, ConfigError> {
        let dir = std::env::var_os("WEBINAR_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        let mut files = vec![dir.join("default.toml"), dir.join("local.toml")];
        if let Some(extra) = std::env::var_os("WEBINAR_CONFIG") {
            files.push(PathBuf::from(extra));
        }
        Self::from_sources(&files, std::env::vars())
    }

    /// Assemble settings from the given files (missing ones are skipped) and
    /// environment pairs (only `WEBINAR__*` ones are read).
    pub fn from_sources(
        files: &[PathBuf],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut merged = toml::Table::try_from(Settings::default())
            .expect("default settings serialise to a TOML table");
        let defaults = merged.clone();
        for path in files {
            match std::fs::read_to_string(path) {
                Ok(text) => merge(&mut merged, parse_file(path, &text)?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        let mut env: Vec<_> = env.into_iter().collect();
        env.sort();
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let keys: Vec<String> = rest.split("__").map(|k| k.to_ascii_lowercase()).collect();
            if keys.iter().any(String::is_empty) {
                return Err(ConfigError::Env {
                    name,
                    message: "expected WEBINAR__SECTION__KEY".into(),
                });
            }
            let value = env_value(&defaults, &keys, &raw).map_err(|message| ConfigError::Env {
                name: name.clone(),
                message,
            })?;
            set_path(&mut merged, &keys, value).map_err(|message| ConfigError::Env {
                name: name.clone(),
                message,
            })?;
        }
        Self::from_table(merged)
    }

    /// Parse one TOML document on top of the defaults (used by tests and tools).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let mut merged = toml::Table::try_from(Settings::default())
            .expect("default settings serialise to a TOML table");
        merge(&mut merged, parse_file(Path::new("<string>"), text)?);
        Self::from_table(merged)
    }

    fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                let message = inner.trim().to_string();
                // serde names an unknown field in its message; add it to the
                // section path so the error carries the full dotted key.
                let key = match unknown_field(&message) {
                    Some(field) if path == "." => field.to_string(),
                    Some(field) => format!("{path}.{field}"),
                    None => path,
                };
                ConfigError::Key { key, message }
            })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.store.kind == StoreKind::Mongodb && self.store.mongodb_uri.is_none() {
            return Err(ConfigError::Key {
                key: "store.mongodb_uri".into(),
                message: "required when store.kind = \"mongodb\"".into(),
            });
        }
        if self.auth.admin_email.is_some() != self.auth.admin_password.is_some() {
            return Err(ConfigError::Key {
                key: "auth.admin_password".into(),
                message: "auth.admin_email and auth.admin_password are set together".into(),
            });
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(ConfigError::Key {
                key: "limits.max_body_bytes".into(),
                message: "must be at least 1024".into(),
            });
        }
        Ok(())
    }
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn parse_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (last, sections) = keys.split_last().expect("keys is non-empty");
    let mut cur = table;
    for section in sections {
        let entry = cur
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{section}` is not a section"))?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}

/// Environment values are text; the default's type at the same key says how
/// to read them (numbers, booleans, lists). Lists are TOML arrays
/// (`["a","b"]`) or comma-separated.
fn env_value(defaults: &toml::Table, keys: &[String], raw: &str) -> Result<toml::Value, String> {
    let mut cur = Some(defaults);
    let mut found = None;
    for (i, key) in keys.iter().enumerate() {
        let Some(table) = cur else { break };
        match table.get(key) {
            Some(toml::Value::Table(t)) if i + 1 < keys.len() => cur = Some(t),
            Some(v) if i + 1 == keys.len() => found = Some(v),
            _ => break,
        }
    }
    let raw_trim = raw.trim();
    Ok(match found {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            raw_trim
                .parse()
                .map_err(|_| format!("`{raw}` is not an integer"))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            raw_trim
                .parse()
                .map_err(|_| format!("`{raw}` is not true or false"))?,
        ),
        Some(toml::Value::Array(_)) if raw_trim.starts_with('[') => {
            let doc: toml::Table = format!("v = {raw_trim}")
                .parse()
                .map_err(|e| format!("not a TOML array: {e}"))?;
            doc["v"].clone()
        }
        Some(toml::Value::Array(_)) => toml::Value::Array(
            raw_trim
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        // Optional numeric keys have no default to read a type from.
        None if keys
            .last()
            .is_some_and(|k| k == "workers" || k.ends_with("_minutes")) =>
        {
            toml::Value::Integer(
                raw_trim
                    .parse()
                    .map_err(|_| format!("`{raw}` is not an integer"))?,
            )
        }
        _ => toml::Value::String(raw.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = Settings::default();
        assert_eq!(s.server.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.server.data_dir, PathBuf::from("./data"));
        assert_eq!(s.store.kind, StoreKind::Embedded);
        assert_eq!(s.media.rtc_port, 40000);
        assert_eq!(s.media.listen_ip.to_string(), "127.0.0.1");
        assert_eq!(s.summary.provider, SummaryProvider::Extractive);
        assert_eq!(s.transcription.provider, TranscriptionProvider::Offline);
        assert!(s.server.trusted_proxies.is_empty());
    }

    #[test]
    fn environment_overrides_files_with_typed_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(
            &file,
            "[server]\nhttp_addr = \"0.0.0.0:9000\"\n[media]\nrtc_port = 41000\n",
        )
        .unwrap();
        let s = Settings::from_sources(
            &[file],
            env(&[
                ("WEBINAR__MEDIA__RTC_PORT", "42000"),
                (
                    "WEBINAR__SERVER__CORS_ORIGINS",
                    "http://a.example, http://b.example",
                ),
                (
                    "WEBINAR__SERVER__TRUSTED_PROXIES",
                    "[\"10.0.0.0/8\", \"192.0.2.1\"]",
                ),
                ("WEBINAR__AUTH__ADMIN_EMAIL", "a@b.c"),
                ("WEBINAR__AUTH__ADMIN_PASSWORD", "123456"),
                ("WEBINAR__MEDIA__WORKERS", "3"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.http_addr.to_string(), "0.0.0.0:9000");
        assert_eq!(s.media.rtc_port, 42000);
        assert_eq!(
            s.server.cors_origins,
            vec!["http://a.example", "http://b.example"]
        );
        assert_eq!(s.server.trusted_proxies.len(), 2);
        assert_eq!(s.auth.admin_password.as_deref(), Some("123456"));
        assert_eq!(s.media.worker_count(), 3);
    }

    #[test]
    fn unknown_file_key_is_rejected_by_name() {
        let err = Settings::from_toml_str("[server]\nhttp_adr = \"127.0.0.1:1\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("server.http_adr"), "{text}");
    }

    #[test]
    fn unknown_section_is_rejected_by_name() {
        let err = Settings::from_toml_str("[serverr]\nx = 1\n").unwrap_err();
        assert!(err.to_string().contains("serverr"), "{err}");
    }

    #[test]
    fn unknown_environment_key_is_rejected_by_name() {
        let err =
            Settings::from_sources(&[], env(&[("WEBINAR__STORE__KIND_X", "mongodb")])).unwrap_err();
        assert!(err.to_string().contains("store.kind_x"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Settings::from_sources(&[], env(&[("WEBINAR__MEDIA__RTC_PORT", "many")])).is_err());
        assert!(Settings::from_toml_str("[store]\nkind = \"postgres\"\n").is_err());
        assert!(Settings::from_toml_str("[store]\nkind = \"mongodb\"\n").is_err());
        assert!(Settings::from_toml_str("[server]\ntrusted_proxies = [\"nope\"]\n").is_err());
    }

    #[test]
    fn public_url_is_derived_from_the_bound_address() {
        let s = ServerSettings::default();
        assert_eq!(
            s.public_url_for("0.0.0.0:8080".parse().unwrap()),
            "http://localhost:8080"
        );
        assert_eq!(
            s.public_url_for("127.0.0.1:81".parse().unwrap()),
            "http://127.0.0.1:81"
        );
    }

    #[test]
    fn shipped_config_files_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for name in ["default.toml", "sample.toml"] {
            let path = root.join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            Settings::from_toml_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
