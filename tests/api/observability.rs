//! One job followed across processes: the API's and the worker's JSON log
//! lines carry its id and the request's W3C trace id.

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use transcoder::embedded_s3::{EmbeddedStore, DEV_ACCESS_KEY, DEV_SECRET_KEY};

use crate::helpers::*;
use crate::procs::Proc;

fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Lines whose text (fields and span fields) mentions every needle.
fn mentioning<'a>(lines: &'a [serde_json::Value], needles: &[&str]) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| needles.iter().all(|n| l.to_string().contains(n))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_id_and_trace_id_appear_in_both_the_api_and_the_worker_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::start(&dir.path().join("store"), 0, DEV_ACCESS_KEY, DEV_SECRET_KEY, CancellationToken::new())
            .await
            .unwrap();
    let prefix = unique("obs");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spawn = |role: &str| {
        let log = std::fs::File::create(dir.path().join(format!("{role}.log"))).unwrap();
        Proc {
            child: Command::new(env!("CARGO_BIN_EXE_transcoder"))
                .args([role, "--log-format", "json"])
                .env("RUST_LOG", "info")
                .env("TRANSCODER__AMQP__PREFIX", &prefix)
                .env("TRANSCODER__HTTP__BIND", format!("127.0.0.1:{port}"))
                .env("TRANSCODER__STORAGE__ENDPOINT", store.endpoint())
                .env("TRANSCODER__STORAGE__ACCESS_KEY", DEV_ACCESS_KEY)
                .env("TRANSCODER__STORAGE__SECRET_KEY", DEV_SECRET_KEY)
                .env("TRANSCODER__WORKER__SCRATCH_DIR", dir.path().join("scratch"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        }
    };
    let mut api = spawn("api");
    let mut worker = spawn("worker");
    let address = format!("http://127.0.0.1:{port}");
    let http = http_client();
    crate::procs::wait_ready(&address).await;
    let mut sub = Subscriber::bind(&prefix, "default", "job.completed.*").await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = http
        .post(format!("{address}/video/convert"))
        .header("Content-Type", "video/mp4")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .body(std::fs::read(Clip::small(1).make(dir.path(), "c.mp4")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    assert!(api.terminate(Duration::from_secs(20)).await.success());
    assert!(worker.terminate(Duration::from_secs(20)).await.success());

    let api_lines = json_lines(&dir.path().join("api.log"));
    let worker_lines = json_lines(&dir.path().join("worker.log"));
    let in_api = mentioning(&api_lines, &[&id, trace_id]);
    let in_worker = mentioning(&worker_lines, &[&id, trace_id]);
    assert!(!in_api.is_empty(), "no API line with job and trace: {api_lines:?}");
    assert!(!in_worker.is_empty(), "no worker line with job and trace: {worker_lines:?}");
    assert!(in_worker.iter().any(|l| l.to_string().contains("job finished")));
    println!(
        "logs: {} API and {} worker JSON lines carry job {id} and trace {trace_id}",
        in_api.len(),
        in_worker.len()
    );
    delete_topology(&prefix);
}

/// With `RUST_LOG` at `debug` and at `trace`, a key sent in the
/// `Authorization` header and as `?api_key=`, and a playback token, appear in
/// no log line, while the requests themselves are logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_api_key_reaches_the_log_at_debug_or_trace() {
    for level in ["debug", "trace"] {
        let dir = tempfile::tempdir().unwrap();
        let key = format!("key-{}", unique("secret"));
        let config = dir.path().join("keys.toml");
        std::fs::write(&config, format!("[auth.keys]\n\"{key}\" = \"alpha\"\n")).unwrap();
        let prefix = unique("redact");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log_path = dir.path().join("serve.log");
        let mut serve = Proc {
            child: Command::new(env!("CARGO_BIN_EXE_transcoder"))
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", level)
                .env("TRANSCODER__AMQP__PREFIX", &prefix)
                .env("TRANSCODER__HTTP__BIND", format!("127.0.0.1:{port}"))
                .env("TRANSCODER__STORAGE__DATA_DIR", dir.path().join("store"))
                .env("TRANSCODER__WORKER__SCRATCH_DIR", dir.path().join("scratch"))
                .stdout(std::fs::File::create(dir.path().join("serve.out")).unwrap())
                .stderr(std::fs::File::create(&log_path).unwrap())
                .spawn()
                .unwrap(),
        };
        let address = format!("http://127.0.0.1:{port}");
        let http = http_client();
        crate::procs::wait_ready(&address).await;
        let mut sub = Subscriber::bind(&prefix, "alpha", "job.completed.*").await;
        let response = http
            .post(format!("{address}/video/convert"))
            .header("Content-Type", "video/mp4")
            .header("Authorization", format!("Bearer {key}"))
            .body(std::fs::read(Clip::small(1).make(dir.path(), "c.mp4")).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let id = response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string();
        sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
        let download = http.get(format!("{address}/video/download/{id}?api_key={key}")).send().await.unwrap();
        assert_eq!(download.status(), 200);
        let _ = download.bytes().await.unwrap();
        let events = http.get(format!("{address}/video/events/{id}?api_key={key}")).send().await.unwrap();
        assert_eq!(events.status(), 200);
        drop(events);
        let status = http.get(format!("{address}/video/status/{id}")).bearer_auth(&key).send().await.unwrap();
        let poster = status.json::<serde_json::Value>().await.unwrap()["links"]["poster"].as_str().unwrap().to_string();
        let token = poster.strip_prefix("/video/play/").unwrap().split('/').next().unwrap().to_string();
        let played = http.get(format!("{address}{poster}")).send().await.unwrap();
        assert_eq!(played.status(), 200);
        let _ = played.bytes().await.unwrap();
        assert!(serve.terminate(Duration::from_secs(20)).await.success());

        let log = std::fs::read_to_string(&log_path).unwrap()
            + &std::fs::read_to_string(dir.path().join("serve.out")).unwrap();
        // The requests were logged (so the check below means something) …
        assert!(log.contains(&format!("/video/download/{id}?api_key=REDACTED")), "{level}: download not logged");
        assert!(log.contains("/video/play/REDACTED/poster.jpg"), "{level}: playback not logged");
        // … and neither the key in any of its forms nor the token.
        let hits = log.matches(&key).count();
        assert_eq!(hits, 0, "{level}: the key appears {hits} times in the log");
        let (payload, signature) = token.split_once('.').unwrap();
        for part in [&token, payload, signature] {
            let hits = log.matches(part).count();
            assert_eq!(hits, 0, "{level}: the playback token appears {hits} times in the log");
        }
        println!("RUST_LOG={level}: {} log lines, neither the key nor the playback token in any", log.lines().count());
        delete_topology(&prefix);
    }
}
