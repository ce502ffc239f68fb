//! The HTTP API (axum). Each module exports its own `router()`.

mod auth;
mod body;
pub mod budget;
mod cancel;
mod convert;
mod download;
pub mod error;
mod health;
mod idempotency;
mod intake;
mod jobs;
pub mod locks;
mod ops;
mod quota;
mod redact;
pub mod serve;
mod sse;
mod status;
pub mod tus;
mod upload;

use std::sync::Arc;

use axum::Router;

use crate::config::Settings;
use crate::queue::Broker;
use crate::storage::Storage;

pub use auth::Client;
pub use error::ApiError;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub storage: Storage,
    /// The jobs' records (the one writer of their state).
    pub jobs: crate::jobs::Jobs,
    pub broker: Broker,
    pub idempotency: idempotency::Idempotency,
    pub hub: crate::events::EventHub,
    pub quota: quota::Quota,
    /// `http.upload_buffer_bytes`, shared by every upload in flight.
    pub budget: budget::UploadBudget,
    /// Resumable uploads in the store.
    pub uploads: crate::uploads::Uploads,
    /// One request at a time per resumable upload, in this process.
    pub upload_locks: locks::UploadLocks,
    /// Fires when the process drains: long-lived streams end.
    pub shutdown: tokio_util::sync::CancellationToken,
}

pub fn router(state: AppState) -> anyhow::Result<Router> {
    Ok(Router::new()
        .merge(convert::router())
        .merge(tus::router(&state)?)
        .merge(status::router())
        .merge(jobs::router())
        .merge(download::router())
        .merge(cancel::router())
        .merge(sse::router())
        .merge(ops::router())
        .route_layer(axum::middleware::from_fn(ops::count_requests))
        .fallback(|| async {
            ApiError::NotFound { code: "not-found", detail: "no such resource".into(), monitor: None }
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .merge(health::router())
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|r: &axum::http::Request<axum::body::Body>| redact::request_span(r)),
        )
        .with_state(state))
}
