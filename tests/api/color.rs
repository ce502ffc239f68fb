//! Colour and scan: HDR (PQ, HLG) tone-mapped to SDR BT.709, SDR kept or
//! converted to BT.709, every output tagged with what it is, interlaced
//! input deinterlaced and progressive input left alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::helpers::*;

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).output().expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A 2 s 640×360 10-bit HEVC .mov with the given HDR transfer.
fn hdr_clip(dir: &Path, transfer: &str) -> PathBuf {
    let path = dir.join(format!("{transfer}.mov"));
    let mut params = format!("log-level=error:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc");
    if transfer == "smpte2084" {
        params.push_str(
            ":master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400",
        );
    }
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25:duration=2",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=2",
        "-vf",
        "format=yuv420p10le",
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        &params,
        "-color_primaries",
        "bt2020",
        "-color_trc",
        transfer,
        "-colorspace",
        "bt2020nc",
        "-tag:v",
        "hvc1",
        "-c:a",
        "aac",
        "-shortest",
        path.to_str().unwrap(),
    ]);
    path
}

/// ffprobe's colour fields of the first video stream.
fn color_of(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=pix_fmt,color_primaries,color_transfer,color_space,color_range")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["streams"][0].clone()
}

/// The status document's colour against ffprobe's fields.
fn assert_color_matches(doc: &Value, probe: &Value) {
    for (ours, theirs) in [
        ("primaries", "color_primaries"),
        ("transfer", "color_transfer"),
        ("matrix", "color_space"),
        ("range", "color_range"),
    ] {
        let expected = probe.get(theirs).and_then(Value::as_str).filter(|v| *v != "unknown");
        assert_eq!(doc[ours].as_str(), expected, "{ours}: {doc} vs {probe}");
    }
}

