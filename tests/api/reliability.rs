//! Nothing accepted is lost: killed workers, stalls, time limits, poison
//! jobs, drains, duplicate submissions, quorum queues.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::procs::*;

fn long_clip(app: &TestApp) -> std::path::PathBuf {
    Clip { seconds: 40, width: 1280, height: 720, audio: true }.make(app.dir.path(), "long.mp4")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_transcode_leaves_no_ffmpeg_and_a_second_worker_completes_the_job_once() {
    let app = spawn_api_with(|_| {}).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let clip = long_clip(&app);
    let (scratch1, scratch2) = (app.dir.path().join("w1"), app.dir.path().join("w2"));
    let mut w1 = spawn_worker(&app, &scratch1, &[]);

    let id = app.submit(&clip, "").await;
    sub.wait_for(&format!("job.progress.{id}"), JOB_TIMEOUT).await;
    assert!(!ffmpeg_under(&scratch1).is_empty(), "ffmpeg should be running");
    w1.kill9();
    assert_ffmpeg_gone(&scratch1, Duration::from_secs(5)).await;

    let _w2 = spawn_worker(&app, &scratch2, &[]);
    sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    // Late duplicates would arrive right behind; give them a moment's chance.
    while sub.next(Duration::from_millis(500)).await.is_some() {}
    let completions: Vec<_> = sub.seen.iter().filter(|e| e.routing_key == format!("job.completed.{id}")).collect();
    let distinct: HashSet<_> = completions.iter().map(|e| e.body["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(distinct.len(), 1, "{completions:?}");
    let doc = app.status(&id).await;
    assert_eq!(doc["status"], "done");
    assert!(doc["attempt"].as_u64().unwrap() >= 2);
    assert_ffmpeg_gone(&scratch2, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_worker_every_time_fails_after_max_attempts_and_the_next_job_completes() {
    let app = spawn_api_with(|s| s.worker.max_attempts = 3).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let poison = app.submit(&long_clip(&app), "").await;
    let next = app.submit(&Clip::small(1).make(app.dir.path(), "short.mp4"), "").await;

    let scratch = app.dir.path().join("scratch");
    let mut worker = spawn_worker(&app, &scratch, &[]);
    let mut kills = 0;
    let failed = loop {
        let e = sub.next(JOB_TIMEOUT).await.expect("events keep coming");
        if e.routing_key == format!("job.started.{poison}") {
            worker.kill9();
            kills += 1;
            assert!(kills <= 3, "the job was started more than max_attempts times");
            worker = spawn_worker(&app, &scratch, &[]);
        } else if e.routing_key == format!("job.failed.{poison}") {
            break e;
        }
    };
    assert_eq!(kills, 3);
    assert_eq!(failed.body["data"]["error"]["code"], "too-many-attempts");
    let doc = app.status(&poison).await;
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["attempt"], 3);
    sub.wait_for(&format!("job.completed.{next}"), JOB_TIMEOUT).await;
    assert_eq!(dead_letters(&app.prefix).await, 1);
    assert_ffmpeg_gone(&scratch, Duration::from_secs(5)).await;
    drop(worker);
}

async fn dead_letters(prefix: &str) -> u32 {
    let conn = lapin::Connection::connect(AMQP_URL, Default::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            format!("{prefix}.jobs.dead").as_str().into(),
            lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
            Default::default(),
        )
        .await
        .unwrap();
    q.message_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_ffmpeg_is_stopped_and_the_job_retried_to_completion() {
    let app = spawn_app_with(|s| s.worker.stall_seconds = 3).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let id = app.submit(&long_clip(&app), "").await;
    sub.wait_for(&format!("job.progress.{id}"), JOB_TIMEOUT).await;
    let scratch = app.settings.worker.scratch_dir.clone();
    let pids = ffmpeg_under(&scratch);
    assert!(!pids.is_empty());
    for pid in &pids {
        unsafe { libc::kill(*pid as i32, libc::SIGSTOP) };
    }
    let stopped_at = Instant::now();
    assert_ffmpeg_gone_pids(&pids, Duration::from_secs(15)).await;
    let detected = stopped_at.elapsed();
    assert!(detected >= Duration::from_secs(2), "stopped after only {detected:?}");
    sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    let doc = app.status(&id).await;
    assert_eq!(doc["status"], "done");
    assert!(doc["attempt"].as_u64().unwrap() >= 2);
    app.stop().await;
}

async fn assert_ffmpeg_gone_pids(pids: &[u32], limit: Duration) {
    let deadline = Instant::now() + limit;
    while pids.iter().any(|p| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| s.split_whitespace().nth(2) != Some("Z"))
    }) {
        assert!(Instant::now() < deadline, "stalled ffmpeg {pids:?} still there after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcode_past_the_wall_clock_limit_fails_with_timeout_and_leaves_no_ffmpeg() {
    let app = spawn_app_with(|s| s.worker.job_timeout_seconds = 2).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let id = app.submit(&long_clip(&app), "").await;
    let failed = sub.wait_for(&format!("job.failed.{id}"), JOB_TIMEOUT).await;
    assert_eq!(failed.body["data"]["error"]["code"], "timeout");
    assert_ffmpeg_gone(&app.settings.worker.scratch_dir, Duration::from_secs(2)).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_busy_worker_lets_the_job_finish_and_exits_0() {
    let app = spawn_api_with(|_| {}).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let clip = Clip { seconds: 12, width: 640, height: 360, audio: true }.make(app.dir.path(), "mid.mp4");
    let scratch = app.dir.path().join("scratch");
    let mut worker = spawn_worker(&app, &scratch, &[("TRANSCODER__WORKER__SHUTDOWN_GRACE_SECONDS", "60".into())]);
    let id = app.submit(&clip, "").await;
    sub.wait_for(&format!("job.started.{id}"), JOB_TIMEOUT).await;
    let status = worker.terminate(Duration::from_secs(60)).await;
    assert!(status.success(), "{status}");
    // The draining worker itself published the outcome before exiting.
    let done = sub.wait_for(&format!("job.completed.{id}"), Duration::from_secs(5)).await;
    assert_eq!(done.body["data"]["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_grace_period_requeues_the_job_for_another_worker() {
    let app = spawn_api_with(|_| {}).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let scratch = app.dir.path().join("scratch");
    let mut worker = spawn_worker(&app, &scratch, &[("TRANSCODER__WORKER__SHUTDOWN_GRACE_SECONDS", "1".into())]);
    let id = app.submit(&long_clip(&app), "").await;
    sub.wait_for(&format!("job.progress.{id}"), JOB_TIMEOUT).await;
    let status = worker.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
    assert_ffmpeg_gone(&scratch, Duration::from_secs(2)).await;
    assert_eq!(app.status(&id).await["status"], "queued");

    let _next = spawn_worker(&app, &app.dir.path().join("scratch2"), &[]);
    sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    assert_eq!(app.status(&id).await["attempt"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_returns_the_first_job_and_rejects_another_request() {
    let app = spawn_app().await;
    let clip = std::fs::read(Clip::small(1).make(app.dir.path(), "a.mp4")).unwrap();
    let post = |body: Vec<u8>, key: &str, query: &str| {
        app.http
            .post(app.url(&format!("/video/convert{query}")))
            .header("Content-Type", "video/mp4")
            .header("Idempotency-Key", key)
            .body(body)
            .send()
    };
    let first = post(clip.clone(), "order-42", "?height=120").await.unwrap();
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let again = post(clip.clone(), "order-42", "?height=120").await.unwrap();
    assert_eq!(again.status(), 202);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    assert_eq!(app.keys("jobs/").await.len(), 1, "{:?}", app.keys("").await);

    let mut other = clip.clone();
    other.extend_from_slice(b"different");
    let r = post(other, "order-42", "?height=120").await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "idempotency-key-mismatch");
    let r = post(clip.clone(), "order-42", "?height=240").await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(app.keys("jobs/").await.len(), 1);
    assert_eq!(app.keys("inputs/").await.len(), 1);

    // Without a key, the same request is a second job.
    let plain = app.submit_bytes(clip, "video/mp4", "?height=120").await;
    assert_eq!(plain.status(), 202);
    assert_eq!(app.keys("jobs/").await.len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_whose_first_request_is_still_uploading_gets_409() {
    let app = spawn_app().await;
    let clip = std::fs::read(Clip::small(1).make(app.dir.path(), "a.mp4")).unwrap();
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    tx.unbounded_send(Ok(clip[..1000].to_vec())).unwrap();
    let slow = app
        .http
        .post(app.url("/video/convert"))
        .header("Content-Type", "video/mp4")
        .header("Idempotency-Key", "upload-1")
        .body(reqwest::Body::wrap_stream(rx))
        .send();
    let slow = tokio::spawn(slow);
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.keys("idempotency/").await.is_empty() {
        assert!(Instant::now() < deadline, "the first request never claimed its key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = app
        .http
        .post(app.url("/video/convert"))
        .header("Content-Type", "video/mp4")
        .header("Idempotency-Key", "upload-1")
        .body(clip.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 409);

    tx.unbounded_send(Ok(clip[1000..].to_vec())).unwrap();
    drop(tx);
    let first = slow.await.unwrap().unwrap();
    assert_eq!(first.status(), 202);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_job_queues_carry_jobs_to_completion() {
    let app = spawn_app_with(|s| s.amqp.queue_type = transcoder::config::QueueType::Quorum).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "job.completed.*").await;
    let id = app.submit(&Clip::small(1).make(app.dir.path(), "a.mp4"), "").await;
    sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    assert_eq!(app.status(&id).await["status"], "done");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_twenty_jobs_while_workers_are_killed_and_restarted_every_few_seconds() {
    let app = spawn_api_with(|s| s.worker.max_attempts = 10).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "job.completed.*").await;
    let clip = Clip { seconds: 6, width: 640, height: 360, audio: true }.make(app.dir.path(), "c.mp4");
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(app.submit(&clip, "").await);
    }
    let scratch = app.dir.path().join("scratch");
    let mut workers = [spawn_worker(&app, &scratch, &[]), spawn_worker(&app, &scratch, &[])];
    let started = Instant::now();
    let mut next_kill = Instant::now() + Duration::from_secs(2);
    let (mut kills, mut completions) = (0, Vec::new());
    let mut done: HashSet<String> = HashSet::new();
    while done.len() < ids.len() {
        assert!(started.elapsed() < Duration::from_secs(400), "only {} of 20 done", done.len());
        if let Some(e) = sub.next(Duration::from_millis(200)).await {
            completions.push(e.body["id"].as_str().unwrap().to_string());
            done.insert(e.body["subject"].as_str().unwrap().to_string());
        }
        if Instant::now() >= next_kill {
            let victim = kills % 2;
            workers[victim].kill9();
            workers[victim] = spawn_worker(&app, &scratch, &[]);
            kills += 1;
            next_kill = Instant::now() + Duration::from_secs(2);
        }
    }
    let distinct: HashSet<_> = completions.iter().collect();
    let mut attempts = 0;
    for id in &ids {
        let doc = app.status(id).await;
        assert_eq!(doc["status"], "done", "{id}");
        attempts += doc["attempt"].as_u64().unwrap();
    }
    drop(workers);
    assert_ffmpeg_gone(&scratch, Duration::from_secs(5)).await;
    assert_eq!(distinct.len(), 20);
    assert!(kills >= 3, "only {kills} kills: the soak ended before it tested much");
    println!(
        "soak: 20/20 done in {:.1} s, {kills} worker kills, {attempts} attempts in all, {} completion events ({} distinct ids), 0 orphan ffmpeg",
        started.elapsed().as_secs_f64(),
        completions.len(),
        distinct.len()
    );
}
