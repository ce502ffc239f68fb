//! Per-client limits: uploads in progress and unfinished jobs. Past them a
//! client gets 429 with Retry-After, so one client cannot crowd out others.
//!
//! Fair share: a job's priority on the queue is the priority asked for,
//! lowered by one for each of the client's jobs of at least that priority
//! still waiting (as this API process counts them), and never above the
//! client's earlier waiting jobs of the same priority (first come, first
//! served within a client). A client with a backlog thus sinks below a
//! client without one, while its own priorities keep their order.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;

use super::ApiError;
use crate::domain::{ClientId, JobId};
use crate::events::{EventHub, EventKind};

#[derive(Clone, Default)]
pub struct Quota {
    uploads: Arc<Mutex<HashMap<ClientId, usize>>>,
    pending: Arc<Mutex<HashMap<ClientId, HashSet<JobId>>>>,
    /// Jobs waiting to start: (priority asked for, priority on the queue).
    queued: Arc<Mutex<HashMap<ClientId, HashMap<JobId, (u8, u8)>>>>,
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
        let (pending, queued) = (self.pending.clone(), self.queued.clone());
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) if e.kind.is_terminal() || e.kind == EventKind::Started => {
                        if let Some(jobs) = queued.lock().unwrap().get_mut(&e.client) {
                            jobs.remove(&e.doc.id);
                        }
                        if !e.kind.is_terminal() {
                            continue;
                        }
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

    /// The priority job `id` goes onto the queue with (see the module's
    /// doc), remembered until the job starts.
    pub fn queue_priority(&self, client: &ClientId, id: JobId, asked: u8) -> u8 {
        let mut queued = self.queued.lock().unwrap();
        let jobs = queued.entry(client.clone()).or_default();
        let ahead = jobs.values().filter(|(p, _)| *p >= asked).count();
        let earlier = jobs.values().filter(|(p, _)| *p == asked).map(|(_, q)| *q).min().unwrap_or(asked);
        let priority = asked.saturating_sub(ahead.min(u8::MAX as usize) as u8).min(earlier);
        jobs.insert(id, (asked, priority));
        priority
    }

    /// A job that did not make it onto the queue after all.
    pub fn not_queued(&self, client: &ClientId, id: JobId) {
        if let Some(jobs) = self.queued.lock().unwrap().get_mut(client) {
            jobs.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_lowers_its_clients_priority_but_keeps_its_own_order() {
        let quota = Quota::default();
        let (a, b) = (ClientId::parse("a").unwrap(), ClientId::parse("b").unwrap());
        let a_jobs: Vec<u8> = (0..20).map(|_| quota.queue_priority(&a, JobId::new(), 5)).collect();
        assert_eq!(&a_jobs[..6], &[5, 4, 3, 2, 1, 0]);
        assert!(a_jobs.windows(2).all(|w| w[0] >= w[1]));
        // Another client's first job goes ahead of all but the first of a's.
        assert_eq!(quota.queue_priority(&b, JobId::new(), 5), 5);
        // Within a client, a higher priority still goes first.
        let (p1, p9) = (quota.queue_priority(&b, JobId::new(), 1), quota.queue_priority(&b, JobId::new(), 9));
        assert!(p9 > p1);
    }
}
