//! `format=hls` and `format=dash`: the ladder, a master playlist a real
//! parser accepts with measured bandwidths and real codecs, segments that
//! start with a keyframe at the same time in every rendition, and every
//! rendition decoding over HTTP with the input's frame count.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::helpers::*;

/// A 20 s 1280×720 25 fps clip with a tone: 500 frames.
const FRAMES: u64 = 500;

async fn submit_done(app: &TestApp, sub: &mut Subscriber, clip: &Path, query: &str) -> Value {
    let id = app.submit(clip, query).await;
    let end = sub.wait_for_any(&[&format!("job.completed.{id}"), &format!("job.failed.{id}")], JOB_TIMEOUT).await;
    assert_eq!(end.body["data"]["status"], "done", "{}", end.body);
    app.status(&id).await
}

fn clip(app: &TestApp) -> std::path::PathBuf {
    Clip { seconds: 20, width: 1280, height: 720, audio: true }.make(app.dir.path(), "clip720.mp4")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hls_job_is_a_ladder_that_a_real_parser_and_ffmpeg_read_over_http() {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let clip = clip(&app);
    let id = app.submit(&clip, "?format=hls").await;
    // Segments reach the store while ffmpeg still writes the others.
    let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
    let first = loop {
        let keys = app.keys(&format!("outputs/default/{id}/")).await;
        if let Some(k) = keys.iter().find(|k| k.ends_with(".m4s")) {
            break k.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no segment stored within {JOB_TIMEOUT:?}");
        // Polling the store's listing (a condition with a deadline).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let during = app.status(&id).await;
    assert_eq!(during["status"], "processing", "{first} stored, but the job is {}", during["status"]);
    let end = sub.wait_for_any(&[&format!("job.completed.{id}"), &format!("job.failed.{id}")], JOB_TIMEOUT).await;
    assert_eq!(end.body["data"]["status"], "done", "{}", end.body);
    let doc = app.status(&id).await;
    println!("hls: {first} was stored while the job was processing at {}%", during["progress-percent"]);
    let id = id.as_str();
    let output = &doc["output"];
    assert_eq!(output["manifest"], "master.m3u8");
    assert_eq!(output["content-type"], "application/vnd.apple.mpegurl");
    let heights: Vec<u64> =
        output["renditions"].as_array().unwrap().iter().map(|r| r["height"].as_u64().unwrap()).collect();
    assert_eq!(heights, vec![720, 480, 360, 240], "the default ladder of a 720p input");

    // The download answers with the manifest's address.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let found = client.get(app.url(&format!("/video/download/{id}"))).send().await.unwrap();
    assert_eq!(found.status(), 302);
    assert_eq!(found.headers()["location"], format!("/video/download/{id}/master.m3u8"));

    // The package under its playback URL, read by the m3u8 parser.
    let master = app.url(doc["links"]["play"].as_str().unwrap());
    assert!(master.ends_with("/master.m3u8"), "{master}");
    let report = hls_check(&master);
    let variants = report["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 4);
    for (v, r) in variants.iter().zip(output["renditions"].as_array().unwrap()) {
        assert_eq!(v["resolution"][1], r["height"]);
        assert_eq!(v["bandwidth"], r["bandwidth"]);
        assert_eq!(v["codecs"], r["codecs"]);
        println!(
            "hls {}p: BANDWIDTH {} (measured peak {}), AVERAGE-BANDWIDTH {}, CODECS {}",
            r["height"], v["bandwidth"], v["peak_bps"], v["average_bandwidth"], v["codecs"]
        );
    }

    // Every segment starts with a keyframe at the same time in every rendition.
    let segments = variants[0]["segments"].as_array().unwrap().len();
    assert!(segments >= 5, "{segments} segments of 20 s");
    let http = http_client();
    for k in 0..segments {
        let mut starts = Vec::new();
        for (n, v) in variants.iter().enumerate() {
            let (pts, key) =
                first_packet(&http, app.dir.path(), v["init"].as_str().unwrap(), v["segments"][k].as_str().unwrap(), n)
                    .await;
            assert!(key, "segment {k} of {} does not start with a keyframe", v["uri"]);
            starts.push(pts);
        }
        assert!(starts.iter().all(|s| (s - starts[0]).abs() < 1e-6), "segment {k} starts at {starts:?}");
    }

    // ffmpeg decodes every variant over HTTP: the input's 500 frames.
    for v in variants {
        assert_eq!(decoded_frames(v["uri"].as_str().unwrap(), "v:0"), FRAMES, "{}", v["uri"]);
    }
    // The poster and the storyboard come from the top rendition.
    let poster = http.get(app.url(doc["links"]["poster"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(poster.status(), 200);
    let poster_file = app.dir.path().join("poster.jpg");
    std::fs::write(&poster_file, poster.bytes().await.unwrap()).unwrap();
    let p = probe(&poster_file);
    assert_eq!(
        (stream(&p, "video").unwrap()["width"].as_u64(), stream(&p, "video").unwrap()["height"].as_u64()),
        (Some(1280), Some(720))
    );
    let vtt =
        http.get(app.url(doc["links"]["storyboard"].as_str().unwrap())).send().await.unwrap().text().await.unwrap();
    assert!(vtt.starts_with("WEBVTT") && vtt.matches(" --> ").count() >= 5, "{vtt}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dash_job_with_two_renditions_is_an_mpd_ffmpeg_reads_over_http() {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let clip = clip(&app);
    let doc = submit_done(&app, &mut sub, &clip, "?format=dash&renditions=360,720").await;
    let output = &doc["output"];
    assert_eq!(output["manifest"], "manifest.mpd");
    let heights: Vec<u64> =
        output["renditions"].as_array().unwrap().iter().map(|r| r["height"].as_u64().unwrap()).collect();
    assert_eq!(heights, vec![720, 360]);
    let mpd_url = app.url(doc["links"]["play"].as_str().unwrap());
    let mpd = http_client().get(&mpd_url).send().await.unwrap();
    assert_eq!(mpd.headers()["content-type"], "application/dash+xml");
    let mpd = mpd.text().await.unwrap();
    let representations = mpd.matches("<Representation ").count();
    assert_eq!(representations, 3, "two video and one audio representation: {mpd}");
    assert_eq!(mpd.matches(" codecs=\"").count(), 3, "{mpd}");
    assert_eq!(mpd.matches(" bandwidth=\"").count(), 3, "{mpd}");
    assert!(mpd.contains("codecs=\"avc1.") && mpd.contains("codecs=\"mp4a.40.2\""), "{mpd}");

    // ffmpeg's dash demuxer reads it over HTTP: the two heights, each
    // rendition with the input's frames.
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_type,height", "-of", "json", &mpd_url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let streams: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut probed: Vec<u64> = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .map(|s| s["height"].as_u64().unwrap())
        .collect();
    probed.sort_unstable();
    assert_eq!(probed, vec![360, 720]);
    for n in 0..2 {
        assert_eq!(decoded_frames(&mpd_url, &format!("v:{n}")), FRAMES, "rendition {n}");
    }
    // An audio segment is served as audio.
    let audio = http_client().get(mpd_url.replace("manifest.mpd", "init-2.mp4")).send().await.unwrap();
    assert_eq!(audio.headers()["content-type"], "audio/mp4");
    let poster = http_client().get(app.url(doc["links"]["poster"].as_str().unwrap())).send().await.unwrap();
    let poster_file = app.dir.path().join("poster.jpg");
    std::fs::write(&poster_file, poster.bytes().await.unwrap()).unwrap();
    let p = probe(&poster_file);
    let size = (stream(&p, "video").unwrap()["width"].as_u64(), stream(&p, "video").unwrap()["height"].as_u64());
    assert_eq!(size, (Some(1280), Some(720)), "the poster at the top rendition's size");
    let vtt = http_client().get(app.url(doc["links"]["storyboard"].as_str().unwrap())).send().await.unwrap();
    assert!(vtt.text().await.unwrap().matches(" --> ").count() >= 5);
    println!("dash: {representations} representations, both renditions {FRAMES} frames over HTTP");
    app.stop().await;
}

#[tokio::test]
async fn unknown_or_duplicate_renditions_and_mismatched_options_are_422() {
    let app = spawn_app().await;
    for query in [
        "?format=hls&renditions=720,700",
        "?format=dash&renditions=720,720",
        "?format=mp4&renditions=720",
        "?format=hls&height=360",
    ] {
        let response = app.submit_bytes(b"not sent".to_vec(), "video/mp4", query).await;
        assert_eq!(response.status(), 422, "{query}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "invalid-option", "{query}: {problem}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_downloads_a_whole_hls_package_that_ffmpeg_plays_from_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("pkgcli");
    let (_serve, address) = crate::procs::spawn_serve(dir.path(), &prefix, &[]).await;
    let clip = Clip { seconds: 6, width: 640, height: 360, audio: true }.make(dir.path(), "clip.mp4");
    let out = dir.path().join("package");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .args(["submit", clip.to_str().unwrap(), "--format", "hls", "--renditions", "360,240", "--wait"])
        .args(["-o", out.to_str().unwrap(), "--server", &address])
        .env("TRANSCODER__AMQP__PREFIX", &prefix)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "submit failed: {stderr}");
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for expected in ["master.m3u8", "360p.m3u8", "240p.m3u8", "360p_init.mp4", "240p_00001.m4s", "poster.jpg"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    assert!(stderr.contains(&format!("saved {} files", names.len())), "{stderr} vs {names:?}");
    // The folder plays on its own: the local master playlist, every frame.
    let local = out.join("master.m3u8");
    for n in 0..2 {
        let frames = decoded_frames(local.to_str().unwrap(), &format!("v:{n}"));
        assert_eq!(frames, 150, "rendition {n} from the downloaded folder");
    }
    delete_topology(&prefix);
}
