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

mod sweep;

use bytes::Bytes;
use chrono::{DateTime, Duration as Span, Utc};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::domain::{ClientId, Container, JobId, JobOptions};
use crate::sniff::{sniff, SNIFF_LEN};
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

    async fn read_tail(&self, client: &ClientId, upload: &Upload) -> Result<Bytes, StoreError> {
        let expected = upload.offset - upload.parts_end();
        if expected == 0 {
            return Ok(Bytes::new());
        }
        let key = tail_key(client, upload.id, upload.offset);
        let object = self.storage.get(&key, None).await?.ok_or_else(|| StoreError::Corrupt(format!("{key} missing")))?;
        let bytes = object.body.collect().await.map_err(|e| StoreError::Unavailable(e.to_string()))?.into_bytes();
        if bytes.len() as u64 != expected {
            return Err(StoreError::Corrupt(format!("{key} holds {} bytes, not {expected}", bytes.len())));
        }
        Ok(bytes)
    }

    /// Appends `body` at the upload's offset: full parts go to the
    /// multipart upload as they fill, the rest becomes the new tail, then
    /// the record is written if nobody else wrote it meanwhile. If the body
    /// fails midway, what arrived is still stored.
    pub async fn append<S, E>(
        &self,
        client: &ClientId,
        current: Versioned<Upload>,
        mut body: S,
    ) -> Result<Appended<E>, AppendError<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let Versioned { value: upload, etag } = current;
        let mut buf = PartBuffer::new(&self.read_tail(client, &upload).await?);
        let mut next = upload.clone();
        let mut in_flight: Option<tokio::task::JoinHandle<Result<(i32, String), StoreError>>> = None;
        let mut interrupted = None;
        let sniff_len = (SNIFF_LEN as u64).min(upload.length) as usize;

        let filled: Result<(), AppendError<E>> = async {
            while let Some(chunk) = body.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        interrupted = Some(e);
                        break;
                    }
                };
                if next.offset + chunk.len() as u64 > next.length {
                    return Err(AppendError::TooLong);
                }
                next.offset += chunk.len() as u64;
                // Sniffed as soon as the first bytes are here (until then the
                // buffer holds fewer than `sniff_len`).
                let unsniffed = next.container.is_none() && next.parts.is_empty();
                if unsniffed && buf.pending().len() + chunk.len() >= sniff_len {
                    let mut head = buf.pending().to_vec();
                    let need = sniff_len.saturating_sub(head.len());
                    head.extend_from_slice(&chunk[..need.min(chunk.len())]);
                    next.container = Some(sniff(&head).ok_or(AppendError::NotVideo)?);
                }
                for part in buf.push(&chunk) {
                    if let Some(task) = in_flight.take() {
                        next.parts.push(joined(task).await?);
                    }
                    let multipart = next.multipart.clone().ok_or_else(|| {
                        StoreError::Corrupt("an upload of more than one part has no multipart upload".into())
                    })?;
                    let number = next.parts.len() as i32 + 1;
                    let storage = self.storage.clone();
                    in_flight = Some(tokio::spawn(async move {
                        storage.upload_part(&multipart, number, part).await.map(|etag| (number, etag))
                    }));
                }
            }
            if let Some(task) = in_flight.take() {
                next.parts.push(joined(task).await?);
            }
            Ok(())
        }
        .await;
        if let Err(e) = filled {
            if let Some(task) = in_flight.take() {
                let _ = task.await;
            }
            return Err(e);
        }
        if next.offset == upload.offset {
            return match interrupted {
                Some(e) => Err(AppendError::Body(e)),
                None => Ok(Appended { upload, interrupted: None }),
            };
        }
        if next.container.is_none() && next.is_whole() {
            // Shorter than the sniffed prefix: judged on all of it.
            next.container = Some(sniff(buf.pending()).ok_or(AppendError::NotVideo)?);
        }
        next.expires_at = Utc::now() + self.expiry;
        let new_tail = (!buf.pending().is_empty()).then(|| tail_key(client, upload.id, next.offset));
        if let Some(key) = &new_tail {
            self.storage.put_bytes(key, buf.into_rest(), "application/octet-stream").await?;
        }
        match self.storage.put_json_if(&record_key(client, upload.id), &next, Expect::Version(&etag)).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                // Another request stored bytes meanwhile. If it reached the
                // same offset it stored the same bytes: that is success.
                let now = self.load(client, upload.id).await?;
                if now.as_ref().is_some_and(|n| n.value.offset == next.offset) {
                    return Ok(Appended { upload: now.expect("checked").value, interrupted });
                }
                if let Some(key) = &new_tail {
                    let _ = self.storage.delete(key).await;
                }
                return Err(AppendError::Conflict);
            }
            Err(e) => return Err(e.into()),
        }
        if upload.offset > upload.parts_end() {
            let old = tail_key(client, upload.id, upload.offset);
            if new_tail.as_deref() != Some(old.as_str()) {
                let _ = self.storage.delete(&old).await;
            }
        }
        Ok(Appended { upload: next, interrupted })
    }

    /// Makes the job's input `inputs/<client>/<id>` from a whole upload:
    /// the tail becomes the last part and the multipart upload is completed
    /// (or, for an upload of one part, the tail is the input). Safe to run
    /// again after it succeeded.
    pub async fn finish_input(&self, client: &ClientId, upload: &Upload) -> Result<(), StoreError> {
        let key = input_key(client, upload.id);
        let content_type = upload.container.map_or("application/octet-stream", |c| c.content_type());
        let tail = match self.read_tail(client, upload).await {
            Ok(tail) => tail,
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

async fn joined<E>(
    task: tokio::task::JoinHandle<Result<(i32, String), StoreError>>,
) -> Result<(i32, String), AppendError<E>> {
    task.await.map_err(|e| StoreError::Unavailable(format!("part upload task: {e}")))?.map_err(AppendError::Store)
}
