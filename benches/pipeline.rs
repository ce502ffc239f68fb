//! How close the service comes to the physical limit, each figure as a
//! ratio against a baseline measured in the same run, in interleaved A/B
//! pairs. `cargo bench --bench pipeline` runs everything and writes
//! docs/benchmarks.md; `-- a b` runs some (a–e); `-- --pairs N` changes the
//! number of pairs (default 5).
//!
//! (a) a job end to end (202 → completion event) vs bare ffmpeg with the
//!     same arguments; (b) upload through the API vs a direct multipart
//!     upload to the same store, with the API's peak RSS; (c) 202s per
//!     second vs the same S3 PUT plus a confirmed publish done directly;
//! (d) pushed completion event vs polling the status once a second;
//! (e) fixed + per-byte cost fitted over three sizes of (a) and (b);
//! (f) one worker encoding a 120 s input whole vs two workers encoding it
//!     split, with a model of larger fleets; (g) the quality of the split
//!     output against the whole one; (j) 1 GiB through tus in 8 MiB chunks
//!     vs the same through POST, and the API's peak RSS for 4 GiB in 1 and
//!     64 MiB chunks; (h) an hls job with the default ladder vs bare
//!     ffmpeg with the same arguments, the poster and storyboard apart;
//!     (i) that ladder split across two one-thread workers vs one;
//!     (k) webhook latency and event-log replay; (l) an HDR
//!     job (tone-mapped) vs the same job from an SDR input. Families not
//!     run keep their last figures in the file.

mod bench_support;

use bench_support::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let pairs = args
        .iter()
        .position(|a| a == "--pairs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let wanted: Vec<&str> = args.iter().map(String::as_str).filter(|a| a.len() == 1).collect();
    let all = wanted.is_empty();
    let run = |s: &str| all || wanted.contains(&s);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut report = Report::new(pairs);
        let env = BenchEnv::new().await;
        if run("a") || run("e") {
            let sizes: &[u32] = if run("e") { &[10, 30, 60] } else { &[10, 60] };
            transcode_overhead(&env, &mut report, sizes, pairs).await;
        }
        if run("b") || run("e") {
            let sizes: &[u64] = if run("e") { &[256 << 20, 1 << 30, 4 << 30] } else { &[1 << 30, 4 << 30] };
            upload_ingest(&env, &mut report, sizes, pairs).await;
        }
        if run("c") {
            submission_rate(&env, &mut report, pairs).await;
        }
        if run("d") {
            notification_latency(&env, &mut report).await;
        }
        if run("f") || run("g") {
            split_scaling(&env, &mut report, pairs.min(3)).await;
        }
        if run("h") {
            ladder_cost(&env, &mut report, pairs.min(3)).await;
        }
        if run("i") {
            ladder_split_scaling(&env, &mut report, pairs.min(3)).await;
        }
        if run("l") {
            color_cost(&env, &mut report, pairs.min(3)).await;
        }
        if run("j") {
            resumable_uploads(&env, &mut report, pairs.min(3)).await;
        }
        if run("k") {
            webhook_latency(&env, &mut report).await;
        }
        if run("e") {
            report.fit_costs();
        }
        report.write(&args);
    });
}
