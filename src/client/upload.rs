//! The upload of `transcoder submit`: tus 1.0.0 against `/video/uploads`.
//! The file is sent in chunks of [`Tuning::chunk_size`], each read from
//! the file as it is sent (memory stays flat). After a dropped connection,
//! a stalled request, 409, 423, 429 or a 5xx it waits (`Retry-After`, else
//! a bounded backoff), asks the service where the upload is (`HEAD`) and
//! continues from there; it gives up when nothing was acknowledged for
//! [`Tuning::retry_for`]. The job id comes from the `Link: rel="monitor"`
//! of the last answer.

mod retry;

use std::io::SeekFrom;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use futures::StreamExt;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, LINK};
use reqwest::{Method, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::submit::Progress;
use super::{problem_text, Target};
pub use retry::Tuning;
use retry::{watched, Activity, Retry};

const TUS_VERSION: &str = "1.0.0";
const OFFSET_STREAM: &str = "application/offset+octet-stream";
/// Time limit of the requests without a body (POST, HEAD).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What to upload.
pub struct Source<'a> {
    pub path: &'a Path,
    pub size: u64,
    /// `Upload-Metadata` (see [`metadata`]).
    pub metadata: String,
}

/// `Upload-Metadata`: comma-separated `key base64(value)`.
pub fn metadata(pairs: &[(&str, String)]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    pairs.iter().map(|(k, v)| format!("{k} {}", b64.encode(v))).collect::<Vec<_>>().join(",")
}

/// Uploads the file and returns the id of the job it became.
pub async fn upload(
    http: &reqwest::Client,
    target: &Target,
    tuning: &Tuning,
    source: &Source<'_>,
    progress: &Progress,
) -> anyhow::Result<String> {
    let uploader = Uploader { http, target, tuning, progress };
    let url = uploader.create(source).await?;
    uploader.transfer(&url, source).await
}

/// Why a request did not move the upload on.
enum Failure {
    /// Worth another try after a wait.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    Fatal(anyhow::Error),
}

/// Where the upload is, and the job once it is one.
struct Step {
    offset: u64,
    job: Option<String>,
}

struct Uploader<'a> {
    http: &'a reqwest::Client,
    target: &'a Target,
    tuning: &'a Tuning,
    progress: &'a Progress,
}

impl Uploader<'_> {
    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url).header("Tus-Resumable", TUS_VERSION);
        match &self.target.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// `POST /video/uploads` → the upload's URL. An unreachable service
    /// fails at once (there is nothing to resume yet); 429 and 5xx are
    /// tried again.
    async fn create(&self, source: &Source<'_>) -> anyhow::Result<String> {
        let server = self.target.server.trim_end_matches('/');
        let mut retry = Retry::new(self.tuning.retry_for);
        loop {
            let response = self
                .request(Method::POST, &format!("{server}/video/uploads"))
                .header("Upload-Length", source.size)
                .header("Upload-Metadata", &source.metadata)
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await
                .with_context(|| format!("cannot reach the service at {}", self.target.server))?;
            if response.status() == StatusCode::CREATED {
                let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
                let location = location.context("the service created the upload but sent no Location")?;
                return Ok(resolve(server, location));
            }
            if !is_transient(response.status()) || response.status() == StatusCode::CONFLICT {
                bail!("submission refused: {}", problem_text(response).await);
            }
            let retry_after = retry_after(response.headers());
            let reason = problem_text(response).await;
            retry.wait(&reason, retry_after, self.progress).await?;
        }
    }

    /// PATCHes from the service's offset to the end, resuming after each
    /// transient failure from the offset a HEAD reports.
    async fn transfer(&self, url: &str, source: &Source<'_>) -> anyhow::Result<String> {
        let mut retry = Retry::new(self.tuning.retry_for);
        let (mut known, mut best, mut resuming) = (Some(0), 0, false);
        loop {
            let step = match known {
                Some(offset) if offset < source.size => {
                    self.patch(url, source, offset).await.and_then(|s| moved(s, offset))
                }
                _ => self.head(url).await,
            };
            match step {
                Ok(Step { job: Some(id), .. }) => {
                    self.progress.acknowledged(source.size, source.size);
                    return Ok(id);
                }
                Ok(Step { offset, job: None }) => {
                    if offset >= source.size && known.is_none_or(|k| k >= source.size) {
                        bail!("the service has all {offset} bytes of {url} but names no job");
                    }
                    if std::mem::take(&mut resuming) {
                        self.progress.note(&format!("resuming at {offset} of {} bytes", source.size));
                    }
                    if offset > best {
                        best = offset;
                        retry.progressed();
                    }
                    self.progress.acknowledged(offset, source.size);
                    known = Some(offset);
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient { reason, retry_after }) => {
                    (known, resuming) = (None, true);
                    retry.wait(&reason, retry_after, self.progress).await?;
                }
            }
        }
    }

    /// One chunk from `offset`, read from the file as it is sent.
    async fn patch(&self, url: &str, source: &Source<'_>, offset: u64) -> Result<Step, Failure> {
        let len = self.tuning.chunk_size.min(source.size - offset);
        let fatal = |e: std::io::Error| Failure::Fatal(anyhow!("cannot read {}: {e}", source.path.display()));
        let mut file = tokio::fs::File::open(source.path).await.map_err(fatal)?;
        file.seek(SeekFrom::Start(offset)).await.map_err(fatal)?;
        let activity = Activity::new();
        let (moved, bar) = (activity.clone(), self.progress.bar());
        let mut sent = offset;
        let body = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 << 10).inspect(move |chunk| {
            if let Ok(c) = chunk {
                moved.touch();
                sent += c.len() as u64;
                if let Some(b) = &bar {
                    b.set_position(sent);
                }
            }
        });
        let request = self
            .request(Method::PATCH, url)
            .header(CONTENT_TYPE, OFFSET_STREAM)
            .header(CONTENT_LENGTH, len)
            .header("Upload-Offset", offset)
            .body(reqwest::Body::wrap_stream(body));
        let response = watched(request.send(), &activity).await?;
        match response.status() {
            StatusCode::NO_CONTENT => step(response.headers()),
            _ => Err(refusal(response).await),
        }
    }

    /// Where the service has the upload.
    async fn head(&self, url: &str) -> Result<Step, Failure> {
        let sent = self.request(Method::HEAD, url).timeout(REQUEST_TIMEOUT).send().await;
        let response = sent.map_err(transient)?;
        match response.status() {
            StatusCode::OK | StatusCode::NO_CONTENT => step(response.headers()),
            _ => Err(refusal(response).await),
        }
    }
}

