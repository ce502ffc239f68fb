//! Removes expired uploads: resumable uploads nobody finished, and the
//! multipart uploads of `POST /video/convert` requests whose API process
//! died. Every API process sweeps; the removals are idempotent, so two
//! processes sweeping at once only repeat each other's work.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::storage::{InProgress, Storage, StoreError};

/// One pass over `uploads/`: returns how many expired uploads it removed.
pub async fn sweep_once(storage: &Storage) -> Result<usize, StoreError> {
    let now = Utc::now();
    let mut removed = 0;
    for key in storage.list("uploads/").await? {
        let Some(record_base) = key.strip_suffix(".json") else {
            continue;
        };
        let record = match storage.get_json::<InProgress>(&key).await {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(StoreError::Corrupt(e)) => {
                tracing::warn!(key, error = %e, "unreadable upload record left alone");
                continue;
            }
            Err(e) => return Err(e),
        };
        if record.expires_at > now {
            continue;
        }
        if let Some(multipart) = &record.multipart {
            storage.abort_multipart(multipart).await?;
        }
        if let Some(input) = &record.input {
            storage.delete(input).await?;
        }
        storage.delete_prefix(&format!("{record_base}/")).await?;
        storage.delete(&key).await?;
        tracing::info!(key, "expired upload removed");
        metrics::counter!("transcoder_uploads_expired_total").increment(1);
        removed += 1;
    }
    Ok(removed)
}

/// Sweeps every `interval` until `shutdown`.
pub async fn run_sweeper(storage: Storage, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(e) = sweep_once(&storage).await {
            tracing::warn!(error = %e, "upload sweep failed; trying again later");
        }
    }
}
