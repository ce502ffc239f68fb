//! One video, many workers: a long input split into pieces that two worker
//! processes encode at once, joined frame-exactly; a worker lost mid-piece;
//! cancelling and failing a split job; nothing left under `work/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;
use crate::procs::{assert_ffmpeg_gone, ffmpeg_under, spawn_worker, Proc};

/// 24 s, 640×360, 25 fps (600 frames) with a continuous sine tone.
fn source(app: &TestApp) -> PathBuf {
    Clip { seconds: 24, width: 640, height: 360, audio: true }.make(app.dir.path(), "source.mp4")
}

/// Two worker processes that split inputs of 8 s and more into 4 s pieces,
/// each with its own scratch folder (so their ffmpegs can be told apart).
fn two_workers(app: &TestApp, extra: &[(&str, String)]) -> (Vec<Proc>, Vec<PathBuf>) {
    let mut env = vec![
        ("TRANSCODER__WORKER__SEGMENT_SECONDS", "4".to_string()),
        ("TRANSCODER__WORKER__SPLIT_MIN_SECONDS", "8".to_string()),
    ];
    env.extend(extra.iter().cloned());
    let dirs: Vec<PathBuf> = (1..=2).map(|n| app.dir.path().join(format!("scratch-{n}"))).collect();
    let workers = dirs.iter().map(|d| spawn_worker(app, d, &env)).collect();
    (workers, dirs)
}

/// ffmpegs of this worker that encode a piece (not the audio or the join).
fn piece_ffmpegs(dir: &Path) -> Vec<u32> {
    ffmpeg_under(dir)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("piece-")
        })
        .collect()
}

/// Waits until `condition` holds (polled every 20 ms); panics after `limit`.
async fn until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the job's terminal event while watching both workers; returns
/// it and whether both ran an ffmpeg of the job at the same moment.
async fn finish_watching(sub: &mut Subscriber, id: &str, dirs: &[PathBuf]) -> (Event, bool) {
    let deadline = Instant::now() + JOB_TIMEOUT;
    let mut both = false;
    loop {
        both |= dirs.iter().all(|d| !ffmpeg_under(d).is_empty());
        if let Some(e) = sub.next(Duration::from_millis(20)).await {
            let terminal =
                ["completed", "failed", "cancelled"].iter().any(|k| e.routing_key == format!("job.{k}.{id}"));
            if terminal {
                return (e, both);
            }
        }
        assert!(Instant::now() < deadline, "job {id} did not finish; saw {:?}", sub.keys());
    }
}

async fn download(app: &TestApp, id: &str, name: &str) -> PathBuf {
    let response = app.http.get(app.url(&format!("/video/download/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let path = app.dir.path().join(name);
    std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
    path
}

/// The video's packet timestamps in presentation order.
fn video_pts(path: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    let mut pts: Vec<f64> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim_end_matches(',').parse().ok()).collect();
    pts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    pts
}

/// The first audio stream decoded to mono 48 kHz samples.
fn audio_samples(path: &Path) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout.chunks_exact(2).map(|b| f64::from(i16::from_le_bytes([b[0], b[1]]))).collect()
}

/// The source's audio encoded whole, bare, with the service's settings for
/// `output`'s format: what the split output's audio should sound like.
fn reference_audio(source: &Path, output: &Path, dir: &Path) -> PathBuf {
    let webm = output.extension().is_some_and(|e| e == "webm");
    let (codec, rate, file) = if webm { ("libopus", "96k", "ref.webm") } else { ("aac", "128k", "ref.m4a") };
    let reference = dir.join(file);
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(source)
        .args(["-map", "0:a:0", "-ac", "2", "-c:a", codec, "-b:a", rate])
        .arg(&reference)
        .status()
        .unwrap();
    assert!(status.success());
    reference
}

/// The lowest signal-to-noise ratio (dB) of `output`'s audio against
/// `source`'s over 20 ms windows, and where (seconds): a gap, a click or a
/// shift by one AAC frame at a join drops it far below the codec's noise.
/// The first and last 100 ms (edge effects of resampling) are left out.
fn worst_audio_snr(output: &[f64], source: &[f64]) -> (f64, f64) {
    const WINDOW: usize = 960;
    let n = output.len().min(source.len());
    (4800..n.saturating_sub(4800))
        .step_by(WINDOW)
        .map(|at| {
            let end = (at + WINDOW).min(n);
            let signal: f64 = source[at..end].iter().map(|s| s * s).sum();
            let noise: f64 = (at..end).map(|i| (source[i] - output[i]).powi(2)).sum::<f64>().max(1e-9);
            (10.0 * (signal / noise).log10(), at as f64 / 48000.0)
        })
        .fold((f64::MAX, 0.0), |a, b| if b.0 < a.0 { b } else { a })
}

/// Per-frame PSNR (dB) of `output` against `source`.
fn psnr_per_frame(output: &Path, source: &Path, dir: &Path) -> Vec<f64> {
    let stats = dir.join("psnr.log");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(output)
        .arg("-i")
        .arg(source)
        // The source is untagged SD, which the service converts from the
        // BT.601 matrix to BT.709: the reference is converted the same way.
        .args([
            "-lavfi",
            &format!(
                "[1:v]scale=in_color_matrix=bt601:out_color_matrix=bt709[ref];[0:v][ref]psnr=stats_file={}",
                stats.display()
            ),
        ])
        .args(["-f", "null", "-"])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(&stats)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("psnr_avg:")))
        .map(|v| if v == "inf" { 100.0 } else { v.parse().unwrap() })
        .collect()
}

