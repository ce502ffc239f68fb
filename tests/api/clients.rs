//! The push clients: `transcoder submit --wait`, `transcoder watch`, the
//! pika example; the ETA; metrics.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::*;
use crate::procs::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_downloads_the_result_driven_by_events_without_polling_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("cli");
    let (_serve, address) = spawn_serve(dir.path(), &prefix, &[]).await;
    let clip = Clip::small(3).make(dir.path(), "clip.mp4");
    let out = dir.path().join("out.mp4");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .args(["submit", clip.to_str().unwrap(), "--height", "120", "--wait", "-o", out.to_str().unwrap()])
        .args(["--server", &address])
        .env("TRANSCODER__AMQP__PREFIX", &prefix)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "submit failed: {stderr}");
    let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert!(stderr.contains("saved"), "{stderr}");
    let probed = probe(&out);
    assert_eq!(stream(&probed, "video").unwrap()["codec_name"], "h264");
    assert_eq!(stream(&probed, "video").unwrap()["height"], 120);

    let metrics = http_client().get(format!("{address}/metrics")).send().await.unwrap().text().await.unwrap();
    let status_requests = metric(&metrics, "transcoder_http_requests_total", "route=\"/video/status/{id}\"");
    assert_eq!(status_requests, 0.0, "the client polled the status");
    // submit uploads resumably: one creation POST, PATCHes after it.
    assert_eq!(metric(&metrics, "transcoder_http_requests_total", "route=\"/video/uploads\""), 1.0);
    assert_eq!(metric(&metrics, "transcoder_http_requests_total", "route=\"/video/convert\""), 0.0);
    assert_eq!(metric(&metrics, "transcoder_http_requests_total", "route=\"/video/download/{id}\""), 1.0);
    assert_eq!(metric(&metrics, "transcoder_jobs_submitted_total", "format=\"mp4\""), 1.0);
    assert_eq!(metric(&metrics, "transcoder_jobs_completed_total", "format=\"mp4\""), 1.0);
    assert!(metrics.contains("transcoder_job_duration_seconds_bucket"));
    assert!(metrics.contains("transcoder_queue_wait_seconds_count"));
    assert!(metrics.contains("transcoder_queue_depth 0"));
    assert!(metric(&metrics, "transcoder_upload_bytes_total", "") >= std::fs::metadata(&clip).unwrap().len() as f64);

    // A job that fails: a non-zero exit with a one-line reason.
    let mut broken = std::fs::read(&clip).unwrap();
    broken.truncate(broken.len() / 2);
    let bad = dir.path().join("bad.mp4");
    std::fs::write(&bad, broken).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .args(["submit", bad.to_str().unwrap(), "--wait", "--server", &address])
        .env("TRANSCODER__AMQP__PREFIX", &prefix)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or("");
    assert!(last.starts_with("transcoder: job") && last.contains("failed"), "{stderr}");

    // No service: non-zero, one line.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .args(["submit", clip.to_str().unwrap(), "--server", "http://127.0.0.1:9"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach the service"));
    delete_topology(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_one_jobs_events_as_json_lines_and_the_pika_example_receives_the_completion() {
    let app = spawn_app().await;
    let clip = Clip::small(2).make(app.dir.path(), "clip.mp4");

    let python = std::env::var("TRANSCODER_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/target/pyenv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let mut pika = tokio::process::Command::new(&python)
        .arg(format!("{}/examples/subscriber.py", env!("CARGO_MANIFEST_DIR")))
        .args(["--prefix", &app.prefix, "--count", "1", "--timeout", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python with pika (./scripts/test.sh installs it)");
    let mut ready = BufReader::new(pika.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), ready.next_line()).await.unwrap().unwrap().unwrap();
    assert!(line.starts_with("subscribed"), "{line}");

    let id = app.submit(&clip, "").await;
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .args(["watch", &id])
        .env("TRANSCODER__AMQP__PREFIX", &app.prefix)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let watched = tokio::time::timeout(JOB_TIMEOUT, async {
        let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        while let Some(l) = lines.next_line().await.unwrap() {
            seen.push(serde_json::from_str::<serde_json::Value>(&l).unwrap());
        }
        (seen, watch.wait().await.unwrap())
    })
    .await
    .expect("watch ends after the terminal event");
    // watch subscribed after the submission, so it may have missed `started`,
    // but it sees the end and exits 0.
    assert!(watched.1.success());
    let last = watched.0.last().expect("at least the completion");
    assert_eq!(last["type"], "video.transcode.completed");
    assert_eq!(last["subject"], id);

    let out = tokio::time::timeout(JOB_TIMEOUT, pika.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(line["type"], "video.transcode.completed");
    assert_eq!(line["subject"], id);
    assert_eq!(line["status"], "done");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eta_of_a_job_behind_others_is_within_a_factor_of_2_of_its_actual_completion() {
    let app = spawn_app_with(|s| s.worker.concurrency = 1).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "job.completed.*").await;
    let clip = Clip { seconds: 10, width: 640, height: 360, audio: true }.make(app.dir.path(), "c.mp4");
    // One job first, so the service has seen how long such a job takes.
    let warmup = app.submit(&clip, "").await;
    sub.wait_for(&format!("job.completed.{warmup}"), JOB_TIMEOUT).await;

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.submit(&clip, "").await);
    }
    let last = ids.last().unwrap().clone();
    let asked = chrono::Utc::now();
    let doc = app.status(&last).await;
    assert_eq!(doc["status"], "queued");
    let eta: chrono::DateTime<chrono::Utc> =
        doc["estimated-completion-utc-time"].as_str().expect("an estimate").parse().unwrap();
    for id in &ids {
        sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    }
    let actual: chrono::DateTime<chrono::Utc> =
        app.status(&last).await["completed-utc-time"].as_str().unwrap().parse().unwrap();
    let predicted = (eta - asked).num_milliseconds() as f64 / 1000.0;
    let took = (actual - asked).num_milliseconds() as f64 / 1000.0;
    println!("eta: job behind 4 others predicted {predicted:.1} s, took {took:.1} s (ratio {:.2})", predicted / took);
    assert!(predicted / took >= 0.5 && predicted / took <= 2.0, "predicted {predicted:.1} s, took {took:.1} s");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_job_is_404_everywhere_and_no_key_is_401() {
    let app = spawn_app_with(|s| {
        s.auth.keys.insert("key-alpha".into(), "alpha".into());
        s.auth.keys.insert("key-beta".into(), "beta".into());
    })
    .await;
    let clip = std::fs::read(Clip::small(1).make(app.dir.path(), "c.mp4")).unwrap();
    // Refused requests get a tiny body: a 401 may come back before a large
    // body is sent, and then the connection closes under the sender.
    let post = |key: Option<&str>| {
        let body = if key == Some("key-alpha") { clip.clone() } else { b"x".to_vec() };
        let mut r = app.http.post(app.url("/video/convert")).header("Content-Type", "video/mp4").body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let r = post(None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "unauthorized");
    assert_eq!(post(Some("key-gamma")).await.unwrap().status(), 401);
    let r = post(Some("key-alpha")).await.unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(app.keys("jobs/alpha/").await.len(), 1);

    let mut checked = 0;
    for (method, path) in [
        ("GET", format!("/video/status/{id}")),
        ("GET", format!("/video/download/{id}")),
        ("DELETE", format!("/video/status/{id}")),
        ("GET", format!("/video/events/{id}")),
    ] {
        let req = |key: Option<&str>| {
            let mut r = app.http.request(method.parse().unwrap(), app.url(&path));
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            r.send()
        };
        assert_eq!(req(Some("key-beta")).await.unwrap().status(), 404, "{method} {path} as beta");
        assert_eq!(req(None).await.unwrap().status(), 401, "{method} {path} without a key");
        checked += 2;
    }
    let own = app.http.get(app.url(&format!("/video/status/{id}"))).bearer_auth("key-alpha").send().await.unwrap();
    assert_eq!(own.status(), 200);
    // The browser form of the key, for EventSource.
    let sse = app.http.get(app.url(&format!("/video/events/{id}?api_key=key-beta"))).send().await.unwrap();
    assert_eq!(sse.status(), 404);
    println!("tenant matrix: {} refusals checked, owner still served", checked + 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioned_client_user_reads_only_its_own_events() {
    use lapin::options::*;
    use lapin::types::FieldTable;
    let app = spawn_app_with(|s| {
        s.auth.keys.insert("key-alpha".into(), "alpha".into());
        s.auth.keys.insert("key-beta".into(), "beta".into());
    })
    .await;
    let urls = transcoder::provision::provision(&app.settings, "rabbitmqctl").expect("rabbitmqctl provisions users");
    let url = |c: &str| urls.iter().find(|(id, _)| id.as_str() == c).unwrap().1.clone();
    let p = &app.prefix;
    let connect = |u: String| async move { lapin::Connection::connect(&u, Default::default()).await.unwrap() };
    let (alpha, beta) = (connect(url("alpha")).await, connect(url("beta")).await);
    let refused = |e: lapin::Error| e.to_string().contains("ACCESS_REFUSED");

    // alpha: its own queue, bound to its own exchange.
    let a = alpha.create_channel().await.unwrap();
    let aq = format!("{p}.client.alpha.inbox");
    a.queue_declare(aq.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    a.queue_bind(
        aq.as_str().into(),
        format!("{p}.notify.alpha").as_str().into(),
        "#".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    // beta may declare its own queue, but not bind it to alpha's exchange…
    let b = beta.create_channel().await.unwrap();
    let bq = format!("{p}.client.beta.spy");
    b.queue_declare(
        bq.as_str().into(),
        QueueDeclareOptions { auto_delete: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let e = b
        .queue_bind(
            bq.as_str().into(),
            format!("{p}.notify.alpha").as_str().into(),
            "#".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert!(refused(e), "beta bound to alpha's exchange");
    // …nor consume alpha's queue, nor declare a queue outside its names.
    let b = beta.create_channel().await.unwrap();
    let e =
        b.basic_consume(aq.as_str().into(), "".into(), Default::default(), FieldTable::default()).await.unwrap_err();
    assert!(refused(e), "beta consumed alpha's queue");
    let b = beta.create_channel().await.unwrap();
    let e = b.queue_declare("anything".into(), Default::default(), FieldTable::default()).await.unwrap_err();
    assert!(refused(e), "beta declared a queue outside its names");

    // alpha receives its own events through its own queue.
    let id = {
        let r = app
            .http
            .post(app.url("/video/convert"))
            .bearer_auth("key-alpha")
            .header("Content-Type", "video/mp4")
            .body(std::fs::read(Clip::small(1).make(app.dir.path(), "c.mp4")).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string()
    };
    let mut consumer = a
        .basic_consume(
            aq.as_str().into(),
            "".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        use futures::StreamExt;
        let left = deadline.saturating_duration_since(Instant::now());
        let d = tokio::time::timeout(left, consumer.next()).await.expect("alpha's completion").unwrap().unwrap();
        if d.routing_key.as_str() == format!("job.completed.{id}") {
            break;
        }
    }
    let _ = a.queue_delete(aq.as_str().into(), Default::default()).await;
    for (client, _) in &urls {
        let _ =
            Command::new("rabbitmqctl").args(["delete_user", &transcoder::provision::user_name(p, client)]).output();
    }
    app.stop().await;
}
