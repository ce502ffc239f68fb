//! Builds and runs the roles: `serve` (API + worker + embedded store when no
//! endpoint is set), `api`, `worker`. Tests call the same code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backoff::at_start;
use crate::config::Settings;
use crate::domain::ClientId;
use crate::embedded_s3::{EmbeddedStore, DEV_ACCESS_KEY, DEV_SECRET_KEY};
use crate::http::{self, AppState};
use crate::queue::Broker;
use crate::storage::Storage;
use crate::worker::{self, WorkerContext};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Api,
    Worker,
    Webhooks,
}

impl Role {
    fn has_api(self) -> bool {
        matches!(self, Role::Serve | Role::Api)
    }
    fn has_worker(self) -> bool {
        matches!(self, Role::Serve | Role::Worker)
    }
    fn has_webhooks(self) -> bool {
        matches!(self, Role::Serve | Role::Webhooks)
    }
}

/// A built, not yet running, service.
pub struct Application {
    role: Role,
    settings: Arc<Settings>,
    listener: Option<TcpListener>,
    storage: Storage,
    broker: Broker,
    embedded: Option<EmbeddedStore>,
    store_shutdown: CancellationToken,
}

impl Application {
    pub async fn build(mut settings: Settings, role: Role) -> anyhow::Result<Application> {
        let store_shutdown = CancellationToken::new();
        // The webhook role needs no store.
        let embedded = if settings.storage.endpoint.is_empty() && role != Role::Webhooks {
            anyhow::ensure!(
                role == Role::Serve,
                "storage.endpoint must be set for `api` and `worker`; only `serve` starts the embedded store"
            );
            if settings.storage.access_key.is_empty() {
                settings.storage.access_key = DEV_ACCESS_KEY.into();
                settings.storage.secret_key = DEV_SECRET_KEY.into();
            }
            let s = &settings.storage;
            Some(
                EmbeddedStore::start(
                    &s.data_dir,
                    s.embedded_port,
                    &s.access_key,
                    &s.secret_key,
                    store_shutdown.clone(),
                )
                .await?,
            )
        } else {
            None
        };
        let endpoint = embedded.as_ref().map(|e| e.endpoint()).unwrap_or_else(|| settings.storage.endpoint.clone());
        let storage = Storage::new(&settings.storage, Some(&endpoint)).await;
        if role != Role::Webhooks {
            at_start("object store", || storage.ensure_bucket()).await?;
        }

        let clients: Vec<ClientId> = if settings.auth.keys.is_empty() {
            vec![ClientId::development()]
        } else {
            settings.auth.keys.values().filter_map(|c| ClientId::parse(c)).collect()
        };
        let broker = Broker::new(&settings.amqp, settings.worker.max_attempts, clients);
        at_start("broker", || broker.connect()).await?;

        let listener = if role.has_api() {
            let l = TcpListener::bind(&settings.http.bind)
                .await
                .with_context(|| format!("binding {}", settings.http.bind))?;
            Some(l)
        } else {
            None
        };
        if settings.auth.keys.is_empty() && role.has_api() {
            tracing::warn!("no API keys configured (auth.keys): development mode, every request is client \"default\"");
        }
        Ok(Application { role, settings: Arc::new(settings), listener, storage, broker, embedded, store_shutdown })
    }

