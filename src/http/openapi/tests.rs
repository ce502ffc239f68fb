//! The document and the router agree both ways: every (method, path) the
//! router serves is documented, and every documented one is served.
//!
//! The router is the one `transcoder api` serves ([`crate::http::router`])
//! with one more route layer, which adds the route that took a request to
//! its answer. A request reaches a handler when a route took it and the
//! answer is not the route's 405 fallback (no handler answers 405); one
//! that no route takes reaches the router's 404 fallback, without a route.
//! The broker and the store are not there: the handlers end in refusals or
//! 503s (within seconds, the store client's retries).
//! The paths to try are the document's and the router's own (from its
//! `Debug` form: axum has no other way to list them); each is tried with
//! every method.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

use crate::config::Settings;
use crate::http::AppState;

const ROUTE_HEADER: &str = "x-matched-route";

const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
    Method::PATCH,
    Method::TRACE,
    Method::CONNECT,
];

/// The service's state, on a broker and a store that are not there: no
/// handler runs in these tests.
async fn state() -> AppState {
    let mut settings = Settings::defaults();
    settings.amqp.url = "amqp://guest:guest@127.0.0.1:9/%2f".into();
    settings.storage.access_key = "test".into();
    settings.storage.secret_key = "test".into();
    let storage = crate::storage::Storage::new(&settings.storage, Some("http://127.0.0.1:9")).await;
    let broker = crate::queue::Broker::new(&settings.amqp, 1, Vec::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    shutdown.cancel();
    AppState {
        jobs: crate::jobs::Jobs::new(storage.clone()),
        hub: crate::events::EventHub::start(broker.clone(), shutdown.clone()),
        idempotency: Default::default(),
        quota: Default::default(),
        budget: super::super::budget::UploadBudget::new(settings.http.upload_buffer_bytes),
        uploads: crate::uploads::Uploads::new(storage.clone(), settings.http.upload_expiry_seconds),
        upload_locks: Default::default(),
        playback: super::super::playback::Signer::new("", 60),
        settings: Arc::new(settings),
        storage,
        broker,
        shutdown,
    }
}

/// Adds the route that took the request to the answer.
async fn show_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let mut response = next.run(req).await;
    if let Some(route) = route.and_then(|r| HeaderValue::from_str(&r).ok()) {
        response.headers_mut().insert(ROUTE_HEADER, route);
    }
    response
}

async fn served_router() -> Router {
    let state = state().await;
    let routes = crate::http::stateless_router(&state).unwrap();
    routes.route_layer(axum::middleware::from_fn(show_route)).with_state(state)
}

/// The paths the router has routes for, read from its `Debug` form.
fn router_paths(router: &Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    // Only the path router: the fallback router has catch-all paths of its own.
    let start = debug.find("path_router").expect("the router's Debug names its path router");
    let end = debug.find("fallback_router").expect("the router's Debug names its fallback router");
    let paths: BTreeSet<String> =
        debug[start..end].split('"').skip(1).step_by(2).filter(|s| s.starts_with('/')).map(str::to_string).collect();
    assert!(!paths.is_empty(), "no paths read from the router's Debug form: {debug}");
    paths
}

/// The document's (method, path) pairs.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("the document has paths") {
        for method in METHODS {
            if item.get(method.as_str().to_ascii_lowercase()).is_some() {
                ops.insert((method.to_string(), path.clone()));
            }
        }
    }
    ops
}

/// A concrete URI of a path template.
fn uri(template: &str) -> String {
    template.replace("{id}", "0190c8e4-7b4a-7c2e-9a51-3f2d1c0b9e77")
}

/// The (method, path) pairs the router takes, among `paths` × every method.
async fn served(router: &Router, paths: &BTreeSet<String>) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for path in paths {
        for method in METHODS {
            // The resumable-upload routes answer 412 before their fallback without it.
            let req = Request::builder()
                .method(method.clone())
                .uri(uri(path))
                .header("tus-resumable", "1.0.0")
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(req).await.unwrap();
            let route = response.headers().get(ROUTE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
            match route {
                Some(route) if response.status() != StatusCode::METHOD_NOT_ALLOWED => {
                    assert_eq!(&route, path, "{method} {path} was taken by the route {route}");
                    ops.insert((method.to_string(), path.clone()));
                }
                Some(_) => {}
                None => assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path} outside the routes"),
            }
        }
    }
    ops
}

/// HEAD of a GET route is served by axum from the GET handler, as HTTP
/// requires (RFC 9110 §9.3.2); the document need not list it.
fn with_implied_heads(ops: &BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
    let heads = ops.iter().filter(|(m, _)| m == "GET").map(|(_, p)| ("HEAD".to_string(), p.clone()));
    ops.iter().cloned().chain(heads).collect()
}

#[tokio::test]
async fn every_route_the_router_serves_is_documented_and_every_documented_route_is_served() {
    let router = served_router().await;
    let doc = super::document();
    let documented = with_implied_heads(&documented(&doc));
    let doc_paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();
    let router_paths = router_paths(&router);
    assert_eq!(router_paths, doc_paths, "the router's paths (left) and the document's (right)");

    let served = served(&router, &router_paths).await;
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "served but not documented: {undocumented:?}");
    assert!(unserved.is_empty(), "documented but not served: {unserved:?}");
}

#[test]
fn the_document_is_openapi_3_1_with_an_operation_id_for_every_operation() {
    let doc = super::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    for (method, path) in documented(&doc) {
        let op = &doc["paths"][&path][method.to_ascii_lowercase()];
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has no responses");
    }
}

#[test]
fn required_marks_become_required_headers() {
    let doc = super::document();
    let accepted = &doc["paths"]["/video/convert"]["post"]["responses"]["202"]["headers"];
    assert_eq!(accepted["Location"]["required"], true);
    assert_eq!(accepted["Retry-After"]["required"], true);
    let status = &doc["paths"]["/video/status/{id}"]["get"]["responses"]["200"]["headers"]["Retry-After"];
    assert!(status.get("required").is_none(), "Retry-After of a status is sent only while the job runs");
    let text = doc.to_string();
    assert!(!text.contains(super::parts::REQUIRED_MARK), "a mark is left in the document");
}

#[test]
fn links_name_their_operations_in_camel_case() {
    let doc = super::document();
    let links = &doc["paths"]["/video/convert"]["post"]["responses"]["202"]["links"];
    assert_eq!(links["GetStatus"]["operationId"], "getStatus");
    assert_eq!(links["GetStatus"]["parameters"]["id"], "$response.body#/id");
    assert!(!doc.to_string().contains("\"operation_id\""), "a link field in snake case is left");
}
