//! What every task shares: its context, how it ends, the job's outcome and
//! its announcement, ffmpeg with progress reports.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lapin::BasicProperties;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inputs::LocalInput;
use super::measure::record_outcome;
use super::WorkerContext;
use crate::domain::{ClientId, ControlMessage, JobId, JobOptions, JobRecord, JobStatus, StatusDoc};
use crate::events::{self, EventKind};
use crate::jobs::Updated;
use crate::storage::{input_key, work_prefix, StoreError};
use crate::trace::TraceParent;
use crate::transcode::{self, Limits, TranscodeError};

/// How one task delivery ended.
pub enum Outcome {
    /// Done, or failed for good: nothing more to do for this delivery.
    Finished,
    /// Something transient (store, broker, stall): try again.
    Retry(String),
    /// The worker is shutting down: back to the queue.
    Requeue,
    /// Failed as poison: recorded, announced, and kept in the dead queue.
    DeadLetter,
}

/// One task of one job, as a worker runs it.
pub struct Run<'a> {
    pub ctx: &'a WorkerContext,
    pub id: JobId,
    pub client: &'a ClientId,
    pub options: &'a JobOptions,
    /// Fires on cancellation, or at the end of a drain.
    pub stop: CancellationToken,
    /// The delivery's priority, handed on to the tasks this one publishes.
    pub priority: u8,
    pub trace: TraceParent,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Media(#[from] TranscodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] crate::queue::BrokerError),
}

impl JobError {
    /// The machine, not the job, ran short: ffmpeg killed or out of memory
    /// or space, or the worker's own copy of the input hitting a full disk.
    pub fn is_resources(&self) -> bool {
        match self {
            JobError::Media(TranscodeError::Resources(_)) => true,
            JobError::Store(StoreError::Io(e)) => {
                matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT | libc::ENOMEM | libc::EMFILE))
            }
            _ => false,
        }
    }
}

impl From<std::io::Error> for JobError {
    /// A local file: the scratch folder (full disk, say), worth another try.
    fn from(e: std::io::Error) -> Self {
        JobError::Media(TranscodeError::Internal(format!("scratch folder: {e}")))
    }
}

impl<'a> Run<'a> {
    pub fn limits(&self) -> Limits {
        let s = &self.ctx.settings;
        Limits {
            max_input_seconds: s.max_input_seconds,
            max_input_pixels: s.max_input_pixels,
            stall: Duration::from_secs(s.stall_seconds),
            timeout: Duration::from_secs(s.job_timeout_seconds),
        }
    }

    /// A private working folder, removed when dropped.
    pub fn scratch(&self) -> Result<tempfile::TempDir, JobError> {
        transcode::scratch_dir(&self.ctx.settings.scratch_dir)
            .map_err(|e| TranscodeError::Internal(format!("scratch folder: {e}")).into())
    }

    /// The job's private copy of its input (shared with the job's other
    /// tasks on this worker).
    pub async fn fetch_input(&self) -> Result<Arc<LocalInput>, JobError> {
        let key = input_key(self.client, self.id);
        let storage = &self.ctx.storage;
        self.ctx
            .inputs
            .get(self.id, |path: PathBuf| async move {
                match storage.download_to_file(&key, &path).await? {
                    Some(_) => Ok(()),
                    None => {
                        Err(TranscodeError::InvalidMedia("the uploaded input is no longer in the store".into()).into())
                    }
                }
            })
            .await
    }

    pub async fn read(&self) -> Result<Option<JobRecord>, StoreError> {
        self.ctx.jobs.read(self.client, self.id).await
    }

    pub async fn update(&self, change: impl FnMut(&mut JobRecord) -> bool) -> Result<Option<Updated>, StoreError> {
        self.ctx.jobs.update(self.client, self.id, change).await
    }

    /// Records a terminal status (unless the job already has one), then
    /// concludes with whatever status the record holds.
    pub async fn finish(&self, mut end: impl FnMut(&mut StatusDoc)) -> Outcome {
        self.finish_record(|r| end(&mut r.doc)).await
    }