/// Mean luma (signalstats YAVG) over every frame of `input` after `filters`.
fn mean_luma(input: &Path, filters: &str) -> f64 {
    let chain = if filters.is_empty() { "signalstats".to_string() } else { format!("{filters},signalstats") };
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(input)
        .args(["-vf", &format!("{chain},metadata=print:key=lavfi.signalstats.YAVG:file=-"), "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let values: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("lavfi.signalstats.YAVG="))
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(!values.is_empty());
    values.iter().sum::<f64>() / values.len() as f64
}

/// Mean per-frame PSNR of `a` against `b` after each input's own filters
/// (both start at time 0).
fn psnr(a: &Path, a_filters: &str, b: &str, b_filters: &str, lavfi_b: bool) -> f64 {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-i"]).arg(a);
    if lavfi_b {
        cmd.args(["-f", "lavfi"]);
    }
    cmd.args(["-i", b]);
    let graph = format!(
        "[0:v]setpts=PTS-STARTPTS{}[a];[1:v]setpts=PTS-STARTPTS{}[b];[a][b]psnr=stats_file=-",
        if a_filters.is_empty() { String::new() } else { format!(",{a_filters}") },
        if b_filters.is_empty() { String::new() } else { format!(",{b_filters}") },
    );
    let out = cmd.args(["-lavfi", &graph, "-f", "null", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let values: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("psnr_avg:")))
        .map(|v| v.parse().unwrap_or(100.0))
        .collect();
    assert!(!values.is_empty());
    values.iter().sum::<f64>() / values.len() as f64
}

async fn run_job(app: &TestApp, sub: &mut Subscriber, clip: &Path, query: &str, name: &str) -> (Value, PathBuf) {
    let id = app.submit(clip, query).await;
    let done = sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    let response = app.http.get(app.url(&format!("/video/download/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let path = app.dir.path().join(name);
    std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
    (done.body["data"].clone(), path)
}

fn assert_sdr_bt709(output: &Path) {
    let c = color_of(output);
    assert_eq!(c["pix_fmt"], "yuv420p", "{c}");
    for key in ["color_primaries", "color_transfer", "color_space"] {
        assert_eq!(c[key], "bt709", "{key}: {c}");
    }
    assert_eq!(c["color_range"], "tv", "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdr10_and_hlg_inputs_are_tone_mapped_to_tagged_8_bit_bt709_in_mp4_and_webm() {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "job.completed.*").await;
    for (transfer, tin) in [("smpte2084", "smpte2084"), ("arib-std-b67", "arib-std-b67")] {
        let clip = hdr_clip(app.dir.path(), transfer);
        // The documented reference chain, run directly.
        let reference = format!(
            "scale=trunc(iw/2)*2:trunc(ih/2)*2,zscale=tin={tin}:min=2020_ncl:pin=2020:rin=limited:{}",
            transcoder::domain::picture::TONEMAP
        );
        let expected = mean_luma(&clip, &reference);
        for format in ["mp4", "webm"] {
            let (doc, output) =
                run_job(&app, &mut sub, &clip, &format!("?format={format}"), &format!("o.{format}")).await;
            assert_sdr_bt709(&output);
            let luma = mean_luma(&output, "");
            let off = (luma - expected).abs() / expected;
            eprintln!("{transfer} → {format}: mean luma {luma:.1}, reference {expected:.1} ({:.1} %)", off * 100.0);
            assert!(off <= 0.15, "{transfer} {format}: mean luma {luma:.1} vs reference {expected:.1}");
            // The poster (made from the input's keyframes while it encodes)
            // is tone-mapped like the output.
            let id = doc["id"].as_str().unwrap();
            let poster = app.http.get(app.url(&format!("/video/download/{id}/poster.jpg"))).send().await.unwrap();
            assert_eq!(poster.status(), 200);
            let poster_file = app.dir.path().join(format!("poster-{transfer}-{format}.jpg"));
            std::fs::write(&poster_file, poster.bytes().await.unwrap()).unwrap();
            let poster_luma = mean_luma(&poster_file, "scale=out_range=tv,format=yuv420p");
            let off = (poster_luma - expected).abs() / expected;
            eprintln!("{transfer} → {format} poster: mean luma {poster_luma:.1} ({:.1} %)", off * 100.0);
            assert!(off <= 0.15, "{transfer} {format}: poster's mean luma {poster_luma:.1} vs {expected:.1}");
            assert_eq!(doc["input"]["color"]["hdr"], true, "{doc}");
            assert_eq!(doc["output"]["color"]["hdr"], false);
            assert_color_matches(&doc["input"]["color"], &color_of(&clip));
            assert_color_matches(&doc["output"]["color"], &color_of(&output));
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdr_bt709_keeps_its_colours_and_an_untagged_sd_input_is_converted_to_tagged_bt709() {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "job.completed.*").await;
    let tagged = app.dir.path().join("bt709.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=25:duration=2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-qp",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-colorspace",
        "bt709",
        tagged.to_str().unwrap(),
    ]);
    let (doc, output) = run_job(&app, &mut sub, &tagged, "", "tagged.mp4").await;
    assert_sdr_bt709(&output);
    let kept = psnr(&output, "", tagged.to_str().unwrap(), "", false);
    eprintln!("bt709 input: PSNR {kept:.2} dB");
    assert!(kept >= 35.0, "bt709 input: PSNR {kept:.2} dB");
    assert_eq!(doc["input"]["color"]["matrix"], "bt709");
    assert_color_matches(&doc["output"]["color"], &color_of(&output));

    // 640×480 with no colour tags: taken as BT.601 and converted. Compared
    // in RGB, each side decoded with its own matrix.
    let untagged = Clip { seconds: 2, width: 640, height: 480, audio: false }.make(app.dir.path(), "sd.mp4");
    assert!(color_of(&untagged).get("color_space").is_none());
    let (doc, output) = run_job(&app, &mut sub, &untagged, "", "sd-out.mp4").await;
    assert_sdr_bt709(&output);
    assert_eq!(doc["input"]["color"]["matrix"], Value::Null);
    let rgb = psnr(
        &output,
        "scale=in_color_matrix=bt709,format=rgb24",
        untagged.to_str().unwrap(),
        "scale=in_color_matrix=bt601,format=rgb24",
        false,
    );
    let naive = psnr(
        &output,
        "scale=in_color_matrix=bt601,format=rgb24",
        untagged.to_str().unwrap(),
        "scale=in_color_matrix=bt601,format=rgb24",
        false,
    );
    eprintln!("untagged SD: RGB PSNR {rgb:.2} dB (read as if unconverted: {naive:.2} dB)");
    // The clip itself is a lossy encode, so the bar is the gap to the
    // unconverted reading rather than a high absolute figure.
    assert!(rgb >= 28.0 && rgb >= naive + 2.0, "untagged SD: RGB PSNR {rgb:.2} dB, unconverted reading {naive:.2} dB");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1080i_input_is_deinterlaced_and_a_progressive_one_is_not() {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "job.completed.*").await;
    let pattern = "testsrc2=size=1920x1080:rate=50:duration=2";
    let interlaced = app.dir.path().join("i1080.ts");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        pattern,
        "-vf",
        "interlace=scan=tff:lowpass=0",
        "-c:v",
        "mpeg2video",
        "-flags",
        "+ilme+ildct",
        "-top",
        "1",
        "-q:v",
        "2",
        "-f",
        "mpegts",
        interlaced.to_str().unwrap(),
    ]);
    let progressive = app.dir.path().join("p1080.ts");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        pattern,
        "-vf",
        "select='not(mod(n,2))',setpts=N/25/TB",
        "-r",
        "25",
        "-c:v",
        "mpeg2video",
        "-q:v",
        "2",
        "-f",
        "mpegts",
        progressive.to_str().unwrap(),
    ]);
    // The progressive ground truth: the 50p frames the first fields come from.
    let truth = format!("{pattern},select='not(mod(n,2))',setpts=N/25/TB");
    let to_720 = "scale=1280:720";

    let (_, output) = run_job(&app, &mut sub, &interlaced, "?height=720", "i720.mp4").await;
    let deinterlaced = psnr(&output, "", &truth, to_720, true);
    let frames = crate::helpers::probe(&output)["streams"][0]["nb_frames"].as_str().unwrap().to_string();
    eprintln!("1080i25 → 720p: PSNR {deinterlaced:.2} dB against the progressive truth, {frames} frames");
    assert!(deinterlaced >= 38.0, "1080i → 720p: PSNR {deinterlaced:.2} dB");
    assert_eq!(frames, "50", "the frame rate is kept (one frame per frame)");

    let (_, output) = run_job(&app, &mut sub, &progressive, "?height=720", "p720.mp4").await;
    let service = psnr(&output, "", &truth, to_720, true);
    // The same encode without any deinterlacing, run directly.
    let direct = app.dir.path().join("p720-direct.mp4");
    ffmpeg(&[
        "-i",
        progressive.to_str().unwrap(),
        "-vf",
        "scale=-2:720",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-an",
        direct.to_str().unwrap(),
    ]);
    let untouched = psnr(&direct, "", &truth, to_720, true);
    eprintln!("1080p25 → 720p: PSNR {service:.2} dB; the same encode run directly {untouched:.2} dB");
    assert!(service >= untouched - 0.3, "progressive input lost {:.2} dB: deinterlaced?", untouched - service);
    app.stop().await;
}
