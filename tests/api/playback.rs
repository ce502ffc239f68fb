//! Posters, storyboards and playback URLs: every done job has a poster at
//! the output's size and a storyboard whose cues cover the whole duration;
//! its `links` fetch them, and the result, with no API key, under a signed,
//! expiring token that nothing else passes.

use std::path::Path;

use serde_json::Value;
use transcoder::domain::ClientId;
use transcoder::http::playback::Signer;

use crate::helpers::*;

const SECRET: &str = "test-playback-secret";

/// `(width, height)` of an image, by ffprobe.
fn image_size(path: &Path) -> (u64, u64) {
    let probed = probe(path);
    let v = stream(&probed, "video").expect("an image stream");
    assert_eq!(v["codec_name"], "mjpeg", "{} is not a JPEG", path.display());
    (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap())
}

/// `hh:mm:ss.mmm` → seconds.
fn seconds(clock: &str) -> f64 {
    let parts: Vec<f64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

/// Cues of a storyboard: `(start, end, x, y, w, h)`.
fn cues(vtt: &str) -> Vec<(f64, f64, u64, u64, u64, u64)> {
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    let lines: Vec<&str> = vtt.lines().collect();
    let mut cues = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some((start, end)) = line.split_once(" --> ") {
            let target = lines[i + 1];
            let xywh = target.strip_prefix("storyboard.jpg#xywh=").unwrap_or_else(|| panic!("cue target {target}"));
            let n: Vec<u64> = xywh.split(',').map(|v| v.parse().unwrap()).collect();
            cues.push((seconds(start), seconds(end), n[0], n[1], n[2], n[3]));
        }
    }
    cues
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).send().await.unwrap()
}

async fn done(app: &TestApp, sub: &mut Subscriber, clip: &Path, query: &str) -> Value {
    let id = app
        .http
        .post(app.url(&format!("/video/convert{query}")))
        .bearer_auth("key-alpha")
        .header("Content-Type", "video/mp4")
        .body(std::fs::read(clip).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(id.status(), 202);
    let id = id.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let completed = sub.wait_for_any(&[&format!("job.completed.{id}"), &format!("job.failed.{id}")], JOB_TIMEOUT).await;
    assert_eq!(completed.body["data"]["status"], "done", "{}", completed.body);
    let status = app.http.get(app.url(&format!("/video/status/{id}"))).bearer_auth("key-alpha").send().await.unwrap();
    status.json().await.unwrap()
}

/// An app with client `alpha`'s key and the playback secret, and a
/// subscriber to alpha's events.
async fn alpha_app() -> (TestApp, Subscriber) {
    let app = spawn_app_with(|s| {
        s.auth.keys.insert("key-alpha".into(), "alpha".into());
        s.http.playback_secret = SECRET.into();
    })
    .await;
    let sub = Subscriber::bind(&app.prefix, "alpha", "#").await;
    (app, sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mp4_and_webm_jobs_have_a_poster_and_a_storyboard_that_play_links_serve_without_a_key() {
    let (app, mut sub) = alpha_app().await;
    let clip = Clip { seconds: 12, width: 480, height: 270, audio: true }.make(app.dir.path(), "clip.mp4");
    for format in ["mp4", "webm"] {
        let doc = done(&app, &mut sub, &clip, &format!("?format={format}")).await;
        let id = doc["id"].as_str().unwrap();
        let output = &doc["output"];
        let (width, height) = (output["width"].as_u64().unwrap(), output["height"].as_u64().unwrap());
        let duration = output["duration-seconds"].as_f64().unwrap();
        let links = &doc["links"];
        let (play, poster, board) =
            (links["play"].as_str().unwrap(), links["poster"].as_str().unwrap(), links["storyboard"].as_str().unwrap());
        assert!(play.ends_with(&format!("/video.{format}")), "{play}");

        // The result under the token, no key: the same bytes as the download.
        let played = get(&app, play).await;
        assert_eq!(played.status(), 200, "{play}");
        assert_eq!(played.headers()["content-type"], output["content-type"].as_str().unwrap());
        assert!(played.headers()["cache-control"].to_str().unwrap().contains("immutable"));
        let played = played.bytes().await.unwrap();
        let downloaded = app
            .http
            .get(app.url(&format!("/video/download/{id}")))
            .bearer_auth("key-alpha")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(played, downloaded);
        let part = app.http.get(app.url(play)).header("Range", "bytes=10-19").send().await.unwrap();
        assert_eq!(part.status(), 206);
        assert_eq!(part.bytes().await.unwrap(), played[10..20]);

        // The poster: a JPEG at the output's size.
        let response = get(&app, poster).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        let poster_file = app.dir.path().join(format!("poster-{format}.jpg"));
        std::fs::write(&poster_file, response.bytes().await.unwrap()).unwrap();
        assert_eq!(image_size(&poster_file), (width, height), "{format} poster");

        // The storyboard: cues end to end over the whole duration, each a
        // tile inside the sprite beside it.
        let response = get(&app, board).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/vtt");
        let vtt = response.text().await.unwrap();
        let cues = cues(&vtt);
        assert!(cues.len() >= 2, "{format}: {vtt}");
        assert_eq!(cues[0].0, 0.0);
        for pair in cues.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "{format}: a gap or an overlap between cues\n{vtt}");
            assert!(pair[0].0 < pair[0].1);
        }
        let end = cues.last().unwrap().1;
        assert!((end - duration).abs() <= 0.05, "{format}: cues end at {end}, the output lasts {duration}");
        let sprite_link = board.replace("storyboard.vtt", "storyboard.jpg");
        let sprite = get(&app, &sprite_link).await;
        assert_eq!(sprite.status(), 200);
        let sprite_file = app.dir.path().join(format!("storyboard-{format}.jpg"));
        std::fs::write(&sprite_file, sprite.bytes().await.unwrap()).unwrap();
        let (sw, sh) = image_size(&sprite_file);
        for (_, _, x, y, w, h) in &cues {
            assert!(x + w <= sw && y + h <= sh, "{format}: tile {x},{y},{w},{h} outside the {sw}x{sh} sprite");
            let expected = *w as f64 * height as f64 / width as f64;
            assert!((*h as f64 - expected).abs() <= 2.0, "{format}: a {w}x{h} tile of a {width}x{height} output");
        }
        println!(
            "{format}: poster {width}x{height}, storyboard {} cues over {duration} s in a {sw}x{sh} sprite",
            cues.len()
        );

        // With the key, the same files by name; without, 401.
        let named = format!("/video/download/{id}/poster.jpg");
        let with_key = app.http.get(app.url(&named)).bearer_auth("key-alpha").send().await.unwrap();
        assert_eq!(with_key.status(), 200);
        assert!(with_key.headers()["cache-control"].to_str().unwrap().starts_with("private"));
        assert_eq!(get(&app, &named).await.status(), 401);
        let missing = app.http.get(app.url(&format!("/video/download/{id}/other.jpg"))).bearer_auth("key-alpha");
        assert_eq!(missing.send().await.unwrap().status(), 404);
    }
    app.stop().await;
}

/// Keyframe times of a file's video, from 0.
fn keyframe_times(path: &Path) -> Vec<f64> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    let mut keys: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(",K"))
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    keys.sort_by(f64::total_cmp);
    let first = keys.first().copied().unwrap_or(0.0);
    keys.iter().map(|k| ((k - first) * 1000.0).round() / 1000.0).collect()
}

