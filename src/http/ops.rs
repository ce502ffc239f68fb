//! `GET /metrics` and the request counter behind it; `GET /` (the page).

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics)).route("/", get(page)).route("/openapi.json", get(openapi))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}

async fn page() -> Html<&'static str> {
    Html(include_str!("static/index.html"))
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok((depth, consumers)) = state.broker.queue_depth().await {
        metrics::gauge!("transcoder_queue_depth").set(depth as f64);
        metrics::gauge!("transcoder_queue_consumers").set(consumers as f64);
    }
    let body = crate::metrics::handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Counts every request by method, route template and status.
pub async fn count_requests(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "other".into());
    let method = req.method().to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("transcoder_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}
