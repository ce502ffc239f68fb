//! The HTTP API (axum). Each module exports its own `router()`.

mod auth;
mod body;
pub mod budget;
mod cancel;
mod convert;
mod download;
pub mod error;
pub mod files;
mod health;
mod idempotency;
mod intake;
mod jobs;
pub mod locks;
pub mod openapi;
mod ops;
pub mod playback;
mod quota;
mod redact;
pub mod serve;
mod sse;
mod status;
pub mod tus;
mod upload;

use std::sync::Arc;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;

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
    /// Signs and checks playback tokens (`http.playback_secret`).
    pub playback: playback::Signer,
    /// Fires when the process drains: long-lived streams end.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The routes of [`table`].
struct Table {
    /// Counted in the metrics, with the problem-document fallbacks.
    api: OpenApiRouter<AppState>,
    /// Liveness and readiness, outside both.
    probes: OpenApiRouter<AppState>,
}

/// Every route of the API, each with its OpenAPI operation (`#[utoipa::path]`
/// on its handler, registered with `utoipa_axum::routes!`): the router and
/// the document are built from this one table. `tus_layers` wraps the
/// resumable-upload routes in their protocol and CORS layers, `play_layers`
/// the playback routes in theirs.
fn table(
    tus_layers: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
    play_layers: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> Table {
    let api = OpenApiRouter::with_openapi(openapi::base())
        .merge(convert::routes())
        .merge(tus_layers(tus::routes()))
        .merge(status::routes())
        .merge(jobs::routes())
        .merge(download::routes())
        .merge(files::routes())
        .merge(play_layers(files::play_routes()))
        .merge(cancel::routes())
        .merge(sse::routes())
        .merge(ops::routes());
    Table { api, probes: health::routes() }
}

/// The operations of every route (the layers change none).
fn documented() -> utoipa::openapi::OpenApi {
    let Table { api, probes } = table(|r| r, |r| r);
    let mut doc = api.into_openapi();
    doc.merge(probes.into_openapi());
    doc
}

pub fn router(state: AppState) -> anyhow::Result<Router> {
    Ok(stateless_router(&state)?.with_state(state))
}

/// [`router`] before it is given its state.
fn stateless_router(state: &AppState) -> anyhow::Result<Router<AppState>> {
    let tus_layers = tus::Layers::new(state)?;
    let play_cors = files::cors(&state.settings.http)?;
    let Table { api, probes } = table(|r| tus_layers.wrap(r), |r| r.layer(play_cors));
    let (api, _) = api.split_for_parts();
    let (probes, _) = probes.split_for_parts();
    Ok(api
        .route_layer(axum::middleware::from_fn(ops::count_requests))
        .fallback(|| async {
            ApiError::NotFound { code: "not-found", detail: "no such resource".into(), monitor: None }
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .merge(probes)
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|r: &axum::http::Request<axum::body::Body>| redact::request_span(r)),
        ))
}