    /// The API's bound address (port 0 in the configuration picks one).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The S3 endpoint in use (the embedded store's when it runs).
    pub fn storage_endpoint(&self) -> String {
        self.embedded.as_ref().map(|e| e.endpoint()).unwrap_or_else(|| self.settings.storage.endpoint.clone())
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Runs until `shutdown` fires, then drains: the API stops accepting and
    /// finishes its requests; the worker stops consuming and finishes (or
    /// requeues) its jobs.
    pub async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        crate::metrics::handle();
        let api = match self.listener {
            None => None,
            Some(listener) => {
                let http = &self.settings.http;
                let state = AppState {
                    settings: self.settings.clone(),
                    storage: self.storage.clone(),
                    jobs: crate::jobs::Jobs::new(self.storage.clone()),
                    broker: self.broker.clone(),
                    idempotency: Default::default(),
                    hub: crate::events::EventHub::start(self.broker.clone(), shutdown.clone()),
                    shutdown: shutdown.clone(),
                    quota: Default::default(),
                    budget: http::budget::UploadBudget::new(http.upload_buffer_bytes),
                    uploads: crate::uploads::Uploads::new(self.storage.clone(), http.upload_expiry_seconds),
                    upload_locks: Default::default(),
                    playback: playback_signer(http),
                };
                state.quota.follow(&state.hub);
                tokio::spawn(crate::uploads::run_sweeper(
                    self.storage.clone(),
                    sweep_interval(http.upload_expiry_seconds),
                    shutdown.clone(),
                ));
                let router = http::router(state)?;
                let shutdown = shutdown.clone();
                let header_timeout = Duration::from_secs(http.header_read_timeout_seconds);
                Some(tokio::spawn(async move {
                    tracing::info!(addr = ?listener.local_addr().ok(), "API listening");
                    http::serve::serve(listener, router, header_timeout, shutdown).await;
                    anyhow::Ok(())
                }))
            }
        };
        let worker = self.role.has_worker().then(|| {
            let ctx = Arc::new(WorkerContext {
                settings: self.settings.worker.clone(),
                storage: self.storage.clone(),
                jobs: crate::jobs::Jobs::new(self.storage.clone()),
                broker: self.broker.clone(),
                stop_jobs: CancellationToken::new(),
                cancels: Default::default(),
                inputs: worker::Inputs::new(
                    &self.settings.worker.scratch_dir,
                    usize::from(self.settings.worker.concurrency) + 1,
                ),
            });
            tokio::spawn(worker::run(ctx, shutdown.clone()))
        });
        let webhooks = self
            .role
            .has_webhooks()
            .then(|| tokio::spawn(crate::webhooks::run(self.settings.clone(), shutdown.clone())));
        if let Some(api) = api {
            api.await.context("API task")?.context("API server")?;
            tracing::debug!("API stopped");
        }
        if let Some(worker) = worker {
            worker.await.context("worker task")?;
            tracing::debug!("worker stopped");
        }
        if let Some(webhooks) = webhooks {
            webhooks.await.context("webhook task")?;
        }
        self.broker.close().await;
        self.store_shutdown.cancel();
        drop(self.embedded);
        tracing::info!("stopped");
        Ok(())
    }
}

/// Keeps large buffers out of glibc's heap arenas.
///
/// Upload parts are 8 MiB buffers allocated and freed on whichever runtime
/// thread happens to run the request. glibc raises its mmap threshold to the
/// size of the largest freed mmapped block, so after the first part such
/// buffers land in per-thread arenas that keep the freed memory: peak RSS
/// then varies by 50 % from run to run with the thread count. A fixed
/// threshold turns that adjustment off; blocks of 1 MiB and more are mapped
/// and returned to the system when freed. Call before starting threads.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// How often the API sweeps expired uploads: often enough that one goes
/// within a minute of expiring (and within a second or two for the short
/// expiries of tests).
fn sweep_interval(expiry_seconds: u64) -> Duration {
    Duration::from_secs((expiry_seconds / 2).clamp(1, 30))
}

/// The playback token signer of `http.playback_secret`; without one, a
/// random key of this process (tokens work only against it).
fn playback_signer(http: &crate::config::HttpSettings) -> http::playback::Signer {
    if http.playback_secret.expose().is_empty() {
        tracing::warn!(
            "http.playback_secret is empty: playback URLs are signed with a random key of this process and fail on any other (set it for every API process of a deployment)"
        );
    }
    http::playback::Signer::new(http.playback_secret.expose(), http.playback_ttl_seconds)
}
