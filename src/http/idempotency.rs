//! `Idempotency-Key` (IETF draft-ietf-httpapi-idempotency-key-header): the
//! same key with the same request returns the first job again; the same key
//! with another request is 422; while the first request with that key is
//! still in progress, 409. Records live in the store at
//! `idempotency/<client>/<sha256(key)>.json` for `http.idempotency_ttl_seconds`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::domain::{ClientId, JobId};
use crate::storage::Storage;

/// A pending record older than this belongs to a request that died.
const PENDING_STALE_SECONDS: i64 = 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Record {
    created: DateTime<Utc>,
    /// `None` while the first request is still uploading.
    job: Option<JobId>,
    fingerprint: Option<String>,
}

/// Keys being claimed in this process right now.
#[derive(Clone, Default)]
pub struct Idempotency {
    inflight: Arc<Mutex<HashSet<String>>>,
}

/// What a request with a key may do.
pub enum Claim {
    /// First use: go ahead, then `complete` the guard.
    Fresh(ClaimGuard),
    /// Seen before: compare fingerprints, then answer with this job.
    Replay { job: JobId, fingerprint: String },
}

/// Holds a key while its first request runs. Dropped without `complete`,
/// it releases the key again.
pub struct ClaimGuard {
    record_key: String,
    storage: Storage,
    inflight: Arc<Mutex<HashSet<String>>>,
    completed: bool,
}

impl ClaimGuard {
    pub async fn complete(mut self, job: JobId, fingerprint: String) -> Result<(), ApiError> {
        let record = Record { created: Utc::now(), job: Some(job), fingerprint: Some(fingerprint) };
        self.storage.put_json(&self.record_key, &record).await?;
        self.completed = true;
        Ok(())
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.inflight.lock().unwrap().remove(&self.record_key);
        if !self.completed {
            let (storage, key) = (self.storage.clone(), self.record_key.clone());
            tokio::spawn(async move {
                if let Err(e) = storage.delete(&key).await {
                    tracing::warn!(key, error = %e, "could not release an idempotency key");
                }
            });
        }
    }
}

/// The header's value: 1–255 visible ASCII characters (quotes allowed, as
/// the draft's structured-field string form has them).
pub fn parse_key(value: &str) -> Result<String, ApiError> {
    let v = value.trim().trim_matches('"');
    if v.is_empty() || v.len() > 255 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest {
            code: "bad-request",
            detail: "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        });
    }
    Ok(v.to_string())
}

/// The request's fingerprint: its options and the SHA-256 of its video.
pub fn fingerprint(options: &impl Serialize, body_sha256: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(options).expect("options serialize"));
    h.update(body_sha256);
    hex::encode(h.finalize())
}

impl Idempotency {
    pub async fn claim(
        &self,
        storage: &Storage,
        client: &ClientId,
        key: &str,
        ttl_seconds: u64,
    ) -> Result<Claim, ApiError> {
        let record_key = format!("idempotency/{client}/{}.json", hex::encode(Sha256::digest(key.as_bytes())));
        let in_progress = || ApiError::Conflict("a request with this Idempotency-Key is still in progress".into());
        if !self.inflight.lock().unwrap().insert(record_key.clone()) {
            return Err(in_progress());
        }
        let guard =
            ClaimGuard { record_key, storage: storage.clone(), inflight: self.inflight.clone(), completed: false };
        let now = Utc::now();
        let existing = storage.get_json::<Record>(&guard.record_key).await?;
        match existing {
            Some(r) if (now - r.created).num_seconds() < ttl_seconds as i64 => match (r.job, r.fingerprint) {
                (Some(job), Some(fingerprint)) => {
                    let mut guard = guard;
                    guard.completed = true; // keep the record
                    Ok(Claim::Replay { job, fingerprint })
                }
                _ if (now - r.created).num_seconds() < PENDING_STALE_SECONDS => {
                    let mut guard = guard;
                    guard.completed = true; // the other request owns it
                    Err(in_progress())
                }
                _ => self.start(storage, guard, now).await,
            },
            _ => self.start(storage, guard, now).await,
        }
    }

    async fn start(&self, storage: &Storage, guard: ClaimGuard, now: DateTime<Utc>) -> Result<Claim, ApiError> {
        let pending = Record { created: now, job: None, fingerprint: None };
        storage.put_json(&guard.record_key, &pending).await?;
        Ok(Claim::Fresh(guard))
    }
}
