//! Liveness and readiness.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::problems::Unavailable;
use super::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Alive {
    Ok,
}

#[derive(Serialize, ToSchema)]
struct Health {
    status: Alive,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Readiness {
    Ready,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Reachable {
    Up,
}

#[derive(Serialize, ToSchema)]
struct Ready {
    status: Readiness,
    broker: Reachable,
    store: Reachable,
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    summary = "Liveness",
    security(()),
    responses((status = 200, description = "The process is alive.", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: Alive::Ok })
}

/// 200 when the broker and the store both answer, 503 otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    summary = "Readiness",
    security(()),
    responses(
        (status = 200, description = "Broker and store reachable.", body = Ready),
        (status = 503, response = Unavailable)
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let (broker, store) = tokio::join!(state.broker.ready(), state.storage.ready());
    if broker && store {
        return Ok(Json(Ready { status: Readiness::Ready, broker: Reachable::Up, store: Reachable::Up }));
    }
    let down: Vec<&str> =
        [(!broker).then_some("broker"), (!store).then_some("object store")].into_iter().flatten().collect();
    Err(ApiError::Unavailable(format!("not ready: {} unreachable", down.join(" and "))))
}
