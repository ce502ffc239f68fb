//! transcoder: an asynchronous video transcoding service.
//!
//! ```text
//! client ──POST /video/convert──▶ http ──stream──▶ storage (inputs/…)
//!                                  │ └─status doc─▶ storage (jobs/…)
//!                                  └─confirmed publish─▶ queue (<prefix>.jobs)
//! worker ◀─consume─ queue ; storage input ─▶ transcode (ffmpeg) ─▶ storage (outputs/…)
//! worker ─confirmed publish─▶ events (<prefix>.notify.<client>) ─▶ the client's queue
//! ```

/// The one reconnect and start-up retry policy.
pub mod backoff;
/// The command-line client: submit and watch.
pub mod client;
/// Every stable error code, in one table.
pub mod codes;
/// Settings structs and the layered loader.
pub mod config;
/// Ids, options, the status document and the job message.
pub mod domain;
/// The development object store (s3s + s3s-fs on loopback).
pub mod embedded_s3;
/// CloudEvents on the client's notification exchange.
pub mod events;
/// The HTTP API: router, handlers, problem documents.
pub mod http;
/// The job's record: the one owner of its state, written with compare-and-swap.
pub mod jobs;
/// Prometheus metrics.
pub mod metrics;
/// Per-client broker users.
pub mod provision;
/// Broker connection, topology, confirmed publishing and the typed tasks.
pub mod queue;
/// Recognising video containers from their first bytes.
pub mod sniff;
/// Building and running the roles.
pub mod startup;
/// The S3 client: streamed uploads, downloads, status documents, keys.
pub mod storage;
/// Logging setup.
pub mod telemetry;
/// W3C trace context from the request to the worker.
pub mod trace;
/// ffmpeg and ffprobe: arguments, limits, progress, errors.
pub mod transcode;
/// Resumable uploads: their records and bytes in the store, and the sweeper.
pub mod uploads;
/// Signed webhooks: each client's outcome events POSTed to its URL, retried through the broker.
pub mod webhooks;
/// Consuming jobs and processing one.
pub mod worker;