/// A PATCH answered without storing a byte is retried like a failure.
fn moved(step: Step, from: u64) -> Result<Step, Failure> {
    if step.job.is_none() && step.offset <= from {
        let reason = format!("the service stored none of the bytes from {from}");
        return Err(Failure::Transient { reason, retry_after: None });
    }
    Ok(step)
}

/// `Location` against the server's base URL.
fn resolve(server: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{server}/{}", location.trim_start_matches('/'))
    }
}

fn step(headers: &HeaderMap) -> Result<Step, Failure> {
    let offset = headers.get("upload-offset").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let offset = offset.ok_or_else(|| Failure::Fatal(anyhow!("the service answered without a valid Upload-Offset")))?;
    let job = headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok()).find_map(monitor);
    Ok(Step { offset, job })
}

/// The job id in `Link: </video/status/{id}>; rel="monitor"`.
fn monitor(link: &str) -> Option<String> {
    link.split(',').find_map(|one| {
        let (target, params) = one.split_once(';')?;
        let rel = params.split(';').filter_map(|p| p.trim().strip_prefix("rel=")).next()?;
        if !rel.trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case("monitor")) {
            return None;
        }
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let id = target.trim_end_matches('/').rsplit('/').next()?;
        (!id.is_empty()).then(|| id.to_string())
    })
}

fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 409 | 423 | 429) || status.is_server_error()
}

/// A refused PATCH or HEAD: transient, or the end of the upload.
async fn refusal(response: Response) -> Failure {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let text = problem_text(response).await;
    match status {
        s if is_transient(s) => Failure::Transient { reason: text, retry_after },
        StatusCode::NOT_FOUND => Failure::Fatal(anyhow!("the upload is gone (expired or removed): {text}")),
        _ => Failure::Fatal(anyhow!("submission refused: {text}")),
    }
}

fn transient(e: reqwest::Error) -> Failure {
    let e = e.without_url();
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    Failure::Transient { reason, retry_after: None }
}

/// `Retry-After` in seconds (an HTTP date falls back to the backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_comes_from_the_monitor_link() {
        let id = "0190c8e4-7d1c-7abc-8def-0123456789ab";
        assert_eq!(monitor(&format!("</video/status/{id}>; rel=\"monitor\"")).as_deref(), Some(id));
        assert_eq!(monitor(&format!("<http://h/x>; rel=next, </video/status/{id}>; rel=monitor")).as_deref(), Some(id));
        assert_eq!(monitor("</video/status/x>; rel=\"next\""), None);
        assert_eq!(monitor("/video/status/x; rel=monitor"), None);
    }

    #[test]
    fn locations_resolve_against_the_server() {
        assert_eq!(resolve("http://h:1", "/video/uploads/a"), "http://h:1/video/uploads/a");
        assert_eq!(resolve("http://h:1/api", "/video/uploads/a"), "http://h:1/api/video/uploads/a");
        assert_eq!(resolve("http://h:1", "https://o/video/uploads/a"), "https://o/video/uploads/a");
    }
}
