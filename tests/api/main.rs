//! Integration tests against the real broker, a real S3-compatible store
//! (the embedded one, or moto for the multi-process test) and real ffmpeg.
//! Every test uses its own AMQP prefix, bucket and data folder.

mod helpers;
mod hostile;
mod listing;
mod procs;

mod clients;
mod codes;
mod color;
mod concurrency;
mod config;
mod eventlog;
mod memory;
mod observability;
mod packages;
mod pipeline;
mod playback;
mod processes;
mod push;
mod reliability;
mod resources;
mod scheduling;
mod schemathesis;
mod split;
mod submit_tus;
mod topology;
mod tus;
mod uploads;
mod validation;
mod webhooks;
