//! Liveness and readiness.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when the broker and the store both answer, 503 otherwise.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (broker, store) = tokio::join!(state.broker.ready(), state.storage.ready());
    if broker && store {
        return Ok(Json(json!({"status": "ready", "broker": "up", "store": "up"})));
    }
    let down: Vec<&str> =
        [(!broker).then_some("broker"), (!store).then_some("object store")].into_iter().flatten().collect();
    Err(ApiError::Unavailable(format!("not ready: {} unreachable", down.join(" and "))))
}
