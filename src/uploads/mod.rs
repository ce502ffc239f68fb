//! Resumable uploads (tus): each upload's record and bytes live in the
//! store, so any API process can continue an upload another one began.
//!
//! Layout, for the upload `<id>` of `<client>` (the id is also the id of
//! the job it becomes):
//! - `uploads/<client>/<id>.json`: the record ([`Upload`]);
//! - `uploads/<client>/<id>/tail-<end>`: the received bytes after the last
//!   full part, up to offset `<end>` (S3 parts need 5 MiB but tus chunks can
//!   be any size, so the part being filled is kept as its own object);
//! - full parts go straight into the multipart upload of the job's input
//!   `inputs/<client>/<id>`. Parts are aligned on [`PART_SIZE`]: part `n`
//!   always holds the bytes `(n-1)·PART_SIZE..n·PART_SIZE`, so a part
//!   stored twice (a retried request) is stored with the same bytes.
//!
//! An offset is acknowledged only after its parts and tail are stored and
//! the record that names them is written (a conditional write: of two
//! requests for one offset, one wins).

mod append;
mod sweep;

use chrono::{DateTime, Duration as Span, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ClientId, Container, JobId, JobOptions};
use crate::storage::{input_key, Expect, MultipartRef, PartBuffer, Storage, StoreError, Versioned};

pub use sweep::{run_sweeper, sweep_once};

/// Size of one part of an upload's multipart upload (S3's minimum is 5 MiB).
pub const PART_SIZE: u64 = crate::storage::PART_SIZE as u64;

/// The record of one resumable upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Upload {
    pub id: JobId,
    /// `Upload-Length`: the size of the whole file.
    pub length: u64,
    /// Bytes stored so far.
    pub offset: u64,
    pub options: JobOptions,
    pub filename: Option<String>,
    /// Known once the first bytes are sniffed.
    pub container: Option<Container>,
    /// The input's multipart upload (files over one part).
    pub multipart: Option<MultipartRef>,
    /// The job's input while the upload is not yet the job: the sweeper
    /// removes it with an expired upload that stopped between storing the
    /// input and making the job.
    pub input: Option<String>,
    /// Number and ETag of each full part stored, in order.
    pub parts: Vec<(i32, String)>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The upload has become the job with its id.
    pub completed: bool,
}

impl Upload {
    pub fn is_whole(&self) -> bool {
        self.offset == self.length
    }

    /// Where the stored parts end: the tail holds `parts_end..offset`.
    fn parts_end(&self) -> u64 {
        self.parts.len() as u64 * PART_SIZE
    }
}

pub fn record_key(client: &ClientId, id: JobId) -> String {
    format!("uploads/{client}/{id}.json")
}

/// The record of a `POST /video/convert` upload in progress (its multipart
/// upload), removed when the request ends.
pub fn direct_record_key(client: &ClientId, id: JobId) -> String {
    format!("uploads/{client}/{id}.direct.json")
}

fn tail_prefix(client: &ClientId, id: JobId) -> String {
    format!("uploads/{client}/{id}/")
}

fn tail_key(client: &ClientId, id: JobId, end: u64) -> String {
    format!("uploads/{client}/{id}/tail-{end}")
}

/// Why bytes were not appended.
#[derive(Debug)]
pub enum AppendError<E> {
    /// The record changed since it was read (another request stored bytes).
    Conflict,
    /// The body goes past `Upload-Length`.
    TooLong,
    /// The first bytes are not a video container.
    NotVideo,
    Store(StoreError),
    /// The body failed before any byte was stored.
    Body(E),
}

impl<E> From<StoreError> for AppendError<E> {
    fn from(e: StoreError) -> Self {
        AppendError::Store(e)
    }
}

/// What an append stored.
#[derive(Debug)]
pub struct Appended<E> {
    pub upload: Upload,
    /// The body failed after some bytes: those are stored and acknowledged
    /// in the record; the request itself failed.
    pub interrupted: Option<E>,
}

/// The resumable uploads of one store.
#[derive(Clone)]
pub struct Uploads {
    storage: Storage,
    expiry: Span,
}

impl Uploads {
    pub fn new(storage: Storage, expiry_seconds: u64) -> Uploads {
        Uploads { storage, expiry: Span::seconds(expiry_seconds.min(i64::MAX as u64 / 1000) as i64) }
    }

