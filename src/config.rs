//! Settings: `config/default.toml`, then an optional file, then
//! `TRANSCODER__SECTION__KEY` environment variables.

use std::collections::BTreeMap;
use std::path::PathBuf;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

/// The defaults, compiled in so that the binary runs from any folder.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub amqp: AmqpSettings,
    pub storage: StorageSettings,
    pub worker: WorkerSettings,
    pub auth: AuthSettings,
    #[serde(default)]
    pub webhooks: WebhookSettings,
    /// Per-client settings (`[clients.<client>]`).
    #[serde(default)]
    pub clients: BTreeMap<String, ClientSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Waits between delivery attempts; after the last, given up.
    pub retry_seconds: Vec<u64>,
    pub allow_private_networks: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings { retry_seconds: vec![5, 30, 120, 600, 3600, 21600], allow_private_networks: false }
    }
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub webhook_url: Option<String>,
    /// `whsec_<base64>`.
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("webhook_url", &self.webhook_url.as_deref().map(redact_url))
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl ClientSettings {
    /// The signing key: the base64 after `whsec_`.
    pub fn webhook_key(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        let encoded = self.webhook_secret.as_deref()?.strip_prefix("whsec_")?;
        base64::engine::general_purpose::STANDARD.decode(encoded).ok().filter(|k| !k.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub bind: String,
    pub max_upload_bytes: u64,
    pub header_read_timeout_seconds: u64,
    pub body_idle_timeout_seconds: u64,
    pub idempotency_ttl_seconds: u64,
    pub max_concurrent_uploads_per_client: usize,
    pub max_pending_jobs_per_client: usize,
    /// Origins a browser may upload from (tus) and fetch playback files
    /// from; `"*"` allows any.
    pub cors_allowed_origins: Vec<String>,
    /// An unfinished upload is removed, parts and all, this long after its
    /// last received byte (tus) or its start (`POST /video/convert`).
    pub upload_expiry_seconds: u64,
    /// Memory one API process may hold for all uploads in flight together.
    pub upload_buffer_bytes: u64,
    /// Signs playback URLs; shared by every API process of a deployment.
    /// Empty: a random key per process (development only).
    pub playback_secret: Secret,
    /// Lifetime of a playback URL.
    pub playback_ttl_seconds: u64,
}

/// A secret setting: its value never reaches a `Debug` rendering.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { REDACTED })
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    pub url: String,
    pub prefix: String,
    pub queue_type: QueueType,
    /// How long each client's event log (`<prefix>.notify.<client>.log`)
    /// keeps events.
    #[serde(default = "default_event_retention")]
    pub event_retention_seconds: u64,
}

fn default_event_retention() -> u64 {
    604_800
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Classic,
    Quorum,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub data_dir: PathBuf,
    pub embedded_port: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub concurrency: u16,
    pub max_attempts: u32,
    pub stall_seconds: u64,
    pub job_timeout_seconds: u64,
    pub shutdown_grace_seconds: u64,
    pub max_input_seconds: u64,
    pub max_input_pixels: u64,
    pub scratch_dir: PathBuf,
    /// Length of one piece of a split job, in seconds.
    pub segment_seconds: u64,
    /// Inputs at least this long are split into pieces; 0 = never split.
    pub split_min_seconds: u64,
    /// Threads per ffmpeg; 0 = ffmpeg's own choice.
    pub ffmpeg_threads: u32,
}

impl WorkerSettings {
    /// Whether an input of this duration is split into pieces.
    pub fn splits(&self, duration_seconds: f64) -> bool {
        self.split_min_seconds > 0 && duration_seconds >= self.split_min_seconds as f64
    }
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// API key → client id.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
}

// Secrets (the broker's password, the store's keys, API keys) never reach
// a `Debug` rendering, so no log line or `config check` output shows them.
const REDACTED: &str = "REDACTED";

/// An AMQP or HTTP URL with its password replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:{REDACTED}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl std::fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSettings")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("queue_type", &self.queue_type)
            .field("event_retention_seconds", &self.event_retention_seconds)
            .finish()
    }
}

impl std::fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |v: &str| if v.is_empty() { "" } else { REDACTED };
        f.debug_struct("StorageSettings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &secret(&self.access_key))
            .field("secret_key", &secret(&self.secret_key))
            .field("data_dir", &self.data_dir)
            .field("embedded_port", &self.embedded_port)
            .finish()
    }
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The clients, not their keys.
        let clients: std::collections::BTreeSet<&String> = self.keys.values().collect();
        f.debug_struct("AuthSettings").field("keys", &self.keys.len()).field("clients", &clients).finish()
    }
}

impl Settings {
    /// Loads the layered configuration.
    pub fn load(files: &[PathBuf]) -> Result<Settings, figment::Error> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        for file in files {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(Env::prefixed("TRANSCODER__").split("__")).extract::<Settings>()?.validated()
    }

    /// The compiled-in defaults alone (tests start from these).
    pub fn defaults() -> Settings {
        Figment::from(Toml::string(DEFAULT_TOML)).extract().expect("config/default.toml is valid")
    }

    fn validated(self) -> Result<Settings, figment::Error> {
        let bad = |msg: &str| Err(figment::Error::from(msg.to_string()));
        if self.worker.concurrency == 0 {
            return bad("worker.concurrency must be at least 1");
        }
        if self.worker.max_attempts == 0 {
            return bad("worker.max_attempts must be at least 1");
        }
        if self.worker.segment_seconds == 0 {
            return bad("worker.segment_seconds must be at least 1");
        }
        if self.amqp.prefix.is_empty() {
            return bad("amqp.prefix must not be empty");
        }
        if self.http.playback_ttl_seconds == 0 {
            return bad("http.playback_ttl_seconds must be at least 1");
        }
        for (client, c) in &self.clients {
            if crate::domain::ClientId::parse(client).is_none() {
                return Err(figment::Error::from(format!("clients.{client}: not a valid client id")));
            }
            if let Some(url) = &c.webhook_url {
                let parsed = reqwest::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
                if parsed.and_then(|u| u.host_str().map(str::to_owned)).is_none() {
                    return Err(figment::Error::from(format!("clients.{client}.webhook_url: not an http(s) URL")));
                }
                if c.webhook_key().is_none() {
                    return Err(figment::Error::from(format!(
                        "clients.{client}.webhook_secret: a webhook_url needs a secret of the form whsec_<base64>"
                    )));
                }
            }
        }
        if self.webhooks.retry_seconds.contains(&0) {
            return bad("webhooks.retry_seconds: every wait must be at least 1 s");
        }
        for client in self.auth.keys.values() {
            if crate::domain::ClientId::parse(client).is_none() {
                return bad("auth.keys: client ids are 1-64 characters of a-z, 0-9, '-' and '_'");
            }
        }
        Ok(self)
    }
}
