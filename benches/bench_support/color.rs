//! (l) The cost of colour conversion: a 60 s 1080p HDR10 job (tone-mapped
//! to SDR BT.709) against the same job from an SDR input of the same
//! pattern, both encoded whole by one worker to 1080p mp4.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::measure::*;
use super::report::{spread, Pair, Report};
use super::scenarios::{post_file, Events};

const SECONDS: u32 = 60;

/// The pattern as 10-bit HEVC tagged with `transfer` (BT.2020 for PQ,
/// BT.709 otherwise), with audio.
fn make(dir: &Path, name: &str, transfer: &str) -> PathBuf {
    let path = dir.join(name);
    if !path.exists() {
        let (primaries, matrix, params) = match transfer {
            "smpte2084" => (
                "bt2020",
                "bt2020nc",
                "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc:max-cll=1000,400",
            ),
            _ => ("bt709", "bt709", "log-level=error"),
        };
        let pattern = format!("testsrc2=size=1920x1080:rate=25:duration={SECONDS}");
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", &pattern])
            .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:duration={SECONDS}")])
            .args(["-vf", "format=yuv420p10le", "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", params])
            .args(["-color_primaries", primaries, "-color_trc", transfer, "-colorspace", matrix, "-tag:v", "hvc1"])
            .args(["-c:a", "aac", "-shortest"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

pub async fn color_cost(env: &BenchEnv, report: &mut Report, pairs: usize) {
    let dir = env.dir.path();
    let hdr = make(dir, "hdr10-1080p.mov", "smpte2084");
    let sdr = make(dir, "sdr-1080p.mov", "bt709");
    let svc = Service::start(env, "serve", "l").await;
    let mut events = Events::bind(&svc.prefix, "job.completed.*").await;
    let (hdr_bytes, sdr_bytes) = (std::fs::read(&hdr).unwrap(), std::fs::read(&sdr).unwrap());
    let mut results = Vec::new();
    for i in 0..pairs {
        let (mut h, mut s) = ((0.0, 0.0), (0.0, 0.0));
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let body = if side == 0 { hdr_bytes.clone() } else { sdr_bytes.clone() };
            let (t0, cpu0) = (Instant::now(), svc.cpu_seconds());
            let (id, _) = post_file(env, &svc, body).await;
            events.completed(&id).await;
            let m = (t0.elapsed().as_secs_f64(), svc.cpu_seconds() - cpu0);
            if side == 0 {
                h = m;
            } else {
                s = m;
            }
        }
        eprintln!("(l) pair {}: HDR {:.1} s, SDR {:.1} s", i + 1, h.0, s.0);
        results.push(Pair { a: h.0, b: s.0, a_cpu: h.1, b_cpu: s.1 });
    }
    svc.stop();
    let mut md = String::new();
    let col = |f: &dyn Fn(&Pair) -> f64, d| spread(&results.iter().map(f).collect::<Vec<_>>(), d);
    let _ = writeln!(md, "## (l) Colour conversion cost\n");
    let _ = writeln!(
        md,
        "A {SECONDS} s 1920×1080 10-bit HEVC input, PQ/BT.2020 (HDR10), tone-mapped to SDR BT.709 \
         (`zscale` + `tonemap=hable`, see the README's Colour and scan), against the same pattern as a 10-bit \
         HEVC BT.709 input that needs no conversion (only the 10 → 8-bit step both share); both encoded whole to \
         1080p mp4 by the same `serve` process (`worker.ffmpeg_threads = 0`), from the 202 to the completion \
         event, {pairs} interleaved pairs. CPU: the service and its ffmpeg.\n"
    );
    let _ = writeln!(md, "| HDR wall s | SDR wall s | ratio | HDR CPU s | SDR CPU s |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    let ratios: Vec<f64> = results.iter().map(|p| p.a / p.b).collect();
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} |\n",
        col(&|p| p.a, 2),
        col(&|p| p.b, 2),
        spread(&ratios, 3),
        col(&|p| p.a_cpu, 2),
        col(&|p| p.b_cpu, 2)
    );
    report.sections.push(('l', md));
}
