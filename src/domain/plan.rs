//! The plan of a split job as the job's record keeps it (the pieces
//! themselves are cut in `pieces`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use super::pieces::{split, PieceSpec};
use super::{Segments, StatusDoc};

/// A split job's plan and how far its tasks are, kept in the job's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanState {
    pub pieces: Vec<PieceSpec>,
    /// Whether the input has audio (then one task encodes it whole).
    pub audio: bool,
    /// Every task of the plan has been published (confirmed).
    pub published: bool,
    pub done: BTreeSet<u32>,
    pub audio_done: bool,
    /// Deliveries per task name (`piece-00003`, `audio`, `join`).
    pub attempts: BTreeMap<String, u32>,
    /// Fraction encoded of pieces in progress.
    pub running: BTreeMap<u32, f32>,
    pub last_progress_event: Option<DateTime<Utc>>,
    /// Where each finished task's time went (`plan`, pieces, `audio`, `join`).
    #[serde(default)]
    pub timings: BTreeMap<String, TaskTiming>,
    /// The picture chain every piece applies (decided once, from the probe).
    #[serde(default)]
    pub picture: super::picture::Picture,
    /// AAC audio encoded by the pieces, each its own time range, at this
    /// sample rate (see [`AudioCut`]); `None`: one task encodes it whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_sample_rate: Option<u32>,
    /// A package's rendition heights, highest first (every piece encodes
    /// all of them); empty for a single file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renditions: Vec<u32>,
    /// The input's video, for the join to make the poster and storyboard
    /// from its keyframes while it joins; `None` (then they come from the
    /// joined output) in plans recorded without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_video: Option<InputVideo>,
}

/// What the previews need to know of the input's video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InputVideo {
    pub container: super::Container,
    pub codec: String,
    pub width: u32,
    pub height: u32,
}

/// One task's wall time in milliseconds: copying in, ffmpeg (or the probe,
/// for the plan), storing out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TaskTiming {
    /// When the task began (the plan: when its input copy began).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<chrono::DateTime<chrono::Utc>>,
    pub fetch_ms: u64,
    pub encode_ms: u64,
    pub store_ms: u64,
}

impl PlanState {
    pub fn new(pieces: Vec<PieceSpec>, audio: bool) -> PlanState {
        PlanState { pieces, audio, ..Default::default() }
    }

    /// Whether every piece and the audio are stored: the join may run.
    pub fn complete(&self) -> bool {
        self.done.len() == self.pieces.len() && (self.audio_done || !self.has_audio_task())
    }

    pub fn segments(&self) -> Segments {
        Segments { total: self.pieces.len() as u32, done: self.done.len() as u32 }
    }

    /// The job's progress in percent: pieces (with the running ones' share)
    /// and the audio; the join's last few percent come with `done`.
    pub fn percent(&self) -> u8 {
        let units = self.pieces.len() as f64 + if self.has_audio_task() { 1.0 } else { 0.0 };
        if units == 0.0 {
            return 0;
        }
        let running: f64 = self
            .running
            .iter()
            .filter(|(i, _)| !self.done.contains(i))
            .map(|(_, f)| f64::from(f.clamp(0.0, 1.0)))
            .sum();
        let finished = self.done.len() as f64 + if self.audio_done { 1.0 } else { 0.0 };
        (97.0 * (finished + running) / units).floor() as u8
    }

    /// Whether one task encodes the whole audio (else the pieces do, or
    /// there is none).
    pub fn has_audio_task(&self) -> bool {
        self.audio && self.audio_sample_rate.is_none()
    }

    /// Counts a delivery of `task`; returns the count.
    pub fn attempt(&mut self, task: &str) -> u32 {
        let n = self.attempts.entry(task.to_string()).or_default();
        *n += 1;
        *n
    }
}

/// The job's record at `jobs/<client>/<id>.json`: the status document (what
/// clients see; unknown fields are ignored where it alone is read) and,
/// for a split job, its plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    #[serde(flatten)]
    pub doc: StatusDoc,
    #[serde(default, rename = "x-plan", skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanState>,
}

impl JobRecord {
    pub fn new(doc: StatusDoc) -> JobRecord {
        JobRecord { doc, plan: None }
    }

    /// Copies the plan's progress into the status document (never down).
    pub fn sync_progress(&mut self) {
        if let Some(plan) = &self.plan {
            self.doc.segments = Some(plan.segments());
            let percent = plan.percent();
            self.doc.advance_progress(percent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize, fps: f64) -> Vec<f64> {
        (0..n).map(|i| i as f64 / fps).collect()
    }

    #[test]
    fn progress_counts_pieces_audio_and_running_shares() {
        let mut plan = PlanState::new(split(&frames(600, 25.0), &[], 0.0, 4.0), true);
        assert_eq!(plan.percent(), 0);
        plan.done.insert(0);
        plan.running.insert(1, 0.5);
        assert_eq!(plan.percent(), (97.0 * 1.5 / 7.0) as u8);
        for i in 0..6 {
            plan.done.insert(i);
        }
        assert!(!plan.complete());
        plan.audio_done = true;
        assert!(plan.complete());
        assert_eq!(plan.percent(), 97);
    }

    #[test]
    fn the_record_keeps_the_plan_beside_the_status_document() {
        let input =
            super::super::InputInfo { filename: None, size_bytes: 1, content_type: "video/mp4".into(), color: None };
        let doc = StatusDoc::queued(super::super::JobId::new(), &Default::default(), input, Utc::now());
        // Stored times have millisecond precision.
        let doc: StatusDoc = serde_json::from_value(serde_json::to_value(&doc).unwrap()).unwrap();
        let mut record = JobRecord::new(doc.clone());
        record.plan = Some(PlanState::new(split(&frames(100, 25.0), &[], 0.0, 2.0), false));
        let json = serde_json::to_value(&record).unwrap();
        assert!(json.get("x-plan").is_some());
        assert_eq!(json["id"], doc.id.to_string());
        let as_doc: StatusDoc = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(as_doc, doc);
        assert_eq!(serde_json::from_value::<JobRecord>(json).unwrap(), record);
        assert!(serde_json::to_value(&doc).unwrap()["segments"].is_null());
    }
}
