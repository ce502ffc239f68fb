//! (f) split scaling and (g) the quality cost of splitting: one worker
//! encoding a 120 s 720p input whole against two workers encoding it in
//! 20 s pieces, every ffmpeg on one thread; the serial parts from the job's
//! record, a model of larger fleets, and the two outputs compared.

use std::fmt::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::measure::*;
use super::report::{median, spread, Pair, Report};
use super::scenarios::{post_file, Events};

const SECONDS: u32 = 120;
const SEGMENT: u64 = 20;

/// The serial parts of one split job, in ms, from its record's timings.
#[derive(Debug, Clone, Copy, Default)]
struct Serial {
    plan: f64,
    audio: f64,
    join: f64,
    /// Input copies and piece uploads of every piece, summed.
    transfers: f64,
    /// Encode time of every piece, summed.
    pieces: f64,
    count: usize,
}

fn serial_of(record: &serde_json::Value) -> Serial {
    let timings = record["x-plan"]["timings"].as_object().cloned().unwrap_or_default();
    let total = |t: &serde_json::Value| {
        ["fetch-ms", "encode-ms", "store-ms"].iter().map(|k| t[k].as_f64().unwrap_or(0.0)).sum::<f64>()
    };
    let mut s = Serial::default();
    for (name, t) in &timings {
        match name.as_str() {
            "plan" => s.plan = total(t),
            "audio" => s.audio = total(t),
            "join" => s.join = total(t),
            _ => {
                s.transfers += t["fetch-ms"].as_f64().unwrap_or(0.0) + t["store-ms"].as_f64().unwrap_or(0.0);
                s.pieces += t["encode-ms"].as_f64().unwrap_or(0.0);
                s.count += 1;
            }
        }
    }
    s
}

/// Each task's start and end in seconds after the submission, by start:
/// where the workers waited.
fn timeline(record: &serde_json::Value) -> String {
    let time = |v: &serde_json::Value| {
        v.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.timestamp_millis() as f64)
    };
    let Some(submitted) = time(&record["submitted-utc-time"]) else { return String::new() };
    let mut spans: Vec<(f64, f64, String)> = record["x-plan"]["timings"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, t)| {
            let start = (time(&t["started"])? - submitted) / 1000.0;
            let ms: f64 = ["fetch-ms", "encode-ms", "store-ms"].iter().map(|k| t[k].as_f64().unwrap_or(0.0)).sum();
            Some((start, start + ms / 1000.0, name.clone()))
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    spans.iter().map(|(a, b, n)| format!("{n} {a:.1}–{b:.1}")).collect::<Vec<_>>().join(", ")
}

/// Mean and minimum per-frame PSNR of `output` against `source`.
fn psnr(output: &Path, source: &Path, dir: &Path) -> (f64, f64) {
    let stats = dir.join("psnr.log");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(output)
        .arg("-i")
        .arg(source)
        .args(["-lavfi", &format!("[0:v][1:v]psnr=stats_file={}", stats.display()), "-f", "null", "-"])
        .status()
        .unwrap();
    assert!(status.success());
    let values: Vec<f64> = std::fs::read_to_string(&stats)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("psnr_avg:")))
        .map(|v| v.parse().unwrap_or(100.0))
        .collect();
    (values.iter().sum::<f64>() / values.len() as f64, values.iter().cloned().fold(f64::MAX, f64::min))
}