/// The checks of a split output against its 600-frame source.
fn assert_frame_exact(output: &Path, source: &Path, dir: &Path) {
    let pts = video_pts(output);
    assert_eq!(pts.len(), 600, "frames in the output");
    let steps: Vec<f64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(steps.iter().all(|s| (s - 0.04).abs() < 1e-4), "frame spacing across the joins: {steps:?}");
    let video_end = pts.last().unwrap() - pts[0] + 0.04;
    assert!((video_end - 24.0).abs() <= 0.04, "video lasts {video_end}");
    let samples = audio_samples(output);
    let audio = samples.len() as f64 / 48000.0;
    assert!((audio - 24.0).abs() <= 0.025, "audio lasts {audio}");
    let (snr, snr_at) = worst_audio_snr(&samples, &audio_samples(&reference_audio(source, output, dir)));
    assert!(snr >= 20.0, "the audio at {snr_at:.3} s is {snr:.1} dB from an unsplit encode's (a seam?)");
    let psnr = psnr_per_frame(output, source, dir);
    assert_eq!(psnr.len(), 600);
    let (worst, at) =
        psnr.iter().enumerate().map(|(i, p)| (*p, i)).fold((f64::MAX, 0), |a, b| if b.0 < a.0 { b } else { a });
    assert!(worst >= 30.0, "frame {at} has PSNR {worst:.1} dB against the source");
    let mean = psnr.iter().sum::<f64>() / psnr.len() as f64;
    eprintln!(
        "split output {}: {} frames, video {video_end:.3} s, audio {audio:.4} s (SNR min {snr:.1} dB at {snr_at:.2} s), PSNR min {worst:.2} mean {mean:.2} dB",
        output.display(),
        pts.len()
    );
}

/// A done job of [`split_on_two_workers`].
struct SplitJob {
    app: TestApp,
    _workers: Vec<Proc>,
    /// Saw the job's events.
    sub: Subscriber,
    source: PathBuf,
    id: String,
    doc: Value,
}

/// A job of the 24 s source in `format` on two workers (4 s pieces; for a
/// package, whole segments), done with both running an ffmpeg of it at one
/// moment and at least five pieces.
async fn split_on_two_workers(format: &str) -> SplitJob {
    let app = spawn_api_with(|_| {}).await;
    let (workers, dirs) = two_workers(&app, &[]);
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let source = source(&app);
    let id = app.submit(&source, &format!("?format={format}")).await;
    let (done, both) = finish_watching(&mut sub, &id, &dirs).await;
    assert_eq!(done.routing_key, format!("job.completed.{id}"), "{}", done.body);
    assert!(both, "the two workers never ran an ffmpeg of the job at the same time");
    let doc = app.status(&id).await;
    assert!(doc["segments"]["total"].as_u64().unwrap() >= 5, "{doc}");
    SplitJob { app, _workers: workers, sub, source, id, doc }
}

