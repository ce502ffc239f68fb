//! The one owner of a job's state: its record at `jobs/<client>/<id>.json`.
//!
//! Every change is a compare-and-swap on the store (`If-Match` on the ETag
//! read): read, apply, write only if nobody wrote in between, else read
//! again. Workers finishing pieces at once and a cancel from the API never
//! lose an update, and the status document's state machine
//! ([`StatusDoc::may_become`]) is checked on every write.

use std::time::Duration;

use crate::domain::{ClientId, JobId, JobRecord, StatusDoc};
use crate::storage::{status_key, Expect, Storage, StoreError};

/// Tries of one update before giving up (each lost race is one).
const MAX_TRIES: u32 = 64;

#[derive(Clone)]
pub struct Jobs {
    storage: Storage,
}

/// The record after an update, and whether this update changed it.
#[derive(Debug, Clone)]
pub struct Updated {
    pub record: JobRecord,
    pub changed: bool,
}

impl Jobs {
    pub fn new(storage: Storage) -> Jobs {
        Jobs { storage }
    }

    /// Writes a new job's first record; fails if the id is taken.
    pub async fn create(&self, client: &ClientId, doc: &StatusDoc) -> Result<(), StoreError> {
        let record = JobRecord::new(doc.clone());
        self.storage.put_json_if(&status_key(client, doc.id), &record, Expect::Absent).await
    }

    pub async fn read(&self, client: &ClientId, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.storage.get_json(&status_key(client, id)).await
    }

    /// Applies `change` to the current record and writes it if `change`
    /// returns true and the result is a legal move of the state machine;
    /// retries on a lost race. `None` when the job does not exist.
    pub async fn update(
        &self,
        client: &ClientId,
        id: JobId,
        mut change: impl FnMut(&mut JobRecord) -> bool,
    ) -> Result<Option<Updated>, StoreError> {
        let key = status_key(client, id);
        for attempt in 0..MAX_TRIES {
            let Some(current) = self.storage.get_json_versioned::<JobRecord>(&key).await? else {
                return Ok(None);
            };
            let mut next = current.value.clone();
            if !change(&mut next) || next == current.value {
                return Ok(Some(Updated { record: current.value, changed: false }));
            }
            if !current.value.doc.may_become(&next.doc) {
                tracing::warn!(
                    job = %id,
                    from = current.value.doc.status.as_str(),
                    to = next.doc.status.as_str(),
                    "refused a status change that the state machine does not allow"
                );
                return Ok(Some(Updated { record: current.value, changed: false }));
            }
            match self.storage.put_json_if(&key, &next, Expect::Version(&current.etag)).await {
                Ok(()) => return Ok(Some(Updated { record: next, changed: true })),
                Err(StoreError::Conflict) => {
                    metrics::counter!("transcoder_job_update_conflicts_total").increment(1);
                    // Spread the writers that lost, so the next round has a winner.
                    let jitter = (rand_u32() % 8 + attempt.min(8)) as u64;
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(format!("job {id}: {MAX_TRIES} conflicting writes in a row")))
    }
}

/// A few bits of randomness for backoff jitter.
fn rand_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}