/// (f) and (g).
pub async fn split_scaling(env: &BenchEnv, report: &mut Report, pairs: usize) {
    let one_thread = ("TRANSCODER__WORKER__FFMPEG_THREADS", "1".to_string());
    let whole = Service::start(env, "api", "f-whole").await;
    let whole_workers =
        [whole.worker(env, &[one_thread.clone(), ("TRANSCODER__WORKER__SPLIT_MIN_SECONDS", "0".into())])];
    let split = Service::start(env, "api", "f-split").await;
    let split_env = [
        one_thread.clone(),
        ("TRANSCODER__WORKER__SPLIT_MIN_SECONDS", "60".to_string()),
        ("TRANSCODER__WORKER__SEGMENT_SECONDS", SEGMENT.to_string()),
    ];
    let split_workers = [split.worker(env, &split_env), split.worker(env, &split_env)];
    let mut whole_events = Events::bind(&whole.prefix, "job.completed.*").await;
    let mut split_events = Events::bind(&split.prefix, "job.completed.*").await;
    let split_store = env.storage(&split.bucket).await;
    let whole_store = env.storage(&whole.bucket).await;

    let input = clip(env.dir.path(), SECONDS, 1280, 720);
    let bytes = std::fs::read(&input).unwrap();
    let mut results = Vec::new();
    let mut serials = Vec::new();
    let mut outputs = None;
    for i in 0..pairs {
        let (mut w, mut s) = ((0.0, String::new()), (0.0, String::new()));
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let (svc, events) = if side == 0 { (&whole, &mut whole_events) } else { (&split, &mut split_events) };
            let (id, accepted) = post_file(env, svc, bytes.clone()).await;
            events.completed(&id).await;
            let wall = accepted.elapsed().as_secs_f64();
            if side == 0 {
                w = (wall, id);
            } else {
                s = (wall, id);
            }
        }
        let record: serde_json::Value =
            split_store.get_json(&format!("jobs/default/{}.json", s.1)).await.unwrap().unwrap();
        let serial = serial_of(&record);
        eprintln!("(f) pair {}: one worker whole {:.1} s, two workers split {:.1} s; {serial:?}", i + 1, w.0, s.0);
        eprintln!("(f) pair {} split timeline (s after submission): {}", i + 1, timeline(&record));
        results.push(Pair { a: s.0, b: w.0, a_cpu: 0.0, b_cpu: 0.0 });
        serials.push(serial);
        outputs = Some((w.1, s.1));
    }
    drop(whole_workers);
    drop(split_workers);
    let contention = parallel_cost(&input, env.dir.path());
    eprintln!("(f) two bare piece encodes: {contention:?}");

    // (g): the last pair's outputs side by side.
    let (whole_id, split_id) = outputs.expect("at least one pair");
    let fetch = |store: transcoder::storage::Storage, id: String, name: &str| {
        let path = env.dir.path().join(name);
        async move {
            store.download_to_file(&format!("outputs/default/{id}/output.mp4"), &path).await.unwrap().unwrap();
            path
        }
    };
    let whole_out = fetch(whole_store, whole_id, "g-whole.mp4").await;
    let split_out = fetch(split_store, split_id, "g-split.mp4").await;
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let (whole_psnr, split_psnr) = (psnr(&whole_out, &input, env.dir.path()), psnr(&split_out, &input, env.dir.path()));
    eprintln!("(g) whole {whole_psnr:?} {} B, split {split_psnr:?} {} B", size(&whole_out), size(&split_out));
    whole.stop();
    split.stop();

    report.sections.push(('f', scaling_section(&results, &serials, pairs, contention)));
    report.sections.push(('g', quality_section((size(&whole_out), whole_psnr), (size(&split_out), split_psnr))));
}

/// Two of the split job's piece encodes (the service's own arguments, one
/// thread each) run bare, one after the other and then both at once: how
/// much slower ffmpeg runs when both cores encode, on this machine. Returns
/// (seconds one after the other, seconds both at once).
fn parallel_cost(input: &Path, dir: &Path) -> (f64, f64) {
    use transcoder::domain::picture::Picture;
    use transcoder::domain::{JobOptions, PieceSpec};
    let (options, picture) = (JobOptions::default(), Picture::default());
    let media =
        transcoder::transcode::Media { input, demuxer: "mov", options: &options, threads: 1, picture: &picture };
    let piece = |index: u32| {
        let start = index as f64 * SEGMENT as f64;
        let spec = PieceSpec {
            index,
            start_frame: (start * 25.0) as u64,
            frames: SEGMENT * 25,
            seek_seconds: start - 0.02,
            duration_seconds: SEGMENT as f64,
        };
        transcoder::transcode::piece_args(&media, &spec, &dir.join(format!("bare-{index}.mp4")))
    };
    let run = |args: Vec<String>| {
        let status = Command::new("ffmpeg").args(args).arg("-loglevel").arg("error").status().unwrap();
        assert!(status.success());
    };
    let t0 = Instant::now();
    run(piece(1));
    run(piece(2));
    let serial = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    std::thread::scope(|s| {
        let (a, b) = (piece(1), piece(2));
        s.spawn(|| run(a));
        s.spawn(|| run(b));
    });
    (serial, t1.elapsed().as_secs_f64())
}

