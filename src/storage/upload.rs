//! Multipart uploads: the S3 calls themselves, uploads of unknown length
//! (one part in flight while the next fills, or a single PUT when the whole
//! body fit in one part), and the record that lets a sweeper abort an upload
//! whose process died.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{unavailable, Storage, StoreError};

/// A multipart upload in the store: the object it will become and its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MultipartRef {
    pub key: String,
    pub upload_id: String,
}

/// What every record of an upload in progress (under `uploads/`) says, so
/// one sweeper can remove any of them once it has expired.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InProgress {
    pub multipart: Option<MultipartRef>,
    /// An object the upload made that is not yet anybody's (removed too).
    #[serde(default)]
    pub input: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Where a streamed upload records its multipart upload while it runs,
/// and when that record expires.
#[derive(Debug, Clone)]
pub struct Journal {
    pub key: String,
    pub expires_at: DateTime<Utc>,
}

impl Storage {
    /// Starts a multipart upload of `key`; returns its id.
    pub async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(unavailable)?;
        created
            .upload_id()
            .map(String::from)
            .ok_or_else(|| StoreError::Unavailable("store returned no upload id".into()))
    }

    /// Stores part `number` (from 1) of a multipart upload; returns its ETag.
    /// Storing the same number again replaces the part.
    pub async fn upload_part(&self, upload: &MultipartRef, number: i32, body: Bytes) -> Result<String, StoreError> {
        self.send_part(upload, number, None, ByteStream::from(body)).await
    }

    /// Stores part `number` from `chunks` as they come (`length` bytes in
    /// all), so the part travels to the store while it is still arriving.
    /// Fails when the chunks end short of `length`.
    pub async fn upload_part_streamed(
        &self,
        upload: &MultipartRef,
        number: i32,
        length: u64,
        chunks: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> Result<String, StoreError> {
        let frames = futures::stream::unfold(chunks, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(http_body::Frame::data(b)), rx))
        });
        let body = ByteStream::from_body_1_x(http_body_util::StreamBody::new(frames));
        self.send_part(upload, number, Some(length), body).await
    }

    async fn send_part(
        &self,
        upload: &MultipartRef,
        number: i32,
        length: Option<u64>,
        body: ByteStream,
    ) -> Result<String, StoreError> {
        let sent = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .part_number(number)
            .set_content_length(length.map(|n| n as i64))
            .body(body)
            .send()
            .await
            .map_err(unavailable)?;
        sent.e_tag().map(String::from).ok_or_else(|| StoreError::Unavailable("store returned no part ETag".into()))
    }

    /// Assembles the object from `parts` (number and ETag, in order).
    pub async fn complete_multipart(&self, upload: &MultipartRef, parts: &[(i32, String)]) -> Result<(), StoreError> {
        let parts = parts
            .iter()
            .map(|(number, etag)| CompletedPart::builder().part_number(*number).e_tag(etag).build())
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Gives a multipart upload up, its parts with it. An upload the store
    /// no longer knows (aborted or completed before) is not an error.
    pub async fn abort_multipart(&self, upload: &MultipartRef) -> Result<(), StoreError> {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await;
        match aborted {
            Ok(_) => Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// One multipart upload in progress, with at most one part in flight.
pub(super) struct Multipart {
    upload: MultipartRef,
    journal: Option<String>,
    parts: Vec<(i32, String)>,
    in_flight: Option<tokio::task::JoinHandle<Result<(i32, String), StoreError>>>,
}

impl Multipart {
    /// Starts the upload and, with a journal, records it there first thing.
    pub(super) async fn create(
        store: &Storage,
        key: &str,
        content_type: &str,
        journal: Option<&Journal>,
    ) -> Result<Multipart, StoreError> {
        let upload_id = store.create_multipart(key, content_type).await?;
        let upload = MultipartRef { key: key.to_string(), upload_id };
        let mut multipart = Multipart { upload, journal: None, parts: Vec::new(), in_flight: None };
        if let Some(journal) = journal {
            let record =
                InProgress { multipart: Some(multipart.upload.clone()), input: None, expires_at: journal.expires_at };
            if let Err(e) = store.put_json(&journal.key, &record).await {
                multipart.abort(store).await;
                return Err(e);
            }
            multipart.journal = Some(journal.key.clone());
        }
        Ok(multipart)
    }

    async fn finish_in_flight(&mut self) -> Result<(), StoreError> {
        if let Some(task) = self.in_flight.take() {
            let part = task.await.map_err(|e| StoreError::Unavailable(format!("part upload task: {e}")))??;
            self.parts.push(part);
        }
        Ok(())
    }

    pub(super) async fn send_part(&mut self, store: &Storage, body: Bytes) -> Result<(), StoreError> {
        self.finish_in_flight().await?;
        let number = self.parts.len() as i32 + 1;
        let (store2, upload) = (store.clone(), self.upload.clone());
        self.in_flight = Some(tokio::spawn(async move {
            let etag = store2.upload_part(&upload, number, body).await?;
            Ok((number, etag))
        }));
        Ok(())
    }

    async fn complete(&mut self, store: &Storage) -> Result<(), StoreError> {
        self.finish_in_flight().await?;
        store.complete_multipart(&self.upload, &self.parts).await?;
        self.forget_journal(store).await;
        Ok(())
    }

    pub(super) async fn abort(self, store: &Storage) {
        if let Some(task) = self.in_flight {
            let _ = task.await;
        }
        if let Err(e) = store.abort_multipart(&self.upload).await {
            // The journal stays, so the sweeper tries again later.
            tracing::warn!(key = self.upload.key, error = %e, "could not abort multipart upload");
            return;
        }
        let journal = Multipart { in_flight: None, ..self };
        journal.forget_journal(store).await;
    }

    async fn forget_journal(&self, store: &Storage) {
        if let Some(key) = &self.journal {
            if let Err(e) = store.delete(key).await {
                tracing::warn!(key, error = %e, "could not remove the record of a finished upload");
            }
        }
    }
}

/// A streamed upload whose body has been read whole: its last write (the
/// single PUT, or the last part and the completion) is still to be made.
/// Either [`PendingPut::finish`] or [`PendingPut::abort`] it.
#[must_use = "finish or abort the upload"]
pub struct PendingPut {
    pub(super) key: String,
    pub(super) content_type: String,
    pub(super) rest: Bytes,
    pub(super) upload: Option<Multipart>,
    pub(super) size: u64,
}

impl PendingPut {
    /// Bytes received.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Makes the last write; on failure the upload is aborted.
    pub async fn finish(self, store: &Storage) -> Result<u64, StoreError> {
        let PendingPut { key, content_type, rest, upload, size } = self;
        match upload {
            None => {
                store
                    .client
                    .put_object()
                    .bucket(&store.bucket)
                    .key(&key)
                    .content_type(content_type)
                    .body(ByteStream::from(rest))
                    .send()
                    .await
                    .map_err(unavailable)?;
            }
            Some(mut upload) => {
                let done = async {
                    if !rest.is_empty() {
                        upload.send_part(store, rest).await?;
                    }
                    upload.complete(store).await
                }
                .await;
                if let Err(e) = done {
                    upload.abort(store).await;
                    return Err(e);
                }
            }
        }
        Ok(size)
    }

    /// Gives the upload up: nothing of it remains in the store.
    pub async fn abort(self, store: &Storage) {
        if let Some(upload) = self.upload {
            upload.abort(store).await;
        }
    }
}
