//! Per-client limits: uploads in progress and unfinished jobs. Past them a
//! client gets 429 with Retry-After, so one client cannot crowd out others.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;

use super::ApiError;
use crate::domain::{ClientId, JobId};
use crate::events::EventHub;

#[derive(Clone, Default)]
pub struct Quota {
    uploads: Arc<Mutex<HashMap<ClientId, usize>>>,
    pending: Arc<Mutex<HashMap<ClientId, HashSet<JobId>>>>,
}

/// An upload slot, given back when dropped.
pub struct UploadSlot {
    uploads: Arc<Mutex<HashMap<ClientId, usize>>>,
    client: ClientId,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        if let Some(n) = self.uploads.lock().unwrap().get_mut(&self.client) {
            *n -= 1;
        }
        metrics::gauge!("transcoder_uploads_in_progress", "client" => self.client.to_string()).decrement(1.0);
    }
}

impl Quota {
    /// Forgets jobs as their outcomes arrive.
    pub fn follow(&self, hub: &EventHub) {
        let mut rx = hub.subscribe();
        let pending = self.pending.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) if e.kind.is_terminal() => {
                        if let Some(jobs) = pending.lock().unwrap().get_mut(&e.client) {
                            jobs.remove(&e.doc.id);
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    /// Takes an upload slot, or 429.
    pub fn start_upload(
        &self,
        client: &ClientId,
        max_uploads: usize,
        max_pending: usize,
    ) -> Result<UploadSlot, ApiError> {
        let pending = self.pending.lock().unwrap().get(client).map_or(0, |j| j.len());
        if pending >= max_pending {
            return Err(ApiError::TooManyRequests(format!(
                "{pending} of your jobs are unfinished; the limit is {max_pending}"
            )));
        }
        let mut uploads = self.uploads.lock().unwrap();
        let n = uploads.entry(client.clone()).or_default();
        if *n >= max_uploads {
            return Err(ApiError::TooManyRequests(format!(
                "you have {n} uploads in progress; the limit is {max_uploads}"
            )));
        }
        *n += 1;
        metrics::gauge!("transcoder_uploads_in_progress", "client" => client.to_string()).increment(1.0);
        Ok(UploadSlot { uploads: self.uploads.clone(), client: client.clone() })
    }

    pub fn accepted(&self, client: &ClientId, id: JobId) {
        self.pending.lock().unwrap().entry(client.clone()).or_default().insert(id);
    }
}