    /// [`Run::finish`], with access to the whole record.
    pub async fn finish_record(&self, mut end: impl FnMut(&mut JobRecord)) -> Outcome {
        let updated = self
            .update(|r| {
                if r.doc.status.is_terminal() {
                    return false;
                }
                end(r);
                true
            })
            .await;
        match updated {
            Ok(Some(u)) => self.conclude(&u.record, u.changed).await,
            Ok(None) => Outcome::Finished,
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    pub async fn fail(&self, code: &str, message: String) -> Outcome {
        tracing::info!(code, reason = %message, "job failed");
        self.finish(|d| d.finish_failed(code, message.clone(), Utc::now())).await
    }

    /// The end of a job: its terminal event (confirmed, so that only then
    /// the delivery is acked), the work folder removed, other workers told
    /// to stop the job's other tasks.
    pub async fn conclude(&self, record: &JobRecord, first: bool) -> Outcome {
        let doc = &record.doc;
        let kind = EventKind::terminal_for(doc.status).expect("conclude is called with a terminal status");
        if let Err(e) = events::publish(&self.ctx.broker, self.client, doc, kind).await {
            return Outcome::Retry(format!("terminal event not confirmed: {e}"));
        }
        tracing::info!(status = doc.status.as_str(), "job finished");
        self.ctx.inputs.forget(self.id);
        if first {
            record_outcome(doc);
        }
        if record.plan.is_some() {
            if doc.status == JobStatus::Failed {
                self.stop_other_tasks().await;
            }
            self.clean_work().await;
        }
        Outcome::Finished
    }

    /// Removes `work/<client>/<id>/`.
    pub async fn clean_work(&self) {
        if let Err(e) = self.ctx.storage.delete_prefix(&work_prefix(self.client, self.id)).await {
            tracing::warn!(error = %e, "could not remove the job's intermediate objects");
        }
    }

    /// Tells every worker to stop this job's running tasks.
    async fn stop_other_tasks(&self) {
        let message = ControlMessage::CancelV1 { id: self.id, client: self.client.clone() };
        let body = serde_json::to_vec(&message).expect("serializes");
        let props = BasicProperties::default().with_content_type("application/json".into());
        let names = self.ctx.broker.names();
        if let Err(e) = self.ctx.broker.publish(&names.control_exchange(), "", false, &body, props).await {
            tracing::warn!(error = %e, "could not tell the workers to stop the job's other tasks");
        }
    }

    /// Maps a failed task to its outcome: a drain requeues, a cancel ends
    /// the job cancelled, bad media fails it, the rest is retried.
    /// `attempt` is the task's attempt (1 on its first delivery): the
    /// machine running short on the last one ends the job with a code that
    /// says so, rather than one more redelivery.
    pub async fn settle_error(&self, error: JobError, attempt: u32) -> Outcome {
        match error {
            JobError::Media(TranscodeError::Cancelled) if self.ctx.stop_jobs.is_cancelled() => Outcome::Requeue,
            JobError::Media(TranscodeError::Cancelled) => self.finish(|d| d.finish_cancelled(Utc::now())).await,
            JobError::Media(e) if !e.is_transient() => self.fail(e.code(), e.to_string()).await,
            e if e.is_resources() && attempt >= self.ctx.settings.max_attempts => {
                let message = format!("{e} (on each of {attempt} attempts)");
                self.fail("resources-exhausted", message).await
            }
            other => {
                if other.is_resources() {
                    tracing::warn!(error = %other, attempt, "short of resources; the task will be retried");
                }
                Outcome::Retry(other.to_string())
            }
        }
    }

    /// Runs ffmpeg until it ends, `stop` fires or a limit is hit,
    /// reporting the seconds encoded to `report` at most once a second.
    pub async fn ffmpeg(
        &self,
        args: Vec<String>,
        scratch: &Path,
        stop: CancellationToken,
        mut report: impl AsyncReport,
    ) -> Result<(), TranscodeError> {
        let (tx, mut rx) = tokio::sync::watch::channel(None);
        let run = transcode::run_ffmpeg(args, scratch, self.limits(), stop, move |p| {
            let _ = tx.send(Some(p));
        });
        tokio::pin!(run);
        let mut last_report: Option<Instant> = None;
        loop {
            tokio::select! {
                r = &mut run => return r,
                changed = rx.changed() => {
                    if changed.is_err() { continue; }
                    let Some(p) = *rx.borrow_and_update() else { continue };
                    if last_report.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                        continue;
                    }
                    last_report = Some(Instant::now());
                    report.report(self, p.encoded_seconds).await;
                }
            }
        }
    }

    /// Publishes a progress event for `doc`.
    pub async fn progress_event(&self, doc: &StatusDoc) {
        if let Err(e) = events::publish(&self.ctx.broker, self.client, doc, EventKind::Progress).await {
            tracing::warn!(error = %e, "could not publish a progress event");
        }
    }
}

/// Where a running ffmpeg's progress (seconds of output encoded) goes.
pub trait AsyncReport {
    fn report(&mut self, run: &Run<'_>, encoded_seconds: f64) -> impl std::future::Future<Output = ()>;
}

/// No progress reports (the audio and the join are short).
pub struct Quiet;

impl AsyncReport for Quiet {
    async fn report(&mut self, _: &Run<'_>, _: f64) {}
}
