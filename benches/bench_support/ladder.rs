//! (h) An `hls` job with the default ladder of a 60 s 720p input (720, 480,
//! 360, 240), 202 → completion event, against bare ffmpeg producing the same
//! ladder with the same arguments; the poster and storyboard measured
//! apart, run on the bare output as the service runs them.

use std::fmt::Write;
use std::path::Path;
use std::time::Instant;

use transcoder::domain::picture::Picture;
use transcoder::domain::OutputFormat;
use transcoder::transcode::ladder::{self, Source};
use transcoder::transcode::previews::Storyboard;

use super::measure::*;
use super::report::{spread, Pair, Report};
use super::scenarios::Events;

const SECONDS: u32 = 60;

async fn ffmpeg(args: &[String]) {
    let status = tokio::process::Command::new("ffmpeg")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(status.success(), "ffmpeg {args:?}");
}

/// The bare ladder into `dir`.
async fn bare(input: &Path, dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let picture = Picture::default();
    let source = Source { input, demuxer: "mov", threads: 0, picture: &picture, has_audio: true };
    let rungs = ladder::renditions(None, 720);
    ffmpeg(&ladder::package_args(OutputFormat::Hls, &source, &rungs, dir)).await;
}

/// The poster and storyboard of the bare package's top rendition, as the
/// service makes them (joining its segments included): milliseconds.
async fn previews_ms(dir: &Path) -> f64 {
    let playlist = std::fs::read_to_string(dir.join("720p.m3u8")).unwrap();
    let segments = transcoder::transcode::manifest::hls_segments(&playlist).unwrap();
    let t0 = Instant::now();
    let mut joined = std::fs::read(dir.join(&segments.init)).unwrap();
    for f in &segments.files {
        joined.extend(std::fs::read(dir.join(f)).unwrap());
    }
    let top = dir.join("top.mp4");
    std::fs::write(&top, joined).unwrap();
    let packets = transcoder::transcode::video_packets(&top, None).await.unwrap();
    let board = Storyboard::plan(&packets.keyframes, packets.end(), packets.width, packets.height).unwrap();
    let output = transcoder::transcode::previews::Source { path: &top, demuxer: None, chain: None };
    ffmpeg(&board.args(&output, true, &dir.join("poster.jpg"), &dir.join("storyboard.jpg"))).await;
    t0.elapsed().as_secs_f64() * 1000.0
}

pub async fn ladder_cost(env: &BenchEnv, report: &mut Report, pairs: usize) {
    let input = clip(env.dir.path(), SECONDS, 1280, 720);
    let bytes = std::fs::read(&input).unwrap();
    let svc = Service::start(env, "serve", "h").await;
    let mut events = Events::bind(&svc.prefix, "job.completed.*").await;
    let dir = env.dir.path().join("bare-ladder");
    let mut results = Vec::new();
    let mut preview = Vec::new();
    for i in 0..pairs {
        let (mut service, mut baseline) = ((0.0, 0.0), (0.0, 0.0));
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            if side == 0 {
                let (wall, cpu, event) = hls_job(env, &svc, &mut events, &bytes).await;
                let renditions = event["data"]["output"]["renditions"].as_array().map(Vec::len).unwrap_or(0);
                assert_eq!(renditions, 4, "the default ladder of a 720p input");
                service = (wall, cpu);
            } else {
                let (cpu0, t0) = (children_cpu(), Instant::now());
                bare(&input, &dir).await;
                baseline = (t0.elapsed().as_secs_f64(), children_cpu() - cpu0);
                preview.push(previews_ms(&dir).await);
            }
        }
        eprintln!("(h) pair {}: service {:.2} s, bare ffmpeg {:.2} s", i + 1, service.0, baseline.0);
        results.push(Pair { a: service.0, b: baseline.0, a_cpu: service.1, b_cpu: baseline.1 });
    }
    svc.stop();
    let ratios: Vec<f64> = results.iter().map(|p| p.a / p.b).collect();
    let col = |f: &dyn Fn(&Pair) -> f64, d| spread(&results.iter().map(f).collect::<Vec<_>>(), d);
    let mut md = String::new();
    let _ = writeln!(md, "## (h) Adaptive ladder cost\n");
    let _ = writeln!(
        md,
        "A {SECONDS} s 1280×720 25 fps input as `format=hls` with the default ladder (720p, 480p, 360p, 240p, \
         one ffmpeg, one decode; `worker.ffmpeg_threads = 0`), from the 202 to the completion event, against bare \
         ffmpeg with the same arguments (`transcode::ladder::package_args`) writing the same files locally, \
         {pairs} interleaved pairs. The service's side includes the input copy and probe, the segments stored as \
         they close, the measured master playlist, and the poster and storyboard; these last are also measured \
         on their own on the bare output (joining the top rendition's segments, the packet listing and one decode \
         of the keyframes). Target: ratio ≤ 1.05.\n"
    );
    let _ = writeln!(md, "| service s | bare ffmpeg s | ratio | service CPU s | bare CPU s | poster + storyboard ms |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} |\n",
        col(&|p| p.a, 2),
        col(&|p| p.b, 2),
        spread(&ratios, 3),
        col(&|p| p.a_cpu, 2),
        col(&|p| p.b_cpu, 2),
        spread(&preview, 0)
    );
    report.sections.push(('h', md));
}

