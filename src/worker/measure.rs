//! Measuring a job: its fraction done, its estimated completion, the time
//! of each phase, and the outcome counters.

use chrono::Utc;
use tokio::time::Instant;

use crate::domain::{JobStatus, StatusDoc};

/// The fraction of `total` seconds that `encoded` is.
pub fn fraction(encoded: f64, total: f64) -> f64 {
    if total > 0.0 {
        (encoded / total).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Milliseconds since `t`.
pub fn ms_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// An estimate of completion from the time spent so far and the progress.
pub fn estimate(doc: &mut StatusDoc) {
    let (Some(started), p) = (doc.started_utc_time, doc.progress_percent) else { return };
    if p == 0 {
        return;
    }
    let spent = (Utc::now() - started).num_milliseconds().max(0) as f64;
    let left = spent * (100.0 - p as f64) / p as f64;
    doc.estimated_completion_utc_time = Some(Utc::now() + chrono::Duration::milliseconds(left as i64));
}

pub(super) fn record_outcome(doc: &StatusDoc) {
    let format = doc.format.as_str();
    match doc.status {
        JobStatus::Done => {
            metrics::counter!("transcoder_jobs_completed_total", "format" => format).increment(1);
            if let (Some(start), Some(end)) = (doc.started_utc_time, doc.completed_utc_time) {
                let secs = (end - start).num_milliseconds() as f64 / 1000.0;
                metrics::histogram!("transcoder_job_duration_seconds", "format" => format).record(secs);
            }
        }
        JobStatus::Failed => {
            let code = doc.error.as_ref().map(|e| e.code.clone()).unwrap_or_default();
            metrics::counter!("transcoder_jobs_failed_total", "format" => format, "code" => code).increment(1);
        }
        JobStatus::Cancelled => metrics::counter!("transcoder_jobs_cancelled_total").increment(1),
        _ => {}
    }
}

/// Time spent in each step of a transcode, for the
/// `transcoder_job_phase_seconds` histogram.
pub struct Phases(Instant);

impl Phases {
    pub fn start() -> Phases {
        Phases(Instant::now())
    }

    /// Records the time since the previous phase ended as `name`.
    pub fn end(&mut self, name: &'static str) {
        let now = Instant::now();
        metrics::histogram!("transcoder_job_phase_seconds", "phase" => name).record((now - self.0).as_secs_f64());
        self.0 = now;
    }
}
