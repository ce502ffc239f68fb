//! The HTTP API (axum). Each module exports its own `router()`.

mod auth;
mod cancel;
mod convert;
mod download;
pub mod error;
mod health;
mod idempotency;
mod jobs;
mod ops;
mod quota;
mod redact;
pub mod serve;
mod sse;
mod status;

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
    /// Fires when the process drains: long-lived streams end.
    pub shutdown: tokio_util::sync::CancellationToken,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(convert::router())
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
        .with_state(state)
}
