//! One worker, several jobs: queueing, progress, priorities.

use crate::helpers::*;

/// A clip that keeps a worker busy for several seconds.
fn long_clip(app: &TestApp) -> std::path::PathBuf {
    Clip { seconds: 40, width: 1280, height: 720, audio: true }.make(app.dir.path(), "long.mp4")
}

#[tokio::test]
async fn while_a_long_job_holds_the_only_worker_the_next_is_queued_and_progress_shows() {
    let app = spawn_app_with(|s| s.worker.concurrency = 1).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let long = long_clip(&app);
    let short = Clip::small(1).make(app.dir.path(), "short.mp4");

    let first = app.submit(&long, "").await;
    sub.wait_for(&format!("job.started.{first}"), JOB_TIMEOUT).await;
    let second = app.submit(&short, "").await;

    let queued = app.http.get(app.url(&format!("/video/status/{second}"))).send().await.unwrap();
    assert_eq!(queued.status(), 200);
    assert!(queued.headers().contains_key("retry-after"));
    let doc: serde_json::Value = queued.json().await.unwrap();
    assert_eq!(doc["status"], "queued");
    assert_eq!(doc["progress-percent"], 0);

    let download = app.http.get(app.url(&format!("/video/download/{second}"))).send().await.unwrap();
    assert_eq!(download.status(), 404);
    assert_eq!(download.headers()["link"].to_str().unwrap(), format!("</video/status/{second}>; rel=\"monitor\""));
    let problem: serde_json::Value = download.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("queued"), "{problem}");

    // Progress events arrive while the first job runs, and the status
    // document shows the same intermediate values.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = loop {
            let e = sub.next(JOB_TIMEOUT).await.expect("progress events");
            if e.routing_key == format!("job.progress.{first}") {
                break e;
            }
            assert_ne!(e.routing_key, format!("job.completed.{first}"), "finished before two progress reports");
        };
        let p = event.body["data"]["progress-percent"].as_u64().unwrap();
        let doc = app.status(&first).await;
        let now = doc["progress-percent"].as_u64().unwrap();
        assert_eq!(doc["status"], "processing");
        assert!((1..100).contains(&now) && now >= p, "status shows {now} after event {p}");
        seen.push(now);
    }
    assert!(seen[1] > seen[0], "progress did not advance: {seen:?}");
    sub.wait_for(&format!("job.completed.{first}"), JOB_TIMEOUT).await;
    sub.wait_for(&format!("job.completed.{second}"), JOB_TIMEOUT).await;
    assert_eq!(app.status(&first).await["progress-percent"], 100);
    app.stop().await;
}

#[tokio::test]
async fn with_the_only_worker_busy_a_priority_9_job_submitted_later_completes_before_a_priority_1_job() {
    let app = spawn_app_with(|s| s.worker.concurrency = 1).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "job.*.*").await;
    let long = long_clip(&app);
    let short = Clip::small(1).make(app.dir.path(), "short.mp4");

    let blocker = app.submit(&long, "?priority=5").await;
    sub.wait_for(&format!("job.started.{blocker}"), JOB_TIMEOUT).await;
    let low = app.submit(&short, "?priority=1").await;
    let high = app.submit(&short, "?priority=9").await;

    sub.wait_for(&format!("job.completed.{low}"), JOB_TIMEOUT * 2).await;
    let order = sub.keys();
    let at = |key: String| order.iter().position(|k| *k == key);
    let high_done = at(format!("job.completed.{high}")).expect("the priority-9 job completed first");
    let low_done = at(format!("job.completed.{low}")).unwrap();
    assert!(high_done < low_done, "order: {order:?}");
    assert!(at(format!("job.completed.{blocker}")).unwrap() < high_done);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_only_worker_busy_one_clients_backlog_of_twenty_does_not_hold_back_another_clients_job() {
    let app = spawn_app_with(|s| {
        s.worker.concurrency = 1;
        s.auth.keys.insert("key-alpha".into(), "alpha".into());
        s.auth.keys.insert("key-beta".into(), "beta".into());
    })
    .await;
    let mut alpha_events = Subscriber::bind(&app.prefix, "alpha", "job.*.*").await;
    let long = std::fs::read(long_clip(&app)).unwrap();
    let short = std::fs::read(Clip::small(1).make(app.dir.path(), "short.mp4")).unwrap();
    let submit = |key: &'static str, body: Vec<u8>| {
        let request = app.http.post(app.url("/video/convert")).bearer_auth(key).header("Content-Type", "video/mp4");
        async move {
            let response = request.body(body).send().await.unwrap();
            assert_eq!(response.status(), 202);
            response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string()
        }
    };
    let blocker = submit("key-alpha", long).await;
    alpha_events.wait_for(&format!("job.started.{blocker}"), JOB_TIMEOUT).await;
    let mut backlog = Vec::new();
    for _ in 0..20 {
        backlog.push(submit("key-alpha", short.clone()).await);
    }
    let mut beta_events = Subscriber::bind(&app.prefix, "beta", "job.completed.*").await;
    let beta = submit("key-beta", short.clone()).await;
    beta_events.wait_for(&format!("job.completed.{beta}"), JOB_TIMEOUT * 2).await;
    for id in &backlog {
        alpha_events.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    }
    let completed = |key: &'static str, id: String| {
        let request = app.http.get(app.url(&format!("/video/status/{id}"))).bearer_auth(key);
        async move {
            let doc: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            chrono::DateTime::parse_from_rfc3339(doc["completed-utc-time"].as_str().unwrap()).unwrap()
        }
    };
    let beta_at = completed("key-beta", beta.clone()).await;
    let mut after = 0;
    for id in &backlog {
        if completed("key-alpha", id.clone()).await > beta_at {
            after += 1;
        }
    }
    eprintln!("fair share: the other client's job completed before {after} of the 20 backlog jobs");
    assert!(after >= 17, "beta's job completed before only {after} of alpha's 20");
    app.stop().await;
}