fn scaling_section(results: &[Pair], serials: &[Serial], pairs: usize, contention: (f64, f64)) -> String {
    let mut md = String::new();
    let ratios: Vec<f64> = results.iter().map(|p| p.a / p.b).collect();
    let col = |f: &dyn Fn(&Pair) -> f64| spread(&results.iter().map(f).collect::<Vec<_>>(), 1);
    let _ = writeln!(md, "## (f) Split scaling\n");
    let _ = writeln!(
        md,
        "A {SECONDS} s 1280×720 input, mp4, from the 202 to the completion event: one worker process with \
         `worker.ffmpeg_threads = 1` encoding it whole, against two worker processes with `ffmpeg_threads = 1` \
         each and the input split into {SEGMENT} s pieces. {pairs} interleaved pairs. Target: ratio ≤ 0.55 \
         (ideal 0.50).\n"
    );
    let _ = writeln!(md, "| one worker, whole s | two workers, split s | ratio |");
    let _ = writeln!(md, "|---|---|---|");
    let _ = writeln!(md, "| {} | {} | {} |\n", col(&|p| p.b), col(&|p| p.a), spread(&ratios, 3));
    let med = |f: &dyn Fn(&Serial) -> f64| median(&serials.iter().map(f).collect::<Vec<_>>());
    let (plan, audio, join, transfers, pieces) =
        (med(&|s| s.plan), med(&|s| s.audio), med(&|s| s.join), med(&|s| s.transfers), med(&|s| s.pieces));
    let count = serials.first().map_or(0, |s| s.count);
    let _ = writeln!(
        md,
        "The split job's parts, from its record (`x-plan.timings`, medians over the pairs): the plan (input copy, \
         probe and frame listing, in-process for MP4), the audio when one task encodes it whole (webm; for mp4 each piece encodes \
         its own range of the AAC audio, inside the piece encodes, and this is 0), the join (pieces and audio \
         copied in, concatenated, output described and stored; the poster and storyboard made from the input's \
         keyframes meanwhile), and the transfers of the {count} pieces (each \
         copies the input, or reuses the copy its worker already has, and stores its piece).\n"
    );
    let _ = writeln!(
        md,
        "| plan ms | audio ms | join ms | piece transfers ms (all pieces) | piece encodes ms (all pieces) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    let _ = writeln!(md, "| {plan:.0} | {audio:.0} | {join:.0} | {transfers:.0} | {pieces:.0} |\n");
    let (apart, together) = contention;
    let _ = writeln!(
        md,
        "What two cores give on this machine, measured in the same run: two of the job's piece encodes ({SEGMENT} \
         s each, the service's arguments, one thread each) run bare took {apart:.1} s one after the other and \
         {together:.1} s both at once, so each ffmpeg ran {:.2}× as long when both cores encoded. With that, \
         and the plan and the join in series, the best a split onto two workers can do here is a ratio of about \
         {:.2}: the pieces' encodes above ({:.1} s) against the whole encode's {:.1} s (median) are the cost \
         beyond that: the service's own work beside the encodes.\n",
        2.0 * together / apart,
        (together / apart) + (plan + join) / 1000.0 / median(&results.iter().map(|p| p.b).collect::<Vec<_>>()),
        pieces / 1000.0,
        median(&results.iter().map(|p| p.b).collect::<Vec<_>>()),
    );

    // The model: the plan and the join run alone; the audio and the pieces
    // share the workers in waves of one task each.
    let per_input_second = pieces / SECONDS as f64;
    let transfer_per_piece = transfers / count.max(1) as f64;
    let audio_per_second = audio / SECONDS as f64;
    let (plan_per_second, join_per_second) = (plan / SECONDS as f64, join / SECONDS as f64);
    let predict = |input_s: f64, workers: usize| -> f64 {
        let n = (input_s / SEGMENT as f64).round().max(1.0) as usize;
        let piece = per_input_second * SEGMENT as f64 + transfer_per_piece;
        let tasks: Vec<f64> =
            std::iter::once(audio_per_second * input_s).chain(std::iter::repeat_n(piece, n)).collect();
        // Longest first onto the least loaded worker.
        let mut load = vec![0.0f64; workers];
        for t in tasks {
            let least = load.iter_mut().min_by(|a, b| a.partial_cmp(b).unwrap()).unwrap();
            *least += t;
        }
        let busiest = load.iter().cloned().fold(0.0, f64::max);
        (plan_per_second * input_s + busiest + join_per_second * input_s) / 1000.0
    };
    let _ = writeln!(
        md,
        "A model, not a measurement: a 10-minute input of the same kind on N one-core workers, from the parts \
         above scaled by duration (plan, audio, join and piece encodes proportional to the input's length, one \
         transfer per piece), the plan and the join alone, the audio and the {} pieces spread over the workers. \
         It assumes each worker has a core of its own and a store that keeps up. Plotted with the two measured \
         points in [split-scaling.svg](split-scaling.svg).\n",
        600 / SEGMENT
    );
    let _ = writeln!(md, "| workers | predicted wall s | speed-up over one worker |");
    let _ = writeln!(md, "|---|---|---|");
    let one = predict(600.0, 1);
    let mut curve = Vec::new();
    for n in [1usize, 2, 4, 8, 16, 32] {
        let t = predict(600.0, n);
        curve.push((n as f64, t));
        if n >= 4 || n == 1 {
            let _ = writeln!(md, "| {n} | {t:.1} | {:.1}× |", one / t);
        }
    }
    let _ = writeln!(md);
    let whole = median(&results.iter().map(|p| p.b).collect::<Vec<_>>()) * 600.0 / SECONDS as f64;
    let split = median(&results.iter().map(|p| p.a).collect::<Vec<_>>()) * 600.0 / SECONDS as f64;
    write_plot(&curve, whole, split);
    md
}

fn quality_section(whole: (f64, (f64, f64)), split: (f64, (f64, f64))) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## (g) Quality cost of splitting\n");
    let _ = writeln!(
        md,
        "The last pair of (f): the split output against the whole one, both compared frame by frame with the \
         source (ffmpeg's `psnr` filter). Targets: size within ±5 %, mean PSNR within 0.3 dB.\n"
    );
    let _ = writeln!(md, "| output | size bytes | mean PSNR dB | min PSNR dB |");
    let _ = writeln!(md, "|---|---|---|---|");
    let _ = writeln!(md, "| whole (one ffmpeg) | {:.0} | {:.2} | {:.2} |", whole.0, whole.1 .0, whole.1 .1);
    let _ = writeln!(md, "| split ({SEGMENT} s pieces) | {:.0} | {:.2} | {:.2} |", split.0, split.1 .0, split.1 .1);
    let _ = writeln!(
        md,
        "\nSize split / whole = {:.3} ({:+.1} %); mean PSNR split − whole = {:+.2} dB; min PSNR split − whole = \
         {:+.2} dB.\n",
        split.0 / whole.0,
        (split.0 / whole.0 - 1.0) * 100.0,
        split.1 .0 - whole.1 .0,
        split.1 .1 - whole.1 .1
    );
    md
}

