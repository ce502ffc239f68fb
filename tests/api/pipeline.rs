//! Upload → store → broker → ffmpeg worker → store → pushed event.

use crate::helpers::*;

#[tokio::test]
async fn a_subscriber_bound_before_submitting_gets_started_then_completed_and_the_mp4_is_h264_aac() {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let clip = Clip::small(3).make(app.dir.path(), "clip.mp4");

    let id = app.submit(&clip, "?height=180").await;

    let started = sub.wait_for(&format!("job.started.{id}"), JOB_TIMEOUT).await;
    assert_eq!(started.body["type"], "video.transcode.started");
    let completed = sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    let order = sub.keys();
    let pos = |k: &str| order.iter().position(|x| x == k).unwrap();
    assert!(pos(&format!("job.started.{id}")) < pos(&format!("job.completed.{id}")));

    // CloudEvents fields.
    let ce = &completed.body;
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], format!("{id}.completed"));
    assert_eq!(ce["type"], "video.transcode.completed");
    assert_eq!(ce["source"], format!("/video/status/{id}"));
    assert_eq!(ce["subject"], id);
    assert_eq!(ce["datacontenttype"], "application/json");
    assert!(chrono::DateTime::parse_from_rfc3339(ce["time"].as_str().unwrap()).is_ok());
    assert_eq!(ce["data"]["status"], "done");
    assert_eq!(ce["data"]["progress-percent"], 100);
    // Message properties.
    let p = &completed.properties;
    assert_eq!(p.content_type().as_ref().map(|s| s.as_str()), Some("application/cloudevents+json"));
    assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some(format!("{id}.completed").as_str()));
    assert_eq!(p.correlation_id().as_ref().map(|s| s.as_str()), Some(id.as_str()));
    assert_eq!(*p.delivery_mode(), Some(2));
    assert!(p.timestamp().is_some());

    // The status document agrees, with the output read by ffprobe.
    let doc = app.status(&id).await;
    assert_eq!(doc["status"], "done");
    assert_eq!(doc["output"]["video-codec"], "h264");
    assert_eq!(doc["output"]["audio-codec"], "aac");
    assert_eq!(doc["output"]["height"], 180);
    assert_eq!(doc["attempt"], 1);

    // The download is the real file.
    let response = app.http.get(app.url(&format!("/video/download/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    assert_eq!(h["content-type"], "video/mp4");
    assert_eq!(h["accept-ranges"], "bytes");
    assert!(h.contains_key("etag"));
    let body = response.bytes().await.unwrap();
    assert_eq!(h["content-length"].to_str().unwrap(), body.len().to_string());
    let out = app.dir.path().join("out.mp4");
    std::fs::write(&out, &body).unwrap();
    let probed = probe(&out);
    assert_eq!(stream(&probed, "video").unwrap()["codec_name"], "h264");
    assert_eq!(stream(&probed, "video").unwrap()["height"], 180);
    assert_eq!(stream(&probed, "audio").unwrap()["codec_name"], "aac");
    let input_duration = duration(&probe(&clip));
    assert!((duration(&probed) - input_duration).abs() <= 0.5, "duration {} vs {}", duration(&probed), input_duration);

    // Ranges.
    let ranged =
        app.http.get(app.url(&format!("/video/download/{id}"))).header("Range", "bytes=10-19").send().await.unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.headers()["content-range"].to_str().unwrap(), format!("bytes 10-19/{}", body.len()));
    assert_eq!(ranged.bytes().await.unwrap(), body.slice(10..20));

    app.stop().await;
}

#[tokio::test]
async fn format_webm_gives_vp9_and_opus() {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "job.completed.*").await;
    let clip = Clip::small(2).make(app.dir.path(), "clip.mp4");

    let id = app.submit(&clip, "?format=webm&height=120").await;
    sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;

    let response = app.http.get(app.url(&format!("/video/download/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "video/webm");
    let out = app.dir.path().join("out.webm");
    std::fs::write(&out, response.bytes().await.unwrap()).unwrap();
    let probed = probe(&out);
    assert_eq!(probed["format"]["format_name"].as_str().unwrap(), "matroska,webm");
    assert_eq!(stream(&probed, "video").unwrap()["codec_name"], "vp9");
    assert_eq!(stream(&probed, "video").unwrap()["height"], 120);
    assert_eq!(stream(&probed, "audio").unwrap()["codec_name"], "opus");
    app.stop().await;
}

#[tokio::test]
async fn a_multipart_upload_with_option_fields_is_accepted_and_keeps_the_file_name() {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "job.*.*").await;
    let clip = Clip::small(1).make(app.dir.path(), "holiday.mp4");
    let form = reqwest::multipart::Form::new()
        .text("format", "webm")
        .part("file", reqwest::multipart::Part::bytes(std::fs::read(&clip).unwrap()).file_name("holiday.mp4"))
        .text("priority", "7");
    let response = app.http.post(app.url("/video/convert")).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(response.headers().contains_key("retry-after"));
    let doc: serde_json::Value = response.json().await.unwrap();
    let id = doc["id"].as_str().unwrap();
    assert_eq!(location, format!("/video/status/{id}"));
    assert_eq!(doc["input"]["filename"], "holiday.mp4");
    assert_eq!(doc["input"]["content-type"], "video/mp4");
    assert_eq!(doc["priority"], 7);
    assert_eq!(doc["format"], "webm");
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    let done = sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    assert_eq!(done.body["data"]["output"]["video-codec"], "vp9");
    app.stop().await;
}

#[tokio::test]
async fn a_corrupt_or_truncated_video_fails_with_a_reason_and_the_next_job_still_succeeds() {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let clip = Clip::small(2).make(app.dir.path(), "clip.mp4");
    let bytes = std::fs::read(&clip).unwrap();

    // The moov atom sits at the end of a non-faststart file: cut it off.
    let truncated = bytes[..bytes.len() / 2].to_vec();
    // A real MP4 header followed by noise.
    let mut corrupt = bytes[..32].to_vec();
    corrupt.extend((0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));

    let mut failed_ids = Vec::new();
    for body in [truncated, corrupt] {
        let response = app.submit_bytes(body, "video/mp4", "").await;
        assert_eq!(response.status(), 202);
        let doc: serde_json::Value = response.json().await.unwrap();
        failed_ids.push(doc["id"].as_str().unwrap().to_string());
    }
    for id in &failed_ids {
        let failed = sub.wait_for(&format!("job.failed.{id}"), JOB_TIMEOUT).await;
        assert_eq!(failed.body["type"], "video.transcode.failed");
        let doc = app.status(id).await;
        assert_eq!(doc["status"], "failed");
        assert_eq!(doc["error"]["code"], "invalid-media");
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(message.len() > 10, "message too thin: {message}");
        assert!(
            !message.contains("/tmp") && !message.contains(app.dir.path().to_str().unwrap()),
            "leaks a path: {message}"
        );
        let download = app.http.get(app.url(&format!("/video/download/{id}"))).send().await.unwrap();
        assert_eq!(download.status(), 404);
    }

    let id = app.submit(&clip, "").await;
    let done = sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    assert_eq!(done.body["data"]["status"], "done");
    app.stop().await;
}
