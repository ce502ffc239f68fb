//! A broker restart (`rabbitmqctl stop_app` / `start_app`) while jobs are
//! queued and one is running. It stops the shared broker, so it is a test
//! binary of its own: cargo runs test binaries one at a time.

#[path = "api/helpers.rs"]
mod helpers;

use std::process::Command;
use std::time::{Duration, Instant};

use helpers::*;

fn rabbitmqctl(action: &str) {
    let status = Command::new("rabbitmqctl").arg(action).status().expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {action} failed");
}

/// Starts the broker again even when an assertion fails.
struct BrokerDown;

impl BrokerDown {
    fn stop() -> BrokerDown {
        rabbitmqctl("stop_app");
        BrokerDown
    }
}

impl Drop for BrokerDown {
    fn drop(&mut self) {
        rabbitmqctl("start_app");
        let _ = Command::new("rabbitmqctl").args(["await_startup", "--timeout", "60"]).status();
    }
}

#[tokio::test]
async fn jobs_accepted_before_a_broker_restart_all_complete_and_submissions_during_it_fail_fast_with_503() {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let long = Clip { seconds: 20, width: 1280, height: 720, audio: true }.make(app.dir.path(), "long.mp4");
    let short = Clip::small(1).make(app.dir.path(), "short.mp4");
    let mut accepted = vec![app.submit(&long, "").await];
    sub.wait_for(&format!("job.progress.{}", accepted[0]), JOB_TIMEOUT).await;
    for _ in 0..10 {
        accepted.push(app.submit(&short, "").await);
    }

    let outage = BrokerDown::stop();
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let t = Instant::now();
        let r = app.submit_bytes(std::fs::read(&short).unwrap(), "video/mp4", "").await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "service-unavailable");
    }
    assert!(slowest < Duration::from_secs(5), "a 503 took {slowest:?}");
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // Refused submissions leave nothing behind: only the accepted jobs exist.
    assert_eq!(app.keys("jobs/").await.len(), accepted.len());
    assert_eq!(app.keys("inputs/").await.len(), accepted.len());
    drop(outage);

    let back = Instant::now();
    loop {
        let r = app.submit_bytes(std::fs::read(&short).unwrap(), "video/mp4", "").await;
        if r.status() == 202 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(30), "no 202 within 30 s of the broker's return");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let first_202 = back.elapsed();

    // Subscribers lost their queues with the broker; the status documents
    // are the record.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut pending = 0;
        for id in &accepted {
            let doc = app.status(id).await;
            assert_ne!(doc["status"], "failed", "{doc}");
            if doc["status"] != "done" {
                pending += 1;
            }
        }
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} of {} jobs not done", accepted.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "broker restart: slowest 503 {:.2} s; first 202 {:.1} s after start_app; {}/{} accepted jobs done, 0 lost",
        slowest.as_secs_f64(),
        first_202.as_secs_f64(),
        accepted.len(),
        accepted.len()
    );
    app.stop().await;
}