/// docs/split-scaling.svg: the model's curve of wall time against workers,
/// with the measured points scaled to 10 minutes.
fn write_plot(curve: &[(f64, f64)], whole: f64, split: f64) {
    let (w, h, pad) = (640.0, 400.0, 60.0);
    let max_t = curve.iter().map(|p| p.1).fold(whole.max(split), f64::max) * 1.1;
    let x = |n: f64| pad + (n.log2() / 5.0) * (w - 2.0 * pad);
    let y = |t: f64| h - pad - t / max_t * (h - 2.0 * pad);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">10-minute 720p input: wall time against one-core workers (model)</text>\n\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n",
        w / 2.0,
        h - pad,
        w - pad,
        h - pad,
        h - pad
    );
    for (n, _) in curve {
        let _ = writeln!(svg, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{n}</text>", x(*n), h - pad + 18.0);
    }
    for k in 0..=4 {
        let t = max_t * k as f64 / 4.0;
        let _ = writeln!(svg, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{t:.0} s</text>", pad - 6.0, y(t) + 4.0);
    }
    let _ = writeln!(svg, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">workers</text>", w / 2.0, h - 16.0);
    let points: Vec<String> = curve.iter().map(|(n, t)| format!("{:.1},{:.1}", x(*n), y(*t))).collect();
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>",
        points.join(" ")
    );
    for (n, t) in curve {
        let _ = writeln!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#1f77b4\"/>", x(*n), y(*t));
    }
    for (n, t, label) in [(1.0, whole, "measured, whole"), (2.0, split, "measured, split")] {
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d62728\">{label} (×5)</text>",
            x(n),
            y(t),
            x(n) + 8.0,
            y(t) - 8.0
        );
    }
    svg.push_str("</svg>\n");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/split-scaling.svg");
    std::fs::write(path, svg).unwrap();
    eprintln!("wrote {path}");
}
