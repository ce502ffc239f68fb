//! `GET /metrics` and the request counter behind it; `GET /` (the page) and
//! the script it loads, `GET /static/tus.min.js` (tus-js-client, vendored:
//! no CDN).

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(page))
        .route("/static/tus.min.js", get(tus_js))
        .route("/openapi.json", get(openapi))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}

async fn page() -> Html<&'static str> {
    Html(include_str!("static/index.html"))
}

/// tus-js-client's browser bundle (MIT). The page asks for it with its
/// version in the query (`?v=4.3.1`), so a new copy gets a new URL and the
/// old one may be cached for a year.
async fn tus_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/javascript"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("static/tus.min.js"),
    )
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