async fn split_job_is_frame_exact(format: &str) {
    let SplitJob { app, _workers, sub, source, id, doc } = split_on_two_workers(format).await;
    let total = doc["segments"]["total"].as_u64().unwrap();
    assert_eq!(doc["segments"]["done"], total);
    assert_eq!(doc["progress-percent"], 100);
    assert_eq!(doc["output"]["format"], format);
    let progress: Vec<u64> = sub
        .seen
        .iter()
        .filter(|e| e.routing_key == format!("job.progress.{id}"))
        .map(|e| e.body["data"]["progress-percent"].as_u64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "progress events went down: {progress:?}");
    // The source (MPEG-4, a keyframe every 12 frames) has one at 12 s,
    // where a piece starts: that piece is sought to its first frame itself,
    // the others halfway to the frame before theirs. Both kinds are checked
    // frame by frame below.
    let record: Value = app.storage.get_json(&format!("jobs/default/{id}.json")).await.unwrap().unwrap();
    let seeks: Vec<(u64, f64)> = record["x-plan"]["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["start_frame"].as_u64().unwrap(), p["seek_seconds"].as_f64().unwrap()))
        .collect();
    let on_frame = |(frame, seek): &(u64, f64)| (seek - *frame as f64 / 25.0).abs() < 1e-6;
    let halfway = |(frame, seek): &(u64, f64)| (seek - (*frame as f64 - 0.5) / 25.0).abs() < 1e-6;
    assert!(seeks.iter().any(|s| s.0 == 300 && on_frame(s)), "{seeks:?}");
    assert!(seeks.iter().filter(|s| s.0 > 0 && s.0 != 300).all(halfway), "{seeks:?}");
    let output = download(&app, &id, &format!("out.{format}")).await;
    assert_frame_exact(&output, &source, app.dir.path());
    assert_eq!(app.keys(&format!("work/default/{id}/")).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_mp4_job_is_split_across_two_workers_and_joined_frame_exactly() {
    split_job_is_frame_exact("mp4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_webm_job_is_split_across_two_workers_and_joined_frame_exactly() {
    split_job_is_frame_exact("webm").await;
}

/// The stored record's attempt count per task of the plan.
async fn attempts(app: &TestApp, id: &str) -> serde_json::Map<String, Value> {
    let record: Value = app.storage.get_json(&format!("jobs/default/{id}.json")).await.unwrap().unwrap();
    record["x-plan"]["attempts"].as_object().unwrap().clone()
}

/// Kills the first worker seen encoding a piece (seen twice 20 ms apart, so
/// it is well inside the encode); returns its index.
async fn kill_a_worker_mid_piece(workers: &mut [Proc], dirs: &[PathBuf]) -> usize {
    let mut seen: Option<(usize, u32)> = None;
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        for (n, dir) in dirs.iter().enumerate() {
            if let Some(pid) = piece_ffmpegs(dir).first().copied() {
                if seen == Some((n, pid)) {
                    workers[n].kill9();
                    return n;
                }
                seen = Some((n, pid));
            }
        }
        assert!(Instant::now() < deadline, "no worker encoded a piece");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_piece_costs_only_that_piece() {
    let app = spawn_api_with(|_| {}).await;
    let (mut workers, dirs) = two_workers(&app, &[("TRANSCODER__WORKER__FFMPEG_THREADS", "1".into())]);
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let source = source(&app);
    let id = app.submit(&source, "").await;
    let killed = kill_a_worker_mid_piece(&mut workers, &dirs).await;
    assert_ffmpeg_gone(&dirs[killed], Duration::from_secs(2)).await;
    let (done, _) = finish_watching(&mut sub, &id, &dirs).await;
    assert_eq!(done.routing_key, format!("job.completed.{id}"), "{}", done.body);
    // Any duplicate completion carries the same id.
    let completions: std::collections::HashSet<String> = sub
        .seen
        .iter()
        .filter(|e| e.routing_key == format!("job.completed.{id}"))
        .map(|e| e.body["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(completions.len(), 1);
    assert_eq!(video_pts(&download(&app, &id, "out.mp4").await).len(), 600);
    // The record is gone from work/ but kept in jobs/: its attempts show
    // that exactly one piece ran twice and every other task once.
    let attempts = attempts(&app, &id).await;
    let twice: Vec<&String> = attempts.iter().filter(|(_, n)| n.as_u64() == Some(2)).map(|(k, _)| k).collect();
    assert_eq!(twice.len(), 1, "{attempts:?}");
    assert!(twice[0].starts_with("piece-"), "{attempts:?}");
    assert!(attempts.values().all(|n| matches!(n.as_u64(), Some(1) | Some(2))), "{attempts:?}");
    assert_eq!(app.keys(&format!("work/default/{id}/")).await, Vec::<String>::new());
}

/// Waits (polling the store) until nothing is left under the job's work folder.
async fn work_folder_empties(app: &TestApp, id: &str) {
    let prefix = format!("work/default/{id}/");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = app.keys(&prefix).await;
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left under {prefix}: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_split_job_stops_every_piece_on_both_workers_and_leaves_no_work() {
    let app = spawn_api_with(|_| {}).await;
    let (_workers, dirs) = two_workers(&app, &[("TRANSCODER__WORKER__FFMPEG_THREADS", "1".into())]);
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let id = app.submit(&source(&app), "").await;
    until("both workers encoding pieces", JOB_TIMEOUT, || dirs.iter().all(|d| !piece_ffmpegs(d).is_empty())).await;
    let response = app.http.delete(app.url(&format!("/video/status/{id}"))).send().await.unwrap();
    let status = response.status();
    if status != 202 {
        let body = response.text().await.unwrap();
        panic!("DELETE answered {status}: {body}; the job: {}", app.status(&id).await);
    }
    for dir in &dirs {
        assert_ffmpeg_gone(dir, Duration::from_secs(2)).await;
    }
    sub.wait_for(&format!("job.cancelled.{id}"), Duration::from_secs(10)).await;
    assert_eq!(app.status(&id).await["status"], "cancelled");
    work_folder_empties(&app, &id).await;
    assert!(app.keys(&format!("outputs/default/{id}/")).await.is_empty());
    // Later tasks of the job find it cancelled and do nothing.
    assert_eq!(app.status(&id).await["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_job_that_fails_leaves_no_work_behind() {
    // One attempt per task: the piece of a killed worker fails the job.
    let app = spawn_api_with(|s| s.worker.max_attempts = 1).await;
    let (mut workers, dirs) = two_workers(&app, &[("TRANSCODER__WORKER__FFMPEG_THREADS", "1".into())]);
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let id = app.submit(&source(&app), "").await;
    kill_a_worker_mid_piece(&mut workers, &dirs).await;
    let (failed, _) = finish_watching(&mut sub, &id, &dirs).await;
    assert_eq!(failed.routing_key, format!("job.failed.{id}"), "{}", failed.body);
    assert_eq!(failed.body["data"]["error"]["code"], "too-many-attempts");
    for dir in &dirs {
        assert_ffmpeg_gone(dir, Duration::from_secs(5)).await;
    }
    work_folder_empties(&app, &id).await;
    assert!(app.keys(&format!("outputs/default/{id}/")).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_hls_job_is_split_across_two_workers_and_every_rendition_has_every_frame() {
    let SplitJob { app, _workers, id, doc, .. } = split_on_two_workers("hls").await;
    let total = doc["segments"]["total"].as_u64().unwrap();
    let heights: Vec<u64> =
        doc["output"]["renditions"].as_array().unwrap().iter().map(|r| r["height"].as_u64().unwrap()).collect();
    assert_eq!(heights, vec![360, 240], "the ladder of a 360p input");
    // The same checks as an unsplit package: a real parser over HTTP …
    let master = app.url(doc["links"]["play"].as_str().unwrap());
    let report = hls_check(&master);
    let variants = report["variants"].as_array().unwrap();
    let http = http_client();
    for k in 0..variants[0]["segments"].as_array().unwrap().len() {
        let mut starts = Vec::new();
        for (n, v) in variants.iter().enumerate() {
            let (init, segment) = (v["init"].as_str().unwrap(), v["segments"][k].as_str().unwrap());
            let (pts, key) = first_packet(&http, app.dir.path(), init, segment, n).await;
            assert!(key, "segment {k} of {} does not start with a keyframe", v["uri"]);
            starts.push(pts);
        }
        assert!(starts.iter().all(|s| (s - starts[0]).abs() < 1e-6), "segment {k} starts at {starts:?}");
    }
    // … and the input's 600 frames in every rendition.
    for v in variants {
        let uri = v["uri"].as_str().unwrap();
        assert_eq!(decoded_frames(uri, "v:0"), 600, "{uri}");
        let extinf: f64 = v["durations"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).sum();
        assert!((extinf - 24.0).abs() < 0.05, "{uri}: EXTINF add up to {extinf}");
    }
    println!("split hls: {total} pieces on two workers, renditions {heights:?}, 600 frames in each");
    assert_eq!(app.keys(&format!("work/default/{id}/")).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_dash_job_is_split_across_two_workers_and_every_representation_has_every_frame() {
    let SplitJob { app, _workers, id, doc, .. } = split_on_two_workers("dash").await;
    let mpd = app.url(doc["links"]["play"].as_str().unwrap());
    let text = http_client().get(&mpd).send().await.unwrap().text().await.unwrap();
    assert_eq!(text.matches("<Representation ").count(), 3, "360p, 240p and the audio: {text}");
    for n in 0..2 {
        assert_eq!(decoded_frames(&mpd, &format!("v:{n}")), 600, "representation {n}");
    }
    let audio = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0", "-show_entries", "stream=codec_name", "-of", "csv=p=0", &mpd])
        .output()
        .unwrap();
    // (A line per program that holds the stream, then the stream's own.)
    let codecs: Vec<String> = String::from_utf8_lossy(&audio.stdout).split_whitespace().map(str::to_string).collect();
    assert!(!codecs.is_empty() && codecs.iter().all(|c| c == "aac"), "{codecs:?}");
    assert_eq!(app.keys(&format!("work/default/{id}/")).await, Vec::<String>::new());
}
