//! The development object store: an S3-compatible server (`s3s` over
//! `s3s-fs`) on 127.0.0.1, reached through aws-sdk-s3 over real HTTP exactly
//! like a remote store.

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Request, S3Response, S3Result, S3};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

/// Credentials of the embedded store when none are configured. It listens on
/// loopback only.
pub const DEV_ACCESS_KEY: &str = "transcoder-dev";
pub const DEV_SECRET_KEY: &str = "transcoder-dev-secret";

/// A running embedded store.
pub struct EmbeddedStore {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EmbeddedStore {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts serving `data_dir` on 127.0.0.1:`port` (0 = any free port)
    /// until `shutdown` fires.
    pub async fn start(
        data_dir: &Path,
        port: u16,
        access_key: &str,
        secret_key: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<EmbeddedStore> {
        std::fs::create_dir_all(data_dir)?;
        let fs = s3s_fs::FileSystem::new(data_dir)
            .map_err(|e| anyhow::anyhow!("embedded store at {}: {e:?}", data_dir.display()))?;
        let root = std::env::current_dir()?.join(data_dir).canonicalize()?;
        let mut builder = S3ServiceBuilder::new(Store { fs, root, conditional: Default::default() });
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();

        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(e) => {
                            tracing::warn!(error = %e, "embedded store: accept failed");
                            continue;
                        }
                    },
                };
                // Responses are written in pieces (headers, then the body):
                // without this, Nagle's algorithm holds a piece back until
                // the client's delayed acknowledgement, about 40 ms.
                let _ = socket.set_nodelay(true);
                let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        tracing::info!(%addr, data_dir = %data_dir.display(), "embedded object store listening");
        Ok(EmbeddedStore { addr, task })
    }
}

/// `s3s-fs` with one change: object bodies are read from disk in 1 MiB
/// pieces. `s3s-fs` reads them 4 KiB at a time, and every read of a tokio
/// file is a trip to the blocking thread pool, which made copying a 60 MB
/// input out of the store take over half a second.
struct Store {
    fs: s3s_fs::FileSystem,
    /// The canonical data folder, as `s3s-fs` resolves it.
    root: PathBuf,
    /// `s3s-fs` checks `If-Match`/`If-None-Match` and then writes, in two
    /// steps, and a GET opens the body before it reads the ETag, which is
    /// written after the body. Compare-and-swap needs both to be one step:
    /// conditional writes take this lock alone, GETs share it while they
    /// open the object (one process serves this store).
    conditional: tokio::sync::RwLock<()>,
}

/// Bytes read from disk at a time when serving an object.
const READ_CHUNK: usize = 1 << 20;

impl Store {
    /// The same object as `served` (which `s3s-fs` opened and checked),
    /// opened again to be read in large pieces; `None` when it cannot be
    /// (changed in between, or a key that does not map to a plain path).
    async fn fast_body(
        &self,
        bucket: &str,
        key: &str,
        range: Option<Range>,
        served: &GetObjectOutput,
    ) -> Option<StreamingBlob> {
        let length = u64::try_from(served.content_length?).ok()?;
        let path = self.root.join(bucket).join(key);
        if !path.starts_with(&self.root) {
            return None;
        }
        let mut file = tokio::fs::File::open(&path).await.ok()?;
        let metadata = file.metadata().await.ok()?;
        let modified = s3s::dto::Timestamp::from(metadata.modified().ok()?);
        if served.last_modified.as_ref() != Some(&modified) {
            return None;
        }
        let start = match range {
            None => 0,
            Some(Range::Int { first, .. }) => first,
            Some(Range::Suffix { .. }) => metadata.len().checked_sub(length)?,
        };
        if start.checked_add(length)? > metadata.len() {
            return None;
        }
        file.seek(SeekFrom::Start(start)).await.ok()?;
        Some(StreamingBlob::wrap(ReaderStream::with_capacity(file.take(length), READ_CHUNK)))
    }
}

/// `impl S3 for Store`: the listed operations pass to `s3s-fs` unchanged,
/// beside the methods written out.
macro_rules! s3_over_fs {
    ([$($op:ident: $input:ty => $output:ty),* $(,)?] $($own:tt)*) => {
        #[async_trait::async_trait]
        impl S3 for Store {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$op(req).await
                }
            )*
            $($own)*
        }
    };
}

s3_over_fs! {
    [
        create_bucket: CreateBucketInput => CreateBucketOutput,
        head_bucket: HeadBucketInput => HeadBucketOutput,
        delete_bucket: DeleteBucketInput => DeleteBucketOutput,
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
        list_buckets: ListBucketsInput => ListBucketsOutput,
        head_object: HeadObjectInput => HeadObjectOutput,
        copy_object: CopyObjectInput => CopyObjectOutput,
        delete_object: DeleteObjectInput => DeleteObjectOutput,
        delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
        list_objects: ListObjectsInput => ListObjectsOutput,
        list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
        create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
        upload_part: UploadPartInput => UploadPartOutput,
        upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
        list_parts: ListPartsInput => ListPartsOutput,
        complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
    ]

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        if req.input.if_match.is_none() && req.input.if_none_match.is_none() {
            return self.fs.put_object(req).await;
        }
        let _turn = self.conditional.write().await;
        self.fs.put_object(req).await
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let (bucket, key, range) = (req.input.bucket.clone(), req.input.key.clone(), req.input.range);
        let _opening = self.conditional.read().await;
        let mut response = self.fs.get_object(req).await?;
        if let Some(body) = self.fast_body(&bucket, &key, range, &response.output).await {
            response.output.body = Some(body);
        }
        Ok(response)
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}
