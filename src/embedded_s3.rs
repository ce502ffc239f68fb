//! The development object store: an S3-compatible server (`s3s` over
//! `s3s-fs`) on 127.0.0.1, reached through aws-sdk-s3 over real HTTP exactly
//! like a remote store.

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Credentials of the embedded store when none are configured. It listens on
/// loopback only.
pub const DEV_ACCESS_KEY: &str = "transcoder-dev";
pub const DEV_SECRET_KEY: &str = "transcoder-dev-secret";

/// A running embedded store.
pub struct EmbeddedStore {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EmbeddedStore {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts serving `data_dir` on 127.0.0.1:`port` (0 = any free port)
    /// until `shutdown` fires.
    pub async fn start(
        data_dir: &Path,
        port: u16,
        access_key: &str,
        secret_key: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<EmbeddedStore> {
        std::fs::create_dir_all(data_dir)?;
        let fs = s3s_fs::FileSystem::new(data_dir)
            .map_err(|e| anyhow::anyhow!("embedded store at {}: {e:?}", data_dir.display()))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();

        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(e) => {
                            tracing::warn!(error = %e, "embedded store: accept failed");
                            continue;
                        }
                    },
                };
                let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        tracing::info!(%addr, data_dir = %data_dir.display(), "embedded object store listening");
        Ok(EmbeddedStore { addr, task })
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}
