//! The job's record under concurrent writers, against the real (embedded)
//! store: pieces finishing at once and a cancel never lose an update and
//! never move `status` or `progress-percent` backwards.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::Utc;
use transcoder::domain::plan::split;
use transcoder::domain::{ClientId, InputInfo, JobId, JobOptions, JobStatus, PlanState, StatusDoc};
use transcoder::jobs::Jobs;

use crate::helpers::*;

const PIECES: usize = 40;

/// A processing split job of `PIECES` pieces.
async fn planned_job(jobs: &Jobs, client: &ClientId) -> JobId {
    let input = InputInfo { filename: None, size_bytes: 1, content_type: "video/mp4".into(), color: None };
    let mut doc = StatusDoc::queued(JobId::new(), &JobOptions::default(), input, Utc::now());
    jobs.create(client, &doc).await.unwrap();
    // The id is taken: a second create is refused.
    assert!(jobs.create(client, &doc).await.is_err());
    doc.start_attempt(Utc::now());
    let times: Vec<f64> = (0..PIECES * 25).map(|i| i as f64 / 25.0).collect();
    let plan = PlanState::new(split(&times, &[], 0.0, 1.0), false);
    assert_eq!(plan.pieces.len(), PIECES);
    jobs.update(client, doc.id, |r| {
        r.doc.start_attempt(Utc::now());
        r.plan = Some(plan.clone());
        r.sync_progress();
        true
    })
    .await
    .unwrap()
    .unwrap();
    doc.id
}

/// Every piece finishes at once (each also reports progress first), a
/// reader watches, and optionally a cancel lands in the middle.
async fn race(cancel_after: Option<usize>) -> (Vec<(JobStatus, u8)>, usize, StatusDoc) {
    let app = spawn_app().await;
    let jobs = Jobs::new(app.storage.clone());
    let client = ClientId::development();
    let id = planned_job(&jobs, &client).await;
    let key = format!("jobs/default/{id}.json");

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (storage, stop, key) = (app.storage.clone(), stop.clone(), key.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let doc: StatusDoc = storage.get_json(&key).await.unwrap().unwrap();
                seen.push((doc.status, doc.progress_percent));
            }
            seen
        })
    };
    let finished = Arc::new(AtomicUsize::new(0));
    // The last few pieces finish only after the cancel, so some surely lose.
    let cancelled_flag = Arc::new(AtomicBool::new(cancel_after.is_none()));
    let counted = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for index in 0..PIECES as u32 {
        let (jobs, client, finished, counted) = (jobs.clone(), client.clone(), finished.clone(), counted.clone());
        let cancelled_flag = cancelled_flag.clone();
        writers.push(tokio::spawn(async move {
            let running = |r: &mut transcoder::domain::JobRecord| {
                if r.doc.status.is_terminal() {
                    return false;
                }
                r.plan.as_mut().unwrap().running.insert(index, 0.5);
                r.sync_progress();
                true
            };
            jobs.update(&client, id, running).await.unwrap();
            if index as usize >= PIECES - 5 {
                while !cancelled_flag.load(Ordering::SeqCst) {
                    tokio::task::yield_now().await;
                }
            }
            let done = jobs
                .update(&client, id, |r| {
                    if r.doc.status.is_terminal() {
                        return false;
                    }
                    let plan = r.plan.as_mut().unwrap();
                    plan.done.insert(index);
                    plan.running.remove(&index);
                    r.sync_progress();
                    true
                })
                .await
                .unwrap()
                .unwrap();
            if done.changed {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            finished.fetch_add(1, Ordering::SeqCst);
        }));
    }
    if let Some(after) = cancel_after {
        while finished.load(Ordering::SeqCst) < after {
            tokio::task::yield_now().await;
        }
        let cancelled = jobs
            .update(&client, id, |r| {
                if r.doc.status.is_terminal() {
                    return false;
                }
                r.doc.finish_cancelled(Utc::now());
                true
            })
            .await
            .unwrap()
            .unwrap();
        assert!(cancelled.changed);
        cancelled_flag.store(true, Ordering::SeqCst);
    }
    for w in writers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let seen = reader.await.unwrap();
    let last: StatusDoc = app.storage.get_json(&key).await.unwrap().unwrap();
    (seen, counted.load(Ordering::SeqCst), last)
}

fn assert_never_backwards(seen: &[(JobStatus, u8)]) {
    let rank = |s: JobStatus| match s {
        JobStatus::Queued => 0,
        JobStatus::Processing => 1,
        _ => 2,
    };
    assert!(seen.len() > 10, "the reader saw only {} documents", seen.len());
    for w in seen.windows(2) {
        assert!(rank(w[1].0) >= rank(w[0].0), "status went back: {:?} → {:?}", w[0], w[1]);
        assert!(w[1].1 >= w[0].1, "progress went back: {:?} → {:?}", w[0], w[1]);
        if w[0].0.is_terminal() {
            assert_eq!(w[1].0, w[0].0, "left a terminal status");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_pieces_finishing_at_once_are_all_counted_and_progress_never_goes_back() {
    let (seen, counted, last) = race(None).await;
    assert_never_backwards(&seen);
    assert_eq!(counted, PIECES);
    let segments = last.segments.unwrap();
    assert_eq!((segments.total, segments.done), (PIECES as u32, PIECES as u32));
    assert_eq!(last.status, JobStatus::Processing);
    assert_eq!(last.progress_percent, 97);
    eprintln!("no cancel: {} documents observed, {counted} pieces counted", seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_racing_finishing_pieces_wins_once_and_nothing_moves_it_back() {
    let (seen, counted, last) = race(Some(PIECES / 3)).await;
    // (The cancel waits for a third of the pieces; the last five wait for it.)
    assert_never_backwards(&seen);
    assert_eq!(last.status, JobStatus::Cancelled);
    // Every piece counted before the cancel is in the document; none after it.
    assert_eq!(last.segments.unwrap().done as usize, counted);
    assert!(counted >= PIECES / 3 && counted <= PIECES - 5, "counted {counted}");
    assert!(seen.iter().any(|(s, _)| *s == JobStatus::Cancelled));
    eprintln!("cancel: {} documents observed, {counted} pieces counted before it", seen.len());
}

#[tokio::test]
async fn a_conditional_write_with_a_stale_etag_is_refused() {
    use transcoder::storage::{Expect, StoreError};
    let app = spawn_app().await;
    let key = "jobs/default/probe.json";
    app.storage.put_json_if(key, &serde_json::json!({"n": 1}), Expect::Absent).await.unwrap();
    let first = app.storage.get_json_versioned::<serde_json::Value>(key).await.unwrap().unwrap();
    eprintln!("etag {:?}", first.etag);
    app.storage.put_json_if(key, &serde_json::json!({"n": 2}), Expect::Version(&first.etag)).await.unwrap();
    let stale = app.storage.put_json_if(key, &serde_json::json!({"n": 3}), Expect::Version(&first.etag)).await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
    let again = app.storage.put_json_if(key, &serde_json::json!({"n": 4}), Expect::Absent).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    let now = app.storage.get_json_versioned::<serde_json::Value>(key).await.unwrap().unwrap();
    assert_eq!(now.value["n"], 2);
    assert_ne!(now.etag, first.etag);
}
