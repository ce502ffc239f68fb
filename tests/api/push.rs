//! Push channels besides AMQP: Server-Sent Events; and cancellation.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use crate::helpers::*;
use crate::procs::*;

/// Reads a whole SSE stream: (event name, data) pairs, until the server
/// closes it or `limit` passes.
async fn read_sse(app: &TestApp, id: &str, limit: Duration) -> (Vec<(String, Value)>, Duration) {
    let started = Instant::now();
    let response = app.http.get(app.url(&format!("/video/events/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut body = response.bytes_stream();
    let (mut buffer, mut events) = (String::new(), Vec::new());
    while let Ok(Some(chunk)) = tokio::time::timeout_at((started + limit).into(), body.next()).await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !data.is_empty() {
                events.push((name, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    (events, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_delivers_the_status_then_progress_then_completed_and_a_late_client_gets_the_final_status_at_once() {
    let app = spawn_app().await;
    let clip = Clip { seconds: 40, width: 1280, height: 720, audio: true }.make(app.dir.path(), "long.mp4");
    let id = app.submit(&clip, "").await;

    let (events, _) = read_sse(&app, &id, JOB_TIMEOUT).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"status"), "{names:?}");
    assert_eq!(names.last(), Some(&"completed"), "{names:?}");
    assert!(names.contains(&"progress"), "{names:?}");
    let percents: Vec<u64> =
        events.iter().filter(|(n, _)| n == "progress").map(|(_, d)| d["progress-percent"].as_u64().unwrap()).collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    assert!(percents.iter().all(|p| (1..100).contains(p)), "{percents:?}");
    assert_eq!(events.last().unwrap().1["status"], "done");

    let (late, took) = read_sse(&app, &id, Duration::from_secs(10)).await;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].0, "status");
    assert_eq!(late[0].1["status"], "done");
    assert!(took < Duration::from_secs(2), "the stream stayed open {took:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_queued_and_a_processing_job_stops_both_with_events_and_ffmpeg_gone_within_2_s() {
    let app = spawn_app_with(|s| s.worker.concurrency = 1).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let long = Clip { seconds: 40, width: 1280, height: 720, audio: true }.make(app.dir.path(), "long.mp4");
    let running = app.submit(&long, "").await;
    sub.wait_for(&format!("job.progress.{running}"), JOB_TIMEOUT).await;
    let queued = app.submit(&Clip::small(1).make(app.dir.path(), "s.mp4"), "").await;

    let r = app.http.delete(app.url(&format!("/video/status/{queued}"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "cancelled");
    sub.wait_for(&format!("job.cancelled.{queued}"), Duration::from_secs(10)).await;

    let scratch = app.settings.worker.scratch_dir.clone();
    assert!(!ffmpeg_under(&scratch).is_empty());
    let asked = Instant::now();
    let r = app.http.delete(app.url(&format!("/video/status/{running}"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_ffmpeg_gone(&scratch, Duration::from_secs(2)).await;
    println!("cancel: ffmpeg gone {} ms after DELETE", asked.elapsed().as_millis());
    let cancelled = sub.wait_for(&format!("job.cancelled.{running}"), Duration::from_secs(10)).await;
    assert_eq!(cancelled.body["data"]["status"], "cancelled");
    assert_eq!(app.status(&running).await["status"], "cancelled");
    assert_eq!(app.status(&queued).await["status"], "cancelled");
    assert!(app.keys(&format!("outputs/default/{running}")).await.is_empty());

    // The queued job's message reaches the worker now: it must not run.
    let probe_job = app.submit(&Clip::small(1).make(app.dir.path(), "p.mp4"), "").await;
    sub.wait_for(&format!("job.completed.{probe_job}"), JOB_TIMEOUT).await;
    assert!(!sub.keys().contains(&format!("job.started.{queued}")), "{:?}", sub.keys());

    let again = app.http.delete(app.url(&format!("/video/status/{running}"))).send().await.unwrap();
    assert_eq!(again.status(), 409);
    app.stop().await;
}
