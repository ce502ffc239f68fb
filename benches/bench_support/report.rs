//! Statistics and docs/benchmarks.md.

use std::fmt::Write;

/// One interleaved pair: service ("a") and baseline ("b"), wall and CPU s.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub a: f64,
    pub b: f64,
    pub a_cpu: f64,
    pub b_cpu: f64,
}

/// Where one service job's time went (seconds).
#[derive(Debug, Clone, Copy)]
pub struct Breakdown {
    /// 202 → completion event.
    pub wall: f64,
    pub fetch: f64,
    pub probe: f64,
    pub ffmpeg: f64,
    pub store: f64,
    /// CPU of the service process itself.
    pub own_cpu: f64,
    /// CPU of its ffmpeg and ffprobe children.
    pub ffmpeg_cpu: f64,
    /// CPU of the RabbitMQ node during the job.
    pub broker_cpu: f64,
    /// CPU of the benchmark process (the store and the subscriber).
    pub store_cpu: f64,
}

const ANALYSIS_MARKER: &str = "<!-- analysis: kept across reruns -->";

#[derive(Default)]
pub struct Report {
    pairs: usize,
    /// (clip seconds, input bytes, pairs)
    pub transcode: Vec<(u32, u64, Vec<Pair>)>,
    /// (clip seconds, one breakdown per service job, broker CPU s during
    /// each bare ffmpeg run)
    pub transcode_breakdown: Vec<(u32, Vec<Breakdown>, Vec<f64>)>,
    /// (bytes, pairs, API peak RSS MiB after this size)
    pub upload: Vec<(u64, Vec<Pair>, f64)>,
    /// (concurrency, runs of (api rps, direct rps, api latencies, direct latencies))
    #[allow(clippy::type_complexity)]
    pub rate: Vec<(usize, Vec<(f64, f64, Vec<f64>, Vec<f64>, f64)>)>,
    /// (push latencies, poll latencies) in seconds
    pub latency: Option<(Vec<f64>, Vec<f64>)>,
    fits: Vec<String>,
    /// Sections rendered by their scenarios: (family letter, markdown).
    pub sections: Vec<(char, String)>,
}

pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

pub fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// "median (min–max)".
pub fn spread(v: &[f64], digits: usize) -> String {
    format!("{:.d$} ({:.d$}–{:.d$})", median(v), quantile(v, 0.0), quantile(v, 1.0), d = digits)
}

/// Least squares y = fixed + slope·x.
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - slope * mx, slope)
}

impl Report {
    pub fn new(pairs: usize) -> Report {
        Report { pairs, ..Default::default() }
    }

    pub fn fit_costs(&mut self) {
        let transcode: Vec<(u64, &[Pair])> =
            self.transcode.iter().map(|(_, bytes, p)| (*bytes, p.as_slice())).collect();
        let upload: Vec<(u64, &[Pair])> = self.upload.iter().map(|(bytes, p, _)| (*bytes, p.as_slice())).collect();
        let mut fits = fit_rows("(a)", ["service (202 → event)", "bare ffmpeg"], &transcode);
        fits.extend(fit_rows("(b)", ["API upload", "direct multipart upload"], &upload));
        self.fits.extend(fits);
    }

    pub fn write(&self, args: &[String]) {
        let mut md = String::new();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("unknown")
            .trim()
            .to_string();
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default().lines().next().unwrap_or("").to_string();
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Measured on {cores} cores ({cpu}), {}, {}, {} build, RabbitMQ on loopback, \
             the embedded S3-compatible store in the benchmark process. Every figure is a ratio against a \
             baseline measured in the same run, in {} interleaved A/B pairs (the order alternates); medians \
             with (min–max) over the pairs; CPU seconds beside wall time.\n",
            mem.split_whitespace().skip(1).collect::<Vec<_>>().join(" "),
            super::measure::ffmpeg_version().split(" Copyright").next().unwrap_or(""),
            if cfg!(debug_assertions) { "debug" } else { "release" },
            self.pairs
        );
        let extra = if args.is_empty() { String::new() } else { format!(" -- {}", args.join(" ")) };
        let _ = writeln!(md, "Reproduce: `cargo bench --bench pipeline{extra}` (writes this file).\n");

