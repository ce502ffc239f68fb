//! Bad requests get a clear problem document and leave nothing behind.

use serde_json::Value;

use crate::helpers::*;

async fn problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["code"], code, "{body}");
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem without {field}: {body}");
    }
    body
}

async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(app.keys("inputs/").await, Vec::<String>::new());
    assert_eq!(app.keys("jobs/").await, Vec::<String>::new());
}

fn mp4_bytes(app: &TestApp) -> Vec<u8> {
    std::fs::read(Clip::small(1).make(app.dir.path(), "v.mp4")).unwrap()
}

#[tokio::test]
async fn text_sent_as_a_video_is_415_and_nothing_is_kept() {
    let app = spawn_app().await;
    let r = app.submit_bytes(b"just some text, definitely not a video file".to_vec(), "video/mp4", "").await;
    problem(r, 415, "unsupported-media-type").await;
    let playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/x.ts\n".to_vec();
    let r = app.submit_bytes(playlist, "application/octet-stream", "").await;
    problem(r, 415, "unsupported-media-type").await;
    let r = app.submit_bytes(mp4_bytes(&app), "text/plain", "").await;
    problem(r, 415, "unsupported-media-type").await;
    assert_nothing_stored(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn an_empty_body_is_400() {
    let app = spawn_app().await;
    let r = app.submit_bytes(Vec::new(), "video/mp4", "").await;
    problem(r, 400, "empty-body").await;
    assert_nothing_stored(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn invalid_options_are_422_and_unparseable_ones_400() {
    let app = spawn_app().await;
    let video = mp4_bytes(&app);
    for query in
        ["?priority=10", "?priority=-1", "?height=0", "?height=361", "?height=10000", "?format=gif", "?colour=red"]
    {
        let r = app.submit_bytes(video.clone(), "video/mp4", query).await;
        let body = problem(r, 422, "invalid-option").await;
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{query}");
    }
    for query in ["?priority=high", "?height=abc", "?height=1.5"] {
        let r = app.submit_bytes(video.clone(), "video/mp4", query).await;
        problem(r, 400, "bad-request").await;
    }
    assert_nothing_stored(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let app = spawn_app().await;
    let unknown = uuid::Uuid::now_v7().to_string();
    for path in [
        format!("/video/status/{unknown}"),
        format!("/video/download/{unknown}"),
        "/video/status/not-a-job".to_string(),
        "/video/download/123".to_string(),
        "/video/status/..%2F..%2Fetc%2Fpasswd".to_string(),
    ] {
        let r = app.http.get(app.url(&path)).send().await.unwrap();
        problem(r, 404, "not-found").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn broken_multipart_is_400_and_leaves_nothing() {
    let app = spawn_app().await;
    let video = mp4_bytes(&app);
    // A body that never closes its boundary.
    let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\n".to_vec();
    body.extend_from_slice(&video);
    let r = app.submit_bytes(body, "multipart/form-data; boundary=XyZ", "").await;
    problem(r, 400, "malformed-multipart").await;
    // No boundary at all.
    let r = app.submit_bytes(video.clone(), "multipart/form-data", "").await;
    problem(r, 400, "malformed-multipart").await;
    // A form without a file part.
    let form = reqwest::multipart::Form::new().text("format", "mp4");
    let r = app.http.post(app.url("/video/convert")).multipart(form).send().await.unwrap();
    problem(r, 400, "malformed-multipart").await;
    // A valid file followed by an invalid option: the stored input is removed again.
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(video).file_name("a.mp4"))
        .text("priority", "11");
    let r = app.http.post(app.url("/video/convert")).multipart(form).send().await.unwrap();
    problem(r, 422, "invalid-option").await;
    assert_nothing_stored(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn an_upload_over_the_limit_is_413_with_or_without_content_length_and_nothing_is_kept() {
    let limit = 64 * 1024;
    let app = spawn_app_with(|s| s.http.max_upload_bytes = limit).await;
    let mut body = std::fs::read(Clip::small(2).make(app.dir.path(), "v.mp4")).unwrap();
    body.resize(limit as usize + 1, 0);
    let r = app.submit_bytes(body.clone(), "video/mp4", "").await;
    problem(r, 413, "payload-too-large").await;
    // Chunked: no Content-Length, so the limit is found while streaming.
    let r = app.submit_chunked(&body, 8192).await;
    problem(r, 413, "payload-too-large").await;
    assert_nothing_stored(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["broker"], "up");
    assert_eq!(body["store"], "up");
    app.stop().await;
}
