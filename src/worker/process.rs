//! One delivery: decode the task, run it, settle the delivery. Every
//! delivery ends in exactly one ack, reject or requeue.

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tracing::Instrument;

use super::common::{Outcome, Run};
use super::{join, split, whole, WorkerContext};
use crate::queue::tasks::{trace_of, Task};

/// Handles one task delivery.
pub async fn process_one(ctx: &WorkerContext, delivery: Delivery) {
    let task = match Task::decode(&delivery.data) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "unreadable task message; dead-lettering it");
            let _ = delivery.acker.nack(BasicNackOptions { requeue: false, ..Default::default() }).await;
            return;
        }
    };
    let trace = trace_of(&delivery.properties);
    let priority = delivery.properties.priority().unwrap_or(5);
    let (id, client) = (task.id(), task.client().clone());
    let span = tracing::info_span!("job", job = %id, client = %client, task = %task.name(), trace_id = %trace.trace_id);
    async {
        let stop = ctx.cancels.register(id, &ctx.stop_jobs);
        let run = Run { ctx, id, client: &client, options: task.options(), stop, priority, trace };
        let outcome = match &task {
            Task::Transcode { container, .. } => whole::run(&run, *container).await,
            Task::Piece { container, piece, .. } => split::piece(&run, *container, piece).await,
            Task::Audio { container, .. } => split::audio(&run, *container).await,
            Task::Join { .. } => join::join(&run).await,
        };
        let requeue = |requeue| BasicNackOptions { requeue, ..Default::default() };
        let settle = async {
            match outcome {
                Outcome::Finished => delivery.acker.ack(BasicAckOptions::default()).await,
                Outcome::Requeue => delivery.acker.nack(requeue(true)).await,
                Outcome::DeadLetter => delivery.acker.nack(requeue(false)).await,
                Outcome::Retry(reason) => {
                    tracing::warn!(reason, "attempt failed; the task goes back to the queue");
                    // A short pause, so a store outage does not spin the queue.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    delivery.acker.nack(requeue(true)).await
                }
            }
        };
        let settled = tokio::time::timeout(Duration::from_secs(10), settle).await;
        ctx.cancels.finished(id);
        match settled {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not settle the delivery; the broker will redeliver it"),
            Err(_) => tracing::warn!("the broker did not take the acknowledgement in time; it will redeliver it"),
        }
    }
    .instrument(span)
    .await
}
