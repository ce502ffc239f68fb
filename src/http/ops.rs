//! `GET /metrics` and the request counter behind it; `GET /` (the page) and
//! the scripts it loads, `GET /static/tus.min.js` (tus-js-client) and
//! `GET /static/hls.min.js` (hls.js), both vendored: no CDN.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::domain::schema::matching;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(page))
        .routes(routes!(tus_js))
        .routes(routes!(hls_js))
        .routes(routes!(openapi))
}

/// What `GET /openapi.json` answers, in the document itself.
struct Description;

impl PartialSchema for Description {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("openapi", matching(r"^3\.1\.[0-9]+$"))
            .required("openapi")
            .required("info")
            .required("paths")
            .into()
    }
}

impl ToSchema for Description {}

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    summary = "This document",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 description of the API.", body = inline(Description)))
)]
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi::json())
}

#[utoipa::path(
    get,
    path = "/",
    operation_id = "indexPage",
    tag = "operations",
    summary = "The web page: upload, watch progress, download",
    security(()),
    responses((status = 200, description = "The page.", body = String, content_type = "text/html"))
)]
async fn page() -> Html<&'static str> {
    Html(include_str!("static/index.html"))
}

/// tus-js-client's browser bundle (MIT). The page asks for it with its
/// version in the query (`?v=4.3.1`), so a new copy gets a new URL and the
/// old one may be cached for a year.
#[utoipa::path(
    get,
    path = "/static/tus.min.js",
    operation_id = "tusClientScript",
    tag = "operations",
    summary = "The resumable-upload client the page loads (tus-js-client, MIT)",
    description = "Cached for a year: the page names its version in the query (`?v=…`), which is otherwise ignored.",
    security(()),
    responses((
        status = 200,
        description = "The script.",
        body = String,
        content_type = "application/javascript",
        headers(("Cache-Control" = String), ("X-Content-Type-Options" = String))
    ))
)]
async fn tus_js() -> impl IntoResponse {
    script("application/javascript", include_str!("static/tus.min.js"))
}

/// A vendored script: named by version, so cached for a year.
fn script(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

/// hls.js's minified browser build (Apache-2.0): npm `hls.js` 1.6.19,
/// `dist/hls.min.js`, with its licence in a header comment and without its
/// sourceMappingURL line. The page plays HLS packages with it where the
/// browser has no native HLS. Like tus.min.js, the page names the version in
/// the query (`?v=1.6.19`), so the script may be cached for a year.
#[utoipa::path(
    get,
    path = "/static/hls.min.js",
    operation_id = "hlsPlayerScript",
    tag = "operations",
    summary = "The HLS player the page loads (hls.js, Apache-2.0)",
    description = "Cached for a year: the page names its version in the query (`?v=…`), which is otherwise ignored.",
    security(()),
    responses((
        status = 200,
        description = "The script.",
        body = String,
        content_type = "text/javascript",
        headers(("Cache-Control" = String), ("X-Content-Type-Options" = String))
    ))
)]
async fn hls_js() -> impl IntoResponse {
    script("text/javascript", include_str!("static/hls.min.js"))
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    security(()),
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.", body = String, content_type = "text/plain"))
)]
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
