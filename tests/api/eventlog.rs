//! The per-client event log: a subscriber that was away replays what it
//! missed, in order, from the stream `<prefix>.notify.<client>.log`.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::*;

/// Waits for the job's status to be `done` (nobody listens to its events).
async fn until_done(app: &TestApp, key: Option<&str>, id: &str) {
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        let mut request = app.http.get(app.url(&format!("/video/status/{id}")));
        if let Some(k) = key {
            request = request.bearer_auth(k);
        }
        let doc: Value = request.send().await.unwrap().json().await.unwrap();
        match doc["status"].as_str() {
            Some("done") => return,
            Some("failed" | "cancelled") => panic!("job {id} ended {doc}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "job {id} not done in time: {doc}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn submit(app: &TestApp, key: Option<&str>, body: Vec<u8>) -> String {
    let mut request = app.http.post(app.url("/video/convert")).header("Content-Type", "video/mp4").body(body);
    if let Some(k) = key {
        request = request.bearer_auth(k);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

/// Each job's started and completed events appear, started first, with the
/// CloudEvents fields.
fn assert_started_then_completed(events: &[Value], jobs: &[String]) {
    let mut position: HashMap<(String, String), usize> = HashMap::new();
    for (n, e) in events.iter().enumerate() {
        for field in ["specversion", "id", "source", "type", "time", "subject"] {
            assert!(e[field].is_string(), "{field} missing: {e}");
        }
        assert_eq!(e["specversion"], "1.0");
        let kind = e["type"].as_str().unwrap().rsplit('.').next().unwrap().to_string();
        position.entry((e["subject"].as_str().unwrap().to_string(), kind)).or_insert(n);
    }
    for id in jobs {
        let started = position.get(&(id.clone(), "started".into())).unwrap_or_else(|| panic!("no started for {id}"));
        let completed =
            position.get(&(id.clone(), "completed".into())).unwrap_or_else(|| panic!("no completed for {id}"));
        assert!(started < completed, "{id}: completed before started");
    }
    let times: Vec<&str> = events.iter().map(|e| e["time"].as_str().unwrap()).collect();
    let parsed: Vec<_> = times.iter().map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap()).collect();
    assert!(parsed.windows(2).all(|w| w[0] <= w[1]), "events out of order: {times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nobody_listening_three_jobs_are_replayed_in_order_from_the_log_and_only_by_their_client() {
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};
    use lapin::types::{AMQPValue, FieldTable};
    let app = spawn_app_with(|s| {
        s.auth.keys.insert("key-alpha".into(), "alpha".into());
        s.auth.keys.insert("key-beta".into(), "beta".into());
    })
    .await;
    let clip = std::fs::read(Clip::small(1).make(app.dir.path(), "c.mp4")).unwrap();
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(submit(&app, Some("key-alpha"), clip.clone()).await);
    }
    for id in &jobs {
        until_done(&app, Some("key-alpha"), id).await;
    }

    let urls = transcoder::provision::provision(&app.settings, "rabbitmqctl").expect("rabbitmqctl provisions users");
    let url = |c: &str| urls.iter().find(|(id, _)| id.as_str() == c).unwrap().1.clone();
    // pika, as alpha's own broker user, from the first offset.
    let python = std::env::var("TRANSCODER_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/target/pyenv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let replay = tokio::process::Command::new(&python)
        .arg(format!("{}/examples/replay.py", env!("CARGO_MANIFEST_DIR")))
        .args(["--prefix", &app.prefix, "--client", "alpha", "--offset", "first", "--completed", "3"])
        .args(["--timeout", "60"])
        .env("AMQP_URL", url("alpha"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(JOB_TIMEOUT, replay).await.unwrap().expect("python with pika");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events: Vec<Value> = lines.iter().map(|l| l["event"].clone()).collect();
    assert_started_then_completed(&events, &jobs);
    let offsets: Vec<u64> = lines.iter().map(|l| l["offset"].as_u64().expect("x-stream-offset")).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets {offsets:?}");
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "an event twice");
    println!("replayed {} events of 3 jobs from {}.notify.alpha.log", events.len(), app.prefix);

    // beta's user may not read alpha's log.
    let beta = lapin::Connection::connect(&url("beta"), Default::default()).await.unwrap();
    let ch = beta.create_channel().await.unwrap();
    ch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), AMQPValue::LongString("first".into()));
    let log = format!("{}.notify.alpha.log", app.prefix);
    let refused = ch.basic_consume(log.as_str().into(), "".into(), BasicConsumeOptions::default(), args).await;
    let error = refused.expect_err("beta read alpha's log").to_string();
    assert!(error.contains("ACCESS_REFUSED"), "{error}");
    for (client, _) in &urls {
        let user = transcoder::provision::user_name(&app.prefix, client);
        let _ = std::process::Command::new("rabbitmqctl").args(["delete_user", &user]).output();
    }
    app.stop().await;
}

/// Reads `watch`'s lines into `events` until the job's completion is among them.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    events: &mut Vec<Value>,
    id: &str,
) {
    while !events.iter().any(|e| e["subject"] == id && e["type"] == "video.transcode.completed") {
        let line = lines.next_line().await.unwrap().expect("watch keeps running");
        events.push(serde_json::from_str(&line).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_since_replays_the_missed_jobs_then_follows_a_new_one_printing_each_event_once() {
    let app = spawn_app().await;
    let clip = std::fs::read(Clip::small(1).make(app.dir.path(), "c.mp4")).unwrap();
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(submit(&app, None, clip.clone()).await);
    }
    for id in &jobs {
        until_done(&app, None, id).await;
    }
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .args(["watch", "--since", "10m"])
        .env("TRANSCODER__AMQP__PREFIX", &app.prefix)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut events: Vec<Value> = Vec::new();
    for id in &jobs {
        tokio::time::timeout(JOB_TIMEOUT, read_until(&mut lines, &mut events, id))
            .await
            .expect("the missed jobs replayed");
    }
    let replayed = events.len();
    let fourth = submit(&app, None, clip.clone()).await;
    tokio::time::timeout(JOB_TIMEOUT, read_until(&mut lines, &mut events, &fourth))
        .await
        .expect("the new job followed");
    let _ = watch.kill().await;

    jobs.push(fourth);
    assert_started_then_completed(&events, &jobs);
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "an event printed twice");
    println!("watch --since 10m: {replayed} events replayed, {} followed live", events.len() - replayed);
    app.stop().await;
}
