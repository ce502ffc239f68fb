//! The tasks on `<prefix>.jobs`: the one owner of their wire format.
//!
//! A job enters as a `transcode` task (what the API publishes). A worker
//! either runs it whole or, for a long input, plans it into `piece` tasks
//! and one `audio` task; the task that completes the plan publishes the
//! `join`. Every variant is versioned, so workers of a newer release still
//! read tasks queued by an older one.

use chrono::Utc;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError};
use crate::domain::{ClientId, Container, JobId, JobOptions, PieceSpec};
use crate::trace::TraceParent;

/// Priority of a join: short, and the last step before a job is done.
pub const JOIN_PRIORITY: u8 = 9;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Task {
    /// The job as submitted: probe, then encode whole or plan pieces.
    #[serde(rename = "transcode.v1")]
    Transcode { id: JobId, client: ClientId, options: JobOptions, container: Container },
    /// Encode one frame range of the input (video only).
    #[serde(rename = "piece.v1")]
    Piece { id: JobId, client: ClientId, options: JobOptions, container: Container, piece: PieceSpec },
    /// Encode the whole input's audio once.
    #[serde(rename = "audio.v1")]
    Audio { id: JobId, client: ClientId, options: JobOptions, container: Container },
    /// Concatenate the pieces and mux the audio into the output.
    #[serde(rename = "join.v1")]
    Join { id: JobId, client: ClientId, options: JobOptions },
}

impl Task {
    pub fn id(&self) -> JobId {
        match self {
            Task::Transcode { id, .. } | Task::Piece { id, .. } | Task::Audio { id, .. } | Task::Join { id, .. } => *id,
        }
    }

    pub fn client(&self) -> &ClientId {
        match self {
            Task::Transcode { client, .. }
            | Task::Piece { client, .. }
            | Task::Audio { client, .. }
            | Task::Join { client, .. } => client,
        }
    }

    pub fn options(&self) -> &JobOptions {
        match self {
            Task::Transcode { options, .. }
            | Task::Piece { options, .. }
            | Task::Audio { options, .. }
            | Task::Join { options, .. } => options,
        }
    }

    /// The task's name within its job (also its attempt counter's name).
    pub fn name(&self) -> String {
        match self {
            Task::Transcode { .. } => "transcode".into(),
            Task::Piece { piece, .. } => piece.name(),
            Task::Audio { .. } => "audio".into(),
            Task::Join { .. } => "join".into(),
        }
    }

    /// `message_id`: the job id for the job itself, `<id>.<task>` for the
    /// tasks of its plan.
    pub fn message_id(&self) -> String {
        match self {
            Task::Transcode { id, .. } => id.to_string(),
            other => format!("{}.{}", other.id(), other.name()),
        }
    }

    pub fn decode(body: &[u8]) -> Result<Task, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// Body and properties: persistent, prioritised, with the trace in the
    /// headers (W3C Trace Context).
    pub fn encode(&self, priority: u8, trace: &TraceParent) -> (Vec<u8>, BasicProperties) {
        let body = serde_json::to_vec(self).expect("tasks serialize");
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), AMQPValue::LongString(trace.child().to_string().into()));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_priority(priority)
            .with_message_id(self.message_id().as_str().into())
            .with_content_type("application/json".into())
            .with_timestamp(Utc::now().timestamp() as u64)
            .with_headers(headers);
        (body, properties)
    }

    /// Publishes to `<prefix>.jobs`, mandatory, and waits for the confirm.
    pub async fn publish(&self, broker: &Broker, priority: u8, trace: &TraceParent) -> Result<(), BrokerError> {
        let (body, properties) = self.encode(priority, trace);
        let names = broker.names();
        broker.publish(&names.jobs_exchange(), &names.jobs_routing_key(), true, &body, properties).await
    }
}

/// The trace a delivery carries, or a new one.
pub fn trace_of(properties: &BasicProperties) -> TraceParent {
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("traceparent"))
        .and_then(|v| v.as_long_string())
        .and_then(|s| TraceParent::parse(&s.to_string()))
        .unwrap_or_else(TraceParent::start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_round_trip_and_keep_the_first_editions_wire_name() {
        let id = JobId::new();
        let client = ClientId::development();
        let task =
            Task::Transcode { id, client: client.clone(), options: JobOptions::default(), container: Container::Mp4 };
        let json = serde_json::to_value(&task).unwrap();
        assert_eq!(json["type"], "transcode.v1");
        assert_eq!(Task::decode(&serde_json::to_vec(&json).unwrap()).unwrap(), task);
        assert_eq!(task.message_id(), id.to_string());

        let piece = PieceSpec { index: 3, start_frame: 300, frames: 100, seek_seconds: 11.98, duration_seconds: 4.0 };
        let task = Task::Piece { id, client, options: JobOptions::default(), container: Container::Mp4, piece };
        assert_eq!(task.name(), "piece-00003");
        assert_eq!(task.message_id(), format!("{id}.piece-00003"));
        let (body, props) = task.encode(4, &TraceParent::start());
        assert_eq!(Task::decode(&body).unwrap(), task);
        assert_eq!(props.priority(), &Some(4));
        assert!(Task::decode(br#"{"type":"transcode.v9"}"#).is_err());
    }
}