/// Submits the input as `format=hls` and waits for its completion event:
/// wall seconds from the 202, the service's CPU seconds meanwhile (with its
/// children), the event.
async fn hls_job(env: &BenchEnv, svc: &Service, events: &mut Events, bytes: &[u8]) -> (f64, f64, serde_json::Value) {
    let request = env.http.post(format!("{}/video/convert?format=hls", svc.address));
    let r = request.header("Content-Type", "video/mp4").body(bytes.to_vec()).send().await.unwrap();
    let accepted = Instant::now();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let cpu0 = svc.cpu_seconds();
    let (_, event) = events.completed(&id).await;
    (accepted.elapsed().as_secs_f64(), svc.cpu_seconds() - cpu0, event)
}

/// (i) The ladder of (h) split into 20 s pieces across two worker processes
/// with `worker.ffmpeg_threads = 1`, against one such worker encoding it
/// whole.
pub async fn ladder_split_scaling(env: &BenchEnv, report: &mut Report, pairs: usize) {
    let one_thread = ("TRANSCODER__WORKER__FFMPEG_THREADS", "1".to_string());
    let whole = Service::start(env, "api", "i-whole").await;
    let whole_workers =
        [whole.worker(env, &[one_thread.clone(), ("TRANSCODER__WORKER__SPLIT_MIN_SECONDS", "0".into())])];
    let split = Service::start(env, "api", "i-split").await;
    let split_env = [
        one_thread,
        ("TRANSCODER__WORKER__SPLIT_MIN_SECONDS", "30".to_string()),
        ("TRANSCODER__WORKER__SEGMENT_SECONDS", "20".to_string()),
    ];
    let split_workers = [split.worker(env, &split_env), split.worker(env, &split_env)];
    let mut whole_events = Events::bind(&whole.prefix, "job.completed.*").await;
    let mut split_events = Events::bind(&split.prefix, "job.completed.*").await;
    let bytes = std::fs::read(clip(env.dir.path(), SECONDS, 1280, 720)).unwrap();
    let mut results = Vec::new();
    for i in 0..pairs {
        let (mut w, mut s) = (0.0, 0.0);
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            if side == 0 {
                w = hls_job(env, &whole, &mut whole_events, &bytes).await.0;
            } else {
                s = hls_job(env, &split, &mut split_events, &bytes).await.0;
            }
        }
        eprintln!("(i) pair {}: one worker whole {w:.1} s, two workers split {s:.1} s", i + 1);
        results.push(Pair { a: s, b: w, a_cpu: 0.0, b_cpu: 0.0 });
    }
    drop(whole_workers);
    drop(split_workers);
    whole.stop();
    split.stop();
    let ratios: Vec<f64> = results.iter().map(|p| p.a / p.b).collect();
    let col = |f: &dyn Fn(&Pair) -> f64| spread(&results.iter().map(f).collect::<Vec<_>>(), 1);
    let mut md = String::new();
    let _ = writeln!(md, "## (i) Split ladder scaling\n");
    let _ = writeln!(
        md,
        "The package of (h) (a {SECONDS} s 1280×720 input, `format=hls`, the default ladder of four renditions), \
         from the 202 to the completion event: one worker process with `worker.ffmpeg_threads = 1` encoding it \
         whole, against two worker processes with `ffmpeg_threads = 1` each and the input split into 20 s \
         pieces (each piece encodes every rendition of its frames and its range of the audio; the join copies \
         them into the segments). {pairs} interleaved pairs. Target: ratio ≤ 0.55 (ideal 0.50).\n"
    );
    let _ = writeln!(md, "| one worker, whole s | two workers, split s | ratio |");
    let _ = writeln!(md, "|---|---|---|");
    let _ = writeln!(md, "| {} | {} | {} |\n", col(&|p| p.b), col(&|p| p.a), spread(&ratios, 3));
    report.sections.push(('i', md));
}
