use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

use super::{ClientId, ErrorInfo, InputInfo, JobId, JobOptions, Links, OutputFormat, OutputInfo, Segments};

/// Where a job is in its life. It moves forward only, except
/// `processing` → `queued` when a job is requeued after a worker was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Processing,
    Done,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] =
        [JobStatus::Queued, JobStatus::Processing, JobStatus::Done, JobStatus::Failed, JobStatus::Cancelled];

    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Processing => "processing",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

fn rfc3339<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => s.serialize_none(),
    }
}

fn rfc3339_required<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The status document: what `GET /video/status/{id}` returns, what events
/// carry, and the store of record at `jobs/<client>/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(
    as = StatusDocument,
    description = "The status of one job. Every field is always present; absent values are `null`."
)]
pub struct StatusDoc {
    pub id: JobId,
    pub status: JobStatus,
    /// 0–9; higher runs first.
    #[schema(minimum = 0, maximum = 9)]
    pub priority: u8,
    pub format: OutputFormat,
    /// The requested output height; `null` = the input's height.
    #[schema(required = true, minimum = 16, maximum = 4320, multiple_of = 2)]
    pub height: Option<u32>,
    /// Never decreases; 100 only when `done`.
    #[schema(minimum = 0, maximum = 100)]
    pub progress_percent: u8,
    #[serde(serialize_with = "rfc3339_required")]
    #[schema(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")]
    pub submitted_utc_time: DateTime<Utc>,
    /// Start of the latest attempt.
    #[serde(serialize_with = "rfc3339")]
    #[schema(required = true, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")]
    pub started_utc_time: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339")]
    #[schema(required = true, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")]
    pub completed_utc_time: Option<DateTime<Utc>>,
    /// `null` when the service has no estimate.
    #[serde(serialize_with = "rfc3339")]
    #[schema(required = true, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")]
    pub estimated_completion_utc_time: Option<DateTime<Utc>>,
    /// Deliveries to a worker so far.
    #[schema(minimum = 0)]
    pub attempt: u32,
    pub input: InputInfo,
    #[schema(required = true)]
    pub output: Option<OutputInfo>,
    #[schema(required = true)]
    pub error: Option<ErrorInfo>,
    /// Pieces of a split job; `null` for a job encoded in one piece.
    #[serde(default)]
    #[schema(required = true)]
    pub segments: Option<Segments>,
    pub links: Links,
}

impl StatusDoc {
    pub fn queued(id: JobId, options: &JobOptions, input: InputInfo, now: DateTime<Utc>) -> StatusDoc {
        StatusDoc {
            id,
            status: JobStatus::Queued,
            priority: options.priority,
            format: options.format,
            height: options.height,
            progress_percent: 0,
            submitted_utc_time: now,
            started_utc_time: None,
            completed_utc_time: None,
            estimated_completion_utc_time: None,
            attempt: 0,
            input,
            output: None,
            error: None,
            segments: None,
            links: Links::for_job(id),
        }
    }

    /// Raises the progress; it never goes down, and 100 belongs to `done`.
    pub fn advance_progress(&mut self, percent: u8) -> bool {
        let percent = percent.min(99);
        if percent > self.progress_percent {
            self.progress_percent = percent;
            true
        } else {
            false
        }
    }

    /// Where `self` may move to `next` (the state machine): forward only,
    /// or `processing` → `queued` for a requeue; never out of a terminal
    /// status; progress never down.
    pub fn may_become(&self, next: &StatusDoc) -> bool {
        let rank = |s: JobStatus| match s {
            JobStatus::Queued => 0,
            JobStatus::Processing => 1,
            _ => 2,
        };
        let requeue = self.status == JobStatus::Processing && next.status == JobStatus::Queued;
        let status_ok =
            if self.status.is_terminal() { *self == *next } else { rank(next.status) >= rank(self.status) || requeue };
        status_ok && next.progress_percent >= self.progress_percent
    }

    pub fn start_attempt(&mut self, now: DateTime<Utc>) {
        self.status = JobStatus::Processing;
        self.attempt += 1;
        self.started_utc_time = Some(now);
        self.estimated_completion_utc_time = None;
    }

    pub fn finish_done(&mut self, output: OutputInfo, now: DateTime<Utc>) {
        self.status = JobStatus::Done;
        self.progress_percent = 100;
        self.completed_utc_time = Some(now);
        self.estimated_completion_utc_time = None;
        self.output = Some(output);
        self.error = None;
    }

    pub fn finish_failed(&mut self, code: &str, message: String, now: DateTime<Utc>) {
        self.status = JobStatus::Failed;
        self.completed_utc_time = Some(now);
        self.estimated_completion_utc_time = None;
        self.error = Some(ErrorInfo { code: code.into(), message });
    }

    pub fn finish_cancelled(&mut self, now: DateTime<Utc>) {
        self.status = JobStatus::Cancelled;
        self.completed_utc_time = Some(now);
        self.estimated_completion_utc_time = None;
    }

    /// Suggested seconds before asking again, while the job is pending.
    pub fn retry_after_seconds(&self, now: DateTime<Utc>) -> Option<u64> {
        if self.status.is_terminal() {
            return None;
        }
        let secs = self.estimated_completion_utc_time.map(|eta| (eta - now).num_seconds()).unwrap_or(5);
        Some(secs.clamp(1, 60) as u64)
    }
}

/// API → workers, on `<prefix>.control`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ControlMessage {
    #[serde(rename = "cancel.v1")]
    CancelV1 { id: JobId, client: ClientId },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> StatusDoc {
        let input = InputInfo {
            filename: Some("a.mov".into()),
            size_bytes: 3,
            content_type: "video/quicktime".into(),
            color: None,
        };
        StatusDoc::queued(JobId::new(), &JobOptions::default(), input, Utc::now())
    }

    #[test]
    fn status_document_uses_the_kebab_case_field_names() {
        let v = serde_json::to_value(doc()).unwrap();
        for key in [
            "id",
            "status",
            "priority",
            "progress-percent",
            "submitted-utc-time",
            "started-utc-time",
            "completed-utc-time",
            "estimated-completion-utc-time",
            "attempt",
            "input",
            "output",
            "error",
            "links",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["status"], "queued");
        assert_eq!(v["input"]["size-bytes"], 3);
        assert!(v["submitted-utc-time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(serde_json::from_value::<StatusDoc>(v).unwrap().status, JobStatus::Queued);
    }

    #[test]
    fn progress_is_monotonic_and_stops_below_100_until_done() {
        let mut d = doc();
        assert!(d.advance_progress(40));
        assert!(!d.advance_progress(30));
        assert!(d.advance_progress(100));
        assert_eq!(d.progress_percent, 99);
    }

    #[test]
    fn the_state_machine_moves_forward_only_and_never_leaves_a_terminal_status() {
        let queued = doc();
        let mut processing = queued.clone();
        processing.start_attempt(Utc::now());
        assert!(queued.may_become(&processing));
        let mut requeued = processing.clone();
        requeued.status = JobStatus::Queued;
        assert!(processing.may_become(&requeued));
        let mut cancelled = processing.clone();
        cancelled.finish_cancelled(Utc::now());
        assert!(processing.may_become(&cancelled));
        assert!(!cancelled.may_become(&processing));
        let mut done = processing.clone();
        done.progress_percent = 100;
        done.status = JobStatus::Done;
        assert!(!cancelled.may_become(&done));
        let mut back = processing.clone();
        back.progress_percent = 50;
        let mut lower = back.clone();
        lower.progress_percent = 40;
        assert!(!back.may_become(&lower));
    }
}
