//! One request at a time per resumable upload, within this process: a
//! client that lost its connection and comes back waits for the request
//! still storing its bytes, then sees the offset that one reached. Across
//! processes, the record's conditional write decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

use crate::domain::{ClientId, JobId};

type Entry = Arc<tokio::sync::Mutex<()>>;

#[derive(Clone, Default)]
pub struct UploadLocks {
    held: Arc<Mutex<HashMap<String, Entry>>>,
}

/// The upload is ours until this is dropped.
pub struct Held {
    guard: Option<OwnedMutexGuard<()>>,
    key: String,
    locks: UploadLocks,
}

impl UploadLocks {
    /// Waits up to `wait` for the upload; `None` when another request kept it.
    pub async fn hold(&self, client: &ClientId, id: JobId, wait: Duration) -> Option<Held> {
        let key = format!("{client}/{id}");
        let entry = self.held.lock().unwrap().entry(key.clone()).or_default().clone();
        let guard = tokio::time::timeout(wait, entry.lock_owned()).await.ok()?;
        Some(Held { guard: Some(guard), key, locks: self.clone() })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut held = self.locks.held.lock().unwrap();
        // Only the map holds it: nobody waits, forget it.
        if held.get(&self.key).is_some_and(|e| Arc::strong_count(e) == 1) {
            held.remove(&self.key);
        }
    }
}