    /// Records a new upload (and starts its multipart upload when it is
    /// larger than one part).
    pub async fn create(
        &self,
        client: &ClientId,
        length: u64,
        options: JobOptions,
        filename: Option<String>,
    ) -> Result<Upload, StoreError> {
        let id = JobId::new();
        let now = Utc::now();
        let multipart = if length > PART_SIZE {
            let key = input_key(client, id);
            let upload_id = self.storage.create_multipart(&key, "application/octet-stream").await?;
            Some(MultipartRef { key, upload_id })
        } else {
            None
        };
        let upload = Upload {
            id,
            length,
            offset: 0,
            options,
            filename,
            container: None,
            multipart,
            input: Some(input_key(client, id)),
            parts: Vec::new(),
            created_at: now,
            expires_at: now + self.expiry,
            completed: false,
        };
        if let Err(e) = self.storage.put_json_if(&record_key(client, id), &upload, Expect::Absent).await {
            if let Some(m) = &upload.multipart {
                let _ = self.storage.abort_multipart(m).await;
            }
            return Err(e);
        }
        Ok(upload)
    }

    /// The upload and its version; `None` when there is none (or it expired).
    pub async fn load(&self, client: &ClientId, id: JobId) -> Result<Option<Versioned<Upload>>, StoreError> {
        let found = self.storage.get_json_versioned::<Upload>(&record_key(client, id)).await?;
        Ok(found.filter(|u| u.value.completed || u.value.expires_at > Utc::now()))
    }

    /// The upload's tail, read straight into the buffer of the part it
    /// starts (one copy of it in memory, never two).
    async fn read_tail(&self, client: &ClientId, upload: &Upload) -> Result<PartBuffer, StoreError> {
        let expected = upload.offset - upload.parts_end();
        let mut buf = PartBuffer::new(&[]);
        if expected == 0 {
            return Ok(buf);
        }
        let key = tail_key(client, upload.id, upload.offset);
        let mut object =
            self.storage.get(&key, None).await?.ok_or_else(|| StoreError::Corrupt(format!("{key} missing")))?;
        let mut read = 0u64;
        while let Some(chunk) = object.body.try_next().await.map_err(|e| StoreError::Unavailable(e.to_string()))? {
            read += chunk.len() as u64;
            if read > expected || !buf.push(&chunk).is_empty() {
                return Err(StoreError::Corrupt(format!("{key} holds more than {expected} bytes")));
            }
        }
        if read != expected {
            return Err(StoreError::Corrupt(format!("{key} holds {read} bytes, not {expected}")));
        }
        Ok(buf)
    }

    /// Makes the job's input `inputs/<client>/<id>` from a whole upload:
    /// the tail becomes the last part and the multipart upload is completed
    /// (or, for an upload of one part, the tail is the input). Safe to run
    /// again after it succeeded.
    pub async fn finish_input(&self, client: &ClientId, upload: &Upload) -> Result<(), StoreError> {
        let key = input_key(client, upload.id);
        let content_type = upload.container.map_or("application/octet-stream", |c| c.content_type());
        let tail = match self.read_tail(client, upload).await {
            Ok(tail) => tail.into_rest(),
            // Already finished by an earlier attempt (which removed the tail).
            Err(_) if self.storage.exists(&key).await? => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(multipart) = &upload.multipart else {
            return self.storage.put_bytes(&key, tail, content_type).await;
        };
        let mut parts = upload.parts.clone();
        let finished = async {
            if !tail.is_empty() {
                let number = parts.len() as i32 + 1;
                parts.push((number, self.storage.upload_part(multipart, number, tail).await?));
            }
            self.storage.complete_multipart(multipart, &parts).await
        }
        .await;
        match finished {
            Err(_) if self.storage.exists(&key).await? => Ok(()),
            other => other,
        }
    }

    /// Marks a whole upload as the job it became and removes its tail. The
    /// record stays until it expires, so a retried request finds the job.
    pub async fn mark_completed(&self, client: &ClientId, id: JobId) -> Result<(), StoreError> {
        let key = record_key(client, id);
        for _ in 0..5 {
            let Some(current) = self.storage.get_json_versioned::<Upload>(&key).await? else {
                return Ok(());
            };
            let mut done = current.value.clone();
            if done.completed {
                return Ok(());
            }
            done.completed = true;
            done.multipart = None;
            done.input = None;
            done.parts.clear();
            match self.storage.put_json_if(&key, &done, Expect::Version(&current.etag)).await {
                Ok(()) => {
                    self.storage.delete_prefix(&tail_prefix(client, id)).await?;
                    return Ok(());
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Removes an upload: its multipart upload, tail and record. The input
    /// of a completed upload belongs to its job and stays.
    pub async fn remove(&self, client: &ClientId, upload: &Upload) -> Result<(), StoreError> {
        if let Some(m) = &upload.multipart {
            if !upload.completed {
                self.storage.abort_multipart(m).await?;
            }
        }
        self.storage.delete_prefix(&tail_prefix(client, upload.id)).await?;
        self.storage.delete(&record_key(client, upload.id)).await
    }
}
