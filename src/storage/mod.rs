//! The object store, through aws-sdk-s3: streamed uploads, downloads and the
//! status documents. Keys are built here from the client id and the job id,
//! never from user-supplied names.

use std::time::Duration;

use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::{Stream, StreamExt};

mod docs;
mod files;
mod keys;
mod parts;
mod upload;

pub use docs::{Expect, Versioned};
pub use keys::{input_key, output_file_key, output_key, output_prefix, status_key, work_prefix};
pub use parts::PartBuffer;
use upload::Multipart;
pub use upload::{InProgress, Journal, MultipartRef, PendingPut};

use crate::config::StorageSettings;

/// Size of one multipart part. S3 wants at least 5 MiB for all but the last.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    #[error("requested range not satisfiable")]
    InvalidRange,
    #[error("local file: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored document is not valid: {0}")]
    Corrupt(String),
    /// A conditional write found the object changed (or present) since it
    /// was read: read again and retry.
    #[error("the object changed since it was read")]
    Conflict,
}

fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(e).to_string())
}

/// Why a streamed upload stopped.
#[derive(Debug, thiserror::Error)]
pub enum PutStreamError<E> {
    /// The incoming stream failed (client went away, broken multipart, idle).
    #[error("upload body: {0}")]
    Body(E),
    #[error("upload exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Storage {
    client: Client,
    bucket: String,
}

impl Storage {
    /// A client for `endpoint` (an S3-compatible URL) or, when `None`, for
    /// AWS itself.
    pub async fn new(settings: &StorageSettings, endpoint: Option<&str>) -> Storage {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .read_timeout(Duration::from_secs(60))
                    .build(),
            );
        if !settings.access_key.is_empty() {
            loader = loader.credentials_provider(Credentials::new(
                &settings.access_key,
                &settings.secret_key,
                None,
                None,
                "transcoder-config",
            ));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = endpoint {
            // Non-AWS stores address buckets by path, not by host name.
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        Storage { client: Client::from_conf(config.build()), bucket: settings.bucket.clone() }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn sdk(&self) -> &Client {
        &self.client
    }

    /// Creates the bucket when it is missing.
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()) {
                    Ok(())
                } else {
                    Err(unavailable(e))
                }
            }
        }
    }

    /// Whether the store answers for our bucket.
    pub async fn ready(&self) -> bool {
        let probe = self.client.head_bucket().bucket(&self.bucket).send();
        matches!(tokio::time::timeout(Duration::from_secs(3), probe).await, Ok(Ok(_)))
    }

    /// Streams `first` and then `rest` to `key`: one PUT for small bodies,
    /// otherwise a multipart upload with one part in flight while the next
    /// fills. Memory stays at about two parts whatever the size. Anything
    /// that goes wrong aborts the upload, so nothing half-made remains.
    pub async fn put_stream<S, E>(
        &self,
        key: &str,
        content_type: &str,
        first: Bytes,
        rest: S,
        limit: u64,
    ) -> Result<u64, PutStreamError<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let pending = self.receive_stream(key, content_type, first, rest, limit, None).await?;
        Ok(pending.finish(self).await?)
    }

    /// [`Storage::put_stream`] up to its last write: reads the whole stream
    /// and sends every full part, then returns the rest as a [`PendingPut`],
    /// so the caller can run other writes beside the last one. On an error
    /// nothing remains in the store. With a `journal`, a multipart upload is
    /// recorded there while it runs, so that a sweeper can abort it should
    /// this process die (the record goes when the upload ends).
    pub async fn receive_stream<S, E>(
        &self,
        key: &str,
        content_type: &str,
        first: Bytes,
        mut rest: S,
        limit: u64,
        journal: Option<Journal>,
    ) -> Result<PendingPut, PutStreamError<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let mut total = first.len() as u64;
        if total > limit {
            return Err(PutStreamError::TooLarge(limit));
        }
        if first.len() > PART_SIZE {
            return Err(PutStreamError::Store(StoreError::Corrupt("the first chunk is larger than a part".into())));
        }
        let mut buf = PartBuffer::new(&first);
        let mut upload: Option<Multipart> = None;

        let result = async {
            while let Some(chunk) = rest.next().await {
                let chunk = chunk.map_err(PutStreamError::Body)?;
                total += chunk.len() as u64;
                if total > limit {
                    return Err(PutStreamError::TooLarge(limit));
                }
                for part in buf.push(&chunk) {
                    if upload.is_none() {
                        upload = Some(Multipart::create(self, key, content_type, journal.as_ref()).await?);
                    }
                    upload.as_mut().expect("created above").send_part(self, part).await?;
                }
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(PendingPut {
                key: key.to_string(),
                content_type: content_type.to_string(),
                rest: buf.into_rest(),
                upload,
                size: total,
            }),
            Err(e) => {
                if let Some(upload) = upload {
                    upload.abort(self).await;
                }
                Err(e)
            }
        }
    }

    /// The object (or a byte range of it); `None` when it does not exist.
    pub async fn get(&self, key: &str, range: Option<&str>) -> Result<Option<GetObjectOutput>, StoreError> {
        let request = self.client.get_object().bucket(&self.bucket).key(key).set_range(range.map(String::from));
        match request.send().await {
            Ok(o) => Ok(Some(o)),
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    return Ok(None);
                }
                if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) {
                    return Err(StoreError::InvalidRange);
                }
                if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) {
                    return Ok(None);
                }
                Err(unavailable(e))
            }
        }
    }

    /// Removes every object under `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let keys = self.list(prefix).await?;
        for key in &keys {
            self.delete(key).await?;
        }
        Ok(keys.len())
    }

    /// Writes `body` as the object `key`.
    pub async fn put_bytes(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(unavailable)?;
        Ok(())
    }

    /// Up to `max` keys under `prefix` after `start_after`, in key order,
    /// and whether more follow.
    pub async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: i32,
    ) -> Result<(Vec<String>, bool), StoreError> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(String::from))
            .max_keys(max)
            .send()
            .await
            .map_err(unavailable)?;
        let keys = page.contents().iter().filter_map(|o| o.key().map(String::from)).collect();
        Ok((keys, page.is_truncated().unwrap_or(false)))
    }

    /// Keys under a prefix (for tests and housekeeping).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(unavailable)?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(String::from)));
        }
        Ok(keys)
    }
}