/// PSNR (dB) of a JPEG against the frame of `video` at `at` seconds.
fn poster_psnr(poster: &Path, video: &Path, at: f64) -> f64 {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "info", "-nostdin", "-i"])
        .arg(poster)
        .args(["-ss", &format!("{at:.3}"), "-i"])
        .arg(video)
        .args(["-lavfi", "[0:v]scale=out_range=tv,format=yuv420p[a];[1:v]format=yuv420p[b];[a][b]psnr"])
        .args(["-frames:v", "1", "-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let average = log.lines().rev().find_map(|l| l.split("average:").nth(1)).unwrap_or_else(|| panic!("{log}"));
    average.split_whitespace().next().unwrap().parse().unwrap_or(100.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_follow_the_inputs_keyframes_while_it_encodes_or_the_outputs_when_the_inputs_are_sparse() {
    let (app, mut sub) = alpha_app().await;
    // H.264 with a keyframe every second (dense: the input's are used), and
    // with one keyframe in 24 s (sparse: the output's are used).
    for (name, seconds, gop) in [("dense", 12, "25"), ("sparse", 24, "1000")] {
        let clip = app.dir.path().join(format!("{name}.mp4"));
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size=640x360:rate=25:duration={seconds}"))
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", gop, "-sc_threshold", "0"])
            .arg(&clip)
            .status()
            .unwrap();
        assert!(status.success());
        let doc = done(&app, &mut sub, &clip, "?height=180").await;
        let id = doc["id"].as_str().unwrap();
        let output_file = app.dir.path().join(format!("{name}-out.mp4"));
        let output = app.http.get(app.url(&format!("/video/download/{id}"))).bearer_auth("key-alpha");
        std::fs::write(&output_file, output.send().await.unwrap().bytes().await.unwrap()).unwrap();
        let vtt = get(&app, doc["links"]["storyboard"].as_str().unwrap()).await.text().await.unwrap();
        let starts: Vec<f64> = cues(&vtt).iter().map(|c| c.0).collect();
        let (input_keys, output_keys) = (keyframe_times(&clip), keyframe_times(&output_file));
        eprintln!("{name}: cues start at {starts:?}; input keyframes {input_keys:?}, output's {output_keys:?}");
        assert_ne!(input_keys, output_keys, "{name}: the case tells nothing");
        let expected = if name == "dense" { &input_keys } else { &output_keys };
        assert_eq!(&starts, expected, "{name}: {vtt}");

        // The poster is the output's frame at its time, at the output's size.
        let poster = app.dir.path().join(format!("{name}-poster.jpg"));
        std::fs::write(&poster, get(&app, doc["links"]["poster"].as_str().unwrap()).await.bytes().await.unwrap())
            .unwrap();
        assert_eq!(image_size(&poster), (320, 180), "{name}");
        let at = *expected
            .iter()
            .min_by(|a, b| (**a - seconds as f64 / 3.0).abs().total_cmp(&(**b - seconds as f64 / 3.0).abs()))
            .unwrap();
        let (same, other) = (poster_psnr(&poster, &output_file, at), poster_psnr(&poster, &output_file, at + 0.52));
        eprintln!("{name}: poster against the output at {at} s: {same:.1} dB, half a second later {other:.1} dB");
        assert!(same >= 24.0 && same > other + 5.0, "{name}: {same:.1} dB at {at} s, {other:.1} dB later");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_altered_expired_and_foreign_tokens_are_403_and_play_routes_answer_cors() {
    let app = spawn_app_with(|s| {
        s.auth.keys.insert("key-alpha".into(), "alpha".into());
        s.http.playback_secret = SECRET.into();
        s.http.cors_allowed_origins = vec!["https://player.example".into()];
    })
    .await;
    let mut sub = Subscriber::bind(&app.prefix, "alpha", "#").await;
    let clip = Clip::small(2).make(app.dir.path(), "clip.mp4");
    let doc = done(&app, &mut sub, &clip, "?format=hls").await;
    let id: transcoder::domain::JobId = doc["id"].as_str().unwrap().parse().unwrap();
    let poster = doc["links"]["poster"].as_str().unwrap().to_string();
    assert_eq!(get(&app, &poster).await.status(), 200);
    // The package plays without a key; its download needs one.
    let play = doc["links"]["play"].as_str().unwrap();
    assert!(play.ends_with("/master.m3u8"), "{play}");
    let master = get(&app, play).await;
    assert_eq!(master.status(), 200);
    assert_eq!(master.headers()["content-type"], "application/vnd.apple.mpegurl");
    let variant = master.text().await.unwrap().lines().find(|l| l.ends_with(".m3u8")).unwrap().to_string();
    assert_eq!(get(&app, &play.replace("master.m3u8", &variant)).await.status(), 200, "a relative URI under the token");
    let download = format!("/video/download/{id}/master.m3u8");
    assert_eq!(get(&app, &download).await.status(), 401);
    let with_key = app.http.get(app.url(&download)).bearer_auth("key-alpha").send().await.unwrap();
    assert_eq!(with_key.status(), 200);
    let token = poster.strip_prefix("/video/play/").unwrap().split('/').next().unwrap().to_string();

    let alpha = ClientId::parse("alpha").unwrap();
    let now = chrono::Utc::now();
    let ttl = app.settings.http.playback_ttl_seconds as i64;
    let expired = Signer::new(SECRET, ttl as u64).issue(&alpha, id, now - chrono::Duration::seconds(ttl + 1));
    let forged = Signer::new("another-secret", 60).issue(&alpha, id, now);
    let (payload, signature) = token.split_once('.').unwrap();
    let mut altered_payload = payload.to_string();
    let last = altered_payload.pop().unwrap();
    altered_payload.push(if last == 'A' { 'B' } else { 'A' });
    let altered = format!("{altered_payload}.{signature}");
    // (A token names its job: another job's token reaches only that job.)
    let mut refused = 0;
    for (what, bad) in [("expired", expired), ("forged", forged), ("altered", altered)] {
        let response = get(&app, &format!("/video/play/{bad}/poster.jpg")).await;
        assert_eq!(response.status(), 403, "{what} token");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "invalid-playback-token", "{what}: {problem}");
        refused += 1;
    }
    let unsigned = get(&app, "/video/play/not-a-token/poster.jpg").await;
    assert_eq!(unsigned.status(), 403);

    // A browser on the player's origin: the preflight and the read.
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url(&poster))
        .header("Origin", "https://player.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "range")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "preflight: {}", preflight.status());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://player.example");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("GET"));
    assert!(h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase().contains("range"));
    let read = app.http.get(app.url(&poster)).header("Origin", "https://player.example").send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["access-control-allow-origin"], "https://player.example");
    let elsewhere = app.http.get(app.url(&poster)).header("Origin", "https://elsewhere.example").send().await.unwrap();
    assert!(!elsewhere.headers().contains_key("access-control-allow-origin"));
    println!("playback: {refused} bad tokens refused with 403, CORS preflight answered for the allowed origin");
    app.stop().await;
}