        if !self.transcode.is_empty() {
            let _ = writeln!(md, "## (a) A job end to end vs bare ffmpeg\n");
            let _ = writeln!(
                md,
                "From the 202 to the completion event received by a subscriber, against `ffmpeg` run directly with the \
                 identical arguments (`transcode::ffmpeg_args`) on the same 1280×720 input. Target: ratio ≤ 1.05 at 60 s.\n"
            );
            let _ = writeln!(
                md,
                "| clip | service wall s | ffmpeg wall s | ratio | overhead ms | service CPU s | ffmpeg CPU s |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|");
            for (secs, _, p) in &self.transcode {
                let col = |f: &dyn Fn(&Pair) -> f64, d| spread(&p.iter().map(f).collect::<Vec<_>>(), d);
                let _ = writeln!(
                    md,
                    "| {secs} s | {} | {} | {} | {} | {} | {} |",
                    col(&|x| x.a, 2),
                    col(&|x| x.b, 2),
                    col(&|x| x.a / x.b, 3),
                    col(&|x| (x.a - x.b) * 1000.0, 0),
                    col(&|x| x.a_cpu, 2),
                    col(&|x| x.b_cpu, 2)
                );
            }
            let _ = writeln!(md);
            let _ = writeln!(
                md,
                "Where the service's time goes, per job (from its `transcoder_job_phase_seconds` histogram): \
                 the input copy out of the store (fetch), the input probe (beside ffmpeg's start), ffmpeg itself (and \
                 beside it the poster and storyboard, from the input's keyframes), the output's description (read from \
                 its MP4 boxes) and its upload with the three preview files (store), and the rest (hand-off from the \
                 API to the worker, status writes and events). The fixed cost per job is fetch + store + rest. \
                 \"ffmpeg in service / bare\" compares ffmpeg's run inside the service with the bare run of the same pair. \
                 CPU during the job: the service process itself, its ffmpeg/ffprobe children, the RabbitMQ node, and the \
                 benchmark process (the store and the subscriber); the broker's CPU during the bare runs for comparison.\n"
            );
            let _ = writeln!(
                md,
                "| clip | fetch ms | probe ms | ffmpeg s | store ms | rest ms | ffmpeg in service / bare | service process CPU s | ffmpeg CPU s | broker CPU s | store CPU s | broker CPU s, bare |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
            for ((secs, b, bare_broker), (_, _, p)) in self.transcode_breakdown.iter().zip(&self.transcode) {
                let col = |f: &dyn Fn(&Breakdown) -> f64, d| spread(&b.iter().map(f).collect::<Vec<_>>(), d);
                let inside: Vec<f64> = b.iter().zip(p).map(|(b, p)| b.ffmpeg / p.b).collect();
                let _ = writeln!(
                    md,
                    "| {secs} s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    col(&|x| x.fetch * 1000.0, 0),
                    col(&|x| x.probe * 1000.0, 0),
                    col(&|x| x.ffmpeg, 2),
                    col(&|x| x.store * 1000.0, 0),
                    col(&|x| (x.wall - x.fetch - x.probe - x.ffmpeg - x.store) * 1000.0, 0),
                    spread(&inside, 3),
                    col(&|x| x.own_cpu, 2),
                    col(&|x| x.ffmpeg_cpu, 2),
                    col(&|x| x.broker_cpu, 2),
                    col(&|x| x.store_cpu, 2),
                    spread(bare_broker, 2)
                );
            }
            let _ = writeln!(md);
        }
        if !self.upload.is_empty() {
            let _ = writeln!(md, "## (b) Upload ingest vs a direct multipart upload\n");
            let _ = writeln!(
                md,
                "`POST /video/convert` of a streamed body (chunked, no Content-Length) until the 202, against the same bytes \
                 uploaded directly with aws-sdk-s3 multipart (`Storage::put_stream`) to the same store. Ratio = API \
                 throughput / direct throughput; target ≥ 0.9, API peak RSS flat and under 150 MiB at 4 GiB. The API \
                 runs as its own process; the direct side's CPU includes the store, which runs in the benchmark process.\n"
            );
            let _ = writeln!(md, "| size | API MiB/s | direct MiB/s | ratio | API CPU s | direct CPU s (incl. store) | API peak RSS MiB |");
            let _ = writeln!(md, "|---|---|---|---|---|---|---|");
            for (size, p, rss) in &self.upload {
                let mib = *size as f64 / (1 << 20) as f64;
                let col = |f: &dyn Fn(&Pair) -> f64, d| spread(&p.iter().map(f).collect::<Vec<_>>(), d);
                let _ = writeln!(
                    md,
                    "| {mib:.0} MiB | {} | {} | {} | {} | {} | {rss:.0} |",
                    col(&|x| mib / x.a, 0),
                    col(&|x| mib / x.b, 0),
                    col(&|x| x.b / x.a, 3),
                    col(&|x| x.a_cpu, 2),
                    col(&|x| x.b_cpu, 2)
                );
            }
            let _ = writeln!(md);
        }
        if !self.rate.is_empty() {
            let _ = writeln!(md, "## (c) Submission rate\n");
            let _ = writeln!(
                md,
                "202s per second for a 1 s 160×120 clip (about 20 KB), against doing directly what the API must at least do: \
                 the same S3 PUT plus a confirmed, routed publish. (The API also writes the status document: a second PUT.) \
                 256 requests per run. Target ≥ 0.8. A third series does both PUTs and the publish directly: the least \
                 a 202 may cost under the contract (input stored, status document written, publish confirmed).\n"
            );
            let _ = writeln!(
                md,
                "| concurrency | API 202/s | direct PUT+publish /s | ratio | direct 2 PUTs+publish /s | ratio to that | API p50 ms | API p99 ms | direct p50 ms | direct p99 ms |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
            for (c, runs) in &self.rate {
                let api: Vec<f64> = runs.iter().map(|r| r.0).collect();
                let direct: Vec<f64> = runs.iter().map(|r| r.1).collect();
                let ratio: Vec<f64> = runs.iter().map(|r| r.0 / r.1).collect();
                let all_api: Vec<f64> = runs.iter().flat_map(|r| r.2.clone()).collect();
                let all_direct: Vec<f64> = runs.iter().flat_map(|r| r.3.clone()).collect();
                let floor: Vec<f64> = runs.iter().map(|r| r.4).collect();
                let floor_ratio: Vec<f64> = runs.iter().map(|r| r.0 / r.4).collect();
                let _ = writeln!(
                    md,
                    "| {c} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    spread(&api, 0),
                    spread(&direct, 0),
                    spread(&ratio, 2),
                    spread(&floor, 0),
                    spread(&floor_ratio, 2),
                    quantile(&all_api, 0.5) * 1000.0,
                    quantile(&all_api, 0.99) * 1000.0,
                    quantile(&all_direct, 0.5) * 1000.0,
                    quantile(&all_direct, 0.99) * 1000.0
                );
            }
            let _ = writeln!(md);
        }
        if let Some((push, poll)) = &self.latency {
            let _ = writeln!(md, "## (d) Notification latency\n");
            let _ = writeln!(
                md,
                "From the worker's `completed-utc-time` to the completion event received by a subscriber, against a client \
                 that polls `GET /video/status/{{id}}` once a second (its own phase), for the same {} jobs. Targets: push \
                 p99 ≤ 10 ms, and at least 100 times better than polling at p50.\n",
                push.len()
            );
            let _ = writeln!(md, "| | p50 ms | p99 ms | max ms |");
            let _ = writeln!(md, "|---|---|---|---|");
            for (label, v) in [("push (AMQP event)", push), ("polling once a second", poll)] {
                let _ = writeln!(
                    md,
                    "| {label} | {:.1} | {:.1} | {:.1} |",
                    quantile(v, 0.5) * 1000.0,
                    quantile(v, 0.99) * 1000.0,
                    quantile(v, 1.0) * 1000.0
                );
            }
            let _ = writeln!(md, "\nPolling p50 / push p50 = {:.0}×.\n", quantile(poll, 0.5) / quantile(push, 0.5));
        }
        if !self.fits.is_empty() {
            let _ = writeln!(md, "## (e) How cost grows\n");
            let _ = writeln!(md, "Least-squares fit of the median wall time over the three sizes of (a) and (b): time = fixed + per-MiB × size.\n");
            let _ = writeln!(md, "| series | fixed | per MiB |");
            let _ = writeln!(md, "|---|---|---|");
            for f in &self.fits {
                let _ = writeln!(md, "{f}");
            }
            let _ = writeln!(md);
        }
        for (_, section) in &self.sections {
            md.push_str(section);
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md");
        if let Ok(old) = std::fs::read_to_string(path) {
            // Families this run did not measure keep their last figures, and
            // the written analysis below the marker survives a rerun.
            let body = old.find(ANALYSIS_MARKER).map_or(old.as_str(), |at| &old[..at]);
            for (letter, section) in families(body) {
                if !md.contains(&format!("## ({letter})")) {
                    md.push_str(section);
                }
            }
            if let Some(at) = old.find(ANALYSIS_MARKER) {
                md.push_str(&old[at..]);
            }
        }
        std::fs::write(path, &md).unwrap();
        println!("{md}");
        eprintln!("wrote {path}");
    }
}

/// The `## (x) …` sections of a report, each up to the next heading of its level.
fn families(body: &str) -> Vec<(char, &str)> {
    let starts: Vec<usize> = body.match_indices("\n## (").map(|(i, _)| i + 1).collect();
    starts
        .iter()
        .enumerate()
        .filter_map(|(k, &start)| {
            let end = starts.get(k + 1).copied().unwrap_or(body.len());
            let letter = body[start + 4..].chars().next()?;
            Some((letter, &body[start..end]))
        })
        .collect()
}

/// Fixed + per-MiB rows for both sides (A, B) of a series measured at two or
/// more sizes: a least-squares line through the median wall times.
fn fit_rows(series: &str, labels: [&str; 2], sizes: &[(u64, &[Pair])]) -> Vec<String> {
    if sizes.len() < 2 {
        return Vec::new();
    }
    labels
        .iter()
        .enumerate()
        .map(|(side, label)| {
            let pts: Vec<(f64, f64)> = sizes
                .iter()
                .map(|(bytes, pairs)| {
                    let walls: Vec<f64> = pairs.iter().map(|x| if side == 0 { x.a } else { x.b }).collect();
                    (*bytes as f64, median(&walls))
                })
                .collect();
            let (fixed, per_byte) = fit(&pts);
            format!(
                "| {series} {label} | {:.0} ms | {:.2} ms/MiB |",
                fixed * 1000.0,
                per_byte * 1000.0 * (1 << 20) as f64
            )
        })
        .collect()
}
