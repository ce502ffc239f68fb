//! The consume loop: prefetch = concurrency, one task per delivery,
//! reconnect when the consumer stream ends, drain on shutdown.

mod common;
mod encode;
mod inputs;
mod join;
mod measure;
mod package;
mod previews;
mod process;
mod split;
mod whole;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::Reconnect;
use crate::config::WorkerSettings;
use crate::domain::{ControlMessage, JobId};
use crate::jobs::Jobs;
use crate::queue::Broker;
use crate::storage::Storage;

pub use inputs::Inputs;

pub use process::process_one;

/// What a worker needs; shared by its job tasks.
pub struct WorkerContext {
    pub settings: WorkerSettings,
    pub storage: Storage,
    pub jobs: Jobs,
    pub broker: Broker,
    /// Fired when the drain deadline passes: running jobs stop and requeue.
    pub stop_jobs: CancellationToken,
    /// Copies of recent inputs, for the next tasks of the same job.
    pub inputs: inputs::Inputs,
    /// Jobs in progress here, each with its own stop signal (a child of
    /// `stop_jobs`), and the last cancellations heard of.
    pub cancels: Cancels,
}

/// Cancellation requests as workers receive them from `<prefix>.control`.
/// Several tasks of one job may run here at once; they share its signal.
#[derive(Default)]
pub struct Cancels {
    running: std::sync::Mutex<std::collections::HashMap<JobId, (CancellationToken, usize)>>,
    recent: std::sync::Mutex<std::collections::VecDeque<JobId>>,
}

impl Cancels {
    /// The stop signal of a task of job `id` starting here; already fired
    /// if the job's cancellation arrived before the task did.
    pub fn register(&self, id: JobId, parent: &CancellationToken) -> CancellationToken {
        let mut running = self.running.lock().unwrap();
        let entry = running.entry(id).or_insert_with(|| (parent.child_token(), 0));
        entry.1 += 1;
        if self.recent.lock().unwrap().contains(&id) {
            entry.0.cancel();
        }
        entry.0.clone()
    }

    /// A task of job `id` ended here.
    pub fn finished(&self, id: JobId) {
        let mut running = self.running.lock().unwrap();
        if let Some(entry) = running.get_mut(&id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                running.remove(&id);
            }
        }
    }

    fn cancel(&self, id: JobId) {
        let mut recent = self.recent.lock().unwrap();
        if recent.len() == 1024 {
            recent.pop_front();
        }
        recent.push_back(id);
        if let Some((token, _)) = self.running.lock().unwrap().get(&id) {
            tracing::info!(job = %id, "cancelling a running job");
            token.cancel();
        }
    }
}

/// Listens for cancellations until `shutdown`.
async fn listen_for_cancels(ctx: Arc<WorkerContext>, shutdown: CancellationToken) {
    let binding = [(ctx.broker.names().control_exchange(), String::new())];
    ctx.broker
        .follow("cancellation listener", &binding, &shutdown, |delivery| {
            match serde_json::from_slice::<ControlMessage>(&delivery.data) {
                Ok(ControlMessage::CancelV1 { id, .. }) => ctx.cancels.cancel(id),
                Err(e) => tracing::warn!(error = %e, "unreadable control message"),
            }
        })
        .await
}

/// Consumes `<prefix>.jobs` until `shutdown`, then lets running jobs finish
/// within `worker.shutdown_grace_seconds` before stopping and requeueing
/// them.
pub async fn run(ctx: Arc<WorkerContext>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    // Cancellations are heard until the drain is over.
    let listening = CancellationToken::new();
    tokio::spawn(listen_for_cancels(ctx.clone(), listening.clone()));
    let _stop_listening = listening.drop_guard();
    let mut reconnect = Reconnect::default();
    'connect: while !shutdown.is_cancelled() {
        let channel = match ctx.broker.consumer_channel(ctx.settings.concurrency).await {
            Ok(ch) => ch,
            Err(e) => {
                tracing::warn!(error = %e, "worker cannot reach the broker; retrying");
                if !reconnect.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        let queue = ctx.broker.names().jobs_queue();
        let mut consumer = match channel
            .basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not start consuming; retrying");
                if !reconnect.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        reconnect.reset();
        tracing::info!(queue, concurrency = ctx.settings.concurrency, "worker consuming");
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let _ = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
                    break 'connect;
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let ctx = ctx.clone();
                        tracker.spawn(async move { process_one(&ctx, delivery).await });
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer failed; reconnecting");
                        continue 'connect;
                    }
                    // The end of the stream means the channel or connection is gone.
                    None => {
                        tracing::warn!("consumer stream ended; reconnecting");
                        continue 'connect;
                    }
                },
            }
        }
    }
    drain(&ctx, tracker).await;
}

async fn drain(ctx: &WorkerContext, tracker: TaskTracker) {
    tracker.close();
    if tracker.is_empty() {
        return;
    }
    let grace = Duration::from_secs(ctx.settings.shutdown_grace_seconds);
    tracing::info!(running = tracker.len(), ?grace, "draining: waiting for running jobs");
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("drain deadline passed; stopping and requeueing running jobs");
        ctx.stop_jobs.cancel();
        // Stopped jobs only requeue; that must not take long either.
        if tokio::time::timeout(Duration::from_secs(30), tracker.wait()).await.is_err() {
            tracing::error!("jobs did not stop within 30 s of being told to; exiting anyway");
        }
    }
}
