//! Uploads of unknown length: S3 multipart with one part in flight while
//! the next fills, or a single PUT when the whole body fit in one part.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::{unavailable, Storage, StoreError};

/// One multipart upload in progress, with at most one part in flight.
pub(super) struct Multipart {
    upload_id: String,
    parts: Vec<CompletedPart>,
    in_flight: Option<tokio::task::JoinHandle<Result<CompletedPart, StoreError>>>,
}

impl Multipart {
    pub(super) async fn create(store: &Storage, key: &str, content_type: &str) -> Result<Multipart, StoreError> {
        let created = store
            .client
            .create_multipart_upload()
            .bucket(&store.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(unavailable)?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| StoreError::Unavailable("store returned no upload id".into()))?
            .to_string();
        Ok(Multipart { upload_id, parts: Vec::new(), in_flight: None })
    }

    async fn finish_in_flight(&mut self) -> Result<(), StoreError> {
        if let Some(task) = self.in_flight.take() {
            let part = task.await.map_err(|e| StoreError::Unavailable(format!("part upload task: {e}")))??;
            self.parts.push(part);
        }
        Ok(())
    }

    pub(super) async fn send_part(&mut self, store: &Storage, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.finish_in_flight().await?;
        let number = self.parts.len() as i32 + 1;
        let request = store
            .client
            .upload_part()
            .bucket(&store.bucket)
            .key(key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(body));
        self.in_flight = Some(tokio::spawn(async move {
            let sent = request.send().await.map_err(unavailable)?;
            Ok(CompletedPart::builder().set_e_tag(sent.e_tag().map(String::from)).part_number(number).build())
        }));
        Ok(())
    }

    async fn complete(&mut self, store: &Storage, key: &str) -> Result<(), StoreError> {
        self.finish_in_flight().await?;
        store
            .client
            .complete_multipart_upload()
            .bucket(&store.bucket)
            .key(key)
            .upload_id(&self.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(self.parts.clone())).build())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn abort(self, store: &Storage, key: &str) {
        if let Some(task) = self.in_flight {
            let _ = task.await;
        }
        let aborted = store
            .client
            .abort_multipart_upload()
            .bucket(&store.bucket)
            .key(key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        if let Err(e) = aborted {
            tracing::warn!(key, error = %DisplayErrorContext(e), "could not abort multipart upload");
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
                        upload.send_part(store, &key, rest).await?;
                    }
                    upload.complete(store, &key).await
                }
                .await;
                if let Err(e) = done {
                    upload.abort(store, &key).await;
                    return Err(e);
                }
            }
        }
        Ok(size)
    }

    /// Gives the upload up: nothing of it remains in the store.
    pub async fn abort(self, store: &Storage) {
        if let Some(upload) = self.upload {
            upload.abort(store, &self.key).await;
        }
    }
}
